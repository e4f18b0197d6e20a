"""The text source (prose): the course's own text samples, packages' READMEs with the code
removed, and the docstrings of Python modules."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from qcoder_lib.data.sources.code import code_documents
from qcoder_lib.data.sources.docs import package_descriptions
from qcoder_lib.data.sources.documents import Document, SourceStats, read_text_file
from qcoder_lib.data.sources.repos import as_repos
from qcoder_lib.io import resource_path

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


_TRIPLE_QUOTED = re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.DOTALL)


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
    roots = as_repos(docstring_roots)
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
