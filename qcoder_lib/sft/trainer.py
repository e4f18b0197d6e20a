"""The SFT loop: ChatML examples with assistant-only labels, batched by right padding (as
Qwen's script) or by packing several conversations into one row (position ids restart per
conversation, so attention and targets never cross one: :mod:`qcoder_lib.packed`), AdamW with
warm-up + cosine, and the coarse-to-fine schedule of the report (stage 1: many diverse pairs;
stage 2: fewer, high-quality ones, rejection-sampled with the sandbox where tests exist).

Any model works: the course's :class:`~qcoder_lib.model.QwenForCausalLM` or a transformers
causal LM (also wrapped by peft for LoRA / QLoRA); only parameters with ``requires_grad`` train.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from qcoder_lib.packed import IGNORE_INDEX, document_starts
from qcoder_lib.sft.masks import chat_labels
from qcoder_lib.sft.sampling import is_course_model


@dataclass
class SFTConfig:
    """One SFT stage."""

    steps: int = 50  # optimiser steps
    batch_size: int = 4  # conversations per step (padding) or rows per step (packing)
    max_len: int = 512  # tokens per conversation (longer ones are cut) and per packed row
    packing: bool = False  # pack conversations into rows instead of right padding
    lr: float = 1e-3  # peak learning rate (Qwen's script: 5e-5 at 1.5B+ scale)
    warmup_steps: int = 5  # linear warm-up (Qwen's script: 100)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # gradient-norm clipping (0 = off)
    seed: int = 0  # shuffling seed


@dataclass
class SFTResult:
    """What one stage did."""

    losses: list = field(default_factory=list)  # training loss per step
    seconds: float = 0.0  # wall time of the loop
    trained_tokens: int = 0  # label tokens that carried loss
    steps: int = 0  # optimiser steps taken


def encode_conversations(tokenizer, conversations: list[list[dict]], max_len: int, **kw
                         ) -> list[tuple[list[int], list[int]]]:
    """``(ids, labels)`` per conversation (:func:`~qcoder_lib.sft.masks.chat_labels`, ``kw``
    passed on), cut to ``max_len`` tokens; conversations left with no label are skipped."""
    out = []
    for c in conversations:
        ids, labels = chat_labels(tokenizer, c, **kw)
        ids, labels = ids[:max_len], labels[:max_len]
        if any(x != IGNORE_INDEX for x in labels[1:]):
            out.append((ids, labels))
    return out


def pad_batch(examples, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``labels`` (``IGNORE_INDEX`` on pads) and ``attention_mask``,
    each ``(B, T)`` with ``T`` the longest example."""
    T = max(len(i) for i, _ in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for r, (i, lab) in enumerate(examples):
        ids[r, :len(i)] = torch.tensor(i)
        labels[r, :len(i)] = torch.tensor(lab)
        mask[r, :len(i)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack_examples(examples, seq_len: int, pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Greedy packing in order: rows of exactly ``seq_len`` tokens, ``input_ids``, ``labels``
    and ``position_ids`` (restarting at 0 per conversation; the padding tail is one more
    "document" whose labels are ignored), each ``(seq_len,)``."""
    rows, cur = [], []

    def flush():
        ids = [t for i, _ in cur for t in i]
        labels = [t for _, lab in cur for t in lab]
        pos = [p for i, _ in cur for p in range(len(i))]
        n = seq_len - len(ids)
        rows.append({"input_ids": torch.tensor(ids + [pad_id] * n),
                     "labels": torch.tensor(labels + [IGNORE_INDEX] * n),
                     "position_ids": torch.tensor(pos + list(range(n)))})

    for ids, labels in examples:
        ids, labels = ids[:seq_len], labels[:seq_len]
        if cur and sum(len(i) for i, _ in cur) + len(ids) > seq_len:
            flush()
            cur = []
        cur.append((ids, labels))
    if cur:
        flush()
    return rows


def model_logits(model, input_ids, position_ids=None, attention_mask=None) -> torch.Tensor:
    """Logits ``(B, T, V)`` from the course model or a transformers model. Right padding needs
    no mask for the course model (causal attention never looks right). A transformers model is
    called with ``use_cache=False``: with a cache, transformers does not read packed documents
    from ``position_ids`` and lets attention cross them."""
    if is_course_model(model):
        return model(input_ids, position_ids)
    return model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                 use_cache=False).logits


def sft_loss(logits, labels, position_ids=None) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over labelled targets, and their count. ``logits (B, T, V)``
    at position ``t`` predict ``labels[:, t + 1]``; with ``position_ids`` a target that starts
    another packed conversation is ignored."""
    targets = labels[:, 1:].clone()  # (B, T - 1)
    if position_ids is not None:
        targets[document_starts(position_ids)[:, 1:].expand_as(targets)] = IGNORE_INDEX
    n = int((targets != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                           targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / max(n, 1), n


def lr_factor(step: int, cfg: SFTConfig) -> float:
    """Warm-up then cosine multiplier of ``cfg.lr`` at ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1)))


def _batches(examples, cfg: SFTConfig, pad_id: int):
    rng = random.Random(cfg.seed)
    while True:
        order = list(examples)
        rng.shuffle(order)
        if cfg.packing:
            rows = pack_examples(order, cfg.max_len, pad_id)
            for k in range(0, len(rows), cfg.batch_size):
                chunk = rows[k:k + cfg.batch_size]
                yield {key: torch.stack([r[key] for r in chunk]) for key in chunk[0]}
        else:
            for k in range(0, len(order), cfg.batch_size):
                yield pad_batch(order[k:k + cfg.batch_size], pad_id)


def train_sft(model, examples, cfg: SFTConfig, *, pad_id: int = 0, progress: bool = False
              ) -> SFTResult:
    """Train ``model`` in place for ``cfg.steps`` steps on ``examples`` (``(ids, labels)``
    pairs); return the per-step losses and timings."""
    if not examples:
        raise ValueError("train_sft: no examples (every conversation lacked assistant labels?)")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train_sft: the model has no trainable parameter")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    device = params[0].device
    res = SFTResult()
    model.train()
    batches = _batches(examples, cfg, pad_id)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="sft", leave=False)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        b = {k: v.to(device) for k, v in next(batches).items()}
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, cfg)
        logits = model_logits(model, b["input_ids"], b.get("position_ids"),
                              None if cfg.packing else b["attention_mask"])
        loss, n = sft_loss(logits, b["labels"], b.get("position_ids"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        res.losses.append(loss.item())
        res.trained_tokens += n
        res.steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{res.losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    res.seconds = time.perf_counter() - t0
    model.eval()
    return res


def has_4bit_layers(model) -> bool:
    """True when some parameter is a bitsandbytes 4-bit weight (it carries a ``quant_state``)."""
    return any(getattr(p, "quant_state", None) is not None for p in model.parameters())


def mean_loss(model, examples, batch_size: int = 8, pad_id: int = 0) -> float:
    """Mean label-token loss of ``model`` over ``examples`` (right padding, no update).

    A 4-bit model is evaluated with autograd on: bitsandbytes 0.50 on a CPU with AVX512-BF16
    repacks a 4-bit weight for inference the first time it sees an input without gradient,
    one way, after which a training step fails (an in-place bias add on a leaf)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.set_grad_enabled(has_4bit_layers(model)):
        for k in range(0, len(examples), batch_size):
            b = {key: v.to(device)
                 for key, v in pad_batch(examples[k:k + batch_size], pad_id).items()}
            loss, n = sft_loss(model_logits(model, b["input_ids"], None, b["attention_mask"]),
                               b["labels"])
            total += loss.item() * n
            count += n
    model.train(was)
    return total / max(count, 1)


def rejection_sample(model, tokenizer, pairs, n: int = 4, *, temperature: float = 0.8,
                     max_new_tokens: int = 128, seed: int = 0, timeout_s: float = 10.0):
    """Stage-2 data by rejection sampling: for each pair with Python tests, sample ``n``
    answers and keep those whose code passes the tests in the sandbox (as new pairs of kind
    ``"rejection_sampled"``); pairs without tests are kept as they are. Returns
    ``(pairs, counts)`` with counts of sampled / passed answers and untested pairs."""
    from dataclasses import replace

    from qcoder_lib.sft.sampling import judge_answers, sample_answers

    tested = [p for p in pairs if p.language == "python" and p.tests.strip()]
    out = [p for p in pairs if not (p.language == "python" and p.tests.strip())]
    counts = {"untested_kept": len(out), "sampled": 0, "passed": 0}
    if tested:
        convs = [[{"role": "user", "content": p.instruction}] for p in tested]
        answers = sample_answers(model, tokenizer, convs, n, temperature=temperature,
                                 max_new_tokens=max_new_tokens, seed=seed)
        status = judge_answers(answers, [p.tests for p in tested], timeout_s=timeout_s)
        for p, group, st in zip(tested, answers, status):
            counts["sampled"] += len(group)
            for a, s in zip(group, st):
                if s == "passed":
                    counts["passed"] += 1
                    out.append(replace(p, response=a, kind="rejection_sampled",
                                       meta={**p.meta, "from": p.kind}))
    return out, counts
