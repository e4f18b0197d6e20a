"""The pretraining corpus: sources, filters, deduplication, decontamination, the mix, shards.

One concept per module:

- :mod:`.sources` (a package): code (stdlib, site-packages, folders, git checkouts), docs, text,
  jsonl and `datasets` records; every skipped file counted by reason (:class:`SourceStats`).
- :mod:`.words`: what a word is (dedup, decontamination and the engine split text alike).
- :mod:`.synthetic`: templated programs kept only if :mod:`qcoder_lib.sandbox` runs them.
- :mod:`.math_problems`: math problems whose answers are verified by execution.
- :mod:`.filters`: StarCoder/Qwen-style quality rules.
- :mod:`.dedup`: exact (SHA-256) and near (MinHash + LSH) deduplication.
- :mod:`.decontam`: word 10-gram decontamination against HumanEval and the course's eval sets.
- :mod:`.mix`: the 70/20/10 token mix; :mod:`.shards`: memory-mapped token shards.
- :mod:`.build`: the whole streaming build with a summary table.
- :mod:`.engine`: the same steps on datatrove (local executor here, SLURM on a cluster).
"""

from qcoder_lib.data.build import BuildConfig, BuildReport, build_corpus, profile_config
from qcoder_lib.data.decontam import NGramIndex, decontaminate, default_eval_items
from qcoder_lib.data.dedup import dedup_documents
from qcoder_lib.data.filters import FilterConfig, drop_reason, filter_documents
from qcoder_lib.data.math_problems import math_documents
from qcoder_lib.data.mix import QWEN_MIX, ByteTokenizer, MixConfig, group_streams, mix_sources
from qcoder_lib.data.shards import TokenShards
from qcoder_lib.data.sources import (
    Document,
    SourceStats,
    code_documents,
    dataset_documents,
    docs_documents,
    jsonl_documents,
    read_jsonl,
    text_documents,
)
from qcoder_lib.data.synthetic import synthetic_documents

__all__ = [
    "QWEN_MIX",
    "BuildConfig",
    "BuildReport",
    "ByteTokenizer",
    "Document",
    "FilterConfig",
    "MixConfig",
    "NGramIndex",
    "SourceStats",
    "TokenShards",
    "build_corpus",
    "code_documents",
    "dataset_documents",
    "decontaminate",
    "dedup_documents",
    "default_eval_items",
    "docs_documents",
    "drop_reason",
    "filter_documents",
    "group_streams",
    "jsonl_documents",
    "math_documents",
    "mix_sources",
    "profile_config",
    "read_jsonl",
    "synthetic_documents",
    "text_documents",
]
