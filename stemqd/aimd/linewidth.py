"""Emission linewidth versus temperature.

With Lambda = sum_k S_k hbar omega_k, the classical gap variance at temperature T is
sigma^2(T) = 2 Lambda k_B T, and the line is a Gaussian of FWHM

    Gamma(T) = 2 sqrt(2 ln 2) sqrt(2 Lambda k_B T).

At the simulation temperature Gamma equals the FWHM of the gap histogram of that trajectory
(:func:`stemqd.aimd.optical_response.gap_histogram`), a consistency check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..optics import FWHM_PER_SIGMA
from .units import KB_MEV_K


def reorganization_energy(huang_rhys, energy_meV):
    """Lambda = sum_k S_k hbar omega_k (meV).

    Parameters
    ----------
    huang_rhys : array_like
        S_k (dimensionless, >= 0).
    energy_meV : array_like
        hbar omega_k (meV, > 0).
    """
    s = np.atleast_1d(np.asarray(huang_rhys, dtype=float))
    e = np.atleast_1d(np.asarray(energy_meV, dtype=float))
    if s.shape != e.shape:
        raise InputError(f"{s.size} Huang-Rhys factors for {e.size} mode energies")
    if np.any(s < 0) or np.any(e <= 0) or not (np.all(np.isfinite(s)) and np.all(np.isfinite(e))):
        raise InputError("Huang-Rhys factors must be >= 0 and mode energies > 0 meV")
    return float(np.sum(s * e))


def fwhm_from_reorganization(temperature_K, reorganization_meV):
    """Gamma(T) = 2 sqrt(2 ln 2) sqrt(2 Lambda k_B T) (meV) for a given Lambda (meV)."""
    t = np.asarray(temperature_K, dtype=float)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise InputError("temperatures must be finite and >= 0 K")
    if not reorganization_meV >= 0:
        raise InputError("the reorganisation energy must be >= 0 meV")
    gamma = FWHM_PER_SIGMA * np.sqrt(2.0 * float(reorganization_meV) * KB_MEV_K * t)
    return float(gamma) if gamma.ndim == 0 else gamma


def linewidth_fwhm(temperature_K, huang_rhys, energy_meV):
    """Gaussian FWHM Gamma(T) = 2 sqrt(2 ln 2) sqrt(2 Lambda k_B T) in meV.

    Parameters
    ----------
    temperature_K : float or array_like
        T (K, >= 0).
    huang_rhys, energy_meV : array_like
        S_k and hbar omega_k (meV) of the modes.

    Returns
    -------
    float or ndarray
        Gamma (meV), same shape as ``temperature_K``.
    """
    return fwhm_from_reorganization(temperature_K, reorganization_energy(huang_rhys, energy_meV))


def linewidth_table(temperatures_K, huang_rhys, energy_meV):
    """Gamma(T) over temperatures as a table ``temperature_K, sigma_meV, fwhm_meV``."""
    t = np.atleast_1d(np.asarray(temperatures_K, dtype=float))
    fwhm = np.atleast_1d(linewidth_fwhm(t, huang_rhys, energy_meV))
    return pd.DataFrame({"temperature_K": t, "sigma_meV": fwhm / FWHM_PER_SIGMA, "fwhm_meV": fwhm})


__all__ = ["fwhm_from_reorganization", "linewidth_fwhm", "linewidth_table", "reorganization_energy"]
