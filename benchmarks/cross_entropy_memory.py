"""Peak memory of the loss alone: plain ``F.cross_entropy(h @ W.T)`` vs the chunked linear +
cross-entropy of :mod:`qcoder_lib.kernels.cross_entropy` (forward + backward, fp32, on CPU or GPU).

    .venv/bin/python benchmarks/cross_entropy_memory.py                 # 1024 rows, V = 151,936
    .venv/bin/python benchmarks/cross_entropy_memory.py --rows 4096 --device cuda

Each variant runs in its own child process, so that one's allocations cannot hide the other's;
on CPU the figure is the child's peak resident memory (``ru_maxrss``) above what it held after
building the inputs, on CUDA ``torch.cuda.max_memory_allocated`` above the inputs. Also printed:
the time of one forward + backward and the largest difference of the loss and gradients.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(variant: str, rows: int, d: int, vocab: int, device: str) -> dict:
    """Build the inputs, run one fwd + bwd of ``variant``; its peak memory above the inputs."""
    import torch
    import torch.nn.functional as F

    from qcoder_lib.kernels.cross_entropy import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(rows, d, generator=g).to(device).requires_grad_(True)  # (N, d)
    w = (torch.randn(vocab, d, generator=g) * d**-0.5).to(device).requires_grad_(True)  # (V, d)
    t = torch.randint(0, vocab, (rows,), generator=g).to(device)  # (N,)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux: KiB)
    t0 = time.perf_counter()
    if variant == "plain":
        loss = F.cross_entropy(F.linear(h, w).float(), t)
    else:
        loss = linear_cross_entropy(h, w, t)
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"variant": variant, "seconds": time.perf_counter() - t0, "peak_bytes": peak,
            "loss": float(loss.detach()), "gh": h.grad.flatten()[:4096].tolist(),
            "gw": w.grad.flatten()[::997][:4096].tolist()}


def main(argv=None) -> int:
    """Run both variants in child processes and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1024, help="rows N of hidden (B x T tokens)")
    ap.add_argument("--hidden", type=int, default=896, help="width d (0.5B: 896)")
    ap.add_argument("--vocab", type=int, default=151_936, help="vocabulary V")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.hidden, args.vocab, args.device)))
        return 0
    res = {}
    for variant in ("plain", "chunked"):
        cmd = [sys.executable, __file__, "--child", variant, "--rows", str(args.rows),
               "--hidden", str(args.hidden), "--vocab", str(args.vocab), "--device", args.device]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        res[variant] = json.loads(out.strip().splitlines()[-1])
    p, c = res["plain"], res["chunked"]
    logits_gb = args.rows * args.vocab * 4 / 2**30
    print(f"loss of ({args.rows}, {args.hidden}) x ({args.vocab}, {args.hidden}), fwd + bwd, fp32, "
          f"{args.device}; one fp32 copy of the logits is {logits_gb:.2f} GiB")
    for name, r in res.items():
        print(f"  {name:<8} peak {r['peak_bytes'] / 2**30:6.2f} GiB above the inputs   "
              f"{r['seconds']:6.2f} s")
    print(f"  chunked / plain peak memory: {c['peak_bytes'] / max(p['peak_bytes'], 1):.2f}; "
          f"time: {c['seconds'] / p['seconds']:.2f}")
    dg = max(abs(a - b) for a, b in zip(p["gh"] + p["gw"], c["gh"] + c["gw"]))
    print(f"  |loss difference| {abs(p['loss'] - c['loss']):.1e}; largest gradient difference "
          f"(sampled) {dg:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
