"""Key figures a notebook records, collected into the course report.

A notebook calls ``record_metric("02/parity_max_abs", 3e-7)``. When the course runner executes
the notebook it sets ``QCODER_METRICS_FILE``; every call appends one JSON line there, and the
runner puts the figures into ``report.md``. Outside the runner the figures stay in memory.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

_RECORDED: dict[str, float | int | str] = {}


def record_metric(name: str, value, unit: str = ""):
    """Record a key figure under ``name`` (``"NN/what"``) and return ``value`` unchanged.

    ``value`` must be a number or a short string; NaN is refused so that a broken run cannot
    report a figure that looks fine.
    """
    if not isinstance(name, str) or "/" not in name:
        raise ValueError(f"metric name {name!r} must look like 'NN/what', e.g. '02/parity_max_abs'")
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"metric {name!r}: value {value!r} is not a number or a string")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"metric {name!r} is NaN")
    _RECORDED[name] = value
    path = os.environ.get("QCODER_METRICS_FILE")
    if path:
        line = {"name": name, "value": value, "unit": unit, "time": time.time()}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return value


def recorded_metrics() -> dict:
    """The figures recorded in this process so far, by name."""
    return dict(_RECORDED)


def read_metrics_file(path: str | os.PathLike) -> dict:
    """Read a metrics jsonl file written by :func:`record_metric`; the last value per name wins.

    A malformed line raises ``ValueError`` naming the file and line number.
    """
    out: dict = {}
    p = Path(path)
    if not p.exists():
        return out
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out[rec["name"]] = (rec["value"], rec.get("unit", ""))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{p}:{i}: malformed metrics line ({e})") from e
    return out
