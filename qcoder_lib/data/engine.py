"""The same corpus pipeline on datatrove, Hugging Face's data-processing engine that scales out.

datatrove runs a list of pipeline steps as ``tasks`` (shards of the data) on an executor: the
:class:`~datatrove.executor.LocalPipelineExecutor` here (a process pool), or SLURM / Ray on a
cluster with no change to the steps. This module wraps the course's own pieces as datatrove steps:

- :class:`CourseSourceReader` reads one of the course's sources, this task's share of it;
- :class:`CourseQualityFilter` applies :func:`qcoder_lib.data.filters.drop_reason`;
- :class:`CourseDecontamFilter` applies the 10-gram decontamination of :mod:`.decontam`;

and uses datatrove's own MinHash deduplication (signatures -> LSH buckets -> clusters -> filter).

What the course found when fitting datatrove 0.10 into an offline, notebook-driven course:

- Workers get the steps by pickling (``multiprocess``/dill). A function or class defined in a
  notebook is pickled by value, *without* the modules it uses: a reader defined in a notebook cell
  fails in the worker with ``NameError: name 'Document' is not defined``. So every step here lives
  in this importable module, and notebooks only configure them.
- datatrove's n-gram decontamination (``NGramsDecontIndexer``) needs ``lighteval`` to load the
  benchmarks (not installed, and it downloads them): the course's own filter step replaces it.
- Its English word tokenizer needs spaCy (not installed; ``WhitespaceTokenizer`` also calls
  spaCy); MinHash gets :class:`RegexWordTokenizer` (``\\w+`` words) instead.
- Its default MinHash hash (xxhash) passes ``str`` to ``xxhash`` 4.x, which only accepts bytes
  (``TypeError: Strings must be encoded before hashing``): the course uses its SHA-1 option.
- ``JsonlWriter``/``JsonlReader`` need ``orjson`` (not installed): Parquet is used between stages.
- Every task logs to stderr (loguru), which a notebook shows as pages of red text; the
  :class:`QuietLocalExecutor` keeps those logs in ``<logging_dir>/logs`` only.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from qcoder_lib.extras import require

require("datatrove", "the datatrove engine (qcoder_lib.data.engine)")

from datatrove.data import Document as DTDocument  # after the extra check above
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from qcoder_lib.data.build import SOURCES, BuildConfig, BuildReport, source_streams
from qcoder_lib.data.sources import Document
from qcoder_lib.data.words import words


class RegexWordTokenizer(WordTokenizer):
    """Words are ``\\w+`` runs; sentences are lines. Needs no model (spaCy is not installed)."""

    def __init__(self):
        super().__init__("code")

    def word_tokenize(self, text: str) -> list[str]:
        """The ``\\w+`` words of ``text``, in order (case kept)."""
        return words(text, lower=False)

    def sent_tokenize(self, text: str) -> list[str]:
        """The non-blank lines of ``text`` (a line of code stands for a sentence)."""
        return [s for s in text.split("\n") if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` character offsets of the sentences of :meth:`sent_tokenize`, so
        that ``text[start:end]`` is each non-blank line."""
        spans, pos = [], 0
        for line in text.split("\n"):
            if line.strip():
                spans.append((pos, pos + len(line)))
            pos += len(line) + 1
        return spans


def to_datatrove(d: Document, doc_id: str) -> DTDocument:
    """A course document as a datatrove ``Document`` (source, path, repo and language go into
    ``metadata``; ``Document.meta`` is not carried)."""
    return DTDocument(
        text=d.text,
        id=doc_id,
        metadata={"source": d.source, "path": d.path, "repo": d.repo, "language": d.language},
    )


def from_datatrove(d: DTDocument) -> Document:
    """A datatrove ``Document`` back as a course document."""
    m = d.metadata
    return Document(
        d.text, m.get("source", ""), m.get("path", ""), m.get("repo", ""), m.get("language", "")
    )


class CourseSourceReader(PipelineStep):
    """Reads the course's sources (``code``, ``synthetic``, ``docs``, ``text``, ``math``), this
    task's share of each, from :func:`qcoder_lib.data.build.source_streams` with
    ``shard=(rank, world_size)``: the same streams the plain build reads."""

    type = "📖 - READER"
    name = "📚 course sources"

    def __init__(self, sources: tuple, build: BuildConfig):
        super().__init__()
        self.sources, self.build = tuple(sources), build
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown course source(s) {unknown}; known: {SOURCES}")

    def documents(self, source: str, rank: int, world_size: int) -> Iterator[Document]:
        """The course documents of one source for this task."""
        return source_streams(self.build, BuildReport(), shard=(rank, world_size))[source]

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        """Pass ``data`` through, then yield this task's documents of each source as datatrove
        documents with ids ``"<source>/<rank>/<i>"``, counting ``read_<source>`` in the stats."""
        if data:
            yield from data
        for src in self.sources:
            for i, d in enumerate(self.documents(src, rank, world_size)):
                self.stat_update(f"read_{src}")
                yield to_datatrove(d, f"{src}/{rank}/{i}")


class SelectiveMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signatures, for documents of ``sources`` only: the others (templated
    math and synthetic code, near-identical by design) get no signature and are never removed."""

    def __init__(self, output_folder, sources: tuple, **kw):
        super().__init__(output_folder, **kw)
        self.near_sources = tuple(sources)

    def run(self, data, rank: int = 0, world_size: int = 1):
        """Write the signatures of ``data``'s documents whose ``source`` is one of ``sources``;
        the others pass as empty texts, which have no shingles and so get no signature (their
        index in the task is kept, so the later stages still find the right documents)."""
        keep = self.near_sources
        masked = (
            d
            if d.metadata.get("source") in keep
            else DTDocument(text="", id=d.id, metadata=d.metadata)
            for d in data
        )
        return super().run(masked, rank, world_size)


class CourseQualityFilter(BaseFilter):
    """The course's rule-based filters (:func:`~qcoder_lib.data.filters.drop_reason`) as a
    datatrove filter; each drop is counted under its rule's name in the executor's stats."""

    name = "🧹 course quality rules"

    def __init__(self, config: dict | None = None):
        super().__init__()
        self.config = config or {}  # FilterConfig fields

    def filter(self, doc: DTDocument):
        """``True`` to keep ``doc``, else ``(False, rule)`` with the first rule it fails."""
        from qcoder_lib.data.filters import FilterConfig, drop_reason

        why = drop_reason(from_datatrove(doc), FilterConfig(**self.config))
        return True if why is None else (False, why)


class CourseDecontamFilter(BaseFilter):
    """Drops documents sharing a word 10-gram with HumanEval or the course's eval sets; the index
    is built once per worker, on first use."""

    name = "🦠 course 10-gram decontamination"

    def __init__(self, n: int = 10):
        super().__init__()
        self.n = n
        self._index = None

    def filter(self, doc: DTDocument):
        """``True`` to keep ``doc``, else ``(False, "contaminated:<benchmark>")``; the matched
        problem's id goes into ``doc.metadata["contaminated_by"]``."""
        from qcoder_lib.data.decontam import NGramIndex, default_eval_items

        if self._index is None:
            self._index = NGramIndex(default_eval_items(), self.n)
        hit = self._index.match(doc.text)
        if hit is None:
            return True
        doc.metadata["contaminated_by"] = hit[0].task_id
        return False, f"contaminated:{hit[0].benchmark}"


class QuietLocalExecutor(LocalPipelineExecutor):
    """``LocalPipelineExecutor`` whose tasks log to ``logging_dir/logs`` only (not to the
    notebook's stderr)."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        with contextlib.redirect_stderr(io.StringIO()):
            return super()._run_for_rank(rank, local_rank, node_rank)


@contextlib.contextmanager
def quiet_datatrove():
    """Silence datatrove's loguru output (and stderr) in this process for the duration; afterwards
    loguru logs warnings and above to stderr (its earlier handlers are not put back)."""
    import sys

    from loguru import logger

    logger.remove()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")


@dataclass
class EngineConfig:
    """How the datatrove build runs."""

    tasks: int = 2  # shards of each source (parallel units; on SLURM, array jobs)
    workers: int = 2  # processes running tasks at once on this machine
    minhash_buckets: int = 14  # LSH bands (datatrove default; threshold ~ (1/14)^(1/8) = 0.72)
    minhash_hashes_per_bucket: int = 8  # rows per band
    minhash_ngrams: int = 5  # word n-gram shingles
    sources: tuple = ("code", "synthetic", "docs", "text", "math")  # sources to read


def minhash_config(ec: EngineConfig) -> MinhashConfig:
    """datatrove's MinHash settings from the engine config (64-bit SHA-1 hashes: the default
    xxhash path passes ``str`` to ``xxhash`` 4.x, which only hashes bytes, and fails)."""
    return MinhashConfig(
        n_grams=ec.minhash_ngrams,
        num_buckets=ec.minhash_buckets,
        hashes_per_bucket=ec.minhash_hashes_per_bucket,
        hash_config=HashConfig(precision=64, hash_fc="sha1"),
    )


def engine_stages(
    work_dir: str | Path, build: BuildConfig, ec: EngineConfig, executor_cls=None, **executor_kwargs
) -> list:
    """The four datatrove stages as ``(name, executor)`` pairs: (1) read + quality filter +
    decontaminate + write + MinHash signatures, (2) LSH buckets, (3) clusters, (4) drop near
    duplicates + write. ``executor_cls`` defaults to :class:`QuietLocalExecutor`; pass
    ``SlurmPipelineExecutor`` and its arguments to run the same steps on a cluster. Nothing runs
    here."""
    w = Path(work_dir)
    executor_cls = executor_cls or QuietLocalExecutor
    fcfg = dict(asdict(build.filters))
    mh = minhash_config(ec)
    local = issubclass(executor_cls, LocalPipelineExecutor)
    kw = dict(executor_kwargs)
    if local:
        kw.setdefault("workers", ec.workers)
        kw.setdefault("skip_completed", False)
    one = {**kw, "workers": 1} if local else kw
    return [
        (
            "1 read, filter, decontaminate, sign",
            executor_cls(
                pipeline=[
                    CourseSourceReader(ec.sources, build),
                    CourseQualityFilter(fcfg),
                    CourseDecontamFilter(),
                    ParquetWriter(str(w / "filtered"), output_filename="${rank}.parquet"),
                    SelectiveMinhashSignature(
                        str(w / "signatures"),
                        build.near_dedup_sources,
                        config=mh,
                        language=RegexWordTokenizer(),
                    ),
                ],
                tasks=ec.tasks,
                logging_dir=str(w / "logs" / "1"),
                **kw,
            ),
        ),
        (
            "2 LSH buckets",
            executor_cls(
                pipeline=[
                    MinhashDedupBuckets(str(w / "signatures"), str(w / "buckets"), config=mh)
                ],
                tasks=mh.num_buckets,
                logging_dir=str(w / "logs" / "2"),
                **kw,
            ),
        ),
        (
            "3 clusters",
            executor_cls(
                pipeline=[
                    MinhashDedupCluster(str(w / "buckets"), str(w / "remove_ids"), config=mh)
                ],
                tasks=1,
                logging_dir=str(w / "logs" / "3"),
                **one,
            ),
        ),
        (
            "4 drop near duplicates",
            executor_cls(
                pipeline=[
                    ParquetReader(str(w / "filtered")),
                    MinhashDedupFilter(str(w / "remove_ids")),
                    ParquetWriter(str(w / "deduped"), output_filename="${rank}.parquet"),
                ],
                tasks=ec.tasks,
                logging_dir=str(w / "logs" / "4"),
                **kw,
            ),
        ),
    ]


def run_engine(work_dir: str | Path, build: BuildConfig, ec: EngineConfig | None = None) -> dict:
    """Run the datatrove stages locally into ``work_dir`` (emptied first); returns the counts
    of :func:`engine_counts`."""
    ec = ec or EngineConfig()
    w = Path(work_dir)
    if w.exists():
        shutil.rmtree(w)
    with quiet_datatrove():
        for _, ex in engine_stages(w, build, ec):
            ex.run()
    return engine_counts(w)


def _stats(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def _label(step_cls) -> str:
    """The name datatrove files a step's stats under (``"<type>: <name>"``)."""
    return f"{step_cls.type}: {step_cls.name}"


def engine_counts(work_dir: str | Path) -> dict:
    """What the engine did, from the executors' own ``stats.json``: documents read per source,
    dropped per quality rule, contaminated, near duplicates removed, and kept per source. Steps
    are found by their class's stats label, never by a display-name fragment."""
    w = Path(work_dir)
    out = {"read": {}, "filtered": {}, "contaminated": 0, "near_duplicates": 0, "kept": {}}
    for step in _stats(w / "logs" / "1" / "stats.json"):
        st = step.get("stats", {})
        if step["name"] == _label(CourseSourceReader):
            out["read"] = {k[5:]: _n(v) for k, v in st.items() if k.startswith("read_")}
        elif step["name"] == _label(CourseQualityFilter):
            out["filtered"] = {k[8:]: _n(v) for k, v in st.items() if k.startswith("dropped_")}
        elif step["name"] == _label(CourseDecontamFilter):
            out["contaminated"] = _n(st.get("dropped"))
    for step in _stats(w / "logs" / "4" / "stats.json"):
        if step["name"] == _label(MinhashDedupFilter):
            out["near_duplicates"] = _n(step.get("stats", {}).get("dropped"))
    out["kept"] = dict(Counter(d.source for d in engine_documents(w)))
    return out


def _n(v) -> int:
    if isinstance(v, dict):
        return int(v.get("total", v.get("n", 0)))
    return int(v or 0)


def engine_documents(work_dir: str | Path, source: str | None = None) -> Iterator[Document]:
    """The documents the engine kept (of ``source``, or all), streamed from its Parquet files."""
    import pyarrow.parquet as pq

    for f in sorted((Path(work_dir) / "deduped").glob("*.parquet")):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
            for rec in batch.to_pylist():
                m = rec.get("metadata") or {}
                if source is None or m.get("source") == source:
                    yield Document(
                        rec["text"],
                        m.get("source", ""),
                        m.get("path", ""),
                        m.get("repo", ""),
                        m.get("language", ""),
                    )
