"""Repositories: which folders the code source reads (the standard library, each installed
package, any folder or git checkout) and which of their files, in a fixed order."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qcoder_lib.data.sources.documents import Document, SourceStats, read_text_file

SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".tox", ".mypy_cache", "site-packages"}


@dataclass
class Repo:
    """A folder treated as one repository."""

    name: str  # shown as Document.repo
    root: Path  # folder (or, for a single-module package, the folder holding the file)
    files: list[str] | None = None  # restrict to these relative paths (single-file packages)


def stdlib_repo() -> Repo:
    """The running Python's standard library as one repository named ``python-stdlib``."""
    return Repo("python-stdlib", Path(sysconfig.get_paths()["stdlib"]))


def site_package_repos(site_dir: str | Path | None = None) -> list[Repo]:
    """Every installed package in site-packages as its own repository (sorted by name):
    a package folder is a repository; a top-level ``module.py`` is a one-file repository."""
    site = Path(site_dir or sysconfig.get_paths()["purelib"])
    repos: list[Repo] = []
    for p in sorted(site.iterdir(), key=lambda q: q.name.lower()):
        name = p.name
        if name.startswith((".", "_")) or name.endswith((".dist-info", ".egg-info", ".pth")):
            continue
        if p.is_dir() and name not in SKIP_DIRS:
            repos.append(Repo(name, p))
        elif p.is_file() and p.suffix == ".py":
            repos.append(Repo(p.stem, site, files=[name]))
    return repos


def repo_from_folder(folder: str | Path, name: str | None = None) -> Repo:
    """Any local folder or git checkout as a repository (named after the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"code root {folder} is not a folder")
    return Repo(name or folder.resolve().name, folder)


def default_code_repos() -> list[Repo]:
    """The default code roots: the standard library, then each installed package."""
    return [stdlib_repo(), *site_package_repos()]


def _git_files(root: Path) -> list[str] | None:
    """Tracked files of a git checkout (``git ls-files``), or ``None`` when not a checkout."""
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(f for f in out.stdout.decode("utf-8", "replace").split("\0") if f)


def repo_files(repo: Repo) -> Iterator[str]:
    """Relative paths of the files of ``repo`` in a fixed (sorted) order: the tracked files of a
    git checkout, else a walk that skips hidden folders, caches and nested site-packages."""
    if repo.files is not None:
        yield from repo.files
        return
    tracked = _git_files(repo.root)
    if tracked is not None:
        yield from tracked
        return
    for dirpath, dirnames, filenames in os.walk(repo.root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        rel = os.path.relpath(dirpath, repo.root)
        for f in sorted(filenames):
            yield f if rel == "." else f"{rel}/{f}"


def as_repos(roots) -> list[Repo]:
    """``roots`` as repositories: ``None`` -> :func:`default_code_repos`; a folder, a
    :class:`Repo`, or a list of them -> one :class:`Repo` each."""
    if roots is None:
        return default_code_repos()
    if isinstance(roots, (str, Path, Repo)):
        roots = [roots]
    return [r if isinstance(r, Repo) else repo_from_folder(r) for r in roots]


def read_document(
    repo: Repo, rel: str, source: str, language: str, stats: SourceStats, max_bytes: int
) -> Document | None:
    """Read ``repo.root / rel`` as a Document of ``source``, counting it in ``stats``; ``None``
    (counted as skipped, with the reason) when it is binary, undecodable or too large."""
    stats.seen += 1
    text, why = read_text_file(repo.root / rel, max_bytes=max_bytes)
    if text is None:
        stats.skip(why, f"{repo.name}/{rel}")
        return None
    return stats.keep(Document(text, source, rel, repo.name, language))
