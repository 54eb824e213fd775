import numpy as np
import pytest
from scipy import signal
from skimage.restoration import richardson_lucy

from stemqd.preprocess.deconvolve import deconvolve_blind
from stemqd.preprocess.probe import probe_psf, psf_fwhm_A
from stemqd.simulation.synthetic import render_columns

PIXEL_A = 0.2
TRUE_FWHM_PX = 4.0  # 0.8 Å
COLUMN_SIGMA_PX = 2.0  # 0.4 Å, intrinsic column width


def gaussian_psf(fwhm_px, half=7):
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    s = fwhm_px / (2 * np.sqrt(2 * np.log(2)))
    g = np.exp(-(x * x + y * y) / (2 * s * s))
    return g / g.sum()


def lattice(n=192, dose=2000.0, seed=0):
    """Two interleaved square sublattices (amplitudes 1 and 0.41, CsPbBr3 [001] spacing),
    blurred by the true PSF, with Poisson noise. Returns (sharp truth, noisy image)."""
    half = 5.87 / PIXEL_A / 2
    grid = np.arange(6, n, half)
    ij = np.array([(i, j) for i in range(len(grid)) for j in range(len(grid))])
    pos = grid[ij]
    amp = np.where(ij.sum(axis=1) % 2 == 0, 1.0, 0.41)
    sharp = dose * (render_columns((n, n), pos, amp, COLUMN_SIGMA_PX) + 0.05)
    blurred = signal.fftconvolve(sharp, gaussian_psf(TRUE_FWHM_PX), mode="same").clip(0)
    return sharp, np.random.default_rng(seed).poisson(blurred).astype(np.float64)


def _rms(a, b, m=20):
    return np.sqrt(np.mean((a - b)[m:-m, m:-m] ** 2))


def test_blind_recovers_psf_width_and_sharpens():
    sharp, image = lattice()
    init = gaussian_psf(1.4 * TRUE_FWHM_PX)
    out, psf = deconvolve_blind(image, init)  # MATLAB's default: 10 iterations
    fwhm = psf_fwhm_A(psf, PIXEL_A)
    # Measured: 1.12 Å initial -> 0.816 Å recovered (truth 0.80 Å, +2 %).
    assert psf_fwhm_A(init, PIXEL_A) == pytest.approx(1.4 * 0.8, rel=0.01)
    assert fwhm == pytest.approx(TRUE_FWHM_PX * PIXEL_A, rel=0.10)
    # Measured: RMS error against the unblurred truth 0.55 x that of the input.
    assert _rms(out, sharp) < 0.75 * _rms(image, sharp)
    assert psf.shape == init.shape and psf.sum() == pytest.approx(1.0) and (psf >= 0).all()
    assert np.unravel_index(np.argmax(psf), psf.shape) == (7, 7)


def test_blind_width_settles_without_noise_and_drifts_with_noise():
    # Nearly noise-free data: the PSF settles near the truth (measured 0.857, 0.850, 0.873 Å
    # after 10, 20, 40 iterations) instead of running on to a delta.
    _, image = lattice(dose=1e5)
    for iterations in (20, 40):
        _, psf = deconvolve_blind(image, gaussian_psf(1.4 * TRUE_FWHM_PX), iterations=iterations)
        assert psf_fwhm_A(psf, PIXEL_A) == pytest.approx(TRUE_FWHM_PX * PIXEL_A, rel=0.10)
    # Noisy data: the blind problem's trivial solution (PSF = delta, image = data) fits the
    # noise best, so the PSF keeps narrowing; the iteration count is the regulariser, as in
    # MATLAB (documented in deconvolve_blind's Notes).
    _, noisy = lattice(dose=2000.0)
    widths = [
        psf_fwhm_A(
            deconvolve_blind(noisy, gaussian_psf(1.4 * TRUE_FWHM_PX), iterations=it)[1], PIXEL_A
        )
        for it in (10, 40)
    ]
    assert widths[1] < 0.8 * widths[0]


@pytest.mark.parametrize("iterations", [1, 7, 25])
def test_nonblind_matches_scikit_image(iterations):
    # Fair comparison: scikit-image starts from 0.5 and convolves with zero padding, so
    # start from 0.5 too, switch off acceleration and padding, and give the image a zero
    # border wider than two PSF radii, where linear and circular convolution agree.
    _, image = lattice(n=128, dose=500.0)
    image[:16], image[-16:], image[:, :16], image[:, -16:] = 0, 0, 0, 0
    psf = gaussian_psf(TRUE_FWHM_PX)
    ref = richardson_lucy(image, psf, num_iter=iterations, clip=False)
    out, psf_out = deconvolve_blind(
        image, psf, iterations=iterations, blind=False, accelerate=False, init=0.5, pad_px=0
    )
    # The only difference is MATLAB's sqrt(eps) = 1.5e-8 in the image update's scale.
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-7 * ref.max())
    np.testing.assert_array_equal(psf_out, psf / psf.sum())


def test_delta_psf_is_identity():
    _, image = lattice(n=64, dose=100.0)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    out, psf = deconvolve_blind(image, delta, iterations=5, blind=False)
    np.testing.assert_allclose(out, image, rtol=1e-7, atol=1e-9)


def test_negative_pixels_offset_and_removed():
    sharp, image = lattice(n=96, dose=300.0)
    # Background-subtracted data: a third of the pixels negative.
    shifted = image - np.percentile(image, 33)
    assert (shifted < 0).mean() > 0.3
    psf = probe_psf(PIXEL_A, half_width_A=1.5)
    out, p = deconvolve_blind(shifted, psf)
    assert np.isfinite(out).all() and np.isfinite(p).all()
    # Documented treatment: the offset c = -min(I) makes the data non-negative and is
    # subtracted afterwards, i.e. exactly the deconvolution of I - min(I), shifted back.
    low = shifted.min()
    ref, p_ref = deconvolve_blind(shifted - low, psf)
    np.testing.assert_allclose(out, ref + low, rtol=1e-12, atol=1e-9 * np.abs(ref).max())
    np.testing.assert_allclose(p, p_ref, rtol=1e-10, atol=1e-15)
    # A readout level that covers the negative pixels needs no offset.
    out_r, _ = deconvolve_blind(shifted, psf, readout=-low)
    assert np.isfinite(out_r).all()


def test_options_and_input_untouched():
    _, image = lattice(n=80, dose=300.0)
    image32 = image.astype(np.float32)
    before = image32.copy()
    psf = gaussian_psf(5.0, half=5)
    out, p = deconvolve_blind(image32, psf, iterations=6, damping=2.0)
    np.testing.assert_array_equal(image32, before)
    assert out.dtype == np.float32 and out.shape == image.shape and np.isfinite(out).all()
    # Damping (in Poisson standard deviations for data in counts) slows the fit of noise.
    undamped, _ = deconvolve_blind(image, psf, iterations=6)
    damped, _ = deconvolve_blind(image, psf, iterations=6, damping=3.0)
    assert np.std(damped - image) < np.std(undamped - image)
    # An explicit all-ones weight is the default.
    weighted, pw = deconvolve_blind(image, psf, iterations=4, weight=np.ones_like(image))
    plain, pp = deconvolve_blind(image, psf, iterations=4)
    np.testing.assert_allclose(weighted, plain, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pw, pp, rtol=1e-9, atol=1e-15)
    # A masked bad pixel does not leak into the result.
    bad = image.copy()
    bad[40, 40] = 1e6
    mask = np.ones_like(image)
    mask[40, 40] = 0
    masked, _ = deconvolve_blind(bad, psf, iterations=4, weight=mask)
    assert np.abs(masked[30:50, 30:50]).max() < 10 * image.max()
    with pytest.raises(ValueError):
        deconvolve_blind(image, np.ones((4, 4)))
