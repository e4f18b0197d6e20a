"""``qcoder sft``: instruction data from real code, then coarse-to-fine SFT (full, LoRA or
QLoRA) of a pretrained model, as notebook 09 runs it."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sft`` and its options."""
    from qcoder_lib.cli import add_common_options

    p = subparsers.add_parser(
        "sft", help="instruction data + supervised fine-tuning (full, LoRA, QLoRA)",
        description="Derive instruction pairs from real code (the course's seed file in six "
                    "languages and the Python standard library), check them (tree-sitter parse, "
                    "tests in the sandbox), score, deduplicate and decontaminate them, mix in FIM "
                    "instructions, then fine-tune in two stages (stage 1: all pairs; stage 2: "
                    "pairs verified by tests plus rejection samples). Loss only on assistant "
                    "turns (ChatML).")
    add_common_options(p, "run folder: data/instructions.jsonl, data/report.json and final/ "
                          "(HF format; QLoRA: adapter/) go here")
    p.add_argument("--base", default=None,
                   help="HF folder or hub name of a Qwen2-family model, e.g. the final/ of "
                        "`qcoder pretrain` (default: a freshly initialised course model)")
    p.add_argument("--mode", choices=("full", "lora", "qlora"), default="full",
                   help="full fine-tuning, LoRA (r=8, alpha=32, dropout 0.1) or QLoRA (4-bit "
                        "NF4 base with LoRA; runs on CPU with bitsandbytes >= 0.48)")
    p.add_argument("--fim-share", type=float, default=0.1,
                   help="share of FIM instruction pairs in the mix, 0..1 (default 0.1)")
    p.add_argument("--stage1-steps", type=int, default=None,
                   help="optimizer steps of stage 1 (default: the profile's)")
    p.add_argument("--stage2-steps", type=int, default=None,
                   help="optimizer steps of stage 2 (default: a quarter of stage 1)")
    p.add_argument("--packing", action="store_true",
                   help="pack conversations into rows (default: right padding, as Qwen's script)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 1e-3 full, 3e-3 LoRA / QLoRA)")
    p.add_argument("--stdlib-functions", type=int, default=None,
                   help="documented stdlib functions added to the seed code (default: profile's)")
    p.add_argument("--seed", type=int, default=0, help="shuffling and FIM draws")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-new-tokens", type=int, default=128,
                   help="length limit of sampled answers in tokens (default 128)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Run the stage and print the pipeline table and the losses."""
    from qcoder_lib.runtime import get_profile
    from qcoder_lib.sft.recipe import run_sft

    profile = args.profile or get_profile()
    r = run_sft(args.out, profile=profile, base=args.base, mode=args.mode,
                fim_share=args.fim_share, stage1_steps=args.stage1_steps,
                stage2_steps=args.stage2_steps, packing=args.packing, lr=args.lr,
                stdlib_functions=args.stdlib_functions, progress=not args.no_progress,
                seed=args.seed, max_new_tokens=args.max_new_tokens)
    print(f"{'stage':<10} {'seen':>6} {'kept':>6}  dropped")
    for row in r.report_rows:
        print(f"{row['stage']:<10} {row['seen']:>6} {row['kept']:>6}  {row['dropped']}")
    print(f"pairs with FIM mix: {r.pairs}; trainable parameters {r.trainable:,} of {r.total:,}")
    for stage, losses in r.stage_losses.items():
        print(f"{stage}: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"stage-2 rejection sampling: {r.rejection}")
    print(f"model: {r.final_dir.name}/ in {args.out}")
    return 0
