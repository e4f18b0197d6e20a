"""A small sweep for a profile's pretraining preset: which model size, sequence length, batch
and learning rate reach the lowest held-out loss in a fixed wall-clock budget?

For each candidate: time a few steps to measure tokens/s on this machine, set the step count
that fills ``--budget-s`` seconds, train from scratch on the profile's FIM corpus (held-out split
by document), and report held-out loss. Prints one row per candidate (tokens/s x steps vs loss)
and the best. On a shared machine tokens/s is noisy: rerun the best two before changing
``qcoder_lib/train/recipe.py``'s presets.

    .venv/bin/python benchmarks/train_sweep.py --profile cpu --budget-s 60
    .venv/bin/python benchmarks/train_sweep.py --profile smoke --budget-s 10 --only 0,1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict

# (name, model overrides, seq_len, batch_size, lr): the cpu profile's candidates
CANDIDATES = [
    ("cpu preset 6x256, T256", {}, 256, 16, 2e-3),
    ("4x256, T256", {"num_hidden_layers": 4}, 256, 16, 2e-3),
    ("4x256, T256, lr 3e-3", {"num_hidden_layers": 4}, 256, 16, 3e-3),
    ("4x192, T256", {"num_hidden_layers": 4, "hidden_size": 192, "intermediate_size": 512,
                     "num_attention_heads": 6}, 256, 16, 3e-3),
    ("4x256, T128, B32", {"num_hidden_layers": 4}, 128, 32, 2e-3),
    ("3x256, T256", {"num_hidden_layers": 3}, 256, 16, 3e-3),
]


def main() -> None:
    """Run the candidates and print the table."""
    from qcoder_lib.tokenizer import course_tokenizer
    from qcoder_lib.train import ShardRows, train
    from qcoder_lib.train.recipe import (
        PretrainPreset,
        course_corpus,
        course_model,
        fim_corpus,
        pretrain_preset,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    ap.add_argument("--budget-s", type=float, default=60.0, help="training seconds per candidate")
    ap.add_argument("--only", default=None, help="comma-separated candidate numbers")
    ap.add_argument("--eval-rows", type=int, default=64, help="held-out rows scored")
    args = ap.parse_args()

    base = pretrain_preset(args.profile)
    tok = course_tokenizer(args.profile)
    picked = range(len(CANDIDATES)) if args.only is None else map(int, args.only.split(","))
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        fim_corpus(course_corpus(args.profile, tok), tok, base.fim_rate, f"{tmp}/fim")
        for i in picked:
            name, model_over, T, B, lr = CANDIDATES[i]
            preset = PretrainPreset(**{**asdict(base), "model": model_over, "seq_len": T,
                                       "batch_size": B, "lr": lr})
            train_rows, held = ShardRows(f"{tmp}/fim", T).split(base.held_out, seed=0)
            probe = preset.train_config(f"{tmp}/probe{i}", steps=4, warmup_steps=1,
                                        checkpoint_every=0, eval_every=0, progress=False)
            t0 = time.perf_counter()
            train(course_model(args.profile, tok, preset), train_rows, probe)
            per_step = (time.perf_counter() - t0) / 4
            steps = max(10, int(args.budget_s / per_step))
            cfg = preset.train_config(f"{tmp}/run{i}", steps=steps, warmup_steps=max(steps // 20, 1),
                                      checkpoint_every=0, eval_every=steps,
                                      eval_rows=args.eval_rows, progress=False)
            model = course_model(args.profile, tok, preset)
            res = train(model, train_rows, cfg, eval_data=held, tokenizer=tok)
            tps = cfg.batch_size * T * steps / res.seconds
            rows_out.append((name, model.num_params().total, tps, steps, res.eval_loss,
                             res.eval_bpb, res.seconds))
            print(f"[{i}] {name:26s} {rows_out[-1][1]:>10,} params {tps:9,.0f} tok/s "
                  f"{steps:5d} steps -> held-out {res.eval_loss:.3f} nats "
                  f"({res.eval_bpb:.3f} bits/byte) in {res.seconds:.0f} s", flush=True)
    best = min(rows_out, key=lambda r: r[4])
    print(f"best in {args.budget_s:.0f} s: {best[0]} (held-out {best[4]:.3f} nats)")


if __name__ == "__main__":
    main()
