"""What a freshly pretrained model can do, measured on held-out code.

- :func:`infill_tasks` + :func:`infill_exact_match`: single-line infilling (the FIM paper's and
  HumanEval-SingleLineInfilling's task): hide one line of a held-out file, give the model the
  lines around it as a PSM prompt, and count greedy answers equal to the hidden line.
- :func:`function_heads` + :func:`check_completions` / :func:`completion_parse_share`: greedy
  completions of held-out Python function heads (``def ...:`` lines), cut where the function
  ends: the share that ``ast.parse`` accepts as it stands, and the share that is valid Python so
  far (:func:`valid_python`): a coarse "does it write valid Python" probe. A completion that the
  token budget cut inside a docstring, a bracket or a block cannot parse yet, and says nothing
  about the model; one with a syntax error does.
"""

from __future__ import annotations

import ast
import codeop
import random
import warnings
from dataclasses import dataclass


@dataclass
class InfillTask:
    """One hidden line."""

    prefix: str  # the lines before it (ends with a newline)
    middle: str  # the hidden line, without its newline
    suffix: str  # a newline, then the lines after it


def infill_tasks(texts, n: int, seed: int = 0, before: int = 8, after: int = 4) -> list[InfillTask]:
    """Up to ``n`` tasks, one per text at most, drawn with ``seed``: a line with at least 4
    non-blank characters (not the first), ``before`` lines of prefix and ``after`` of suffix."""
    rng = random.Random(seed)
    texts = list(texts)
    rng.shuffle(texts)
    tasks = []
    for text in texts:
        lines = text.split("\n")
        choices = [k for k in range(1, len(lines) - 1) if len(lines[k].strip()) >= 4]
        if not choices:
            continue
        k = rng.choice(choices)
        prefix = "\n".join(lines[max(0, k - before):k]) + "\n"
        suffix = "\n" + "\n".join(lines[k + 1:k + 1 + after])
        tasks.append(InfillTask(prefix, lines[k], suffix))
        if len(tasks) == n:
            break
    return tasks


def _stop_ids(tokenizer) -> list[int]:
    from qcoder_lib.fim import FIM_STOP_TOKENS
    from qcoder_lib.tokenizer import special_id

    return [special_id(tokenizer, t) for t in FIM_STOP_TOKENS]


def infill_exact_match(model, tokenizer, tasks: list[InfillTask], max_new_tokens: int = 32,
                       batch_size: int = 16, prompt: str = "psm") -> tuple[float, list[str]]:
    """``(share of exact matches, answers)``: greedy infilling of each task; the answer is cut
    at its first newline and compared with the hidden line, both stripped. ``prompt``: "psm"
    (prefix and suffix, Qwen's FIM prompt) or "prefix" (the prefix alone: all a left-to-right
    model can use)."""
    from qcoder_lib.fim import fim_prompt_ids
    from qcoder_lib.tokenizer import decode, encode_data

    if prompt not in ("psm", "prefix"):
        raise ValueError(f"infill_exact_match: prompt={prompt!r} is not 'psm' or 'prefix'")
    model.eval()
    answers = []
    for s in range(0, len(tasks), batch_size):
        chunk = tasks[s:s + batch_size]
        prompts = [fim_prompt_ids(tokenizer, t.prefix, t.suffix) if prompt == "psm"
                   else encode_data(tokenizer, t.prefix) for t in chunk]
        outs = model.generate(prompts, max_new_tokens, stop_token_ids=_stop_ids(tokenizer))
        answers += [decode(tokenizer, o).split("\n")[0] for o in outs]
    hits = sum(a.strip() == t.middle.strip() for a, t in zip(answers, tasks))
    return hits / max(len(tasks), 1), answers


def function_heads(texts, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` prompts ``"def name(args):\\n"`` (top-level defs of the texts, one per text)."""
    rng = random.Random(seed)
    heads = []
    for text in texts:
        defs = [ln for ln in text.split("\n") if ln.startswith("def ") and ln.rstrip().endswith(":")]
        if defs:
            heads.append(rng.choice(defs).rstrip() + "\n")
    rng.shuffle(heads)
    return heads[:n]


def cut_function(head: str, completion: str, complete: bool = False) -> str:
    """``head`` + the completion's body: its lines up to the first non-indented, non-blank line
    (where the function ends); the last line is dropped unless ``complete`` (generation ended
    on a stop token, not on the token budget)."""
    lines = completion.split("\n")
    body = []
    for i, ln in enumerate(lines):
        if ln.strip() and not ln[:1].isspace():
            break
        if i == len(lines) - 1 and ln.strip() and not complete:  # cut by the budget
            break
        body.append(ln)
    return head + "\n".join(body).rstrip() + "\n"


def parses(code: str) -> bool:
    """Does ``ast.parse`` accept ``code``?"""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def valid_python(code: str, ended: bool = True) -> bool:
    """Is ``code`` valid Python? A function that ended (a dedent or a stop token) must parse
    (:func:`parses`); one the token budget cut (``ended=False``) must be a valid *prefix*: no
    syntax error so far, though a docstring, bracket or block may still be open (what the
    interactive interpreter answers with its ``...`` prompt; :func:`codeop.compile_command`)."""
    if parses(code):
        return True
    if ended:
        return False
    with warnings.catch_warnings():  # e.g. SyntaxWarning for an invalid escape in a string
        warnings.simplefilter("ignore")
        try:
            return codeop.compile_command(code, "<completion>", "exec") is None
        except (SyntaxError, ValueError, OverflowError):
            return False


@dataclass
class CompletionCheck:
    """One greedy completion of a function head, judged."""

    function: str  # the head and the body, cut where the function ends (see cut_function)
    ended: bool  # the function ended within the token budget (a dedent or a stop token)
    parses: bool  # ast.parse accepts the function as it stands
    valid: bool  # wrote a body that is valid Python so far (valid_python): parses, or cut
    # by the budget while something is open


def function_ended(completion: str, complete: bool) -> bool:
    """Did the function end inside ``completion``: generation stopped on a stop token
    (``complete``) or a later non-indented, non-blank line starts the next top-level thing?"""
    return complete or any(ln.strip() and not ln[:1].isspace() for ln in completion.split("\n"))


def check_completions(model, tokenizer, heads: list[str], max_new_tokens: int = 128,
                      batch_size: int = 16) -> list[CompletionCheck]:
    """Greedy completions of ``heads`` (``max_new_tokens`` each), cut and judged."""
    from qcoder_lib.tokenizer import decode, encode_data

    model.eval()
    checks = []
    for s in range(0, len(heads), batch_size):
        chunk = heads[s:s + batch_size]
        outs = model.generate([encode_data(tokenizer, h) for h in chunk], max_new_tokens,
                              stop_token_ids=_stop_ids(tokenizer))
        for h, o in zip(chunk, outs):
            text, complete = decode(tokenizer, o), len(o) < max_new_tokens
            function = cut_function(h, text, complete)
            ended = function_ended(text, complete)
            wrote = bool(function[len(h):].strip())  # a head alone is no evidence either way
            checks.append(CompletionCheck(function, ended, parses(function),
                                          wrote and valid_python(function, ended)))
    return checks


def completion_parse_share(model, tokenizer, heads: list[str], max_new_tokens: int = 64,
                           batch_size: int = 16) -> tuple[float, list[str]]:
    """``(share of heads whose greedy completion parses as it stands, the cut functions)``
    (:func:`check_completions` has the valid-so-far share too)."""
    checks = check_completions(model, tokenizer, heads, max_new_tokens, batch_size)
    return sum(c.parses for c in checks) / max(len(checks), 1), [c.function for c in checks]
