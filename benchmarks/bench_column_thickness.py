"""The A : BX ratio against counted thickness on synthetic dots of known profile.

Each dot (see ``benchmarks/bench_counting.py``: columns drawn with the cross-sections of the
committed round-model series) goes through :func:`stemqd.pipeline.process_stack` with
atom counting on (mixture and library), then
:func:`stemqd.analysis.column_thickness.dot_thickness` pairs every counted Pb-Br column with
its Cs neighbours. Printed per dot and per count source: the thickness distribution and, per
counted thickness, the cells, the measured ratio with its standard error and the series'
ratio at that thickness.

Profiles: ``flat4`` and ``flat10`` (every column 4 or 10 cells), ``depleted`` (a cube whose
Pb-Br columns lack the top and bottom cell: expected Cs(n) / PbBr(n - 2) of the series, not
the series at n - 2), ``pyramid`` (thinning by one cell per cell towards the edge: the Cs
neighbours of a column are thinner, so the ratio reads low at small counts).

Run: ``python benchmarks/bench_column_thickness.py [--dose 200] [PROFILE ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_counting as bc  # noqa: E402

from stemqd.analysis.column_thickness import dot_thickness, series_ratio  # noqa: E402
from stemqd.config import load_config  # noqa: E402
from stemqd.pipeline import process_stack  # noqa: E402
from stemqd.simulation.files import read_series  # noqa: E402

PROFILES = {
    "flat4": lambda site, depth, edge: np.full(len(depth), 4),
    "flat10": lambda site, depth, edge: np.full(len(depth), 10),
    "depleted": bc.PROFILES["depleted shell"],
    "pyramid": bc.PROFILES["pyramid"],
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dose", type=int, default=200)
    ap.add_argument("profiles", nargs="*", metavar="PROFILE", help=f"of {list(PROFILES)}")
    args = ap.parse_args(argv)
    unknown = set(args.profiles) - set(PROFILES)
    if unknown:
        ap.error(f"unknown profile(s) {sorted(unknown)}; choose from {list(PROFILES)}")
    bc.PROFILES.update(PROFILES)
    reference = series_ratio(read_series(bc.SERIES), "Cs", "PbBr")
    for name in args.profiles or PROFILES:
        t0 = time.perf_counter()
        stack, overrides, _, _ = bc.synthetic_dot(name, args.dose, support=0.0, edge=8)
        config = load_config(
            overrides=overrides
            + [
                "counting.enabled=true",
                "counting.components_max=12",
                f"counting.library={bc.SERIES}",
            ]
        )
        columns = process_stack(stack, config).columns
        used = columns["flag"].isin(["", "edge margin"]).to_numpy()
        for count in ("count_library", "count"):
            found = dot_thickness(
                columns, "Cs", "PbBr", count=count, used=used, reference=reference
            )
            stats = {
                k: (v["n_columns"], round(v["mean"], 2), round(v["std"], 2))
                for k, v in found["stats"].items()
            }
            print(
                f"--- {name}, dose {args.dose}, thickness from {count} "
                f"({time.perf_counter() - t0:.0f} s); per type (n, mean, std): {stats}"
            )
            print(found["ratio"].round(4).to_string(index=False))


if __name__ == "__main__":
    main()
