"""Student copies of the course notebooks (``make student``), in nbgrader's conventions.

In the committed notebooks an exercise is a **solution cell** whose answer sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``, followed by a **graded test cell** that calls a
check from :mod:`qcoder_lib.course.exercises`. :func:`student_notebook` replaces every solution
region by a stub that raises ``NotImplementedError`` (indented like the region), clears every
output and execution count, and leaves everything else as it is; :func:`tag_nbgrader` adds the
cell metadata that nbgrader's tools read (``solution`` / ``grade`` / ``locked``, a ``grade_id``).
The committed notebooks keep their solutions and outputs.

Run ``python -m qcoder_lib.course.student notebooks student`` to write ``student/NN_*.ipynb``.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("your turn: write your solution here, then run the check below")'
CHECK_CALL = re.compile(r"^check_\w+\(", re.MULTILINE)  # a graded cell: a line that calls a check
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*$",
                     re.MULTILINE | re.DOTALL)


def _source(cell) -> str:
    """A cell's source as one string (nbformat keeps a string; raw JSON may hold a list)."""
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def strip_solutions(source: str, where: str = "cell") -> str:
    """``source`` with each solution region replaced by one stub line at the region's
    indentation. Raises ``ValueError`` naming ``where`` for an unmatched BEGIN or END marker."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"{where}: {source.count(BEGIN)} '{BEGIN}' but {source.count(END)} '{END}'")
    out = _REGION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}{STUB}", source)
    if BEGIN in out or END in out:
        raise ValueError(f"{where}: a '{BEGIN}' / '{END}' pair is nested or out of order")
    return out


def is_solution_cell(cell) -> bool:
    """A code cell that holds a solution region."""
    return cell["cell_type"] == "code" and BEGIN in _source(cell)


def is_graded_cell(cell) -> bool:
    """A code cell (without a solution) with a line that starts by calling an exercise check
    (``check_rms_norm(rms_norm)``; ``rows = check_environment()`` is not one)."""
    return cell["cell_type"] == "code" and not is_solution_cell(cell) and bool(CHECK_CALL.search(_source(cell)))


def tag_nbgrader(nb, prefix: str = "") -> int:
    """Add nbgrader metadata to the solution and graded cells of ``nb`` (in place); returns how
    many cells were tagged. ``grade_id`` is ``{prefix}solution_K`` / ``{prefix}check_K``."""
    n_sol = n_check = 0
    for cell in nb["cells"]:
        if is_solution_cell(cell):
            n_sol += 1
            meta = {"grade": False, "solution": True, "locked": False,
                    "grade_id": f"{prefix}solution_{n_sol}", "schema_version": 3}
        elif is_graded_cell(cell):
            n_check += 1
            meta = {"grade": True, "solution": False, "locked": True, "points": 1,
                    "grade_id": f"{prefix}check_{n_check}", "schema_version": 3}
        else:
            continue
        cell.setdefault("metadata", {})["nbgrader"] = meta
    return n_sol + n_check


def student_notebook(nb, name: str = "notebook"):
    """A student copy of ``nb`` (a new object): solutions stubbed, outputs and execution counts
    cleared, nbgrader metadata on the exercise cells, everything else unchanged."""
    out = copy.deepcopy(nb)
    tag_nbgrader(out, prefix=name.split("_")[0] + "_")  # before the stubs: they no longer say BEGIN
    for k, cell in enumerate(out["cells"]):
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            if is_solution_cell(cell):
                cell["source"] = strip_solutions(_source(cell), where=f"{name} cell {k}")
    return out


def write_student_copies(src: Path, dst: Path, only: list[str] | None = None) -> list[Path]:
    """Write a student copy of every ``NN_*.ipynb`` in ``src`` (or those whose name starts with one
    of ``only``) into ``dst``; returns the written paths."""
    import nbformat

    paths = sorted(Path(src).glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        copy_ = student_notebook(nb, name=p.stem)
        target = dst / p.name
        nbformat.write(copy_, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m qcoder_lib.course.student SRC DST [NN ...]``: write the student copies."""
    ap = argparse.ArgumentParser(prog="python -m qcoder_lib.course.student", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="folder with the full notebooks (notebooks)")
    ap.add_argument("dst", type=Path, help="folder for the student copies (student)")
    ap.add_argument("only", nargs="*", help="notebook numbers to copy (default: all)")
    args = ap.parse_args(argv)
    import nbformat

    for path in write_student_copies(args.src, args.dst, args.only or None):
        nb = nbformat.read(path, as_version=4)
        n = sum(c.get("metadata", {}).get("nbgrader", {}).get("solution", False) for c in nb.cells)
        print(f"{args.dst.name}/{path.name}: {n} exercise(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
