"""Linear + cross-entropy by chunks of rows: the loss of ``hidden @ weight.T`` without ever holding
all the logits.

Qwen2.5-Coder's vocabulary has V = 151,936 rows. One training micro-batch of B x T = 4 x 2048
tokens makes logits of 8192 x 151,936: 2.5 GB in bf16, 5 GB once cast to fp32 for the loss, and
as much again for their gradient, more than the whole 0.5B model and its AdamW state. Here the
rows are cut into chunks of ``chunk_rows``; for each chunk we compute its logits ``(n, V)``,
their log-sum-exp, the loss, and at once the gradient ``softmax - one_hot`` (scaled as the
reduction asks), which we multiply into the gradients of ``hidden`` (``(n, V) @ (V, d)``) and of
``weight`` (``(V, n) @ (n, d)``, accumulated in fp32). Only one chunk's logits exist at a time.
The backward pass then only scales the stored gradients by the incoming scalar. This is the
design of Liger-Kernel's fused linear cross-entropy (there with Triton kernels for the softmax;
here with PyTorch ops, which on a GPU are already bandwidth-bound on an ``(n, V)`` chunk).

Numbers: the chunk's logits are computed in the matmul dtype (bf16 under autocast, as
``lm_head`` makes them) and the softmax in fp32, exactly like ``F.cross_entropy(logits.float())``
after a bf16 ``lm_head``; in fp32 the loss and both gradients equal the plain reference to
rounding (tests/test_kernels_cross_entropy.py checks 1e-5).

Public API: :func:`linear_cross_entropy` (the chunked loss, differentiable in ``hidden`` and
``weight``), :class:`LinearCrossEntropyFunction` (its ``autograd.Function``),
:func:`linear_cross_entropy_reference` (the plain PyTorch formula beside it) and
:func:`default_chunk_rows`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # the same value as qcoder_lib.packed.IGNORE_INDEX and F.cross_entropy's

# Course choice: one chunk's fp32 logits take at most this many bytes (256 MiB: 441 rows of the
# 151,936-row vocabulary), large enough for efficient GEMMs, small beside a 0.5B model's state.
CHUNK_BYTES = 256 * 2**20


def default_chunk_rows(vocab_size: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk such that one chunk's fp32 logits ``(rows, vocab_size)`` fit in
    ``chunk_bytes``, rounded down to a multiple of 64 (a GEMM-friendly tile) and at least 64."""
    rows = chunk_bytes // (4 * vocab_size)
    return max(64, rows // 64 * 64)


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype of the logits matmul: autocast's when it is on for ``hidden``'s device (what
    ``lm_head`` would use), else the promoted dtype of ``hidden`` and ``weight``."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _check(hidden, weight, targets, reduction):
    """Shapes and options, with errors naming the tensor at fault."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be (N, d) and weight "
                         f"{tuple(weight.shape)} must be (V, d) with the same d")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets has shape {tuple(targets.shape)}, expected ({hidden.shape[0]},)"
                         " (one target per row of hidden)")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}: choose 'mean' or 'sum'")


def _chunk_loss(h, w, t, ignore_index):
    """Loss terms of one chunk: ``h (n, d)``, ``w (V, d)`` in the compute dtype, ``t (n,)``.
    Returns ``(logits_fp32 (n, V), lse (n,), safe_t (n,), valid (n,), loss_sum ())``."""
    logits = (h @ w.T).float()  # (n, V): the matmul dtype's rounding, then fp32 like .float()
    lse = torch.logsumexp(logits, dim=-1)  # (n,)
    valid = t != ignore_index  # (n,)
    safe_t = torch.where(valid, t, torch.zeros_like(t))  # (n,) a valid index on ignored rows
    target_logit = logits.gather(1, safe_t[:, None]).squeeze(1)  # (n,)
    loss = torch.where(valid, lse - target_logit, torch.zeros_like(lse)).sum()
    return logits, lse, safe_t, valid, loss


class LinearCrossEntropyFunction(torch.autograd.Function):
    """``cross_entropy(hidden @ weight.T, targets)`` by chunks of rows, gradients computed in the
    forward pass (one pass over the logits instead of two) and scaled in the backward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, reduction, chunk_rows):
        """``hidden (N, d)``, ``weight (V, d)``, ``targets (N,)`` int -> scalar fp32 loss.
        Saves ``grad_hidden (N, d)`` (hidden's dtype) and ``grad_weight (V, d)`` (fp32 then
        weight's dtype) for a unit upstream gradient."""
        cdt = _compute_dtype(hidden, weight)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        N = hidden.shape[0]
        n_valid = (targets != ignore_index).sum()  # () a tensor: no host sync
        # the gradient of the reduction: 1 per target for "sum", 1/n_valid for "mean"
        scale = 1.0 / n_valid.float() if reduction == "mean" else torch.ones((), device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(cdt)  # (V, d); one cast, as autocast would make for lm_head
            grad_h = torch.empty_like(hidden) if need_h else None  # (N, d)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for s in range(0, N, chunk_rows):
                h = hidden[s : s + chunk_rows].to(cdt)  # (n, d)
                logits, lse, safe_t, valid, loss = _chunk_loss(h, w, targets[s : s + chunk_rows],
                                                               ignore_index)
                total = total + loss
                if not (need_h or need_w):
                    continue
                # d loss / d logits = (softmax - one_hot) * scale on valid rows, 0 on ignored ones
                g = logits.sub_(lse[:, None]).exp_()  # (n, V) fp32, in place of the logits
                g.scatter_add_(1, safe_t[:, None], -valid[:, None].float())
                g.mul_((valid.float() * scale)[:, None])
                g = g.to(cdt)  # (n, V) what the plain path's .float() backward casts back to
                if need_h:
                    grad_h[s : s + chunk_rows] = (g @ w).to(hidden.dtype)  # (n, d)
                if need_w and cdt == torch.float32:
                    grad_w.addmm_(g.T, h)  # (V, d) += (V, n) @ (n, d), no (V, d) temporary
                elif need_w:
                    grad_w += g.T @ h  # (V, d) one bf16 temporary, accumulated in fp32
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.used = False
        return total / n_valid.float() if reduction == "mean" else total

    @staticmethod
    def backward(ctx, grad_out):
        """``grad_out ()`` -> ``(grad_hidden (N, d), grad_weight (V, d), None x 4)``. The stored
        gradients are scaled in place (no second (V, d) buffer), so it runs once per forward."""
        if ctx.used:
            raise RuntimeError("linear_cross_entropy: backward ran twice on one forward "
                               "(retain_graph=True); its gradients are scaled in place, once")
        ctx.used = True
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None:
            grad_h = grad_h.mul_(grad_out.to(grad_h.dtype))
        if grad_w is not None:
            grad_w = grad_w.mul_(grad_out).to(ctx.weight_dtype)
        return grad_h, grad_w, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                         ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                         chunk_rows: int | None = None) -> torch.Tensor:
    """Cross-entropy of the logits ``hidden @ weight.T`` against ``targets``, never holding more
    than ``chunk_rows`` rows of logits. ``hidden (..., d)``, ``weight (V, d)`` (e.g. ``lm_head.
    weight``), ``targets (...)`` int64 class ids, ``ignore_index`` rows skipped; ``reduction``
    ``"mean"`` (over the non-ignored rows; NaN if none, like ``F.cross_entropy``) or ``"sum"``.
    ``chunk_rows`` defaults to :func:`default_chunk_rows`. Returns a scalar fp32 loss,
    differentiable in ``hidden`` and ``weight``."""
    hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    _check(hidden, weight, targets, reduction)
    chunk_rows = chunk_rows or default_chunk_rows(weight.shape[0])
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} must be at least 1")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return LinearCrossEntropyFunction.apply(hidden, weight, targets, ignore_index, reduction,
                                                chunk_rows)
    cdt = _compute_dtype(hidden, weight)
    w = weight.to(cdt)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk_rows):  # no gradient wanted: the loss alone
        total = total + _chunk_loss(hidden[s : s + chunk_rows].to(cdt), w,
                                    targets[s : s + chunk_rows], ignore_index)[-1]
    return total / (targets != ignore_index).sum() if reduction == "mean" else total


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor,
                                   targets: torch.Tensor, *, ignore_index: int = IGNORE_INDEX,
                                   reduction: str = "mean") -> torch.Tensor:
    """The plain formula, all logits at once: ``F.cross_entropy((hidden @ weight.T).float(),
    targets)`` with the same shapes and options as :func:`linear_cross_entropy`."""
    logits = F.linear(hidden.reshape(-1, hidden.shape[-1]), weight)  # (N, V)
    return F.cross_entropy(logits.float(), targets.reshape(-1), ignore_index=ignore_index,
                           reduction=reduction)
