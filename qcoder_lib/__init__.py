"""qcoder_lib: the helper library of the qcoder-course notebooks.

Each module is one concept of the Qwen2.5-Coder recipe. Notebooks build a piece step by step,
then check it against the version here, which is the tested one.
"""

from qcoder_lib.course.metrics import record_metric, recorded_metrics
from qcoder_lib.runtime import by_profile, get_device, get_profile, seed_everything

__version__ = "0.1.0"

__all__ = [
    "by_profile",
    "get_device",
    "get_profile",
    "record_metric",
    "recorded_metrics",
    "seed_everything",
]
