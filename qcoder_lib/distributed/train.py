"""The pretraining loop on one process or many: the step of :func:`qcoder_lib.train.train`, with
the three changes a data-parallel step needs (see :mod:`.strategy`).

One optimizer step on rank ``r`` of ``N``::

    rows = global batch at the cursor (same seeded order as one process)   # (batch_size, T)
    mine = rows[r*B/N : (r+1)*B/N]                                         # (B/N, T)
    n    = targets in the WHOLE global batch (all-reduce)
    for each micro-batch: loss = N * sum CE(mine) / n;  backward           # DDP/FSDP2 average
    clip global grad norm; AdamW step (FSDP2: on this rank's 1/N shard only)
    cursor += batch_size                                                    # global, per step

The schedule (:func:`qcoder_lib.train.lr_at`), the optimizer groups
(:func:`qcoder_lib.train.make_optimizer`) and the data order
(:meth:`qcoder_lib.train.TokenRows.rows_at`) are the single-process ones, so N ranks train the
same model as one process with the same global batch, up to float summation order. Checkpoints
are DCP folders (:mod:`.checkpoint`): resume on any number of ranks continues at the same global
cursor. Rank 0 writes ``metrics.jsonl`` and ``final/`` (an HF folder, gathered from the shards).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from qcoder_lib.distributed.checkpoint import gather_full_model, load_distributed, save_distributed
from qcoder_lib.distributed.memory import measured_state_bytes
from qcoder_lib.distributed.strategy import (
    DistInfo,
    current_info,
    global_sum,
    rank_rows,
    set_gradient_sync,
    wrap_model,
)
from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.train import TrainResult


@dataclass
class DistributedResult(TrainResult):
    """:class:`qcoder_lib.train.TrainResult` plus what data parallelism adds."""

    world_size: int = 1  # ranks that trained
    strategy: str = "single"  # "single", "ddp" or "fsdp2"
    state_bytes: dict | None = None  # weights/grads/optimizer bytes this rank held at the end


def _grad_norm(model, max_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor reduced over the shards
        norm = norm.full_tensor()
    return float(norm)


def train_distributed(model: torch.nn.Module, train_data, config, eval_data=None, *,
                      resume: bool = False, tokenizer=None,
                      on_step: Callable[[dict], None] | None = None,
                      info: DistInfo | None = None, strategy: str | None = None):
    """Train ``model`` (identical on every rank, e.g. built after the same seed) for
    ``config.steps`` steps of a :class:`qcoder_lib.train.TrainConfig` with ``strategy``
    (default ``config.strategy``: ``"single"``, ``"ddp"``, ``"fsdp2"``) on ``train_data`` (any
    kind :func:`qcoder_lib.train.as_rows` accepts); :func:`qcoder_lib.train.train` calls this for
    ``ddp`` and ``fsdp2``. Every rank calls it. Writes into ``config.out_dir``:
    ``metrics.jsonl`` (rank 0), DCP ``checkpoint-<step>/`` folders (every ``checkpoint_every``
    steps) and ``final/`` (rank 0, with ``tokenizer`` when given). ``eval_data`` gives the
    held-out loss every ``eval_every`` steps. ``resume=True`` continues from the newest
    checkpoint, on any number of ranks. Returns a :class:`qcoder_lib.train.TrainResult` with
    ``world_size``, ``strategy`` and ``state_bytes`` added."""
    from qcoder_lib.train import (
        as_rows,
        evaluate,
        list_checkpoints,
        lr_at,
        make_optimizer,
        save_final,
    )

    cfg = config
    strategy = strategy or getattr(cfg, "strategy", "single")
    for name in ("compile", "activation_checkpointing"):  # not wired for ddp / fsdp2 yet
        if getattr(cfg, name, False) and strategy != "single":
            raise NotImplementedError(f"TrainConfig.{name}=True is not supported with "
                                      f"strategy={strategy!r} yet; set it to False")
    info = info or current_info()
    rows = as_rows(train_data, cfg.seq_len)
    eval_rows = as_rows(eval_data, cfg.seq_len) if eval_data is not None else None
    mine = rank_rows(cfg.batch_size, info)  # raises when batch_size % world_size
    local = mine.stop - mine.start
    if local % cfg.grad_accum_steps:
        raise ValueError(f"TrainConfig: {local} rows per rank (batch_size={cfg.batch_size} / "
                         f"{info.world_size} ranks) is not a multiple of grad_accum_steps="
                         f"{cfg.grad_accum_steps}")
    micro = local // cfg.grad_accum_steps
    out = Path(cfg.out_dir)
    metrics_path = out / "metrics.jsonl"
    model = model.to(info.device)
    model.train()
    model = wrap_model(model, strategy, info)
    optimizer = make_optimizer(model, cfg)
    step, cursor, tokens, resumed_from = 0, 0, 0, None
    checkpoints = list_checkpoints(out)
    if resume and checkpoints:
        resumed_from, folder = checkpoints[-1]
        state = load_distributed(folder, model, optimizer, info)
        step, cursor, tokens = int(state["step"]), int(state["cursor"]), int(state["tokens"])
    elif not resume and (checkpoints or metrics_path.exists()):
        raise FileExistsError(f"out_dir {out} already holds a run; pass resume=True or choose "
                              "another out_dir")
    if info.backend is not None:
        torch.distributed.barrier()  # every rank has looked at out_dir before rank 0 writes
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resumed_from is None:
            metrics_path.write_text("", encoding="utf-8")
        else:  # drop what was logged after the checkpoint
            kept = [ln for ln in metrics_path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= step]
            metrics_path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    # bf16 compute on GPU: FSDP2 casts by its MixedPrecisionPolicy, the others by autocast
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and info.device.type == "cuda")
    autocast = torch.autocast(info.device.type, dtype=torch.bfloat16,
                              enabled=use_bf16 and strategy != "fsdp2")
    scale = float(info.world_size)  # undo the gradient averaging of DDP / FSDP2
    losses: list[float] = []
    last_eval = None
    t_start = time.perf_counter()
    while step < cfg.steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        ids, pos, tgt = (t[mine].to(info.device) for t in rows.rows_at(cursor, cfg.batch_size,
                                                                           cfg.seed))
        n_targets = max(float(global_sum(int((tgt != IGNORE_INDEX).sum()), info)), 1.0)
        optimizer.zero_grad(set_to_none=True)
        local_loss = 0.0
        for m in range(cfg.grad_accum_steps):
            sl = slice(m * micro, (m + 1) * micro)
            with set_gradient_sync(model, strategy, m == cfg.grad_accum_steps - 1), autocast:
                logits = model(ids[sl], pos[sl])  # (micro, T, V)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt[sl].flatten(),
                                       ignore_index=IGNORE_INDEX, reduction="sum") / n_targets
                (loss * scale).backward()
            local_loss += float(loss.detach())
        grad_norm = _grad_norm(model, cfg.grad_clip if cfg.grad_clip else float("inf"))
        loss_value = float(global_sum(local_loss, info))
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {step + 1} on rank "
                                     f"{info.rank}; lower TrainConfig.lr")
        optimizer.step()
        step += 1
        cursor += cfg.batch_size
        tokens += cfg.batch_size * rows.seq_len
        losses.append(loss_value)
        record = {"step": step, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                  "tokens": tokens, "world_size": info.world_size,
                  "tokens_per_s": cfg.batch_size * rows.seq_len / max(time.perf_counter() - t0,
                                                                       1e-9)}
        if eval_rows is not None and cfg.eval_every and (step % cfg.eval_every == 0
                                                         or step == cfg.steps):
            # every rank runs it (FSDP2 gathers weights collectively); all get the same number
            last_eval = evaluate(model, eval_rows, micro, cfg.eval_rows,
                                 "bf16" if use_bf16 else "fp32").loss
            record["eval_loss"] = last_eval
        if info.is_main and (step % cfg.log_every == 0 or step == cfg.steps
                             or "eval_loss" in record):
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            state = {"step": step, "cursor": cursor, "tokens": tokens, "lr": lr,
                     "world_size": info.world_size, "strategy": strategy,
                     "config": cfg.to_dict()}
            save_distributed(out / f"checkpoint-{step}", model, optimizer, state, info)
            if info.is_main and cfg.keep_last:
                for _, old in list_checkpoints(out)[:-cfg.keep_last]:
                    shutil.rmtree(old)
        if on_step is not None:
            on_step(record)
    held = measured_state_bytes(model, optimizer)
    single = gather_full_model(model, info)  # a collective: every rank takes part
    final = save_final(single, out / "final", tokenizer) if single is not None else None
    return DistributedResult(
        steps=step, losses=losses, final_loss=losses[-1] if losses else float("nan"),
        eval_loss=last_eval, eval_bpb=None, tokens=tokens,
        seconds=time.perf_counter() - t_start, resumed_from=resumed_from, out_dir=out,
        final_dir=final, checkpoints=[p for _, p in list_checkpoints(out)],
        world_size=info.world_size, strategy=strategy, state_bytes=held)
