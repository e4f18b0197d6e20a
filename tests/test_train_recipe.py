"""The pretraining recipe's pieces: the cached course corpus follows its tokenizer, and the
presets are what notebook 06 and ``qcoder pretrain`` train."""

import json

import pytest

from qcoder_lib import data
from qcoder_lib.tokenizer import tokenizer_fingerprint, train_tokenizer
from qcoder_lib.train.recipe import PRETRAIN_PRESETS, course_corpus, pretrain_preset

TEXTS = ["def add(a, b):\n    return a + b\n", "The quick brown fox.\n", "x = 1 + 2\n"] * 20


def test_the_tokenizer_fingerprint_follows_the_vocabulary():
    a, b = train_tokenizer(TEXTS, 280), train_tokenizer(TEXTS, 300)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(train_tokenizer(TEXTS, 280))
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b)
    assert len(tokenizer_fingerprint(a)) == 16


def test_the_course_corpus_is_rebuilt_for_another_tokenizer(tmp_path, monkeypatch):
    """A cached corpus is token ids of one tokenizer: reused for it, rebuilt (atomically) for
    another (e.g. after the profile's vocabulary changed), never read with the wrong ids."""
    builds = []

    def fake_build(folder, config, tokenizer=None, progress=False):  # the build itself is
        builds.append(len(tokenizer))  # tested in test_data_build_engine.py; here: when it runs
        (folder / "index.json").write_text(json.dumps({"vocab": len(tokenizer)}))

    monkeypatch.setattr(data, "build_corpus", fake_build)
    monkeypatch.setattr(data, "profile_config", lambda profile: None)
    a, b = train_tokenizer(TEXTS, 280), train_tokenizer(TEXTS, 300)
    folder = tmp_path / "corpus-smoke"
    assert course_corpus("smoke", a, folder) == folder
    course_corpus("smoke", a, folder)
    assert builds == [len(a)]  # reused
    course_corpus("smoke", b, folder)
    assert builds == [len(a), len(b)]  # rebuilt for the other tokenizer
    assert json.loads((folder / "index.json").read_text()) == {"vocab": len(b)}
    marker = json.loads((folder / "corpus.json").read_text())
    assert marker == {"profile": "smoke", "tokenizer": tokenizer_fingerprint(b)}
    (folder / "corpus.json").unlink()  # a corpus of unknown origin (an older course version)
    course_corpus("smoke", b, folder)
    assert len(builds) == 3


def test_presets_train_within_their_profiles_budgets():
    assert set(PRETRAIN_PRESETS) == {"smoke", "cpu", "gpu"}
    for name, p in PRETRAIN_PRESETS.items():
        cfg = p.train_config("out")
        assert cfg.steps == p.steps and cfg.min_lr == pytest.approx(p.lr * p.min_lr_ratio)
        assert pretrain_preset(name) is p
    with pytest.raises(ValueError, match="no pretraining preset for profile 'tpu'"):
        pretrain_preset("tpu")
