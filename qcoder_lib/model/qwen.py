"""The Qwen2 decoder (the architecture of Qwen2.5-Coder), written to be read top to bottom.

One forward pass::

    input_ids (B, T) -> embed_tokens -> x (B, T, d)
    for each block:   x = x + attention(rmsnorm(x))     # pre-norm, GQA, RoPE, QKV bias
                      x = x + swiglu_mlp(rmsnorm(x))
    x = rmsnorm(x) -> lm_head -> logits (B, T, V)        # lm_head tied to embed_tokens <= 3B

Parameter names are exactly those of transformers' ``Qwen2ForCausalLM`` (``model.layers.3.
self_attn.q_proj.weight`` ...), so checkpoints go both ways (see :mod:`qcoder_lib.model.hf_interop`).
The shapes live in :mod:`qcoder_lib.model.config`, RoPE in :mod:`qcoder_lib.model.rope`.

Attention backends (``QwenConfig.attn_implementation``):

- ``"eager"``: :func:`eager_attention`, the math written out (also the kernels' test oracle).
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``; no graph break under
  ``torch.compile``. PyTorch picks the kernel: without a mask (unpacked rows) the first of its
  priority order that fits, with native GQA: cuDNN on Hopper/Blackwell when the PyTorch build
  prefers it (recent builds with a recent cuDNN), else flash. With a mask (packed documents,
  padding, a KV cache) flash cannot run and the memory-efficient kernel refuses ``enable_gqa``,
  which would leave the math kernel (full ``(T, S)`` scores): on CUDA K/V are then repeated to
  Hq heads so that the memory-efficient kernel runs. ``benchmarks/kernels.py`` prints the
  kernels each case really runs on the card (issue 13).
- ``"triton"``: the course's own kernels, fused RoPE on q and k
  (:func:`qcoder_lib.kernels.apply_rope`) then FlashAttention (:func:`qcoder_lib.kernels.
  flash_attention`) with packed-document masking, in fp32, bf16 or under ``torch.autocast``;
  with a KV cache or a padding mask it falls back to SDPA.

Packed documents follow the one rule of :mod:`qcoder_lib.packed`: when ``position_ids`` are given
and no ``attention_mask``/cache is, a new document starts wherever a position is not the previous
position + 1, and attention never crosses documents. (transformers applies that rule only when it
builds no KV cache: call its model with ``use_cache=False`` on packed rows.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qcoder_lib import packed
from qcoder_lib.model.config import ParamCount, QwenConfig
from qcoder_lib.model.rope import rope_rotate
from qcoder_lib.model.rope_scaling import ScaledRotaryEmbedding


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


def eager_attention(q, k, v, mask=None, scale=None, *, causal=True, doc_ids=None):
    """Attention written out, as transformers' Qwen2 ``eager`` path computes it: scores
    ``q k^T * scale`` in the input dtype, masked, softmax in fp32 cast back, times ``v``; K/V heads
    repeated for GQA. The one PyTorch attention reference (the Triton kernel's test oracle too).

    q ``(B, Hq, Tq, D)``, k/v ``(B, Hkv, S, D)`` (queries are the last ``Tq`` of the ``S`` keys);
    ``mask (B|1, 1, Tq, S)`` bool, True = may attend. Without ``mask`` one is built by
    :func:`qcoder_lib.packed.attention_mask` from ``causal`` and ``doc_ids (B, S)``.
    ``scale`` defaults to ``D ** -0.5``. Returns ``(B, Hq, Tq, D)``."""
    Hq, Hkv = q.shape[1], k.shape[1]
    if Hq % Hkv:
        raise ValueError(f"query heads Hq={Hq} must be a multiple of key/value heads Hkv={Hkv}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if mask is None:
        ids = doc_ids.to(q.device) if doc_ids is not None else None
        mask = packed.attention_mask(q.shape[2], k.shape[2], q.device, ids, causal=causal)
    k = k.repeat_interleave(Hq // Hkv, dim=1)  # (B, Hq, S, D)
    v = v.repeat_interleave(Hq // Hkv, dim=1)
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, Hq, Tq, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return probs @ v  # (B, Hq, Tq, D)


def _common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the kernels run in: autocast's when it is on for the tensors' device (q/k/v
    may then come out of RoPE and the projections in different dtypes), else the promoted one."""
    device_type = tensors[0].device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


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
        packed-document ids (read by the triton backend, which takes no ``mask``); ``cache`` a
        ``KVCache``, updated."""
        B, T, _ = x.shape
        Hq, Hkv = self.n_q, self.n_kv
        qkv = self.project_qkv(x).view(B, T, Hq + 2 * Hkv, self.head_dim).transpose(1, 2)
        # qkv: (B, Hq + 2*Hkv, T, D), a view; heads [0, Hq) are q, then Hkv of k, then Hkv of v
        if self.cfg.attn_implementation == "triton" and cache is None and mask is None:
            o = self._kernels(qkv, cos, sin, doc_ids)
        else:
            # rotate the q and k heads together (one RoPE, not two)
            q, k = rope_rotate(qkv[:, : Hq + Hkv], cos, sin).split([Hq, Hkv], dim=1)
            v = qkv[:, Hq + Hkv :]  # (B, Hkv, T, D)
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, S, D), S = past + T
            if self.cfg.attn_implementation == "eager":
                o = eager_attention(q, k, v, mask, self.scale)
            else:  # sdpa, and triton's fallback for a KV cache or a padding mask
                gqa = Hq != Hkv
                if gqa and mask is not None and q.is_cuda:
                    # issue 13: on CUDA, enable_gqa with an attn_mask (packed documents, padding,
                    # a cache) is taken only by the math kernel (it materialises the (T, S)
                    # scores); K/V repeated here let the memory-efficient kernel run instead
                    # (transformers' sdpa_attention does the same; `benchmarks/kernels.py`
                    # prints the kernels each call really runs on the card).
                    k = k.repeat_interleave(Hq // Hkv, dim=1)  # (B, Hq, S, D)
                    v = v.repeat_interleave(Hq // Hkv, dim=1)
                    gqa = False
                o = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.scale,
                    enable_gqa=gqa,
                )
        o = o.transpose(1, 2).reshape(B, T, Hq * self.head_dim)  # (B, T, Hq*D)
        return self.o_proj(o)

    def _kernels(self, qkv, cos, sin, doc_ids):  # qkv (B, Hq + 2*Hkv, T, D)
        """The triton backend: the fused RoPE kernel on q and k (strided views of ``qkv``, no
        copy), then FlashAttention with document masking; returns ``(B, Hq, T, D)``."""
        from qcoder_lib.kernels import apply_rope, flash_attention  # lazy: needs triton

        B, _, T, _ = qkv.shape
        Hq, Hkv = self.n_q, self.n_kv
        q, k = apply_rope(qkv[:, :Hq], qkv[:, Hq : Hq + Hkv], cos, sin)  # (B, H, T, D) each
        v = qkv[:, Hq + Hkv :]  # (B, Hkv, T, D)
        dtype = _common_dtype(q, k, v)  # flash_attention needs one dtype for q, k and v
        q, k, v = (t if t.dtype == dtype else t.to(dtype) for t in (q, k, v))
        if doc_ids is not None:
            doc_ids = doc_ids.expand(B, T)
        return flash_attention(q, k, v, causal=True, doc_ids=doc_ids, scale=self.scale)


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
        # issue 15: RoPE scaling (YaRN ...) when cfg.rope_scaling is set, else plain RoPE
        self.rotary_emb = ScaledRotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)


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

    def forward(self, input_ids, position_ids=None, attention_mask=None, cache=None,
                targets=None, loss_reduction="mean"):
        """Logits ``(B, T, V)`` for ``input_ids (B, T)``; with ``targets`` the loss instead.

        - ``position_ids (B, T)`` or ``(1, T)``: default ``past .. past+T-1``; packed rows
          restart them (the rule of :mod:`qcoder_lib.packed`; applied only without
          ``attention_mask`` and ``cache``).
        - ``attention_mask (B, past+T)``: 1 = real token, 0 = padding (left-padded batches).
        - ``cache``: a :class:`qcoder_lib.model.generation.KVCache`, filled in place.
        - ``targets (B, T)`` (issue 13): next-token targets, already shifted, ``IGNORE_INDEX``
          where none (:func:`qcoder_lib.packed.next_token_targets`); then the scalar fp32
          cross-entropy (``loss_reduction`` ``"mean"`` over targets or ``"sum"``) is returned,
          computed by chunks of rows (:func:`qcoder_lib.kernels.cross_entropy.
          linear_cross_entropy`) so that the ``(B, T, V)`` logits never exist at once.
        """
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        doc_ids = None
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
        elif attention_mask is None and cache is None:
            doc_ids = _packed_document_ids(position_ids)  # (B|1, T) or None
        x = self.model.embed_tokens(input_ids)  # (B, T, d)
        cos, sin = self.model.rotary_emb(position_ids, x.dtype)  # (B|1, T, D) each
        mask = None  # None = plain causal (lets SDPA use its fastest path)
        # the triton kernels read doc_ids themselves; a cache or a padding mask sends triton to SDPA
        kernels = self.config.attn_implementation == "triton" and cache is None
        kernels = kernels and attention_mask is None
        if not kernels and (doc_ids is not None or attention_mask is not None or past > 0):
            mask = packed.attention_mask(T, past + T, x.device, doc_ids, key_padding=attention_mask)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, doc_ids, cache)
        if cache is not None:
            cache.advance(T)
        if targets is not None:  # issue 13: the loss without the (B, T, V) logits
            return _chunked_loss(self.model.norm(x), self.lm_head, targets, loss_reduction)
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


def _chunked_loss(h, lm_head, targets, reduction):  # h (B, T, d), targets (B, T)
    """Cross-entropy of ``lm_head(h)`` against ``targets`` by chunks of rows (issue 13). The
    chunked path lives in :mod:`qcoder_lib.kernels.cross_entropy` (pure PyTorch, but its package
    imports Triton); without the ``kernels`` extra the plain logits path gives the same numbers."""
    if targets.shape != h.shape[:2]:
        raise ValueError(f"targets has shape {tuple(targets.shape)}, expected {tuple(h.shape[:2])}")
    try:
        from qcoder_lib.kernels.cross_entropy import linear_cross_entropy
    except ImportError:  # no triton here
        linear_cross_entropy = None
    if linear_cross_entropy is None or type(lm_head) is not nn.Linear:
        # all logits at once, same loss (a wrapped head, LoRA or quantised, is called as it is)
        return F.cross_entropy(lm_head(h).flatten(0, 1).float(), targets.flatten(),
                               ignore_index=packed.IGNORE_INDEX, reduction=reduction)
    return linear_cross_entropy(h, lm_head.weight, targets, ignore_index=packed.IGNORE_INDEX,
                                reduction=reduction)


def _packed_document_ids(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Document ids ``(B|1, T)`` of packed rows, or None when every row is one document.
    Eagerly this costs one host sync (``bool``), which keeps unpacked rows on SDPA's causal fast
    path; under ``torch.compile`` the ids are always returned (no sync, no graph break; the mask
    is then dense but the same wherever a row holds one document)."""
    if torch.compiler.is_compiling():
        return packed.document_ids(position_ids)
    return packed.document_ids(position_ids) if bool(packed.is_packed(position_ids)) else None


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor,
                    ignore_index: int = packed.IGNORE_INDEX):
    """Mean cross-entropy of predicting ``labels[:, t+1]`` from ``logits[:, t]`` (fp32).
    ``labels (B, T)`` is usually ``input_ids`` with ignored positions set to ``ignore_index``."""
    # Shift the labels, not the logits: slicing (B, T, V) logits would copy them (and their
    # gradient); the last position gets no target.
    targets = F.pad(labels[:, 1:], (0, 1), value=ignore_index)  # (B, T)
    return F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index
    )
