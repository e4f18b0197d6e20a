"""Student copies (``qcoder_lib.course.student``): solutions become stubs, outputs are cleared,
everything else stays; nbgrader metadata marks the exercise cells; a student copy runs up to its
first exercise and stops there with the message that says which exercise is open."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from qcoder_lib.course.student import (
    BEGIN,
    END,
    STUB,
    is_graded_cell,
    is_solution_cell,
    main,
    strip_solutions,
    student_notebook,
    tag_nbgrader,
    write_student_copies,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TEACHING_KIT = ["00", "01", "02", "03", "04", "05"]  # the notebooks with exercises (issue 18)


def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Exercise:** write `f`."),
        nbformat.v4.new_code_cell(f"def f(x):\n    \"\"\"Double x.\"\"\"\n    {BEGIN}\n    y = 2 * x\n"
                                  f"    return y\n    {END}\n"),
        nbformat.v4.new_code_cell("check_double(f)"),
        nbformat.v4.new_code_cell("print(f(2))"),
        nbformat.v4.new_code_cell("rows = check_environment()  # not an exercise check"),
    ]
    for c in nb.cells[1:]:
        c.outputs = [nbformat.v4.new_output("stream", text="4\n")]
        c.execution_count = 3
    return nb


def test_strip_solutions_keeps_indentation_and_the_rest():
    src = f"def f(x):\n    # note\n    {BEGIN}\n    return 2 * x\n    {END}\n\nprint('after')\n"
    out = strip_solutions(src)
    assert out == f"def f(x):\n    # note\n    # YOUR CODE HERE\n    {STUB}\n\nprint('after')\n"
    two = f"{BEGIN}\na = 1\n{END}\nb = 2\n{BEGIN}\nc = 3\n{END}\n"
    assert strip_solutions(two).count(STUB) == 2 and "b = 2" in strip_solutions(two)


@pytest.mark.parametrize("bad", [f"{BEGIN}\nx = 1\n", f"x = 1\n{END}\n", f"{END}\nx\n{BEGIN}\n"])
def test_strip_solutions_refuses_unmatched_markers(bad):
    with pytest.raises(ValueError, match="cell 7"):
        strip_solutions(bad, where="nb cell 7")


def test_student_notebook_on_a_toy():
    nb = _toy_notebook()
    out = student_notebook(nb, name="99_toy")
    assert BEGIN in nb.cells[1].source and nb.cells[1].outputs  # the original is untouched
    assert STUB in out.cells[1].source and "2 * x" not in out.cells[1].source
    assert all(c.outputs == [] and c.execution_count is None for c in out.cells[1:])
    assert [c.source for k, c in enumerate(out.cells) if k != 1] == \
        [c.source for k, c in enumerate(nb.cells) if k != 1]
    meta = [c.metadata.get("nbgrader") for c in out.cells]
    assert meta[1]["solution"] and not meta[1]["grade"] and meta[1]["grade_id"] == "99_solution_1"
    assert meta[2]["grade"] and meta[2]["locked"] and meta[2]["grade_id"] == "99_check_1"
    assert meta[0] is None and meta[3] is None and meta[4] is None


def test_tag_and_cell_kinds():
    nb = _toy_notebook()
    assert is_solution_cell(nb.cells[1]) and not is_graded_cell(nb.cells[1])
    assert is_graded_cell(nb.cells[2]) and not is_graded_cell(nb.cells[3])
    assert not is_graded_cell(nb.cells[4])
    assert tag_nbgrader(nb) == 2


def test_course_notebooks_student_copies(tmp_path):
    written = write_student_copies(NOTEBOOKS, tmp_path, only=TEACHING_KIT)
    assert [p.name[:2] for p in written] == TEACHING_KIT
    total = 0
    for path in written:
        full = nbformat.read(NOTEBOOKS / path.name, as_version=4)
        student = nbformat.read(path, as_version=4)
        assert len(full.cells) == len(student.cells), path.name
        n_solutions = 0
        for a, b in zip(full.cells, student.cells):
            if is_solution_cell(a):
                n_solutions += 1
                assert STUB in b.source and BEGIN not in b.source, path.name
                assert b.metadata["nbgrader"]["solution"]
            else:
                assert a.source == b.source, path.name
            if b.cell_type == "code":
                assert b.outputs == [] and b.execution_count is None
        graded = sum(is_graded_cell(c) for c in full.cells)
        assert graded == n_solutions, f"{path.name}: {n_solutions} solutions, {graded} check cells"
        if path.name[:2] != "00":  # 00 is the set-up notebook: no exercise
            assert 2 <= n_solutions <= 4, f"{path.name}: {n_solutions} exercises"
        total += n_solutions
        assert BEGIN in "".join(c.source for c in full.cells) or n_solutions == 0  # full stays full
    assert total >= 10


def test_main_writes_copies(tmp_path, capsys):
    assert main([str(NOTEBOOKS), str(tmp_path / "student"), "01"]) == 0
    assert (tmp_path / "student" / "01_tokenizer_special_tokens.ipynb").exists()
    assert "2 exercise(s)" in capsys.readouterr().out


@pytest.mark.parametrize("number", ["01", "03"])
def test_student_copy_stops_at_the_first_exercise(tmp_path, number):
    """Executed on the smoke profile, a student copy runs every cell before its first check cell
    and fails there with NotImplementedError naming the open exercise."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    (path,) = write_student_copies(NOTEBOOKS, tmp_path, only=[number])
    nb = nbformat.read(path, as_version=4)
    first_check = next(k for k, c in enumerate(nb.cells) if is_graded_cell(c))
    nb.cells = nb.cells[: first_check + 2]  # nothing after it may run anyway
    env_profile = os.environ.get("QCODER_PROFILE")
    os.environ["QCODER_PROFILE"] = "smoke"
    try:
        client = NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        with pytest.raises(CellExecutionError) as e:
            client.execute()
    finally:
        if env_profile is None:
            os.environ.pop("QCODER_PROFILE")
        else:
            os.environ["QCODER_PROFILE"] = env_profile
    assert "NotImplementedError" in str(e.value) and "is still open" in str(e.value)
    failed = [k for k, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed == [first_check]
    ran = [k for k, c in enumerate(nb.cells[:first_check]) if c.cell_type == "code"]
    assert all(nb.cells[k].execution_count is not None for k in ran)
