"""Quality scores for instruction pairs: a :class:`Scorer` interface, a documented heuristic
(the default) and an LLM judge built on any :class:`~qcoder_lib.sft.teacher.Teacher`.

The report removes low-quality pairs with an LLM scorer; offline, :class:`HeuristicScorer`
scores a pair by the share of these checks it passes (each worth the same):

1. the instruction has 15 to 2,000 characters;
2. the response has 1 to 4,000 characters and is not a copy of the instruction;
3. code kinds (implement, tests_to_code, fim) answer with a code block; an explanation answers
   in at least 5 words of prose;
4. the response's code is not a copy of code shown in the instruction;
5. when the instruction names a function (`` `name` ``), the response's code defines it.
"""

from __future__ import annotations

import re

from qcoder_lib.sft.checks import CODE_KINDS, code_blocks, response_code
from qcoder_lib.sft.samples import InstructionPair

JUDGE_PROMPT = (
    "Rate the quality of this instruction and answer for training a coding assistant, from 1 "
    "(useless or wrong) to 10 (excellent). Reply with the number only.\n\n"
    "Instruction:\n{instruction}\n\nAnswer:\n{response}"
)


class Scorer:
    """Gives a pair a quality score in ``[0, 1]``."""

    def score(self, pair: InstructionPair) -> float:
        """The score of ``pair`` (higher is better)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement score()")


class HeuristicScorer(Scorer):
    """The documented heuristic of the module docstring: the share of its 5 checks passed."""

    def checks(self, pair: InstructionPair) -> dict[str, bool]:
        """Each check's name and whether ``pair`` passes it."""
        ins, res = pair.instruction.strip(), pair.response.strip()
        code = response_code(pair) if code_blocks(res) else ""
        shown = [c.strip() for _, c in code_blocks(ins)]
        named = re.search(r"`([A-Za-z_]\w*)`", ins)
        return {
            "instruction_length": 15 <= len(ins) <= 2000,
            "response_length": 1 <= len(res) <= 4000 and res != ins,
            "answer_form": bool(code) if pair.kind in CODE_KINDS else len(res.split()) >= 5,
            "not_a_copy": not code or code.strip() not in shown,
            "names_match": not named or not code or named.group(1) in code,
        }

    def score(self, pair: InstructionPair) -> float:
        """The share of :meth:`checks` passed."""
        c = self.checks(pair)
        return sum(c.values()) / len(c)


class LLMJudgeScorer(Scorer):
    """An LLM judge: asks ``teacher`` for a 1-10 grade and returns it divided by 10 (0 when
    the reply holds no number from 1 to 10)."""

    def __init__(self, teacher):
        self.teacher = teacher  # any Teacher with a working chat()

    def score(self, pair: InstructionPair) -> float:
        """The judge's grade of ``pair`` over 10."""
        reply = self.teacher.chat([{"role": "user", "content": JUDGE_PROMPT.format(
            instruction=pair.instruction, response=pair.response)}])
        m = re.search(r"\b(10|[1-9])\b", reply)
        return int(m.group(1)) / 10 if m else 0.0
