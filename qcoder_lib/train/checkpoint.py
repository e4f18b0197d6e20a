"""Checkpoints of a pretraining run: save, load, list, rotate, and the final HF-format export.

``checkpoint-<step>/`` holds the model as an HF folder (``config.json`` + ``model.safetensors``,
loadable on its own), ``optimizer.pt``, ``rng_state.pt`` and ``trainer_state.json`` (step, data
cursor, tokens, config). Every folder is written with :func:`qcoder_lib.io.atomic_dir`: under a
temporary name first, renamed when complete, so an interrupt or a full disk never leaves half a
checkpoint and never touches the previous one.
"""

from __future__ import annotations

import errno
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from qcoder_lib.io import atomic_dir

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pt"
MODEL_FILE = "model.safetensors"
STATE_FIELDS = ("step", "cursor", "tokens")  # trainer_state.json must hold these integers


class CheckpointError(RuntimeError):
    """A checkpoint folder is incomplete, corrupt or cannot be written; the message names it."""


def list_checkpoints(out_dir) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out_dir`` as ``(step, folder)``, oldest first (temporary
    ``*.tmp-*`` folders left by an interrupted save are not checkpoints)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def rng_state() -> dict:
    """The Python, NumPy, torch (and CUDA) random-number generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder, model, optimizer, state: dict) -> Path:
    """Write ``folder`` atomically (``state`` becomes ``trainer_state.json``). A full disk
    raises :class:`CheckpointError` "disk full while saving checkpoint N" with no temporary
    folder left and any older checkpoint intact."""
    from qcoder_lib.model.hf_interop import to_hf

    folder = Path(folder)
    step = state.get("step", "?")
    need = checkpoint_bytes(model)
    if folder.parent.is_dir() and shutil.disk_usage(folder.parent).free < need:
        raise CheckpointError(
            f"disk full while saving checkpoint {step} in {folder.parent} (about "
            f"{need / 1e6:.1f} MB needed, {shutil.disk_usage(folder.parent).free / 1e6:.1f} MB "
            "free); the previous checkpoints are intact, free space and resume")
    try:
        with atomic_dir(folder) as tmp:
            to_hf(model, tmp)  # config.json + model.safetensors: loadable on its own
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
            torch.save(rng_state(), tmp / RNG_FILE)
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
    except (OSError, RuntimeError) as e:
        if _is_disk_full(e):
            raise CheckpointError(
                f"disk full while saving checkpoint {step} in {folder.parent} "
                f"({e}); the previous checkpoints are intact, free space and resume") from e
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {folder} ({e})") from e
        raise
    return folder


# torch.save reports a short write without an errno, with one of these messages
_TORCH_WRITE_ERRORS = ("No space left on device", "file write failed", "iostream error",
                       "unexpected pos")


def _is_disk_full(e: BaseException) -> bool:
    while e is not None:  # torch.save wraps the OSError in a RuntimeError
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(m in str(e) for m in _TORCH_WRITE_ERRORS):
            return True
        e = e.__cause__ or e.__context__
    return False


def load_checkpoint(folder, model, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer`` and the RNG states, when an optimizer is given)
    from a checkpoint folder; return its trainer state. A missing, unreadable or mismatched
    file, or a missing field of ``trainer_state.json``, raises :class:`CheckpointError`
    naming it."""
    from qcoder_lib.model.hf_interop import load_hf_weights

    folder = Path(folder)

    def fail(name: str, why: str, err: Exception | None = None):
        raise CheckpointError(f"checkpoint file {folder / name} {why}") from err

    for name in (STATE_FILE, MODEL_FILE, OPTIMIZER_FILE, RNG_FILE):
        if not (folder / name).is_file():
            fail(name, "is missing: the checkpoint is incomplete")
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except ValueError as e:
        fail(STATE_FILE, f"is malformed ({type(e).__name__}: {e})", e)
    if not isinstance(state, dict):
        fail(STATE_FILE, "is not a JSON object")
    for key in STATE_FIELDS:
        if key not in state:
            fail(STATE_FILE, f"lacks the field {key!r}")
        if isinstance(state[key], bool) or not isinstance(state[key], int) or state[key] < 0:
            fail(STATE_FILE, f"field {key!r}={state[key]!r} is not a non-negative integer")
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / MODEL_FILE))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for bad bytes
        fail(MODEL_FILE, f"is corrupt ({type(e).__name__}: {e})", e)
    try:
        load_hf_weights(model, tensors, str(folder / MODEL_FILE))
    except (KeyError, ValueError) as e:
        fail(MODEL_FILE, f"does not fit this model ({e})", e)
    if optimizer is not None:
        for name in (OPTIMIZER_FILE, RNG_FILE):
            try:
                obj = torch.load(folder / name, map_location="cpu", weights_only=False)
                if name == OPTIMIZER_FILE:
                    optimizer.load_state_dict(obj)
                else:
                    set_rng_state(obj)
            except Exception as e:  # noqa: BLE001 - pickle/zip/shape errors: all mean corrupt
                fail(name, f"is corrupt or does not fit ({type(e).__name__}: {e})", e)
    return state


def rotate_checkpoints(out_dir, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (``0`` keeps all)."""
    if keep_last <= 0:
        return
    for _, folder in list_checkpoints(out_dir)[:-keep_last]:
        shutil.rmtree(folder)


def save_final(model, folder, tokenizer=None) -> Path:
    """Write the model as an HF-format folder (plus ``tokenizer``'s files when given),
    atomically like a checkpoint. ``AutoModelForCausalLM.from_pretrained(folder)`` loads it."""
    from qcoder_lib.model.hf_interop import to_hf

    with atomic_dir(folder) as tmp:
        to_hf(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(folder)


def checkpoint_bytes(model) -> int:
    """About how many bytes one checkpoint takes: fp32 weights + two AdamW moments."""
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return 3 * 4 * n + (1 << 16)
