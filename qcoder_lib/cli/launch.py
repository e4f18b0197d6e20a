"""``qcoder launch``: the pretraining step on N processes and M nodes with torchrun.

::

    qcoder launch --out runs/ddp --nproc 2 --strategy ddp            # 2 processes here
    qcoder launch --out runs/2n --nnodes 2 --nproc 1 --strategy fsdp2  # 2 "nodes" on loopback
    qcoder launch --out runs/big --nnodes 4 --nproc 8 --slurm         # print a SLURM script

With a loopback ``--master-addr`` (the default) every node of the job runs on this machine; with
a real address only node ``--node-rank`` is started here, and each machine runs the same
command with its own ``--node-rank``. :func:`add_launch_options` registers the launch toggles
on any parser (``qcoder pretrain`` can call it).
"""

from __future__ import annotations

import argparse

LOOPBACK = ("127.0.0.1", "localhost")


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """The torchrun toggles: ``--nproc``, ``--nnodes``, ``--node-rank``, ``--master-addr``,
    ``--master-port``, ``--backend``, ``--timeout``, ``--slurm``, ``--print-command``."""
    p.add_argument("--nproc", type=int, default=2, help="processes per node (GPUs per node)")
    p.add_argument("--nnodes", type=int, default=1, help="nodes (machines) in the job")
    p.add_argument("--node-rank", type=int, default=0,
                   help="this machine's node index (ignored on loopback: all nodes run here)")
    p.add_argument("--master-addr", default="127.0.0.1",
                   help="node 0's address; 127.0.0.1 runs every node on this machine")
    p.add_argument("--master-port", type=int, default=0, help="rendezvous port (0: a free one)")
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="process-group backend (default: nccl with CUDA, else gloo)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="wall-clock limit in seconds; past it every process is killed")
    p.add_argument("--slurm", action="store_true",
                   help="print a SLURM batch script for this job and exit (nothing runs)")
    p.add_argument("--print-command", action="store_true",
                   help="print the torchrun command of each node and exit")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``launch`` and its options."""
    from qcoder_lib.cli import add_common_options
    from qcoder_lib.distributed.strategy import STRATEGIES

    p = subparsers.add_parser(
        "launch", help="pretrain on several processes / nodes with torchrun (DDP or FSDP2)",
        description="Start torchrun with qcoder_lib.distributed.run on every rank: the library's "
                    "training loop with TrainConfig.strategy = single, ddp or fsdp2.")
    add_common_options(p, "run folder: metrics.jsonl, DCP checkpoints, final/, result.json, "
                          "logs/ (each node's torchrun output and error files)")
    add_launch_options(p)
    p.add_argument("--strategy", choices=STRATEGIES, default="ddp",
                   help="ddp: replicate, all-reduce gradients; fsdp2: shard weights, gradients "
                        "and optimizer state per decoder block")
    p.add_argument("--preset", default="smoke", help="model preset (smoke, cpu, gpu, 0.5B ...)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="embedding rows (default: 256 on synthetic data, else the preset's)")
    p.add_argument("--data", default=None,
                   help="token-shard folder (qcoder data); default: synthetic counting rows")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="GLOBAL rows per step")
    p.add_argument("--seq-len", type=int, default=32, help="tokens per row")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--checkpoint-every", type=int, default=0, help="DCP checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--fail-rank", type=int, default=None,
                   help="make this rank raise after --fail-at-step steps (failure demo)")
    p.add_argument("--fail-at-step", type=int, default=1, help="see --fail-rank")
    p.set_defaults(run=run)
    return p


def script_args(args) -> list[str]:
    """The per-rank options (of :mod:`qcoder_lib.distributed.run`) from the parsed ``args``."""
    out = ["--out", args.out, "--strategy", args.strategy, "--preset", args.preset,
           "--steps", args.steps, "--batch-size",
           args.batch_size, "--seq-len", args.seq_len, "--lr", args.lr,
           "--checkpoint-every", args.checkpoint_every, "--fail-at-step", args.fail_at_step]
    if args.vocab_size:
        out += ["--vocab-size", args.vocab_size]
    if args.data:
        out += ["--data", args.data]
    if args.resume:
        out.append("--resume")
    if args.fail_rank is not None:
        out += ["--fail-rank", args.fail_rank]
    return [str(a) for a in out]


def run(args) -> int:
    """Print a SLURM script or the commands, or launch the job with a progress bar and print
    a summary (or which rank failed, with its traceback). Returns the job's exit code."""
    import json
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from tqdm.auto import tqdm

    from qcoder_lib.distributed.launch import (
        LaunchConfig,
        SlurmJob,
        launch_local,
        slurm_script,
        torchrun_command,
    )

    cfg = LaunchConfig(args.nnodes, args.nproc, args.node_rank if args.master_addr not in
                       LOOPBACK else 0, args.master_addr, args.master_port or 29500,
                       args.backend)
    rank_args = script_args(args)
    if args.slurm:
        print(slurm_script(SlurmJob(nodes=args.nnodes, gpus_per_node=args.nproc,
                                    port=cfg.master_port), rank_args), end="")
        return 0
    if args.print_command:
        for node in range(args.nnodes):
            node_cfg = LaunchConfig(cfg.nnodes, cfg.nproc_per_node, node, cfg.master_addr,
                                    cfg.master_port, cfg.backend)
            print(shlex.join(torchrun_command(node_cfg, rank_args)))
        return 0
    out = Path(args.out)
    if args.master_addr not in LOOPBACK:  # a real cluster node: run this node's share only
        cmd = torchrun_command(cfg, rank_args, log_dir=str(out / "logs" / f"node{cfg.node_rank}"),
                               executable=[sys.executable, "-m", "torch.distributed.run"])
        return subprocess.run(cmd, check=False).returncode
    if not args.master_port:
        cfg.master_port = 0  # launch_local picks a free port
    metrics = out / "metrics.jsonl"
    bar = tqdm(total=args.steps, desc=f"{args.strategy} x{cfg.world_size}", unit="step")

    def poll():
        if metrics.exists():
            done = sum(1 for line in metrics.read_text().splitlines() if line.strip())
            bar.update(max(0, done - bar.n))

    res = launch_local(cfg, rank_args, out / "logs", timeout_s=args.timeout, on_poll=poll)
    poll()
    bar.close()
    if not res.ok:
        print(res.report(), file=sys.stderr)
        return res.returncode or 1
    summary = json.loads((out / "result.json").read_text())
    losses = summary["losses"]
    print(f"{args.strategy} on {cfg.nnodes} node(s) x {cfg.nproc_per_node} process(es): "
          f"{summary['steps']} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"in {res.seconds:.1f} s; model in {out / 'final'}")
    return 0
