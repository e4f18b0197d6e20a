"""The pretraining mix: 70% code, 20% text, 10% math, counted in tokens (Qwen2.5-Coder's mix).

:func:`mix_sources` pulls documents from one stream per group, always from the group furthest
below its target share, so that after every document the achieved shares are within one document
of the target. Long documents are cut into chunks of at most ``max_doc_tokens`` tokens, which
bounds that error. Each group is shuffled through a seeded buffer (streaming: only the buffers
are in memory), so the same seed gives the same shards, byte for byte.

Tokens are counted with the tokenizer you pass, a transformers tokenizer (the course's, or
Qwen2.5-Coder's), encoded with :func:`qcoder_lib.tokenizer.encode_data_batch` so that
special-token strings inside data stay text, its end-of-text id from
:func:`qcoder_lib.tokenizer.special_id`; or, with none, with :class:`ByteTokenizer`: one token
per UTF-8 byte, a proxy that over-counts a BPE tokenizer's tokens by about 3-4x for code but
keeps the proportions honest. A document that holds a lone surrogate (no UTF-8 bytes) is skipped
and counted, never an error halfway through a build.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from qcoder_lib.data.shards import ShardWriter
from qcoder_lib.data.sources import Document, lone_surrogate
from qcoder_lib.tokenizer import ENDOFTEXT, encode_data_batch, special_id

QWEN_MIX = {"code": 0.7, "text": 0.2, "math": 0.1}  # the report's 70/20/10 token mix
# Which mix group each document source belongs to.
SOURCE_GROUPS = {
    "code": "code",
    "synthetic": "code",
    "docs": "text",
    "text": "text",
    "math": "math",
}


class ByteTokenizer:
    """Byte-level proxy tokenizer: ids 0..255 are the UTF-8 bytes, 256 is end-of-text."""

    name = "bytes"
    eos_id = 256
    vocab_size = 257

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """UTF-8 bytes of each text as ``uint32`` ids."""
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint32) for t in texts]


class _Encoder:
    """The tokenizer the mix counts with: ``None`` (a :class:`ByteTokenizer`), a
    :class:`ByteTokenizer`, or a transformers tokenizer with ``<|endoftext|>``."""

    def __init__(self, tokenizer):
        if tokenizer is None or isinstance(tokenizer, ByteTokenizer):
            self.tok = tokenizer or ByteTokenizer()
            self.name, self.eos_id = self.tok.name, self.tok.eos_id
            return
        from transformers import PreTrainedTokenizerBase

        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise TypeError(
                f"mix tokenizer is a {type(tokenizer).__name__}: pass a transformers tokenizer "
                "(e.g. qcoder_lib.tokenizer.course_tokenizer()), a ByteTokenizer, or None"
            )
        self.tok = tokenizer
        name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
        self.name = Path(name).name  # never an absolute path
        self.eos_id = special_id(tokenizer, ENDOFTEXT)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's ids as a ``uint32`` array (encoded as data, no special ids)."""
        if isinstance(self.tok, ByteTokenizer):
            return self.tok.encode_batch(texts)
        return [np.asarray(ids, dtype=np.uint32) for ids in encode_data_batch(self.tok, texts)]


@dataclass
class MixConfig:
    """How the mix is drawn."""

    weights: dict = field(default_factory=lambda: dict(QWEN_MIX))  # group -> target token share
    total_tokens: int | None = None  # stop after this many tokens (None: when a group runs out)
    seed: int = 0  # seeds the per-group shuffle buffers
    shuffle_buffer: int = 256  # documents held per group for shuffling
    max_doc_tokens: int = 4096  # longer documents are cut into chunks of this many tokens
    shard_tokens: int = 1 << 24  # tokens per shard file
    encode_batch: int = 64  # documents encoded at a time

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field whose value cannot make a corpus
        (``shuffle_buffer`` 1 means no shuffling; 0 would hold no document)."""
        for name in ("shuffle_buffer", "max_doc_tokens", "shard_tokens", "encode_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MixConfig.{name}={v!r}: must be an integer >= 1")
        t = self.total_tokens
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ValueError(f"MixConfig.total_tokens={t!r}: must be None or an integer >= 1")
        if not isinstance(self.weights, dict) or not self.weights:
            raise ValueError(f"MixConfig.weights={self.weights!r}: must be a dict group -> share")
        bad = {g: w for g, w in self.weights.items() if not isinstance(w, (int, float)) or w < 0}
        if bad:
            raise ValueError(f"MixConfig.weights: shares {bad} must be numbers >= 0")
        if abs(sum(self.weights.values()) - 1.0) > 1e-6:
            raise ValueError(f"MixConfig.weights={self.weights} must sum to 1")


@dataclass
class MixReport:
    """What the mix achieved."""

    target: dict  # group -> target share
    tokens: Counter = field(default_factory=Counter)  # group -> tokens written (eos included)
    documents: Counter = field(default_factory=Counter)  # group -> chunks written
    source_tokens: Counter = field(default_factory=Counter)  # document source -> tokens
    source_documents: Counter = field(default_factory=Counter)  # document source -> documents
    bytes_in: int = 0  # UTF-8 bytes of the documents written
    skipped: Counter = field(default_factory=Counter)  # reason -> documents not encoded
    skipped_examples: dict = field(default_factory=dict)  # reason -> first "repo/path (why)"
    stopped_by: str = ""  # "total_tokens" or "<group> ran out"
    tokenizer: str = ""  # name of the tokenizer that counted tokens
    seconds: float = 0.0  # wall time
    out_dir: str = ""  # shard folder name (not its absolute path)

    @property
    def total_tokens(self) -> int:
        """Tokens written in all groups."""
        return int(sum(self.tokens.values()))

    def achieved(self) -> dict:
        """Group -> achieved share of tokens."""
        tot = max(1, self.total_tokens)
        return {g: self.tokens[g] / tot for g in self.target}

    def rows(self) -> list[dict]:
        """One row per group: target, achieved, tokens, documents."""
        ach = self.achieved()
        return [
            {
                "group": g,
                "target": round(self.target[g], 4),
                "achieved": round(ach[g], 4),
                "tokens": int(self.tokens[g]),
                "documents": int(self.documents[g]),
            }
            for g in self.target
        ]


class _Buffered:
    """A group's stream behind a seeded shuffle buffer of encoded chunks."""

    def __init__(self, docs: Iterable[Document], enc: _Encoder, cfg: MixConfig, rng, report):
        self.it, self.enc, self.cfg, self.rng, self.report = iter(docs), enc, cfg, rng, report
        self.buf: list[tuple[np.ndarray, Document, int]] = []
        self.done = False

    def _fill(self):
        while not self.done and len(self.buf) < self.cfg.shuffle_buffer:
            batch = []
            for _ in range(self.cfg.encode_batch):
                d = next(self.it, None)
                if d is None:
                    self.done = True
                    break
                at = lone_surrogate(d.text)
                if at is not None:  # no UTF-8 bytes: cannot be tokenized or written
                    self.report.skipped["lone_surrogate"] += 1
                    self.report.skipped_examples.setdefault(
                        "lone_surrogate", f"{d.repo}/{d.path} (character {at})"
                    )
                    continue
                batch.append(d)
            if not batch:
                break
            for d, ids in zip(batch, self.enc.encode_batch([d.text for d in batch])):
                step = self.cfg.max_doc_tokens
                for part, s in enumerate(range(0, max(1, len(ids)), step)):
                    self.buf.append((ids[s : s + step], d, part))

    def draw(self):
        if len(self.buf) < max(1, self.cfg.shuffle_buffer // 2):
            self._fill()
        if not self.buf:
            return None
        i = int(self.rng.integers(len(self.buf)))
        self.buf[i], self.buf[-1] = self.buf[-1], self.buf[i]
        return self.buf.pop()


def mix_sources(
    streams: dict[str, Iterable[Document]],
    out_dir: str | Path | None = None,
    *,
    tokenizer=None,
    config: MixConfig | None = None,
    progress: bool = False,
) -> MixReport:
    """Mix one document stream per group (``{"code": ..., "text": ..., "math": ...}``) to the
    token shares in ``config.weights`` and write token shards to ``out_dir`` (``None``: count
    only). Stops at ``config.total_tokens`` or when the next group to draw from runs out.
    Deterministic for ``config.seed``; the returned report gives the achieved shares.
    ``progress`` shows a tqdm bar of the tokens written (on stderr)."""
    cfg = config or MixConfig()
    cfg.validate()  # again: fields may have been changed since construction
    weights = {g: float(w) for g, w in cfg.weights.items() if w > 0}
    missing = [g for g in weights if g not in streams]
    if missing:
        raise KeyError(
            f"mix group(s) {missing} have a weight but no stream (streams: {list(streams)})"
        )
    enc = _Encoder(tokenizer)
    report = MixReport(
        target=weights,
        tokenizer=enc.name,
        out_dir=Path(out_dir).name if out_dir is not None else "",
    )
    ss = np.random.SeedSequence(cfg.seed)
    bufs = {
        g: _Buffered(streams[g], enc, cfg, np.random.default_rng(child), report)
        for g, child in zip(weights, ss.spawn(len(weights)))
    }
    writer = (
        ShardWriter(
            out_dir, shard_tokens=cfg.shard_tokens, eos_id=enc.eos_id, tokenizer_name=enc.name
        )
        if out_dir is not None
        else None
    )
    eos = np.array([enc.eos_id], dtype=np.uint32)
    bar = tqdm(
        total=cfg.total_tokens, unit="tok", unit_scale=True, desc="mix", disable=not progress
    )
    t0 = time.perf_counter()
    while True:
        if cfg.total_tokens is not None and report.total_tokens >= cfg.total_tokens:
            report.stopped_by = "total_tokens"
            break
        g = min(weights, key=lambda k: (report.tokens[k] / weights[k], list(weights).index(k)))
        item = bufs[g].draw()
        if item is None:
            report.stopped_by = f"{g} ran out"
            break
        ids, d, part = item
        ids = np.concatenate([ids, eos])
        report.tokens[g] += len(ids)
        bar.update(len(ids))
        report.documents[g] += 1
        report.source_tokens[d.source] += len(ids)
        if part == 0:
            report.bytes_in += len(d.text.encode("utf-8"))
            report.source_documents[d.source] += 1
        if writer is not None:
            writer.add(
                ids, {"group": g, "source": d.source, "repo": d.repo, "path": d.path, "part": part}
            )
    bar.close()
    report.seconds = time.perf_counter() - t0
    if writer is not None:
        writer.close({"mix": report.rows(), "stopped_by": report.stopped_by, "seed": cfg.seed})
    return report


def group_streams(
    docs_by_source: dict[str, Iterable[Document]], groups: dict[str, str] | None = None
) -> dict[str, Iterator[Document]]:
    """Chain per-source streams into per-group streams (``SOURCE_GROUPS`` by default: code and
    synthetic -> code; docs and text -> text; math -> math), interleaving sources of a group."""
    groups = groups or SOURCE_GROUPS
    by_group: dict[str, list] = {}
    for src, it in docs_by_source.items():
        if src not in groups:
            raise KeyError(f"source {src!r} has no mix group (known: {sorted(groups)})")
        by_group.setdefault(groups[src], []).append(iter(it))
    return {g: _interleave(its) for g, its in by_group.items()}


def _interleave(its: list[Iterator]) -> Iterator:
    its = list(its)
    while its:
        for it in list(its):
            x = next(it, None)
            if x is None:
                its.remove(it)
            else:
                yield x
