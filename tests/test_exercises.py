"""The exercise checks of ``qcoder_lib.course.exercises``: each accepts the reference solution
(written here independently, as a learner would, not copied from the check) and rejects
plausible wrong answers with the hint that names the mistake."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from qcoder_lib.course import exercises as ex
from qcoder_lib.runtime import ensure_triton_backend


def _rejects(check, answer, *words, **kw):
    """The check fails ``answer`` with a hint containing every one of ``words``."""
    with pytest.raises(ex.ExerciseFailed) as e:
        check(answer, **kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_check_pair_counts():
    def counts(words):
        c = {}
        for sym, f in words.items():
            for p in itertools.pairwise(sym):
                c[p] = c.get(p, 0) + f
        return c

    ex.check_pair_counts(counts)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_pair_counts, lambda w: counts(dict.fromkeys(w, 1)), "frequency")

    def once_per_word(words):  # a set of pairs per word: "a a a" holds (a, a) once
        c = {}
        for sym, f in words.items():
            for p in set(itertools.pairwise(sym)):
                c[p] = c.get(p, 0) + f
        return c

    _rejects(ex.check_pair_counts, once_per_word, "count twice")


def test_check_bpe_merge():
    def merge(s, pair):
        out, i = [], 0
        while i < len(s):
            if s[i:i + 2] == list(pair):
                out.append(s[i] + s[i + 1])
                i += 2
            else:
                out.append(s[i])
                i += 1
        return out

    ex.check_bpe_merge(merge)  # raises ExerciseFailed on a wrong answer

    def overlapping(s, pair):  # merges a a a into aa aa
        out, i = [], 0
        while i < len(s):
            if s[i:i + 2] == list(pair):
                out.append(s[i] + s[i + 1])
            elif i == 0 or [s[i - 1], s[i]] != list(pair):
                out.append(s[i])
            i += 1
        return out

    _rejects(ex.check_bpe_merge, overlapping, "case 2")
    _rejects(ex.check_bpe_merge, lambda s, p: merge(s[:-1], p), "last symbol")

    def first_only(s, pair):
        for i in range(len(s) - 1):
            if s[i:i + 2] == list(pair):
                return s[:i] + [s[i] + s[i + 1]] + s[i + 2:]
        return s

    _rejects(ex.check_bpe_merge, first_only, "first occurrence")


def test_check_rms_norm():
    ex.check_rms_norm(lambda x, w, eps: w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_rms_norm, lambda x, w, eps: w * x / torch.sqrt((x * x).mean(-1, keepdim=True)), "eps")
    _rejects(ex.check_rms_norm, lambda x, w, eps: x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps), "weight")
    _rejects(ex.check_rms_norm, lambda x, w, eps: torch.nn.functional.layer_norm(x, x.shape[-1:], w, eps=eps),
             "LayerNorm")
    _rejects(ex.check_rms_norm, lambda x, w, eps: (w * x).mean(-1), "shape")


def test_check_rotate_half():
    def rot(x):
        d = x.shape[-1] // 2
        return torch.cat([-x[..., d:], x[..., :d]], dim=-1)

    ex.check_rotate_half(rot)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_rotate_half, lambda x: -rot(x), "minus sign")
    _rejects(ex.check_rotate_half, lambda x: torch.stack([-x[..., 1::2], x[..., 0::2]], -1).flatten(-2),
             "interleaved")


def test_check_repeat_kv():
    def rep(k, n):
        B, H, T, D = k.shape
        return k[:, :, None].expand(B, H, n, T, D).reshape(B, H * n, T, D)

    ex.check_repeat_kv(rep)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_repeat_kv, lambda k, n: torch.cat([k] * n, dim=1), "tiled")
    _rejects(ex.check_repeat_kv, lambda k, n: k, "shape")


def test_check_vector_add():
    ensure_triton_backend()
    import triton
    import triton.language as tl

    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr, MASKED: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        if MASKED:
            mask = offs < n
            tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)
        else:
            tl.store(out_ptr + offs, tl.load(x_ptr + offs) + tl.load(y_ptr + offs))

    def add(x, y, grid_fn=triton.cdiv, masked=True):
        out = torch.zeros_like(x)
        add_kernel[(grid_fn(x.numel(), 256),)](x, y, out, x.numel(), BLOCK=256, MASKED=masked)
        return out

    ex.check_vector_add(add)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_vector_add, lambda x, y: add(x, y, grid_fn=lambda n, b: n // b), "length 1000", "cdiv")
    _rejects(ex.check_vector_add, lambda x, y: (x + y)[:-1], "shape")


def test_check_online_softmax_merge():
    def merge(m_a, l_a, m_b, l_b):
        m = max(float(m_a), float(m_b))
        return m, float(l_a) * math.exp(float(m_a) - m) + float(l_b) * math.exp(float(m_b) - m)

    ex.check_online_softmax_merge(merge)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_online_softmax_merge, lambda ma, la, mb, lb: (max(ma, mb), la + lb), "rescaling")
    _rejects(ex.check_online_softmax_merge,
             lambda ma, la, mb, lb: (max(ma, mb), la * math.exp(max(ma, mb) - ma) + lb * math.exp(max(ma, mb) - mb)),
             "sign")


def test_check_lsh_probability():
    ex.check_lsh_probability(lambda s, b, r: 1 - (1 - s**r) ** b)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_lsh_probability, lambda s, b, r: 1 - (1 - s**b) ** r, "swapped")
    _rejects(ex.check_lsh_probability, lambda s, b, r: s ** (r * b), "ALL bands")
    _rejects(ex.check_lsh_probability, lambda s, b, r: s**r, "ONE band")


def test_check_lsh_probability_matches_minhash():
    """The banding formula predicts how often real MinHash signatures share a band."""
    from qcoder_lib.data.dedup import jaccard, minhash_signature

    a = " ".join(f"w{i}" for i in range(60))
    b = " ".join(f"w{i}" for i in range(15, 75))
    s = jaccard(a, b)
    hits = 0
    for seed in range(40):
        sa, sb = minhash_signature(a, 64, seed=seed), minhash_signature(b, 64, seed=seed)
        hits += any((sa[k * 8:(k + 1) * 8] == sb[k * 8:(k + 1) * 8]).all() for k in range(8))
    assert abs(hits / 40 - (1 - (1 - s**8) ** 8)) < 0.25


def test_check_word_ngrams():
    import re

    def grams(text, n):
        w = re.findall(r"\w+", text.lower())
        return [" ".join(w[i:i + n]) for i in range(len(w) - n + 1)]

    ex.check_word_ngrams(grams)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_word_ngrams, lambda t, n: grams(t, n)[:-1], "last window")
    _rejects(ex.check_word_ngrams,
             lambda t, n: [" ".join(t.split()[i:i + n]) for i in range(len(t.split()) - n + 1)], "split")


@pytest.fixture(scope="module")
def tok():
    from qcoder_lib.tokenizer import course_tokenizer
    return course_tokenizer("smoke")


def test_check_psm_ids(tok):
    from qcoder_lib.tokenizer import encode_data, special_id

    def psm(t, pre, mid, suf):
        s = lambda name: special_id(t, name)
        return ([s("<|fim_prefix|>")] + encode_data(t, pre) + [s("<|fim_suffix|>")] + encode_data(t, suf)
                + [s("<|fim_middle|>")] + encode_data(t, mid) + [s("<|endoftext|>")])

    ex.check_psm_ids(psm, tok)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_psm_ids, lambda t, p, m, s: psm(t, p, m, s)[:-1], "<|endoftext|>", tokenizer=tok)
    _rejects(ex.check_psm_ids, lambda t, p, m, s: psm(t, p, s, m), "middle comes last", tokenizer=tok)

    def injected(t, p, m, s):
        e = lambda x: t.encode(x, add_special_tokens=False)
        ids = psm(t, "", "", "")
        return [ids[0], *e(p), ids[1], *e(s), ids[2], *e(m), ids[3]]

    _rejects(ex.check_psm_ids, injected, "encode_data", tokenizer=tok)


def test_check_position_ids():
    def pos(ids, eos):
        out, p = [], 0
        for t in ids:
            out.append(p)
            p = 0 if t == eos else p + 1
        return np.array(out)

    ex.check_position_ids(pos)  # raises ExerciseFailed on a wrong answer

    def at_eos(ids, eos):
        out, p = [], 0
        for t in ids:
            p = 0 if t == eos else p
            out.append(p)
            p += 1
        return out

    _rejects(ex.check_position_ids, at_eos, "off by one")
    _rejects(ex.check_position_ids, lambda ids, eos: np.arange(len(ids)), "never restart")


def test_check_packed_targets():
    def targets(ids, pos):
        t = ids[:, 1:].clone()
        t[pos[:, 1:] == 0] = -100  # a document starts where the position restarts
        return t

    ex.check_packed_targets(targets)  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_packed_targets, lambda i, p: i[:, 1:], "no target is masked")

    def off_by_one(ids, pos):
        t = ids[:, 1:].clone()
        t[pos[:, :-1] == 0] = -100
        return t

    _rejects(ex.check_packed_targets, off_by_one, "off by one")
    _rejects(ex.check_packed_targets, lambda i, p: i, "shape")


def test_check_lr_schedule():
    import math

    def schedule(step, steps, warmup, peak, floor):  # written from the notebook's description
        if step < warmup:
            return peak * (step + 1) / warmup
        p = min(max((step - warmup) / max(steps - 1 - warmup, 1), 0.0), 1.0)
        return floor + (peak - floor) * (1 + math.cos(math.pi * p)) / 2

    ex.check_lr_schedule(schedule)
    _rejects(ex.check_lr_schedule,
             lambda s, n, w, pk, f: schedule(s, n, w, pk, 0.0), "the cosine ends at 0")
    _rejects(ex.check_lr_schedule,
             lambda s, n, w, pk, f: pk * s / w if s < w else schedule(s, n, w, pk, f),
             "off by one in the warm-up")
    _rejects(ex.check_lr_schedule, lambda s, n, w, pk, f: pk, "")


def test_check_pass_at_k():
    ex.check_pass_at_k(lambda n, c, k: 1 - math.comb(n - c, k) / math.comb(n, k))  # raises ExerciseFailed on a wrong answer
    _rejects(ex.check_pass_at_k, lambda n, c, k: c / n, "c / n")
    _rejects(ex.check_pass_at_k, lambda n, c, k: 1 - (1 - c / n) ** k, "replacement")


def test_stub_says_which_exercise_is_open():
    def stub(*args):
        raise NotImplementedError("your turn")

    with pytest.raises(NotImplementedError, match="exercise 'RMSNorm' is still open"):
        ex.check_rms_norm(stub)
    with pytest.raises(NotImplementedError, match="vector add"):
        ex.check_vector_add(stub)


def test_crash_names_the_error():
    _rejects(ex.check_rotate_half, lambda x: x.chunk(3)[5], "IndexError")
