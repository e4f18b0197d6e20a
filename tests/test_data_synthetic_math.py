"""Synthetic programs judged by the real sandbox, and math answers verified by execution."""

import re

from qcoder_lib.data.math_problems import (
    GENERATORS,
    MathProblem,
    generate_problems,
    math_documents,
    problem_text,
    run_in_process,
    verify_problems,
)
from qcoder_lib.data.sources import SourceStats
from qcoder_lib.data.synthetic import (
    BUGS,
    TEMPLATES,
    Program,
    SyntheticReport,
    generate_programs,
    plant_bug,
    rejection_reason,
    split_checks,
    synthetic_documents,
)
from qcoder_lib.sandbox import run_code, run_many


def test_programs_deterministic_and_every_bug_changes_the_code():
    a, b = generate_programs(20, seed=5), generate_programs(20, seed=5)
    assert [p.code for p in a] == [p.code for p in b]
    name, src, _, _ = TEMPLATES[0]
    code = src.format(fn=name)
    for bug in BUGS:
        assert plant_bug(code, bug, name) != code, bug


def test_executor_keeps_only_passing_programs():
    rep, stats = SyntheticReport(), SourceStats()
    docs = list(
        synthetic_documents(14, seed=2, bug_rate=0.6, report=rep, stats=stats, timeout_s=1.0)
    )
    assert (
        rep.generated == 14
        and rep.kept == len(docs)
        and sum(rep.rejected.values()) == 14 - len(docs)
    )
    assert rep.rejected, "a 60% bug rate must produce rejections"
    assert all(
        r.split(":")[0] in {"failed", "no_tests", "timeout", "memory", "crashed", "killed"}
        for r in rep.rejected
    )
    # every kept program really passes when run again; planted syntax errors are never kept
    assert docs and all(run_code(d.text, timeout_s=5).passed for d in docs[:4])
    assert all(d.meta["planted_bug"] != "missing_colon" for d in docs)
    assert stats.kept == len(docs)


def test_math_answers_verified_by_execution():
    probs = generate_problems(200, seed=1)
    assert {p.kind for p in probs} == set(GENERATORS)
    assert all(ok for _, ok, _ in verify_problems(probs))
    probs[0].answer = probs[0].answer + "1"  # a wrong answer is caught
    probs[1].program = "print(1/0)"  # a crashing program is caught
    res = verify_problems(probs[:3])
    assert [why for _, _, why in res] == ["answer_mismatch", "program_error", ""]


def test_math_documents_deterministic_and_counted():
    stats = SourceStats()
    a = [d.text for d in math_documents(50, seed=3, stats=stats)]
    assert a == [d.text for d in math_documents(50, seed=3)]
    assert stats.kept == 50 and "Answer:" in a[0]
    assert run_in_process("print(6 * 7)") == ("42\n", "")


def test_own_programs_replace_the_templates():
    progs = [
        Program("model", "def f():\n    return 1\n\nassert f() == 1\n"),
        Program("model", "def f():\n    return 1\n\nassert f() == 2\n"),
    ]
    rep = SyntheticReport()
    docs = list(synthetic_documents(5, programs=iter(progs), report=rep))
    assert [d.meta["template"] for d in docs] == ["model"]
    assert dict(rep.rejected) == {"failed: AssertionError": 1}


def test_problem_text_shows_a_program_that_prints_the_answer():
    p = MathProblem(
        "own",
        "Ada has 3 bags of 4 apples. How many apples?",
        "3 * 4 = 12.",
        "bags, per_bag = 3, 4\nprint(bags * per_bag)",
        "12",
    )
    text = problem_text(p)
    assert text.startswith("Problem: Ada has 3 bags") and "Solution: 3 * 4 = 12." in text
    assert text.rstrip().endswith("Answer: 12")
    program = re.search(r"```python\n(.*?)\n```", text, re.DOTALL).group(1)
    assert program == p.program and run_in_process(program) == ("12\n", "")
    assert verify_problems([p])[0][1:] == (True, "")
    doc = next(math_documents(1, seed=0))
    assert doc.text == problem_text(generate_problems(1, seed=0)[0])


def test_rejection_reason_names_the_exception_or_the_exit_code():
    progs = [
        "assert 1 == 2",
        "import sys; sys.exit(3)",
        "import json; json.loads('{')",
        "def f(:\n    pass",
    ]
    reasons = [rejection_reason(r) for r in run_many(progs, timeout_s=10)]
    assert reasons == [
        "failed: AssertionError",
        "failed: exit code 3",
        "failed: json.decoder.JSONDecodeError",
        "failed: SyntaxError",
    ]
    assert rejection_reason(run_code("while True: pass", timeout_s=0.5)) == "timeout"


WRONG_ADD = "def add(a, b):\n    return a - b\n"


def test_programs_whose_checks_never_ran_are_dropped_by_reason():
    # issue 19 item 10: wrong programs whose asserts never run
    progs = [
        Program("ok", "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n"),
        Program("exit", "import sys\n" + WRONG_ADD + "sys.exit(0)\nassert add(1, 2) == 3\n"),
        Program("os_exit", "import os\n" + WRONG_ADD + "os._exit(0)\nassert add(1, 2) == 3\n"),
        Program("guard", WRONG_ADD + "if __name__ == '__main__':\n    assert add(1, 2) == 3\n"),
        Program("tests_exit", WRONG_ADD, tests="import sys\nsys.exit(0)\nassert add(1, 2) == 3\n"),
    ]
    assert all(run_code(p.text, timeout_s=10).passed for p in progs[1:3])  # exit status 0
    rep, stats = SyntheticReport(), SourceStats()
    docs = list(synthetic_documents(10, programs=progs, report=rep, stats=stats, workers=2,
                                    timeout_s=10))
    assert [d.meta["template"] for d in docs] == ["ok"]
    assert dict(rep.rejected) == {
        "failed: SystemExit": 2,
        "failed: exited before the tests finished": 1,
        "no_tests": 1,
    }
    assert stats.skipped["no_tests"] == 1 and stats.examples["no_tests"] == ["guard/000003.py"]


def test_split_checks_takes_top_level_asserts_only():
    code = (
        "import sys\n# helper\ndef f(x):\n    assert x > 0\n    return x\n\n"
        "assert f(1) == 1\nassert (f(2)\n        == 2)\n"
        "if __name__ == '__main__':\n    assert f(3) == 3\n"
    )
    sol, tests = split_checks(code)
    assert tests == "assert f(1) == 1\nassert (f(2)\n        == 2)\n"
    assert sol == code.replace(tests, "")  # nothing lost, nothing reordered
    assert split_checks("def f(:\n") == ("def f(:\n", "")
    p = generate_programs(1, seed=0)[0]
    assert p.tests.startswith("assert ") and p.text == p.code + "\n\n" + p.tests
    assert split_checks(p.text)[1] == p.tests
