"""``qcoder pretrain`` on the smoke profile: a few steps, a summary, an HF model; resume."""

import json
import subprocess
import sys

from qcoder_lib.cli import build_parser, main
from qcoder_lib.train import list_checkpoints, read_training_log


def test_pretrain_help_explains_every_option(capsys):
    try:
        main(["pretrain", "--help"])
    except SystemExit as e:
        assert e.code == 0
    text = capsys.readouterr().out
    for opt in ("--profile", "--out", "--steps", "--fim-rate", "--resume", "--dtype",
                "--grad-accum", "--compile", "--activation-checkpointing", "--seed"):
        assert opt in text
    action = next(a for a in build_parser()._subparsers._group_actions[0].choices[
        "pretrain"]._actions if a.dest == "fim_rate")
    assert action.help


def test_pretrain_smoke_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "pt"
    assert main(["pretrain", "--profile", "smoke", "--out", str(out), "--steps", "4",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "4 steps" in text and "held-out" in text and "bits/byte" in text
    assert "pt/run/final" in text and "/tmp" not in text
    final = out / "run" / "final"
    cfg = json.loads((final / "config.json").read_text())
    theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
    assert theta == 10000.0  # Qwen's file-level stage
    log = read_training_log(out / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4] and "eval_loss" in log[-1]
    index = json.loads((out / "fim-corpus" / "index.json").read_text())
    assert index["fim"] == {"fim_rate": 0.5, "spm_rate": 0.0, "code_only": True, "seed": 0}
    # a longer run resumes from checkpoint-4 with the same data
    assert main(["pretrain", "--profile", "smoke", "--out", str(out), "--steps", "4",
                 "--no-progress", "--resume"]) == 0
    assert [s for s, _ in list_checkpoints(out / "run")] == [4]


def test_python_dash_m_reaches_the_command():
    r = subprocess.run([sys.executable, "-m", "qcoder_lib", "pretrain", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--fim-rate" in r.stdout
