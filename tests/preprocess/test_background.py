import numpy as np
import pytest

from stemqd.columns.fit import refine_columns
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.preprocess.background import disk_radius_px, remove_background
from stemqd.simulation.synthetic import perovskite_dot


def test_support_removed_and_column_amplitudes_kept():
    frames, truth = perovskite_dot(
        (384, 384),
        edge_cells=8,
        dose=1e5,
        n_frames=1,
        drift_px=0,
        background_level=0.3,
        include_x=False,
        seed=1,
    )
    image = frames[0] / truth.dose
    corrected, background = remove_background(
        image, disk_radius_px(CSPBBR3_LATTICE_CONSTANT_A, 0.2, 3.0)
    )
    # On the bare support the residual is small against the column amplitudes.
    support = np.ones(image.shape, bool)
    for x, y in truth.positions_px:
        support[max(0, int(y) - 60) : int(y) + 60, max(0, int(x) - 60) : int(x) + 60] = False
    assert np.abs(corrected[support]).mean() < 0.06 * truth.amplitudes.max()
    # Column amplitudes (fitted peak heights above the local offset) within 2 %.
    fit = refine_columns(corrected, truth.positions_px, model="window7", radius_px=0.5 * 4.15 / 0.2)
    for t in ("A", "BX"):
        m = truth.types == t
        assert fit.amplitude[m].mean() == pytest.approx(truth.amplitudes[m].mean(), rel=0.02)
    assert abs(fit.offset).max() < 0.1  # the offset absorbs what the opening leaves


def test_large_radius_supported():
    # A disk larger than the image: on a flat support with sparse columns the background is
    # the support level everywhere and every column keeps its height.
    yy, xx = np.mgrid[0:300, 0:300]
    image = np.full((300, 300), 5.0)
    peaks = [(x, y) for x in range(15, 300, 30) for y in range(15, 300, 30)]
    for x, y in peaks:
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    corrected, background = remove_background(image.astype(np.float32), 280)
    assert corrected.shape == image.shape
    assert background == pytest.approx(np.full(image.shape, 5.0), abs=1e-3)
    heights = np.array([corrected[y, x] for x, y in peaks])
    assert heights == pytest.approx(1.0, abs=1e-3)
