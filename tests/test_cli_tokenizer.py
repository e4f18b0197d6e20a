"""Tests for ``qcoder tokenizer`` (qcoder_lib/cli/tokenizer.py), run in-process through
``qcoder_lib.cli.main`` on the smoke profile, with a small corpus and vocabulary so that training
takes seconds. The figures it prints are checked against the library computed independently."""

from __future__ import annotations

import json

import pytest

from qcoder_lib.cli import main
from qcoder_lib.cli.tokenizer import SUMMARY_FILE, format_summary
from qcoder_lib.tokenizer import (
    SPECIAL_TOKENS,
    bytes_per_token,
    course,
    load_tokenizer,
    special_ids,
    tokenizer_corpus,
)


@pytest.fixture
def small_smoke(tmp_path, monkeypatch):
    """Artefacts in tmp_path, a 120,000-character smoke corpus; main() sets QCODER_PROFILE, so
    monkeypatch restores it afterwards."""
    monkeypatch.setenv("QCODER_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("QCODER_PROFILE", "smoke")
    monkeypatch.setitem(course.COURSE_CORPUS_CHARS, "smoke", 120_000)
    return tmp_path


def test_trains_saves_and_reports(small_smoke, capsys):
    out = small_smoke / "tok"
    assert main(["tokenizer", "--profile", "smoke", "--out", str(out), "--vocab-size", "300"]) == 0
    printed = capsys.readouterr().out
    tok = load_tokenizer(out)
    assert len(tok) == 300 + len(SPECIAL_TOKENS)
    assert (small_smoke / "artifacts" / "tokenizer-smoke-300").is_dir()  # cached apart
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["trained"] and summary["regular_tokens"] == 300
    assert summary["vocab_size"] == 322 and summary["embedding_rows_padded_128"] == 384
    assert summary["special_ids"] == special_ids(tok)
    assert list(summary["special_ids"].values()) == list(range(300, 322))
    # bytes per token recomputed from the held-out corpus with the saved tokenizer
    heldout = tokenizer_corpus("smoke", split="heldout")
    for group, texts in heldout.items():
        assert summary["heldout_bytes_per_token"][group] == pytest.approx(
            bytes_per_token(tok, texts), abs=1e-3)
    assert printed == format_summary(summary, out=str(out), cache_name="tokenizer-smoke-300") + "\n"
    assert "trained in" in printed and "<|fim_prefix|>=316" in printed
    assert "300 regular + 22 special = 322 tokens" in printed


def test_reuses_the_cache_and_rebuilds_on_request(small_smoke, capsys):
    args = ["tokenizer", "--profile", "smoke", "--out", str(small_smoke / "a"), "--vocab-size",
            "280"]
    main(args)
    first = capsys.readouterr().out
    stamp = (small_smoke / "artifacts" / "tokenizer-smoke-280" / "tokenizer.json").stat()
    main(args)
    again = capsys.readouterr().out
    assert "trained in" in first and "reused from the cache" in again
    assert (small_smoke / "artifacts" / "tokenizer-smoke-280" / "tokenizer.json").stat() == stamp
    main([*args, "--rebuild"])
    assert "trained in" in capsys.readouterr().out


def test_saves_next_to_a_model_without_removing_it(small_smoke, capsys):
    model = small_smoke / "final"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_tokenizer(model)  # the situation the command fixes
    main(["tokenizer", "--profile", "smoke", "--out", str(model), "--vocab-size", "280"])
    assert (model / "config.json").read_text() == "{}"
    assert len(load_tokenizer(model)) == 280 + len(SPECIAL_TOKENS)
    capsys.readouterr()


def test_rejects_a_tiny_vocabulary_and_a_file_as_out(small_smoke):
    with pytest.raises(SystemExit, match="256 byte symbols"):
        main(["tokenizer", "--out", str(small_smoke / "x"), "--vocab-size", "100"])
    f = small_smoke / "file.txt"
    f.write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        main(["tokenizer", "--out", str(f), "--vocab-size", "280"])


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        main(["tokenizer", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option, words in [("--profile", "scale profile"), ("--out", "folder to save"),
                          ("--vocab-size", "regular (BPE) tokens"), ("--rebuild", "retrain")]:
        assert option in text and words in text, option
