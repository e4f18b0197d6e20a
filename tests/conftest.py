"""Shared test set-up.

Triton must know whether to use its CPU interpreter before anything imports it, and
transformers imports triton on import; so the backend is chosen here, first.

Then the tiny Qwen2 builders the model tests share (factories, so that a test or a module-scoped
fixture picks the shape it needs):

- ``hf_tiny_config(**fields)``: a transformers ``Qwen2Config`` of a few thousand parameters;
- ``hf_tiny_model(config=None, seed=0, std=0.08, **fields)``: a ``Qwen2ForCausalLM`` with
  weights drawn large enough (``std``) that every block matters, norms near 1;
- ``tiny_qwen(tied=True, seed=0, **fields)``: this course's ``QwenForCausalLM`` of the same kind.
"""

import pytest
import torch

from qcoder_lib.runtime import ensure_triton_backend

ensure_triton_backend()

_TINY = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}


def _hf_tiny_config(**fields):
    from transformers import Qwen2Config

    theta = fields.pop("rope_theta", 10000.0)
    head_dim = fields.pop("head_dim", None)
    extra = {"head_dim": head_dim} if head_dim else {}
    return Qwen2Config(**{**_TINY, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, **fields},
                       rope_parameters={"rope_type": "default", "rope_theta": float(theta)},
                       **extra)


def _randomise(module, seed=0, std=0.08):
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in n else std * torch.randn_like(p))
    return module


@pytest.fixture(scope="session")
def hf_tiny_config():
    """Factory: ``hf_tiny_config(**fields)`` -> a small transformers ``Qwen2Config``."""
    return _hf_tiny_config


@pytest.fixture(scope="session")
def randomise():
    """Factory: ``randomise(module, seed=0, std=0.08)`` draws every weight (norms near 1)."""
    return _randomise


@pytest.fixture(scope="session")
def hf_tiny_model():
    """Factory: ``hf_tiny_model(config=None, seed=0, std=0.08, attn="eager", **fields)`` -> an
    eval-mode ``Qwen2ForCausalLM`` with random weights."""
    from transformers import Qwen2ForCausalLM

    def make(config=None, seed=0, std=0.08, attn="eager", **fields):
        cfg = config if config is not None else _hf_tiny_config(**fields)
        torch.manual_seed(seed)
        hf = Qwen2ForCausalLM._from_config(cfg, attn_implementation=attn)
        return _randomise(hf, seed, std).eval()

    return make


@pytest.fixture(scope="session")
def tiny_qwen():
    """Factory: ``tiny_qwen(tied=True, seed=0, **fields)`` -> an eval-mode ``QwenForCausalLM``
    (course code) with its init perturbed so that no weight is exactly 0 or 1."""
    from qcoder_lib.model import QwenConfig, QwenForCausalLM

    def make(tied=True, seed=0, **fields):
        cfg = QwenConfig(**{**_TINY, "vocab_size": 70, "intermediate_size": 40,
                            "tie_word_embeddings": tied, "rope_theta": 10000.0, **fields})
        torch.manual_seed(seed)
        model = QwenForCausalLM(cfg)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return model.eval()

    return make
