"""The pretraining loop: :func:`train` and :func:`evaluate`.

One optimizer step, top to bottom::

    rows (batch_size, T) from the data, in a seeded order    # a cursor counts rows consumed
    split into grad_accum_steps micro-batches
    for each: loss = sum CE(logits, targets) / targets in the whole step;  loss.backward()
    grad_norm = clip_grad_norm_(params, grad_clip)
    lr = lr_at(step, config);  AdamW step
    append {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu"} to metrics.jsonl

A run in ``out_dir`` writes ``metrics.jsonl`` (``eval_loss`` and ``eval_bpb`` added on eval
steps), ``checkpoint-<step>/`` (see :mod:`.checkpoint`) and ``final/`` (an HF-format model).

``train(..., resume=True)`` continues from the newest complete checkpoint and gives the same
losses as a run that was never interrupted (bit for bit in fp32 on CPU): the data order is a pure
function of the seed and the row cursor, the schedule a pure function of the step, and the
model, optimizer and RNG states are restored exactly. SIGTERM or SIGINT during training finishes
the current step, writes a checkpoint and raises :class:`TrainingInterrupted` (which carries the
run's result so far).

Distributed strategies plug in through four small functions (:func:`wrap_model`,
:func:`rank_rows`, :func:`reduce_for_logging`, :func:`save_state` / :func:`load_state`); with
``strategy="single"`` each is the plain single-process step.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from qcoder_lib.io import TMP_MARK, atomic_write_text
from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.train.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    list_checkpoints,
    load_checkpoint,
    rotate_checkpoints,
    save_checkpoint,
    save_final,
)
from qcoder_lib.train.config import TrainConfig, lr_at
from qcoder_lib.train.guards import (
    _activation_checkpointing,
    _stop_on_signals,
    check_out_dir,
    check_vocab,
)
from qcoder_lib.train.optimizer import make_optimizer, param_groups
from qcoder_lib.train.progress import (
    ProgressBar,
    bits_per_byte,
    mfu,
    peak_flops,
    token_byte_lengths,
)
from qcoder_lib.train.rows import Rows, as_rows

RESUME_MUST_MATCH = ("batch_size", "seq_len", "seed")  # a resumed run must keep these


# ----------------------------------------------------------------------------------------------
# The strategy hooks (qcoder_lib.distributed replaces the bodies for "ddp" and "fsdp2")


def wrap_model(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """The module the step calls forward on (``single``: the model itself)."""
    if cfg.strategy != "single":
        raise NotImplementedError(
            f"TrainConfig.strategy={cfg.strategy!r}: wired by qcoder_lib.distributed")
    return model


def rank_rows(ids, pos, tgt, cfg: TrainConfig):
    """This process's share of a step's rows (``single``: all of them)."""
    return ids, pos, tgt


def reduce_for_logging(value: float, cfg: TrainConfig) -> float:
    """A per-process number averaged over processes for the log (``single``: itself)."""
    return value


def save_state(folder, model, optimizer, state: dict) -> Path:
    """Write one checkpoint (``single``: :func:`~qcoder_lib.train.save_checkpoint`)."""
    return save_checkpoint(folder, model, optimizer, state)


def load_state(folder, model, optimizer) -> dict:
    """Read one checkpoint (``single``: :func:`~qcoder_lib.train.load_checkpoint`; a
    ``torch.distributed.checkpoint`` folder written by N ranks is resharded onto this process)."""
    if (Path(folder) / ".metadata").is_file():  # issue 14: a DCP checkpoint (distributed run)
        from qcoder_lib.distributed.checkpoint import load_distributed

        return load_distributed(folder, model, optimizer)
    return load_checkpoint(folder, model, optimizer)


# ----------------------------------------------------------------------------------------------
# Results, the log, evaluation


@dataclass
class TrainResult:
    """What a run did."""

    steps: int  # optimizer steps done in total (including those before a resume)
    losses: list[float]  # training loss of every step of this process's run, in order
    final_loss: float  # loss of the last step
    eval_loss: float | None  # last held-out loss in nats per token, if evaluated
    eval_bpb: float | None  # last held-out bits per byte, if evaluated with a tokenizer
    tokens: int  # tokens seen in total
    seconds: float  # wall time of this process's part of the run
    resumed_from: int | None  # the checkpoint step this run continued from, if any
    out_dir: Path  # where metrics.jsonl, checkpoints and final/ are
    final_dir: Path | None  # the HF-format model folder (None when stopped by a signal)
    stopped: str | None = None  # "SIGTERM" / "SIGINT" when a signal ended the run early
    checkpoints: list[Path] = field(default_factory=list)  # complete checkpoints left

    @property
    def metrics_path(self) -> Path:
        """The run's ``metrics.jsonl``."""
        return self.out_dir / "metrics.jsonl"


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped :func:`train` after it wrote a checkpoint. ``signal`` names the
    signal, ``result`` is the run's :class:`TrainResult` so far (``resume=True`` continues it).
    A ``KeyboardInterrupt``, so a script stops (the command line turns it into exit status 143
    or 130) and a notebook cell ends, instead of carrying on as if training had finished."""

    def __init__(self, signal_name: str, result: TrainResult):
        self.signal = signal_name
        self.result = result
        super().__init__(f"{signal_name} at step {result.steps}: checkpoint-{result.steps} "
                         f"saved in {result.out_dir}; train(..., resume=True) continues")


@dataclass
class EvalResult:
    """Held-out numbers of :func:`evaluate`."""

    loss: float  # mean next-token loss, nats per target token
    bits_per_byte: float | None  # the same loss per byte of text (None without byte lengths)
    tokens: int  # target tokens scored


def read_training_log(path, *, drop_partial_last: bool = False) -> list[dict]:
    """The records of a run's ``metrics.jsonl`` (a folder means its ``metrics.jsonl``). A
    malformed line raises ``ValueError`` naming the file and line; with ``drop_partial_last`` a
    malformed *last* line (a kill in the middle of writing it) is dropped instead."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    lines = p.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if drop_partial_last and i == len(lines):
                break
            raise ValueError(f"{p}:{i}: malformed metrics line ({e})") from e
    return out


def _autocast(dtype: str, device: torch.device):
    use_bf16 = dtype == "bf16" or (dtype == "auto" and device.type == "cuda")
    if not use_bf16:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def eval_row_indices(n_rows: int, max_rows: int | None = None) -> list[int]:
    """The rows :func:`evaluate` scores out of ``n_rows``: all of them, or ``max_rows`` spread
    evenly (``i * n_rows // max_rows``), the same ones on every call."""
    if max_rows is None or max_rows >= n_rows:
        return list(range(n_rows))
    return [i * n_rows // max_rows for i in range(max_rows)]


def evaluate(model, rows: Rows, batch_size: int = 8, max_rows: int | None = None,
             dtype: str = "fp32", token_bytes=None) -> EvalResult:
    """Mean next-token loss over ``max_rows`` rows of ``rows`` (all rows when ``None``) and,
    with ``token_bytes`` (``(V,)`` bytes per token id, :func:`token_byte_lengths`), bits per
    byte. The rows scored are spread evenly over ``rows`` (row ``i * len(rows) // max_rows``),
    not the first ones: held-out rows follow the corpus order, so the first few dozen come from
    a handful of documents and would make a noisy, biased estimate."""
    device = next(model.parameters()).device
    picked = eval_row_indices(len(rows), max_rows)
    n = len(picked)
    was = model.training
    model.eval()
    total, count, n_bytes = 0.0, 0, 0
    with torch.no_grad(), _autocast(dtype, device):
        for s in range(0, n, batch_size):
            ids, pos, tgt = (t.to(device) for t in rows.get(picked[s:s + batch_size]))
            logits = model(ids, pos)  # (b, T, V)
            total += float(F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(),
                                           ignore_index=IGNORE_INDEX, reduction="sum"))
            scored = tgt[tgt != IGNORE_INDEX]
            count += int(scored.numel())
            if token_bytes is not None:
                n_bytes += int(torch.as_tensor(token_bytes)[scored.cpu()].sum())
    model.train(was)
    bpb = bits_per_byte(total, n_bytes) if token_bytes is not None else None
    return EvalResult(total / max(count, 1), bpb, count)


# ----------------------------------------------------------------------------------------------
# The loop


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
    """Train ``model`` for ``config.steps`` optimizer steps on ``train_data`` (:class:`Rows`,
    a ``PackedBatch`` or a token-shard folder, read lazily) and write metrics, checkpoints and
    ``final/`` into ``config.out_dir``; see the module docstring. ``eval_data`` (same kinds)
    gives the held-out loss every ``eval_every`` steps (and bits per byte when ``tokenizer`` is
    given). ``tokenizer`` is saved next to the final model.

    ``resume=True`` continues from the newest complete checkpoint in ``out_dir`` (or starts
    afresh when there is none); ``resume=False`` refuses an ``out_dir`` that already holds
    checkpoints or metrics (``FileExistsError`` naming it) rather than mixing two runs.
    ``on_step(record)`` is called after every step with that step's metrics record (raise from
    it to stop the run). SIGTERM/SIGINT: see :class:`TrainingInterrupted`. Before the first step the data's ids are checked against the model's
    vocabulary and ``out_dir`` for being writable with room for a checkpoint.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: config must be a TrainConfig, not {type(config).__name__}")
    cfg = config
    cfg.validate()
    if cfg.strategy != "single":  # issue 14: DDP / FSDP2 run the data-parallel step
        from qcoder_lib.distributed.train import train_distributed

        return train_distributed(model, train_data, cfg, eval_data, resume=resume,
                                 tokenizer=tokenizer, on_step=on_step)
    rows = as_rows(train_data, cfg.seq_len)
    eval_rows = as_rows(eval_data, cfg.seq_len) if eval_data is not None else None
    if rows.seq_len != cfg.seq_len:
        raise ValueError(f"training rows ({rows.source}) have {rows.seq_len} tokens but "
                         f"TrainConfig.seq_len={cfg.seq_len}")
    check_vocab(rows, model)
    if eval_rows is not None:
        check_vocab(eval_rows, model, "held-out data")
    out = Path(cfg.out_dir)
    check_out_dir(out, checkpoint_bytes(model) if cfg.checkpoint_every else 1 << 16)
    metrics_path = out / "metrics.jsonl"
    device = next(model.parameters()).device
    for leftover in out.glob(f"*{TMP_MARK}*"):  # an interrupted save: not a checkpoint
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()

    torch.manual_seed(cfg.seed)
    model.train()
    optimizer = make_optimizer(model, cfg)
    step, cursor, tokens, resumed_from = 0, 0, 0, None
    checkpoints = list_checkpoints(out)
    if resume and checkpoints:
        resumed_from, folder = checkpoints[-1]
        state = load_state(folder, model, optimizer)
        saved = state.get("config", {})
        for name in RESUME_MUST_MATCH:  # these fix which rows the cursor points at
            if name in saved and saved[name] != getattr(cfg, name):
                raise ValueError(
                    f"cannot resume {folder.name}: TrainConfig.{name}={getattr(cfg, name)!r} but "
                    f"the run was started with {saved[name]!r} (the data order would differ)"
                )
        step, cursor, tokens = int(state["step"]), int(state["cursor"]), int(state["tokens"])
        kept = [r for r in read_training_log(metrics_path, drop_partial_last=True)
                if r["step"] <= step] if metrics_path.exists() else []
        atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
    elif not resume and (checkpoints or metrics_path.exists()):
        raise FileExistsError(
            f"out_dir {out} already holds a run (checkpoints or metrics.jsonl); pass resume=True "
            "to continue it or choose another out_dir"
        )
    else:
        metrics_path.write_text("", encoding="utf-8")
    atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=1))

    token_bytes = token_byte_lengths(tokenizer) if tokenizer is not None else None
    net = wrap_model(model, cfg)
    if cfg.compile:
        net = torch.compile(net)
    flops_per_token = model.flops_per_token(cfg.seq_len) if hasattr(model, "flops_per_token") \
        else None
    peak = peak_flops(device)
    eval_dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    micro = cfg.batch_size // cfg.grad_accum_steps
    losses: list[float] = []
    last_eval = None
    stop: dict = {}
    t_start = time.perf_counter()
    bar = ProgressBar(cfg.steps, step, cfg.progress)

    def checkpoint(lr):
        state = {"step": step, "cursor": cursor, "tokens": tokens, "lr": lr,
                 "schedule": "lr_at(step, config): warm-up + cosine, a pure function",
                 "config": cfg.to_dict()}
        save_state(out / f"checkpoint-{step}", model, optimizer, state)
        rotate_checkpoints(out, cfg.keep_last)

    try:
        with _stop_on_signals(stop), _activation_checkpointing(model, cfg.activation_checkpointing):
            while step < cfg.steps:
                t0 = time.perf_counter()
                lr = lr_at(step, cfg)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                ids, pos, tgt = rank_rows(*rows.rows_at(cursor, cfg.batch_size, cfg.seed), cfg)
                ids, pos, tgt = ids.to(device), pos.to(device), tgt.to(device)  # (B, T) each
                n_targets = max(int((tgt != IGNORE_INDEX).sum()), 1)  # over the whole step
                optimizer.zero_grad(set_to_none=True)
                loss_sum = 0.0
                for m in range(cfg.grad_accum_steps):
                    sl = slice(m * micro, (m + 1) * micro)
                    with _autocast(cfg.dtype, device):
                        logits = net(ids[sl], pos[sl])  # (micro, T, V)
                    # Sum over this micro-batch / targets in the whole step: the accumulated
                    # gradient is then exactly that of the mean loss over the full batch.
                    loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt[sl].flatten(),
                                           ignore_index=IGNORE_INDEX, reduction="sum") / n_targets
                    loss.backward()
                    loss_sum += float(loss.detach())
                max_norm = cfg.grad_clip if cfg.grad_clip else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                loss_sum = reduce_for_logging(loss_sum, cfg)
                if not math.isfinite(loss_sum):
                    raise FloatingPointError(
                        f"loss is {loss_sum} at step {step + 1}; lower TrainConfig.lr")
                optimizer.step()
                step += 1
                cursor += cfg.batch_size
                tokens += cfg.batch_size * cfg.seq_len
                if device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                losses.append(loss_sum)
                tps = cfg.batch_size * cfg.seq_len / max(dt, 1e-9)
                util = mfu(tps, flops_per_token, peak) if flops_per_token else None
                record = {"step": step, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm,
                          "tokens": tokens, "tokens_per_s": tps, "mfu": util}
                if eval_rows is not None and cfg.eval_every and (
                    step % cfg.eval_every == 0 or step == cfg.steps
                ):
                    last_eval = evaluate(model, eval_rows, micro, cfg.eval_rows, eval_dtype,
                                         token_bytes)
                    record["eval_loss"] = last_eval.loss
                    if last_eval.bits_per_byte is not None:
                        record["eval_bpb"] = last_eval.bits_per_byte
                if step % cfg.log_every == 0 or step == cfg.steps or "eval_loss" in record:
                    with open(metrics_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(record) + "\n")
                if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0
                                             or step == cfg.steps):
                    checkpoint(lr)
                bar.update(loss_sum, tps, util, last_eval.loss if last_eval else None)
                if on_step is not None:
                    on_step(record)
                if stop and step < cfg.steps:
                    if not (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                        checkpoint(lr)
                    break
    finally:
        bar.close()

    stopped = stop.get("signal") if step < cfg.steps else None
    final = None if stopped else save_final(model, out / "final", tokenizer)
    if not losses and metrics_path.exists():  # resumed a finished run: report its last loss
        losses_all = [r["loss"] for r in read_training_log(metrics_path)]
    else:
        losses_all = losses
    result = TrainResult(
        steps=step, losses=losses, final_loss=losses_all[-1] if losses_all else float("nan"),
        eval_loss=last_eval.loss if last_eval else None,
        eval_bpb=last_eval.bits_per_byte if last_eval else None, tokens=tokens,
        seconds=time.perf_counter() - t_start, resumed_from=resumed_from, out_dir=out,
        final_dir=final, stopped=stopped,
        checkpoints=[p for _, p in list_checkpoints(out)],
    )
    if stopped:
        raise TrainingInterrupted(stopped, result)
    return result


__all__ = ["CheckpointError", "EvalResult", "TrainResult", "TrainingInterrupted", "check_out_dir", "check_vocab",
           "evaluate", "load_state", "make_optimizer", "param_groups", "rank_rows",
           "read_training_log", "reduce_for_logging", "save_state", "train", "wrap_model"]
