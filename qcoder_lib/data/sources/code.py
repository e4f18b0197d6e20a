"""The code source: source files of repositories as documents, one per file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from qcoder_lib.data.sources.documents import DEFAULT_MAX_BYTES, Document, SourceStats
from qcoder_lib.data.sources.languages import language_of
from qcoder_lib.data.sources.repos import as_repos, read_document, repo_files


def code_documents(
    roots=None,
    *,
    max_files: int | None = None,
    max_files_per_repo: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    languages: Iterable[str] | None = None,
    stats: SourceStats | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Document]:
    """Source-code files as documents, one per file, ``source="code"``.

    ``roots``: folders, git checkouts or :class:`Repo` objects; ``None`` means the running
    Python's standard library (repo ``python-stdlib``) and every installed package in
    site-packages (repo = package name). ``path`` is relative to the repository.
    ``languages`` keeps only those languages (names as in :data:`CODE_EXTENSIONS`).
    ``max_files`` caps the documents yielded overall, ``max_files_per_repo`` per repository (so a
    small corpus still spans many repositories). Skipped files are counted in ``stats``.
    ``shard=(rank, world_size)`` reads only every ``world_size``-th candidate file of each
    repository (a parallel worker's share; the caps then apply to that share).
    """
    stats = stats if stats is not None else SourceStats()
    wanted = set(languages) if languages else None
    total = 0
    for repo_i, repo in enumerate(as_repos(roots)):
        in_repo = 0
        candidate = repo_i  # shard key: repository number + file number in the repository
        for rel in repo_files(repo):
            lang = language_of(rel)
            if lang is None or (wanted is not None and lang not in wanted):
                continue
            candidate += 1
            if shard is not None and candidate % shard[1] != shard[0]:
                continue
            if max_files is not None and total >= max_files:
                return
            if max_files_per_repo is not None and in_repo >= max_files_per_repo:
                break
            doc = read_document(repo, rel, "code", lang, stats, max_bytes)
            if doc is None:
                continue
            total += 1
            in_repo += 1
            yield doc
