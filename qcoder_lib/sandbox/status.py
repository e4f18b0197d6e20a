"""The status pipe between the sandbox's processes and the parent: one JSON object per line
(small writes on a pipe are atomic, so lines from L, I and P never interleave).

Written without the ``json`` module: the launcher starts once per run, and ``json`` (with ``re``
and ``enum``) would be most of its start-up time. Loaded by ``launcher.py`` and ``program.py``
(stdlib only); the parent reads the lines with ``json.loads``.
"""

import os
import sys


def to_json(value):
    """JSON text of ``value``: dicts with str keys, lists, str, int, float, bool, None."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, dict):
        return "{" + ",".join(to_json(str(k)) + ":" + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise TypeError(f"status: cannot write a {type(value).__name__}")


def report(fd, **fields):
    """Write one JSON line on the status pipe; a closed pipe (the parent is gone) is ignored."""
    try:
        os.write(fd, (to_json(fields) + "\n").encode("utf-8", "surrogatepass"))
    except OSError:
        pass


def error_text():
    """The current exception and where it came from (file:line of each frame), built without
    ``traceback``: after the mounts, the interpreter's own library may be hidden."""
    exc = sys.exc_info()[1]
    where, tb = [], exc.__traceback__ if exc is not None else None
    while tb is not None:
        where.append(f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
        tb = tb.tb_next
    return f"{type(exc).__name__}: {exc} (at {' <- '.join(reversed(where))})"
