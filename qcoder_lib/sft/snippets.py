"""Real code to derive instruction data from: the course's seed file (functions in Python,
JavaScript, Java, C++, Go and Rust, ``data_samples/sft_seed_code.jsonl``) and functions with
docstrings from the installed Python standard library, cut out with tree-sitter.

:func:`doc_comment` and :func:`split_signature` read a function's documentation and its
signature from the syntax tree of its own language, which is what the offline teacher needs.
"""

from __future__ import annotations

import json
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qcoder_lib.io import resource_path
from qcoder_lib.sft.samples import CodeSnippet
from qcoder_lib.syntax_spans import get_parser

# Function node type per language, and the node holding the function's body.
FUNCTION_TYPES = {"python": "function_definition", "javascript": "function_declaration",
                  "java": "method_declaration", "cpp": "function_definition",
                  "go": "function_declaration", "rust": "function_item"}
COMMENT_TYPES = ("comment", "line_comment", "block_comment")
SEED_FILE = "sft_seed_code.jsonl"


@dataclass(frozen=True)
class Function:
    """One function cut out of a file by its syntax tree."""

    name: str  # the function's name
    doc: str  # its documentation (docstring, else the comment right above), on one line
    text: str  # the function with its doc comment
    bare: str  # the function without its doc comment or docstring


def seed_snippets(path: str | Path | None = None) -> list[CodeSnippet]:
    """The course's seed snippets (default ``data_samples/sft_seed_code.jsonl``); a line that
    is not a JSON object with ``language`` and ``code`` raises ``ValueError`` naming it."""
    path = Path(path) if path is not None else resource_path(SEED_FILE)
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out.append(CodeSnippet(rec["language"], rec["code"], f"{path.name}:{no}",
                                   rec.get("tests", ""), rec.get("note", "")))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path.name}:{no}: not a seed snippet ({e})") from e
    return out


def _clean_comment(text: str) -> str:
    lines = []
    for line in text.strip().splitlines():
        line = line.strip()
        for mark in ("/**", "/*", "*/", "///", "//", "#"):
            line = line.removeprefix(mark)
            line = line.removesuffix("*/")
        line = line.strip().lstrip("*").strip()
        if line:
            lines.append(line)
    return " ".join(lines)


def _python_docstring(fn_node, source: bytes) -> str:
    body = fn_node.child_by_field_name("body")
    if body is None or not body.named_children:
        return ""
    first = body.named_children[0]
    if first.type == "expression_statement" and first.named_children and \
            first.named_children[0].type == "string":
        text = source[first.start_byte:first.end_byte].decode("utf-8", "replace")
        text = text.lstrip("rbuRBU")  # string prefix letters come before the first quote
        return " ".join(text.strip("\"' \n\r\t").split())
    return ""


def functions(code: str, language: str) -> list[Function]:
    """The top-level functions of ``code`` as :class:`Function` records: name, documentation
    (the Python docstring, else the comment right above it, cleaned), the text with and without
    that documentation. A file with a parse error yields ``[]``."""
    source = code.encode("utf-8", "surrogatepass")
    tree = get_parser(language).parse(source)
    if tree.root_node.has_error:
        return []
    out = []
    kids = tree.root_node.named_children
    for i, node in enumerate(kids):
        if node.type == "decorated_definition":
            node = node.child_by_field_name("definition") or node
        if node.type != FUNCTION_TYPES[language]:
            continue
        name_node = node.child_by_field_name("name") or node.child_by_field_name("declarator")
        name = source[name_node.start_byte:name_node.end_byte].decode() if name_node else "f"
        name = name.split("(")[0].strip()
        start, doc = node.start_byte, ""
        bare = source[node.start_byte:node.end_byte]
        if language == "python":
            doc = _python_docstring(node, source)
            if doc:  # cut the docstring's line(s) out of the bare text
                ds = node.child_by_field_name("body").named_children[0]
                a = source.rfind(b"\n", 0, ds.start_byte) + 1
                b = source.find(b"\n", ds.end_byte)
                b = len(source) if b < 0 else b + 1
                bare = source[node.start_byte:a] + source[b:node.end_byte]
        elif i > 0 and kids[i - 1].type in COMMENT_TYPES and \
                kids[i - 1].end_point[0] + 1 >= node.start_point[0]:
            j = i - 1
            while j > 0 and kids[j - 1].type in COMMENT_TYPES and \
                    kids[j - 1].end_point[0] + 1 >= kids[j].start_point[0]:
                j -= 1  # consecutive // lines form one comment
            start = kids[j].start_byte
            doc = _clean_comment(source[start:kids[i - 1].end_byte].decode("utf-8", "replace"))
        out.append(Function(name, doc, source[start:node.end_byte].decode("utf-8", "replace"),
                            bare.decode("utf-8", "replace")))
    return out


def split_signature(function_text: str, language: str) -> tuple[str, str]:
    """``(head, body)`` of one function: everything up to the body's start (doc comment and
    signature; for Python also the docstring) and the body. Raises ``ValueError`` when the text
    holds no function of ``language``."""
    source = function_text.encode("utf-8", "surrogatepass")
    tree = get_parser(language).parse(source)
    want = FUNCTION_TYPES[language]
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == want:
            body = node.child_by_field_name("body")
            if body is None:
                break
            cut = body.start_byte
            if language == "python" and _python_docstring(node, source):
                cut = body.named_children[0].end_byte  # keep the docstring in the head
                if len(body.named_children) > 1:
                    nxt = body.named_children[1].start_byte
                    cut = source.rfind(b"\n", 0, nxt) + 1
            return (source[:cut].decode("utf-8", "replace"),
                    source[cut:].decode("utf-8", "replace"))
        stack.extend(reversed(node.named_children))
    raise ValueError(f"split_signature: no {language} function ({want}) in the text")


def stdlib_snippets(limit: int = 20, max_chars: int = 1200) -> Iterator[CodeSnippet]:
    """Up to ``limit`` documented top-level Python functions of at most ``max_chars`` characters
    from the installed standard library, in a fixed (sorted) order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    n = 0
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue  # private modules
        if n >= limit:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for fn in functions(text, "python"):
            if fn.name.startswith("_") or len(fn.text) > max_chars or len(fn.doc) < 20:
                continue
            yield CodeSnippet("python", fn.text, f"stdlib:{path.name}:{fn.name}")
            n += 1
            if n >= limit:
                return
