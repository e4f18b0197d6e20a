"""RoPE scaling (issue 15) against transformers: inverse frequencies and attention factor from its
``ROPE_INIT_FUNCTIONS``, the model's logits against ``Qwen2ForCausalLM`` with the same scaling
(fp32, 1e-5), and the same after export and reload."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from qcoder_lib.model import QwenConfig, QwenForCausalLM
from qcoder_lib.model.hf_interop import from_hf, from_hf_config, to_hf, to_hf_config
from qcoder_lib.model.rope import rope_inv_freq
from qcoder_lib.model.rope_scaling import (
    ScaledRotaryEmbedding,
    linear_inv_freq,
    normalize_rope_scaling,
    ntk_inv_freq,
    ntk_theta,
    rotations_in,
    scaled_inv_freq,
    yarn_attention_factor,
    yarn_correction_range,
    yarn_inv_freq,
    yarn_ramp,
)

TOL = 1e-5  # fp32 logits, as the issue asks
# (head_dim via hidden/heads, theta, factor, original length, max_position_embeddings)
YARN_CASES = [
    (64, 14, 1_000_000.0, 4.0, 32768, 131072),  # Qwen2.5-Coder 0.5B, its published scaling
    (64, 14, 1_000_000.0, 4.0, 32768, 32768),  # factor NOT recomputed from max_pos (#38224)
    (64, 4, 10_000.0, 4.0, 256, 1024),  # the smoke course model, 4x its training length
    (128, 4, 10_000.0, 2.0, 512, 1024),
    (96, 3, 500_000.0, 8.0, 4096, 32768),
    (48, 2, 10_000.0, 1.5, 100, 150),  # a fractional correction range
]


def _hf_config(hidden, heads, theta, rope_type="default", max_pos=1024, **scaling):
    return Qwen2Config(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=1,
                       max_position_embeddings=max_pos,
                       rope_parameters={"rope_type": rope_type, "rope_theta": theta, **scaling})


@pytest.mark.parametrize("hidden,heads,theta,factor,original,max_pos", YARN_CASES)
def test_yarn_matches_transformers(hidden, heads, theta, factor, original, max_pos):
    hf = _hf_config(hidden, heads, theta, "yarn", max_pos, factor=factor,
                    original_max_position_embeddings=original)
    ref_inv, ref_att = ROPE_INIT_FUNCTIONS["yarn"](hf)
    scaling = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original}
    inv, att = scaled_inv_freq(hidden // heads, theta, scaling)
    torch.testing.assert_close(inv, ref_inv, rtol=0, atol=0)  # same operations, same bits
    assert att == pytest.approx(ref_att, abs=1e-12)
    assert att == pytest.approx(0.1 * math.log(factor) + 1)  # the report's attention factor
    # and the one-piece functions agree with the dispatcher
    assert torch.equal(yarn_inv_freq(hidden // heads, theta, factor, original), inv)
    assert yarn_attention_factor(factor) == att


def test_yarn_keeps_fast_pairs_and_interpolates_slow_ones():
    D, theta, L, factor = 64, 10_000.0, 256, 4.0
    plain = rope_inv_freq(D, theta)
    inv = yarn_inv_freq(D, theta, factor, L)
    low, high = yarn_correction_range(D, theta, L)
    turns = rotations_in(plain, L)
    assert 0 <= low < high <= D - 1
    # pairs below `low` turn more than beta_fast=32 times in L tokens: kept exactly
    assert (turns[: int(low)] > 32).all() and torch.equal(inv[: int(low)], plain[: int(low)])
    # pairs above `high` turn less than once: divided by the factor
    tail = slice(int(high), None)
    assert (turns[tail] < 1).all()
    torch.testing.assert_close(inv[tail], plain[tail] / factor, rtol=1e-6, atol=0)
    ramp = yarn_ramp(low, high, D // 2)
    assert ramp[0] == 0 and ramp[-1] == 1 and (ramp.diff() >= 0).all()


@pytest.mark.parametrize("factor", [2.0, 4.0, 8.0])
def test_linear_and_ntk_match_transformers(factor):
    hidden, heads, theta = 64, 4, 10_000.0
    hf = _hf_config(hidden, heads, theta, "linear", factor=factor)
    ref, att = ROPE_INIT_FUNCTIONS["linear"](hf)
    inv, ours_att = scaled_inv_freq(16, theta, {"type": "linear", "factor": factor})
    torch.testing.assert_close(inv, ref, rtol=0, atol=0)
    assert ours_att == att == 1.0
    assert torch.equal(linear_inv_freq(16, theta, factor), inv)
    # transformers' "dynamic" NTK at seq_len s uses factor' = factor * s / L - (factor - 1):
    # the static NTK-aware rule with factor' must give the same frequencies
    L, s = 1024, 3000
    hf = _hf_config(hidden, heads, theta, "dynamic", L, factor=factor)
    ref, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf, seq_len=s)
    alpha = factor * s / L - (factor - 1)
    torch.testing.assert_close(ntk_inv_freq(16, theta, alpha), ref, rtol=1e-6, atol=0)
    inv, _ = scaled_inv_freq(16, theta, {"rope_type": "ntk", "factor": alpha})
    assert inv[0] == 1.0  # the fastest pair is kept
    torch.testing.assert_close(inv[-1], rope_inv_freq(16, theta)[-1] / alpha,  # slowest: / factor
                               rtol=1e-5, atol=0)
    assert ntk_theta(16, theta, 1.0) == theta


def test_normalize_spellings_and_errors():
    legacy = {"type": "yarn", "factor": 4, "original_max_position_embeddings": 32768}
    assert normalize_rope_scaling(legacy) == {
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert normalize_rope_scaling({"rope_type": "default", "rope_theta": 1e6}) is None
    assert normalize_rope_scaling(None) is None
    # transformers fills the original length from max_position_embeddings when it is absent
    assert normalize_rope_scaling({"rope_type": "yarn", "factor": 2.0}, 512)[
        "original_max_position_embeddings"] == 512
    with pytest.raises(ValueError, match="dynamic"):
        normalize_rope_scaling({"rope_type": "dynamic", "factor": 2.0})
    with pytest.raises(ValueError, match="low_freq_factor"):
        normalize_rope_scaling({"rope_type": "yarn", "factor": 2.0, "low_freq_factor": 1.0})
    with pytest.raises(ValueError, match="factor"):
        normalize_rope_scaling({"rope_type": "linear", "factor": 0})
    with pytest.raises(ValueError, match="QwenConfig.rope_scaling"):
        QwenConfig(rope_scaling={"rope_type": "longrope", "factor": 2.0})


def _yarn_pair(seed=0, factor=4.0, original=16):
    """Our model and transformers' with the same weights and the same YaRN scaling."""
    cfg = QwenConfig(vocab_size=70, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                     rope_theta=10_000.0, attn_implementation="eager",
                     rope_scaling={"rope_type": "yarn", "factor": factor,
                                   "original_max_position_embeddings": original})
    torch.manual_seed(seed)
    ours = QwenForCausalLM(cfg)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = Qwen2ForCausalLM._from_config(to_hf_config(cfg), attn_implementation="eager")
    from qcoder_lib.model.hf_interop import weight_name_map

    params = dict(ours.named_parameters(remove_duplicate=False))
    hf.load_state_dict({h: params[o] for o, h in weight_name_map(cfg).items()}, strict=False)
    if cfg.tie_word_embeddings:
        hf.tie_weights()
    return ours.eval(), hf.eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_model_logits_with_yarn_match_transformers(attn):
    ours, hf = _yarn_pair()
    ours.config.attn_implementation = attn
    assert hf.model.rotary_emb.attention_scaling == pytest.approx(0.1 * math.log(4) + 1)
    torch.testing.assert_close(ours.model.rotary_emb.inv_freq, hf.model.rotary_emb.inv_freq,
                               rtol=0, atol=0)
    ids = torch.randint(0, 70, (2, 60))  # 60 tokens: almost 4x the original 16
    with torch.no_grad():
        err = (ours(ids) - hf(ids).logits).abs().max().item()
        plain = QwenForCausalLM(ours.config.with_(rope_scaling=None)).eval()
        plain.load_state_dict(ours.state_dict())
        moved = (plain(ids) - ours(ids)).abs().max().item()
    assert err <= TOL, f"YaRN logits vs transformers: max |diff| {err:.2e}"
    assert moved > 1e-3, "the scaling changed nothing: the test would not see a wrong YaRN"


def test_yarn_export_and_reload(tmp_path):
    ours, _ = _yarn_pair(seed=1, factor=2.0, original=32)
    to_hf(ours, tmp_path / "ckpt")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    assert hf.config.rope_parameters["rope_type"] == "yarn"
    assert hf.config.rope_parameters["factor"] == 2.0
    back = from_hf(tmp_path / "ckpt", attn_implementation="eager")
    assert back.config.rope_scaling == ours.config.rope_scaling
    ids = torch.randint(0, 70, (1, 64))
    with torch.no_grad():
        ref = ours(ids)
        err_hf = (hf(ids).logits - ref).abs().max().item()
        err_back = (back(ids) - ref).abs().max().item()
    assert err_hf <= TOL and err_back <= TOL, (err_hf, err_back)


def test_released_qwen_config_spelling_loads():
    """Qwen2.5-Coder's config.json spells YaRN the old way, in ``rope_scaling`` with ``type``."""
    cfg = to_hf_config(QwenConfig.preset("0.5B")).to_dict()
    cfg.pop("rope_parameters")
    cfg.update(rope_theta=1e6, rope_scaling={"type": "yarn", "factor": 4.0,
                                             "original_max_position_embeddings": 32768})
    ours = from_hf_config(cfg)
    assert ours.rope_theta == 1e6 and ours.rope_scaling["rope_type"] == "yarn"
    hf = Qwen2Config(**cfg)  # and transformers reads the same dict to the same numbers
    ref, att = ROPE_INIT_FUNCTIONS["yarn"](hf)
    inv, ours_att = scaled_inv_freq(ours.head_dim, ours.rope_theta, ours.rope_scaling)
    assert torch.equal(inv, ref) and ours_att == att


def test_ntk_exports_as_plain_rope_with_the_ntk_base():
    cfg = QwenConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                     rope_theta=10_000.0, rope_scaling={"rope_type": "ntk", "factor": 4.0})
    back = from_hf_config(to_hf_config(cfg))
    assert back.rope_scaling is None
    ours, _ = scaled_inv_freq(8, cfg.rope_theta, cfg.rope_scaling)
    torch.testing.assert_close(rope_inv_freq(8, back.rope_theta), ours, rtol=1e-6, atol=0)


def test_scaled_rotary_embedding_without_scaling_is_plain_rope():
    from qcoder_lib.model import RotaryEmbedding

    pos = torch.arange(50)[None]
    plain = RotaryEmbedding(16, 10_000.0)(pos, torch.float32)
    same = ScaledRotaryEmbedding(16, 10_000.0, None)(pos, torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(plain, same))
    cos, _sin = ScaledRotaryEmbedding(16, 10_000.0, {"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 16})(
        pos, torch.float32)
    assert cos[0, 0, 0].item() == pytest.approx(0.1 * math.log(4) + 1)  # cos(0) * factor


def test_triton_backend_applies_yarn_like_eager():
    """The fused RoPE kernel receives the scaled cos/sin: same logits as the eager backend."""
    cfg = QwenConfig(vocab_size=70, hidden_size=64, intermediate_size=40, num_hidden_layers=1,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                     rope_theta=10_000.0, attn_implementation="eager",
                     rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                   "original_max_position_embeddings": 16})
    torch.manual_seed(0)
    eager = QwenForCausalLM(cfg).eval()
    kernels = QwenForCausalLM(cfg.with_(attn_implementation="triton")).eval()
    kernels.load_state_dict(eager.state_dict())
    ids = torch.randint(0, 70, (1, 48))
    with torch.no_grad():
        err = (eager(ids) - kernels(ids)).abs().max().item()
    assert err <= TOL, f"triton vs eager with YaRN: {err:.2e}"
