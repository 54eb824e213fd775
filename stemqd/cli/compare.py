"""``stemqd compare NAME=DIR ... --out DIR``: per-dot ratios compared between groups.

Each ``NAME=DIR`` is a group of dots: the ``--out`` folder of a ``stemqd process`` run. Two
groups are compared with :func:`stemqd.analysis.statistics.compare_groups` (Welch's t-test, a
permutation test, Hedges' g, a bootstrap CI of the difference); more groups pairwise, with
Holm-adjusted p-values. Writes (with :func:`stemqd.batch.write_compare`) ``dots.csv``,
``groups.csv``, ``tests.csv``, ``depth.csv`` (per group and depth: mean ± s.e. of the dots'
ratios) and ``compare.json``, and draws ``compare.png`` (the per-dot ratios with their CIs, by
group) and ``depth.png`` (the group depth profiles). Where the dots were counted (``process``
with ``counting.enabled``) also ``thickness.csv`` and ``thickness_stats.csv`` (the groups'
counted thickness per column type) and ``thickness.png`` (their distributions side by side).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..config import load_config
from ..errors import InputError
from .process import add_common_config_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``compare`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "compare",
        help="compare per-dot ratios between groups of processed stacks",
        description="Compare the per-dot ratios of groups of dots, each the --out folder of a "
        "'stemqd process' run: stemqd compare core=out/core core-shell=out/cs --out out/cmp",
    )
    parser.add_argument(
        "groups", nargs="+", metavar="NAME=DIR", help="group name and process folder"
    )
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    add_common_config_arguments(parser)
    parser.set_defaults(func=handler)
    return parser


def _parse_groups(items) -> dict:
    groups = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError(f"{item!r}: expected NAME=DIR, e.g. core=out/core")
        if name in groups:
            raise InputError(f"group {name!r} given twice")
        groups[name.strip()] = folder.strip()
    return groups


def _num(value, spec: str) -> str:
    """A number formatted with `spec`, or "n/a" where it is missing or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, spec) if math.isfinite(v) else "n/a"


def handler(args: argparse.Namespace) -> int:
    """Compare the groups, write the tables and the plots; return 0."""
    from ..batch import compare_batches
    from ..files import atomic_write_bytes
    from ..report import (
        compare_figure,
        figure_png,
        group_depth_figure,
        thickness_distribution_figure,
    )

    groups = _parse_groups(args.groups)
    a = load_config(args.config, args.overrides, preset=args.preset).analysis
    out = Path(args.out)
    result = compare_batches(
        groups, permutations=a.permutations, bootstrap=a.bootstrap, seed=a.seed, out=out
    )
    for w in result["warnings"]:
        print(f"stemqd compare: warning: {w}", file=sys.stderr)
    stats, tests = result["groups"], result["tests"]
    fig = compare_figure(result["dots"], stats, tests, result["ratio_label"])
    atomic_write_bytes(out / "compare.png", figure_png(fig, dpi=120))
    if len(result["depth"]):
        fig = group_depth_figure(result["depth"], result["ratio_label"])
        atomic_write_bytes(out / "depth.png", figure_png(fig, dpi=120))
    if "thickness" in result:
        fig = thickness_distribution_figure(
            result["thickness"], title="counted thickness per group (fraction of columns)"
        )
        atomic_write_bytes(out / "thickness.png", figure_png(fig, dpi=120))
    label = result["ratio_label"]
    for row in stats.to_dict(orient="records"):
        print(
            f"{row['group']}: {label} = {_num(row['mean'], '.4f')} ± {_num(row['std'], '.4f')} "
            f"(mean ± s.d., n = {row['n']})"
        )
    for row in tests.to_dict(orient="records"):
        print(
            f"{row['group_b']} - {row['group_a']}: {_num(row.get('difference'), '+.4f')} "
            f"[{_num(row.get('diff_ci_low'), '+.4f')}, {_num(row.get('diff_ci_high'), '+.4f')}], "
            f"Welch p = {_num(row.get('welch_p'), '.3g')}, "
            f"permutation p = {_num(row.get('permutation_p'), '.3g')}, "
            f"Hedges g = {_num(row.get('hedges_g'), '.2f')}"
        )
    counted = result.get("thickness_stats")
    for row in [] if counted is None else counted.to_dict(orient="records"):
        print(
            f"{row['group']}: {row['label']} counted thickness {_num(row['mean'], '.2f')} ± "
            f"{_num(row['std'], '.2f')} (mean ± s.d. over {row['n_columns']} columns of "
            f"{row['n_dots']} dot(s), {row['thickness_from']})"
        )
    print(f"tables and plot in {out}", file=sys.stderr)
    return 0


__all__ = ["add_parser", "handler"]
