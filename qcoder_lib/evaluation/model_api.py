"""One interface for every model the course evaluates: :class:`EvalModel`.

``model.complete(tasks, sampling, stop)`` returns ``n`` completions per task (strings, cut
before the first stop sequence). Three backends implement it:

- :class:`CourseModel`: the course's :class:`~qcoder_lib.model.QwenForCausalLM` (from a
  training run's ``final/`` folder or in memory) with :func:`qcoder_lib.model.generation.generate`;
- :class:`HFModel`: any transformers causal LM by folder or hub name (``AutoModelForCausalLM``),
  generating with its ``generate`` (the default and tested path for outside models);
- :class:`VLLMModel`: vLLM, as the report evaluates, only when ``vllm`` imports and a GPU is
  present (:func:`load_eval_model` falls back to transformers otherwise).

Base models continue the task's prompt. Instruct models (``chat=True``) get a task's
``instruction`` as a ChatML user message where the benchmark has one (HumanEval, MBPP, SQL,
math; not infilling or CRUX-style, which stay completion tasks), and the reply becomes the
completion by :func:`chat_completion` (the first fenced code block for code and SQL).

Shared rules: prompts are token ids built here (text encoded as data; fill-in-the-middle tasks
get ``<|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>`` with the special tokens inserted
by id); batches are left-padded; generation ends at the tokenizer's end / FIM / file-separator
tokens (the report's inference stop set) or after ``max_new_tokens``; the text is then cut
before the first stop string (HF and vLLM also stop early on stop strings; the course model
cuts afterwards). ``n`` samples per task repeat the prompt ``n`` times; batch ``b`` is sampled
with seed ``seed + b``, so a run is repeatable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from qcoder_lib.evaluation.task import Task
from qcoder_lib.tokenizer.special import (ENDOFTEXT, FILE_SEP, FIM_MIDDLE, FIM_PAD, FIM_PREFIX,
                                          FIM_SUFFIX, IM_END, IM_START, REPO_NAME)

# The report's inference stop tokens (facts file: FIM/repo tokens, <|endoftext|>, <|im_end|>).
STOP_TOKENS = (ENDOFTEXT, IM_END, FIM_PREFIX, FIM_SUFFIX, FIM_PAD, REPO_NAME, FILE_SEP)


_CODE_BLOCK = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def chat_completion(task: Task, reply: str) -> str:
    """The completion a benchmark's scorer expects, from a chat ``reply`` to ``task``.

    ``"text"`` answers (math) are the reply itself. ``"code"``: the first fenced code block
    (the whole reply if none), after a newline: appended to the prompt it redefines the
    prompt's function (whose docstring alone is a valid body), as instruct evaluations run the
    model's whole function. ``"sql"``: the first code block's query, without its leading
    ``SELECT`` (the scorer puts it back)."""
    if task.chat_answer == "text":
        return reply
    blocks = _CODE_BLOCK.findall(reply)
    code = blocks[0][1] if blocks else reply
    if task.chat_answer == "sql":
        q = code.strip()
        return q[6:] if q[:6].upper() == "SELECT" else " " + q
    return "\n" + code


@dataclass
class SamplingConfig:
    """How completions are drawn."""

    max_new_tokens: int = 256  # generation budget per completion (a benchmark may lower it)
    temperature: float = 0.0  # 0 = greedy (pass@1 as the report gives it)
    top_p: float = 1.0  # nucleus sampling mass (1.0 = off)
    n: int = 1  # completions per task (the n of pass@k)
    seed: int = 0  # batch b samples with seed + b
    batch_size: int = 8  # sequences per forward pass


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` cut before the earliest occurrence of any string of ``stop``."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


class EvalModel:
    """Base class: subclasses set ``name`` and ``tokenizer`` and implement
    :meth:`generate_ids`; :meth:`complete` does the rest."""

    name: str = "model"
    tokenizer = None
    chat: bool = False  # True: an instruct model, prompted with the chat template

    def stop_token_ids(self) -> list[int]:
        """Ids of :data:`STOP_TOKENS` present in the tokenizer, plus its eos id."""
        vocab = self.tokenizer.get_vocab()
        ids = {int(vocab[t]) for t in STOP_TOKENS if t in vocab}
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return sorted(ids)

    def pad_id(self) -> int:
        """The padding id (the tokenizer's pad, else its eos, else 0)."""
        tok = self.tokenizer
        for tid in (tok.pad_token_id, tok.eos_token_id):
            if tid is not None:
                return int(tid)
        return 0

    def prompt_ids(self, task: Task) -> list[int]:
        """The token ids of ``task``'s prompt (PSM fill-in-the-middle when it has a suffix)."""
        from qcoder_lib.tokenizer import encode_data_batch, special_id

        tok = self.tokenizer
        if task.suffix is None:
            return encode_data_batch(tok, [task.prompt])[0]
        try:
            pre, suf, mid = (special_id(tok, t) for t in
                             (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE))
        except KeyError as e:
            raise ValueError(f"{self.name}: task {task.task_id} needs fill-in-the-middle but the "
                             f"tokenizer has no FIM tokens ({e})") from None
        p, s = encode_data_batch(tok, [task.prompt, task.suffix])
        return [pre, *p, suf, *s, mid]

    def chat_ids(self, task: Task) -> list[int]:
        """Token ids of ``task.instruction`` as a user turn plus the assistant header (ChatML
        with the markers inserted by id for Qwen-family tokenizers, else the tokenizer's own
        chat template)."""
        if task.instruction is None:
            raise ValueError(f"{self.name}: task {task.task_id} has no chat form")
        messages = [{"role": "user", "content": task.instruction}]
        if IM_START in self.tokenizer.get_vocab():
            from qcoder_lib.tokenizer import encode_chat

            return encode_chat(self.tokenizer, messages, add_generation_prompt=True)
        return list(self.tokenizer.apply_chat_template(messages, tokenize=True,
                                                       add_generation_prompt=True))

    def uses_chat(self, task: Task) -> bool:
        """True when ``task`` is put to this model as a chat turn."""
        return self.chat and task.instruction is not None

    def input_ids(self, task: Task) -> list[int]:
        """What the model sees for ``task``: :meth:`chat_ids` or :meth:`prompt_ids`."""
        return self.chat_ids(task) if self.uses_chat(task) else self.prompt_ids(task)

    def generate_ids(
        self, prompts: list[list[int]], sampling: SamplingConfig, max_new_tokens: int,
        stop: Sequence[str], seed: int,
    ) -> list[list[int]]:
        """New token ids for each prompt (one batch); subclasses implement this."""
        raise NotImplementedError

    def complete(
        self, tasks: list[Task], sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (), max_new_tokens: int | None = None, progress=None,
    ) -> list[list[str]]:
        """``sampling.n`` completions per task, each cut before the first of ``stop``.
        ``max_new_tokens`` overrides the sampling budget; ``progress`` (a tqdm bar) is advanced
        by the tasks each batch finishes (sequences / ``n``)."""
        sampling = sampling or SamplingConfig()
        budget = max_new_tokens or sampling.max_new_tokens
        jobs = [(i, self.input_ids(t)) for i, t in enumerate(tasks) for _ in range(sampling.n)]
        texts: dict[int, str] = {}
        bs, b = max(1, sampling.batch_size), 0
        for chat in (False, True):  # chat turns end at <|im_end|>, not at the stop strings
            group = [j for j in range(len(jobs)) if self.uses_chat(tasks[jobs[j][0]]) == chat]
            group.sort(key=lambda j: -len(jobs[j][1]))  # similar lengths share a batch
            for start in range(0, len(group), bs):
                chunk = group[start : start + bs]
                new = self.generate_ids([jobs[j][1] for j in chunk], sampling, budget,
                                        () if chat else stop, sampling.seed + b)
                b += 1
                for j, ids in zip(chunk, new):
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
                    task = tasks[jobs[j][0]]
                    texts[j] = chat_completion(task, text) if chat else truncate_at_stop(text, stop)
                if progress is not None:
                    progress.update(len(chunk) / sampling.n)
        out: list[list[str]] = [[] for _ in tasks]
        for j, (i, _) in enumerate(jobs):
            out[i].append(texts[j])
        return out


class CourseModel(EvalModel):
    """The course's :class:`~qcoder_lib.model.QwenForCausalLM` with its tokenizer."""

    def __init__(self, model, tokenizer, name: str = "course-model", chat: bool = False):
        self.model, self.tokenizer, self.name, self.chat = model.eval(), tokenizer, name, chat

    @classmethod
    def from_folder(cls, folder, name: str | None = None, device=None, chat: bool = False
                    ) -> CourseModel:
        """Load a Hugging Face format folder (a training run's ``final/``: config, weights and
        tokenizer) into the course's model class."""
        from qcoder_lib.model.hf_interop import from_hf
        from qcoder_lib.tokenizer import load_tokenizer

        folder = Path(folder)
        return cls(from_hf(folder, device=device), load_tokenizer(folder), name or folder.name,
                   chat)

    def generate_ids(self, prompts, sampling, max_new_tokens, stop, seed):
        """One left-padded batch through :func:`qcoder_lib.model.generation.generate` (stops at
        the stop tokens; stop strings are applied afterwards by :meth:`complete`). A prompt
        longer than the context allows keeps its last tokens, and the budget is at most a
        quarter of the context (the course's small models have short contexts)."""
        from qcoder_lib.model.generation import generate

        ctx = self.model.config.max_position_embeddings
        budget = min(max_new_tokens, ctx // 4)
        prompts = [p[-(ctx - budget):] for p in prompts]  # too long: keep the last tokens
        return generate(self.model, prompts, budget,
                        temperature=sampling.temperature, top_p=sampling.top_p,
                        stop_token_ids=self.stop_token_ids(), pad_token_id=self.pad_id(),
                        seed=seed)


class _StopOnStrings:
    """A transformers stopping criterion: a row is done once its new text holds a stop string."""

    def __init__(self, tokenizer, prompt_len: int, stop: Sequence[str]):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, [s for s in stop if s]

    def __call__(self, input_ids, scores, **kwargs):
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.stop:
            texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:],
                                                skip_special_tokens=True)
            for i, t in enumerate(texts):
                done[i] = any(s in t for s in self.stop)
        return done


class HFModel(EvalModel):
    """Any transformers causal LM (``AutoModelForCausalLM``) with its tokenizer."""

    def __init__(self, model, tokenizer, name: str = "hf-model", chat: bool = False):
        self.model, self.tokenizer, self.name, self.chat = model.eval(), tokenizer, name, chat

    @classmethod
    def from_pretrained(cls, name_or_path, device=None, dtype=None, chat: bool = False
                        ) -> HFModel:
        """Load a folder or hub name with ``AutoModelForCausalLM`` / ``AutoTokenizer``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from qcoder_lib.runtime import get_device

        device = device or get_device()
        if dtype is None:
            dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(device)
        return cls(model, AutoTokenizer.from_pretrained(name_or_path),
                   Path(str(name_or_path)).name, chat)

    @torch.inference_mode()
    def generate_ids(self, prompts, sampling, max_new_tokens, stop, seed):
        """One left-padded batch through ``model.generate`` (stops at the stop tokens and,
        row by row, at the stop strings)."""
        from transformers import StoppingCriteriaList

        from qcoder_lib.model.generation import left_pad

        device = next(self.model.parameters()).device
        ids, mask = left_pad(prompts, self.pad_id(), device)  # (B, T) each
        torch.manual_seed(seed)
        kwargs = {"do_sample": False}
        if sampling.temperature > 0:
            kwargs = {"do_sample": True, "temperature": sampling.temperature,
                      "top_p": sampling.top_p, "top_k": 0}
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
            eos_token_id=self.stop_token_ids(), pad_token_id=self.pad_id(),
            stopping_criteria=StoppingCriteriaList([_StopOnStrings(self.tokenizer,
                                                                   ids.shape[1], stop)]),
            **kwargs,
        )
        stops = set(self.stop_token_ids())
        rows = []
        for row in out[:, ids.shape[1]:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            rows.append(row[:cut])
        return rows


class VLLMModel(EvalModel):
    """vLLM behind the same interface (needs ``vllm`` and a GPU); the whole task list goes to
    the engine at once, which batches by itself."""

    def __init__(self, name_or_path, chat: bool = False, **engine_kwargs):
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError("VLLMModel needs vLLM: pip install vllm (GPU only)") from e
        if not torch.cuda.is_available():
            raise RuntimeError("VLLMModel needs a CUDA GPU")
        self.llm = LLM(model=str(name_or_path), **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.name, self.chat = Path(str(name_or_path)).name, chat

    def complete(self, tasks, sampling=None, stop=(), max_new_tokens=None, progress=None):
        """``sampling.n`` completions per task from vLLM (stop strings handled by vLLM and
        cut again here, so every backend returns the same shape of text)."""
        from vllm import SamplingParams

        sampling = sampling or SamplingConfig()
        out: list[list[str]] = [[] for _ in tasks]
        for chat in (False, True):
            idx = [i for i, t in enumerate(tasks) if self.uses_chat(t) == chat]
            if not idx:
                continue
            params = SamplingParams(
                n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=max_new_tokens or sampling.max_new_tokens, seed=sampling.seed,
                stop=None if chat else ([s for s in stop if s] or None),
                stop_token_ids=self.stop_token_ids(), skip_special_tokens=True,
            )
            prompts = [{"prompt_token_ids": self.input_ids(tasks[i])} for i in idx]
            for i, r in zip(idx, self.llm.generate(prompts, params, use_tqdm=False)):
                out[i] = [chat_completion(tasks[i], o.text) if chat
                          else truncate_at_stop(o.text, stop) for o in r.outputs]
        if progress is not None:
            progress.update(len(tasks))
        return out


class ReferenceModel(EvalModel):
    """Not a model: answers every task with its reference (or ``answer(task)``) without
    generating. The oracle that calibrates a benchmark (it must score 1.0) and the way to score
    known completions (``answer`` returns a list of ``n`` strings or one string)."""

    def __init__(self, answer=None, name: str = "reference"):
        self.answer, self.name = answer, name

    def complete(self, tasks, sampling=None, stop=(), max_new_tokens=None, progress=None):
        """The reference (or ``answer(task)``) of each task, cut at ``stop``."""
        out = []
        for t in tasks:
            a = t.reference if self.answer is None else self.answer(t)
            out.append([truncate_at_stop(x, stop) for x in ([a] if isinstance(a, str) else a)])
        if progress is not None:
            progress.update(len(tasks))
        return out


def vllm_available() -> bool:
    """True when ``vllm`` imports and a CUDA GPU is present."""
    if not torch.cuda.is_available():
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def load_eval_model(spec, backend: str = "auto", tokenizer=None, name: str | None = None,
                    chat: bool = False):
    """An :class:`EvalModel` for ``spec``: an :class:`EvalModel` (returned as is), a
    :class:`~qcoder_lib.model.QwenForCausalLM` (with ``tokenizer``), a transformers model (with
    ``tokenizer``), or a folder / hub name. For names, ``backend`` is ``"course"`` (the course's
    model class; Qwen2 checkpoints only), ``"hf"`` (transformers), ``"vllm"``, or ``"auto"``:
    vLLM when :func:`vllm_available`, else transformers. ``chat=True``: an instruct model
    (prompted with the chat template where a task has an instruction)."""
    if isinstance(spec, EvalModel):
        return spec
    if isinstance(spec, torch.nn.Module):
        from qcoder_lib.model import QwenForCausalLM

        if tokenizer is None:
            raise ValueError("load_eval_model: an in-memory model needs its tokenizer")
        cls = CourseModel if isinstance(spec, QwenForCausalLM) else HFModel
        return cls(spec, tokenizer, name or type(spec).__name__, chat)
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "course":
        m = CourseModel.from_folder(spec, chat=chat)
    elif backend == "hf":
        m = HFModel.from_pretrained(spec, chat=chat)
    elif backend == "vllm":
        m = VLLMModel(spec, chat=chat)
    else:
        raise ValueError(f"backend {backend!r}: choose 'auto', 'course', 'hf' or 'vllm'")
    if name:
        m.name = name
    return m
