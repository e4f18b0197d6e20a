"""Running untrusted, model-written code without harm.

The recipe runs code it did not write three times: synthetic pretraining data is kept only if
it runs, instruction data is checked by running it, and evaluation runs model completions
against tests. Everything in this course that executes such code goes through this module.

Public API
----------
- :func:`run_code` runs one program, :func:`check_program` runs a solution with its tests
  (HumanEval style; :func:`humaneval_program` builds its arguments), :func:`run_many` runs a
  batch on a worker pool, results in input order.
- :class:`ExecResult` is what each returns: ``status``, exit code, bounded stdout/stderr
  (truncation is marked), wall time, and ``layers``: which isolation layers were really active.
- :class:`SandboxError` is raised when the sandbox itself fails (never for the program).

Statuses: ``passed`` (exit 0 by itself; for :func:`check_program` the harness proof too),
``failed`` (non-zero exit, an exception, a failed test), ``timeout`` (wall clock or CPU limit),
``memory`` (``MemoryError`` under the address-space limit, or the run's memory cgroup killed
it), ``crashed`` (SIGSEGV, SIGABRT... e.g. a C stack overflow), ``killed`` (any other signal,
or more than ``output_limit_mb`` of output). Only ``passed`` is unforgeable by the child; the
other statuses describe how it ended and may read its stderr.

How it is built (``launcher.py``): the caller ``exec``s a small launcher L (never ``fork``s
itself, so a caller holding threads or CUDA is safe); L makes the namespaces and cgroups and
forks I, pid 1 of the new pid namespace, which sets up mounts, forks the program P, reaps
everything and kills everything left when P ends. P sets its limits, drops to its uid and
``exec``s the interpreter with ``harness.py``.

Isolation layers (each is tried; ``ExecResult.layers`` says which were active)
-----------------------------------------------------------------------------
1. Processes: a fresh process in its own session, the program in its own process group.
   When the program ends or its time is up, I kills every process of the run (the whole pid
   namespace; without one: the process group, every orphan re-parented to I as a child
   subreaper, and every process of the run's uid). If the caller dies, the run dies too.
2. Namespaces: network (not even a loopback: no network at all), pid (the program sees only
   its own processes and cannot signal any other), mount (fresh ``/proc``, private
   ``/dev/shm``, a size-limited tmpfs as working directory, ``/root`` and ``/home`` hidden
   under empty tmpfs, everything else read-only), IPC and UTS. Not root: a user namespace
   (``user_ns``) makes these possible where the kernel allows it. Without a network namespace
   the socket constructors are disabled in the child instead (``sockets_disabled``: weak).
3. Limits: rlimits on CPU seconds, address space (``memory_mb`` per process), file size, open
   files, processes (``RLIMIT_NPROC``), no core files; cgroup v1 ``memory`` (all processes of
   the run together: ``memory_mb + workdir_mb + 64`` MB) and ``pids`` (binds root too), where
   the host has them; a wall-clock timeout; an output cap.
4. An unprivileged user: as root, the program runs under a uid of its own
   (``1_000_000 + launcher pid``, unique among live runs), so ``RLIMIT_NPROC`` binds and the
   program cannot read root's files, signal other processes or undo the mounts;
   ``no_new_privs`` blocks setuid binaries (``su``, ``sudo``). This needs an interpreter any
   user may execute (e.g. ``/usr/bin/python3`` when the course's Python lives under
   ``/root``); without one the layer is reported off. A non-root caller's program runs as the
   caller (``unprivileged_user`` is False), without capabilities.
5. A minimal environment (no variables of the caller: no tokens, no credentials), stdin from
   ``/dev/null`` unless given, a fresh temporary working directory deleted afterwards.

``disable=`` switches optional layers off (``OPTIONAL_LAYERS``) to show what each one stops.

How the verdict is decided (by the parent, never by what the child prints)
-------------------------------------------------------------------------
:func:`run_code`: ``passed`` means the program exited 0 by itself within its limits.

:func:`check_program`: the parent makes a random 128-bit token per run and puts it in a pipe
(fd 3 of the child) whose write end it closes. The harness (``harness.py``) executes the
solution, then the tests, then ``check(entry_point)``; only after all of that returned
normally does it read the token and write it to a second pipe (fd 4). The parent counts the
run as passed only if fd 4 holds exactly the token, the process exited 0, and no limit was
hit. So a program that prints ``PASSED``, calls ``sys.exit(0)`` / ``os._exit(0)`` before or
during the tests, exits 0 from an ``atexit`` hook, or kills the harness is *not* passed: the
token was never read, so it was never written. What this does not stop: code written
specifically against this harness (reading fd 3 and writing fd 4 itself), and answers that
cheat the tests' comparisons (an object whose ``__eq__`` always returns True). No harness
that runs tests in the same process as the code under test can stop those; treat ``passed``
as "the tests ran to completion and did not fail", not as proof against a targeted attack.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LAYER_DESCRIPTIONS",
    "OPTIONAL_LAYERS",
    "STATUSES",
    "ExecResult",
    "SandboxError",
    "check_program",
    "humaneval_program",
    "run_code",
    "run_many",
    "sandbox_interpreter",
]

STATUSES = ("passed", "failed", "timeout", "memory", "crashed", "killed")
_HERE = Path(__file__).resolve().parent
_LAUNCHER = _HERE / "launcher.py"
_HARNESS_SRC = (_HERE / "harness.py").read_text(encoding="utf-8")
_HARNESS_NAME = "_qcoder_harness.py"  # copied next to the program (read once, at start)
_CRASH_SIGNALS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGABRT,
    signal.SIGILL,
    signal.SIGFPE,
    signal.SIGSYS,
    signal.SIGTRAP,
}
_UID_BASE = 1_000_000  # sandbox uids are _UID_BASE + the launcher's pid
WORKDIR_PREFIX = "qcoder-sandbox-"
# Layers a caller may switch off (to see what each one stops, or on a host that misbehaves).
OPTIONAL_LAYERS = ("net_ns", "pid_ns", "mount_ns", "cgroup", "unprivileged_user")


# Every key of ExecResult.layers, and what it means when True.
LAYER_DESCRIPTIONS = {
    "fresh_process": "a new process started by exec, never a fork of the caller",
    "session": "the launcher runs in a session of its own",
    "process_group": "the program runs in a process group of its own",
    "subreaper": "the sandbox's init adopts and kills orphans and daemons",
    "minimal_env": "no environment variable of the caller reaches the program",
    "temp_workdir": "a fresh temporary working directory, deleted afterwards",
    "rlimits": "rlimits on CPU, address space, file size, open files, processes, core",
    "cgroup_memory": "all processes of the run together are held to one memory limit",
    "cgroup_pids": "a pids cgroup bounds the run's process count (root included)",
    "user_ns": "not root: a user namespace made the other namespaces possible",
    "net_ns": "a network namespace: no network, not even the host's loopback",
    "sockets_disabled": "fallback without net_ns: Python's socket constructors raise",
    "pid_ns": "a pid namespace: only its own processes visible; all die with its init",
    "ipc_ns": "an IPC namespace: no System V IPC or POSIX queues shared with the host",
    "uts_ns": "a UTS namespace: its hostname is its own",
    "mount_ns": "a mount namespace: the mounts below change only the run's view",
    "private_proc": "/proc shows only the run's processes",
    "hidden_homes": "/root and /home are covered by an empty read-only tmpfs",
    "workdir_tmpfs": "the working directory is a size-limited tmpfs (bounds disk use)",
    "readonly_root": "everything but the working directory is read-only",
    "unprivileged_user": "as root: the program runs under an unprivileged uid",
    "unique_uid": "that uid is unique to this run (RLIMIT_NPROC counts only its processes)",
    "no_new_privs": "setuid binaries and file capabilities grant nothing",
}


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): e.g. the launcher could not start."""


@dataclasses.dataclass
class ExecResult:
    """What happened when the sandbox ran one program."""

    status: str  # one of STATUSES
    exit_code: int | None  # the program's exit code; None if it died from a signal
    stdout: str  # first max_output_bytes of stdout (decoded, truncation marked)
    stderr: str  # first max_output_bytes of stderr (decoded, truncation marked)
    wall_s: float  # wall-clock seconds from launch until everything was cleaned up
    signal: int | None = None  # the signal that ended the program, if any
    cpu_s: float | None = None  # user + system CPU seconds of the program process
    max_rss_mb: float | None = None  # peak resident memory of the program process
    layers: dict[str, bool] = dataclasses.field(default_factory=dict)  # see LAYER_DESCRIPTIONS
    stdout_bytes: int = 0  # how many bytes the program really wrote to stdout
    stderr_bytes: int = 0  # how many bytes the program really wrote to stderr
    reason: str = ""  # one line: why this status
    uid: int | None = None  # the uid the program ran as (None: not dropped, see layers)
    workdir: str = ""  # its temporary working directory (already deleted)

    @property
    def passed(self) -> bool:
        """True when the status is ``passed``."""
        return self.status == "passed"

    @property
    def truncated(self) -> bool:
        """True when stdout or stderr were cut to the output limit."""
        return "[... truncated" in self.stdout or "[... truncated" in self.stderr


# ----------------------------------------------------------------------------- interpreters


def _world_executable(path: str) -> bool:
    """True if a user who is neither owner nor group can execute ``path`` (every dir too)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return False
    if not (st.st_mode & stat.S_IXOTH and st.st_mode & stat.S_IROTH):
        return False
    parent = os.path.dirname(real)
    while True:
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def sandbox_interpreter() -> tuple[str, bool]:
    """The Python the sandbox runs programs with, and whether any user can execute it.

    Prefers the caller's own interpreter when it is world-executable, else a system one
    (``/usr/bin/python3``...). Returns ``(sys.executable, False)`` when none is, in which case
    the unprivileged-user layer cannot be used.
    """
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]
    which = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if which:
        candidates.append(which)
    for c in candidates:
        if c and os.path.exists(c) and _world_executable(c):
            return os.path.realpath(c), True
    return sys.executable, False


# ----------------------------------------------------------------------------- running


def _decode(buf: bytearray, total: int) -> str:
    text = bytes(buf).decode("utf-8", errors="replace")
    if total > len(buf):
        text += f"\n[... truncated {total - len(buf)} bytes]"
    return text


def _minimal_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _classify(exit_info: dict, timed_out: bool, stderr: str) -> tuple[str, str]:
    """Status and reason from how the program ended (harness token handled by the caller)."""
    sig = exit_info.get("signal")
    code = exit_info.get("exit_code")
    if timed_out:
        return "timeout", "wall-clock timeout: the sandbox killed every process"
    if sig == signal.SIGXCPU:
        return "timeout", "CPU time limit (RLIMIT_CPU)"
    if exit_info.get("oom") and (sig == signal.SIGKILL or code not in (0, None)):
        return "memory", "the memory cgroup's OOM killer stopped the run"
    tail = stderr.strip().splitlines()[-1:] if stderr.strip() else []
    if sig is not None:
        if sig in _CRASH_SIGNALS:
            return "crashed", f"died from signal {signal.Signals(sig).name}"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return "killed", f"killed by signal {name}"
    if code is None:
        return "killed", "the sandbox lost the program (no exit status)"
    if code != 0 and tail and (
        tail[0].startswith("MemoryError") or "Cannot allocate memory" in tail[0]
    ):
        return "memory", "MemoryError under the address-space limit"
    if code == 0:
        return "passed", "exit code 0"
    return "failed", f"exit code {code}"


def _execute(
    argv: list[str],
    files: dict[str, str | bytes],
    *,
    stdin: str | bytes | None,
    timeout_s: float,
    memory_mb: int,
    network: bool,
    max_output_bytes: int,
    max_processes: int,
    max_open_files: int,
    max_file_mb: int,
    workdir_mb: int,
    token: bytes | None,
    unprivileged: bool,
    output_limit_mb: float,
    disable: Iterable[str] = (),
) -> tuple[ExecResult, bytes | None]:
    """Launch ``argv`` in the sandbox with ``files`` in its working directory."""
    disable = set(disable)
    unknown = disable - set(OPTIONAL_LAYERS)
    if unknown:
        raise ValueError(f"disable={sorted(unknown)}: optional layers are {OPTIONAL_LAYERS}")
    if "unprivileged_user" in disable:
        unprivileged = False
    for name in files:
        if not name or "/" in name or name.startswith(".") or "\0" in name:
            raise ValueError(f"files: {name!r} must be a plain file name (no '/', no leading '.')")
    interp, world_ok = sandbox_interpreter()
    is_root = os.geteuid() == 0
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
    os.chmod(workdir, 0o755)
    fds_to_close: list[int] = []
    try:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            with open(os.path.join(workdir, name), "wb") as f:
                f.write(data)
            os.chmod(os.path.join(workdir, name), 0o644)
        stdin_path = None
        if stdin is not None:
            stdin_path = os.path.join(workdir, ".stdin")
            with open(stdin_path, "wb") as f:
                f.write(stdin.encode() if isinstance(stdin, str) else stdin)
            os.chmod(stdin_path, 0o644)
        status_r, status_w = os.pipe()
        fds_to_close += [status_r, status_w]
        pass_fds = [status_w]
        token_r = result_r = result_w = None
        if token is not None:
            token_r, token_w = os.pipe()
            os.write(token_w, token)
            os.close(token_w)
            result_r, result_w = os.pipe()
            fds_to_close += [token_r, result_r, result_w]
            pass_fds += [token_r, result_w]
        drop = is_root and unprivileged and world_ok
        full_argv = [interp if a == "{python}" else a for a in argv]
        cfg: dict[str, Any] = {
            "status_fd": status_w,
            "parent_pid": os.getpid(),
            "workdir": workdir,
            "argv": full_argv,
            # still root after a failed uid drop: the caller's own interpreter if none is shared
            "argv_privileged": [
                (interp if world_ok else sys.executable) if a == "{python}" else a for a in argv
            ],
            "hide_dirs": _dirs_to_hide(workdir, interp if world_ok else sys.executable),
            "env": _minimal_env(workdir),
            "cpu_s": max(1, int(timeout_s + 1.999)),
            "memory_bytes": int(memory_mb) * 1024 * 1024,
            "fsize_bytes": int(max_file_mb) * 1024 * 1024,
            "nofile": int(max_open_files),
            "nproc": int(max_processes),
            "workdir_mb": int(workdir_mb) + _files_mb(workdir),
            "stdin_path": stdin_path,
            "token_fd": token_r,
            "result_fd": result_w,
            "cgroup": "cgroup" not in disable,
            # all processes of the run together: one program's worth plus its tmpfs and slack
            "cgroup_memory_bytes": (int(memory_mb) + int(workdir_mb) + 64) * 1024 * 1024,
            "net_ns": not network and "net_ns" not in disable,
            "mount_ns": "mount_ns" not in disable,
            "pid_ns": "pid_ns" not in disable,
            "uid": None,  # set below once the launcher's pid is known (see launcher.py)
            "unique_uid": drop,
            "network": network,
        }
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(_LAUNCHER), json.dumps(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        os.close(status_w)
        fds_to_close.remove(status_w)
        for fd in (token_r, result_w):
            if fd is not None:
                os.close(fd)
                fds_to_close.remove(fd)
        res, proof = _collect(
            proc, status_r, result_r, t0, timeout_s, max_output_bytes, output_limit_mb
        )
        res.workdir = workdir
        return res, proof
    finally:
        for fd in fds_to_close:
            try:
                os.close(fd)
            except OSError:
                pass
        _remove_tree(workdir)


def _dirs_to_hide(workdir: str, interpreter: str) -> list[str]:
    """Home directories to cover with an empty tmpfs (where credentials usually live).

    A directory is left visible when the interpreter or the working directory is inside it
    (e.g. a conda install in the caller's home); ``layers["hidden_homes"]`` then says False.
    """
    keep = [os.path.realpath(p) for p in (workdir, interpreter)]
    if os.path.realpath(interpreter) == os.path.realpath(sys.executable):
        keep += [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)]
    out = []
    for d in ("/root", "/home", os.path.expanduser("~")):
        d = os.path.realpath(d)
        if d in out or d == "/" or not os.path.isdir(d):
            continue
        if any(k == d or k.startswith(d + os.sep) for k in keep):
            continue
        out.append(d)
    return out


def _files_mb(workdir: str) -> int:
    """Room the given files take in the working directory (added to its tmpfs size)."""
    total = sum(e.stat().st_size for e in os.scandir(workdir) if e.is_file())
    return (total + (1 << 20) - 1) >> 20


def _remove_tree(path: str) -> None:
    def onerror(func, p, _exc):
        try:
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def _collect(proc, status_r, result_r, t0, timeout_s, max_output, output_limit_mb):
    sel = selectors.DefaultSelector()
    bufs = {k: bytearray() for k in ("stdout", "stderr", "status", "result")}
    totals = dict.fromkeys(bufs, 0)
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr", status_r: "status"}
    if result_r is not None:
        names[result_r] = "result"
    for fd in names:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = t0 + timeout_s
    timed_out = output_exceeded = False
    output_limit = int(output_limit_mb * 1024 * 1024)
    hard_deadline = None
    while sel.get_map():
        now = time.monotonic()
        stopping = timed_out or output_exceeded
        if not stopping and now >= deadline:
            timed_out = stopping = True
        if not output_exceeded and totals["stdout"] + totals["stderr"] > output_limit:
            output_exceeded = stopping = True
        if stopping and hard_deadline is None:
            _request_stop(proc)
            hard_deadline = now + 3.0
        if hard_deadline is not None and now >= hard_deadline:
            _force_kill(proc)
            break
        wait = (hard_deadline if stopping else deadline) - now
        for key, _ in sel.select(timeout=max(0.0, min(wait, 1.0))):
            fd = key.fd
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(fd)
                continue
            name = names[fd]
            totals[name] += len(data)
            limit = 1 << 16 if name in ("status", "result") else max_output
            room = limit - len(bufs[name])
            if room > 0:
                bufs[name] += data[:room]
    sel.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _force_kill(proc)
        proc.wait()
    _remove_cgroups(proc.pid)
    proc.stdout.close()
    proc.stderr.close()
    wall = time.monotonic() - t0
    layers: dict[str, bool] = {"fresh_process": True, "minimal_env": True, "temp_workdir": True}
    exit_info: dict = {}
    uid_seen = None
    for line in bytes(bufs["status"]).decode(errors="replace").splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("who") == "error":
            raise SandboxError(f"the sandbox failed in its {msg.get('where')}: {msg.get('error')}")
        if msg.get("who") == "exit":
            exit_info.update(msg)
        elif msg.get("who") == "cgroup":
            exit_info["oom"] = msg.get("oom_kills", 0) > 0
        elif msg.get("who") == "program" and isinstance(msg.get("uid"), int):
            uid_seen = msg["uid"]
        if msg.get("who") != "exit":
            for k, v in msg.get("layers", {}).items():
                if isinstance(v, bool):
                    layers[k] = v
    stderr = _decode(bufs["stderr"], totals["stderr"])
    lost = "exit_code" not in exit_info and "signal" not in exit_info
    if lost and proc.returncode not in (0, -signal.SIGKILL) and not (timed_out or output_exceeded):
        raise SandboxError(
            f"the sandbox launcher ({_LAUNCHER.name}) failed with exit code "
            f"{proc.returncode}: {stderr[-2000:]}"
        )
    status, reason = _classify(exit_info, timed_out and not output_exceeded, stderr)
    if output_exceeded and not timed_out:
        status, reason = "killed", f"wrote more than {output_limit_mb:g} MB of output"
    res = ExecResult(
        status=status,
        exit_code=exit_info.get("exit_code"),
        stdout=_decode(bufs["stdout"], totals["stdout"]),
        stderr=stderr,
        wall_s=wall,
        signal=exit_info.get("signal"),
        cpu_s=exit_info.get("cpu_s"),
        max_rss_mb=(exit_info["maxrss_kb"] / 1024) if "maxrss_kb" in exit_info else None,
        layers=layers,
        stdout_bytes=totals["stdout"],
        stderr_bytes=totals["stderr"],
        reason=reason,
        uid=uid_seen,
    )
    return res, (bytes(bufs["result"]) if result_r is not None else None)


def _remove_cgroups(launcher_pid: int) -> None:
    """Remove the run's cgroups if the launcher could not (it was force-killed)."""
    from qcoder_lib.sandbox.launcher import remove_cgroup_dir  # Linux-only module: import here

    for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"):
        remove_cgroup_dir(os.path.join(root, f"{WORKDIR_PREFIX}{launcher_pid}"), 50, 0.02)


def _request_stop(proc) -> None:
    """Ask the launcher to have its init kill every process of the run."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _force_kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _check_language(language: str) -> None:
    if language != "python":
        raise ValueError(
            f"language {language!r} is not supported by the sandbox yet; supported: 'python'"
        )


def run_code(
    program: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    network: bool = False,
    max_output_bytes: int = 64_000,
    max_processes: int = 64,
    max_open_files: int = 256,
    max_file_mb: int = 16,
    workdir_mb: int = 64,
    files: dict[str, str | bytes] | None = None,
    unprivileged: bool = True,
    output_limit_mb: float = 8.0,
    disable: Iterable[str] = (),
) -> ExecResult:
    """Run one untrusted ``program`` in the sandbox and say what happened.

    ``passed`` means it exited 0 by itself within ``timeout_s`` (wall clock) and the limits.
    ``stdin`` is fed to it (else it reads ``/dev/null``); ``files`` are extra files put next to
    it in its working directory. ``network=True`` skips the network namespace (not advised).
    Output beyond ``max_output_bytes`` per stream is dropped (and marked); a program that
    writes more than ``output_limit_mb`` in all is killed (status ``killed``).
    ``disable`` switches off optional layers by name (see ``OPTIONAL_LAYERS``), e.g. to show
    in a notebook what each one stops; ``ExecResult.layers`` always says what was active.
    """
    _check_language(language)
    if not isinstance(program, str):
        raise TypeError(f"program must be a str, got {type(program).__name__}")
    all_files = dict(files or {})
    all_files["main.py"] = program
    all_files[_HARNESS_NAME] = _HARNESS_SRC
    argv = ["{python}", "-I", "-B", _HARNESS_NAME, "NET", "run", "main.py"]
    res, _ = _execute(
        argv,
        all_files,
        stdin=stdin,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        network=network,
        max_output_bytes=max_output_bytes,
        max_processes=max_processes,
        max_open_files=max_open_files,
        max_file_mb=max_file_mb,
        workdir_mb=workdir_mb,
        token=None,
        unprivileged=unprivileged,
        output_limit_mb=output_limit_mb,
        disable=disable,
    )
    return res


def check_program(
    solution: str,
    tests: str,
    entry_point: str | None = None,
    *,
    language: str = "python",
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    **kwargs,
) -> ExecResult:
    """Run ``solution`` then ``tests`` (then ``check(entry_point)``) and let the parent judge.

    ``passed`` only when the harness proved that every test ran to completion (the per-run
    token, see the module docstring) and the process exited 0 within its limits. Other
    keyword arguments are those of :func:`run_code`.
    """
    _check_language(language)
    token = secrets.token_hex(16).encode()
    argv = ["{python}", "-I", "-B", _HARNESS_NAME, "NET", "check", "solution.py", "tests.py"]
    if entry_point:
        argv.append(entry_point)
    files = dict(kwargs.pop("files", None) or {})
    files.update({"solution.py": solution, "tests.py": tests, _HARNESS_NAME: _HARNESS_SRC})
    opts = {
        "stdin": None,
        "network": False,
        "max_output_bytes": 64_000,
        "max_processes": 64,
        "max_open_files": 256,
        "max_file_mb": 16,
        "workdir_mb": 64,
        "unprivileged": True,
        "output_limit_mb": 8.0,
        "disable": (),
    }
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise TypeError(f"check_program got unknown keyword arguments: {sorted(unknown)}")
    opts.update(kwargs)
    res, proof = _execute(
        argv, files, timeout_s=timeout_s, memory_mb=memory_mb, token=token, **opts
    )
    if res.status == "passed":
        if proof != token:
            res.status = "failed"
            res.reason = (
                "exit code 0 but the test harness did not finish (no valid completion token)"
            )
        else:
            res.reason = "every test ran to completion (completion token verified)"
    return res


def humaneval_program(problem: dict, completion: str) -> dict[str, str]:
    """The :func:`check_program` arguments for a HumanEval ``problem`` and a ``completion``."""
    return {
        "solution": problem["prompt"] + completion,
        "tests": problem["test"],
        "entry_point": problem["entry_point"],
    }


def _run_task(task, kwargs):
    if isinstance(task, str):
        return run_code(task, **kwargs)
    if isinstance(task, dict):
        return check_program(**{**kwargs, **task})
    raise TypeError(
        f"run_many: each task must be a program str or a dict of check_program arguments, "
        f"got {type(task).__name__}"
    )


def run_many(
    programs: Iterable[str | dict],
    *,
    workers: int | None = None,
    start_method: str = "thread",
    **kwargs,
) -> list[ExecResult]:
    """Run many programs in the sandbox on a worker pool; results come back in input order.

    Each task is a program ``str`` (run with :func:`run_code`) or a ``dict`` of
    :func:`check_program` arguments (e.g. from :func:`humaneval_program`); ``kwargs`` go to
    every call. ``workers`` defaults to the number of CPUs.

    ``start_method="thread"`` (default): threads that each wait on one sandboxed process. Every
    program already runs in its own freshly ``exec``'d process, so no Python process is ever
    forked, and it is safe from a process that holds threads or CUDA. ``"spawn"`` or
    ``"forkserver"`` use a process pool with that start method instead (never ``fork``).
    """
    tasks: Sequence = list(programs)
    workers = workers or os.cpu_count() or 1
    if start_method == "thread":
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    elif start_method in ("spawn", "forkserver"):
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(start_method)
        )
    else:
        raise ValueError(
            f"start_method {start_method!r}: use 'thread', 'spawn' or 'forkserver' (never 'fork')"
        )
    with pool:
        futures = [pool.submit(_run_task, t, kwargs) for t in tasks]
        return [f.result() for f in futures]
