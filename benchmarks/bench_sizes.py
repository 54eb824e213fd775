"""Dot size distribution on synthetic low-magnification fields of known truth.

Fields from :func:`stemqd.simulation.synthetic.low_magnification_field` (log-normal edge
lengths, 15 % spread, random rotation, 10 % touching pairs, 2 aggregates of 3-5 overlapping
dots, carbon support, uneven illumination, Poisson noise), measured by
:func:`stemqd.analysis.sizes.measure_sizes` with ``contrast="auto"``, scored by
:func:`stemqd.analysis.sizes.score_sizes` against the truth. Per regime (size, pixel size,
contrast, dose), the table gives the median over seeds and, for the must-show of issue 17
item 4, the worst seed:

* ``mean err``, ``std err``: measured mean and standard deviation of the edge length
  against the truth's (every dot not in an aggregate nor cut by the border), % (targets:
  within 2 % and 10 %);
* ``isolated``: fraction of the isolated dots measured (target >= 95 %);
* ``merged``: measured dots that hold more than one truth dot (target 0);
* ``parts``: measured dots that are one member of an aggregate (watershed split);
* ``rms``, ``bias``: per-dot error of the edge length against its truth dot, nm;
* ``auto``: how many seeds ``"auto"`` gave the right contrast;
* ``s``: median seconds per field (measurement only).

The first block is the must-show regime (28 px per mean edge; 30 counts/px on the carbon
for HAADF, 300 counts/px of beam for bright-field TEM); the second block sweeps the pixel
size and the dose to where it breaks; the third mixes both populations in one field and
scores each population (split at the geometric mean of 7 and 14 nm).

Run: ``python benchmarks/bench_sizes.py [--seeds 4] [--size 1024]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from stemqd.analysis.sizes import measure_sizes, score_sizes
from stemqd.simulation.synthetic import low_magnification_field

#: (edge nm, pixel nm, contrast, dose counts/px) of the must-show regime.
MUST_SHOW = [
    (7.0, 0.25, "bright", 30.0),
    (7.0, 0.25, "dark", 300.0),
    (14.0, 0.5, "bright", 30.0),
    (14.0, 0.5, "dark", 300.0),
]

#: Beyond it: 56 px and 14 px per edge, lower doses.
SWEEP = [
    (14.0, 0.25, "bright", 30.0),
    (14.0, 0.25, "dark", 300.0),
    (7.0, 0.5, "bright", 30.0),
    (7.0, 0.5, "dark", 300.0),
    (7.0, 0.25, "bright", 10.0),
    (7.0, 0.25, "dark", 30.0),
    (7.0, 0.5, "dark", 30.0),
]


def run(regime, seeds, size):
    edge, pixel, contrast, dose = regime
    rows = []
    for seed in range(seeds):
        image, truth = low_magnification_field(
            (size, size), pixel_size_nm=pixel, edge_nm=edge, contrast=contrast, dose=dose,
            seed=seed,
        )  # fmt: skip
        t0 = time.perf_counter()
        result = measure_sizes(image, pixel)
        elapsed = time.perf_counter() - t0
        rows.append(
            score_sizes(result, truth) | {"auto": result.contrast == contrast, "s": elapsed}
        )
    df = pd.DataFrame(rows)

    def worst(col):  # the seed farthest from zero
        return df[col].iloc[np.argmax(df[col].abs().to_numpy())]

    return {
        "edge nm": edge,
        "px nm": pixel,
        "edge px": edge / pixel,
        "contrast": contrast,
        "dose": dose,
        "dots": int(df["n_measured"].median()),
        "mean err %": 100 * df["mean_error"].median(),
        "worst %": 100 * worst("mean_error"),
        "std err %": 100 * df["std_error"].median(),
        "worst % ": 100 * worst("std_error"),
        "isolated %": 100 * df["isolated_measured"].median(),
        "min %": 100 * df["isolated_measured"].min(),
        "merged": int(df["merged"].sum()),
        "parts": int(df["aggregate_parts"].sum()),
        "rms nm": df["edge_rms_nm"].median(),
        "bias nm": df["edge_bias_nm"].median(),
        "auto": f"{int(df['auto'].sum())}/{len(df)}",
        "s": df["s"].median(),
    }


#: Mixed fields: both populations in one image (area test off), 28 and 56 px per edge.
MIXED = [((7.0, 14.0), 0.25, "bright", 30.0), ((7.0, 14.0), 0.25, "dark", 300.0)]


def run_mixed(regime, seeds, size):
    """Per population (split at the geometric mean of the two means): mean and std errors."""
    edges, pixel, contrast, dose = regime
    split = float(np.sqrt(np.prod(edges)))
    rows = []
    for seed in range(seeds):
        image, truth = low_magnification_field(
            (size, size), pixel_size_nm=pixel, edge_nm=edges, contrast=contrast, dose=dose,
            seed=seed,
        )  # fmt: skip
        result = measure_sizes(image, pixel, max_area_ratio=None)
        score = score_sizes(result, truth)
        got = result.table.loc[result.table["flag"] == "", "edge_nm"]
        ref = truth.loc[(truth["kind"] != "aggregate") & ~truth["cut_by_border"], "edge_nm"]
        row = {"isolated": score["isolated_measured"], "merged": score["merged"]}
        for name, keep in (("small", lambda e: e < split), ("large", lambda e: e >= split)):
            g, r = got[keep(got)], ref[keep(ref)]
            row[f"{name} n"] = len(g)
            row[f"{name} mean"] = g.mean() / r.mean() - 1
            row[f"{name} std"] = g.std() / r.std() - 1
        rows.append(row)
    df = pd.DataFrame(rows)
    out = {"edges nm": "+".join(f"{e:g}" for e in edges), "contrast": contrast, "dose": dose}
    for name in ("small", "large"):
        out[f"{name} n"] = int(df[f"{name} n"].median())
        out[f"{name} mean err %"] = 100 * df[f"{name} mean"].median()
        out[f"{name} std err %"] = 100 * df[f"{name} std"].median()
    out["isolated %"] = 100 * df["isolated"].median()
    out["merged"] = int(df["merged"].sum())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024, help="field side, px")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    for title, regimes in (("must-show regime", MUST_SHOW), ("beyond it", SWEEP)):
        table = pd.DataFrame([run(r, args.seeds, args.size) for r in regimes])
        print(f"\n{title}: {args.size} x {args.size} px fields, {args.seeds} seeds each")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    table = pd.DataFrame([run_mixed(r, args.seeds, args.size) for r in MIXED])
    print(f"\nmixed 7 + 14 nm fields, --max-area-ratio off: {args.seeds} seeds each (medians)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
