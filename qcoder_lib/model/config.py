"""The shape of a Qwen2 decoder: :class:`QwenConfig`, the Qwen2.5-Coder sizes and the course
presets, and counting parameters and FLOPs from the shapes alone (nothing is allocated).

The configuration does not import the tokenizer: a course preset takes its vocabulary size as an
argument (``QwenConfig.preset("smoke", vocab_size=...)``, or ``tokenizer=`` to use ``len(tok)``);
without either, :func:`course_vocab_rows` asks :mod:`qcoder_lib.tokenizer` for that profile's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

from qcoder_lib.tokenizer.special import ENDOFTEXT_ID

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
    # RoPE scaling (issue 15), transformers' spelling: {"rope_type": "yarn", "factor": 4.0,
    # "original_max_position_embeddings": 32768}; None = plain RoPE. See model/rope_scaling.py.
    rope_scaling: dict | None = None
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
        if self.rope_scaling is not None:  # issue 15: one spelling (rope_type, float factor)
            from qcoder_lib.model.rope_scaling import normalize_rope_scaling

            self.rope_scaling = normalize_rope_scaling(
                self.rope_scaling, self.max_position_embeddings, field="QwenConfig.rope_scaling"
            )
        if self.attn_implementation not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attn_implementation={self.attn_implementation!r} is not one of "
                f"{', '.join(ATTENTION_BACKENDS)}"
            )

    @classmethod
    def preset(cls, name: str, vocab_size: int | None = None, tokenizer=None, **overrides):
        """A Qwen2.5-Coder size (``"0.5B"`` ... ``"32B"``) or a course profile (``"smoke"``,
        ``"cpu"``, ``"gpu"``). A course preset's vocabulary is ``vocab_size`` if given, else
        ``len(tokenizer)`` rounded up to a multiple of 128, else :func:`course_vocab_rows`.
        Other keyword arguments override fields (``attn_implementation="eager"``)."""
        if name in QWEN25_CODER_SIZES:
            fields = dict(QWEN25_CODER_SIZES[name])
        elif name in COURSE_PRESETS:
            fields = dict(COURSE_PRESETS[name])
            if vocab_size is None and tokenizer is not None:
                vocab_size = _pad_vocab(len(tokenizer))
            elif vocab_size is None:
                vocab_size = course_vocab_rows(name)
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


def course_vocab_rows(profile: str) -> int:
    """Embedding rows of the course model for ``profile``: the course tokenizer's size
    (:func:`qcoder_lib.tokenizer.course_vocab_size`: learned vocabulary + special tokens, from its
    constants; nothing is trained) rounded up to a multiple of 128, as Qwen pads its embedding
    (151,665 tokens in 151,936 rows)."""
    from qcoder_lib.tokenizer import course_vocab_size  # lazy: only course presets need it

    return _pad_vocab(course_vocab_size(profile))


def _pad_vocab(n_tokens: int) -> int:
    """``n_tokens`` rounded up to a multiple of 128."""
    return -(-n_tokens // 128) * 128


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
# Their vocab (8192) is replaced by the course tokenizer's size in QwenConfig.preset. cpu: the
# model that learns most in notebook 06's five minutes on 2 cores (benchmarks/train_sweep.py).
_COURSE_SIZES = {
    "smoke": (64, 2, 4, 2, 176, True, 8192),
    "cpu": (128, 3, 4, 2, 384, True, 8192),
    "gpu": (768, 12, 12, 2, 2048, True, 8192),
}  # fmt: skip
_COLUMNS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "tie_word_embeddings", "vocab_size")  # fmt: skip
QWEN25_CODER_SIZES: dict[str, dict] = {
    name: dict(zip(_COLUMNS, row), max_position_embeddings=32768, rope_theta=1_000_000.0,
               rms_norm_eps=1e-6, bos_token_id=ENDOFTEXT_ID, eos_token_id=ENDOFTEXT_ID)
    for name, row in _SIZES.items()
}  # fmt: skip
COURSE_PRESETS: dict[str, dict] = {
    name: dict(zip(_COLUMNS, row), max_position_embeddings=ctx, rope_theta=10_000.0,
               rms_norm_eps=1e-6)
    for (name, row), ctx in zip(_COURSE_SIZES.items(), (256, 1024, 4096))
}  # fmt: skip


