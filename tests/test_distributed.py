"""qcoder_lib.distributed on CPU with gloo: 2 ranks agree with 1 process.

References: a single-process run of the same script, same seed and same global batch. Weight
tolerance: ``atol=1e-5`` after 4 AdamW steps at lr 3e-3 (measured ~1e-6: only the order of
float summations differs between 1 and 2 ranks; Adam divides by sqrt(v) so a few 1e-7 gradient
differences on tiny gradients show up at ~lr * 1e-4). Logits of a checkpoint reloaded on one
process: bit-identical. Each torchrun launch is bounded by a wall-clock limit (LAUNCH_TIMEOUT_S)
and every collective by a 30 s timeout, so no test can hang.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from qcoder_lib.distributed.checkpoint import (
    DistributedCheckpointError,
    consolidate,
    export_hf,
    load_distributed,
    save_distributed,
)
from qcoder_lib.distributed.failure import alive, collect_failures, format_failures
from qcoder_lib.distributed.launch import LaunchConfig, launch_local
from qcoder_lib.distributed.memory import measured_state_bytes, state_bytes
from qcoder_lib.distributed.run import counting_rows
from qcoder_lib.distributed.run import main as run_main

LAUNCH_TIMEOUT_S = 150
ATOL = 1e-5
ARGS = ["--steps", "4", "--batch-size", "8", "--seq-len", "32", "--timeout", "30",
        "--eval-every", "4"]


def _weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def _max_diff(a, b):
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The reference: the same script in this process, no process group: the library's
    single-process loop (qcoder_lib.train.train with strategy="single")."""
    out = tmp_path_factory.mktemp("single")
    assert run_main(["--out", str(out), "--strategy", "single", *ARGS]) == 0
    return out


def _launch(tmp_path, name, strategy, nnodes=1, nproc=2, extra=()):
    out = tmp_path / name
    res = launch_local(LaunchConfig(nnodes=nnodes, nproc_per_node=nproc),
                       ["--out", str(out), "--strategy", strategy, *ARGS, *extra],
                       tmp_path / f"{name}_logs", timeout_s=LAUNCH_TIMEOUT_S)
    assert res.ok, res.report() + "\n" + "\n".join(log[-3000:] for log in res.logs)
    return out


def test_ddp_on_two_loopback_nodes_matches_one_process(tmp_path, single_run):
    # two torchrun launches with --nnodes=2 meeting on 127.0.0.1, one rank each, DDP
    out = _launch(tmp_path, "two_nodes", "ddp", nnodes=2, nproc=1)
    assert _max_diff(_weights(out), _weights(single_run)) < ATOL
    got = json.loads((out / "result.json").read_text())
    ref = json.loads((single_run / "result.json").read_text())
    assert got["world_size"] == 2 and ref["world_size"] == 1
    assert got["losses"] == pytest.approx(ref["losses"], rel=1e-5)
    assert got["eval_loss"] == pytest.approx(ref["eval_loss"], rel=1e-5)  # held-out, all ranks
    assert len(list((tmp_path / "two_nodes_logs").glob("node*.log"))) == 2


def test_fsdp2_matches_checkpoint_reloads_on_one_process_and_resumes(tmp_path, single_run):
    out = _launch(tmp_path, "fsdp2", "fsdp2", extra=["--checkpoint-every", "2"])
    assert _max_diff(_weights(out), _weights(single_run)) < ATOL
    # sharded state: rank 0 holds 1/2 of the weights, gradients and AdamW state (fp32 here),
    # as the ZeRO-3 calculator says (within 2%: FSDP2 pads dim 0 to a multiple of 2)
    from qcoder_lib.model import QwenConfig

    held = json.loads((out / "result.json").read_text())["state_bytes_rank0"]
    n = QwenConfig.preset("smoke", vocab_size=256).num_params().total
    for part, want in zip(("params", "grads", "optimizer"), state_bytes(n, "fsdp2", 2, "fp32")):
        assert held[part] == pytest.approx(want, rel=0.02), part

    # written by 2 ranks, read by 1: the same logits as the model the 2 ranks gathered
    from qcoder_lib.model.hf_interop import from_hf

    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    one = consolidate(out / "checkpoint-4")
    assert torch.equal(one(ids), from_hf(out / "final")(ids))
    with pytest.raises(DistributedCheckpointError, match=r"\.metadata"):
        (out / "checkpoint-2" / ".metadata").rename(out / "hidden")
        consolidate(out / "checkpoint-2")
    (out / "hidden").rename(out / "checkpoint-2" / ".metadata")

    # resume the 2-rank checkpoint of step 2 in ONE process (optimizer state resharded 2 -> 1)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    shutil.copy(out / "metrics.jsonl", resumed / "metrics.jsonl")
    assert run_main(["--out", str(resumed), "--strategy", "single", "--resume", *ARGS]) == 0
    got = json.loads((resumed / "result.json").read_text())
    ref_losses = json.loads((single_run / "result.json").read_text())["losses"]
    assert got["resumed_from"] == 2 and got["losses"] == pytest.approx(ref_losses[2:], rel=1e-5)
    assert _max_diff(_weights(resumed), _weights(single_run)) < ATOL


def test_a_failing_rank_stops_every_process_and_is_named(tmp_path):
    out = tmp_path / "fail"
    cfg = LaunchConfig(nnodes=2, nproc_per_node=1)
    res = launch_local(cfg, ["--out", str(out), "--strategy", "ddp", "--steps", "50",
                             "--timeout", "30", "--fail-rank", "1", "--fail-at-step", "1"],
                       tmp_path / "logs", timeout_s=LAUNCH_TIMEOUT_S)
    assert not res.timed_out, "the job hung until the wall-clock limit"
    assert not res.ok and all(c != 0 for c in res.returncodes)
    root = res.failures[0]
    assert root.rank == 1 and root.node_rank == 1 and "InjectedFailure" in root.message
    assert "maybe_fail" in root.traceback
    assert "root cause: rank 1" in res.report()
    assert collect_failures(tmp_path / "logs", 1)[0] == root
    pids = [int(p.read_text()) for p in (out / "pids").glob("rank*.pid")]
    assert len(pids) == 2 and not any(alive(p) for p in pids), "orphan worker left running"


def _smoke_model_and_optimizer(seed):
    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.train import TrainConfig, make_optimizer

    torch.manual_seed(seed)
    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=256))
    opt = make_optimizer(model, TrainConfig())
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    return model, opt


def test_single_process_dcp_round_trip_and_hf_export(tmp_path):
    from transformers import AutoModelForCausalLM

    model, opt = _smoke_model_and_optimizer(0)
    save_distributed(tmp_path / "ckpt", model, opt, {"step": 1, "cursor": 8, "tokens": 256})
    other, other_opt = _smoke_model_and_optimizer(1)
    state = load_distributed(tmp_path / "ckpt", other, other_opt)
    assert state["step"] == 1 and state["cursor"] == 8
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))
    exp_avg = [opt.state[p]["exp_avg"] for p in model.parameters()]
    got_avg = [other_opt.state[p]["exp_avg"] for p in other.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(exp_avg, got_avg))

    hf = AutoModelForCausalLM.from_pretrained(export_hf(tmp_path / "ckpt", tmp_path / "hf")).eval()
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(hf(ids, use_cache=False).logits, model.eval()(ids), atol=1e-5)


def test_measured_single_process_state_matches_the_calculator():
    model, opt = _smoke_model_and_optimizer(0)
    held = measured_state_bytes(model, opt)
    n = model.num_params().total
    assert (held["params"], held["grads"], held["optimizer"]) == state_bytes(n, "ddp", 1, "fp32")


def test_counting_rows_are_packed_counting_documents():
    rows = counting_rows(6, 40, 50, seed=3)
    assert rows.input_ids.shape == (6, 40)
    keep = rows.targets != -100
    step = (rows.targets - rows.input_ids) % 50  # each target is the next count
    assert keep.any() and set(step[keep].tolist()) <= {1, 2, 3}
    starts = rows.position_ids == 0
    assert starts[:, 0].all() and starts[:, 1:].any()  # packed: documents restart


def test_failure_report_without_errors_and_alive():
    assert format_failures([]) == "no rank recorded an error"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert alive(__import__("os").getpid()) and not alive(p.pid)


def test_unsupported_options_with_a_strategy_are_refused(tmp_path):
    from qcoder_lib.distributed.strategy import DistInfo
    from qcoder_lib.distributed.train import train_distributed
    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.train import TrainConfig

    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=256))
    cfg = TrainConfig(steps=1, batch_size=4, seq_len=32, strategy="fsdp2", compile=True,
                      out_dir=str(tmp_path))
    info = DistInfo(0, 2, 0, torch.device("cpu"), "gloo")
    with pytest.raises(NotImplementedError, match="TrainConfig.compile"):
        train_distributed(model, counting_rows(8, 32, 256), cfg, info=info)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_memory_of_a_training_step_matches_the_calculator():
    # fp32 weights + fp32 gradients + AdamW's two fp32 moments = 16 bytes per parameter
    # (the loop's bf16 autocast keeps fp32 weights); measured with the CUDA allocator, 10%.
    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.train import TrainConfig, make_optimizer

    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    model = QwenForCausalLM(QwenConfig.preset("gpu", vocab_size=8192)).cuda()
    opt = make_optimizer(model, TrainConfig())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(torch.zeros(1, 8, dtype=torch.long, device="cuda")).float().mean()
    loss.backward()
    opt.step()
    del loss
    used = torch.cuda.memory_allocated() - base
    want = sum(state_bytes(model.num_params().total, "ddp", 1, "fp32"))
    assert used == pytest.approx(want, rel=0.10)
