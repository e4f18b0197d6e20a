"""Distributed checkpoints with ``torch.distributed.checkpoint`` (DCP): save with N ranks, load
with M, consolidate into one process.

A DCP checkpoint is a folder of ``__<rank>_0.distcp`` files (each rank writes the shards it
holds, in parallel) plus ``.metadata`` (which piece of which tensor lives where). Loading asks
for the pieces the *loading* ranks hold, so a run saved by 2 FSDP2 ranks resumes on 4, on 1, or
under DDP: resharding is a read plan, not a conversion step. Next to the shards this module
writes ``config.json`` (the model's HF config) and ``trainer_state.json`` (step, data cursor), so
the folder alone rebuilds the model (:func:`consolidate`) and exports it for transformers
(:func:`export_hf`).

The folder is written atomically: rank 0 creates the temporary sibling with
:func:`qcoder_lib.io.atomic_dir`, every rank writes into it, rank 0 renames it when all are done.
(On several nodes the folder must be on a shared file system, as on any cluster.)
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from qcoder_lib.distributed.strategy import DistInfo, current_info, inner_model
from qcoder_lib.io import atomic_dir

STATE_FILE = "trainer_state.json"  # step, cursor, tokens, config of the run
CONFIG_FILE = "config.json"  # the model's transformers config (to rebuild it alone)
METADATA_FILE = ".metadata"  # written by DCP last: its presence marks a complete save


@contextlib.contextmanager
def _quiet_dcp():
    """DCP warns that it 'assumes' a single process when there is no process group; here that
    is the intent (``no_dist=True``), so that one warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or "
                                "uninitialized", category=UserWarning)
        yield


class DistributedCheckpointError(RuntimeError):
    """A DCP checkpoint folder is missing a file or does not fit the model; names the file."""


def save_distributed(folder, model: torch.nn.Module, optimizer, state: dict,
                     info: DistInfo | None = None) -> Path:
    """Every rank calls this: write model and optimizer shards of ``model`` (plain, DDP or
    FSDP2) into ``folder`` with DCP, plus ``trainer_state.json`` (``state``) and ``config.json``
    from rank 0. Returns ``folder`` once it is complete on every rank."""
    from qcoder_lib.model.hf_interop import to_hf_config

    info = info or current_info()
    folder = Path(folder)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    ctx = atomic_dir(folder) if info.is_main else contextlib.nullcontext()
    with ctx as tmp:
        where = [str(tmp) if info.is_main else None]
        if info.backend is not None:
            dist.broadcast_object_list(where, src=0)  # the temporary folder rank 0 made
        with _quiet_dcp():
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=where[0],
                     no_dist=info.backend is None)
        if info.is_main:
            tmp = Path(where[0])
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
            to_hf_config(inner_model(model).config).save_pretrained(tmp)
    if info.backend is not None:
        dist.barrier()  # nobody reads or rotates before rank 0 has renamed the folder
    return folder


def _check_folder(folder: Path) -> None:
    for name in (METADATA_FILE, STATE_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise DistributedCheckpointError(
                f"checkpoint file {folder / name} is missing: {folder.name} is not a complete "
                "distributed checkpoint")


def load_distributed(folder, model: torch.nn.Module, optimizer=None,
                     info: DistInfo | None = None) -> dict:
    """Every rank calls this: fill ``model`` (plain, DDP or FSDP2; any number of ranks) and
    ``optimizer`` (when given) from a DCP ``folder`` written by any number of ranks; return the
    trainer state. A missing file or a tensor that does not fit raises
    :class:`DistributedCheckpointError` naming the folder."""
    info = info or current_info()
    folder = Path(folder)
    _check_folder(folder)
    no_dist = info.backend is None
    try:
        if optimizer is None:
            model_sd = get_model_state_dict(model)
            with _quiet_dcp():
                dcp.load({"model": model_sd}, checkpoint_id=str(folder), no_dist=no_dist)
            set_model_state_dict(model, model_sd)
        else:
            model_sd, optim_sd = get_state_dict(model, optimizer)
            sd = {"model": model_sd, "optim": optim_sd}
            with _quiet_dcp():
                dcp.load(sd, checkpoint_id=str(folder), no_dist=no_dist)
            set_state_dict(model, optimizer, model_state_dict=sd["model"],
                           optim_state_dict=sd["optim"])
    except (RuntimeError, ValueError, KeyError) as e:
        if isinstance(e, DistributedCheckpointError):
            raise
        raise DistributedCheckpointError(
            f"checkpoint {folder} does not fit this model/optimizer ({type(e).__name__}: "
            f"{str(e)[:500]})") from e
    return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))


def consolidate(folder, device: str | torch.device = "cpu"):
    """One ordinary :class:`~qcoder_lib.model.QwenForCausalLM` rebuilt from a DCP checkpoint
    folder alone (its ``config.json`` and every rank's shards), in one process, for evaluation
    or export. Works inside or outside a process group (it reads without collectives)."""
    from qcoder_lib.model import QwenForCausalLM
    from qcoder_lib.model.hf_interop import from_hf_config

    folder = Path(folder)
    _check_folder(folder)
    cfg = from_hf_config(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
    model = QwenForCausalLM(cfg).to(device)
    model_sd = get_model_state_dict(model)
    try:
        with _quiet_dcp():
            dcp.load({"model": model_sd}, checkpoint_id=str(folder), no_dist=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise DistributedCheckpointError(
            f"checkpoint {folder} does not fit its own config.json ({type(e).__name__}: "
            f"{str(e)[:500]})") from e
    set_model_state_dict(model, model_sd)
    return model.eval()


def export_hf(folder, out_dir) -> Path:
    """Consolidate the DCP checkpoint ``folder`` and write it as a transformers folder
    (``config.json`` + ``model.safetensors``) at ``out_dir``, atomically."""
    from qcoder_lib.model.hf_interop import to_hf

    model = consolidate(folder)
    with atomic_dir(out_dir) as tmp:
        to_hf(model, tmp)
    return Path(out_dir)


def gather_full_model(model: torch.nn.Module, info: DistInfo | None = None):
    """Every rank calls this (it is a collective under FSDP2): rank 0 gets an ordinary
    single-process copy of the wrapped ``model`` on the CPU, the other ranks ``None``."""
    from qcoder_lib.model import QwenForCausalLM

    info = info or current_info()
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=opts)  # complete tensors on rank 0 only
    if not info.is_main:
        return None
    single = QwenForCausalLM(inner_model(model).config)
    set_model_state_dict(single, full)
    return single.eval()
