"""What :func:`~qcoder_lib.train.train` checks and arranges around a run: the data's ids
against the model's vocabulary, a writable ``out_dir`` with room for a checkpoint, SIGTERM/SIGINT
turned into a flag the loop checks after each step, and activation checkpointing."""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import threading
from pathlib import Path

from qcoder_lib.io import TMP_MARK
from qcoder_lib.train.rows import Rows


def check_vocab(rows: Rows, model, what: str = "training data") -> None:
    """Raise ``ValueError`` when the data holds an id the model's embedding has no row for."""
    vocab = model.get_input_embeddings().num_embeddings if hasattr(
        model, "get_input_embeddings") else model.config.vocab_size
    top = rows.max_token_id()
    if top >= vocab:
        raise ValueError(f"{what} ({rows.source}) holds token id {top} but the model's vocabulary "
                         f"has {vocab} rows (ids 0..{vocab - 1}); build the data with the model's "
                         "tokenizer or raise QwenConfig.vocab_size")


def check_out_dir(out: Path, need_bytes: int) -> None:
    """Raise ``OSError`` naming ``out`` when it cannot be created or written, or when its disk
    has less free space than one checkpoint needs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe{TMP_MARK}{id(out)}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        raise OSError(e.errno, f"out_dir {out} is not writable ({e.strerror or e})") from e
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise OSError(28, f"out_dir {out}: {free / 1e6:.1f} MB free on its disk, a checkpoint "
                          f"needs about {need_bytes / 1e6:.1f} MB; free space or choose another")


@contextlib.contextmanager
def _stop_on_signals(flag: dict):
    """SIGTERM/SIGINT set ``flag["signal"]`` instead of killing the run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name

    for sig in (signal.SIGTERM, signal.SIGINT):
        old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def _activation_checkpointing(model, enabled: bool):
    """Recompute each decoder layer in the backward pass instead of storing its activations."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not enabled or layers is None:
        yield
        return
    from torch.utils.checkpoint import checkpoint

    for layer in layers:
        layer.forward = functools.partial(checkpoint, type(layer).forward.__get__(layer),
                                          use_reentrant=False)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
