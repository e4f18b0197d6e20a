"""Synthetic code, kept only if an executor runs it and its asserts hold.

Qwen2.5-Coder generates code with a model and keeps only what an executor validates. Here the
generator is a set of templates (small functions with a docstring), filled with random names and
constants; each program carries asserts whose expected values come from an independent
reference implementation in the generator. To show the executor doing its job, a share of the
programs get a planted bug, the kind a model writes (wrong operator, off-by-one, missing colon,
endless loop, undefined name, runaway memory). Every program runs in :mod:`qcoder_lib.sandbox`
with :func:`~qcoder_lib.sandbox.check_program`: the function as the solution, its asserts as the
tests. A program is kept only when the token-checked harness confirms that the tests ran to
completion and that at least one assert executed (status ``passed``): a ``sys.exit(0)`` or
``os._exit(0)`` before the asserts, or asserts behind an ``if __name__ == "__main__":`` guard,
get it dropped (``failed`` / ``no_tests``). The report counts rejections by reason (sandbox
status and exception type) and by planted bug, including bugs the tests did not catch.
"""

from __future__ import annotations

import ast
import itertools
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from qcoder_lib.data.sources import Document, SourceStats


@dataclass
class Program:
    """One generated program."""

    template: str  # template name
    code: str  # the function (or, with tests="", function and top-level asserts together)
    bug: str = ""  # planted bug kind ("" when none)
    tests: str = ""  # the asserts, run after the code; "" -> split from code (split_checks)

    @property
    def text(self) -> str:
        """The document text: the code, then the tests."""
        return f"{self.code}\n\n{self.tests}" if self.tests else self.code


def split_checks(code: str) -> tuple[str, str]:
    """``(solution, tests)`` of a program written as one file: its top-level ``assert``
    statements are the tests, everything else (including asserts inside functions or behind an
    ``if __name__ == "__main__":`` guard, which the harness runs as module ``solution`` and so
    never executes) is the solution. A program that does not parse is all solution (it then
    fails with its ``SyntaxError``)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code, ""
    lines = code.splitlines(keepends=True)
    sol, tests = [], []
    prev = 0
    for node in tree.body:
        start, end = node.lineno - 1, node.end_lineno
        sol.extend(lines[prev:start])  # comments and blank lines between statements
        (tests if isinstance(node, ast.Assert) else sol).extend(lines[start:end])
        prev = end
    sol.extend(lines[prev:])
    return "".join(sol), "".join(tests)


def _words(rng: random.Random, k: int) -> list[str]:
    pool = [
        "apple",
        "river",
        "stone",
        "cloud",
        "tiger",
        "lemon",
        "piano",
        "queen",
        "zebra",
        "ocean",
        "maple",
        "robot",
        "cedar",
        "delta",
        "ember",
        "frost",
        "grape",
        "honey",
    ]
    return [rng.choice(pool) for _ in range(k)]


def _ints(rng: random.Random, k: int, lo: int = -50, hi: int = 50) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(k)]


# Each template: (name, function source with {fn}, reference implementation, input maker).
Template = tuple[str, str, Callable, Callable[[random.Random], tuple]]

TEMPLATES: list[Template] = [
    (
        "sum_multiples",
        'def {fn}(n, k):\n    """Sum of the numbers below n that are multiples of k."""\n'
        "    total = 0\n    for i in range(n):\n        if i % k == 0:\n            total = total + i\n"
        "    return total\n",
        lambda n, k: sum(i for i in range(n) if i % k == 0),
        lambda r: (r.randint(1, 200), r.randint(1, 9)),
    ),
    (
        "count_vowels",
        'def {fn}(text):\n    """How many vowels (a, e, i, o, u) the text holds, ignoring case."""\n'
        '    count = 0\n    for ch in text.lower():\n        if ch in "aeiou":\n'
        "            count = count + 1\n    return count\n",
        lambda t: sum(c in "aeiou" for c in t.lower()),
        lambda r: (" ".join(_words(r, r.randint(1, 6))).title(),),
    ),
    (
        "running_max",
        'def {fn}(values):\n    """The running maximum of a list: item i is max(values[:i + 1])."""\n'
        "    out = []\n    best = None\n    for v in values:\n        if best is None or v > best:\n"
        "            best = v\n        out.append(best)\n    return out\n",
        lambda xs: [max(xs[: i + 1]) for i in range(len(xs))],
        lambda r: (_ints(r, r.randint(1, 8)),),
    ),
    (
        "gcd",
        'def {fn}(a, b):\n    """Greatest common divisor of two non-negative integers (Euclid)."""\n'
        "    while b != 0:\n        a, b = b, a % b\n    return a\n",
        lambda a, b: __import__("math").gcd(a, b),
        lambda r: (r.randint(0, 500), r.randint(1, 500)),
    ),
    (
        "fizzbuzz",
        'def {fn}(n):\n    """FizzBuzz from 1 to n as a list of strings."""\n    out = []\n'
        '    for i in range(1, n + 1):\n        if i % 15 == 0:\n            out.append("FizzBuzz")\n'
        '        elif i % 3 == 0:\n            out.append("Fizz")\n        elif i % 5 == 0:\n'
        '            out.append("Buzz")\n        else:\n            out.append(str(i))\n    return out\n',
        lambda n: [
            "FizzBuzz"
            if i % 15 == 0
            else "Fizz"
            if i % 3 == 0
            else "Buzz"
            if i % 5 == 0
            else str(i)
            for i in range(1, n + 1)
        ],
        lambda r: (r.randint(1, 30),),
    ),
    (
        "is_palindrome",
        'def {fn}(text):\n    """True when text reads the same backwards, ignoring case and spaces."""\n'
        '    cleaned = [c.lower() for c in text if c != " "]\n    return cleaned == cleaned[::-1]\n',
        lambda t: [c.lower() for c in t if c != " "] == [c.lower() for c in t if c != " "][::-1],
        lambda r: (
            r.choice(
                [
                    "Never odd or even",
                    "step on no pets",
                    "hello",
                    "abcba",
                    "ab ba",
                    "python",
                    "Was it a car",
                    "noon",
                ]
            ),
        ),
    ),
    (
        "binary_search",
        'def {fn}(items, target):\n    """Index of target in the sorted list items, or -1."""\n'
        "    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n"
        "        if items[mid] == target:\n            return mid\n        if items[mid] < target:\n"
        "            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
        lambda xs, t: xs.index(t) if t in xs else -1,
        lambda r: (lambda xs: (xs, r.choice(xs + [1000])))(sorted(set(_ints(r, r.randint(1, 12))))),
    ),
    (
        "word_lengths",
        'def {fn}(sentence):\n    """Map each distinct word of the sentence to its length."""\n'
        "    result = {{}}\n    for word in sentence.split():\n        result[word] = len(word)\n"
        "    return result\n",
        lambda s: {w: len(w) for w in s.split()},
        lambda r: (" ".join(_words(r, r.randint(1, 6))),),
    ),
    (
        "caesar",
        'def {fn}(text, shift):\n    """Shift each lower-case letter of text by shift places (Caesar)."""\n'
        '    out = []\n    for ch in text:\n        if "a" <= ch <= "z":\n'
        "            out.append(chr((ord(ch) - 97 + shift) % 26 + 97))\n        else:\n"
        '            out.append(ch)\n    return "".join(out)\n',
        lambda t, s: "".join(chr((ord(c) - 97 + s) % 26 + 97) if "a" <= c <= "z" else c for c in t),
        lambda r: (" ".join(_words(r, 2)), r.randint(1, 25)),
    ),
    (
        "transpose",
        'def {fn}(matrix):\n    """The transpose of a rectangular matrix given as a list of rows."""\n'
        "    rows = len(matrix)\n    cols = len(matrix[0])\n"
        "    return [[matrix[i][j] for i in range(rows)] for j in range(cols)]\n",
        lambda m: [list(c) for c in zip(*m)],
        lambda r: (lambda a, b: ([_ints(r, b, 0, 9) for _ in range(a)],))(
            r.randint(1, 4), r.randint(1, 4)
        ),
    ),
    (
        "fibonacci",
        'def {fn}(n):\n    """The n-th Fibonacci number, with fib(0) = 0 and fib(1) = 1."""\n'
        "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        lambda n: (lambda f: f(f, n))(lambda f, k: k if k < 2 else f(f, k - 1) + f(f, k - 2)),
        lambda r: (r.randint(0, 20),),
    ),
    (
        "second_largest",
        'def {fn}(values):\n    """The second largest distinct value of a list with at least two."""\n'
        "    distinct = sorted(set(values))\n    return distinct[-2]\n",
        lambda xs: sorted(set(xs))[-2],
        lambda r: (lambda xs: (xs + [max(xs) + 1],))(_ints(r, r.randint(1, 7))),
    ),
]

NAME_PARTS = ["compute", "get", "find", "calc", "make", "solve"]
BUGS = [
    "wrong_operator",
    "off_by_one",
    "missing_colon",
    "endless_loop",
    "undefined_name",
    "memory_hog",
]


def plant_bug(code: str, kind: str, fn: str) -> str:
    """Return ``code`` with a bug of ``kind`` planted in function ``fn`` (see :data:`BUGS`)."""
    lines = code.split("\n")
    body_at = next(i for i, ln in enumerate(lines) if ln.startswith("    ") and '"""' in ln) + 1
    if kind == "missing_colon":
        return code.replace(f"def {fn}(", f"def {fn}(", 1).replace("):\n", ")\n", 1)
    if kind == "endless_loop":
        lines.insert(body_at, "    while True:\n        pass")
        return "\n".join(lines)
    if kind == "memory_hog":
        lines.insert(body_at, "    _cache = [0] * (10 ** 10)")
        return "\n".join(lines)
    if kind == "undefined_name":
        return code.replace("    return ", "    return result_value or ", 1)
    if kind == "off_by_one" and "range(" in code:
        return re.sub(r"range\(([^()]*(?:\([^()]*\))?[^()]*)\)", r"range(\1 - 1)", code, count=1)
    for a, b in (
        (" + ", " - "),
        (" < ", " <= "),
        (" > ", " >= "),
        (" == ", " != "),
        ("[-2]", "[-1]"),
        (" // 2", " // 3"),
        ("[::-1]", "[::1]"),
        ("% 26", "% 25"),
    ):
        if a in code:
            return code.replace(a, b, 1)
    return code.replace("return ", "return None and ", 1)


def generate_programs(
    n: int, seed: int = 0, *, bug_rate: float = 0.25, tests_per_program: int = 3
) -> list[Program]:
    """``n`` programs from :data:`TEMPLATES` (deterministic for ``seed``); a share ``bug_rate``
    of them get a planted bug from :data:`BUGS`."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, src, ref, make = TEMPLATES[rng.randrange(len(TEMPLATES))]
        fn = f"{rng.choice(NAME_PARTS)}_{name}" if rng.random() < 0.5 else name
        code = src.format(fn=fn)
        asserts = []
        for _ in range(tests_per_program):
            args = make(rng)
            asserts.append(f"assert {fn}({', '.join(map(repr, args))}) == {ref(*args)!r}")
        bug = rng.choice(BUGS) if rng.random() < bug_rate else ""
        if bug:
            code = plant_bug(code, bug, fn)
        out.append(Program(name, code, bug, "\n".join(asserts) + "\n"))
    return out


@dataclass
class SyntheticReport:
    """What the executor did with the generated programs."""

    generated: int = 0  # programs run
    kept: int = 0  # programs that passed
    rejected: Counter = field(default_factory=Counter)  # "status: ExceptionType" -> count
    by_bug: Counter = field(default_factory=Counter)  # (planted bug, "kept"/"rejected") -> n
    examples: dict = field(default_factory=dict)  # rejection reason -> one program's code

    def rows(self) -> list[dict]:
        """Rejections by reason, most frequent first."""
        return [{"reason": k, "count": v} for k, v in self.rejected.most_common()]


def rejection_reason(result) -> str:
    """``status`` plus the exception type from the last stderr line (``failed: AssertionError``);
    ``failed: exited before the tests finished`` for a clean exit without the harness's proof
    (``os._exit(0)``); ``no_tests`` when the tests completed but no assert ran."""
    if result.status != "failed":
        return result.status
    last = (result.stderr.strip().splitlines() or [""])[-1]
    m = re.match(r"([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))\b", last)
    if m:
        return f"failed: {m.group(1)}"
    if result.exit_code == 0:
        return "failed: exited before the tests finished"
    return f"failed: exit code {result.exit_code}"


def synthetic_documents(
    n: int,
    seed: int = 0,
    *,
    bug_rate: float = 0.25,
    batch: int = 64,
    timeout_s: float = 1.0,
    memory_mb: int = 256,
    workers: int | None = None,
    report: SyntheticReport | None = None,
    stats: SourceStats | None = None,
    programs: Iterable[Program] | None = None,
) -> Iterator[Document]:
    """Generate ``n`` programs, check each in :mod:`qcoder_lib.sandbox` (code, then its asserts,
    with :func:`~qcoder_lib.sandbox.check_program`), and yield those whose asserts the harness
    saw execute and hold as documents (``source="synthetic"``); rejections are counted in
    ``report`` by reason (``no_tests`` when no assert ran). ``programs`` replaces the templates
    with your own (e.g. sampled from a trained model: :class:`Program` objects with code and
    tests, or code whose top-level asserts are the tests, see :func:`split_checks`; at most
    ``n`` are run)."""
    from qcoder_lib.sandbox import run_many

    report = report if report is not None else SyntheticReport()
    stats = stats if stats is not None else SourceStats()
    if programs is not None:
        progs = list(itertools.islice(programs, n))
    else:
        progs = generate_programs(n, seed, bug_rate=bug_rate)
    for s in range(0, len(progs), batch):
        chunk = progs[s : s + batch]
        tasks = []
        for p in chunk:
            sol, tests = (p.code, p.tests) if p.tests else split_checks(p.code)
            tasks.append({"solution": sol, "tests": tests})
        results = run_many(tasks, workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)
        for k, (p, r) in enumerate(zip(chunk, results)):
            report.generated += 1
            stats.seen += 1
            if r.passed:
                report.kept += 1
                report.by_bug[(p.bug or "none", "kept")] += 1
                yield stats.keep(
                    Document(
                        p.text,
                        "synthetic",
                        f"{p.template}/{s + k:06d}.py",
                        "synthetic-templates",
                        "python",
                        {"template": p.template, "planted_bug": p.bug},
                    )
                )
            else:
                why = rejection_reason(r)
                report.rejected[why] += 1
                report.by_bug[(p.bug or "none", "rejected")] += 1
                report.examples.setdefault(why, p.text)
                stats.skip(why, f"{p.template}/{s + k:06d}.py")
