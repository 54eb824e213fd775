"""``stemqd simulate``: abTEM multislice references.

Examples::

    stemqd simulate thickness-series --quick --out series.csv          # < 1 min, CI/demo
    stemqd simulate thickness-series --material SrTiO3 --zone 001 --quick \\
        --sigma Sr=S1 --sigma Ti=S2 --sigma O=S3 --out sto.csv  # any crystal; sigmas in Å
    stemqd simulate thickness-series --out simulations/reference/cspbbr3_001_adf_series.csv \\
        --max-time 2700 --resume                                       # full reference
    stemqd simulate reanalyse series.csv --fit-model window7 --out series_window7.csv
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from ..errors import InputError


def add_parser(subparsers):
    """Register ``simulate`` and its ``thickness-series`` subcommand."""
    from ..simulation import (
        DEFAULT_CORRECTION_CONFIGS,
        DEFAULT_NUM_CONFIGS,
        DEFAULT_PHONON_SAMPLING_FACTOR,
        DEFAULT_PHONON_SIGMAS_A,
        FIT_MODELS,
        QUICK_NUM_CONFIGS,
        SeriesParameters,
    )
    from ..simulation.parameters import JOINT_BACKGROUNDS, MIN_BOX_A

    d = SeriesParameters()
    from ..materials import BUILTIN_MATERIALS

    p = subparsers.add_parser(
        "simulate",
        help="abTEM multislice references",
        description="abTEM multislice references for quantitative ADF.",
    )
    sub = p.add_subparsers(dest="simulate_command", metavar="SUBCOMMAND")
    s = sub.add_parser(
        "thickness-series",
        help="ADF thickness series of any crystal and zone axis measured with stemqd's "
        "column fitter (cubic CsPbBr3 [001] by default)",
        description="Frozen-phonon ADF-STEM thickness series of a crystal along a zone axis "
        "(cubic CsPbBr3 [001] by default; one multislice pass with exit planes per "
        "configuration), every column type of the projected cell measured through "
        "stemqd's column fitter and by disc integration. Writes a CSV, a JSON "
        "sidecar (parameters, structure, versions, seed, run time), the raw scans "
        "(.raw.npz) and a PNG plot.",
    )
    s.add_argument(
        "--material",
        default=d.material,
        metavar="NAME|CIF",
        help=f"built-in structure ({', '.join(BUILTIN_MATERIALS)}) or a CIF (any file ASE "
        f"reads), as for 'stemqd cell' (default {d.material})",
    )
    s.add_argument(
        "--zone",
        default="001",
        metavar="UVW",
        help="zone axis [uvw] in the structure's cell, e.g. 001, 110, 1-10 (default 001)",
    )
    s.add_argument(
        "--ratio",
        default=None,
        metavar="A:B",
        help="column types of the ratio, by label, site or elements as in 'stemqd cell' "
        "(e.g. Cs:PbBr; default: second-brightest : brightest column type)",
    )
    s.add_argument(
        "--merge-tol",
        type=float,
        default=d.merge_tol_A,
        metavar="Å",
        help="atoms whose projections are closer than this form one column (default "
        f"{d.merge_tol_A}; about 0.6 for CsPbBr3-Pnma along 101 or 010, whose tilts split "
        "each column)",
    )
    s.add_argument(
        "--divisions",
        type=int,
        default=d.divisions,
        metavar="N",
        help="thickness unit = repeat along the beam / N (e.g. 2 when the repeat holds two "
        "pseudo-cubic cells; default 1: thicknesses in repeats, unit cells of cubic "
        "perovskites)",
    )
    s.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_NUM_CONFIGS} configurations: a smoke run for CI and the "
        "demo (under a minute on 2 cores), not a reference",
    )
    s.add_argument(
        "--out",
        default="thickness_series.csv",
        metavar="FILE.csv",
        help="output CSV (default thickness_series.csv)",
    )
    s.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="plot (default: the CSV name with .png; 'none' for no plot)",
    )
    s.add_argument(
        "--configs",
        type=int,
        default=None,
        metavar="N",
        help=f"frozen-phonon configurations (default {DEFAULT_NUM_CONFIGS}, "
        f"--quick {QUICK_NUM_CONFIGS})",
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the displacements (default 0)")
    s.add_argument(
        "--lattice-constant",
        type=float,
        default=None,
        metavar="A",
        help="scale the structure so that its first cell vector has this length, Å "
        f"(default: the structure's own; {d.lattice_constant_A} for CsPbBr3)",
    )
    s.add_argument(
        "--thicknesses",
        default=None,
        metavar="LIST",
        help="thicknesses in units (see --divisions), e.g. 2:30:2 or 2,4,10 (default 2:30:2)",
    )
    s.add_argument(
        "--cells",
        type=int,
        default=None,
        help="lateral box, cells per side (default: the fewest that make the box at "
        f"least {MIN_BOX_A:.2f} Å wide; {d.cells} for CsPbBr3 [001])",
    )
    s.add_argument(
        "--sigma",
        action="append",
        default=[],
        metavar="EL=Å",
        help="rms displacement per direction of an element, Å, e.g. Cs=0.23; needed for "
        f"every element without a default (defaults {DEFAULT_PHONON_SIGMAS_A}: PBE AIMD of "
        "CsPbBr3 at 300 K about the mean positions, "
        "simulations/reference/cspbbr3_bulk_aimd/a6.00)",
    )
    s.add_argument(
        "--md-snapshots",
        nargs=2,
        default=None,
        metavar=("TRAJ", "SITES"),
        help="frozen phonons from MD snapshots instead of --sigma: a CP2K position "
        "trajectory of a periodic n x n x n cubic supercell and its ideal "
        "sites (any ASE format), e.g. simulations/reference/cspbbr3_bulk_aimd/"
        "a6.00/{bulk-production-pos-1.xyz.gz,dot.xyz}; --cells must be a "
        "multiple of n (stemqd.snapshot_phonons)",
    )
    s.add_argument(
        "--md-about",
        choices=("sites", "mean"),
        default=None,
        help="--md-snapshots displacements about the ideal cubic sites (static "
        "tilts included) or about each atom's mean position (thermal motion "
        "only); default sites",
    )
    s.add_argument(
        "--cc",
        type=float,
        default=d.chromatic_aberration_mm,
        metavar="MM",
        help=f"chromatic aberration Cc, mm (assumed; default {d.chromatic_aberration_mm})",
    )
    s.add_argument(
        "--energy-spread",
        type=float,
        default=d.energy_spread_fwhm_eV,
        metavar="EV",
        help=f"energy spread FWHM, eV (default {d.energy_spread_fwhm_eV})",
    )
    s.add_argument(
        "--focal-nodes",
        type=int,
        default=d.focal_nodes,
        help=f"Gauss-Hermite nodes of the focal spread (default {d.focal_nodes})",
    )
    s.add_argument(
        "--source-size",
        type=float,
        default=d.source_size_fwhm_A,
        metavar="A",
        help=f"effective source size FWHM, Å (default {d.source_size_fwhm_A})",
    )
    s.add_argument(
        "--blur",
        type=float,
        default=d.blur_sigma_A,
        metavar="A",
        help=f"extra Gaussian blur sigma, Å (default {d.blur_sigma_A})",
    )
    s.add_argument(
        "--gpts",
        type=int,
        default=None,
        help="potential grid points per side (default: from the detector angle)",
    )
    s.add_argument(
        "--sampling-factor",
        type=float,
        default=None,
        metavar="F",
        help="potential sampling as a fraction of the coarsest admissible one "
        f"(default {d.sampling_factor}; --quick 1.0)",
    )
    s.add_argument(
        "--phonon-sampling-factor",
        type=float,
        default=None,
        metavar="F",
        help="two-level Monte Carlo: take the frozen-phonon average on this "
        "coarser grid and add a grid correction from --correction-configs "
        f"configurations run on both grids (default {DEFAULT_PHONON_SAMPLING_FACTOR}; "
        "--quick and a value equal to --sampling-factor: one level)",
    )
    s.add_argument(
        "--correction-configs",
        type=int,
        default=DEFAULT_CORRECTION_CONFIGS,
        metavar="M",
        help=f"configurations of the grid correction (default {DEFAULT_CORRECTION_CONFIGS})",
    )
    s.add_argument(
        "--scan-per-cell",
        type=int,
        default=None,
        help="probe positions per cell side (default: Nyquist)",
    )
    s.add_argument(
        "--no-spread-scan",
        dest="spread_scan",
        action="store_false",
        help="scan the whole wedge in the centre cell instead of spreading its "
        "points over the cells and p4mm images of the box (more phonon "
        "noise per configuration; for fixed-seed comparisons)",
    )
    s.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="abTEM device; auto uses the GPU when CuPy sees one (default auto)",
    )
    s.add_argument(
        "--max-time",
        type=float,
        default=None,
        metavar="S",
        help="wall-time budget, s: stop starting batches that would overrun it "
        "and write what was reached (labelled incomplete)",
    )
    s.add_argument(
        "--batch", type=int, default=None, help="configurations per batch (checkpoint interval)"
    )
    s.add_argument(
        "--resume",
        action="store_true",
        help="continue from the .raw.npz beside --out if it matches",
    )
    s.add_argument(
        "--fit-pixel",
        type=float,
        default=d.fit_pixel_A,
        metavar="A",
        help=f"pixel of the interpolated image that is fitted, Å (default {d.fit_pixel_A})",
    )
    s.add_argument(
        "--fit-model",
        choices=FIT_MODELS,
        default=d.fit_model,
        help=f"column model of the fitter, as columns.model of 'stemqd process' "
        f"(default {d.fit_model}); a measured ratio is compared only with a "
        f"series of its own model",
    )
    s.set_defaults(func=handler)
    r = sub.add_parser(
        "reanalyse",
        help="measure a written series' raw scans again with another column model",
        description="Re-measure the raw scans (.raw.npz) of a thickness series with another "
        "column model, without any new multislice; writes the new CSV and "
        "sidecar (naming the original scans and their SHA-256) and prints both "
        "models' ratios side by side.",
    )
    r.add_argument("series", metavar="SERIES.csv", help="a series written by thickness-series")
    r.add_argument("--fit-model", choices=FIT_MODELS, required=True)
    r.add_argument(
        "--fit-background",
        choices=JOINT_BACKGROUNDS,
        default="local",
        help="background of the joint models (default local, as columns.background)",
    )
    r.add_argument("--out", required=True, metavar="NEW.csv")
    r.add_argument(
        "--side-by-side",
        metavar="FILE.csv",
        help="also write thickness and both models' ratios (with errors) here",
    )
    r.set_defaults(func=reanalyse_handler)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _parse_thicknesses(text):
    try:
        if ":" in text:
            parts = [int(v) for v in text.split(":")]
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) > 2 else 1
            return tuple(range(start, stop + 1, step))
        return tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise InputError(f"--thicknesses: cannot parse {text!r} (use 2:30:2 or 2,4,10)") from exc


def _parse_sigmas(items):
    from ..simulation import DEFAULT_PHONON_SIGMAS_A

    out = dict(DEFAULT_PHONON_SIGMAS_A)
    for item in items:
        try:
            el, val = item.split("=")
            out[el.strip()] = float(val)
        except ValueError as exc:
            raise InputError(f"--sigma: expected EL=VALUE (e.g. Cs=0.23), got {item!r}") from exc
    return out


def _command_line(args) -> str:
    """The equivalent command with every option spelled out (for the sidecar)."""
    parts = ["stemqd", "simulate", "thickness-series"]
    for key, value in sorted(vars(args).items()):
        if key == "spread_scan":  # store_false flag
            parts += [] if value else ["--no-spread-scan"]
            continue
        if (
            key in ("func", "command", "simulate_command")
            or value is None
            or value is False
            or (isinstance(value, list) and not value)
        ):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif key == "md_snapshots":  # nargs=2
            parts += [flag] + [shlex.quote(str(v)) for v in value]
        elif isinstance(value, list):
            parts += [p for v in value for p in (flag, shlex.quote(str(v)))]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def handler(args) -> int:
    """Run the series and write CSV, sidecar, raw archive and plot."""
    from ..simulation import (
        DEFAULT_NUM_CONFIGS,
        DEFAULT_PHONON_SAMPLING_FACTOR,
        QUICK_NUM_CONFIGS,
        QUICK_SAMPLING_FACTOR,
        SeriesParameters,
        phonon_level,
        plot_series,
        raw_path_for,
        record_session,
        resolve_device,
        thickness_series,
        write_series,
    )
    from ..simulation.files import series_title

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise InputError(f"--out must name a .csv file, got {args.out}")
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {str(out.parent)!r} does not exist")
    configs = args.configs or (QUICK_NUM_CONFIGS if args.quick else DEFAULT_NUM_CONFIGS)
    args.configs = configs  # recorded explicitly in the sidecar's command
    device = resolve_device(args.device)
    kwargs = {}
    if args.sampling_factor is not None:
        kwargs["sampling_factor"] = args.sampling_factor
    elif args.quick:
        kwargs["sampling_factor"] = QUICK_SAMPLING_FACTOR
    if args.thicknesses:
        kwargs["thicknesses_uc"] = _parse_thicknesses(args.thicknesses)
    params = SeriesParameters(
        material=args.material,
        zone_axis=args.zone,
        divisions=args.divisions,
        merge_tol_A=args.merge_tol,
        ratio=args.ratio,
        lattice_constant_A=args.lattice_constant,
        cells=args.cells,
        phonon_sigmas_A=_parse_sigmas(args.sigma),
        chromatic_aberration_mm=args.cc,
        energy_spread_fwhm_eV=args.energy_spread,
        focal_nodes=args.focal_nodes,
        source_size_fwhm_A=args.source_size,
        blur_sigma_A=args.blur,
        gpts=args.gpts,
        scan_per_cell=args.scan_per_cell,
        spread_scan=args.spread_scan,
        device=device,
        fit_model=args.fit_model,
        fit_pixel_A=args.fit_pixel,
        **kwargs,
    )
    if args.phonon_sampling_factor is None:
        args.phonon_sampling_factor = (
            params.sampling_factor if args.quick or args.gpts else DEFAULT_PHONON_SAMPLING_FACTOR
        )
    level0 = phonon_level(params, args.phonon_sampling_factor)
    phonons = None
    if args.md_snapshots:
        from ..simulation.snapshot_phonons import snapshot_phonons
        from ..simulation.structure import SITES

        cell = params.oriented
        if cell.symbols != tuple(sym for sym, _ in SITES) or cell.zone_axis != (0, 0, 1):
            raise InputError(
                "--md-snapshots maps a cubic CsPbBr3 supercell onto the [001] cubic cell: "
                f"not available for {cell.name} {list(cell.zone_axis)}"
            )

        phonons = snapshot_phonons(
            *args.md_snapshots,
            about=args.md_about or "sites",
            target_lattice_constant_A=params.lattice_constant_A,
        )
        if params.cells % phonons.period:
            raise InputError(
                f"--cells {params.cells} is not a multiple of the MD supercell "
                f"({phonons.period} cells)"
            )
    der = params.derived()
    mode = "quick" if args.quick else "reference"
    print(
        f"stemqd simulate thickness-series ({mode}): {series_title(params)}, {configs} "
        f"configurations, seed {args.seed}, {device}; grid {der['gpts']} "
        f"({der['sampling_A']} Å), "
        f"{der['scanned_positions']} probe positions, thicknesses "
        f"{params.thicknesses_uc[0]}-{params.thicknesses_uc[-1]} uc"
        + (
            f"; phonon average on {level0.grid_points}, grid correction from "
            f"{args.correction_configs} configurations"
            if level0 != params
            else ""
        ),
        file=sys.stderr,
    )

    def progress(done, total, elapsed):
        print(f"  {done}/{total} configurations, {elapsed:.0f} s", file=sys.stderr)

    t0 = time.perf_counter()
    result = thickness_series(
        params,
        num_configs=configs,
        seed=args.seed,
        phonon_sampling_factor=args.phonon_sampling_factor,
        correction_configs=args.correction_configs,
        batch_configs=args.batch,
        max_time_s=args.max_time,
        raw_path=raw_path_for(out),
        resume=args.resume,
        progress=progress,
        phonons=phonons,
    )
    result.info["run_time_s"] = time.perf_counter() - t0
    command = _command_line(args)
    extra = record_session(
        result,
        out,
        command=command,
        requested=configs,
        level0=level0,
        snapshot_key=phonons and phonons.key,
    )
    requested = result.info["num_configs_requested"]
    side = write_series(result, out, command=command, mode=mode, extra=extra)
    plot = None if (args.plot or "").lower() == "none" else (args.plot or out.with_suffix(".png"))
    if plot:
        num, den = params.ratio_labels
        plot_series(
            result.table,
            plot,
            ratio_name=f"{num} : {den} ratio",
            title=f"{series_title(params)} ADF {mode}: {result.info['num_configs']} configurations",
        )
    cols = ["thickness_uc", "thickness_nm", "ratio", "ratio_err", "ratio_disc", "ratio_disc_err"]
    print(result.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    fp = side["frozen_phonon_convergence"]
    state = "complete" if result.info["complete"] else "INCOMPLETE"
    print(
        f"{result.info['num_configs']}/{requested} configurations ({state}) in "
        f"{result.info['run_time_s']:.1f} s; ratio SE at {fp['thickness_uc']} uc "
        f"{fp['ratio_se']:.4f} (target {fp['target_se']})"
    )
    print(
        f"wrote {out}, {out.with_suffix('.json')}, {raw_path_for(out)}"
        + (f", {plot}" if plot else "")
    )
    return 0


def reanalyse_handler(args) -> int:
    """Re-measure a series' raw scans with another column model; print and write."""
    import pandas as pd

    from ..files import atomic_write_text
    from ..simulation import raw_path_for, read_series, reanalyse_series, write_series

    series, out = Path(args.series), Path(args.out)
    if out.suffix.lower() != ".csv" or not out.parent.is_dir():
        raise InputError(f"--out must name a .csv file in an existing folder, got {args.out}")
    if out.resolve() == series.resolve():
        raise InputError("--out must differ from the series: the original stays as it is")
    old = read_series(series)
    raw = raw_path_for(series)
    if not raw.is_file():
        raise InputError(f"{raw}: the series' raw scans are missing; nothing to re-measure")
    t0 = time.perf_counter()
    result = reanalyse_series(series, fit_model=args.fit_model, fit_background=args.fit_background)
    result.info["run_time_s"] = time.perf_counter() - t0
    write_series(
        result,
        out,
        command=shlex.join(["stemqd", *sys.argv[1:]]),
        mode="reanalysis",
        raw_archive=raw,
    )
    was = old.attrs.get("fit_model", "unknown")
    both = pd.DataFrame(
        {
            "thickness_uc": old["thickness_uc"],
            f"ratio_{was}": old["ratio"],
            f"ratio_{was}_err": old["ratio_err"],
            f"ratio_{args.fit_model}": result.table["ratio"],
            f"ratio_{args.fit_model}_err": result.table["ratio_err"],
        }
    )
    both["difference"] = both[f"ratio_{args.fit_model}"] - both[f"ratio_{was}"]
    print(both.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(
        f"re-measured {len(result.raw)} configurations in {result.info['run_time_s']:.0f} s; "
        f"wrote {out}, {out.with_suffix('.json')}"
    )
    if args.side_by_side:
        atomic_write_text(Path(args.side_by_side), both.to_csv(index=False, float_format="%.6g"))
        print(f"wrote {args.side_by_side}")
    return 0


__all__ = ["add_parser", "handler", "reanalyse_handler"]
