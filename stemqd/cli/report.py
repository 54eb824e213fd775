"""``stemqd report DIR``: a self-contained HTML page and a Markdown twin for a run.

DIR is the ``--out`` folder of ``stemqd process`` (the group figure of all dots: images over
their column-intensity maps, ratio under each; per stack: the overlay, the column-intensity
map, the ratio with its CI, the ratio-by-depth plot, per-type statistics, lattice spacings;
failures; config hash and versions) or of ``stemqd compare`` (group statistics, the per-dot
plot, the group depth profiles, thumbnails of each group's maps, tests).
Writes ``DIR/report.html`` (figures embedded) and ``DIR/report.md`` (figures under
``DIR/report_files/``) and prints the HTML path.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``report`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "report",
        help="write an HTML + Markdown report of a process or compare folder",
        description="Summarise a 'stemqd process' or 'stemqd compare' output folder in one "
        "self-contained HTML page (DIR/report.html) and Markdown (DIR/report.md).",
    )
    parser.add_argument(
        "folder", metavar="DIR", help="output folder of 'stemqd process' or 'stemqd compare'"
    )
    parser.set_defaults(func=handler)
    return parser


def handler(args: argparse.Namespace) -> int:
    """Write the report; print the HTML path; return 0."""
    from ..report import write_report

    html_path, md_path = write_report(args.folder)
    print(html_path)
    return 0


__all__ = ["add_parser", "handler"]
