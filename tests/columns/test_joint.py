"""The joint column fit (stemqd.columns.joint) against known truth, StatSTEM's real PtIr result, and
the Cramér-Rao bound of a column with its neighbours."""

from pathlib import Path

import numpy as np
import pytest
from scipy import io, stats
from scipy.spatial import cKDTree

from stemqd.columns.fit import refine_columns
from stemqd.columns.joint import fit_columns_jointly
from stemqd.columns.precision import cramer_rao_bound_overlap
from stemqd.simulation.synthetic import render_columns

PTIR = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "statstem" / "Example_PtIr.mat"
)


def _square(n_cells, spacing, margin=12.0):
    g = margin + spacing * np.arange(n_cells)
    return np.array([(x, y) for y in g for x in g]) + 0.3


# Measured: at sigma 1.2 px and 20 counts per peak the least-squares volume is +1.7 % biased
# (the nonlinear width estimate at about 180 counts per column); a Poisson likelihood fit
# would remove it. Kept as a strict xfail so that the target stays in view.
_LOW_DOSE_NARROW = pytest.mark.xfail(
    strict=True, reason="LS volume bias +1.7 % at 20 counts, sigma 1.2 px (target 1 %)"
)


@pytest.mark.parametrize(
    "overlap, dose",
    [
        pytest.param(0.10, 20, marks=_LOW_DOSE_NARROW),
        (0.10, 1000),
        (0.30, 20),
        (0.30, 1000),
        (0.45, 20),
        (0.45, 1000),
    ],
)
def test_square_lattice_sweep_unbiased_near_the_bound(overlap, dose):
    """sigma / nn 0.10-0.45 and 20-1000 counts at a column peak: no collapsed fit, volume
    bias under 1 % over seeds, RMS position error within 1.2x the Cramér-Rao bound of the
    model with its neighbours."""
    spacing = 12.0
    sigma = overlap * spacing
    truth = _square(7, spacing)
    size = int(truth.max() + 13)
    amplitude, background = 1.0, 0.1
    clean = render_columns((size, size), truth, amplitude, sigma) + background
    rng = np.random.default_rng(int(overlap * 100) + dose)
    bound = cramer_rao_bound_overlap((size, size), truth, amplitude, sigma, background, dose)
    errors, bias = [], []
    for _ in range(5):
        noisy = rng.poisson(dose * clean) / dose
        df = fit_columns_jointly(
            noisy,
            truth + rng.normal(0, 0.3, truth.shape),
            fit_radius_px=None,
            background="constant",
            nn_px=spacing,
        )
        assert (df["flag"] == "").all()
        assert df.attrs["joint"]["converged"]
        errors.append(np.hypot(df.x_px - truth[:, 0], df.y_px - truth[:, 1]) ** 2)
        bias.append(df.volume.mean() / (2 * np.pi * amplitude * sigma**2) - 1)
    rms = np.sqrt(np.mean(errors))
    crb = np.sqrt(np.mean(bound["x_px"] ** 2 + bound["y_px"] ** 2))
    assert abs(np.mean(bias)) < 0.01
    assert rms / crb < 1.2, (rms, crb)


def test_window_fit_collapses_where_the_joint_fit_holds():
    spacing, sigma = 12.0, 0.35 * 12.0
    truth = _square(6, spacing)
    size = int(truth.max() + 13)
    image = render_columns((size, size), truth, 1.0, sigma)
    window = refine_columns(image, truth, model="window7", radius_px=0.5 * spacing)
    joint = refine_columns(image, truth, model="round", background="constant")
    assert (window["flag"] != "").mean() > 0.5
    assert (joint["flag"] == "").all()
    assert np.allclose(joint.volume, 2 * np.pi * sigma**2, rtol=1e-4)


@pytest.mark.skipif(not PTIR.is_file(), reason=f"real StatSTEM data not found at {PTIR}")
@pytest.mark.parametrize("model", ["round", "gaussian7"])
def test_ptir_matches_statstem(model):
    """Seeded at StatSTEM's coordinates, the raw image: >= 95 % unflagged, median position
    difference <= 0.3 px, Spearman >= 0.99, volume-ratio scatter <= 3 %."""
    m = io.loadmat(PTIR, squeeze_me=True, struct_as_record=False)
    dx = float(m["input"].dx)
    seeds = np.asarray(m["output"].coordinates, float)[:, :2] / dx
    ref = np.asarray(m["output"].volumes, float)
    df = refine_columns(
        np.asarray(m["input"].obs, float), seeds, model=model, background="constant"
    )
    d = np.hypot(df.x_px - seeds[:, 0], df.y_px - seeds[:, 1])
    ratio = df.volume.to_numpy() * dx * dx / ref
    assert (df["flag"] == "").mean() >= 0.95
    assert np.median(d) <= 0.3
    assert stats.spearmanr(df.volume, ref)[0] >= 0.99
    assert stats.median_abs_deviation(ratio) / np.median(ratio) <= 0.03
    # StatSTEM's width is 0.6616 Å; the constant background is free here (fixed at 0 there).
    if model == "round":
        assert df.sigma_x_px.iloc[0] * dx == pytest.approx(0.6616, rel=0.03)


def test_errors_match_the_scatter():
    spacing, sigma, dose = 12.0, 0.3 * 12.0, 200
    truth = _square(6, spacing)
    size = int(truth.max() + 13)
    clean = render_columns((size, size), truth, 1.0, sigma) + 0.1
    rng = np.random.default_rng(3)
    x_err, x_rep = [], []
    for _ in range(6):
        df = fit_columns_jointly(
            rng.poisson(dose * clean) / dose,
            truth,
            fit_radius_px=None,
            background="constant",
            nn_px=spacing,
        )
        x_err.append(df.x_px - truth[:, 0])
        x_rep.append(df.x_px_err)
    assert np.median(np.concatenate(x_rep)) == pytest.approx(np.std(np.concatenate(x_err)), rel=0.2)


def test_seed_table_order_and_empty_input():
    empty = refine_columns(np.zeros((20, 20)), np.empty((0, 2)))
    assert len(empty) == 0
    truth = _square(3, 12.0)
    image = render_columns((50, 50), truth, 1.0, 3.0)
    df = refine_columns(image, truth[::-1])
    d, j = cKDTree(truth[::-1]).query(df[["x_px", "y_px"]].to_numpy())
    assert (j == np.arange(len(truth))).all() and d.max() < 1e-3


def test_local_background_on_a_sloped_support():
    """A support that slopes across the image (0.2 to 0.4 of the peak, noiseless): the
    default local background keeps every volume within 2 % and every position within
    0.05 px (measured: 1.4 % and 0.04 px at most, 0.5 % median)."""
    spacing, sigma = 12.0, 0.3 * 12.0
    truth = _square(8, spacing)
    size = int(truth.max() + 13)
    support = 0.2 + 0.002 * np.mgrid[:size, :size][1]
    image = render_columns((size, size), truth, 1.0, sigma) + support
    df = fit_columns_jointly(image, truth + 0.2, fit_radius_px=None, nn_px=spacing)
    assert (df["flag"] == "").all()
    error = df.volume / (2 * np.pi * sigma**2) - 1
    assert np.abs(error).max() < 0.02 and np.median(np.abs(error)) < 0.01
    assert np.hypot(df.x_px - truth[:, 0], df.y_px - truth[:, 1]).max() < 0.05


def test_a_duplicated_seed_gives_nan_errors_not_a_crash():
    """Two seeds on one column make every local block that holds both exactly singular:
    the pair shares the height, and those columns' errors are NaN and flagged (the
    batched inversion must not stop on them)."""
    truth = _square(6, 12.0)
    image = render_columns((90, 90), truth, 1.0, 3.0) + 0.1
    df = fit_columns_jointly(image, np.vstack([truth, truth[:1]]), fit_radius_px=None)
    assert df.amplitude.iloc[0] + df.amplitude.iloc[-1] == pytest.approx(1.0, rel=1e-3)
    assert np.isnan(df.amplitude_err.iloc[[0, -1]]).all()
    assert (df.flag.iloc[[0, -1]] == "singular covariance").all()
    far = np.hypot(*(df[["x_px", "y_px"]].to_numpy() - truth[0]).T) > 40
    assert np.isfinite(df.amplitude_err[far]).all()


def test_background_level_holds_the_constant():
    """A constant background held at its known level (``background_level``, StatSTEM's fit
    without a background): it stays exactly there, the volumes keep within 1 % of the
    truth under noise (sigma / nn 0.3, 200 counts at a peak over 0.2 of it), the shared
    width keeps a standard error, and a level 0.05 too high lowers every volume."""
    rng = np.random.default_rng(5)
    spacing, sigma, level, dose = 12.0, 0.3 * 12.0, 0.2, 200.0
    truth = _square(8, spacing)
    size = int(truth.max() + 13)
    image = rng.poisson(dose * (render_columns((size, size), truth, 1.0, sigma) + level)) / dose
    kw = dict(fit_radius_px=None, nn_px=spacing, background="constant")
    held = fit_columns_jointly(image, truth + 0.2, background_level=level, **kw)
    joint = held.attrs["joint"]
    assert joint["constant"] == level and (held["offset"] == level).all()
    assert (held["flag"] == "").all() and joint["converged"]
    assert np.isfinite(joint["shapes_err"][""]["sigma_px"])
    error = held.volume / (2 * np.pi * sigma**2) - 1
    assert abs(np.mean(error)) < 0.01
    high = fit_columns_jointly(image, truth + 0.2, background_level=level + 0.05, **kw)
    assert (high.volume < held.volume).all()
    with pytest.raises(ValueError, match="background='constant'"):
        fit_columns_jointly(image, truth, fit_radius_px=None, background_level=0.0)
    with pytest.raises(ValueError, match="window7"):
        refine_columns(image, truth, model="window7", radius_px=6.0, background_level=0.0)


@pytest.mark.parametrize(
    "truth",
    [np.array([[20.3, 25.1], [31.7, 24.6]]), np.array([[15.2 + 12 * i, 30.4] for i in range(5)])],
    ids=["two columns", "on one line"],
)
def test_few_and_collinear_columns(truth):
    """Seeds that cannot be triangulated are fitted as any others."""
    sigma = 3.0
    image = render_columns((60, 80), truth, 1.0, sigma) + 0.1
    df = fit_columns_jointly(
        image, truth + 0.3, fit_radius_px=None, nn_px=12.0, background="constant"
    )
    assert (df["flag"] == "").all()
    assert np.allclose(df.volume, 2 * np.pi * sigma**2, rtol=1e-4)
    assert np.allclose(df[["x_px", "y_px"]].to_numpy(), truth, atol=1e-4)


@pytest.mark.parametrize("radius", [4.0, 6.5, 30.0])
def test_fit_radius_selects_the_pixels_near_a_column(radius):
    truth = _square(6, 12.0) + np.random.default_rng(5).normal(0, 0.8, (36, 2))
    image = render_columns((90, 90), truth, 1.0, 3.0) + 0.1
    yy, xx = np.mgrid[:90, :90]
    near = np.hypot(xx.ravel()[:, None] - truth[:, 0], yy.ravel()[:, None] - truth[:, 1])
    df = fit_columns_jointly(image, truth, fit_radius_px=radius, nn_px=12.0)
    assert df.attrs["joint"]["pixels"] == int((near.min(axis=1) <= radius).sum())


def _dot_over_strong_carbon(sigma_A, seed):
    from stemqd.simulation.synthetic import perovskite_dot

    frames, truth = perovskite_dot(
        shape=(256, 256),
        pixel_size_A=0.2,
        edge_cells=8,
        sigma_A=sigma_A,
        background_level=0.4,
        dose=100,
        n_frames=1,
        drift_px=0.0,
        seed=seed,
    )
    volume = 2 * np.pi * truth.amplitudes * truth.sigma_px**2 * 100
    return frames[0].astype(float), truth, volume


@pytest.mark.parametrize("sigma_A", [0.5, 0.9])
def test_spline_background_unbiased_over_strong_carbon(sigma_A):
    """A CsPbBr3 dot over a carbon support at 0.4 of a Pb-Br peak that varies by +-15 %
    over 2.5 nm (100 counts per peak; sigma / nn 0.17 and 0.31): the jointly fitted spline
    gives every type's volume within 1.5 % (the weak Br columns within 6 %) and the ratio
    within 1 %, mean of 2 seeds, in a few iterations with no column flagged. The smoothed
    residual (``local``) is held at wrong widths there: A +30 % at sigma 0.5 Å, -8 % at
    0.9 Å (measured; asserted only as "worse than the spline")."""
    bias = {"spline": [], "local": []}
    ratio = []
    for seed in range(2):
        image, truth, volume = _dot_over_strong_carbon(sigma_A, seed)
        for background in bias:
            table = fit_columns_jointly(
                image,
                truth.positions_px,
                fit_radius_px=10,
                labels=truth.types,
                background=background,
            )
            v = table["volume"].to_numpy()
            bias[background].append(
                [
                    np.mean(v[truth.types == t] / volume[truth.types == t]) - 1
                    for t in ("A", "BX", "X")
                ]
            )
            if background == "spline":
                assert (table["flag"] == "").all()
                assert table.attrs["joint"]["iterations"] <= 20
                a, b = v[truth.types == "A"].mean(), v[truth.types == "BX"].mean()
                ratio.append(a / b / truth.ratio() - 1)
    spline, local = np.mean(bias["spline"], axis=0), np.mean(bias["local"], axis=0)
    assert np.all(np.abs(spline[:2]) < 0.015), spline
    assert abs(spline[2]) < 0.06, spline
    assert abs(np.mean(ratio)) < 0.01, ratio
    assert np.max(np.abs(local[:2])) > 3 * np.max(np.abs(spline[:2]))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_column_at_its_position_bound_does_not_freeze_the_fit(seed):
    """A CsPbBr3 dot (10 x 10 cells, sigma / nn 0.15, 200 counts at a Pb-Br peak) over a
    carbon support at 0.15 of a unit-amplitude peak that varies under the dot: weak Br
    columns where the carbon lies below the fitted constant go negative and run to their
    +-nn/2 bound. Rejecting every step that moved such a column out froze the fit of the
    whole image there (width 5 % too wide, the default ``local`` volumes 7-8 % high); with
    those columns held in place, the smoothed background's rounds bring the width within
    1 % and every type's median volume within 2 %."""
    from stemqd.simulation.synthetic import perovskite_dot

    frames, truth = perovskite_dot(
        (300, 300),
        pixel_size_A=0.25,
        edge_cells=10,
        amplitudes={"A": 0.25, "BX": 0.62, "X": 0.11},
        sigma_A=0.45,
        dose=200,
        n_frames=1,
        drift_px=0.0,
        background_level=0.15,
        seed=seed,
    )
    nn = truth.lattice_constant_A / 2 / truth.pixel_size_A
    table = fit_columns_jointly(
        frames[0].astype(float), truth.positions_px, fit_radius_px=0.5 * nn, nn_px=nn
    )
    assert table["sigma_x_px"].iloc[0] == pytest.approx(truth.sigma_px, rel=0.01)
    volume = table["volume"].to_numpy() / (
        truth.amplitudes * 2 * np.pi * truth.sigma_px**2 * truth.dose
    )
    for t in ("A", "BX", "X"):
        assert np.median(volume[truth.types == t]) == pytest.approx(1.0, abs=0.02), t


@pytest.mark.parametrize("dose", [pytest.param(200, marks=pytest.mark.slow), 500])
def test_smooth_background_settles_under_a_thinning_dot(thinning_dot_over_carbon, dose):
    """A pyramid-like CsPbBr3 dot (10 x 10 cells, one cell thinner per cell towards its
    edge, sigma / nn 0.15) over carbon at 0.15 of its brightest peak, true positions: its
    edge columns are weaker than the support, and the smoothed background, estimated in
    rounds with the column fit, moves a few % of the way per round. After the default 3
    rounds the width is 2.0x the truth and the A / BX volumes 3-6x high, and the width the
    central columns give alone is far narrower; so by default the rounds go on (up to
    ``smooth_rounds_max``, 20), and the width is within 3 % and the median A and BX volumes
    within 5 % (measured 1.3 % and 2.6 % with 20 rounds)."""
    frames, truth = thinning_dot_over_carbon(dose)
    nn = truth.lattice_constant_A / 2 / truth.pixel_size_A
    kwargs = dict(fit_radius_px=0.5 * nn, nn_px=nn)
    early = fit_columns_jointly(
        frames[0].astype(float), truth.positions_px, smooth_rounds_max=3, **kwargs
    )
    assert early.attrs["joint"]["smooth_rounds"] == 3
    assert early["sigma_x_px"].iloc[0] > 1.5 * truth.sigma_px
    assert early.attrs["joint"]["centre_width_ratio"] < 0.8
    table = fit_columns_jointly(frames[0].astype(float), truth.positions_px, **kwargs)
    assert 3 < table.attrs["joint"]["smooth_rounds"] <= 20
    assert table["sigma_x_px"].iloc[0] == pytest.approx(truth.sigma_px, rel=0.03)
    volume = table["volume"].to_numpy() / (
        truth.amplitudes * 2 * np.pi * truth.sigma_px**2 * truth.dose
    )
    for t in ("A", "BX"):
        assert np.median(volume[truth.types == t]) == pytest.approx(1.0, abs=0.05), t
