"""Checkpoints both ways between qcoder_lib.model and transformers (tmp folders, no network)."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from qcoder_lib.model import QwenConfig, QwenForCausalLM
from qcoder_lib.model.hf_interop import (
    from_hf,
    from_hf_config,
    load_hf_weights,
    to_hf,
    to_hf_config,
    to_hf_model,
    weight_name_map,
)

TOL = 1e-5


@pytest.mark.parametrize("tied", [True, False])
def test_export_reloads_in_transformers_with_same_logits(tmp_path, tied, tiny_qwen):
    model = tiny_qwen(tied)
    to_hf(model, tmp_path / "ckpt")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    ids = torch.randint(0, 70, (2, 11))
    with torch.no_grad():
        err = (model(ids) - hf(ids).logits).abs().max().item()
    assert err <= TOL, f"exported checkpoint: max |logit diff| {err:.2e}"
    if tied:
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("tied", [True, False])
def test_from_hf_folder_and_object(tmp_path, tied, hf_tiny_model):
    hf = hf_tiny_model(seed=1, vocab_size=50, hidden_size=24, intermediate_size=30,
                       num_attention_heads=3, num_key_value_heads=1, tie_word_embeddings=tied,
                       rope_theta=5000.0)
    hf.save_pretrained(tmp_path / "hf")
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        ref = hf(ids).logits
        for source in (hf, tmp_path / "hf", str(tmp_path / "hf")):
            ours = from_hf(source)
            assert ours.config.rope_theta == 5000.0 and ours.config.tie_word_embeddings == tied
            assert (ours(ids) - ref).abs().max().item() <= TOL


def test_round_trip_config():
    cfg = QwenConfig.preset("7B")
    assert from_hf_config(to_hf_config(cfg)) == cfg
    odd = QwenConfig(hidden_size=30, num_attention_heads=6, num_key_value_heads=2, head_dim=12)
    assert from_hf_config(to_hf_config(odd)).head_dim == 12


def test_missing_tensor_is_named(tmp_path, tiny_qwen):
    model = tiny_qwen(tied=False)
    to_hf(model, tmp_path / "c")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "c" / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    save_file(tensors, tmp_path / "c" / "model.safetensors")
    with pytest.raises(KeyError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
        from_hf(tmp_path / "c")


def test_misshaped_tensor_is_named(tmp_path, tiny_qwen):
    model = tiny_qwen(tied=True)
    to_hf(model, tmp_path / "c")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "c" / "model.safetensors")
    tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(41, 32)
    save_file(tensors, tmp_path / "c" / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.up_proj\.weight.*\(41, 32\)"):
        from_hf(tmp_path / "c")


def test_unexpected_tensor_and_unsupported_config_are_named(tmp_path, tiny_qwen):
    model = tiny_qwen()
    to_hf(model, tmp_path / "c")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "c" / "model.safetensors")
    tensors["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(32)
    save_file(tensors, tmp_path / "c" / "model.safetensors")
    with pytest.raises(KeyError, match=r"o_proj\.bias"):
        from_hf(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["rope_scaling"] = {"type": "dynamic", "factor": 4.0}  # YaRN is read since issue 15
    with pytest.raises(ValueError, match="dynamic"):
        from_hf_config(cfg)
    with pytest.raises(ValueError, match="model_type"):
        from_hf_config({**cfg, "model_type": "llama"})


def test_weight_name_map_is_complete(tiny_qwen):
    for tied in (True, False):
        model = tiny_qwen(tied)
        names = weight_name_map(model.config)
        ours = {n for n, _ in model.named_parameters(remove_duplicate=False)}
        expected = ours - ({"lm_head.weight"} if tied else set())
        assert set(names) == expected
        hf = to_hf_model(model)
        assert set(names.values()) <= {n for n, _ in hf.named_parameters(remove_duplicate=False)}


def test_sharded_checkpoint_and_unknown_source(tmp_path, monkeypatch, hf_tiny_model):
    hf = hf_tiny_model(seed=2)  # vocab 64, hidden 32, untied
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ids = torch.randint(0, 64, (1, 7))
    with torch.no_grad():
        assert (from_hf(tmp_path / "sharded")(ids) - hf(ids).logits).abs().max().item() <= TOL
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        from_hf("no-such-org/no-such-model")


@pytest.mark.parametrize("tied", [True, False])
def test_load_hf_weights_copies_every_tensor_and_names_errors(tied, tiny_qwen):
    """A transformers state dict (with a tied lm_head entry and an old rotary buffer, which are
    skipped) lands in a fresh model tensor by tensor; errors name the tensor and the source."""
    torch.manual_seed(3)
    hf = to_hf_model(tiny_qwen(tied))
    state = dict(hf.state_dict())
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # ignored suffix
    hf_cfg = from_hf_config(hf.config)
    fresh = QwenForCausalLM(hf_cfg)
    assert load_hf_weights(fresh, state, "ckpt") is fresh
    ours = dict(fresh.named_parameters(remove_duplicate=False))
    for name, hf_name in weight_name_map(hf_cfg).items():
        assert torch.equal(ours[name], state[hf_name]), name
    assert (fresh.lm_head.weight is fresh.model.embed_tokens.weight) == tied
    ids = torch.randint(0, 70, (1, 6))
    with torch.no_grad():
        assert (fresh(ids) - hf(ids).logits).abs().max().item() <= TOL
    bad = {k: v for k, v in state.items() if k != "model.norm.weight"}
    with pytest.raises(KeyError, match=r"missing tensor 'model\.norm\.weight' in ckpt"):
        load_hf_weights(QwenForCausalLM(hf_cfg), bad, "ckpt")
    bad = {**state, "model.extra.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"unexpected.*model\.extra\.weight"):
        load_hf_weights(QwenForCausalLM(hf_cfg), bad, "ckpt")
    bad = {**state, "model.norm.weight": torch.ones(31)}
    with pytest.raises(ValueError, match=r"model\.norm\.weight.*\(31,\), expected \(32,\)"):
        load_hf_weights(QwenForCausalLM(hf_cfg), bad)
