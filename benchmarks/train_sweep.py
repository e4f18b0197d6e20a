"""A small sweep for a profile's pretraining preset: which vocabulary, model shape, sequence
length, batch and learning rate reach the lowest held-out loss in a fixed wall-clock budget, and
do greedy completions of held-out function heads parse?

For each candidate: train 14 steps and time the last 10 (tokens/s on this machine), set the step
count that fills ``--budget-s`` seconds, train from scratch on the profile's FIM corpus built
with a course tokenizer of the candidate's vocabulary (held-out split by document), and report
the held-out loss (nats per token and bits per byte, on ``--eval-rows`` rows spread over the
held-out split) and the shares of ``--heads`` completions that parse as they stand and that are
valid Python so far (``probes.check_completions``). Nats per token depend on the
vocabulary (a smaller one cuts text into more, easier tokens); bits per byte do not, so compare
vocabularies by bits per byte.

Each vocabulary needs its tokenizer and corpus (about 2 minutes on 2 cores the first time; cached
under ``artifacts/``). On a shared machine tokens/s is noisy: rerun the best two before changing
``qcoder_lib/train/recipe.py``'s presets.

    .venv/bin/python benchmarks/train_sweep.py --profile cpu --budget-s 150 --only 1,3,6,10
    .venv/bin/python benchmarks/train_sweep.py --profile cpu --budget-s 300 --only 10,11
    .venv/bin/python benchmarks/train_sweep.py --profile smoke --budget-s 10 --only 0
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict

# (name, vocabulary (regular tokens), model overrides, seq_len, batch_size, lr); the numbers of
# the 2026-11-30 sweep on 2 idle cores are in benchmarks/results/2026-11-30-cpu-train-sweep.md
# full shapes (overrides of QwenConfig.preset(profile), whose cpu shape is the sweep's winner)
W256 = {"hidden_size": 256, "intermediate_size": 704, "num_attention_heads": 8}
W128 = {"hidden_size": 128, "intermediate_size": 384, "num_attention_heads": 4}
CANDIDATES = [
    ("the profile's preset", None, None, None, None, None),
    ("v8192 4x256 T256 B16", 8192, {"num_hidden_layers": 4, **W256}, 256, 16, 2e-3),
    ("v4096 4x256 T256 B16", 4096, {"num_hidden_layers": 4, **W256}, 256, 16, 3e-3),
    ("v2048 4x256 T256 B16", 2048, {"num_hidden_layers": 4, **W256}, 256, 16, 3e-3),
    ("v4096 4x256 T128 B8", 4096, {"num_hidden_layers": 4, **W256}, 128, 8, 5e-3),
    ("v2048 4x256 T128 B8", 2048, {"num_hidden_layers": 4, **W256}, 128, 8, 5e-3),
    ("v2048 2x128 T128 B8", 2048, {"num_hidden_layers": 2, **W128}, 128, 8, 1e-2),
    ("v2048 2x128 T128 B8 lr2e-2", 2048, {"num_hidden_layers": 2, **W128}, 128, 8, 2e-2),
    ("v2048 3x128 T128 B8", 2048, {"num_hidden_layers": 3, **W128}, 128, 8, 1e-2),
    ("v2048 4x128 T128 B8", 2048, {"num_hidden_layers": 4, **W128}, 128, 8, 1e-2),
    ("v2048 2x128 T128 B16", 2048, {"num_hidden_layers": 2, **W128}, 128, 16, 1e-2),
    ("v2048 3x128 T128 B16", 2048, {"num_hidden_layers": 3, **W128}, 128, 16, 1e-2),
]


def held_out_python(fim_dir, tok, held_out: float, seed: int = 0) -> list[str]:
    """The held-out Python files (left-to-right documents) of a FIM corpus, as text."""
    from qcoder_lib.data import TokenShards
    from qcoder_lib.fim import is_code
    from qcoder_lib.tokenizer import decode
    from qcoder_lib.train.rows import held_out_mask

    shards = TokenShards(fim_dir)
    spans = list(shards.spans())
    mask = held_out_mask(len(spans), held_out, seed)
    return [decode(tok, shards.document_ids(s)[:-1].tolist()) for s, m in zip(spans, mask)
            if m and is_code(s.meta) and s.meta.get("fim") == "plain"
            and str(s.meta.get("path", "")).endswith(".py")]


def main() -> None:
    """Run the candidates and print the table."""
    from qcoder_lib.io import artifacts_dir
    from qcoder_lib.tokenizer import COURSE_VOCAB_SIZE, course_tokenizer
    from qcoder_lib.train import ShardRows, evaluate, token_byte_lengths, train
    from qcoder_lib.train.probes import check_completions, function_heads
    from qcoder_lib.train.recipe import (
        PretrainPreset,
        course_corpus,
        course_model,
        fim_corpus,
        pretrain_preset,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    ap.add_argument("--budget-s", type=float, default=150.0, help="training seconds per candidate")
    ap.add_argument("--only", default=None, help="comma-separated candidate numbers")
    ap.add_argument("--eval-rows", type=int, default=256, help="held-out rows scored")
    ap.add_argument("--heads", type=int, default=40, help="function heads completed")
    args = ap.parse_args()

    base = pretrain_preset(args.profile)
    picked = range(len(CANDIDATES)) if args.only is None else map(int, args.only.split(","))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in picked:
            name, vocab, model_over, T, B, lr = CANDIDATES[i]
            vocab = vocab or COURSE_VOCAB_SIZE[args.profile]
            preset = base if model_over is None else PretrainPreset(**{
                **asdict(base), "model": model_over, "seq_len": T, "batch_size": B, "lr": lr})
            tok = course_tokenizer(args.profile, vocab_size=vocab)
            folder = (None if vocab == COURSE_VOCAB_SIZE[args.profile]
                      else artifacts_dir() / "pretrain" / f"corpus-{args.profile}-{vocab}")
            fim_dir = f"{tmp}/fim-{vocab}"
            if not os.path.exists(fim_dir):
                fim_corpus(course_corpus(args.profile, tok, folder), tok, base.fim_rate, fim_dir)
            train_rows, held = ShardRows(fim_dir, preset.seq_len).split(base.held_out, seed=0)

            stamps = []
            probe = preset.train_config(f"{tmp}/probe{i}", steps=14, warmup_steps=1,
                                        checkpoint_every=0, eval_every=0, progress=False)
            train(course_model(args.profile, tok, preset), train_rows, probe,
                  on_step=lambda r, stamps=stamps: stamps.append(time.perf_counter()))
            per_step = (stamps[-1] - stamps[3]) / 10
            steps = max(10, int(args.budget_s / per_step))
            cfg = preset.train_config(f"{tmp}/run{i}", steps=steps, checkpoint_every=0,
                                      warmup_steps=max(steps // 20, 5), eval_every=0,
                                      progress=False)
            model = course_model(args.profile, tok, preset)
            res = train(model, train_rows, cfg)
            ev = evaluate(model, held, 16, args.eval_rows,  # rows spread over the split
                          token_bytes=token_byte_lengths(tok, model.config.vocab_size))
            heads = function_heads(held_out_python(fim_dir, tok, base.held_out), args.heads)
            checks = check_completions(model, tok, heads, max_new_tokens=128)
            share = sum(c.parses for c in checks) / len(checks)
            valid = sum(c.valid for c in checks) / len(checks)
            tps = res.tokens / res.seconds
            results.append((i, name, ev.loss, ev.bits_per_byte, share, valid))
            print(f"[{i}] {name:24s} {model.num_params().total / 1e6:5.2f} M params "
                  f"{tps:7,.0f} tok/s x {res.seconds:4.0f} s = {res.tokens / 1e6:4.2f} M tokens "
                  f"({steps} steps, lr {preset.lr:g}) -> held-out {ev.loss:.3f} nats "
                  f"{ev.bits_per_byte:.3f} bits/byte; of {len(heads)} completions "
                  f"{share:.0%} parse, {valid:.0%} valid so far",
                  flush=True)
            print("     e.g. " + checks[0].function.rstrip().replace("\n", "\n          "),
                  flush=True)
    best = min(results, key=lambda r: r[3])
    print(f"best in {args.budget_s:.0f} s by bits per byte: [{best[0]}] {best[1]} "
          f"({best[2]:.3f} nats, {best[3]:.3f} bits/byte, {best[4]:.0%} parse, "
          f"{best[5]:.0%} valid)")


if __name__ == "__main__":
    main()
