"""Sampling answers from a chat model and judging them in the sandbox: the execution feedback
behind stage-2 rejection sampling and DPO's preference pairs.

Works with the course's :class:`~qcoder_lib.model.QwenForCausalLM` (its own KV-cache
generation) and with any transformers causal LM (``generate``), peft-wrapped or not. Prompts are
ChatML with the generation prompt (:func:`qcoder_lib.tokenizer.encode_chat`); sampling stops at
``<|im_end|>`` or ``<|endoftext|>``. Model-written code runs only in :mod:`qcoder_lib.sandbox`.
"""

from __future__ import annotations

import torch

from qcoder_lib.sft.checks import code_blocks
from qcoder_lib.tokenizer import ENDOFTEXT, IM_END, encode_chat, special_id


def is_course_model(model) -> bool:
    """True for the course's own model class (not a transformers model)."""
    from qcoder_lib.model import QwenForCausalLM

    return isinstance(model, QwenForCausalLM)


def sample_answers(model, tokenizer, conversations: list[list[dict]], n: int = 1, *,
                   temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 128,
                   seed: int = 0) -> list[list[str]]:
    """``n`` answers per conversation (each ending with a user turn), as decoded text; greedy
    when ``temperature == 0`` (then ``n`` copies of one answer are pointless: use ``n=1``)."""
    if not conversations:
        return []
    stops = [special_id(tokenizer, IM_END), special_id(tokenizer, ENDOFTEXT)]
    prompts = [encode_chat(tokenizer, c, add_generation_prompt=True) for c in conversations]
    flat = [p for p in prompts for _ in range(n)]
    pad = stops[1]
    if is_course_model(model):
        from qcoder_lib.model.generation import generate

        new = generate(model, flat, max_new_tokens, temperature=temperature, top_p=top_p,
                       stop_token_ids=stops, pad_token_id=pad, seed=seed)
    else:
        torch.manual_seed(seed)
        new = []
        was = model.training
        model.eval()
        device = next(model.parameters()).device
        for p in flat:  # one by one: no padding questions for any model
            x = torch.tensor([p], device=device)
            kw = ({"do_sample": True, "temperature": temperature, "top_p": top_p}
                  if temperature > 0 else {"do_sample": False})
            with torch.no_grad():
                out = model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                     max_new_tokens=max_new_tokens, eos_token_id=stops,
                                     pad_token_id=pad, **kw)
            toks = out[0, x.shape[1]:].tolist()
            cut = next((i for i, t in enumerate(toks) if t in stops), len(toks))
            new.append(toks[:cut])
        model.train(was)
    texts = [tokenizer.decode(t) for t in new]
    return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]


def answer_code(answer: str) -> str:
    """The code of an answer: its first fenced block, else the whole text."""
    blocks = code_blocks(answer)
    return blocks[0][1] if blocks else answer


def judge_answers(answers: list[list[str]], tests: list[str], prefixes: list[str] | None = None,
                  *, timeout_s: float = 10.0, workers: int | None = None) -> list[list[str]]:
    """The sandbox status (``"passed"``, ``"failed"``, ``"timeout"``, ...) of every answer:
    ``prefixes[i] + answer_code(answer)`` run with ``tests[i]`` by
    :func:`qcoder_lib.sandbox.check_program` (batched with ``run_many``)."""
    from qcoder_lib.sandbox import run_many

    prefixes = prefixes or [""] * len(answers)
    tasks, where = [], []
    for i, group in enumerate(answers):
        for j, a in enumerate(group):
            tasks.append({"solution": prefixes[i] + answer_code(a), "tests": tests[i]})
            where.append((i, j))
    out = [[""] * len(g) for g in answers]
    for (i, j), res in zip(where, run_many(tasks, workers=workers, timeout_s=timeout_s)):
        out[i][j] = res.status
    return out
