"""Files and folders, each rule written once: where things live and how they are written.

- Locations: :func:`repo_root` (the checkout, when running from one), :func:`artifacts_dir`
  (built tokenizers, corpora, runs), :func:`resource_path` (the course's own data, shipped inside
  the wheel as ``qcoder_lib/data_samples/`` and kept once in the repository as ``data_samples/``).
- Writes that never leave half a result: :func:`atomic_dir` (build a folder under a temporary
  name ``<name>.tmp-<pid>``, then rename it into place) and :func:`atomic_write_text`.
- :class:`FileLock`: one process at a time builds a shared artefact.

A missing resource raises :class:`FileNotFoundError` naming it; nothing falls back to empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"  # temporary siblings are "<name>.tmp-<pid>"; readers skip them
_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The qcoder-course checkout this package runs from (editable install or source tree), or
    ``None`` when the package was installed from a wheel."""
    root = _PACKAGE_DIR.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "qcoder-course"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def artifacts_dir() -> Path:
    """Where built artefacts go: ``$QCODER_ARTIFACTS`` if set, else ``artifacts/`` in the
    checkout (git-ignored), else ``~/.cache/qcoder-course`` for an installed wheel."""
    env = os.environ.get("QCODER_ARTIFACTS")
    if env:
        return Path(env)
    root = repo_root()
    return root / "artifacts" if root is not None else Path.home() / ".cache" / "qcoder-course"


def data_samples_dir() -> Path:
    """The course's embedded data: ``qcoder_lib/data_samples/`` inside an installed wheel, else
    ``data_samples/`` of the checkout. Raises :class:`FileNotFoundError` when neither exists."""
    packaged = _PACKAGE_DIR / "data_samples"
    if packaged.is_dir():
        return packaged
    root = repo_root()
    if root is not None and (root / "data_samples").is_dir():
        return root / "data_samples"
    raise FileNotFoundError(
        f"qcoder_lib's data_samples are missing: neither {packaged} (installed wheel) nor a "
        "checkout's data_samples/ exists; reinstall the package (pip install qcoder-course)"
    )


def resource_path(*parts: str) -> Path:
    """A file or folder of the course's embedded data, e.g. ``resource_path("eval")``; raises
    :class:`FileNotFoundError` naming the resource when it is not there."""
    path = data_samples_dir().joinpath(*parts)
    if not path.exists():
        name = "/".join(parts)
        raise FileNotFoundError(f"qcoder_lib resource data_samples/{name} is missing ({path})")
    return path


def tmp_sibling(path: str | os.PathLike) -> Path:
    """The temporary name ``<path>.tmp-<pid>`` under which :func:`atomic_dir` builds ``path``."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Build ``folder`` atomically: yields a fresh temporary sibling to write into; on success it
    replaces ``folder`` (an older one is removed first), on any error (a full disk, an interrupt)
    the temporary folder is removed and ``folder`` is left exactly as it was.

    >>> with atomic_dir("out/checkpoint-10") as tmp:  # doctest: +SKIP
    ...     (tmp / "state.json").write_text("{}")
    """
    folder = Path(folder)
    tmp = tmp_sibling(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and a rename, so a reader sees the
    old file or the new one, never a part. The temporary file is removed on failure."""
    path = Path(path)
    tmp = tmp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


class FileLock:
    """An exclusive lock on ``path`` held for a ``with`` block (``fcntl.flock`` on POSIX; on
    platforms without ``fcntl`` it does not lock). Used so that one process builds a shared
    artefact while the others wait for it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fh = None

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        return self

    def __exit__(self, *exc) -> bool:
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_UN)
        except ImportError:  # pragma: no cover
            pass
        self.fh.close()
        return False
