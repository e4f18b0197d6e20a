"""FlashAttention-2-style attention in Triton, with the PyTorch reference beside it.

What the kernel computes is plain softmax attention, ``O = softmax(scale * Q K^T + mask) V``,
but without ever writing the ``(T, T)`` score matrix to memory:

- **Forward** (one program per block of ``BLOCK_M`` queries and one head): stream over blocks of
  ``BLOCK_N`` keys/values, keep a running row maximum ``m``, a running denominator ``l`` and an
  unnormalised output ``acc`` in registers ("online softmax"), rescale them by
  ``exp(m_old - m_new)`` when the maximum grows, and divide by ``l`` at the end. The row's
  log-sum-exp ``lse = m + log(l)`` is saved (``(B, Hq, T)`` fp32) for the backward pass.
  Exponentials are computed as ``exp2`` with ``scale * log2(e)`` folded into the scores.
- **Backward** by recomputation: ``P = exp(scale * Q K^T - lse)`` is rebuilt block by block,
  ``delta = rowsum(dO * O)``, ``dS = P * (dO V^T - delta)``, then ``dV = P^T dO``,
  ``dK = scale * dS^T Q`` (one program per key block; it loops over every query head of its
  GQA group, so the group sum is deterministic, no atomics) and ``dQ = scale * dS K`` (one
  program per query block).
- **Masks**: causal (``t_q >= t_k``), sequence tails (any ``T``), and document masking for
  packed sequences (``doc_ids[b, t_q] == doc_ids[b, t_k]``). In the forward and dQ kernels the
  key blocks left of the diagonal skip the mask arithmetic; only the diagonal and tail blocks
  pay for it.
- **GQA**: query head ``h`` reads key/value head ``h // (Hq // Hkv)``; K/V are never repeated.

On a GPU the block sizes are autotuned; under Triton's CPU interpreter one small configuration
is used and all arithmetic is done in fp32 (the interpreter gets bf16 wrong).

The PyTorch reference the tests compare against is the model's own
:func:`qcoder_lib.model.eager_attention` (with the mask of :func:`qcoder_lib.packed.attention_mask`),
and ``cu_seqlens`` become document ids through :func:`qcoder_lib.packed.doc_ids_from_cu_seqlens`.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from qcoder_lib.kernels import INTERPRETER
from qcoder_lib.packed import doc_ids_from_cu_seqlens

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


# ----------------------------------------------------------------------------- configs


def _configs(kind: str, fixed: bool = False):
    """Block configurations: one small fixed one under the interpreter, a few to autotune on GPU
    (or one safe GPU configuration when ``fixed``: what the tests use, to skip tuning time).

    ``fwd`` and ``dq`` tile queries by ``BLOCK_M`` and loop over keys by ``BLOCK_N`` (needs
    ``BLOCK_M % BLOCK_N == 0``); ``dkdv`` tiles keys by ``BLOCK_N`` and loops over queries by
    ``BLOCK_M`` (needs ``BLOCK_N % BLOCK_M == 0``).
    """
    C = triton.Config
    if INTERPRETER:
        m, n = (16, 32) if kind == "dkdv" else (32, 16)
        return [C({"BLOCK_M": m, "BLOCK_N": n}, num_warps=4, num_stages=1)]
    # Chosen from a ptxas scan (sm_90, head_dim 128, bf16): no or few register spills.
    if fixed:
        shapes = [(32, 32, 4, 3)] if kind == "dkdv" else [(64, 32, 4, 3)]
    elif kind == "fwd":
        shapes = [(128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 3), (64, 64, 8, 3),
                  (128, 32, 8, 3), (64, 32, 4, 3)]
    elif kind == "dq":
        shapes = [(64, 32, 4, 3), (64, 32, 4, 4), (64, 64, 8, 3), (32, 32, 4, 3), (128, 32, 8, 3),
                  (64, 16, 4, 3)]
    else:  # dkdv
        shapes = [(32, 64, 8, 3), (64, 64, 8, 3), (32, 64, 4, 2), (32, 32, 4, 3), (16, 64, 4, 3),
                  (64, 128, 8, 2)]
    return [C({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


def _autotune_enabled() -> bool:
    """Autotune on GPU unless ``QCODER_TRITON_AUTOTUNE=0`` (read at every call; the GPU tests
    set it to skip minutes of tuning across their many shapes). Never under the interpreter."""
    return not INTERPRETER and os.environ.get("QCODER_TRITON_AUTOTUNE", "1") != "0"


def _tuned(kernel, kind):
    """(autotuned, fixed-config) launchers of one kernel."""
    return (triton.autotune(configs=_configs(kind), key=_KEY)(kernel),
            triton.autotune(configs=_configs(kind, fixed=True), key=_KEY)(kernel))


_KEY = ["T_BUCKET", "HEAD_DIM", "CAUSAL", "HAS_DOC", "GROUP"]


# ----------------------------------------------------------------------------- forward


@triton.jit
def _fwd_inner(
    acc, l_i, m_i, q, q_doc, offs_m, offs_d,
    k_base, v_base, skt, svt, doc_base,
    lo, hi, T, qk_scale,
    BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kT_ptrs = k_base + offs_n[None, :] * skt + offs_d[:, None]  # (D, BLOCK_N)
        v_ptrs = v_base + offs_n[:, None] * svt + offs_d[None, :]  # (BLOCK_N, D)
        if MASK:
            kT = tl.load(kT_ptrs, mask=offs_n[None, :] < T, other=0.0)
            v = tl.load(v_ptrs, mask=offs_n[:, None] < T, other=0.0)
        else:
            kT = tl.load(kT_ptrs)
            v = tl.load(v_ptrs)
        if UPCAST:
            kT = kT.to(tl.float32)
            v = v.to(tl.float32)
        qk = tl.dot(q, kT, input_precision=DOT_PREC) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if MASK:
            ok = offs_n[None, :] < T
            if CAUSAL:
                ok = ok & (offs_m[:, None] >= offs_n[None, :])
            qk = tl.where(ok, qk, float("-inf"))
        if HAS_DOC:
            k_doc = tl.load(doc_base + offs_n, mask=offs_n < T, other=-2)
            qk = tl.where(q_doc[:, None] == k_doc[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd_kernel(
    Q, K, V, O, LSE, DOC,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
    Hq, T, T_BUCKET, qk_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # heaviest query blocks (the last ones, under a causal mask) first: less idle tail
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // Hq).to(tl.int64)
    h = (bh % Hq).to(tl.int64)
    hk = h // GROUP
    q_base = Q + b * sqb + h * sqh
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    doc_base = DOC + b * (3 * T)  # (B, 3, T): doc id, run start, run end
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * sqt + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    q_doc = offs_m
    if HAS_DOC:
        q_doc = tl.load(doc_base + offs_m, mask=offs_m < T, other=-1)
    # m starts at a large finite negative value (not -inf) so that a row whose first blocks are
    # all masked (document masking) gives exp2(m_old - m_new) = 1 instead of NaN.
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    if CAUSAL:
        lo_diag = start_m * BLOCK_M  # blocks left of the diagonal need no mask
        hi_diag = tl.minimum((start_m + 1) * BLOCK_M, T)
    else:
        lo_diag = (T // BLOCK_N) * BLOCK_N  # only the tail block needs a mask
        hi_diag = T
    lo = 0
    if HAS_DOC:  # packed documents: skip key blocks before the first row's document
        lo = (tl.load(doc_base + T + start_m * BLOCK_M) // BLOCK_N) * BLOCK_N
    acc, l_i, m_i = _fwd_inner(
        acc, l_i, m_i, q, q_doc, offs_m, offs_d, k_base, v_base, skt, svt, doc_base,
        lo, lo_diag, T, qk_scale, BLOCK_N, False, CAUSAL, HAS_DOC, UPCAST, DOT_PREC,
    )
    acc, l_i, m_i = _fwd_inner(
        acc, l_i, m_i, q, q_doc, offs_m, offs_d, k_base, v_base, skt, svt, doc_base,
        lo_diag, hi_diag, T, qk_scale, BLOCK_N, True, CAUSAL, HAS_DOC, UPCAST, DOT_PREC,
    )
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    acc = acc / l_safe[:, None]
    lse = (m_i + tl.math.log2(l_safe)) * 0.6931471805599453  # natural-log log-sum-exp
    row_ok = offs_m < T
    tl.store(LSE + bh.to(tl.int64) * T + offs_m, lse, mask=row_ok)
    o_ptrs = O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :]
    tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=row_ok[:, None])


_ATTN_FWD = _tuned(_attn_fwd_kernel, "fwd")


# ----------------------------------------------------------------------------- backward


@triton.jit
def _bwd_delta_kernel(
    O, DO, DELTA, sob, soh, sot, sdb, sdh, sdt, Hq, T,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta[b, h, t] = sum_d O * dO (fp32): the row term of the softmax gradient."""
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // Hq).to(tl.int64)
    h = (bh % Hq).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    ok = offs_m[:, None] < T
    o = tl.load(O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :], mask=ok, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_d[None, :], mask=ok, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(DELTA + bh.to(tl.int64) * T + offs_m, delta, mask=offs_m < T)


@triton.jit
def _dkdv_inner(
    dk, dv, k, v, k_doc, offs_n, offs_d,
    q_base, do_base, lse_base, delta_base, doc_base, sqt, sdt,
    lo, hi, T, qk_scale,
    BLOCK_M: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
):
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        qT_ptrs = q_base + offs_m[None, :] * sqt + offs_d[:, None]  # (D, BLOCK_M)
        do_ptrs = do_base + offs_m[:, None] * sdt + offs_d[None, :]  # (BLOCK_M, D)
        if MASK:
            qT = tl.load(qT_ptrs, mask=offs_m[None, :] < T, other=0.0)
            do = tl.load(do_ptrs, mask=offs_m[:, None] < T, other=0.0)
            lse = tl.load(lse_base + offs_m, mask=offs_m < T, other=0.0)
            Di = tl.load(delta_base + offs_m, mask=offs_m < T, other=0.0)
        else:
            qT = tl.load(qT_ptrs)
            do = tl.load(do_ptrs)
            lse = tl.load(lse_base + offs_m)
            Di = tl.load(delta_base + offs_m)
        if UPCAST:
            qT = qT.to(tl.float32)
            do = do.to(tl.float32)
        qkT = tl.dot(k, qT, input_precision=DOT_PREC) * qk_scale  # (BLOCK_N, BLOCK_M)
        pT = tl.math.exp2(qkT - lse[None, :] * 1.4426950408889634)
        if MASK:
            ok = offs_m[None, :] < T
            if CAUSAL:
                ok = ok & (offs_m[None, :] >= offs_n[:, None])
            pT = tl.where(ok, pT, 0.0)
        if HAS_DOC:
            q_doc = tl.load(doc_base + offs_m, mask=offs_m < T, other=-1)
            pT = tl.where(k_doc[:, None] == q_doc[None, :], pT, 0.0)
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PREC)
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)  # (BLOCK_N, BLOCK_M)
        dsT = pT * (dpT - Di[None, :])
        dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=DOT_PREC)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DOC, DK, DV,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdb, sdh, sdt,
    Hq, T, T_BUCKET, qk_scale, sm_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_n = tl.program_id(0) * BLOCK_N
    bhk = tl.program_id(1)
    Hkv = Hq // GROUP
    b = (bhk // Hkv).to(tl.int64)
    hk = (bhk % Hkv).to(tl.int64)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    n_ok = offs_n[:, None] < T
    k = tl.load(K + b * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :], mask=n_ok, other=0.0)
    v = tl.load(V + b * svb + hk * svh + offs_n[:, None] * svt + offs_d[None, :], mask=n_ok, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    doc_base = DOC + b * (3 * T)  # (B, 3, T): doc id, run start, run end
    k_doc = offs_n
    if HAS_DOC:
        k_doc = tl.load(doc_base + offs_n, mask=offs_n < T, other=-2)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # One masked loop over the query blocks that can see this key block (from the diagonal on,
    # when causal). Splitting it into masked diagonal / unmasked middle / masked tail loops, as
    # the forward kernel does, costs more registers than the mask saves (measured with ptxas
    # for sm_90, head_dim 128: spills with three loops, none with one).
    if CAUSAL:
        lo = start_n
    else:
        lo = 0
    hi = T
    if HAS_DOC:  # packed documents: only queries of the documents in this key block
        hi = tl.load(doc_base + 2 * T + tl.minimum(start_n + BLOCK_N, T) - 1)
        if not CAUSAL:
            lo = (tl.load(doc_base + T + start_n) // BLOCK_M) * BLOCK_M
    for g in range(GROUP):  # every query head sharing this K/V head, in order: deterministic
        h = hk * GROUP + g
        bh = b * Hq + h
        q_base = Q + b * sqb + h * sqh
        do_base = DO + b * sdb + h * sdh
        lse_base = LSE + bh * T
        delta_base = DELTA + bh * T
        dk, dv = _dkdv_inner(
            dk, dv, k, v, k_doc, offs_n, offs_d, q_base, do_base, lse_base, delta_base, doc_base,
            sqt, sdt, lo, hi, T, qk_scale,
            BLOCK_M, True, CAUSAL, HAS_DOC, UPCAST, DOT_PREC,
        )
    dk = dk * sm_scale
    out = bhk.to(tl.int64) * T * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DK + out, dk.to(DK.dtype.element_ty), mask=n_ok)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=n_ok)


@triton.jit
def _dq_inner(
    dq, q, do, lse, Di, q_doc, offs_m, offs_d, k_base, v_base, skt, svt, doc_base,
    lo, hi, T, qk_scale,
    BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kT_ptrs = k_base + offs_n[None, :] * skt + offs_d[:, None]  # (D, BLOCK_N)
        vT_ptrs = v_base + offs_n[None, :] * svt + offs_d[:, None]  # (D, BLOCK_N)
        if MASK:
            kT = tl.load(kT_ptrs, mask=offs_n[None, :] < T, other=0.0)
            vT = tl.load(vT_ptrs, mask=offs_n[None, :] < T, other=0.0)
        else:
            kT = tl.load(kT_ptrs)
            vT = tl.load(vT_ptrs)
        if UPCAST:
            kT = kT.to(tl.float32)
            vT = vT.to(tl.float32)
        qk = tl.dot(q, kT, input_precision=DOT_PREC) * qk_scale
        p = tl.math.exp2(qk - lse[:, None])
        if MASK:
            ok = offs_n[None, :] < T
            if CAUSAL:
                ok = ok & (offs_m[:, None] >= offs_n[None, :])
            p = tl.where(ok, p, 0.0)
        if HAS_DOC:
            k_doc = tl.load(doc_base + offs_n, mask=offs_n < T, other=-2)
            p = tl.where(q_doc[:, None] == k_doc[None, :], p, 0.0)
        dp = tl.dot(do, vT, input_precision=DOT_PREC)
        ds = p * (dp - Di[:, None])
        dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=DOT_PREC)
    return dq


@triton.jit
def _attn_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DOC, DQ,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdb, sdh, sdt,
    Hq, T, T_BUCKET, qk_scale, sm_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # heaviest query blocks (the last ones, under a causal mask) first: less idle tail
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // Hq).to(tl.int64)
    h = (bh % Hq).to(tl.int64)
    hk = h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    m_ok = offs_m[:, None] < T
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :], mask=m_ok, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_d[None, :], mask=m_ok, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    row = bh.to(tl.int64) * T + offs_m
    lse = tl.load(LSE + row, mask=offs_m < T, other=0.0) * 1.4426950408889634
    Di = tl.load(DELTA + row, mask=offs_m < T, other=0.0)
    doc_base = DOC + b * (3 * T)  # (B, 3, T): doc id, run start, run end
    q_doc = offs_m
    if HAS_DOC:
        q_doc = tl.load(doc_base + offs_m, mask=offs_m < T, other=-1)
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    if CAUSAL:
        lo_diag = start_m * BLOCK_M
        hi_diag = tl.minimum((start_m + 1) * BLOCK_M, T)
    else:
        lo_diag = (T // BLOCK_N) * BLOCK_N
        hi_diag = T
    lo = 0
    if HAS_DOC:  # packed documents: skip key blocks before the first row's document
        lo = (tl.load(doc_base + T + start_m * BLOCK_M) // BLOCK_N) * BLOCK_N
    dq = _dq_inner(
        dq, q, do, lse, Di, q_doc, offs_m, offs_d, k_base, v_base, skt, svt, doc_base,
        lo, lo_diag, T, qk_scale, BLOCK_N, False, CAUSAL, HAS_DOC, UPCAST, DOT_PREC,
    )
    dq = _dq_inner(
        dq, q, do, lse, Di, q_doc, offs_m, offs_d, k_base, v_base, skt, svt, doc_base,
        lo_diag, hi_diag, T, qk_scale, BLOCK_N, True, CAUSAL, HAS_DOC, UPCAST, DOT_PREC,
    )
    dq = dq * sm_scale
    out = bh.to(tl.int64) * T * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DQ + out, dq.to(DQ.dtype.element_ty), mask=m_ok)


_ATTN_BWD_DKDV = _tuned(_attn_bwd_dkdv_kernel, "dkdv")
_ATTN_BWD_DQ = _tuned(_attn_bwd_dq_kernel, "dq")


def _pick(pair):
    return pair[0] if _autotune_enabled() else pair[1]


# ----------------------------------------------------------------------------- autograd


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products ("ieee"), not TF32, so fp32 results match a reference;
    # fp16/bf16 use the tensor cores whatever this says.
    return "ieee" if (INTERPRETER or dtype == torch.float32) else "tf32"


def _strides(x):
    return x.stride(0), x.stride(1), x.stride(2)


def _flash_fwd(q, k, v, doc, causal, scale):
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    o = torch.empty((B, Hq, T, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, Hq, T), dtype=torch.float32, device=q.device)
    has_doc = doc is not None
    doc_arg = doc if has_doc else lse  # never read when HAS_DOC is False

    def grid(meta):
        return (triton.cdiv(T, meta["BLOCK_M"]), B * Hq)

    _pick(_ATTN_FWD)[grid](
        q, k, v, o, lse, doc_arg,
        *_strides(q), *_strides(k), *_strides(v), *_strides(o),
        Hq, T, triton.next_power_of_2(T), scale * LOG2E,
        GROUP=Hq // Hkv, HEAD_DIM=D, CAUSAL=causal, HAS_DOC=has_doc,
        UPCAST=INTERPRETER, DOT_PREC=_dot_precision(q.dtype),
    )
    return o, lse


def _flash_bwd(q, k, v, o, lse, doc, do, causal, scale):
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    if do.stride(-1) != 1:
        do = do.contiguous()
    delta = torch.empty((B, Hq, T), dtype=torch.float32, device=q.device)
    block = 32 if INTERPRETER else 128
    _bwd_delta_kernel[(triton.cdiv(T, block), B * Hq)](
        o, do, delta, *_strides(o), *_strides(do), Hq, T, HEAD_DIM=D, BLOCK_M=block,
    )
    dq = torch.empty((B, Hq, T, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, Hkv, T, D), dtype=k.dtype, device=k.device)
    dv = torch.empty((B, Hkv, T, D), dtype=v.dtype, device=v.device)
    has_doc = doc is not None
    doc_arg = doc if has_doc else lse
    common = {
        "GROUP": Hq // Hkv, "HEAD_DIM": D, "CAUSAL": causal, "HAS_DOC": has_doc,
        "UPCAST": INTERPRETER, "DOT_PREC": _dot_precision(q.dtype),
    }
    args = (*_strides(q), *_strides(k), *_strides(v), *_strides(do),
            Hq, T, triton.next_power_of_2(T), scale * LOG2E, scale)
    _pick(_ATTN_BWD_DKDV)[lambda meta: (triton.cdiv(T, meta["BLOCK_N"]), B * Hkv)](
        q, k, v, do, lse, delta, doc_arg, dk, dv, *args, **common,
    )
    _pick(_ATTN_BWD_DQ)[lambda meta: (triton.cdiv(T, meta["BLOCK_M"]), B * Hq)](
        q, k, v, do, lse, delta, doc_arg, dq, *args, **common,
    )
    return dq, dk, dv


def _doc_table(doc_ids: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T)`` int32: document id, start and end (exclusive) of the token's run of equal
    ids. The kernels use the runs to skip blocks that lie wholly in other documents; that is
    only valid when every id forms one run, i.e. ids never decrease along a row (the usual
    packing). Otherwise the runs are set to the whole row and masking alone does the work."""
    d = doc_ids.to(torch.int64)
    B, T = d.shape
    t = torch.arange(T, device=d.device).expand(B, T)
    change = d[:, 1:] != d[:, :-1]  # (B, T-1): a new run starts at t+1
    first = torch.ones(B, T, dtype=torch.bool, device=d.device)
    first[:, 1:] = change
    last = torch.ones(B, T, dtype=torch.bool, device=d.device)
    last[:, :-1] = change
    start = torch.where(first, t, 0).cummax(1).values
    end = torch.where(last, t + 1, T).flip(1).cummin(1).values.flip(1)
    monotone = (d[:, 1:] >= d[:, :-1]).all(1, keepdim=True)  # (B, 1), per row, no host sync
    start = torch.where(monotone, start, 0)
    end = torch.where(monotone, end, T)
    return torch.stack([d, start, end], 1).to(torch.int32).contiguous()


class _FlashAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, o and the log-sum-exp; backward recomputes P."""

    @staticmethod
    def forward(ctx, q, k, v, doc, causal, scale):
        """``q (B, Hq, T, D)``, ``k/v (B, Hkv, T, D)``, ``doc`` the ``(B, 3, T)`` table of
        :func:`_doc_table` or None -> ``o (B, Hq, T, D)``; D a power of two."""
        o, lse = _flash_fwd(q, k, v, doc, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse, doc)
        ctx.causal, ctx.scale = causal, scale
        return o

    @staticmethod
    def backward(ctx, do):
        """``do (B, Hq, T, D)`` -> ``dq (B, Hq, T, D)``, ``dk/dv (B, Hkv, T, D)``, then None for
        doc, causal and scale."""
        q, k, v, o, lse, doc = ctx.saved_tensors
        dq, dk, dv = _flash_bwd(q, k, v, o, lse, doc, do, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None, None


def flash_attention(q, k, v, *, causal=True, doc_ids=None, cu_seqlens=None, scale=None):
    """Softmax attention with the Triton FlashAttention-2 kernels (differentiable in q, k, v).

    Args:
        q: ``(B, Hq, T, D)`` queries; fp32, fp16 or bf16; ``D`` a multiple of 16 (64 and 128
            are the fast paths; other sizes are zero-padded to the next power of two).
        k, v: ``(B, Hkv, T, D)`` keys and values, same dtype; ``Hq % Hkv == 0`` (GQA: query
            head ``h`` uses K/V head ``h // (Hq // Hkv)``; K/V are not repeated in memory, and
            dK/dV are summed over the group in a fixed order, so results are deterministic).
            Any strides with a contiguous last dim (e.g. a ``(B, T, H, D)`` tensor transposed).
        causal: mask keys after the query (``t_k > t_q``).
        doc_ids: optional ``(B, T)`` integer document id of every token: a query only sees keys
            of the same document (packed sequences). A token always sees itself.
        cu_seqlens: alternative to ``doc_ids``: ``(num_docs + 1,)`` cumulative document lengths
            over the flattened ``B * T`` tokens, from 0 to ``B * T``.
        scale: score scale, default ``D ** -0.5``.

    Returns:
        ``o``: ``(B, Hq, T, D)`` contiguous, dtype of q.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be (B, H, T, D); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    if k.shape != v.shape or k.shape[0] != B or k.shape[2:] != q.shape[2:]:
        raise ValueError(f"k {tuple(k.shape)} / v {tuple(v.shape)} must be (B, Hkv, T, D) with q {tuple(q.shape)}")
    if Hq % Hkv:
        raise ValueError(f"query heads Hq={Hq} must be a multiple of key/value heads Hkv={Hkv}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"q, k, v must share one dtype of fp32/fp16/bf16; got {q.dtype}, {k.dtype}, {v.dtype}")
    if D % 16:
        raise ValueError(f"head_dim D={D} must be a multiple of 16")
    if doc_ids is not None and cu_seqlens is not None:
        raise ValueError("give doc_ids or cu_seqlens, not both")
    if cu_seqlens is not None:
        doc_ids = doc_ids_from_cu_seqlens(cu_seqlens.to(q.device), B, T)
    doc = None
    if doc_ids is not None:
        if doc_ids.shape != (B, T):
            raise ValueError(f"doc_ids {tuple(doc_ids.shape)} must be (B, T)=({B}, {T})")
        doc = _doc_table(doc_ids.to(q.device))
    scale = D**-0.5 if scale is None else float(scale)
    if T == 0 or B == 0:  # nothing to attend to (keeps the graph connected for autograd)
        return q * 0.0
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    Dp = triton.next_power_of_2(D)
    if Dp != D:  # zero columns change neither Q K^T nor the kept part of the output
        q, k, v = (F.pad(x, (0, Dp - D)) for x in (q, k, v))
    o = _FlashAttentionFunction.apply(q, k, v, doc, bool(causal), scale)
    return o[..., :D] if Dp != D else o


def attention_flops(B: int, H: int, T: int, D: int, causal: bool = True, backward: bool = False) -> float:
    """FLOPs counted the usual way: ``4 B H T^2 D`` (two matmuls), halved when causal; the
    backward pass counts 2.5x the forward, so forward+backward is 3.5x."""
    f = 4.0 * B * H * T * T * D * (0.5 if causal else 1.0)
    return f * 3.5 if backward else f


__all__ = ["attention_flops", "flash_attention"]
