"""Qwen2-style byte-level BPE: training a tokenizer and loading one.

:func:`train_tokenizer` builds a tokenizer the way Qwen2's is built: NFC normaliser, the Qwen2
pre-tokenizer regex (``PRETOKENIZE_REGEX``: digits split one by one), a byte-level alphabet so
that every string can be encoded, the 22 special tokens appended after the regular vocabulary in
Qwen's order, and Qwen2.5's ChatML chat template. It returns a
``transformers.PreTrainedTokenizerFast`` that ``save_pretrained`` / ``from_pretrained`` (and
``AutoTokenizer``) handle like any hub tokenizer.

:func:`load_tokenizer` loads a folder written by ``save_pretrained`` or a hub name, and refuses
what would silently go wrong: a folder without tokenizer files (a model checkpoint), a mistyped
local path (never sent to the hub), a hub name while offline.

Choices (tested in ``tests/test_tokenizer.py``):

- ``vocab_size`` counts the *regular* tokens (256 byte symbols + learned merges), like Qwen's
  151,643; the specials follow, so ``special_id(tok, t) == regular_size + SPECIAL_TOKENS[t] -
  151643`` and ``len(tok) == regular_size + 22``.
- ``eos_token`` and ``pad_token`` are both ``<|endoftext|>`` (as in Qwen2.5's base models).
  Padding positions are masked by the attention mask / loss mask, so sharing the id is harmless
  and the layout stays Qwen's. The one consequence: build loss masks from the attention mask or
  the lengths, never from ``ids == pad_token_id``. There is no bos token.
- All 22 special tokens are flagged special (``skip_special_tokens`` drops them). Qwen's
  published tokenizer flags ``<tool_call>`` ... ``<|file_sep|>`` as added but not special;
  :func:`~qcoder_lib.tokenizer.encode_data` is safe with either.
- NFC normalisation is kept (part of what a Qwen tokenizer is): see
  :mod:`qcoder_lib.tokenizer.encode` for the round-trip rule.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from qcoder_lib.tokenizer.chat import QWEN25_CHAT_TEMPLATE
from qcoder_lib.tokenizer.special import ENDOFTEXT, QWEN_REGULAR_VOCAB, SPECIAL_TOKENS

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

# Qwen2's pre-tokenizer regex: contractions, letters (with one leading non-letter), single digits,
# punctuation runs (with one leading space), newlines, whitespace.
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The files that make a folder a tokenizer (any one group is enough).
TOKENIZER_FILE_GROUPS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",),
                         ("vocab.txt",))


def _backend_pipeline():
    """A ``tokenizers.Tokenizer`` with Qwen2's normaliser, pre-tokenizer and decoder, no vocab."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _iter_texts(texts_or_files: Iterable) -> Iterator[str]:
    """Yield training texts: a ``str`` is text, a path (``pathlib.Path``, any ``os.PathLike``)
    is a file read as UTF-8 (undecodable bytes become U+FFFD). A file name given as a ``str``
    is text, not a file: no guessing."""
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            yield Path(item).read_text(encoding="utf-8", errors="replace")
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(
                f"train_tokenizer: texts_or_files holds a {type(item).__name__}; "
                "expected str (text) or pathlib.Path (a file)"
            )


def train_tokenizer(
    texts_or_files: Iterable,
    vocab_size: int,
    *,
    min_frequency: int = 2,
    chat_template: str = QWEN25_CHAT_TEMPLATE,
    model_max_length: int = 32768,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a Qwen2-style byte-level BPE tokenizer and return a ``PreTrainedTokenizerFast``.

    ``texts_or_files``: strings of text and/or ``pathlib.Path`` files to read (UTF-8).
    ``vocab_size``: number of *regular* tokens (256 byte symbols + merges); the 22 special tokens
    come after them in Qwen's order. If the corpus cannot support that many merges, fewer
    regular tokens are learned (``regular_vocab_size(tok)`` tells).
    ``min_frequency``: a pair must occur at least this often to be merged.

    Raises ``ValueError`` when ``vocab_size`` is smaller than the 256-symbol byte alphabet.
    """
    from tokenizers import AddedToken, pre_tokenizers, trainers

    if vocab_size < 256:
        raise ValueError(f"vocab_size={vocab_size} is below the 256 byte symbols of byte-level BPE")
    backend = _backend_pipeline()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    backend.train_from_iterator(_iter_texts(texts_or_files), trainer=trainer)
    n_regular = backend.get_vocab_size(with_added_tokens=False)
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    for token, qwen_id in SPECIAL_TOKENS.items():
        got = backend.token_to_id(token)
        want = n_regular + qwen_id - QWEN_REGULAR_VOCAB
        if got != want:  # a regular token equal to a special one would break the layout
            raise RuntimeError(f"special token {token!r} got id {got}, expected {want}")
    return _wrap(backend, chat_template=chat_template, model_max_length=model_max_length)


def _wrap(backend, *, chat_template: str, model_max_length: int) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,  # never save True: apply_chat_template would break
        model_max_length=model_max_length,
        chat_template=chat_template,
        # listed as Qwen's tokenizer_config does (transformers 5 calls them extra_special_tokens)
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t != ENDOFTEXT],
    )


def tokenizer_fingerprint(tokenizer) -> str:
    """16 hex digits that change whenever the tokenizer maps text to other ids (a hash of its
    serialised vocabulary, merges, pre-tokenizer and special tokens): what a cache of token ids
    (a corpus of shards) records to know which tokenizer wrote it."""
    import hashlib

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    return hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()[:16]


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs):
    """Load a tokenizer from a folder written by ``save_pretrained`` (this course's, or a
    downloaded Qwen one) or, when online, from a hub name such as ``"Qwen/Qwen2.5-Coder-0.5B"``.

    - An existing folder must hold tokenizer files (``tokenizer.json``, or ``vocab.json`` +
      ``merges.txt``, ...): a model checkpoint saved without its tokenizer raises
      ``FileNotFoundError`` naming the folder, what is missing and what it holds.
    - Anything that looks like a local path (a ``Path``; a string that starts with ``.``, ``/`` or
      ``~``, has a backslash or more than one ``/``, cannot be a hub id, or whose first part is an
      existing local folder, like ``artifacts/tokenizr-smoke``) must exist: otherwise
      ``FileNotFoundError`` names it. It is never sent to the hub.
    - Only another name goes to the hub. With ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE``),
      or when the hub cannot be reached, only the local hub cache is read and a name that is not
      there raises ``OSError`` at once saying so (no retries). So does ``local_files_only=True``.

    ``kwargs`` go to ``AutoTokenizer.from_pretrained``.
    """
    local_only = bool(kwargs.pop("local_files_only", False))
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    if p.is_dir():
        _check_tokenizer_folder(p)
        return _from_pretrained(str(p), p, local_files_only=True, **kwargs)
    if p.exists():
        raise NotADirectoryError(f"load_tokenizer: '{text}' is a file; pass the folder that holds "
                                 "tokenizer.json (the folder save_pretrained wrote)")
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise FileNotFoundError(f"load_tokenizer: tokenizer folder '{text}' does not exist "
                                "(a local path is never looked up on the hub)")
    offline = "local_files_only=True" if local_only else _offline_reason()
    if offline is None and not _hub_reachable():
        offline = f"the hub ({_hub_endpoint()}) cannot be reached"
    if offline is None:
        return _from_pretrained(text, text, **kwargs)
    snapshot = _cached_snapshot(text, kwargs.pop("cache_dir", None), kwargs.pop("revision", None))
    if snapshot is None:
        raise OSError(f"load_tokenizer: '{text}' is neither a local folder nor in the hub cache, "
                      f"and {offline}: nothing to load. Download it while online (or pass the "
                      "folder it was saved to).")
    _check_tokenizer_folder(snapshot)  # read as a plain folder: no hub code path at all
    return _from_pretrained(str(snapshot), text, local_files_only=True, **kwargs)


def _from_pretrained(source: str, where, **kwargs):
    """``AutoTokenizer.from_pretrained(source)`` (transformers imported only now, after the
    cheap checks), refusing a tokenizer without a vocabulary (it would encode everything to
    ``[]``)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source, **kwargs)
    if len(tok) == 0:
        raise ValueError(f"load_tokenizer: the tokenizer loaded from '{where}' has an empty "
                         "vocabulary")
    return tok


def _cached_snapshot(repo_id: str, cache_dir, revision: str | None) -> Path | None:
    """The hub cache's snapshot folder of ``repo_id`` holding its tokenizer files, or ``None``
    (reads the cache only; ``huggingface_hub.try_to_load_from_cache``)."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("tokenizer_config.json", "tokenizer.json", "vocab.json"):
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision)
        if isinstance(found, str):
            return Path(found).parent
    return None


def _check_tokenizer_folder(folder: Path) -> None:
    """Raise ``FileNotFoundError`` unless ``folder`` holds one of :data:`TOKENIZER_FILE_GROUPS`."""
    if any(all((folder / f).is_file() for f in group) for group in TOKENIZER_FILE_GROUPS):
        return
    held = sorted(f.name for f in folder.iterdir())
    wanted = " or ".join(" + ".join(g) for g in TOKENIZER_FILE_GROUPS)
    hint = (" It looks like a model checkpoint saved without its tokenizer: save it with "
            "tokenizer.save_pretrained(folder), or load the tokenizer from where it was built."
            if "config.json" in held else "")
    shown = ", ".join(held[:12]) + (", ..." if len(held) > 12 else "") if held else "nothing"
    raise FileNotFoundError(f"load_tokenizer: folder '{folder}' has no tokenizer files "
                            f"(needs {wanted}); it holds: {shown}.{hint}")


_HUB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,96}(/[A-Za-z0-9_.-]{1,96})?$")


def _looks_like_path(text: str) -> bool:
    """True when ``text`` is meant as a local path rather than a hub id (see load_tokenizer)."""
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if not _HUB_ID.match(text) or ".." in text or "--" in text:
        return True  # not a valid hub id: it can only be a (mistyped) path
    first = text.split("/")[0]
    return "/" in text and Path(first).is_dir()  # "artifacts/tokenizr": a local parent exists


def _offline_reason() -> str | None:
    """Why the hub must not be asked (an offline switch set), or ``None``."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var}={os.environ[var]} (offline)"
    return None


def _hub_endpoint() -> str:
    """The hub's address: ``$HF_ENDPOINT`` or ``https://huggingface.co``."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub (or the HTTPS proxy) opens within ``timeout``
    seconds; name resolution included, so a machine without network answers at once."""
    import socket

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else _hub_endpoint())
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=probe, daemon=True)  # bounds a slow DNS lookup too
    worker.start()
    worker.join(timeout + 0.5)
    return bool(ok)
