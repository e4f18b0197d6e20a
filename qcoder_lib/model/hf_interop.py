"""Checkpoints both ways between :class:`qcoder_lib.model.QwenForCausalLM` and transformers'
``Qwen2ForCausalLM``.

- :func:`from_hf` loads a ``Qwen2ForCausalLM`` object, a local folder written by
  ``save_pretrained`` (safetensors, sharded or not, or ``pytorch_model.bin``), or a hub name
  (downloaded when online) into this course's model.
- :func:`to_hf` writes a folder that ``AutoModelForCausalLM.from_pretrained`` loads.

The weight names are listed explicitly by :func:`weight_name_map` (they happen to be identical
on both sides, by design). A missing, unexpected or mis-shaped tensor raises an error naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from qcoder_lib.model import QwenConfig, QwenForCausalLM

# Per-block tensors, in the order they are used.
LAYER_TENSORS = (
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.q_proj.bias",
    "self_attn.k_proj.weight",
    "self_attn.k_proj.bias",
    "self_attn.v_proj.weight",
    "self_attn.v_proj.bias",
    "self_attn.o_proj.weight",  # no bias in Qwen2
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)
# Buffers some older checkpoints carry; they are recomputed, so skipped on load.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def weight_name_map(cfg: QwenConfig) -> dict[str, str]:
    """``{our parameter name: transformers checkpoint name}`` for every tensor of the model.
    A tied ``lm_head`` is absent: it is ``embed_tokens`` under another name."""
    names = {"model.embed_tokens.weight": "model.embed_tokens.weight"}
    for i in range(cfg.num_hidden_layers):
        for t in LAYER_TENSORS:
            names[f"model.layers.{i}.{t}"] = f"model.layers.{i}.{t}"
    names["model.norm.weight"] = "model.norm.weight"
    if not cfg.tie_word_embeddings:
        names["lm_head.weight"] = "lm_head.weight"
    return names


def to_hf_config(cfg: QwenConfig, dtype: torch.dtype | None = None):
    """The transformers ``Qwen2Config`` describing the same model."""
    from transformers import Qwen2Config

    extra = {}
    if cfg.head_dim != cfg.hidden_size // cfg.num_attention_heads:
        extra["head_dim"] = cfg.head_dim
    hf = Qwen2Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        hidden_act="silu",
        max_position_embeddings=cfg.max_position_embeddings,
        initializer_range=cfg.initializer_range,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters=hf_rope_parameters(cfg),  # issue 15: base and scaling (YaRN ...)
        use_sliding_window=False,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        **extra,
    )
    hf.architectures = ["Qwen2ForCausalLM"]
    if dtype is not None:
        hf.dtype = dtype
    return hf


def hf_rope_parameters(cfg: QwenConfig) -> dict:
    """transformers 5.x's ``rope_parameters`` for ``cfg``: ``rope_type``, ``rope_theta`` and the
    scaling's keys (issue 15). The course's static ``"ntk"`` has no transformers type: it is
    written as plain RoPE with the NTK base, which gives the same frequencies."""
    scaling = dict(cfg.rope_scaling or {})
    if scaling.get("rope_type") == "ntk":
        from qcoder_lib.model.rope_scaling import ntk_theta

        theta = ntk_theta(cfg.head_dim, cfg.rope_theta, scaling["factor"])
        return {"rope_type": "default", "rope_theta": float(theta)}
    return {"rope_type": "default", **scaling, "rope_theta": float(cfg.rope_theta)}


def from_hf_config(hf_config, attn_implementation: str = "sdpa") -> QwenConfig:
    """Our :class:`QwenConfig` from a transformers config (object or dict). RoPE scaling
    (linear, YaRN) is read from ``rope_parameters`` or the older ``rope_scaling``. Features this
    model does not implement (sliding window, dynamic or other RoPE types, another architecture)
    raise ``ValueError`` naming the field."""
    get = (
        hf_config.get if isinstance(hf_config, dict) else lambda k, d=None: getattr(hf_config, k, d)
    )
    model_type = get("model_type", "qwen2")
    if model_type != "qwen2":
        raise ValueError(f"model_type={model_type!r}: only 'qwen2' checkpoints are supported")
    if get("use_sliding_window", False):
        raise ValueError("use_sliding_window=True is not supported by qcoder_lib.model")
    if get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act={get('hidden_act')!r}: only 'silu' is supported")
    rope = dict(get("rope_parameters", None) or {})
    legacy = dict(get("rope_scaling", None) or {})  # older config.json files (Qwen2.5-Coder's)
    # issue 15: RoPE scaling read from whichever field holds a non-default type
    rope_scaling, field = None, "rope_parameters"
    for field, params in (("rope_parameters", rope), ("rope_scaling", legacy)):
        if (params.get("rope_type") or params.get("type") or "default") != "default":
            rope_scaling = params
            break
    from qcoder_lib.model.rope_scaling import normalize_rope_scaling

    max_pos = get("max_position_embeddings", 32768)
    rope_scaling = normalize_rope_scaling(rope_scaling, max_pos, field=field)
    theta = rope.get("rope_theta", get("rope_theta", 10000.0))
    heads = get("num_attention_heads")
    eos = get("eos_token_id", None)
    return QwenConfig(
        vocab_size=get("vocab_size"),
        hidden_size=get("hidden_size"),
        intermediate_size=get("intermediate_size"),
        num_hidden_layers=get("num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=get("num_key_value_heads", None) or heads,
        head_dim=get("head_dim", None) or get("hidden_size") // heads,
        max_position_embeddings=max_pos,
        rope_theta=float(theta),
        rope_scaling=rope_scaling,
        rms_norm_eps=get("rms_norm_eps", 1e-6),
        tie_word_embeddings=bool(get("tie_word_embeddings", False)),
        initializer_range=get("initializer_range", 0.02),
        bos_token_id=get("bos_token_id", None),
        eos_token_id=eos[0] if isinstance(eos, (list, tuple)) else eos,
        attn_implementation=attn_implementation,
    )


def load_hf_weights(model: QwenForCausalLM, tensors: dict[str, torch.Tensor], source: str = ""):
    """Copy checkpoint ``tensors`` (HF names) into ``model`` through :func:`weight_name_map`.
    Raises ``KeyError`` for a missing or unexpected tensor and ``ValueError`` for a wrong shape,
    naming the tensor (and ``source``)."""
    where = f" in {source}" if source else ""
    mapping = weight_name_map(model.config)
    params = dict(model.named_parameters(remove_duplicate=False))
    expected = set(mapping.values())
    tied_head = model.config.tie_word_embeddings and "lm_head.weight" in tensors
    unexpected = [
        n
        for n in tensors
        if n not in expected
        and not n.endswith(IGNORED_SUFFIXES)
        and not (tied_head and n == "lm_head.weight")
    ]
    if unexpected:
        raise KeyError(f"unexpected tensor(s){where}: {', '.join(sorted(unexpected)[:5])}")
    with torch.no_grad():
        for ours, theirs in mapping.items():
            if theirs not in tensors:
                raise KeyError(f"missing tensor {theirs!r}{where}")
            src, dst = tensors[theirs], params[ours]
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(
                    f"tensor {theirs!r}{where} has shape {tuple(src.shape)}, "
                    f"expected {tuple(dst.shape)}"
                )
            dst.copy_(src.to(dst.dtype))
    return model


def _read_folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``save_pretrained`` folder (safetensors, sharded or not, or .bin)."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    elif (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(
            f"no model.safetensors(.index.json) or pytorch_model.bin in {folder.name}"
        )
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(folder / f)))
    return tensors


def from_hf(
    source, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa", device=None
) -> QwenForCausalLM:
    """Load a Qwen2 checkpoint into :class:`QwenForCausalLM`. ``source`` is a transformers
    ``Qwen2ForCausalLM``, a local folder, or a hub name such as ``"Qwen/Qwen2.5-Coder-0.5B"``
    (downloaded when online). Weights are converted to ``dtype``."""
    if isinstance(source, torch.nn.Module):
        cfg = from_hf_config(source.config, attn_implementation)
        tensors, name = source.state_dict(), type(source).__name__
    else:
        folder = Path(source)
        if not folder.is_dir():
            if os.path.exists(source):
                raise ValueError(f"{folder.name} is a file; pass the checkpoint's folder")
            from huggingface_hub import snapshot_download  # hub name: needs network

            try:
                folder = Path(
                    snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors"])
                )
            except Exception as e:  # offline, unknown repo, ...: say both things we tried
                raise FileNotFoundError(
                    f"{source!r} is not a local folder, and downloading it from the hub failed "
                    f"({type(e).__name__})"
                ) from e
        cfg = from_hf_config(json.loads((folder / "config.json").read_text()), attn_implementation)
        tensors, name = _read_folder_tensors(folder), folder.name
    model = QwenForCausalLM(cfg).to(dtype=dtype, device=device)
    return load_hf_weights(model, tensors, name).eval()


def to_hf(model: QwenForCausalLM, folder) -> Path:
    """Write ``model`` as a transformers checkpoint folder (``config.json`` +
    ``model.safetensors``; a tied ``lm_head`` is not stored, as transformers does)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = dict(model.named_parameters(remove_duplicate=False))
    tensors = {
        hf: params[ours].detach().cpu().contiguous()
        for ours, hf in weight_name_map(model.config).items()
    }
    dtype = model.model.embed_tokens.weight.dtype
    to_hf_config(model.config, dtype).save_pretrained(folder)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def to_hf_model(model: QwenForCausalLM, attn_implementation: str = "sdpa"):
    """An in-memory transformers ``Qwen2ForCausalLM`` with the same weights (copied)."""
    from transformers import Qwen2ForCausalLM

    dtype = model.model.embed_tokens.weight.dtype
    hf = Qwen2ForCausalLM._from_config(
        to_hf_config(model.config), attn_implementation=attn_implementation
    )
    hf = hf.to(dtype=dtype, device=model.model.embed_tokens.weight.device)
    params = dict(model.named_parameters(remove_duplicate=False))
    state = {hf_name: params[ours] for ours, hf_name in weight_name_map(model.config).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [
        m for m in missing if not (model.config.tie_word_embeddings and m == "lm_head.weight")
    ]
    if missing or unexpected:
        raise KeyError(f"transformers model: missing {missing}, unexpected {unexpected}")
    return hf.eval()
