"""The docs source (text-code grounding): installed packages' READMEs and .md/.rst/.txt files,
code blocks kept."""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterator

from qcoder_lib.data.sources.documents import DEFAULT_MAX_BYTES, Document, SourceStats
from qcoder_lib.data.sources.languages import DOC_EXTENSIONS, language_of
from qcoder_lib.data.sources.repos import as_repos, read_document, repo_files


def _description(dist) -> str:
    meta = dist.metadata
    desc = meta.get("Description") or ""
    if not desc.strip():
        try:
            desc = meta.get_payload() or ""
        except AttributeError:  # pragma: no cover - older metadata objects
            desc = ""
    return desc if isinstance(desc, str) else ""


def package_descriptions(
    *, stats: SourceStats | None = None, min_chars: int = 200
) -> Iterator[Document]:
    """Installed packages' long descriptions (their PyPI README), sorted by package name."""
    stats = stats if stats is not None else SourceStats()
    dists = {}
    for d in md.distributions():
        name = (d.metadata.get("Name") or "").strip()
        if name and name.lower() not in dists:
            dists[name.lower()] = d
    for key in sorted(dists):
        d = dists[key]
        stats.seen += 1
        desc = _description(d)
        if len(desc.strip()) < min_chars:
            stats.skip("no_description", d.metadata["Name"])
            continue
        ctype = (d.metadata.get("Description-Content-Type") or "").lower()
        lang = (
            "markdown" if "markdown" in ctype else "restructuredtext" if "rst" in ctype else "text"
        )
        yield stats.keep(
            Document(desc, "docs", "README", d.metadata["Name"], lang, {"version": d.version})
        )


def doc_files(
    roots,
    *,
    max_files: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    stats: SourceStats | None = None,
) -> Iterator[Document]:
    """Markdown / reStructuredText / text files under ``roots`` (folders or :class:`Repo`)."""
    stats = stats if stats is not None else SourceStats()
    n = 0
    for repo in as_repos(roots):
        for rel in repo_files(repo):
            lang = language_of(rel, DOC_EXTENSIONS)
            if lang is None:
                continue
            if max_files is not None and n >= max_files:
                return
            doc = read_document(repo, rel, "docs", lang, stats, max_bytes)
            if doc is None:
                continue
            n += 1
            yield doc


def docs_documents(
    roots=(),
    *,
    include_packages: bool = True,
    max_docs: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    stats: SourceStats | None = None,
) -> Iterator[Document]:
    """Text-code grounding documents, code blocks kept, ``source="docs"``: installed packages'
    long descriptions (when ``include_packages``), then .md/.rst/.txt files under ``roots``."""
    stats = stats if stats is not None else SourceStats()
    n = 0
    parts = []
    if include_packages:
        parts.append(package_descriptions(stats=stats))
    if roots:
        parts.append(doc_files(roots, max_bytes=max_bytes, stats=stats))
    for it in parts:
        for doc in it:
            if max_docs is not None and n >= max_docs:
                return
            n += 1
            yield doc
