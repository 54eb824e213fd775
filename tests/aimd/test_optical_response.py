"""Cumulant dephasing and the gap histogram, on harmonic and Ornstein-Uhlenbeck gaps.

Second-order cumulant: Mukamel, Principles of Nonlinear Optical Spectroscopy (1995), ch. 8.
"""

import numpy as np
import pytest
from scipy.signal import lfilter

from stemqd.aimd import autocorrelation, cumulant, dephasing, gap_histogram
from stemqd.aimd.units import H_MEV_FS, HBAR_MEV_FS, KB_MEV_K
from stemqd.errors import InputError
from stemqd.optics import FWHM_PER_SIGMA

N, DT, T = 4096, 10.0, 10.0
E = np.array([20, 69, 168]) * H_MEV_FS / (N * DT)
S = np.array([20.0, 5.0, 1.0])
A = np.sqrt(4 * S * E * KB_MEV_K * T)
W = E / HBAR_MEV_FS  # rad/fs


def harmonic():
    t = np.arange(N) * DT
    phase = np.random.default_rng(0).uniform(0, 2 * np.pi, 3)
    return 1850.0 + (A[:, None] * np.cos(W[:, None] * t + phase[:, None])).sum(axis=0)


def ornstein_uhlenbeck(sigma, tau_c, dt, n, seed):
    rng = np.random.default_rng(seed)
    rho = np.exp(-dt / tau_c)
    noise = rng.normal(scale=sigma * np.sqrt(1 - rho**2), size=n)
    return lfilter([1.0], [1.0, -rho], noise, zi=[rho * rng.normal(scale=sigma)])[0]


def test_circular_acf_and_cumulant_exact():
    gap = harmonic()
    t = np.arange(41) * DT
    c = autocorrelation(gap, max_lag=40, estimator="circular")
    exact_c = (A[:, None] ** 2 / 2 * np.cos(W[:, None] * t)).sum(axis=0)
    assert np.abs(c - exact_c).max() < 1e-11 * np.abs(exact_c).max() * 100
    g = cumulant(c, DT)
    exact_g = (
        A[:, None] ** 2 * (1 - np.cos(W[:, None] * t)) / (2 * HBAR_MEV_FS**2 * W[:, None] ** 2)
    ).sum(axis=0)
    # C linear between samples: error ~ (w dt)^2 / 24 of the fast mode's share of g.
    assert np.allclose(g[1:], exact_g[1:], rtol=2e-3)
    assert g[0] == 0.0


def test_biased_estimator_is_positive_semidefinite():
    x = np.random.default_rng(1).normal(size=500)
    c = autocorrelation(x, estimator="biased")
    toeplitz = c[np.abs(np.subtract.outer(np.arange(60), np.arange(60)))]
    # Leading block of the full biased ACF matrix.
    assert np.linalg.eigvalsh(toeplitz).min() > -1e-12
    unb = autocorrelation(x, estimator="unbiased", max_lag=10)
    assert np.allclose(unb * (500 - np.arange(11)) / 500, c[:11])


def test_ornstein_uhlenbeck_cumulant_and_histogram():
    sigma, tau_c, dt = 20.0, 50.0, 5.0
    x = ornstein_uhlenbeck(sigma, tau_c, dt, 400_000, seed=2)
    res = dephasing(x, dt, max_time_fs=300.0)
    tab = res["table"]
    t = tab["time_fs"].to_numpy()[1:]
    exact = (sigma * tau_c / HBAR_MEV_FS) ** 2 * (t / tau_c - 1 + np.exp(-t / tau_c))
    assert np.abs(tab["g"].to_numpy()[1:] / exact - 1).max() < 0.03
    hist = gap_histogram(x)
    assert hist["sigma_meV"] == pytest.approx(sigma, rel=0.01)
    assert hist["fwhm_meV"] == pytest.approx(FWHM_PER_SIGMA * sigma, rel=0.01)  # 47.1 meV
    assert np.allclose(tab["D"], np.exp(-tab["g"]))


def test_static_limit_tau_is_hbar_over_sigma():
    sigma, dt = 10.0, 2.0
    x = ornstein_uhlenbeck(sigma, 4000.0, dt, 400_000, seed=3)  # tau_c >> hbar/sigma = 66 fs
    res = dephasing(x, dt, max_time_fs=400.0)
    assert res["tau_fs"] == pytest.approx(HBAR_MEV_FS / res["sigma_meV"], rel=0.03)
    hist = gap_histogram(x)
    # Static limit: dephasing FWHM = histogram FWHM (within the histogram fit error).
    assert res["fwhm_meV"] == pytest.approx(FWHM_PER_SIGMA * res["sigma_meV"], rel=0.03)
    assert res["fwhm_meV"] == pytest.approx(hist["fwhm_meV"], rel=0.05)


def test_exponential_fit_motional_narrowing():
    # Fast OU (tau_c << hbar/sigma): D ~ exp(-t sigma^2 tau_c / hbar^2), Lorentzian FWHM.
    sigma, tau_c, dt = 5.0, 5.0, 1.0
    x = ornstein_uhlenbeck(sigma, tau_c, dt, 400_000, seed=4)
    res = dephasing(x, dt, max_time_fs=20000.0, fit="exponential", fit_threshold=0.05)
    tau_expected = HBAR_MEV_FS**2 / (sigma**2 * tau_c)
    assert res["tau_fs"] == pytest.approx(tau_expected, rel=0.1)
    assert res["fwhm_meV"] == pytest.approx(2 * HBAR_MEV_FS / res["tau_fs"])


def test_errors():
    with pytest.raises(InputError):
        dephasing(np.arange(5.0), 10.0)
    with pytest.raises(InputError, match="too coarse"):
        dephasing(np.random.default_rng(0).normal(scale=500.0, size=100), 10.0)
    with pytest.raises(InputError):
        gap_histogram(np.ones(100))
