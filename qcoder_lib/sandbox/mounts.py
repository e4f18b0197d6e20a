"""The run's view of the filesystem, made by the sandbox's init in its own mount namespace.

:func:`setup_mounts` (in the init process): nothing propagates to the host; a fresh ``/proc``;
fresh writable tmpfs on ``/tmp``, ``/var/tmp``, ``/dev/shm``; empty ``/run``, ``/var/run`` and
home folders (daemon sockets, credentials); the working directory becomes a size-limited
tmpfs holding copies of the run's files (at the same path, even when that path was under the
covered ``/tmp``). :func:`make_readonly` (in the program's process, before it drops root):
every other mount is remounted read-only, one by one, and the result is checked against
``/proc/self/mountinfo``, so ``layers["readonly_root"]`` reports the truth.
"""

import os

if __package__:
    from . import linux
else:  # loaded by launcher.py as a plain script module
    import linux

_CHUNK = 1 << 20
# Per-mount options of /proc/self/mountinfo that a read-only remount must keep (the kernel
# refuses to clear "locked" ones in a user namespace).
_KEEP_FLAGS = {
    "nosuid": linux.MS_NOSUID,
    "nodev": linux.MS_NODEV,
    "noexec": linux.MS_NOEXEC,
    "noatime": linux.MS_NOATIME,
    "nodiratime": linux.MS_NODIRATIME,
    "relatime": linux.MS_RELATIME,
}


def _unescape(path):
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for esc, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(esc, ch)
    return path


def mount_table():
    """``{mount point: per-mount options}`` of the mounts a process here can reach: a mount
    covered by another one at the same point, or anything under a covered mount (e.g. the
    host's ``/proc/...`` mounts under a fresh ``/proc``), is left out."""
    entries = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mount_id, parent = int(fields[0]), int(fields[1])
            entries[mount_id] = (parent, _unescape(fields[4]), set(fields[5].split(",")))
    covered = {
        parent for parent, point, _ in entries.values()
        if parent in entries and entries[parent][1] == point
    }
    table = {}
    for mount_id, (_, point, opts) in entries.items():
        if mount_id in covered:
            continue
        seen, m, reachable = {mount_id}, mount_id, True
        while entries[m][0] in entries and entries[m][0] not in seen:
            parent = entries[m][0]
            # A covered parent hides its children, except the mount that covers it.
            if parent in covered and entries[parent][1] != entries[m][1]:
                reachable = False
                break
            seen.add(parent)
            m = parent
        if reachable:
            table[point] = opts
    return table


def _copy_from(fd, dest):
    """Copy an open file into ``dest`` (owner-only), in chunks: no memory peak."""
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
    finally:
        os.close(out)


def setup_mounts(cfg, in_pid_ns):
    """Make the run's filesystem view (see the module docstring); return ``(layers,
    writable)``: which layers are active and the mount points that stay writable."""
    layers = {}
    os.umask(0o022)  # folders made below stay traversable by the program's uid
    try:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing reaches the host
    except OSError:
        return {"mount_ns": False}, []
    layers["mount_ns"] = True
    if in_pid_ns:
        try:
            linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
            layers["private_proc"] = True
        except OSError:
            layers["private_proc"] = False
    work = cfg["workdir"]
    # Open the run's files and its folder before anything covers them (work may be in /tmp).
    work_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    files = {}
    for name in os.listdir(work_fd):
        files[name] = os.open(name, os.O_RDONLY, dir_fd=work_fd)
    nodev = linux.MS_NOSUID | linux.MS_NODEV
    writable, covered = [], 0
    for d in cfg.get("tmp_dirs", []):
        size = "1m" if d == "/dev/shm" else f"{int(cfg.get('tmp_mb', 64))}m"
        try:
            linux.mount("tmpfs", d, "tmpfs", nodev, f"size={size},mode=1777")
            writable.append(d)
            covered += 1
        except OSError:
            pass
    hidden = []
    for d in cfg.get("runtime_dirs", []) + cfg.get("hide_dirs", []):
        try:  # made read-only with everything else by make_readonly
            linux.mount("tmpfs", d, "tmpfs", nodev | linux.MS_NOEXEC, "size=16k,mode=0755")
            hidden.append(d)
        except OSError:
            pass
    runtime = [d for d in cfg.get("runtime_dirs", []) if d in hidden]
    layers["private_tmp"] = (
        bool(cfg.get("private_tmp_complete"))
        and covered == len(cfg.get("tmp_dirs", []))
        and runtime == cfg.get("runtime_dirs", [])
    )
    homes = [d for d in cfg.get("hide_dirs", []) if d in hidden]
    layers["hidden_homes"] = bool(homes) and homes == cfg.get("hide_dirs", [])
    try:
        os.makedirs(work, mode=0o700, exist_ok=True)  # inside a covering tmpfs: recreate it
        size = int(cfg.get("workdir_mb", 64))
        linux.mount("tmpfs", work, "tmpfs", nodev, f"size={size}m,mode=0700")
        for name, fd in files.items():
            _copy_from(fd, os.path.join(work, name))
        layers["workdir_tmpfs"] = True
    except OSError:
        layers["workdir_tmpfs"] = False
        try:  # the host folder itself, reached through the descriptor opened above
            linux.mount(f"/proc/self/fd/{work_fd}", work, None, linux.MS_BIND)
        except OSError:
            pass
    finally:
        for fd in files.values():
            os.close(fd)
        os.close(work_fd)
    writable.append(work)
    return layers, writable


def make_readonly(writable):
    """Remount every mount point but ``writable`` read-only (keeping its locked flags), then
    check: True only if every reachable mount but those is read-only now."""
    keep = set(writable)
    for point, opts in sorted(mount_table().items()):
        if point in keep or "ro" in opts:
            continue
        flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
        for name, flag in _KEEP_FLAGS.items():
            if name in opts:
                flags |= flag
        if not opts & {"noatime", "relatime"}:
            flags |= linux.MS_STRICTATIME
        try:
            linux.mount(None, point, None, flags)
        except OSError:
            pass  # shadowed by a covering mount (unreachable) or refused: checked below
    for point, opts in mount_table().items():
        if point in keep or "ro" in opts:
            continue
        if os.path.lexists(point):
            return False  # a reachable mount stayed writable
    return True
