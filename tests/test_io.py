"""qcoder_lib.io: locations, atomic writes, the file lock, and the wheel that carries its data."""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qcoder_lib import io

REPO = Path(__file__).resolve().parent.parent


def test_repo_root_and_artifacts_dir_follow_the_environment(tmp_path, monkeypatch):
    assert io.repo_root() == REPO
    monkeypatch.setenv("QCODER_ARTIFACTS", str(tmp_path / "art"))
    assert io.artifacts_dir() == tmp_path / "art"
    monkeypatch.delenv("QCODER_ARTIFACTS")
    assert io.artifacts_dir() == REPO / "artifacts"  # the checkout's git-ignored folder


def test_resource_path_finds_the_samples_and_names_a_missing_one():
    assert io.resource_path("eval").is_dir()
    assert io.resource_path("eval", "course_eval.jsonl").is_file()
    with pytest.raises(FileNotFoundError, match="data_samples/eval/nope.jsonl"):
        io.resource_path("eval", "nope.jsonl")
    assert io.data_samples_dir() == REPO / "data_samples"


def test_atomic_dir_replaces_on_success_and_keeps_the_old_folder_on_error(tmp_path):
    target = tmp_path / "ckpt"
    with io.atomic_dir(target) as tmp:
        assert tmp == io.tmp_sibling(target) and tmp.name.endswith(f".tmp-{os.getpid()}")
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(OSError, match="disk full"):
        with io.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("two")
            raise OSError(28, "disk full")
    assert (target / "a.txt").read_text() == "one"  # the previous version is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left behind
    with io.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced, not merged


def test_atomic_write_text(tmp_path):
    path = tmp_path / "metrics.jsonl"
    io.atomic_write_text(path, "x\n")
    io.atomic_write_text(path, "y\n")
    assert path.read_text() == "y\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    with pytest.raises(OSError):
        io.atomic_write_text(tmp_path / "missing" / "f.txt", "z")


def test_file_lock_serialises_two_holders(tmp_path):
    order = []

    def hold(name):
        with io.FileLock(tmp_path / "build.lock"):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


@pytest.mark.slow
def test_the_wheel_installed_on_its_own_finds_its_data_and_builds_the_tokenizer(tmp_path):
    """Build the wheel from a copy of the tracked files, install it into an empty folder and use
    it from another directory: the eval set and samples are found, the course tokenizer builds."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"),
                    str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "w").glob("qcoder_course-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import qcoder_lib, qcoder_lib.io as io\n"
        "from qcoder_lib.data.decontam import course_eval_items\n"
        "from qcoder_lib.data.sources import text_documents\n"
        "from qcoder_lib.tokenizer import course_tokenizer\n"
        "assert qcoder_lib.__file__.startswith(%r), qcoder_lib.__file__\n"
        "assert io.repo_root() is None\n"
        "assert len(course_eval_items()) > 0\n"
        "assert any(d.path.endswith('.txt') for d in text_documents(include_packages=False,"
        " docstring_roots=[]))\n"
        "tok = course_tokenizer('smoke')\n"
        "print('ok', len(tok))\n" % str(target)
    )
    env = {**os.environ, "PYTHONPATH": str(target), "QCODER_ARTIFACTS": str(tmp_path / "art")}
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok ")
