"""The pretraining loop: next-token loss, AdamW, warm-up + cosine schedule, checkpoints, metrics.

One optimizer step, top to bottom::

    rows (batch_size, T) from the data, in a seeded order    # a cursor counts rows consumed
    split into grad_accum_steps micro-batches
    for each: loss = sum CE(logits, targets) / targets in the whole step;  loss.backward()
    grad_norm = clip_grad_norm_(params, grad_clip)
    lr = lr_at(step, config);  AdamW step
    append {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"} to metrics.jsonl

A run in ``out_dir`` writes:

- ``metrics.jsonl``: one JSON line per logged step (``eval_loss`` added on eval steps);
- ``checkpoint-<step>/``: the model as an HF folder (``config.json`` + ``model.safetensors``),
  ``optimizer.pt``, ``rng_state.pt`` and ``trainer_state.json`` (step, schedule, data cursor).
  It is written to a temporary folder and renamed into place, so an interrupt never leaves half
  a checkpoint; only the last ``keep_last`` are kept;
- ``final/``: the trained model in HF format (``AutoModelForCausalLM.from_pretrained`` loads
  it; so does :func:`qcoder_lib.model.hf_interop.from_hf`) plus the tokenizer when one is given.

``train(..., resume=True)`` continues from the latest complete checkpoint and gives the same
losses as a run that was never interrupted (bit for bit in fp32 on CPU): the data order is a
pure function of the seed and the row cursor, the schedule a pure function of the step, and the
model, optimizer and RNG states are restored exactly.

Targets: rows are packed documents; the token after an end-of-text (where ``position_ids``
restart) belongs to another document, so predicting it is not trained (target ``-100``), and
neither is padding.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qcoder_lib.io import TMP_MARK, atomic_dir, atomic_write_text

IGNORE_INDEX = -100
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pt"
MODEL_FILE = "model.safetensors"
RESUME_MUST_MATCH = ("batch_size", "seq_len", "seed")  # a resumed run must keep these


class CheckpointError(RuntimeError):
    """A checkpoint folder is incomplete or corrupt; the message names the file."""


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
    log_every: int = 1  # a metrics.jsonl line every N steps (and at the last step)
    checkpoint_every: int = 50  # save checkpoint-<step>/ every N steps (0: never)
    keep_last: int = 2  # keep only the newest K checkpoints (0: keep all)
    eval_every: int = 0  # held-out loss every N steps and at the last step (0: never)
    eval_rows: int = 64  # at most this many held-out rows per evaluation
    seed: int = 0  # data order and torch RNG
    out_dir: str = "artifacts/train"  # where metrics, checkpoints and final/ go

    def __post_init__(self):
        self.betas = tuple(self.betas)
        positive = ("steps", "batch_size", "seq_len", "grad_accum_steps", "log_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be at least 1")
        for name in ("warmup_steps", "checkpoint_every", "keep_last", "eval_every", "eval_rows"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must not be negative")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"TrainConfig.batch_size={self.batch_size} is not a multiple of "
                f"grad_accum_steps={self.grad_accum_steps}"
            )
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"TrainConfig: need lr > 0 and 0 <= min_lr <= lr (got {self.lr}, "
                             f"{self.min_lr})")
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"TrainConfig.dtype={self.dtype!r} is not 'auto', 'fp32' or 'bf16'")

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


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


# ----------------------------------------------------------------------------------------------
# Data: rows of packed tokens, read in a seeded order that a single integer (the cursor) resumes.


def next_token_targets(ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Targets ``(N, T-1)`` for the first ``T-1`` tokens of packed windows ``ids (N, T)``:
    ``targets[:, t] = ids[:, t+1]``, or ``-100`` where token ``t+1`` starts another document (its
    position is not the previous + 1: the model's own rule for where documents begin)."""
    tgt = ids[:, 1:].clone()
    tgt[position_ids[:, 1:] != position_ids[:, :-1] + 1] = IGNORE_INDEX
    return tgt


class TokenRows:
    """Training rows held in memory: ``input_ids``, ``position_ids`` and ``targets``, each
    ``(N, T)`` int64 (``targets`` already shifted: the next token or ``-100``)."""

    def __init__(self, input_ids, position_ids, targets, source: str = "rows"):
        self.input_ids = torch.as_tensor(input_ids, dtype=torch.long)
        self.position_ids = torch.as_tensor(position_ids, dtype=torch.long)
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.source = source
        shapes = {t.shape for t in (self.input_ids, self.position_ids, self.targets)}
        if len(shapes) != 1 or self.input_ids.dim() != 2 or len(self.input_ids) == 0:
            raise ValueError(
                f"{source}: input_ids {tuple(self.input_ids.shape)}, position_ids "
                f"{tuple(self.position_ids.shape)} and targets {tuple(self.targets.shape)} must "
                "be equal, non-empty (N, T) tensors"
            )

    @classmethod
    def from_packed(cls, packed) -> TokenRows:
        """Rows of a :class:`qcoder_lib.packing.PackedBatch` with its document-aware labels."""
        return cls(packed.input_ids, packed.position_ids, packed.labels(IGNORE_INDEX), "packed")

    @classmethod
    def from_shards(cls, folder, seq_len: int, max_rows: int | None = None) -> TokenRows:
        """Windows of ``seq_len`` tokens (+1 for the last target) cut in order from a token-shard
        folder written by :func:`qcoder_lib.data.build_corpus`. Raises ``FileNotFoundError``
        naming the folder when it does not exist or holds no shards."""
        from qcoder_lib.data.shards import TokenShards

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"data folder {folder} does not exist (build it with qcoder_lib.data.build_corpus)"
            )
        if not (folder / "index.json").exists():
            raise FileNotFoundError(f"data folder {folder} has no index.json: not token shards")
        ids, pos = [], []
        for i, (w_ids, w_pos) in enumerate(TokenShards(folder).sequences(seq_len, seed=None)):
            if max_rows is not None and i >= max_rows:
                break
            ids.append(torch.from_numpy(np.asarray(w_ids, dtype=np.int64)))
            pos.append(torch.from_numpy(np.asarray(w_pos, dtype=np.int64)))
        if not ids:
            raise ValueError(f"data folder {folder} holds fewer than {seq_len + 1} tokens")
        full_ids, full_pos = torch.stack(ids), torch.stack(pos)  # (N, T+1)
        return cls.from_windows(full_ids, full_pos, folder.name)

    @classmethod
    def from_windows(cls, ids, position_ids, source: str = "windows") -> TokenRows:
        """Rows of ``T`` tokens from windows ``(N, T+1)``: the extra last token is only a
        target (so every input token has one, unless it ends a document)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        position_ids = torch.as_tensor(position_ids, dtype=torch.long)
        targets = next_token_targets(ids, position_ids)
        return cls(ids[:, :-1], position_ids[:, :-1], targets, source)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def seq_len(self) -> int:
        """Tokens per row."""
        return self.input_ids.shape[1]

    def split(self, held_out: float, seed: int = 0) -> tuple[TokenRows, TokenRows]:
        """``(train, held_out)``: a seeded random ``held_out`` share of the rows set aside."""
        n_eval = max(1, round(len(self) * held_out))
        if n_eval >= len(self):
            raise ValueError(f"split: held_out={held_out} leaves no training rows of {len(self)}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[n_eval:].sort().values), self.subset(perm[:n_eval].sort().values)

    def subset(self, index) -> TokenRows:
        """The rows at ``index`` (a tensor or list of row numbers, or a slice)."""
        return TokenRows(self.input_ids[index], self.position_ids[index], self.targets[index],
                         self.source)

    def rows_at(self, cursor: int, n: int, seed: int):
        """``n`` rows starting at row ``cursor`` of the endless seeded stream: epoch ``e`` is a
        permutation of all rows drawn from ``seed + e``. Returns ``(ids, pos, targets)``."""
        idx = []
        for c in range(cursor, cursor + n):
            epoch, k = divmod(c, len(self))
            idx.append(int(self._perm(seed, epoch)[k]))
        idx = torch.tensor(idx)
        return self.input_ids[idx], self.position_ids[idx], self.targets[idx]

    def _perm(self, seed: int, epoch: int) -> torch.Tensor:
        cache = self.__dict__.setdefault("_perm_cache", {})
        key = (seed, epoch)
        if key not in cache:
            cache.clear()
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cache[key] = torch.randperm(len(self), generator=g)
        return cache[key]


def as_rows(data, seq_len: int) -> TokenRows:
    """Accept :class:`TokenRows`, a :class:`~qcoder_lib.packing.PackedBatch`, or a token-shard
    folder (``str``/``Path``) and return :class:`TokenRows`."""
    if isinstance(data, TokenRows):
        return data
    if isinstance(data, (str, os.PathLike)):
        return TokenRows.from_shards(data, seq_len)
    if hasattr(data, "labels") and hasattr(data, "document_ids"):
        return TokenRows.from_packed(data)
    raise TypeError(
        f"training data of type {type(data).__name__} is not TokenRows, PackedBatch or a folder"
    )


# ----------------------------------------------------------------------------------------------
# Optimizer


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the weight matrices of linear layers only.

    Not decayed: RMSNorm gains (they are scales around 1; decay would pull them toward 0 and
    shrink the signal, not regularise), biases (offsets with few parameters that cannot
    overfit), and the embedding (each row is updated only when its token occurs, but decay would
    shrink every row at every step, so rare tokens would fade; a tied ``lm_head`` is the same
    tensor). This is the GPT-2/nanoGPT convention; the Qwen report does not state its choice.
    """
    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # de-duplicated: a tied lm_head appears once
        if not p.requires_grad:
            continue
        if p.dim() >= 2 and id(p) not in embed_ids:
            decay.append(p)
        else:
            no_decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, with the config's betas, eps and weight decay."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps
    )


# ----------------------------------------------------------------------------------------------
# Checkpoints


def list_checkpoints(out_dir) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out_dir`` as ``(step, folder)``, oldest first (temporary
    ``*.tmp-*`` folders left by an interrupted save are not checkpoints)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder, model, optimizer, state: dict) -> Path:
    """Write ``folder`` atomically: everything goes into ``<folder>.tmp-<pid>`` first, which is
    then renamed; an interrupt leaves at most a temporary folder, never a half checkpoint.
    ``state`` (step, data cursor, ...) becomes ``trainer_state.json``."""
    from qcoder_lib.model.hf_interop import to_hf

    with atomic_dir(folder) as tmp:
        to_hf(model, tmp)  # config.json + model.safetensors: loadable on its own
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(_rng_state(), tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
    return Path(folder)


def load_checkpoint(folder, model, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer`` and the RNG states, when an optimizer is given)
    from a checkpoint folder; return its trainer state. A missing, unreadable or mismatched
    file raises :class:`CheckpointError` naming that file."""
    from qcoder_lib.model.hf_interop import load_hf_weights

    folder = Path(folder)

    def fail(name: str, why: str, err: Exception | None = None):
        raise CheckpointError(f"checkpoint file {folder / name} {why}") from err

    for name in (STATE_FILE, MODEL_FILE, OPTIMIZER_FILE, RNG_FILE):
        if not (folder / name).is_file():
            fail(name, "is missing: the checkpoint is incomplete")
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        int(state["step"]), int(state["cursor"])
    except (ValueError, KeyError, TypeError) as e:
        fail(STATE_FILE, f"is malformed ({type(e).__name__}: {e})", e)
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / MODEL_FILE))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for bad bytes
        fail(MODEL_FILE, f"is corrupt ({type(e).__name__}: {e})", e)
    try:
        load_hf_weights(model, tensors, str(folder / MODEL_FILE))
    except (KeyError, ValueError) as e:
        fail(MODEL_FILE, f"does not fit this model ({e})", e)
    if optimizer is not None:
        for name in (OPTIMIZER_FILE, RNG_FILE):
            try:
                obj = torch.load(folder / name, map_location="cpu", weights_only=False)
                if name == OPTIMIZER_FILE:
                    optimizer.load_state_dict(obj)
                else:
                    _set_rng_state(obj)
            except Exception as e:  # noqa: BLE001 - pickle/zip/shape errors: all mean corrupt
                fail(name, f"is corrupt or does not fit ({type(e).__name__}: {e})", e)
    return state


def _rotate(out_dir: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for _, folder in list_checkpoints(out_dir)[:-keep_last]:
        shutil.rmtree(folder)


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    """What a run did."""

    steps: int  # optimizer steps done in total (including those before a resume)
    losses: list[float]  # training loss of every step of this process's run, in order
    final_loss: float  # loss of the last step
    eval_loss: float | None  # last held-out loss, if evaluated
    tokens: int  # tokens seen in total
    seconds: float  # wall time of this process's part of the run
    resumed_from: int | None  # the checkpoint step this run continued from, if any
    out_dir: Path  # where metrics.jsonl, checkpoints and final/ are
    final_dir: Path | None  # the HF-format model folder
    checkpoints: list[Path] = field(default_factory=list)  # complete checkpoints left

    @property
    def metrics_path(self) -> Path:
        """The run's ``metrics.jsonl``."""
        return self.out_dir / "metrics.jsonl"


def read_metrics(path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a folder means its ``metrics.jsonl``). A malformed
    line raises ``ValueError`` naming the file and line number."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{i}: malformed metrics line ({e})") from e
    return out


def _autocast(cfg: TrainConfig, device: torch.device):
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    if not use_bf16:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def evaluate(model, rows: TokenRows, batch_size: int = 8, max_rows: int | None = None,
             dtype: str = "fp32") -> float:
    """Mean next-token loss (per target token) over the first ``max_rows`` rows of ``rows``."""
    device = next(model.parameters()).device
    n = len(rows) if max_rows is None else min(len(rows), max_rows)
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(TrainConfig(dtype=dtype), device):
        for s in range(0, n, batch_size):
            ids, pos, tgt = (t[s : min(n, s + batch_size)].to(device) for t in
                             (rows.input_ids, rows.position_ids, rows.targets))
            logits = model(ids, pos)  # (b, T, V)
            total += float(F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(),
                                           ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((tgt != IGNORE_INDEX).sum())
    model.train(was)
    return total / max(count, 1)


def train(
    model: torch.nn.Module,
    train_data,
    config: TrainConfig,
    eval_data=None,
    *,
    resume: bool = False,
    tokenizer=None,
    on_step: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimizer steps on ``train_data`` (:class:`TokenRows`,
    a ``PackedBatch`` or a token-shard folder) and write metrics, checkpoints and ``final/``
    into ``config.out_dir``; see the module docstring. ``eval_data`` (same kinds) gives the
    held-out loss every ``eval_every`` steps. ``tokenizer`` is saved next to the final model.

    ``resume=True`` continues from the newest complete checkpoint in ``out_dir`` (or starts
    afresh when there is none); ``resume=False`` refuses an ``out_dir`` that already holds
    checkpoints or metrics (``FileExistsError`` naming it) rather than mixing two runs.
    ``on_step(record)`` is called after every step with that step's metrics record (raise from
    it to stop the run, e.g. to simulate an interruption).
    """
    cfg = config
    rows = as_rows(train_data, cfg.seq_len)
    eval_rows = as_rows(eval_data, cfg.seq_len) if eval_data is not None else None
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    device = next(model.parameters()).device
    for leftover in out.glob(f"*{TMP_MARK}*"):  # an interrupted save: not a checkpoint
        shutil.rmtree(leftover, ignore_errors=True)

    torch.manual_seed(cfg.seed)
    model.train()
    optimizer = make_optimizer(model, cfg)
    step, cursor, tokens, resumed_from = 0, 0, 0, None
    checkpoints = list_checkpoints(out)
    if resume and checkpoints:
        resumed_from, folder = checkpoints[-1]
        state = load_checkpoint(folder, model, optimizer)
        saved = state.get("config", {})
        for name in RESUME_MUST_MATCH:  # these fix which rows the cursor points at
            if name in saved and saved[name] != getattr(cfg, name):
                raise ValueError(
                    f"cannot resume {folder.name}: TrainConfig.{name}={getattr(cfg, name)!r} but "
                    f"the run was started with {saved[name]!r} (the data order would differ)"
                )
        step, cursor, tokens = int(state["step"]), int(state["cursor"]), int(state["tokens"])
        kept = [r for r in read_metrics(metrics_path) if r["step"] <= step] if (
            metrics_path.exists()) else []
        _write_lines(metrics_path, kept)  # drop what was logged after the checkpoint
    elif not resume and (checkpoints or metrics_path.exists()):
        raise FileExistsError(
            f"out_dir {out} already holds a run (checkpoints or metrics.jsonl); pass resume=True "
            "to continue it or choose another out_dir"
        )
    elif not resume or not checkpoints:
        metrics_path.write_text("", encoding="utf-8")
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1), encoding="utf-8")

    micro = cfg.batch_size // cfg.grad_accum_steps
    losses: list[float] = []
    last_eval = None
    t_start = time.perf_counter()
    while step < cfg.steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        ids, pos, tgt = rows.rows_at(cursor, cfg.batch_size, cfg.seed)
        ids, pos, tgt = ids.to(device), pos.to(device), tgt.to(device)
        n_targets = max(int((tgt != IGNORE_INDEX).sum()), 1)  # over the whole step
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for m in range(cfg.grad_accum_steps):
            sl = slice(m * micro, (m + 1) * micro)
            with _autocast(cfg, device):
                logits = model(ids[sl], pos[sl])  # (micro, T, V)
            # Sum over this micro-batch / targets in the whole step: the accumulated gradient
            # is then exactly that of the mean loss over the full batch.
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt[sl].flatten(),
                                   ignore_index=IGNORE_INDEX, reduction="sum") / n_targets
            loss.backward()
            loss_sum += float(loss.detach())
        max_norm = cfg.grad_clip if cfg.grad_clip else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"loss is {loss_sum} at step {step + 1}; lower TrainConfig.lr")
        optimizer.step()
        step += 1
        cursor += cfg.batch_size
        tokens += ids.numel()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(loss_sum)
        record = {"step": step, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm,
                  "tokens": tokens, "tokens_per_s": ids.numel() / max(dt, 1e-9)}
        if eval_rows is not None and cfg.eval_every and (
            step % cfg.eval_every == 0 or step == cfg.steps
        ):
            last_eval = evaluate(model, eval_rows, micro, cfg.eval_rows, _dtype_name(cfg, device))
            record["eval_loss"] = last_eval
        if step % cfg.log_every == 0 or step == cfg.steps or "eval_loss" in record:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            state = {"step": step, "cursor": cursor, "tokens": tokens, "lr": lr,
                     "schedule": "lr_at(step, config): warm-up + cosine, a pure function",
                     "config": cfg.to_dict()}
            save_checkpoint(out / f"checkpoint-{step}", model, optimizer, state)
            _rotate(out, cfg.keep_last)
        if on_step is not None:
            on_step(record)

    final = save_final(model, out / "final", tokenizer)
    if not losses and metrics_path.exists():  # resumed a finished run: report its last loss
        done = read_metrics(metrics_path)
        losses_all = [r["loss"] for r in done]
    else:
        losses_all = losses
    return TrainResult(
        steps=step, losses=losses, final_loss=losses_all[-1] if losses_all else float("nan"),
        eval_loss=last_eval, tokens=tokens, seconds=time.perf_counter() - t_start,
        resumed_from=resumed_from, out_dir=out, final_dir=final,
        checkpoints=[p for _, p in list_checkpoints(out)],
    )


def _dtype_name(cfg: TrainConfig, device: torch.device) -> str:
    if cfg.dtype == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return cfg.dtype


def _write_lines(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def save_final(model, folder, tokenizer=None) -> Path:
    """Write the model as an HF-format folder (plus ``tokenizer``'s files when given),
    atomically like a checkpoint. ``AutoModelForCausalLM.from_pretrained(folder)`` loads it."""
    from qcoder_lib.model.hf_interop import to_hf

    with atomic_dir(folder) as tmp:
        to_hf(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(folder)
