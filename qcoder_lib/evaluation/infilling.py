"""HumanEval infilling (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in
the Middle"; the ``human-eval-infilling`` benchmark): hide part of a canonical solution, give
the model the code before and after the hole, and judge what it writes in the hole.

The three task sets are built from HumanEval's canonical solutions the way that benchmark builds
them, and their sizes match its published counts:

- single-line (1,033 tasks): every non-blank line of every solution, one at a time;
- multi-line (5,815 tasks): every run of consecutive lines from one non-blank line to another
  (``n * (n + 1) / 2`` per solution with ``n`` non-blank lines);
- random-span (1,640 tasks): 10 spans per solution between two distinct random character
  positions (seeded, so the set is fixed).

The prefix is the problem's prompt plus the solution before the hole, the suffix the rest.
Scores: execution (``prefix + middle + suffix`` with the problem's tests, in the sandbox),
exact match (the stripped middle equals the stripped reference: the report's
"HumanEval-FIM EM") and edit similarity (``1 - levenshtein / max length``).
"""

from __future__ import annotations

import random

from qcoder_lib.evaluation.execute import score_programs
from qcoder_lib.evaluation.humaneval import humaneval_problems
from qcoder_lib.evaluation.results import SampleResult
from qcoder_lib.evaluation.task import Benchmark, Task

INFILLING_KINDS = ("single-line", "multi-line", "random-span")
PUBLISHED_COUNTS = {"single-line": 1033, "multi-line": 5815, "random-span": 1640}
SPANS_PER_PROBLEM = 10  # random-span tasks per problem


def _task(p: dict, kind: str, tag: str, prefix: str, middle: str, suffix: str) -> Task:
    name = {"single-line": "SingleLine", "multi-line": "MultiLine", "random-span": "RandomSpan"}
    return Task(
        task_id=f"{name[kind]}Infilling/{p['task_id']}/{tag}",
        prompt=p["prompt"] + prefix,
        suffix=suffix,
        reference=middle,
        check={"test": p["test"], "entry_point": p["entry_point"]},
    )


def infilling_tasks(kind: str, problems=None, seed: int = 0) -> list[Task]:
    """The ``kind`` (one of :data:`INFILLING_KINDS`) infilling tasks of ``problems`` (default:
    the 164 of HumanEval), in problem order."""
    if kind not in INFILLING_KINDS:
        raise ValueError(f"infilling kind {kind!r}: choose one of {INFILLING_KINDS}")
    tasks: list[Task] = []
    for p in problems if problems is not None else humaneval_problems():
        sol = p["canonical_solution"]
        lines = sol.splitlines(keepends=True)
        filled = [i for i, line in enumerate(lines) if line.strip()]
        if kind == "single-line":
            for i in filled:
                tasks.append(_task(p, kind, f"L{i}", "".join(lines[:i]), lines[i],
                                   "".join(lines[i + 1 :])))
        elif kind == "multi-line":
            for a, i in enumerate(filled):
                for j in filled[a:]:
                    tasks.append(_task(p, kind, f"L{i}_L{j}", "".join(lines[:i]),
                                       "".join(lines[i : j + 1]), "".join(lines[j + 1 :])))
        else:
            rng = random.Random(f"{seed}/{p['task_id']}")
            for s in range(SPANS_PER_PROBLEM):
                i, j = sorted(rng.sample(range(len(sol) + 1), 2))
                tasks.append(_task(p, kind, str(s), sol[:i], sol[i:j], sol[j:]))
    return tasks


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of characters)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def edit_similarity(a: str, b: str) -> float:
    """``1 - levenshtein(a, b) / max(len(a), len(b))`` of the stripped strings (1.0 if both
    are empty)."""
    a, b = a.strip(), b.strip()
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def score_infilling(
    tasks: list[Task], completions: list[list[str]], workers: int | None = None
) -> list[SampleResult]:
    """Execute ``prefix + completion + suffix`` with the tests, and add ``exact_match`` and
    ``edit_similarity`` against the reference middle to each result's scores."""
    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} tasks but {len(completions)} completion lists")
    items, refs = [], []
    for t, cs in zip(tasks, completions):
        for c in cs:
            items.append((t.task_id, c, {"solution": t.prompt + c + (t.suffix or ""),
                                         "tests": t.check["test"],
                                         "entry_point": t.check["entry_point"]}))
            refs.append(t.reference)
    results = score_programs(items, workers=workers)
    for r, ref in zip(results, refs):
        r.scores["exact_match"] = float(r.completion.strip() == ref.strip())
        r.scores["edit_similarity"] = edit_similarity(r.completion, ref)
    return results


def infilling_benchmark(kind: str = "single-line", limit: int | None = None) -> Benchmark:
    """One infilling task set as a :class:`Benchmark` (first ``limit`` tasks when given)."""
    tasks = infilling_tasks(kind)
    return Benchmark(f"humaneval-infill-{kind}", tasks, (), score_infilling,
                     max_new_tokens=128 if kind == "single-line" else 384,
                     description=f"HumanEval {kind} infilling (FIM), execution + exact match"
                     ).subset(limit)
