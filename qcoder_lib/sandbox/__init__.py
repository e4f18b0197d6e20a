"""Running untrusted, model-written code without harm.

The recipe runs code it did not write three times: synthetic pretraining data is kept only if
it runs, instruction data is checked by running it, and evaluation runs model completions
against tests. Everything in this course that executes such code goes through this package.

Public API (re-exported here; import from ``qcoder_lib.sandbox``)
----------------------------------------------------------------
- :func:`run_code` runs one program, :func:`check_program` runs a solution with its tests
  (HumanEval style; :func:`humaneval_program` builds its arguments), :func:`run_many` runs a
  batch on a worker pool, results in input order.
- :class:`Limits`: time, memory, processes, files, output of one run (validated).
- :class:`ExecResult` is what each returns: ``status``, exit code, bounded stdout/stderr
  (truncation is marked), wall time, ``checks_run``, and ``layers``: which isolation layers
  were really active (:data:`LAYER_DESCRIPTIONS`).
- :class:`SandboxError` is raised when the sandbox itself fails (never for the program).

Statuses: ``passed`` (exit 0 by itself; for :func:`check_program` the harness proof too and
at least one executed check), ``failed`` (non-zero exit, an exception, a failed test),
``no_tests`` (the tests completed but not one ``assert`` or ``unittest`` case ran),
``timeout`` (wall clock or CPU limit), ``memory`` (``MemoryError`` under the address-space
limit, or the run's memory cgroup killed it), ``crashed`` (SIGSEGV, SIGABRT... e.g. a C stack
overflow), ``killed`` (any other signal, or more than ``output_limit_mb`` of output). Only
``passed`` is unforgeable by the child; the others describe how it ended.

Where each part lives
---------------------
- ``api.py``: the calls above; ``limits.py``: :class:`Limits`; ``result.py``: statuses,
  :class:`ExecResult`, layer names; ``interpreter.py``: which Python runs the program and which
  host folders it must not see; ``parent.py``: start, watch, stop and collect one run.
- ``launcher.py`` (run as a script, stdlib only): namespaces and the init process; with its
  siblings ``cgroups.py`` (memory and pids cgroups), ``mounts.py`` (the run's view of the
  filesystem), ``program.py`` (rlimits, uid drop, seccomp, exec), ``linux.py`` (libc calls,
  the seccomp filter) and ``status.py`` (the status pipe). ``harness.py`` (copied next to the
  program): runs it, or runs the tests and proves they completed.

Isolation layers, the verdict, and what is out of scope: see ``launcher.py`` and
``harness.py``, and the README's sandbox section.
"""

from .api import check_program, humaneval_program, run_code, run_many
from .interpreter import sandbox_interpreter
from .limits import Limits
from .parent import WORKDIR_PREFIX
from .result import (
    LAYER_DESCRIPTIONS,
    OPTIONAL_LAYERS,
    STATUSES,
    ExecResult,
    SandboxError,
)

__all__ = [
    "LAYER_DESCRIPTIONS",
    "OPTIONAL_LAYERS",
    "STATUSES",
    "WORKDIR_PREFIX",
    "ExecResult",
    "Limits",
    "SandboxError",
    "check_program",
    "humaneval_program",
    "run_code",
    "run_many",
    "sandbox_interpreter",
]
