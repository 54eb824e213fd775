"""``stemqd sizes IMAGE... --out DIR``: size distribution of dots in low-magnification images.

For every image, ``DIR/<name>/`` gets ``sizes.csv`` (one row per dot: centre, edge length,
the two sides, orientation, shape measures and ``flag``, "" for a measured dot, else why it
was excluded), ``summary.json`` (``n``, ``mean_nm``, ``std_nm``, ``relative_spread``, the
log-normal fit, the contrast used, the exclusions by reason, provenance) and ``sizes.png``
(overlay and histogram). Method and criteria: :mod:`stemqd.analysis.sizes`.

An image that cannot be used is reported in one line and the others go on; the exit code is
then 1 (0: all images have results; 2: a usage error, nothing analysed).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import InputError, StemqdError

__all__ = ["add_parser", "handler"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sizes`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "sizes",
        help="dot size distribution from low-magnification TEM/STEM images",
        description=(
            "Find the dots of low-magnification images (carbon support and uneven "
            "illumination divided out, touching dots split), measure each square dot's "
            "edge length, flag dots cut by the border and aggregates, and write the "
            "distribution (mean, standard deviation, relative spread, log-normal fit). "
            "IMAGE may be files, folders or quoted globs. Exit code: 0 all done, 1 some "
            "images failed, 2 usage error."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--pixel-size",
        metavar="VALUE",
        help="pixel size for all images, overriding their calibration: 0.25nm, 2.5A "
        "(a bare number is Å)",
    )
    parser.add_argument(
        "--contrast",
        choices=("auto", "bright", "dark"),
        default="auto",
        help="bright dots on a dark field (HAADF), dark dots on a bright field (TEM), or "
        "decide from the histogram's skewness (default; recorded in summary.json)",
    )
    parser.add_argument(
        "--max-area-ratio",
        type=float,
        default=3.0,
        metavar="R",
        help="flag dots larger than R x the median area as aggregates (default 3; 0 "
        "disables, e.g. for fields that mix populations of very different sizes)",
    )
    parser.add_argument(
        "--min-edge",
        type=float,
        default=2.0,
        metavar="NM",
        help="regions smaller than a square of this edge (nm) are noise (default 2)",
    )
    parser.set_defaults(func=handler)
    return parser


def handler(args: argparse.Namespace) -> int:
    """Analyse every image; return 0, or 1 if any image failed."""
    from pathlib import Path

    from ..analysis.sizes import measure_sizes, write_size_results
    from ..batch import discover_inputs, stack_names
    from ..io import load, parse_length

    try:
        override = parse_length(args.pixel_size) if args.pixel_size is not None else None
    except InputError as exc:
        raise InputError(f"--pixel-size: {exc}") from None
    if args.max_area_ratio < 0 or args.min_edge <= 0:
        raise InputError("--max-area-ratio must be >= 0 and --min-edge > 0")
    paths, problems = discover_inputs(args.inputs)
    for text, why in problems:
        print(f"stemqd sizes: error: {text}: {why}", file=sys.stderr)
    if not paths:
        raise InputError("no image to analyse")
    out = Path(args.out)
    command = shlex.join(["stemqd", *sys.argv[1:]])
    failed = len(problems)
    for path, name in zip(paths, stack_names(paths)):
        try:
            stack = load(path, pixel_size_A=override)
            image = stack.frames.mean(axis=0)
            result = measure_sizes(
                image,
                stack.pixel_size_A / 10.0,
                contrast=args.contrast,
                min_edge_nm=args.min_edge,
                max_area_ratio=args.max_area_ratio or None,
            )
            summary = write_size_results(
                out / name,
                image,
                result,
                inputs=[path],
                name=name,
                extra={
                    "image": str(path),
                    "frames_averaged": int(stack.frames.shape[0]),
                    "pixel_size_nm": stack.pixel_size_A / 10.0,
                    "pixel_size_source": stack.pixel_size_source,
                    "command": command,
                },
            )
        except StemqdError as exc:
            failed += 1
            message = " ".join(str(exc).split())
            if not message.startswith(str(path)):
                message = f"{path}: {message}"
            print(f"stemqd sizes: error: {message}", file=sys.stderr)
            continue
        spread = summary["relative_spread"]
        print(
            f"{name}: n = {summary['n']}"
            + (
                f", {summary['mean_nm']:.2f} ± {summary['std_nm']:.2f} nm ({100 * spread:.0f} %)"
                if spread is not None
                else ""
            )
            + f", {summary['n_regions'] - summary['n']} excluded, {result.contrast} dots;"
            f" results in {out / name}"
        )
    return 1 if failed else 0
