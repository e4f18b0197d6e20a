"""``qcoder dpo``: preference pairs ranked by the sandbox, then DPO against the frozen SFT
model, with the greedy pass rate on the course's eval tasks before and after."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dpo`` and its options."""
    from qcoder_lib.cli import add_common_options

    p = subparsers.add_parser(
        "dpo", help="DPO with execution feedback on an SFT model",
        description="Sample several answers per training task (seed functions with tests) from "
                    "the SFT model, run them with the tests in the sandbox (pass = chosen, fail "
                    "= rejected; the verified reference answer is one more candidate), train "
                    "with the DPO loss against the frozen SFT model, and report the greedy pass "
                    "rate on the course's eval tasks before and after.")
    add_common_options(p, "run folder: final/ (HF format) and dpo.json go here")
    p.add_argument("--sft", required=True,
                   help="HF folder of the SFT model (`qcoder sft`'s final/)")
    p.add_argument("--samples", type=int, default=None,
                   help="answers sampled per task (default: the profile's)")
    p.add_argument("--steps", type=int, default=None, help="DPO steps (default: the profile's)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="sampling and shuffling")
    p.add_argument("--max-new-tokens", type=int, default=128,
                   help="length limit of sampled answers in tokens (default 128)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Run DPO and print the summary."""
    from qcoder_lib.runtime import get_profile
    from qcoder_lib.sft.recipe import run_dpo

    s = run_dpo(args.out, args.sft, profile=args.profile or get_profile(), samples=args.samples,
                steps=args.steps, beta=args.beta, lr=args.lr, seed=args.seed,
                max_new_tokens=args.max_new_tokens)
    print(f"answers and pairs: {s['pairs']}")
    print(f"DPO loss {s['loss_first']:.3f} -> {s['loss_last']:.3f}, reward margin "
          f"{s['reward_margin_last']:.3f}")
    print(f"greedy pass rate on {s['eval_tasks']} course eval tasks: "
          f"{s['pass_rate_before']:.2f} -> {s['pass_rate_after']:.2f}")
    print(f"model: final/ in {args.out}")
    return 0
