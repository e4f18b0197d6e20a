"""Math word problems with numeric answers, checked exactly (GSM8K style).

The answer is the last number the model writes (``1,234``, ``-7``, ``22.1``, ``9/2`` and
``4.50`` are read; a trailing ``%`` or ``$`` is ignored); it is right when it equals the
reference as an exact rational number (:class:`fractions.Fraction`): ``4.5 == 9/2``, but
``0.333`` is not ``1/3``. Nothing is executed. The course's problems are in
``data_samples/evaluation/math_word_problems.jsonl``; GSM8K records (``question``, ``answer``
ending in ``#### 72``) load through :func:`math_tasks` too.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

from qcoder_lib.evaluation.results import SampleResult
from qcoder_lib.evaluation.task import Benchmark, Task

PROBLEMS = ("evaluation", "math_word_problems.jsonl")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
MATH_STOP = ("\n\nQuestion:", "\nQuestion:", "\n\n\n")


def parse_number(text: str) -> Fraction | None:
    """``text`` (one number: ``"1,234"``, ``"-7"``, ``"22.1"``, ``"9/2"``) as an exact
    fraction, or None when it is not a number (or divides by zero)."""
    t = text.strip().rstrip("%.").lstrip("$").replace(",", "").replace(" ", "")
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(completion: str) -> Fraction | None:
    """The last number in ``completion`` (GSM8K's ``#### N`` wins when present), or None."""
    if "####" in completion:  # GSM8K: the first number after the last "####"
        found = _NUMBER.findall(completion.rsplit("####", 1)[1])[:1]
    else:
        found = _NUMBER.findall(completion)
    for cand in reversed(found):
        value = parse_number(cand)
        if value is not None:
            return value
    return None


def reference_answer(record: dict) -> str:
    """The reference answer of a record: ``answer`` itself, or what follows GSM8K's ``####``."""
    ans = str(record["answer"])
    return ans.rsplit("####", 1)[1].strip() if "####" in ans else ans.strip()


def math_tasks(records: list[dict] | None = None) -> list[Task]:
    """Tasks from records with ``question`` and ``answer`` (default: the course's set). The
    prompt is ``Question: ...\\nAnswer:``; the reference is ``" The answer is N."``."""
    if records is None:
        from qcoder_lib.io import resource_path

        lines = resource_path(*PROBLEMS).read_text(encoding="utf-8").splitlines()
        records = [json.loads(x) for x in lines if x.strip()]
    tasks = []
    for i, r in enumerate(records):
        ans = reference_answer(r)
        if parse_number(ans) is None:
            raise ValueError(f"math record {r.get('task_id', i)}: answer {ans!r} is not a number")
        tasks.append(Task(str(r.get("task_id", f"Math/{i}")), f"Question: {r['question']}\nAnswer:",
                          f" The answer is {ans}.", check={"answer": ans},
                          instruction=f"{r['question']}\nEnd your reply with the final answer "
                                      "as a number.", chat_answer="text"))
    return tasks


def score_math(tasks: list[Task], completions: list[list[str]], workers: int | None = None
               ) -> list[SampleResult]:
    """``passed`` when the last number of the completion equals the answer exactly;
    ``no_answer`` when it holds no number. (``workers`` is unused: nothing runs.)"""
    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} tasks but {len(completions)} completion lists")
    out = []
    for t, cs in zip(tasks, completions):
        gold = parse_number(t.check["answer"])
        for c in cs:
            got = extract_answer(c)
            if got is None:
                out.append(SampleResult(t.task_id, c, "no_answer", "no number in the answer"))
            elif got == gold:
                out.append(SampleResult(t.task_id, c, "passed"))
            else:
                out.append(SampleResult(t.task_id, c, "wrong_answer", f"{got} != {gold}"))
    return out


def math_benchmark(limit: int | None = None) -> Benchmark:
    """The course's math word problems as a :class:`Benchmark`."""
    return Benchmark("math", math_tasks(), MATH_STOP, score_math, max_new_tokens=128,
                     description="math word problems, numeric answer checked exactly"
                     ).subset(limit)
