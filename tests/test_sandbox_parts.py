"""The sandbox's parts called directly (the whole runs are in test_sandbox*.py): status
classification, interpreter and folder choices, text encoding, limits, the mount table and
the read-only pass, the seccomp filter, libc calls, cgroup folder removal.

``parent.execute``, ``mounts.setup_mounts``, ``program.exec_program`` and ``launcher.main``
run in every ``run_code`` call of the other files; they need a whole run to mean anything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from qcoder_lib.sandbox import Limits, cgroups, interpreter, linux, mounts
from qcoder_lib.sandbox.limits import resolve_limits
from qcoder_lib.sandbox.parent import encode_text
from qcoder_lib.sandbox.result import classify

IS_ROOT = os.geteuid() == 0


def test_classify_each_way_a_program_ends():
    assert classify({"exit_code": 0}, False, "")[0] == "passed"
    assert classify({"exit_code": 0}, True, "")[0] == "timeout"
    assert classify({"exit_code": 3}, False, "")[0] == "failed"
    assert classify({"exit_code": 1}, False, "MemoryError\n")[0] == "memory"
    assert classify({"signal": signal.SIGKILL, "oom": True}, False, "")[0] == "memory"
    assert classify({"signal": signal.SIGSEGV}, False, "")[0] == "crashed"
    assert classify({"signal": signal.SIGXCPU}, False, "")[0] == "timeout"
    assert classify({"signal": signal.SIGTERM}, False, "") == ("killed", "killed by signal SIGTERM")
    assert classify({}, False, "")[0] == "killed"  # no exit status at all
    status, reason = classify({"exit_code": 256}, False, "")
    assert status == "failed" and "wrap" in reason


def test_interpreter_choice_and_folders_to_cover():
    interp, world_ok = interpreter.sandbox_interpreter()
    assert os.path.exists(interp)
    assert world_ok == interpreter.world_executable(interp)
    assert interpreter.world_executable("/bin/sh")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x")
        open(path, "w").close()
        os.chmod(path, 0o700)
        assert not interpreter.world_executable(path)
    assert not interpreter.world_executable("/nonexistent/python")
    hidden = interpreter.dirs_to_hide("/tmp/qcoder-sandbox-x", interp)
    assert all(not interp.startswith(d + "/") for d in hidden)
    # A folder that holds the interpreter is never covered.
    assert interpreter.dirs_to_hide("/tmp/w", "/root/py/bin/python") == [
        d for d in interpreter.dirs_to_hide("/tmp/w", "/usr/bin/python3") if d != "/root"
    ]
    tmp, runtime, complete = interpreter.dirs_to_replace("/usr/bin/python3")
    assert "/tmp" in tmp and complete
    assert all(not os.path.islink(d) for d in tmp + runtime)  # targets, not symlinks
    assert len(set(tmp + runtime)) == len(tmp + runtime)  # /var/run -> /run: covered once
    tmp2, _, complete2 = interpreter.dirs_to_replace("/tmp/venv/bin/python")
    assert "/tmp" not in tmp2 and not complete2


def test_encode_text_keeps_lone_surrogates_as_bytes():
    assert encode_text("é", "x") == "é".encode()
    assert encode_text("\ud800", "x") == b"\xed\xa0\x80"  # invalid UTF-8: the program fails
    assert encode_text(b"\xff", "x") == b"\xff"
    with pytest.raises(TypeError, match="stdin"):
        encode_text(3, "stdin")


def test_resolve_limits():
    assert resolve_limits(None, {}) == Limits()
    assert resolve_limits(Limits(memory_mb=64), {"timeout_s": 1}) == Limits(timeout_s=1, memory_mb=64)
    with pytest.raises(TypeError, match="Limits"):
        resolve_limits({"timeout_s": 1}, {})
    with pytest.raises(ValueError, match="max_processes"):
        resolve_limits(None, {"max_processes": 0})


def test_mount_table_matches_proc_mounts():
    table = mounts.mount_table()
    assert "/" in table and "/proc" in table
    with open("/proc/mounts") as f:
        points = {line.split()[1].replace("\\040", " ") for line in f}
    assert set(table) <= points  # covered mounts are left out


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child (its namespaces and filters die with it); its exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            code = fn()
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            code = 99
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not IS_ROOT, reason="a private mount namespace needs root")
def test_make_readonly_leaves_only_the_named_mounts_writable():
    keep = tempfile.mkdtemp(prefix="qcoder-sbx-ro-keep-")
    other = tempfile.mkdtemp(prefix="qcoder-sbx-ro-other-")

    def child():
        linux.call("unshare", linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        for d in (keep, other):
            linux.mount("tmpfs", d, "tmpfs", 0, "size=1m")
        if not mounts.make_readonly([keep]):
            return 2
        open(os.path.join(keep, "f"), "w").close()  # still writable
        try:
            open(os.path.join(other, "f"), "w").close()
            return 3
        except OSError as e:
            return 0 if e.errno == 30 else 4  # EROFS

    try:
        assert _in_child(child) == 0
        assert os.listdir(keep) == [] and os.listdir(other) == []  # nothing reached the host
    finally:
        os.rmdir(keep)
        os.rmdir(other)


def test_block_unix_sockets_filter():
    def child():
        linux.call("prctl", linux.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        linux.block_unix_sockets()
        for end in socket.socketpair():  # still allowed
            end.close()
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            return 1
        except PermissionError:
            return 0

    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.skip("the filter knows x86_64 and aarch64 only")
    assert _in_child(child) == 0
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()  # the test process is unaffected


def test_libc_call_raises_with_errno():
    with pytest.raises(OSError, match="not available"):
        linux.call("no_such_libc_function_qcoder")
    with pytest.raises(OSError) as info:
        linux.call("unshare", 0x1)  # not a namespace flag
    assert info.value.errno == 22  # EINVAL
    if not IS_ROOT:
        with pytest.raises(OSError):
            linux.mount("tmpfs", "/nonexistent-qcoder", "tmpfs", 0)


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/pids/cgroup.procs"),
                    reason="no cgroup v1 pids hierarchy here")
def test_cgroup_setup_write_teardown_and_removal():
    pid = os.fork()
    if pid == 0:  # a throwaway process stands for the launcher
        cfg = {"cgroup": True, "cgroup_memory_bytes": 64 << 20, "cgroup_pids_max": 5}
        made, layers = cgroups.setup(cfg)
        ok = layers.get("cgroup_pids") and os.path.exists(made["pids"])
        with open(os.path.join(made["pids"], "pids.max")) as f:
            ok = ok and f.read().strip() == "5"
        info = cgroups.teardown(made)
        ok = ok and not os.path.exists(made["pids"]) and info.get("oom_kills", 0) == 0
        os._exit(0 if ok else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    cgroups.remove_cgroup_dir("/sys/fs/cgroup/pids/qcoder-sandbox-no-such-run", 1, 0.0)
    path = "/sys/fs/cgroup/pids/qcoder-sandbox-test-" + str(os.getpid())
    os.mkdir(path)
    cgroups.remove_cgroup_dir(path, 5, 0.01)
    assert not os.path.exists(path)
    with tempfile.NamedTemporaryFile("r") as f:
        cgroups.write(f.name, 42)
        assert f.read() == "42"


def test_launcher_runs_as_a_script_without_the_package():
    """launcher.py loads its siblings from its own folder under ``python -I -S``."""
    from qcoder_lib.sandbox import parent

    script = (
        f"import sys; sys.path.insert(0, {str(parent.LAUNCHER.parent)!r}); "
        "import launcher, cgroups, linux, mounts, program; print(launcher.UID_BASE)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "1000000", done.stderr


def test_status_lines_are_json():
    import json

    from qcoder_lib.sandbox import status

    value = {"who": "exit", "s": 'q"\\\n\x01é\ud800', "n": [1, 2.5, True, None], "d": {"k": False}}
    assert json.loads(status.to_json(value)) == value
    with pytest.raises(TypeError, match="set"):
        status.to_json({"x": {1}})
    r, w = os.pipe()
    status.report(w, who="init", layers={"pid_ns": True})
    os.close(w)
    assert json.loads(os.read(r, 1000)) == {"who": "init", "layers": {"pid_ns": True}}
    os.close(r)
    r, w = os.pipe()
    os.close(r)
    status.report(w, who="gone")  # nobody reads any more (EPIPE): ignored
    os.close(w)
    try:
        raise ValueError("boom")
    except ValueError:
        text = status.error_text()
    assert text.startswith("ValueError: boom (at ") and "test_sandbox_parts.py:" in text


def test_count_asserts_keeps_every_line_in_place():
    from qcoder_lib.sandbox.counting import count_asserts, counter_name

    name = counter_name()
    assert name.isidentifier() and name != counter_name()
    src = (
        "def check(c):\r\n"
        "    assert c(1) == 1, 'é'  # comment\r\n"
        "    if 1: assert c(2) == 2; x = '\\f\u2028'\n"
        "    assert (c(3)\n"
        "            == 3)\n"
        "assert True\n"
    )
    out = count_asserts(src, "C")
    assert out.count("; C()") == 4
    assert len(out.splitlines()) == len(src.splitlines())
    calls = []
    exec(compile(out, "tests.py", "exec"), {"C": lambda: calls.append(1)})  # noqa: S102
    assert calls == [1]  # only the top-level assert ran (check was not called)
    for line_in, line_out in zip(src.splitlines(), out.splitlines()):
        assert line_out.replace("; C()", "") == line_in  # same text, same line numbers
    assert count_asserts("def broken(:\n", "C") == "def broken(:\n"
