"""Training rows: packed token windows, read lazily from the memory-mapped shards.

A row is ``seq_len`` tokens cut from the stream of documents (each ending with ``<|endoftext|>``)
plus one more token that is only a target, so every input token has a target unless it ends a
document (:func:`qcoder_lib.packed.next_token_targets` sets ``-100`` there). Row ``r`` covers
stream tokens ``[r * T, r * T + T + 1)``.

- :class:`ShardRows` reads rows on demand from a token-shard folder (the ``.bin`` files stay
  memory-mapped; only the document table, one entry per document, is held in memory), so a corpus
  larger than memory trains the same way as the course's. :meth:`ShardRows.split` sets held-out
  **documents** aside: no document has tokens in both parts.
- :class:`TokenRows` holds rows in memory (tests, a :class:`~qcoder_lib.packing.PackedBatch`).

Both give rows in the same seeded order (:meth:`Rows.rows_at`): epoch ``e`` is a permutation of
all rows drawn from ``seed``, so a single integer (the cursor: rows consumed) resumes the order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from qcoder_lib.packed import IGNORE_INDEX, next_token_targets, position_ids_from_eos


class Rows:
    """What the training loop needs from its data: ``len``, :meth:`get` and :meth:`rows_at`."""

    source: str = "rows"

    @property
    def seq_len(self) -> int:  # pragma: no cover - abstract
        """Tokens per row."""
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(self, index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # pragma: no cover
        """Rows ``index`` (a list of row numbers) as ``(ids, pos, targets)``, each ``(n, T)``."""
        raise NotImplementedError

    def max_token_id(self) -> int:  # pragma: no cover - abstract
        """The largest token id in the data (checked once against the model's vocabulary)."""
        raise NotImplementedError

    def rows_at(self, cursor: int, n: int, seed: int):
        """``n`` rows starting at row ``cursor`` of the endless seeded stream: epoch ``e`` is a
        permutation of all rows drawn from ``seed`` and ``e``. Returns ``(ids, pos, targets)``."""
        idx = []
        for c in range(cursor, cursor + n):
            epoch, k = divmod(c, len(self))
            idx.append(int(self._perm(seed, epoch)[k]))
        return self.get(idx)

    def _perm(self, seed: int, epoch: int) -> torch.Tensor:
        cache = self.__dict__.setdefault("_perm_cache", {})
        key = (seed, epoch)
        if key not in cache:
            cache.clear()
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cache[key] = torch.randperm(len(self), generator=g)
        return cache[key]


class TokenRows(Rows):
    """Training rows held in memory: ``input_ids``, ``position_ids`` and ``targets``, each
    ``(N, T)`` int64 (``targets`` already shifted: the next token or ``-100``)."""

    def __init__(self, input_ids, position_ids, targets, source: str = "rows"):
        self.input_ids = torch.as_tensor(input_ids, dtype=torch.long)  # (N, T)
        self.position_ids = torch.as_tensor(position_ids, dtype=torch.long)  # (N, T)
        self.targets = torch.as_tensor(targets, dtype=torch.long)  # (N, T)
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

    def get(self, index):
        """Rows ``index`` as ``(ids, pos, targets)``, each ``(n, T)``."""
        index = torch.as_tensor(index, dtype=torch.long)
        return self.input_ids[index], self.position_ids[index], self.targets[index]

    def subset(self, index) -> TokenRows:
        """The rows at ``index`` (a tensor or list of row numbers, or a slice)."""
        return TokenRows(self.input_ids[index], self.position_ids[index], self.targets[index],
                         self.source)

    def max_token_id(self) -> int:
        """The largest input or target id."""
        return max(int(self.input_ids.max()), int(self.targets.max()))


class ShardRows(Rows):
    """Rows of ``seq_len`` tokens read lazily from a token-shard folder (see the module
    docstring). ``documents``: which documents (``DocSpan`` s of the folder, in stream order) form
    the stream; default all of them."""

    def __init__(self, folder, seq_len: int, documents=None, source: str | None = None):
        from qcoder_lib.data.shards import TokenShards

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"data folder {folder} does not exist (build it with qcoder_lib.data.build_corpus)")
        if not (folder / "index.json").exists():
            raise FileNotFoundError(f"data folder {folder} has no index.json: not token shards")
        self.shards = TokenShards(folder)
        self.folder = folder
        self.source = source or folder.name
        self._T = int(seq_len)
        self.documents = list(self.shards.spans()) if documents is None else list(documents)
        self._shard = np.array([d.shard for d in self.documents], dtype=np.int64)  # (D,)
        self._start = np.array([d.start for d in self.documents], dtype=np.int64)  # (D,)
        lengths = np.array([d.length for d in self.documents], dtype=np.int64)  # (D,)
        self._cum = np.concatenate([[0], np.cumsum(lengths)])  # (D + 1,) stream offsets
        self.total_tokens = int(self._cum[-1])
        self._n = max((self.total_tokens - 1) // self._T, 0)
        if self._n == 0:
            raise ValueError(f"data folder {folder}: {len(self.documents)} documents hold "
                             f"{self.total_tokens} tokens, fewer than seq_len + 1 = {self._T + 1}")

    @property
    def seq_len(self) -> int:
        """Tokens per row."""
        return self._T

    def __len__(self) -> int:
        return self._n

    def tokens(self, a: int, b: int) -> np.ndarray:
        """Stream tokens ``[a, b)`` as int64, read from the memory maps (a few slices)."""
        out = []
        k = int(np.searchsorted(self._cum, a, side="right")) - 1  # document holding token a
        while a < b:
            off = a - self._cum[k]
            n = min(b - a, self._cum[k + 1] - a)
            s = self._start[k] + off
            out.append(self.shards.shard(int(self._shard[k]))[s : s + n])
            a += n
            k += 1
        return np.concatenate(out).astype(np.int64)

    def get(self, index):
        """Rows ``index`` as ``(ids, pos, targets)``, each ``(n, T)``."""
        T = self._T
        windows = np.stack([self.tokens(r * T, r * T + T + 1) for r in index])  # (n, T+1)
        ids = torch.from_numpy(windows)
        pos = torch.from_numpy(position_ids_from_eos(windows, self.shards.eos_id).copy())
        return ids[:, :-1], pos[:, :-1], next_token_targets(ids, pos)

    def max_token_id(self) -> int:
        """The largest id in the shards that hold these documents."""
        return max(int(self.shards.shard(int(s)).max()) for s in np.unique(self._shard)
                   if len(self.shards.shard(int(s))))

    def split(self, held_out: float, seed: int = 0) -> tuple[ShardRows, ShardRows]:
        """``(train, held_out)`` by document: a seeded ``held_out`` share of the documents (at
        least one) is set aside, so no document has tokens in both parts."""
        n = len(self.documents)
        if not 0 < held_out < 1 or n < 2:
            raise ValueError(f"split: need 0 < held_out < 1 and 2+ documents (held_out="
                             f"{held_out}, {n} documents in {self.folder.name})")
        out = held_out_mask(n, held_out, seed)
        keep = [d for d, o in zip(self.documents, out) if not o]
        held = [d for d, o in zip(self.documents, out) if o]
        return (ShardRows(self.folder, self._T, keep, f"{self.source}[train]"),
                ShardRows(self.folder, self._T, held, f"{self.source}[held-out]"))


def held_out_mask(n: int, held_out: float, seed: int = 0) -> np.ndarray:
    """``(n,)`` bool: which of ``n`` documents :meth:`ShardRows.split` sets aside (a pure
    function of ``n``, ``held_out`` and ``seed``, so two corpora with the same documents in the
    same order, e.g. before and after the FIM stage, split the same way). At least one document
    on each side."""
    rng = np.random.default_rng(seed)
    out = rng.random(n) < held_out
    if not out.any():
        out[rng.integers(n)] = True
    if out.all():
        out[rng.integers(n)] = False
    return out


def as_rows(data, seq_len: int) -> Rows:
    """Accept :class:`Rows` (:class:`TokenRows`, :class:`ShardRows`), a
    :class:`~qcoder_lib.packing.PackedBatch`, or a token-shard folder (``str``/``Path``, read
    lazily as :class:`ShardRows`)."""
    if isinstance(data, Rows):
        return data
    if isinstance(data, (str, os.PathLike)):
        return ShardRows(data, seq_len)
    if hasattr(data, "labels") and hasattr(data, "document_ids"):
        return TokenRows.from_packed(data)
    raise TypeError(
        f"training data of type {type(data).__name__} is not Rows, PackedBatch or a shard folder"
    )
