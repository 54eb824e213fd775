"""Preprocessing speed: every stage on a 10-frame 1024 x 1024 synthetic stack.

Prints, per stage, the median wall time over repeats and the peak memory allocated during
the stage (tracemalloc, which sees numpy's buffers), then the whole chain; and, for the
background removal, the ratio against a full-disk footprint at a small radius (the
reference path that a naive implementation would take).

Run: ``python benchmarks/bench_preprocess.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from skimage import morphology

from stemqd.config import Config
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.pipeline import preprocess
from stemqd.preprocess.align import align_frames
from stemqd.preprocess.background import disk_radius_px, remove_background
from stemqd.preprocess.deconvolve import deconvolve_blind
from stemqd.preprocess.denoise import du_filter
from stemqd.preprocess.probe import probe_psf
from stemqd.simulation.synthetic import perovskite_dot

PIXEL_A = 0.15


def measure(fn, repeats):
    times, peaks = [], []
    for _ in range(repeats):
        tracemalloc.start()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return out, float(np.median(times)), max(peaks) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frames, _ = perovskite_dot(
        (1024, 1024),
        pixel_size_A=PIXEL_A,
        edge_cells=25,
        dose=100,
        n_frames=10,
        drift_px=1.5,
        seed=0,
    )
    config = Config()
    rows = []
    (avg, _), t, m = measure(lambda: align_frames(frames), args.repeats)
    rows.append(("align 10 frames", t, m))
    radius = disk_radius_px(CSPBBR3_LATTICE_CONSTANT_A, PIXEL_A, config.background.radius_lattice)
    (bg, _), t, m = measure(lambda: remove_background(avg, radius), args.repeats)
    rows.append((f"background r = {radius:.0f} px", t, m))
    _, t150, m = measure(lambda: remove_background(avg, 150), args.repeats)
    rows.append(("background r = 150 px", t150, m))
    den, t, m = measure(lambda: du_filter(bg, PIXEL_A), args.repeats)
    rows.append(("Du filter (10 cycles)", t, m))
    psf = probe_psf(PIXEL_A, 300, 18)
    _, t, m = measure(lambda: deconvolve_blind(den, psf), args.repeats)
    rows.append(("blind RL deconvolution (10 it.)", t, m))
    _, t, m = measure(lambda: preprocess(frames, PIXEL_A, config), args.repeats)
    rows.append(("whole preprocessing", t, m))
    # Reference path for the background: a full-disk footprint. It grows as r², so it is
    # timed at r = 30 px only (r = 150 px would take minutes).
    small = avg[:512, :512]
    _, t_full, _ = measure(lambda: morphology.opening(small, morphology.disk(30)), 1)
    _, t_ours, _ = measure(lambda: remove_background(small, 30), args.repeats)
    print(
        f"\n10 x 1024 x 1024 float32 stack, {PIXEL_A} Å/px; medians over {args.repeats} "
        "repeats; peak = memory allocated during the stage"
    )
    head = f"{'stage':34s} {'median s':>9s} {'peak MiB':>9s}"
    print(head)
    print("-" * len(head))
    for name, t, m in rows:
        print(f"{name:34s} {t:9.3f} {m:9.1f}")
    print(
        f"\nbackground, 512 x 512, r = 30 px: full-disk opening {t_full:.3f} s, "
        f"stemqd {t_ours:.3f} s (x{t_full / t_ours:.0f})"
    )


if __name__ == "__main__":
    main()
