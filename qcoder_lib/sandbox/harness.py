"""The in-sandbox side of a Python run (copied next to the program; stdlib only).

Usage inside the sandbox::

    harness.py NET MODE ...
      NET   "net-ok" or "no-sockets" (the fallback when no network namespace was available:
            the socket constructors are replaced by ones that raise, a weak layer)
      MODE  "run FILE"                      run FILE as __main__ (exit status is the result)
            "check SOLUTION TESTS COUNTER [ENTRY]"
                                            exec SOLUTION, then TESTS in the same namespace
                                            (as ``__main__``, ``sys.argv == [TESTS]``), then
                                            call check(ENTRY) when ENTRY is given

``run``: ``sys.exit(code)`` with a code the OS would wrap to 0 (256, 512...) is reported on
fd 4 as ``exit CODE`` and the process exits 1, so it is never mistaken for success.

``check``: the harness proves completion to the parent: only after every test has run without
raising does it read the per-run secret token from fd 3 (a pipe the parent filled and closed)
and write it to fd 4, followed by the number of checks that completed: ``assert`` statements of
the tests (the parent put a call of the function named COUNTER after each, see
``counting.py``) and
``unittest`` test cases that succeeded. A ``unittest`` failure or error anywhere fails the run;
``unittest.main()`` runs with ``exit=False``. Exit codes, printed text, ``os._exit(0)``,
``sys.exit(0)`` and ``atexit`` hooks carry no weight: the parent passes the run only if fd 4
holds exactly the token, at least one check ran, and the process then exited 0. See
``qcoder_lib.sandbox`` for what this does not stop.
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


def _run(path, write, exit_now):
    import runpy

    sys.argv = [path]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        code = e.code
        if isinstance(code, int) and code != 0 and code % 256 == 0:
            write(4, b"exit %d\n" % code)  # the OS would report 0: say what it really was
            sys.exit(1)
        raise


def _hook_unittest(counts):
    """Count successful unittest cases, record failures, and keep unittest.main() from exiting."""
    import unittest
    import unittest.result

    base = unittest.result.TestResult
    orig = {n: getattr(base, n) for n in ("addSuccess", "addFailure", "addError",
                                          "addUnexpectedSuccess", "addSubTest")}

    def add_success(self, test):
        counts["unittest"] += 1
        return orig["addSuccess"](self, test)

    def bad(name):
        def record(self, *a):
            counts["unittest_bad"] += 1
            return orig[name](self, *a)

        return record

    def add_sub_test(self, test, subtest, err):
        if err is not None:
            counts["unittest_bad"] += 1
        return orig["addSubTest"](self, test, subtest, err)

    base.addSuccess = add_success
    base.addFailure = bad("addFailure")
    base.addError = bad("addError")
    base.addUnexpectedSuccess = bad("addUnexpectedSuccess")
    base.addSubTest = add_sub_test
    original_main = unittest.main

    def main(*a, **k):
        k["exit"] = False
        return original_main(*a, **k)

    unittest.main = main


def _main(argv):
    # Bind everything we need before untrusted code can replace it.
    read, write, exit_now = os.read, os.write, os._exit
    settrace, setprofile = sys.settrace, sys.setprofile
    net, mode, args = argv[0], argv[1], argv[2:]
    if net == "no-sockets":
        _disable_sockets()
    if mode == "run":
        _run(args[0], write, exit_now)
        return
    if mode != "check":
        raise SystemExit(f"harness: unknown mode {mode!r}")
    solution_path, tests_path, counter = args[0], args[1], args[2]
    entry = args[3] if len(args) > 3 else ""
    import types

    counts = {"asserts": 0, "unittest": 0, "unittest_bad": 0}

    def tick():
        counts["asserts"] += 1

    module = types.ModuleType("__main__")  # what unittest.main() looks in for test cases
    namespace = module.__dict__
    namespace["__builtins__"] = __builtins__
    try:
        with open(solution_path, encoding="utf-8") as f:
            solution = f.read()
        with open(tests_path, encoding="utf-8") as f:
            tests = f.read()
        tests_code = compile(tests, tests_path, "exec")
        namespace["__name__"] = "solution"
        exec(compile(solution, solution_path, "exec"), namespace)  # noqa: S102
        settrace(None)
        setprofile(None)
        if "unittest" in tests:
            _hook_unittest(counts)
        namespace.update({"__name__": "__main__", "__file__": tests_path, counter: tick})
        sys.modules["__main__"] = module
        sys.argv = [tests_path]
        exec(tests_code, namespace)  # noqa: S102 - check() last
        if entry:
            if entry not in namespace:
                raise NameError(f"the solution defines no {entry!r}")
            if "check" not in namespace:
                raise NameError("the tests define no check(candidate) function")
            settrace(None)
            setprofile(None)
            namespace["check"](namespace[entry])
        if counts["unittest_bad"]:
            raise AssertionError(f"{counts['unittest_bad']} unittest case(s) failed")
    except BaseException:  # noqa: BLE001 - SystemExit from the solution is a failure too
        try:
            import traceback  # only on this path: its import costs every run start-up time

            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            exit_now(1)
    settrace(None)
    checks = counts["asserts"] + counts["unittest"]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001, S110 - a closed stdout must not stop the proof
        pass
    token = read(3, 256)  # only now, after every test ran, does the secret enter this process
    write(4, token + b"\n%d\n" % checks)
    exit_now(0)


if __name__ == "__main__":
    _main(sys.argv[1:])
