"""The run's cgroups (v1 ``memory`` and ``pids``, where the host has them): every process of
the run together, root included, is held to one memory limit and one process count. Used by
``launcher.py`` (stdlib only); the parent uses :func:`remove_cgroup_dir` after a force-kill."""

import os
import time


def write(path, value):
    """Write ``value`` to a kernel file (a cgroup knob, ``/proc/self/...``)."""
    with open(path, "w") as f:
        f.write(str(value))



CGROUP_V1 = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}

def setup(cfg):
    """cgroup v1 memory + pids for the whole run (every process of it, root or not).

    Returns {controller: directory} for the controllers that were set up, and the layers.
    """
    name = f"qcoder-sandbox-{os.getpid()}"
    made, layers = {}, {}
    limits = {
        "memory": [("memory.limit_in_bytes", cfg["cgroup_memory_bytes"]),
                   ("memory.memsw.limit_in_bytes", cfg["cgroup_memory_bytes"])],
        "pids": [("pids.max", cfg["cgroup_pids_max"])],  # the program's + the sandbox's own
    }
    for ctl, root in CGROUP_V1.items():
        layers[f"cgroup_{ctl}"] = False
        if not cfg.get("cgroup") or not os.path.exists(os.path.join(root, "cgroup.procs")):
            continue
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
        except OSError:
            continue
        made[ctl] = path
        try:
            for fname, value in limits[ctl]:
                if os.path.exists(os.path.join(path, fname)):
                    write(os.path.join(path, fname), value)
            write(os.path.join(path, "cgroup.procs"), os.getpid())
            layers[f"cgroup_{ctl}"] = True
        except OSError:
            pass
    return made, layers


def teardown(made):
    """Leave the run's cgroups, read how many OOM kills happened, remove them."""
    info = {}
    for ctl, path in made.items():
        try:
            write(os.path.join(CGROUP_V1[ctl], "cgroup.procs"), os.getpid())
        except OSError:
            pass
        if ctl == "memory":
            try:
                with open(os.path.join(path, "memory.oom_control")) as f:
                    for line in f:
                        if line.startswith("oom_kill "):
                            info["oom_kills"] = int(line.split()[1])
            except OSError:
                pass
        remove_cgroup_dir(path, tries=100, pause_s=0.01)
    return info


def remove_cgroup_dir(path: str, tries: int, pause_s: float) -> None:
    """Remove a cgroup folder, retrying while the run's last processes are still exiting
    (``rmdir`` fails with EBUSY until the group is empty); a missing folder is fine."""
    for _ in range(tries):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(pause_s)
