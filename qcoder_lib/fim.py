"""Fill-in-the-middle (FIM): file level, repository level, and the inverse.

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

Repository level (the facts file's layout)::

    <|repo_name|>{repo}\\n
    <|file_sep|>{path}\\n{content}\\n          (every context file; one "\\n" always added)
    <|file_sep|>{path}\\n<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>{mid}<|endoftext|>

The budget rule of :func:`repo_fim` is in its docstring.
"""

from __future__ import annotations

import html
import itertools
import random
import unicodedata
import weakref
from collections import Counter
from dataclasses import dataclass, field

from qcoder_lib.syntax_spans import language_for_path, syntax_span
from qcoder_lib.tokenizer import decode, encode_data, special_id

FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_PAD = "<|fim_pad|>"
ENDOFTEXT = "<|endoftext|>"
REPO_NAME = "<|repo_name|>"
FILE_SEP = "<|file_sep|>"


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
FIM_STOP_TOKENS = [FIM_PREFIX, FIM_SUFFIX, FIM_PAD, REPO_NAME, FILE_SEP, ENDOFTEXT, "<|im_end|>"]


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
        raise ValueError(f"FIM sample has no {what} token (id {tid}) after position {start}") from None


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


# --------------------------------------------------------------------------------------------
# Repository level
# --------------------------------------------------------------------------------------------


@dataclass
class RepoSample:
    """One repository-level sample: context files, then the target file (FIM or plain)."""

    input_ids: list[int]  # ids, ending with <|endoftext|>; at most the budget
    repo: str  # repository name after <|repo_name|>
    files: list[tuple[str, str]]  # (path, content) of the context files kept, in sample order
    target_path: str  # the last file, which carries the FIM span
    target: FIMSample  # the target's FIM pieces (its input_ids alone, without the repo part)
    dropped: list[str]  # context paths left out to fit the budget
    truncated_chars: int  # characters cut from the end of the target file to fit (0: none)


def _relatedness(path: str, target: str) -> int:
    """Number of leading directory names ``path`` shares with ``target``."""
    a, b = path.split("/")[:-1], target.split("/")[:-1]
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def order_context_files(paths: list[str], target: str) -> list[str]:
    """Context order: least related to ``target`` first, most related (same folder) last, ties
    by path. The nearest files then sit right before the target, and budget cuts (which keep
    the most related first) drop files from the front of the sample."""
    return sorted(paths, key=lambda p: (_relatedness(p, target), p))


def repo_fim(
    files: list[tuple[str, str]],
    repo: str,
    tokenizer,
    rng: random.Random,
    config: FIMConfig | None = None,
    *,
    max_tokens: int | None = None,
    target: int | None = None,
) -> RepoSample:
    """Build a repository-level sample from ``files`` = ``[(path, content), ...]``.

    Rule: the target file is ``files[target]`` (default: drawn uniformly); it goes last and gets
    the FIM span (with ``config.fim_rate``; otherwise it is plain). Context files are ordered by
    :func:`order_context_files`. With ``max_tokens``:

    1. the target must fit first: if ``<|repo_name|>``, its path and its sample exceed the
       budget, its content is cut at the end (at a line end when one is close), shrinking until
       it fits; the FIM span is drawn inside what is kept;
    2. then context files are added from the most related to the least, each whole or not at
       all (a file that does not fit is dropped, smaller less related ones may still fit).

    Raises ``ValueError`` naming the budget when not even the header and the target's path fit,
    or a path that contains a newline.
    """
    config = config or FIMConfig()
    if not files:
        raise ValueError("repo_fim: files is empty; a repository sample needs a target file")
    if "\n" in repo:
        raise ValueError(f"repo_fim: repo name {repo!r} contains a newline")
    for p, _ in files:
        if "\n" in p or not p:
            raise ValueError(f"repo_fim: path {p!r} is empty or contains a newline")
    sp = fim_token_ids(tokenizer)
    R, F = sp[REPO_NAME], sp[FILE_SEP]
    enc = lambda t: encode_data(tokenizer, t)
    files = [(p, unicodedata.normalize("NFC", c)) for p, c in files]
    t_idx = rng.randrange(len(files)) if target is None else target
    t_path, t_content = files[t_idx]
    header = [R, *enc(repo + "\n")]
    t_head = [F, *enc(t_path + "\n")]
    budget = max_tokens if max_tokens is not None else float("inf")
    room = budget - len(header) - len(t_head) - 4  # 4: the FIM specials at most
    if room < 0:
        raise ValueError(
            f"repo_fim: max_tokens={max_tokens} cannot hold the repo header and target path "
            f"{t_path!r} ({len(header) + len(t_head) + 4} tokens)"
        )
    seed = rng.getrandbits(64)  # the target's draws repeat while its content shrinks
    kept = t_content
    while True:
        sample = apply_fim(kept, tokenizer, random.Random(seed), config, path=t_path)
        if sample.mode == "plain":  # plain target: path and content in one piece, like context
            t_ids = [F, *enc(t_path + "\n" + kept), sp[ENDOFTEXT]]
        else:
            t_ids = t_head + sample.input_ids
        if len(header) + len(t_ids) <= budget:
            break
        over = len(header) + len(t_ids) - budget
        n_tok = max(len(t_ids) - len(t_head) - 4, 1)
        cut = max(1, int(len(kept) * (over + 2) / n_tok))  # chars to remove, a little extra
        new_len = max(len(kept) - cut, 0)
        line_end = kept.rfind("\n", 0, new_len)
        if line_end >= 0 and new_len - line_end < 200:
            new_len = line_end + 1
        kept = kept[:new_len]
    used = len(header) + len(t_ids)
    context = [(p, c) for i, (p, c) in enumerate(files) if i != t_idx]
    order = order_context_files([p for p, _ in context], t_path)
    content = dict(context)
    chosen, dropped = set(), []
    for p in reversed(order):  # most related first
        n = 1 + len(enc(p + "\n" + content[p] + "\n"))
        if used + n <= budget:
            used += n
            chosen.add(p)
        else:
            dropped.append(p)
    kept_files = [(p, content[p]) for p in order if p in chosen]
    ids = list(header)
    for p, c in kept_files:
        ids += [F, *enc(p + "\n" + c + "\n")]
    ids += t_ids
    return RepoSample(
        ids, repo, kept_files, t_path, sample, sorted(dropped), len(t_content) - len(kept)
    )


def unfim_repo(sample, tokenizer) -> tuple[str, list[tuple[str, str]]]:
    """Restore ``(repo, [(path, content), ...])`` from a repository-level sample (a
    :class:`RepoSample` or its ids): context files in sample order, the target (FIM undone) last.

    Raises ``ValueError`` naming the missing token or newline of a malformed sample.
    """
    ids = sample.input_ids if isinstance(sample, RepoSample) else sample
    ids = [int(t) for t in ids]
    sp = fim_token_ids(tokenizer)
    R, F, P = sp[REPO_NAME], sp[FILE_SEP], sp[FIM_PREFIX]
    if not ids or ids[0] != R:
        raise ValueError(f"repo sample does not start with {REPO_NAME} (id {R})")
    seps = [i for i, t in enumerate(ids) if t == F]
    if not seps:
        raise ValueError(f"repo sample has no {FILE_SEP} token (id {F})")
    repo_text = decode(tokenizer, ids[1 : seps[0]])
    if not repo_text.endswith("\n"):
        raise ValueError("repo sample: the repo name is not followed by a newline")
    out = []
    for a, b in itertools.pairwise(seps):
        text = decode(tokenizer, ids[a + 1 : b])
        path, nl, content = text.partition("\n")
        if not nl or not content.endswith("\n"):
            raise ValueError(f"repo sample: file {path!r} lacks its path newline or final newline")
        out.append((path, content[:-1]))
    last = ids[seps[-1] + 1 :]
    if P in last:
        k = last.index(P)
        path_text = decode(tokenizer, last[:k])
        if not path_text.endswith("\n"):
            raise ValueError("repo sample: the target path is not followed by a newline")
        out.append((path_text[:-1], unfim(last[k:], tokenizer)))
    else:
        text = unfim(last, tokenizer)
        path, nl, content = text.partition("\n")
        if not nl:
            raise ValueError(f"repo sample: target file {path!r} lacks its path newline")
        out.append((path, content))
    return repo_text[:-1], out


# --------------------------------------------------------------------------------------------
# Showing samples
# --------------------------------------------------------------------------------------------

# Colours of the pieces in :func:`render_html`.
COLOURS = {
    "prefix": "#cfe8ff",
    "suffix": "#ffe4c4",
    "middle": "#c8f7c5",
    "special": "#444444",
    "repo": "#eeeeee",
}


def _span(text: str, kind: str) -> str:
    esc = html.escape(text)
    if kind == "special":
        return (f'<span style="background:{COLOURS["special"]};color:white;'
                f'border-radius:3px;padding:0 2px">{esc}</span>')
    return f'<span style="background:{COLOURS[kind]}">{esc}</span>'


def render_html(ids, tokenizer, max_chars: int = 400) -> str:
    """HTML for a file- or repo-level sample: special tokens as dark chips, prefix blue, suffix
    orange, middle green, repository context grey; each piece shortened to ``max_chars``."""
    sp = fim_token_ids(tokenizer)
    by_id = {v: k for k, v in sp.items()}
    ids = [int(t) for t in ids]
    parts, run, kind = [], [], "repo" if ids and ids[0] == sp[REPO_NAME] else "prefix"
    after = {FIM_PREFIX: "prefix", FIM_SUFFIX: "suffix", FIM_MIDDLE: "middle",
             REPO_NAME: "repo", FILE_SEP: "repo", ENDOFTEXT: "repo"}

    def flush():
        if run:
            text = decode(tokenizer, run)
            if len(text) > max_chars:
                half = max_chars // 2
                text = text[:half] + f" … [{len(text) - max_chars} chars] … " + text[-half:]
            parts.append(_span(text, kind))
            run.clear()

    for t in ids:
        if t in by_id:
            flush()
            parts.append(_span(by_id[t], "special"))
            kind = after.get(by_id[t], kind)
        else:
            run.append(t)
    flush()
    return ('<pre style="white-space:pre-wrap;font-size:12px;line-height:1.5">'
            + "".join(parts) + "</pre>")
