"""The whole corpus build, readable and streaming: sources -> filters -> dedup ->
decontamination -> the 70/20/10 mix -> token shards, with a summary table at the end.

Every stage is a generator, so documents flow one at a time and the mixer pulls only what it
needs: a build that stops when its text runs out never reads the rest of site-packages.
(:mod:`qcoder_lib.data.engine` runs the same filters on datatrove, the engine that scales out.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qcoder_lib.data.decontam import DecontamReport, NGramIndex, decontaminate, default_eval_items
from qcoder_lib.data.dedup import DedupReport, ExactDedup, NearDedup, dedup_documents
from qcoder_lib.data.filters import FilterConfig, FilterReport, filter_documents
from qcoder_lib.data.math_problems import math_documents
from qcoder_lib.data.mix import MixConfig, MixReport, group_streams, mix_sources
from qcoder_lib.data.sources import (
    SourceStats,
    code_documents,
    docs_documents,
    text_documents,
)
from qcoder_lib.data.synthetic import SyntheticReport, synthetic_documents
from qcoder_lib.runtime import by_profile, get_profile

SOURCES = ("code", "synthetic", "docs", "text", "math")


@dataclass
class BuildConfig:
    """Sizes of one corpus build (see :func:`profile_config` for the profiles' values)."""

    code_files: int | None = 400  # code files read at most (None: all default roots)
    code_files_per_repo: int | None = 20  # per repository (spreads a small corpus over many)
    max_file_bytes: int = 256 * 1024  # larger files are skipped as too_large
    synthetic_programs: int = 80  # programs generated and run in the sandbox
    synthetic_bug_rate: float = 0.25  # share of programs with a planted bug
    docs: int | None = 60  # documentation documents at most
    text_docs: int | None = 80  # prose documents at most
    math_problems: int = 1500  # math problems generated (and verified)
    near_dedup_sources: tuple = ("code", "docs", "text")  # templated sources are exempt
    near_threshold: float = 0.7  # MinHash-LSH Jaccard threshold (StarCoder: 0.7)
    num_perm: int = 128  # MinHash permutations
    filters: FilterConfig = field(default_factory=FilterConfig)  # filter thresholds
    mix: MixConfig = field(default_factory=MixConfig)  # mix weights, seed, shard size
    seed: int = 0  # seeds the generators (math, synthetic) and near-dedup (the mix: mix.seed)


def profile_config(profile: str | None = None, **overrides) -> BuildConfig:
    """The build sizes for ``profile``: smoke (~1 minute on 2 cores, a few MB), cpu (tens of MB),
    gpu (everything installed). Keyword ``overrides`` replace fields."""
    p = profile or get_profile()
    cfg = BuildConfig(
        code_files=by_profile(600, 6000, None, p),
        code_files_per_repo=by_profile(15, 80, None, p),
        synthetic_programs=by_profile(60, 600, 3000, p),
        docs=by_profile(60, None, None, p),
        text_docs=by_profile(150, 3000, None, p),
        math_problems=by_profile(3000, 60000, 600000, p),
    )
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise AttributeError(f"BuildConfig has no field {k!r}")
        setattr(cfg, k, v)
    return cfg


@dataclass
class BuildReport:
    """Everything a build counted, stage by stage."""

    sources: dict = field(default_factory=lambda: {s: SourceStats() for s in SOURCES})
    synthetic: SyntheticReport = field(default_factory=SyntheticReport)
    filters: FilterReport = field(default_factory=FilterReport)
    dedup: DedupReport = field(default_factory=DedupReport)
    decontam: DecontamReport = field(default_factory=DecontamReport)
    mix: MixReport | None = None
    seconds: float = 0.0  # wall time of the build

    def summary(self) -> list[dict]:
        """One row per source: read, skipped (bad input, too little prose, rejected by the
        executor), filtered, duplicates, contaminated,
        documents and tokens in the mix; plus a total row."""
        rows = []
        for s in SOURCES:
            st = self.sources[s]
            rows.append(
                {
                    "source": s,
                    "read": st.seen,
                    "skipped": sum(st.skipped.values()) + self.dedup.unencodable[s],
                    "filtered": self.filters.seen[s] - self.filters.kept[s],
                    "duplicates": self.dedup.exact[s] + self.dedup.near[s],
                    "contaminated": self.decontam.by_source[s],
                    "mixed_docs": self.mix.source_documents[s] if self.mix else 0,
                    "tokens": self.mix.source_tokens[s] if self.mix else 0,
                }
            )
        total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "source"}
        return rows + [{"source": "total", **total}]

    def table(self) -> str:
        """The summary as a fixed-width text table, then the mix and the stop reason."""
        rows = self.summary()
        keys = list(rows[0])
        w = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
        lines = ["  ".join(f"{k:>{w[k]}}" for k in keys)]
        lines += ["  ".join(f"{r[k]!s:>{w[k]}}" for k in keys) for r in rows]
        skips = "; ".join(
            f"{s}: " + ", ".join(f"{r} {n}" for r, n in self.sources[s].skipped.most_common())
            for s in SOURCES
            if self.sources[s].skipped
        )
        unenc = ", ".join(f"{s} {n}" for s, n in sorted(self.dedup.unencodable.items()))
        if unenc:
            skips = f"{skips}; " if skips else ""
            skips += f"lone surrogate (unencodable): {unenc}"
        if skips:
            lines.append(f"skipped by reason: {skips}")
        if self.mix and self.mix.skipped:
            lines.append(
                "not mixed: "
                + ", ".join(f"{r} {n}" for r, n in self.mix.skipped.most_common())
            )
        if self.mix:
            mix = ", ".join(
                f"{r['group']} {r['achieved']:.1%} (target {r['target']:.0%})"
                for r in self.mix.rows()
            )
            lines.append(
                f"mix: {mix}; stopped: {self.mix.stopped_by}; tokenizer: {self.mix.tokenizer}"
            )
        return "\n".join(lines)


def source_streams(
    cfg: BuildConfig,
    report: BuildReport,
    code_roots=None,
    *,
    shard: tuple[int, int] | None = None,
) -> dict:
    """The five raw sources for ``cfg`` (lazy), counting into ``report.sources``.

    ``shard=(rank, world_size)`` gives one parallel task's share (the datatrove engine's
    tasks): every ``world_size``-th file, package README or docstring module, caps divided
    (rounded up) between the tasks, and the generators (synthetic, math) seeded per task so that
    tasks make different programs and problems."""
    st = report.sources
    if shard is None:
        rank, w = 0, 1
        gen_seed = cfg.seed
    else:
        rank, w = shard
        if not (isinstance(w, int) and w >= 1 and 0 <= rank < w):
            raise ValueError(f"shard={shard!r}: expected (rank, world_size) with 0 <= rank < size")
        gen_seed = cfg.seed * 1000 + rank

    def per(n):  # this task's share of a cap: ceil(n / w)
        return None if n is None else -(-n // w)

    docs = docs_documents(max_docs=cfg.docs, stats=st["docs"])
    return {
        "code": code_documents(
            code_roots,
            max_files=per(cfg.code_files),
            max_files_per_repo=per(cfg.code_files_per_repo),
            max_bytes=cfg.max_file_bytes,
            stats=st["code"],
            shard=shard,
        ),
        "synthetic": synthetic_documents(
            per(cfg.synthetic_programs),
            gen_seed,
            bug_rate=cfg.synthetic_bug_rate,
            report=report.synthetic,
            stats=st["synthetic"],
            workers=None if shard is None else 1,
        ),
        "docs": docs if shard is None else (d for i, d in enumerate(docs) if i % w == rank),
        # package READMEs are already in docs: text takes data_samples/ and docstrings
        "text": text_documents(
            max_docs=per(cfg.text_docs), include_packages=False, stats=st["text"], shard=shard
        ),
        "math": math_documents(per(cfg.math_problems), gen_seed, stats=st["math"]),
    }


def clean_streams(
    raw: dict, cfg: BuildConfig, report: BuildReport, index: NGramIndex | None = None
) -> dict:
    """Filters -> exact dedup (shared by all sources) -> near dedup (shared by
    ``near_dedup_sources``) -> decontamination, applied lazily to each source's stream."""
    index = index if index is not None else NGramIndex(default_eval_items())
    exact = ExactDedup()
    near = NearDedup(threshold=cfg.near_threshold, num_perm=cfg.num_perm, seed=cfg.seed + 1)
    out = {}
    for src, docs in raw.items():
        s = filter_documents(docs, cfg.filters, report.filters)
        s = dedup_documents(
            s,
            near=src in cfg.near_dedup_sources,
            report=report.dedup,
            exact_index=exact,
            near_index=near,
        )
        out[src] = decontaminate(s, index, report.decontam)
    return out


def build_corpus(
    out_dir: str | Path | None,
    config: BuildConfig | None = None,
    *,
    tokenizer=None,
    code_roots=None,
    extra_sources: dict | None = None,
    index: NGramIndex | None = None,
    verbose: bool = False,
    progress: bool = False,
) -> BuildReport:
    """Build the corpus into ``out_dir`` (token shards; ``None``: count only) and return the
    report (``report.table()`` is the summary). ``extra_sources`` adds documents to a source's
    stream (e.g. ``{"code": [planted_doc]}``), ahead of what the source reads. ``config`` is not
    changed. ``verbose`` prints the summary table at the end; ``progress`` shows a tqdm bar of
    the tokens mixed. Nothing is printed otherwise."""
    cfg = config or profile_config()
    report = BuildReport()
    t0 = time.perf_counter()
    raw = source_streams(cfg, report, code_roots)
    for src, docs in (extra_sources or {}).items():
        raw[src] = _chain(docs, raw[src])
    streams = group_streams(clean_streams(raw, cfg, report, index))
    report.mix = mix_sources(
        streams, out_dir, tokenizer=tokenizer, config=cfg.mix, progress=progress
    )
    report.seconds = time.perf_counter() - t0
    if verbose:
        print(report.table())
    return report


def _chain(first: Iterable, rest: Iterable) -> Iterator:
    yield from first
    yield from rest
