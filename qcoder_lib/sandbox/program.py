"""What the program's process P does between the sandbox's fork and the ``exec`` of the
interpreter: become the OOM killer's first pick, its own process group, make every mount but
its own read-only, set rlimits, take its files and drop to its unprivileged uid, no new
privileges, the seccomp filter, its descriptors (0: stdin, 1/2: output, 3/4: token and
result pipes), then ``exec`` the harness. Loaded by ``launcher.py`` (stdlib only)."""

import _signal as signal  # the C module: "signal" imports enum (start-up time)
import fcntl
import os
import resource

if __package__:
    from . import linux, mounts, status
    from .cgroups import write as _write
else:  # loaded by launcher.py as a plain script module
    import linux
    import mounts
    import status
    from cgroups import write as _write

_call = linux.call



def exec_program(cfg, status_fd, ready_r):
    """In P: limits, own process group, unprivileged uid, minimal env, then exec."""
    try:
        _prepare_and_exec(cfg, status_fd, ready_r)
    except BaseException:  # noqa: BLE001 - report the sandbox's own failure, never run on
        status.report(status_fd, who="error", where="program setup", error=status.error_text())
        os._exit(127)


def _prepare_and_exec(cfg, status_fd, ready_r):
    layers = {}
    try:
        _write("/proc/self/oom_score_adj", 1000)  # the OOM killer's first pick: the program
        layers["oom_protection"] = bool(cfg.get("oom_launcher"))
    except OSError:
        layers["oom_protection"] = False
    try:
        os.setpgid(0, 0)
        layers["process_group"] = True
    except OSError:
        layers["process_group"] = False
    os.read(ready_r, 1)  # wait until I has recorded our pid
    os.close(ready_r)
    # Still privileged (root, or every capability in our user namespace): make every mount but
    # the workdir and the private tmp read-only; after the oom_score_adj write above (/proc too).
    writable = cfg.get("writable_mounts")
    layers["readonly_root"] = writable is not None and mounts.make_readonly(writable)
    limits = {
        "cpu": (resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1),
        "address_space": (resource.RLIMIT_AS, cfg["memory_bytes"], cfg["memory_bytes"]),
        "file_size": (resource.RLIMIT_FSIZE, cfg["fsize_bytes"], cfg["fsize_bytes"]),
        "open_files": (resource.RLIMIT_NOFILE, cfg["nofile"], cfg["nofile"]),
        "processes": (resource.RLIMIT_NPROC, cfg["nproc"], cfg["nproc"]),
        "core": (resource.RLIMIT_CORE, 0, 0),
    }
    ok = True
    for which, soft, hard in limits.values():
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError):
            ok = False
    layers["rlimits"] = ok
    work = cfg["workdir"]
    uid = cfg.get("uid")
    entries = [os.path.join(work, name) for name in os.listdir(work)]
    ran_as = None
    layers["unprivileged_user"] = False
    if uid is not None and os.geteuid() == 0:
        # Our own uid first; "nobody" if the OS refuses it (e.g. a small user-ns uid map).
        for candidate in (uid, 65534):
            try:
                for path in [work, *entries]:  # owner-only (0700 / 0600): this run's uid alone
                    os.chown(path, candidate, candidate)
                os.setgroups([])
                os.setgid(candidate)
                os.setuid(candidate)
                layers["unprivileged_user"] = True
                layers["unique_uid"] = candidate == uid
                ran_as = candidate
                break
            except OSError:
                continue
    try:
        _call("prctl", linux.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # cleared by setuid
    except OSError:
        pass
    try:
        _call("prctl", linux.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        layers["no_new_privs"] = True
    except OSError:
        layers["no_new_privs"] = False
    layers["unix_sockets_blocked"] = False
    if cfg.get("seccomp") and layers["no_new_privs"]:
        try:
            linux.block_unix_sockets()
            layers["unix_sockets_blocked"] = True
        except OSError:
            pass
    # still root after a failed uid drop: the caller's own interpreter
    python = cfg["interpreter" if layers["unprivileged_user"] else "interpreter_privileged"]
    no_sockets = not cfg.get("net_ns_active") and not cfg.get("network")
    layers["sockets_disabled"] = no_sockets
    net_mode = "no-sockets" if no_sockets else "net-ok"
    argv = [python, "-I", "-B", cfg["harness"], net_mode, *cfg["harness_args"]]
    status.report(status_fd, who="program", layers=layers, uid=ran_as)
    # Move every fd we keep out of the way first, so that no dup2 below overwrites another.
    status_fd = fcntl.fcntl(status_fd, fcntl.F_DUPFD_CLOEXEC, 10)  # closed by a successful exec
    moved = {}
    for target, key in ((3, "token_fd"), (4, "result_fd")):
        if cfg.get(key) is not None:
            moved[target] = fcntl.fcntl(cfg[key], fcntl.F_DUPFD_CLOEXEC, 10)
    os.chdir(work)
    fd0 = os.open(cfg.get("stdin_path") or os.devnull, os.O_RDONLY)
    os.dup2(fd0, 0)
    # fds 1, 2 are the parent's stdout/stderr pipes; 3/4 are the token and result pipes.
    keep = {0, 1, 2, status_fd, *moved.values()}
    for target, fd in moved.items():
        os.dup2(fd, target)  # dup2 makes the target inheritable
        keep.add(target)
    for fd in range(3, 1024):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    for fd in moved.values():
        os.close(fd)
    try:
        os.execve(argv[0], argv, cfg["env"])
    except OSError as e:
        status.report(status_fd, who="error", where="exec", error=f"{argv[0]}: {e}")
        os._exit(127)
