"""When a rank fails: which one, why, and proof that nothing was left running.

torchrun runs one *agent* per node that watches its worker processes. When a worker exits with
an error, its agent stops the node's other workers and exits non-zero; ranks on other nodes
are blocked in a collective whose peer vanished, so they raise too (gloo: the connection
closes; NCCL: the process-group timeout) and their agents stop in turn. Nothing hangs past the
collective timeout (``--timeout`` of :mod:`.run`), and :func:`.launch.launch_local` adds a hard
wall-clock limit on top.

Each worker's ``main`` is wrapped in torch's ``@record``, which writes the exception and its
traceback to ``<log_dir>/.../attempt_<k>/<local_rank>/error.json``. :func:`collect_failures`
reads those files back and puts the *root cause* first: a real error before the errors that only
say a peer went away, then the earliest written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# messages of a rank that failed only because a peer died first
SECONDARY = re.compile(r"Connection (closed|reset) by peer|remote worker crash|"
                       r"collective operation timeout|DistNetworkError|NCCL.*(timeout|remote)",
                       re.IGNORECASE)


@dataclass(frozen=True)
class RankFailure:
    """One failed worker, as its ``error.json`` tells it."""

    rank: int  # global rank: node_rank * nproc_per_node + local_rank
    node_rank: int  # which torchrun launch (node) it belonged to
    local_rank: int  # its index on that node
    message: str  # the exception, e.g. "InjectedFailure: rank 1 fails on purpose ..."
    traceback: str  # the Python traceback
    timestamp: int  # when it failed (seconds since the epoch, as torch records it)
    error_file: str  # the error.json it was read from
    written_ns: int = 0  # when error_file was written (ns; orders failures within a second)

    @property
    def is_consequence(self) -> bool:
        """True when the error only says that a peer went away (gloo's "connection closed by
        peer", an NCCL/collective timeout): the effect of another rank's failure."""
        return bool(SECONDARY.search(self.message))

    def summary(self) -> str:
        """One line: rank, node, and the exception message."""
        first = self.message.strip().splitlines()[-1] if self.message.strip() else "(no message)"
        return f"rank {self.rank} (node {self.node_rank}, local rank {self.local_rank}): {first}"


def collect_failures(log_dir, nproc_per_node: int) -> list[RankFailure]:
    """Every worker failure recorded under ``log_dir`` (the folder given to torchrun's
    ``--log-dir``, or holding one ``node<k>/`` folder per node as :func:`.launch.launch_local`
    makes), root cause first. A worker killed by a signal writes no file and is not listed."""
    found = []
    for path in sorted(Path(log_dir).glob("**/attempt_*/*/error.json")):
        local_rank = int(path.parent.name)
        node = next((int(m.group(1)) for part in path.parts
                     if (m := re.fullmatch(r"node(\d+)", part))), 0)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"error file {path} is unreadable ({e})") from e
        msg = data.get("message", {})
        if isinstance(msg, str):  # a worker may write a plain message
            text, extra = msg, {}
        else:
            text, extra = str(msg.get("message", "")), msg.get("extraInfo", {})
        found.append(RankFailure(
            rank=node * nproc_per_node + local_rank, node_rank=node, local_rank=local_rank,
            message=text, traceback=str(extra.get("py_callstack", "")),
            timestamp=int(extra.get("timestamp", 0) or 0), error_file=str(path),
            written_ns=path.stat().st_mtime_ns))
    # root cause first: a real error before "my peer went away", then the earliest written
    return sorted(found, key=lambda f: (f.is_consequence, f.timestamp, f.written_ns, f.rank))


def format_failures(failures: list[RankFailure], traceback_lines: int = 12) -> str:
    """A report for a person: the root cause with the end of its traceback, then one line per
    other failed rank."""
    if not failures:
        return "no rank recorded an error"
    root, *rest = failures
    tb = root.traceback.rstrip().splitlines()[-traceback_lines:]
    while len(tb) > 1 and not tb[0].lstrip().startswith("File "):  # start at a frame
        tb = tb[1:]
    lines = [f"root cause: {root.summary()}", *("    " + t for t in tb)]
    lines += [f"also failed: {f.summary()}" for f in rest]
    return "\n".join(lines)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie that only waits to be reaped counts as
    gone). Used to check that a failed job left no orphan."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status
