"""Qwen2.5-Coder's tokenizer and its special tokens, at course scale.

One concept per module; import the names from here (``from qcoder_lib.tokenizer import
special_id``), which stays stable:

- :mod:`~qcoder_lib.tokenizer.special`: the special tokens, their official ids and purposes
  (``SPECIAL_TOKENS``, ``ENDOFTEXT``, ``FIM_PREFIX`` ..., ``ENDOFTEXT_ID``), :func:`special_id`,
  :func:`special_ids`, :func:`qwen_id_map`. The only place a special-token string or id is
  written.
- :mod:`~qcoder_lib.tokenizer.bpe`: :func:`train_tokenizer` (byte-level BPE built as Qwen2's: NFC,
  the Qwen2 pre-tokenizer regex, the 22 specials after the regular vocabulary, ChatML template)
  and :func:`load_tokenizer` (a ``save_pretrained`` folder or a hub name, refusing checkpoints
  without tokenizer files, mistyped paths and hub names while offline) and
  :func:`tokenizer_fingerprint` (which tokenizer wrote a cache of token ids).
- :mod:`~qcoder_lib.tokenizer.encode`: :func:`encode_data` / :func:`encode_data_batch` (text from
  data never yields a special id), :func:`decode`, :func:`bytes_per_token`,
  :func:`regular_vocab_size`, :func:`padded_vocab_size`, :func:`check_encodable`.
- :mod:`~qcoder_lib.tokenizer.chat`: the ChatML template, :func:`render_chatml`,
  :func:`encode_chat`.
- :mod:`~qcoder_lib.tokenizer.course`: the course corpus (:func:`tokenizer_corpus`, code / text /
  math), cached per-profile tokenizers (:func:`course_tokenizer`) and
  :func:`course_vocab_size`.

Importing this package imports neither transformers nor :mod:`qcoder_lib.data`.
"""

from qcoder_lib.tokenizer.bpe import (
    PRETOKENIZE_REGEX,
    TOKENIZER_FILE_GROUPS,
    load_tokenizer,
    tokenizer_fingerprint,
    train_tokenizer,
)
from qcoder_lib.tokenizer.chat import (
    DEFAULT_SYSTEM_PROMPT,
    QWEN25_CHAT_TEMPLATE,
    encode_chat,
    render_chatml,
)
from qcoder_lib.tokenizer.course import (
    CORPUS_MIX,
    COURSE_CORPUS_CHARS,
    COURSE_TOKENIZER_VERSION,
    COURSE_VOCAB_SIZE,
    course_tokenizer,
    course_tokenizer_dir,
    course_vocab_size,
    tokenizer_corpus,
)
from qcoder_lib.tokenizer.encode import (
    bytes_per_token,
    check_encodable,
    decode,
    encode_data,
    encode_data_batch,
    padded_vocab_size,
    regular_vocab_size,
)
from qcoder_lib.tokenizer.special import (
    ENDOFTEXT,
    ENDOFTEXT_ID,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    FIM_TOKENS,
    IM_END,
    IM_END_ID,
    IM_START,
    NUM_SPECIAL_TOKENS,
    QWEN_EMBEDDING_ROWS,
    QWEN_REGULAR_VOCAB,
    REPO_NAME,
    REPO_TOKENS,
    SPECIAL_TOKEN_PURPOSE,
    SPECIAL_TOKENS,
    qwen_id_map,
    special_id,
    special_ids,
)

__all__ = [
    "CORPUS_MIX",
    "COURSE_CORPUS_CHARS",
    "COURSE_TOKENIZER_VERSION",
    "COURSE_VOCAB_SIZE",
    "DEFAULT_SYSTEM_PROMPT",
    "ENDOFTEXT",
    "ENDOFTEXT_ID",
    "FILE_SEP",
    "FIM_MIDDLE",
    "FIM_PAD",
    "FIM_PREFIX",
    "FIM_SUFFIX",
    "FIM_TOKENS",
    "IM_END",
    "IM_END_ID",
    "IM_START",
    "NUM_SPECIAL_TOKENS",
    "PRETOKENIZE_REGEX",
    "QWEN25_CHAT_TEMPLATE",
    "QWEN_EMBEDDING_ROWS",
    "QWEN_REGULAR_VOCAB",
    "REPO_NAME",
    "REPO_TOKENS",
    "SPECIAL_TOKENS",
    "SPECIAL_TOKEN_PURPOSE",
    "TOKENIZER_FILE_GROUPS",
    "bytes_per_token",
    "check_encodable",
    "course_tokenizer",
    "course_tokenizer_dir",
    "course_vocab_size",
    "decode",
    "encode_chat",
    "encode_data",
    "encode_data_batch",
    "load_tokenizer",
    "padded_vocab_size",
    "qwen_id_map",
    "regular_vocab_size",
    "render_chatml",
    "special_id",
    "special_ids",
    "tokenizer_corpus",
    "tokenizer_fingerprint",
    "train_tokenizer",
]
