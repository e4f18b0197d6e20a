"""The sandbox launcher: the small root-side program between the parent and untrusted code.

This file is executed as a script (``python -I -S launcher.py CONFIG_JSON``) by
:func:`qcoder_lib.sandbox.run_code`, never imported by untrusted code. It uses only the
standard library and ``ctypes`` so that it starts fast and runs single-threaded, which makes
``fork`` safe here (the parent never forks itself: it only ``exec``s this script).

Process tree (host pids on the left)::

    parent (your Python, maybe threaded / CUDA)   waits, reads pipes, decides the verdict
     └─ L  launcher, new session                  unshare(net, mount, pid, ipc, uts)
         └─ I  "init", pid 1 of the new pid ns    mounts, reaps, kills everything at the end
             └─ P  the program                    rlimits, own process group, no-new-privs,
                                                  unprivileged uid, minimal env, then exec

Every layer that cannot be set up is skipped, and each process writes one JSON line on the
status pipe saying which layers are active, so the parent can report them. The last line,
written by I, is the program's exit status and resource usage.

Isolation layers (``ExecResult.layers`` says which were active; ``LAYER_DESCRIPTIONS``)
1. Processes: L in a session of its own, P in its own process group; when P ends or time is
   up, I kills every process of the run (the whole pid namespace; without one: the process
   group, orphans re-parented to I as a child subreaper, every process of the run's uid). If
   the caller dies or is interrupted, the run dies too.
2. Namespaces: network (no network at all, not even loopback), pid, mount, IPC, UTS. Not
   root: a user namespace makes them possible. The filesystem view (``mounts.py``): private
   ``/proc``, fresh ``/tmp``, ``/var/tmp``, ``/dev/shm``; empty ``/run``, ``/var/run``,
   ``/root``, ``/home``; the workdir a size-limited tmpfs; every other mount read-only.
3. Limits (``cgroups.py``, ``program.py``): rlimits on CPU, address space, file size, open
   files, processes, no core files; cgroup v1 ``memory`` (every process of the run together,
   the run's files included) and ``pids``; the parent's wall clock and output cap.
4. An unprivileged uid of its own (as root), no_new_privs, and a seccomp filter: no Unix
   socket can be created, so no host socket file can be reached (``network=True`` lifts it).
5. A minimal environment, stdin from ``/dev/null`` unless given, owner-only files.
"""

# Every module is imported here, before the mounts may hide the interpreter's home directory
# (os.wait4 needs resource too).
import _signal as signal  # the C module: "signal" imports enum (start-up time)
import marshal
import os
import resource  # noqa: F401 - os.wait4 imports it lazily, when the mounts may hide it
import sys
import time

if __package__:
    from . import cgroups, linux, program, status
else:  # run as a script (-I -S): load the stdlib-only siblings from this folder
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import cgroups
        import linux
        import program
        import status
    finally:
        del sys.path[0]
mounts = program.mounts

_call = linux.call
UID_BASE = 1_000_000  # sandbox uids are UID_BASE + the launcher's pid (unique among live runs)


def _remove_tree(path):
    """Delete a folder and everything in it, ignoring errors (``shutil`` costs start-up time)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            _remove_tree(e.path)
        else:
            try:
                os.unlink(e.path)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _proc_entries():
    """Names under /proc (empty where there is no /proc, e.g. macOS)."""
    try:
        return os.listdir("/proc")
    except OSError:
        return []


def _children_of(pid):
    """Host-visible children of ``pid``, found by scanning /proc (works in every mode)."""
    kids = []
    for name in _proc_entries():
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid:
            kids.append(int(name))
    return kids


def _tasks_of_uid(uid):
    """How many tasks (processes and threads) the user already has: RLIMIT_NPROC counts them."""
    n = 0
    for name in _proc_entries():
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                text = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            n += int(fields.get("Threads", "1"))
    return n


def _enter_user_ns():
    """Not root: a user namespace gives us the right to make the other namespaces.

    Our uid maps to itself, so P (which ``exec``s with a nonzero uid) loses every capability
    in the namespace: it cannot undo the mounts I made (unmount, remount read-write).
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        _call("unshare", linux.CLONE_NEWUSER)
        cgroups.write("/proc/self/setgroups", "deny")
        cgroups.write("/proc/self/uid_map", f"{uid} {uid} 1")
        cgroups.write("/proc/self/gid_map", f"{gid} {gid} 1")
        return True
    except OSError:
        return False


def _sweep_uid(uid):
    """Kill every process of ``uid`` (only ever called with a uid unique to this run)."""
    try:
        pid = os.fork()
    except OSError:
        return  # no room for one more process: the process group and orphan sweeps go on
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # as this uid: only its own processes
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)

class _Init:
    """What I does: start P, reap everything, and leave nothing alive when P is done."""

    def __init__(self, cfg, status_fd, in_pid_ns):
        self.cfg, self.status_fd, self.in_pid_ns = cfg, status_fd, in_pid_ns
        self.child = None
        self.unique_uid = None

    def kill_all(self, *_):
        if self.in_pid_ns and os.getpid() == 1:
            # pid 1 of our own namespace: -1 means every process of the namespace, nothing else.
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            return
        if self.child:
            try:
                os.killpg(self.child, signal.SIGKILL)
            except OSError:
                pass
        if self.unique_uid is not None:
            _sweep_uid(self.unique_uid)
        for _ in range(50):  # orphans are re-parented to us (we are a child subreaper)
            kids = [k for k in _children_of(os.getpid()) if k != self.child]
            if not kids:
                break
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
            self.reap_all(block=False)

    def reap_all(self, block):
        """Reap exited children; True once we have no children left at all."""
        while True:
            try:
                pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False

    def run(self):
        cfg = self.cfg
        layers = {"pid_ns": self.in_pid_ns}
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            _call("prctl", linux.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # L gone: all go
        except OSError:
            pass
        try:
            _call("prctl", linux.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            layers["subreaper"] = True
        except OSError:
            layers["subreaper"] = False
        # The filesystem layers are off unless setup_mounts below says otherwise.
        layers.update(dict.fromkeys(
            ("mount_ns", "private_proc", "private_tmp", "hidden_homes", "workdir_tmpfs"), False))
        if cfg.get("mount_ns"):
            # Only I and P get the new mount namespace: L stays in the host's, so that it can
            # still delete the working directory after the run.
            try:
                _call("unshare", linux.CLONE_NEWNS)
                mount_layers, cfg["writable_mounts"] = mounts.setup_mounts(cfg, self.in_pid_ns)
                layers.update(mount_layers)
            except OSError:
                layers["mount_ns"] = False
        status.report(self.status_fd, who="init", layers=layers)
        signal.signal(signal.SIGUSR1, self.kill_all)  # the parent's "time is up"
        signal.signal(signal.SIGTERM, self.kill_all)
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_w)
            program.exec_program(cfg, self.status_fd, ready_r)  # never returns
        os.close(ready_r)
        self.child = pid
        if cfg.get("uid") is not None and cfg.get("drop_uid"):
            self.unique_uid = cfg["uid"]
        os.close(ready_w)  # P may exec now that we know its pid (see program.py)
        t0 = time.monotonic()
        while True:
            try:
                got, wstatus, usage = os.wait4(pid, 0)
            except ChildProcessError:
                wstatus, usage = None, None
                break
            if got == pid:
                break
        wall = time.monotonic() - t0
        # Kill and reap until nothing is left (a process forking while we kill is caught by
        # the next round; our own exit would end the pid namespace anyway).
        for _ in range(2000):
            self.kill_all()
            if self.reap_all(block=False):
                break
            time.sleep(0.002)
        out = {"who": "exit", "wall_s": wall}
        if wstatus is not None:
            if os.WIFSIGNALED(wstatus):
                out["signal"] = os.WTERMSIG(wstatus)
            else:
                out["exit_code"] = os.WEXITSTATUS(wstatus)
            out["cpu_s"] = usage.ru_utime + usage.ru_stime
            out["maxrss_kb"] = usage.ru_maxrss
        status.report(self.status_fd, **out)
        os._exit(0)

def main():
    """The launcher L: read the run's JSON config from ``argv[1]``, enter the namespaces and
    cgroups, fork the init process I and wait for it, report on the status fd, then exit."""
    cfg = marshal.loads(bytes.fromhex(sys.argv[1]))  # marshal: no import, unlike json
    status_fd = cfg["status_fd"]
    state = {"stop": False, "init": None}

    def stop(*_):  # the parent asks us to stop (or died): I kills everything it started
        state["stop"] = True
        if state["init"]:
            try:
                os.kill(state["init"], signal.SIGUSR1)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, stop)
    try:
        # If the parent dies we get SIGTERM, stop the run and clean up like after a timeout.
        _call("prctl", linux.PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass
    if os.getppid() != cfg.get("parent_pid", os.getppid()):
        os._exit(1)  # the parent died before the prctl: run nothing
    layers = {"session": os.getsid(0) == os.getpid()}
    try:
        cgroups.write("/proc/self/oom_score_adj", -1000)  # the OOM killer picks the program, not us
        cfg["oom_launcher"] = True  # (I inherits it; P reports the oom_protection layer)
    except OSError:
        cfg["oom_launcher"] = False  # not root: only raising one's own score is allowed
    made, cg_layers = cgroups.setup(cfg)
    layers.update(cg_layers)
    if os.geteuid() != 0:
        # RLIMIT_NPROC counts every task of the user: allow max_processes more than it has.
        cfg["nproc"] += _tasks_of_uid(os.getuid())
        layers["user_ns"] = cfg.get("user_ns", True) and _enter_user_ns()
    flags = {"net_ns": linux.CLONE_NEWNET, "ipc_ns": linux.CLONE_NEWIPC,
             "uts_ns": linux.CLONE_NEWUTS}
    if cfg.get("pid_ns"):
        flags["pid_ns_unshared"] = linux.CLONE_NEWPID
    for name, flag in flags.items():
        if name == "net_ns" and not cfg.get("net_ns"):
            layers[name] = False
            continue
        try:
            _call("unshare", flag)
            layers[name] = True
        except OSError:
            layers[name] = False
    cfg["net_ns_active"] = layers["net_ns"]
    if cfg.get("drop_uid"):
        cfg["uid"] = UID_BASE + os.getpid()  # unique among live runs: our pid is
    in_pid_ns = layers.pop("pid_ns_unshared", False)
    init = _Init(cfg, status_fd, in_pid_ns)
    pid = os.fork()
    if pid == 0:
        try:
            init.run()  # never returns
        except BaseException:  # noqa: BLE001
            status.report(status_fd, who="error", where="init", error=status.error_text())
            init.kill_all()
            os._exit(1)
    state["init"] = pid
    if state["stop"]:
        stop()
    status.report(status_fd, who="launcher", layers=layers, init_pid=pid)
    while True:
        try:
            os.waitpid(pid, 0)
            break
        except ChildProcessError:
            break
    status.report(status_fd, who="cgroup", **cgroups.teardown(made))
    _remove_tree(cfg["workdir"])  # the parent does too, unless it died
    os._exit(0)


if __name__ == "__main__":
    main()
