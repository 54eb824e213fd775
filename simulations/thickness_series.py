"""Convergence checks of the CsPbBr3 [001] thickness series at a fixed seed.

Runs the base parameters and a finer potential grid, a finer scan and a larger box with the
same phonon displacements (see :func:`stemqd.simulation.convergence_check`) and writes the
per-thickness ratio differences to a CSV with a JSON sidecar (command, versions, run time).

    nice -n 10 .venv/bin/python simulations/thickness_series.py --check numerics \
        --out simulations/reference/convergence_checks.csv --configs 2
    nice -n 10 .venv/bin/python simulations/thickness_series.py --check sampling \
        --out simulations/reference/convergence_sampling.csv --configs 2

``numerics`` compares a finer grid (sampling factor 0.7), a finer scan (28 per cell) and a
4 x 4 box with the quick grid (sampling factor 1); ``sampling`` refines the grid in steps
(factors 0.7, 0.5, 0.35: 243, 360 and 486 points per cell) against factor 1 (180 per cell).
Every run scans the wedge in the centre cell (see :func:`stemqd.simulation.convergence_check`).
``sampling-limit`` adds 648 points per cell (1944²) against the stored 486-per-cell run:

    nice -n 10 .venv/bin/python simulations/thickness_series.py --check sampling-limit \
        --out simulations/reference/convergence_sampling_limit.csv --configs 2

``sigmas`` compares the default phonon sigmas with the AIMD ones
(simulations/cp2k/phonon_sigmas.py) in
``simulations/reference/cspbbr3_bulk_aimd/a6.00/phonon_sigmas.json`` (``--sigmas-json``
for another run), about the ideal cubic sites and about the atoms' mean positions. The
same seed draws the same standard-normal displacements, scaled by each set's sigmas, so the
differences are nearly free of phonon noise:

    nice -n 10 .venv/bin/python simulations/thickness_series.py --check sigmas \
        --out simulations/reference/convergence_sigmas.csv --configs 8

``md-snapshots`` runs the series with configurations built from the AIMD frames themselves
(:mod:`stemqd.snapshot_phonons`: correlated displacements in every cubic orientation), once
with the displacements about the ideal cubic sites (octahedral tilts coherent along each
column) and once about the mean positions (the correlated thermal motion alone), in a 4 x 4
box on the quick grid with the spread scan, and sets them beside the Einstein model: the
phonon level of the committed reference series (default sigmas, same grid, 3 x 3 box):

    nice -n 10 .venv/bin/python simulations/thickness_series.py --check md-snapshots \
        --out simulations/reference/convergence_md_snapshots.csv --configs 32 \
        --configs-mean 16 --raw runs

``md-gaussian`` is the control of that path: the same supercell, blocks, operations and box,
with every frame replaced by independent Gaussian draws of the default sigmas:

    nice -n 10 .venv/bin/python simulations/thickness_series.py --check md-gaussian \
        --out simulations/reference/convergence_md_gaussian.csv --configs 8 --raw runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from stemqd.files import atomic_write_text
from stemqd.simulation import SeriesParameters, convergence_check, versions

REFERENCE = Path(__file__).parent / "reference"
AIMD_RUN = REFERENCE / "cspbbr3_bulk_aimd/a6.00"
AIMD_SIGMAS = AIMD_RUN / "phonon_sigmas.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="CSV of the checks")
    ap.add_argument("--configs", type=int, default=2, help="configurations per variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--check",
        choices=("numerics", "sampling", "sampling-limit", "sigmas", "md-snapshots", "md-gaussian"),
        default="numerics",
    )
    ap.add_argument(
        "--sigmas-json",
        default=str(AIMD_SIGMAS),
        help="AIMD sigmas for --check sigmas (simulations/cp2k/phonon_sigmas.py)",
    )
    ap.add_argument(
        "--aimd-run",
        default=str(AIMD_RUN),
        help="AIMD folder for --check md-snapshots (production trajectory, dot.xyz)",
    )
    ap.add_argument(
        "--configs-mean",
        type=int,
        default=None,
        help="--check md-snapshots: configurations of the mean-position variant "
        "(default --configs)",
    )
    ap.add_argument(
        "--raw",
        metavar="DIR",
        help="folder of the --check md-snapshots checkpoints (resumed if present)",
    )
    args = ap.parse_args(argv)
    if args.check == "sampling-limit":
        return _sampling_limit(args)
    if args.check == "md-snapshots":
        return _md_snapshots(args)
    if args.check == "md-gaussian":
        return _md_gaussian(args)
    base = SeriesParameters(sampling_factor=1.0)
    if args.check == "numerics":
        variants = {
            "grid x1.43 finer (sampling_factor 0.7)": SeriesParameters(sampling_factor=0.7),
            "scan 28 per cell": SeriesParameters(sampling_factor=1.0, scan_per_cell=28),
            "box 4 x 4 cells": SeriesParameters(sampling_factor=1.0, cells=4),
        }
    elif args.check == "sigmas":
        aimd = json.loads(Path(args.sigmas_json).read_text())
        variants = {
            "AIMD, ideal cubic sites": SeriesParameters(
                sampling_factor=1.0, phonon_sigmas_A=aimd["sigma_A"]
            ),
            "AIMD, thermal only": SeriesParameters(
                sampling_factor=1.0, phonon_sigmas_A=aimd["thermal_sigma_A"]
            ),
        }
    else:
        variants = {f"sf{f}": SeriesParameters(sampling_factor=f) for f in (0.7, 0.5, 0.35)}
    t0 = time.perf_counter()
    table = convergence_check(base, variants, num_configs=args.configs, seed=args.seed)
    elapsed = time.perf_counter() - t0
    atomic_write_text(args.out, table.to_csv(index=False, float_format="%.6g"))
    side = {
        "command": " ".join(sys.argv),
        "configs": args.configs,
        "seed": args.seed,
        "base": base.to_dict(),
        "base_derived": base.derived(),
        "variants": {
            k: {
                "gpts": v.grid_points,
                "sampling_A": v.sampling_A,
                "scan_per_cell": v.scan_points,
                "cells": v.cells,
                "phonon_sigmas_A": v.sigmas,
            }
            for k, v in variants.items()
        },
        "run_time_s": elapsed,
        "versions": versions(),
    }
    atomic_write_text(args.out.rsplit(".", 1)[0] + ".json", json.dumps(side, indent=2) + "\n")
    summary = table.groupby("variant").agg(
        max_abs_delta=("delta", lambda d: d.abs().max()),
        max_abs_rel=("rel_delta", lambda d: d.abs().max()),
        max_abs_delta_disc=("delta_disc", lambda d: d.abs().max()),
        time_s=("time_s", "first"),
    )
    print(table.pivot(index="thickness_uc", columns="variant", values="ratio").to_string())
    print(summary.to_string())
    return 0


def _sampling_limit(args) -> int:
    """One finer grid (648 points per cell, 1944²) against the finest of ``--check sampling``.

    Configurations are deterministic in (seed, index), so the 486-per-cell ratios stored in
    ``convergence_sampling.csv`` (variant sf0.35, same seed and configurations) are the
    reference; only the finer grid is simulated.
    """
    import dataclasses

    import pandas as pd

    from stemqd.simulation import thickness_series

    stored = pd.read_csv(Path(args.out).with_name("convergence_sampling.csv"))
    stored = stored[stored.variant == "sf0.35"].set_index("thickness_uc")
    fine = dataclasses.replace(SeriesParameters(gpts=1944), spread_scan=False)
    t0 = time.perf_counter()
    table = thickness_series(fine, num_configs=args.configs, seed=args.seed).table
    elapsed = time.perf_counter() - t0
    out = pd.DataFrame(
        {
            "thickness_uc": table.thickness_uc,
            "ratio_486": stored.loc[table.thickness_uc, "ratio"].to_numpy(),
            "ratio_648": table.ratio.to_numpy(),
        }
    )
    out["delta"] = out.ratio_648 - out.ratio_486
    atomic_write_text(args.out, out.to_csv(index=False, float_format="%.6g"))
    side = {
        "command": " ".join(sys.argv),
        "configs": args.configs,
        "seed": args.seed,
        "fine": fine.to_dict(),
        "fine_derived": fine.derived(),
        "run_time_s": elapsed,
        "versions": versions(),
    }
    atomic_write_text(args.out.rsplit(".", 1)[0] + ".json", json.dumps(side, indent=2) + "\n")
    print(out.to_string(index=False))
    return 0


def _aimd_phonons(args, about="sites"):
    """The ``--aimd-run`` frames as :class:`stemqd.snapshot_phonons.SnapshotPhonons`."""
    from stemqd.simulation.snapshot_phonons import snapshot_phonons

    run = Path(args.aimd_run)
    return snapshot_phonons(run / "bulk-production-pos-1.xyz.gz", run / "dot.xyz", about=about)


def _reference_phonon_level():
    """Einstein model: the committed reference's parameters on its phonon grid, and the
    table of its phonon level (no grid correction)."""
    import dataclasses

    import numpy as np

    from stemqd.simulation import analyse_series

    side = json.loads((REFERENCE / "cspbbr3_001_adf_series.json").read_text())
    level0 = dataclasses.replace(SeriesParameters(**side["parameters"]), sampling_factor=1.0)
    with np.load(REFERENCE / "cspbbr3_001_adf_series.raw.npz") as z:
        return level0, analyse_series(z["raw"], z["nodes"], level0)[0]


def _md_snapshots(args) -> int:
    """The series with MD-snapshot configurations against the Einstein-model variants."""
    import pandas as pd

    from stemqd.simulation import thickness_series

    params = SeriesParameters(sampling_factor=1.0, cells=4)
    out, sources, times = None, {}, {}
    for about in ("sites", "mean"):
        phonons = _aimd_phonons(args, about)
        raw = None if args.raw is None else Path(args.raw) / f"md_snapshots_{about}.raw.npz"
        t0 = time.perf_counter()
        configs = args.configs_mean if about == "mean" and args.configs_mean else args.configs
        md = thickness_series(
            params,
            num_configs=configs,
            seed=args.seed,
            phonons=phonons,
            raw_path=raw,
            resume=raw is not None,
        ).table
        times[about] = time.perf_counter() - t0
        sources[about] = {**phonons.source, "rms_A": phonons.rms_A()}
        if out is None:
            out = pd.DataFrame({"thickness_uc": md.thickness_uc})
        for method in ("", "_disc"):
            out[f"ratio{method}_md_{about}"] = md[f"ratio{method}"].to_numpy()
            out[f"ratio{method}_md_{about}_err"] = md[f"ratio{method}_err"].to_numpy()
    # Einstein model: the phonon level of the committed reference (same grid; the 3 x 3 box
    # differs from 4 x 4 by <= 0.001, convergence_checks.csv).
    level0, einstein = _reference_phonon_level()
    for method in ("", "_disc"):
        out[f"ratio{method}_einstein"] = einstein[f"ratio{method}"].to_numpy()
        out[f"ratio{method}_einstein_err"] = einstein[f"ratio{method}_err"].to_numpy()
        for about in ("sites", "mean"):
            out[f"ratio{method}_md_{about}_minus_einstein"] = (
                out[f"ratio{method}_md_{about}"] - out[f"ratio{method}_einstein"]
            )
    atomic_write_text(args.out, out.to_csv(index=False, float_format="%.6g"))
    side = {
        "command": " ".join(sys.argv),
        "seed": args.seed,
        "configs": {"sites": args.configs, "mean": args.configs_mean or args.configs},
        "params": params.to_dict(),
        "derived": params.derived(),
        "phonons": sources,
        "einstein": {
            "sigmas_A": level0.sigmas,
            "source": "cspbbr3_001_adf_series.raw.npz, phonon level "
            "(sampling factor 1.0), no grid correction",
        },
        "run_time_s": times,
        "versions": versions(),
    }
    atomic_write_text(args.out.rsplit(".", 1)[0] + ".json", json.dumps(side, indent=2) + "\n")
    print(out.to_string(index=False))
    return 0


def _md_gaussian(args) -> int:
    """Control of the MD-snapshot path: its frames replaced by independent Gaussian draws.

    Same supercell, blocks, operations and box as ``md-snapshots``, but every site of every
    "frame" drawn from N(0, sigma²) with the default sigmas: whatever differs from the
    Einstein series of the same sigmas is an artefact of the path (2 x 2 lateral
    periodicity, frames reused over blocks), not physics of the MD.
    """
    import numpy as np
    import pandas as pd

    from stemqd.simulation import thickness_series
    from stemqd.simulation.snapshot_phonons import SnapshotPhonons

    like = _aimd_phonons(args)
    params = SeriesParameters(sampling_factor=1.0, cells=4)
    sig = np.array([params.sigmas[el] for el in ("Pb", "Br", "Br", "Br", "Cs")])
    rng = np.random.default_rng(args.seed)
    disp = rng.standard_normal(like.displacements.shape) * sig[:, None]
    phonons = SnapshotPhonons(
        disp,
        {
            "model": "Gaussian surrogate of MD snapshots",
            "sigmas_A": params.sigmas,
            "frames": len(disp),
            "supercell": like.period,
            "seed": args.seed,
        },
    )
    raw = None if args.raw is None else Path(args.raw) / "md_gaussian.raw.npz"
    t0 = time.perf_counter()
    md = thickness_series(
        params,
        num_configs=args.configs,
        seed=args.seed,
        phonons=phonons,
        raw_path=raw,
        resume=raw is not None,
    ).table
    elapsed = time.perf_counter() - t0
    level0, einstein = _reference_phonon_level()
    out = pd.DataFrame({"thickness_uc": md.thickness_uc})
    for method in ("", "_disc"):
        out[f"ratio{method}_surrogate"] = md[f"ratio{method}"].to_numpy()
        out[f"ratio{method}_surrogate_err"] = md[f"ratio{method}_err"].to_numpy()
        out[f"ratio{method}_einstein"] = einstein[f"ratio{method}"].to_numpy()
        out[f"ratio{method}_einstein_err"] = einstein[f"ratio{method}_err"].to_numpy()
        out[f"ratio{method}_surrogate_minus_einstein"] = (
            out[f"ratio{method}_surrogate"] - out[f"ratio{method}_einstein"]
        )
    atomic_write_text(args.out, out.to_csv(index=False, float_format="%.6g"))
    side = {
        "command": " ".join(sys.argv),
        "configs": args.configs,
        "seed": args.seed,
        "params": params.to_dict(),
        "phonons": phonons.source,
        "einstein_sigmas_A": level0.sigmas,
        "run_time_s": elapsed,
        "versions": versions(),
    }
    atomic_write_text(args.out.rsplit(".", 1)[0] + ".json", json.dumps(side, indent=2) + "\n")
    print(out.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
