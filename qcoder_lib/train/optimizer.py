"""The optimizer of pretraining: AdamW with weight decay on the weight matrices only."""

from __future__ import annotations

import torch

from qcoder_lib.train.config import TrainConfig, lr_at


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the weight matrices of linear layers only.

    Not decayed: RMSNorm gains (they are scales around 1; decay would pull them toward 0 and
    shrink the signal, not regularise), biases (offsets with few parameters that cannot
    overfit), and the embedding (each row is updated only when its token occurs, but decay would
    shrink every row at every step, so rare tokens would fade; a tied ``lm_head`` is the same
    tensor). This is the GPT-2/nanoGPT convention; the Qwen report does not state its choice.
    """
    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # de-duplicated: a tied lm_head appears once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embed_ids else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, with the config's betas, eps and weight decay."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps
    )
