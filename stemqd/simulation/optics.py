"""Electron optics of the series: wavelength, focal spread and its quadrature, smooth grid sizes."""

from __future__ import annotations

import math

import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def wavelength_A(energy_kV: float) -> float:
    """Relativistic electron wavelength, Å, for an accelerating voltage in kV."""
    import abtem

    return float(abtem.core.energy.energy2wavelength(energy_kV * 1e3))


def focal_spread_A(energy_spread_fwhm_eV: float, chromatic_aberration_mm: float,
                   energy_kV: float) -> float:
    """Standard deviation of the focal spread, Å, from an energy spread given as a FWHM.

    Delta = Cc sigma_E / E0 with sigma_E = FWHM / (2 sqrt(2 ln 2)) (Kirkland 2010, §3.3.2,
    energy-spread term only, no relativistic factor). 0.8 eV, 1.6 mm, 300 kV: 18.1 Å.
    """
    sigma_e = energy_spread_fwhm_eV / FWHM_PER_SIGMA
    return chromatic_aberration_mm * 1e7 * sigma_e / (energy_kV * 1e3)


def focal_nodes(n: int, sigma_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Defocus nodes (Å) and weights of an n-point Gauss-Hermite average over N(0, sigma²).

    The probabilists' Hermite rule integrates polynomials of degree <= 2n - 1 exactly.
    """
    x, w = np.polynomial.hermite_e.hermegauss(int(n))
    return x * sigma_A, w / w.sum()


def smooth_size(n: int, primes: tuple = (2, 3, 5, 7)) -> int:
    """Smallest integer >= n whose prime factors are all in ``primes`` (fast FFTs)."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in primes:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1
