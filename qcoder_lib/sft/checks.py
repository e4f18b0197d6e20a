"""Static and execution checks of instruction pairs.

Static: every fenced code block (in the instruction and in the response) is parsed with the
tree-sitter grammar of its language; a block with a parse error drops the pair. A FIM pair is
checked on its whole document (its instruction holds a hole marker, not code).
Execution: Python pairs that carry tests run in :mod:`qcoder_lib.sandbox` (never in this
process); a pair whose code fails its tests is dropped.
"""

from __future__ import annotations

import re

from qcoder_lib.sft.samples import FENCE, InstructionPair
from qcoder_lib.syntax_spans import get_parser

FENCE_RE = re.compile(r"```([\w+#-]*)[ \t]*\n(.*?)```", re.DOTALL)
FENCE_TO_LANGUAGE = {v: k for k, v in FENCE.items()} | {
    "py": "python", "js": "javascript", "c++": "cpp", "cc": "cpp", "rs": "rust",
    "golang": "go"}
CODE_KINDS = ("implement", "tests_to_code", "fim")  # kinds whose response must hold code


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """The fenced code blocks of ``markdown`` as ``(fence name, code)``, in order."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE_RE.finditer(markdown)]


def parses(code: str, language: str) -> bool:
    """True when tree-sitter parses ``code`` as ``language`` without any error node."""
    tree = get_parser(language).parse(code.encode("utf-8", "surrogatepass"))
    return not tree.root_node.has_error


def static_check(pair: InstructionPair) -> str | None:
    """Why ``pair`` fails the static check (``"parse_error"``, ``"no_code"``,
    ``"empty_response"``), or ``None`` when it passes."""
    if not pair.response.strip():
        return "empty_response"
    if pair.kind == "fim":
        return None if parses(pair.meta["document"], pair.language) else "parse_error"
    blocks = code_blocks(pair.instruction) + code_blocks(pair.response)
    if pair.kind in CODE_KINDS and not code_blocks(pair.response):
        return "no_code"
    for fence, code in blocks:
        language = FENCE_TO_LANGUAGE.get(fence, pair.language if not fence else None)
        if language is not None and not parses(code, language):
            return "parse_error"
    return None


def response_code(pair: InstructionPair) -> str:
    """The code of the response: its first fenced block (the whole response when it has none)."""
    blocks = code_blocks(pair.response)
    return blocks[0][1] if blocks else pair.response


def execution_check(pairs: list[InstructionPair], *, timeout_s: float = 10.0,
                    workers: int | None = None) -> list[str | None]:
    """For each pair: ``"tests_failed"`` (with the sandbox status) when it is Python with tests
    and its code does not pass them in the sandbox, else ``None``. Runs in parallel."""
    from qcoder_lib.sandbox import run_many

    todo = [i for i, p in enumerate(pairs) if p.language == "python" and p.tests.strip()]
    out: list[str | None] = [None] * len(pairs)
    if not todo:
        return out
    tasks = [{"solution": response_code(pairs[i]), "tests": pairs[i].tests} for i in todo]
    for i, res in zip(todo, run_many(tasks, workers=workers, timeout_s=timeout_s)):
        if res.status != "passed":
            out[i] = "tests_failed"
            pairs[i].meta["sandbox"] = f"{res.status}: {res.reason}"
    return out
