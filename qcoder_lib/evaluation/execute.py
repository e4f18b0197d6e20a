"""Scoring completions by running them: every program goes through :mod:`qcoder_lib.sandbox`.

The parent first parses each program and its tests (:func:`~qcoder_lib.evaluation.results.syntax_error`:
parse only, nothing runs); programs that parse run in the sandbox with their tests
(:func:`~qcoder_lib.sandbox.check_program`, batched with :func:`~qcoder_lib.sandbox.run_many`),
and the verdict is the sandbox's completion-token proof, never what the program prints.
"""

from __future__ import annotations

import os

from qcoder_lib.evaluation.results import SampleResult, classify, syntax_error

DEFAULT_TIMEOUT_S = 10.0  # per program (wall clock); HumanEval's own harness uses 3 s of CPU


def default_workers() -> int:
    """Sandbox workers: ``$QCODER_EVAL_WORKERS`` or the CPU count."""
    return int(os.environ.get("QCODER_EVAL_WORKERS", "0")) or os.cpu_count() or 1


def score_programs(
    items: list[tuple[str, str, dict]],
    *,
    workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = 512,
) -> list[SampleResult]:
    """Score ``(task_id, completion, program)`` triples, in order. ``program`` holds
    :func:`~qcoder_lib.sandbox.check_program` arguments: ``solution``, ``tests`` and optionally
    ``entry_point``. The solution is parsed in the parent; only those that parse are run."""
    from qcoder_lib.sandbox import run_many

    out: list[SampleResult | None] = [None] * len(items)
    to_run, where = [], []
    for i, (task_id, completion, program) in enumerate(items):
        err = syntax_error(program["solution"]) or syntax_error(program.get("tests", ""))
        if err is not None:
            out[i] = SampleResult(task_id, completion, "syntax_error", err)
        else:
            to_run.append(program)
            where.append(i)
    if to_run:
        runs = run_many(to_run, workers=workers or default_workers(), timeout_s=timeout_s,
                        memory_mb=memory_mb)
        for i, res in zip(where, runs):
            outcome, detail = classify(res)
            out[i] = SampleResult(items[i][0], items[i][1], outcome, detail)
    return out  # type: ignore[return-value]
