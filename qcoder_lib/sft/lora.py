"""LoRA and QLoRA with peft (and bitsandbytes for 4-bit NF4), merging and HF-format saving.

Qwen's SFT script offers LoRA with r=8, alpha=32, dropout 0.1 (:class:`LoraSettings`' default)
on the attention and MLP projections. QLoRA keeps the frozen base weights in 4-bit NF4
(bitsandbytes ``Linear4bit``) and trains the LoRA matrices in full precision. With the installed
bitsandbytes (0.50) 4-bit layers run on CPU too (slowly: a pure-PyTorch fallback, which prints a
line about a missing ``kernels`` package); older versions need CUDA.

The course's :class:`~qcoder_lib.model.QwenForCausalLM` goes through
:func:`qcoder_lib.model.hf_interop.to_hf_model` (same weights, transformers' ``Qwen2ForCausalLM``)
because peft and bitsandbytes wrap transformers models; any Qwen2-family model loads directly.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from qcoder_lib.extras import require

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """A LoRA adapter (Qwen2.5-Coder's script defaults)."""

    r: int = 8  # rank of the update B @ A
    alpha: int = 32  # scale: the update is multiplied by alpha / r
    dropout: float = 0.1  # dropout on the adapter's input
    target_modules: tuple = PROJECTIONS  # which linear layers get an adapter

    def peft_config(self):
        """The matching ``peft.LoraConfig`` (causal LM task)."""
        peft = require("peft", "LoRA")
        return peft.LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                               target_modules=list(self.target_modules), task_type="CAUSAL_LM")


def as_hf_model(model):
    """A transformers model for ``model``: the course model is converted (weights copied),
    a transformers model is returned as it is."""
    from qcoder_lib.sft.sampling import is_course_model

    if is_course_model(model):
        from qcoder_lib.model.hf_interop import to_hf_model

        return to_hf_model(model, attn_implementation="sdpa")
    return model


def add_lora(model, settings: LoraSettings | None = None):
    """``model`` (course or transformers) with LoRA adapters: a ``peft.PeftModel`` whose only
    trainable parameters are the adapters'."""
    peft = require("peft", "LoRA")
    return peft.get_peft_model(as_hf_model(model), (settings or LoraSettings()).peft_config())


def load_4bit(model_or_path, compute_dtype: torch.dtype = torch.float32):
    """A transformers model with every linear layer but ``lm_head`` in 4-bit NF4 (bitsandbytes),
    from a folder / hub name or from a model in memory (saved to a temporary folder first)."""
    require("bitsandbytes", "QLoRA")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_use_double_quant=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(model_or_path, (str, Path)):
        return AutoModelForCausalLM.from_pretrained(model_or_path, quantization_config=qcfg,
                                                    device_map=device)
    with tempfile.TemporaryDirectory(prefix="qcoder-qlora-") as tmp:
        as_hf_model(model_or_path).save_pretrained(tmp)
        return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=qcfg,
                                                    device_map=device)


def add_qlora(model_or_path, settings: LoraSettings | None = None):
    """QLoRA: the base in 4-bit NF4 (:func:`load_4bit`), LoRA adapters trained on top."""
    peft = require("peft", "QLoRA")
    base = load_4bit(model_or_path)
    base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    return peft.get_peft_model(base, (settings or LoraSettings()).peft_config())


def merge_lora(peft_model):
    """The base model with the adapters folded into its weights (``W + alpha/r * B @ A``): a
    plain transformers model, no peft layer left."""
    return peft_model.merge_and_unload()


def save_hf(model, folder, tokenizer=None) -> Path:
    """Save a model (the course's, or a transformers one, merged or plain) and optionally its
    tokenizer as an HF-format folder, atomically (:func:`qcoder_lib.io.atomic_dir`)."""
    from qcoder_lib.io import atomic_dir

    with atomic_dir(folder) as tmp:
        as_hf_model(model).save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(folder)


def parameter_counts(model) -> tuple[int, int]:
    """``(trainable, total)`` parameters; a 4-bit tensor counts its real number of weights."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if getattr(p, "quant_state", None) is not None:  # bitsandbytes packs 2 weights per byte
            n = int(torch.Size(p.quant_state.shape).numel())
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def weight_bytes(model) -> int:
    """Bytes held by the model's parameters and buffers as stored (4-bit weights count their
    packed bytes plus quantisation constants)."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    n += sum(b.numel() * b.element_size() for b in model.buffers())
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is not None and getattr(qs, "absmax", None) is not None:
            n += qs.absmax.numel() * qs.absmax.element_size()
    return n
