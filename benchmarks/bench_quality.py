"""The quality gate's measures on real and synthetic images: what passes, what fails.

Every image goes through :func:`stemqd.pipeline.process_stack` with the gate off
(``quality.gate = false``), so that the measures are printed whatever they are, and the
verdict of the default thresholds (:class:`stemqd.config.QualityConfig`) is shown beside
them. The cases:

* synthetic CsPbBr3 [001] dots (6 cells, 0.2 Å/px, 2 frames) over sigma / nn 0.10-0.45
  and doses 20-1000 counts per pixel at the peak of an amplitude-1 column;
* a CsPbBr3 crystal filling the field;
* the real Pt-Ir image (StatSTEM's example, sigma / nn = 0.30) with ``material.name =
  none`` (a one-element crystal has no ratio), and the lattice measures of its columns
  against fcc [110] with a = 3.92 Å;
* pure Poisson noise at three levels, the carbon support alone, at the same calibration;
  with no material the column spacing is given (``columns.spacing_A``), as a user would,
  since the autocorrelation finds none in noise.

The lattice measures (on-site fraction, rms misfit in nearest-neighbour distances, cells)
are those of the gate with a material; the fit measure (fraction of significant clean
fits) is the gate without one. Run: ``python benchmarks/bench_quality.py [--quick]``
(``--quick``: a corner of the grid). The real image is skipped when
``../shared/data/statstem/Example_PtIr.mat`` is absent.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from stemqd.columns.cell import nearest_neighbour_A, projected_cell
from stemqd.columns.quality import check_quality, lattice_quality
from stemqd.columns.sublattice import assign_sublattices
from stemqd.config import load_config, replace
from stemqd.errors import StemqdError
from stemqd.io import load, write_stack_tiff
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.pipeline import process_stack
from stemqd.simulation.synthetic import carbon_background, crystal_stack, perovskite_dot

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "statstem" / "Example_PtIr.mat"
PIXEL_A = 0.2
NN_A = CSPBBR3_LATTICE_CONSTANT_A / 2
GATE_OFF = ["quality.gate=false"]
NO_MATERIAL = ["material.name=none"]


def measure(folder, name, frames, pixel_A, overrides, columns=False):
    """Quality record of one image (gate off), or the error that stopped it (and with
    ``columns`` the column table)."""
    path = Path(folder) / f"{name}.tif"
    write_stack_tiff(path, np.asarray(frames, np.float32), pixel_A, 300, 18)
    config = load_config(overrides=GATE_OFF + overrides)
    try:
        analysis = process_stack(load(path), config)
        out = analysis.summary["quality"]
    except StemqdError as exc:
        analysis, out = None, {"error": f"{type(exc).__name__}: {exc}"[:90]}
    return (out, analysis.columns) if columns else out


def verdict(q):
    if "error" in q:
        return q["error"]
    return "pass" if q["passed"] else "FAIL: " + "; ".join(r.split(" (")[0] for r in q["reasons"])


def row(case, q):
    if q.get("kind") == "lattice":
        numbers = (
            f"{q['n_found']:6d} {q['on_site_fraction']:8.2f} "
            f"{q['on_site_intensity_fraction']:8.2f} {q['rms_misfit_nn']:8.3f} "
            f"{q['n_cells']:6d} {'':>8}"
        )
    elif q.get("kind") == "fit":
        numbers = (
            f"{q['n_columns']:6d} {'':>8} {'':>8} {'':>8} {'':>6} {q['significant_fraction']:8.2f}"
        )
    else:
        numbers = f"{'':>6} {'':>8} {'':>8} {'':>8} {'':>6} {'':>8}"
    print(f"{case:<34} {numbers}  {verdict(q)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a corner of the grid only")
    parser.add_argument(
        "--only", choices=["dots", "crystal", "real", "noise"], help="one group of images only"
    )
    args = parser.parse_args()
    want = lambda group: args.only in (None, group)  # noqa: E731
    widths = (0.1, 0.45) if args.quick else (0.1, 0.2, 0.3, 0.45)
    doses = (20, 1000) if args.quick else (20, 100, 1000)
    c = load_config().quality
    print(
        f"thresholds: on-site intensity fraction >= {c.min_on_site_intensity_fraction}, "
        f"rms misfit <= "
        f"{c.max_rms_misfit_nn} nn, cells >= {c.min_cells}; without a material: significant "
        f"fraction >= {c.min_significant_fraction}, columns >= {c.min_columns}\n"
    )
    print(
        f"{'image':<34} {'found':>6} {'on-site':>8} {'on-site':>8} {'misfit':>8} {'cells':>6} "
        f"{'signif':>8}\n{'':<34} {'':>6} {'columns':>8} {'intens.':>8} {'nn':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for k, s in enumerate(widths if want("dots") else ()):
            for dose in doses:
                frames, _ = perovskite_dot(
                    (256, 256),
                    pixel_size_A=PIXEL_A,
                    sigma_A=s * NN_A,
                    edge_cells=6,
                    dose=float(dose),
                    n_frames=2,
                    drift_px=0.5,
                    rotation_deg=3.0,
                    seed=k,
                )
                row(f"dot sigma/nn {s:.2f} dose {dose}", measure(tmp, "dot", frames, PIXEL_A, []))
                if s == 0.3 and dose == doses[0]:
                    row(
                        "  same, no material",
                        measure(tmp, "dot", frames, PIXEL_A, NO_MATERIAL),
                    )
        if want("crystal"):
            crystal(tmp)
        if want("real"):
            real(tmp, c)
        if want("noise"):
            noise(tmp)


def crystal(tmp):
    cell = projected_cell("CsPbBr3", (0, 0, 1))
    frames, _ = crystal_stack(
        cell, (256, 256), pixel_size_A=PIXEL_A, sigma_A=0.3 * NN_A, dose=200.0,
        background_level=0.1, rotation_deg=5.0, n_frames=2,
    )  # fmt: skip
    row("full-field crystal sigma/nn 0.30", measure(tmp, "full", frames, PIXEL_A, []))
    row("  same, no material", measure(tmp, "full", frames, PIXEL_A, NO_MATERIAL))


def real(tmp, c):
    if REAL.is_file():
        import scipy.io

        m = scipy.io.loadmat(REAL, squeeze_me=True, struct_as_record=False)
        obs, dx = np.asarray(m["input"].obs, float), float(m["input"].dx)
        q, columns = measure(tmp, "ptir", obs, dx, NO_MATERIAL, columns=True)
        row("real Pt-Ir, no material", q)
        # A one-element crystal has no ratio, so the pipeline takes it without a
        # material; the gate's lattice measures are computed here on its columns, with
        # the projected cell of fcc [110] at Pt-Ir's lattice constant.
        fcc = projected_cell("Au", (1, 1, 0), lattice_constant_A=3.92)
        inside = columns[~columns["flag"].str.contains("outside dot|image edge")]
        assigned, _ = assign_sublattices(
            inside[["x_px", "y_px"]].to_numpy(), inside["volume"].to_numpy(), dx, fcc
        )
        q = lattice_quality(
            assigned["assign_flag"], assigned[["i", "j"]].to_numpy(), assigned["misfit_A"],
            nearest_neighbour_A(fcc), inside["volume"].to_numpy(),
        )  # fmt: skip
        row("real Pt-Ir, as fcc [110] a=3.92 Å", check_quality(q, replace(c, gate=False)))
    else:
        print(f"(real image skipped: {REAL} is absent)")


def noise(tmp):
    rng = np.random.default_rng(1)
    spacing = [f"columns.spacing_A={NN_A}"]
    for level in (5, 50, 500):
        frames = rng.poisson(level, (2, 256, 256))
        row(f"Poisson noise, mean {level}", measure(tmp, "noise", frames, PIXEL_A, []))
        row(
            "  same, no material",
            measure(tmp, "noise", frames, PIXEL_A, NO_MATERIAL + spacing),
        )
    support = carbon_background((256, 256), PIXEL_A, level=0.15, rng=2)
    frames = rng.poisson(200 * np.broadcast_to(support, (2, 256, 256)))
    row("carbon support alone", measure(tmp, "support", frames, PIXEL_A, []))
    row("  same, no material", measure(tmp, "support", frames, PIXEL_A, NO_MATERIAL + spacing))
    row("all-zero image", measure(tmp, "zero", np.zeros((2, 256, 256)), PIXEL_A, []))


if __name__ == "__main__":
    main()
