"""Electron optics shared by the measurement and the simulation: wavelength, focal spread.

Defined once here; :mod:`stemqd.preprocess.probe` (the measured image's PSF),
:mod:`stemqd.simulation` (the multislice probe) and :mod:`stemqd.aimd` (Gaussian line
widths) import them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import constants

#: FWHM of a Gaussian per standard deviation, 2 sqrt(2 ln 2) = 2.3548.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def wavelength_A(voltage_kv):
    """Relativistic electron wavelength.

    lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2))), i.e. about
    12.2643 / sqrt(V (1 + 0.978476e-6 V)) Å for V in volts (CODATA constants of
    ``scipy.constants``).

    Parameters
    ----------
    voltage_kv : float
        Accelerating voltage, kV.

    Returns
    -------
    float
        Wavelength, Å (300 kV: 0.019687 Å).
    """
    v = float(voltage_kv) * 1e3
    if v <= 0:
        raise ValueError(f"voltage must be positive, got {voltage_kv} kV")
    m0, e, c, h = constants.m_e, constants.e, constants.c, constants.h
    return float(h / np.sqrt(2.0 * m0 * e * v * (1.0 + e * v / (2.0 * m0 * c**2))) * 1e10)


def focal_spread_A(energy_spread_fwhm_eV, chromatic_aberration_mm, voltage_kv):
    """Standard deviation of the focal spread from an energy spread given as a FWHM.

    sigma_Delta = C_c sigma_E / E0 with sigma_E = FWHM / (2 sqrt(2 ln 2)) (Kirkland 2010,
    §3.3.2, energy-spread term only, no relativistic factor).

    Parameters
    ----------
    energy_spread_fwhm_eV : float
        FWHM of the energy distribution, eV.
    chromatic_aberration_mm : float
        C_c, mm.
    voltage_kv : float
        Accelerating voltage, kV.

    Returns
    -------
    float
        sigma_Delta, Å (0.8 eV, 1.6 mm, 300 kV: 18.1 Å).
    """
    sigma_e = energy_spread_fwhm_eV / FWHM_PER_SIGMA
    return chromatic_aberration_mm * 1e7 * sigma_e / (voltage_kv * 1e3)


def focal_nodes(n, sigma_A):
    """Defocus nodes (Å) and weights of an n-point Gauss-Hermite average over N(0, sigma²).

    The probabilists' Hermite rule integrates polynomials of degree <= 2n - 1 exactly.
    """
    x, w = np.polynomial.hermite_e.hermegauss(int(n))
    return x * sigma_A, w / w.sum()


__all__ = ["FWHM_PER_SIGMA", "focal_nodes", "focal_spread_A", "wavelength_A"]
