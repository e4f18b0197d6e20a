"""Where pretraining documents come from: code, docs, text, math (and, in ``synthetic``, programs
kept only if they run).

Every source is a lazy iterator of :class:`Document`. Nothing is read before it is asked for, so a
source over all of site-packages costs nothing until the mixer pulls from it.

Bad input is never dropped silently: every file that a source skips is counted by reason in a
:class:`SourceStats` (``binary``, ``undecodable``, ``too_large``, ``empty``, ``malformed_json``,
...), with the first few paths per reason as examples, and :meth:`SourceStats.table` prints it.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qcoder_lib.io import resource_path

# File extension -> language name, for the programming languages the code source keeps.
CODE_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cuh": "cpp",
    ".cu": "cuda",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".lua": "lua",
    ".sh": "shell",
    ".bash": "shell",
    ".sql": "sql",
    ".r": "r",
    ".jl": "julia",
    ".pyx": "cython",
    ".pxd": "cython",
    ".f90": "fortran",
    ".swift": "swift",
    ".cs": "csharp",
    ".html": "html",
    ".css": "css",
}
# Documentation files the docs source keeps.
DOC_EXTENSIONS: dict[str, str] = {".md": "markdown", ".rst": "restructuredtext", ".txt": "text"}

SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".tox", ".mypy_cache", "site-packages"}
DEFAULT_MAX_BYTES = 256 * 1024  # files above this are skipped as `too_large` (StarCoder: 1 MB)
BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB means binary


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


# --------------------------------------------------------------------------------------------
# Reading one file safely
# --------------------------------------------------------------------------------------------
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


def language_of(path: str | Path, table: dict[str, str] | None = None) -> str | None:
    """The language of a file from its extension (``None`` when not in ``table``)."""
    return (table or CODE_EXTENSIONS).get(Path(path).suffix.lower())


# --------------------------------------------------------------------------------------------
# Repositories: what the default roots are and which files belong to them
# --------------------------------------------------------------------------------------------
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


def _as_repos(roots) -> list[Repo]:
    if roots is None:
        return default_code_repos()
    if isinstance(roots, (str, Path, Repo)):
        roots = [roots]
    return [r if isinstance(r, Repo) else repo_from_folder(r) for r in roots]


# --------------------------------------------------------------------------------------------
# Code
# --------------------------------------------------------------------------------------------
def _read_document(repo, rel: str, source: str, language: str, stats, max_bytes: int):
    """Read ``repo.root / rel`` as a Document of ``source``, counting it in ``stats``; ``None``
    (counted as skipped, with the reason) when it is binary, undecodable or too large."""
    stats.seen += 1
    text, why = read_text_file(repo.root / rel, max_bytes=max_bytes)
    if text is None:
        stats.skip(why, f"{repo.name}/{rel}")
        return None
    return stats.keep(Document(text, source, rel, repo.name, language))


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
    for repo_i, repo in enumerate(_as_repos(roots)):
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
            doc = _read_document(repo, rel, "code", lang, stats, max_bytes)
            if doc is None:
                continue
            total += 1
            in_repo += 1
            yield doc


# --------------------------------------------------------------------------------------------
# Documentation (text-code grounding): READMEs / long descriptions, .md / .rst files
# --------------------------------------------------------------------------------------------
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
    for repo in _as_repos(roots):
        for rel in repo_files(repo):
            lang = language_of(rel, DOC_EXTENSIONS)
            if lang is None:
                continue
            if max_files is not None and n >= max_files:
                return
            doc = _read_document(repo, rel, "docs", lang, stats, max_bytes)
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


# --------------------------------------------------------------------------------------------
# Text: prose (documentation with code removed, docstrings, data_samples/)
# --------------------------------------------------------------------------------------------
_FENCED = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.DOTALL | re.MULTILINE)
_RST_CODE = re.compile(
    r"(::|\.\. code-block::[^\n]*|\.\. code::[^\n]*)\n\n((?:[ \t]+[^\n]*\n|\n)+)"
)
_DOCTEST = re.compile(r"^\s*(>>>|\.\.\.) .*$", re.MULTILINE)
_INDENTED = re.compile(r"(?:^(?: {4}|\t)[^\n]*\n)+", re.MULTILINE)


def strip_code(text: str) -> str:
    """Remove code from documentation: fenced blocks, reST literal blocks, doctest lines and
    indented blocks; collapse the blank lines left behind."""
    text = _FENCED.sub("", text)
    text = _RST_CODE.sub(lambda m: (":" if m.group(1) == "::" else "") + "\n\n", text)
    text = _DOCTEST.sub("", text)
    text = _INDENTED.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_TRIPLE_QUOTED = re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.S)


def docstring_prose(source_text: str, *, min_chars: int = 80) -> str:
    """The docstrings of a Python module (module, classes, functions) joined as prose, with
    doctest examples removed; empty when the module does not parse."""
    quoted = sum(m.end() - m.start() - 6 for m in _TRIPLE_QUOTED.finditer(source_text))
    if quoted < min_chars:  # cheap pre-check: no docstring can be long enough, skip parsing
        return ""
    try:
        tree = ast.parse(source_text)
    except (SyntaxError, ValueError):
        return ""
    parts = []
    defs = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    stack = [tree]  # only statements that can hold a docstring are visited, not expressions
    while stack:
        node = stack.pop(0)
        doc = ast.get_docstring(node)
        if doc and len(doc) >= min_chars:
            parts.append(strip_code(doc))
        stack.extend(n for n in node.body if isinstance(n, defs))
    return "\n\n".join(p for p in parts if p)


COURSE_SAMPLES = "course"  # samples_dir default: the course's data_samples/ (qcoder_lib.io)


def text_documents(
    *,
    samples_dir: str | Path | None = COURSE_SAMPLES,
    include_packages: bool = True,
    docstring_roots=None,
    max_docs: int | None = None,
    min_chars: int = 300,
    stats: SourceStats | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Document]:
    """Prose, ``source="text"``: ``data_samples/text/*.txt`` written for this course, installed
    packages' descriptions with code removed, then the docstrings of Python modules under
    ``docstring_roots`` (default: the standard library, then each installed package) as one
    document per module. ``shard=(rank, world_size)`` keeps every ``world_size``-th document."""
    stats = stats if stats is not None else SourceStats()
    n = 0
    k = -1

    def _mine() -> bool:
        nonlocal k
        k += 1
        return shard is None or k % shard[1] == shard[0]

    def _take(doc: Document):
        nonlocal n
        n += 1
        return stats.keep(doc)

    if samples_dir == COURSE_SAMPLES:
        samples_dir = resource_path()
    if samples_dir is not None and Path(samples_dir, "text").is_dir():
        for p in sorted(Path(samples_dir, "text").glob("*.txt")):
            if max_docs is not None and n >= max_docs:
                return
            if not _mine():
                continue
            stats.seen += 1
            text, why = read_text_file(p)
            if text is None:
                stats.skip(why, f"data_samples/text/{p.name}")
                continue
            yield _take(Document(text, "text", f"text/{p.name}", "data_samples", "english"))
    if include_packages:
        for d in package_descriptions(stats=SourceStats()):
            if max_docs is not None and n >= max_docs:
                return
            if not _mine():
                continue
            stats.seen += 1
            prose = strip_code(d.text)
            if len(prose) < min_chars:
                stats.skip("too_little_prose", d.repo)
                continue
            yield _take(Document(prose, "text", "README (prose)", d.repo, "english"))
    roots = _as_repos(docstring_roots)
    offset = k + 1
    sub = None if shard is None else ((shard[0] - offset) % shard[1], shard[1])
    for doc in code_documents(roots, languages=["python"], shard=sub):
        if max_docs is not None and n >= max_docs:
            return
        stats.seen += 1
        prose = docstring_prose(doc.text)
        if len(prose) < min_chars:
            stats.skip("too_little_prose", f"{doc.repo}/{doc.path}")
            continue
        yield _take(Document(prose, "text", f"{doc.path} (docstrings)", doc.repo, "english"))


# --------------------------------------------------------------------------------------------
# JSON lines and `datasets` datasets (e.g. a Stack-style dump)
# --------------------------------------------------------------------------------------------
def read_jsonl(
    path: str | Path, *, stats: SourceStats | None = None, display_name: str | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON object line of ``path``. Malformed lines
    (bad JSON, not an object, not UTF-8) are skipped and counted in ``stats`` under
    ``malformed_json`` with ``file:line`` as the example; blank lines are ignored."""
    stats = stats if stats is not None else SourceStats()
    name = display_name or Path(path).name
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            stats.seen += 1
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                stats.skip("malformed_json", f"{name}:{i} (not UTF-8)")
                continue
            except json.JSONDecodeError as e:
                stats.skip("malformed_json", f"{name}:{i} ({e.msg})")
                continue
            if not isinstance(rec, dict):
                stats.skip("malformed_json", f"{name}:{i} (not an object)")
                continue
            yield i, rec


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
    import datasets

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
    for i, rec in enumerate(ds):
        if max_docs is not None and stats.kept >= max_docs:
            return
        stats.seen += 1
        doc = _record_document(
            dict(rec), f"{label}#{i}", source=source, text_field=text_field, stats=stats
        )
        if doc is not None:
            yield stats.keep(doc)


def math_documents(n: int, seed: int = 0, **kw) -> Iterator[Document]:
    """``n`` math problems with worked solutions whose answers were checked by execution
    (see :mod:`qcoder_lib.data.math_problems`)."""
    from qcoder_lib.data.math_problems import math_documents as _math

    return _math(n, seed, **kw)
