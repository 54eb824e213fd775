"""``stemqd info FILE...``: what stemqd reads from each file, before any processing.

For each file: shape, number of frames, stored dtype, pixel size with where it came from,
voltage and convergence semi-angle; ``--json`` prints the same as a JSON list. A file that
cannot be used is reported on one line of stderr and the others are still shown; the exit
code is non-zero if any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError, StemqdError
from ..io import load, parse_length


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``info`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "info",
        help="show shape, calibration and optics of image files",
        description=(
            "Show what stemqd reads from each file: shape, frames, dtype, pixel size and "
            "its source, voltage and convergence angle. Exits non-zero if any file cannot "
            "be used."
        ),
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="image files (TIFF, DM3/DM4, EMD, SER, HSPY, ZSPY, NPY)",
    )
    parser.add_argument(
        "--pixel-size",
        metavar="VALUE",
        help="pixel size overriding the files' calibration, e.g. 0.25A, 0.025nm, 25pm (bare number: Å)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    parser.set_defaults(func=handler)
    return parser


def handler(args: argparse.Namespace) -> int:
    """Print the summary of every file; return 0, or 2 if any file failed."""
    # A bad --pixel-size is the user's mistake for all files: one error, via the dispatcher.
    try:
        override = parse_length(args.pixel_size) if args.pixel_size is not None else None
    except InputError as exc:
        raise InputError(f"--pixel-size: {exc}") from None
    results = []
    failed = 0
    for path in args.files:
        try:
            summary = load(path, pixel_size_A=override).summary()
        except StemqdError as exc:
            failed += 1
            message = " ".join(str(exc).split())  # one line, whatever the reader said
            print(f"stemqd info: error: {message}", file=sys.stderr)
            results.append({"path": path, "ok": False, "error": message})
            continue
        results.append({"ok": True, **summary})
        if not args.json:
            print(_format(summary), flush=True)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 2 if failed else 0


def _format(s: dict) -> str:
    n, ny, nx = s["shape"]
    md = s["metadata"]
    voltage, conv = s["voltage_kv"], s["convergence_mrad"]
    rows = [
        ("format", md.get("format", "?")),
        ("shape", f"{n} x {ny} x {nx} (frames, y, x)"),
        ("frames", n),
        ("dtype", s["dtype"]),
        ("pixel size", f"{s['pixel_size_A']:.5g} Å  [{s['pixel_size_source']}]"),
    ]
    if "pixel_size_A_file" in md:
        rows.append(
            ("", f"(the file says {md['pixel_size_A_file']:.5g} Å, {md['pixel_size_source_file']})")
        )
    rows += [
        (
            "field of view",
            f"{ny * s['pixel_size_A'] / 10:.4g} x {nx * s['pixel_size_A'] / 10:.4g} nm",
        ),
        ("voltage", f"{voltage:g} kV" if voltage is not None else "not in file"),
        ("convergence", f"{conv:g} mrad" if conv is not None else "not in file"),
    ]
    if md.get("n_signals", 1) > 1:
        titles = ", ".join(map(str, md.get("signal_titles", [])))
        rows.append(
            (
                "signal",
                f"{md.get('title') or '#' + str(md.get('signal_index'))} (of {md['n_signals']}: {titles})",
            )
        )
    rows.append(("sha256", s["sha256"]))
    return "\n".join([s["path"]] + [f"  {k + ':' if k else '':<15}{v}" for k, v in rows])


__all__ = ["add_parser", "handler"]
