"""Probes of a pretrained model: single-line infilling exact match, completions that parse.

The scoring is checked with stand-in models whose answers are known (an oracle that returns the
hidden line, one that returns a wrong line), through the real prompt building and decoding."""

import pytest

from qcoder_lib.fim import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from qcoder_lib.tokenizer import decode, encode_data, special_id, train_tokenizer
from qcoder_lib.train.probes import (
    CompletionCheck,
    InfillTask,
    check_completions,
    completion_parse_share,
    cut_function,
    function_ended,
    function_heads,
    infill_exact_match,
    infill_tasks,
    parses,
    valid_python,
)

TEXTS = [f"import os\n\ndef f{i}(x):\n    y = x + {i}\n    return y * 2\n\nprint(f{i}(3))\n"
         for i in range(6)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 5, 320)


class StandIn:
    """``generate`` answers from a function of the decoded prompt (a real tokenizer round trip)."""

    def __init__(self, tok, answer):
        self.tok, self.answer = tok, answer

    def eval(self):
        return self

    def generate(self, prompts, max_new_tokens, stop_token_ids=()):
        eos = special_id(self.tok, "<|endoftext|>")
        return [encode_data(self.tok, self.answer(p))[:max_new_tokens - 1] + [eos][:1]
                for p in prompts]


def hidden_line(tok, prompt_ids):
    """The oracle: reads prefix and suffix back from the PSM prompt and finds the hidden line."""
    P, S, M = (special_id(tok, t) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE))
    assert prompt_ids[0] == P and prompt_ids[-1] == M
    s = prompt_ids.index(S)
    pre, suf = decode(tok, prompt_ids[1:s]), decode(tok, prompt_ids[s + 1:-1])
    for text in TEXTS:
        if pre in text and suf in text[text.index(pre) + len(pre):]:
            start = text.index(pre) + len(pre)
            return text[start:text.index(suf, start)] + "\nnext line"
    raise AssertionError("prompt not from TEXTS")


def test_infill_tasks_hide_one_line_and_exact_match_scores_it(tok):
    tasks = infill_tasks(TEXTS, 4, seed=0)
    assert len(tasks) == 4
    for t in tasks:
        assert t.prefix.endswith("\n") and t.suffix.startswith("\n") and "\n" not in t.middle
        assert any(t.prefix + t.middle + t.suffix in text for text in TEXTS)
        assert len(t.middle.strip()) >= 4
    em, answers = infill_exact_match(StandIn(tok, lambda p: hidden_line(tok, p)), tok, tasks)
    assert em == 1.0 and [a.strip() for a in answers] == [t.middle.strip() for t in tasks]
    em, _ = infill_exact_match(StandIn(tok, lambda p: "pass"), tok, tasks)
    assert em == 0.0
    seen = []  # the prefix-only prompt is the prefix's ids, no special token
    infill_exact_match(StandIn(tok, lambda p: seen.append(p) or "x"), tok, tasks, prompt="prefix")
    assert [decode(tok, p) for p in seen] == [t.prefix for t in tasks]
    with pytest.raises(ValueError, match="prompt"):
        infill_exact_match(StandIn(tok, str), tok, tasks, prompt="spm")
    assert infill_tasks(["one line only"], 3) == []
    assert isinstance(tasks[0], InfillTask)


def test_function_completions_are_cut_and_parsed(tok):
    heads = function_heads(TEXTS, 3, seed=1)
    assert len(heads) == 3 and all(h.startswith("def f") and h.endswith(":\n") for h in heads)
    assert cut_function("def g(x):\n", "    return x\nprint(1)\n") == "def g(x):\n    return x\n"
    assert cut_function("def g(x):\n", "    y = 1\n    return y", complete=False) == \
        "def g(x):\n    y = 1\n"
    assert cut_function("def g(x):\n", "    return x", complete=True) == \
        "def g(x):\n    return x\n"
    assert parses("def g(x):\n    return x\n") and not parses("def g(x):\n")
    share, funcs = completion_parse_share(StandIn(tok, lambda p: "    return x\n\nz = 1"), tok,
                                          heads)
    assert share == 1.0 and all(f.endswith("    return x\n") for f in funcs)
    share, _ = completion_parse_share(StandIn(tok, lambda p: "    return (x\n"), tok, heads)
    assert share == 0.0


def test_valid_python_so_far_tells_a_cut_construct_from_a_syntax_error():
    head = "def g(x):\n"
    for open_part in ('    """Return the\n    thing\n', "    if x:\n", "    return f(1,\n"):
        assert valid_python(head + open_part, ended=False)  # the budget cut it while open
        assert not valid_python(head + open_part, ended=True)  # ended like that: invalid
    for error in ("    return x)\n", "    self._ None = 3\n", "        a = 1\n    b = 2\n"):
        assert not valid_python(head + error, ended=False)
    assert valid_python(head + "    return x\n") and not valid_python(head, ended=True)
    assert function_ended("    return x\nprint(1)", complete=False)
    assert not function_ended("    return x\n    y = ", complete=False)
    assert function_ended("    return x", complete=True)


def test_completion_checks_judge_each_completion(tok):
    heads = function_heads(TEXTS, 3, seed=1)

    class Budget(StandIn):  # answers without a stop token, as when the budget cuts
        def generate(self, prompts, max_new_tokens, stop_token_ids=()):
            return [encode_data(self.tok, self.answer(p))[:max_new_tokens] for p in prompts]

    cut_docstring = '    """Return the sum of\n    the two numbers and some more words here'
    checks = check_completions(Budget(tok, lambda p: cut_docstring * 3), tok, heads, 40)
    assert all(isinstance(c, CompletionCheck) for c in checks)
    assert [(c.ended, c.parses, c.valid) for c in checks] == [(False, False, True)] * 3
    checks = check_completions(Budget(tok, lambda p: "    return x)\n    y = 1 + 2 + 3 + 4"), tok,
                               heads, 12)
    assert [(c.ended, c.parses, c.valid) for c in checks] == [(False, False, False)] * 3
    checks = check_completions(StandIn(tok, lambda p: "    return x\n\nz = 1"), tok, heads)
    assert [(c.ended, c.parses, c.valid) for c in checks] == [(True, True, True)] * 3
    assert checks[0].function.endswith("    return x\n")
    for budget in (2, 12):  # blank lines only: cut by the budget, or ended
        nothing = check_completions(Budget(tok, lambda p: "\n" * 20), tok, heads, budget)
        assert [(c.parses, c.valid) for c in nothing] == [(False, False)] * 3
