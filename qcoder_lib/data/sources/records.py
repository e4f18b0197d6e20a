"""Records as documents: JSON-lines files (a Stack-style dump) and `datasets` datasets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from qcoder_lib.data.sources.documents import Document, SourceStats, lone_surrogate
from qcoder_lib.data.sources.languages import language_of
from qcoder_lib.extras import require


def read_jsonl(
    path: str | Path, *, stats: SourceStats | None = None, display_name: str | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON object line of ``path``. Lines end with
    ``\\n``, ``\\r\\n`` or a lone ``\\r``; a UTF-8 byte-order mark at the start is dropped.
    Malformed lines (bad JSON, not an object, not UTF-8, or a string holding a lone surrogate
    such as ``"\\ud800"``, valid JSON that no UTF-8 text can hold) are skipped and counted in
    ``stats`` under ``malformed_json`` with ``file:line (why)`` as the example; blank lines are
    ignored."""
    stats = stats if stats is not None else SourceStats()
    name = display_name or Path(path).name
    # utf-8-sig drops a BOM; newline=None splits on \n, \r\n and \r (raw CRs cannot occur inside
    # JSON strings); surrogateescape keeps undecodable bytes as surrogates, reported per line
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=None) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            stats.seen += 1
            if lone_surrogate(line) is not None:
                stats.skip("malformed_json", f"{name}:{i} (not UTF-8)")
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                stats.skip("malformed_json", f"{name}:{i} ({e.msg})")
                continue
            if not isinstance(rec, dict):
                stats.skip("malformed_json", f"{name}:{i} (not an object)")
                continue
            bad = _surrogate_field(rec)
            if bad is not None:
                stats.skip("malformed_json", f"{name}:{i} (lone surrogate in {bad!r})")
                continue
            yield i, rec


def _surrogate_field(value, where: str = "") -> str | None:
    """The first key path (``content``, ``meta.tags[2]``) of a string holding a lone surrogate
    in a decoded JSON value (keys included), or ``None``."""
    if isinstance(value, str):
        return where or "<value>" if lone_surrogate(value) is not None else None
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{where}.{k}" if where else str(k)
            if lone_surrogate(str(k)) is not None:
                return ascii(key)
            hit = _surrogate_field(v, key)
            if hit is not None:
                return hit
    if isinstance(value, list):
        for j, v in enumerate(value):
            hit = _surrogate_field(v, f"{where}[{j}]")
            if hit is not None:
                return hit
    return None


def _record_document(
    rec: dict, where: str, *, source: str, text_field: str, stats: SourceStats
) -> Document | None:
    text = rec.get(text_field)
    if not isinstance(text, str) or not text.strip():
        stats.skip(f"no_{text_field}", where)
        return None
    path = str(rec.get("path") or rec.get("max_stars_repo_path") or where)
    repo = str(rec.get("repo") or rec.get("max_stars_repo_name") or "")
    lang = str(rec.get("language") or rec.get("lang") or language_of(path) or "")
    meta = {k: v for k, v in rec.items() if k not in {text_field, "path", "repo", "language"}}
    return Document(text, source, path, repo, lang.lower(), meta)


def jsonl_documents(
    path: str | Path,
    *,
    source: str = "code",
    text_field: str = "content",
    stats: SourceStats | None = None,
) -> Iterator[Document]:
    """Documents from a JSON-lines file (``{"content", "path", "repo", "language"}`` as in a
    Stack-style dump); malformed lines are reported with file and line number in ``stats``."""
    stats = stats if stats is not None else SourceStats()
    name = Path(path).name
    for i, rec in read_jsonl(path, stats=stats, display_name=name):
        doc = _record_document(
            rec, f"{name}:{i}", source=source, text_field=text_field, stats=stats
        )
        if doc is not None:
            yield stats.keep(doc)


def dataset_documents(
    name_or_path: str,
    *,
    split: str = "train",
    source: str = "code",
    text_field: str = "content",
    streaming: bool = True,
    max_docs: int | None = None,
    stats: SourceStats | None = None,
    **load_kwargs,
) -> Iterator[Document]:
    """Documents from a `datasets` dataset: a hub name (online, e.g. a Stack-style dataset,
    streamed), a folder written by ``save_to_disk``, or a local ``.jsonl``/``.parquet`` file."""
    datasets = require("datasets", "dataset_documents")

    stats = stats if stats is not None else SourceStats()
    p = Path(name_or_path)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "state.json").exists()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    elif p.is_file():
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(p.suffix, "text")
        ds = datasets.load_dataset(kind, data_files=str(p), split=split, streaming=streaming)
    else:
        ds = datasets.load_dataset(name_or_path, split=split, streaming=streaming, **load_kwargs)
    label = p.name if p.exists() else name_or_path
    n = 0  # documents yielded by this call (``stats`` may be shared with other sources)
    for i, rec in enumerate(ds):
        if max_docs is not None and n >= max_docs:
            return
        stats.seen += 1
        doc = _record_document(
            dict(rec), f"{label}#{i}", source=source, text_field=text_field, stats=stats
        )
        if doc is not None:
            n += 1
            yield stats.keep(doc)
