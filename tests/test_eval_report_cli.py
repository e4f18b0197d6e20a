"""Summaries, the report (tables, published numbers, plot, failures), ``qcoder eval`` and the
evaluation texts that feed decontamination."""

import argparse
import json

import pytest

from qcoder_lib.evaluation.model_api import ReferenceModel
from qcoder_lib.evaluation.report import (
    PUBLISHED,
    failure_counts,
    failure_table,
    headline,
    plot_results,
    results_table,
    write_report,
)
from qcoder_lib.evaluation.results import (
    SampleResult,
    classify,
    exception_name,
    summarize,
    syntax_error,
)
from qcoder_lib.evaluation.suite import BENCHMARKS, EvalRun, eval_texts, evaluate, get_benchmark


def test_summarize_and_outcomes():
    rs = [SampleResult("a", "", "passed"), SampleResult("a", "", "wrong_answer"),
          SampleResult("b", "", "syntax_error", scores={"exact_match": 1.0}),
          SampleResult("b", "", "passed")]
    s = summarize("x", rs, ks=(1, 2, 5))
    assert s.pass_at == {1: 0.5, 2: 1.0} and s.n_tasks == 2 and s.n_samples == 2
    assert s.outcomes == {"passed": 2, "wrong_answer": 1, "syntax_error": 1}
    assert s.extra == {"exact_match": 0.25}
    assert s.to_dict()["pass_at"] == {"pass@1": 0.5, "pass@2": 1.0}
    assert rs[0].to_dict()["outcome"] == "passed"
    with pytest.raises(ValueError, match="no results"):
        summarize("x", [])


def test_error_helpers():
    assert syntax_error("def f(:\n") .startswith("SyntaxError")
    assert syntax_error("x = 1\n") is None
    assert syntax_error("if 1:\nx = 2\n").startswith("IndentationError")
    assert exception_name("Traceback...\n  File x\nKeyError: 1\n") == "KeyError"
    assert exception_name("json.decoder.JSONDecodeError: bad\n") == "JSONDecodeError"
    assert exception_name("") == ""

    class R:  # the fields of a sandbox ExecResult that classify reads
        def __init__(self, status, stderr="", exit_code=1, reason=""):
            self.status, self.stderr, self.exit_code, self.reason = status, stderr, exit_code, reason

    assert classify(R("passed", exit_code=0)) == ("passed", "")
    assert classify(R("failed", "AssertionError\n"))[0] == "wrong_answer"
    assert classify(R("failed", "SystemExit: 0\n"))[0] == "early_exit"
    assert classify(R("failed", "", 0, "did not finish"))[0] == "early_exit"
    assert classify(R("timeout", reason="wall"))[0] == "timeout"
    assert classify(R("no_tests", reason="no check ran"))[0] == "no_tests"
    assert classify(R("failed", "ZeroDivisionError: x\n")) == ("runtime_error", "ZeroDivisionError")


@pytest.fixture(scope="module")
def runs():
    names = ["humaneval", "humaneval-infill-single-line", "sql", "math"]
    oracle = evaluate(ReferenceModel(), names, limit=3)
    broken = evaluate(ReferenceModel(lambda t: "  (", name="broken"), names, limit=3)
    return [oracle, broken]


def test_evaluate_oracle_and_broken(runs):
    oracle, broken = runs
    assert oracle.model == "reference" and broken.model == "broken"
    for name, s in oracle.summaries.items():
        assert headline(s) == 100.0 and s.n_tasks == 3, name
    assert broken.summaries["humaneval"].pass_at[1] == 0.0
    assert broken.summaries["humaneval"].outcomes == {"syntax_error": 3}
    assert broken.summaries["math"].outcomes == {"no_answer": 3}
    assert failure_counts(broken)["sql"] == {"syntax_error": 3}
    assert set(oracle.to_dict()) == {"model", "sampling", "seconds", "summaries", "samples"}


def test_tables_plot_and_files(runs, tmp_path):
    table = results_table(runs)
    assert "| humaneval | 3 | 100.0 | 0.0 | 28.0 | 43.9 | 61.6 | 70.7 |" in table
    assert f"{PUBLISHED['humaneval-infill-single-line']['Qwen2.5-Coder-0.5B']:.1f}" in table
    ft = failure_table(runs[1])
    assert "| humaneval | 3 |" in ft and "syntax_error: IndentationError" in ft
    fig = plot_results(runs)
    assert len(fig.axes[0].patches) == 8  # 2 runs x 4 benchmarks
    path = write_report(runs, tmp_path / "rep")
    assert sorted(p.name for p in path.parent.iterdir()) == ["broken.json", "reference.json",
                                                           "report.md", "results.png"]
    saved = json.loads((path.parent / "broken.json").read_text())
    assert saved["summaries"]["humaneval"]["pass_at"]["pass@1"] == 0.0
    assert len(saved["samples"]["sql"]) == 3


def test_registry():
    assert get_benchmark("math", 2).tasks[1].task_id == "CourseMath/1"
    with pytest.raises(KeyError, match="unknown benchmark 'apps'"):
        get_benchmark("apps")
    assert {"humaneval", "sql", "math", "crux-input"} <= set(BENCHMARKS)
    from qcoder_lib.evaluation.loaders import local_sample

    b = get_benchmark(f"cruxeval-input={local_sample('cruxeval')}", limit=1)
    assert b.name == "cruxeval-input" and len(b.tasks) == 1
    assert get_benchmark(f"mbpp={local_sample('mbpp')}").tasks[0].task_id == "MBPP/9001"
    assert isinstance(EvalRun("m", {}).to_dict(with_samples=False), dict)


def test_cli_eval_writes_results(tmp_path, capsys):
    from qcoder_lib.cli import add_common_options  # noqa: F401 - the contract eval.py uses
    from qcoder_lib.cli import eval as cli_eval

    parser = argparse.ArgumentParser(prog="qcoder")
    cli_eval.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "--model", "reference", "--benchmarks", "math,sql",
                              "--limit", "2", "--out", str(tmp_path / "o")])
    assert args.run(args) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res[0]["summaries"]["sql"]["pass_at"]["pass@1"] == 1.0
    assert (tmp_path / "o" / "report.md").is_file()
    assert "| math | 2 | 100.0 |" in capsys.readouterr().out
    with pytest.raises(KeyError):
        bad = parser.parse_args(["eval", "--model", "reference", "--benchmarks", "nope",
                                 "--out", str(tmp_path / "p")])
        bad.run(bad)


def test_eval_texts_feed_decontamination():
    from qcoder_lib.data.decontam import EvalItem, NGramIndex

    texts = eval_texts()
    benches = {b for b, _, _ in texts}
    assert {"course-sql", "course-math", "mbpp", "cruxeval", "gsm8k"} <= benches
    assert len(texts) == len({(b, t) for b, t, _ in texts})
    index = NGramIndex([EvalItem(*t) for t in texts])
    q = next(x for x in texts if x[1] == "CourseSQL/12")[2]
    doc = "Some training page.\n" + q + "\nmore"
    hit = index.match(doc)
    assert hit is not None and hit[0].task_id == "CourseSQL/12"
    assert index.match("An unrelated page about gardening and birds in the spring.") is None
    he = eval_texts(include_humaneval=True)
    assert len(he) == len(texts) + 164
