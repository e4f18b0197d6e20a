"""nbval reads a marker only when the comment line is the marker alone (``# NBVAL_IGNORE_OUTPUT``);
``# NBVAL_IGNORE_OUTPUT  (why)`` on one line is silently not a marker, and the cell's varying
output is then compared. Every marker written in a notebook must be one nbval reads."""

import json
from pathlib import Path

import pytest
from nbval.plugin import comment_markers, find_comment_markers

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_nbval_marker_is_read_by_nbval(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    bad = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        written = [ln.strip() for ln in source.splitlines()
                   if ln.strip().startswith("#") and "NBVAL_" in ln]
        read = list(find_comment_markers(source))
        if len(read) != len(written):
            bad.append((i, written))
    assert not bad, f"{path.name}: markers nbval does not read (cell, lines): {bad}"
    assert "NBVAL_IGNORE_OUTPUT" in comment_markers
