"""What a run reports while it trains: tokens/s, MFU, bits per byte, and the progress bar.

- **MFU** (model FLOPs utilisation) = achieved model FLOPs per second / the device's peak:
  ``tokens_per_s * flops_per_token(T) / peak``. The peak is a table of dense bf16 tensor-core
  numbers for common GPUs (vendor data sheets); on a CPU there is no meaningful peak and MFU is
  reported as ``"n/a"``.
- **Bits per byte**: the held-out loss in nats per token depends on the tokenizer; dividing the
  summed loss by ``ln 2`` and by the bytes those tokens stand for gives a number that compares
  across tokenizers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Dense bf16 peak FLOP/s (no sparsity) by substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {
    "H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
    "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12, "RTX 4090": 165e12,
    "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12,
}


def peak_flops(device: torch.device | str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or ``None`` (CPU, MPS, an unknown GPU)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1], or ``None`` when the peak is unknown."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / peak


def format_mfu(value: float | None) -> str:
    """``"41.2%"`` or ``"n/a"``."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def token_byte_lengths(tokenizer, vocab_size: int | None = None) -> np.ndarray:
    """``(V,)`` int64: the UTF-8 bytes each token id stands for (byte-level BPE: one vocabulary
    character per byte); special tokens and ids past the tokenizer count 0 bytes."""
    n = len(tokenizer)
    V = max(vocab_size or n, n)
    out = np.zeros(V, dtype=np.int64)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "get_added_vocab", dict)() or {}
    special |= set(added.values())
    for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(n)))):
        if t is not None and i not in special:
            out[i] = len(t)
    return out


def bits_per_byte(loss_sum_nats: float, n_bytes: int) -> float:
    """Summed loss (nats) over some tokens -> bits per byte of the text they stand for."""
    return loss_sum_nats / math.log(2) / max(n_bytes, 1)


class ProgressBar:
    """A tqdm bar over optimizer steps showing loss, tokens/s, MFU and (tqdm's) ETA; a no-op
    when ``enabled`` is False."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "train"):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step",
                            dynamic_ncols=True, mininterval=1.0,  # at most once a second
                            miniters=max(1, (total - initial) // 50))  # and ~50 redraws a run

    def update(self, loss: float, tokens_per_s: float, mfu_value: float | None,
               eval_loss: float | None = None) -> None:
        """Advance one step and show the numbers."""
        if self.bar is None:
            return
        post = {"loss": f"{loss:.3f}", "tok/s": f"{tokens_per_s:,.0f}", "MFU": format_mfu(mfu_value)}
        if eval_loss is not None:
            post["held-out"] = f"{eval_loss:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
