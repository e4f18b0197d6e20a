"""The Qwen2 decoder behind every Qwen2.5-Coder size, and what moves it in and out.

- :mod:`.config`: :class:`QwenConfig`, the Qwen2.5-Coder sizes and course presets, parameter and
  FLOP counts.
- :mod:`.rope`: RoPE frequencies (the one place they are computed), ``rotate_half``, rotation.
- :mod:`.rope_scaling`: linear, NTK-aware and YaRN scaling of the RoPE frequencies (stage two and
  long context).
- :mod:`.qwen`: the modules (RMSNorm, attention with GQA and three backends, SwiGLU, decoder
  layers, :class:`QwenForCausalLM`) and the loss.
- :mod:`.generation`: KV cache and sampling.
- :mod:`.hf_interop`: checkpoints to and from transformers' ``Qwen2ForCausalLM``.
"""

from qcoder_lib.model.config import (
    ATTENTION_BACKENDS,
    COURSE_PRESETS,
    QWEN25_CODER_SIZES,
    ParamCount,
    QwenConfig,
    course_vocab_rows,
)
from qcoder_lib.model.qwen import (
    Attention,
    DecoderLayer,
    QwenBody,
    QwenForCausalLM,
    RMSNorm,
    RMSNormFunction,
    SwiGLU,
    eager_attention,
    next_token_loss,
)
from qcoder_lib.model.rope import (
    RotaryEmbedding,
    rope_angles,
    rope_inv_freq,
    rope_rotate,
    rotate_half,
)
from qcoder_lib.model.rope_scaling import (
    ScaledRotaryEmbedding,
    normalize_rope_scaling,
    scaled_inv_freq,
    yarn_attention_factor,
    yarn_inv_freq,
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
    "ScaledRotaryEmbedding",
    "SwiGLU",
    "course_vocab_rows",
    "eager_attention",
    "next_token_loss",
    "normalize_rope_scaling",
    "rope_angles",
    "rope_inv_freq",
    "rope_rotate",
    "rotate_half",
    "scaled_inv_freq",
    "yarn_attention_factor",
    "yarn_inv_freq",
]
