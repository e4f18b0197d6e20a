"""Fill-in-the-middle (FIM) at file level, and its inverse (:mod:`qcoder_lib.fim_repo` builds the
repository-level samples, :mod:`qcoder_lib.fim_stage` applies FIM to token shards).

A left-to-right model only ever sees the code before the cursor. FIM (Bavarian et al. 2022,
"Efficient Training of Language Models to Fill in the Middle") cuts a document into
``prefix | middle | suffix`` and moves the middle to the end, so the same next-token loss teaches
the model to write code that must fit what comes after it.

Formats, built at token-id level (special tokens only by id; text always encoded as data with
:func:`qcoder_lib.tokenizer.encode_data`, so a file containing ``"<|endoftext|>"`` never yields a
special id):

- PSM (Qwen2.5-Coder's format)::

      <|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>{mid}<|endoftext|>

- SPM, the FIM paper's variant that shares the most with PSM (also used by StarCoder)::

      <|fim_prefix|><|fim_suffix|>{suf}<|fim_middle|>{pre}{mid}<|endoftext|>

- plain left-to-right text: ``{text}<|endoftext|>``.

Each piece is encoded on its own (as a prompt would be at inference). The document is first put
in NFC, as the tokenizer does anyway, and split only at grapheme-cluster boundaries (two
character positions drawn uniformly among them), so a character is never cut from its
combining marks and ``unfim(fim(x)) == NFC(x)``, which is ``x`` for ordinary text.

The repository-level layout is in :mod:`qcoder_lib.fim_repo`.
"""

from __future__ import annotations

import random
import unicodedata
import weakref
from collections import Counter
from dataclasses import dataclass, field

from qcoder_lib.syntax_spans import language_for_path, syntax_span
from qcoder_lib.tokenizer import decode, encode_data, special_id

from qcoder_lib.tokenizer.special import (  # the one home of special tokens
    ENDOFTEXT,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    IM_END,
    REPO_NAME,
)


@dataclass
class FIMConfig:
    """How documents become training samples."""

    fim_rate: float = 0.5  # share of documents turned into FIM samples (the FIM paper: 0.5-0.9)
    spm_rate: float = 0.0  # share of FIM samples in SPM order (the FIM paper's variant, a course
    # option); Qwen2.5-Coder documents only PSM, so the default is PSM only
    code_only: bool = True  # FIM only code documents; prose and math stay left-to-right (Qwen)
    span: str = "random"  # "random": two uniform positions; "syntax": a tree-sitter node
    syntax_max_fraction: float = 0.5  # a syntax middle covers at most this share of the file
    syntax_min_chars: int = 2  # and at least this many characters

    def __post_init__(self):
        for name in ("fim_rate", "spm_rate", "syntax_max_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"FIMConfig.{name}={v} must lie in [0, 1]")
        if self.span not in ("random", "syntax"):
            raise ValueError(f"FIMConfig.span={self.span!r} must be 'random' or 'syntax'")


@dataclass
class FIMSample:
    """One training sample and how it was made."""

    input_ids: list[int]  # token ids, ending with <|endoftext|>
    mode: str  # "psm", "spm" or "plain"
    prefix: str  # plain: the whole (NFC) document
    middle: str  # plain: ""
    suffix: str  # plain: ""
    span: str  # "random", a tree-sitter node type, "random (fallback: <reason>)", or "" for plain

    @property
    def text(self) -> str:
        """The (NFC) document this sample encodes."""
        return self.prefix + self.middle + self.suffix


@dataclass
class FIMStats:
    """Counts over many :func:`apply_fim` calls: achieved rates and syntax fall-backs."""

    documents: int = 0
    fim: int = 0  # samples in PSM or SPM
    spm: int = 0
    syntax: int = 0  # middles chosen on the syntax tree
    fallback: Counter = field(default_factory=Counter)  # reason -> syntax attempts that fell back

    def add(self, sample: FIMSample) -> None:
        """Count one sample."""
        self.documents += 1
        if sample.mode != "plain":
            self.fim += 1
            self.spm += sample.mode == "spm"
            if sample.span.startswith("random (fallback"):
                self.fallback[sample.span.split(": ", 1)[1].rstrip(")")] += 1
            elif sample.span != "random":
                self.syntax += 1

    @property
    def fim_rate(self) -> float:
        """Achieved share of FIM samples."""
        return self.fim / max(self.documents, 1)

    @property
    def spm_rate(self) -> float:
        """Achieved share of SPM among FIM samples."""
        return self.spm / max(self.fim, 1)

    @property
    def fallbacks(self) -> int:
        """Syntax attempts that fell back to a random span."""
        return sum(self.fallback.values())


_IDS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fim_token_ids(tokenizer) -> dict[str, int]:
    """The ids of the FIM, repo and end-of-text special tokens in ``tokenizer`` (by name).
    Cached per tokenizer (looking them up reads the whole vocabulary), renewed if it grows."""
    try:
        size, ids = _IDS_CACHE[tokenizer]
        if size == len(tokenizer):
            return dict(ids)
    except (KeyError, TypeError):
        pass
    names = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, ENDOFTEXT, REPO_NAME, FILE_SEP)
    ids = {n: special_id(tokenizer, n) for n in names}
    try:
        _IDS_CACHE[tokenizer] = (len(tokenizer), ids)
    except TypeError:  # not weak-referenceable: no cache
        pass
    return dict(ids)


def grapheme_boundaries(text: str) -> list[int]:
    """Character positions where ``text`` may be cut: 0, ``len(text)`` and every boundary between
    grapheme clusters (so "e" + combining accent, "\\r\\n" or an emoji sequence stay whole)."""
    import regex

    out = [0]
    out.extend(m.end() for m in regex.finditer(r"\X", text))
    return out


def random_split(text: str, rng: random.Random) -> tuple[int, int]:
    """Two cut positions ``i <= j`` drawn uniformly (independently, then sorted) among the
    grapheme boundaries of ``text``, as in the FIM paper: middle = ``text[i:j]``."""
    bounds = grapheme_boundaries(text)
    a, b = rng.choice(bounds), rng.choice(bounds)
    return (a, b) if a <= b else (b, a)


def choose_span(
    text: str, rng: random.Random, config: FIMConfig, path: str | None = None,
    language: str | None = None,
) -> tuple[int, int, str]:
    """Choose the middle ``text[i:j]``; returns ``(i, j, how)`` where ``how`` is ``"random"``, a
    tree-sitter node type, or ``"random (fallback: <reason>)"`` when a syntax span was asked
    for and the file has no known language, does not parse, or has no fitting node."""
    if config.span == "syntax":
        lang = language or (language_for_path(path) if path else None)
        span, reason = syntax_span(
            text, lang, rng, min_chars=config.syntax_min_chars,
            max_fraction=config.syntax_max_fraction,
        )
        if span is not None:
            return span.start, span.end, span.node_type
        i, j = random_split(text, rng)
        return i, j, f"random (fallback: {reason})"
    i, j = random_split(text, rng)
    return i, j, "random"


def build_ids(tokenizer, mode: str, prefix: str, middle: str, suffix: str) -> list[int]:
    """Token ids of one sample in ``mode`` ("psm", "spm", "plain"; plain uses ``prefix`` as the
    text and needs empty middle and suffix). Specials by id, each text piece encoded as data."""
    sp = fim_token_ids(tokenizer)
    P, S, M, E = sp[FIM_PREFIX], sp[FIM_SUFFIX], sp[FIM_MIDDLE], sp[ENDOFTEXT]
    enc = lambda t: encode_data(tokenizer, t)
    if mode == "psm":
        return [P, *enc(prefix), S, *enc(suffix), M, *enc(middle), E]
    if mode == "spm":
        return [P, S, *enc(suffix), M, *enc(prefix), *enc(middle), E]
    if mode == "plain":
        if middle or suffix:
            raise ValueError("build_ids: a plain sample has only a prefix (the whole text)")
        return [*enc(prefix), E]
    raise ValueError(f"build_ids: mode={mode!r} is not 'psm', 'spm' or 'plain'")


def apply_fim(
    text: str,
    tokenizer,
    rng: random.Random,
    config: FIMConfig | None = None,
    *,
    path: str | None = None,
    language: str | None = None,
    stats: FIMStats | None = None,
) -> FIMSample:
    """Turn one document into a training sample: with probability ``config.fim_rate`` a FIM
    sample (SPM with probability ``config.spm_rate``, else PSM), otherwise plain text.

    ``path`` / ``language`` pick the tree-sitter grammar for ``span="syntax"``. ``stats``, if
    given, counts the sample. The document is normalised to NFC first (the tokenizer would do it).
    The draws come in a fixed order (FIM?, SPM?, then the span's), so one seed repeats.
    """
    config = config or FIMConfig()
    text = unicodedata.normalize("NFC", text)
    do_fim = rng.random() < config.fim_rate
    spm = rng.random() < config.spm_rate
    if not do_fim:
        sample = FIMSample(build_ids(tokenizer, "plain", text, "", ""), "plain", text, "", "", "")
    else:
        i, j, how = choose_span(text, rng, config, path=path, language=language)
        mode = "spm" if spm else "psm"
        pre, mid, suf = text[:i], text[i:j], text[j:]
        sample = FIMSample(build_ids(tokenizer, mode, pre, mid, suf), mode, pre, mid, suf, how)
    if stats is not None:
        stats.add(sample)
    return sample


def fim_documents(documents, tokenizer, config: FIMConfig | None = None, *, seed: int = 0,
                  stats: FIMStats | None = None):
    """Yield one :class:`FIMSample` per document, lazily, from one seeded stream of draws.

    ``documents``: strings, ``(path, text)`` pairs, or objects with ``.text`` and ``.path``
    (a :class:`qcoder_lib.data.sources.Document`); the path picks the grammar for syntax spans.
    With ``config.code_only`` (the default) a document whose ``.source`` is not code (see
    :func:`is_code`) stays plain text; strings and pairs count as code.
    """
    config = config or FIMConfig()
    rng = random.Random(seed)
    plain = FIMConfig(fim_rate=0.0)
    for doc in documents:
        if isinstance(doc, str):
            path, text, code = None, doc, True
        elif isinstance(doc, tuple):
            (path, text), code = doc, True
        else:
            path, text = getattr(doc, "path", None), doc.text
            code = is_code({"source": getattr(doc, "source", "code")})
        cfg = config if code or not config.code_only else plain
        yield apply_fim(text, tokenizer, rng, cfg, path=path, stats=stats)


CODE_SOURCES = ("code", "synthetic")  # document sources that are code (the mix's "code" group)


def is_code(meta: dict) -> bool:
    """Is a document (by its shard metadata or source) code? ``group == "code"`` or a code
    source; FIM applies to these only by default."""
    return meta.get("group") == "code" or meta.get("source") in CODE_SOURCES


# Generation stops at any of these (Qwen2.5-Coder's FIM inference; the official repo-level
# example also cuts the answer at <|file_sep|>).
FIM_STOP_TOKENS = [FIM_PREFIX, FIM_SUFFIX, FIM_PAD, REPO_NAME, FILE_SEP, ENDOFTEXT, IM_END]


def fim_prompt_ids(tokenizer, prefix: str, suffix: str, mode: str = "psm") -> list[int]:
    """The inference prompt asking for the middle between ``prefix`` and ``suffix``: a training
    sample of the same ``mode`` cut right before the middle's tokens (PSM ends with
    ``<|fim_middle|>``; SPM ends with the prefix after ``<|fim_middle|>``)."""
    ids = build_ids(tokenizer, mode, prefix, "", suffix)
    return ids[:-1]  # drop <|endoftext|>: the model writes the middle, then ends it


def _find(ids: list[int], tid: int, what: str, start: int = 0) -> int:
    try:
        return ids.index(tid, start)
    except ValueError:
        raise ValueError(
            f"FIM sample has no {what} token (id {tid}) after position {start}") from None


def split_fim_ids(ids, tokenizer) -> tuple[str, list[int], list[int], list[int]]:
    """Parse a file-level sample into ``(mode, prefix_ids, middle_ids, suffix_ids)``; for SPM the
    prefix ids are empty and the middle ids hold prefix + middle (SPM keeps them adjacent); for
    plain everything is in prefix ids. A trailing ``<|endoftext|>`` is dropped.

    Raises ``ValueError`` naming the missing or extra special token of a malformed sample.
    """
    sp = fim_token_ids(tokenizer)
    P, S, M, E = sp[FIM_PREFIX], sp[FIM_SUFFIX], sp[FIM_MIDDLE], sp[ENDOFTEXT]
    ids = [int(t) for t in ids]
    if ids and ids[-1] == E:
        ids = ids[:-1]
    if not ids or ids[0] != P:
        for name, tid in ((FIM_PREFIX, P), (FIM_SUFFIX, S), (FIM_MIDDLE, M), (ENDOFTEXT, E)):
            if tid in ids:
                raise ValueError(f"plain sample holds a {name} token (id {tid}) inside its text")
        return "plain", ids, [], []
    s = _find(ids, S, FIM_SUFFIX, 1)
    m = _find(ids, M, FIM_MIDDLE, s + 1)
    body = ids[1:s] + ids[s + 1 : m] + ids[m + 1 :]
    for name, tid in ((FIM_PREFIX, P), (FIM_SUFFIX, S), (FIM_MIDDLE, M), (ENDOFTEXT, E)):
        if tid in body:
            raise ValueError(f"FIM sample holds a second {name} token (id {tid})")
    if s == 1:  # SPM (or PSM with an empty prefix: the same ids, the same document)
        return "spm", [], ids[m + 1 :], ids[2:m]
    return "psm", ids[1:s], ids[m + 1 :], ids[s + 1 : m]


def unfim(sample, tokenizer) -> str:
    """Restore the document a file-level sample (a :class:`FIMSample` or its ids) encodes:
    ``prefix + middle + suffix`` for PSM and SPM, the text for plain samples."""
    ids = sample.input_ids if isinstance(sample, FIMSample) else sample
    _, pre, mid, suf = split_fim_ids(ids, tokenizer)
    return decode(tokenizer, pre) + decode(tokenizer, mid) + decode(tokenizer, suf)
