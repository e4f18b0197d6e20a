"""Text generation with a KV cache: greedy, temperature, top-k, top-p, stop tokens, batches.

Batched prompts of different lengths are LEFT-padded, so every row's next token sits in the
last column. An attention mask (1 = real token) hides the pads, and each row's positions count
only its real tokens (``cumsum(mask) - 1``), exactly as transformers' ``generate`` does; a
left-padded row therefore computes the same thing as the prompt alone.

The cache holds keys and values after RoPE, one preallocated ``(B, Hkv, S_max, D)`` tensor per
layer: the prompt is processed once (prefill), then each step feeds one token per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class KVCache:
    """Keys/values of every layer for ``batch`` rows and up to ``max_len`` positions.

    ``update(layer, k, v)`` stores ``k, v (B, Hkv, T, D)`` after the ``length`` positions already
    held and returns all of them ``(B, Hkv, length + T, D)``; the model calls ``advance(T)``
    once all layers have been updated."""

    def __init__(self, config, batch: int, max_len: int, dtype=torch.float32, device=None):
        shape = (
            config.num_hidden_layers,
            batch,
            config.num_key_value_heads,
            max_len,
            config.head_dim,
        )
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, Hkv, S_max, D)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # positions filled so far

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store ``k, v (B, Hkv, T, D)`` of ``layer`` after the ``length`` positions held; return
        that layer's keys and values so far, ``(B, Hkv, length + T, D)`` each (views, no copy).
        Raises ``ValueError`` when ``length + T`` exceeds ``max_len``."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KVCache is full: {end} positions needed, max_len={self.max_len}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Count ``n`` more positions as held (once per forward pass, after every layer)."""
        self.length += n


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from ``logits (B, V)``: argmax when ``temperature == 0``; else
    sample from ``softmax(logits / temperature)`` restricted to the ``top_k`` best tokens
    (0 = all) and to the smallest set whose probability reaches ``top_p`` (nucleus)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)  # (B,)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the better tokens
        drop_sorted = before >= top_p  # the best token is always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int, device=None):
    """``input_ids (B, T)`` left-padded with ``pad_token_id``, and ``attention_mask (B, T)``."""
    if len(prompts) == 0 or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, T - len(p) :] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def generate(
    model,
    prompts,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    keep_stop_token: bool = False,
    seed: int | None = None,
) -> list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; return the new tokens per row.

    ``prompts`` is a list of token-id lists (any lengths) or a ``(B, T)`` / ``(T,)`` tensor.
    A row stops at its first token in ``stop_token_ids`` (kept at the end of its list only with
    ``keep_stop_token=True``); generation ends when every row has stopped. ``temperature=0``
    is greedy; otherwise see :func:`sample_next_token` (``seed`` makes sampling repeatable)."""
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.unsqueeze(0) if prompts.dim() == 1 else prompts
        prompts = prompts.tolist()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    ids, mask = left_pad(prompts, pad_token_id, device)  # (B, T) each
    B, T = ids.shape
    was_training = model.training
    model.eval()
    cache = KVCache(model.config, B, T + max_new_tokens, dtype=dtype, device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    stops = torch.tensor(sorted(set(stop_token_ids)), dtype=torch.long, device=device)
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, T): each row counts from 0
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    logits = model(ids, position_ids, attention_mask=mask, cache=cache)[:, -1]  # (B, V)
    for step in range(max_new_tokens):
        token = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B,)
        is_stop = torch.isin(token, stops) if len(stops) else torch.zeros_like(done)
        for i in (~done).nonzero().flatten().tolist():
            if not bool(is_stop[i]) or keep_stop_token:
                out[i].append(int(token[i]))
        done |= is_stop
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        token = token.masked_fill(done, pad_token_id)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, S + 1)
        position_ids = position_ids[:, -1:] + 1  # (B, 1)
        logits = model(token[:, None], position_ids, attention_mask=mask, cache=cache)[:, -1]
    model.train(was_training)
    return out
