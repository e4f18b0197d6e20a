"""The one packed-document rule, used by the model, packing, shards, training and the kernels.

Pretraining packs several documents into one row of ``T`` tokens. Three things must then agree:

1. **Where documents start.** A document starts at every token whose position id is not the
   previous one + 1 (position ids restart at 0 after each ``<|endoftext|>``). This is the rule
   transformers 5 applies to ``position_ids``; :func:`document_ids` and
   :func:`position_ids_from_eos` are its two directions.
2. **Attention** never crosses a document boundary: :func:`attention_mask` (``True`` = may attend).
3. **Targets** never cross one either: the last token of a document does not learn to predict the
   first token of the next (:func:`next_token_targets`).

Everything here works on ``(B, T)`` batches; ``numpy`` versions sit beside the torch ones where the
data pipeline needs them.
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = -100  # target value that cross-entropy skips


def document_starts(position_ids: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` bool: True where a new document starts (always at ``t = 0``)."""
    first = torch.ones_like(position_ids[..., :1], dtype=torch.bool)
    return torch.cat([first, torch.diff(position_ids, dim=-1) != 1], dim=-1)


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Per-token document index ``(B, T)`` int64 within each row, counting from 0."""
    return document_starts(position_ids).long().cumsum(-1) - 1


def is_packed(position_ids: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor: does any row hold more than one document? (No host sync: callers that
    must branch in Python call ``bool()`` on it; compiled code can keep it on the device.)"""
    return document_starts(position_ids)[..., 1:].any()


def next_token_targets(input_ids: torch.Tensor, position_ids: torch.Tensor,
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets ``(B, T - 1)`` for the first ``T - 1`` tokens: ``targets[:, t] = input_ids[:, t+1]``,
    or ``ignore_index`` where token ``t + 1`` starts another document."""
    tgt = input_ids[..., 1:].clone()
    tgt[document_starts(position_ids)[..., 1:]] = ignore_index
    return tgt


def attention_mask(q_len: int, kv_len: int, device=None, doc_ids: torch.Tensor | None = None,
                   causal: bool = True, key_padding: torch.Tensor | None = None
                   ) -> torch.Tensor | None:
    """Boolean mask ``(B|1, 1, q_len, kv_len)``, True = may attend, or ``None`` when nothing is
    masked. Queries sit at the last ``q_len`` of the ``kv_len`` keys (a KV cache holds the earlier
    ones). ``doc_ids (B, kv_len)`` forbids crossing packed documents; ``key_padding (B, kv_len)``
    (1 = real token) hides pads, except that each query may always see itself so that a padded
    row never becomes all ``-inf``. ``device`` defaults to that of ``doc_ids``/``key_padding``."""
    if device is None:
        given = doc_ids if doc_ids is not None else key_padding
        device = given.device if given is not None else None
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]  # (q, 1)
    k_pos = torch.arange(kv_len, device=device)[None, :]  # (1, kv)
    mask = (k_pos <= q_pos)[None, None] if causal else None  # (1, 1, q, kv)
    if doc_ids is not None:
        same = doc_ids[:, None, -q_len:, None] == doc_ids[:, None, None, :]  # (B, 1, q, kv)
        mask = same if mask is None else mask & same
    if key_padding is not None:
        visible = key_padding.bool()[:, None, None, :] | (k_pos == q_pos)[None, None]
        mask = visible if mask is None else mask & visible
    return mask


def doc_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, B: int, T: int) -> torch.Tensor:
    """Per-token document ids ``(B, T)`` int32 from cumulative boundaries ``(num_docs + 1,)`` over
    the flattened ``B * T`` tokens (flash-attn's varlen convention). Attention never crosses batch
    rows, so a document that spans two rows is simply cut there."""
    cu = cu_seqlens.reshape(-1).to(torch.int64)
    if cu.numel() < 2 or int(cu[0]) != 0 or int(cu[-1]) != B * T:
        raise ValueError(
            f"cu_seqlens must start at 0 and end at B*T={B * T}; got {cu.tolist()[:8]}...")
    if bool((cu[1:] < cu[:-1]).any()):
        raise ValueError("cu_seqlens must be non-decreasing")
    tok = torch.arange(B * T, device=cu.device)
    return torch.bucketize(tok, cu[1:], right=True).to(torch.int32).view(B, T)


def position_ids_from_eos(ids: np.ndarray, eos_id: int) -> np.ndarray:
    """Position ids that restart at 0 after every ``eos_id`` (numpy, shape of ``ids (..., T)``):
    the token after an end-of-text is the first token of the next document."""
    ids = np.asarray(ids)
    t = ids.shape[-1]
    pos = np.broadcast_to(np.arange(t), ids.shape)
    starts = np.zeros(ids.shape, dtype=np.int64)
    after = np.zeros(ids.shape, dtype=bool)
    after[..., 1:] = ids[..., :-1] == eos_id
    starts[after] = np.broadcast_to(np.arange(t), ids.shape)[after]
    starts = np.maximum.accumulate(starts, axis=-1)
    return pos - starts
