"""Repository-level samples (issue 15): never over the budget, the target file always kept (whole
when it fits, else its beginning), context files whole, the layout read back by
``fim_repo.unfim_repo``; shards the training rows read; real code from an installed package."""

import json
import shutil
import subprocess
from pathlib import Path

import packaging
import pytest

from qcoder_lib.data.shards import TokenShards
from qcoder_lib.fim_repo import unfim_repo
from qcoder_lib.repo_level import (
    LENGTH_FACTOR,
    RepoLevelConfig,
    RepoLevelReport,
    longest_token_chars,
    repo_level_shards,
    repo_samples,
    repo_seq_len,
    repository_files,
)
from qcoder_lib.tokenizer import encode_data, train_tokenizer
from qcoder_lib.train import ShardRows

PKG = Path(packaging.__file__).parent  # real code: an installed package


@pytest.fixture(scope="module")
def tok():
    """A small byte-level BPE tokenizer trained with the course's trainer on real code."""
    texts = [p.read_text() for p in sorted(PKG.glob("*.py"))[:6]]
    return train_tokenizer(texts, 500)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository: the package's files in two folders, a huge file and a non-code file."""
    root = tmp_path_factory.mktemp("repo") / "demo"
    (root / "pkg" / "sub").mkdir(parents=True)
    for i, p in enumerate(sorted(PKG.glob("*.py"))):
        (root / ("pkg/sub" if i % 3 == 0 else "pkg") / p.name).write_text(p.read_text())
    (root / "pkg" / "huge.py").write_text("x = 1  # padding\n" * 4000)
    # small files, so that context fits next to a target in a few hundred tokens
    (root / "pkg" / "consts.py").write_text("VERSION = (1, 2)\nNAME = 'demo'\n")
    (root / "pkg" / "sub" / "util.py").write_text("def twice(x):\n    return 2 * x\n")
    (root / "pkg" / "sub" / "names.py").write_text("from ..consts import NAME\nLABEL = NAME\n")
    (root / "README.md").write_text("not python\n")
    return root


def _originals(root):
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.py")}


@pytest.mark.parametrize("budget", [48, 200, 512])
def test_samples_fit_the_budget_and_keep_the_target(tok, repo, budget):
    files = _originals(repo)
    cfg = RepoLevelConfig(max_tokens=budget, samples_per_repo=6, fim_rate=0.5)
    samples = list(repo_samples([repo], tok, cfg, seed=budget))
    assert len(samples) == 6
    for s in samples:
        assert len(s.input_ids) <= budget
        name, restored = unfim_repo(s, tok)
        assert name == "demo"
        path, content = restored[-1]  # the target is always there, last
        assert path == s.target_path and path in files
        original = files[path]
        if s.truncated_chars == 0:
            assert content == original
        else:  # only its end was cut, and only because the target alone is over the budget
            assert original.startswith(content) and len(content) < len(original)
            assert len(original) - len(content) == s.truncated_chars
        for p, c in restored[:-1]:  # context: whole files
            assert c == files[p]
    if budget == 512:  # the budget is used: the samples hold context files
        assert any(s.files for s in samples)
        assert any(s.target.mode != "plain" for s in samples)


def test_shards_round_trip_into_training_rows(tok, repo, tmp_path):
    cfg = RepoLevelConfig(max_tokens=256, samples_per_repo=5)
    rep = repo_level_shards(tmp_path / "stage2", tok, cfg, [repo], seed=3)
    assert isinstance(rep, RepoLevelReport)
    assert rep.samples == 5 and rep.repos == 1 and rep.longest <= 256
    shards = TokenShards(tmp_path / "stage2")
    spans = list(shards.spans())
    assert [sp.length for sp in spans] == rep.lengths
    assert sum(rep.lengths) == rep.tokens == shards.index["total_tokens"]
    assert all(sp.meta["source"] == "repo" and sp.meta["repo"] == "demo" for sp in spans)
    first = shards.document_ids(spans[0]).tolist()
    assert unfim_repo(first, tok)[1][-1][0] == spans[0].meta["path"]
    rows = ShardRows(tmp_path / "stage2", 256)
    ids, pos, _tgt = rows.get([0])
    assert ids.shape == (1, 256) and pos[0, 0] == 0
    meta = json.loads((tmp_path / "stage2" / "index.json").read_text())["repo_level"]
    assert meta["max_tokens"] == 256 and meta["seed"] == 3
    assert rep.mean_tokens() == pytest.approx(rep.tokens / 5)


def test_same_seed_same_samples(tok, repo):
    cfg = RepoLevelConfig(max_tokens=300, samples_per_repo=3)
    a = [s.input_ids for s in repo_samples([repo], tok, cfg, seed=7)]
    b = [s.input_ids for s in repo_samples([repo], tok, cfg, seed=7)]
    c = [s.input_ids for s in repo_samples([repo], tok, cfg, seed=8)]
    assert a == b and a != c


def test_longest_token_bounds_every_encoding(tok, repo):
    n = longest_token_chars(tok)
    assert n >= 2
    for text in _originals(repo).values():
        assert len(encode_data(tok, text)) * n >= len(text)


def test_repository_files_reads_git_checkouts_and_skips_small_repos(tok, repo, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "checkout"
    shutil.copytree(repo, root)
    (root / "untracked.py").write_text("print('not in git')\n")
    git = ["git", "-C", str(root), "-c", "user.email=a@b", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "pkg"], check=True)
    (name, files), = repository_files([root], RepoLevelConfig(max_files_per_repo=100))
    paths = [p for p, _ in files]
    assert name == "checkout" and "untracked.py" not in paths and paths == sorted(paths)
    assert all(p.endswith(".py") for p in paths)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "one.py").write_text("x = 1\n")
    rep = RepoLevelReport()
    assert list(repo_samples([lonely], tok, RepoLevelConfig(), report=rep)) == []
    assert rep.repos_skipped == 1
    with pytest.raises(ValueError, match="min_files"):
        repo_level_shards(tmp_path / "none", tok, RepoLevelConfig(min_files=5), [lonely])
    assert not (tmp_path / "none").exists()  # nothing half-written


def test_config_errors_and_profile_length():
    with pytest.raises(ValueError, match="max_tokens"):
        RepoLevelConfig(max_tokens=4)
    with pytest.raises(ValueError, match="fim_rate"):
        RepoLevelConfig(fim_rate=1.5)
    with pytest.raises(ValueError, match="samples_per_repo"):
        RepoLevelConfig(samples_per_repo=0)
    from qcoder_lib.train.recipe import pretrain_preset

    for profile in ("smoke", "cpu", "gpu"):
        assert repo_seq_len(profile) == LENGTH_FACTOR * pretrain_preset(profile).seq_len


def test_cli_pretrain_stage_repo(tmp_path, capsys):
    """``qcoder pretrain --stage repo --init``: stage two from a stage-one folder, end to end."""
    from qcoder_lib.cli import main
    from qcoder_lib.model.hf_interop import from_hf, to_hf
    from qcoder_lib.tokenizer import course_tokenizer
    from qcoder_lib.train.recipe import course_model

    with pytest.raises(SystemExit, match="--init"):
        main(["pretrain", "--profile", "smoke", "--stage", "repo", "--out", str(tmp_path / "x")])
    tok = course_tokenizer("smoke")
    to_hf(course_model("smoke", tok), tmp_path / "stage1")
    out = tmp_path / "s2"
    assert main(["pretrain", "--profile", "smoke", "--stage", "repo", "--init",
                 str(tmp_path / "stage1"), "--out", str(out), "--steps", "2", "--repos",
                 str(PKG), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "stage two" in text and "RoPE base 1,000,000" in text and "/tmp" not in text
    model = from_hf(out / "run" / "final")
    assert model.config.rope_theta == 1e6
    assert model.config.max_position_embeddings == repo_seq_len("smoke")
