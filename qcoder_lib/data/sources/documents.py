"""What every source yields and counts: :class:`Document`, :class:`SourceStats` (skips by
reason, never silent) and :func:`read_text_file` (one file read safely as UTF-8 text)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BYTES = 256 * 1024  # files above this are skipped as `too_large` (StarCoder: 1 MB)
BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB means binary
_SURROGATE = re.compile("[\ud800-\udfff]")  # UTF-16 halves: no UTF-8 encoding exists


def lone_surrogate(text: str) -> int | None:
    """The index of the first surrogate code point in ``text`` (``"\\ud800"`` from a JSON escape,
    or a byte kept by ``errors="surrogateescape"``), or ``None`` when ``text`` encodes as UTF-8.
    A document with one cannot be hashed, tokenized or written, so sources skip it."""
    m = _SURROGATE.search(text)
    return None if m is None else m.start()


@dataclass
class Document:
    """One pretraining document."""

    text: str  # the content, decoded UTF-8
    source: str  # "code" | "docs" | "synthetic" | "math" | "text"
    path: str  # path relative to its repository / root (never an absolute machine path)
    repo: str  # repository (or package, or generator) the document belongs to
    language: str  # "python", "markdown", "english", ...
    meta: dict = field(default_factory=dict)  # anything else (licence, answer, status, ...)


@dataclass
class SourceStats:
    """What a source read and what it skipped, by reason (never silently dropped)."""

    seen: int = 0  # files / records looked at
    kept: int = 0  # documents yielded
    bytes_kept: int = 0  # UTF-8 bytes of the yielded documents
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict = field(default_factory=dict)  # reason -> first few "repo/path[:line]"
    max_examples: int = 3  # how many example paths to keep per reason

    def skip(self, reason: str, where: str) -> None:
        """Count one skipped item under ``reason`` and remember ``where`` as an example."""
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(where)

    def keep(self, doc: Document) -> Document:
        """Count one yielded document and return it."""
        self.kept += 1
        self.bytes_kept += len(doc.text.encode("utf-8"))
        return doc

    def merge(self, other: SourceStats) -> SourceStats:
        """Add ``other``'s counts into this one (in place) and return self."""
        self.seen += other.seen
        self.kept += other.kept
        self.bytes_kept += other.bytes_kept
        self.skipped.update(other.skipped)
        for k, v in other.examples.items():
            ex = self.examples.setdefault(k, [])
            ex.extend(v[: max(0, self.max_examples - len(ex))])
        return self

    def rows(self) -> list[dict]:
        """One row per outcome: ``{"outcome", "count", "example"}`` (kept first)."""
        out = [{"outcome": "kept", "count": self.kept, "example": ""}]
        for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(
                {
                    "outcome": f"skipped: {reason}",
                    "count": n,
                    "example": (self.examples.get(reason) or [""])[0],
                }
            )
        return out

    def table(self) -> str:
        """The rows as a small fixed-width text table."""
        rows = self.rows()
        w = max(len(r["outcome"]) for r in rows)
        lines = [f"{'outcome':<{w}}  {'count':>7}  example", "-" * (w + 30)]
        lines += [f"{r['outcome']:<{w}}  {r['count']:>7}  {r['example']}" for r in rows]
        return "\n".join(lines)


def read_text_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str | None, str]:
    """Read ``path`` as UTF-8 text. Returns ``(text, "")`` or ``(None, reason)`` where reason is
    ``too_large`` (over ``max_bytes``; never more than ``max_bytes + 1`` bytes are read),
    ``binary`` (a NUL byte in the first 8 KiB), ``undecodable`` (not UTF-8), ``empty`` or
    ``unreadable`` (an OS error)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError:
        return None, "unreadable"
    if len(raw) > max_bytes:
        return None, "too_large"
    if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
        return None, "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "undecodable"
    if not text.strip():
        return None, "empty"
    return text, ""
