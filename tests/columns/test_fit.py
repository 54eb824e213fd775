"""Gaussian column refinement against synthetic truth."""

import numpy as np
import pytest

from stemqd.columns.fit import gaussian2d, refine_columns
from stemqd.columns.precision import cramer_rao_bound
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.simulation.synthetic import perovskite_dot, render_columns

PIXEL = 0.2
NN_PX = CSPBBR3_LATTICE_CONSTANT_A / 2 / PIXEL  # Br to Pb-Br distance in CsPbBr3 [001], px


@pytest.fixture(scope="module")
def clean_dot():
    frames, truth = perovskite_dot(
        (320, 320),
        pixel_size_A=PIXEL,
        edge_cells=8,
        dose=2000,
        background_level=0.0,
        n_frames=1,
        drift_px=0,
        seed=3,
    )
    return frames[0] / truth.dose, truth


def _seeds(truth, jitter=0.5, seed=1):
    rng = np.random.default_rng(seed)
    return truth.positions_px + rng.normal(0, jitter, truth.positions_px.shape)


def test_recovers_positions_and_amplitudes_with_overlap(clean_dot):
    image, truth = clean_dot
    df = refine_columns(image, _seeds(truth), model="window7", radius_px=0.5 * NN_PX)
    assert (df["flag"] == "").all()
    err = np.hypot(df.x_px - truth.positions_px[:, 0], df.y_px - truth.positions_px[:, 1])
    assert np.sqrt(np.mean(err**2)) < 0.05
    # Neighbour subtraction: amplitudes unbiased for every type, including weak Br columns
    # 2.9 Å from the bright Pb-Br columns.
    for t in ("A", "BX", "X"):
        m = truth.types == t
        assert df.amplitude[m].mean() == pytest.approx(truth.amplitudes[m].mean(), rel=0.01)
        assert df.sigma_x_px[m].mean() == pytest.approx(truth.sigma_px, rel=0.02)
    ratio = df.volume[truth.types == "A"].mean() / df.volume[truth.types == "BX"].mean()
    assert ratio == pytest.approx(truth.ratio("A", "BX"), rel=0.01)


def test_isolated_fits_are_biased_by_overlap_and_joint_sweeps_are_not():
    """Fitting each column alone (Atomap-style) biases the weak Br columns next to Pb-Br;
    the neighbour-subtraction sweeps remove that bias."""
    frames, truth = perovskite_dot(
        (320, 320),
        pixel_size_A=PIXEL,
        edge_cells=8,
        dose=1e6,
        background_level=0.0,
        n_frames=1,
        drift_px=0,
        seed=4,
        sigma_A=0.7,
    )
    image = frames[0] / truth.dose
    seeds = _seeds(truth)
    radius = 0.5 * NN_PX
    full = refine_columns(image, seeds, model="window7", radius_px=radius)
    centre = np.flatnonzero((truth.types == "X") & (truth.depth_uc >= 2))
    alone = np.array(
        [
            refine_columns(image, seeds[[i]], model="window7", radius_px=radius).volume[0]
            for i in centre
        ]
    )
    true_volume = 2 * np.pi * 0.19 * truth.sigma_px**2
    assert abs(full.volume[centre].mean() / true_volume - 1) < 0.01
    assert abs(alone.mean() / true_volume - 1) > 0.03
    print(
        f"Br volume bias: joint {full.volume[centre].mean() / true_volume - 1:+.4f}, "
        f"isolated {alone.mean() / true_volume - 1:+.4f}"
    )


def test_fast_and_lmfit_paths_agree(clean_dot):
    image, truth = clean_dot
    sel = np.flatnonzero(np.hypot(*(truth.positions_px - 160).T) < 70)
    seeds = _seeds(truth)[sel]
    fast = refine_columns(image, seeds, model="window7", radius_px=0.5 * NN_PX, tolerance_px=1e-7)
    ref = refine_columns(
        image, seeds, model="window7", radius_px=0.5 * NN_PX, method="lmfit", tolerance_px=1e-7
    )
    reports = ref.attrs["lmfit_reports"]
    assert len(reports) == len(seeds) and "[[Variables]]" in reports[0]
    assert np.abs(fast.x_px - ref.x_px).max() < 1e-3
    assert np.abs(fast.y_px - ref.y_px).max() < 1e-3
    assert np.abs(fast.amplitude / ref.amplitude - 1).max() < 1e-3
    assert np.abs(fast.x_px_err / ref.x_px_err - 1).max() < 1e-2


def test_lmfit_path_moves_every_centre_off_its_seed():
    # Each centre is bounded to its seed +- radius, so it starts at its box's midpoint.
    # Through MINPACK's leastsq lmfit steps the bounded parameter's internal value
    # arcsin(2 (v - min) / (max - min) - 1) by a fraction of itself: where rounding leaves
    # that value at 1e-15 rather than 0 the step moves the centre by less than its last
    # bit, the derivative is 0 and the centre stays at its seed. bench_columns' image
    # (1024² px at 0.15 Å, 300 counts) and central columns, where 14 of 150 stayed put.
    pixel = 0.15
    nn_px = CSPBBR3_LATTICE_CONSTANT_A / 2 / pixel
    frames, truth = perovskite_dot(
        (1024, 1024),
        pixel_size_A=pixel,
        edge_cells=int(1024 * pixel / CSPBBR3_LATTICE_CONSTANT_A) - 4,
        dose=300,
        n_frames=1,
        drift_px=0,
        background_level=0.0,
        sigma_A=0.45,
        seed=0,
    )
    image = frames[0].astype(float)
    seeds = truth.positions_px + np.random.default_rng(1).normal(0, 0.5, truth.positions_px.shape)
    centre = np.argsort(np.hypot(*(truth.positions_px - 512).T))[:150]
    rms = {}
    for method in ("fast", "lmfit"):
        df = refine_columns(
            image, seeds[centre], model="window7", radius_px=0.5 * nn_px, method=method
        )
        err = np.hypot(
            df.x_px - truth.positions_px[centre, 0], df.y_px - truth.positions_px[centre, 1]
        )
        rms[method] = np.sqrt(np.mean(err**2))
    assert rms["lmfit"] < 1.05 * rms["fast"], rms


def test_canonical_form_and_elliptical_columns():
    shape = (80, 80)
    y, x = np.mgrid[0:80, 0:80]
    truth = dict(amplitude=5.0, x0=40.3, y0=39.6, sigma_x=2.0, sigma_y=3.5, theta=0.4, offset=0.7)
    image = gaussian2d(x, y, *truth.values())
    df = refine_columns(image, [[40, 40]], model="window7", radius_px=12, sigma_px=2.5)
    row = df.iloc[0]
    assert row.sigma_x_px >= row.sigma_y_px
    assert 0 <= row.theta_rad < np.pi
    assert row.sigma_x_px == pytest.approx(3.5, abs=1e-6)
    assert row.sigma_y_px == pytest.approx(2.0, abs=1e-6)
    assert row.theta_rad == pytest.approx(0.4 + np.pi / 2, abs=1e-6)
    assert row.offset == pytest.approx(0.7, abs=1e-6)
    assert row.flag == ""
    assert shape == image.shape


def test_failed_fit_is_flagged_not_replaced():
    image = np.zeros((60, 60))
    image[30, 30] = -5.0  # a dip, not a column
    df = refine_columns(image + 1.0, [[30, 30], [2, 2]], model="window7", radius_px=6)
    assert df.flag[0] != ""
    assert np.isfinite(df.x_px[0])


def test_position_precision_near_cramer_rao_bound():
    """RMS position error within 1.5x the Cramér-Rao bound computed from the dose."""
    sigma, amplitude, background, dose = 2.5, 1.0, 0.1, 100.0
    radius = 0.5 * NN_PX
    spacing = 18.0
    grid = np.arange(20, 300, spacing)
    truth = np.array([(gx, gy) for gy in grid for gx in grid]) + 0.3
    clean = dose * (render_columns((320, 320), truth, amplitude, sigma) + background)
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(4):
        noisy = rng.poisson(clean).astype(float)
        df = refine_columns(
            noisy,
            truth + rng.normal(0, 0.5, truth.shape),
            model="window7",
            radius_px=radius,
            sigma_px=sigma,
        )
        ok = df.flag == ""
        errors.append((df.x_px - truth[:, 0])[ok])
    rms = np.sqrt(np.mean(np.concatenate(errors) ** 2))
    bound = cramer_rao_bound(amplitude, sigma, background, dose, radius)["x_px"]
    assert rms / bound < 1.5
    # The reported (sandwich) standard errors match the actual scatter; the classical
    # ones are too small under Poisson noise.
    assert df.x_px_err.median() == pytest.approx(rms, rel=0.15)
    classical = refine_columns(
        noisy, truth, model="window7", radius_px=radius, sigma_px=sigma, errors="classical"
    )
    assert classical.x_px_err.median() < 0.9 * rms
