import numpy as np
import pytest

from stemqd.columns.fit import refine_columns
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
    corrected, background = remove_background(image, disk_radius_px(5.87, 0.2, 3.0))
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
    image = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    corrected, background = remove_background(image, 280)
    assert np.isfinite(background).all()
    assert corrected.shape == image.shape
