"""What a pretraining run survives: signals, full disks, unwritable folders, torn log lines,
damaged trainer state; and the options that must not change the numbers."""

import json
import os
import signal
import subprocess

import pytest
import torch

from qcoder_lib.train import (
    CheckpointError,
    TrainingInterrupted,
    check_out_dir,
    list_checkpoints,
    load_checkpoint,
    read_training_log,
    train,
)
from tests.test_train import cfg_for, packed_rows, tiny_model


def test_sigterm_writes_a_checkpoint_and_resume_equals_a_straight_run(tmp_path):
    rows, held = packed_rows(), packed_rows(n_docs=30, seed=1)
    straight = train(tiny_model(), rows, cfg_for(tmp_path, "straight", eval_every=4),
                     eval_data=held)

    def terminate(record):
        if record["step"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, as a scheduler would send

    cfg = cfg_for(tmp_path, "killed", eval_every=4)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 5: checkpoint-5 saved") as e:
        train(tiny_model(), rows, cfg, eval_data=held, on_step=terminate)
    stopped = e.value.result
    assert e.value.signal == "SIGTERM" and isinstance(e.value, KeyboardInterrupt)
    assert stopped.stopped == "SIGTERM" and stopped.steps == 5 and stopped.final_dir is None
    assert [s for s, _ in list_checkpoints(cfg.out_dir)] == [3, 5]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back
    resumed = train(tiny_model(seed=9), rows, cfg, eval_data=held, resume=True)
    assert resumed.resumed_from == 5 and resumed.final_dir is not None
    a, b = read_training_log(straight.out_dir), read_training_log(cfg.out_dir)
    assert [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b):  # bit for bit (fp32, CPU)
        for key in ("loss", "lr", "grad_norm", "tokens", "eval_loss"):
            assert ra.get(key) == rb.get(key), (ra["step"], key)


def test_partial_last_metrics_line_is_dropped_on_resume(tmp_path):
    rows = packed_rows()
    cfg = cfg_for(tmp_path)

    def crash(record):
        if record["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), rows, cfg, on_step=crash)
    log = tmp_path / "run" / "metrics.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 5, "loss": 3.1')  # killed in the middle of a write
    with pytest.raises(ValueError, match=r"metrics.jsonl:5"):
        read_training_log(log)
    res = train(tiny_model(), rows, cfg, resume=True)
    assert res.steps == 8 and [r["step"] for r in read_training_log(log)] == list(range(1, 9))


def test_missing_trainer_state_field_is_named(tmp_path):
    res = train(tiny_model(), packed_rows(), cfg_for(tmp_path, steps=3, checkpoint_every=3))
    ckpt = res.checkpoints[-1]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    del state["cursor"]
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="trainer_state.json lacks the field 'cursor'"):
        load_checkpoint(ckpt, tiny_model())


def test_unwritable_out_dir_fails_before_training(tmp_path):
    (tmp_path / "a_file").write_text("x")
    cfg = cfg_for(tmp_path, "a_file/run")
    with pytest.raises(OSError, match="a_file/run is not writable"):
        train(tiny_model(), packed_rows(), cfg)
    with pytest.raises(OSError, match="MB free"):
        check_out_dir(tmp_path, need_bytes=1 << 60)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size mounted on tmp_path/disk (needs root and mount)."""
    mounted = []

    def make(kib):
        d = tmp_path / "disk"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(d)],
                           capture_output=True, check=False)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)  # lazy: a traceback may hold a file


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, small_disk):
    rows = packed_rows()
    probe = train(tiny_model(), rows, cfg_for(tmp_path, "probe", steps=2, checkpoint_every=2))
    size = sum(p.stat().st_size for p in probe.checkpoints[0].iterdir())
    disk = small_disk(int(size * 1.6) // 1024)  # one checkpoint fits, two do not
    cfg = cfg_for(disk, "run", steps=6, checkpoint_every=2, keep_last=1)
    with pytest.raises(CheckpointError, match="disk full while saving checkpoint 4"):
        train(tiny_model(), rows, cfg)
    left = sorted(p.name for p in (disk / "run").iterdir())
    assert left == ["checkpoint-2", "metrics.jsonl", "train_config.json"], left  # no *.tmp-*
    load_checkpoint(disk / "run" / "checkpoint-2", tiny_model())  # intact


def test_activation_checkpointing_gives_the_same_training(tmp_path):
    rows = packed_rows()
    params = []
    for ac in (False, True):
        model = tiny_model()
        train(model, rows, cfg_for(tmp_path, f"ac{ac}", steps=3, checkpoint_every=0,
                                   activation_checkpointing=ac))
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert "forward" not in vars(model.model.layers[0])  # the wrapper is removed afterwards
    assert (params[0] - params[1]).abs().max().item() < 1e-6


def test_rows_must_match_seq_len(tmp_path):
    rows = packed_rows().subset(slice(0, 8))
    with pytest.raises(ValueError, match="seq_len=16"):
        train(tiny_model(), rows, cfg_for(tmp_path, seq_len=16))


def test_single_strategy_hooks_and_checkpoint_helpers(tmp_path):
    """The four strategy hooks are the plain single-process step; rng_state round-trips;
    checkpoint_bytes covers a real checkpoint; rotate keeps the newest."""
    import random

    from qcoder_lib.train import (
        TrainConfig,
        checkpoint_bytes,
        load_state,
        make_optimizer,
        rank_rows,
        reduce_for_logging,
        rng_state,
        rotate_checkpoints,
        save_final,
        save_state,
        set_rng_state,
        wrap_model,
    )

    cfg = TrainConfig(progress=False)
    model = tiny_model()
    assert wrap_model(model, cfg) is model and reduce_for_logging(2.5, cfg) == 2.5
    ids = torch.arange(6).view(2, 3)
    assert all(a is ids for a in rank_rows(ids, ids, ids, cfg))
    with pytest.raises(NotImplementedError, match="ddp"):
        wrap_model(model, TrainConfig(strategy="ddp"))
    state = rng_state()
    a = (random.random(), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    opt = make_optimizer(model, cfg)
    model(torch.arange(8).view(1, 8)).float().pow(2).mean().backward()
    opt.step()  # AdamW moments exist: the checkpoint is full size
    for step in (1, 2, 3):
        save_state(tmp_path / f"checkpoint-{step}", model, opt,
                   {"step": step, "cursor": 4 * step, "tokens": 0})
    rotate_checkpoints(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    size = sum(p.stat().st_size for p in (tmp_path / "checkpoint-3").iterdir())
    assert size <= checkpoint_bytes(model) < 1.5 * size
    assert load_state(tmp_path / "checkpoint-3", tiny_model(seed=5), opt)["cursor"] == 12
    final = save_final(model, tmp_path / "final")
    assert (final / "model.safetensors").is_file() and not list(tmp_path.glob("*.tmp-*"))
