"""Long-context probes (issue 15): loss by position against the model's own next-token loss,
needle prompts built exactly, teacher-forced needle scores against greedy generation, stage two's
model copy (same weights, new RoPE base) and a short stage-two run."""

import random
from pathlib import Path

import numpy as np
import packaging
import pytest
import torch

from qcoder_lib.long_context import (
    NeedlePrompt,
    attention_cost,
    bucket_means,
    loss_by_position,
    needle_name,
    needle_prompt,
    needle_scores,
)
from qcoder_lib.model import QwenConfig, QwenForCausalLM, next_token_loss
from qcoder_lib.repo_level import (
    REPO_STAGE_PRESETS,
    RepoLevelConfig,
    repo_stage,
    repo_stage_preset,
    stage_two_model,
)
from qcoder_lib.tokenizer import encode_data, train_tokenizer

PKG = Path(packaging.__file__).parent


@pytest.fixture(scope="module")
def tok():
    """A small byte-level BPE tokenizer (course trainer) on real code."""
    return train_tokenizer([p.read_text() for p in sorted(PKG.glob("*.py"))[:6]], 500)


@pytest.fixture(scope="module")
def model(tok):
    """A small random course model over ``tok``'s vocabulary."""
    torch.manual_seed(0)
    cfg = QwenConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=64, rope_theta=10_000.0)
    return QwenForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def filler(tok):
    """Real code ids to fill long prompts with."""
    return encode_data(tok, "\n".join(p.read_text() for p in sorted(PKG.glob("*.py"))[:4]))


def test_loss_by_position_averages_to_the_next_token_loss(model, filler):
    T = 40
    samples = [filler[i * T : (i + 1) * T] for i in range(5)]
    curve = loss_by_position(model, samples, T, batch_size=2)
    assert curve.shape == (T - 1,)
    with torch.no_grad():
        ids = torch.tensor(samples)
        ref = next_token_loss(model(ids), ids).item()
    assert curve.mean() == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="sample 1"):
        loss_by_position(model, [filler[:T], filler[:5]], T)
    b = bucket_means(np.arange(10.0), 3)
    assert b.tolist() == [1.0, 4.0, 7.5]


def test_needle_prompt_layout(tok, filler):
    rng = random.Random(0)
    p = needle_prompt(tok, filler, 300, rng)
    assert isinstance(p, NeedlePrompt)
    assert len(p.ids) == len(p.control) == 300
    name_ids = encode_data(tok, " " + p.name)
    assert p.ids[-len(name_ids):] == name_ids and p.control[-len(name_ids):] == name_ids
    assert p.answer.stop == 300 and p.answer.stop - p.answer.start == len(name_ids) - 1
    # the definition is in the prompt and not in the control
    text = tok.decode(p.ids)
    assert f"def {p.name}(x)" in text and f"def {p.name}" not in tok.decode(p.control)
    assert len(name_ids) >= 3  # several tokens to copy
    assert needle_name(random.Random(1)) != needle_name(random.Random(2))
    with pytest.raises(ValueError, match="filler"):
        needle_prompt(tok, filler[:50], 300, rng)


def test_needle_scores_agree_with_greedy_generation(tok, model, filler):
    rng = random.Random(3)
    prompts = [needle_prompt(tok, filler[i * 100 :], 120, rng) for i in range(3)]
    # make the model right on the first prompt: greedy generation is the reference of "completed"
    scores = needle_scores(model, prompts, batch_size=2)
    one_by_one = needle_scores(model, prompts, batch_size=1)
    assert scores.keys() == one_by_one.keys()
    assert all(abs(scores[k] - one_by_one[k]) < 1e-4 for k in scores)  # batching changes nothing
    assert scores["gain"] == pytest.approx(scores["logprob"] - scores["control_logprob"])
    for key in ("accuracy", "completed", "control_accuracy"):
        assert 0.0 <= scores[key] <= 1.0
    assert scores["logprob"] < 0
    done = []
    for p in prompts:
        n = p.answer.stop - p.answer.start
        out = model.generate([p.ids[: p.answer.start]], n)[0]
        done.append(out == p.ids[p.answer.start :])
    assert scores["completed"] == pytest.approx(np.mean(done))


def test_stage_two_model_keeps_weights_and_changes_only_rope(model):
    two = stage_two_model(model, 256, 1e6)
    assert two.config.rope_theta == 1e6 and two.config.max_position_embeddings == 256
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 two.state_dict().values()))
    ids = torch.randint(0, model.config.vocab_size, (1, 30))
    with torch.no_grad():
        a, b = model(ids), two(ids)
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-6)  # position 0: no rotation either way
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-4  # later positions rotate differently


def test_repo_stage_restarts_optimizer_and_schedule(tok, model, tmp_path):
    from qcoder_lib.train import read_training_log

    data = RepoLevelConfig(max_tokens=128, samples_per_repo=3, max_files_per_repo=8)
    run = repo_stage(model, tok, tmp_path / "s2", roots=[PKG], seq_len=128, steps=4,
                     batch_size=2, lr=1e-3, warmup_steps=2, data=data)
    assert run.result.steps == 4 and run.data.longest <= 128 and run.rope_theta == 1e6
    log = read_training_log(run.result.metrics_path)
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # the step counter starts again
    assert log[0]["lr"] < log[1]["lr"]  # a new warm-up
    cfg = (run.result.final_dir / "config.json").read_text()
    assert '"rope_theta": 1000000.0' in cfg
    assert not list((tmp_path / "s2" / "run").glob("checkpoint-*"))
    assert repo_stage_preset("smoke") is REPO_STAGE_PRESETS["smoke"]
    with pytest.raises(ValueError, match="tpu"):
        repo_stage_preset("tpu")


def test_attention_cost_rows():
    rows = attention_cost([32, 64], heads=2, head_dim=8, repeats=1)
    assert [r["T"] for r in rows] == [32, 64]
    assert rows[1]["scores_MiB"] == pytest.approx(4 * rows[0]["scores_MiB"])  # T^2
    assert all(r["eager_ms"] > 0 and r["sdpa_ms"] > 0 for r in rows)
