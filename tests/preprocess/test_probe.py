import numpy as np
import pytest

from stemqd.optics import wavelength_A
from stemqd.preprocess.probe import probe_psf, psf_fwhm_A


def test_wavelength_300kv():
    # Relativistic: 12.2643 / sqrt(V (1 + 0.978476e-6 V)) Å = 1.9687 pm at 300 kV.
    assert wavelength_A(300.0) == pytest.approx(0.019687, abs=5e-7)
    assert wavelength_A(200.0) == pytest.approx(0.025079, abs=5e-7)
    with pytest.raises(ValueError):
        wavelength_A(0.0)


@pytest.mark.parametrize("pixel_size_A", [0.05, 0.1, 0.2, 0.25])
def test_aberration_free_fwhm_is_airy(pixel_size_A):
    # Airy FWHM 0.5145 lambda / alpha = 0.563 Å at 300 kV, 18 mrad, on fine and coarse grids.
    psf = probe_psf(pixel_size_A, 300.0, 18.0)
    airy = 0.5145 * wavelength_A(300.0) / 18e-3
    assert airy == pytest.approx(0.5628, abs=2e-4)
    assert psf_fwhm_A(psf, pixel_size_A) == pytest.approx(airy, rel=0.01)


def test_shape_normalisation_symmetry():
    for p, hw in [(0.2, 1.5), (0.13, 1.5), (0.3, 2.0)]:
        psf = probe_psf(p, half_width_A=hw)
        n = psf.shape[0]
        assert psf.shape == (n, n) and n % 2 == 1
        assert (n // 2) * p >= hw - 1e-9  # covers at least +- half width
        assert psf.sum() == pytest.approx(1.0, abs=1e-12)
        assert (psf >= 0).all()
        assert np.unravel_index(np.argmax(psf), psf.shape) == (n // 2, n // 2)
        for sym in (psf[::-1], psf[:, ::-1], psf.T):
            np.testing.assert_allclose(sym, psf, atol=1e-12 * psf.max())


def test_source_size_is_fwhm():
    # 0.25 Å FWHM source (sigma 0.106 Å): probe FWHM 0.602 Å; a sigma of 0.25 Å would
    # give 0.787 Å.
    fwhm = psf_fwhm_A(probe_psf(0.05, source_size_A=0.25), 0.05)
    assert fwhm == pytest.approx(0.602, rel=0.01)


def test_defocus_lowers_peak():
    # Delta f = 5 nm: peak ~55 % of in focus, FWHM 0.575 Å; 2 nm: 91 %, 0.564 Å. A wide
    # support keeps the unit-sum normalisation from hiding the intensity moved into the tails.
    p = 0.05
    focus = probe_psf(p, half_width_A=6.0)
    for df, peak, fwhm in [(50.0, 0.55, 0.575), (20.0, 0.91, 0.564)]:
        for sign in (1, -1):
            psf = probe_psf(p, defocus_A=sign * df, half_width_A=6.0)
            assert psf.max() / focus.max() == pytest.approx(peak, abs=0.02)
            assert psf_fwhm_A(psf, p) == pytest.approx(fwhm, rel=0.01)


def test_energy_spread_adds_tails_not_width():
    # sigma_Delta = Cc (FWHM / 2.3548) / E: 1.6 mm, 1.0 eV -> 22.6 Å -> FWHM 0.5644 Å.
    p = 0.05
    focus = probe_psf(p, half_width_A=4.0)
    psf = probe_psf(p, energy_spread_eV=1.0, cc_mm=1.6, half_width_A=4.0)
    assert psf_fwhm_A(psf, p) == pytest.approx(0.5644, rel=0.005)
    assert psf.max() < focus.max()


def test_spherical_aberration_broadens():
    # An uncorrected 1.2 mm C_s at 18 mrad (far beyond Scherzer's ~10 mrad) ruins the probe.
    assert psf_fwhm_A(probe_psf(0.1, cs_mm=1.2, half_width_A=4.0), 0.1) > 1.2 * 0.563


def test_fwhm_of_sampled_gaussian():
    y, x = np.mgrid[-12:13, -12:13]
    for fwhm_px, off in [(2.5, 0.0), (2.5, 0.37), (4.0, 0.21)]:
        s = fwhm_px / (2 * np.sqrt(2 * np.log(2)))
        g = np.exp(-((x - off) ** 2 + (y + off / 2) ** 2) / (2 * s * s))
        assert psf_fwhm_A(g, 0.2) == pytest.approx(0.2 * fwhm_px, rel=0.005)
