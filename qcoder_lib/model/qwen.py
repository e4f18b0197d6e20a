"""The Qwen2 decoder (the architecture of Qwen2.5-Coder), written to be read.

One forward pass, top to bottom::

    input_ids (B, T) -> embed_tokens -> x (B, T, d)
    for each block:   x = x + attention(rmsnorm(x))     # pre-norm, GQA, RoPE, QKV bias
                      x = x + swiglu_mlp(rmsnorm(x))
    x = rmsnorm(x) -> lm_head -> logits (B, T, V)        # lm_head tied to embed_tokens <= 3B

Parameter names are exactly those of transformers' ``Qwen2ForCausalLM`` (``model.layers.3.
self_attn.q_proj.weight`` ...), so checkpoints go both ways (see :mod:`qcoder_lib.model.hf_interop`).

Packed documents: when ``position_ids`` are given and no ``attention_mask``/cache is, a new
document starts wherever a position is not the previous position + 1 (the rule of transformers'
``masking_utils.find_packed_sequence_indices``), and attention never crosses documents.
(transformers applies that rule only when it builds no KV cache: call its model with
``use_cache=False`` on packed rows, otherwise the documents see each other.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_BACKENDS = ("eager", "sdpa", "triton")


@dataclass
class QwenConfig:
    """Shape of a Qwen2 decoder. Field names are those of transformers' ``Qwen2Config``."""

    vocab_size: int = 151936  # embedding rows (the tokenizer's size, padded up)
    hidden_size: int = 896  # width d of the residual stream
    intermediate_size: int = 4864  # width of the SwiGLU MLP
    num_hidden_layers: int = 24  # number of decoder blocks
    num_attention_heads: int = 14  # query heads Hq
    num_key_value_heads: int = 2  # key/value heads Hkv (GQA: Hq/Hkv queries share one)
    head_dim: int | None = None  # per-head width D; None means hidden_size // num_attention_heads
    max_position_embeddings: int = 32768  # longest context the model was trained for
    rope_theta: float = 1_000_000.0  # RoPE base (10,000 in file-level pretraining)
    rms_norm_eps: float = 1e-6  # epsilon inside RMSNorm's square root
    tie_word_embeddings: bool = True  # lm_head shares embed_tokens' weight (sizes <= 3B)
    initializer_range: float = 0.02  # std of the normal init of linear and embedding weights
    bos_token_id: int | None = None  # written to the HF config on export
    eos_token_id: int | None = None  # written to the HF config on export
    attn_implementation: str = "sdpa"  # "eager" (readable math), "sdpa" (PyTorch), "triton"

    def __post_init__(self):
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                    f"{self.num_attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.attn_implementation not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attn_implementation={self.attn_implementation!r} is not one of "
                f"{', '.join(ATTENTION_BACKENDS)}"
            )

    @classmethod
    def preset(cls, name: str, vocab_size: int | None = None, tokenizer=None, **overrides):
        """A Qwen2.5-Coder size (``"0.5B"`` ... ``"32B"``) or a course profile (``"smoke"``,
        ``"cpu"``, ``"gpu"``). A course preset's vocabulary is ``vocab_size`` if given, else
        ``len(tokenizer)``, else the size of that profile's course tokenizer
        (:data:`qcoder_lib.tokenizer.COURSE_VOCAB_SIZE` + the 22 special tokens), rounded up to
        a multiple of 128 as Qwen pads its embedding (151,665 tokens in 151,936 rows)."""
        if name in QWEN25_CODER_SIZES:
            fields = dict(QWEN25_CODER_SIZES[name])
        elif name in COURSE_PRESETS:
            fields = dict(COURSE_PRESETS[name])
            if vocab_size is None:
                n_tokens = len(tokenizer) if tokenizer is not None else _course_tokens(name)
                vocab_size = -(-n_tokens // 128) * 128 if n_tokens else None
        else:
            known = ", ".join([*QWEN25_CODER_SIZES, *COURSE_PRESETS])
            raise ValueError(f"unknown preset {name!r}; choose one of {known}")
        if vocab_size is not None:
            fields["vocab_size"] = vocab_size
        return cls(**{**fields, **overrides})

    def with_(self, **changes) -> QwenConfig:
        """A copy with some fields changed: ``cfg.with_(attn_implementation="eager")``."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-serialisable)."""
        return asdict(self)

    def num_params(self) -> ParamCount:
        """Parameters counted from the shapes: total, and non-embedding (without the
        embedding matrix and, when untied, without lm_head; the model cards' convention)."""
        d, f, D = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_attention_heads * D, self.num_key_value_heads * D
        attn = d * q + q + 2 * (d * kv + kv) + q * d  # q,k,v with bias; o without
        block = attn + 3 * d * f + 2 * d  # + SwiGLU (3 matrices) + two RMSNorm weights
        embed = self.vocab_size * d
        non_embedding = self.num_hidden_layers * block + d  # + final norm
        total = non_embedding + embed + (0 if self.tie_word_embeddings else embed)
        return ParamCount(total, non_embedding)

    def flops_per_token(self, seq_len: int, training: bool = True) -> float:
        """FLOPs per token (PaLM appendix B convention): forward = 2*N + 4*L*T*Hq*D, where N
        counts every matrix multiplied (non-embedding + lm_head) and the second term is
        QK^T and AV over a context of ``seq_len`` (no causal halving). Training = 3x forward."""
        n_matmul = self.num_params().non_embedding + self.vocab_size * self.hidden_size
        attn = 4 * self.num_hidden_layers * seq_len * self.num_attention_heads * self.head_dim
        forward = 2 * n_matmul + attn
        return float(3 * forward if training else forward)


def _course_tokens(profile: str) -> int | None:
    """Tokens of the course tokenizer for ``profile`` (from its constants; nothing is trained)."""
    try:
        from qcoder_lib.tokenizer import COURSE_VOCAB_SIZE, SPECIAL_TOKENS
    except ImportError:  # tokenizer module absent: keep the preset's placeholder vocab
        return None
    return COURSE_VOCAB_SIZE[profile] + len(SPECIAL_TOKENS)


class ParamCount(NamedTuple):
    """Parameter counts of a model: every distinct parameter, and those outside the embedding."""

    total: int  # every distinct parameter
    non_embedding: int  # without embedding rows (and lm_head when untied)


# Qwen2.5-Coder sizes (report Table 1; 3B intermediate 11008 as in the released config,
# 0.5B head_dim 896/14 = 64). Columns:
#          hidden  layers  q heads  kv heads  intermediate  tied   embedding rows
_SIZES = {
    "0.5B": (896, 24, 14, 2, 4864, True, 151936),
    "1.5B": (1536, 28, 12, 2, 8960, True, 151936),
    "3B": (2048, 36, 16, 2, 11008, True, 151936),
    "7B": (3584, 28, 28, 4, 18944, False, 152064),
    "14B": (5120, 48, 40, 8, 13824, False, 152064),
    "32B": (5120, 64, 40, 8, 27648, False, 152064),
}  # fmt: skip
# Course models: same architecture, small; RoPE base 10,000 as in file-level pretraining.
# Their vocab (8192) is replaced by the course tokenizer's size in QwenConfig.preset.
_COURSE_SIZES = {
    "smoke": (64, 2, 4, 2, 176, True, 8192),
    "cpu": (256, 6, 8, 2, 704, True, 8192),
    "gpu": (768, 12, 12, 2, 2048, True, 8192),
}  # fmt: skip
_COLUMNS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "tie_word_embeddings", "vocab_size")  # fmt: skip
QWEN25_CODER_SIZES: dict[str, dict] = {
    name: dict(zip(_COLUMNS, row), max_position_embeddings=32768, rope_theta=1_000_000.0,
               rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151643)
    for name, row in _SIZES.items()
}  # fmt: skip
COURSE_PRESETS: dict[str, dict] = {
    name: dict(zip(_COLUMNS, row), max_position_embeddings=ctx, rope_theta=10_000.0,
               rms_norm_eps=1e-6)
    for (name, row), ctx in zip(_COURSE_SIZES.items(), (256, 1024, 4096))
}  # fmt: skip


class RMSNorm(nn.Module):
    """``weight * x / sqrt(mean(x^2) + eps)``, computed in fp32 whatever the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))  # (d,)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., d)
        """Normalise ``x (..., d)`` over its last dim; same shape and dtype out."""
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return RMSNormFunction.apply(x, self.weight, self.eps)  # same math, faster backward
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)  # the cast order of transformers' Qwen2RMSNorm


class RMSNormFunction(torch.autograd.Function):
    """fp32 RMSNorm with its gradient written out, which takes about half the kernels of
    autograd's composite backward. With ``xhat = x * rstd``, ``rstd = 1 / rms(x)``:
    ``dx = rstd * (g - xhat * mean(g * xhat))`` where ``g = dy * weight``;
    ``dweight = sum(dy * xhat)`` over all rows."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        """``x (..., d)`` fp32, ``weight (d,)`` -> ``xhat * weight (..., d)``; saves xhat, rstd."""
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1)
        xhat = x * rstd  # (..., d)
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight

    @staticmethod
    def backward(ctx, dy):
        """``dy (..., d)`` -> ``(dx (..., d), dweight (d,) or None, None)`` (eps gets none)."""
        xhat, rstd, weight = ctx.saved_tensors
        g = dy * weight
        dx = (g - xhat * (g * xhat).mean(-1, keepdim=True)) * rstd
        dweight = (dy * xhat).flatten(0, -2).sum(0) if ctx.needs_input_grad[1] else None
        return dx, dweight, None


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE at given positions, in fp32 (then cast to the activations' dtype,
    as transformers does). Frequencies: ``inv_freq[i] = theta ** (-2i / D)``."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (D/2,)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype):  # (B, T)
        """``(cos, sin)``, each ``(B, T, D)`` in ``dtype``, for ``position_ids (B, T)``."""
        freqs = position_ids[..., None].float() * self.inv_freq.float()  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, D): half-split layout
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dim (halves, not interleaved pairs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, H, T, D)`` by the angles in ``cos/sin (B|1, T, D)``."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D)
    return x * cos + rotate_half(x) * sin


def packed_document_ids(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Per-token document index ``(B, T)`` for packed rows: a document starts at every token
    whose position is not the previous one + 1 (so restarting at 0 starts a new document).
    ``None`` when every row is a single document. Same rule as transformers 5.x."""
    first = position_ids[:, :1] - 1
    starts = torch.diff(position_ids, prepend=first, dim=-1) != 1  # (B, T)
    doc_ids = starts.cumsum(-1)
    return None if bool((doc_ids[:, -1] == 0).all()) else doc_ids


def build_attention_mask(q_len: int, kv_len: int, device, doc_ids=None, key_padding=None):
    """Boolean mask ``(B|1, 1, q_len, kv_len)``, True = may attend. Queries sit at the last
    ``q_len`` slots of the ``kv_len`` keys (a KV cache holds the earlier ones). ``doc_ids (B, T)``
    forbids crossing packed documents; ``key_padding (B, kv_len)`` (1 = real token) hides pads,
    except that each query may always see itself so a padded row never becomes all -inf."""
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]  # (q, 1)
    k_pos = torch.arange(kv_len, device=device)[None, :]  # (1, kv)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, q, kv)
    if doc_ids is not None:
        mask = mask & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    if key_padding is not None:
        visible = key_padding.bool()[:, None, None, :] | (k_pos == q_pos)[None, None]
        mask = mask & visible
    return mask


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE: Hq query heads, Hkv key/value heads."""

    def __init__(self, cfg: QwenConfig, layer_idx: int):
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        self.n_q = cfg.num_attention_heads  # Hq
        self.n_kv = cfg.num_key_value_heads  # Hkv
        self.head_dim = cfg.head_dim  # D
        self.scale = self.head_dim**-0.5
        d = cfg.hidden_size
        self.q_proj = nn.Linear(d, self.n_q * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.n_q * self.head_dim, d, bias=False)

    def project_qkv(self, x):  # (B, T, d) -> (B, T, (Hq + 2*Hkv) * D)
        """q, k and v projections side by side. Plain ``nn.Linear`` layers are run as ONE
        matmul on their concatenated weights (same numbers, fewer kernels); wrapped layers
        (LoRA, quantised) are called as they are, so their extra computation is kept."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if all(type(p) is nn.Linear for p in projs):
            weight = torch.cat([p.weight for p in projs])  # (Hq*D + 2*Hkv*D, d)
            bias = torch.cat([p.bias for p in projs])
            return F.linear(x, weight, bias)
        return torch.cat([p(x) for p in projs], dim=-1)

    def forward(self, x, cos, sin, mask=None, doc_ids=None, cache=None):  # x (B, T, d)
        """Attention output ``(B, T, d)`` for ``x (B, T, d)``. ``cos/sin (B|1, T, D)``;
        ``mask (B|1, 1, T, S)`` bool, True = may attend (None = plain causal); ``doc_ids (B|1, T)``
        packed-document ids (used by the triton backend); ``cache`` a ``KVCache``, updated."""
        B, T, _ = x.shape
        Hq, Hkv = self.n_q, self.n_kv
        qkv = self.project_qkv(x).view(B, T, Hq + 2 * Hkv, self.head_dim).transpose(1, 2)
        # qkv: (B, Hq + 2*Hkv, T, D); rotate the q and k heads together (one RoPE, not two)
        q, k = apply_rope(qkv[:, : Hq + Hkv], cos, sin).split([Hq, Hkv], dim=1)
        v = qkv[:, Hq + Hkv :]  # (B, Hkv, T, D)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, S, D), S = past + T
        backend = self.cfg.attn_implementation
        if backend == "triton" and cache is None and (mask is None or doc_ids is not None):
            from qcoder_lib.kernels.attention import flash_attention  # lazy: needs triton

            if doc_ids is not None:
                doc_ids = doc_ids.expand(B, T)
            o = flash_attention(q, k, v, causal=True, doc_ids=doc_ids, scale=self.scale)
        elif backend == "eager":
            o = eager_attention(q, k, v, mask, self.scale)
        else:  # sdpa, and triton's fallback for KV-cache / padded batches
            o = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None,
                scale=self.scale,
                enable_gqa=self.n_q != self.n_kv,
            )
        o = o.transpose(1, 2).reshape(B, T, self.n_q * self.head_dim)  # (B, T, Hq*D)
        return self.o_proj(o)


def eager_attention(q, k, v, mask, scale):
    """Attention written out: ``softmax(q k^T * scale + mask) v`` with K/V heads repeated for
    GQA and the softmax in fp32. q ``(B, Hq, T, D)``, k/v ``(B, Hkv, S, D)``; ``mask=None`` means
    plain causal."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)  # (B, Hq, S, D)
    v = v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, Hq, T, S)
    if mask is None:
        mask = build_attention_mask(q.shape[2], k.shape[2], q.device)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return probs @ v  # (B, Hq, T, D)


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, d: int, f: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):  # (B, T, d)
        """``x (B, T, d)`` -> ``(B, T, d)`` through the hidden width ``f``."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: QwenConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, cos, sin, mask=None, doc_ids=None, cache=None):  # (B, T, d)
        """The residual stream ``x (B, T, d)`` after this block; other arguments as in
        :meth:`Attention.forward`."""
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, doc_ids, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class QwenBody(nn.Module):
    """Embedding, blocks and final norm (transformers' ``Qwen2Model``, named ``model``)."""

    def __init__(self, cfg: QwenConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)


class QwenForCausalLM(nn.Module):
    """The Qwen2 language model: ``input_ids (B, T)`` -> logits ``(B, T, V)``."""

    def __init__(self, cfg: QwenConfig):
        super().__init__()
        self.config = cfg
        self.model = QwenBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.reset_parameters()
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight  # one tensor, two names

    @torch.no_grad()
    def reset_parameters(self):
        """Normal(0, initializer_range) weights, zero biases, unit norm weights."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, self.config.initializer_range)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)

    def forward(self, input_ids, position_ids=None, attention_mask=None, cache=None):
        """Logits ``(B, T, V)`` for ``input_ids (B, T)``.

        - ``position_ids (B, T)`` or ``(1, T)``: default ``past .. past+T-1``; packed rows
          restart them (see
          :func:`packed_document_ids`; applied only without ``attention_mask`` and ``cache``).
        - ``attention_mask (B, past+T)``: 1 = real token, 0 = padding (left-padded batches).
        - ``cache``: a :class:`qcoder_lib.model.generation.KVCache`, filled in place.
        """
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None]  # (1, T)
        elif (
            position_ids.dim() != 2
            or position_ids.shape[0] not in (1, B)
            or position_ids.shape[1] != T
        ):
            raise ValueError(
                f"position_ids has shape {tuple(position_ids.shape)}, expected ({B}, {T})"
            )
        x = self.model.embed_tokens(input_ids)  # (B, T, d)
        cos, sin = self.model.rotary_emb(position_ids, x.dtype)  # (B|1, T, D) each
        doc_ids = None
        if attention_mask is None and cache is None:
            doc_ids = packed_document_ids(position_ids)
        mask = None  # None = plain causal (lets SDPA use its fastest path)
        if doc_ids is not None or attention_mask is not None or past > 0:
            mask = build_attention_mask(T, past + T, x.device, doc_ids, attention_mask)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, doc_ids, cache)
        if cache is not None:
            cache.advance(T)
        return self.lm_head(self.model.norm(x))  # (B, T, V)

    def num_params(self) -> ParamCount:
        """Distinct parameters actually held (a tied lm_head counts once)."""
        total = sum(p.numel() for p in self.parameters())  # parameters() de-duplicates
        embed = self.model.embed_tokens.weight.numel()
        untied = 0 if self.config.tie_word_embeddings else self.lm_head.weight.numel()
        return ParamCount(total, total - embed - untied)

    def flops_per_token(self, seq_len: int, training: bool = True) -> float:
        """See :meth:`QwenConfig.flops_per_token`."""
        return self.config.flops_per_token(seq_len, training)

    def generate(self, prompts, max_new_tokens: int, **kwargs):
        """Shortcut for :func:`qcoder_lib.model.generation.generate` with this model."""
        from qcoder_lib.model.generation import generate

        return generate(self, prompts, max_new_tokens, **kwargs)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100):
    """Mean cross-entropy of predicting ``labels[:, t+1]`` from ``logits[:, t]`` (fp32).
    ``labels (B, T)`` is usually ``input_ids`` with ignored positions set to ``ignore_index``."""
    # Shift the labels, not the logits: slicing (B, T, V) logits would copy them (and their
    # gradient); the last position gets no target.
    targets = F.pad(labels[:, 1:], (0, 1), value=ignore_index)  # (B, T)
    return F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index
    )
