"""Who writes instruction data: a small :class:`Teacher` interface and three teachers.

- :class:`CodeDerivedTeacher` (the offline default): derives real pairs from real code with no
  model at all: signature + documentation -> body ("implement"), tests -> code
  ("tests_to_code", Python snippets that carry tests), code -> explanation ("explain", the
  author's own documentation is the answer). Works for every language tree-sitter parses here.
- :class:`HFTeacher`: any transformers causal LM with a chat template, by path or hub name (a
  Qwen2.5-Coder-Instruct model when you have one), or a model and tokenizer already loaded.
- :class:`OpenAITeacher`: any OpenAI-compatible ``/chat/completions`` endpoint you configure
  (vLLM, llama.cpp server, a hosted API); standard library HTTP only.

An LLM teacher follows the report's recipe in two calls: write an instruction that the snippet
answers, then answer that instruction (the response is the model's, not the snippet).
"""

from __future__ import annotations

import json
import os
import urllib.request

from qcoder_lib.sft.samples import LANGUAGE_NAMES, CodeSnippet, InstructionPair, fenced
from qcoder_lib.sft.snippets import Function, functions, split_signature

INSTRUCTION_PROMPT = (
    "Here is a {lang} code snippet:\n\n{code}\n\nWrite one clear, self-contained programming "
    "task that this code solves, as a user would ask it. Reply with the task only."
)


class Teacher:
    """Turns a :class:`CodeSnippet` into instruction pairs. Subclasses implement :meth:`chat`
    (an LLM) or override :meth:`pairs` (the offline teacher)."""

    name = "teacher"

    def chat(self, messages: list[dict]) -> str:
        """The assistant's reply to ``messages`` (ChatML roles ``system``/``user``/...)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement chat()")

    def pairs(self, snippet: CodeSnippet) -> list[InstructionPair]:
        """Instruction pairs for ``snippet``: an instruction written by the model from the
        snippet, then the model's answer to it."""
        lang = LANGUAGE_NAMES.get(snippet.language, snippet.language)
        code = fenced(snippet.code, snippet.language)
        instruction = self.chat([{"role": "user",
                                  "content": INSTRUCTION_PROMPT.format(lang=lang, code=code)}])
        response = self.chat([{"role": "user", "content": instruction.strip()}])
        return [InstructionPair(instruction.strip(), response.strip(), snippet.language,
                                "teacher", snippet.source, snippet.tests,
                                meta={"teacher": self.name})]


class CodeDerivedTeacher(Teacher):
    """The offline default: pairs derived from the code itself (see the module docstring).
    A snippet with no parsable function yields one "explain" pair about the whole snippet
    (whose code then fails the static check, as it should)."""

    name = "code-derived"

    def __init__(self, kinds: tuple[str, ...] = ("implement", "tests_to_code", "explain")):
        self.kinds = kinds  # which kinds of pair to derive

    def pairs(self, snippet: CodeSnippet) -> list[InstructionPair]:
        """Every kind in ``self.kinds`` that applies, for every function of the snippet."""
        lang, language = LANGUAGE_NAMES.get(snippet.language, snippet.language), snippet.language
        fns = functions(snippet.code, language)
        if not fns:  # no syntax tree: keep the text so that the static check can judge it
            fns = [Function("snippet", "", snippet.code, snippet.code)]
        out = []

        def pair(instruction, response, kind, tests=""):
            out.append(InstructionPair(instruction, response, language, kind, snippet.source,
                                       tests, meta={"teacher": self.name}))

        for fn in fns:
            if "implement" in self.kinds and fn.doc:
                head, _ = split_signature(fn.text, language)
                if language != "python":  # an empty body keeps the shown code parsable
                    head = head.rstrip() + " {\n    // TODO\n}"
                pair(f"Complete this {lang} function so that it does what its documentation "
                     f"says.\n\n{fenced(head, language)}", fenced(fn.text, language),
                     "implement", snippet.tests)
            if "tests_to_code" in self.kinds and snippet.tests and language == "python":
                pair(f"Write a Python function `{fn.name}` that passes these tests.\n\n"
                     f"{fenced(snippet.tests, language)}", fenced(fn.text, language),
                     "tests_to_code", snippet.tests)
            if "explain" in self.kinds:
                doc = fn.doc or _first_comment(snippet.code)
                answer = (f"`{fn.name}`: {doc}" if fn.name != "snippet" else doc) if doc else ""
                pair(f"Explain what this {lang} code does.\n\n{fenced(fn.bare, language)}",
                     answer, "explain")
        return out


def _first_comment(code: str) -> str:
    lines = []
    for line in code.splitlines():
        s = line.strip()
        if not s.startswith(("//", "/*", "*", "#")):
            break
        s = s.lstrip("/*#! ").rstrip("*/ ").strip()
        if s:
            lines.append(s)
    return " ".join(lines)


class HFTeacher(Teacher):
    """A transformers causal LM as teacher: ``HFTeacher("Qwen/Qwen2.5-Coder-1.5B-Instruct")``
    or ``HFTeacher(model=m, tokenizer=t)``. Greedy decoding of up to ``max_new_tokens``."""

    def __init__(self, name_or_path: str | None = None, *, model=None, tokenizer=None,
                 max_new_tokens: int = 512, device: str | None = None):
        if model is None or tokenizer is None:
            if name_or_path is None:
                raise ValueError("HFTeacher needs name_or_path, or both model and tokenizer")
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(name_or_path)
            model = model or AutoModelForCausalLM.from_pretrained(name_or_path)
        self.model = model.to(device) if device else model  # a transformers causal LM
        self.tokenizer = tokenizer  # its tokenizer (with a chat template)
        self.max_new_tokens = max_new_tokens  # reply length limit in tokens
        self.name = f"hf:{name_or_path or type(model).__name__}"

    def chat(self, messages: list[dict]) -> str:
        """The model's greedy reply, special tokens removed. The template's markers are always
        tokenized as special tokens, even for a tokenizer saved with ``split_special_tokens``."""
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=True, return_dict=False,
                                                 tokenizer_kwargs={"split_special_tokens": False})
        x = torch.tensor([ids], device=self.model.device)
        with torch.no_grad():
            out = self.model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, x.shape[1]:], skip_special_tokens=True)


class OpenAITeacher(Teacher):
    """An OpenAI-compatible endpoint: ``OpenAITeacher("http://localhost:8000/v1", "qwen")``.
    The key comes from ``api_key`` or ``$OPENAI_API_KEY`` (none is sent when neither is set)."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 temperature: float = 0.0, max_tokens: int = 512, timeout_s: float = 120.0):
        self.base_url = base_url.rstrip("/")  # e.g. http://localhost:8000/v1
        self.model = model  # the model name the server knows
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")  # bearer token, optional
        self.temperature = temperature  # sampling temperature (0 = greedy)
        self.max_tokens = max_tokens  # reply length limit in tokens
        self.timeout_s = timeout_s  # HTTP timeout per request
        self.name = f"openai:{model}"

    def chat(self, messages: list[dict]) -> str:
        """POST ``/chat/completions`` and return ``choices[0].message.content``; an HTTP or
        format error raises ``RuntimeError`` naming the URL."""
        url = f"{self.base_url}/chat/completions"
        body = json.dumps({"model": self.model, "messages": messages,
                           "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                reply = json.loads(r.read().decode("utf-8"))
            return reply["choices"][0]["message"]["content"]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise RuntimeError(f"OpenAITeacher: request to {url} failed: {e}") from e
