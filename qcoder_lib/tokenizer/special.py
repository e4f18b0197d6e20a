"""The special tokens of Qwen2.5(-Coder): the one home of their strings, official ids and purposes.

Nothing else in the library writes a special-token string or id by hand: it imports the
constants below (``ENDOFTEXT``, ``FIM_PREFIX``, ``ENDOFTEXT_ID`` ...) or asks a tokenizer for the
id it really uses (:func:`special_id`), because the course tokenizers put the same 22 tokens,
in Qwen's order, right after a much smaller regular vocabulary.

- ``SPECIAL_TOKENS``: token -> official Qwen2.5 id (151643 ... 151664, after the 151,643
  regular BPE tokens); ``SPECIAL_TOKEN_PURPOSE``: what each is for and whether this course's
  model is trained with it.
- :func:`special_id` / :func:`special_ids`: the id(s) in a given tokenizer;
  :func:`qwen_id_map`: official id -> id in a given tokenizer.

This module imports nothing heavy (no transformers, no tokenizers), so model presets and data
code can read it cheaply.
"""

from __future__ import annotations

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
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)  # 22, appended after the regular vocabulary

# The strings the course's data formats use, named once (FIM, repository level, ChatML, eos).
ENDOFTEXT = "<|endoftext|>"  # end of a document; eos of base models; also the pad token
IM_START = "<|im_start|>"  # ChatML: opens a turn
IM_END = "<|im_end|>"  # ChatML: closes a turn (eos of instruct models)
FIM_PREFIX = "<|fim_prefix|>"  # fill-in-the-middle: the code before the hole follows
FIM_MIDDLE = "<|fim_middle|>"  # fill-in-the-middle: the missing middle follows
FIM_SUFFIX = "<|fim_suffix|>"  # fill-in-the-middle: the code after the hole follows
FIM_PAD = "<|fim_pad|>"  # fill-in-the-middle: padding
REPO_NAME = "<|repo_name|>"  # repository level: the repository's name follows
FILE_SEP = "<|file_sep|>"  # repository level: a new file (path, then content) follows

# Official ids in the real Qwen2.5 vocabulary (a course tokenizer has its own: use special_id).
ENDOFTEXT_ID = SPECIAL_TOKENS[ENDOFTEXT]  # 151643: bos and eos of the base models
IM_END_ID = SPECIAL_TOKENS[IM_END]  # 151645: eos of the instruct models

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
    "<|fim_pad|>": ("fill-in-the-middle: padding; a stop token, never emitted here", True),
    "<|repo_name|>": ("repository level: the repository's name follows", True),
    "<|file_sep|>": ("repository level: a new file (its path, then its content) follows", True),
}

# The special tokens a code model needs at minimum (used by the notebook's "missing FIM" demo).
FIM_TOKENS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD)
REPO_TOKENS = (REPO_NAME, FILE_SEP)


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
