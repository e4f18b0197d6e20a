"""Checks for the notebooks' exercises: each ``check_*`` runs a learner's answer on a few cases,
compares it with the library's reference implementation and prints ``PASS`` or ``FAIL`` with a
hint naming the likely mistake (wrong shape, off-by-one in a mask, the halves of ``rotate_half``
swapped, ...). A failure also raises :class:`ExerciseFailed` (an ``AssertionError``), so that a
graded nbgrader test cell fails; an answer still left as the ``NotImplementedError`` stub of a
student copy raises ``NotImplementedError`` with a message saying which exercise is open.

The hints come from running plausible wrong answers on the same case: when the learner's output
equals what a known mistake would give, the hint names that mistake. Where the library has no
function for a step (one BPE merge, the LSH banding formula) the reference is written here.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "ExerciseFailed",
    "check_bpe_merge",
    "check_lsh_probability",
    "check_online_softmax_merge",
    "check_packed_targets",
    "check_pair_counts",
    "check_pass_at_k",
    "check_position_ids",
    "check_psm_ids",
    "check_repeat_kv",
    "check_rms_norm",
    "check_rotate_half",
    "check_vector_add",
    "check_word_ngrams",
]


class ExerciseFailed(AssertionError):
    """A learner's answer disagrees with the reference; the message holds the hint."""


def _same(a, b, atol: float) -> None:
    """Equal values: tensors within ``atol`` (and same shape), floats within ``atol``, else ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
            return False
        return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=0))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), abs_tol=atol, rel_tol=0)
        except (TypeError, ValueError):
            return False
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(_same(x, y, atol) for x, y in zip(a, b))
    return a == b


def _shape(x):
    """Shape of a tensor, length of a sequence, or None."""
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return (len(x),)
    return None


def _check(name: str, answer: Callable, cases: Sequence[tuple], reference: Callable,
           mistakes: Sequence[tuple[str, Callable]] = (), atol: float = 1e-5,
           describe: Callable[[tuple], str] = lambda args: "") -> None:
    """Run ``answer(*args)`` for each case against ``reference(*args)``; print PASS or FAIL.

    ``mistakes`` are ``(hint, wrong_function)`` pairs: when the answer equals a wrong function's
    output on the failing case, the hint names that mistake."""
    for k, args in enumerate(cases):
        expected = reference(*args)
        where = f"case {k + 1} of {len(cases)}{describe(args)}"
        try:
            got = answer(*args)
        except NotImplementedError as e:
            raise NotImplementedError(
                f"exercise {name!r} is still open: replace the `raise NotImplementedError` line in "
                "the solution cell above with your code, run it, then run this cell") from e
        except Exception as e:  # noqa: BLE001 (the learner's code may raise anything: say where and why)
            _fail(name, f"{where}: your function raised {type(e).__name__}: {e}")
        if _same(got, expected, atol):
            continue
        if isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor) \
                and got.shape != expected.shape:
            _fail(name, f"{where}: wrong shape: got {tuple(got.shape)}, "
                        f"expected {tuple(expected.shape)}")
        for hint, wrong in mistakes:
            try:
                if _same(got, wrong(*args), atol):
                    _fail(name, f"{where}: {hint}")
            except ExerciseFailed:
                raise
            except Exception:  # noqa: BLE001, S112 (a wrong variant that does not apply here)
                continue
        if _shape(got) != _shape(expected) and _shape(expected) is not None:
            _fail(name, f"{where}: wrong length/shape: got {_shape(got)}, "
                        f"expected {_shape(expected)}")
        _fail(name, f"{where}: got {_short(got)}, expected {_short(expected)}")
    print(f"PASS {name}: {len(cases)} cases agree with the reference")


def _short(x, limit: int = 160) -> str:
    """A value printed short enough for a hint."""
    s = repr(x.tolist() if isinstance(x, torch.Tensor) and x.numel() <= 24 else x)
    return s if len(s) <= limit else s[:limit] + " ..."


def _fail(name: str, hint: str):
    """Print the failure and raise :class:`ExerciseFailed`."""
    print(f"FAIL {name}: {hint}")
    raise ExerciseFailed(f"{name}: {hint}")


# ---------------------------------------------------------------- 01: a BPE merge loop by hand
def _pair_counts_ref(words: dict[tuple[str, ...], int]) -> Counter:
    """Neighbouring symbol pairs counted over words, each word weighted by its frequency."""
    counts: Counter = Counter()
    for symbols, freq in words.items():
        for pair in itertools.pairwise(symbols):
            counts[pair] += freq
    return counts


def _merge_ref(symbols: Sequence[str], pair: tuple[str, str]) -> list[str]:
    """Replace each occurrence of ``pair``, left to right and without overlaps, by one symbol."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == tuple(pair):
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def check_pair_counts(count_pairs: Callable) -> None:
    """``count_pairs(words) -> {(a, b): count}``: ``words`` maps a tuple of symbols to how often
    that word occurs; each neighbouring pair counts once per occurrence of the word."""
    cases = [({("l", "o", "w"): 5, ("l", "o", "w", "e", "r"): 2, ("n", "e", "w"): 6},),
             ({("a", "a", "a"): 3, ("a", "b"): 1},), ({("x",): 4},)]

    def unweighted(words):
        return _pair_counts_ref(dict.fromkeys(words, 1))

    def unique_per_word(words):
        c: Counter = Counter()
        for s, f in words.items():
            for p in set(itertools.pairwise(s)):
                c[p] += f
        return c

    _check("pair counts", lambda w: dict(count_pairs(w)), cases,
                  lambda w: dict(_pair_counts_ref(w)),
                  [("each word counted once: multiply by its frequency", lambda w: dict(unweighted(w))),
                   ("a pair that occurs twice in one word (a a a) must count twice",
                    lambda w: dict(unique_per_word(w)))])


def check_bpe_merge(merge: Callable) -> None:
    """``merge(symbols, pair) -> new symbols``: every occurrence of ``pair`` becomes one symbol,
    scanning left to right so that ``a a a`` merged on ``(a, a)`` gives ``aa a``."""
    cases = [(["l", "o", "w", "e", "r"], ("l", "o")), (["a", "a", "a"], ("a", "a")),
             (["a", "b", "a", "b"], ("a", "b")), (["x", "y"], ("y", "x")), (["e", "r"], ("e", "r"))]

    def first_only(s, p):
        for i in range(len(s) - 1):
            if (s[i], s[i + 1]) == tuple(p):
                return [*s[:i], s[i] + s[i + 1], *s[i + 2:]]
        return list(s)

    def overlapping(s, p):
        out = [s[i] + s[i + 1] for i in range(len(s) - 1) if (s[i], s[i + 1]) == tuple(p)]
        return out or list(s)

    def drops_last(s, p):
        return _merge_ref(s[:-1], p)

    _check("BPE merge", lambda s, p: list(merge(list(s), p)), cases, _merge_ref,
                  [("only the first occurrence was merged: keep scanning to the end", first_only),
                   ("overlapping pairs: after a merge, skip past both symbols (i += 2)", overlapping),
                   ("the last symbol went missing: the loop must also copy the final symbol",
                    drops_last)], describe=lambda a: f" (symbols {a[0]}, pair {a[1]})")


# ---------------------------------------------------------------- 02: the model's pieces
def check_rms_norm(rms_norm: Callable) -> None:
    """``rms_norm(x (..., d), weight (d,), eps) -> (..., d)``: against ``qcoder_lib.model.RMSNorm``."""
    from qcoder_lib.model import RMSNorm

    def ref(x, w, eps):
        norm = RMSNorm(x.shape[-1], eps=eps)
        with torch.no_grad():
            norm.weight.copy_(w)
            return norm(x)

    g = torch.Generator().manual_seed(0)
    cases = [(torch.randn(2, 3, 8, generator=g), torch.rand(8, generator=g) + 0.5, 1e-6),
             (torch.randn(4, 16, generator=g) * 1e-3, torch.rand(16, generator=g) + 0.5, 1e-2)]
    _check("RMSNorm", rms_norm, cases, ref, [
        ("eps is missing (or outside the square root): rsqrt(mean(x^2) + eps)",
         lambda x, w, e: w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True))),
        ("the weight is missing: multiply by weight at the end",
         lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e)),
        ("the mean was subtracted: that is LayerNorm; RMSNorm does not centre x",
         lambda x, w, e: w * (x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + e)),
        ("the mean runs over the wrong dim or the sum replaces the mean: mean(-1, keepdim=True)",
         lambda x, w, e: w * x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + e)),
    ])


def check_rotate_half(rotate_half: Callable) -> None:
    """``rotate_half(x (..., D)) -> (..., D)``: ``[x1, x2] -> [-x2, x1]`` on halves."""
    from qcoder_lib.model import rotate_half as ref

    cases = [(torch.arange(8.0).reshape(1, 8),), (torch.randn(2, 3, 5, 16, generator=torch.Generator().manual_seed(1)),)]

    def interleaved(x):
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((-b, a), dim=-1).flatten(-2)

    _check("rotate_half", rotate_half, cases, ref, [
        ("the minus sign is on the wrong half: the result is [-x2, x1]",
         lambda x: torch.cat((x.chunk(2, -1)[1], -x.chunk(2, -1)[0]), -1)),
        ("the halves are swapped but nothing is negated: the result is [-x2, x1]",
         lambda x: torch.cat(x.chunk(2, -1)[::-1], -1)),
        ("interleaved pairs (x0, x1), (x2, x3), ...: Qwen2 rotates the two HALVES of the head",
         interleaved),
    ])


def check_repeat_kv(repeat_kv: Callable) -> None:
    """``repeat_kv(k (B, Hkv, T, D), n_rep) -> (B, Hkv * n_rep, T, D)``: query head ``h`` reads KV
    head ``h // n_rep``, as ``repeat_interleave`` (transformers' ``repeat_kv``) lays them out."""
    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(1, 2, 3, 4, generator=g), 3), (torch.randn(2, 4, 5, 8, generator=g), 2),
             (torch.randn(1, 2, 2, 4, generator=g), 1)]
    _check("repeat_kv", repeat_kv, cases, lambda k, n: k.repeat_interleave(n, dim=1), [
        (("the KV heads were tiled (k.repeat): head order 0 1 0 1 instead of 0 0 1 1; use "
         "repeat_interleave (query head h reads KV head h // n_rep)"), lambda k, n: k.repeat(1, n, 1, 1)),
        ("repeated along the wrong dim: the heads are dim 1 of (B, H, T, D)",
         lambda k, n: k.repeat_interleave(n, dim=2)),
    ])


# ---------------------------------------------------------------- 03: Triton and online softmax
def check_vector_add(add: Callable) -> None:
    """``add(x, y) -> x + y`` for 1-D float32 tensors of any length (a Triton kernel whose last
    block is masked): lengths that are not a multiple of the block size show a missing mask.
    The tensors live where Triton runs: on the GPU, or on the CPU under the interpreter."""
    g = torch.Generator().manual_seed(3)
    compiled = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"
    dev = "cuda" if compiled else "cpu"
    cases = [(torch.randn(n, generator=g).to(dev), torch.randn(n, generator=g).to(dev))
             for n in (1024, 1000, 1, 3000)]

    def first_wrong(x, y, out):
        bad = (~torch.isclose(out, x + y)).nonzero()
        return int(bad[0]) if len(bad) else None

    for k, (x, y) in enumerate(cases):
        try:
            out = add(x, y)
        except NotImplementedError:
            raise NotImplementedError(
                "exercise 'vector add' is still open: replace the `raise NotImplementedError` line "
                "in the solution cell above with your code, run it, then run this cell") from None
        except Exception as e:  # noqa: BLE001 (the learner's kernel may raise anything)
            if "NotImplementedError" in f"{type(e).__name__} {e}":  # the stub, wrapped by Triton
                raise NotImplementedError(
                    "exercise 'vector add' is still open: replace the `raise NotImplementedError` "
                    "line in the kernel above with your code, run it, then run this cell") from None
            _fail("vector add", f"length {x.numel()}: your function raised {type(e).__name__}: {e} "
                                "(a load or store past the end? mask it with offsets < n)")
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            _fail("vector add", f"length {x.numel()}: wrong shape: got {_shape(out)}, expected {tuple(x.shape)}")
        first_bad = first_wrong(x, y, out)
        if first_bad is not None:
            _fail("vector add", f"length {x.numel()}: first wrong element at index {first_bad}; "
                                "if only the last block is wrong, the grid has n // BLOCK programs "
                                "instead of triton.cdiv(n, BLOCK) or the mask (offsets < n) is "
                                "missing; otherwise check the offsets pid * BLOCK + tl.arange(0, BLOCK)")
    print(f"PASS vector add: {len(cases)} lengths, including ones that are not a multiple of the block")


def check_online_softmax_merge(merge: Callable) -> None:
    """``merge(m_a, l_a, m_b, l_b) -> (m, l)``: two blocks' running maxima ``m`` and sums
    ``l = sum(exp(s - m))`` combined into those of both blocks together (the rescaling step of
    FlashAttention's online softmax). Reference: ``torch.logsumexp`` over the scores themselves."""
    g = torch.Generator().manual_seed(4)
    cases = []  # (m_a, l_a, m_b, l_b) as Python floats, then the two blocks' scores
    for shift in (0.0, 30.0, -20.0):
        a, b = torch.randn(5, generator=g) * 3, torch.randn(7, generator=g) * 3 + shift
        cases.append((float(a.max()), float(torch.exp(a - a.max()).sum()),
                      float(b.max()), float(torch.exp(b - b.max()).sum()), a, b))

    def ref(m_a, l_a, m_b, l_b, a, b):
        s = torch.cat([a, b]).double()
        return float(s.max()), float(torch.exp(torch.logsumexp(s, 0) - s.max()))

    def answer(m_a, l_a, m_b, l_b, a, b):
        return tuple(float(v) for v in merge(m_a, l_a, m_b, l_b))

    def no_rescale(m_a, l_a, m_b, l_b, a, b):
        return max(m_a, m_b), l_a + l_b

    def flipped(m_a, l_a, m_b, l_b, a, b):
        m = max(m_a, m_b)
        return m, l_a * math.exp(m - m_a) + l_b * math.exp(m - m_b)

    _check("online softmax merge", answer, cases, ref, [
        ("the sums were added without rescaling: multiply each l by exp(m_old - m_new)", no_rescale),
        ("the rescaling factor has its sign flipped: exp(m_old - m_new) is <= 1", flipped),
    ], atol=1e-4, describe=lambda c: f" (m_a={c[0]:.2f}, m_b={c[2]:.2f})")


# ---------------------------------------------------------------- 04: dedup and decontamination
def _lsh_ref(s: float, bands: int, rows: int) -> float:
    """Probability that two documents of Jaccard similarity ``s`` share at least one band."""
    return 1.0 - (1.0 - s**rows) ** bands


def check_lsh_probability(p_candidate: Callable) -> None:
    """``p_candidate(s, bands, rows) -> float``: MinHash LSH with ``bands`` bands of ``rows``
    rows makes a pair of Jaccard similarity ``s`` a candidate with probability
    ``1 - (1 - s**rows) ** bands``."""
    cases = [(0.8, 20, 5), (0.5, 16, 8), (0.3, 32, 4), (0.9, 9, 13)]
    _check("LSH candidate probability", lambda s, b, r: float(p_candidate(s, b, r)), cases,
                  _lsh_ref, [
                      ("bands and rows swapped: a band matches with s**rows, then 1 - (1 - .)**bands",
                       lambda s, b, r: _lsh_ref(s, r, b)),
                      ("that is the chance that ALL bands match; a pair is a candidate if ANY band does",
                       lambda s, b, r: (s**r) ** b),
                      ("that is the chance that ONE band matches; there are several bands to try",
                       lambda s, b, r: s**r),
                  ], atol=1e-9, describe=lambda a: f" (s={a[0]}, bands={a[1]}, rows={a[2]})")


def check_word_ngrams(ngrams: Callable) -> None:
    """``ngrams(text, n) -> list of n-grams``: lower-cased ``\\w+`` words (``qcoder_lib.data.words``)
    joined by spaces, every window of ``n`` in order; against ``qcoder_lib.data.decontam.word_ngrams``."""
    from qcoder_lib.data.decontam import word_ngrams
    from qcoder_lib.data.words import words

    cases = [("def add(a, b):\n    return a + b  # Sum", 3), ("One two three", 3), ("x = 1", 4),
             ("for i in range(n): total += i * i", 10)]
    _check("word n-grams", lambda t, n: list(ngrams(t, n)), cases,
                  lambda t, n: list(word_ngrams(t, n)), [
                      ("the last window is missing: range(len(words) - n + 1)",
                       lambda t, n: [" ".join(words(t)[i:i + n]) for i in range(len(words(t)) - n)]),
                      ("text.split() keeps punctuation and case: use qcoder_lib.data.words.words(text)",
                       lambda t, n: [" ".join(t.split()[i:i + n]) for i in range(len(t.split()) - n + 1)]),
                      ("words are lower-cased, so that 'Sum' and 'sum' match",
                       lambda t, n: [" ".join(words(t, lower=False)[i:i + n])
                                     for i in range(len(words(t)) - n + 1)]),
                  ], describe=lambda a: f" (text {a[0]!r}, n={a[1]})")


# ---------------------------------------------------------------- 05-06: FIM and packing
def check_psm_ids(psm_ids: Callable, tokenizer) -> None:
    """``psm_ids(tokenizer, prefix, middle, suffix) -> ids``: one PSM sample,
    ``<|fim_prefix|> pre <|fim_suffix|> suf <|fim_middle|> mid <|endoftext|>``, special tokens by
    id and each text piece encoded as data; against ``qcoder_lib.fim.build_ids``."""
    from qcoder_lib.fim import build_ids

    cases = [(tokenizer, "def area(r):\n    return ", "3.14159 * r * r", "\n\nprint(area(2))\n"),
             (tokenizer, "EOS = '", "<|endoftext|>", "'\n"), (tokenizer, "", "x = 1", "")]
    _check("PSM sample", lambda t, p, m, s: list(psm_ids(t, p, m, s)), cases,
                  lambda t, p, m, s: build_ids(t, "psm", p, m, s), [
                      ("that is SPM order (suffix first); PSM is prefix, suffix, then middle",
                       lambda t, p, m, s: build_ids(t, "spm", p, m, s)),
                      ("the sample must end with <|endoftext|>",
                       lambda t, p, m, s: build_ids(t, "psm", p, m, s)[:-1]),
                      ("the middle comes last, after <|fim_middle|> (it is what the model learns to write)",
                       lambda t, p, m, s: _psm_wrong_order(t, p, m, s)),
                      (("a special-token string inside the code became a special id: encode text with "
                       "encode_data, never tokenizer.encode"), lambda t, p, m, s: _psm_injected(t, p, m, s)),
                  ], describe=lambda a: f" (prefix {a[1]!r}, middle {a[2]!r}, suffix {a[3]!r})")


def _psm_wrong_order(t, p, m, s):
    """A PSM sample with middle and suffix swapped (a plausible mistake)."""
    from qcoder_lib.fim import build_ids
    return build_ids(t, "psm", p, s, m)


def _psm_injected(t, p, m, s):
    """A PSM sample whose text pieces went through ``tokenizer.encode`` (special strings injected)."""
    from qcoder_lib.tokenizer import special_id
    enc = lambda x: t.encode(x, add_special_tokens=False)
    sid = lambda name: special_id(t, name)
    return [sid("<|fim_prefix|>"), *enc(p), sid("<|fim_suffix|>"), *enc(s), sid("<|fim_middle|>"),
            *enc(m), sid("<|endoftext|>")]


def check_position_ids(position_ids: Callable) -> None:
    """``position_ids(ids (T,), eos_id) -> (T,)``: positions that restart at 0 on the token AFTER
    each end-of-text (the eos belongs to the document it ends); against
    ``qcoder_lib.packed.position_ids_from_eos``."""
    import numpy as np

    from qcoder_lib.packed import position_ids_from_eos

    E = 0
    cases = [(np.array([5, 6, E, 7, 8, 9, E, 4]), E), (np.array([E, 1, 2]), E), (np.array([3, 4, 5]), E),
             (np.array([1, E, E, 2]), E)]

    def at_eos(ids, eos):
        out, p = [], 0
        for t in ids:
            p = 0 if t == eos else p
            out.append(p)
            p += 1
        return out

    _check("packed position ids", lambda ids, e: [int(v) for v in position_ids(ids, e)], cases,
                  lambda ids, e: [int(v) for v in position_ids_from_eos(ids, e)], [
                      (("off by one: the restart is on the eos itself; it belongs to the document it "
                       "ends, the NEXT token starts at 0"), at_eos),
                      ("positions never restart: each document starts again at 0 after an eos",
                       lambda ids, e: list(range(len(ids)))),
                  ], describe=lambda a: f" (ids {a[0].tolist()}, eos {a[1]})")


def check_packed_targets(targets: Callable) -> None:
    """``targets(input_ids (B, T), position_ids (B, T)) -> (B, T-1)``: next-token targets with
    ``-100`` where the next token starts another document (notebook 06); against
    ``qcoder_lib.packed.next_token_targets``."""
    from qcoder_lib.packed import IGNORE_INDEX, document_starts, next_token_targets

    ids = torch.tensor([[11, 12, 13, 0, 21, 22, 0, 31]])
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0]])
    cases = [(ids, pos), (ids[:, :4], pos[:, :4]), (torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.tensor([[0, 0, 1], [0, 1, 2]]))]

    def shifted_wrong(i, p):
        t = i[..., 1:].clone()
        t[document_starts(p)[..., :-1]] = IGNORE_INDEX
        return t

    _check("packed-document targets", targets, cases, next_token_targets, [
        (("no target is masked: the last token of a document must not learn to predict the next "
         "document's first token"), lambda i, p: i[..., 1:].clone()),
        (("off by one in the mask: mask target t when token t + 1 starts a document "
         "(document_starts(...)[..., 1:])"), shifted_wrong),
        ("the targets are not shifted: target t is input_ids[t + 1]", lambda i, p: i[..., :-1].clone()),
    ])


def check_lr_schedule(lr: Callable) -> None:
    """``lr(step, steps, warmup, peak, floor) -> float``: linear warm-up to ``peak`` over
    ``warmup`` steps (step ``s`` gets ``peak * (s + 1) / warmup``), then a cosine from ``peak`` to
    ``floor`` reached at the last step (notebook 06); against ``qcoder_lib.train.lr_at``."""
    import math

    from qcoder_lib.train.config import TrainConfig, lr_at

    def reference(step, steps, warmup, peak, floor):
        return lr_at(step, TrainConfig(steps=steps, warmup_steps=warmup, lr=peak, min_lr=floor))

    cases = [(s, 20, 5, 1e-3, 1e-4) for s in (0, 2, 4, 5, 11, 19, 25)] + [(0, 10, 0, 2e-3, 0.0)]

    def cosine_to_zero(step, steps, warmup, peak, floor):
        if step < warmup:
            return peak * (step + 1) / warmup
        p = min(max((step - warmup) / max(steps - 1 - warmup, 1), 0.0), 1.0)
        return peak * 0.5 * (1 + math.cos(math.pi * p))

    def warmup_from_zero(step, steps, warmup, peak, floor):
        return peak * step / warmup if step < warmup else reference(step, steps, warmup, peak, floor)

    _check("learning-rate schedule", lr, cases, reference, [
        ("the cosine ends at 0: it must end at the floor (min_lr), a tenth of the peak here",
         cosine_to_zero),
        ("off by one in the warm-up: step s gets peak * (s + 1) / warmup, so step 0 already learns",
         warmup_from_zero),
    ], describe=lambda a: f" (step {a[0]} of {a[1]}, warm-up {a[2]})")


# ---------------------------------------------------------------- 10: evaluation
def check_pass_at_k(pass_at_k: Callable) -> None:
    """``pass_at_k(n, c, k) -> float``: the unbiased estimator ``1 - C(n-c, k) / C(n, k)``;
    against ``qcoder_lib.evaluation.passk.pass_at_k``."""
    from qcoder_lib.evaluation.passk import pass_at_k as ref

    cases = [(10, 3, 1), (10, 3, 5), (20, 0, 5), (20, 18, 3), (200, 7, 100)]
    _check("pass@k", lambda n, c, k: float(pass_at_k(n, c, k)), cases, ref, [
        ("that is c / n, the pass@1 estimate, whatever k", lambda n, c, k: c / n),
        (("1 - (1 - c/n)**k draws WITH replacement and is biased; draw k of the n samples without "
         "replacement: 1 - C(n-c, k) / C(n, k)"), lambda n, c, k: 1 - (1 - c / n) ** k),
    ], atol=1e-9, describe=lambda a: f" (n={a[0]}, c={a[1]}, k={a[2]})")
