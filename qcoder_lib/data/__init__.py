"""The pretraining corpus: sources, filters, deduplication, decontamination, the mix, shards.

One concept per module:

- :mod:`.sources`: code (stdlib, site-packages, folders, git checkouts, jsonl, `datasets`),
  docs, text; every skipped file counted by reason.
- :mod:`.math_problems`: math problems whose answers are verified by execution.
"""

from qcoder_lib.data.sources import (
    Document,
    SourceStats,
    code_documents,
    dataset_documents,
    docs_documents,
    jsonl_documents,
    math_documents,
    read_jsonl,
    text_documents,
)

__all__ = [
    "Document",
    "SourceStats",
    "code_documents",
    "dataset_documents",
    "docs_documents",
    "jsonl_documents",
    "math_documents",
    "read_jsonl",
    "text_documents",
]
