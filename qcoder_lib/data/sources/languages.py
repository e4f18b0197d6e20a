"""The one extension -> language table of the library (the code source labels documents with it,
and :mod:`qcoder_lib.syntax_spans` picks tree-sitter grammars from it).

``.h`` is C: it is GitHub Linguist's default for ``.h`` (what The Stack's language labels follow),
and C headers are the ones a C++ compiler reads too, not the other way round. A C++ header that
uses ``.h`` is labelled ``c``; :mod:`qcoder_lib.syntax_spans` parses ``c`` files with the C++
grammar, which accepts nearly all C, so FIM spans are still syntax-aware for both.
"""

from __future__ import annotations

from pathlib import Path

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


def language_of(path: str | Path, table: dict[str, str] | None = None) -> str | None:
    """The language of a file from its extension (``None`` when not in ``table``)."""
    return (table or CODE_EXTENSIONS).get(Path(path).suffix.lower())
