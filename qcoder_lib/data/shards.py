"""Token shards: what the mixer writes and the training loop reads.

A shard folder holds ``shard_00000.bin``, ``shard_00001.bin``, ... (flat token ids of the dtype
named in the index, ``uint32`` by default, documents back to back, each ending with the
end-of-text id), ``documents.jsonl`` (one line per document: shard, start, length, group, source,
repo, path) and ``index.json`` (dtype, eos id, tokenizer, token counts). Readers memory-map the
``.bin`` files, so a corpus larger than memory costs nothing until a slice is read.

Reading checks what it can without reading the tokens: a malformed ``index.json``, a ``.bin``
file missing or of the wrong size (a truncated copy) or a ``documents.jsonl`` line that is not
JSON or points outside its shard raises an error naming the file (and line).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcoder_lib.packed import position_ids_from_eos

DTYPE = np.uint32  # default token dtype of the shards
DTYPES = ("uint16", "uint32", "int32", "int64")  # dtypes a shard index may name
INDEX_KEYS = ("dtype", "eos_id", "tokenizer", "shards", "total_tokens")  # required in index.json


class ShardWriter:
    """Append token arrays to ``out_dir/shard_NNNNN.bin``, starting a new shard when the next
    document would take this one past ``shard_tokens`` (a document never straddles two shards,
    so a single document longer than ``shard_tokens`` gets a shard of its own). Opening a writer
    deletes the shards, ``documents.jsonl`` and ``index.json`` already in ``out_dir``.
    ``dtype`` (one of :data:`DTYPES`) is what the ids are stored as; an id it cannot hold raises."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        shard_tokens: int = 1 << 24,
        eos_id: int,
        tokenizer_name: str,
        dtype: str = "uint32",
    ):
        if dtype not in DTYPES:
            raise ValueError(f"ShardWriter dtype={dtype!r} is not one of {DTYPES}")
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in list(self.out.glob("shard_*.bin")) + [
            self.out / "documents.jsonl",
            self.out / "index.json",
        ]:
            if old.exists():
                old.unlink()
        self.shard_tokens, self.eos_id, self.tokenizer_name = shard_tokens, eos_id, tokenizer_name
        self.dtype = np.dtype(dtype)
        self._max_id = np.iinfo(self.dtype).max
        if not 0 <= eos_id <= self._max_id:
            raise ValueError(f"ShardWriter eos_id={eos_id} does not fit dtype {dtype}")
        self.shard = -1
        self.shard_sizes: list[int] = []
        self._f = None
        self._docs = open(self.out / "documents.jsonl", "w", encoding="utf-8")  # noqa: SIM115 (closed in close)

    def _next_shard(self):
        if self._f:
            self._f.close()
        self.shard += 1
        self.shard_sizes.append(0)
        self._f = open(self.out / f"shard_{self.shard:05d}.bin", "wb")  # noqa: SIM115

    def add(self, ids: np.ndarray, meta: dict) -> None:
        """Append one document's ids (already ending with ``eos_id``) and its metadata."""
        ids = np.asarray(ids)
        if len(ids) and (ids.min() < 0 or ids.max() > self._max_id):
            raise ValueError(
                f"document {meta.get('path', '?')!r}: ids in [{ids.min()}, {ids.max()}] do not "
                f"fit the shards' dtype {self.dtype.name}"
            )
        ids = ids.astype(self.dtype)
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
            "dtype": self.dtype.name,
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


def read_index(folder: str | Path) -> dict:
    """``folder/index.json`` checked: a JSON object with :data:`INDEX_KEYS`, a dtype of
    :data:`DTYPES`, one ``{"file", "tokens"}`` entry per shard and a matching token total.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and what is wrong."""
    ip = Path(folder) / "index.json"
    if not ip.exists():
        raise FileNotFoundError(f"{ip} not found: not a token-shard folder")
    try:
        index = json.loads(ip.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{ip} is not valid JSON ({e}): rebuild the shards") from None
    if not isinstance(index, dict):
        raise ValueError(  # noqa: TRY004 - a corrupt file, not a wrong argument
            f"{ip} holds a {type(index).__name__}, expected a JSON object"
        )
    missing = [k for k in INDEX_KEYS if k not in index]
    if missing:
        raise ValueError(f"{ip} lacks {missing}: not an index written by ShardWriter")
    if index["dtype"] not in DTYPES:
        raise ValueError(f"{ip}: dtype {index['dtype']!r} is not one of {DTYPES}")
    shards = index["shards"]
    ok = isinstance(shards, list) and all(
        isinstance(s, dict)
        and isinstance(s.get("file"), str)
        and "/" not in s["file"]
        and isinstance(s.get("tokens"), int)
        and s["tokens"] >= 0
        for s in shards
    )
    if not ok:
        raise ValueError(f"{ip}: 'shards' must be a list of {{'file': name, 'tokens': n >= 0}}")
    if sum(s["tokens"] for s in shards) != index["total_tokens"]:
        raise ValueError(
            f"{ip}: total_tokens={index['total_tokens']} but the shards hold "
            f"{sum(s['tokens'] for s in shards)}"
        )
    return index


class TokenShards:
    """Read a shard folder written by :class:`ShardWriter` (memory-mapped, in the index's dtype).
    Every ``.bin`` file must exist and hold exactly its index entry's tokens."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index = read_index(self.folder)
        self.dtype = np.dtype(self.index["dtype"])
        self.eos_id = int(self.index["eos_id"])
        self._maps = []
        for s in self.index["shards"]:
            path = self.folder / s["file"]
            if not path.exists():
                raise FileNotFoundError(f"shard {path} named in index.json does not exist")
            want = s["tokens"] * self.dtype.itemsize
            got = path.stat().st_size
            if got != want:
                raise ValueError(
                    f"shard {path} holds {got} bytes, index.json says {s['tokens']} "
                    f"{self.dtype.name} tokens = {want} bytes (truncated or from another build)"
                )
            self._maps.append(
                np.memmap(path, dtype=self.dtype, mode="r", shape=(s["tokens"],))
                if s["tokens"]
                else np.zeros(0, self.dtype)
            )

    @property
    def total_tokens(self) -> int:
        """Tokens in all shards."""
        return int(self.index["total_tokens"])

    def shard(self, i: int) -> np.ndarray:
        """Shard ``i`` as a memory-mapped array of the index's dtype."""
        return self._maps[i]

    def spans(self) -> Iterator[DocSpan]:
        """Every document's place in the shards, in write order. A line that is not a JSON
        object with integer ``shard``/``start``/``length`` inside its shard raises
        ``ValueError`` naming ``documents.jsonl:line``."""
        path = self.folder / "documents.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (the shards' document list)")
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for i, line in enumerate(f, 1):
                where = f"{path}:{i}"
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where} is not valid JSON ({e.msg})") from None
                if not isinstance(r, dict) or not all(
                    isinstance(r.get(k), int) for k in ("shard", "start", "length")
                ):
                    raise ValueError(f"{where}: expected an object with integer shard/start/length")
                span = DocSpan(r.pop("shard"), r.pop("start"), r.pop("length"), r)
                if not (
                    0 <= span.shard < len(self._maps)
                    and span.start >= 0
                    and span.length > 0
                    and span.start + span.length <= len(self._maps[span.shard])
                ):
                    raise ValueError(
                        f"{where}: shard {span.shard} start {span.start} length {span.length} "
                        f"lies outside the shards ({len(self._maps)} in index.json)"
                    )
                yield span

    def document_ids(self, span: DocSpan) -> np.ndarray:
        """The token ids of one document (a view into the memory map)."""
        return self._maps[span.shard][span.start : span.start + span.length]

    def sequences(
        self, seq_len: int, *, seed: int | None = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Cut the concatenated shards into ``(input_ids (seq_len+1,), position_ids (seq_len+1,))``
        windows; positions restart after every end-of-text token (packed documents, see
        :func:`qcoder_lib.packed.position_ids_from_eos`). With a ``seed`` the windows come in a
        seeded random order, else in order."""
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
            yield ids, position_ids_from_eos(ids, self.eos_id)
