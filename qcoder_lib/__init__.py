"""qcoder_lib: the helper library of the qcoder-course notebooks.

Each module is one concept of the Qwen2.5-Coder recipe (``docs/ARCHITECTURE.md`` is the map).
Notebooks build a piece step by step, then check it against the version here, which is the
tested one. The names a reuser needs are importable from the package itself (imported on first
use, so ``import qcoder_lib`` stays light); the README's "recipe in a dozen lines" uses them.
"""

from __future__ import annotations

import importlib

from qcoder_lib.course.metrics import record_metric, recorded_metrics
from qcoder_lib.runtime import by_profile, get_device, get_profile, seed_everything

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    # tokenizer (notebook 01)
    "course_tokenizer": "qcoder_lib.tokenizer",
    "load_tokenizer": "qcoder_lib.tokenizer",
    "train_tokenizer": "qcoder_lib.tokenizer",
    "encode_data": "qcoder_lib.tokenizer",
    "decode": "qcoder_lib.tokenizer",
    "special_id": "qcoder_lib.tokenizer",
    # model (notebook 02)
    "QwenConfig": "qcoder_lib.model",
    "QwenForCausalLM": "qcoder_lib.model",
    "generate": "qcoder_lib.model.generation",
    "from_hf": "qcoder_lib.model.hf_interop",
    "to_hf": "qcoder_lib.model.hf_interop",
    # corpus (notebook 04) and FIM (notebook 05)
    "build_corpus": "qcoder_lib.data",
    "profile_config": "qcoder_lib.data",
    "FIMConfig": "qcoder_lib.fim",
    "fim_shards": "qcoder_lib.fim_stage",
    # pretraining (notebook 06)
    "ShardRows": "qcoder_lib.train",
    "TrainConfig": "qcoder_lib.train",  # (the loop itself: qcoder_lib.train.train; the name
    # `train` is the subpackage here)
    # running model-written code
    "run_code": "qcoder_lib.sandbox",
    "check_program": "qcoder_lib.sandbox",
}

__all__ = sorted(["by_profile", "get_device", "get_profile", "record_metric", "recorded_metrics",
                  "seed_everything", *_LAZY])


def __getattr__(name: str):
    """Import a re-exported name from its home module on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qcoder_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
