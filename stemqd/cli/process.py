"""``stemqd process INPUT... --out DIR``: the whole pipeline over a batch of stacks.

For every stack, ``DIR/<name>/`` gets ``columns.csv`` (one row per column), ``summary.json``
(the dot's numbers, the effective config and its hash, versions, the input's SHA-256),
``overlay.png`` (the columns by sublattice), ``intensity_map.png`` (each used column's
fitted intensity, normalised to the brightest) and ``image.png`` (the fitted image, one PNG
pixel per pixel); ``--save-intermediates`` adds the intermediate images as TIFFs. ``DIR``
gets ``summary.csv`` (one row per stack), ``failures.csv`` (when a stack failed),
``config.toml`` and ``run.json``. While it runs, ``DIR/.stemqd.lock`` names the run (pid,
host, start time, command); a second run on the same ``DIR`` is refused.

A rerun skips stacks whose results were made from the same input and config (``--force``
redoes them). A stack that fails is reported in one line and the others go on; the exit
code is then 1 (0: all stacks have results; 2: a usage error, nothing processed, e.g.
``DIR`` held by another run's lock). Ctrl-C ends the worker processes at once, writes
``summary.csv`` and ``run.json`` for the stacks that finished and exits 130; rerunning the
same command resumes.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from ..config import load_config
from ..errors import InputError


def add_common_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preset NAME``, ``--config FILE`` and repeatable ``--set key=value``."""
    from ..config import PRESETS

    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named starting point under --config and --set: 'default' "
        "(stemqd's unbiased measurement) or 'study' (the study's exact "
        "chain: 7-parameter window fits on the deconvolved image); "
        "summary.json records it and its measured ratio bias",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (see 'stemqd config --show')"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set columns.method=lmfit (repeatable)",
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``process`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "process",
        help="measure columns, ratios and spacings of image stacks",
        description=(
            "Run the pipeline (align, background, denoise, deconvolve, find and fit columns, "
            "sublattices, ratio, spacings) on every stack. INPUT may be files, folders (their "
            "image files) or quoted globs ('data/**/*.dm4'). Results go to DIR/<name>/; a "
            "rerun reuses up-to-date results. Exit code: 0 all done, 1 some stacks failed, "
            "2 usage error."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    add_common_config_arguments(parser)
    parser.add_argument(
        "--pixel-size",
        metavar="VALUE",
        help="pixel size for all inputs, overriding their calibration: 0.25A, "
        "0.025nm, 25pm (a bare number is Å); same as --set acquisition.pixel_size_A=",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="process N stacks in parallel processes (default 1)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the stacks on a Dask distributed scheduler, e.g. tcp://host:8786 "
        "(workers must see the same files)",
    )
    parser.add_argument(
        "--force", action="store_true", help="redo stacks whose results are up to date"
    )
    parser.add_argument(
        "--save-intermediates",
        action="store_true",
        help="also write every intermediate image as a calibrated TIFF",
    )
    parser.add_argument(
        "--positions",
        metavar="FILE.csv",
        help="refine these column positions (columns x_px, y_px, optional "
        "label; e.g. exported from StatSTEM or Atomap) instead of "
        "finding columns; one INPUT only; always recomputes",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=handler)
    return parser


def handler(args: argparse.Namespace) -> int:
    """Process the batch; return 0, 1 if any stack failed, 130 when interrupted."""
    from ..batch import BatchInterrupted, run_batch
    from ..io import parse_length
    from ..report import write_stack_figures

    overrides = list(args.overrides)
    if args.pixel_size is not None:
        try:
            overrides.append(f"acquisition.pixel_size_A={parse_length(args.pixel_size)!r}")
        except InputError as exc:
            raise InputError(f"--pixel-size: {exc}") from None
    if args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: give a positive number of processes")
    if args.scheduler is not None and args.jobs != 1:
        raise InputError(
            "--jobs and --scheduler exclude each other; the Dask cluster sets the parallelism"
        )
    config = load_config(args.config, overrides, preset=args.preset)
    process = None
    if args.positions is not None:
        from functools import partial
        from pathlib import Path

        from ..pipeline import process_stack, read_positions

        if len(args.inputs) != 1:
            raise InputError("--positions FILE.csv belongs to one image: give exactly one INPUT")
        read_positions(args.positions)  # a bad file is a usage error, before any work
        process = partial(process_stack, positions=str(Path(args.positions).resolve()))
    try:
        rows = run_batch(
            args.inputs,
            args.out,
            config,
            jobs=args.jobs,
            scheduler=args.scheduler,
            force=args.force or process is not None,
            save_intermediates=args.save_intermediates,
            process=process,
            render=write_stack_figures,
            progress=not args.quiet,
            command=shlex.join(["stemqd", *sys.argv[1:]]),
        )
    except BatchInterrupted as stop:
        # Exiting now: a further Ctrl-C must neither break this message nor kill the
        # interpreter's shutdown (exit code -2 instead of 130).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        counts = stop.rows["status"].value_counts().to_dict() if len(stop.rows) else {}
        print(
            f"stemqd process: interrupted; {len(stop.rows)} of {stop.total} stacks finished "
            f"({counts.get('processed', 0)} processed, {counts.get('skipped', 0)} up to date, "
            f"{counts.get('failed', 0)} failed), listed in {args.out}/summary.csv; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    _print_warnings(rows, args.out)
    counts = rows["status"].value_counts().to_dict() if len(rows) else {}
    failed = counts.get("failed", 0)
    print(
        f"{counts.get('processed', 0)} processed, {counts.get('skipped', 0)} up to date (skipped), "
        f"{failed} failed; results in {args.out}/summary.csv"
        + (f"; failures listed in {args.out}/failures.csv" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def _print_warnings(rows, out):
    """Each processed stack's warnings from its summary.json, one line each."""
    from ..batch import read_summary

    for _, row in rows.iterrows():
        if row.get("status") != "processed":
            continue
        summary = read_summary(f"{out}/{row['name']}") or {}
        for text in summary.get("warnings") or []:
            print(f"warning: {row['name']}: {text}", file=sys.stderr)


__all__ = ["add_common_config_arguments", "add_parser", "handler"]
