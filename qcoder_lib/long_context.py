"""Does a model use far context? Three probes for notebook 08 (repository level, long context).

- :func:`loss_by_position`: mean next-token loss at each position of long samples. A model that
  uses far context gets better (lower) further in; a model past the lengths it knows gets worse.
- :func:`needle_prompt` / :func:`needle_scores`: needle in code. A function with a made-up name is
  defined at the start of a long repository sample, real code follows, and the sample ends with a
  call to it whose first name token is given. Scored teacher-forced: the share of the remaining
  name tokens the model predicts (argmax) and their mean log-probability, against a control
  where the definition is replaced by filler of the same length.
- :func:`attention_cost`: the memory of the ``(T, T)`` score matrix that plain attention
  materialises and the time of eager vs SDPA attention as ``T`` grows.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SYLLABLES = ("zor", "quib", "vex", "mul", "trax", "pel", "dun", "fip", "gorn", "wub", "kel",
             "yap", "snor", "blen", "crad", "tiv")  # made-up name parts, not English words


@torch.no_grad()
def loss_by_position(model, samples, length: int, batch_size: int = 4) -> np.ndarray:
    """``(length - 1,)``: mean next-token loss (nats) at each position ``t`` (predicting token
    ``t + 1``) over ``samples`` (lists of ids, each at least ``length`` long; the first ``length``
    ids are used, positions ``0 .. length - 1``). Raises ``ValueError`` naming the shortest."""
    rows = [list(s[:length]) for s in samples]
    short = [i for i, r in enumerate(rows) if len(r) < length]
    if short:
        raise ValueError(f"loss_by_position: sample {short[0]} has {len(rows[short[0]])} ids, "
                         f"fewer than length={length}")
    device = next(model.parameters()).device
    total = torch.zeros(length - 1, dtype=torch.float64)
    for i in range(0, len(rows), batch_size):
        ids = torch.tensor(rows[i : i + batch_size], device=device)  # (B, T)
        logits = model(ids)[:, :-1].float()  # (B, T-1, V)
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
        total += nll.sum(0).double().cpu()
    return (total / len(rows)).numpy()


def bucket_means(values: np.ndarray, buckets: int) -> np.ndarray:
    """``values`` averaged over ``buckets`` equal consecutive slices (the last takes the rest)."""
    edges = np.linspace(0, len(values), buckets + 1).astype(int)
    return np.array([values[a:b].mean() for a, b in itertools.pairwise(edges)])


def needle_name(rng: random.Random, parts: int = 4) -> str:
    """A made-up snake_case function name of ``parts`` syllables, e.g. ``zor_quib_vex_mul``."""
    return "_".join(rng.choice(SYLLABLES) for _ in range(parts))


@dataclass
class NeedlePrompt:
    """One needle-in-code sample."""

    ids: list[int]  # the whole sample, exactly the requested length
    control: list[int]  # same length and tail, the definition replaced by filler
    answer: slice  # positions of the name tokens to predict (teacher-forced)
    name: str  # the function's name


def needle_prompt(tokenizer, filler: list[int], length: int, rng: random.Random) -> NeedlePrompt:
    """A repository-level sample of ``length`` ids: ``<|repo_name|>`` and a file defining a
    function with a made-up name, then ``filler`` ids (other files of a real repository, cut to
    fit), then a last file ending with ``value = <name>`` (the definition ~``length`` tokens back).
    The first name token is given; the others are the answer. Raises ``ValueError`` naming
    ``filler`` when it is too short for ``length``."""
    from qcoder_lib.tokenizer import encode_data, special_id

    enc = lambda t: encode_data(tokenizer, t)
    R, F_ = special_id(tokenizer, "<|repo_name|>"), special_id(tokenizer, "<|file_sep|>")
    name = needle_name(rng)
    name_ids = enc(" " + name)
    body = f"(x):\n    return x * {rng.randint(2, 9)}\n\n\n"
    head = [R, *enc("demo\n"), F_, *enc("helpers.py\n"), *enc("def"), *name_ids, *enc(body)]
    tail = [F_, *enc("main.py\nfrom helpers import *\n\nvalue ="), *name_ids]
    need = length - len(head) - len(tail)
    if need < 1 or len(filler) < need + len(head):
        raise ValueError(f"needle_prompt: filler has {len(filler)} ids, needs {need + len(head)} "
                         f"for length={length}")
    ids = head + list(filler[:need]) + tail
    control = list(filler[need : need + len(head)]) + list(filler[:need]) + tail
    start = length - len(name_ids) + 1  # first name token given; predict the rest
    return NeedlePrompt(ids, control, slice(start, length), name)


@torch.no_grad()
def needle_scores(model, prompts: list[NeedlePrompt], batch_size: int = 8) -> dict:
    """Teacher-forced scores of the answer tokens, with and without the definition:
    ``accuracy`` (share of answer tokens that are the argmax), ``completed`` (share of prompts
    with every answer token right, i.e. greedy decoding writes the name), ``logprob`` (mean
    log-probability per answer token), the same three for ``control_*``, and ``gain`` =
    ``logprob - control_logprob`` (nats per name token the definition is worth). Prompts of one
    length run ``batch_size`` at a time."""
    device = next(model.parameters()).device
    out = {}
    for key, field in (("", "ids"), ("control_", "control")):
        hits, lps, done = [], [], []
        for i in range(0, len(prompts), batch_size):
            group = prompts[i : i + batch_size]
            lengths = {len(getattr(p, field)) for p in group}
            if len(lengths) > 1:  # a batch needs one length; score one by one otherwise
                group_ids = [torch.tensor([getattr(p, field)], device=device) for p in group]
                logits = [model(ids)[0] for ids in group_ids]
            else:
                ids = torch.tensor([getattr(p, field) for p in group], device=device)  # (B, T)
                group_ids, logits = list(ids[:, None]), list(model(ids))  # (T, V) each
            for p, ids, lg in zip(group, group_ids, logits):
                pos = torch.arange(p.answer.start, p.answer.stop, device=device)
                target = ids[0, pos]
                pred = torch.log_softmax(lg[pos - 1].float(), -1)  # logits at t-1 predict t
                ok = pred.argmax(-1) == target
                hits.append(ok.float().mean().item())
                done.append(float(ok.all().item()))
                lps.append(pred.gather(-1, target[:, None]).mean().item())
        out[key + "accuracy"] = float(np.mean(hits))
        out[key + "completed"] = float(np.mean(done))
        out[key + "logprob"] = float(np.mean(lps))
    out["gain"] = out["logprob"] - out["control_logprob"]
    return out


def attention_cost(lengths, heads: int = 4, head_dim: int = 16, repeats: int = 3) -> list[dict]:
    """For each ``T`` in ``lengths``: bytes of the fp32 ``(heads, T, T)`` score matrix that eager
    attention materialises (FlashAttention, notebook 03, keeps only ``O(T)`` per head), and the
    best-of-``repeats`` wall time in ms of one eager and one SDPA causal attention of batch 1."""
    from qcoder_lib.model import eager_attention

    rows = []
    for T in lengths:
        q, k, v = (torch.randn(1, heads, T, head_dim) for _ in range(3))
        times = {}
        for name in ("eager", "sdpa"):
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                if name == "eager":
                    eager_attention(q, k, v)
                else:
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
                best = min(best, time.perf_counter() - t0)
            times[name] = best * 1e3
        rows.append({"T": T, "scores_MiB": heads * T * T * 4 / 2**20,
                     "eager_ms": times["eager"], "sdpa_ms": times["sdpa"]})
    return rows
