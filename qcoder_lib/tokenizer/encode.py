"""Encoding text that comes from data, decoding, compression and vocabulary sizes.

:func:`encode_data` is the only right way to encode text that comes from data: a file that
contains the literal string ``<|endoftext|>`` is encoded as the characters it holds, never as the
special id; special tokens enter a sequence only by id (:func:`~qcoder_lib.tokenizer.special_id`).
:func:`encode_data_batch` does the same for many texts.

Round trip: the tokenizer normalises to NFC (as Qwen's does), so ``decode(encode_data(tok, x))
== unicodedata.normalize("NFC", x)``, which is ``x`` itself for NFC text (nearly every file).
Lone surrogates (``"\\ud800"``; only reachable from Python strings, never from valid UTF-8
files) cannot be encoded: :func:`check_encodable` raises ``ValueError`` naming the position.
Decoding does not "clean up tokenization spaces" (that would change `` .`` into ``.`` in code).

Vocabulary layout: the regular tokens come first, then the 22 special tokens in Qwen's order, so
:func:`regular_vocab_size` is the id of ``<|endoftext|>``; the model's embedding may have more
rows than ``len(tokenizer)`` (:func:`padded_vocab_size`).
"""

from __future__ import annotations

from collections.abc import Iterable

from qcoder_lib.tokenizer.special import ENDOFTEXT, special_id


def check_encodable(text: str, what: str = "text") -> None:
    """Raise ``ValueError`` naming the position of the first lone surrogate in ``text`` (such a
    string is not valid Unicode and has no UTF-8 bytes to tokenize)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} holds a lone surrogate {text[e.start]!r} at position {e.start}; "
            "it has no UTF-8 bytes (repair it, e.g. text.encode('utf-8', 'replace').decode())"
        ) from None


def encode_data(tokenizer, text: str) -> list[int]:
    """Encode ``text`` that comes from data (a source file, a document) as data.

    Any special-token string inside it (``"<|endoftext|>"``, ``"<|fim_prefix|>"``, ...) is
    split into ordinary tokens, so that special ids only enter a sequence when code puts them
    there by id. No bos/eos is added. (It switches the backend to split mode for the call and
    back, so do not share one tokenizer object between threads that call this and templates at
    the same time.) ``decode`` gives back ``unicodedata.normalize("NFC",
    text)`` (``text`` itself when it is NFC already, as nearly all files are). Raises
    ``ValueError`` for a lone surrogate (with its position).
    """
    if not isinstance(text, str):
        raise TypeError(f"encode_data: text is a {type(text).__name__}, expected str")
    check_encodable(text)
    return encode_data_batch(tokenizer, [text])[0]


def encode_data_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """:func:`encode_data` for many texts at once (the Rust backend encodes them in parallel)."""
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"encode_data_batch: texts[{i}] is a {type(t).__name__}, expected str")
        check_encodable(t, what=f"texts[{i}]")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer: the transformers path
        return [list(tokenizer.encode(t, add_special_tokens=False, split_special_tokens=True))
                for t in texts]
    # Added tokens that are not flagged special (a real Qwen2.5 tokenizer's FIM and tool tokens)
    # are matched even in split mode: texts that contain one go through the plain BPE pipeline.
    plain_added = [a.content for a in tokenizer.added_tokens_decoder.values() if not a.special]
    out: list[list[int] | None] = [None] * len(texts)
    fast_i = []
    for i, t in enumerate(texts):
        if any(a in t for a in plain_added):
            out[i] = _encode_without_added_tokens(backend, t)
        else:
            fast_i.append(i)
    before = backend.encode_special_tokens
    backend.encode_special_tokens = True
    try:  # the backend directly: no "longer than model_max_length" warning for whole files
        encodings = backend.encode_batch([texts[i] for i in fast_i], add_special_tokens=False)
    finally:
        backend.encode_special_tokens = before  # never leave the tokenizer in split mode
    for i, e in zip(fast_i, encodings):
        out[i] = e.ids
    return out


def _encode_without_added_tokens(backend, text: str) -> list[int]:
    """normaliser -> pre-tokenizer -> BPE model, step by step, skipping added-token matching."""
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    pieces = backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer else [(text, None)]
    return [t.id for piece, _ in pieces for t in backend.model.tokenize(piece)]


def decode(tokenizer, ids) -> str:
    """Decode ids back to text exactly (no space clean-up; special tokens kept as text)."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def bytes_per_token(tokenizer, texts: Iterable[str]) -> float:
    """UTF-8 bytes per token over ``texts`` encoded as data: the compression the vocabulary
    buys (higher is better: fewer positions for the same content)."""
    texts = list(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(map(len, encode_data_batch(tokenizer, texts)))
    if n_tokens == 0:
        raise ValueError("bytes_per_token: texts hold no tokens")
    return n_bytes / n_tokens


def regular_vocab_size(tokenizer) -> int:
    """Number of regular (non-special) tokens: the id of ``<|endoftext|>`` when the layout is
    Qwen's (specials right after the regular vocabulary)."""
    return special_id(tokenizer, ENDOFTEXT)


def padded_vocab_size(tokenizer, multiple: int = 128) -> int:
    """Rows for the model's embedding: ``len(tokenizer)`` rounded up to ``multiple`` (matrix
    shapes that are multiples of 64/128 run faster on GPUs). Qwen keeps spare rows too: 151,665
    tokens in 151,936 = 1187 * 128 rows. The tokenizer never produces the padded ids."""
    n = len(tokenizer)
    return -(-n // multiple) * multiple
