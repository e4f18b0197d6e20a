"""``qcoder sft`` and ``qcoder dpo``: every option explained; the two stages run end to end."""

import json

import pytest

from qcoder_lib.cli import build_parser, main
from qcoder_lib.cli.dpo import add_parser as add_dpo_parser
from qcoder_lib.cli.sft import add_parser as add_sft_parser
from qcoder_lib.sft.recipe import SFTRun, load_model_and_tokenizer, run_dpo, run_sft


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_help_explains_every_option(stage):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[stage]
    for action in sub._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 10, (stage, action.dest)
    assert stage in parser.format_help()
    import argparse

    fresh = argparse.ArgumentParser().add_subparsers()
    add = add_sft_parser if stage == "sft" else add_dpo_parser
    assert add(fresh).prog.endswith(stage)


def test_sft_then_dpo_from_the_command_line(tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("QCODER_PROFILE", "smoke")
    assert main(["sft", "--profile", "smoke", "--out", str(tmp_path / "sft"), "--mode", "lora",
                 "--stage1-steps", "2", "--stage2-steps", "1", "--stdlib-functions", "0",
                 "--max-new-tokens", "8", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "decontam" in out and "stage1: 2 steps" in out and "stage2: 1 steps" in out
    report = json.loads((tmp_path / "sft" / "data" / "report.json").read_text())
    lines = (tmp_path / "sft" / "data" / "instructions.jsonl").read_text().splitlines()
    assert report["pairs"] == len(lines) and report["trainable"] < report["total"]
    assert any(json.loads(line)["kind"] == "fim" for line in lines)
    final = tmp_path / "sft" / "final"
    merged = AutoModelForCausalLM.from_pretrained(final)  # LoRA merged into a plain model
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert main(["dpo", "--profile", "smoke", "--out", str(tmp_path / "dpo"), "--sft", str(final),
                 "--samples", "1", "--steps", "2", "--max-new-tokens", "8"]) == 0
    summary = json.loads((tmp_path / "dpo" / "dpo.json").read_text())
    assert summary["pairs"]["pairs"] > 0 and summary["eval_tasks"] == 4
    assert (tmp_path / "dpo" / "final" / "model.safetensors").exists()
    assert "greedy pass rate on 4 course eval tasks" in capsys.readouterr().out


def test_recipe_functions_directly(tmp_path):
    from qcoder_lib.model import QwenForCausalLM

    model, tok = load_model_and_tokenizer(None, "smoke", "full")
    assert isinstance(model, QwenForCausalLM) and "<|im_end|>" in tok.get_vocab()
    with pytest.raises(ValueError, match="full, lora or qlora"):
        run_sft(tmp_path, profile="smoke", mode="adapter")
    assert SFTRun().final_dir is None
    with pytest.raises(OSError):
        run_dpo(tmp_path / "d", tmp_path / "missing", profile="smoke")
