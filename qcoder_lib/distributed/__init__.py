"""From one device to many GPUs and nodes, with PyTorch's own distributed stack.

- :mod:`.strategy`: the process group from the torchrun environment (gloo on CPU, NCCL on GPU),
  DDP / FSDP2 (``fully_shard`` per decoder block on a DeviceMesh, bf16 policy on GPU), each
  rank's slice of the global batch, sums over ranks;
- :mod:`.train`: :func:`train_distributed`, the data-parallel step of
  :func:`qcoder_lib.train.train` (which calls it for ``TrainConfig(strategy="ddp"|"fsdp2")``);
- :mod:`.checkpoint`: ``torch.distributed.checkpoint`` folders: save with N ranks, load with M,
  consolidate into one process, export for transformers;
- :mod:`.launch`: the launch toggles, the torchrun command, a SLURM script, local launches of
  several "nodes" with a wall-clock limit;
- :mod:`.failure`: which rank failed and its traceback (torch's ``@record`` error files);
- :mod:`.memory`: memory and communication per rank for DDP and ZeRO-1/2/3;
- :mod:`.run`: the per-rank script torchrun starts (``python -m qcoder_lib.distributed.run``).
"""

from qcoder_lib.distributed.checkpoint import (
    DistributedCheckpointError,
    consolidate,
    export_hf,
    gather_full_model,
    load_distributed,
    save_distributed,
)
from qcoder_lib.distributed.failure import RankFailure, alive, collect_failures, format_failures
from qcoder_lib.distributed.launch import (
    LaunchConfig,
    LaunchResult,
    SlurmJob,
    free_port,
    launch_local,
    slurm_script,
    torchrun_command,
)
from qcoder_lib.distributed.memory import (
    MEMORY_STRATEGIES,
    MemoryEstimate,
    activation_bytes,
    comm_bytes,
    estimate,
    gpus_needed,
    measured_state_bytes,
    memory_table,
    state_bytes,
)
from qcoder_lib.distributed.strategy import (
    STRATEGIES,
    DistInfo,
    current_info,
    default_backend,
    global_sum,
    init_distributed,
    inner_model,
    rank_rows,
    set_gradient_sync,
    shutdown_distributed,
    wrap_model,
)
from qcoder_lib.distributed.train import DistributedResult, train_distributed

__all__ = [
    "MEMORY_STRATEGIES", "STRATEGIES", "DistInfo", "DistributedCheckpointError",
    "DistributedResult", "LaunchConfig", "LaunchResult", "MemoryEstimate", "RankFailure",
    "SlurmJob", "activation_bytes", "alive", "collect_failures", "comm_bytes", "consolidate",
    "current_info", "default_backend", "estimate", "export_hf", "format_failures", "free_port",
    "gather_full_model", "global_sum", "gpus_needed", "init_distributed", "inner_model",
    "launch_local", "load_distributed", "measured_state_bytes", "memory_table", "rank_rows",
    "save_distributed", "set_gradient_sync", "shutdown_distributed", "slurm_script",
    "state_bytes", "torchrun_command", "train_distributed", "wrap_model",
]
