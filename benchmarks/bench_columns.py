"""Column refinement speed and accuracy: the default joint fit, the per-window fit (fast and
lmfit paths) and, if installed, Atomap, side by side in one process.

All paths fit the same synthetic CsPbBr3 [001] image from the same seeds (true positions plus
0.5 px noise). The joint fit and the fast window path fit every column; lmfit and Atomap
(one fit per column, so their rate does not depend on how many) fit a central block of
``--subset`` columns of the same image. Printed per path: columns per second (median over
repeats), the RMS position error against the truth, the error of the Cs : Pb-Br intensity
ratio (Gaussian volumes) against the truth, and the speed ratio against Atomap; then the
default model's time against the number of columns (up to about 5000), and its precision
against the Cramér-Rao bound.

Run: ``python benchmarks/bench_columns.py [--repeats 5] [--size 1024] [--scaling 512 1024
1536]`` (``pip install atomap`` for its row).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stemqd.columns.fit import refine_columns
from stemqd.columns.precision import cramer_rao_bound
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.simulation.synthetic import perovskite_dot, render_columns

PIXEL_A = 0.15
NN_PX = CSPBBR3_LATTICE_CONSTANT_A / 2 / PIXEL_A


def image_and_truth(size, seed=0):
    cells = int(size * PIXEL_A / CSPBBR3_LATTICE_CONSTANT_A) - 4
    frames, truth = perovskite_dot(
        (size, size),
        pixel_size_A=PIXEL_A,
        edge_cells=cells,
        dose=300,
        n_frames=1,
        drift_px=0,
        background_level=0.0,
        sigma_A=0.45,
        seed=seed,
    )
    return frames[0].astype(float), truth


def accuracy(x, y, volume, truth, idx):
    err = np.hypot(x - truth.positions_px[idx, 0], y - truth.positions_px[idx, 1])
    types = truth.types[idx]
    ratio = volume[types == "A"].mean() / volume[types == "BX"].mean()
    return float(np.sqrt(np.mean(err**2))), float(ratio / truth.ratio("A", "BX") - 1)


def run_stemqd(image, seeds, truth, idx, model, method="fast"):
    t0 = time.perf_counter()
    if model == "window7":
        df = refine_columns(image, seeds, radius_px=0.5 * NN_PX, model=model, method=method)
    else:
        df = refine_columns(image, seeds, model=model, labels=truth.types[idx], nn_px=NN_PX)
    dt = time.perf_counter() - t0
    return dt, *accuracy(df.x_px.to_numpy(), df.y_px.to_numpy(), df.volume.to_numpy(), truth, idx)


def run_atomap(image, seeds, truth, idx):
    import atomap.api as am

    sub = am.Sublattice(seeds.copy(), image)
    sub.find_nearest_neighbors()
    t0 = time.perf_counter()
    sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
    dt = time.perf_counter() - t0
    x = np.array([a.pixel_x for a in sub.atom_list])
    y = np.array([a.pixel_y for a in sub.atom_list])
    # Atomap's amplitude_gaussian is the volume of its normalised Gaussian.
    volume = np.array([a.amplitude_gaussian for a in sub.atom_list])
    return dt, *accuracy(x, y, volume, truth, idx)


def scaling_table(sizes, repeats):
    """Time of the default joint fit against the number of columns (median over repeats)."""
    print("\nScaling of the default model (round, joint, default background; whole image)")
    print(
        f"{'image px':>9s} {'columns':>8s} {'time s':>8s} {'columns/s':>10s} "
        f"{'s per 1000 columns':>19s} {'pos RMS px':>11s} {'ratio err':>10s}"
    )
    for size in sizes:
        image, truth = image_and_truth(size)
        seeds = truth.positions_px + np.random.default_rng(1).normal(
            0, 0.5, truth.positions_px.shape
        )
        idx = np.arange(len(seeds))
        runs = [run_stemqd(image, seeds, truth, idx, "round") for _ in range(repeats)]
        t = float(np.median([r[0] for r in runs]))
        print(
            f"{size:9d} {len(seeds):8d} {t:8.2f} {len(seeds) / t:10.0f} "
            f"{1000 * t / len(seeds):19.3f} {runs[0][1]:11.4f} {runs[0][2]:+10.2%}"
        )


def precision_table(seed=0):
    """Position RMS error of the fast path against the Cramér-Rao bound at three doses."""
    sigma, background, radius = 2.5, 0.1, 0.5 * CSPBBR3_LATTICE_CONSTANT_A / 2 / 0.2
    grid = np.arange(20, 500, 18.0)
    truth = np.array([(gx, gy) for gy in grid for gx in grid]) + 0.3
    model = render_columns((512, 512), truth, 1.0, sigma) + background
    rng = np.random.default_rng(seed)
    print(
        f"\nPrecision on {len(truth)} round columns (sigma {sigma} px, background "
        f"{background} of the peak, fit radius {radius:.1f} px)"
    )
    print(
        f"{'counts at peak':>15s} {'RMS x px':>10s} {'CRB x px':>10s} {'RMS/CRB':>8s} "
        f"{'robust SE/CRB':>14s} {'classical SE/CRB':>17s}"
    )
    for dose in (25, 100, 400):
        noisy = rng.poisson(dose * model).astype(float)
        seeds = truth + rng.normal(0, 0.5, truth.shape)
        df = refine_columns(noisy, seeds, radius_px=radius, sigma_px=sigma)
        classical = refine_columns(
            noisy, seeds, radius_px=radius, sigma_px=sigma, errors="classical"
        )
        ok = (df.flag == "").to_numpy()
        rms = np.sqrt(np.mean((df.x_px.to_numpy() - truth[:, 0])[ok] ** 2))
        bound = cramer_rao_bound(1.0, sigma, background, dose, radius)["x_px"]
        print(
            f"{dose:15d} {rms:10.4f} {bound:10.4f} {rms / bound:8.2f} "
            f"{np.median(df.x_px_err[ok]) / bound:14.2f} "
            f"{np.median(classical.x_px_err[ok]) / bound:17.2f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        default=[512, 1024, 1536],
        help="image sizes of the scaling table (1536 px: about 5000 columns)",
    )
    parser.add_argument(
        "--subset", type=int, default=150, help="columns fitted by the slow paths (lmfit, Atomap)"
    )
    args = parser.parse_args()
    image, truth = image_and_truth(args.size)
    rng = np.random.default_rng(1)
    seeds_all = truth.positions_px + rng.normal(0, 0.5, truth.positions_px.shape)
    # The slow paths fit a central block of columns (all types), the fast path all columns.
    centre = np.hypot(*(truth.positions_px - args.size / 2).T)
    subset = np.argsort(centre)[: args.subset]
    rows = []

    def bench(name, fn, idx, repeats):
        times, pos, ratio = [], None, None
        for _ in range(repeats):
            dt, pos, ratio = fn(idx)
            times.append(dt)
        rows.append((name, len(idx), len(idx) / np.median(times), np.median(times), pos, ratio))

    everything = np.arange(len(truth.types))
    bench(
        "stemqd round, joint (all)",
        lambda i: run_stemqd(image, seeds_all[i], truth, i, "round"),
        everything,
        args.repeats,
    )
    bench(
        "stemqd window7 fast (all)",
        lambda i: run_stemqd(image, seeds_all[i], truth, i, "window7"),
        everything,
        args.repeats,
    )
    bench(
        "stemqd window7 lmfit (subset)",
        lambda i: run_stemqd(image, seeds_all[i], truth, i, "window7", "lmfit"),
        subset,
        max(1, args.repeats // 2),
    )
    try:
        import atomap  # noqa: F401

        bench(
            "Atomap 2D Gaussian (subset)",
            lambda i: run_atomap(image, seeds_all[i], truth, i),
            subset,
            max(1, args.repeats // 2),
        )
        atomap_rate = rows[-1][2]
    except ImportError:
        atomap_rate = None
        print("atomap is not installed: its row is skipped (pip install atomap to compare)")
    print(
        f"\nImage {args.size} x {args.size} px, {PIXEL_A} Å/px, {len(truth.types)} columns, "
        f"true Cs:PbBr ratio {truth.ratio('A', 'BX'):.4f}; medians over repeats"
    )
    head = (
        f"{'path':30s} {'columns':>8s} {'columns/s':>11s} {'time s':>9s} "
        f"{'pos RMS px':>11s} {'ratio err':>10s} {'x Atomap':>9s}"
    )
    print(head)
    print("-" * len(head))
    for name, n, rate, t, pos, ratio in rows:
        speed = f"{rate / atomap_rate:9.0f}" if atomap_rate else f"{'-':>9s}"
        print(f"{name:30s} {n:8d} {rate:11.0f} {t:9.3f} {pos:11.4f} {ratio:+10.2%} {speed}")
    if args.scaling:
        scaling_table(args.scaling, max(1, args.repeats // 2))
    precision_table()


if __name__ == "__main__":
    main()
