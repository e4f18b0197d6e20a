"""Train-step speed of qcoder_lib's Qwen2 vs transformers' Qwen2ForCausalLM, same config.

Both models get the same weights, the same batch and the same loss (fp32 cross-entropy on the
shifted logits), and run forward + backward + AdamW step. Each is warmed up, then timed over
several repeats, alternating the two so that a busy machine slows both alike; the median is
reported. Prints tokens/s of each and the ratio (ours / transformers; >= 1.0 means not slower).

    .venv/bin/python benchmarks/model_step.py               # cpu preset, batch 4 x 256
    .venv/bin/python benchmarks/model_step.py --preset smoke --repeats 3
    .venv/bin/python benchmarks/model_step.py --packed --compile   # packed rows; ours compiled

``--packed`` gives both models position ids that restart at 0 inside each row (four documents
per row: attention masked per document, transformers called with ``use_cache=False``);
``--compile`` runs our forward + loss through ``torch.compile`` (fullgraph: it fails loudly on a
graph break). The first warm-up step then includes compiling.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def make_models(preset: str, attn: str):
    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.model.hf_interop import to_hf_model

    cfg = QwenConfig.preset(preset, attn_implementation=attn)
    ours = QwenForCausalLM(cfg)
    theirs = to_hf_model(ours, attn_implementation="sdpa")  # same weights, HF's fastest CPU path
    return cfg, ours, theirs


def step_fn(model, is_hf: bool, compile_model: bool = False):
    from qcoder_lib.model import next_token_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def forward_loss(ids, pos):
        if is_hf:
            logits = model(ids, position_ids=pos, use_cache=False).logits
        else:
            logits = model(ids, pos)
        return next_token_loss(logits, ids)

    if compile_model:
        forward_loss = torch.compile(forward_loss, fullgraph=True)

    def step(ids, pos):
        loss = forward_loss(ids, pos)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--attn", default="sdpa", help="our backend: eager | sdpa | triton")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--packed", action="store_true",
                   help="four documents per row (position ids restart); default one per row")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile our forward + loss (fullgraph); transformers stays eager")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    cfg, ours, theirs = make_models(args.preset, args.attn)
    ours.train(), theirs.train()
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
    pos = None
    if args.packed:
        doc = -(-args.seq // 4)  # four documents per row
        pos = (torch.arange(args.seq) % doc).expand(args.batch, -1)
    steps = {"qcoder_lib": step_fn(ours, False, args.compile),
             "transformers": step_fn(theirs, True)}
    for _ in range(args.warmup):
        for s in steps.values():
            s(ids, pos)
    times = {k: [] for k in steps}
    for _ in range(args.repeats):
        for k, s in steps.items():
            t0 = time.perf_counter()
            s(ids, pos)
            times[k].append(time.perf_counter() - t0)
    tokens = args.batch * args.seq
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    n = ours.num_params()
    print(
        f"preset={args.preset} attn={args.attn} params={n.total / 1e6:.2f}M "
        f"batch={args.batch}x{args.seq} threads={torch.get_num_threads()} "
        f"warmup={args.warmup} repeats={args.repeats} (median) packed={args.packed} "
        f"compile={args.compile}"
    )
    for k, v in tps.items():
        print(f"  {k:13s} {v:10.0f} tokens/s")
    ratio = tps["qcoder_lib"] / tps["transformers"]
    # each repeat times the two models back to back: the ratio within a pair is robust to a
    # machine whose load changes over the run
    paired = statistics.median(
        t_hf / t_ours for t_hf, t_ours in zip(times["transformers"], times["qcoder_lib"])
    )
    print(f"ratio qcoder_lib / transformers = {ratio:.3f} (median of paired ratios {paired:.3f})")
    return ratio


if __name__ == "__main__":
    main()
