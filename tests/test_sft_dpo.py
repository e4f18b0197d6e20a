"""qcoder_lib.sft.dpo: the loss against the DPO paper's formula and TRL's DPOTrainer,
execution-ranked preference pairs, a frozen reference, pass rate."""

import copy
import math
import warnings

import pytest
import torch

from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.sft.dpo import (
    DPOConfig,
    DPOResult,
    PreferencePair,
    build_preference_pairs,
    dpo_loss,
    encode_pair,
    eval_tasks,
    freeze,
    pair_tasks,
    pass_rate,
    sequence_logps,
    train_dpo,
)
from qcoder_lib.sft.samples import InstructionPair
from qcoder_lib.tokenizer import course_tokenizer, special_id


@pytest.fixture(scope="module")
def tok():
    return course_tokenizer("smoke")


def test_dpo_loss_equals_the_paper_formula_on_fixed_logps():
    pc, pr = torch.tensor([-3.0, -10.0, -7.5]), torch.tensor([-4.0, -9.0, -7.5])
    rc, rr = torch.tensor([-3.5, -9.0, -8.0]), torch.tensor([-3.0, -9.5, -6.0])
    beta = 0.2
    loss, chosen_r, rejected_r = dpo_loss(pc, pr, rc, rr, beta)
    want = [-math.log(1 / (1 + math.exp(-beta * ((a - b) - (c - d)))))
            for a, c, b, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert float(loss) == pytest.approx(sum(want) / 3, rel=1e-6)
    assert torch.allclose(chosen_r, beta * (pc - rc)) and torch.allclose(rejected_r, beta * (pr - rr))
    same, _, _ = dpo_loss(pc, pr, pc, pr, beta)  # policy == reference: log 2
    assert float(same) == pytest.approx(math.log(2), rel=1e-6)


def test_dpo_loss_equals_trl_dpotrainer_on_the_same_batch(tok, hf_tiny_model, tmp_path):
    trl = pytest.importorskip("trl", reason="trl is the reference implementation (dev extra)")
    from datasets import Dataset

    policy = hf_tiny_model(vocab_size=len(tok), seed=1)
    reference = hf_tiny_model(vocab_size=len(tok), seed=2)
    ds = Dataset.from_list([
        {"prompt": [{"role": "user", "content": "Add one to x."}],
         "chosen": [{"role": "assistant", "content": "x + 1"}],
         "rejected": [{"role": "assistant", "content": "x - 1  # wrong"}]},
        {"prompt": [{"role": "user", "content": "Say hi."}],
         "chosen": [{"role": "assistant", "content": "hi"}],
         "rejected": [{"role": "assistant", "content": "bye bye"}]}])
    args = trl.DPOConfig(output_dir=str(tmp_path), beta=0.1, per_device_train_batch_size=2,
                         report_to=[], use_cpu=True, max_steps=1, save_strategy="no")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.DPOTrainer(model=policy, ref_model=reference, args=args,
                                 train_dataset=ds, processing_class=tok)
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.eval()
        with torch.no_grad():
            theirs = float(trainer.compute_loss(trainer.model, batch))
    # ours, on the same token ids: the answer tokens are TRL's completion tokens
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE_INDEX)
    with torch.no_grad():
        lp = sequence_logps(policy, batch["input_ids"], labels, batch["attention_mask"])
        rp = sequence_logps(reference, batch["input_ids"], labels, batch["attention_mask"])
    ours, _, _ = dpo_loss(lp[:2], lp[2:], rp[:2], rp[2:], 0.1)
    assert float(ours) == pytest.approx(theirs, abs=1e-5)
    # and TRL's completion tokens are exactly our labels: the answer, <|im_end|>, newline
    pair = PreferencePair(ds[0]["prompt"], "x + 1", "x - 1  # wrong")
    (cids, clab), _ = encode_pair(tok, pair, 512)
    ours_on = [t for t, lab in zip(cids, clab) if lab != IGNORE_INDEX]
    row = batch["input_ids"][0][batch["completion_mask"][0].bool()].tolist()
    assert ours_on == row


def test_preference_pairs_from_execution_and_frozen_reference(tok, tiny_qwen):
    model = tiny_qwen(vocab_size=len(tok))
    good = InstructionPair("Write f returning 1.", "```python\ndef f():\n    return 1\n```",
                           "python", "implement", "s", tests="assert f() == 1\n")
    tasks = pair_tasks([good, InstructionPair("Explain.", "x", "python", "explain", "s")])
    assert len(tasks) == 1 and tasks[0]["reference"] == good.response
    pairs, counts = build_preference_pairs(model, tok, tasks, 2, max_new_tokens=8,
                                           timeout_s=20)
    # a random model fails; the verified reference passes: 2 pairs (reference vs each sample)
    assert counts["answers_passed"] == 1 and counts["pairs"] == len(pairs) == 2
    assert all(p.chosen == good.response and p.rejected != good.response for p in pairs)
    reference = copy.deepcopy(model)
    before = [p.detach().clone() for p in reference.parameters()]
    res = train_dpo(model, reference, tok, pairs,
                    DPOConfig(steps=6, batch_size=2, lr=3e-3),
                    pad_id=special_id(tok, "<|endoftext|>"))
    assert isinstance(res, DPOResult) and len(res.accuracies) == 6
    assert all(not p.requires_grad for p in reference.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, reference.parameters()))
    assert res.losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy starts at reference
    assert res.losses[-1] < res.losses[0] and res.reward_margins[-1] > 0
    assert freeze(torch.nn.Linear(2, 2)).weight.requires_grad is False


def test_pass_rate_on_course_eval_tasks(tok, tiny_qwen):
    from qcoder_lib.data import read_jsonl
    from qcoder_lib.io import resource_path

    records = [r for _, r in read_jsonl(resource_path("eval", "course_eval.jsonl"))]
    tasks = eval_tasks(records[:2])
    assert tasks[0]["prompt"][0]["content"].count("def ") == 1
    rate, status = pass_rate(tiny_qwen(vocab_size=len(tok)), tok, tasks, max_new_tokens=8,
                             timeout_s=20)
    assert rate == 0.0 and len(status) == 2 and "passed" not in status
