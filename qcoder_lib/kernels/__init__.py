"""Triton kernels of a Qwen2 layer: rotary position embedding and FlashAttention-2-style attention.

Importing this package first calls :func:`qcoder_lib.runtime.ensure_triton_backend`, which sets
``TRITON_INTERPRET=1`` on a machine without a CUDA GPU *before* Triton is imported, so the same
kernels run (slowly, on NumPy) under Triton's CPU interpreter. Under the interpreter the kernels
compute in fp32 internally (the interpreter gets bf16 arithmetic wrong) and use one fixed block
configuration (it cannot autotune); on a GPU they autotune over a few configurations.

Public API (each Triton function has a PyTorch reference beside it, used by the tests):

- :func:`apply_rope` / :func:`apply_rope_reference`: RoPE, half-split ``rotate_half`` convention.
- :func:`rope_cos_sin`: the ``(P, D)`` cos/sin tables for positions ``0..P-1``.
- :func:`flash_attention`: causal (or not) attention with GQA and document masking for packed
  sequences; its reference is the model's :func:`qcoder_lib.model.eager_attention`.

The model's ``attn_implementation="triton"`` runs both: :func:`apply_rope` on q and k, then
:func:`flash_attention`.
"""

from qcoder_lib.extras import require
from qcoder_lib.runtime import ensure_triton_backend

TRITON_MODE = ensure_triton_backend()  # "gpu" or "interpreter"; must run before `import triton`
INTERPRETER = TRITON_MODE == "interpreter"
require("triton", "the course's Triton kernels")  # names the `kernels` extra when missing

from qcoder_lib.kernels.attention import attention_flops, flash_attention
from qcoder_lib.kernels.cross_entropy import linear_cross_entropy
from qcoder_lib.kernels.rope import apply_rope, apply_rope_reference, rope_cos_sin

__all__ = [
    "INTERPRETER",
    "TRITON_MODE",
    "apply_rope",
    "apply_rope_reference",
    "attention_flops",
    "flash_attention",
    "linear_cross_entropy",
    "rope_cos_sin",
]
