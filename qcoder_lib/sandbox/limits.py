"""The resource limits of one sandbox run: one :class:`Limits` dataclass, validated once.

:func:`~qcoder_lib.sandbox.run_code`, :func:`~qcoder_lib.sandbox.check_program` and
:func:`~qcoder_lib.sandbox.run_many` take a ``limits=Limits(...)`` and/or the same fields as
keyword arguments (``timeout_s=1.0``); :meth:`Limits.with_overrides` merges them and rejects
unknown names, so the defaults are written here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# Floors below which the sandbox itself cannot work (not the program's fault): Python needs
# about 20 MB of address space to start, and the sandbox keeps ~10 descriptors of its own.
MIN_MEMORY_MB = 32
MIN_OPEN_FILES = 16
# Processes of the sandbox's own in the run's pids cgroup (launcher, init, init's uid sweeper):
# added to max_processes, so that max_processes counts only the program's processes.
SANDBOX_PROCESSES = 3


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one run may use; every field is checked by :meth:`validate` (errors name it)."""

    timeout_s: float = 5.0  # wall-clock seconds, finite and > 0; RLIMIT_CPU gets this + ~2 s
    memory_mb: int = 512  # address space of each process (RLIMIT_AS), >= MIN_MEMORY_MB
    max_processes: int = 64  # the program's own processes/threads (RLIMIT_NPROC, pids cgroup), >= 1
    max_open_files: int = 256  # descriptors per process (RLIMIT_NOFILE), >= MIN_OPEN_FILES
    max_file_mb: int = 16  # largest file the program may write (RLIMIT_FSIZE), >= 1
    workdir_mb: int = 64  # room for new files in the workdir tmpfs and in the private /tmp, >= 1
    max_output_bytes: int = 64_000  # stdout / stderr kept per stream (the rest is counted), >= 0
    output_limit_mb: float = 8.0  # more output than this in all: the run is killed, > 0

    def validate(self) -> Limits:
        """Raise ``ValueError`` (``TypeError`` for a wrong type) naming the field when a value is
        unusable; return ``self``."""
        floors = {
            "memory_mb": MIN_MEMORY_MB,
            "max_processes": 1,
            "max_open_files": MIN_OPEN_FILES,
            "max_file_mb": 1,
            "workdir_mb": 1,
            "max_output_bytes": 0,
        }
        for name, floor in floors.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Limits.{name}={value!r}: must be an int")
            if value < floor:
                raise ValueError(f"Limits.{name}={value!r}: must be >= {floor}")
        for name in ("timeout_s", "output_limit_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Limits.{name}={value!r}: must be a number of seconds/MB")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"Limits.{name}={value!r}: must be finite and > 0")
        return self

    def with_overrides(self, **overrides: Any) -> Limits:
        """A validated copy with some fields replaced; an unknown name raises ``TypeError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"unknown sandbox option(s) {unknown}; limits are {sorted(names)}"
            )
        return dataclasses.replace(self, **overrides).validate()

    @property
    def cpu_s(self) -> int:
        """RLIMIT_CPU in whole seconds: the wall-clock timeout, rounded up, plus a margin."""
        return max(1, int(self.timeout_s + 1.999))


def resolve_limits(limits: Limits | None, overrides: dict[str, Any]) -> Limits:
    """``limits`` (default :class:`Limits`) with keyword ``overrides`` applied, validated."""
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    return (limits or Limits()).with_overrides(**overrides)
