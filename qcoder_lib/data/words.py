"""Words as the data pipeline counts them: runs of ``\\w`` characters (letters, digits, ``_``, in
any script). Near-deduplication shingles, the datatrove MinHash tokenizer and the 10-gram
decontamination all split text with this one rule, so that they agree on what a word is."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+")  # one word: a run of letters, digits and underscores (Unicode-aware)


def words(text: str, *, lower: bool = True) -> list[str]:
    """The words of ``text`` in order, lower-cased unless ``lower=False``."""
    return WORD.findall(text.lower() if lower else text)
