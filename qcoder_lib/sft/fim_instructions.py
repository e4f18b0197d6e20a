"""FIM instruction samples for "mixed tuning": a tree-sitter logic block of real code becomes
the hole, and the pair asks, in chat form, for the missing code.

The report mixes a small share of such samples into mostly ordinary SFT data so that the
instruct model keeps its infilling skill. The chat wording (a ``<MISSING>`` marker in a fenced
block, the middle answered in a fenced block) is a course choice: the report does not publish
its template. The middle is chosen by :func:`qcoder_lib.syntax_spans.syntax_span` (expression,
statement, block or function nodes), the same rule as pretraining FIM.
"""

from __future__ import annotations

import random

from qcoder_lib.sft.samples import LANGUAGE_NAMES, CodeSnippet, InstructionPair, fenced
from qcoder_lib.syntax_spans import syntax_span

HOLE = "<MISSING>"


def fim_instruction(snippet: CodeSnippet, rng: random.Random) -> tuple[InstructionPair | None, str]:
    """One FIM instruction pair from ``snippet`` and ``"ok"``, or ``(None, reason)`` with the
    reason of :func:`~qcoder_lib.syntax_spans.syntax_span` (``parse_error``, ``no_candidate``,
    ``no_language``)."""
    span, reason = syntax_span(snippet.code, snippet.language, rng)
    if span is None:
        return None, reason
    code = snippet.code
    prefix, middle, suffix = code[:span.start], code[span.start:span.end], code[span.end:]
    lang = LANGUAGE_NAMES.get(snippet.language, snippet.language)
    instruction = (f"Fill in the code marked {HOLE} in this {lang} code. Reply with the missing "
                   f"code only.\n\n{fenced(prefix + HOLE + suffix, snippet.language)}")
    pair = InstructionPair(instruction, fenced(middle, snippet.language), snippet.language, "fim",
                           snippet.source, meta={"document": code, "middle": middle,
                                                 "node_type": span.node_type,
                                                 "category": span.category})
    return pair, "ok"


def fim_instructions(snippets, seed: int = 0) -> tuple[list[InstructionPair], dict[str, int]]:
    """A FIM pair per snippet where one can be made, and the count per outcome."""
    rng = random.Random(seed)
    out, counts = [], {}
    for s in snippets:
        pair, reason = fim_instruction(s, rng)
        counts[reason] = counts.get(reason, 0) + 1
        if pair is not None:
            out.append(pair)
    return out, counts


def mix_fim(pairs: list[InstructionPair], fim_pairs: list[InstructionPair], share: float,
            seed: int = 0) -> list[InstructionPair]:
    """``pairs`` plus as many FIM pairs as make ``share`` of the result (rounded; at most all of
    ``fim_pairs``), shuffled with ``seed``. ``share`` must be in ``[0, 1)``."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"mix_fim: share={share} must be in [0, 1)")
    want = round(share * len(pairs) / (1.0 - share))
    rng = random.Random(seed)
    chosen = rng.sample(fim_pairs, min(want, len(fim_pairs)))
    mixed = list(pairs) + chosen
    rng.shuffle(mixed)
    return mixed
