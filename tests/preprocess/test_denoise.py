import numpy as np
import pytest
from scipy import ndimage

from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.preprocess.denoise import anscombe_forward, anscombe_inverse, du_filter
from stemqd.simulation.synthetic import perovskite_dot

PIXEL_A = 0.2
DOSE = 20.0  # counts at the peak of an amplitude-1 column, one frame: a low-dose image


def _psnr(image, reference):
    return 10 * np.log10(reference.max() ** 2 / np.mean((image - reference) ** 2))


def _disc_means(image, positions, radius_px):
    """Mean of the pixels within radius_px of every (sub-pixel) position."""
    r = int(np.ceil(radius_px)) + 1
    offs = np.arange(-r, r + 1)
    cx, cy = np.rint(positions[:, 0]).astype(int), np.rint(positions[:, 1]).astype(int)
    ys, xs = cy[:, None, None] + offs[None, :, None], cx[:, None, None] + offs[None, None, :]
    d2 = (xs - positions[:, 0, None, None]) ** 2 + (ys - positions[:, 1, None, None]) ** 2
    inside = d2 <= radius_px**2
    vals = image[np.clip(ys, 0, image.shape[0] - 1), np.clip(xs, 0, image.shape[1] - 1)]
    return (vals * inside).sum(axis=(1, 2)) / inside.sum(axis=(1, 2))


def _ratio(image, truth, radius_A):
    m = _disc_means(image, truth.positions_px, radius_A / PIXEL_A)
    return m[truth.types == "A"].mean() / m[truth.types == "BX"].mean()


@pytest.fixture(scope="module")
def low_dose():
    frames, truth = perovskite_dot(
        (320, 320), pixel_size_A=PIXEL_A, edge_cells=8, dose=DOSE, n_frames=1, drift_px=0, seed=0
    )
    background = DOSE * truth.background  # the filter's input is background-subtracted
    noisy = frames[0].astype(np.float64) - background
    clean = truth.clean - background
    return noisy, clean, truth, du_filter(noisy, PIXEL_A)


def test_closer_to_truth_at_low_dose(low_dose):
    noisy, clean, truth, filtered = low_dose
    gain = _psnr(filtered, clean) - _psnr(noisy, clean)
    # Measured: 19.97 dB -> 24.24 dB, a gain of 4.3 dB.
    assert gain > 3.5
    # The filter removes noise, it does not add structure: the residual is smaller everywhere
    # on the dot, not only on average.
    dot = np.zeros(clean.shape, bool)
    dot[40:280, 40:280] = True
    assert np.mean((filtered - clean)[dot] ** 2) < 0.5 * np.mean((noisy - clean)[dot] ** 2)


def test_column_ratio_kept(low_dose):
    noisy, clean, truth, filtered = low_dose
    # Integrated column intensity (disc of radius 2 sigma = 1 Å, ~86 % of a column's volume),
    # measured identically on the filtered and the noise-free image.
    ref = _ratio(clean, truth, 1.0)
    assert ref == pytest.approx(truth.ratio(), rel=0.02)
    assert _ratio(filtered, truth, 1.0) == pytest.approx(ref, rel=0.01)
    # Noise-free input: even the peak heights (disc of 0.3 Å) keep their ratio to 0.1 %.
    clean_filtered = du_filter(clean, PIXEL_A)
    for radius in (0.3, 1.0):
        assert _ratio(clean_filtered, truth, radius) == pytest.approx(
            _ratio(clean, truth, radius), rel=1e-3
        )


def test_low_frequencies_preserved(low_dose):
    noisy, clean, truth, filtered = low_dose
    # The mean (G(0) = 1) and the dot's outline on scales beyond a lattice constant pass.
    assert filtered.sum() == pytest.approx(noisy.sum(), rel=1e-3)
    sigma_px = CSPBBR3_LATTICE_CONSTANT_A / PIXEL_A
    smooth_f = ndimage.gaussian_filter(filtered, sigma_px)
    smooth_n = ndimage.gaussian_filter(noisy, sigma_px)
    assert np.abs(smooth_f - smooth_n).max() < 0.005 * smooth_n.max()
    # The dot's edge at 2 Å resolution: unchanged by the filter (noisy input), and the
    # noise-free dot comes out with its outline intact.
    sigma_px = 2.0 / PIXEL_A
    smooth_f = ndimage.gaussian_filter(filtered, sigma_px)
    smooth_n = ndimage.gaussian_filter(noisy, sigma_px)
    diff = np.abs(smooth_f - smooth_n)
    # Within 2 sigma of the field's edge the mirror padding leaves a percent-level change.
    assert diff[20:-20, 20:-20].max() < 0.01 * smooth_n.max()
    assert diff.max() < 0.03 * smooth_n.max()
    smooth_c = ndimage.gaussian_filter(clean, sigma_px)
    smooth_cf = ndimage.gaussian_filter(du_filter(clean, PIXEL_A), sigma_px)
    assert np.abs(smooth_cf - smooth_c).max() < 0.005 * smooth_c.max()


def test_no_edge_artefacts():
    # A steep ramp is discontinuous across the periodic boundary; mirror padding keeps the
    # circular FFT from ringing at the image edges.
    yy, xx = np.mgrid[0:200, 0:150]
    ramp = 3.0 * xx + 1.0 * yy
    out = du_filter(ramp, PIXEL_A)
    assert np.abs(out - ramp).max() < 5e-3 * np.ptp(ramp)
    assert np.abs(out - ramp)[5:-5, 5:-5].max() < 2e-3 * np.ptp(ramp)


def test_input_untouched_shape_dtype_and_cutoff_units(low_dose):
    noisy = low_dose[0][:250, :301].astype(np.float32)
    before = noisy.copy()
    out = du_filter(noisy, PIXEL_A, cycles=3)
    np.testing.assert_array_equal(noisy, before)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert du_filter(noisy.astype(np.float64), PIXEL_A, cycles=3).dtype == np.float64
    # The default cutoff is 0.6 x Nyquist = 0.3 / p Å^-1 (the ports' sigma_k = 0.3 N).
    np.testing.assert_array_equal(
        du_filter(noisy, PIXEL_A, cycles=3, cutoff_inv_A=0.3 / PIXEL_A), out
    )
    # No cycles: the identity, up to FFT round-off.
    np.testing.assert_allclose(du_filter(noisy, PIXEL_A, cycles=0), noisy, atol=1e-3)
    with pytest.raises(ValueError):
        du_filter(noisy[0], PIXEL_A)


def test_anscombe_inverse_is_unbiased():
    rng = np.random.default_rng(3)
    for lam in (1.0, 3.0, 10.0):
        z = rng.poisson(lam, 400_000)
        # The unbiased inverse of the expectation returns lambda; the algebraic inverse
        # D^2/4 - 3/8 is ~8 % low at 3 counts, more below.
        d = anscombe_forward(z).mean()
        assert anscombe_inverse(d) == pytest.approx(lam, rel=0.01)
        if lam <= 3:
            assert 0.25 * d**2 - 0.375 < 0.95 * lam


def test_anscombe_option_on_counts():
    frames, truth = perovskite_dot(
        (320, 320), pixel_size_A=PIXEL_A, edge_cells=8, dose=DOSE, n_frames=1, drift_px=0, seed=1
    )
    counts = frames[0].astype(np.float64)
    out = du_filter(counts, PIXEL_A, anscombe=True)
    assert np.isfinite(out).all()
    assert _psnr(out, truth.clean) - _psnr(counts, truth.clean) > 3.0
    # The residual-noise correction keeps the mean: bias < 1 % of the ~3.6-count support.
    support = np.ones(counts.shape, bool)
    support[50:270, 50:270] = False
    assert out[support].mean() == pytest.approx(truth.clean[support].mean(), rel=0.01)
    assert out.mean() == pytest.approx(truth.clean.mean(), rel=0.01)
