"""DPO with execution feedback: preference pairs from the sandbox, the loss written out, a
frozen reference model.

Pairs: for each task, sample several answers from the SFT model; answers whose code passes the
task's tests in the sandbox are "chosen", failing ones "rejected"; every (chosen, rejected)
combination up to ``max_pairs_per_task`` becomes a pair.

Loss (Rafailov et al. 2023, eq. 7), for a prompt x, chosen y_w and rejected y_l::

    L = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))])

where ``log pi(y|x)`` is the sum of the answer tokens' log-probabilities under the trained
policy and ``ref`` the frozen SFT model. The implicit rewards are ``beta * (log pi - log ref)``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.sft.masks import chat_labels
from qcoder_lib.sft.trainer import model_logits, pad_batch


@dataclass
class PreferencePair:
    """A prompt with a better and a worse answer."""

    prompt: list  # chat messages ending with the user turn
    chosen: str  # the answer that passed the tests
    rejected: str  # the answer that did not
    task_id: str = ""  # where the prompt came from
    rejected_status: str = ""  # the sandbox status of the rejected answer


@dataclass
class DPOConfig:
    """One DPO run."""

    beta: float = 0.1  # strength of the pull towards the reference (TRL's default 0.1)
    steps: int = 20  # optimiser steps
    batch_size: int = 2  # pairs per step
    lr: float = 5e-5  # learning rate (constant)
    max_len: int = 512  # tokens per prompt + answer
    seed: int = 0  # shuffling seed


@dataclass
class DPOResult:
    """What DPO training did, per step."""

    losses: list = field(default_factory=list)  # DPO loss
    reward_margins: list = field(default_factory=list)  # mean chosen - rejected reward
    accuracies: list = field(default_factory=list)  # share of pairs with chosen reward higher
    seconds: float = 0.0  # wall time


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1):
    """The DPO loss (mean over the batch) and the chosen / rejected rewards ``(B,)``, from
    summed answer log-probabilities ``(B,)`` of the policy and of the reference."""
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))  # (B,)
    return losses.mean(), beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def sequence_logps(model, input_ids, labels, attention_mask=None) -> torch.Tensor:
    """Sum of ``log p(labels[t] | tokens < t)`` over labelled positions, per row ``(B,)``."""
    logits = model_logits(model, input_ids, None, attention_mask)  # (B, T, V)
    targets = labels[:, 1:]  # (B, T - 1)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T - 1, V)
    tok = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (B, T - 1)
    return (tok * (targets != IGNORE_INDEX)).sum(-1)


def encode_pair(tokenizer, pair: PreferencePair, max_len: int):
    """``(chosen (ids, labels), rejected (ids, labels))``: the answer's tokens labelled (its
    ``<|im_end|>`` and newline included), the prompt not."""
    c = chat_labels(tokenizer, pair.prompt + [{"role": "assistant", "content": pair.chosen}])
    r = chat_labels(tokenizer, pair.prompt + [{"role": "assistant", "content": pair.rejected}])
    return (c[0][:max_len], c[1][:max_len]), (r[0][:max_len], r[1][:max_len])


def build_preference_pairs(model, tokenizer, tasks: list[dict], n_samples: int = 8, *,
                           temperature: float = 1.0, max_new_tokens: int = 128,
                           max_pairs_per_task: int = 4, seed: int = 0, timeout_s: float = 10.0):
    """Preference pairs from execution. Each task is a dict with ``prompt`` (chat messages),
    ``tests`` (Python) and optionally ``prefix`` (code the answer continues, e.g. a signature)
    and ``task_id``, and ``reference`` (a known answer: it joins the sampled candidates and is
    judged by the sandbox like them, so that a weak model still yields pairs). Returns
    ``(pairs, counts)`` with, per outcome, how many answers had it and
    how many tasks gave no pair because every answer passed or every answer failed."""
    from qcoder_lib.sft.sampling import judge_answers, sample_answers

    answers = sample_answers(model, tokenizer, [t["prompt"] for t in tasks], n_samples,
                             temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    answers = [g + ([t["reference"]] if t.get("reference") else [])
               for t, g in zip(tasks, answers)]
    status = judge_answers(answers, [t["tests"] for t in tasks],
                           [t.get("prefix", "") for t in tasks], timeout_s=timeout_s)
    rng = random.Random(seed)
    pairs: list[PreferencePair] = []
    counts: dict[str, int] = {}
    for t, group, st in zip(tasks, answers, status):
        for s in st:
            counts[f"answers_{s}"] = counts.get(f"answers_{s}", 0) + 1
        good = [a for a, s in zip(group, st) if s == "passed"]
        bad = [(a, s) for a, s in zip(group, st) if s != "passed"]
        if not good or not bad:
            key = "tasks_all_passed" if good else "tasks_all_failed"
            counts[key] = counts.get(key, 0) + 1
            continue
        combos = [(g, b) for g in good for b in bad]
        rng.shuffle(combos)
        for g, (b, s) in combos[:max_pairs_per_task]:
            pairs.append(PreferencePair(t["prompt"], g, b, t.get("task_id", ""), s))
    counts["pairs"] = len(pairs)
    return pairs, counts


def freeze(model):
    """``model`` in eval mode with no parameter requiring gradients (the DPO reference)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def train_dpo(policy, reference, tokenizer, pairs: list[PreferencePair], cfg: DPOConfig,
              *, pad_id: int = 0) -> DPOResult:
    """Train ``policy`` in place on ``pairs`` against the frozen ``reference`` (frozen here if
    it is not already). Chosen and rejected answers go through the model in one padded batch."""
    if not pairs:
        raise ValueError("train_dpo: no preference pairs")
    freeze(reference)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    device = params[0].device
    encoded = [encode_pair(tokenizer, p, cfg.max_len) for p in pairs]
    rng = random.Random(cfg.seed)
    res = DPOResult()
    t0 = time.perf_counter()
    order: list[int] = []
    policy.train()
    for _ in range(cfg.steps):
        if len(order) < cfg.batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        batch = [encoded[i][0] for i in idx] + [encoded[i][1] for i in idx]  # chosen, rejected
        b = {k: v.to(device) for k, v in pad_batch(batch, pad_id).items()}
        logps = sequence_logps(policy, b["input_ids"], b["labels"], b["attention_mask"])
        with torch.no_grad():
            ref = sequence_logps(reference, b["input_ids"], b["labels"], b["attention_mask"])
        n = len(idx)
        loss, rc, rr = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        res.losses.append(loss.item())
        res.reward_margins.append(float((rc - rr).mean()))
        res.accuracies.append(float((rc > rr).float().mean()))
    res.seconds = time.perf_counter() - t0
    policy.eval()
    return res


def pass_rate(model, tokenizer, tasks: list[dict], *, max_new_tokens: int = 128,
              timeout_s: float = 10.0) -> tuple[float, list[str]]:
    """Greedy pass@1 over ``tasks`` (as in :func:`build_preference_pairs`) and each status."""
    from qcoder_lib.sft.sampling import judge_answers, sample_answers

    answers = sample_answers(model, tokenizer, [t["prompt"] for t in tasks], 1, temperature=0.0,
                             max_new_tokens=max_new_tokens)
    status = [s[0] for s in judge_answers(answers, [t["tests"] for t in tasks],
                                          [t.get("prefix", "") for t in tasks],
                                          timeout_s=timeout_s)]
    return sum(s == "passed" for s in status) / max(len(tasks), 1), status


def pair_tasks(pairs) -> list[dict]:
    """DPO tasks from instruction pairs with Python tests (training data, never eval sets):
    the instruction as prompt, the tests, the pair's verified response as ``reference``."""
    return [{"task_id": p.source, "tests": p.tests, "reference": p.response,
             "prompt": [{"role": "user", "content": p.instruction}]}
            for p in pairs if p.language == "python" and p.tests.strip()]


def eval_tasks(records: list[dict]) -> list[dict]:
    """DPO / pass-rate tasks from course eval records (``prompt`` = a signature with docstring,
    ``test``): the user asks for the function, the answer's code runs with the tests."""
    out = []
    for r in records:
        out.append({"task_id": r.get("task_id", ""), "tests": r["test"],
                    "prompt": [{"role": "user", "content": "Complete this Python function.\n\n"
                                f"```python\n{r['prompt'].rstrip()}\n```"}]})
    return out
