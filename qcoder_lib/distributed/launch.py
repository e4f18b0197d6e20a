"""Launching the same training script on 1 process, N processes, or N nodes.

``torchrun`` starts ``nproc_per_node`` workers on each node and gives each the environment the
process group needs (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).
The toggles of a launch are the fields of :class:`LaunchConfig`; :func:`torchrun_command` turns
them into the command line, :func:`slurm_script` into a batch script for a cluster, and
:func:`launch_local` runs one torchrun per "node" on this machine (several nodes on the loopback
address really train together), with a wall-clock limit after which every process is killed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qcoder_lib.distributed.failure import RankFailure, collect_failures, format_failures

ENTRY_MODULE = "qcoder_lib.distributed.run"  # the per-rank script


@dataclass
class LaunchConfig:
    """The launch toggles."""

    nnodes: int = 1  # machines in the job
    nproc_per_node: int = 2  # processes per machine (GPUs per node on a cluster)
    node_rank: int = 0  # which machine this command runs on (0 .. nnodes-1)
    master_addr: str = "127.0.0.1"  # rendezvous host: node 0's address
    master_port: int = 0  # rendezvous port on node 0; 0: a free one is chosen
    backend: str | None = None  # "gloo" / "nccl"; None: NCCL with CUDA, else gloo

    def __post_init__(self):
        for name in ("nnodes", "nproc_per_node"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LaunchConfig.{name}={getattr(self, name)} must be >= 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"LaunchConfig.node_rank={self.node_rank} is not in "
                             f"0..{self.nnodes - 1}")
        if self.backend not in (None, "gloo", "nccl"):
            raise ValueError(f"LaunchConfig.backend={self.backend!r} is not gloo, nccl or None")

    @property
    def world_size(self) -> int:
        """Processes in the whole job."""
        return self.nnodes * self.nproc_per_node


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (bind port 0 and let the OS choose), so parallel jobs
    never collide on a fixed rendezvous port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def torchrun_command(cfg: LaunchConfig, script_args: list[str], module: str = ENTRY_MODULE,
                     log_dir: str | None = None, executable: list[str] | None = None) -> list[str]:
    """The torchrun command line for ``cfg`` on node ``cfg.node_rank`` (static rendezvous at
    ``master_addr:master_port``), running ``python -m module script_args``. ``executable``
    defaults to ``["torchrun"]``; :func:`launch_local` uses this Python's
    ``-m torch.distributed.run`` (the same program)."""
    cmd = list(executable or ["torchrun"])
    cmd += [f"--nnodes={cfg.nnodes}", f"--nproc-per-node={cfg.nproc_per_node}",
            f"--node-rank={cfg.node_rank}", f"--master-addr={cfg.master_addr}",
            f"--master-port={cfg.master_port}", "--max-restarts=0"]
    if log_dir is not None:
        cmd += [f"--log-dir={log_dir}"]
    return cmd + ["-m", module, *map(str, script_args)]


@dataclass
class SlurmJob:
    """What a SLURM batch script asks the cluster for."""

    job_name: str = "qcoder-pretrain"  # shown by squeue
    nodes: int = 2  # machines
    gpus_per_node: int = 8  # one process per GPU
    cpus_per_task: int = 32  # CPU cores per node (data loading)
    time: str = "24:00:00"  # wall-clock limit
    partition: str | None = None  # cluster partition, if the cluster needs one
    port: int = 29500  # rendezvous port on the first node
    setup: list[str] = field(default_factory=lambda: ["source .venv/bin/activate"])  # env lines


def slurm_script(job: SlurmJob, script_args: list[str], module: str = ENTRY_MODULE) -> str:
    """A ``sbatch`` script that runs one torchrun per node (``srun``), all meeting at the first
    node of the allocation with the c10d rendezvous; NCCL is chosen on the GPUs by the script."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job.job_name}", f"#SBATCH --nodes={job.nodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={job.gpus_per_node}",
             f"#SBATCH --cpus-per-task={job.cpus_per_task}", f"#SBATCH --time={job.time}",
             "#SBATCH --output=%x-%j.out"]
    if job.partition:
        lines.append(f"#SBATCH --partition={job.partition}")
    lines += ["set -euo pipefail", *job.setup,
              'HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
              "srun torchrun \\", f"    --nnodes={job.nodes} --nproc-per-node={job.gpus_per_node} \\",
              "    --rdzv-backend=c10d --rdzv-id=$SLURM_JOB_ID \\",
              f"    --rdzv-endpoint=$HEAD:{job.port} --max-restarts=0 \\",
              f"    -m {module} {' '.join(shlex.quote(str(a)) for a in script_args)}"]
    return "\n".join(lines) + "\n"


@dataclass
class LaunchResult:
    """How a local launch ended."""

    returncode: int  # 0 when every node's torchrun succeeded; else the first non-zero code
    returncodes: list[int]  # one per node (-9: killed at the timeout)
    timed_out: bool  # the wall-clock limit was reached and every process was killed
    failures: list[RankFailure]  # recorded worker errors, root cause first
    logs: list[str]  # each node's torchrun output (agents and workers)
    seconds: float  # wall time
    agent_pids: list[int] = field(default_factory=list)  # each torchrun = its process group id

    @property
    def ok(self) -> bool:
        """True when the job finished without error."""
        return self.returncode == 0

    def report(self) -> str:
        """Which rank failed and its traceback, or a one-line success."""
        if self.ok:
            return f"all {len(self.returncodes)} node(s) finished in {self.seconds:.1f} s"
        head = "timed out; every process killed" if self.timed_out else (
            f"failed with exit codes {self.returncodes}")
        return f"{head}\n{format_failures(self.failures)}"


def launch_local(cfg: LaunchConfig, script_args: list[str], log_dir, timeout_s: float = 300.0,
                 module: str = ENTRY_MODULE, env: dict | None = None,
                 on_poll: Callable[[], None] | None = None) -> LaunchResult:
    """Run the job of ``cfg`` on this machine: one torchrun per node rank ``0..nnodes-1``
    (``cfg.node_rank`` is ignored), each in its own process group, output in
    ``log_dir/node<k>.log``. Waits at most ``timeout_s`` seconds, then kills every process of the
    job (agents and workers). A ``master_port`` of 0 is replaced by a free port. ``on_poll()`` is
    called about 5 times a second while the job runs (e.g. to update a progress bar)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    port = cfg.master_port or free_port(cfg.master_addr)
    run_env = {**os.environ, **(env or {})}
    run_env.setdefault("OMP_NUM_THREADS", "1")
    if cfg.backend:
        run_env["QCODER_DIST_BACKEND"] = cfg.backend
    procs = []
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    timed_out = False
    with contextlib.ExitStack() as logs_open:
        for node in range(cfg.nnodes):
            node_cfg = LaunchConfig(cfg.nnodes, cfg.nproc_per_node, node, cfg.master_addr, port,
                                    cfg.backend)
            cmd = torchrun_command(node_cfg, script_args, module, str(log_dir / f"node{node}"),
                                   executable=[sys.executable, "-m", "torch.distributed.run"])
            fh = logs_open.enter_context(open(log_dir / f"node{node}.log", "w"))
            procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=run_env,
                                          start_new_session=True))  # own group: killable whole
        try:
            while any(p.poll() is None for p in procs):
                if time.perf_counter() > deadline:
                    timed_out = True
                    break
                if on_poll is not None:
                    on_poll()
                time.sleep(0.2)
        finally:  # the limit, an error or Ctrl-C here: nothing of the job survives
            for p in procs:
                if p.poll() is None:
                    _kill_group(p)
    codes = [p.returncode for p in procs]
    logs = [(log_dir / f"node{n}.log").read_text(errors="replace") for n in range(cfg.nnodes)]
    first_bad = next((c for c in codes if c != 0), 0)
    return LaunchResult(first_bad if not timed_out else (first_bad or -9), codes, timed_out,
                        collect_failures(log_dir, cfg.nproc_per_node), logs,
                        time.perf_counter() - t0, [p.pid for p in procs])


def _kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the whole process group of ``proc`` (torchrun forwards it to its workers), then
    SIGKILL whatever is left after ``grace_s``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
