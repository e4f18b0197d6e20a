"""``qcoder eval``: evaluate models on the course's offline benchmarks (HumanEval, HumanEval
infilling, CRUX-style reasoning, text-to-SQL, math), with a progress bar per benchmark, a JSON
result file per model, ``results.json`` with every summary, and ``report.md`` with a plot."""

from __future__ import annotations

import argparse
import json

DEFAULT_BENCHMARKS = ("humaneval", "humaneval-infill-single-line", "crux-output", "crux-input",
                      "sql", "math")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` and its options."""
    from qcoder_lib.cli import add_common_options
    from qcoder_lib.evaluation.suite import BENCHMARKS, HUB_BENCHMARKS

    p = subparsers.add_parser(
        "eval", help="evaluate models (pass@k in the sandbox) and write a report",
        description="Generate completions with each model and score them by execution in the "
                    "sandbox (pass@k), by exact match, or by result sets (SQL).")
    add_common_options(p, "folder for report.md, results.png, results.json and <model>.json")
    p.add_argument("--model", action="append", required=True, metavar="PATH_OR_NAME",
                   help="a model folder (e.g. a training run's final/) or hub name; repeat for "
                        "several models; 'reference' scores every task's reference answer "
                        "(the oracle: 100%% when a benchmark is consistent)")
    p.add_argument("--backend", choices=("auto", "course", "hf", "vllm"), default="hf",
                   help="course: the course's model class (Qwen2 checkpoints); hf: transformers "
                        "(default); vllm: vLLM on a GPU; auto: vLLM when available, else hf")
    p.add_argument("--chat", action="store_true",
                   help="instruct models: put each task's instruction (HumanEval, MBPP, SQL, "
                        "math) as a chat turn and take the answer from the reply's code block")
    p.add_argument("--benchmarks", default=",".join(DEFAULT_BENCHMARKS),
                   help="comma-separated names; offline: " + ", ".join(BENCHMARKS) + "; "
                        "published sets (online with `datasets`, or NAME=file.jsonl in the "
                        "published format): " + ", ".join(HUB_BENCHMARKS))
    p.add_argument("--limit", type=int, default=None,
                   help="first N tasks of each benchmark (default: all; smoke profile: 8)")
    p.add_argument("--n", type=int, default=1, help="samples per task (the n of pass@k)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (batch b uses seed + b)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation budget (default: each benchmark's own)")
    p.add_argument("--workers", type=int, default=None,
                   help="sandbox processes at once (default: CPU count)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Evaluate every ``--model`` on every benchmark, write the files, print a summary."""
    from pathlib import Path

    from qcoder_lib.evaluation.model_api import ReferenceModel, SamplingConfig
    from qcoder_lib.evaluation.report import results_table, write_report
    from qcoder_lib.evaluation.suite import evaluate, get_benchmark
    from qcoder_lib.io import atomic_write_text
    from qcoder_lib.runtime import by_profile

    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    limit = args.limit if args.limit is not None else by_profile(8, None, None)
    benches = [get_benchmark(b, limit) for b in names]  # unknown names fail before any model
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p, n=args.n,
                              seed=args.seed, batch_size=args.batch_size)
    runs = []
    for spec in args.model:
        if spec == "reference":
            model = ReferenceModel()
        else:
            from qcoder_lib.evaluation.model_api import load_eval_model

            model = load_eval_model(spec, backend=args.backend, chat=args.chat)
        runs.append(evaluate(model, benches, sampling, max_new_tokens=args.max_new_tokens,
                             workers=args.workers, progress=True))
    out = Path(args.out)
    report = write_report(runs, out)
    atomic_write_text(out / "results.json",
                      json.dumps([r.to_dict(with_samples=False) for r in runs], indent=1))
    print(results_table(runs))
    print(f"wrote {report.name}, results.json, results.png and one JSON per model to {out.name}/")
    return 0
