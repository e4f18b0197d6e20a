"""Qwen2.5-Coder's tokenizer and its special tokens.

What this module gives the course:

- ``SPECIAL_TOKENS``: the Qwen2.5 special-token table with the official ids, and
  ``SPECIAL_TOKEN_PURPOSE``: what each one is for (and whether this course uses it).
- :func:`train_tokenizer`: a byte-level BPE tokenizer built the way Qwen2's is (NFC normaliser,
  Qwen2 pre-tokenizer regex that splits digits one by one, byte-level alphabet so that every
  string can be encoded), with the 22 special tokens appended after the regular vocabulary in
  Qwen's order, and Qwen2.5's ChatML chat template. It returns a
  ``transformers.PreTrainedTokenizerFast`` that ``save_pretrained`` / ``from_pretrained`` (and
  ``AutoTokenizer``) handle like any hub tokenizer.
- :func:`load_tokenizer`: a folder written by ``save_pretrained`` or a hub name (for instance
  ``Qwen/Qwen2.5-Coder-0.5B`` when online).
- :func:`course_tokenizer`: the course's tokenizer for a profile, trained once on the embedded
  corpus (:func:`tokenizer_corpus`) and cached under ``artifacts/tokenizer-<profile>/``.
- :func:`encode_data`: the only right way to encode text that comes from data. A file that
  contains the literal string ``<|endoftext|>`` is encoded as the characters it holds, never as
  the special id; special tokens enter a sequence only by id (:func:`special_id`).
  :func:`encode_data_batch` does the same for many texts.
- :func:`special_id`, :func:`special_ids`, :func:`qwen_id_map`, :func:`regular_vocab_size`,
  :func:`padded_vocab_size`: ids and sizes in a given tokenizer.
- :func:`render_chatml` (ChatML written by hand, the reference for the template) and
  :func:`encode_chat` (a conversation's ids with the turn markers inserted by id).
- :func:`tokenizer_corpus` (the embedded corpus) and :func:`bytes_per_token` (compression).

Vocabulary layout. ``vocab_size`` in :func:`train_tokenizer` counts the *regular* tokens (the 256
byte symbols plus the learned merges), like Qwen's 151,643. The special tokens follow in
Qwen's order, so ``special_id(tok, t) == regular_size + SPECIAL_TOKENS[t] - 151643`` for every
special token ``t``, and ``len(tok) == regular_size + 22``. The model's embedding may have more
rows than that (Qwen: 151,936), see :func:`padded_vocab_size`.

Choices (documented here, tested in ``tests/test_tokenizer.py``):

- ``eos_token`` and ``pad_token`` are both ``<|endoftext|>`` (as in Qwen2.5's base models; the
  instruct models set eos to ``<|im_end|>``, the chat template ends each turn with it). Padding
  positions are masked by the attention mask / loss mask, so sharing the id is harmless, and the
  vocabulary stays identical to Qwen's layout (no extra pad token). The one consequence: build
  loss masks from the attention mask or the lengths, never from ``ids == pad_token_id``, which
  would also hide every real ``<|endoftext|>``. There is no bos token.
- All 22 special tokens are flagged special (``skip_special_tokens`` drops them). Qwen's
  published tokenizer flags ``<tool_call>`` ... ``<|file_sep|>`` as added but not special;
  :func:`encode_data` is safe with either.
- Normalisation: NFC, as Qwen. So the round trip ``decode(encode_data(tok, x)) == x`` holds for
  NFC-normalised strings; in general ``decode(encode_data(tok, x)) == unicodedata.normalize(
  "NFC", x)``. We keep the normaliser (rather than dropping it for an exact round trip) because
  it is part of what a Qwen tokenizer is, and NFC only merges canonically equivalent forms (an
  ``e`` followed by a combining accent becomes ``é``), which look the same to a reader.
- Lone surrogates (``"\\ud800"``; only reachable from Python strings, never from valid UTF-8
  files) cannot be encoded: :func:`encode_data` raises ``ValueError`` naming the position.
- Decoding does not "clean up tokenization spaces" (that would change `` .`` into ``.`` in code).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import sysconfig
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from qcoder_lib.io import FileLock, artifacts_dir, atomic_dir

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

# The Qwen2.5 special tokens with their official ids (after the 151,643 regular BPE tokens).
SPECIAL_TOKENS: dict[str, int] = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}

# Number of regular (BPE) tokens in the real Qwen2.5 vocabulary: ids 0 .. 151642.
QWEN_REGULAR_VOCAB = 151643
# Rows of the embedding matrix in Qwen2.5-Coder 0.5B-3B (7B+ use 152064): the vocabulary padded.
QWEN_EMBEDDING_ROWS = 151936

# What each special token is for, and whether this course's model is trained with it.
SPECIAL_TOKEN_PURPOSE: dict[str, tuple[str, bool]] = {
    "<|endoftext|>": ("end of a document; eos of base models; also the pad token", True),
    "<|im_start|>": ("ChatML: opens a turn, followed by the role and a newline", True),
    "<|im_end|>": ("ChatML: closes a turn; eos of instruct models", True),
    "<|object_ref_start|>": ("vision-language (Qwen2-VL): start of a referred object", False),
    "<|object_ref_end|>": ("vision-language: end of a referred object", False),
    "<|box_start|>": ("vision-language: start of a bounding box", False),
    "<|box_end|>": ("vision-language: end of a bounding box", False),
    "<|quad_start|>": ("vision-language: start of a quadrilateral", False),
    "<|quad_end|>": ("vision-language: end of a quadrilateral", False),
    "<|vision_start|>": ("vision-language: start of an image or video", False),
    "<|vision_end|>": ("vision-language: end of an image or video", False),
    "<|vision_pad|>": ("vision-language: vision placeholder", False),
    "<|image_pad|>": ("vision-language: image patch placeholder", False),
    "<|video_pad|>": ("vision-language: video frame placeholder", False),
    "<tool_call>": ("function calling: opens a tool call (JSON)", False),
    "</tool_call>": ("function calling: closes a tool call", False),
    "<|fim_prefix|>": ("fill-in-the-middle: the code before the hole follows", True),
    "<|fim_middle|>": ("fill-in-the-middle: the missing middle follows (what is generated)", True),
    "<|fim_suffix|>": ("fill-in-the-middle: the code after the hole follows", True),
    "<|fim_pad|>": ("fill-in-the-middle: padding inside FIM samples", True),
    "<|repo_name|>": ("repository level: the repository's name follows", True),
    "<|file_sep|>": ("repository level: a new file (its path, then its content) follows", True),
}

# The special tokens a code model needs at minimum (used by the notebook's "missing FIM" demo).
FIM_TOKENS = ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>")
REPO_TOKENS = ("<|repo_name|>", "<|file_sep|>")

# Qwen2's pre-tokenizer regex: contractions, letters (with one leading non-letter), single digits,
# punctuation runs (with one leading space), newlines, whitespace.
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5(-Coder)-Instruct's chat template (ChatML, tools support), as published by Qwen.
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- '" + DEFAULT_SYSTEM_PROMPT + "' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    "\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) '
    'or (message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# Regular vocabulary size (without the 22 special tokens) of the course tokenizer per profile.
COURSE_VOCAB_SIZE = {"smoke": 2048, "cpu": 8192, "gpu": 32768}
# Characters of training text per profile, split code / docs / math as the report's 70/20/10 mix.
COURSE_CORPUS_CHARS = {"smoke": 1_500_000, "cpu": 8_000_000, "gpu": 40_000_000}
CORPUS_MIX = {"code": 0.7, "docs": 0.2, "math": 0.1}
# Bump when the corpus or the training recipe changes, so that cached tokenizers are rebuilt.
COURSE_TOKENIZER_VERSION = 1


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


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
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,  # never save True: apply_chat_template would break
        model_max_length=model_max_length,
        chat_template=chat_template,
        # listed as Qwen's tokenizer_config does (transformers 5 calls them extra_special_tokens)
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t != "<|endoftext|>"],
    )


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs):
    """Load a tokenizer from a folder written by ``save_pretrained`` (this course's, or a
    downloaded Qwen one) or, when online, from a hub name such as ``"Qwen/Qwen2.5-Coder-0.5B"``.

    A ``Path``, or a string that cannot be a hub name (it starts with ``.``, ``/`` or ``~``, or
    has more than one ``/``), must be an existing folder: otherwise ``FileNotFoundError`` names
    it. ``kwargs`` go to ``AutoTokenizer.from_pretrained``.
    """
    from transformers import AutoTokenizer

    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True, **kwargs)
    text = str(name_or_path)
    if (isinstance(name_or_path, os.PathLike) or text.startswith((".", "/", "~"))
            or text.count("/") > 1 or os.sep != "/" and os.sep in text):
        raise FileNotFoundError(f"tokenizer folder {text!r} does not exist")
    return AutoTokenizer.from_pretrained(text, **kwargs)


# --------------------------------------------------------------------------------------------
# Ids and encoding
# --------------------------------------------------------------------------------------------


def special_id(tokenizer, token: str) -> int:
    """The id of special token ``token`` (e.g. ``"<|fim_prefix|>"``) in ``tokenizer``.

    Raises ``KeyError`` naming the token when it is not a Qwen special token or is missing from
    this tokenizer (a tokenizer without FIM tokens cannot do FIM).
    """
    if token not in SPECIAL_TOKENS:
        raise KeyError(f"{token!r} is not a Qwen2.5 special token (see SPECIAL_TOKENS)")
    tid = tokenizer.convert_tokens_to_ids(token)
    vocab_has = token in tokenizer.get_vocab()
    if tid is None or not vocab_has:
        raise KeyError(f"special token {token!r} is not in this tokenizer")
    return int(tid)


def special_ids(tokenizer) -> dict[str, int]:
    """``{token: id}`` for every Qwen special token present in ``tokenizer``."""
    vocab = tokenizer.get_vocab()
    return {t: int(vocab[t]) for t in SPECIAL_TOKENS if t in vocab}


def qwen_id_map(tokenizer) -> dict[int, int]:
    """Map official Qwen2.5 special ids (151643 ...) to the ids of the same tokens here."""
    return {SPECIAL_TOKENS[t]: i for t, i in special_ids(tokenizer).items()}


def regular_vocab_size(tokenizer) -> int:
    """Number of regular (non-special) tokens: the id of ``<|endoftext|>`` when the layout is
    Qwen's (specials right after the regular vocabulary)."""
    return special_id(tokenizer, "<|endoftext|>")


def padded_vocab_size(tokenizer, multiple: int = 128) -> int:
    """Rows for the model's embedding: ``len(tokenizer)`` rounded up to ``multiple`` (matrix
    shapes that are multiples of 64/128 run faster on GPUs). Qwen keeps spare rows too: 151,665
    tokens in 151,936 = 1187 * 128 rows. The tokenizer never produces the padded ids."""
    n = len(tokenizer)
    return -(-n // multiple) * multiple


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
    n_bytes = n_tokens = 0
    for t in texts:
        n_bytes += len(t.encode("utf-8"))
        n_tokens += len(encode_data(tokenizer, t))
    if n_tokens == 0:
        raise ValueError("bytes_per_token: texts hold no tokens")
    return n_bytes / n_tokens


def render_chatml(messages: list[dict], *, add_generation_prompt: bool = False,
                  system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """ChatML written by hand (no template engine), as Qwen2.5 formats a conversation without
    tools: a default system turn when the first message is not a system one, then
    ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``
    when ``add_generation_prompt``. The reference the chat template is tested against."""
    out = []
    if not messages or messages[0]["role"] != "system":
        out.append(f"<|im_start|>system\n{system_prompt}<|im_end|>\n")
    for m in messages:
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def encode_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False,
                system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[int]:
    """Token ids of a conversation in ChatML (as :func:`render_chatml`), built safely: the
    ``<|im_start|>`` / ``<|im_end|>`` ids are inserted by id and everything between them
    (role, newline, content) is encoded as data. A message that contains ``"<|im_end|>"`` can
    therefore not close its turn early. For content without special-token strings the ids equal
    ``tokenizer.apply_chat_template(messages, tokenize=True)``.

    Plain turns only: a message with ``tool_calls`` or role ``tool`` raises ``ValueError``
    naming its index (format those with ``apply_chat_template``)."""
    start, end = special_id(tokenizer, "<|im_start|>"), special_id(tokenizer, "<|im_end|>")
    for i, m in enumerate(messages):
        if m.get("tool_calls") or m.get("role") == "tool" or not isinstance(m.get("content"), str):
            raise ValueError(f"encode_chat: messages[{i}] is a tool message or has no text "
                             "content; use tokenizer.apply_chat_template for tool use")
    turns = [(m["role"], m["content"]) for m in messages]
    if not turns or turns[0][0] != "system":
        turns.insert(0, ("system", system_prompt))
    segments = [f"{role}\n{content}" for role, content in turns]
    seg_ids = encode_data_batch(tokenizer, segments + ["\n", "assistant\n"])
    newline, gen = seg_ids[-2], seg_ids[-1]
    ids: list[int] = []
    for body in seg_ids[:-2]:
        ids += [start, *body, end, *newline]
    if add_generation_prompt:
        ids += [start, *gen]
    return ids


# --------------------------------------------------------------------------------------------
# The embedded corpus and the cached course tokenizer
# --------------------------------------------------------------------------------------------

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
    out, size = [], 0
    for t in texts:
        if size >= budget:
            break
        out.append(t)
        size += len(t)
    return out


def tokenizer_corpus(profile: str | None = None, *, split: str = "train",
                     n_chars: int | None = None) -> dict[str, list[str]]:
    """The embedded corpus the course tokenizer is trained on: ``{"code": [...], "docs": [...],
    "math": [...]}`` in the report's 70/20/10 mix, about ``COURSE_CORPUS_CHARS[profile]``
    characters in all (or ``n_chars``), read through :mod:`qcoder_lib.data.sources`.

    code: the running Python's standard library ``.py`` files (tests left out), in a fixed
    shuffled order so that a small budget still spans many modules; docs: half installed
    packages' READMEs (text with code, the report's "text-code grounding" data), half the
    Python reference manual (``pydoc_data.topics``, prose); math: worked problems whose answers
    were checked by execution (``math_documents``).
    ``split="heldout"`` returns a disjoint sample, a tenth of the size (at least 150,000
    characters), for measuring bytes per token on text the tokenizer has not seen. The
    selection is deterministic for a given Python and set of installed packages.
    """
    from qcoder_lib.data.sources import (
        Repo,
        code_documents,
        docs_documents,
        math_documents,
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
    docs = _take(readmes, budget["docs"] // 2)
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - part of the standard library
        topics = {}
    names = [n for n in sorted(topics) if _in_heldout(n) == held]
    random.Random(1).shuffle(names)
    docs += _take((topics[n] for n in names), budget["docs"] - sum(map(len, docs)))
    docstrings = (d.text for d in text_documents(samples_dir=None, include_packages=False,
                                                 docstring_roots=[stdlib_repo()])
                  if _in_heldout(d.path) == held)  # stdlib docstrings, when still short
    docs += _take(docstrings, budget["docs"] - sum(map(len, docs)))

    seed = 1_000_003 if held else 0
    problems = (d.text for d in math_documents(max(1, budget["math"] // 100), seed))
    math = _take(problems, budget["math"])
    return {"code": code, "docs": docs, "math": math}


def course_tokenizer(profile: str | None = None, cache_dir: str | os.PathLike | None = None,
                     *, rebuild: bool = False):
    """The course's tokenizer for ``profile`` (smoke: 2,048 regular tokens, cpu: 8,192,
    gpu: 32,768; +22 special), trained on :func:`tokenizer_corpus` once and cached in
    ``<artifacts>/tokenizer-<profile>/`` (``cache_dir`` overrides the folder).

    A cached tokenizer is reused when its recipe (vocabulary size, corpus size, Python version,
    course tokenizer version) matches; otherwise, or with ``rebuild=True``, it is retrained.
    Safe when several processes ask at once (a lock file serialises training).
    """
    import platform

    from qcoder_lib.runtime import get_profile

    profile = profile or get_profile()
    if profile not in COURSE_VOCAB_SIZE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(COURSE_VOCAB_SIZE)}")
    folder = Path(cache_dir) if cache_dir else artifacts_dir() / f"tokenizer-{profile}"
    recipe = {
        "version": COURSE_TOKENIZER_VERSION,
        "profile": profile,
        "vocab_size": COURSE_VOCAB_SIZE[profile],
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
        texts = [t for part in ("code", "docs", "math") for t in corpus[part]]
        tok = train_tokenizer(texts, COURSE_VOCAB_SIZE[profile])
        seconds = time.perf_counter() - start
        digest = hashlib.sha256("".join(texts).encode("utf-8", "replace")).hexdigest()[:16]
        info = {"recipe": recipe, "corpus_sha256_16": digest, "train_seconds": round(seconds, 2),
                "corpus_chars": {k: sum(map(len, v)) for k, v in corpus.items()}}
        with atomic_dir(folder) as tmp:
            tok.save_pretrained(str(tmp))
            (tmp / "course_tokenizer.json").write_text(json.dumps(info, indent=1))
    return load_tokenizer(folder)
