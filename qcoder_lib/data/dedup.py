"""Deduplication: exact (content hash) and near-duplicate (MinHash + LSH).

Exact: two documents with the same SHA-256 of their text are the same; the first one seen is
kept. Near: each document becomes a set of word 5-gram shingles; MinHash estimates the Jaccard
similarity of two such sets from ``num_perm`` hash minima, and locality-sensitive hashing (LSH)
finds the pairs above ``threshold`` without comparing every pair (``datasketch``). The first
document of a near-duplicate cluster is kept (StarCoder used 5-grams, Jaccard 0.7).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from qcoder_lib.data.sources import Document, lone_surrogate
from qcoder_lib.data.words import words
from qcoder_lib.extras import require


def content_hash(text: str) -> str:
    """SHA-256 hex digest of the UTF-8 text (the exact-duplicate key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word ``n``-grams of ``text`` (lower-cased ``\\w+`` words); a text shorter than
    ``n`` words gives its words joined as one shingle."""
    w = words(text)
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


@dataclass
class DedupReport:
    """What deduplication removed, per source, with examples (kept -> removed)."""

    seen: int = 0  # documents in
    kept: int = 0  # documents out
    exact: Counter = field(default_factory=Counter)  # source -> exact duplicates removed
    near: Counter = field(default_factory=Counter)  # source -> near duplicates removed
    unencodable: Counter = field(default_factory=Counter)  # source -> lone-surrogate docs skipped
    examples: list = field(default_factory=list)  # (kind, removed "repo/path", kept or why)
    max_examples: int = 10  # examples remembered

    def note(self, kind: str, removed: Document, kept_key: str) -> None:
        """Count one removed document (``kind`` is ``"exact"`` or ``"near"``)."""
        (self.exact if kind == "exact" else self.near)[removed.source] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append((kind, f"{removed.repo}/{removed.path}", kept_key))


class ExactDedup:
    """Remembers content hashes; :meth:`is_duplicate` is True from the second copy on."""

    def __init__(self):
        self.first: dict[str, str] = {}  # hash -> "repo/path" of the first copy

    def is_duplicate(self, doc: Document) -> str | None:
        """The ``repo/path`` of the earlier identical document, or ``None`` (then remembered)."""
        h = content_hash(doc.text)
        if h in self.first:
            return self.first[h]
        self.first[h] = f"{doc.repo}/{doc.path}"
        return None


class NearDedup:
    """MinHash + LSH index (``datasketch``): :meth:`is_duplicate` finds an earlier document whose
    estimated Jaccard similarity of word ``ngram``-shingles is at least ``threshold``."""

    def __init__(self, threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        MinHashLSH = require("datasketch", "near-duplicate removal").MinHashLSH

        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.keys = 0

    def minhash(self, text: str):
        """The ``datasketch.MinHash`` of ``text``'s shingles."""
        MinHash = require("datasketch", "near-duplicate removal").MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        sh = shingles(text, self.ngram)
        if sh:
            m.update_batch([s.encode("utf-8") for s in sh])
        return m

    def is_duplicate(self, doc: Document) -> str | None:
        """``repo/path`` of an earlier near-duplicate, or ``None`` (then ``doc`` is indexed)."""
        m = self.minhash(doc.text)
        hits = self.lsh.query(m)
        if hits:
            return min(hits)
        key = f"{doc.repo}/{doc.path}#{self.keys}"
        self.keys += 1
        self.lsh.insert(key, m)
        return None


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Exact Jaccard similarity of two texts' word ``n``-gram shingle sets."""
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / max(1, len(sa | sb))


def dedup_documents(
    docs: Iterable[Document],
    *,
    near: bool = True,
    threshold: float = 0.7,
    num_perm: int = 128,
    report: DedupReport | None = None,
    exact_index: ExactDedup | None = None,
    near_index: NearDedup | None = None,
) -> Iterator[Document]:
    """Yield each document unless it is an exact (or, with ``near``, a near) duplicate of an
    earlier one; removals are counted in ``report``. Streaming: only hashes are kept. A document
    holding a lone surrogate (no UTF-8 bytes to hash) is skipped and counted in
    ``report.unencodable`` with its ``repo/path``.

    Pass ``exact_index`` / ``near_index`` to share what has been seen across several streams
    (the corpus build does, so that a file is a duplicate whichever source it came from).
    """
    report = report if report is not None else DedupReport()
    exact = exact_index if exact_index is not None else ExactDedup()
    nd = None
    if near:
        nd = (
            near_index
            if near_index is not None
            else NearDedup(threshold=threshold, num_perm=num_perm)
        )
    for d in docs:
        report.seen += 1
        at = lone_surrogate(d.text)
        if at is not None:  # no UTF-8 bytes to hash: skipped, counted, named
            report.unencodable[d.source] += 1
            if len(report.examples) < report.max_examples:
                report.examples.append(
                    ("unencodable", f"{d.repo}/{d.path}", f"lone surrogate at character {at}")
                )
            continue
        first = exact.is_duplicate(d)
        if first is not None:
            report.note("exact", d, first)
            continue
        if nd is not None:
            other = nd.is_duplicate(d)
            if other is not None:
                report.note("near", d, other.rsplit("#", 1)[0])
                continue
        report.kept += 1
        yield d


def minhash_signature(text: str, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> np.ndarray:
    """The MinHash signature of ``text``: ``num_perm`` hash minima (datasketch's 32-bit hashes,
    an unsigned numpy array). Two signatures agree at about a Jaccard-similarity share of places."""
    return NearDedup(num_perm=num_perm, ngram=ngram, seed=seed).minhash(text).hashvalues.copy()
