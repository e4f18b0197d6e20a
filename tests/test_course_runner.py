"""The course runner (`make course`) and the nbval harness (`make test`) on real notebooks:
a broken notebook stops the course naming notebook and cell, and fails nbval."""

import subprocess
import sys
from pathlib import Path

import nbformat

from qcoder_lib.course import runner as course

ROOT = Path(__file__).resolve().parent.parent


def _write_nb(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_course_stops_at_the_broken_notebook_names_its_cell_and_resumes(tmp_path, capsys):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _write_nb(
        nbs / "00_good.ipynb",
        ["from qcoder_lib import record_metric, get_profile\nprint(get_profile())",
         "record_metric('00/answer', 42)"],
    )
    _write_nb(nbs / "01_broken.ipynb", ["x = 1", "raise RuntimeError('planted failure')"])
    _write_nb(nbs / "02_never.ipynb", ["print('must not run')"])
    out = tmp_path / "runs"

    code = course.run_course("smoke", out, folder=nbs)

    assert code == 1
    report = (out / "report.md").read_text()
    assert "| 00_good.ipynb | ok |" in report and "`00/answer` = 42" in report
    assert "| 01_broken.ipynb | failed |" in report
    assert "code cell 1" in report and "planted failure" in report
    assert "02_never" not in report and not (out / "02_never.ipynb").exists()
    err = capsys.readouterr().err
    assert "01_broken.ipynb" in err and "code cell 1" in err
    # the executed copy is written for inspection; the committed notebook is untouched
    assert (out / "01_broken.ipynb").exists()
    assert not nbformat.read(nbs / "00_good.ipynb", as_version=4).cells[0].outputs

    # fix the notebook, resume: 00 is skipped, 01 and 02 run
    _write_nb(nbs / "01_broken.ipynb", ["x = 1", "print('fixed')"])
    assert course.run_course("smoke", out, folder=nbs, resume=True) == 0
    printed = capsys.readouterr().out
    assert "00_good.ipynb: passed earlier, skipped" in printed
    report = (out / "report.md").read_text()
    assert "| 02_never.ipynb | ok |" in report and "`00/answer` = 42" in report


def test_nbval_fails_on_a_notebook_that_raises(tmp_path):
    nb = tmp_path / "00_raises.ipynb"
    _write_nb(nb, ["raise ValueError('boom')"])
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", str(nb)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert r.returncode != 0, r.stdout[-2000:]
    assert "boom" in r.stdout


def test_find_notebooks_filters_by_prefix_and_complains_when_nothing_matches(tmp_path):
    _write_nb(tmp_path / "00_a.ipynb", ["1"])
    _write_nb(tmp_path / "01_b.ipynb", ["1"])
    (tmp_path / "notes.ipynb").write_text("{}")
    assert [p.name for p in course.find_notebooks(tmp_path)] == ["00_a.ipynb", "01_b.ipynb"]
    assert [p.name for p in course.find_notebooks(tmp_path, ["01"])] == ["01_b.ipynb"]
    import pytest

    with pytest.raises(FileNotFoundError, match="07"):
        course.find_notebooks(tmp_path, ["07"])


def test_execute_notebook_in_place_sets_kernelspec_and_keeps_outputs(tmp_path):
    nb_path = tmp_path / "00_x.ipynb"
    _write_nb(nb_path, ["print(6 * 7)"])
    res = course.execute_notebook(nb_path, "smoke", out_path=nb_path)
    assert res.status == "ok" and res.seconds > 0
    nb = nbformat.read(nb_path, as_version=4)
    assert nb.cells[0].outputs[0]["text"] == "42\n"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_write_report_lists_every_notebook(tmp_path):
    results = [
        course.NotebookResult("00_a.ipynb", "ok", 1.23, {"00/x": (0.5, "s")}),
        course.NotebookResult("01_b.ipynb", "failed", 2.0, {}, "code cell 3: boom"),
    ]
    course.write_report(results, "smoke", tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "| 00_a.ipynb | ok | 1.2 | `00/x` = 0.5 s |" in text
    assert "## 01_b.ipynb failed" in text and "code cell 3: boom" in text


def test_refresh_notebooks_executes_in_place_on_smoke_and_stops_at_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("QCODER_PROFILE", "cpu")  # refresh must use smoke whatever is set
    _write_nb(tmp_path / "00_a.ipynb", ["from qcoder_lib import get_profile\nprint(get_profile())"])
    _write_nb(tmp_path / "01_b.ipynb", ["raise KeyError('nope')"])
    _write_nb(tmp_path / "02_c.ipynb", ["print('after')"])
    assert course.refresh_notebooks(folder=tmp_path) == 1
    assert nbformat.read(tmp_path / "00_a.ipynb", as_version=4).cells[0].outputs[0]["text"] == "smoke\n"
    assert not nbformat.read(tmp_path / "02_c.ipynb", as_version=4).cells[0].outputs
    assert course.refresh_notebooks(["02"], folder=tmp_path) == 0
    assert nbformat.read(tmp_path / "02_c.ipynb", as_version=4).cells[0].outputs[0]["text"] == "after\n"


def test_main_runs_the_course_from_the_command_line(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_a.ipynb", ["print(1)"])
    out = tmp_path / "out"
    args = ["run", "--profile", "smoke", "--out", str(out), "--notebooks", str(nbs)]
    assert course.main(args) == 0
    assert "| 00_a.ipynb | ok |" in (out / "report.md").read_text()


def test_a_cell_past_its_timeout_fails_the_notebook_and_is_named(tmp_path):
    nb_path = tmp_path / "00_slow.ipynb"
    _write_nb(nb_path, ["x = 1", "import time\ntime.sleep(60)", "print('never')"])
    res = course.execute_notebook(nb_path, "smoke", cell_timeout=3)
    assert res.status == "failed"
    assert res.error.startswith("code cell 1: CellTimeoutError"), res.error
    assert "(cell starts: 'import time')" in res.error
    assert res.seconds < 50
