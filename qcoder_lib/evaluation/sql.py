"""Text-to-SQL with execution accuracy (Spider's metric) on a small SQLite database.

The database (``data_samples/evaluation/library.sqlite``, built from ``library.sql`` by
:func:`build_database`) and the questions (``sql_questions.jsonl``) were written for the
course. The model sees the schema as ``CREATE TABLE`` statements, the question as an SQL
comment, and continues a query that starts with ``SELECT``.

Execution accuracy: the predicted query's result set must equal the gold query's, compared as
Spider's evaluation does (``result_eq``): same number of rows and columns; columns may come in
another order; row order matters only when the gold query has an ``ORDER BY``; otherwise the
rows are compared as a multiset (duplicates count: ``[a, a, b]`` differs from ``[a, b]``).

The model's query is model-written code: it runs inside :mod:`qcoder_lib.sandbox`, on a copy of
the database opened read-only, and the parent compares what comes back. Gold queries (written
for the course) run in the parent on the shipped file, also read-only.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from itertools import permutations
from pathlib import Path

from qcoder_lib.evaluation.results import SampleResult
from qcoder_lib.evaluation.task import Benchmark, Task

DATABASE = ("evaluation", "library.sqlite")  # resource_path parts of the shipped database
SCRIPT = ("evaluation", "library.sql")
QUESTIONS = ("evaluation", "sql_questions.jsonl")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
_SQL_SYNTAX = ("syntax error", "incomplete input", "unrecognized token")  # SQLite's parse errors
_RUNNER = """import json, sqlite3
con = sqlite3.connect("file:db.sqlite?mode=ro", uri=True)
rows = con.execute({query!r}).fetchall()
print(json.dumps([list(r) for r in rows], default=repr))
"""


def build_database(script: str | Path, db_path: str | Path) -> Path:
    """Create the SQLite file ``db_path`` from the SQL ``script`` (fails if it exists)."""
    db_path = Path(db_path)
    if db_path.exists():
        raise FileExistsError(f"build_database: {db_path} exists")
    con = sqlite3.connect(db_path)
    try:
        con.executescript(Path(script).read_text(encoding="utf-8"))
        con.commit()
    finally:
        con.close()
    return db_path


def open_readonly(db_path: str | Path) -> sqlite3.Connection:
    """A read-only connection to ``db_path`` (``mode=ro``, ``immutable``: works from a
    read-only install too). Writes raise ``sqlite3.OperationalError``."""
    return sqlite3.connect(Path(db_path).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)


def schema_text(con: sqlite3.Connection) -> str:
    """The ``CREATE TABLE`` statements of the database, one after another."""
    rows = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
    return ";\n".join(r[0] for r in rows) + ";\n"


def order_matters(gold_query: str) -> bool:
    """Spider's rule: row order is compared only when the gold query has ``ORDER BY``."""
    return bool(_ORDER_BY.search(gold_query))


def results_equal(pred: list, gold: list, ordered: bool) -> bool:
    """Spider's ``result_eq``: equal row counts and column counts, and some order of the
    predicted columns for which the rows are equal (as lists when ``ordered``, else as
    multisets, duplicates counted). Column orders are all tried for up to 6 columns."""
    pred, gold = [tuple(r) for r in pred], [tuple(r) for r in gold]
    if len(pred) != len(gold):
        return False
    if not gold:
        return True
    ncol = len(gold[0])
    if any(len(r) != ncol for r in pred):
        return False
    orders = permutations(range(ncol)) if ncol <= 6 else [tuple(range(ncol))]
    gold_bag = None if ordered else Counter(gold)
    for perm in orders:
        cand = [tuple(r[i] for i in perm) for r in pred]
        if (cand == gold) if ordered else (Counter(cand) == gold_bag):
            return True
    return False


def sql_tasks(questions: list[dict] | None = None, db_path: str | Path | None = None
              ) -> list[Task]:
    """One task per question record (``task_id``, ``question``, ``query``); the gold result is
    computed now, on the read-only database."""
    from qcoder_lib.io import resource_path

    db_path = Path(db_path) if db_path is not None else resource_path(*DATABASE)
    if questions is None:
        lines = resource_path(*QUESTIONS).read_text(encoding="utf-8").splitlines()
        questions = [json.loads(x) for x in lines if x.strip()]
    con = open_readonly(db_path)
    try:
        schema = schema_text(con)
        tasks = []
        for q in questions:
            gold = q["query"].strip().rstrip(";")
            if not gold.upper().startswith("SELECT"):
                raise ValueError(f"{q['task_id']}: the gold query must start with SELECT")
            rows = [list(r) for r in con.execute(gold).fetchall()]
            prompt = (f"{schema}-- Using valid SQLite, answer the question for the tables above.\n"
                      f"-- Question: {q['question']}\nSELECT")
            tasks.append(Task(q["task_id"], prompt, gold[len("SELECT"):] + ";",
                              check={"gold_rows": rows, "ordered": order_matters(gold),
                                     "db_path": str(db_path)},
                              instruction=f"{schema}\nAnswer the question with one SQLite query "
                                          f"in a ```sql code block.\nQuestion: {q['question']}",
                              chat_answer="sql"))
    finally:
        con.close()
    return tasks


def predicted_query(completion: str) -> str:
    """The query a completion stands for: ``SELECT`` + the completion up to its first ``;``."""
    return "SELECT" + completion.split(";", 1)[0]


def score_sql(tasks: list[Task], completions: list[list[str]], workers: int | None = None
              ) -> list[SampleResult]:
    """Run each predicted query in the sandbox (read-only copy of the database) and compare
    its rows with the gold rows (:func:`results_equal`)."""
    from qcoder_lib.evaluation.execute import default_workers
    from qcoder_lib.sandbox import run_many

    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} tasks but {len(completions)} completion lists")
    dbs: dict[str, bytes] = {}
    jobs, meta = [], []
    for t, cs in zip(tasks, completions):
        db = dbs.setdefault(t.check["db_path"], Path(t.check["db_path"]).read_bytes())
        for c in cs:
            jobs.append((_RUNNER.format(query=predicted_query(c)), db))
            meta.append((t, c))
    out = []
    # one run_many call per database file (the file travels with each program)
    for db in {d for _, d in jobs}:
        idx = [i for i, (_, d) in enumerate(jobs) if d is db]
        runs = run_many([jobs[i][0] for i in idx], workers=workers or default_workers(),
                        timeout_s=10, files={"db.sqlite": db}, max_output_bytes=1_000_000)
        out.extend(zip(idx, runs))
    results: list[SampleResult | None] = [None] * len(jobs)
    for i, res in out:
        t, c = meta[i]
        if res.status != "passed":
            err = res.stderr.strip().splitlines()[-1:] or [res.reason]
            outcome = "syntax_error" if any(m in err[0] for m in _SQL_SYNTAX) else (
                res.status if res.status != "failed" else "runtime_error")
            results[i] = SampleResult(t.task_id, c, outcome, err[0][:200])
            continue
        try:
            rows = json.loads(res.stdout)
        except json.JSONDecodeError:
            results[i] = SampleResult(t.task_id, c, "wrong_answer", "result too large or unreadable")
            continue
        gold = json.loads(json.dumps(t.check["gold_rows"], default=repr))
        ok = results_equal(rows, gold, t.check["ordered"])
        results[i] = SampleResult(t.task_id, c, "passed" if ok else "wrong_answer",
                                  "" if ok else f"{len(rows)} rows vs. {len(gold)} gold rows")
    return results  # type: ignore[return-value]


def sql_benchmark(limit: int | None = None) -> Benchmark:
    """The course's text-to-SQL set as a :class:`Benchmark`."""
    return Benchmark("sql", sql_tasks(), (";", "\n\n"), score_sql, max_new_tokens=96,
                     description="text-to-SQL on a SQLite library database, execution accuracy"
                     ).subset(limit)
