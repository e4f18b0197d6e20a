"""The pretraining stage of a profile, end to end: tokenizer -> corpus -> FIM -> rows -> model ->
train -> ``final/``. Notebook 06 walks through the same steps one cell at a time; ``qcoder
pretrain`` calls :func:`pretrain`.

:data:`PRETRAIN_PRESETS` holds each profile's sizes (course choices, tuned for the profile's
time budget by ``benchmarks/train_sweep.py``); the data recipe is Qwen's: the 70/20/10 mix, FIM on
code documents at rate 0.5 in PSM, RoPE base 10,000 (the course presets), the held-out split by
document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from qcoder_lib.fim import FIMConfig
from qcoder_lib.train.config import TrainConfig


@dataclass
class PretrainPreset:
    """A profile's pretraining sizes (course choices; see the module docstring)."""

    model: dict = field(default_factory=dict)  # QwenConfig overrides on QwenConfig.preset(profile)
    seq_len: int = 128  # tokens per row
    batch_size: int = 16  # rows per optimizer step
    steps: int = 200  # optimizer steps
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # min_lr = lr * this (cosine floor)
    warmup_steps: int = 10  # linear warm-up steps
    fim_rate: float = 0.5  # share of code documents turned into PSM FIM samples
    held_out: float = 0.05  # share of documents set aside (by document)
    eval_every: int = 25  # held-out loss every N steps
    eval_rows: int = 64  # held-out rows per evaluation
    checkpoint_every: int = 100  # checkpoint every N steps

    def train_config(self, out_dir, **changes) -> TrainConfig:
        """The :class:`TrainConfig` of this preset writing to ``out_dir`` (``changes`` override
        fields of the TrainConfig)."""
        steps = changes.pop("steps", self.steps)
        fields = {
            "steps": steps, "batch_size": self.batch_size, "seq_len": self.seq_len,
            "lr": self.lr, "min_lr": self.lr * self.min_lr_ratio,
            "warmup_steps": min(self.warmup_steps, steps // 2),
            "eval_every": min(self.eval_every, steps), "eval_rows": self.eval_rows,
            "checkpoint_every": min(self.checkpoint_every, steps), "keep_last": 2,
            "out_dir": str(out_dir),
        }
        fields.update(changes)
        return TrainConfig(**fields)


PRETRAIN_PRESETS = {
    "smoke": PretrainPreset(seq_len=128, batch_size=16, steps=150, lr=3e-3, eval_every=25,
                            eval_rows=32, checkpoint_every=75),
    # cpu: chosen with benchmarks/train_sweep.py on 2 idle cores for notebook 06's budget, two
    # runs of about 5 minutes (the main run and the FIM experiment's rate-0 run); results in
    # benchmarks/results/2026-11-30-cpu-train-sweep.md. A tiny model seeing many tokens wins:
    # 3 layers x 128 (0.87 M parameters with the 2,048-token tokenizer) at ~15,000 tokens/s
    # reached a held-out 3.33 nats (1.80 bits/byte) in 4.6 M tokens; 4 x 256 with 8,192 tokens
    # saw 0.45 M tokens in 150 s and reached 6.32 (2.69); 2 x 128 reached 3.12 nats in 5 min but
    # its completions rarely parse. Small batches (more steps) and lr 1e-2 beat larger ones.
    # The model is QwenConfig.preset("cpu") itself.
    "cpu": PretrainPreset(seq_len=128, batch_size=16, steps=2200, lr=1e-2, warmup_steps=100,
                          eval_every=550, eval_rows=64, checkpoint_every=1100),
    "gpu": PretrainPreset(seq_len=1024, batch_size=32, steps=6000, lr=6e-4, warmup_steps=200,
                          eval_every=500, eval_rows=256, checkpoint_every=1000),
}


def pretrain_preset(profile: str | None = None) -> PretrainPreset:
    """The preset of ``profile`` (default: the current profile)."""
    from qcoder_lib.runtime import get_profile

    profile = profile or get_profile()
    if profile not in PRETRAIN_PRESETS:
        raise ValueError(f"no pretraining preset for profile {profile!r}; one of "
                         f"{', '.join(PRETRAIN_PRESETS)}")
    return PRETRAIN_PRESETS[profile]


def course_corpus(profile: str, tokenizer, folder=None, progress: bool = False) -> Path:
    """The profile's mixed corpus as token shards, built once into ``folder`` (default
    ``artifacts/pretrain/corpus-<profile>``; written atomically) and reused by later calls while
    ``corpus.json`` there names the same tokenizer (:func:`tokenizer_fingerprint`); a corpus of
    another tokenizer (the profile's vocabulary changed) is rebuilt, never read with wrong ids."""
    import json

    from qcoder_lib.data import build_corpus, profile_config
    from qcoder_lib.io import FileLock, artifacts_dir, atomic_dir, atomic_write_text
    from qcoder_lib.tokenizer import tokenizer_fingerprint

    folder = Path(folder or artifacts_dir() / "pretrain" / f"corpus-{profile}")
    recipe = {"profile": profile, "tokenizer": tokenizer_fingerprint(tokenizer)}
    marker = folder / "corpus.json"
    with FileLock(folder.with_name(folder.name + ".lock")):
        try:
            fresh = json.loads(marker.read_text()) == recipe and (folder / "index.json").exists()
        except (OSError, ValueError):
            fresh = False
        if not fresh:
            with atomic_dir(folder) as tmp:
                build_corpus(tmp, profile_config(profile), tokenizer=tokenizer, progress=progress)
                atomic_write_text(tmp / "corpus.json", json.dumps(recipe))
    return folder


def fim_corpus(corpus: Path, tokenizer, fim_rate: float, out, seed: int = 0):
    """FIM applied to ``corpus`` (PSM, code only) into ``out``; returns the stage's report."""
    from qcoder_lib.fim_stage import fim_shards

    return fim_shards(corpus, out, tokenizer, FIMConfig(fim_rate=fim_rate), seed=seed)


def course_model(profile: str, tokenizer, preset: PretrainPreset | None = None, seed: int = 0):
    """A fresh model of the profile's size for ``tokenizer`` (end-of-text as bos/eos)."""
    import torch

    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.tokenizer import special_id

    preset = preset or pretrain_preset(profile)
    eos = special_id(tokenizer, "<|endoftext|>")
    cfg = QwenConfig.preset(profile, tokenizer=tokenizer, bos_token_id=eos, eos_token_id=eos,
                            **preset.model)
    torch.manual_seed(seed)
    return QwenForCausalLM(cfg)


@dataclass
class PretrainRun:
    """What :func:`pretrain` did."""

    profile: str  # the scale profile
    preset: dict  # the PretrainPreset's fields used
    fim: dict  # the FIM stage's report (documents, code documents, FIM samples, tokens)
    train_rows: int  # rows in the training split
    held_out_rows: int  # rows in the held-out split
    result: object  # the TrainResult


def pretrain(profile: str, out, *, steps: int | None = None, fim_rate: float | None = None,
             resume: bool = False, progress: bool = True, device=None, seed: int = 0,
             on_step=None, **train_changes) -> PretrainRun:
    """Run the profile's pretraining stage into ``out`` (``out/fim-corpus``, the run's
    metrics, checkpoints and ``final/``). ``steps`` / ``fim_rate`` override the preset;
    ``train_changes`` override TrainConfig fields (``dtype``, ``compile``, ...)."""
    from qcoder_lib.runtime import get_device
    from qcoder_lib.tokenizer import course_tokenizer
    from qcoder_lib.train.loop import train
    from qcoder_lib.train.rows import ShardRows

    preset = pretrain_preset(profile)
    if fim_rate is not None:
        preset = PretrainPreset(**{**asdict(preset), "fim_rate": fim_rate})
    out = Path(out)
    tok = course_tokenizer(profile)
    corpus = course_corpus(profile, tok, progress=progress)
    fim_dir = out / "fim-corpus"
    if resume and (fim_dir / "index.json").exists():
        from qcoder_lib.fim_stage import FIMStageReport

        fim_report = FIMStageReport()  # the corpus of the run being resumed, unchanged
    else:
        fim_report = fim_corpus(corpus, tok, preset.fim_rate, fim_dir, seed=seed)
    rows = ShardRows(fim_dir, preset.seq_len)
    train_rows, held = rows.split(preset.held_out, seed=seed)
    device = device or (get_device() if profile == "gpu" else "cpu")
    model = course_model(profile, tok, preset, seed=seed).to(device)
    cfg = preset.train_config(out / "run", steps=steps or preset.steps, seed=seed,
                              progress=progress, **train_changes)
    result = train(model, train_rows, cfg, eval_data=held, resume=resume, tokenizer=tok,
                   on_step=on_step)
    return PretrainRun(profile, asdict(preset), asdict(fim_report), len(train_rows), len(held),
                       result)
