"""docs/ARCHITECTURE.md names every library file, so that a reader finds each concept by name."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def _named_in_sections() -> set[str]:
    """Paths the doc names: full ``qcoder_lib/...`` paths anywhere, and ``file.py`` bullets under a
    ``### `pkg/` `` heading (read as ``qcoder_lib/pkg/file.py``)."""
    named = set(re.findall(r"qcoder_lib/[\w/]+\.py", DOC))
    for section in re.split(r"^### ", DOC, flags=re.M)[1:]:
        head, _, body = section.partition("\n")
        pkg = re.search(r"`(\w+)/`", head)
        if pkg:
            for name in re.findall(r"`([\w/]+\.py)`", body):
                named.add(f"qcoder_lib/{pkg.group(1)}/{name}")
    return named


def test_every_library_file_is_in_the_architecture_map():
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "qcoder_lib").rglob("*.py")}
    files = {f for f in files if f.count("/") == 1 or not f.endswith(("__init__.py", "__main__.py"))}
    missing = sorted(files - _named_in_sections())
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"


def test_the_map_names_no_file_that_does_not_exist():
    gone = sorted(p for p in _named_in_sections() if not (ROOT / p).exists())
    assert not gone, f"docs/ARCHITECTURE.md names files that do not exist: {gone}"
