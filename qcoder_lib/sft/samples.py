"""The records instruction data is made of: a code snippet (what synthesis starts from) and an
instruction pair (a conversation with one user turn and one assistant turn, plus where it came
from and how to check it)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Markdown fence names per tree-sitter language (what a response's code block is labelled).
FENCE = {"python": "python", "javascript": "javascript", "java": "java", "cpp": "cpp",
         "go": "go", "rust": "rust"}
LANGUAGE_NAMES = {"python": "Python", "javascript": "JavaScript", "java": "Java", "cpp": "C++",
                  "go": "Go", "rust": "Rust"}


@dataclass
class CodeSnippet:
    """A piece of real code that instruction pairs are derived from."""

    language: str  # tree-sitter language: python, javascript, java, cpp, go, rust
    code: str  # the source text (one function with its doc comment, typically)
    source: str  # where it came from, e.g. "sft_seed_code.jsonl:3" or "stdlib:ast.py:parse"
    tests: str = ""  # Python assert statements that the code must pass ("" when none)
    note: str = ""  # free text (e.g. why a seed snippet was planted)


@dataclass
class InstructionPair:
    """One instruction sample: a user instruction and the assistant's response."""

    instruction: str  # the user turn
    response: str  # the assistant turn (markdown; code in fenced blocks)
    language: str  # the programming language of the code involved
    kind: str  # how it was made: "implement", "tests_to_code", "explain", "fim", "teacher", ...
    source: str  # the snippet's source
    tests: str = ""  # Python tests the response's code must pass ("" when none)
    score: float | None = None  # quality score in [0, 1] given by a Scorer (None before scoring)
    meta: dict = field(default_factory=dict)  # anything else (e.g. the FIM middle's node type)

    def messages(self, system: str | None = None) -> list[dict]:
        """The pair as chat messages (a system turn first when ``system`` is given)."""
        out = [{"role": "system", "content": system}] if system else []
        return out + [{"role": "user", "content": self.instruction},
                      {"role": "assistant", "content": self.response}]


def fenced(code: str, language: str) -> str:
    """``code`` in a markdown fence labelled with ``language``'s fence name."""
    return f"```{FENCE.get(language, language)}\n{code.rstrip()}\n```"
