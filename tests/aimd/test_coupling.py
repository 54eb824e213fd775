"""Huang-Rhys factors and linewidth, on gap series of modes with known S_k.

Displaced harmonic oscillators: Mukamel, Principles of Nonlinear Optical Spectroscopy (1995),
ch. 7-8.
"""

import numpy as np
import pytest

from stemqd.aimd import (
    effective_s_per_free_atom,
    gap_histogram,
    huang_rhys,
    linewidth_fwhm,
    linewidth_table,
    reorganization_energy,
)
from stemqd.aimd.units import H_MEV_FS, HBAR_MEV_FS, KB_MEV_K
from stemqd.errors import InputError
from stemqd.optics import FWHM_PER_SIGMA

N, DT, T = 4096, 10.0, 10.0
KT = KB_MEV_K * T
M = np.array([20, 69, 168])
E = M * H_MEV_FS / (N * DT)  # 2.019, 6.967, 16.963 meV: on the FFT grid
S = np.array([20.0, 5.0, 1.0])


def harmonic_gap(energies, s, n=N, seed=0, e0=1850.0):
    rng = np.random.default_rng(seed)
    a = np.sqrt(4 * s * energies * KT)  # variance A^2/2 = 2 S E kT
    t = np.arange(n) * DT
    phase = rng.uniform(0, 2 * np.pi, size=len(energies))
    return e0 + (a[:, None] * np.cos(energies[:, None] / HBAR_MEV_FS * t + phase[:, None])).sum(
        axis=0
    )


def test_exact_window_sums_and_lambda():
    assert np.allclose(E, [2.019, 6.967, 16.963], atol=1e-3)
    res = huang_rhys(harmonic_gap(E, S), DT, T, windows=[(e - 1.5, e + 1.5) for e in E])
    assert np.allclose(res["windows"]["S"], S, rtol=1e-12, atol=1e-12)
    assert res["reorganization_meV"] == pytest.approx((S * E).sum(), rel=1e-12)
    assert res["reorganization_meV"] == pytest.approx(res["variance_meV2"] / (2 * KT), rel=1e-12)
    assert np.allclose(res["windows"]["mean_energy_meV"], E, rtol=1e-12)
    # Default windows are the study's low/medium/high groups.
    default = huang_rhys(harmonic_gap(E, S), DT, T)
    assert list(default["windows"]["window"]) == ["low", "medium", "high"]
    assert np.allclose(default["windows"]["S"], S, rtol=1e-12)
    spec = res["spectrum"]
    assert spec["S"].sum() == pytest.approx(S.sum(), rel=1e-12)
    assert spec["S_per_meV"].sum() * res["resolution_meV"] == pytest.approx(S.sum(), rel=1e-12)


def test_quantum_convention_ratio():
    res = huang_rhys(
        harmonic_gap(E, S), DT, T, windows=[(e - 1.5, e + 1.5) for e in E], convention="quantum"
    )
    x = E / (2 * KT)
    # sigma^2 = S_q E^2 coth(E / 2kT) = 2 S_cl E kT  ->  S_q / S_cl = 2 kT / (E coth).
    assert np.allclose(res["windows"]["S"], S * 2 * KT / (E / np.tanh(x)), rtol=1e-12)
    # At T -> 0 the factor is 2kT/E: 0.86, 0.25, 0.10 at 2, 7, 17 meV.
    assert np.allclose(2 * KT / np.array([2.0, 7.0, 17.0]), [0.86, 0.25, 0.10], atol=0.01)


def test_off_grid_modes_with_hann_taper():
    e_off = E + 0.37 * H_MEV_FS / (N * DT)  # between grid points
    res = huang_rhys(
        harmonic_gap(e_off, S), DT, T, windows=[(e - 1.5, e + 1.5) for e in e_off], window="hann"
    )
    assert np.allclose(res["windows"]["S"], S, rtol=0.03)


def test_linewidth_formula_and_histogram_consistency():
    lam = (S * E).sum()
    assert reorganization_energy(S, E) == pytest.approx(lam)
    gamma = linewidth_fwhm(300.0, S, E)
    assert gamma == pytest.approx(2 * np.sqrt(2 * np.log(2)) * np.sqrt(2 * lam * KB_MEV_K * 300.0))
    table = linewidth_table([10, 100, 300], S, E)
    assert np.allclose(table["fwhm_meV"] / table["sigma_meV"], FWHM_PER_SIGMA)
    assert np.allclose(table["fwhm_meV"], [linewidth_fwhm(t, S, E) for t in (10, 100, 300)])
    # Many modes with random phases: Gaussian gap; Gamma(T_sim) = histogram FWHM.
    rng = np.random.default_rng(3)
    m = rng.choice(np.arange(5, 400), size=120, replace=False)
    e_many = m * H_MEV_FS / (16384 * DT)
    s_many = rng.uniform(0.01, 0.3, size=m.size)
    gap = harmonic_gap(e_many, s_many, n=16384, seed=4)
    res = huang_rhys(gap, DT, T, windows=[(0.0, 1000.0)])
    assert res["windows"]["S"].iloc[0] == pytest.approx(s_many.sum(), rel=1e-10)
    hist = gap_histogram(gap)
    assert hist["fwhm_meV"] == pytest.approx(linewidth_fwhm(T, s_many, e_many), rel=0.05)


def test_effective_s_and_errors():
    res = huang_rhys(harmonic_gap(E, S), DT, T)
    table = effective_s_per_free_atom(res["windows"], 50)
    assert np.allclose(table["S_per_free_atom"], S / 50)
    assert effective_s_per_free_atom(4.0, 8) == 0.5
    with pytest.raises(InputError):
        effective_s_per_free_atom(1.0, 0)
    with pytest.raises(InputError):
        huang_rhys(np.ones(100), DT, 0.0)
    with pytest.raises(InputError):
        huang_rhys([1.0, np.nan, 2.0, 3.0, 4.0], DT, T)
    with pytest.raises(InputError):
        linewidth_fwhm(300, [1.0], [-2.0])
