"""How one training step is spread over processes: single device, DDP or FSDP2.

Every strategy runs the same loop; only three things change (see :mod:`.train`):

- the model is wrapped: :func:`wrap_model` (DDP replicates it and all-reduces gradients; FSDP2
  ``fully_shard`` keeps 1/N of every parameter, gradient and optimizer state on each rank and
  gathers one decoder block at a time);
- each rank reads its own slice of the global batch: :func:`rank_rows`;
- the loss is normalised by the targets of the whole global batch (:func:`global_sum`), then
  multiplied by the world size, because DDP and FSDP2 *average* gradients over ranks: the sum of
  every rank's ``sum_CE / global_targets`` is exactly the single-process mean loss.

The process group comes from the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): :func:`init_distributed` picks NCCL on GPUs
and gloo on CPUs, so the same script runs on a laptop and on a cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

STRATEGIES = ("single", "ddp", "fsdp2")  # the values of TrainConfig.strategy / --strategy


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int  # global rank, 0 .. world_size-1
    world_size: int  # processes in the job (all nodes)
    local_rank: int  # rank on this node (selects the GPU)
    device: torch.device  # cuda:<local_rank> with NCCL, cpu with gloo
    backend: str | None  # "nccl", "gloo", or None without a process group

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes metrics and the final model."""
        return self.rank == 0


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"`` (``QCODER_DIST_BACKEND`` overrides)."""
    return os.environ.get("QCODER_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")


def init_distributed(backend: str | None = None, timeout_s: float = 300.0) -> DistInfo:
    """Join the process group described by the torchrun environment and return this rank's
    :class:`DistInfo`; without ``WORLD_SIZE`` (a plain ``python`` run) return a single-process
    info and create no group. ``timeout_s`` bounds every collective: a rank whose peer died
    raises instead of waiting forever."""
    if dist.is_available() and dist.is_initialized():
        return current_info()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and "RANK" not in os.environ:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistInfo(0, 1, 0, dev, None)
    backend = backend or default_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return current_info()


def current_info() -> DistInfo:
    """The :class:`DistInfo` of an initialised process group (single-process info otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistInfo(0, 1, 0, dev, None)
    backend = dist.get_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank}") if backend == "nccl" else torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def shutdown_distributed() -> None:
    """Leave the process group (no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, strategy: str, info: DistInfo,
               mixed_precision: bool | None = None) -> torch.nn.Module:
    """Wrap ``model`` (already on ``info.device``, identical on every rank) for ``strategy``.

    - ``"single"``: returned as is;
    - ``"ddp"``: ``DistributedDataParallel`` (gradients all-reduced in buckets during backward);
    - ``"fsdp2"``: ``fully_shard`` on every decoder block, then on the root (the embedding, the
      final norm and ``lm_head``, so a tied ``lm_head`` stays the embedding's own tensor), over a
      1-D :class:`~torch.distributed.device_mesh.DeviceMesh`. ``mixed_precision`` (default: on
      CUDA) computes in bf16 while the sharded fp32 weights and the gradient reduction stay fp32.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy == "single":
        return model
    if info.backend is None:
        raise RuntimeError(f"strategy={strategy!r} needs a process group: launch with torchrun "
                           "(qcoder_lib.distributed.launch) or call init_distributed()")
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,), mesh_dim_names=("dp",))
    if mixed_precision is None:
        mixed_precision = info.device.type == "cuda"
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if mixed_precision else MixedPrecisionPolicy())
    for layer in inner_model(model).model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)  # one all-gather per block, freed after use
    fully_shard(model, mesh=mesh, mp_policy=mp)  # embedding + norm + (tied) lm_head
    return model


def inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The :class:`~qcoder_lib.model.QwenForCausalLM` inside a DDP wrapper (FSDP2 keeps the
    module itself)."""
    return getattr(model, "module", model)


def rank_rows(n_rows: int, info: DistInfo) -> slice:
    """This rank's contiguous slice of a global batch of ``n_rows`` rows: rank ``r`` of ``N``
    takes rows ``r*n/N .. (r+1)*n/N``, so no row is seen by two ranks in a step. Raises
    ``ValueError`` when ``n_rows`` does not divide evenly (ranks must do equal work)."""
    if n_rows % info.world_size:
        raise ValueError(f"TrainConfig.batch_size={n_rows} is not a multiple of the world size "
                         f"{info.world_size}")
    per = n_rows // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def global_sum(value: float | torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``value`` summed over every rank (a float64 tensor on ``info.device``; itself when
    single). Used for the number of targets in the global batch and for the logged loss."""
    t = torch.as_tensor(value, dtype=torch.float64, device=info.device).detach().clone()
    if info.backend is not None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def set_gradient_sync(model: torch.nn.Module, strategy: str, enabled: bool):
    """A context for one micro-batch: with ``enabled=False`` gradients are accumulated locally
    and not communicated (DDP ``no_sync``, FSDP2 ``set_requires_gradient_sync``); the last
    micro-batch of a step syncs them once."""
    import contextlib

    if strategy == "ddp" and not enabled:
        return model.no_sync()
    if strategy == "fsdp2":
        model.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()
