"""``stemqd config --show``: the effective configuration as TOML.

Defaults (the study's methods), then ``--config FILE``, then ``--set key=value``: exactly
what ``stemqd process`` would use with the same options. The first line is a TOML comment
with the config hash that every output records. Save it, edit it and pass it back with
``--config``.
"""

from __future__ import annotations

import argparse

from ..config import config_hash, config_to_toml, load_config
from .process import add_common_config_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``config`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "config",
        help="print the effective configuration as TOML",
        description="Print the effective config (defaults, then --config, then --set) as TOML, "
        "with its hash; redirect it to a file to start your own config.",
    )
    parser.add_argument("--show", action="store_true", help="print the config (the default action)")
    add_common_config_arguments(parser)
    parser.set_defaults(func=handler)
    return parser


def handler(args: argparse.Namespace) -> int:
    """Print the config; return 0."""
    config = load_config(args.config, args.overrides, preset=args.preset)
    print(f"# stemqd effective config; config_hash = {config_hash(config)}")
    print(config_to_toml(config), end="")
    return 0


__all__ = ["add_parser", "handler"]
