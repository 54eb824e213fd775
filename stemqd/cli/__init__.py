"""The ``stemqd`` command line.

Each subcommand lives in its own module of this package and exposes ``add_parser(subparsers)``,
which registers the subcommand and sets ``func(args) -> int`` as its handler. This module only
composes them and turns every :class:`~stemqd.errors.StemqdError` into one clear line on stderr
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import StemqdError

#: Subcommand modules, in the order ``stemqd --help`` lists them.
SUBCOMMANDS = (
    "info",
    "process",
    "compare",
    "count",
    "report",
    "config",
    "cell",
    "simulate",
    "aimd",
    "sizes",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemqd",
        description="Quantitative ADF-STEM of perovskite nanocrystals.",
    )
    parser.add_argument("--version", action="version", version=f"stemqd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StemqdError as exc:
        print(f"stemqd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stemqd {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `stemqd info ... | head`): stop quietly, as cat does.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
