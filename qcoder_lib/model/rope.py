"""Rotary position embedding (RoPE), the one place where its frequencies and rotation live.

Qwen2 uses the "half-split" convention of transformers (not interleaved pairs)::

    inv_freq[i]   = theta ** (-2i / D)                  i = 0 .. D/2 - 1
    cos, sin      = cos(p * cat(inv_freq, inv_freq)), sin(...)   # (..., D) at position p
    rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])
    rope(x)        = x * cos + rotate_half(x) * sin

:func:`rope_inv_freq` is the only function that computes frequencies: the model's
:class:`RotaryEmbedding`, the Triton kernel's tables (:func:`qcoder_lib.kernels.rope_cos_sin`) and
any RoPE scaling (YaRN) go through it. :func:`rotate_half` and :func:`rope_rotate` are the
PyTorch rotation, used by the model's eager/sdpa backends and as the Triton kernel's reference.
"""

from __future__ import annotations

import torch
from torch import nn


def rope_inv_freq(head_dim: int, theta: float, device=None) -> torch.Tensor:
    """Inverse frequencies ``(D/2,)`` fp32: ``inv_freq[i] = theta ** (-2i / D)``.
    Raises ``ValueError`` naming ``head_dim`` when it is odd."""
    if head_dim % 2:
        raise ValueError(f"head_dim={head_dim} must be even for RoPE")
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (theta**exponent)


def rope_angles(position_ids: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(cos, sin)`` fp32, each ``(*position_ids.shape, D)``, for integer ``position_ids`` and
    ``inv_freq (D/2,)`` (``emb = cat(freqs, freqs)``, the half-split layout)."""
    freqs = position_ids[..., None].float() * inv_freq.float()  # (..., D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (..., D)
    return emb.cos(), emb.sin()


class RotaryEmbedding(nn.Module):
    """cos/sin at given positions, computed in fp32 and then cast to the activations' dtype (as
    transformers does). Holds ``inv_freq`` from :func:`rope_inv_freq` as a non-saved buffer."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, theta), persistent=False)  # (D/2,)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype):  # (B, T)
        """``(cos, sin)``, each ``(B, T, D)`` in ``dtype``, for ``position_ids (B, T)``."""
        cos, sin = rope_angles(position_ids, self.inv_freq)  # (B, T, D) fp32
        return cos.to(dtype), sin.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dim (halves, not interleaved pairs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ONE tensor ``x (B, H, T, D)`` by the angles in ``cos/sin (B|1, T, D)``, in PyTorch:
    ``x * cos + rotate_half(x) * sin``, in the promoted dtype of ``x`` and cos/sin (as
    transformers' ``apply_rotary_pos_emb``). The fused Triton version that rotates q and k
    together is :func:`qcoder_lib.kernels.apply_rope`."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B|1, 1, T, D)
    return x * cos + rotate_half(x) * sin
