"""Rotary position embedding (RoPE) as one Triton kernel, with its PyTorch reference.

Convention (transformers' Qwen2, "half-split", not interleaved)::

    rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])
    rope(x)        = x * cos + rotate_half(x) * sin      # cos, sin: (..., D) = cat(f, f)

(frequencies, ``rotate_half`` and the PyTorch rotation live in :mod:`qcoder_lib.model.rope`; the
reference here is that code.)

Writing ``x = (x1, x2)`` for the two halves, the kernel computes per token and head::

    y1 = x1 * cos1 - x2 * sin1
    y2 = x2 * cos2 + x1 * sin2

and the backward pass is the transpose of that linear map (a rotation by ``-theta``)::

    dx1 = dy1 * cos1 + dy2 * sin2
    dx2 = dy2 * cos2 - dy1 * sin1

One program handles one token: it reads the token's cos/sin row once (looked up through
``position_ids``, so packed sequences whose positions restart per document need no extra
work) and rotates every head of that token. q and k (different head counts under GQA) are
handled by two launches of the same kernel. Arithmetic is in fp32; the result is stored in the
input dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from qcoder_lib.kernels import INTERPRETER
from qcoder_lib.model.rope import rope_angles, rope_inv_freq, rope_rotate


def rope_cos_sin(
    num_positions: int,
    head_dim: int,
    base: float = 1_000_000.0,
    device=None,
    inv_freq: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RoPE tables for positions ``0..num_positions-1``: ``cos, sin`` each ``(P, D)`` fp32.

    Frequencies from :func:`qcoder_lib.model.rope.rope_inv_freq` (``base``; Qwen2.5-Coder:
    ``1e6``) unless an ``inv_freq`` of shape ``(D/2,)`` is given (e.g. YaRN's blended
    frequencies); ``emb = cat(freqs, freqs)`` as in transformers.
    """
    if inv_freq is None:
        inv_freq = rope_inv_freq(head_dim, base, device)
    elif inv_freq.shape != (head_dim // 2,):
        raise ValueError(f"inv_freq has shape {tuple(inv_freq.shape)}, expected ({head_dim // 2},)")
    return rope_angles(torch.arange(num_positions, device=inv_freq.device), inv_freq)  # (P, D)


def _gather_cos_sin(cos, sin, position_ids, B, T):
    """Return cos, sin as ``(B, T, D)`` for the reference (same rules as :func:`apply_rope`)."""
    if cos.dim() == 2:
        if position_ids is None:
            return cos[:T].unsqueeze(0).expand(B, T, -1), sin[:T].unsqueeze(0).expand(B, T, -1)
        return cos[position_ids], sin[position_ids]
    if position_ids is not None:
        raise ValueError("position_ids must be None when cos/sin are already per token (B, T, D)")
    return cos.expand(B, T, -1), sin.expand(B, T, -1)


def apply_rope_reference(q, k, cos, sin, position_ids=None):
    """PyTorch RoPE exactly as transformers' Qwen2 ``apply_rotary_pos_emb`` (the test oracle):
    the model's own :func:`qcoder_lib.model.rope.rope_rotate` on q and on k.

    Same arguments and shapes as :func:`apply_rope`; cos/sin are cast to the dtype of q/k before
    the multiply, as transformers does.
    """
    B, _, T, _ = q.shape
    c, s = _gather_cos_sin(cos, sin, position_ids, B, T)  # (B, T, D)
    return rope_rotate(q, c.to(q.dtype), s.to(q.dtype)), rope_rotate(k, c.to(k.dtype), s.to(k.dtype))


@triton.jit
def _rope_kernel(
    X, Y,  # input, output: (B, H, T, D) with any strides, last dim contiguous
    COS, SIN,  # (R, D) tables, rows contiguous
    ROWS,  # (B*T,) int32: the cos/sin row of each token
    sxb, sxh, sxt,
    syb, syh, syt,
    s_cos,
    H, T,
    HALF: tl.constexpr,  # D / 2
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,  # next power of two >= HALF
    BACKWARD: tl.constexpr,
):
    tok = tl.program_id(0)  # one program per (batch, time) token
    b = tok // T
    t = tok % T
    row = tl.load(ROWS + tok).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dmask = d < HALF
    c1 = tl.load(COS + row * s_cos + d, mask=dmask, other=0.0).to(tl.float32)
    c2 = tl.load(COS + row * s_cos + HALF + d, mask=dmask, other=0.0).to(tl.float32)
    s1 = tl.load(SIN + row * s_cos + d, mask=dmask, other=0.0).to(tl.float32)
    s2 = tl.load(SIN + row * s_cos + HALF + d, mask=dmask, other=0.0).to(tl.float32)
    if BACKWARD:  # transpose of the forward map: dx1 = dy1*c1 + dy2*s2, dx2 = dy2*c2 - dy1*s1
        s1, s2 = -s2, -s1
    for h0 in range(0, H, BLOCK_H):
        h = h0 + tl.arange(0, BLOCK_H)
        m = (h[:, None] < H) & dmask[None, :]
        xp = X + b.to(tl.int64) * sxb + t.to(tl.int64) * sxt + h[:, None] * sxh + d[None, :]
        x1 = tl.load(xp, mask=m, other=0.0).to(tl.float32)
        x2 = tl.load(xp + HALF, mask=m, other=0.0).to(tl.float32)
        y1 = x1 * c1[None, :] - x2 * s1[None, :]
        y2 = x2 * c2[None, :] + x1 * s2[None, :]
        yp = Y + b.to(tl.int64) * syb + t.to(tl.int64) * syt + h[:, None] * syh + d[None, :]
        tl.store(yp, y1.to(Y.dtype.element_ty), mask=m)
        tl.store(yp + HALF, y2.to(Y.dtype.element_ty), mask=m)


def _rope_launch(x: torch.Tensor, cos, sin, rows, backward: bool) -> torch.Tensor:
    B, H, T, D = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    y = torch.empty((B, H, T, D), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    half = D // 2
    block_d = triton.next_power_of_2(half)
    # Under the interpreter a whole head block costs the same as one head; on GPU keep the
    # register tile near 4K elements.
    block_h = triton.next_power_of_2(H) if INTERPRETER else max(1, min(triton.next_power_of_2(H), 4096 // (2 * block_d)))
    _rope_kernel[(B * T,)](
        x, y, cos, sin, rows,
        x.stride(0), x.stride(1), x.stride(2),
        y.stride(0), y.stride(1), y.stride(2),
        cos.stride(0),
        H, T,
        HALF=half, BLOCK_H=block_h, BLOCK_D=block_d, BACKWARD=backward,
        num_warps=4,
    )
    return y


class _RoPEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin, rows):
        ctx.save_for_backward(cos, sin, rows)
        return _rope_launch(q, cos, sin, rows, False), _rope_launch(k, cos, sin, rows, False)

    @staticmethod
    def backward(ctx, dq, dk):
        cos, sin, rows = ctx.saved_tensors
        dq_in = _rope_launch(dq, cos, sin, rows, True) if dq is not None else None
        dk_in = _rope_launch(dk, cos, sin, rows, True) if dk is not None else None
        return dq_in, dk_in, None, None, None


def _prepare(q, k, cos, sin, position_ids):
    """Check shapes and build the (R, D) fp32 tables and the (B*T,) int32 row index."""
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"q and k must be (B, H, T, D); got q {tuple(q.shape)}, k {tuple(k.shape)}")
    B, _, T, D = q.shape
    if k.shape[0] != B or k.shape[2] != T or k.shape[3] != D:
        raise ValueError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} in B, T or D")
    if D % 2:
        raise ValueError(f"head_dim D={D} must be even")
    if cos.shape != sin.shape:
        raise ValueError(f"cos {tuple(cos.shape)} and sin {tuple(sin.shape)} differ in shape")
    if cos.shape[-1] != D:
        raise ValueError(f"cos/sin last dim {cos.shape[-1]} != head_dim {D}")
    dev = q.device
    if cos.dim() == 2:  # (P, D) table
        P = cos.shape[0]
        if position_ids is None:
            if P < T:
                raise ValueError(f"cos/sin table has {P} rows but the sequence has T={T} tokens")
            rows = torch.arange(T, device=dev, dtype=torch.int32).repeat(B)
        else:
            if position_ids.shape != (B, T):
                raise ValueError(f"position_ids {tuple(position_ids.shape)} must be (B, T)=({B}, {T})")
            rows = position_ids.reshape(-1).to(torch.int32)
            if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= P):
                raise ValueError(f"position_ids must lie in [0, {P}) (rows of the cos/sin table)")
        table_cos, table_sin = cos, sin
    elif cos.dim() == 3:  # (B or 1, T, D) per token, as transformers' rotary embedding returns
        if position_ids is not None:
            raise ValueError("position_ids must be None when cos/sin are already per token (B, T, D)")
        if cos.shape[1] != T or cos.shape[0] not in (1, B):
            raise ValueError(f"cos/sin {tuple(cos.shape)} must be (B, T, D) or (1, T, D)")
        Bc = cos.shape[0]
        table_cos, table_sin = cos.reshape(Bc * T, D), sin.reshape(Bc * T, D)
        rows = torch.arange(T, device=dev, dtype=torch.int32).repeat(B)
        if Bc == B:
            rows = rows + (torch.arange(B, device=dev, dtype=torch.int32) * T).repeat_interleave(T)
    else:
        raise ValueError(f"cos/sin must be (P, D) or (B, T, D); got {tuple(cos.shape)}")
    table_cos = table_cos.to(device=dev, dtype=torch.float32).contiguous()
    table_sin = table_sin.to(device=dev, dtype=torch.float32).contiguous()
    return table_cos, table_sin, rows.contiguous()


def apply_rope(q, k, cos, sin, position_ids=None):
    """Rotate q and k by their positions with the Triton kernel (differentiable in q and k).

    Args:
        q: ``(B, Hq, T, D)`` queries, fp32/fp16/bf16, D even (any strides, last dim contiguous).
        k: ``(B, Hkv, T, D)`` keys; ``Hkv`` may differ from ``Hq`` (GQA).
        cos, sin: either a table ``(P, D)`` indexed by position (see :func:`rope_cos_sin`), or
            per-token values ``(B, T, D)`` / ``(1, T, D)`` as transformers' rotary embedding
            returns them. Used in fp32 whatever their dtype.
        position_ids: ``(B, T)`` integer positions into the ``(P, D)`` table (restarting at 0
            for each document of a packed sequence); ``None`` means ``0..T-1``. Must be ``None``
            with per-token cos/sin.

    Returns:
        ``(q_rot, k_rot)`` with the shapes and dtypes of q and k (contiguous). The backward
        pass rotates the incoming gradients by ``-theta``. cos/sin get no gradient.
    """
    cos_t, sin_t, rows = _prepare(q, k, cos, sin, position_ids)
    return _RoPEFunction.apply(q, k, cos_t, sin_t, rows)
