"""The sandbox's public calls: :func:`run_code`, :func:`check_program`, :func:`run_many`,
:func:`humaneval_program`; each validates its arguments before anything starts."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import secrets
from collections.abc import Iterable
from typing import Any

from .counting import count_asserts, counter_name
from .limits import Limits, resolve_limits
from .parent import (
    HARNESS_NAME,
    HARNESS_SRC,
    encode_text,
    end_batch,
    execute,
    join_batch,
    stop_batch,
)
from .result import ExecResult

_CHECK_ARGS = ("solution", "tests", "entry_point")
_OPTIONS = ("language", "stdin", "files", "network", "unprivileged", "disable", "limits")
_LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits))


def _check_language(language: str) -> None:
    if language != "python":
        raise ValueError(
            f"language {language!r} is not supported by the sandbox yet; supported: 'python'"
        )


def _files(files: dict | None, reserved: Iterable[str]) -> dict[str, bytes]:
    out = {}
    for name, content in (files or {}).items():
        if name in reserved:
            raise ValueError(f"files: {name!r} is reserved for the sandbox's own files")
        out[name] = encode_text(content, f"files[{name!r}]")
    return out


def _exit_claim(result: bytes) -> int | None:
    """The exit code the harness saw in ``sys.exit(code)`` when the OS would wrap it to 0."""
    if result.startswith(b"exit "):
        try:
            return int(result[5:].split()[0])
        except (ValueError, IndexError):
            return None
    return None


def run_code(
    program: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: dict[str, str | bytes] | None = None,
    network: bool = False,
    unprivileged: bool = True,
    disable: Iterable[str] = (),
    limits: Limits | None = None,
    **limit_overrides: Any,
) -> ExecResult:
    """Run one untrusted ``program`` in the sandbox and say what happened.

    ``passed`` means it exited 0 by itself within the limits (``sys.exit(256)`` is not 0:
    its real status is reported). ``stdin`` is fed to it (else it reads ``/dev/null``);
    ``files`` are extra files put next to it in its working directory. ``network=True`` skips
    the network namespace and the Unix-socket block (not advised). ``limits`` and/or keyword
    overrides of its fields (``timeout_s=1``, ``memory_mb=256``, see :class:`Limits`) bound
    the run. ``disable`` switches off optional layers by name (see ``OPTIONAL_LAYERS``), e.g.
    to show in a notebook what each one stops; ``ExecResult.layers`` always says what was
    active.
    """
    _check_language(language)
    if not isinstance(program, str):
        raise TypeError(f"program must be a str, got {type(program).__name__}")
    lim = resolve_limits(limits, limit_overrides)
    all_files = _files(files, ("main.py", HARNESS_NAME))
    all_files["main.py"] = encode_text(program, "program")
    all_files[HARNESS_NAME] = HARNESS_SRC.encode()
    res, result = execute(
        ["run", "main.py"],
        all_files,
        stdin=None if stdin is None else encode_text(stdin, "stdin"),
        limits=lim,
        network=network,
        unprivileged=unprivileged,
        disable=disable,
        token=None,
    )
    claim = _exit_claim(result)
    # The claim can only turn a run into a failure: it must agree with the OS's exit status.
    if (claim is not None and claim % 256 == 0 and claim != 0
            and res.status in ("passed", "failed") and res.exit_code in (0, 1)):
        res.exit_code = claim
        res.status = "failed"
        res.reason = f"exit status {claim} (sys.exit({claim}); the OS would wrap it to 0)"
    return res


def check_program(
    solution: str,
    tests: str,
    entry_point: str | None = None,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: dict[str, str | bytes] | None = None,
    network: bool = False,
    unprivileged: bool = True,
    disable: Iterable[str] = (),
    limits: Limits | None = None,
    **limit_overrides: Any,
) -> ExecResult:
    """Run ``solution`` then ``tests`` (then ``check(entry_point)``) and let the parent judge.

    ``passed`` only when the harness proved that the tests ran to completion (the per-run
    token, see the package docstring), at least one check executed (an ``assert`` of the
    tests or a ``unittest`` test case; else ``no_tests``), and the process exited 0 within
    its limits. ``ExecResult.checks_run`` counts those checks. The tests run as
    ``__main__`` with ``sys.argv == ["tests.py"]``, so ``if __name__ == "__main__":
    unittest.main()`` works. Other arguments are those of :func:`run_code`.
    """
    _check_language(language)
    for name, value in (("solution", solution), ("tests", tests)):
        if not isinstance(value, str):
            raise TypeError(f"check_program: {name} must be a str, got {type(value).__name__}")
    if entry_point is not None and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        raise ValueError(f"check_program: entry_point={entry_point!r} is not a Python name")
    lim = resolve_limits(limits, limit_overrides)
    token = secrets.token_hex(16).encode()
    counter = counter_name()
    args = ["check", "solution.py", "tests.py", counter] + ([entry_point] if entry_point else [])
    all_files = _files(files, ("solution.py", "tests.py", HARNESS_NAME))
    all_files.update(
        {
            "solution.py": encode_text(solution, "solution"),
            "tests.py": encode_text(count_asserts(tests, counter), "tests"),
            HARNESS_NAME: HARNESS_SRC.encode(),
        }
    )
    res, proof = execute(
        args,
        all_files,
        stdin=None if stdin is None else encode_text(stdin, "stdin"),
        limits=lim,
        network=network,
        unprivileged=unprivileged,
        disable=disable,
        token=token,
    )
    if res.status == "passed":
        head, _, count = proof.partition(b"\n")
        if head != token:
            res.status = "failed"
            res.reason = (
                "exit code 0 but the test harness did not finish (no valid completion token)"
            )
            return res
        res.checks_run = int(count) if count.strip().isdigit() else 0
        if res.checks_run == 0:
            res.status = "no_tests"
            res.reason = (
                "the tests ran to completion but no check executed (no assert of the tests "
                "and no unittest test case ran)"
            )
        else:
            res.reason = (
                f"every test ran to completion: {res.checks_run} checks "
                "(completion token verified)"
            )
    return res


def humaneval_program(problem: dict, completion: str) -> dict[str, str]:
    """The :func:`check_program` arguments for a HumanEval ``problem`` and a ``completion``."""
    return {
        "solution": problem["prompt"] + completion,
        "tests": problem["test"],
        "entry_point": problem["entry_point"],
    }


def _validate_task(i: int, task: Any, kwargs: dict) -> None:
    """Raise naming task ``i`` when it could not run (checked before any task starts)."""
    if isinstance(task, str):
        task = {}
    elif not isinstance(task, dict):
        raise TypeError(
            f"run_many task {i}: must be a program str or a dict of check_program arguments, "
            f"got {type(task).__name__}"
        )
    unknown = sorted(set(task) - {*_CHECK_ARGS, *_OPTIONS, *_LIMIT_FIELDS})
    if unknown:
        raise TypeError(f"run_many task {i}: unknown check_program arguments {unknown}")
    try:
        _check_language(task.get("language", kwargs.get("language", "python")))
    except ValueError as e:
        raise ValueError(f"run_many task {i}: {e}") from None
    for name in ("solution", "tests"):
        if task and not isinstance(task.get(name), str):
            raise TypeError(f"run_many task {i}: {name!r} must be a str")
    merged = {**kwargs, **task}
    overrides = {k: v for k, v in merged.items() if k in _LIMIT_FIELDS}
    try:
        resolve_limits(merged.get("limits"), overrides)
    except (TypeError, ValueError) as e:
        raise type(e)(f"run_many task {i}: {e}") from None


def _run_task(task, kwargs, batch=None):
    join_batch(batch)
    try:
        if isinstance(task, str):
            return run_code(task, **kwargs)
        return check_program(**{**kwargs, **task})
    finally:
        join_batch(None)


def run_many(
    programs: Iterable[str | dict],
    *,
    workers: int | None = None,
    start_method: str = "thread",
    **kwargs: Any,
) -> list[ExecResult]:
    """Run many programs in the sandbox on a worker pool; results come back in input order.

    Each task is a program ``str`` (run with :func:`run_code`) or a ``dict`` of
    :func:`check_program` arguments (e.g. from :func:`humaneval_program`); ``kwargs`` go to
    every call. Every task and option is validated before any starts (errors name the task);
    a program's own failure is its result, never an exception for the batch. If the sandbox
    itself fails on one task, or the caller is interrupted (Ctrl-C), the tasks not yet started
    are cancelled, the running ones stopped at once (threads), and the error raised.
    ``workers`` defaults to the number of CPUs.

    ``start_method="thread"`` (default): threads that each wait on one sandboxed process. Every
    program already runs in its own freshly ``exec``'d process, so no Python process is ever
    forked, and it is safe from a process that holds threads or CUDA. ``"spawn"`` or
    ``"forkserver"`` use a process pool with that start method instead (never ``fork``).
    """
    if start_method not in ("thread", "spawn", "forkserver"):
        raise ValueError(
            f"start_method {start_method!r}: use 'thread', 'spawn' or 'forkserver' (never 'fork')"
        )
    unknown = sorted(set(kwargs) - {*_OPTIONS, *_LIMIT_FIELDS})
    if unknown:
        raise TypeError(f"run_many: unknown options {unknown}")
    _check_language(kwargs.get("language", "python"))
    tasks = list(programs)
    for i, task in enumerate(tasks):
        _validate_task(i, task, kwargs)
    workers = workers or os.cpu_count() or 1
    if start_method == "thread":
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    else:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(start_method)
        )
    batch = object() if start_method == "thread" else None
    futures = [pool.submit(_run_task, t, kwargs, batch) for t in tasks]
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        if batch is not None:
            stop_batch(batch)  # the running ones end now, not at their timeouts
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        if batch is not None:
            end_batch(batch)
