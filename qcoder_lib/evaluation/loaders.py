"""Published benchmarks in their published formats: MBPP, MBPP+, HumanEval+, CRUXEval, GSM8K.

Online, :func:`load_records` fetches them with ``datasets`` by their hub names
(:data:`DATASETS`); offline, any local ``.jsonl`` file in the same format works, and the course
ships one small file per format under ``data_samples/eval_formats/`` (written for the course,
same fields) so that every loader is tested without a network. :func:`benchmark_from_records`
turns records into a :class:`~qcoder_lib.evaluation.task.Benchmark` scored like the original:

- MBPP / MBPP+: the prompt is the problem text and its first test in a docstring; the model
  writes the function; the tests (``test_list``, or MBPP+'s ``test`` script) run after it.
- HumanEval+: HumanEval's format with a stronger ``check``; scored like HumanEval.
- CRUXEval: output and input prediction (:mod:`.crux`); GSM8K: numeric answer (:mod:`.math`).
"""

from __future__ import annotations

import json
from pathlib import Path

from qcoder_lib.evaluation.crux import crux_tasks, score_crux
from qcoder_lib.evaluation.execute import score_programs
from qcoder_lib.evaluation.humaneval import HUMANEVAL_STOP, problem_task, score_function_completions
from qcoder_lib.evaluation.math import MATH_STOP, math_tasks, score_math
from qcoder_lib.evaluation.results import SampleResult
from qcoder_lib.evaluation.task import Benchmark, Task

# name: (hub dataset, config, split)
DATASETS = {
    "mbpp": ("google-research-datasets/mbpp", "full", "test"),
    "mbppplus": ("evalplus/mbppplus", None, "test"),
    "humanevalplus": ("evalplus/humanevalplus", None, "test"),
    "cruxeval": ("cruxeval-org/cruxeval", None, "test"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
}
MBPP_STOP = ('\n"""', "\nassert", "\nif __name__", "\nprint(", "\n# Test")


def local_sample(name: str) -> Path:
    """The course's small local file in the format of dataset ``name``."""
    from qcoder_lib.io import resource_path

    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return resource_path("eval_formats", f"{name}.jsonl")


def load_records(name: str, path: str | Path | None = None, limit: int | None = None
                 ) -> list[dict]:
    """Records of dataset ``name`` (a key of :data:`DATASETS`): from the ``.jsonl`` ``path``
    when given, else from the hub with ``datasets`` (needs a network or a warm cache)."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if path is not None:
        path = Path(path)
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path.name}:{n}: not JSON ({e.msg})") from None
    else:
        from datasets import load_dataset

        hub, config, split = DATASETS[name]
        records = [dict(r) for r in load_dataset(hub, config, split=split)]
    return records[:limit] if limit is not None else records


def mbpp_task(r: dict) -> Task:
    """A task from an MBPP or MBPP+ record (``text`` or ``prompt``; ``test_list`` / ``test``)."""
    text = r.get("text") or r.get("prompt") or ""
    tests = list(r.get("test_list") or [])
    if not text or not tests:
        raise ValueError(f"MBPP record {r.get('task_id')}: needs text/prompt and test_list")
    prompt = f'"""\n{text.strip()}\n{tests[0]}\n"""\n'
    setup = r.get("test_setup_code") or "\n".join(r.get("test_imports") or [])
    script = r.get("test") or "\n".join(tests + list(r.get("challenge_test_list") or []))
    return Task(f"MBPP/{r['task_id']}", prompt, r["code"].replace("\r\n", "\n") + "\n",
                check={"test": (setup + "\n" + script).strip() + "\n"},
                instruction=f"{text.strip()}\nYour code should pass this test:\n{tests[0]}\n"
                            "Reply with the Python code in a ```python code block.")


def score_mbpp(tasks: list[Task], completions: list[list[str]], workers: int | None = None
               ) -> list[SampleResult]:
    """Run ``prompt + completion`` then the task's test script in the sandbox."""
    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} tasks but {len(completions)} completion lists")
    items = [(t.task_id, c, {"solution": t.prompt + c, "tests": t.check["test"]})
             for t, cs in zip(tasks, completions) for c in cs]
    return score_programs(items, workers=workers)


def benchmark_from_records(name: str, records: list[dict], mode: str = "output") -> Benchmark:
    """A :class:`Benchmark` from records of dataset ``name`` (``mode`` picks CRUXEval's
    ``"output"`` or ``"input"`` prediction)."""
    if name in ("mbpp", "mbppplus"):
        return Benchmark(name, [mbpp_task(r) for r in records], MBPP_STOP, score_mbpp,
                         max_new_tokens=384, description=f"{name}: functions from a sentence "
                                                         "and one test")
    if name == "humanevalplus":
        return Benchmark(name, [problem_task(r) for r in records], HUMANEVAL_STOP,
                         score_function_completions, max_new_tokens=384,
                         description="HumanEval+: HumanEval with many more tests")
    if name == "cruxeval":
        recs = [dict(r, id=f"CRUXEval/{r['id']}") for r in records]
        return Benchmark(f"cruxeval-{mode}", crux_tasks(recs, mode), ("\n",), score_crux,
                         max_new_tokens=48, description=f"CRUXEval {mode} prediction")
    if name == "gsm8k":
        recs = [dict(r, task_id=r.get("task_id", f"GSM8K/{i}")) for i, r in enumerate(records)]
        return Benchmark(name, math_tasks(recs), MATH_STOP, score_math, max_new_tokens=256,
                         description="GSM8K grade-school math, exact numeric answer")
    raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
