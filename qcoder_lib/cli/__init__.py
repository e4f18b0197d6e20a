"""The ``qcoder`` command line (also ``python -m qcoder_lib``): one subcommand per stage.

Each stage lives in its own module ``qcoder_lib/cli/<name>.py`` with two functions:
``add_parser(subparsers) -> argparse.ArgumentParser`` (which calls :func:`add_common_options` and
``parser.set_defaults(run=run)``) and ``run(args) -> int``. :data:`COMMANDS` lists them in the
order of the recipe; adding a stage means adding its module and its name here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("tokenizer", "data", "pretrain", "launch", "sft", "dpo", "eval")  # modules of qcoder_lib.cli, in recipe order


def add_common_options(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``--profile`` (smoke / cpu / gpu, default: auto-detected as the notebooks do) and
    ``--out`` (where the stage writes; ``out_help`` says what goes there)."""
    parser.add_argument("--profile", choices=("smoke", "cpu", "gpu"), default=None,
                        help="scale profile (default: $QCODER_PROFILE, else smoke under CI, gpu "
                             "with CUDA, cpu otherwise)")
    parser.add_argument("--out", required=True, help=out_help)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="qcoder",
        description="Run the stages of the Qwen2.5-Coder recipe at course scale; each stage is "
                    "the code a notebook teaches. `qcoder STAGE --help` explains every option.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name in COMMANDS:
        importlib.import_module(f"qcoder_lib.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the chosen stage, return its exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "profile", None):
        import os

        os.environ["QCODER_PROFILE"] = args.profile  # every library default follows the profile
    return int(args.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
