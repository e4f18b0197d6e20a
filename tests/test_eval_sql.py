"""Text-to-SQL: Spider's result comparison (ORDER BY, duplicates, column order), the shipped
database (built from its script, opened read-only), and execution accuracy in the sandbox."""

import hashlib
import sqlite3

import pytest

from qcoder_lib.evaluation.sql import (
    DATABASE,
    SCRIPT,
    build_database,
    open_readonly,
    order_matters,
    predicted_query,
    results_equal,
    schema_text,
    score_sql,
    sql_benchmark,
    sql_tasks,
)
from qcoder_lib.io import resource_path


def test_order_matters_only_with_order_by():
    assert order_matters("SELECT a FROM t ORDER BY a")
    assert order_matters("select a from t order\n  by a desc")
    assert not order_matters("SELECT a FROM t")
    assert not order_matters("SELECT border_by FROM t")


@pytest.mark.parametrize("pred, gold, ordered, equal", [
    ([[1], [2]], [[2], [1]], False, True),  # no ORDER BY: order ignored
    ([[1], [2]], [[2], [1]], True, False),  # ORDER BY: order compared
    ([[1], [2]], [[1], [2]], True, True),
    ([[1], [1], [2]], [[1], [2], [2]], False, False),  # duplicates are counted (multiset)
    ([[1], [2]], [[1], [1], [2]], False, False),  # DISTINCT vs. not: different row counts
    ([["a", 1], ["b", 2]], [[1, "a"], [2, "b"]], False, True),  # columns in another order
    ([["a", 1], ["b", 2]], [[1, "b"], [2, "a"]], False, False),  # but rows must still match
    ([[1, 2]], [[1]], False, False),  # column count differs
    ([], [], True, True),
    ([[1.0]], [[1]], False, True),  # Python equality, as Spider
])
def test_results_equal(pred, gold, ordered, equal):
    assert results_equal(pred, gold, ordered) is equal


def test_shipped_database_is_its_script(tmp_path):
    built = build_database(resource_path(*SCRIPT), tmp_path / "x.sqlite")
    with pytest.raises(FileExistsError):
        build_database(resource_path(*SCRIPT), built)
    a, b = open_readonly(built), open_readonly(resource_path(*DATABASE))
    assert list(a.iterdump()) == list(b.iterdump())
    assert "CREATE TABLE loans" in schema_text(b)
    with pytest.raises(sqlite3.OperationalError):
        b.execute("DELETE FROM books")


def test_oracle_and_wrong_queries_in_the_sandbox():
    db = resource_path(*DATABASE)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    b = sql_benchmark()
    assert len(b.tasks) == 20 and b.tasks[0].prompt.endswith("SELECT")
    res = score_sql(b.tasks, b.references())
    assert all(r.passed for r in res), [(r.task_id, r.detail) for r in res if not r.passed]
    t = {x.task_id: x for x in b.tasks}
    cases = [
        (t["CourseSQL/2"], " title FROM books WHERE genre = 'technical' ORDER BY year"),  # order
        (t["CourseSQL/6"], " DISTINCT city FROM members"),  # duplicates dropped
        (t["CourseSQL/7"], " city FROM members GROUP BY city"),  # same set: right
        (t["CourseSQL/4"], " COUNT(*), genre FROM books GROUP BY genre"),  # columns swapped
        (t["CourseSQL/0"], " COUNT(* FROM books"),
        (t["CourseSQL/0"], " COUNT(*) FROM nope"),
        (t["CourseSQL/0"], " 1; DELETE FROM books"),  # only the first statement runs, read-only
        (t["CourseSQL/0"], " 1 FROM books WHERE 0; ATTACH 'x.db' AS y"),
    ]
    res = score_sql([c[0] for c in cases], [[c[1]] for c in cases])
    assert [r.outcome for r in res] == ["wrong_answer", "wrong_answer", "passed", "passed",
                                        "syntax_error", "runtime_error", "wrong_answer",
                                        "wrong_answer"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_predicted_query_and_gold_check():
    assert predicted_query(" a FROM t; DROP TABLE t") == "SELECT a FROM t"
    with pytest.raises(ValueError, match="must start with SELECT"):
        sql_tasks([{"task_id": "x", "question": "q", "query": "DELETE FROM books"}])
