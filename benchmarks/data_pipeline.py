"""Throughput of the pretraining-data pipeline: MB of raw text per second, end to end.

    python benchmarks/data_pipeline.py [--profile smoke|cpu|gpu] [--engine] [--tokenizer]

End to end = read the sources, filter, deduplicate (exact + MinHash-LSH), decontaminate against
HumanEval and the course's eval sets, mix 70/20/10 and write token shards. Also prints each
stage alone on the same code documents, and with --engine the datatrove build of the same
sources (read + filter + decontaminate + MinHash dedup on the local executor).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcoder_lib.data.build import build_corpus, profile_config
from qcoder_lib.data.decontam import NGramIndex, decontaminate, default_eval_items
from qcoder_lib.data.dedup import dedup_documents
from qcoder_lib.data.filters import filter_documents
from qcoder_lib.data.sources import code_documents
from qcoder_lib.runtime import get_profile


def mb(docs) -> float:
    return sum(len(d.text.encode("utf-8")) for d in docs) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: QCODER_PROFILE)")
    ap.add_argument("--engine", action="store_true", help="also time the datatrove build")
    ap.add_argument(
        "--tokenizer",
        action="store_true",
        help="count tokens with the course tokenizer instead of bytes",
    )
    args = ap.parse_args()
    profile = args.profile or get_profile()
    cfg = profile_config(profile)
    tok = None
    if args.tokenizer:
        from qcoder_lib.tokenizer import course_tokenizer

        tok = course_tokenizer(profile)
    print(f"profile {profile}, {os.cpu_count()} CPU cores")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rep = build_corpus(Path(tmp) / "shards", cfg, tokenizer=tok)
        dt = time.perf_counter() - t0
    raw = rep.mix.bytes_in / 1e6
    read = sum(s.bytes_kept for s in rep.sources.values()) / 1e6
    print(rep.table())
    print(
        f"end to end: {read:.1f} MB of raw text read, {raw:.1f} MB mixed, in {dt:.1f} s = "
        f"{read / dt:.2f} MB/s read, {raw / dt:.2f} MB/s mixed "
        f"({rep.mix.total_tokens:,} tokens, {rep.mix.tokenizer})"
    )

    docs = list(
        code_documents(max_files=cfg.code_files, max_files_per_repo=cfg.code_files_per_repo)
    )
    size = mb(docs)
    index = NGramIndex(default_eval_items())
    for name, stage in [
        ("filters", lambda d: filter_documents(d)),
        ("dedup (exact + MinHash-LSH)", lambda d: dedup_documents(d)),
        ("decontamination (10-grams)", lambda d: decontaminate(d, index)),
    ]:
        t0 = time.perf_counter()
        n = sum(1 for _ in stage(iter(docs)))
        dt = time.perf_counter() - t0
        print(f"{name:30s} {size:7.1f} MB in {dt:6.2f} s = {size / dt:6.2f} MB/s ({n} docs out)")

    if args.engine:
        from qcoder_lib.data.engine import EngineConfig, engine_documents, run_engine

        workers = min(4, os.cpu_count() or 1)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            counts = run_engine(
                Path(tmp) / "engine", cfg, EngineConfig(tasks=workers, workers=workers)
            )
            dt = time.perf_counter() - t0
            out = mb(engine_documents(Path(tmp) / "engine"))
        print(
            f"datatrove ({workers} workers): {sum(counts['read'].values())} docs read, "
            f"{out:.1f} MB kept in {dt:.1f} s = {out / dt:.2f} MB/s (no tokenising or mixing)"
        )


if __name__ == "__main__":
    main()
