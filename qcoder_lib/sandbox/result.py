"""What a sandbox run returns: the statuses, :class:`ExecResult`, the layer names, and how the
parent turns the way a program ended into a status (never from what the program printed)."""

from __future__ import annotations

import dataclasses
import signal

STATUSES = ("passed", "failed", "no_tests", "timeout", "memory", "crashed", "killed")
# Layers a caller may switch off (to see what each one stops, or on a host that misbehaves).
# "seccomp" lifts only the Unix-socket block (e.g. for multiprocessing's Manager or forkserver,
# which listen on a Unix socket); the private /tmp and /run still hide the host's sockets.
OPTIONAL_LAYERS = ("net_ns", "pid_ns", "mount_ns", "cgroup", "unprivileged_user", "seccomp")
_CRASH_SIGNALS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGABRT,
    signal.SIGILL,
    signal.SIGFPE,
    signal.SIGSYS,
    signal.SIGTRAP,
}

# Every key of ExecResult.layers, and what it means when True.
LAYER_DESCRIPTIONS = {
    "fresh_process": "a new process started by exec, never a fork of the caller",
    "session": "the launcher runs in a session of its own",
    "process_group": "the program runs in a process group of its own",
    "subreaper": "the sandbox's init adopts and kills orphans and daemons",
    "minimal_env": "no environment variable of the caller reaches the program",
    "temp_workdir": "a fresh temporary working directory (owner-only on the host), deleted afterwards",
    "rlimits": "rlimits on CPU, address space, file size, open files, processes, core",
    "oom_protection": "the launcher is exempt from the OOM killer and the program is its first pick",
    "cgroup_memory": "all processes of the run together are held to one memory limit",
    "cgroup_pids": "a pids cgroup bounds the run's process count (root included)",
    "user_ns": "not root: a user namespace made the other namespaces possible",
    "net_ns": "a network namespace: no network, not even the host's loopback",
    "sockets_disabled": "fallback without net_ns: Python's socket constructors raise",
    "unix_sockets_blocked": "seccomp: socket(AF_UNIX) fails, so no host socket file can be reached",
    "pid_ns": "a pid namespace: only its own processes visible; all die with its init",
    "ipc_ns": "an IPC namespace: no System V IPC or POSIX queues shared with the host",
    "uts_ns": "a UTS namespace: its hostname is its own",
    "mount_ns": "a mount namespace: the mounts below change only the run's view",
    "private_proc": "/proc shows only the run's processes",
    "private_tmp": "/tmp, /var/tmp, /dev/shm are fresh tmpfs; /run and /var/run are empty",
    "hidden_homes": "/root and /home are covered by an empty read-only tmpfs",
    "workdir_tmpfs": "the working directory is a size-limited tmpfs (bounds disk use)",
    "readonly_root": "every mount is read-only (checked) but the workdir and the private tmp",
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
    checks_run: int | None = None  # check_program: asserts + unittest cases that completed

    @property
    def passed(self) -> bool:
        """True when the status is ``passed``."""
        return self.status == "passed"

    @property
    def truncated(self) -> bool:
        """True when stdout or stderr were cut to the output limit."""
        return "[... truncated" in self.stdout or "[... truncated" in self.stderr


def classify(exit_info: dict, timed_out: bool, stderr: str) -> tuple[str, str]:
    """Status and reason from how the program ended: ``exit_info`` is the init process's exit
    report (``exit_code`` or ``signal``, ``oom``), ``timed_out`` the parent's wall clock. The
    harness's completion token is judged by the caller (:func:`check_program`)."""
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
    if code % 256 == 0:
        return "failed", f"exit status {code} (sys.exit({code}); the OS would wrap it to 0)"
    return "failed", f"exit code {code}"
