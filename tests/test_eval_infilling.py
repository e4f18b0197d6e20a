"""HumanEval infilling: the task counts of human-eval-infilling, tasks that rebuild the
original program, scoring by execution / exact match / edit similarity."""

import pytest

from qcoder_lib.evaluation.humaneval import humaneval_problems
from qcoder_lib.evaluation.infilling import (
    INFILLING_KINDS,
    PUBLISHED_COUNTS,
    edit_similarity,
    infilling_benchmark,
    infilling_tasks,
    levenshtein,
    score_infilling,
)


@pytest.mark.parametrize("kind", INFILLING_KINDS)
def test_counts_match_the_benchmark(kind):
    tasks = infilling_tasks(kind)
    assert len(tasks) == PUBLISHED_COUNTS[kind] == {"single-line": 1033, "multi-line": 5815,
                                                     "random-span": 1640}[kind]
    assert len({t.task_id for t in tasks}) == len(tasks)
    by_id = {p["task_id"]: p for p in humaneval_problems()}
    for t in tasks[:: max(1, len(tasks) // 200)]:
        p = by_id["/".join(t.task_id.split("/")[1:3])]
        assert t.prompt + t.reference + t.suffix == p["prompt"] + p["canonical_solution"]
        assert t.reference.strip() if kind != "random-span" else t.reference


def test_random_spans_are_fixed_by_the_seed():
    a = [t.reference for t in infilling_tasks("random-span")[:30]]
    assert a == [t.reference for t in infilling_tasks("random-span")[:30]]
    assert a != [t.reference for t in infilling_tasks("random-span", seed=1)[:30]]


def test_single_line_is_one_line():
    for t in infilling_tasks("single-line")[:100]:
        assert t.reference.count("\n") <= 1 and t.reference.strip()


def test_reference_and_wrong_middles():
    tasks = infilling_benchmark("single-line", limit=4).tasks
    tasks += infilling_benchmark("multi-line", limit=2).tasks
    tasks += infilling_benchmark("random-span", limit=2).tasks
    res = score_infilling(tasks, [[t.reference] for t in tasks])
    assert [r.outcome for r in res] == ["passed"] * len(tasks)
    assert all(r.scores["exact_match"] == 1.0 and r.scores["edit_similarity"] == 1.0 for r in res)
    assert tasks[0].reference == "    for idx, elem in enumerate(numbers):\n"
    wrong = score_infilling(tasks[:1], [["    for idx, elem in enumerate(numbers[:1]):\n",
                                         "  bad syntax (\n"]])
    assert [r.outcome for r in wrong] == ["wrong_answer", "syntax_error"]
    assert wrong[0].scores["exact_match"] == 0.0 and 0 < wrong[0].scores["edit_similarity"] < 1


def test_levenshtein_and_similarity():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    assert edit_similarity("  x = 1\n", "x = 1") == 1.0
    assert edit_similarity("abcd", "abcf") == pytest.approx(0.75)
    assert edit_similarity("", "") == 1.0


def test_unknown_kind():
    with pytest.raises(ValueError, match="choose one of"):
        infilling_tasks("whole-file")
