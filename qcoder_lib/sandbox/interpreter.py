"""Which Python runs the sandboxed program, and which host folders the run must not see.

As root the program runs under an unprivileged uid, so its interpreter must be executable by
any user (every folder on its path too): a course Python under ``/root`` is not, then a system
one (``/usr/bin/python3``) is used.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys


def world_executable(path: str) -> bool:
    """True if a user who is neither owner nor group can execute ``path`` (every folder too)."""
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
        if c and os.path.exists(c) and world_executable(c):
            return os.path.realpath(c), True
    return sys.executable, False


def _interpreter_dirs(interpreter: str) -> list[str]:
    """Folders the interpreter needs: its own path and, when it is the caller's own Python run
    by its own path (a virtual environment's ``bin/python``), that environment's prefixes."""
    keep = [os.path.realpath(interpreter)]
    if interpreter == sys.executable:
        keep += [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)]
    return keep


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + os.sep)


def dirs_to_hide(workdir: str, interpreter: str) -> list[str]:
    """Home folders to cover with an empty tmpfs (where credentials usually live).

    A folder is left visible when the interpreter or the working directory is inside it
    (e.g. a conda install in the caller's home); ``layers["hidden_homes"]`` then says False.
    """
    keep = [os.path.realpath(workdir), *_interpreter_dirs(interpreter)]
    out = []
    for d in ("/root", "/home", os.path.expanduser("~")):
        d = os.path.realpath(d)
        if d in out or d == "/" or not os.path.isdir(d):
            continue
        if any(_inside(k, d) for k in keep):
            continue
        out.append(d)
    return out


# Shared host folders replaced by the run's own: temporary files (where Unix sockets, other
# runs' files and other users' data live) and runtime folders (daemon sockets, pid files).
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
EMPTY_RUNTIME_DIRS = ("/run", "/var/run")


def dirs_to_replace(interpreter: str) -> tuple[list[str], list[str], bool]:
    """``(tmp_dirs, runtime_dirs, complete)``: the folders of :data:`PRIVATE_TMP_DIRS` (to become
    fresh writable tmpfs) and :data:`EMPTY_RUNTIME_DIRS` (empty, read-only) that exist here,
    symlinks resolved (``/var/run -> /run`` is covered once, through its target), that do not
    hold the interpreter; ``complete`` is False (and so ``layers["private_tmp"]``) when one had
    to stay because the interpreter lives there."""
    keep = _interpreter_dirs(interpreter)
    chosen: list[list[str]] = [[], []]
    complete = True
    for i, group in enumerate((PRIVATE_TMP_DIRS, EMPTY_RUNTIME_DIRS)):
        for d in group:
            d = os.path.realpath(d)
            if not os.path.isdir(d) or d == "/" or d in chosen[0] + chosen[1]:
                continue
            if any(_inside(k, d) for k in keep):
                complete = False
                continue
            chosen[i].append(d)
    return chosen[0], chosen[1], complete
