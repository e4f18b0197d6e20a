"""``qcoder data``: the pretraining corpus of a profile, as notebook 04 builds it (sources ->
filters -> dedup -> decontamination -> the 70/20/10 token mix -> token shards), with a progress
bar and the summary table at the end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` and its options."""
    from qcoder_lib.cli import add_common_options

    p = subparsers.add_parser(
        "data", help="build the profile's pretraining corpus into token shards",
        description="Read the course's sources (code from the standard library and installed "
                    "packages, or --code-root folders; synthetic programs checked in the "
                    "sandbox; package docs; prose; verified math), filter, deduplicate (exact "
                    "and MinHash), decontaminate against HumanEval and the course's eval sets, "
                    "mix 70/20/10 in tokens and write memory-mapped token shards. Prints a "
                    "progress bar of the tokens mixed, then a summary: documents read, skipped "
                    "by reason, filtered, duplicates, contaminated, and the mix's shares.")
    add_common_options(p, "corpus folder (created or replaced): shard_*.bin, documents.jsonl, "
                          "index.json and build_summary.json; an existing folder must be an "
                          "earlier corpus or empty")
    p.add_argument("--tokenizer", default="course", metavar="PATH|course|bytes",
                   help="what counts and stores the tokens: 'course' (the profile's course "
                        "tokenizer, built and cached on first use; the default), 'bytes' (one "
                        "token per UTF-8 byte, no tokenizer needed) or the folder of a saved "
                        "transformers tokenizer")
    p.add_argument("--max-tokens", type=_positive_int, default=None, metavar="N",
                   help="stop the mix after N tokens (default: when a group runs out)")
    p.add_argument("--code-root", action="append", default=None, metavar="DIR",
                   help="read code from this folder or git checkout instead of the standard "
                        "library and site-packages (repeat for several)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the generated programs and problems and the mix order")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return n


def load_mix_tokenizer(spec: str, profile: str):
    """The tokenizer named by ``--tokenizer``: ``"bytes"`` -> :class:`ByteTokenizer`,
    ``"course"`` -> the profile's course tokenizer, else a saved tokenizer folder."""
    from qcoder_lib.data import ByteTokenizer

    if spec == "bytes":
        return ByteTokenizer()
    if spec == "course":
        from qcoder_lib.tokenizer import course_tokenizer

        return course_tokenizer(profile)
    path = Path(spec)
    if not path.is_dir():
        raise SystemExit(f"qcoder data: --tokenizer {spec!r} is not 'course', 'bytes' or a folder")
    from qcoder_lib.tokenizer import load_tokenizer

    return load_tokenizer(path)


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that is neither empty nor an earlier corpus."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                               and not (out / "index.json").exists())):
        raise SystemExit(f"qcoder data: --out {out.name} exists and is not a token-shard folder "
                         "(it would be replaced): choose a new folder")


def run(args) -> int:
    """Build the corpus into ``--out`` (atomically: a failed build leaves no partial folder),
    then print the summary table."""
    from qcoder_lib.data import profile_config
    from qcoder_lib.data.build import build_corpus
    from qcoder_lib.io import atomic_dir, atomic_write_text
    from qcoder_lib.runtime import get_profile

    profile = args.profile or get_profile()
    out = Path(args.out)
    _check_out(out)
    tokenizer = load_mix_tokenizer(args.tokenizer, profile)
    cfg = profile_config(profile, seed=args.seed)
    cfg.mix.seed = args.seed
    cfg.mix.total_tokens = args.max_tokens
    cfg.mix.validate()
    with atomic_dir(out) as tmp:
        report = build_corpus(tmp, cfg, tokenizer=tokenizer, code_roots=args.code_root,
                              progress=not args.no_progress)
        summary = {"profile": profile, "rows": report.summary(), "mix": report.mix.rows(),
                   "stopped_by": report.mix.stopped_by, "tokenizer": report.mix.tokenizer,
                   "skipped": {s: dict(st.skipped) for s, st in report.sources.items()},
                   "seconds": round(report.seconds, 1)}
        atomic_write_text(tmp / "build_summary.json", json.dumps(summary, indent=1))
    print(f"profile {profile}: {report.mix.total_tokens:,} tokens ({report.mix.tokenizer}) in "
          f"{report.seconds:.0f} s -> {out.name}/")
    print(report.table())
    return 0
