"""The course tokenizer: its training corpus and one cached tokenizer per scale profile.

- :func:`tokenizer_corpus`: the embedded corpus, ``{"code": [...], "text": [...], "math":
  [...]}`` in the report's 70/20/10 code / text / math mix (the same group names as
  :data:`qcoder_lib.data.mix.QWEN_MIX`), with a disjoint held-out split.
- :func:`course_tokenizer`: trained once per profile (or vocabulary size) on that corpus and
  cached under ``<artifacts>/tokenizer-<profile>/`` (:func:`course_tokenizer_dir`; atomic write,
  one builder at a time).
- :func:`course_vocab_size`: the vocabulary a profile's model needs (regular + special), from
  constants only, so model presets never import tokenizer internals or train anything.

The corpus is read through :mod:`qcoder_lib.data.sources` (and ``data.math_problems``), imported
inside :func:`tokenizer_corpus` only: importing :mod:`qcoder_lib.tokenizer` never imports
:mod:`qcoder_lib.data` (which itself imports the tokenizer to encode the mix).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import sysconfig
import time
from collections.abc import Iterable
from pathlib import Path

from qcoder_lib.io import FileLock, artifacts_dir, atomic_dir
from qcoder_lib.tokenizer.bpe import load_tokenizer, train_tokenizer
from qcoder_lib.tokenizer.special import NUM_SPECIAL_TOKENS

# Regular vocabulary size (without the 22 special tokens) of the course tokenizer per profile.
# cpu: 2,048, chosen with benchmarks/train_sweep.py: on 2 cores the model that learns most in
# notebook 06's five minutes is tiny, and an 8,192-row embedding would be most of it (and most of
# its FLOPs); the cpu tokenizer still trains on 5x the smoke profile's text.
COURSE_VOCAB_SIZE = {"smoke": 2048, "cpu": 2048, "gpu": 32768}
# Characters of training text per profile, split code / text / math as the report's 70/20/10 mix.
COURSE_CORPUS_CHARS = {"smoke": 1_500_000, "cpu": 8_000_000, "gpu": 40_000_000}
CORPUS_MIX = {"code": 0.7, "text": 0.2, "math": 0.1}  # share of characters per group
# Bump when the corpus or the training recipe changes, so that cached tokenizers are rebuilt.
COURSE_TOKENIZER_VERSION = 1


def course_vocab_size(profile: str) -> int:
    """Tokens of the course tokenizer for ``profile``: ``COURSE_VOCAB_SIZE[profile]`` regular
    tokens + the 22 special ones (the smallest embedding a model for it may have; round it up
    with :func:`~qcoder_lib.tokenizer.padded_vocab_size` semantics if you like). Nothing is
    trained or read. Raises ``ValueError`` naming an unknown profile."""
    if profile not in COURSE_VOCAB_SIZE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(COURSE_VOCAB_SIZE)}")
    return COURSE_VOCAB_SIZE[profile] + NUM_SPECIAL_TOKENS


_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
              "lib2to3", "turtledemo", "ensurepip", "venv", "tkinter", "idlelib"}


def _stdlib_py_files() -> list[str]:
    """The standard library's ``.py`` files (no tests, no site-packages) as paths relative to
    it, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIP_DIRS and not d.startswith(("config-", "test")))
        for f in filenames:
            if f.endswith(".py") and not f.startswith("test_"):
                files.append((Path(dirpath) / f).relative_to(root).as_posix())
    return sorted(files)


def _in_heldout(key: str) -> bool:
    """A fixed one-in-eight split by name (so train and held-out never share a document)."""
    return hashlib.sha1(key.encode()).digest()[0] % 8 == 0


def _take(texts: Iterable[str], budget: int) -> list[str]:
    """Texts from ``texts`` until about ``budget`` characters are gathered."""
    out, size = [], 0
    for t in texts:
        if size >= budget:
            break
        out.append(t)
        size += len(t)
    return out


def tokenizer_corpus(profile: str | None = None, *, split: str = "train",
                     n_chars: int | None = None) -> dict[str, list[str]]:
    """The embedded corpus the course tokenizer is trained on: ``{"code": [...], "text": [...],
    "math": [...]}`` in the report's 70/20/10 code / text / math mix, about ``COURSE_CORPUS_CHARS[profile]``
    characters in all (or ``n_chars``), read through :mod:`qcoder_lib.data.sources` and
    :mod:`qcoder_lib.data.math_problems`.

    code: the running Python's standard library ``.py`` files (tests left out), in a fixed
    shuffled order so that a small budget still spans many modules; text: half installed
    packages' READMEs (text with code, the report's "text-code grounding" data), half the
    Python reference manual (``pydoc_data.topics``, prose); math: worked problems whose answers
    were checked by execution (``math_documents``).
    ``split="heldout"`` returns a disjoint sample, a tenth of the size (at least 150,000
    characters), for measuring bytes per token on text the tokenizer has not seen. The
    selection is deterministic for a given Python and set of installed packages.
    """
    from qcoder_lib.data.math_problems import math_documents
    from qcoder_lib.data.sources import (
        Repo,
        code_documents,
        docs_documents,
        site_package_repos,
        stdlib_repo,
        text_documents,
    )
    from qcoder_lib.runtime import get_profile

    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r}: expected 'train' or 'heldout'")
    profile = profile or get_profile()
    if profile not in COURSE_CORPUS_CHARS:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(COURSE_CORPUS_CHARS)}")
    held = split == "heldout"
    total = n_chars or (max(150_000, COURSE_CORPUS_CHARS[profile] // 10) if held
                        else COURSE_CORPUS_CHARS[profile])
    budget = {k: int(total * v) for k, v in CORPUS_MIX.items()}

    files = [f for f in _stdlib_py_files() if _in_heldout(f) == held]
    random.Random(0).shuffle(files)
    stdlib = Repo("python-stdlib", Path(sysconfig.get_paths()["stdlib"]), files=files)
    max_bytes = 40_000 if held else 200_000  # held-out: more, smaller files
    packages = (d for d in code_documents(site_package_repos(), languages=["python"],
                                          max_files_per_repo=40, max_bytes=max_bytes)
                if _in_heldout(f"{d.repo}/{d.path}") == held)  # when the stdlib is not enough
    code_docs = itertools.chain(code_documents([stdlib], max_bytes=max_bytes), packages)
    code = _take((d.text for d in code_docs), budget["code"])

    readmes = (d.text for d in docs_documents() if _in_heldout(d.repo) == held)
    text = _take(readmes, budget["text"] // 2)
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - part of the standard library
        topics = {}
    names = [n for n in sorted(topics) if _in_heldout(n) == held]
    random.Random(1).shuffle(names)
    text += _take((topics[n] for n in names), budget["text"] - sum(map(len, text)))
    docstrings = (d.text for d in text_documents(samples_dir=None, include_packages=False,
                                                 docstring_roots=[stdlib_repo()])
                  if _in_heldout(d.path) == held)  # stdlib docstrings, when still short
    text += _take(docstrings, budget["text"] - sum(map(len, text)))

    seed = 1_000_003 if held else 0
    problems = (d.text for d in math_documents(max(1, budget["math"] // 100), seed))
    math = _take(problems, budget["math"])
    return {"code": code, "text": text, "math": math}


def course_tokenizer_dir(profile: str, vocab_size: int | None = None) -> Path:
    """The folder :func:`course_tokenizer` caches ``profile``'s tokenizer in:
    ``<artifacts>/tokenizer-<profile>/``, or ``<artifacts>/tokenizer-<profile>-<vocab_size>/``
    for a vocabulary size other than the profile's. Raises ``ValueError`` naming an unknown
    profile."""
    if profile not in COURSE_VOCAB_SIZE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(COURSE_VOCAB_SIZE)}")
    if vocab_size is None or vocab_size == COURSE_VOCAB_SIZE[profile]:
        return artifacts_dir() / f"tokenizer-{profile}"
    return artifacts_dir() / f"tokenizer-{profile}-{vocab_size}"


def course_tokenizer(profile: str | None = None, cache_dir: str | os.PathLike | None = None,
                     *, rebuild: bool = False, vocab_size: int | None = None):
    """The course's tokenizer for ``profile`` (smoke: 2,048 regular tokens, cpu: 2,048,
    gpu: 32,768; +22 special), trained on :func:`tokenizer_corpus` once and cached in
    ``<artifacts>/tokenizer-<profile>/`` (``cache_dir`` overrides the folder).

    ``vocab_size`` trains another number of regular tokens on the same corpus, cached apart in
    ``<artifacts>/tokenizer-<profile>-<vocab_size>/`` (the profile's own cache is left alone).
    A cached tokenizer is reused when its recipe (vocabulary size, corpus size, Python version,
    course tokenizer version) matches; otherwise, or with ``rebuild=True``, it is retrained.
    Safe when several processes ask at once (a lock file serialises training).
    """
    import platform

    from qcoder_lib.runtime import get_profile

    profile = profile or get_profile()
    if profile not in COURSE_VOCAB_SIZE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(COURSE_VOCAB_SIZE)}")
    n_regular = COURSE_VOCAB_SIZE[profile] if vocab_size is None else int(vocab_size)
    if n_regular < 256:
        raise ValueError(f"vocab_size={vocab_size} is below the 256 byte symbols of byte-level BPE")
    folder = Path(cache_dir) if cache_dir else course_tokenizer_dir(profile, n_regular)
    recipe = {
        "version": COURSE_TOKENIZER_VERSION,
        "profile": profile,
        "vocab_size": n_regular,
        "corpus_chars": COURSE_CORPUS_CHARS[profile],
        "python": platform.python_version(),
    }
    meta_path = folder / "course_tokenizer.json"

    def cached_ok() -> bool:
        try:
            return json.loads(meta_path.read_text())["recipe"] == recipe
        except (OSError, ValueError, KeyError):
            return False

    if not rebuild and cached_ok():
        return load_tokenizer(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f".{folder.name}.lock"):
        if not rebuild and cached_ok():  # another process built it while we waited
            return load_tokenizer(folder)
        start = time.perf_counter()
        corpus = tokenizer_corpus(profile)
        texts = [t for part in CORPUS_MIX for t in corpus[part]]
        tok = train_tokenizer(texts, n_regular)
        seconds = time.perf_counter() - start
        digest = hashlib.sha256("".join(texts).encode("utf-8", "replace")).hexdigest()[:16]
        info = {"recipe": recipe, "corpus_sha256_16": digest, "train_seconds": round(seconds, 2),
                "corpus_chars": {k: sum(map(len, v)) for k, v in corpus.items()}}
        with atomic_dir(folder) as tmp:
            tok.save_pretrained(str(tmp))
            (tmp / "course_tokenizer.json").write_text(json.dumps(info, indent=1))
    return load_tokenizer(folder)
