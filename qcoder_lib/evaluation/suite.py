"""The benchmarks by name, running a model over them, and the evaluation texts that training
data must not contain.

:data:`BENCHMARKS` maps each offline benchmark's name to a factory ``(limit) -> Benchmark``;
:func:`evaluate` generates and scores one model on several of them and returns an
:class:`EvalRun` (summaries and every scored sample), which :mod:`.report` turns into tables
and plots. :func:`eval_texts` lists every evaluation item's text for decontamination.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from qcoder_lib.evaluation.crux import crux_benchmark
from qcoder_lib.evaluation.humaneval import humaneval_benchmark
from qcoder_lib.evaluation.infilling import infilling_benchmark
from qcoder_lib.evaluation.math import math_benchmark
from qcoder_lib.evaluation.model_api import SamplingConfig, load_eval_model
from qcoder_lib.evaluation.results import BenchmarkSummary, SampleResult, summarize
from qcoder_lib.evaluation.sql import sql_benchmark
from qcoder_lib.evaluation.task import Benchmark

BENCHMARKS: dict[str, Callable[[int | None], Benchmark]] = {
    "humaneval": humaneval_benchmark,
    "humaneval-infill-single-line": partial(infilling_benchmark, "single-line"),
    "humaneval-infill-multi-line": partial(infilling_benchmark, "multi-line"),
    "humaneval-infill-random-span": partial(infilling_benchmark, "random-span"),
    "crux-output": partial(crux_benchmark, "output"),
    "crux-input": partial(crux_benchmark, "input"),
    "sql": sql_benchmark,
    "math": math_benchmark,
}


# Published benchmarks read with `datasets` (online) or from a local file: ``name[=file.jsonl]``.
HUB_BENCHMARKS = ("mbpp", "mbppplus", "humanevalplus", "cruxeval-output", "cruxeval-input",
                  "gsm8k")


def get_benchmark(name: str, limit: int | None = None) -> Benchmark:
    """The benchmark ``name``, first ``limit`` tasks: a key of :data:`BENCHMARKS` (offline),
    or one of :data:`HUB_BENCHMARKS`, fetched with ``datasets`` by its hub name, or read from a
    local file in the published format when written ``name=path/to/file.jsonl``."""
    name, _, path = name.partition("=")
    if name in BENCHMARKS and not path:
        return BENCHMARKS[name](limit)
    if name in HUB_BENCHMARKS:
        from qcoder_lib.evaluation.loaders import benchmark_from_records, load_records

        dataset, _, mode = name.partition("-")
        records = load_records(dataset, path or None, limit=limit)
        return benchmark_from_records(dataset, records, mode=mode or "output")
    known = ", ".join([*BENCHMARKS, *HUB_BENCHMARKS])
    raise KeyError(f"unknown benchmark {name!r}; known: {known}")


@dataclass
class EvalRun:
    """One model's results on several benchmarks."""

    model: str  # the model's name
    sampling: dict  # the SamplingConfig used, as a dict
    summaries: dict[str, BenchmarkSummary] = field(default_factory=dict)  # per benchmark
    samples: dict[str, list[SampleResult]] = field(default_factory=dict)  # every scored sample
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per benchmark

    def to_dict(self, with_samples: bool = True) -> dict:
        """A JSON-serialisable dict (every sample too when ``with_samples``)."""
        d = {"model": self.model, "sampling": self.sampling, "seconds": self.seconds,
             "summaries": {k: v.to_dict() for k, v in self.summaries.items()}}
        if with_samples:
            d["samples"] = {k: [s.to_dict() for s in v] for k, v in self.samples.items()}
        return d

    def save(self, path) -> None:
        """Write :meth:`to_dict` as JSON to ``path`` (atomically)."""
        from qcoder_lib.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))


def evaluate(
    model, benchmarks: Sequence[str | Benchmark], sampling: SamplingConfig | None = None, *,
    limit: int | None = None, ks: Sequence[int] = (1, 10, 100), workers: int | None = None,
    max_new_tokens: int | None = None, progress: bool = False, tokenizer=None,
) -> EvalRun:
    """Generate for and score ``model`` (anything :func:`load_eval_model` takes) on each
    benchmark (names or :class:`Benchmark` objects; ``limit`` tasks each). The generation budget
    is the benchmark's own unless ``max_new_tokens`` is given. ``progress`` shows one tqdm bar
    per benchmark."""
    sampling = sampling or SamplingConfig()
    m = load_eval_model(model, tokenizer=tokenizer)
    run = EvalRun(m.name, vars(sampling).copy())
    for b in benchmarks:
        bench = get_benchmark(b, limit) if isinstance(b, str) else b.subset(limit)
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm  # plain text bars (tqdm.auto warns without ipywidgets)

            bar = tqdm(total=len(bench.tasks), desc=f"{m.name} · {bench.name}", unit="task")
        comps = m.complete(bench.tasks, sampling, stop=bench.stop,
                           max_new_tokens=max_new_tokens or bench.max_new_tokens, progress=bar)
        if bar is not None:
            bar.set_postfix_str("scoring")
        results = bench.score(bench.tasks, comps, workers)
        if bar is not None:
            bar.close()
        run.samples[bench.name] = results
        run.summaries[bench.name] = summarize(bench.name, results, ks)
        run.seconds[bench.name] = round(time.perf_counter() - t0, 2)
    return run


def eval_texts(include_humaneval: bool = False) -> list[tuple[str, str, str]]:
    """``(benchmark, task_id, text)`` for every evaluation item this package ships, for the
    data stage's decontamination: the SQL questions with their gold queries, the math problems,
    and the local samples of MBPP, MBPP+, HumanEval+, CRUXEval and GSM8K. HumanEval (and the
    infilling and CRUX-style tasks built from it) is added with ``include_humaneval``."""
    from qcoder_lib.evaluation.loaders import DATASETS, load_records, local_sample
    from qcoder_lib.io import resource_path

    out: list[tuple[str, str, str]] = []
    for fname, bench in (("sql_questions.jsonl", "course-sql"),
                         ("math_word_problems.jsonl", "course-math")):
        for line in resource_path("evaluation", fname).read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                text = "\n".join(str(v) for k, v in rec.items() if k != "task_id")
                out.append((bench, rec["task_id"], text))
    for name in DATASETS:
        for i, rec in enumerate(load_records(name, local_sample(name))):
            tid = str(rec.get("task_id", rec.get("id", f"{name}/{i}")))
            out.append((name, tid, "\n".join(_strings(rec))))
    if include_humaneval:
        from qcoder_lib.evaluation.humaneval import humaneval_problems

        for p in humaneval_problems():
            out.append(("humaneval", p["task_id"],
                        p["prompt"] + p["canonical_solution"] + "\n" + p["test"]))
    return out


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("task_id", "id") for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
