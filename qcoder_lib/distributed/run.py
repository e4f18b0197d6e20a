"""The script ``torchrun`` starts on every rank: ``python -m qcoder_lib.distributed.run ...``.

::

    torchrun --nproc-per-node=2 -m qcoder_lib.distributed.run --out runs/ddp --strategy ddp

Each rank joins the process group (gloo on CPU, NCCL on GPU), builds the same model from the
same seed, and calls :func:`qcoder_lib.distributed.train.train_distributed`. Without torchrun the
same command trains in one process. The data is a token-shard folder (``--data``, as written by
:func:`qcoder_lib.data.build_corpus`) or, by default, :func:`counting_rows`: packed documents
that count upward with a random stride, which a small model learns within a few steps.

``main`` is wrapped in torch's ``@record``: when a rank raises, its traceback goes into the
error file torchrun gives it, torchrun stops every other rank, and
:func:`qcoder_lib.distributed.failure.collect_failures` shows which rank failed and why.
``--fail-rank R --fail-at-step S`` raises on purpose, to see exactly that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from qcoder_lib.distributed.strategy import STRATEGIES, init_distributed, shutdown_distributed


def counting_rows(n_rows: int, seq_len: int, vocab_size: int, seed: int = 0):
    """``n_rows`` packed rows of ``seq_len`` tokens (:class:`qcoder_lib.train.TokenRows`):
    documents of 8..``seq_len`` tokens that start at a random token and count upward by a random
    stride of 1-3 (mod ``vocab_size``); ``position_ids`` restart at each document. Learnable
    from context, so the loss falls fast; the same for every rank (seeded)."""
    from qcoder_lib.train import TokenRows

    g = torch.Generator().manual_seed(seed)
    ids = torch.empty(n_rows, seq_len + 1, dtype=torch.long)
    pos = torch.empty_like(ids)
    for r in range(n_rows):
        t = 0
        while t < seq_len + 1:
            n = int(torch.randint(8, max(9, seq_len), (1,), generator=g))
            n = min(n, seq_len + 1 - t)
            start = int(torch.randint(0, vocab_size, (1,), generator=g))
            stride = int(torch.randint(1, 4, (1,), generator=g))
            ids[r, t:t + n] = (start + stride * torch.arange(n)) % vocab_size
            pos[r, t:t + n] = torch.arange(n)
            t += n
    return TokenRows.from_windows(ids, pos, "counting")


def build_parser() -> argparse.ArgumentParser:
    """Options of the per-rank script (``--help`` explains each)."""
    p = argparse.ArgumentParser(prog="python -m qcoder_lib.distributed.run",
                                description="Train a Qwen2 model on this rank of a torchrun job.")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, checkpoints, final/")
    p.add_argument("--strategy", choices=STRATEGIES, default="ddp",
                   help="single: one process; ddp: replicate + all-reduce; fsdp2: shard")
    p.add_argument("--preset", default="smoke", help="model preset (smoke, cpu, gpu, 0.5B, ...)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="embedding rows (default: 256 on synthetic data, else the preset's: the "
                        "course tokenizer's size)")
    p.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    p.add_argument("--data", default=None, help="token-shard folder; default: counting_rows")
    p.add_argument("--rows", type=int, default=64, help="synthetic rows (without --data)")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="GLOBAL rows per step (all ranks)")
    p.add_argument("--seq-len", type=int, default=32, help="tokens per row")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step per rank")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=1, help="warm-up steps")
    p.add_argument("--checkpoint-every", type=int, default=0, help="DCP checkpoint every N steps")
    p.add_argument("--eval-every", type=int, default=0,
                   help="held-out loss every N steps (synthetic held-out rows; 0: never)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--seed", type=int, default=0, help="model init and data order")
    p.add_argument("--device", choices=("auto", "cpu"), default="auto",
                   help="auto: this rank's GPU with NCCL (or the GPU of a single process), "
                        "else the CPU; cpu: always the CPU")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds any collective may wait for a peer before raising")
    p.add_argument("--fail-rank", type=int, default=None, help="raise on this rank (a demo)")
    p.add_argument("--fail-at-step", type=int, default=1, help="... after this many steps")
    return p


class InjectedFailure(RuntimeError):
    """Raised by ``--fail-rank``: a deliberate crash to show failure handling."""


@record
def main(argv: list[str] | None = None) -> int:
    """Run this rank: join the group, train, write ``result.json`` (rank 0), leave the group."""
    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.train import TrainConfig, train

    args = build_parser().parse_args(argv)
    info = init_distributed(timeout_s=args.timeout)
    out = Path(args.out)
    (out / "pids").mkdir(parents=True, exist_ok=True)
    (out / "pids" / f"rank{info.rank}.pid").write_text(str(os.getpid()))
    try:
        overrides = {"num_hidden_layers": args.layers} if args.layers else {}
        vocab = args.vocab_size or (None if args.data else 256)
        mcfg = QwenConfig.preset(args.preset, vocab_size=vocab, **overrides)
        torch.manual_seed(args.seed)  # the same initial weights on every rank
        model = QwenForCausalLM(mcfg).to("cpu" if args.device == "cpu" else info.device)
        held_out = None
        if args.data:
            data = args.data
        else:
            data = counting_rows(args.rows, args.seq_len, mcfg.vocab_size, args.seed)
            if args.eval_every:
                held_out = counting_rows(16, args.seq_len, mcfg.vocab_size, args.seed + 1)
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                          grad_accum_steps=args.grad_accum, lr=args.lr, min_lr=args.lr / 10,
                          warmup_steps=args.warmup, checkpoint_every=args.checkpoint_every,
                          keep_last=0, seed=args.seed, out_dir=str(out), dtype="auto",
                          strategy=args.strategy, progress=False, eval_every=args.eval_every)

        def maybe_fail(record_: dict) -> None:
            if info.rank == args.fail_rank and record_["step"] >= args.fail_at_step:
                raise InjectedFailure(f"rank {info.rank} fails on purpose after step "
                                      f"{record_['step']} (--fail-rank {args.fail_rank})")

        # qcoder_lib.train.train: the library's loop; ddp / fsdp2 go to train_distributed
        res = train(model, data, cfg, held_out, resume=args.resume, on_step=maybe_fail)
        if info.is_main:
            (out / "result.json").write_text(json.dumps({
                "losses": res.losses, "steps": res.steps, "world_size": info.world_size,
                "strategy": args.strategy, "resumed_from": res.resumed_from,
                "tokens": res.tokens, "seconds": res.seconds, "eval_loss": res.eval_loss,
                "state_bytes_rank0": getattr(res, "state_bytes", None)}, indent=1), encoding="utf-8")
            print(f"rank 0: {args.strategy} on {info.world_size} rank(s), {res.steps} steps, "
                  f"loss {res.losses[0] if res.losses else float('nan'):.4f} -> "
                  f"{res.losses[-1] if res.losses else float('nan'):.4f}")
        if info.world_size > 1:  # leave together: a rank that tears its gloo pairs down while
            torch.distributed.barrier()  # a peer still works can abort the peer at exit
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
