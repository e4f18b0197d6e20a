"""Token shards: what the mixer writes and the training loop reads.

A shard folder holds ``shard_00000.bin``, ``shard_00001.bin``, ... (flat ``uint32`` token ids,
documents back to back, each ending with the end-of-text id), ``documents.jsonl`` (one line per
document: shard, start, length, group, source, repo, path) and ``index.json`` (dtype, eos id,
tokenizer, token counts). Readers memory-map the ``.bin`` files, so a corpus larger than memory
costs nothing until a slice is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPE = np.uint32


class ShardWriter:
    """Append token arrays to ``out_dir/shard_NNNNN.bin``, starting a new shard when the next
    document would take this one past ``shard_tokens`` (a document never straddles two shards,
    so a single document longer than ``shard_tokens`` gets a shard of its own). Opening a writer
    deletes the shards, ``documents.jsonl`` and ``index.json`` already in ``out_dir``."""

    def __init__(
        self, out_dir: str | Path, *, shard_tokens: int = 1 << 24, eos_id: int, tokenizer_name: str
    ):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in list(self.out.glob("shard_*.bin")) + [
            self.out / "documents.jsonl",
            self.out / "index.json",
        ]:
            if old.exists():
                old.unlink()
        self.shard_tokens, self.eos_id, self.tokenizer_name = shard_tokens, eos_id, tokenizer_name
        self.shard = -1
        self.shard_sizes: list[int] = []
        self._f = None
        self._docs = open(self.out / "documents.jsonl", "w", encoding="utf-8")

    def _next_shard(self):
        if self._f:
            self._f.close()
        self.shard += 1
        self.shard_sizes.append(0)
        self._f = open(self.out / f"shard_{self.shard:05d}.bin", "wb")

    def add(self, ids: np.ndarray, meta: dict) -> None:
        """Append one document's ids (already ending with ``eos_id``) and its metadata."""
        ids = np.asarray(ids, dtype=DTYPE)
        if self._f is None or (
            self.shard_sizes[-1] and self.shard_sizes[-1] + len(ids) > self.shard_tokens
        ):
            self._next_shard()
        start = self.shard_sizes[-1]
        self._f.write(ids.tobytes())
        self.shard_sizes[-1] += len(ids)
        self._docs.write(
            json.dumps({"shard": self.shard, "start": start, "length": len(ids), **meta}) + "\n"
        )

    def close(self, extra: dict | None = None) -> dict:
        """Finish the files and write ``index.json``; returns the index."""
        if self._f:
            self._f.close()
        self._docs.close()
        index = {
            "dtype": "uint32",
            "eos_id": self.eos_id,
            "tokenizer": self.tokenizer_name,
            "shards": [
                {"file": f"shard_{i:05d}.bin", "tokens": n} for i, n in enumerate(self.shard_sizes)
            ],
            "total_tokens": int(sum(self.shard_sizes)),
            **(extra or {}),
        }
        (self.out / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
        return index


@dataclass
class DocSpan:
    """Where one document lies in the shards."""

    shard: int  # shard number
    start: int  # first token in the shard
    length: int  # tokens, end-of-text included
    meta: dict  # group, source, repo, path


class TokenShards:
    """Read a shard folder written by :class:`ShardWriter` (memory-mapped)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        ip = self.folder / "index.json"
        if not ip.exists():
            raise FileNotFoundError(f"{ip} not found: not a token-shard folder")
        self.index = json.loads(ip.read_text(encoding="utf-8"))
        self.eos_id = int(self.index["eos_id"])
        self._maps = [
            np.memmap(self.folder / s["file"], dtype=DTYPE, mode="r", shape=(s["tokens"],))
            if s["tokens"]
            else np.zeros(0, DTYPE)
            for s in self.index["shards"]
        ]

    @property
    def total_tokens(self) -> int:
        """Tokens in all shards."""
        return int(self.index["total_tokens"])

    def shard(self, i: int) -> np.ndarray:
        """Shard ``i`` as a memory-mapped ``uint32`` array."""
        return self._maps[i]

    def spans(self) -> Iterator[DocSpan]:
        """Every document's place in the shards, in write order."""
        with open(self.folder / "documents.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                yield DocSpan(r.pop("shard"), r.pop("start"), r.pop("length"), r)

    def document_ids(self, span: DocSpan) -> np.ndarray:
        """The token ids of one document (a view into the memory map)."""
        return self._maps[span.shard][span.start : span.start + span.length]

    def sequences(
        self, seq_len: int, *, seed: int | None = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Cut the concatenated shards into ``(input_ids (seq_len+1,), position_ids (seq_len+1,))``
        windows; positions restart after every end-of-text token (packed documents). With a
        ``seed`` the windows come in a seeded random order, else in order."""
        windows = [
            (s, o)
            for s, m in enumerate(self._maps)
            for o in range(0, len(m) - seq_len - 1 + 1, seq_len)
        ]
        if seed is not None:
            rng = np.random.default_rng(seed)
            windows = [windows[i] for i in rng.permutation(len(windows))]
        for s, o in windows:
            ids = np.asarray(self._maps[s][o : o + seq_len + 1], dtype=np.int64)
            yield ids, packed_position_ids(ids, self.eos_id)


def packed_position_ids(ids: np.ndarray, eos_id: int) -> np.ndarray:
    """Positions that restart at 0 after every ``eos_id`` in ``ids`` (shape of ``ids``)."""
    ids = np.asarray(ids)
    pos = np.arange(len(ids))
    after_eos = np.flatnonzero(ids[:-1] == eos_id) + 1
    starts = np.zeros(len(ids), dtype=np.int64)
    starts[after_eos] = after_eos
    starts = np.maximum.accumulate(starts)
    return pos - starts
