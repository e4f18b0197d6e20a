"""The SFT and DPO stages end to end, as ``qcoder sft`` / ``qcoder dpo`` and notebook 09 run
them: instruction data -> coarse-to-fine SFT (full, LoRA or QLoRA) -> HF folder; then
execution-ranked pairs -> DPO against the frozen SFT model -> HF folder, pass rate before/after.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qcoder_lib.runtime import by_profile


@dataclass
class SFTRun:
    """What :func:`run_sft` did."""

    report_rows: list = field(default_factory=list)  # the data pipeline's table
    pairs: int = 0  # instruction pairs kept (FIM mix included)
    stage_losses: dict = field(default_factory=dict)  # "stage1"/"stage2" -> losses per step
    rejection: dict = field(default_factory=dict)  # stage-2 rejection-sampling counts
    trainable: int = 0  # trainable parameters
    total: int = 0  # all parameters
    final_dir: Path | None = None  # the HF-format model


def load_model_and_tokenizer(base: str | None, profile: str, mode: str):
    """The model to tune and its tokenizer: ``base`` (an HF folder or hub name of any
    Qwen2-family model; its tokenizer when it has one) or, without it, a fresh course model of
    the profile with the course tokenizer. ``full`` mode on a course model keeps the course
    class; LoRA / QLoRA get a transformers model."""
    import torch

    from qcoder_lib.model import QwenConfig, QwenForCausalLM
    from qcoder_lib.tokenizer import course_tokenizer

    tok = None
    if base is not None:
        try:
            from qcoder_lib.tokenizer import load_tokenizer

            tok = load_tokenizer(base)
        except (OSError, ValueError):
            tok = None
    tok = tok or course_tokenizer(profile)
    if mode == "qlora":
        if base is None:
            torch.manual_seed(0)
            return QwenForCausalLM(QwenConfig.preset(profile, tokenizer=tok)), tok
        return str(base), tok  # loaded in 4-bit by add_qlora
    if base is None:
        torch.manual_seed(0)
        return QwenForCausalLM(QwenConfig.preset(profile, tokenizer=tok)), tok
    if mode == "full":
        from qcoder_lib.model.hf_interop import from_hf

        return from_hf(base), tok
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base), tok


def run_sft(out, *, profile: str, base: str | None = None, mode: str = "full",
            fim_share: float = 0.1, stage1_steps: int | None = None,
            stage2_steps: int | None = None, packing: bool = False, lr: float | None = None,
            stdlib_functions: int | None = None, progress: bool = True, seed: int = 0,
            max_new_tokens: int = 128) -> SFTRun:
    """Instruction data, stage 1 (every kept pair + FIM mix) and stage 2 (pairs verified by
    tests + rejection samples) into ``out``: ``data/instructions.jsonl``, ``data/report.json``
    and the tuned model in ``final/`` (LoRA merged; QLoRA: the adapter in ``adapter/``).
    Rejection-sampled answers have at most ``max_new_tokens`` tokens."""
    from qcoder_lib.sft.fim_instructions import fim_instructions, mix_fim
    from qcoder_lib.sft.instructions import build_instructions
    from qcoder_lib.sft.lora import add_lora, add_qlora, merge_lora, parameter_counts, save_hf
    from qcoder_lib.sft.snippets import seed_snippets, stdlib_snippets
    from qcoder_lib.sft.trainer import SFTConfig, encode_conversations, rejection_sample, train_sft
    from qcoder_lib.tokenizer import special_id

    if mode not in ("full", "lora", "qlora"):
        raise ValueError(f"mode {mode!r}: use full, lora or qlora")
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    n_std = stdlib_functions if stdlib_functions is not None else by_profile(10, 60, 400,
                                                                              profile=profile)
    snippets = seed_snippets() + list(stdlib_snippets(n_std))
    pairs, report = build_instructions(snippets)
    fims, _ = fim_instructions([s for s in snippets if not s.note], seed=seed)
    mixed = mix_fim(pairs, fims, fim_share, seed=seed)
    with open(out / "data" / "instructions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(asdict(p)) + "\n" for p in mixed)
    run = SFTRun(report_rows=report.rows(), pairs=len(mixed))
    model, tok = load_model_and_tokenizer(base, profile, mode)
    if mode == "lora":
        model = add_lora(model)
    elif mode == "qlora":
        model = add_qlora(model)
    run.trainable, run.total = parameter_counts(model)
    pad = special_id(tok, "<|endoftext|>")
    default_lr = 1e-3 if mode == "full" else 3e-3
    s1 = SFTConfig(steps=stage1_steps or by_profile(20, 200, 1000, profile=profile),
                   batch_size=by_profile(4, 8, 16, profile=profile), max_len=512,
                   packing=packing, lr=lr or default_lr, seed=seed)
    ex1 = encode_conversations(tok, [p.messages() for p in mixed], s1.max_len)
    run.stage_losses["stage1"] = train_sft(model, ex1, s1, pad_id=pad, progress=progress).losses
    tested = [p for p in pairs if p.tests]
    if mode != "qlora":  # sampling runs under no_grad: not on a 4-bit model still training
        sampled, run.rejection = rejection_sample(
            model, tok, tested, n=by_profile(2, 4, 8, profile=profile), seed=seed,
            max_new_tokens=max_new_tokens)
    else:
        sampled, run.rejection = [], {"skipped": "qlora"}
    stage2 = tested + sampled  # verified by their tests, plus the samples that passed them
    s2 = SFTConfig(steps=stage2_steps or max(2, s1.steps // 4), batch_size=s1.batch_size,
                   max_len=512, packing=packing, lr=s1.lr / 4, seed=seed + 1, warmup_steps=1)
    ex2 = encode_conversations(tok, [p.messages() for p in stage2], s2.max_len)
    if ex2:
        run.stage_losses["stage2"] = train_sft(model, ex2, s2, pad_id=pad,
                                               progress=progress).losses
    final = merge_lora(model) if mode in ("lora",) else model
    if mode == "qlora":  # the 4-bit base cannot be saved merged in full precision here
        final.save_pretrained(out / "adapter")
        run.final_dir = out / "adapter"
    else:
        run.final_dir = save_hf(final, out / "final", tok)
    (out / "data" / "report.json").write_text(json.dumps(
        {"pipeline": run.report_rows, "pairs": run.pairs, "rejection": run.rejection,
         "trainable": run.trainable, "total": run.total,
         "final_loss": {k: v[-1] for k, v in run.stage_losses.items() if v}}, indent=1))
    return run


def run_dpo(out, sft_dir, *, profile: str, samples: int | None = None, steps: int | None = None,
            beta: float = 0.1, lr: float = 1e-4, seed: int = 0, max_new_tokens: int = 128):
    """DPO from an SFT folder: pairs from the seed tasks with tests (answers of at most
    ``max_new_tokens`` tokens, sampled and ranked by the sandbox),
    training against the frozen SFT model, greedy pass rate on the course eval tasks before and
    after; the model in ``out/final/`` and a summary in ``out/dpo.json``. Returns the summary."""
    import copy

    from qcoder_lib.data import read_jsonl
    from qcoder_lib.io import resource_path
    from qcoder_lib.model.hf_interop import from_hf
    from qcoder_lib.sft.dpo import (
        DPOConfig,
        build_preference_pairs,
        eval_tasks,
        pair_tasks,
        pass_rate,
        train_dpo,
    )
    from qcoder_lib.sft.instructions import PipelineConfig, build_instructions
    from qcoder_lib.sft.lora import save_hf
    from qcoder_lib.sft.snippets import seed_snippets
    from qcoder_lib.tokenizer import course_tokenizer, load_tokenizer, special_id

    out = Path(out)
    try:
        tok = load_tokenizer(sft_dir)
    except (OSError, ValueError):
        tok = course_tokenizer(profile)
    policy = from_hf(sft_dir)
    reference = copy.deepcopy(policy)
    train_pairs, _ = build_instructions(seed_snippets(), config=PipelineConfig())
    tasks = pair_tasks(train_pairs)
    evals = eval_tasks([r for _, r in read_jsonl(resource_path("eval", "course_eval.jsonl"))])
    before, _ = pass_rate(policy, tok, evals, max_new_tokens=max_new_tokens)
    pairs, counts = build_preference_pairs(policy, tok, tasks,
                                           samples or by_profile(4, 8, 16, profile=profile),
                                           seed=seed, max_new_tokens=max_new_tokens)
    res = train_dpo(policy, reference, tok, pairs,
                    DPOConfig(steps=steps or by_profile(10, 100, 400, profile=profile),
                              beta=beta, lr=lr, seed=seed),
                    pad_id=special_id(tok, "<|endoftext|>"))
    after, _ = pass_rate(policy, tok, evals, max_new_tokens=max_new_tokens)
    save_hf(policy, out / "final", tok)
    summary = {"pairs": counts, "loss_first": res.losses[0], "loss_last": res.losses[-1],
               "reward_margin_last": res.reward_margins[-1], "pass_rate_before": before,
               "pass_rate_after": after, "eval_tasks": len(evals), "seconds": res.seconds}
    (out / "dpo.json").write_text(json.dumps(summary, indent=1))
    return summary
