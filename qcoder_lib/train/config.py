"""How a pretraining run goes: :class:`TrainConfig` and the learning-rate schedule :func:`lr_at`.

Steps count optimizer updates. The schedule is a pure function of the step (linear warm-up, then
cosine decay to ``min_lr``), so a resumed run needs nothing but the step number to continue it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DTYPES = ("auto", "fp32", "bf16")
STRATEGIES = ("single", "ddp", "fsdp2")


@dataclass
class TrainConfig:
    """How a pretraining run goes. Steps count optimizer updates."""

    steps: int = 100  # optimizer steps in the whole run
    batch_size: int = 8  # rows (sequences) per optimizer step, all micro-batches together
    seq_len: int = 128  # tokens per row (rows from a shard folder are cut to this length)
    grad_accum_steps: int = 1  # micro-batches per step (batch_size must divide evenly)
    lr: float = 3e-3  # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 10  # linear warm-up from lr/warmup_steps to lr
    min_lr: float = 3e-4  # cosine decay ends here at the last step (Qwen-style runs: ~lr/10)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW moment decay rates (LLM pretraining usual)
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.1  # decoupled weight decay, matrices only (see param_groups)
    grad_clip: float | None = 1.0  # max global gradient norm; None: measure, do not clip
    dtype: str = "auto"  # "fp32", "bf16" (autocast; weights stay fp32) or "auto": bf16 on CUDA
    compile: bool = False  # torch.compile the model before training (same numbers, faster steps)
    activation_checkpointing: bool = False  # recompute each layer in backward: less memory
    log_every: int = 1  # a metrics.jsonl line every N steps (and at the last step)
    checkpoint_every: int = 50  # save checkpoint-<step>/ every N steps (0: never)
    keep_last: int = 2  # keep only the newest K checkpoints (0: keep all)
    eval_every: int = 0  # held-out loss every N steps and at the last step (0: never)
    eval_rows: int = 64  # at most this many held-out rows per evaluation
    seed: int = 0  # data order and torch RNG
    progress: bool = True  # show a tqdm bar (loss, tokens/s, MFU, ETA) on stderr
    strategy: str = "single"  # "single", "ddp" or "fsdp2" (qcoder_lib.distributed wires the last two)
    out_dir: str = "artifacts/train"  # where metrics, checkpoints and final/ go

    def __post_init__(self):
        self.betas = tuple(self.betas)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a value is out of range (also called by
        :func:`~qcoder_lib.train.train`, so a field changed after construction is checked)."""
        for name in ("steps", "batch_size", "seq_len", "grad_accum_steps", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name}={v!r} must be an integer of at least 1")
        for name in ("warmup_steps", "checkpoint_every", "keep_last", "eval_every", "eval_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"TrainConfig.{name}={v!r} must be a non-negative integer")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"TrainConfig.batch_size={self.batch_size} is not a multiple of "
                f"grad_accum_steps={self.grad_accum_steps}"
            )
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"TrainConfig: need lr > 0 and 0 <= min_lr <= lr (got lr={self.lr}, "
                             f"min_lr={self.min_lr})")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype={self.dtype!r} is not one of {DTYPES}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"TrainConfig.strategy={self.strategy!r} is not one of {STRATEGIES}")

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return TrainConfig(**{**self.to_dict(), **changes})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based), a pure function of the step:

    - warm-up, ``step < warmup_steps``: ``lr * (step + 1) / warmup_steps``;
    - then cosine from ``lr`` to ``min_lr``: with ``p = (step - warmup) / (steps - 1 - warmup)``,
      ``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` (``p`` clamped to [0, 1], so the last
      step uses ``min_lr`` and later steps stay there).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = cfg.steps - 1 - cfg.warmup_steps
    p = 1.0 if span <= 0 else min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
