"""From one device to many GPUs and nodes: strategies (DDP / FSDP2), the distributed training
loop, torchrun / SLURM launch, distributed checkpoints and the memory calculator."""
