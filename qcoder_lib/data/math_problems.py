"""Math documents: arithmetic and word problems whose answers are verified by execution.

Each generator draws numbers, writes the problem in words, a short worked solution and a small
Python program that computes the answer. The answer is computed twice: by the generator with
exact arithmetic (:class:`fractions.Fraction`) and by running the program; a problem is kept
only when both agree, and a disagreement is counted (``answer_mismatch``), never kept.

The programs are the course's own generated code, so they run in-process (fast: thousands per
second); pass ``verify="sandbox"`` to run them through :mod:`qcoder_lib.sandbox` instead.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from qcoder_lib.data.sources import Document, SourceStats

NAMES = [
    "Ada",
    "Ben",
    "Chen",
    "Dara",
    "Emil",
    "Fatima",
    "Goran",
    "Hana",
    "Ines",
    "Jun",
    "Kofi",
    "Lena",
    "Mateo",
    "Noor",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tariq",
    "Uma",
]
ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cards", "shells", "stamps"]


@dataclass
class MathProblem:
    """One generated problem."""

    kind: str  # generator name, e.g. "word_buy_give"
    question: str  # the problem in words
    reasoning: str  # a short worked solution in words
    program: str  # Python that prints the answer
    answer: str  # the answer computed by the generator (exact), as printed


def _fmt(x: Fraction) -> str:
    """An exact answer as the program prints it: an integer, or a fraction ``p/q``."""
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _arithmetic(rng: random.Random) -> MathProblem:
    ops = ["+", "-", "*"]
    a, b, c, d = (rng.randint(2, 99) for _ in range(4))
    o1, o2, o3 = (rng.choice(ops) for _ in range(3))
    expr = f"({a} {o1} {b}) {o2} {c} {o3} {d}"

    # exact evaluation by hand, respecting precedence: t = (a o1 b); then t o2 c o3 d
    def ap(x, o, y):
        return x + y if o == "+" else x - y if o == "-" else x * y

    t = ap(Fraction(a), o1, Fraction(b))
    if o3 == "*" and o2 != "*":
        val = ap(t, o2, Fraction(c) * d)
    else:
        val = ap(ap(t, o2, Fraction(c)), o3, Fraction(d))
    return MathProblem(
        "arithmetic",
        f"Compute {expr}.",
        f"First the parentheses: {a} {o1} {b} = {_fmt(t)}. "
        "Then multiplication before addition and subtraction.",
        f"print({expr})",
        _fmt(val),
    )


def _word_buy_give(rng: random.Random) -> MathProblem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(3, 60), rng.randint(2, 9), rng.randint(2, 12)
    d = rng.randint(1, a + b * c - 1)
    ans = Fraction(a + b * c - d)
    return MathProblem(
        "word_buy_give",
        f"{name} has {a} {item}. {name} buys {b} packs with {c} {item} in each pack, "
        f"then gives {d} {item} to a friend. How many {item} does {name} have now?",
        f"The packs hold {b} * {c} = {b * c} {item}, so {name} has {a} + {b * c} = {a + b * c}; "
        f"after giving away {d}, {a + b * c} - {d} = {_fmt(ans)}.",
        f"start = {a}\npacks = {b}\nper_pack = {c}\ngiven = {d}\n"
        "print(start + packs * per_pack - given)",
        _fmt(ans),
    )


def _discount(rng: random.Random) -> MathProblem:
    price, pct, qty = (
        rng.randint(5, 400),
        rng.choice([5, 10, 15, 20, 25, 30, 40, 50]),
        rng.randint(1, 6),
    )
    total = Fraction(price * qty) * (100 - pct) / 100
    return MathProblem(
        "discount",
        f"A shop sells a lamp for {price} euros. During a sale everything is {pct}% off. "
        f"What do {qty} lamps cost in the sale? Give the exact amount.",
        f"Without the sale {qty} lamps cost {price * qty} euros; the sale keeps "
        f"{100 - pct}% of that: {price * qty} * {100 - pct} / 100 = {_fmt(total)}.",
        "from fractions import Fraction\n"
        f"total = Fraction({price} * {qty}) * (100 - {pct}) / 100\n"
        "print(total.numerator if total.denominator == 1 else "
        "f'{total.numerator}/{total.denominator}')",
        _fmt(total),
    )


def _linear_equation(rng: random.Random) -> MathProblem:
    x = rng.randint(-30, 30)
    a = rng.choice([i for i in range(-12, 13) if i not in (0, 1)])
    b = rng.randint(-50, 50)
    c = a * x + b
    return MathProblem(
        "linear_equation",
        f"Solve for x: {a}x + ({b}) = {c}.",
        f"Subtract {b} from both sides: {a}x = {c - b}. Divide by {a}: x = {x}.",
        f"a, b, c = {a}, {b}, {c}\nx = (c - b) // a\nassert a * x + b == c\nprint(x)",
        str(x),
    )


def _gcd_lcm(rng: random.Random) -> MathProblem:
    g = rng.randint(2, 15)
    m, n = rng.randint(2, 20) * g, rng.randint(2, 20) * g
    import math as _m

    lcm = m * n // _m.gcd(m, n)
    return MathProblem(
        "lcm",
        f"Two buses leave the station together, one every {m} minutes and one every "
        f"{n} minutes. After how many minutes do they next leave together?",
        f"The answer is the least common multiple: lcm({m}, {n}) = {m} * {n} / gcd({m}, {n}) "
        f"= {lcm}.",
        f"import math\nprint({m} * {n} // math.gcd({m}, {n}))",
        str(lcm),
    )


def _series(rng: random.Random) -> MathProblem:
    first, step, count = rng.randint(1, 20), rng.randint(1, 9), rng.randint(5, 60)
    last = first + (count - 1) * step
    total = count * (first + last) // 2
    return MathProblem(
        "arithmetic_series",
        f"What is the sum {first} + {first + step} + {first + 2 * step} + ... + {last}?",
        f"There are {count} terms; the sum is count * (first + last) / 2 = "
        f"{count} * ({first} + {last}) / 2 = {total}.",
        f"print(sum(range({first}, {last + 1}, {step})))",
        str(total),
    )


def _speed(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    speed, hours, minutes = (
        rng.randint(3, 120),
        rng.randint(0, 5),
        rng.choice([0, 15, 20, 30, 40, 45]),
    )
    if hours == 0 and minutes == 0:
        hours = 1
    dist = Fraction(speed) * (hours + Fraction(minutes, 60))
    return MathProblem(
        "speed_distance",
        f"{name} travels at {speed} km/h for {hours} hours and {minutes} minutes. "
        "How many kilometres is that? Give the exact value.",
        f"Time in hours: {hours} + {minutes}/60; distance = speed * time = {_fmt(dist)} km.",
        "from fractions import Fraction\n"
        f"d = {speed} * (Fraction({hours}) + Fraction({minutes}, 60))\n"
        "print(d.numerator if d.denominator == 1 else f'{d.numerator}/{d.denominator}')",
        _fmt(dist),
    )


def _rectangle(rng: random.Random) -> MathProblem:
    w, h = rng.randint(2, 80), rng.randint(2, 80)
    return MathProblem(
        "rectangle",
        f"A garden is {w} m by {h} m. A fence goes all around it and the garden is "
        "covered with grass. What is the length of the fence plus the area of grass, as a number?",
        f"Perimeter 2 * ({w} + {h}) = {2 * (w + h)}; area {w} * {h} = {w * h}; "
        f"sum {2 * (w + h) + w * h}.",
        f"w, h = {w}, {h}\nprint(2 * (w + h) + w * h)",
        str(2 * (w + h) + w * h),
    )


GENERATORS: dict[str, Callable[[random.Random], MathProblem]] = {
    "arithmetic": _arithmetic,
    "word_buy_give": _word_buy_give,
    "discount": _discount,
    "linear_equation": _linear_equation,
    "lcm": _gcd_lcm,
    "arithmetic_series": _series,
    "speed_distance": _speed,
    "rectangle": _rectangle,
}


def generate_problems(n: int, seed: int = 0) -> list[MathProblem]:
    """``n`` problems drawn from :data:`GENERATORS`, deterministic for ``seed``."""
    rng = random.Random(seed)
    kinds = sorted(GENERATORS)
    return [GENERATORS[rng.choice(kinds)](rng) for _ in range(n)]


def run_in_process(program: str) -> tuple[str, str]:
    """Run one of the course's own generated programs; returns ``(stdout, error)``."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(program, "<math>", "exec"), {"__name__": "__math__"})  # noqa: S102
    except Exception as e:  # noqa: BLE001 - any failure is a rejection reason
        return out.getvalue(), f"{type(e).__name__}: {e}"
    return out.getvalue(), ""


def problem_text(p: MathProblem) -> str:
    """The document text: problem, worked solution, the program and the answer."""
    return (
        f"Problem: {p.question}\n\nSolution: {p.reasoning}\n\n"
        f"```python\n{p.program}\n```\n\nAnswer: {p.answer}\n"
    )


def verify_problems(
    problems: list[MathProblem], *, verify: str = "inprocess", stats: SourceStats | None = None
) -> list[tuple[MathProblem, bool, str]]:
    """Run each problem's program and compare what it prints with the generator's answer.
    Returns ``(problem, ok, why)``; ``verify`` is ``"inprocess"`` or ``"sandbox"``."""
    results = []
    if verify == "sandbox":
        from qcoder_lib.sandbox import run_many

        runs = run_many([p.program for p in problems], timeout_s=5.0)
        outs = [(r.stdout if r.passed else "", "" if r.passed else r.status) for r in runs]
    elif verify == "inprocess":
        outs = [run_in_process(p.program) for p in problems]
    else:
        raise ValueError(f"verify={verify!r} must be 'inprocess' or 'sandbox'")
    for p, (out, err) in zip(problems, outs):
        if err:
            results.append((p, False, "program_error"))
        elif out.strip() != p.answer:
            results.append((p, False, "answer_mismatch"))
        else:
            results.append((p, True, ""))
    return results


def math_documents(
    n: int,
    seed: int = 0,
    *,
    verify: str = "inprocess",
    batch: int = 256,
    stats: SourceStats | None = None,
) -> Iterator[Document]:
    """Up to ``n`` verified math documents (``source="math"``), deterministic for ``seed``;
    problems whose program fails or disagrees with the generator are counted, not kept."""
    stats = stats if stats is not None else SourceStats()
    made = 0
    rng_seed = seed
    while made < n:
        probs = generate_problems(min(batch, n - made), seed=rng_seed)
        rng_seed += 1_000_003
        for p, ok, why in verify_problems(probs, verify=verify):
            stats.seen += 1
            if not ok:
                stats.skip(why, p.kind)
                continue
            made += 1
            yield stats.keep(
                Document(
                    problem_text(p),
                    "math",
                    f"{p.kind}/{made:07d}",
                    "generated-math",
                    "english",
                    {"kind": p.kind, "answer": p.answer},
                )
            )
            if made >= n:
                return
