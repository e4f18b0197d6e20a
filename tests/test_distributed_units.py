"""qcoder_lib.distributed without training: launch commands, SLURM script, the wall-clock kill,
failure reports read from real ``@record`` error files, strategy helpers in one process, and
the memory calculator against the ZeRO paper's published numbers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
import torch

from qcoder_lib.distributed.checkpoint import (
    DistributedCheckpointError,
    gather_full_model,
    load_distributed,
)
from qcoder_lib.distributed.failure import RankFailure, collect_failures, format_failures
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
    GIB,
    MemoryEstimate,
    activation_bytes,
    comm_bytes,
    estimate,
    gpus_needed,
    memory_table,
    state_bytes,
)
from qcoder_lib.distributed.run import build_parser
from qcoder_lib.distributed.strategy import (
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
from qcoder_lib.model import QwenConfig, QwenForCausalLM


def test_torchrun_command_has_every_toggle():
    cfg = LaunchConfig(nnodes=2, nproc_per_node=4, node_rank=1, master_addr="10.0.0.1",
                       master_port=29400)
    cmd = torchrun_command(cfg, ["--steps", 3], log_dir="logs")
    assert cmd[0] == "torchrun" and cfg.world_size == 8
    for flag in ("--nnodes=2", "--nproc-per-node=4", "--node-rank=1", "--master-addr=10.0.0.1",
                 "--master-port=29400", "--max-restarts=0", "--log-dir=logs"):
        assert flag in cmd
    assert cmd[-4:] == ["-m", "qcoder_lib.distributed.run", "--steps", "3"]
    with pytest.raises(ValueError, match="node_rank"):
        LaunchConfig(nnodes=2, node_rank=2)
    with pytest.raises(ValueError, match="nproc_per_node"):
        LaunchConfig(nproc_per_node=0)


def test_slurm_script_is_valid_bash_with_the_job():
    text = slurm_script(SlurmJob(nodes=4, gpus_per_node=8, partition="gpu"),
                        ["--out", "runs/a b", "--strategy", "fsdp2"])
    assert "#SBATCH --nodes=4" in text and "#SBATCH --gpus-per-node=8" in text
    assert "#SBATCH --partition=gpu" in text and "--nnodes=4 --nproc-per-node=8" in text
    assert "--rdzv-endpoint=$HEAD:29500" in text and "'runs/a b'" in text
    assert "partition" not in slurm_script(SlurmJob(), [])
    if shutil.which("bash"):
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # syntax only


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_launch_past_its_limit_kills_the_whole_job(tmp_path):
    # a worker that never ends (an HTTP server on a free port), stopped by the wall-clock limit
    cfg = LaunchConfig(nnodes=1, nproc_per_node=1)
    res = launch_local(cfg, ["--bind", "127.0.0.1", "0"], tmp_path, timeout_s=6,
                       module="http.server")
    assert res.timed_out and not res.ok and res.returncode != 0
    assert "timed out" in res.report()
    for pgid in res.agent_pids:  # no process of the job's group is left
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)


def _raise_recorded(error_file, monkeypatch, message="bad shard 7"):
    from torch.distributed.elastic.multiprocessing.errors import record

    error_file.parent.mkdir(parents=True)
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))

    @record
    def worker():
        raise ValueError(message)

    with pytest.raises(ValueError):
        worker()
    time.sleep(0.02)  # distinct write times


def test_failures_are_read_from_torch_error_files(tmp_path, monkeypatch):
    # a peer's "connection closed" written first is a consequence, listed after the real errors
    _raise_recorded(tmp_path / "node0" / "run_z" / "attempt_0" / "0" / "error.json", monkeypatch,
                    "Connection closed by peer [127.0.0.1]:1234")
    _raise_recorded(tmp_path / "node1" / "run_x" / "attempt_0" / "0" / "error.json", monkeypatch)
    _raise_recorded(tmp_path / "node0" / "run_y" / "attempt_0" / "1" / "error.json", monkeypatch)
    fails = collect_failures(tmp_path, nproc_per_node=2)
    assert [f.rank for f in fails] == [2, 1, 0]
    assert fails[-1].is_consequence and not fails[0].is_consequence
    two = next(f for f in fails if f.rank == 2)
    assert (two.node_rank, two.local_rank) == (1, 0) and "bad shard 7" in two.message
    assert "worker" in two.traceback and two.summary().startswith("rank 2 (node 1, local rank 0)")
    text = format_failures(fails)
    assert text.startswith("root cause: rank") and "also failed: rank" in text
    bad = LaunchResult(1, [1], False, fails, [""], 1.0)
    assert "root cause" in bad.report() and not bad.ok
    assert LaunchResult(0, [0, 0], False, [], [], 2.0).report().startswith("all 2 node(s)")
    assert isinstance(fails[0], RankFailure)


def test_strategy_helpers_in_one_process(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed()
    assert info == current_info() and info.world_size == 1 and info.is_main
    assert info.backend is None and float(global_sum(3, info)) == 3.0
    shutdown_distributed()  # nothing to leave: no error
    monkeypatch.setenv("QCODER_DIST_BACKEND", "gloo")
    assert default_backend() == "gloo"
    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=128))
    assert wrap_model(model, "single", info) is model and inner_model(model) is model
    with pytest.raises(RuntimeError, match="torchrun"):
        wrap_model(model, "ddp", info)
    with pytest.raises(ValueError, match="strategy"):
        wrap_model(model, "zero9", info)
    with set_gradient_sync(model, "single", False):
        pass
    full = gather_full_model(model, info)
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), model.parameters()))


def test_rank_rows_split_the_global_batch_without_overlap():
    infos = [DistInfo(r, 4, r, torch.device("cpu"), "gloo") for r in range(4)]
    seen = [i for info in infos for i in range(12)[rank_rows(12, info)]]
    assert seen == list(range(12))
    with pytest.raises(ValueError, match="batch_size=10"):
        rank_rows(10, infos[0])


def test_missing_checkpoint_file_is_named(tmp_path):
    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=128))
    with pytest.raises(DistributedCheckpointError, match="metadata"):
        load_distributed(tmp_path, model)


def test_state_bytes_match_the_zero_paper():
    # ZeRO (Rajbhandari et al. 2020), Figure 1: 7.5B parameters, 64 GPUs, K=12:
    # baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB per GPU.
    n = 7.5e9
    published = {"ddp": 120, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9}
    for strategy, gb in published.items():
        assert sum(state_bytes(n, strategy, 64)) / 1e9 == pytest.approx(gb, abs=0.05)
    assert state_bytes(n, "fsdp2", 8) == state_bytes(n, "zero3", 8)
    with pytest.raises(ValueError, match="strategy"):
        state_bytes(n, "tp", 8)
    with pytest.raises(ValueError, match="precision"):
        state_bytes(n, "ddp", 8, "fp8")


def test_communication_zero3_moves_one_and_a_half_times_ddp():
    n = 1e9
    assert comm_bytes(n, "ddp", 8) == pytest.approx(2 * 7 / 8 * 2 * n)
    assert comm_bytes(n, "zero1", 8) == comm_bytes(n, "ddp", 8)  # ZeRO paper, section 7
    assert comm_bytes(n, "zero3", 8) / comm_bytes(n, "ddp", 8) == pytest.approx(1.5)
    assert comm_bytes(n, "ddp", 1) == 0


def test_activations_and_the_gpu_count_table():
    cfg = QwenConfig.preset("7B")
    a1 = activation_bytes(cfg, 4096, 1)
    assert activation_bytes(cfg, 4096, 2) == pytest.approx(2 * a1)
    assert activation_bytes(cfg, 4096, 1, recompute=False) > a1
    est = estimate(cfg, "zero3", 8, seq_len=4096)
    assert isinstance(est, MemoryEstimate)
    assert est.total == pytest.approx(est.params + est.grads + est.optimizer + est.activations)
    assert est.as_gib()["total"] == round(est.total / GIB, 2)
    rows = memory_table()
    assert [r["model"] for r in rows] == ["0.5B", "1.5B", "3B", "7B", "14B", "32B"]
    for r in rows:  # more sharding never needs more GPUs
        counts = [r[f"{s}_gpus"] or 10**9 for s in ("ddp", "zero1", "zero2", "zero3")]
        assert counts == sorted(counts, reverse=True)
    assert rows[0]["ddp_gpus"] == 1 and rows[-1]["ddp_gpus"] is None  # 32B: 16 B/param > 80 GB
    assert gpus_needed(QwenConfig.preset("32B"), "zero3") > 1


def test_run_script_explains_every_option():
    parser = build_parser()
    assert all(a.help for a in parser._actions)
    args = parser.parse_args(["--out", "x"])
    assert args.strategy == "ddp" and args.fail_rank is None


def test_cli_launch_prints_commands_and_a_slurm_script(capsys):
    from qcoder_lib.cli import build_parser as cli_parser
    from qcoder_lib.cli import main

    assert main(["launch", "--out", "runs/x", "--nnodes", "2", "--nproc", "4",
                 "--strategy", "fsdp2", "--print-command"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("--nnodes=2" in ln and "--nproc-per-node=4" in ln
                                   for ln in lines)
    assert "--node-rank=0" in lines[0] and "--node-rank=1" in lines[1]
    assert "--strategy fsdp2" in lines[0]
    assert main(["launch", "--out", "runs/x", "--nnodes", "3", "--slurm"]) == 0
    assert "#SBATCH --nodes=3" in capsys.readouterr().out
    sub = next(a for a in cli_parser()._actions if a.dest == "command").choices["launch"]
    assert all(a.help for a in sub._actions)
