"""Repository-level fill-in-the-middle (Qwen2.5-Coder's second stage): context files of one
repository, then the target file as a FIM sample, under a token budget; and the inverse.

Layout (the facts file's)::

    <|repo_name|>{repo}\\n
    <|file_sep|>{path}\\n{content}\\n          (every context file; one "\\n" always added)
    <|file_sep|>{path}\\n<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>{mid}<|endoftext|>

The budget rule of :func:`repo_fim` is in its docstring.
"""

from __future__ import annotations

import itertools
import random
import unicodedata
from dataclasses import dataclass

from qcoder_lib.fim import FIMConfig, FIMSample, apply_fim, fim_token_ids, unfim
from qcoder_lib.tokenizer import decode, encode_data
from qcoder_lib.tokenizer.special import ENDOFTEXT, FILE_SEP, FIM_PREFIX, REPO_NAME


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
