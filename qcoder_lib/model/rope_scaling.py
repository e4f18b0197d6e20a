"""RoPE scaling: how a model trained on ``L`` tokens is stretched to ``factor * L`` tokens.

RoPE turns position ``p`` into the angles ``p * inv_freq[i]`` (:mod:`qcoder_lib.model.rope`).
Dimension pair ``i`` turns once every ``wavelength[i] = 2 * pi / inv_freq[i]`` tokens: the first
pairs spin fast (a few tokens per turn), the last ones so slowly that in ``L`` training tokens
they never complete a turn. Past ``L`` those slow pairs show angles the model never saw. The
ways out, each a rule for new inverse frequencies (all go through :func:`scaled_inv_freq`):

- ``"default"``: plain RoPE, ``inv_freq[i] = theta ** (-2i / D)``. Raising ``theta`` (Qwen2.5-
  Coder: 10,000 -> 1,000,000 in repository-level pretraining) slows every pair down.
- ``"linear"`` (position interpolation, Chen et al. 2023): every ``inv_freq / factor``; positions
  are squeezed into the trained range, and nearby tokens become hard to tell apart.
- ``"ntk"`` (NTK-aware, bloc97 2023): ``theta * factor ** (D / (D - 2))``; the fastest pair is
  kept, the slowest is divided by ``factor``, the ones between in a geometric blend. A course
  name: transformers calls the dynamic version ``"dynamic"``, which equals this one with
  ``factor = factor * seq_len / L - (factor - 1)``.
- ``"yarn"`` (Peng et al. 2023, what Qwen2.5-Coder uses for 131,072 tokens): pairs that turn
  more than ``beta_fast`` (32) times in ``L`` tokens are kept, pairs that turn less than
  ``beta_slow`` (1) time are interpolated (``/ factor``), a linear ramp between; and the
  attention logits are sharpened by scaling cos and sin by ``0.1 * ln(factor) + 1``
  (:func:`yarn_attention_factor`).

A scaling is a dict spelled as transformers spells it (``{"rope_type": "yarn", "factor": 4.0,
"original_max_position_embeddings": 32768}``; the older ``"type"`` key is read too). The
formulas follow transformers' ``modeling_rope_utils`` operation by operation, so the inverse
frequencies are the same numbers (``tests/test_rope_scaling.py`` checks them against its
``ROPE_INIT_FUNCTIONS``).
"""

from __future__ import annotations

import math

import torch

from qcoder_lib.model.rope import RotaryEmbedding, rope_angles, rope_inv_freq

ROPE_TYPES = ("default", "linear", "ntk", "yarn")  # the rules this module computes
SCALING_KEYS = {  # keys each rope_type reads (besides rope_type / type)
    "default": set(),
    "linear": {"factor"},
    "ntk": {"factor"},
    "yarn": {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
             "attention_factor", "mscale", "mscale_all_dim", "truncate"},
}
# Keys transformers keeps in the same dict which say nothing new here (rope_theta is the
# config's own field).
_PASSIVE_KEYS = {"rope_theta", "partial_rotary_factor"}


def normalize_rope_scaling(scaling: dict | None, max_position_embeddings: int | None = None,
                           *, field: str = "rope_scaling") -> dict | None:
    """A scaling dict in the one spelling this library keeps: ``rope_type`` (``"type"`` read as
    its older name), only the keys that type reads, ``factor`` a float, and for YaRN
    ``original_max_position_embeddings`` filled in from ``max_position_embeddings`` when absent
    (what transformers does). ``None`` or ``{"rope_type": "default"}`` gives ``None``.
    Raises ``ValueError`` naming ``field`` and the key at fault (unknown type, unknown key,
    missing or non-positive factor, partial rotary factor other than 1)."""
    if not scaling:
        return None
    if not isinstance(scaling, dict):
        raise TypeError(f"{field} must be a dict, not {type(scaling).__name__}")
    rope_type = scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"{field}: rope_type={rope_type!r} is not one of {', '.join(ROPE_TYPES)}")
    allowed = SCALING_KEYS[rope_type]
    extra = set(scaling) - allowed - _PASSIVE_KEYS - {"rope_type", "type"}
    if extra:
        raise ValueError(f"{field}: key(s) {', '.join(sorted(extra))} are not read by "
                         f"rope_type={rope_type!r}")
    if scaling.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"{field}: partial_rotary_factor={scaling['partial_rotary_factor']} "
                         "is not supported (Qwen2 rotates the whole head)")
    if rope_type == "default":
        return None
    out = {"rope_type": rope_type, **{k: v for k, v in scaling.items() if k in allowed}}
    if out.get("factor") is None and rope_type == "yarn" and max_position_embeddings:
        original = out.get("original_max_position_embeddings") or max_position_embeddings
        out["factor"] = max_position_embeddings / original  # transformers' rule when absent
    if not isinstance(out.get("factor"), (int, float)) or out["factor"] <= 0:
        raise ValueError(f"{field}: factor={out.get('factor')!r} must be a positive number")
    out["factor"] = float(out["factor"])
    if rope_type == "yarn":
        original = out.get("original_max_position_embeddings") or max_position_embeddings
        if not original:
            raise ValueError(f"{field}: YaRN needs original_max_position_embeddings")
        out["original_max_position_embeddings"] = int(original)
    return out


def linear_inv_freq(head_dim: int, theta: float, factor: float, device=None) -> torch.Tensor:
    """Position interpolation: ``rope_inv_freq / factor``, ``(D/2,)`` fp32 (every pair slowed
    down by the same ``factor``, as if positions were divided by it)."""
    inv_freq = rope_inv_freq(head_dim, theta, device)
    inv_freq /= factor
    return inv_freq


def ntk_theta(head_dim: int, theta: float, factor: float) -> float:
    """The NTK-aware base ``theta * factor ** (D / (D - 2))``: with it the slowest pair turns
    ``factor`` times slower while the fastest pair is unchanged."""
    return theta * factor ** (head_dim / (head_dim - 2))


def ntk_inv_freq(head_dim: int, theta: float, factor: float, device=None) -> torch.Tensor:
    """NTK-aware scaling: plain RoPE with the base :func:`ntk_theta`, ``(D/2,)`` fp32."""
    base = ntk_theta(head_dim, theta, factor)
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (base**exponent)  # transformers' "dynamic" computes it in this order


def yarn_attention_factor(factor: float, mscale: float | None = None,
                          mscale_all_dim: float | None = None) -> float:
    """YaRN's scale of cos and sin (so of the attention logits, squared): ``0.1 * ln(factor)
    + 1`` (1 for ``factor <= 1``); with both ``mscale`` and ``mscale_all_dim`` (DeepSeek
    configs) the ratio of the two such terms, as transformers computes it."""

    def get_mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if mscale and mscale_all_dim:
        return float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
    return get_mscale(factor)


def yarn_correction_range(head_dim: int, theta: float, original_max_position_embeddings: int,
                          beta_fast: float = 32, beta_slow: float = 1,
                          truncate: bool = True) -> tuple[float, float]:
    """``(low, high)``: the pair index below which pairs turn more than ``beta_fast`` times in
    ``original_max_position_embeddings`` tokens (kept), and above which they turn less than
    ``beta_slow`` times (interpolated). Pair ``i`` turns ``L / wavelength`` times, which gives
    ``i(r) = D * ln(L / (2 * pi * r)) / (2 * ln(theta))``; floored/ceiled when ``truncate`` and
    clamped to ``[0, D - 1]``."""

    def dim_for(rotations):
        L = original_max_position_embeddings
        return (head_dim * math.log(L / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = dim_for(beta_fast), dim_for(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, head_dim - 1)


def yarn_ramp(low: float, high: float, n: int) -> torch.Tensor:
    """``(n,)`` fp32: 0 for pairs at or below ``low``, 1 at or above ``high``, linear between.
    In :func:`yarn_inv_freq` it is the share of the interpolated frequency in each pair."""
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    return torch.clamp((torch.arange(n, dtype=torch.float32) - low) / (high - low), 0, 1)


def yarn_inv_freq(head_dim: int, theta: float, factor: float,
                  original_max_position_embeddings: int, beta_fast: float = 32,
                  beta_slow: float = 1, truncate: bool = True, device=None) -> torch.Tensor:
    """YaRN's inverse frequencies ``(D/2,)`` fp32: per pair, ``ramp * inv_freq / factor +
    (1 - ramp) * inv_freq`` with :func:`yarn_ramp` over :func:`yarn_correction_range` (fast pairs
    kept, slow pairs interpolated). The attention factor is :func:`yarn_attention_factor`."""
    # theta ** (2i / D), written as transformers writes it (same float operations, same bits)
    pos_freqs = theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    low, high = yarn_correction_range(head_dim, theta, original_max_position_embeddings,
                                      beta_fast, beta_slow, truncate)
    keep = 1 - yarn_ramp(low, high, head_dim // 2).to(device=device)  # 1 = extrapolate (keep)
    return interpolation * (1 - keep) + extrapolation * keep


def scaled_inv_freq(head_dim: int, theta: float, scaling: dict | None = None,
                    device=None) -> tuple[torch.Tensor, float]:
    """``(inv_freq (D/2,) fp32, attention_factor)`` for RoPE base ``theta`` and a ``scaling``
    dict (see :func:`normalize_rope_scaling`; ``None`` = plain RoPE, factor 1). The one function
    the model's rotary embedding calls; cos and sin are multiplied by ``attention_factor``."""
    s = normalize_rope_scaling(scaling)
    if s is None:
        return rope_inv_freq(head_dim, theta, device), 1.0
    kind, factor = s["rope_type"], s["factor"]
    if kind == "linear":
        return linear_inv_freq(head_dim, theta, factor, device), 1.0
    if kind == "ntk":
        return ntk_inv_freq(head_dim, theta, factor, device), 1.0
    attention = s.get("attention_factor")
    if attention is None:
        attention = yarn_attention_factor(factor, s.get("mscale"), s.get("mscale_all_dim"))
    inv_freq = yarn_inv_freq(
        head_dim, theta, factor, s["original_max_position_embeddings"],
        s.get("beta_fast") or 32, s.get("beta_slow") or 1, s.get("truncate", True), device,
    )
    return inv_freq, float(attention)


def rotations_in(inv_freq: torch.Tensor, length: int) -> torch.Tensor:
    """``(D/2,)``: how many full turns each pair makes over ``length`` positions
    (``length * inv_freq / (2 * pi)``); below 1 a pair never sees its whole circle."""
    return length * inv_freq.double() / (2 * math.pi)


class ScaledRotaryEmbedding(RotaryEmbedding):
    """The model's rotary embedding with an optional scaling: ``inv_freq`` from
    :func:`scaled_inv_freq`, and cos/sin multiplied by its attention factor in fp32 before the
    cast to the activations' dtype (as transformers' ``Qwen2RotaryEmbedding`` does). Without a
    scaling it is :class:`RotaryEmbedding` exactly (factor 1.0)."""

    def __init__(self, head_dim: int, theta: float, scaling: dict | None = None):
        super().__init__(head_dim, theta)
        inv_freq, self.attention_scaling = scaled_inv_freq(head_dim, theta, scaling)
        self.inv_freq = inv_freq  # (D/2,) replaces the plain buffer (still not saved)
        self.scaling = normalize_rope_scaling(scaling)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype):  # (B, T)
        """``(cos, sin)``, each ``(B, T, D)`` in ``dtype``, times the attention factor."""
        cos, sin = rope_angles(position_ids, self.inv_freq)  # (B, T, D) fp32
        if self.attention_scaling != 1.0:
            cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        return cos.to(dtype), sin.to(dtype)
