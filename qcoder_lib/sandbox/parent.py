"""The caller's side of one run: prepare the working directory, start the launcher, watch the
clock and the output, collect the verdict inputs, and clean up whatever happens.

The caller never forks: it ``exec``s ``launcher.py`` (a fresh interpreter) with the run's JSON
configuration; see ``launcher.py`` for what happens below it. If anything interrupts the wait
(Ctrl-C in a notebook, an alarm, any exception), the run is stopped, its processes killed and
its cgroups and working directory removed before the exception goes on.
"""

from __future__ import annotations

import json
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .interpreter import dirs_to_hide, dirs_to_replace, sandbox_interpreter
from .limits import SANDBOX_PROCESSES, Limits
from .result import OPTIONAL_LAYERS, ExecResult, SandboxError, classify

_HERE = Path(__file__).resolve().parent
LAUNCHER = _HERE / "launcher.py"
HARNESS_SRC = (_HERE / "harness.py").read_text(encoding="utf-8")
HARNESS_NAME = "_qcoder_harness.py"  # copied next to the program (read once, at start)
WORKDIR_PREFIX = "qcoder-sandbox-"
UID_BASE = 1_000_000  # sandbox uids are UID_BASE + the launcher's pid (see launcher.py)
_STOP_GRACE_S = 3.0  # after asking the launcher to stop: how long before SIGKILL

# Batches (run_many): the launchers each batch has running, so that an interrupted batch can
# stop them at once instead of waiting for their timeouts.
_batch_lock = threading.Lock()
_batches: dict[object, set] = {}
_stopped: set = set()
_thread = threading.local()


def join_batch(batch: object | None) -> None:
    """Runs started by this thread from now on belong to ``batch`` (``None``: to none)."""
    _thread.batch = batch


def stop_batch(batch: object) -> None:
    """Stop every run of ``batch`` now, and any that starts later (their init kills them)."""
    with _batch_lock:
        _stopped.add(batch)
        procs = list(_batches.pop(batch, ()))
    for proc in procs:
        _request_stop(proc)


def end_batch(batch: object) -> None:
    """Forget ``batch`` (after its last run)."""
    with _batch_lock:
        _stopped.discard(batch)
        _batches.pop(batch, None)


def _register(proc) -> object | None:
    batch = getattr(_thread, "batch", None)
    if batch is None:
        return None
    with _batch_lock:
        stopped = batch in _stopped
        if not stopped:
            _batches.setdefault(batch, set()).add(proc)
    if stopped:
        _request_stop(proc)
    return batch


def _unregister(batch, proc) -> None:
    if batch is not None:
        with _batch_lock:
            _batches.get(batch, set()).discard(proc)


def encode_text(text: str | bytes, what: str) -> bytes:
    """UTF-8 bytes of a program, a file or stdin. A lone surrogate (``'\\ud800'``) is kept as
    its (invalid) UTF-8 bytes, so that it is that program's failure (a ``SyntaxError`` or a
    decode error inside the sandbox), never an exception in the caller."""
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str or bytes, got {type(text).__name__}")
    return text.encode("utf-8", errors="surrogatepass")


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


def _write_private(path: str, data: bytes) -> None:
    """A file only its owner can read (concurrent runs and other users cannot)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def execute(
    harness_args: list[str],
    files: dict[str, bytes],
    *,
    stdin: bytes | None,
    limits: Limits,
    network: bool,
    unprivileged: bool,
    disable: Iterable[str],
    token: bytes | None,
) -> tuple[ExecResult, bytes]:
    """Run ``harness.py <net> *harness_args`` in the sandbox with ``files`` in its working
    directory; return the result and what the harness wrote on its result pipe (fd 4)."""
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
    privileged_interp = interp if world_ok else sys.executable
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)  # 0700: only its owner can look inside
    fds_to_close: list[int] = []
    proc = None
    try:
        for name, data in files.items():
            _write_private(os.path.join(workdir, name), data)
        stdin_path = None
        if stdin is not None:
            stdin_path = os.path.join(workdir, ".stdin")
            _write_private(stdin_path, stdin)
        files_mb = (sum(map(len, files.values())) + len(stdin or b"") + (1 << 20) - 1) >> 20
        status_r, status_w = os.pipe()
        result_r, result_w = os.pipe()
        fds_to_close += [status_r, status_w, result_r, result_w]
        pass_fds = [status_w, result_w]
        token_r = None
        if token is not None:
            token_r, token_w = os.pipe()
            os.write(token_w, token)
            os.close(token_w)
            fds_to_close.append(token_r)
            pass_fds.append(token_r)
        tmp_dirs, runtime_dirs, private_complete = dirs_to_replace(privileged_interp)
        cfg: dict[str, Any] = {
            "status_fd": status_w,
            "parent_pid": os.getpid(),
            "workdir": workdir,
            "interpreter": interp,
            # still root after a failed uid drop: the caller's own interpreter if none is shared
            "interpreter_privileged": privileged_interp,
            "harness": HARNESS_NAME,
            "harness_args": list(harness_args),
            "hide_dirs": dirs_to_hide(workdir, privileged_interp),
            "tmp_dirs": tmp_dirs,
            "runtime_dirs": runtime_dirs,
            "private_tmp_complete": private_complete,
            "env": _minimal_env(workdir),
            "cpu_s": limits.cpu_s,
            "memory_bytes": limits.memory_mb << 20,
            "fsize_bytes": limits.max_file_mb << 20,
            "nofile": limits.max_open_files,
            "nproc": limits.max_processes,
            "cgroup_pids_max": limits.max_processes + SANDBOX_PROCESSES,
            "workdir_mb": limits.workdir_mb + files_mb,
            "tmp_mb": limits.workdir_mb,
            "stdin_path": stdin_path,
            "token_fd": token_r,
            "result_fd": result_w,
            "cgroup": "cgroup" not in disable,
            "seccomp": "seccomp" not in disable and not network,
            # all processes of the run together: one program's worth, its workdir (with the
            # given files and stdin, copied into it), its private /tmp, and slack for the
            # sandbox's own two small processes
            "cgroup_memory_bytes": (limits.memory_mb + 2 * limits.workdir_mb + files_mb + 64) << 20,
            "net_ns": not network and "net_ns" not in disable,
            "mount_ns": "mount_ns" not in disable,
            "pid_ns": "pid_ns" not in disable,
            "drop_uid": os.geteuid() == 0 and unprivileged and world_ok,
            "network": network,
        }
        t0 = time.monotonic()
        proc = subprocess.Popen(
            # marshal: the launcher reads it without importing json (its start-up time)
            [sys.executable, "-I", "-S", "-B", str(LAUNCHER), marshal.dumps(cfg).hex()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        for fd in pass_fds:
            os.close(fd)
            fds_to_close.remove(fd)
        batch = _register(proc)
        try:
            res, result = _collect(proc, status_r, result_r, t0, limits)
        finally:
            _unregister(batch, proc)
        res.workdir = workdir
        return res, result
    except BaseException:
        if proc is not None:
            _stop_now(proc)  # an interrupt (Ctrl-C, alarm) must not leave the run alive
        raise
    finally:
        for fd in fds_to_close:
            try:
                os.close(fd)
            except OSError:
                pass
        _remove_tree(workdir)


def _stop_now(proc: subprocess.Popen) -> None:
    """Stop a run whose caller was interrupted: ask the launcher (its init kills every process
    of the run), then SIGKILL its session if it lingers; remove its cgroups."""
    _request_stop(proc)
    try:
        proc.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _force_kill(proc)
        proc.wait()
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        _remove_cgroups(proc.pid)


def _decode(buf: bytearray, total: int) -> str:
    text = bytes(buf).decode("utf-8", errors="replace")
    if total > len(buf):
        text += f"\n[... truncated {total - len(buf)} bytes]"
    return text


def _remove_tree(path: str) -> None:
    def onerror(func, p, _exc):
        try:
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def _collect(proc, status_r, result_r, t0, limits: Limits):
    """Read stdout, stderr, the status and result pipes until the launcher is done (or time is
    up: then stop the run); return the :class:`ExecResult` and the result pipe's bytes."""
    sel = selectors.DefaultSelector()
    bufs = {k: bytearray() for k in ("stdout", "stderr", "status", "result")}
    totals = dict.fromkeys(bufs, 0)
    names = {
        proc.stdout.fileno(): "stdout",
        proc.stderr.fileno(): "stderr",
        status_r: "status",
        result_r: "result",
    }
    for fd in names:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = t0 + limits.timeout_s
    timed_out = output_exceeded = False
    output_limit = int(limits.output_limit_mb * 1024 * 1024)
    hard_deadline = None
    try:
        while sel.get_map():
            now = time.monotonic()
            stopping = timed_out or output_exceeded
            if not stopping and now >= deadline:
                timed_out = stopping = True
            if not output_exceeded and totals["stdout"] + totals["stderr"] > output_limit:
                output_exceeded = stopping = True
            if stopping and hard_deadline is None:
                _request_stop(proc)
                hard_deadline = now + _STOP_GRACE_S
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
                limit = 1 << 16 if name in ("status", "result") else limits.max_output_bytes
                room = limit - len(bufs[name])
                if room > 0:
                    bufs[name] += data[:room]
    finally:
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
            f"the sandbox launcher ({LAUNCHER.name}) failed with exit code "
            f"{proc.returncode}: {stderr[-2000:]}"
        )
    status, reason = classify(exit_info, timed_out and not output_exceeded, stderr)
    if output_exceeded and not timed_out:
        status, reason = "killed", f"wrote more than {limits.output_limit_mb:g} MB of output"
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
    return res, bytes(bufs["result"])


def _remove_cgroups(launcher_pid: int) -> None:
    """Remove the run's cgroups if the launcher could not (it was force-killed)."""
    from .cgroups import CGROUP_V1, remove_cgroup_dir

    for root in CGROUP_V1.values():
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
