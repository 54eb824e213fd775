"""The default chain and its alternatives on experimental images from PyPI packages.

The images are fetched by ``python benchmarks/fetch_real_images.py`` into
``../shared/data/pypi/`` (GPL-3.0 test data of atomap and temul-toolkit; see the README
written beside them). None comes with a peer's analysis, so what is printed is what can be
checked without one:

- **SrTiO3 [110]** (atomap), two crops of one scan whose shared pixels are identical: per
  configuration, the Ti : SrO ratio of each crop, columns used, and for the columns inside
  both (two Sr-Sr spacings from the small crop's edges) the median and the robust scatter
  (MAD / median) of the volume ratio between the crops, per type; then the time.
- **MoS2 monolayer** (temul-toolkit, Se implanted), the whole 1024 x 1024 px image: S2 : Mo
  ratio, columns used, the joint fit's iterations, whether it converged, the columns still
  moving at its iteration limit, and the time. ADF contrast Z**n with n 1.5-2.0 puts a
  pure S2 column at 0.29-0.47 of a Mo column.

Run: ``python benchmarks/bench_experimental.py [--skip-mos2] [--set KEY=VALUE ...]``
(about 3 min for SrTiO3, 3 min for MoS2 on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from stemqd import io
from stemqd.config import load_config
from stemqd.pipeline import process_stack

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pypi"
SRTIO3_PIXEL_A = 0.09326  # the atomap files' scale, nm without the unit
SRTIO3_110 = ["material.name=SrTiO3", "material.zone_axis=[1,1,0]", "material.ratio=Ti:SrO"]
CROPS = (("SrTiO3_110_ADF_400x380.hdf5", 5.0), ("SrTiO3_110_ADF_520x599.hdf5", 0.0))
CONFIGS = (
    ("default", []),
    ("background constant", ["columns.background=constant"]),
    ("background smooth", ["columns.background=smooth"]),
    ("background_rounds 20", ["columns.background_rounds=20"]),
    ("width_per_type", ["columns.width_per_type=true"]),
    ("model window7", ["columns.model=window7"]),
    ("preset study", ["preset=study"]),
)


def _clean(columns):
    return columns[columns["flag"].fillna("") == ""]


def srtio3(extra):
    print("SrTiO3 [110] (atomap 0.4.2 and 0.1.4 test images), two crops of one scan")
    print(
        f"{'configuration':<22s} {'Ti:SrO small':>13s} {'Ti:SrO large':>13s} {'used':>9s} "
        f"{'Ti med/MAD':>13s} {'SrO med/MAD':>13s} {'time s':>7s}"
    )
    for name, overrides in CONFIGS:
        config = load_config(overrides=[*SRTIO3_110, *overrides, *extra])
        ratios, tables, used, t0 = [], [], [], time.perf_counter()
        for file, shift in CROPS:
            result = process_stack(io.load(DATA / file, pixel_size_A=SRTIO3_PIXEL_A), config)
            columns = result.columns.copy()
            columns["x_px"] += shift
            ratios.append(result.summary["ratio"]["ratio"] or np.nan)
            used.append(f"{result.summary['columns']['used']}/{result.summary['columns']['total']}")
            tables.append(_clean(columns))
        took = time.perf_counter() - t0
        small, large = tables
        inner = small[
            (small["x_px"] > 50)
            & (small["x_px"] < 340)
            & (small["y_px"] > 45)
            & (small["y_px"] < 355)
        ]
        d, j = cKDTree(large[["x_px", "y_px"]].to_numpy()).query(inner[["x_px", "y_px"]].to_numpy())
        cells = []
        for label in ("Ti", "SrO"):
            mine = (inner["label"].to_numpy() == label) & (d < 1.0)
            q = inner["volume"].to_numpy()[mine] / large["volume"].to_numpy()[j[mine]]
            med = np.median(q) if len(q) else np.nan
            cells.append(f"{med:.4f}/{np.median(np.abs(q - med)) / med:.4f}" if len(q) else "-")
        print(
            f"{name:<22s} {ratios[0]:13.4f} {ratios[1]:13.4f} {used[0]:>9s} "
            f"{cells[0]:>13s} {cells[1]:>13s} {took:7.1f}"
        )


def mos2(extra):
    print("\nMoS2 monolayer, Se implanted (temul-toolkit 0.1.9), 1024 x 1024 px")
    stack = io.load(DATA / "MoS2_Se-implanted_ADF_60kV.dm3")
    config = load_config(overrides=["material.name=MoS2-1H", "material.ratio=S2:Mo", *extra])
    t0 = time.perf_counter()
    result = process_stack(stack, config)
    took = time.perf_counter() - t0
    s = result.summary
    fit = s["fitting"]
    print(
        f"S2:Mo {s['ratio']['ratio']:.4f} +- {s['ratio']['stderr']:.4f}, used "
        f"{s['columns']['used']}/{s['columns']['total']}, iterations {fit.get('iterations')}, "
        f"converged {fit.get('converged')}, still moving {fit.get('not_converged')}, "
        f"lattice a {s['lattice']['a_A']:.3f} b {s['lattice']['b_A']:.3f} Å "
        f"(expected {s['lattice']['expected_a_A']:.2f}), {took:.0f} s"
    )
    for warning in s["warnings"]:
        print(f"  warning: {warning}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-mos2", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if not (DATA / CROPS[0][0]).is_file():
        sys.exit(f"{DATA} has no images: run python benchmarks/fetch_real_images.py")
    srtio3(args.set)
    if not args.skip_mos2:
        mos2(args.set)


if __name__ == "__main__":
    main()
