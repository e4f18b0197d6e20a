"""Hostile programs against qcoder_lib.sandbox: each states its expected verdict.

The whole suite runs three times in a row in one session (``round`` 1, 2, 3). After every
case, and again after the last one, the host must be unchanged: no process of the run's uid,
no temporary working directory, none of the files the programs tried to create.
Programs that hang get 1 s (so the suite stays well under a minute on 2 cores); the others
get a generous timeout, which they never reach, so that a loaded machine cannot flake them.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from qcoder_lib.sandbox import ExecResult, check_program, run_code

MARKER = "qcoder_sbx_escape_" + secrets.token_hex(4)
REPO = Path(__file__).resolve().parents[1]
ESCAPE_PATHS = [
    f"/tmp/{MARKER}",
    f"/var/tmp/{MARKER}",
    f"/dev/shm/{MARKER}",
    str(REPO / MARKER),
    f"/root/{MARKER}",
    f"/{MARKER}",
]
SECRET = "qcoder-secret-" + secrets.token_hex(8)
SEEN_RUNS: list[ExecResult] = []


def _processes_of_uid(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(name))
                        break
        except OSError:
            continue
    return found


def _assert_host_unchanged(r: ExecResult) -> None:
    assert r.workdir and not os.path.exists(r.workdir), "working directory left behind"
    if r.uid is not None and r.uid != 65534:
        assert _processes_of_uid(r.uid) == [], f"processes of sandbox uid {r.uid} survived"
    for path in ESCAPE_PATHS:
        assert not os.path.exists(path), f"the program created {path} on the host"
        assert not os.path.exists(path + "_dir")


@dataclasses.dataclass
class Case:
    name: str
    program: str  # run_code program, or the solution for check_program
    expected: tuple[str, ...]  # acceptable statuses (one, except where the OS decides)
    tests: str | None = None  # set: run with check_program(program, tests, entry)
    entry: str | None = None
    timeout_s: float = 10.0  # generous: only the hanging cases set a short one
    check: Callable[[ExecResult], None] | None = None  # extra assertions on the result
    memory_mb: int = 512
    needs: str = ""  # a layer without which the case is unsafe or moot (see the test)


def _src(s: str) -> str:
    return textwrap.dedent(s).strip() + "\n"


def _stdout_has(text):
    def check(r):
        assert text in r.stdout, (text, r.stdout[-500:], r.stderr[-500:])

    return check


def _stdout_lacks(*texts):
    def check(r):
        for t in texts:
            assert t not in r.stdout, (t, r.stdout[-500:])

    return check


PRIVATE_TMP = ("/tmp/", "/var/tmp/", "/dev/shm/")


def _only_private_writes(r):
    """Writes may succeed only in the run's private /tmp, /var/tmp, /dev/shm (fresh tmpfs, gone
    with the run); _assert_host_unchanged checks that the host's own folders got nothing."""
    assert "done" in r.stdout, r.stderr[-500:]
    for line in r.stdout.splitlines():
        if line.startswith("WROTE"):
            path = os.path.normpath(os.path.join(r.workdir, line.split()[-1]))
            assert path.startswith(PRIVATE_TMP) and r.layers.get("private_tmp"), line


ADD_TESTS = _src("""
    def check(candidate):
        assert candidate(2, 3) == 5
        assert candidate(0, 0) == 0
""")
WRONG_ADD = "def add(a, b):\n    return a * b\n"

CASES = [
    # --- time
    Case("infinite_loop", "while True:\n    pass\n", ("timeout",), timeout_s=1.0),
    Case("sleep_forever", "import time\ntime.sleep(3600)\n", ("timeout",), timeout_s=1.0),
    Case(
        "ignores_signals_and_loops",
        _src("""
            import signal
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGXCPU):
                signal.signal(s, signal.SIG_IGN)
            while True:
                pass
        """),
        ("timeout",),
        timeout_s=1.0,
    ),
    Case("stops_itself", "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n",
         ("timeout",), timeout_s=1.0),
    Case("closes_stdout_then_loops", "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
         ("timeout",), timeout_s=1.0),
    # --- processes
    Case(
        "fork_bomb",
        _src("""
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """),
        ("timeout",),
        timeout_s=1.0,
        needs="bounded_procs",
    ),
    Case(
        "fork_bomb_in_orphan_then_exit_0",
        _src("""
            import os
            if os.fork() == 0:
                os.setsid()
                while True:
                    try:
                        os.fork()
                    except OSError:
                        pass
            print("parent leaves")
        """),
        ("passed",),
        needs="bounded_procs",
        check=_stdout_has("parent leaves"),
    ),
    Case(
        "sleeping_daemon_outlives_parent",
        _src("""
            import os, signal, time
            if os.fork() == 0:
                os.setsid()
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                if os.fork() == 0:
                    os.chdir("/")
                    time.sleep(600)
                os._exit(0)
            time.sleep(0.1)
            print("daemon started")
        """),
        ("passed",),
        check=_stdout_has("daemon started"),
    ),
    Case(
        "kill_parent_init_and_everyone",
        _src(f"""
            import os, signal
            for target in (os.getppid(), 1, {os.getpid()}, -1):
                try:
                    os.kill(target, signal.SIGKILL)
                    print("killed", target)
                except OSError as e:
                    print("refused", target, type(e).__name__)
            print("survived")
        """),
        ("passed",),
        check=_stdout_lacks("killed"),
        needs="confined_kill",  # as root, outside a pid namespace, kill(-1) is everything
    ),
    Case("kills_own_process_group", "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
         ("killed",)),
    # --- memory and recursion
    Case("memory_bomb_one_block", "x = bytearray(16 * 1024**3)\n", ("memory",)),
    Case("memory_bomb_growing", "x = []\nwhile True:\n    x.append(' ' * 10**6)\n", ("memory",)),
    Case(
        "memory_in_many_processes",
        _src("""
            import os
            kids = []
            for _ in range(8):
                pid = os.fork()
                if pid == 0:
                    try:
                        x = bytearray(1024**3)  # 1 GiB each, over the 512 MB address space
                        os._exit(0)
                    except MemoryError:
                        os._exit(3)
                kids.append(pid)
            codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids]
            print(codes)
            raise SystemExit(0 if all(c == 3 for c in codes) else 1)
        """),
        ("passed",),
        check=_stdout_has("[3, 3, 3, 3, 3, 3, 3, 3]"),
    ),
    Case(
        "memory_spread_over_processes",  # each under its own limit, together far over it
        _src("""
            import os, time
            kids = []
            for _ in range(6):
                pid = os.fork()
                if pid == 0:
                    x = b"x" * (120 * 1024**2)  # touched pages, not lazy zeros
                    time.sleep(0.3)
                    os._exit(0)
                kids.append(pid)
            print([os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids])
        """),
        ("passed",),
        timeout_s=6.0,  # the kernel reclaims for a while before the OOM kill (~1-3 s)
        memory_mb=200,  # each child fits its 200 MB; the run's cgroup holds 200+16+64 MB
        needs="cgroup_memory",
        check=_stdout_has("-9"),  # the run's memory cgroup killed some: 6 x 120 MB never fit
    ),
    Case("deep_recursion", "def f(n):\n    return f(n + 1)\nf(0)\n", ("failed",),
         check=lambda r: "RecursionError" in r.stderr or pytest.fail(r.stderr[-300:])),
    Case(
        "c_stack_overflow",
        _src("""
            import sys
            sys.setrecursionlimit(10**7)
            def f(n):  # recursion through C (map): the C stack overflows
                return list(map(f, [n + 1]))
            f(0)
        """),
        ("crashed",),
    ),
    # --- output and files
    Case("huge_output", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", ("killed",),
         check=lambda r: r.truncated or pytest.fail("output not marked truncated")),
    Case(
        "writes_outside_workdir",
        _src(f"""
            import os
            paths = {ESCAPE_PATHS!r}
            for p in paths + ["../{MARKER}"]:
                for how in ("file", "dir", "symlink"):
                    try:
                        if how == "file":
                            open(p, "w").write("x")
                        elif how == "dir":
                            os.makedirs(p + "_dir")
                        else:
                            os.symlink(p, "link")
                            open("link", "w").write("x")
                        print("WROTE", how, p)
                    except OSError as e:
                        print("refused", how, p, type(e).__name__)
                    try:
                        os.unlink("link")
                    except OSError:
                        pass
            print("done")
        """),
        ("passed",),
        check=lambda r: _only_private_writes(r),
    ),
    Case(
        "fills_the_disk",
        _src("""
            total = 0
            try:
                for i in range(1000):
                    with open(f"f{i}", "wb") as f:
                        for _ in range(16):
                            f.write(b"x" * 1024**2)
                            total += 1
            except OSError as e:
                print("stopped", type(e).__name__)
            print("MB", total)
        """),
        ("passed",),  # stopped by the workdir tmpfs (ENOSPC) or the file-size limit (EFBIG)
        needs="workdir_tmpfs",  # without it only RLIMIT_FSIZE (per file) bounds the disk
        check=lambda r: int(r.stdout.split("MB")[-1]) <= 80 or pytest.fail(r.stdout),
    ),
    # --- secrets and network
    Case(
        "reads_parent_environment",
        _src(f"""
            import os
            secret = {SECRET!r}
            found = [k for k, v in os.environ.items() if secret in v]
            for pid in os.listdir("/proc"):
                for what in ("environ", "cmdline"):
                    try:
                        if secret.encode() in open(f"/proc/{{pid}}/{{what}}", "rb").read():
                            found.append((pid, what))
                    except OSError:
                        pass
            print("FOUND" if found else "clean", found)
        """),
        ("passed",),
        check=_stdout_has("clean"),
    ),
    Case(
        "opens_sockets",
        _src("""
            import socket
            results = []
            for addr in (("127.0.0.1", PORT), ("1.1.1.1", 53), ("8.8.8.8", 443)):
                try:
                    s = socket.create_connection(addr, timeout=0.5)
                    results.append("CONNECTED %s" % (addr,))
                except OSError as e:
                    results.append("refused %s %s" % (addr, type(e).__name__))
            try:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.sendto(b"x", ("1.1.1.1", 53))
                results.append("SENT udp")
            except OSError as e:
                results.append("refused udp " + type(e).__name__)
            print("\\n".join(results))
        """),
        ("passed",),  # every attempt is caught (the fallback raises PermissionError, an OSError)
        check=_stdout_lacks("CONNECTED", "SENT"),
    ),
    Case(
        "reads_host_secrets",
        _src("""
            import glob
            for path in ["/etc/shadow", "/root/.bash_history", "/proc/1/environ"] + glob.glob(
                "/root/*"
            ) + glob.glob("/home/*/.ssh/*"):
                try:
                    open(path, "rb").read(1)
                    print("READ", path)
                except OSError as e:
                    print("refused", path, type(e).__name__)
            print("done")
        """),
        ("passed",),
        needs="unprivileged",
        check=_stdout_lacks("READ"),
    ),
    Case(
        "tries_to_become_root",
        _src("""
            import os, subprocess
            for name, attempt in [
                ("setuid", lambda: os.setuid(0)),
                ("su", lambda: subprocess.run(["su", "-c", "id"], check=True, timeout=0.5,
                                              stdin=subprocess.DEVNULL, capture_output=True)),
                ("mount", lambda: subprocess.run(["mount", "-o", "remount,rw", "/"],
                                                 check=True, capture_output=True)),
                ("chown", lambda: os.chown(".", 0, 0)),
            ]:
                try:
                    attempt()
                    print("BECAME", name, os.getuid())
                except Exception as e:
                    print("refused", name, type(e).__name__)
            print("done")
        """),
        ("passed",),
        needs="unprivileged",
        check=_stdout_lacks("BECAME"),
    ),
    Case(
        "unix_sockets_anywhere",
        _src("""
            import glob, socket
            paths = glob.glob("/run/**/*.sock", recursive=True) + ["/var/run/docker.sock",
                    "/tmp/.X11-unix/X0", "/dev/log", "/run/systemd/private"]
            for path in paths:
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(path)
                    print("CONNECTED", path)
                except OSError as e:
                    print("refused", path, type(e).__name__)
            print("done")
        """),
        ("passed",),
        needs="unix_sockets_blocked",
        check=_stdout_lacks("CONNECTED"),
    ),
    Case("exit_status_wraps_to_0", "import sys\nsys.exit(256)\n", ("failed",)),
    # --- signals
    Case("segfault", "import ctypes\nctypes.string_at(0)\n", ("crashed",)),
    Case("abort", "import os\nos.abort()\n", ("crashed",)),
    Case("sigterm_self", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", ("killed",)),
    # --- verdict tricks (check_program: the parent decides)
    Case("sys_exit_0_at_import", "import sys\nsys.exit(0)\n" + WRONG_ADD, ("failed",),
         tests=ADD_TESTS, entry="add"),
    Case("os_exit_0_at_import", "import os\nos._exit(0)\n" + WRONG_ADD, ("failed",),
         tests=ADD_TESTS, entry="add"),
    Case("os_exit_0_inside_candidate", "import os\ndef add(a, b):\n    os._exit(0)\n",
         ("failed",), tests=ADD_TESTS, entry="add"),
    Case("system_exit_inside_candidate", "def add(a, b):\n    raise SystemExit(0)\n",
         ("failed",), tests=ADD_TESTS, entry="add"),
    Case("atexit_exit_0", "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG_ADD,
         ("failed",), tests=ADD_TESTS, entry="add"),
    Case("prints_passed", "print('PASSED')\nprint('all tests passed')\n" + WRONG_ADD, ("failed",),
         tests=ADD_TESTS, entry="add"),
    Case("defines_its_own_check", "def check(c):\n    pass\n" + WRONG_ADD, ("failed",),
         tests=ADD_TESTS, entry="add"),
    Case("rewrites_tests_file", "open('tests.py', 'w').write('def check(c):\\n    pass\\n')\n"
         + WRONG_ADD, ("failed",), tests=ADD_TESTS, entry="add"),
    Case("guesses_the_token", "import os\nos.write(4, b'0' * 32)\nos._exit(0)\n" + WRONG_ADD,
         ("failed",), tests=ADD_TESTS, entry="add"),
    Case("patches_os_io_functions",
         "import os\nos.read = lambda *a: b'x'\nos.write = lambda *a: 1\n"
         "os._exit = lambda c: None\n"
         + WRONG_ADD, ("failed",), tests=ADD_TESTS, entry="add"),
    Case("thread_exits_0_during_tests",
         "import os, threading, time\n"
         "threading.Timer(0.05, lambda: os._exit(0)).start()\n"
         "def add(a, b):\n    time.sleep(0.5)\n    return a * b\n",
         ("failed",), tests=ADD_TESTS, entry="add"),
    Case("kills_itself_during_tests", "import os, signal\ndef add(a, b):\n"
         "    os.kill(os.getpid(), signal.SIGKILL)\n", ("killed",), tests=ADD_TESTS, entry="add"),
    Case("wrong_tests_behind_main_guard", WRONG_ADD,
         ("failed",), tests="if __name__ == '__main__':\n    assert add(2, 3) == 5\n"),
    Case("tests_that_check_nothing", "def add(a, b):\n    return a + b\n", ("no_tests",),
         tests="def check(candidate):\n    assert candidate(1, 1) == 2\n"),  # check never called
    # ... and a correct solution still passes although it patches the same functions.
    Case("correct_but_patches_os_io",
         "import os\nos.read = lambda *a: b'x'\nos.write = lambda *a: 1\n"
         "def add(a, b):\n    return a + b\n", ("passed",), tests=ADD_TESTS, entry="add"),
]


@pytest.fixture(scope="module")
def probe():
    r = run_code("print('ok')")
    assert r.passed, r
    return r


@pytest.fixture(scope="module", autouse=True)
def host_unchanged_after_suite():
    tmp_before = {p for p in os.listdir("/tmp") if p.startswith("qcoder-sandbox-")}
    yield
    for r in SEEN_RUNS:
        _assert_host_unchanged(r)
    tmp_after = {p for p in os.listdir("/tmp") if p.startswith("qcoder-sandbox-")}
    ours = {os.path.basename(r.workdir) for r in SEEN_RUNS}
    assert not (tmp_after - tmp_before) & ours


@pytest.fixture
def listening_port():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.setblocking(False)
    yield srv
    srv.close()


ROUNDS = [(rnd, case) for rnd in (1, 2, 3) for case in CASES]


@pytest.mark.parametrize(
    "rnd,case", ROUNDS, ids=[f"round{rnd}-{case.name}" for rnd, case in ROUNDS]
)
def test_hostile_program(rnd, case: Case, probe, listening_port, monkeypatch):
    lay = probe.layers
    root_unbound = os.geteuid() == 0 and not lay.get("unprivileged_user")
    if case.needs == "bounded_procs" and root_unbound and not lay.get("cgroup_pids"):
        pytest.skip("no unprivileged user and no pids cgroup: RLIMIT_NPROC would not bind root")
    if case.needs == "confined_kill" and root_unbound and not lay.get("pid_ns"):
        pytest.skip("root outside a pid namespace: kill(-1) would reach the host")
    if case.needs == "unprivileged" and os.geteuid() == 0 and not lay.get("unprivileged_user"):
        pytest.skip("the program would run as root here")
    if case.needs == "workdir_tmpfs" and not lay.get("workdir_tmpfs"):
        pytest.skip("no size-limited working directory here: this would fill the host's disk")
    if case.needs == "unix_sockets_blocked" and not lay.get("unix_sockets_blocked"):
        pytest.skip("no seccomp filter here: a world-writable host socket would be reachable")
    if case.needs == "cgroup_memory" and not lay.get("cgroup_memory"):
        pytest.skip("no memory cgroup here: only per-process limits bound memory")
    monkeypatch.setenv("QCODER_SANDBOX_TEST_SECRET", SECRET)
    program = case.program.replace("PORT", str(listening_port.getsockname()[1]))
    if case.tests is None:
        r = run_code(program, timeout_s=case.timeout_s, memory_mb=case.memory_mb,
                     workdir_mb=16 if case.memory_mb < 512 else 64)
    else:
        r = check_program(program, case.tests, case.entry, timeout_s=case.timeout_s)
    SEEN_RUNS.append(r)
    assert r.status in case.expected, (case.name, r.status, r.reason, r.stdout[-300:],
                                       r.stderr[-300:])
    if case.check:
        case.check(r)
    if case.name == "opens_sockets":
        with pytest.raises(BlockingIOError):
            listening_port.accept()  # nothing from the sandbox reached the host's loopback
    _assert_host_unchanged(r)
    # Everything but hanging programs is over well before its timeout; hanging ones are
    # stopped promptly after it.
    assert r.wall_s < case.timeout_s + 3.5
