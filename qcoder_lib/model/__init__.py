"""The Qwen2 decoder behind every Qwen2.5-Coder size, and what moves it in and out.

- :mod:`.qwen`: the modules (RMSNorm, RoPE, attention with GQA, SwiGLU, decoder layers,
  :class:`QwenForCausalLM`) and :class:`QwenConfig` with its presets.
- :mod:`.generation`: KV cache and sampling.
- :mod:`.hf_interop`: checkpoints to and from transformers' ``Qwen2ForCausalLM``.
"""

from qcoder_lib.model.qwen import (
    ATTENTION_BACKENDS,
    COURSE_PRESETS,
    QWEN25_CODER_SIZES,
    Attention,
    DecoderLayer,
    ParamCount,
    QwenBody,
    QwenConfig,
    QwenForCausalLM,
    RMSNorm,
    RMSNormFunction,
    RotaryEmbedding,
    SwiGLU,
    apply_rope,
    build_attention_mask,
    eager_attention,
    next_token_loss,
    packed_document_ids,
    rotate_half,
)

__all__ = [
    "ATTENTION_BACKENDS",
    "COURSE_PRESETS",
    "QWEN25_CODER_SIZES",
    "Attention",
    "DecoderLayer",
    "ParamCount",
    "QwenBody",
    "QwenConfig",
    "QwenForCausalLM",
    "RMSNorm",
    "RMSNormFunction",
    "RotaryEmbedding",
    "SwiGLU",
    "apply_rope",
    "build_attention_mask",
    "eager_attention",
    "next_token_loss",
    "packed_document_ids",
    "rotate_half",
]
