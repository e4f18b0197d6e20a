"""``qcoder data`` on the smoke profile: token shards, a summary table, the mix on target."""

import argparse
import json

import pytest

from qcoder_lib.cli import data as cli_data
from qcoder_lib.data import ByteTokenizer, TokenShards


def _parser():
    # the data subcommand alone, so this test does not depend on the other stages' modules
    p = argparse.ArgumentParser(prog="qcoder")
    cli_data.add_parser(p.add_subparsers(dest="command", required=True))
    return p


def _run(*argv):
    args = _parser().parse_args(["data", *argv])
    return args.run(args)


@pytest.fixture
def code_root(tmp_path):
    root = tmp_path / "mycode"
    root.mkdir()
    for i in range(12):  # distinct small modules (exact and near dedup keep them all)
        body = "\n".join(f"    total_{j} = x * {i * 31 + j} + {j * j}" for j in range(90))
        (root / f"mod_{i}.py").write_text(f'def f_{i}(x):\n    """Module {i}."""\n{body}\n'
                                          f"    return x\n")
    return root


def test_data_help_explains_every_option(capsys):
    p = _parser()
    sub = p._subparsers._group_actions[0].choices["data"]
    for action in sub._actions:
        assert action.help, f"option {action.option_strings} has no help"
    with pytest.raises(SystemExit) as e:
        p.parse_args(["data", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--profile", "--out", "--tokenizer", "--max-tokens", "--code-root", "--seed",
                "--no-progress"):
        assert opt in text


def test_data_smoke_builds_shards_and_prints_the_summary(tmp_path, code_root, capsys):
    from qcoder_lib.tokenizer import ENDOFTEXT, course_tokenizer, decode, special_id

    tok = course_tokenizer("smoke")  # saved to a folder: the PATH form of --tokenizer
    tok.save_pretrained(tmp_path / "tok")
    assert cli_data.load_mix_tokenizer("course", "smoke").get_vocab() == tok.get_vocab()
    assert isinstance(cli_data.load_mix_tokenizer("bytes", "smoke"), ByteTokenizer)
    out = tmp_path / "corpus"
    assert _run("--profile", "smoke", "--out", str(out), "--tokenizer", str(tmp_path / "tok"),
                "--max-tokens", "12000", "--code-root", str(code_root), "--no-progress") == 0
    text = capsys.readouterr().out
    assert "/tmp" not in text and str(tmp_path) not in text  # names only, never machine paths
    assert "corpus/" in text and "skipped by reason" in text and "stopped:" in text
    for source in ("code", "synthetic", "docs", "text", "math", "total"):
        assert f"\n{source:>9}" in "\n" + text
    shards = TokenShards(out)
    summary = json.loads((out / "build_summary.json").read_text())
    total = next(r for r in summary["rows"] if r["source"] == "total")
    assert summary["stopped_by"] == "total_tokens" and summary["tokenizer"] == "tok"
    assert shards.total_tokens == total["tokens"] >= 12_000
    assert shards.eos_id == special_id(tok, ENDOFTEXT) and shards.index["tokenizer"] == "tok"
    spans = list(shards.spans())
    assert {s.meta["repo"] for s in spans if s.meta["source"] == "code"} == {"mycode"}
    # shares recomputed from the shards themselves: the mix promises each group within one
    # document (chunk) of its 70/20/10 target at every step, so also at the end
    by_group = {}
    for s in spans:
        by_group[s.meta["group"]] = by_group.get(s.meta["group"], 0) + s.length
    longest = max(s.length for s in spans)
    for group, target in {"code": 0.7, "text": 0.2, "math": 0.1}.items():
        assert abs(by_group[group] - target * shards.total_tokens) <= longest, group
    # a code span decodes back to its file, and ends with end-of-text
    first = next(s for s in spans if s.meta["source"] == "code" and s.meta["part"] == 0)
    ids = shards.document_ids(first)
    assert ids[-1] == shards.eos_id and int(ids.max()) < len(tok)
    text0 = decode(tok, ids[:-1].tolist())
    assert text0 == (code_root / first.meta["path"]).read_text()[: len(text0)]
    # no temporary sibling left behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("corpus")] == ["corpus"]


def test_data_refuses_bad_out_tokenizer_and_max_tokens(tmp_path, capsys):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "thesis.txt").write_text("do not delete")
    with pytest.raises(SystemExit, match="notes exists and is not a token-shard folder"):
        _run("--profile", "smoke", "--out", str(keep), "--tokenizer", "bytes")
    assert (keep / "thesis.txt").read_text() == "do not delete"
    with pytest.raises(SystemExit, match="'nowhere' is not 'course', 'bytes' or a folder"):
        _run("--profile", "smoke", "--out", str(tmp_path / "x"), "--tokenizer", "nowhere")
    with pytest.raises(SystemExit) as e:
        _run("--profile", "smoke", "--out", str(tmp_path / "y"), "--max-tokens", "0")
    assert e.value.code == 2 and "'0' is not an integer >= 1" in capsys.readouterr().err


def test_qcoder_main_reaches_the_data_command(capsys):
    from qcoder_lib.cli import main

    with pytest.raises(SystemExit) as e:
        main(["data", "--help"])
    assert e.value.code == 0 and "--max-tokens" in capsys.readouterr().out
