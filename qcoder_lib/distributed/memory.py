"""Memory and communication per rank: what DDP and ZeRO-1/2/3 (FSDP) keep, and what they move.

Training with Adam in mixed precision keeps, per parameter (the ZeRO paper's accounting,
Rajbhandari et al. 2020): 2 bytes of bf16 weights, 2 bytes of bf16 gradients and K = 12 bytes of
optimizer state (an fp32 master copy, Adam's m and v): 16 bytes. Data parallelism over N GPUs:

============  ====================================  =========================================
strategy      kept per rank                         communication per step (bytes sent/rank)
============  ====================================  =========================================
ddp           2P + 2P + 12P                         all-reduce grads: 2(N-1)/N * 2P
zero1         2P + 2P + 12P/N                       reduce-scatter + all-gather: same as ddp
zero2         2P + 2P/N + 12P/N                     same as ddp
zero3 / fsdp  (2P + 2P + 12P)/N                     + a second all-gather of weights in the
                                                    backward: 3(N-1)/N * 2P (1.5x ddp)
============  ====================================  =========================================

``precision="fp32"`` (what the CPU runs of this course do) is 4 + 4 + 8 bytes (no master copy).
Activations (per rank, not sharded by data parallelism) follow Korthikanti et al. 2022 for a
16-bit transformer block with flash attention: ``34 * s * b * h`` bytes per layer, or, with full
activation recomputation, only each layer's input ``2 * s * b * h`` plus one layer recomputed;
plus the logits ``s * b * V`` in bf16 and fp32 for the loss. These are the course's estimates
(a Qwen block, with GQA and SwiGLU, differs in detail), and a real run adds a few GiB of
framework buffers and fragmentation, hence :data:`USABLE_FRACTION`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

MEMORY_STRATEGIES = ("ddp", "zero1", "zero2", "zero3")  # fsdp2 = zero3
GIB = 1024**3
USABLE_FRACTION = 0.9  # share of a GPU's memory a run may plan to fill (buffers, fragmentation)
_BYTES = {  # precision -> (weights, gradients, optimizer state) bytes per parameter
    "bf16-mixed": (2, 2, 12),
    "fp32": (4, 4, 8),
}


@dataclass
class MemoryEstimate:
    """Bytes one rank holds, and sends per optimizer step."""

    strategy: str  # ddp, zero1, zero2 or zero3
    n_gpus: int  # data-parallel ranks
    params: float  # weights held by this rank
    grads: float  # gradients held by this rank
    optimizer: float  # optimizer state held by this rank
    activations: float  # activations of one micro-batch (not sharded)
    comm_per_step: float  # bytes this rank sends per step (ring collectives)

    @property
    def total(self) -> float:
        """Everything this rank holds."""
        return self.params + self.grads + self.optimizer + self.activations

    def as_gib(self) -> dict:
        """The fields, byte counts converted to GiB (rounded to 0.01)."""
        d = asdict(self)
        d["total"] = self.total
        return {k: (round(v / GIB, 2) if isinstance(v, float) else v) for k, v in d.items()}


def state_bytes(n_params: int, strategy: str, n_gpus: int,
                precision: str = "bf16-mixed") -> tuple[float, float, float]:
    """``(weights, gradients, optimizer state)`` bytes per rank for ``n_params`` parameters."""
    if strategy == "fsdp2":
        strategy = "zero3"
    if strategy not in MEMORY_STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {', '.join(MEMORY_STRATEGIES)}")
    if precision not in _BYTES:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(_BYTES)}")
    w, g, o = (b * n_params for b in _BYTES[precision])
    stage = MEMORY_STRATEGIES.index(strategy)
    n = n_gpus
    return (w / n if stage >= 3 else float(w), g / n if stage >= 2 else float(g),
            o / n if stage >= 1 else float(o))


def activation_bytes(cfg, seq_len: int, micro_batch: int = 1, recompute: bool = True) -> float:
    """Activation bytes of one micro-batch of ``micro_batch`` rows of ``seq_len`` tokens for a
    :class:`~qcoder_lib.model.QwenConfig` (the module docstring gives the formula)."""
    sbh = seq_len * micro_batch * cfg.hidden_size
    layer = 34 * sbh
    blocks = (cfg.num_hidden_layers * 2 * sbh + layer) if recompute else (
        cfg.num_hidden_layers * layer)
    logits = seq_len * micro_batch * cfg.vocab_size * (2 + 4)  # bf16 logits + fp32 for the loss
    return float(blocks + logits)


def comm_bytes(n_params: int, strategy: str, n_gpus: int, grad_bytes: int = 2) -> float:
    """Bytes one rank sends per optimizer step with ring collectives: ``(N-1)/N`` of the data per
    reduce-scatter or all-gather, twice that per all-reduce (0 on one GPU)."""
    if strategy == "fsdp2":
        strategy = "zero3"
    frac = (n_gpus - 1) / n_gpus
    rounds = 3 if strategy == "zero3" else 2  # zero3 gathers the weights again for backward
    return float(rounds * frac * grad_bytes * n_params)


def estimate(cfg, strategy: str, n_gpus: int, seq_len: int = 8192, micro_batch: int = 1,
             recompute: bool = True, precision: str = "bf16-mixed") -> MemoryEstimate:
    """Per-rank memory and traffic of training the model ``cfg`` with ``strategy`` on
    ``n_gpus`` data-parallel GPUs."""
    n = cfg.num_params().total
    p, g, o = state_bytes(n, strategy, n_gpus, precision)
    return MemoryEstimate(strategy if strategy != "fsdp2" else "zero3", n_gpus, p, g, o,
                          activation_bytes(cfg, seq_len, micro_batch, recompute),
                          comm_bytes(n, strategy, n_gpus, _BYTES[precision][1]))


def gpus_needed(cfg, strategy: str, gpu_gib: float = 80.0, max_gpus: int = 4096,
                **kwargs) -> int | None:
    """The fewest GPUs (1, 2, 4, 8, ...) of ``gpu_gib`` GiB each on which ``strategy`` fits
    (``total <= USABLE_FRACTION * gpu_gib``); ``None`` when no count up to ``max_gpus`` does
    (DDP shards nothing: it fits on one GPU or never). ``kwargs`` go to :func:`estimate`."""
    n = 1
    while n <= max_gpus:
        if estimate(cfg, strategy, n, **kwargs).total <= USABLE_FRACTION * gpu_gib * GIB:
            return n
        n *= 2
    return None


def memory_table(sizes: dict | None = None, gpu_gib: float = 80.0, **kwargs) -> list[dict]:
    """One row per model size: parameters (billions), state bytes per parameter, the GiB of one
    GPU's share on 8 GPUs per strategy, and :func:`gpus_needed` per strategy. ``sizes`` maps
    names to :class:`~qcoder_lib.model.QwenConfig` (default: the six Qwen2.5-Coder sizes)."""
    from qcoder_lib.model import QWEN25_CODER_SIZES, QwenConfig

    if sizes is None:
        sizes = {name: QwenConfig.preset(name) for name in QWEN25_CODER_SIZES}
    rows = []
    for name, cfg in sizes.items():
        row = {"model": name, "params_B": round(cfg.num_params().total / 1e9, 2)}
        for s in MEMORY_STRATEGIES:
            row[f"{s}_GiB@8"] = estimate(cfg, s, 8, **kwargs).as_gib()["total"]
        for s in MEMORY_STRATEGIES:
            row[f"{s}_gpus"] = gpus_needed(cfg, s, gpu_gib, **kwargs)
        rows.append(row)
    return rows


def measured_state_bytes(model: torch.nn.Module, optimizer=None) -> dict:
    """Bytes this rank really holds in weights, gradients and optimizer state (the local shard
    of a DTensor under FSDP2; a tied weight counted once), to check :func:`state_bytes`."""
    def local(t):
        t = t.to_local() if hasattr(t, "to_local") else t
        return t.numel() * t.element_size()

    params = list(model.parameters())  # de-duplicated
    out = {"params": sum(local(p) for p in params),
           "grads": sum(local(p.grad) for p in params if p.grad is not None), "optimizer": 0}
    if optimizer is not None:
        for st in optimizer.state.values():
            out["optimizer"] += sum(local(v) for k, v in st.items()
                                    if torch.is_tensor(v) and k != "step")
    return out
