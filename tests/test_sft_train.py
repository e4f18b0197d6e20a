"""qcoder_lib.sft training: padding vs packing, full SFT, LoRA, QLoRA, merge, HF save."""

import copy
import warnings

import pytest
import torch

from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.sft.lora import (
    LoraSettings,
    add_lora,
    add_qlora,
    as_hf_model,
    load_4bit,
    merge_lora,
    parameter_counts,
    save_hf,
    weight_bytes,
)
from qcoder_lib.sft.samples import InstructionPair
from qcoder_lib.sft.sampling import answer_code, is_course_model, judge_answers, sample_answers
from qcoder_lib.sft.trainer import (
    SFTConfig,
    SFTResult,
    encode_conversations,
    has_4bit_layers,
    lr_factor,
    mean_loss,
    model_logits,
    pack_examples,
    pad_batch,
    rejection_sample,
    sft_loss,
    train_sft,
)
from qcoder_lib.tokenizer import course_tokenizer, special_id

CONVS = [
    [{"role": "user", "content": "Add two numbers."},
     {"role": "assistant", "content": "def add(a, b):\n    return a + b"}],
    [{"role": "user", "content": "Square x."},
     {"role": "assistant", "content": "def square(x):\n    return x * x"}],
    [{"role": "user", "content": "Greet."}, {"role": "assistant", "content": "print('hi')"},
     {"role": "user", "content": "Louder."}, {"role": "assistant", "content": "print('HI')"}],
]


@pytest.fixture(scope="module")
def tok():
    return course_tokenizer("smoke")


@pytest.fixture(scope="module")
def examples(tok):
    return encode_conversations(tok, CONVS, 128)


@pytest.fixture(scope="module")
def pad(tok):
    return special_id(tok, "<|endoftext|>")


def _course_model(tok, tiny_qwen, seed=0):
    return tiny_qwen(vocab_size=len(tok), seed=seed)


def _token_loss_sum(model, batch, packed):
    logits = model_logits(model, batch["input_ids"], batch.get("position_ids") if packed else None,
                          None if packed else batch["attention_mask"])
    loss, n = sft_loss(logits, batch["labels"], batch.get("position_ids") if packed else None)
    return float(loss) * n, n


@pytest.mark.parametrize("kind", ["course", "hf"])
def test_packing_gives_the_padded_loss(kind, tok, examples, pad, tiny_qwen):
    model = _course_model(tok, tiny_qwen)
    if kind == "hf":
        model = as_hf_model(model)
    padded = pad_batch(examples, pad)
    assert padded["input_ids"].shape == (3, max(len(i) for i, _ in examples))
    rows = pack_examples(examples, 512, pad)
    assert len(rows) == 1 and rows[0]["position_ids"].tolist().count(0) == 4  # 3 + the pad tail
    packed = {k: v[None] for k, v in rows[0].items()}
    with torch.no_grad():
        s_pad, n_pad = _token_loss_sum(model, padded, False)
        s_pack, n_pack = _token_loss_sum(model, packed, True)
    assert n_pad == n_pack == sum(sum(x != IGNORE_INDEX for x in lab[1:]) for _, lab in examples)
    assert s_pack == pytest.approx(s_pad, rel=1e-5)  # fp32 sums of the same per-token terms


def test_full_sft_reduces_loss_and_schedule(tok, examples, pad, tiny_qwen):
    model = _course_model(tok, tiny_qwen)
    before = mean_loss(model, examples, pad_id=pad)
    cfg = SFTConfig(steps=12, batch_size=3, lr=3e-3, warmup_steps=2)
    res = train_sft(model, examples, cfg, pad_id=pad)
    after = mean_loss(model, examples, pad_id=pad)
    assert isinstance(res, SFTResult) and res.steps == 12 and len(res.losses) == 12 and res.trained_tokens > 0
    assert after < before - 0.5, (before, after)
    assert lr_factor(0, cfg) == 0.5 and lr_factor(1, cfg) == 1.0
    assert lr_factor(cfg.steps, cfg) == pytest.approx(cfg.min_lr_ratio)
    res = train_sft(model, examples, SFTConfig(steps=2, batch_size=1, max_len=256, packing=True),
                    pad_id=pad)
    assert res.steps == 2


def test_lora_defaults_reduce_loss_and_merge_exactly(tok, examples, pad, tiny_qwen, tmp_path):
    s = LoraSettings()
    assert (s.r, s.alpha, s.dropout) == (8, 32, 0.1)
    model = _course_model(tok, tiny_qwen)
    lm = add_lora(model)
    trainable, total = parameter_counts(lm)
    assert 0 < trainable < total / 5
    before = mean_loss(lm, examples, pad_id=pad)
    train_sft(lm, examples, SFTConfig(steps=8, batch_size=3, lr=2e-2, warmup_steps=1),
              pad_id=pad)
    after = mean_loss(lm, examples, pad_id=pad)
    assert after < before - 0.2, (before, after)
    ids = pad_batch(examples, pad)
    lm.eval()
    with torch.no_grad():
        adapter = model_logits(lm, ids["input_ids"], None, ids["attention_mask"])
        merged = merge_lora(lm)
        assert not any("lora" in n for n, _ in merged.named_parameters())
        folded = model_logits(merged, ids["input_ids"], None, ids["attention_mask"])
    assert torch.allclose(adapter, folded, atol=1e-5, rtol=1e-5)
    from transformers import AutoModelForCausalLM

    save_hf(merged, tmp_path / "m", tok)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        reloaded = model_logits(again, ids["input_ids"], None, ids["attention_mask"])
    assert torch.allclose(reloaded, folded, atol=1e-5)
    assert (tmp_path / "m" / "tokenizer.json").exists()


def test_qlora_4bit_nf4_on_this_machine_reduces_loss(tok, examples, pad, hf_tiny_model):
    base = hf_tiny_model(vocab_size=len(tok), hidden_size=64, intermediate_size=128, std=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = load_4bit(base)
        qm = add_qlora(base)
    import bitsandbytes as bnb

    assert isinstance(q.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert q.model.layers[0].self_attn.q_proj.weight.quant_state.quant_type == "nf4"
    assert weight_bytes(q) < weight_bytes(base)
    assert has_4bit_layers(q) and not has_4bit_layers(base)
    trainable, total = parameter_counts(qm)
    assert 0 < trainable < total / 5
    assert total == pytest.approx(parameter_counts(add_lora(copy.deepcopy(base)))[1], rel=0.01)
    before = mean_loss(qm, examples, pad_id=pad)
    train_sft(qm, examples, SFTConfig(steps=8, batch_size=3, lr=1e-2, warmup_steps=1),
              pad_id=pad)
    after = mean_loss(qm, examples, pad_id=pad)
    assert after < before - 0.1, (before, after)


def test_rejection_sample_keeps_only_passing_answers(tok, tiny_qwen):
    model = _course_model(tok, tiny_qwen)
    tested = InstructionPair("Write f.", "```python\ndef f():\n    return 1\n```", "python",
                             "implement", "t", tests="assert f() == 1\n")
    plain = InstructionPair("Explain.", "It adds.", "python", "explain", "t")
    out, counts = rejection_sample(model, tok, [tested, plain], n=2, max_new_tokens=8,
                                   timeout_s=20)
    assert counts["sampled"] == 2 and counts["untested_kept"] == 1
    assert len(out) == 1 + counts["passed"] and out[0] is plain  # a random model passes nothing
    with pytest.raises(ValueError, match="no examples"):
        train_sft(model, [], SFTConfig(steps=1))


def test_sampling_same_greedy_answers_from_course_and_hf_models(tok, tiny_qwen):
    model = _course_model(tok, tiny_qwen, seed=3)
    hf = as_hf_model(model)
    assert is_course_model(model) and not is_course_model(hf)
    convs = [[{"role": "user", "content": "Write f."}], [{"role": "user", "content": "Hi"}]]
    ours = sample_answers(model, tok, convs, 1, temperature=0.0, max_new_tokens=6)
    theirs = sample_answers(hf, tok, convs, 1, temperature=0.0, max_new_tokens=6)
    assert ours == theirs and len(ours) == 2 and len(ours[0]) == 1
    assert sample_answers(model, tok, [], 2) == []
    assert answer_code("Here:\n```python\nx = 1\n```\nDone") == "x = 1\n"
    assert answer_code("x = 2") == "x = 2"
    status = judge_answers([["```python\ndef g():\n    return 2\n```", "def g():\n    return 3"]],
                           ["assert g() == 2\n"], timeout_s=20)
    assert status == [["passed", "failed"]]
