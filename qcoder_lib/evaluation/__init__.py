"""Evaluating base and instruct models the way the Qwen2.5-Coder report does (at course scale).

Pieces, one concept per module:

- :mod:`.model_api`: :class:`EvalModel` and its backends (:class:`CourseModel`,
  :class:`HFModel` for any transformers causal LM, :class:`VLLMModel` on a GPU,
  :class:`ReferenceModel` the oracle), :class:`SamplingConfig`, :func:`load_eval_model`.
- :mod:`.passk`: the unbiased pass@k estimator.
- :mod:`.task` (:class:`Task`, :class:`Benchmark`), :mod:`.results` (:class:`SampleResult` with
  named failures, :func:`summarize`), :mod:`.execute` (scoring by execution in
  :mod:`qcoder_lib.sandbox`).
- Benchmarks: :mod:`.humaneval`, :mod:`.infilling` (single-line / multi-line / random-span),
  :mod:`.crux` (CRUXEval-style reasoning), :mod:`.sql` (text-to-SQL, execution accuracy),
  :mod:`.math` (exact numeric answers), :mod:`.loaders` (MBPP(+), HumanEval+, CRUXEval, GSM8K
  in their published formats).
- :mod:`.suite`: the benchmarks by name, :func:`evaluate`, :func:`eval_texts` (every
  evaluation item, for decontamination); :mod:`.report`: tables, plot, failure analysis.
"""

from qcoder_lib.evaluation.model_api import (
    CourseModel,
    EvalModel,
    HFModel,
    ReferenceModel,
    SamplingConfig,
    VLLMModel,
    load_eval_model,
)
from qcoder_lib.evaluation.passk import mean_pass_at_k, pass_at_k
from qcoder_lib.evaluation.report import PUBLISHED, failure_table, results_table, write_report
from qcoder_lib.evaluation.results import OUTCOMES, SampleResult, summarize
from qcoder_lib.evaluation.suite import BENCHMARKS, EvalRun, eval_texts, evaluate, get_benchmark
from qcoder_lib.evaluation.task import Benchmark, Task

__all__ = [
    "BENCHMARKS",
    "OUTCOMES",
    "PUBLISHED",
    "Benchmark",
    "CourseModel",
    "EvalModel",
    "EvalRun",
    "HFModel",
    "ReferenceModel",
    "SampleResult",
    "SamplingConfig",
    "Task",
    "VLLMModel",
    "eval_texts",
    "evaluate",
    "failure_table",
    "get_benchmark",
    "load_eval_model",
    "mean_pass_at_k",
    "pass_at_k",
    "results_table",
    "summarize",
    "write_report",
]
