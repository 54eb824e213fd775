"""The joint fit's background models on dots over carbon and on the real PtIr example.

1. **Synthetic CsPbBr3 dots over carbon** (``bench_counting.synthetic_dot``: a 10-cell cube
   and a pyramid thinning by one cell per cell towards its edge, carbon at 0.15 of the
   brightest column, 0.25 Å/px, sigma 0.45 and 0.9 Å, i.e. sigma / nn 0.15 and 0.31, at 50
   and 500 counts), fitted at the true positions with each background: the fitted over the
   true width, the median fitted over true volume of the Cs and Pb-Br columns, and the LM
   iterations. The pyramid's thin edge columns are weaker than the support's variation; a
   background estimated by alternating with the column fit moves slowly there: ``local:3``
   (exactly 3 rounds, the early stop), ``local:20`` (until the width settles, at most 20)
   and ``local`` (the default: 3 rounds, continued up to 20 where the central columns'
   width disagrees with the image's).
2. **PtIr** (``../shared/data/statstem/Example_PtIr.mat``, vacuum): seeded at StatSTEM's
   coordinates, the volumes' scatter against StatSTEM's and their median ratio. In vacuum any
   background under the particle takes part of the columns' non-Gaussian tails.

Run: ``python benchmarks/bench_background.py [--backgrounds local local:20 smooth ...]``
(``NAME:N``: exactly N rounds of a ``local`` or ``smooth`` background, or fewer where the
width settles).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_counting as bc  # noqa: E402
import bench_statstem as bs  # noqa: E402

from stemqd.columns.find import column_spacing_px  # noqa: E402
from stemqd.columns.fit import refine_columns  # noqa: E402


def _parse(spec):
    """``"local:20"`` -> ("local", 20); ``"spline"`` -> ("spline", None)."""
    name, _, rounds = spec.partition(":")
    return name, int(rounds) if rounds else None


def dots(backgrounds):
    from stemqd.columns.cell import nearest_neighbour_A
    from stemqd.config import load_config
    from stemqd.pipeline import cell_for

    pixel_A = 0.25
    nn_px = nearest_neighbour_A(cell_for(load_config())) / pixel_A
    print(
        "Part 1. CsPbBr3 dots over carbon (0.15), true positions: width / truth, median "
        "V / V0 of Cs and Pb-Br, LM iterations"
    )
    print(f"{'dot':8} {'dose':>4} {'s/nn':>5} " + " ".join(f"{b:>26}" for b in backgrounds))
    for profile, dose, sigma_A in itertools.product(("cube", "pyramid"), (50, 500), (0.45, 0.9)):
        stack, _, truth, _ = bc.synthetic_dot(profile, dose, sigma_A=sigma_A, pixel_A=pixel_A)
        image = stack.frames.mean(axis=0).astype(float)
        pos = truth.positions_px
        keep = (pos > 5).all(axis=1) & (pos < np.array(image.shape)[::-1] - 5).all(axis=1)
        sigma_px = sigma_A / pixel_A
        v0 = truth.amplitudes[keep] * 2 * np.pi * sigma_px**2 * dose
        types = truth.types[keep]
        cells = []
        for spec in backgrounds:
            background, rounds = _parse(spec)
            fit = refine_columns(
                image,
                pos[keep],
                radius_px=0.5 * nn_px,
                nn_px=nn_px,
                background=background,
                smooth_rounds=rounds,
                smooth_rounds_max=rounds,
            )
            joint = fit.attrs["joint"]
            ratio = fit["volume"].to_numpy() / v0
            cells.append(
                f"{joint['shapes']['']['sigma_px'] / sigma_px:5.3f} "
                f"{np.median(ratio[types == 'A']):5.3f} {np.median(ratio[types == 'BX']):5.3f} "
                f"{joint['iterations']:4d}"
            )
        print(
            f"{profile:8} {dose:4d} {sigma_A / (nn_px * pixel_A):5.2f} "
            + " ".join(f"{c:>26}" for c in cells),
            flush=True,
        )


def ptir(backgrounds):
    if not bs.DATA.is_file():
        print(f"\nPart 2 skipped: {bs.DATA} not found (the StatSTEM example is in ../shared/data)")
        return
    image, dx, ref, ref_volume = bs.load_ptir()
    nn_px = column_spacing_px(image)
    print("\nPart 2. PtIr seeded at StatSTEM's coordinates: volume scatter, median V / V_ss")
    for spec in backgrounds:
        fitted = bs.fit(image, ref, nn_px, "round", *_parse(spec))
        r = bs.compare(fitted, ref, ref_volume, dx, 0.5 * nn_px)
        print(f"{spec:9} scatter {r['scatter']:.4f}  V/V_ss {r['ratio']:.3f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backgrounds",
        nargs="+",
        default=["local", "local:3", "local:20", "smooth", "smooth:3", "spline", "constant"],
    )
    args = parser.parse_args(argv)
    dots(args.backgrounds)
    ptir(args.backgrounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
