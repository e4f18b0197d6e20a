"""Training throughput of the profile's pretraining setup: ours vs transformers' Qwen2ForCausalLM.

Both models get the same weights (``to_hf_model``) and the same batches (the profile's preset:
``batch_size`` rows of ``seq_len`` tokens, packed rows whose position ids restart per document),
and run the training step of :func:`qcoder_lib.train.train` (autocast per ``--dtype``, fp32
cross-entropy over the targets, backward, clip, AdamW). Steps alternate between the two models
so that a busy machine slows both alike; the median step time is reported. Prints tokens/s of
each, the ratio (ours / transformers), and MFU on a GPU with a known peak ("n/a" on CPU).

    .venv/bin/python benchmarks/train_throughput.py --profile cpu
    .venv/bin/python benchmarks/train_throughput.py --profile gpu --dtype bf16 --steps 20
    .venv/bin/python benchmarks/train_throughput.py --profile smoke --loop   # + the full loop

``--loop`` also times ``train()`` itself on the profile's FIM corpus (data reading, logging
and the bar included) for the same number of steps, to show the loop's overhead over a bare step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F


def batch(cfg_vocab: int, B: int, T: int, seed: int = 0):
    """Random ids ``(B, T+1)`` with four documents per row; inputs, positions, targets."""
    from qcoder_lib.packed import next_token_targets

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg_vocab, (B, T + 1), generator=g)
    pos = torch.arange(T + 1).remainder((T + 1) // 4 + 1).expand(B, T + 1).contiguous()
    return ids[:, :-1], pos[:, :-1], next_token_targets(ids, pos)


def step(model, opt, ids, pos, tgt, dtype: str, is_hf: bool):
    """One optimizer step as the loop does it; returns the loss."""
    use_bf16 = dtype == "bf16"
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        logits = model(ids, position_ids=pos, use_cache=False).logits if is_hf else model(ids, pos)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=-100)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def main() -> None:
    """Parse the options, time both models, print the table."""
    from qcoder_lib.model.hf_interop import to_hf_model
    from qcoder_lib.tokenizer import course_tokenizer
    from qcoder_lib.train import format_mfu, mfu, peak_flops
    from qcoder_lib.train.recipe import course_model, pretrain_preset

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--loop", action="store_true", help="also time train() on the FIM corpus")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype if args.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    preset = pretrain_preset(args.profile)
    tok = course_tokenizer(args.profile)
    ours = course_model(args.profile, tok, preset).to(device)
    theirs = to_hf_model(ours, attn_implementation="sdpa").to(device)
    B, T = args.batch_size or preset.batch_size, preset.seq_len
    ids, pos, tgt = (t.to(device) for t in batch(ours.config.vocab_size, B, T))
    models = {"qcoder_lib": (ours, False), "transformers": (theirs, True)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in models.items()}
    times = {k: [] for k in models}
    for i in range(args.warmup + args.steps):
        for k, (m, is_hf) in models.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(m, opts[k], ids, pos, tgt, dtype, is_hf)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[k].append(time.perf_counter() - t0)
    peak = peak_flops(device)
    fpt = ours.flops_per_token(T)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"profile {args.profile}: {ours.num_params().total:,} parameters, batch {B} x {T}, "
          f"{dtype}, {name}, {args.steps} timed steps each")
    tps = {}
    for k in models:
        tps[k] = B * T / statistics.median(times[k])
        print(f"  {k:13s} {tps[k]:12,.0f} tokens/s   MFU {format_mfu(mfu(tps[k], fpt, peak))}")
    print(f"  ratio ours / transformers: {tps['qcoder_lib'] / tps['transformers']:.2f}")

    if args.loop:
        from qcoder_lib.train import ShardRows, train
        from qcoder_lib.train.recipe import course_corpus, fim_corpus

        with tempfile.TemporaryDirectory() as tmp:
            fim_corpus(course_corpus(args.profile, tok), tok, preset.fim_rate, f"{tmp}/fim")
            rows = ShardRows(f"{tmp}/fim", T)
            cfg = preset.train_config(f"{tmp}/run", steps=args.warmup + args.steps,
                                      batch_size=B, checkpoint_every=0, eval_every=0,
                                      dtype=dtype, progress=False)
            model = course_model(args.profile, tok, preset).to(device)
            res = train(model, rows, cfg)
        loop_tps = B * T * cfg.steps / res.seconds  # warm-up steps included
        print(f"  train() loop  {loop_tps:12,.0f} tokens/s (data, logging, final/ included; "
              f"{loop_tps / tps['qcoder_lib']:.2f} x the bare step)")


if __name__ == "__main__":
    main()
