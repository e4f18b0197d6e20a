"""Training-step speed on one GPU (issue 13): tokens/s, MFU and peak memory, ours vs transformers.

    python benchmarks/train_step_gpu.py                 # both models, the default variants
    python benchmarks/train_step_gpu.py --models 0.5B   # one model
    python benchmarks/train_step_gpu.py --all           # + triton under torch.compile, eager CE
    python benchmarks/train_step_gpu.py --cpu-smoke     # a tiny model on CPU: checks the code
                                                        # paths of this script, measures nothing

Models: the Qwen2.5-Coder 0.5B preset (V = 151,936) at B4 x T2048, and the course ``gpu`` preset
(the course tokenizer's vocabulary) at B16 x T2048. Rows are packed (four documents per row,
position ids restarting), as in pre-training. Every variant starts from the SAME weights and the
SAME batch and runs the step of :func:`qcoder_lib.train.train`: bf16 autocast over fp32 weights,
fp32 cross-entropy, backward, gradient clipping, fused AdamW. Variants:

- ``transformers sdpa``: ``Qwen2ForCausalLM`` (``to_hf_model``), logits then ``F.cross_entropy``;
- ``transformers sdpa + Liger``: the same after ``apply_liger_kernel_to_qwen2`` (RoPE, RMSNorm,
  SwiGLU, fused linear cross-entropy), only when ``liger_kernel`` is installed;
- ``ours <backend>``: ``QwenForCausalLM`` with ``attn_implementation`` = sdpa / triton, the loss
  through ``forward(targets=...)`` (chunked linear + cross-entropy, no (B, T, V) logits) or
  ``+ logits CE`` (the plain path), with and without ``torch.compile`` (graph breaks counted).

Printed: a table (ms per step, tokens/s, MFU against the card's dense bf16 peak, peak memory,
first-step loss and its difference from transformers'), the loss-only memory of plain vs
chunked cross-entropy at the 0.5B shape, and the issue-13 targets as met / MISSED. MFU counts
``QwenConfig.flops_per_token`` (6N + attention, PaLM convention); the peak comes from
``qcoder_lib.train.progress.PEAK_BF16_FLOPS`` (H100 / H200: 989 TFLOP/s dense bf16).

Without a CUDA GPU it says so and exits 0 (``--cpu-smoke`` excepted).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# First-step losses agree within this relative difference: every variant computes the same
# function of the same weights; bf16 matmuls (eps 2^-8) in different orders move the mean of
# ~8k per-token losses by far less than this.
LOSS_RTOL = 5e-3


def packed_batch(vocab: int, B: int, T: int, device, seed: int = 0):
    """Random ids with four documents per row: ``ids, pos, tgt`` each ``(B, T)``."""
    import torch

    from qcoder_lib.packed import next_token_targets

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (B, T + 1), generator=g)
    pos = torch.arange(T + 1).remainder((T + 1) // 4 + 1).expand(B, T + 1).contiguous()
    tgt = next_token_targets(ids, pos)  # (B, T)
    return ids[:, :-1].contiguous().to(device), pos[:, :-1].contiguous().to(device), tgt.to(device)


def variants(include_all: bool, has_liger: bool) -> list[dict]:
    """The variants to time: ``name``, ``kind`` (hf / ours), ``backend``, ``compile``,
    ``chunked`` (loss through ``forward(targets=)``), ``liger``."""
    def variant(name, kind, backend, compile_, chunked, liger=False):
        return {"name": name, "kind": kind, "backend": backend, "compile": compile_,
                "chunked": chunked, "liger": liger}

    v = [variant("transformers sdpa", "hf", "sdpa", False, False),
         variant("ours sdpa + logits CE", "ours", "sdpa", False, False),
         variant("ours sdpa", "ours", "sdpa", False, True),
         variant("ours triton", "ours", "triton", False, True),
         variant("ours sdpa + compile", "ours", "sdpa", True, True)]
    if include_all:
        v += [variant("ours triton + compile", "ours", "triton", True, True),
              variant("ours sdpa + compile + logits CE", "ours", "sdpa", True, False)]
    if has_liger:  # last: Liger patches transformers' Qwen2 classes for the rest of the process
        v.append(variant("transformers sdpa + Liger", "hf", "sdpa", False, True, liger=True))
    return v


def build(variant: dict, state: dict, cfg, device):
    """A fresh model of ``variant`` with the weights ``state``; returns (model, callable)."""
    import torch

    from qcoder_lib.model import QwenForCausalLM
    from qcoder_lib.model.hf_interop import to_hf_model

    ours = QwenForCausalLM(cfg.with_(attn_implementation=variant["backend"]))
    ours.load_state_dict(state)
    if variant["kind"] == "hf":
        if variant.get("liger"):
            from liger_kernel.transformers import apply_liger_kernel_to_qwen2

            apply_liger_kernel_to_qwen2()
        model = to_hf_model(ours, attn_implementation="sdpa").to(device)
        del ours
    else:
        model = ours.to(device)
    net = torch.compile(model) if variant["compile"] else model
    return model, net


def loss_of(variant: dict, net, ids, pos, tgt):
    """The mean next-token loss of one batch, as the variant computes it."""
    import torch.nn.functional as F

    if variant["kind"] == "hf":
        if variant.get("liger"):  # Liger's fused linear CE; shift_labels: tgt is shifted already
            return net(ids, position_ids=pos, labels=tgt, shift_labels=tgt, use_cache=False).loss
        logits = net(ids, position_ids=pos, use_cache=False).logits
    elif variant["chunked"]:
        return net(ids, pos, targets=tgt)
    else:
        logits = net(ids, pos)
    return F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=-100)


def time_variant(variant, state, cfg, batch, device, warmup: int, steps: int) -> dict:
    """Warm-up then timed steps of one variant; its median step time, first loss, peak memory
    and graph breaks (compiled variants)."""
    import torch
    from torch._dynamo.utils import counters

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    counters.clear()
    model, net = build(variant, state, cfg, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
    ids, pos, tgt = batch
    times, first = [], None
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_of(variant, net, ids, pos, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i == 0:
            first = float(loss.detach())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    out = {"s_per_step": statistics.median(times), "first_loss": first,
           "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
           "graph_breaks": sum(counters["graph_break"].values()) if variant["compile"] else None}
    del model, net, opt, loss
    if variant["compile"]:
        torch._dynamo.reset()
    gc.collect()
    return out


def loss_memory(cfg, B: int, T: int, device) -> dict:
    """Peak memory (GB, above what was allocated before) and time of the loss alone, forward +
    backward, at ``(B*T, d) x (V, d)``: plain ``F.cross_entropy(lm_head(h).float())`` under bf16
    autocast vs the chunked :func:`linear_cross_entropy`; the largest error between the two."""
    import torch
    import torch.nn.functional as F

    from qcoder_lib.kernels.cross_entropy import linear_cross_entropy

    g = torch.Generator(device=device).manual_seed(0)
    h0 = torch.randn(B * T, cfg.hidden_size, device=device, generator=g)
    w0 = torch.randn(cfg.vocab_size, cfg.hidden_size, device=device, generator=g) * 0.02
    t = torch.randint(0, cfg.vocab_size, (B * T,), device=device, generator=g)
    out = {}
    for name in ("plain", "chunked"):
        h, w = h0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            if name == "plain":
                loss = F.cross_entropy(F.linear(h, w).float(), t)
            else:
                loss = linear_cross_entropy(h, w, t)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[name] = {"s": time.perf_counter() - t0, "loss": float(loss.detach()), "gh": h.grad, "gw": w.grad,
                     "peak_gb": (torch.cuda.max_memory_allocated() - base) / 2**30
                     if device.type == "cuda" else None}
        del h, w, loss
    p, c = out["plain"], out["chunked"]
    err = max((p["gh"] - c["gh"]).abs().max().item() / p["gh"].abs().max().item(),
              (p["gw"] - c["gw"]).abs().max().item() / p["gw"].abs().max().item())
    return {k: {kk: vv for kk, vv in v.items() if kk not in ("gh", "gw")} for k, v in out.items()} | {
        "loss_diff": abs(p["loss"] - c["loss"]), "grad_rel_err": err}


def run_model(label, cfg, B, T, device, args) -> dict:
    """Time every variant of one model; print its table; return the rows."""
    import torch

    from qcoder_lib.model import QwenForCausalLM
    from qcoder_lib.train import format_mfu, mfu, peak_flops

    torch.manual_seed(0)
    state = {k: v.clone() for k, v in QwenForCausalLM(cfg).state_dict().items()}  # CPU, fp32
    batch = packed_batch(cfg.vocab_size, B, T, device)
    peak = peak_flops(device)
    fpt = cfg.flops_per_token(T)
    try:
        import liger_kernel  # noqa: F401

        has_liger = True
    except ImportError:
        has_liger = False
    rows = {}
    print(f"\n== {label}: {sum(v.numel() for v in state.values()) / 1e6:.0f}M parameters, "
          f"V={cfg.vocab_size}, batch {B} x {T} packed (4 docs/row), bf16 autocast, fused AdamW"
          + ("" if has_liger else "; liger_kernel not installed: no Liger row"), flush=True)
    for v in variants(args.all, has_liger):
        t0 = time.time()
        try:
            r = time_variant(v, state, cfg, batch, device, args.warmup, args.steps)
        except Exception as e:  # noqa: BLE001 (report the failure, time the other variants)
            r = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}"}
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        r["wall_s"] = time.time() - t0
        if "error" not in r:
            r["tokens_per_s"] = B * T / r["s_per_step"]
            r["mfu"] = mfu(r["tokens_per_s"], fpt, peak)
        rows[v["name"]] = r
        print(f"   {v['name']}: done in {r['wall_s']:.0f}s", flush=True)
    ref = rows.get("transformers sdpa", {}).get("first_loss")
    print(f"\n{'variant':<34}{'ms/step':>9}{'tokens/s':>11}{'MFU':>7}{'peak GB':>9}"
          f"{'loss@1':>9}{'vs HF':>9}{'breaks':>7}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<34} failed: {r['error']}")
            continue
        rel = (r["first_loss"] - ref) / ref if ref else float("nan")
        r["loss_rel_diff"] = rel
        gb = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "n/a"
        brk = "" if r["graph_breaks"] is None else str(r["graph_breaks"])
        print(f"{name:<34}{1e3 * r['s_per_step']:9.1f}{r['tokens_per_s']:11,.0f}"
              f"{format_mfu(r['mfu']):>7}{gb:>9}{r['first_loss']:9.4f}{rel:+9.1e}{brk:>7}")
    return rows


def targets(results: dict) -> list[tuple[str, bool]]:
    """The issue-13 targets from the measured rows."""
    def ok(r):
        return "error" not in r

    out = []
    for label, rows in results.items():
        ours = {n: r for n, r in rows.items() if n.startswith("ours") and ok(r)}
        best = max(ours.items(), key=lambda kv: kv[1]["tokens_per_s"], default=(None, None))
        hf = rows.get("transformers sdpa", {})
        if best[0] is None:
            out.append((f"{label}: some variant of ours ran", False))
            continue
        m = best[1]["mfu"] or 0.0
        out.append((f"{label}: MFU >= 45% (best: {best[0]}, {100 * m:.1f}%)", m >= 0.45))
        if label == "0.5B" and ok(hf):
            ratio = best[1]["tokens_per_s"] / hf["tokens_per_s"]
            out.append((f"0.5B: >= 1.8x transformers tokens/s ({ratio:.2f}x)", ratio >= 1.8))
        bad = [n for n, r in rows.items() if ok(r) and "loss_rel_diff" in r
               and abs(r["loss_rel_diff"]) > LOSS_RTOL]
        out.append((f"{label}: first-step loss of every variant within {LOSS_RTOL:.0e} of "
                    f"transformers'" + (f" (off: {', '.join(bad)})" if bad else ""), not bad))
        tri = rows.get("ours triton", {})
        out.append((f"{label}: the triton backend trains"
                    + ("" if ok(tri) else f" ({tri.get('error', 'not run')})"), ok(tri)))
        fastest = max((n for n in ours if "compile" not in n),
                      key=lambda n: ours[n]["tokens_per_s"], default=None)
        out.append((f"{label}: triton is the fastest eager backend (fastest: {fastest})",
                    fastest == "ours triton"))
        brk = {n: r["graph_breaks"] for n, r in ours.items() if r.get("graph_breaks")}
        out.append((f"{label}: no graph break under torch.compile"
                    + (f" ({brk})" if brk else ""), not brk))
    return out


def main(argv=None) -> int:
    """Parse the options, time the models, print the tables and the targets."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="0.5B,gpu", help="comma-separated: 0.5B and/or gpu")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile, autotune)")
    ap.add_argument("--all", action="store_true", help="also triton + compile, compile + logits CE")
    ap.add_argument("--json", help="also write the figures (rows, loss memory, targets) here")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run a tiny model on CPU to check this script's code paths (no figures)")
    args = ap.parse_args(argv)

    import torch

    from qcoder_lib.model import QwenConfig, course_vocab_rows
    from qcoder_lib.train.progress import PEAK_BF16_FLOPS

    if args.cpu_smoke:
        device = torch.device("cpu")
        cfg = QwenConfig(vocab_size=512, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        args.steps, args.warmup = 1, 1
        models = {"tiny (cpu smoke)": (cfg, 2, 64)}
    elif not torch.cuda.is_available():
        print("benchmarks/train_step_gpu.py measures a GPU training step; no CUDA GPU here. "
              "Nothing measured; exiting 0 (--cpu-smoke checks the code paths on CPU).")
        return 0
    else:
        import os

        os.environ.pop("TRITON_INTERPRET", None)
        device = torch.device("cuda")
        models = {}
        for name in args.models.split(","):
            if name == "0.5B":
                models["0.5B"] = (QwenConfig.preset("0.5B"), 4, 2048)
            elif name == "gpu":
                models["gpu"] = (QwenConfig.preset("gpu", vocab_size=course_vocab_rows("gpu")), 16, 2048)
            else:
                ap.error(f"--models: unknown model {name!r} (0.5B or gpu)")
    import qcoder_lib.kernels  # noqa: F401  (decides Triton's mode before anything imports triton)

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; dense bf16 peaks used for MFU (TFLOP/s): "
          + ", ".join(f"{k} {v / 1e12:.0f}" for k, v in PEAK_BF16_FLOPS.items()))
    t_all = time.time()
    results = {}
    for label, (cfg, B, T) in models.items():
        results[label] = run_model(label, cfg, B, T, device, args)
    cfg0, B0, T0 = next(iter(models.values()))
    lm = loss_memory(cfg0, B0, T0, device)
    print(f"\nloss alone at B*T={B0 * T0} x V={cfg0.vocab_size} (fwd+bwd, bf16 autocast; peak GB "
          "above the inputs):")
    for k in ("plain", "chunked"):
        gb = f"{lm[k]['peak_gb']:.2f} GB" if lm[k]["peak_gb"] is not None else "n/a"
        print(f"  {k:<8} {1e3 * lm[k]['s']:8.1f} ms  peak {gb}")
    print(f"  |loss difference| {lm['loss_diff']:.2e}, largest gradient difference "
          f"{lm['grad_rel_err']:.2e} of the largest gradient")
    print(f"\nTargets (issue 13){' -- CPU smoke run: not a measurement' if args.cpu_smoke else ''}:")
    for text, hit in targets(results):
        print(f"  [{'met' if hit else 'MISSED'}] {text}")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(
            {"device": name, "torch": torch.__version__, "results": results, "loss_memory": lm,
             "targets": [{"target": t, "met": hit} for t, hit in targets(results)]}, indent=2))
    print(f"\n(took {time.time() - t_all:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
