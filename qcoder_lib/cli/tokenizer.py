"""``qcoder tokenizer``: train (or reuse) the course tokenizer for a profile and save it to a folder.

Stage 1 of the recipe (notebook 01). The tokenizer is :func:`qcoder_lib.tokenizer.course_tokenizer`
(byte-level BPE built as Qwen2's on the course corpus, cached per profile under the artefacts
folder); ``--out`` receives a copy written by ``save_pretrained`` that ``load_tokenizer`` and
``AutoTokenizer.from_pretrained`` read, plus ``tokenizer_summary.json`` with the figures printed
at the end: vocabulary size, where the special tokens are, and bytes per token on held-out code,
text and math (samples the tokenizer was not trained on).
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

SUMMARY_FILE = "tokenizer_summary.json"  # written next to the tokenizer files in --out
DESCRIPTION = (
    "Stage 1 of the recipe (notebook 01): train the course tokenizer for a profile (byte-level "
    "BPE built as Qwen2's, 22 special tokens after the regular vocabulary in Qwen's order), or "
    "reuse the one cached in the artefacts folder, and save it to --out with save_pretrained "
    "(load it with qcoder_lib.tokenizer.load_tokenizer or transformers.AutoTokenizer). Prints and "
    f"saves ({SUMMARY_FILE}) the vocabulary size, the special tokens' ids and bytes per token "
    "on held-out code, text and math that the tokenizer was not trained on."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``qcoder tokenizer`` and its options on ``subparsers``."""
    from qcoder_lib.cli import add_common_options

    p = subparsers.add_parser(
        "tokenizer",
        help="train (or reuse) the course tokenizer and save it",
        description=DESCRIPTION,
    )
    add_common_options(p, out_help="folder to save the tokenizer into (created if missing; in "
                                   "an existing folder, e.g. a model's, only tokenizer files "
                                   "are written)")
    p.add_argument("--vocab-size", type=int, default=None, metavar="N",
                   help="regular (BPE) tokens to learn, the 22 special tokens come on top "
                        "(default: the profile's: smoke 2048, cpu 2048, gpu 32768)")
    p.add_argument("--rebuild", action="store_true",
                   help="retrain even when a cached tokenizer with the same recipe exists")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build or reuse the tokenizer, save it to ``args.out``, print and save the summary."""
    from tqdm.auto import tqdm

    from qcoder_lib.io import atomic_dir
    from qcoder_lib.runtime import get_profile
    from qcoder_lib.tokenizer import (
        COURSE_VOCAB_SIZE,
        bytes_per_token,
        course_tokenizer,
        course_tokenizer_dir,
        padded_vocab_size,
        regular_vocab_size,
        special_ids,
        tokenizer_corpus,
    )

    profile = args.profile or get_profile()
    vocab = args.vocab_size if args.vocab_size is not None else COURSE_VOCAB_SIZE[profile]
    if vocab < 256:
        raise SystemExit(f"qcoder tokenizer: --vocab-size {vocab} is below the 256 byte symbols "
                         "of byte-level BPE")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"qcoder tokenizer: --out {args.out} is a file, not a folder")
    cache = course_tokenizer_dir(profile, vocab)
    meta = cache / "course_tokenizer.json"
    before = meta.stat().st_mtime_ns if meta.is_file() else None

    steps = tqdm(total=4, desc="qcoder tokenizer", unit="step")
    steps.set_postfix_str("train or reuse")
    start = time.perf_counter()
    tok = course_tokenizer(profile, rebuild=args.rebuild, vocab_size=vocab)
    seconds = time.perf_counter() - start
    trained = not meta.is_file() or meta.stat().st_mtime_ns != before
    steps.update()

    steps.set_postfix_str("save")
    if out.is_dir() and any(out.iterdir()):  # keep what is there (a model, a checkpoint)
        tok.save_pretrained(str(out))
    else:
        with atomic_dir(out) as tmp:
            tok.save_pretrained(str(tmp))
    steps.update()

    steps.set_postfix_str("held-out samples")
    heldout = tokenizer_corpus(profile, split="heldout")
    steps.update()
    steps.set_postfix_str("bytes per token")
    bpt = {group: round(bytes_per_token(tok, texts), 3) for group, texts in heldout.items()}
    steps.update()
    steps.close()

    ids = special_ids(tok)
    summary = {
        "profile": profile,
        "regular_tokens": regular_vocab_size(tok),
        "special_tokens": len(ids),
        "vocab_size": len(tok),
        "embedding_rows_padded_128": padded_vocab_size(tok),
        "special_ids": ids,
        "heldout_bytes_per_token": bpt,
        "heldout_chars": {g: sum(map(len, t)) for g, t in heldout.items()},
        "trained": trained,
        "seconds": round(seconds, 2),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(format_summary(summary, out=args.out, cache_name=cache.name))
    return 0


def format_summary(summary: dict, *, out: str, cache_name: str) -> str:
    """The end-of-run report of ``qcoder tokenizer`` (``summary`` as saved in
    ``tokenizer_summary.json``); paths appear as the user gave them or by name only."""
    from qcoder_lib.tokenizer import SPECIAL_TOKENS

    official = SPECIAL_TOKENS.values()
    ids = summary["special_ids"]
    first, last = min(ids.values()), max(ids.values())
    how = (f"trained in {summary['seconds']:.1f} s" if summary["trained"]
           else "reused from the cache")
    specials = textwrap.fill("  ".join(f"{t}={i}" for t, i in ids.items()), width=96,
                             initial_indent="    ", subsequent_indent="    ")
    bpt = ", ".join(f"{g} {v:.2f}" for g, v in summary["heldout_bytes_per_token"].items())
    chars = ", ".join(f"{g} {n:,}" for g, n in summary["heldout_chars"].items())
    return "\n".join([
        (f"qcoder tokenizer: profile {summary['profile']}, {how} (artefact {cache_name}), "
         f"saved to {out}"),
        (f"  vocabulary: {summary['regular_tokens']:,} regular + {summary['special_tokens']} "
         f"special = {summary['vocab_size']:,} tokens (embedding rows padded to a multiple of "
         f"128: {summary['embedding_rows_padded_128']:,})"),
        (f"  special tokens at ids {first}..{last}, in Qwen's order (official ids "
         f"{min(official)}..{max(official)}):"),
        specials,
        f"  bytes per token on held-out samples: {bpt}",
        f"    (held-out characters: {chars}; higher is better)",
    ])
