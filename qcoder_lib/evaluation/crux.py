"""Code reasoning in CRUXEval's style (Gu et al. 2024): given a function ``f`` and an input,
predict the output; given ``f`` and an output, predict an input.

The course builds such tasks from real functions: HumanEval's canonical solutions, with the
docstring removed (the task is to read code, not prose) and the entry point renamed ``f``, called
on the literal arguments found in HumanEval's own tests. The ground truth is never written by
hand: each function runs on its inputs in :mod:`qcoder_lib.sandbox`, and only results that are
short Python literals (``repr`` reads back with :func:`ast.literal_eval`) become tasks.
Records in CRUXEval's published format (``code``, ``input``, ``output``, ``id``) give the same
tasks (:func:`crux_tasks`).

Answers are judged the way CRUXEval judges them, by execution: ``assert f(input) == answer``
(output prediction) or ``assert output == f(answer)`` (input prediction) must run. Prompts ask
for the answer directly (the report's CRUXEval numbers use chain of thought, "CoT").
"""

from __future__ import annotations

import ast
import hashlib
import json

from qcoder_lib.evaluation.execute import score_programs
from qcoder_lib.evaluation.results import SampleResult
from qcoder_lib.evaluation.task import Benchmark, Task

CRUX_MODES = ("output", "input")
MAX_LITERAL_CHARS = 80  # longer inputs/outputs make poor single-line answers
_RESULT_MARK = "@@crux@@"


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str):
        self.old = old

    def visit_FunctionDef(self, node):
        if node.name == self.old:
            node.name = "f"
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant
            ) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]  # drop the docstring
        self.generic_visit(node)
        return node

    def visit_Name(self, node):
        if node.id == self.old:
            node.id = "f"
        return node


def as_crux_function(source: str, entry_point: str) -> str:
    """``source`` (a module defining ``entry_point``) with that function renamed ``f``, its
    docstring removed, and comments dropped (re-written by :func:`ast.unparse`)."""
    tree = ast.parse(source)
    if not any(isinstance(n, ast.FunctionDef) and n.name == entry_point for n in tree.body):
        raise ValueError(f"as_crux_function: no top-level function {entry_point!r}")
    return ast.unparse(_Rename(entry_point).visit(tree)) + "\n"


def literal_calls(test_source: str, callee: str = "candidate", limit: int = 3) -> list[str]:
    """Argument lists (source text, e.g. ``"[1, 2], 3"``) of the first ``limit`` distinct calls
    ``callee(...)`` in ``test_source`` whose arguments are all literals."""
    found: list[str] = []
    for node in ast.walk(ast.parse(test_source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee:
            if node.keywords:
                continue
            try:
                for a in node.args:
                    ast.literal_eval(a)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue
            text = ", ".join(ast.unparse(a) for a in node.args)
            if text and text not in found and len(text) <= MAX_LITERAL_CHARS:
                found.append(text)
        if len(found) >= limit:
            break
    return found


def is_short_literal(text: str) -> bool:
    """True when ``text`` is a Python literal of at most :data:`MAX_LITERAL_CHARS` characters
    that reads back to a value with the same ``repr`` (so an answer can be compared)."""
    if len(text) > MAX_LITERAL_CHARS:
        return False
    try:
        return repr(ast.literal_eval(text)) == text
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def compute_outputs(functions: list[tuple[str, list[str]]], workers: int | None = None
                    ) -> list[list[str | None]]:
    """Run each ``(code, [input, ...])`` in the sandbox and return ``repr(f(*input))`` per
    input (None where the call raised or the run failed)."""
    from qcoder_lib.sandbox import run_many

    programs = []
    for code, inputs in functions:
        calls = "\n".join(
            f"try:\n    print({_RESULT_MARK!r}, {i}, repr(f({inp})))\n"
            f"except Exception:\n    pass" for i, inp in enumerate(inputs))
        programs.append(code + "\n" + calls + "\n")
    out = []
    for (_, inputs), res in zip(functions, run_many(programs, workers=workers, timeout_s=10)):
        got: list[str | None] = [None] * len(inputs)
        for line in res.stdout.splitlines():
            if line.startswith(_RESULT_MARK + " "):
                _, idx, value = line.split(" ", 2)
                got[int(idx)] = value
        out.append(got)
    return out


def humaneval_crux_records(problems=None, inputs_per_function: int = 1,
                           workers: int | None = None) -> list[dict]:
    """CRUXEval-format records (``id``, ``code``, ``input``, ``output``) built from HumanEval's
    canonical solutions and their tests' literal inputs; outputs computed in the sandbox and
    cached under ``artifacts/evaluation/``."""
    from qcoder_lib.evaluation.humaneval import humaneval_problems
    from qcoder_lib.io import artifacts_dir, atomic_write_text

    problems = list(problems if problems is not None else humaneval_problems())
    funcs, ids = [], []
    for p in problems:
        try:
            code = as_crux_function(p["prompt"] + p["canonical_solution"], p["entry_point"])
        except (SyntaxError, ValueError):
            continue
        inputs = literal_calls(p["test"], limit=inputs_per_function)
        if inputs:
            funcs.append((code, inputs))
            ids.append(p["task_id"])
    key = hashlib.sha256(json.dumps(funcs).encode()).hexdigest()[:16]
    cache = artifacts_dir() / "evaluation" / f"crux-{key}.json"
    if cache.is_file():
        outputs = json.loads(cache.read_text())
    else:
        outputs = compute_outputs(funcs, workers=workers)
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps(outputs))
    records = []
    for tid, (code, inputs), outs in zip(ids, funcs, outputs):
        for j, (inp, out) in enumerate(zip(inputs, outs)):
            if out is not None and is_short_literal(out):
                records.append({"id": f"Crux/{tid}/{j}", "code": code, "input": inp,
                                "output": out})
    return records


def crux_tasks(records: list[dict], mode: str) -> list[Task]:
    """Tasks of one ``mode`` (``"output"`` or ``"input"`` prediction) from CRUXEval-format
    records. Output: the prompt ends in ``assert f(input) == ``; input: ``assert output == f(``
    (the answer then closes the call)."""
    if mode not in CRUX_MODES:
        raise ValueError(f"crux mode {mode!r}: choose one of {CRUX_MODES}")
    tasks = []
    for r in records:
        code = r["code"].rstrip("\n") + "\n"
        if mode == "output":
            prompt, ref = f"{code}assert f({r['input']}) == ", r["output"]
        else:
            prompt, ref = f"{code}assert {r['output']} == f(", f"{r['input']})"
        tasks.append(Task(f"{r['id']}/{mode}", prompt, ref, check={"mode": mode}))
    return tasks


def score_crux(tasks: list[Task], completions: list[list[str]], workers: int | None = None
               ) -> list[SampleResult]:
    """Run the function, then the prompt's last line completed by the answer (one ``assert``,
    as the test) in the sandbox: the answer is right when the assertion holds. Only the
    answer's first line counts."""
    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} tasks but {len(completions)} completion lists")
    items = []
    for t, cs in zip(tasks, completions):
        for c in cs:
            answer = c.strip().split("\n", 1)[0]
            head, assertion = t.prompt.rsplit("\n", 1)  # the function | "assert ... == "
            items.append((t.task_id, c, {"solution": head + "\n",
                                         "tests": assertion + answer + "\n"}))
    results = score_programs(items, workers=workers)
    for r in results:
        if r.outcome == "syntax_error" and not r.completion.strip():
            r.outcome, r.detail = "no_answer", "empty answer"
    return results


def crux_benchmark(mode: str = "output", limit: int | None = None,
                   records: list[dict] | None = None) -> Benchmark:
    """CRUXEval-style output or input prediction as a :class:`Benchmark` (default records:
    :func:`humaneval_crux_records`)."""
    if records is None:
        records = humaneval_crux_records(
            None if limit is None else _first_problems(limit + limit // 4 + 2))
    return Benchmark(f"crux-{mode}", crux_tasks(records, mode), ("\n",), score_crux,
                     max_new_tokens=48,
                     description=f"CRUXEval-style {mode} prediction on real functions").subset(limit)


def _first_problems(n: int):
    from qcoder_lib.evaluation.humaneval import humaneval_problems

    return humaneval_problems()[:n]
