"""The instruction-data pipeline: synthesis, static checks, execution checks, scoring,
deduplication and decontamination, each stage counting what it kept and why it dropped the rest.

Deduplication and 10-gram decontamination are the data stage's own hooks
(:func:`qcoder_lib.data.dedup_documents`, :func:`qcoder_lib.data.decontaminate` with an
:class:`~qcoder_lib.data.NGramIndex` over HumanEval and the course's eval sets): a pair is
wrapped as a :class:`~qcoder_lib.data.Document` whose text is its instruction and response.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from qcoder_lib.sft.checks import execution_check, static_check
from qcoder_lib.sft.samples import CodeSnippet, InstructionPair
from qcoder_lib.sft.scorer import HeuristicScorer, Scorer
from qcoder_lib.sft.teacher import CodeDerivedTeacher, Teacher


@dataclass
class PipelineConfig:
    """What the instruction pipeline keeps."""

    min_score: float = 0.8  # pairs scored below this are dropped ("low_score")
    run_tests: bool = True  # run Python pairs with tests in the sandbox
    timeout_s: float = 20.0  # sandbox wall-clock limit per pair (a loaded machine is slow)
    near_dedup: bool = False  # also drop MinHash near-duplicates (exact duplicates always)
    decontaminate: bool = True  # drop pairs sharing a word 10-gram with the eval sets


@dataclass
class StageCount:
    """One stage's tally."""

    stage: str  # "synthesis", "static", "execution", "score", "dedup", "decontam"
    seen: int = 0  # items in
    kept: int = 0  # items out
    dropped: Counter = field(default_factory=Counter)  # reason -> count


@dataclass
class PipelineReport:
    """Every stage's tally, plus the first dropped example per reason."""

    stages: list = field(default_factory=list)  # StageCount per stage, in order
    examples: dict = field(default_factory=dict)  # "stage/reason" -> "source (kind)"

    def rows(self) -> list[dict]:
        """One dict per stage (stage, seen, kept, dropped by reason) for a table."""
        return [{"stage": s.stage, "seen": s.seen, "kept": s.kept,
                 "dropped": ", ".join(f"{k}: {v}" for k, v in sorted(s.dropped.items())) or "-"}
                for s in self.stages]

    def _stage(self, name: str) -> StageCount:
        self.stages.append(StageCount(name))
        return self.stages[-1]


def _drop(report: PipelineReport, st: StageCount, reason: str, what: str) -> None:
    st.dropped[reason] += 1
    report.examples.setdefault(f"{st.stage}/{reason}", what)


def build_instructions(snippets: list[CodeSnippet], teacher: Teacher | None = None,
                       scorer: Scorer | None = None, config: PipelineConfig | None = None,
                       index=None) -> tuple[list[InstructionPair], PipelineReport]:
    """Run the whole pipeline over ``snippets``; return the kept pairs and the report.

    ``teacher`` defaults to :class:`CodeDerivedTeacher`, ``scorer`` to
    :class:`HeuristicScorer`, ``index`` to the data stage's default n-gram index."""
    from qcoder_lib.data import Document, NGramIndex, decontaminate, dedup_documents
    from qcoder_lib.data.decontam import DecontamReport, default_eval_items
    from qcoder_lib.data.dedup import DedupReport

    teacher = teacher or CodeDerivedTeacher()
    scorer = scorer or HeuristicScorer()
    cfg = config or PipelineConfig()
    report = PipelineReport()

    st = report._stage("synthesis")
    pairs: list[InstructionPair] = []
    for s in snippets:
        st.seen += 1
        made = teacher.pairs(s)
        if not made:
            _drop(report, st, "no_pair", s.source)
        pairs += made
    st.kept = len(pairs)

    def stage(name, items, reasons):
        st = report._stage(name)
        st.seen, kept = len(items), []
        for p, why in zip(items, reasons):
            if why is None:
                kept.append(p)
            else:
                _drop(report, st, why, f"{p.source} ({p.kind})")
        st.kept = len(kept)
        return kept

    pairs = stage("static", pairs, [static_check(p) for p in pairs])
    if cfg.run_tests:
        pairs = stage("execution", pairs, execution_check(pairs, timeout_s=cfg.timeout_s))
    for p in pairs:
        p.score = scorer.score(p)
    pairs = stage("score", pairs, [None if p.score >= cfg.min_score else "low_score"
                                   for p in pairs])

    def as_docs(items):
        return [Document(p.instruction + "\n" + p.response, "sft", p.source, p.kind, p.language,
                         meta={"i": i}) for i, p in enumerate(items)]

    dd = DedupReport()
    keep = {d.meta["i"] for d in dedup_documents(as_docs(pairs), near=cfg.near_dedup, report=dd)}
    pairs = stage("dedup", pairs, [None if i in keep else "duplicate" for i in range(len(pairs))])
    if cfg.decontaminate:
        index = index if index is not None else NGramIndex(default_eval_items())
        dr = DecontamReport()
        keep = {d.meta["i"] for d in decontaminate(as_docs(pairs), index, dr)}
        hits = {r["doc"]: r["task_id"] for r in dr.removed}
        pairs = stage("decontam", pairs, [
            None if i in keep else f"overlaps {hits.get(f'{p.kind}/{p.source}', 'eval')}"
            for i, p in enumerate(pairs)])
    return pairs, report
