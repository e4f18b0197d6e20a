"""Evaluating base and instruct models the way the Qwen2.5-Coder report does (at course scale).

Pieces, one concept per module:

- :mod:`.model_api`: :class:`EvalModel` and its backends (the course model, any transformers
  causal LM, vLLM on a GPU), :class:`SamplingConfig`, :func:`load_eval_model`.
- :mod:`.passk`: the unbiased pass@k estimator.
- :mod:`.task`, :mod:`.results`, :mod:`.execute`: tasks, scored samples with named failures,
  scoring by execution in :mod:`qcoder_lib.sandbox`.
- Benchmarks: :mod:`.humaneval`, :mod:`.infilling`, :mod:`.crux`, :mod:`.sql`, :mod:`.math`,
  :mod:`.loaders` (MBPP(+), HumanEval+, CRUXEval ... in their published formats).
"""
