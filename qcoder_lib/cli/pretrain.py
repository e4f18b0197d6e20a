"""``qcoder pretrain``: the pretraining stage of a profile, as notebook 06 runs it (course
tokenizer, the 70/20/10 corpus, FIM on code in PSM, the profile's model, train, ``final/``)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``pretrain`` and its options."""
    from qcoder_lib.cli import add_common_options

    p = subparsers.add_parser(
        "pretrain", help="pretrain the profile's model on the course corpus (next token + FIM)",
        description="Build (or reuse) the profile's course tokenizer and corpus, apply FIM to "
                    "the code documents, train the profile's model with a progress bar "
                    "(loss, tokens/s, MFU, ETA) and write metrics.jsonl, checkpoints and an "
                    "HF-format final/ model. SIGTERM or Ctrl-C saves a checkpoint; --resume "
                    "continues from it.")
    add_common_options(p, "run folder: fim-corpus/ and run/ (metrics.jsonl, checkpoint-N/, "
                          "final/) go here")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps (default: the profile's preset)")
    p.add_argument("--fim-rate", type=float, default=None,
                   help="share of code documents made FIM samples, 0..1 (default: 0.5)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out (same settings)")
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimizer step (same result, less memory)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each layer in the backward pass (less memory, ~30%% slower)")
    p.add_argument("--seed", type=int, default=0, help="data order, FIM draws and init")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Pretrain, then print a summary."""
    from qcoder_lib.runtime import get_profile
    from qcoder_lib.train.recipe import pretrain

    profile = args.profile or get_profile()
    done = pretrain(profile, args.out, steps=args.steps, fim_rate=args.fim_rate,
                    resume=args.resume, progress=not args.no_progress, seed=args.seed,
                    dtype=args.dtype, grad_accum_steps=args.grad_accum, compile=args.compile,
                    activation_checkpointing=args.activation_checkpointing)
    r = done.result
    fim = done.fim
    print(f"profile {profile}: {r.steps} steps, {r.tokens:,} tokens in {r.seconds:.0f} s")
    if fim.get("documents"):
        print(f"FIM: {fim['fim']:,} of {fim['code_documents']:,} code documents "
              f"({fim['documents']:,} in all); rows: {done.train_rows:,} train, "
              f"{done.held_out_rows:,} held out (split by document)")
    ev = "n/a" if r.eval_loss is None else f"{r.eval_loss:.3f} nats"
    bpb = "" if r.eval_bpb is None else f", {r.eval_bpb:.3f} bits/byte"
    print(f"loss {r.final_loss:.3f} (last step); held-out {ev}{bpb}")
    if r.stopped:
        print(f"stopped by {r.stopped}: checkpoint-{r.steps} written; rerun with --resume")
        return 130 if r.stopped == "SIGINT" else 143
    print(f"model: {r.final_dir.relative_to(r.out_dir.parent.parent) if r.final_dir else '-'}")
    return 0
