"""Packing samples into fixed-length training sequences.

Pretraining batches are ``(N, L)`` blocks of token ids. Padding each sample to ``L`` wastes
compute on pad tokens; packing puts several samples into one row, separated by
``<|endoftext|>`` (every sample ends with it). Two strategies:

- ``"concat"`` (the default, what pretraining uses): all samples as one stream, cut every ``L``
  tokens. Nothing is padded except the tail of the very last row. Split rule: a sample that
  crosses a row boundary is cut there and its rest continues at the start of the next row.
- ``"best_fit"``: samples are kept whole where possible and placed first-fit-decreasing into
  rows; only a sample longer than ``L`` is split, into pieces of ``L`` tokens (the last piece
  shorter). Rows are padded, so utilisation is below 1: the price of never cutting a sample.

Either way each token gets a document id (the index of the sample it came from, -1 for
padding) and a position id that restarts at 0 at the start of every piece of a document in a
row. The model reads the restarts of ``position_ids`` to mask attention across documents (the
one rule of :mod:`qcoder_lib.packed`; :func:`document_mask` shows it), so a piece never attends to
another sample, and a continued piece starts at position 0 like a new document: it cannot see its
beginning in the previous row anyway.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch

from qcoder_lib import packed


@dataclass
class PackedBatch:
    """Packed rows and the bookkeeping to train on them and to undo the packing."""

    input_ids: torch.Tensor  # (N, L) int64
    position_ids: torch.Tensor  # (N, L) int64, 0 at the start of every document piece
    document_ids: torch.Tensor  # (N, L) int64, sample index of each token, -1 for padding
    pieces: list[tuple[int, int, int, int]] = field(default_factory=list)
    # (document, row, start, length) of every piece, in document order
    n_tokens: int = 0  # real (non-padding) tokens
    n_split: int = 0  # samples cut into more than one piece
    strategy: str = "concat"  # "concat" or "best_fit"
    n_documents: int | None = None  # samples packed (empty ones included); None: from pieces

    @property
    def utilisation(self) -> float:
        """Share of the ``N * L`` slots holding real tokens (1.0 = no padding waste)."""
        return self.n_tokens / max(self.input_ids.numel(), 1)

    def labels(self, ignore_index: int = packed.IGNORE_INDEX) -> torch.Tensor:
        """Next-token targets ``(N, L)``: ``labels[r, t] = input_ids[r, t + 1]`` unless token
        ``t + 1`` starts another document piece (:func:`qcoder_lib.packed.next_token_targets`)
        or is padding; ``ignore_index`` there and in the last column."""
        lab = torch.full_like(self.input_ids, ignore_index)
        tgt = packed.next_token_targets(self.input_ids, self.position_ids, ignore_index)
        lab[:, :-1] = tgt.masked_fill(self.document_ids[:, 1:] < 0, ignore_index)  # (N, L-1)
        return lab


def pack_sequences(
    samples: list[list[int]],
    seq_len: int,
    *,
    strategy: str = "concat",
    eos_id: int | None = None,
    pad_id: int = 0,
    drop_last: bool = False,
) -> PackedBatch:
    """Pack ``samples`` (lists of token ids) into rows of ``seq_len`` tokens.

    ``eos_id``: if given, appended to every sample that does not already end with it, so rows
    hold ``<|endoftext|>`` between samples (FIM samples already end with it).
    ``pad_id``: fills the unused tail of rows (position ids count up from 0 there too, document
    id -1). ``drop_last`` (concat only): drop a last row that would need padding.
    Raises ``ValueError`` naming the argument for ``seq_len < 1`` or an unknown strategy, and
    naming the sample and position of a token id that is not a non-negative integer (a float
    such as ``3.0`` is refused, never truncated).
    """
    if seq_len < 1:
        raise ValueError(f"pack_sequences: seq_len={seq_len} must be at least 1")
    docs = [_token_ids(s, i) for i, s in enumerate(samples)]
    for s in docs:
        if eos_id is not None and (not s or s[-1] != eos_id):
            s.append(eos_id)
    if strategy == "concat":
        rows = _concat_rows(docs, seq_len)
        if drop_last and rows and sum(n for _, _, n in rows[-1]) < seq_len:
            rows.pop()
    elif strategy == "best_fit":
        rows = _best_fit_rows(docs, seq_len)
    else:
        raise ValueError(f"pack_sequences: strategy={strategy!r} is not 'concat' or 'best_fit'")
    n = len(rows)
    ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    pos = torch.zeros((n, seq_len), dtype=torch.long)
    doc = torch.full((n, seq_len), -1, dtype=torch.long)
    pieces, per_doc = [], {}
    for r, row in enumerate(rows):
        col = 0
        for d, start, length in row:  # a piece: docs[d][start:start + length]
            ids[r, col : col + length] = torch.tensor(docs[d][start : start + length])
            pos[r, col : col + length] = torch.arange(length)
            doc[r, col : col + length] = d
            pieces.append((d, start, r, col, length))
            per_doc[d] = per_doc.get(d, 0) + 1
            col += length
        if col < seq_len:
            pos[r, col:] = torch.arange(seq_len - col)
    pieces.sort()  # by document, then by offset within it
    return PackedBatch(
        ids, pos, doc, [(d, r, c, n_) for d, _, r, c, n_ in pieces],
        n_tokens=int((doc >= 0).sum()), n_split=sum(1 for v in per_doc.values() if v > 1),
        strategy=strategy, n_documents=len(docs),
    )


def _token_ids(sample, index: int) -> list[int]:
    """``sample`` (a list, numpy array or tensor of ids) as a list of Python ints; raises
    ``ValueError`` naming sample ``index`` and the position of a non-integer or negative id."""
    values = sample.tolist() if hasattr(sample, "tolist") else list(sample)
    out = []
    for pos, t in enumerate(values):
        try:
            if isinstance(t, bool):
                raise TypeError
            t = operator.index(t)
        except TypeError:
            raise ValueError(
                f"pack_sequences: sample {index}, token {pos} is {t!r} ({type(t).__name__}), "
                "not an integer token id"
            ) from None
        if t < 0:
            raise ValueError(f"pack_sequences: sample {index}, token {pos} is {t}, a negative id")
        out.append(t)
    return out


def _concat_rows(docs: list[list[int]], seq_len: int) -> list[list[tuple[int, int, int]]]:
    """Rows of pieces ``(doc, start, length)`` for the concat strategy."""
    rows, row, free = [], [], seq_len
    for d, s in enumerate(docs):
        start = 0
        while start < len(s):
            take = min(free, len(s) - start)
            row.append((d, start, take))
            start += take
            free -= take
            if free == 0:
                rows.append(row)
                row, free = [], seq_len
    if row:
        rows.append(row)
    return rows


def _best_fit_rows(docs: list[list[int]], seq_len: int) -> list[list[tuple[int, int, int]]]:
    """Rows of pieces for best_fit: split only samples longer than ``seq_len`` into ``seq_len``
    pieces, then first-fit-decreasing (stable, so pieces of one sample keep their order)."""
    pieces = []
    for d, s in enumerate(docs):
        for start in range(0, len(s), seq_len):
            pieces.append((d, start, min(seq_len, len(s) - start)))
    pieces.sort(key=lambda p: -p[2])
    rows, free = [], []
    for p in pieces:
        for r, f in enumerate(free):
            if p[2] <= f:
                rows[r].append(p)
                free[r] -= p[2]
                break
        else:
            rows.append([p])
            free.append(seq_len - p[2])
    return rows


def unpack(batch: PackedBatch) -> list[list[int]]:
    """The samples back from a packed batch (with any ``eos_id`` that packing appended), by
    document id: the inverse used by tests and by the notebook. Empty samples come back empty,
    trailing ones included (``batch.n_documents``)."""
    n_docs = max((d for d, *_ in batch.pieces), default=-1) + 1
    if batch.n_documents is not None:
        n_docs = max(n_docs, batch.n_documents)
    out: list[list[int]] = [[] for _ in range(n_docs)]
    for d, r, c, n in batch.pieces:
        out[d].extend(batch.input_ids[r, c : c + n].tolist())
    return out


def document_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """Attention mask from restarting position ids: ``(T,) -> (T, T)`` or ``(N, T) -> (N, T, T)``
    bool, True where query ``i`` may attend key ``j``: ``j <= i`` and both in the same document
    (:func:`qcoder_lib.packed.document_ids` and :func:`qcoder_lib.packed.attention_mask`, the rule
    of the model and of transformers: a document starts wherever a position is not the previous
    one + 1)."""
    pos = position_ids.unsqueeze(0) if position_ids.dim() == 1 else position_ids  # (N, T)
    t = pos.shape[-1]
    mask = packed.attention_mask(t, t, pos.device, doc_ids=packed.document_ids(pos))[:, 0]
    return mask[0] if position_ids.dim() == 1 else mask  # (N, T, T) or (T, T)
