"""The course runner behind ``make course`` and ``make notebooks``.

``run``: execute ``notebooks/NN_*.ipynb`` in order on a profile, one progress line per notebook,
write executed copies and ``report.md`` into a git-ignored folder (``runs/course`` by default),
stop at the first failing notebook showing the failing cell, and, with ``--resume``, start again
from the notebook that failed.

``refresh``: re-execute the committed notebooks in place on the ``smoke`` profile, so that the
outputs learners see on GitHub (and that nbval compares against) are those of the smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qcoder_lib.course.metrics import read_metrics_file
from qcoder_lib.io import repo_root

ROOT = repo_root() or Path.cwd()  # the checkout; an installed package runs from the cwd
NOTEBOOKS = ROOT / "notebooks"


@dataclass
class NotebookResult:
    """What happened to one notebook in a course run."""

    name: str  # file name, e.g. "00_setup_and_tour.ipynb"
    status: str  # "ok", "failed" or "skipped (passed earlier)"
    seconds: float = 0.0  # wall time of the execution
    metrics: dict = field(default_factory=dict)  # name -> (value, unit), from record_metric
    error: str = ""  # for a failure: which cell, and the error's last lines


def find_notebooks(folder: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """The course notebooks ``NN_*.ipynb`` in order; ``only`` keeps those whose number or name
    matches one of the given prefixes (``["00", "03"]``)."""
    paths = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
        if not paths:
            raise FileNotFoundError(f"no notebook in {folder} matches {only}")
    return paths


def _first_error(nb) -> tuple[int, str]:
    """Index (among code cells, from 0) and text of the first cell with an error output."""
    code_i = -1
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_i += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                src = cell.source.strip().splitlines()
                head = src[0] if src else ""
                return code_i, f"{out.get('ename')}: {out.get('evalue')} (cell starts: {head!r})"
    return -1, ""


def execute_notebook(
    path: Path,
    profile: str,
    out_path: Path | None = None,
    metrics_file: Path | None = None,
    cell_timeout: int = 1800,
) -> NotebookResult:
    """Execute one notebook with nbclient on ``profile``, in the notebooks folder, and write the
    executed copy to ``out_path`` (in place when ``out_path`` is the same file). A cell that
    raises, runs past ``cell_timeout`` seconds or kills its kernel fails the notebook, and the
    error names that code cell (counted from 0)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    env_before = {k: os.environ.get(k) for k in ("QCODER_PROFILE", "QCODER_METRICS_FILE")}
    os.environ["QCODER_PROFILE"] = profile
    if metrics_file is not None:
        metrics_file.unlink(missing_ok=True)
        os.environ["QCODER_METRICS_FILE"] = str(metrics_file)
    running = {"code_cell": -1, "head": ""}  # the code cell being executed, for error messages

    def note_cell(cell, cell_index):
        if cell.cell_type == "code":
            running["code_cell"] = sum(
                c.cell_type == "code" for c in nb.cells[:cell_index]
            )
            lines = cell.source.strip().splitlines()
            running["head"] = lines[0] if lines else ""

    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=note_cell,
    )
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        client.execute()
    except CellExecutionError:
        status = "failed"
        idx, text = _first_error(nb)
        error = f"code cell {idx}: {text}"
    except Exception as e:  # a dead kernel or a timeout is a failure of this notebook too
        status = "failed"
        first_line = (str(e).strip().splitlines() or [""])[0]
        error = (
            f"code cell {running['code_cell']}: {type(e).__name__}: {first_line} "
            f"(cell starts: {running['head']!r})"
        )
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nb.metadata.pop("jupytext", None)  # authoring metadata, not part of the course
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nbformat.write(nb, out_path)
    metrics = read_metrics_file(metrics_file) if metrics_file is not None else {}
    return NotebookResult(path.name, status, seconds, metrics, error)


def write_report(results: list[NotebookResult], profile: str, path: Path) -> None:
    """Write ``report.md``: per notebook its status, wall time and recorded key figures."""
    lines = [
        "# qcoder-course run report",
        "",
        f"Profile: `{profile}`; written {time.strftime('%Y-%m-%d %H:%M:%S')}.",
        "",
        "| notebook | status | wall time (s) | key figures |",
        "|---|---|---|---|",
    ]
    for r in results:
        figs = "; ".join(
            f"`{k}` = {_fmt(v)}{(' ' + u) if u else ''}" for k, (v, u) in sorted(r.metrics.items())
        )
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {figs or '-'} |")
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        lines += ["", f"## {r.name} failed", "", "```", r.error, "```"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run_course(
    profile: str,
    out_dir: Path,
    only: list[str] | None = None,
    resume: bool = False,
    folder: Path = NOTEBOOKS,
) -> int:
    """Execute the notebooks in order; return 0 when all passed, 1 at the first failure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "state.json"
    state = json.loads(state_path.read_text()) if (resume and state_path.exists()) else {}
    if state.get("profile", profile) != profile:
        print(f"[course] previous run used profile {state['profile']!r}; starting afresh")
        state = {}
    passed_before = {r["name"]: r for r in state.get("results", []) if r["status"] == "ok"}
    results: list[NotebookResult] = []
    notebooks = find_notebooks(folder, only)
    print(f"[course] profile={profile}, {len(notebooks)} notebook(s), output in {out_dir}")
    code = 0
    for i, nb_path in enumerate(notebooks, 1):
        if nb_path.name in passed_before:
            prev = passed_before[nb_path.name]
            results.append(
                NotebookResult(nb_path.name, "ok", prev["seconds"], prev.get("metrics", {}))
            )
            print(f"[course] {i}/{len(notebooks)} {nb_path.name}: passed earlier, skipped")
            continue
        print(f"[course] {i}/{len(notebooks)} {nb_path.name} ...", flush=True)
        res = execute_notebook(
            nb_path, profile, out_dir / nb_path.name, out_dir / f"{nb_path.stem}.metrics.jsonl"
        )
        results.append(res)
        print(f"[course] {i}/{len(notebooks)} {nb_path.name}: {res.status} in {res.seconds:.1f}s")
        if res.status != "ok":
            print(f"[course] FAILED {nb_path.name}, {res.error}", file=sys.stderr)
            print(
                f"[course] executed copy: {out_dir / nb_path.name}; fix it, then "
                "`make course RESUME=1` starts again from this notebook",
                file=sys.stderr,
            )
            code = 1
            break
    state = {
        "profile": profile,
        "results": [
            {"name": r.name, "status": r.status, "seconds": r.seconds, "metrics": r.metrics}
            for r in results
        ],
    }
    state_path.write_text(json.dumps(state, indent=1))
    write_report(results, profile, out_dir / "report.md")
    print(f"[course] report: {out_dir / 'report.md'}")
    return code


def refresh_notebooks(only: list[str] | None = None, folder: Path = NOTEBOOKS) -> int:
    """Re-execute the committed notebooks in place on the ``smoke`` profile."""
    code = 0
    for nb_path in find_notebooks(folder, only):
        print(f"[notebooks] {nb_path.name} ...", flush=True)
        res = execute_notebook(nb_path, "smoke", out_path=nb_path)
        print(f"[notebooks] {nb_path.name}: {res.status} in {res.seconds:.1f}s")
        if res.status != "ok":
            print(f"[notebooks] FAILED {nb_path.name}, {res.error}", file=sys.stderr)
            code = 1
            break
    return code


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m qcoder_lib.course run|refresh [...]``."""
    from qcoder_lib.runtime import PROFILES, get_profile

    p = argparse.ArgumentParser(prog="qcoder-course", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the notebooks in order and write report.md")
    r.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: auto-detected)")
    r.add_argument("--out", default=str(ROOT / "runs" / "course"), help="output folder")
    r.add_argument("--resume", action="store_true", help="skip notebooks that passed last time")
    r.add_argument("only", nargs="*", help="notebook numbers or name prefixes, e.g. 00 03")
    f = sub.add_parser("refresh", help="re-execute committed notebooks in place (smoke)")
    f.add_argument("only", nargs="*", help="notebook numbers or name prefixes")
    for sp in (r, f):
        sp.add_argument("--notebooks", default=str(NOTEBOOKS), help="folder of NN_*.ipynb")
    args = p.parse_args(argv)
    if args.cmd == "run":
        profile = args.profile or get_profile()
        if profile not in PROFILES:
            p.error(f"--profile {profile!r} is not one of {', '.join(PROFILES)}")
        return run_course(
            profile, Path(args.out), args.only or None, args.resume, Path(args.notebooks)
        )
    return refresh_notebooks(args.only or None, Path(args.notebooks))


if __name__ == "__main__":
    sys.exit(main())
