"""Post-training at course scale: instruction data, SFT (full, LoRA, QLoRA) and DPO with
execution feedback, as Qwen2.5-Coder-Instruct is made.

One concept per module:

- :mod:`.samples`: :class:`CodeSnippet`, :class:`InstructionPair`.
- :mod:`.snippets`: real code to start from (seed file in six languages, the Python stdlib).
- :mod:`.teacher`: the :class:`Teacher` interface; offline code-derived, transformers,
  OpenAI-compatible.
- :mod:`.sampling`: answers sampled from a chat model and judged in the sandbox.
- :mod:`.recipe`: the stages end to end (``qcoder sft`` / ``qcoder dpo``).
- :mod:`.checks`: tree-sitter parse of every code block, sandbox execution of tests.
- :mod:`.scorer`: the :class:`Scorer` interface; heuristic default, LLM judge.
- :mod:`.instructions`: the pipeline with kept/dropped counts, dedup and decontamination.
- :mod:`.fim_instructions`: FIM instruction samples and the "mixed tuning" share.
- :mod:`.masks`: ChatML token ids and the assistant-only loss labels.
- :mod:`.trainer`: the SFT loop (padding or packing), coarse-to-fine stages, rejection sampling.
- :mod:`.lora`: LoRA / QLoRA adapters with peft + bitsandbytes, merging, HF saving.
- :mod:`.dpo`: preference pairs ranked by the sandbox, the DPO loss, DPO training.
"""
