"""The sandbox's promises on this host (issue 19): mounts, host sockets, other runs' files,
interrupts, exit statuses, counted checks, limits, batches, odd text; and the suite itself run
from a checkout that other users cannot read.

Run as root (CI) every layer is active. Two stand-ins for what a real host has are mounted for
the module: a tmpfs under /tmp (a host /tmp on its own filesystem) and a tmpfs under /mnt (a
data disk), both world-writable, each holding a listening world-writable Unix socket.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time

import pytest

from qcoder_lib.sandbox import (
    Limits,
    run_code,
    run_many,
    sandbox_interpreter,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounting host stand-ins needs root")


def _mount_tmpfs(path: str) -> None:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", path], check=True)


@pytest.fixture(scope="module")
def host_mounts():
    """Two world-writable tmpfs mounts on the host, each with a 0777 listening Unix socket."""
    if not IS_ROOT:
        pytest.skip("mounting host stand-ins needs root")
    tag = f"qcoder-sbx-{os.getpid()}"
    paths = {"tmp": f"/tmp/{tag}-hosttmp", "mnt": f"/mnt/{tag}"}
    servers = []
    try:
        for path in paths.values():
            _mount_tmpfs(path)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(os.path.join(path, "daemon.sock"))
            os.chmod(os.path.join(path, "daemon.sock"), 0o777)
            srv.listen(4)
            srv.setblocking(False)
            servers.append(srv)
        yield {**paths, "servers": servers}
    finally:
        for srv in servers:
            srv.close()
        for path in paths.values():
            subprocess.run(["umount", "-l", path], check=False, capture_output=True)
            try:
                os.rmdir(path)
            except OSError:
                pass


@pytest.fixture
def writable_host_mount(host_mounts):
    """A host folder any user may write, on a mount the sandbox can see (not one it hides)."""
    return host_mounts["mnt"]


@pytest.fixture
def private_tempdir(monkeypatch):
    """Runs of this test put their working directories here (to watch them without racing
    with anyone else's runs)."""
    base = tempfile.mkdtemp(prefix="qcoder-sbx-test-")
    os.chmod(base, 0o755)
    monkeypatch.setattr(tempfile, "tempdir", base)
    yield base
    shutil.rmtree(base, ignore_errors=True)


# --- item 1: every mount read-only but the run's own; the layer reports the truth ----------

MOUNT_PROBE = """
import json, os
def unescape(p):
    return p.replace("\\\\040", " ").replace("\\\\134", "\\\\")
rw = {}
for line in open("/proc/self/mountinfo"):
    f = line.split()
    rw[unescape(f[4])] = "rw" in f[5].split(",")
print("RW", json.dumps(sorted(p for p, w in rw.items() if w and os.path.lexists(p))))
for path in [MNT + "/from_sandbox", HOSTTMP + "/from_sandbox", "/tmp/private_file"]:
    try:
        open(path, "w").write("x")
        print("WROTE", path)
    except OSError as e:
        print("refused", path, e.strerror)
"""


@needs_root
def test_every_mount_is_readonly_but_the_runs_own(host_mounts):
    probe = MOUNT_PROBE.replace("MNT", repr(host_mounts["mnt"])).replace(
        "HOSTTMP", repr(host_mounts["tmp"]))
    # The stand-ins really are writable from the host.
    with open(os.path.join(host_mounts["mnt"], "from_host"), "w") as f:
        f.write("x")
    r = run_code(probe)
    assert r.passed, r.stderr
    assert r.layers["readonly_root"] is True and r.layers["private_tmp"] is True
    rw_line = next(line for line in r.stdout.splitlines() if line.startswith("RW"))
    rw = set(json.loads(rw_line[3:]))
    private = {d for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)
               and not os.path.islink(d)}
    assert rw == {r.workdir} | private, rw  # checked from inside, independently of the layer
    assert f"refused {host_mounts['mnt']}/from_sandbox Read-only file system" in r.stdout
    assert f"refused {host_mounts['tmp']}/from_sandbox No such file or directory" in r.stdout
    assert "WROTE /tmp/private_file" in r.stdout  # its private /tmp, gone with the run
    for path in (host_mounts["mnt"], host_mounts["tmp"], "/tmp"):
        assert not os.path.exists(os.path.join(path, "from_sandbox"))
    assert not os.path.exists("/tmp/private_file")


@needs_root
def test_readonly_layer_says_false_when_mounts_stay_writable(host_mounts):
    """Without a mount namespace nothing is remounted: the layer must say so, and the write
    that it would have stopped indeed lands on the host."""
    target = os.path.join(host_mounts["mnt"], "written_without_mount_ns")
    try:
        r = run_code(f"open({target!r}, 'w').write('x')", disable=["mount_ns"])
        assert r.layers["readonly_root"] is False and r.layers["private_tmp"] is False
        assert r.passed and os.path.exists(target), r.stderr
    finally:
        if os.path.exists(target):
            os.unlink(target)


# --- item 2: host Unix sockets -------------------------------------------------------------

SOCKET_PROBE = """
import socket
for path in PATHS:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        print("CONNECTED", path)
    except OSError as e:
        print("refused", path, type(e).__name__)
a, b = socket.socketpair()  # between the program's own processes: still allowed
a.sendall(b"ok")
print("pair", b.recv(2).decode())
"""


@needs_root
def test_host_unix_sockets_are_unreachable(host_mounts):
    paths = [os.path.join(host_mounts[k], "daemon.sock") for k in ("tmp", "mnt")]
    r = run_code(SOCKET_PROBE.replace("PATHS", repr(paths)))
    assert r.passed, r.stderr
    assert r.layers["unix_sockets_blocked"] is True
    assert "CONNECTED" not in r.stdout and r.stdout.count("refused") == 2, r.stdout
    assert "pair ok" in r.stdout
    for srv in host_mounts["servers"]:
        with pytest.raises(BlockingIOError):
            srv.accept()  # nothing from the sandbox arrived
    # Control: the same sockets accept a connection from the host.
    for path, srv in zip(paths, host_mounts["servers"]):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        srv.setblocking(True)
        srv.accept()[0].close()
        srv.setblocking(False)
        c.close()


def test_unix_sockets_of_its_own_when_the_filter_is_disabled(host_mounts):
    """disable=["seccomp"] lifts only the socket block: the program may use a Unix socket of
    its own, and the host's sockets stay out of reach behind the private /tmp."""
    program = textwrap.dedent(f"""
        import os, socket
        srv = socket.socket(socket.AF_UNIX)
        srv.bind("own.sock"); srv.listen(1)
        c = socket.socket(socket.AF_UNIX); c.connect("own.sock"); print("own ok")
        try:
            socket.socket(socket.AF_UNIX).connect({host_mounts["tmp"] + "/daemon.sock"!r})
            print("CONNECTED")
        except OSError as e:
            print("host refused", type(e).__name__)
    """)
    r = run_code(program, disable=["seccomp"])
    assert r.passed, r.stderr[-500:]
    assert r.layers["unix_sockets_blocked"] is False
    assert r.stdout.split("\n")[:2] == ["own ok", "host refused FileNotFoundError"], r.stdout


# --- item 3: an exception in the caller while it waits --------------------------------------

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


class _Interrupt(Exception):
    pass


def test_caller_interrupt_stops_and_cleans_the_run(private_tempdir):
    marker = f"qcoder-interrupted-{os.getpid()}"
    program = (
        "import os, time\n"
        f"if os.fork() == 0:\n    os.execv('/bin/sh', ['/bin/sh', '-c', 'sleep 300; : {marker}'])\n"
        "time.sleep(300)\n"
    )
    launchers: list[int] = []
    in_config = private_tempdir.encode().hex()  # the launcher's argv: its config, hex-encoded

    def interrupt(*_):
        launchers.extend(_processes_with(in_config))
        raise _Interrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        for _ in range(3):  # the alarm must land while the program runs (a loaded machine)
            signal.setitimer(signal.ITIMER_REAL, 1.5)
            with pytest.raises(_Interrupt):
                run_code(program, timeout_s=60)
            if launchers:
                break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert launchers, "the interrupt never landed while the run was going"
    # Already when the exception reaches the caller: nothing of the run is left.
    assert _processes_with(marker) == [], "the program outlived the interrupted caller"
    assert _processes_with(in_config) == [], "the launcher outlived the caller"
    assert os.listdir(private_tempdir) == [], "the working directory was left behind"
    for pid in launchers:
        for ctl in ("memory", "pids"):
            assert not os.path.exists(f"/sys/fs/cgroup/{ctl}/qcoder-sandbox-{pid}")


def test_interrupted_batch_stops_its_running_programs(monkeypatch, private_tempdir):
    """run_many interrupted: the programs running in its threads are stopped (killed), not left
    to sleep out their 60 s timeout, and nothing of them is left."""
    from qcoder_lib.sandbox import api

    ended = []
    real = api.execute

    def spy(*a, **k):
        res, result = real(*a, **k)
        ended.append(res)
        return res, result

    monkeypatch.setattr(api, "execute", spy)
    marker = f"qcoder-batch-{os.getpid()}"
    program = f"import time\ntime.sleep(20)  # {marker}\n"

    def interrupt(*_):
        raise _Interrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        with pytest.raises(_Interrupt):
            run_many([program] * 4, workers=2, timeout_s=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert 1 <= len(ended) <= 2, ended  # the two queued tasks never started
    assert [r.status for r in ended] == ["killed"] * len(ended), ended
    assert _processes_with(private_tempdir.encode().hex()) == []
    assert os.listdir(private_tempdir) == []


# --- item 4: each run's files are its own ---------------------------------------------------

def test_concurrent_runs_cannot_read_each_others_files(private_tempdir):
    secret = f"qcoder-secret-{os.getpid()}"
    holder: dict = {}
    t = threading.Thread(target=lambda: holder.setdefault("r", run_code(
        "import time; time.sleep(3)", files={"secret.txt": secret}, stdin=secret,
        timeout_s=20)))
    t.start()
    try:
        names = ("secret.txt", ".stdin", "main.py")
        for _ in range(500):  # the parent writes the run's files one after another: wait for all
            runs = os.listdir(private_tempdir)
            if runs and all(os.path.exists(os.path.join(private_tempdir, runs[0], n))
                            for n in names):
                break
            time.sleep(0.02)
        work = os.path.join(private_tempdir, runs[0])
        assert os.stat(work).st_mode & 0o777 == 0o700
        for name in names:
            assert os.stat(os.path.join(work, name)).st_mode & 0o777 == 0o600, name
        probe = textwrap.dedent(f"""
            for name in ("secret.txt", ".stdin", "main.py"):
                try:
                    print("READ", open({work!r} + "/" + name).read())
                except OSError as e:
                    print("refused", name, type(e).__name__)
        """)
        for disable in ((), ("mount_ns",)):
            r = run_code(probe, disable=disable)
            assert r.passed and secret not in r.stdout and "READ" not in r.stdout, (disable, r)
        assert os.path.exists(work), "the first run ended before the probes: nothing was tested"
    finally:
        t.join()
    assert holder["r"].passed


# --- item 5: the real exit status -----------------------------------------------------------

def test_exit_status_that_wraps_to_zero_is_a_failure():
    r256, r512, none, r257 = run_many(
        ["import sys; sys.exit(256)", "raise SystemExit(512)", "raise SystemExit(None)",
         "import sys; sys.exit(257)"], workers=2)
    for r, code in ((r256, 256), (r512, 512)):
        assert r.status == "failed" and r.exit_code == code, r
        assert "wrap" in r.reason
    assert none.passed and none.exit_code == 0
    assert r257.status == "failed" and r257.exit_code == 1  # 257 & 255: the OS's own answer


# --- item 6: counted checks, "no tests ran", unittest.main() --------------------------------

SOLUTION = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a * b\n"
GUARDED = "if __name__ == '__main__':\n    assert add(2, 3) == 5\n    assert add(1, 1) == 2\n"
UNITTEST = textwrap.dedent("""
    import unittest

    class TestAdd(unittest.TestCase):
        def test_small(self):
            self.assertEqual(add(2, 3), 5)

        def test_zero(self):
            self.assertEqual(add(0, 0), 0)

        def test_sub(self):
            for a in range(3):
                with self.subTest(a=a):
                    self.assertEqual(add(a, 0), a)

    if __name__ == "__main__":
        unittest.main()
""")


def test_check_program_counts_checks_and_reports_no_tests():
    tasks = [
        {"solution": SOLUTION, "tests": GUARDED},  # behind a __main__ guard: now runs
        {"solution": WRONG, "tests": GUARDED},
        {"solution": SOLUTION, "tests": ""},  # nothing to run
        {"solution": SOLUTION, "tests": "def check(c):\n    assert c(1, 1) == 2\n"},  # no entry
        {"solution": SOLUTION, "tests": "x = 1\nif x > 2:\n    assert add(1, 1) == 3\n"},
        {"solution": SOLUTION, "tests": UNITTEST},
        {"solution": WRONG, "tests": UNITTEST},
        {"solution": SOLUTION, "tests": "import unittest\nclass T(unittest.TestCase):\n"
         "    @unittest.skip('x')\n    def test_a(self):\n        pass\nunittest.main()\n"},
        {"solution": SOLUTION, "tests": "import sys\nassert sys.argv == ['tests.py'], sys.argv\n"},
    ]
    results = run_many(tasks, workers=2)
    got = [(r.status, r.checks_run) for r in results]
    assert got == [
        ("passed", 2),
        ("failed", None),
        ("no_tests", 0),
        ("no_tests", 0),
        ("no_tests", 0),
        ("passed", 3),
        ("failed", None),
        ("no_tests", 0),
        ("passed", 1),
    ], [(g, r.stderr[-300:]) for g, r in zip(got, results)]
    assert "no check executed" in results[2].reason
    assert "unittest" in results[6].stderr


# --- item 7: limits -------------------------------------------------------------------------

FORKS = """
import os, sys
n = int(sys.argv[0] != "") and N
kids, refused = [], 0
for _ in range(n):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        import time; time.sleep(0.3); os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
print(len(kids), refused)
"""


def test_max_processes_counts_only_the_programs_processes():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # two runs at a time, each with its own limit
        results = list(pool.map(
            lambda m: run_code(FORKS.replace("N", str(m)), max_processes=m), (1, 2, 3, 4)))
    for m, r in zip((1, 2, 3, 4), results):
        assert r.passed, (m, r.stderr[-500:])
        assert r.stdout.split() == [str(m - 1), "1"], (m, r.stdout)  # itself + m - 1 children


def test_large_files_and_stdin_count_in_the_memory_limit():
    big = b"\0" * (120 << 20)
    program = textwrap.dedent("""
        import os, sys
        n = 0
        while chunk := sys.stdin.buffer.read(1 << 20):
            n += len(chunk)
        print(os.path.getsize("big.bin"), n)
    """)
    r = run_code(program, files={"big.bin": big}, stdin=big[: 40 << 20], memory_mb=64,
                 timeout_s=30)
    assert r.passed, (r.status, r.reason, r.stderr[-300:])
    assert r.stdout.split() == [str(120 << 20), str(40 << 20)]


def test_limits_are_validated_with_the_field_named():
    assert Limits().validate() == Limits()
    assert Limits().with_overrides(timeout_s=2).timeout_s == 2
    assert Limits(timeout_s=0.2).cpu_s == 2
    for bad, field in [
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"memory_mb": 8}, "memory_mb"),
        ({"max_processes": 0}, "max_processes"),
        ({"max_open_files": 3}, "max_open_files"),
        ({"output_limit_mb": -1}, "output_limit_mb"),
        ({"memory_mb": 1.5}, "memory_mb"),
    ]:
        with pytest.raises((TypeError, ValueError), match=field):
            run_code("print(1)", **bad)
        with pytest.raises((TypeError, ValueError), match=field):
            Limits(**bad).validate()
    with pytest.raises(TypeError, match="timeout"):
        Limits().with_overrides(timeout=1)
    r = run_code("print(1)", limits=Limits(timeout_s=3, memory_mb=128))
    assert r.passed


def _can_exempt_from_oom() -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
            os._exit(0)
        except OSError:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def test_oom_protection_layer_tells_the_truth():
    r = run_code("print(open('/proc/self/oom_score_adj').read().strip())")
    assert r.passed and r.stdout.strip() == "1000"  # the program is the OOM killer's first pick
    assert r.layers["oom_protection"] is _can_exempt_from_oom()


# --- item 8: run_many validates before anything runs ---------------------------------------

def test_run_many_validates_every_task_first(monkeypatch):
    from qcoder_lib.sandbox import api

    started = []
    real = api.execute
    monkeypatch.setattr(api, "execute", lambda *a, **k: started.append(1) or real(*a, **k))
    good = ["print(1)", {"solution": SOLUTION, "tests": GUARDED}]
    for bad, match in [
        (42, "task 2: must be a program str"),
        ({"solution": SOLUTION}, "task 2: 'tests' must be a str"),
        ({"solution": SOLUTION, "tests": GUARDED, "bogus": 1}, "task 2: unknown"),
        ({"solution": SOLUTION, "tests": GUARDED, "timeout_s": float("nan")}, "task 2: .*timeout"),
        ({"solution": SOLUTION, "tests": GUARDED, "language": "rust"}, "task 2: .*rust"),
    ]:
        with pytest.raises((TypeError, ValueError), match=match):
            run_many(good + [bad], workers=2)
    with pytest.raises(TypeError, match="bogus"):
        run_many(good, bogus=1)
    assert started == [], "a task ran although the batch was invalid"
    assert [r.status for r in run_many(good, workers=2)] == ["passed", "passed"]
    assert len(started) == 2


# --- item 9: a lone surrogate is its program's failure --------------------------------------

def test_lone_surrogates_fail_only_their_program():
    tasks = ["print('a')", "print('\ud800')", {"solution": "x = '\udfff'\n" + SOLUTION,
                                              "tests": GUARDED}, "print('b')"]
    results = run_many(tasks, workers=2)
    assert [r.status for r in results] == ["passed", "failed", "failed", "passed"]
    assert "utf-8" in results[1].stderr.lower(), results[1].stderr[-300:]
    r = run_code("import sys; print(len(sys.stdin.buffer.read()))", stdin="\ud800",
                 files={"odd.txt": "\udc80"})
    assert r.passed and r.stdout == "3\n"


# --- item 17: the suite as root in a private folder ----------------------------------------

NON_ROOT_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from qcoder_lib.sandbox import run_code
out = {}
r = run_code("import os; print(os.getpid(), len(os.listdir('/home')))")
out["hello"] = [r.status, r.stdout, r.layers]
r = run_code("import socket; socket.create_connection(('1.1.1.1', 53), timeout=0.5)")
out["socket"] = [r.status, r.stderr[-200:]]
r = run_code("import subprocess; subprocess.run(['mount', '-o', 'remount,rw', '/'])\\n"
             "open(" + repr(sys.argv[2]) + ", 'w')")
out["remount"] = [r.status, r.stderr[-200:]]
print(json.dumps(out))
"""


def _world_readable_copy_of_the_sandbox() -> str:
    """The sandbox package copied where any user can read it (the checkout may be in a private
    folder, e.g. /root or under mktemp -d): ``<tmp>/qcoder_lib/sandbox`` plus an empty
    ``qcoder_lib/__init__.py`` (the sandbox imports nothing else of qcoder_lib)."""
    import tempfile

    base = tempfile.mkdtemp(prefix="qcoder-sbx-copy-")
    pkg = os.path.join(base, "qcoder_lib")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "qcoder_lib", "sandbox")
    shutil.copytree(src, os.path.join(pkg, "sandbox"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write('"""A copy of qcoder_lib.sandbox only (for a test run as another user)."""\n')
    for root, dirs, files in os.walk(base):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return base


@needs_root
def test_non_root_caller_gets_namespaces_through_a_user_namespace(writable_host_mount):
    """A learner's laptop: no root. A user namespace still gives net / pid / mount isolation."""
    import json
    import subprocess

    interp, world_ok = sandbox_interpreter()
    if not world_ok:
        pytest.skip("no interpreter that an unprivileged caller can execute")
    copy = _world_readable_copy_of_the_sandbox()
    target = os.path.join(writable_host_mount, f"qcoder_sbx_nonroot_{os.getpid()}")
    try:
        done = subprocess.run(
            [interp, "-I", "-c", NON_ROOT_SCRIPT, copy, target],
            user=65534, group=65534, extra_groups=[], capture_output=True, text=True,
            timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"}, check=False,
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    status, stdout, layers = out["hello"]
    assert status == "passed", out
    if not layers.get("user_ns"):
        pytest.skip("this kernel refuses unprivileged user namespaces: only the fallbacks apply")
    for layer in ("user_ns", "net_ns", "pid_ns", "mount_ns", "readonly_root", "private_proc",
                  "private_tmp", "unix_sockets_blocked"):
        assert layers[layer] is True, (layer, layers)
    assert layers["unprivileged_user"] is False  # no uid of its own: it runs as the caller
    assert layers["oom_protection"] is False  # only root may exempt the launcher (-1000)
    assert stdout.split()[0] == "2"  # pid 2: the sandbox's init is pid 1
    assert out["socket"][0] == "failed" and "unreachable" in out["socket"][1]
    assert out["remount"][0] == "failed" and "Read-only" in out["remount"][1]
    assert not os.path.exists(target)


