"""What a benchmark is made of: :class:`Task` (one prompt and what checks its answer) and
:class:`Benchmark` (tasks, the stop sequences that end a completion, and the scorer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Task:
    """One evaluation item."""

    task_id: str  # unique within its benchmark, e.g. "HumanEval/0" or "SingleLine/HumanEval/0/L3"
    prompt: str  # the text the model continues
    reference: str  # the known-good answer (canonical solution, expected output, gold SQL ...)
    check: dict = field(default_factory=dict)  # what the scorer needs (tests, entry point, ...)
    instruction: str | None = None  # the user message for chat (instruct) models; None: none
    chat_answer: str = "code"  # how a chat reply becomes a completion: "code", "sql" or "text"
    suffix: str | None = None  # fill-in-the-middle tasks: the code after the hole (PSM prompt)


@dataclass
class Benchmark:
    """A named list of tasks with how to generate for them and how to score the answers."""

    name: str  # e.g. "humaneval"
    tasks: list[Task]  # the items
    stop: tuple[str, ...]  # a completion is cut before the first of these strings
    score: Callable  # score(tasks, completions: list[list[str]], workers) -> list[SampleResult]
    max_new_tokens: int = 256  # generation budget that fits the answers of this benchmark
    description: str = ""  # one line for tables and --help

    def references(self) -> list[list[str]]:
        """Each task's reference as its one completion (the oracle: scores 1.0 if the
        benchmark and its scorer agree)."""
        return [[t.reference] for t in self.tasks]

    def subset(self, limit: int | None) -> Benchmark:
        """The same benchmark on its first ``limit`` tasks (all when None)."""
        if limit is None:
            return self
        return Benchmark(self.name, self.tasks[:limit], self.stop, self.score,
                         self.max_new_tokens, self.description)
