"""Counting the checks a test file executes, so that tests which never ran are not a pass.

The parent (not the sandbox: ``ast`` is slow to import there) inserts ``; COUNTER()`` right after
every ``assert`` statement of the tests, on the line where the assert ends, so that no line
moves (tracebacks keep their line numbers). The harness binds ``COUNTER`` to a function that
counts, and reports the count with its completion token. The name is random per run.
"""

from __future__ import annotations

import ast
import secrets


def counter_name() -> str:
    """A fresh, unguessable name for the per-run counter function."""
    return "_qcoder_check_" + secrets.token_hex(8)


def count_asserts(tests: str, counter: str) -> str:
    """``tests`` with ``; counter()`` after every ``assert`` statement (same lines). Source that
    does not parse is returned unchanged: running it is a ``SyntaxError``, a failure anyway."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError):
        return tests
    ends = sorted(
        ((node.end_lineno, node.end_col_offset) for node in ast.walk(tree)
         if isinstance(node, ast.Assert)),
        reverse=True,  # right to left, so that earlier offsets stay valid
    )
    # Lines as the parser counts them (str.splitlines would also split at \f, \x1c, \u2028...).
    lines = tests.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line + "\n" for line in lines[:-1]] + lines[-1:]
    call = f"; {counter}()".encode()
    for lineno, col in ends:
        raw = lines[lineno - 1].encode("utf-8", "surrogatepass")  # offsets count UTF-8 bytes
        lines[lineno - 1] = (raw[:col] + call + raw[col:]).decode("utf-8", "surrogatepass")
    return "".join(lines)
