"""How much each stage of the chain moves the Cs : Pb/Br ratio, and the joint fit on CsPbBr3
dots against the truth and the Cramér-Rao bound, over column width and dose.

Synthetic CsPbBr3 [001] dots (``stemqd.simulation.synthetic.perovskite_dot``, the Br columns 2.9 Å from
the Pb-Br columns, so sigma / nn runs from 0.10 to 0.45 for sigma 0.29-1.32 Å) at 20-1000
counts per Pb-Br column peak, several seeds per grid point.

Part 1, on dots over a carbon support: every image goes through the default preprocessing
once; the columns are found on the restored image, then the intensities are fitted (default
model) on the image after each stage: ``average`` (the aligned data, the default),
``background_removed``, ``denoised``, ``deconvolved`` (final). The ``study`` preset (7-parameter
window fits on the deconvolved image) runs as well. Printed per grid point: the mean ratio
bias over seeds and the largest single-image bias, and columns used.

Part 2, on dots in vacuum at known positions (seeds 0.3 px off): the joint fit's volume bias
per column type and its RMS position error against the Cramér-Rao bound of the whole model
(every column with its neighbours, :func:`stemqd.columns.precision.cramer_rao_bound_overlap`).

Run: ``python benchmarks/bench_chain.py [--seeds 5] [--write]``; ``--write`` stores the
measured bias of each preset in ``stemqd/chain_bias.json``, which every summary.json quotes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from stemqd.columns.joint import fit_columns_jointly
from stemqd.columns.precision import cramer_rao_bound_overlap
from stemqd.config import load_config, replace
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.pipeline import analyse_image, preprocess
from stemqd.simulation.synthetic import perovskite_dot

PIXEL_A = 0.2
NN_A = CSPBBR3_LATTICE_CONSTANT_A / 2  # CsPbBr3 [001]: Br to Pb-Br
OVERLAPS = (0.10, 0.20, 0.30, 0.45)
DOSES = (20, 100, 1000)
STAGES = ("average", "background_removed", "denoised", "deconvolved")  # default: average
OUT = Path(__file__).resolve().parents[1] / "stemqd" / "chain_bias.json"


def _dot(overlap, dose, seed, carbon):
    frames, truth = perovskite_dot(
        (256, 256),
        pixel_size_A=PIXEL_A,
        edge_cells=7,
        sigma_A=overlap * NN_A,
        dose=dose,
        n_frames=1,
        drift_px=0.0,
        background_level=0.15 if carbon else 0.0,
        seed=seed,
    )
    return frames[0].astype(float), truth


def chain(overlap, dose, seed, default, study):
    """Ratio bias of every stage (default model) and of the study preset on one dot."""
    image, truth = _dot(overlap, dose, seed, carbon=True)
    true_ratio = truth.ratio("A", "BX")
    images, _ = preprocess(image, PIXEL_A, default)
    out = {}
    for stage in STAGES:
        try:
            summary = analyse_image(
                images["final"], PIXEL_A, default, fit_image=images[stage]
            ).summary
            out[stage] = (summary["ratio"]["ratio"] / true_ratio - 1, summary["columns"]["used"])
        except Exception as exc:  # a failure is a result here: counted, not hidden
            out[stage] = (np.nan, f"{type(exc).__name__}")
    try:
        summary = analyse_image(images["final"], PIXEL_A, study).summary
        out["study"] = (summary["ratio"]["ratio"] / true_ratio - 1, summary["columns"]["used"])
    except Exception as exc:
        out["study"] = (np.nan, f"{type(exc).__name__}")
    return out


def joint_on_dot(overlap, dose, seed):
    """Volume bias per type, RMS position error and its Cramér-Rao bound, collapsed fits."""
    image, truth = _dot(overlap, dose, seed, carbon=False)
    rng = np.random.default_rng(seed + 1000)
    pos = truth.positions_px
    df = fit_columns_jointly(
        image / dose,
        pos + rng.normal(0, 0.3, pos.shape),
        fit_radius_px=None,
        background="constant",
        nn_px=NN_A / PIXEL_A,
    )
    sigma = truth.sigma_px
    volume = 2 * np.pi * truth.amplitudes * sigma**2
    bias = {
        t: float(np.mean(df.volume[truth.types == t]) / np.mean(volume[truth.types == t]) - 1)
        for t in ("A", "BX", "X")
    }
    err2 = (df.x_px - pos[:, 0]) ** 2 + (df.y_px - pos[:, 1]) ** 2
    return bias, float(np.mean(err2)), int((df.flag != "").sum()), truth


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--write", action="store_true", help=f"store the presets' measured bias in {OUT.name}"
    )
    parser.add_argument("--part", choices=("1", "2", "both"), default="both")
    args = parser.parse_args()
    default = replace(load_config(), analysis=replace(load_config().analysis, bootstrap=0))
    study = replace(load_config(preset="study"), analysis=default.analysis)
    t0 = time.perf_counter()
    if args.part in ("1", "both"):
        names = (*STAGES, "study")
        print(
            "Part 1. Cs : Pb/Br ratio bias on CsPbBr3 dots over carbon, columns found on the "
            f"restored image; mean over {args.seeds} seeds [largest single image]"
        )
        print(f"{'sigma/nn':>8s} {'dose':>5s} " + " ".join(f"{n:>20s}" for n in names))
        record = {n: [] for n in names}
        for overlap in OVERLAPS:
            for dose in DOSES:
                runs = [chain(overlap, dose, s, default, study) for s in range(args.seeds)]
                cells = []
                for n in names:
                    b = np.array([r[n][0] for r in runs], float)
                    failed = int(np.sum(~np.isfinite(b)))
                    mean = float(np.nanmean(b)) if failed < len(b) else np.nan
                    worst = float(b[np.nanargmax(np.abs(b))]) if failed < len(b) else np.nan
                    record[n].append(
                        {
                            "sigma_over_nn": overlap,
                            "dose": dose,
                            "mean": mean,
                            "worst": worst,
                            "failed": failed,
                        }
                    )
                    cells.append(f"{mean:+8.2%} [{worst:+7.1%}]" + ("!" * min(failed, 3)))
                print(f"{overlap:8.2f} {dose:5d} " + " ".join(f"{c:>20s}" for c in cells))
        print("('!' = an image whose analysis failed)")
        if args.write:
            presets = {}
            for preset, stage in (("default", "average"), ("study", "study")):
                rows = record[stage]
                means = np.array([r["mean"] for r in rows])
                presets[preset] = {
                    "max_abs_mean_bias": float(np.nanmax(np.abs(means))),
                    "mean_bias": float(np.nanmean(means)),
                    "failed_images": int(sum(r["failed"] for r in rows)),
                    "per_grid_point": rows,
                }
            OUT.write_text(
                json.dumps(
                    {
                        "measured_by": "python benchmarks/bench_chain.py --write "
                        f"({datetime.date.today().isoformat()}, {args.seeds} seeds)",
                        "quantity": "Cs : Pb/Br ratio / truth - 1 on synthetic CsPbBr3 [001] dots "
                        "over carbon; applies to the preset's own values",
                        "grid": {
                            "sigma_over_nn": list(OVERLAPS),
                            "dose_counts_per_peak": list(DOSES),
                            "pixel_size_A": PIXEL_A,
                        },
                        "presets": presets,
                    },
                    indent=1,
                )
                + "\n"
            )
            print(f"wrote {OUT}")
    if args.part in ("2", "both"):
        print(
            f"\nPart 2. Joint fit (round, constant) on CsPbBr3 dots in vacuum, mean over "
            f"{args.seeds} seeds"
        )
        print(
            f"{'sigma/nn':>8s} {'dose':>5s} {'bias Cs':>8s} {'bias PbBr':>9s} {'bias Br':>8s} "
            f"{'RMS px':>7s} {'CRB px':>7s} {'RMS/CRB':>7s} {'flagged':>7s}"
        )
        for overlap in OVERLAPS:
            for dose in DOSES:
                biases, mse, flagged = [], [], 0
                for s in range(args.seeds):
                    bias, err2, nflag, truth = joint_on_dot(overlap, dose, s)
                    biases.append(bias)
                    mse.append(err2)
                    flagged += nflag
                bound = cramer_rao_bound_overlap(
                    truth.background.shape,
                    truth.positions_px,
                    truth.amplitudes,
                    truth.sigma_px,
                    1e-6,
                    dose,
                )
                crb = float(np.sqrt(np.mean(bound["x_px"] ** 2 + bound["y_px"] ** 2)))
                rms = float(np.sqrt(np.mean(mse)))
                mean = {t: np.mean([b[t] for b in biases]) for t in ("A", "BX", "X")}
                print(
                    f"{overlap:8.2f} {dose:5d} {mean['A']:+8.2%} {mean['BX']:+9.2%} "
                    f"{mean['X']:+8.2%} {rms:7.4f} {crb:7.4f} {rms / crb:7.2f} {flagged:7d}"
                )
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
