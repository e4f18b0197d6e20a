"""Evaluation throughput: scoring HumanEval's canonical solutions through
``qcoder_lib.evaluation`` (parse check in the parent, then the sandbox with every layer).

    python benchmarks/eval_throughput.py                 # all 164, workers 1 and CPU count
    python benchmarks/eval_throughput.py --limit 40      # a quick look
    python benchmarks/eval_throughput.py --workers 1 2 4

It prints tasks/s per pool size and the speed-up over one worker, the rate for completions that
do not parse (judged in the parent without starting a sandbox), and single-line infilling tasks
(same programs, different text). Exit status 1 if a canonical solution does not pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcoder_lib.evaluation.humaneval import humaneval_benchmark
from qcoder_lib.evaluation.infilling import infilling_benchmark


def _rate(bench, comps, workers):
    t0 = time.perf_counter()
    res = bench.score(bench.tasks, comps, workers)
    dt = time.perf_counter() - t0
    return sum(len(c) for c in comps) / dt, dt, res


def main(argv=None) -> int:
    """Run the measurements and print them; 1 if any canonical solution fails."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="first N problems (default all)")
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help="pool sizes to compare (default: 1 and the CPU count)")
    args = ap.parse_args(argv)
    bench = humaneval_benchmark(args.limit)
    pools = args.workers or sorted({1, os.cpu_count() or 1})
    print(f"HumanEval canonical solutions: {len(bench.tasks)} tasks, CPUs: {os.cpu_count()}")
    base = None
    ok = True
    for w in pools:
        rate, dt, res = _rate(bench, bench.references(), w)
        passed = sum(r.passed for r in res)
        ok &= passed == len(res)
        base = base or rate
        print(f"  workers={w:<3d} {rate:6.1f} tasks/s  ({dt:5.1f} s, {passed}/{len(res)} passed, "
              f"x{rate / base:.2f} vs. workers={pools[0]})")
    rate, dt, res = _rate(bench, [["  return (\n"] for _ in bench.tasks], pools[-1])
    assert all(r.outcome == "syntax_error" for r in res)
    print(f"  syntax errors (parsed in the parent, no sandbox): {rate:8.0f} tasks/s")
    infill = infilling_benchmark("single-line", limit=len(bench.tasks))
    rate, dt, res = _rate(infill, infill.references(), pools[-1])
    ok &= all(r.passed for r in res)
    print(f"  single-line infilling references: {rate:6.1f} tasks/s ({len(res)} tasks)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
