"""Repository-level pretraining data (Qwen2.5-Coder's second stage): whole repositories as
long samples, written to token shards the training loop reads like stage one's.

Each sample is one repository in the repo-level format that :func:`qcoder_lib.fim_repo.repo_fim`
builds (``<|repo_name|>``, context files each after ``<|file_sep|>``, the target file last, FIM
on the target at ``fim_rate``), cut to a token budget: 4x the stage-one row length
(:data:`LENGTH_FACTOR`, the report's 8,192 -> 32,768), scaled to the profile by
:func:`repo_seq_len`. The budget rule is :func:`~qcoder_lib.fim_repo.repo_fim`'s: the target always
stays (its end is cut only when it alone is over the budget), then context files from the most
related (same folder) to the least, whole or not at all. :func:`repo_level_shards` checks every
sample against the budget before writing it.

Repositories are what :mod:`qcoder_lib.data.sources` reads: the installed packages (one
repository each), the standard library, any local folder or git checkout (tracked files).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

LENGTH_FACTOR = 4  # stage-two rows are 4x stage one's (report: 8,192 -> 32,768 tokens)
REPO_ROPE_THETA = 1_000_000.0  # stage-two RoPE base (report: 10,000 -> 1,000,000)


def repo_seq_len(profile: str | None = None) -> int:
    """The stage-two row length of ``profile``: :data:`LENGTH_FACTOR` x the stage-one
    ``seq_len`` of :func:`qcoder_lib.train.recipe.pretrain_preset` (smoke: 4 x 128 = 512)."""
    from qcoder_lib.train.recipe import pretrain_preset

    return LENGTH_FACTOR * pretrain_preset(profile).seq_len


@dataclass
class RepoLevelConfig:
    """How repositories become stage-two samples."""

    max_tokens: int = 512  # token budget of one sample (repo_seq_len(profile))
    fim_rate: float = 0.5  # share of targets that carry a FIM span (PSM), as in stage one
    languages: tuple[str, ...] = ("python",)  # files read (names of data.sources.languages)
    max_files_per_repo: int = 200  # files read per repository (in sorted order)
    max_file_bytes: int = 200_000  # larger files are skipped
    min_files: int = 2  # repositories with fewer files are skipped (no context to use)
    samples_per_repo: int = 2  # samples drawn per repository (each a new random target)
    max_repos: int | None = None  # stop after this many repositories used (None: all)
    max_samples: int | None = None  # stop after this many samples (None: all)

    def __post_init__(self):
        if self.max_tokens < 16:
            raise ValueError(f"RepoLevelConfig.max_tokens={self.max_tokens} must be at least 16")
        if not 0.0 <= self.fim_rate <= 1.0:
            raise ValueError(f"RepoLevelConfig.fim_rate={self.fim_rate} must lie in [0, 1]")
        for name in ("max_files_per_repo", "min_files", "samples_per_repo"):
            if getattr(self, name) < 1:
                raise ValueError(f"RepoLevelConfig.{name}={getattr(self, name)} must be >= 1")


@dataclass
class RepoLevelReport:
    """What :func:`repo_level_shards` wrote."""

    repos: int = 0  # repositories that gave samples
    repos_skipped: int = 0  # repositories with fewer than min_files readable files
    samples: int = 0  # samples written
    fim: int = 0  # samples whose target carries a FIM span
    tokens: int = 0  # tokens written
    longest: int = 0  # longest sample (never above the budget)
    context_files: int = 0  # context files kept, all samples together
    dropped_files: int = 0  # context files left out to fit the budget
    truncated_targets: int = 0  # targets whose end was cut to fit
    lengths: list[int] = field(default_factory=list)  # tokens of each sample

    def mean_tokens(self) -> float:
        """Mean tokens per sample (0 when nothing was written)."""
        return self.tokens / max(self.samples, 1)


def repository_files(roots=None, config: RepoLevelConfig | None = None,
                     stats=None) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """``(repo name, [(path, content), ...])`` for each repository of ``roots`` (folders, git
    checkouts, :class:`~qcoder_lib.data.sources.repos.Repo` s; ``None``: the standard library
    and every installed package) with at least ``min_files`` readable files of the wanted
    languages (at most ``max_files_per_repo``, sorted by path). Skipped files are counted in
    ``stats`` (a :class:`~qcoder_lib.data.sources.documents.SourceStats`)."""
    from qcoder_lib.data.sources.documents import SourceStats
    from qcoder_lib.data.sources.languages import language_of
    from qcoder_lib.data.sources.repos import as_repos, read_document, repo_files

    config = config or RepoLevelConfig()
    stats = stats if stats is not None else SourceStats()
    wanted = set(config.languages)
    for repo in as_repos(roots):
        files = []
        for rel in repo_files(repo):
            if len(files) >= config.max_files_per_repo:
                break
            lang = language_of(rel)
            if lang is None or lang not in wanted or "\n" in rel:
                continue
            doc = read_document(repo, rel, "code", lang, stats, config.max_file_bytes)
            if doc is not None and doc.text.strip():
                files.append((rel, doc.text))
        yield repo.name, files


def repo_samples(roots, tokenizer, config: RepoLevelConfig | None = None, *, seed: int = 0,
                 report: RepoLevelReport | None = None):
    """Stage-two samples (:class:`~qcoder_lib.fim_repo.RepoSample`), ``samples_per_repo`` per
    repository, each with a target drawn from ``random.Random(seed)`` and cut to
    ``config.max_tokens`` by :func:`~qcoder_lib.fim_repo.repo_fim`. Raises ``ValueError`` naming the
    repository and target if a sample ever came out over the budget."""
    from qcoder_lib.fim import FIMConfig
    from qcoder_lib.fim_repo import repo_fim

    config = config or RepoLevelConfig()
    report = report if report is not None else RepoLevelReport()
    rng = random.Random(seed)
    fim = FIMConfig(fim_rate=config.fim_rate)
    # No file longer than budget x longest token (in characters) can fit: such files are
    # counted as dropped (context) or cut to that length (target) before any tokenizing.
    limit = config.max_tokens * longest_token_chars(tokenizer)
    n_repos = n_samples = 0
    for name, files in repository_files(roots, config):
        if len(files) < config.min_files:
            report.repos_skipped += 1
            continue
        if config.max_repos is not None and n_repos >= config.max_repos:
            return
        n_repos += 1
        report.repos += 1
        for _ in range(config.samples_per_repo):
            if config.max_samples is not None and n_samples >= config.max_samples:
                return
            t = rng.randrange(len(files))
            target = files[t]
            pre_cut = max(len(target[1]) - limit, 0)
            if pre_cut:
                target = (target[0], target[1][:limit])
            context = [f for i, f in enumerate(files) if i != t and len(f[1]) <= limit]
            too_long = [f[0] for i, f in enumerate(files) if i != t and len(f[1]) > limit]
            s = repo_fim([target, *context], name, tokenizer, rng, fim,
                         max_tokens=config.max_tokens, target=0)
            s.dropped = sorted(s.dropped + too_long)
            s.truncated_chars += pre_cut
            if len(s.input_ids) > config.max_tokens:  # the promise this stage rests on
                raise ValueError(f"repo {name!r}, target {s.target_path!r}: sample of "
                                 f"{len(s.input_ids)} tokens exceeds max_tokens="
                                 f"{config.max_tokens}")
            n_samples += 1
            yield s


def longest_token_chars(tokenizer) -> int:
    """An upper bound on the characters of one regular token: the longest entry of the
    byte-level vocabulary (one symbol per byte, and a character takes at least one byte). No text
    of more than ``n * longest_token_chars`` characters encodes to ``n`` tokens or fewer."""
    vocab = [t for t in tokenizer.get_vocab() if not t.startswith("<|")]  # special tokens out
    return max(map(len, vocab), default=1)


def repo_level_shards(dst, tokenizer, config: RepoLevelConfig | None = None, roots=None, *,
                      seed: int = 0, shard_tokens: int = 1 << 24,
                      progress: bool = False) -> RepoLevelReport:
    """Write stage-two samples of ``roots`` into token shards in ``dst`` (``index.json``,
    ``documents.jsonl`` with ``source="repo"``, repo, target, files kept/dropped, FIM mode), the
    format :class:`qcoder_lib.train.ShardRows` reads. Written atomically (a failed run leaves no
    half folder). Returns the :class:`RepoLevelReport`."""
    from qcoder_lib.data.shards import ShardWriter
    from qcoder_lib.io import atomic_dir
    from qcoder_lib.tokenizer import special_id

    config = config or RepoLevelConfig()
    report = RepoLevelReport()
    eos = special_id(tokenizer, "<|endoftext|>")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="repo-level samples", unit=" samples")
    with atomic_dir(Path(dst)) as tmp:
        writer = ShardWriter(tmp, shard_tokens=shard_tokens, eos_id=eos,
                             tokenizer_name=getattr(tokenizer, "name_or_path", "") or "")
        for s in repo_samples(roots, tokenizer, config, seed=seed, report=report):
            ids = np.asarray(s.input_ids)
            if int(ids[-1]) != eos:
                raise ValueError(f"repo {s.repo!r}: sample does not end with <|endoftext|>")
            writer.add(ids, {"group": "code", "source": "repo", "repo": s.repo,
                             "path": s.target_path, "files": len(s.files) + 1,
                             "dropped": len(s.dropped), "fim": s.target.mode})
            report.samples += 1
            report.fim += s.target.mode != "plain"
            report.tokens += len(ids)
            report.longest = max(report.longest, len(ids))
            report.context_files += len(s.files)
            report.dropped_files += len(s.dropped)
            report.truncated_targets += s.truncated_chars > 0
            report.lengths.append(len(ids))
            if bar is not None:
                bar.update(1)
        if report.samples == 0:
            raise ValueError(f"repo_level_shards: no repository with at least min_files="
                             f"{config.min_files} {'/'.join(config.languages)} files")
        writer.close({"repo_level": {**asdict(config), "seed": seed}})
    if bar is not None:
        bar.close()
    return report


# --------------------------------------------------------------------------------------------
# Stage two: continued pretraining on repository samples
# --------------------------------------------------------------------------------------------


@dataclass
class RepoStagePreset:
    """A profile's stage-two sizes (course choices: about a third of stage one's tokens, the same
    tokens per step, a lower peak learning rate; the report gives ~300B after 5.2T tokens)."""

    steps: int = 40  # optimizer steps
    batch_size: int = 4  # rows of repo_seq_len tokens per step (stage one's tokens per step)
    lr: float = 1e-3  # peak learning rate of the new warm-up + cosine schedule
    warmup_steps: int = 4  # linear warm-up steps
    max_repos: int = 32  # installed packages read as repositories
    samples_per_repo: int = 2  # samples per repository (a new random target each)
    max_files_per_repo: int = 16  # files read per repository


REPO_STAGE_PRESETS = {
    "smoke": RepoStagePreset(),
    "cpu": RepoStagePreset(steps=200, batch_size=4, lr=7e-4, warmup_steps=20, max_repos=120,
                           samples_per_repo=4, max_files_per_repo=64),
    "gpu": RepoStagePreset(steps=2000, batch_size=8, lr=2e-4, warmup_steps=100, max_repos=400,
                           samples_per_repo=32, max_files_per_repo=200),
}


def repo_stage_preset(profile: str | None = None) -> RepoStagePreset:
    """The stage-two preset of ``profile`` (default: the current profile)."""
    from qcoder_lib.runtime import get_profile

    profile = profile or get_profile()
    if profile not in REPO_STAGE_PRESETS:
        raise ValueError(f"no stage-two preset for profile {profile!r}; one of "
                         f"{', '.join(REPO_STAGE_PRESETS)}")
    return REPO_STAGE_PRESETS[profile]


def stage_two_model(model, seq_len: int, rope_theta: float = REPO_ROPE_THETA):
    """A copy of ``model`` (a :class:`~qcoder_lib.model.QwenForCausalLM`) for stage two: the same
    weights, the RoPE base raised to ``rope_theta`` and ``max_position_embeddings`` to
    ``seq_len``. (RoPE has no weights: only the rotation frequencies change.)"""
    from qcoder_lib.model import QwenForCausalLM

    cfg = model.config.with_(rope_theta=float(rope_theta), max_position_embeddings=int(seq_len))
    new = QwenForCausalLM(cfg).to(next(model.parameters()).device)
    new.load_state_dict(model.state_dict())
    return new


@dataclass
class RepoStageRun:
    """What :func:`repo_stage` did."""

    model: object  # the stage-two QwenForCausalLM (trained)
    data: RepoLevelReport  # the repository samples written
    rows: int  # training rows of seq_len tokens
    result: object  # the TrainResult (metrics.jsonl, final/ in out/run)
    seq_len: int  # stage-two row length
    rope_theta: float  # stage-two RoPE base


def repo_stage(model, tokenizer, out, *, roots=None, seq_len: int | None = None,
               steps: int = 60, batch_size: int = 4, lr: float = 1e-3, warmup_steps: int = 6,
               rope_theta: float = REPO_ROPE_THETA, data: RepoLevelConfig | None = None,
               seed: int = 0, progress: bool = False) -> RepoStageRun:
    """Stage two (repository-level pretraining) from a stage-one ``model``: repository samples of
    ``roots`` at ``seq_len`` tokens (default :func:`repo_seq_len`) into ``out/repo-shards``,
    then :func:`qcoder_lib.train.train` into ``out/run`` on :func:`stage_two_model`.

    What is kept from stage one: the weights only. The AdamW moments, the learning-rate schedule
    (a new warm-up to ``lr``, then cosine to ``lr / 10``) and the step counter start afresh, as
    each stage of the report's recipe is its own run."""
    from qcoder_lib.train import ShardRows, TrainConfig, train

    seq_len = seq_len or repo_seq_len()
    data = data or RepoLevelConfig(max_tokens=seq_len)
    out = Path(out)
    report = repo_level_shards(out / "repo-shards", tokenizer, data, roots, seed=seed,
                               progress=progress)
    rows = ShardRows(out / "repo-shards", seq_len)
    stage2 = stage_two_model(model, seq_len, rope_theta)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr,
                      min_lr=lr / 10, warmup_steps=min(warmup_steps, steps // 2),
                      checkpoint_every=0, eval_every=0, seed=seed, progress=progress,
                      out_dir=str(out / "run"))
    result = train(stage2, rows, cfg, tokenizer=tokenizer)
    return RepoStageRun(stage2, report, len(rows), result, seq_len, float(rope_theta))
