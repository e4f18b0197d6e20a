"""The in-sandbox side of a Python run (copied next to the program; stdlib only).

Usage inside the sandbox::

    harness.py NET MODE ...
      NET   "net-ok" or "no-sockets" (the fallback when no network namespace was available:
            the socket constructors are replaced by ones that raise, a weak layer)
      MODE  "run FILE"                      run FILE as __main__ (exit status is the result)
            "check SOLUTION TESTS [ENTRY]"  exec SOLUTION, then TESTS in the same namespace,
                                            then call check(ENTRY) when ENTRY is given

In ``check`` mode the harness proves completion to the parent: only after every test has run
without raising does it read the per-run secret token from fd 3 (a pipe the parent filled and
closed) and write it to fd 4. Exit codes, printed text, ``os._exit(0)``, ``sys.exit(0)`` and
``atexit`` hooks carry no weight: the parent passes the run only if fd 4 holds exactly the
token and the process then exited 0. See ``qcoder_lib.sandbox`` for what this does not stop.
"""

import os
import sys


def _disable_sockets():
    import socket

    def refuse(*_a, **_k):
        raise PermissionError("network access is disabled in this sandbox")

    socket.socket = refuse
    socket.create_connection = refuse
    socket.socketpair = refuse
    socket.fromfd = refuse
    try:
        import _socket

        _socket.socket = refuse
    except ImportError:
        pass


def _main(argv):
    # Bind everything we need before untrusted code can replace it.
    read, write, exit_now = os.read, os.write, os._exit
    settrace, setprofile = sys.settrace, sys.setprofile
    net, mode, args = argv[0], argv[1], argv[2:]
    if net == "no-sockets":
        _disable_sockets()
    if mode == "run":
        import runpy

        sys.argv = [args[0]]
        runpy.run_path(args[0], run_name="__main__")
        return
    if mode != "check":
        raise SystemExit(f"harness: unknown mode {mode!r}")
    solution_path, tests_path = args[0], args[1]
    entry = args[2] if len(args) > 2 else ""
    import traceback

    with open(solution_path, encoding="utf-8") as f:
        solution = f.read()
    with open(tests_path, encoding="utf-8") as f:
        tests = f.read()
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compile(solution, solution_path, "exec"), namespace)  # noqa: S102
        settrace(None)
        setprofile(None)
        exec(compile(tests, tests_path, "exec"), namespace)  # noqa: S102 - check() last
        if entry:
            if entry not in namespace:
                raise NameError(f"the solution defines no {entry!r}")
            if "check" not in namespace:
                raise NameError("the tests define no check(candidate) function")
            settrace(None)
            setprofile(None)
            namespace["check"](namespace[entry])
    except BaseException:  # noqa: BLE001 - SystemExit from the solution is a failure too
        traceback.print_exc()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            exit_now(1)
    settrace(None)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001, S110 - a closed stdout must not stop the proof
        pass
    token = read(3, 256)  # only now, after every test ran, does the secret enter this process
    write(4, token)
    exit_now(0)


if __name__ == "__main__":
    _main(sys.argv[1:])
