"""The Linux calls the sandbox launcher makes through ``ctypes`` (stdlib only): a checked libc
call, ``mount``, and the seccomp filter that blocks Unix sockets.

Loaded by ``launcher.py`` (a script) and by ``mounts.py``; never by untrusted code. A call this
OS lacks raises :class:`OSError`, so that every layer built on it is reported off instead of
failing the run.
"""

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 22, 36, 38

_libc = ctypes.CDLL(None, use_errno=True)


def call(name, *args):
    """Call a libc function; raise OSError (with errno) when it returns -1 (or is missing)."""
    fn = getattr(_libc, name, None)
    if fn is None:
        raise OSError(38, f"{name}: not available on this OS")
    if fn(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def mount(src, target, fstype, flags, data=None):
    """``mount(2)``; ``None`` for an unused string argument."""

    def enc(s):
        return None if s is None else s.encode()

    call("mount", enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


# --- seccomp: socket(AF_UNIX, ...) and io_uring_setup fail with EACCES -----------------------
# (arch audit value, socket syscall number); io_uring_setup is 425 on both.
_ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
_IO_URING_SETUP = 425
_AF_UNIX = 1
_EACCES = 13


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def block_unix_sockets():
    """Install a seccomp filter (needs no_new_privs): ``socket(AF_UNIX, ...)`` and
    ``io_uring_setup`` fail with EACCES, every other call is allowed; a foreign ABI (x32,
    32-bit) kills the process. ``socketpair`` stays allowed (pipes between the program's own
    processes). Raises OSError on an architecture it does not know."""
    arch = _ARCHES.get(os.uname().machine)
    if arch is None:
        raise OSError(38, f"seccomp filter: unknown architecture {os.uname().machine}")
    audit_arch, nr_socket = arch
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    allow, errno, kill = 0x7FFF0000, 0x00050000 | _EACCES, 0x80000000
    prog = [
        (ld, 0, 0, 4),  # 0: arch
        (jeq, 0, 8, audit_arch),  # 1: foreign ABI -> 10 kill
        (ld, 0, 0, 0),  # 2: syscall number
        (jge, 6, 0, 0x40000000),  # 3: x32 numbers -> 10 kill
        (jeq, 4, 0, _IO_URING_SETUP),  # 4: -> 9 errno
        (jeq, 0, 2, nr_socket),  # 5: not socket -> 8 allow
        (ld, 0, 0, 16),  # 6: low 32 bits of args[0] (the family)
        (jeq, 1, 0, _AF_UNIX),  # 7: AF_UNIX -> 9 errno
        (ret, 0, 0, allow),  # 8
        (ret, 0, 0, errno),  # 9
        (ret, 0, 0, kill),  # 10
    ]
    filters = (_SockFilter * len(prog))(*[_SockFilter(*f) for f in prog])
    fprog = _SockFprog(len(prog), filters)
    call("prctl", PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0)  # SECCOMP_MODE_FILTER
