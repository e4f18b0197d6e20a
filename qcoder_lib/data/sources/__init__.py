"""Where pretraining documents come from: code, docs, text, records (and, in
:mod:`qcoder_lib.data.synthetic` and :mod:`qcoder_lib.data.math_problems`, programs and problems
kept only if they run).

Every source is a lazy iterator of :class:`Document`. Nothing is read before it is asked for, so a
source over all of site-packages costs nothing until the mixer pulls from it.

Bad input is never dropped silently: every file that a source skips is counted by reason in a
:class:`SourceStats` (``binary``, ``undecodable``, ``too_large``, ``empty``, ``malformed_json``,
...), with the first few paths per reason as examples, and :meth:`SourceStats.table` prints it.

One concept per module: :mod:`.documents` (Document, SourceStats, reading one file),
:mod:`.languages` (the extension -> language table), :mod:`.repos` (which folders and files),
:mod:`.code`, :mod:`.docs`, :mod:`.text` (the three file sources), :mod:`.records` (jsonl files
and `datasets`).
"""

from qcoder_lib.data.sources.code import code_documents
from qcoder_lib.data.sources.docs import doc_files, docs_documents, package_descriptions
from qcoder_lib.data.sources.documents import (
    BINARY_SNIFF_BYTES,
    DEFAULT_MAX_BYTES,
    Document,
    SourceStats,
    lone_surrogate,
    read_text_file,
)
from qcoder_lib.data.sources.languages import CODE_EXTENSIONS, DOC_EXTENSIONS, language_of
from qcoder_lib.data.sources.records import dataset_documents, jsonl_documents, read_jsonl
from qcoder_lib.data.sources.repos import (
    SKIP_DIRS,
    Repo,
    as_repos,
    default_code_repos,
    read_document,
    repo_files,
    repo_from_folder,
    site_package_repos,
    stdlib_repo,
)
from qcoder_lib.data.sources.text import (
    COURSE_SAMPLES,
    docstring_prose,
    strip_code,
    text_documents,
)

__all__ = [
    "BINARY_SNIFF_BYTES",
    "CODE_EXTENSIONS",
    "COURSE_SAMPLES",
    "DEFAULT_MAX_BYTES",
    "DOC_EXTENSIONS",
    "SKIP_DIRS",
    "Document",
    "Repo",
    "SourceStats",
    "as_repos",
    "code_documents",
    "dataset_documents",
    "default_code_repos",
    "doc_files",
    "docs_documents",
    "docstring_prose",
    "jsonl_documents",
    "language_of",
    "lone_surrogate",
    "package_descriptions",
    "read_document",
    "read_jsonl",
    "read_text_file",
    "repo_files",
    "repo_from_folder",
    "site_package_repos",
    "stdlib_repo",
    "strip_code",
    "text_documents",
]
