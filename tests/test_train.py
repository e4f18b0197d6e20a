"""The pretraining loop: schedule, targets, learning, exact resume, checkpoints, HF export.

Tiny model (2 layers, width 32) on a learnable task (counting sequences packed into rows), CPU,
fp32. Resume is compared with an uninterrupted run bit for bit.
"""

import itertools
import json
import math
import random

import pytest
import torch

from qcoder_lib.model import QwenConfig, QwenForCausalLM
from qcoder_lib.packed import next_token_targets
from qcoder_lib.packing import pack_sequences
from qcoder_lib.train import (
    CheckpointError,
    ShardRows,
    TokenRows,
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    lr_at,
    param_groups,
    read_training_log,
    train,
)

V, EOS = 64, 63


def tiny_model(seed=0, vocab=V):
    torch.manual_seed(seed)
    cfg = QwenConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                     rope_theta=10_000.0, attn_implementation="sdpa")
    return QwenForCausalLM(cfg)


def counting_docs(n, seed=0):
    """Documents a, a+1, a+2, ... (mod 60) of random length: learnable except the first token."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        a, length = rng.randrange(60), rng.randrange(4, 20)
        docs.append([(a + i) % 60 for i in range(length)] + [EOS])
    return docs


def packed_rows(n_docs=120, seq_len=32, seed=0):
    return TokenRows.from_packed(pack_sequences(counting_docs(n_docs, seed), seq_len,
                                                drop_last=True))


def cfg_for(tmp_path, name="run", **kw):
    base = {"steps": 8, "batch_size": 4, "seq_len": 32, "lr": 1e-2, "warmup_steps": 2,
            "min_lr": 1e-3, "checkpoint_every": 3, "keep_last": 2, "dtype": "fp32",
            "progress": False, "out_dir": str(tmp_path / name)}
    base.update(kw)
    return TrainConfig(**base)


def test_lr_at_follows_warmup_then_cosine():
    cfg = TrainConfig(steps=20, lr=1e-3, warmup_steps=5, min_lr=1e-4)
    for s in range(5):
        assert lr_at(s, cfg) == pytest.approx(1e-3 * (s + 1) / 5, rel=1e-12)
    for s in range(5, 20):
        p = (s - 5) / (20 - 1 - 5)
        want = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * p))
        assert lr_at(s, cfg) == pytest.approx(want, rel=1e-12)
    assert lr_at(4, cfg) == pytest.approx(1e-3) and lr_at(5, cfg) == pytest.approx(1e-3)
    assert lr_at(19, cfg) == pytest.approx(1e-4) and lr_at(100, cfg) == pytest.approx(1e-4)
    decay = [lr_at(s, cfg) for s in range(5, 20)]
    assert all(a > b for a, b in itertools.pairwise(decay))
    assert lr_at(0, TrainConfig(steps=3, warmup_steps=0, lr=0.1, min_lr=0.0)) == pytest.approx(0.1)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="grad_accum_steps"):
        TrainConfig(batch_size=3, grad_accum_steps=2)
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="fp8")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="steps=-3"):
        TrainConfig(steps=-3)
    with pytest.raises(ValueError, match="strategy"):
        TrainConfig(strategy="zero3")
    cfg = TrainConfig()
    cfg.steps = -1  # changed after construction: train() validates again
    with pytest.raises(ValueError, match="TrainConfig.steps=-1"):
        train(tiny_model(), packed_rows(), cfg)
    with pytest.raises(TypeError, match="TrainConfig, not dict"):
        train(tiny_model(), packed_rows(), {"steps": 3})


def test_window_targets_match_packing_labels():
    """Targets cut from windows (the shard path) equal the packing module's document-aware
    labels: no target across an end-of-text, every in-document token has one."""
    packed = pack_sequences(counting_docs(40), 33, drop_last=True)
    rows = TokenRows.from_windows(packed.input_ids, packed.position_ids)
    assert torch.equal(rows.targets, packed.labels()[:, :32])
    assert torch.equal(next_token_targets(packed.input_ids, packed.position_ids),
                       packed.labels()[:, :32])
    eos_pos = rows.input_ids == EOS
    assert (rows.targets[eos_pos] == -100).all()  # after end-of-text comes another document


def test_param_groups_do_not_decay_norms_biases_embeddings():
    model = tiny_model()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "model.embed_tokens.weight" in kept and "model.norm.weight" in kept
    assert all(n.endswith("_proj.weight") for n in decayed)
    assert any(n.endswith("q_proj.bias") for n in kept)
    assert len(decayed) + len(kept) == len(list(model.parameters()))


def test_loss_goes_down_on_a_learnable_task(tmp_path):
    model = tiny_model()
    rows = packed_rows()
    res = train(model, rows, cfg_for(tmp_path, steps=40, checkpoint_every=0))
    first, last = res.losses[0], sum(res.losses[-5:]) / 5
    assert first > math.log(V) - 0.5  # starts near uniform over the vocabulary
    assert last < first - 1.5, (first, last)
    recs = read_training_log(tmp_path / "run")
    assert [r["step"] for r in recs] == list(range(1, 41))
    assert set(recs[0]) >= {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"}
    assert recs[-1]["tokens"] == 40 * 4 * 32


def test_grad_accumulation_equals_one_big_batch(tmp_path):
    """2 micro-batches of 2 rows == 1 batch of 4 rows (their ignored-target counts differ, so
    this checks the loss is normalised over the whole step, not per micro-batch)."""
    rows = packed_rows()
    params = []
    for accum in (1, 2):
        model = tiny_model()
        train(model, rows, cfg_for(tmp_path, f"acc{accum}", steps=2, grad_accum_steps=accum,
                                   checkpoint_every=0, grad_clip=None))
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    _, _, tgt = rows.rows_at(0, 4, 0)
    assert (tgt[:2] != -100).sum() != (tgt[2:] != -100).sum()  # the test means something
    assert (params[0] - params[1]).abs().max().item() < 1e-6


def test_interrupted_run_resumes_to_the_same_losses(tmp_path):
    rows, held = packed_rows(), packed_rows(n_docs=30, seed=1)
    straight = tiny_model()
    train(straight, rows, cfg_for(tmp_path, "straight", eval_every=4), eval_data=held)

    def crash(record):
        if record["step"] == 5:
            raise KeyboardInterrupt("simulated interruption")

    model = tiny_model()
    cfg = cfg_for(tmp_path, "resumed", eval_every=4)
    with pytest.raises(KeyboardInterrupt):
        train(model, rows, cfg, eval_data=held, on_step=crash)
    assert [s for s, _ in list_checkpoints(cfg.out_dir)] == [3]
    assert [r["step"] for r in read_training_log(cfg.out_dir)] == [1, 2, 3, 4, 5]
    res = train(tiny_model(seed=123), rows, cfg, eval_data=held, resume=True)  # fresh weights
    assert res.resumed_from == 3 and res.steps == 8

    a, b = read_training_log(tmp_path / "straight"), read_training_log(cfg.out_dir)
    assert [r["step"] for r in b] == list(range(1, 9))  # steps 4-5 were dropped and redone
    for ra, rb in zip(a, b):  # bit for bit (fp32, CPU)
        for key in ("loss", "lr", "grad_norm", "tokens", "eval_loss"):
            assert ra.get(key) == rb.get(key), (ra["step"], key, ra.get(key), rb.get(key))
    for (n, p), q in zip(straight.named_parameters(), res_params(cfg.out_dir)):
        assert torch.equal(p.detach(), q), n


def res_params(out_dir):
    m = tiny_model(seed=7)
    load_checkpoint(list_checkpoints(out_dir)[-1][1], m)
    return [p.detach() for p in m.parameters()]


def test_rotation_keeps_last_k_and_leftover_temp_dir_is_ignored(tmp_path):
    rows = packed_rows()
    cfg = cfg_for(tmp_path, steps=6, checkpoint_every=1, keep_last=2)

    def crash(record):
        if record["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), rows, cfg, on_step=crash)
    assert [s for s, _ in list_checkpoints(cfg.out_dir)] == [3, 4]
    # an interrupted save of step 5 left a temporary folder with garbage in it
    junk = tmp_path / "run" / "checkpoint-5.tmp-999"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"half a file")
    res = train(tiny_model(), rows, cfg, resume=True)
    assert res.resumed_from == 4 and not junk.exists()
    assert [s for s, _ in list_checkpoints(cfg.out_dir)] == [5, 6]


def test_corrupt_checkpoint_and_missing_data_name_the_file(tmp_path):
    rows = packed_rows()
    cfg = cfg_for(tmp_path, steps=3, checkpoint_every=3)
    train(tiny_model(), rows, cfg)
    with pytest.raises(ValueError, match="TrainConfig.batch_size=8"):
        train(tiny_model(), rows, cfg_for(tmp_path, steps=3, batch_size=8), resume=True)
    ckpt = list_checkpoints(cfg.out_dir)[-1][1]
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="checkpoint-3/model.safetensors"):
        train(tiny_model(), rows, cfg, resume=True)
    (ckpt / "trainer_state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="trainer_state.json"):
        load_checkpoint(ckpt, tiny_model())
    (ckpt / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match="optimizer.pt.*missing"):
        load_checkpoint(ckpt, tiny_model())
    with pytest.raises(FileExistsError, match="resume=True"):
        train(tiny_model(), rows, cfg)  # a fresh run never mixes into an old one
    missing = tmp_path / "no_such_corpus"
    with pytest.raises(FileNotFoundError, match="no_such_corpus"):
        train(tiny_model(), str(missing), cfg_for(tmp_path, "other"))


def test_shard_folder_feeds_training(tmp_path):
    """Token shards written by the data module train directly (windows + 1 target token)."""
    import numpy as np

    from qcoder_lib.data.shards import ShardWriter

    w = ShardWriter(tmp_path / "shards", shard_tokens=1000, eos_id=EOS, tokenizer_name="toy")
    for d in counting_docs(100):
        w.add(np.array(d), {"group": "code"})
    w.close()
    rows = ShardRows(tmp_path / "shards", 32)
    assert rows.seq_len == 32 and len(rows) > 20
    res = train(tiny_model(), str(tmp_path / "shards"), cfg_for(tmp_path, steps=2))
    assert res.steps == 2 and len(res.losses) == 2


def test_final_model_loads_in_transformers_with_tokenizer(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qcoder_lib.tokenizer import train_tokenizer

    tok = train_tokenizer(["def add(a, b):\n    return a + b\n"] * 20, 260)
    model = tiny_model(vocab=-(-len(tok) // 64) * 64)
    rows = TokenRows.from_packed(pack_sequences(
        [[t % len(tok) for t in d] for d in counting_docs(60)], 32, drop_last=True))
    res = train(model, rows, cfg_for(tmp_path, steps=2), tokenizer=tok)
    hf = AutoModelForCausalLM.from_pretrained(res.final_dir).eval()
    ids = rows.input_ids[:2]
    model.eval()
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() < 1e-5
    loaded_tok = AutoTokenizer.from_pretrained(res.final_dir)
    assert loaded_tok.encode("return a + b") == tok.encode("return a + b")
    state = json.loads((list_checkpoints(res.out_dir)[-1][1] / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["cursor"] == 8
