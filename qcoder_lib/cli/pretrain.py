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
    # issue 15: stage two (repository level, long context)
    p.add_argument("--stage", choices=("file", "repo"), default="file",
                   help="file: stage one (file level, the profile's row length); repo: stage "
                        "two, continue from --init on repository samples at 4x the row length "
                        "with RoPE base 1,000,000 (weights kept; optimizer and schedule restart)")
    p.add_argument("--init", default=None,
                   help="--stage repo: the stage-one model folder (e.g. OUT/run/final)")
    p.add_argument("--repos", nargs="*", default=None,
                   help="--stage repo: folders or git checkouts to read as repositories "
                        "(default: the installed packages)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Pretrain, then print a summary."""
    from qcoder_lib.runtime import get_profile
    from qcoder_lib.train.recipe import pretrain

    profile = args.profile or get_profile()
    if args.stage == "repo":  # issue 15
        return _run_repo_stage(args, profile)
    from qcoder_lib.train import TrainingInterrupted

    try:
        done = pretrain(profile, args.out, steps=args.steps, fim_rate=args.fim_rate,
                        resume=args.resume, progress=not args.no_progress, seed=args.seed,
                        dtype=args.dtype, grad_accum_steps=args.grad_accum, compile=args.compile,
                        activation_checkpointing=args.activation_checkpointing)
    except TrainingInterrupted as e:  # SIGTERM / Ctrl-C: a checkpoint was written
        print(f"stopped by {e.signal} after step {e.result.steps}: checkpoint-{e.result.steps} "
              "written; rerun with --resume to continue")
        return 130 if e.signal == "SIGINT" else 143
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
    print(f"model: {r.final_dir.relative_to(r.out_dir.parent.parent) if r.final_dir else '-'}")
    return 0


def _run_repo_stage(args, profile: str) -> int:
    """``--stage repo``: stage two from ``--init`` (see :func:`qcoder_lib.repo_level.repo_stage`)."""
    from pathlib import Path

    from qcoder_lib.data.sources.repos import site_package_repos
    from qcoder_lib.model.hf_interop import from_hf
    from qcoder_lib.repo_level import RepoLevelConfig, repo_seq_len, repo_stage, repo_stage_preset
    from qcoder_lib.tokenizer import course_tokenizer

    if not args.init:
        raise SystemExit("--stage repo needs --init: the stage-one model folder (OUT/run/final)")
    preset = repo_stage_preset(profile)
    seq_len = repo_seq_len(profile)
    roots = args.repos or site_package_repos()
    data = RepoLevelConfig(max_tokens=seq_len, max_repos=preset.max_repos,
                           samples_per_repo=preset.samples_per_repo,
                           max_files_per_repo=preset.max_files_per_repo)
    model = from_hf(args.init)
    done = repo_stage(model, course_tokenizer(profile), args.out, roots=roots, seq_len=seq_len,
                      steps=args.steps or preset.steps, batch_size=preset.batch_size,
                      lr=preset.lr, warmup_steps=preset.warmup_steps, data=data, seed=args.seed,
                      progress=not args.no_progress)
    r, d = done.result, done.data
    print(f"profile {profile} stage two: {d.samples:,} repository samples from {d.repos} "
          f"repositories ({d.tokens:,} tokens, longest {d.longest} <= {seq_len}); "
          f"{done.rows:,} rows of {seq_len}")
    print(f"RoPE base {done.rope_theta:,.0f}; {r.steps} steps, {r.tokens:,} tokens in "
          f"{r.seconds:.0f} s; loss {r.final_loss:.3f} (last step)")
    print(f"model: {Path(r.final_dir).name if r.final_dir else '-'} in {Path(args.out).name}/run")
    return 0
