"""The README's "recipe in a dozen lines" runs as written, on the smoke profile, in an empty
folder: tokenizer, corpus, FIM, model, training, and an HF-format model that transformers loads."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _recipe() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The recipe in a dozen lines", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_recipe_is_a_dozen_lines():
    code = [line for line in _recipe().splitlines() if line.strip()]
    assert len(code) <= 14, code


@pytest.mark.slow
def test_the_readme_recipe_runs_on_smoke(tmp_path):
    env = {**os.environ, "QCODER_PROFILE": "smoke"}
    out = subprocess.run([sys.executable, "-c", _recipe()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    final = tmp_path / "work" / "run" / "final"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.config.model_type == "qwen2"
    held_out_loss = float(out.stdout.split()[-1])
    assert 0 < held_out_loss < 8.0  # nats; a fresh model of a 2k vocabulary starts near ln(2070)=7.6
