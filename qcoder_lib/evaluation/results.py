"""One scored sample, how a failure is named, and a benchmark's summary (pass@k, failures).

Every benchmark of :mod:`qcoder_lib.evaluation` turns each (task, completion) into a
:class:`SampleResult` whose ``outcome`` is one of :data:`OUTCOMES`:

- ``passed``: the tests ran to completion (the sandbox's completion token) / the answer matched;
- ``syntax_error``: the program does not parse (checked with :func:`ast.parse` in the parent,
  which compiles but never runs it, so such samples cost no sandbox run);
- ``wrong_answer``: it ran but a test's assertion failed, or the answer differs;
- ``runtime_error``: an exception other than ``AssertionError`` (``detail`` names it);
- ``early_exit``: the program ended the process before the tests finished (``sys.exit``,
  ``os._exit``, killing the harness): a failure, never a pass;
- ``no_tests``: the tests ran but no check executed (the completion replaced ``check`` or the
  asserts never ran): a failure, never a pass;
- ``timeout``, ``memory``, ``crashed``, ``killed``: the sandbox's statuses;
- ``no_answer``: nothing could be extracted from the completion (e.g. no number).
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from qcoder_lib.evaluation.passk import mean_pass_at_k

OUTCOMES = (
    "passed",
    "syntax_error",
    "wrong_answer",
    "runtime_error",
    "early_exit",
    "no_tests",
    "timeout",
    "memory",
    "crashed",
    "killed",
    "no_answer",
)
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)|KeyboardInterrupt|StopIteration)\b")


@dataclass
class SampleResult:
    """The verdict on one completion of one task."""

    task_id: str  # the task's id, e.g. "HumanEval/0"
    completion: str  # what the model wrote (after truncation at the stop sequences)
    outcome: str  # one of OUTCOMES
    detail: str = ""  # exception name, sandbox reason, expected vs. got ...
    scores: dict = field(default_factory=dict)  # extra per-sample scores (exact_match, edit_sim)

    @property
    def passed(self) -> bool:
        """True when the outcome is ``passed``."""
        return self.outcome == "passed"

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


def syntax_error(program: str) -> str | None:
    """The parse error of ``program`` as ``"SyntaxError: msg (line N)"``, or None if it parses.
    Only parses (never runs) the code."""
    try:
        ast.parse(program)
    except SyntaxError as e:  # IndentationError and TabError are SyntaxErrors
        return f"{type(e).__name__}: {e.msg} (line {e.lineno})"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return f"{type(e).__name__}: {e}"
    return None


def exception_name(stderr: str) -> str:
    """The exception named by the last traceback line of ``stderr`` (``""`` if none)."""
    for line in reversed(stderr.strip().splitlines()):
        m = _EXC_LINE.match(line.strip())
        if m:
            return m.group(1).rsplit(".", 1)[-1]
    return ""


def classify(exec_result) -> tuple[str, str]:
    """``(outcome, detail)`` for a sandbox :class:`~qcoder_lib.sandbox.ExecResult` of a check."""
    status = exec_result.status
    if status == "passed":
        return "passed", ""
    if status in ("timeout", "memory", "crashed", "killed"):
        return status, exec_result.reason
    if status == "no_tests":
        return "no_tests", exec_result.reason
    exc = exception_name(exec_result.stderr)
    if exc in ("SyntaxError", "IndentationError", "TabError"):
        return "syntax_error", exc
    if exc == "AssertionError":
        return "wrong_answer", exc
    if exc in ("SystemExit", "KeyboardInterrupt") or (
        exec_result.exit_code == 0 or "did not finish" in exec_result.reason
    ):
        return "early_exit", exc or exec_result.reason
    if exc == "MemoryError":
        return "memory", exc
    return "runtime_error", exc or exec_result.reason


@dataclass
class BenchmarkSummary:
    """What one model scored on one benchmark."""

    benchmark: str  # e.g. "humaneval"
    n_tasks: int  # tasks scored
    n_samples: int  # samples per task (the n of pass@k)
    pass_at: dict  # {k: pass@k in [0, 1]} for every k <= n_samples asked for
    outcomes: dict  # {outcome: count over all samples}
    extra: dict = field(default_factory=dict)  # mean of per-sample scores (exact_match ...)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (pass@k keys as ``"pass@1"`` ...)."""
        d = asdict(self)
        d["pass_at"] = {f"pass@{k}": v for k, v in self.pass_at.items()}
        return d


def summarize(benchmark: str, results: list[SampleResult], ks=(1, 10, 100)) -> BenchmarkSummary:
    """pass@k (unbiased, per task then averaged) for each ``k`` not above the smallest sample
    count, the outcome counts, and the mean of every per-sample score."""
    if not results:
        raise ValueError(f"summarize({benchmark!r}): no results")
    per_task: dict[str, list[SampleResult]] = defaultdict(list)
    for r in results:
        per_task[r.task_id].append(r)
    ns = [len(v) for v in per_task.values()]
    cs = [sum(r.passed for r in v) for v in per_task.values()]
    pass_at = {k: mean_pass_at_k(ns, cs, k) for k in ks if k <= min(ns)}
    outcomes = dict(Counter(r.outcome for r in results).most_common())
    keys = sorted({k for r in results for k in r.scores})
    extra = {k: sum(float(r.scores.get(k, 0.0)) for r in results) / len(results) for k in keys}
    return BenchmarkSummary(benchmark, len(per_task), min(ns), pass_at, outcomes, extra)
