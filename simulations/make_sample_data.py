"""Write the sample stacks of ``sample_data/``: four core-only and four core/shell dots.

Every stack comes from :func:`stemqd.simulation.synthetic.perovskite_dot` with a fixed seed, so running
this script again gives the same files byte for byte (same numpy and tifffile versions):

- CsPbBr3 along [001], a = 5.87 Å, cubes of 7-10 unit cells rotated by a few degrees, on
  an amorphous-carbon background, 10 frames with drift and Poisson noise;
- columns blurred by the 300 kV, 18 mrad probe (:func:`stemqd.preprocess.probe.probe_psf` with a
  0.25 Å source size), as the pipeline's deconvolution expects;
- core/shell dots: the Pb-Br columns of the outer two unit cells scaled by 0.6
  (``shell_cells=2, shell_factor=0.6``), the Pb/Br-depleted shell of the study's core/shell dots;
- amplitudes from the multislice thickness series
  ``simulations/reference/cspbbr3_001_adf_series.csv`` when it and
  :mod:`stemqd.simulation` are present, else the Z^1.7 defaults of
  :data:`stemqd.simulation.synthetic.CSPBBR3_AMPLITUDES`;
- written as calibrated ImageJ TIFFs (pixel size in nm, voltage and convergence angle in
  the ImageJ Info, exactly as :func:`stemqd.io.write_stack_tiff` does) but with uint16
  counts instead of float32, which halves the size; ``stemqd.io.load`` reads them back.

The ground truth of every stack (true ratio, edge, rotation, seed, dose) goes to
``sample_data/truth.csv``.

Usage::

    python simulations/make_sample_data.py [--out sample_data]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stemqd.files import atomic_write_text
from stemqd.io import write_stack_tiff
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.preprocess.probe import probe_psf
from stemqd.simulation.synthetic import perovskite_dot

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "simulations" / "reference" / "cspbbr3_001_adf_series.csv"

PIXEL_SIZE_A = 0.3
VOLTAGE_KV = 300.0
CONVERGENCE_MRAD = 18.0
N_FRAMES = 10
#: Counts per pixel per frame at the peak of an amplitude-1 (Pb-Br) column before the probe
#: blur: a few tens, as a 1 us dwell at tens of pA gives on an ADF detector.
DOSES = (40.0, 50.0, 35.0, 45.0)
EDGES = (7, 8, 9, 10)
ROTATIONS_DEG = (1.5, -2.0, 3.0, -1.0)

GROUPS = {
    "core": {"shell_cells": 0, "prefix": "core", "seed0": 100},
    "core-shell": {"shell_cells": 2, "prefix": "coreshell", "seed0": 200},
}


def amplitudes_source():
    """The amplitudes argument of perovskite_dot and a sentence saying where it came from."""
    try:
        simulate = importlib.import_module("stemqd.simulation")
    except ModuleNotFoundError:
        simulate = None
    factory = getattr(simulate, "series_amplitudes", None) if simulate else None
    if SERIES.is_file() and factory is not None:
        return (
            factory(SERIES, method="volume", relative_to="BX"),
            f"multislice thickness series {SERIES.relative_to(ROOT)} "
            "(stemqd.simulation.series_amplitudes, fitted volumes relative to Pb-Br)",
        )
    return None, "default Z^1.7 amplitudes (stemqd.simulation.synthetic.CSPBBR3_AMPLITUDES)"


def frame_shape(
    edge_cells: int, rotation_deg: float, lattice_constant_A: float = CSPBBR3_LATTICE_CONSTANT_A
) -> tuple:
    """Square frame (px, a multiple of 32, >= 256) holding the rotated dot with >= 12 Å
    (two unit cells) of support on every side, for the background and the segmentation."""
    t = np.deg2rad(abs(rotation_deg))
    extent_A = edge_cells * lattice_constant_A * (np.cos(t) + np.sin(t)) + 2 * 12.0
    n = max(256, int(np.ceil(extent_A / PIXEL_SIZE_A / 32.0) * 32))
    return (n, n)


def make(out: Path) -> pd.DataFrame:
    """Write all stacks under `out` and return the truth table."""
    amplitudes, source = amplitudes_source()
    psf = probe_psf(PIXEL_SIZE_A, VOLTAGE_KV, CONVERGENCE_MRAD, source_size_A=0.25)
    rows = []
    for group, spec in GROUPS.items():
        folder = out / group
        folder.mkdir(parents=True, exist_ok=True)
        for k, (edge, rot, dose) in enumerate(zip(EDGES, ROTATIONS_DEG, DOSES)):
            seed = spec["seed0"] + k
            shape = frame_shape(edge, rot)
            frames, truth = perovskite_dot(
                shape,
                pixel_size_A=PIXEL_SIZE_A,
                edge_cells=edge,
                amplitudes=amplitudes,
                psf=psf,
                shell_cells=spec["shell_cells"],
                shell_factor=0.6,
                rotation_deg=rot,
                dose=dose,
                n_frames=N_FRAMES,
                drift_px=1.0,
                seed=seed,
            )
            name = f"{spec['prefix']}_{k + 1:02d}.tif"
            write_stack_tiff(
                folder / name, frames, PIXEL_SIZE_A, VOLTAGE_KV, CONVERGENCE_MRAD, dtype="uint16"
            )
            rows.append(
                {
                    "group": group,
                    "file": f"{group}/{name}",
                    "edge_cells": edge,
                    "edge_nm": edge * truth.lattice_constant_A / 10,
                    "rotation_deg": rot,
                    "shell_cells": spec["shell_cells"],
                    "shell_factor": 0.6 if spec["shell_cells"] else None,
                    "true_ratio_Cs_PbBr": truth.ratio("A", "BX"),
                    "dose": dose,
                    "frames": N_FRAMES,
                    "shape_px": f"{shape[0]}x{shape[1]}",
                    "pixel_size_A": PIXEL_SIZE_A,
                    "seed": seed,
                }
            )
            print(
                f"{group}/{name}: {edge} cells, {rot:+.1f} deg, {shape[0]} px, "
                f"true Cs:PbBr = {truth.ratio('A', 'BX'):.4f}",
                file=sys.stderr,
            )
    truth_table = pd.DataFrame(rows)
    atomic_write_text(out / "truth.csv", truth_table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(
        out / "provenance.json",
        json.dumps(
            {
                "generator": "simulations/make_sample_data.py",
                "amplitudes": source,
                "psf": f"stemqd.preprocess.probe.probe_psf({PIXEL_SIZE_A} A/px, 300 kV, 18 mrad, source_size_A=0.25)",
                "numpy": np.__version__,
            },
            indent=2,
        )
        + "\n",
    )
    print(f"amplitudes: {source}", file=sys.stderr)
    return truth_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "sample_data"), help="output folder")
    args = parser.parse_args(argv)
    make(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
