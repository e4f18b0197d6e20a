"""Loaders for published benchmark formats, each tested on the course's local sample file in
that format: the reference answers pass, wrong answers fail."""

import pytest

from qcoder_lib.evaluation.loaders import (
    DATASETS,
    benchmark_from_records,
    load_records,
    local_sample,
    mbpp_task,
    score_mbpp,
)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_local_sample_in_format_scores_its_references(name):
    records = load_records(name, local_sample(name))
    assert records
    modes = ("output", "input") if name == "cruxeval" else ("output",)
    for mode in modes:
        b = benchmark_from_records(name, records, mode=mode)
        res = b.score(b.tasks, b.references(), None)
        assert all(r.passed for r in res), [(r.task_id, r.outcome, r.detail) for r in res]
        wrong = b.score(b.tasks[:1], [["0"]], None)
        assert not wrong[0].passed


def test_mbpp_prompt_and_wrong_function():
    rec = load_records("mbpp", local_sample("mbpp"))[0]
    t = mbpp_task(rec)
    assert t.prompt.startswith('"""\nWrite a function') and rec["test_list"][0] in t.prompt
    res = score_mbpp([t], [["def second_largest(xs):\n    return max(xs)\n"]])
    assert res[0].outcome == "wrong_answer"
    plus = benchmark_from_records("mbppplus", load_records("mbppplus", local_sample("mbppplus")))
    # MBPP+'s extra input [[-1, -5, -3]] catches a solution that passes the base tests
    weak = "def second_largest(xs):\n    s = sorted(set(xs))\n    return s[-2] if s[-2] > 0 else 2\n"
    assert score_mbpp([t], [[weak]])[0].passed
    assert not score_mbpp(plus.tasks, [[weak]])[0].passed


def test_errors_name_the_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"task_id": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_records("mbpp", p)
    with pytest.raises(KeyError, match="unknown dataset"):
        load_records("apps")
    with pytest.raises(KeyError, match="unknown dataset"):
        local_sample("apps")
    assert load_records("mbpp", local_sample("mbpp"), limit=1)[0]["task_id"] == 9001
