"""Synthetic gap series with known Huang-Rhys factors and fluctuation amplitudes (tests, benchmarks).

A gap series is a sum of cosines dE(t) = sum_k sqrt(2) sigma_k cos(omega_k t + phi_k) with
random phases; each mode sits on the FFT grid of the series, hbar omega_k = j_k h / (N dt),
so its variance over the series is exactly sigma_k^2 and the periodogram puts it in one bin
(:mod:`stemqd.aimd.coupling`). With many modes the distribution of dE is close to a
Gaussian of standard deviation sqrt(sum sigma_k^2); the cumulant of such a series is known in
closed form, g(t) = sum_k (sigma_k / hbar omega_k)^2 (1 - cos omega_k t)
(:func:`mode_cumulant`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .units import H_MEV_FS, HBAR_MEV_FS, KB_MEV_K


def grid_energies(n_steps, dt_fs):
    """Energies hbar omega_j = j h / (N dt) (meV) of the FFT grid of a series, j = 0..N/2."""
    return np.arange(int(n_steps) // 2 + 1) * H_MEV_FS / (int(n_steps) * float(dt_fs))


def snap_to_grid(energy_meV, n_steps, dt_fs):
    """Grid index and energy (meV) nearest to each mode energy; modes must not share a bin."""
    e = np.atleast_1d(np.asarray(energy_meV, dtype=float))
    grid = grid_energies(n_steps, dt_fs)
    j = np.rint(e / grid[1]).astype(int)
    if np.any(j < 1) or np.any(j >= len(grid) - 1):
        raise InputError(
            f"mode energies must lie between {grid[1]:.4g} and {grid[-2]:.4g} meV "
            f"for {n_steps} steps of {dt_fs:g} fs"
        )
    if len(np.unique(j)) != len(j):
        raise InputError("two modes fall in the same frequency bin; use a longer series")
    return j, grid[j]


def mode_sigmas(huang_rhys, energy_meV, temperature_K):
    """Classical rms gap fluctuation of each mode, sigma_k = sqrt(2 S_k hbar omega_k k_B T) (meV)."""
    s = np.asarray(huang_rhys, dtype=float)
    e = np.asarray(energy_meV, dtype=float)
    return np.sqrt(2.0 * s * e * KB_MEV_K * float(temperature_K))


def gap_from_modes(energy_meV, sigma_meV, n_steps, dt_fs, *, seed, mean_meV=0.0, snap=True):
    """Sum of cosines with random phases, on the FFT grid or at the given energies.

    Parameters
    ----------
    energy_meV, sigma_meV : array_like
        Mode energies (meV; snapped to the grid, see :func:`snap_to_grid`) and rms
        amplitudes (meV).
    n_steps : int
        Samples.
    dt_fs : float
        Time step (fs).
    seed : int
        Seed of the phases (explicit, for reproducibility).
    mean_meV : float
        Mean gap (meV).
    snap : bool
        Put each mode on the nearest grid bin (its variance over the series is then exactly
        sigma^2); ``False`` keeps the energies as given, so that the finite series only
        approximates the amplitudes, as an MD run does.

    Returns
    -------
    gap_meV : ndarray, shape (n_steps,)
    energy_meV : ndarray
        The mode energies used (snapped or as given).
    """
    sigma = np.atleast_1d(np.asarray(sigma_meV, dtype=float))
    if snap:
        _, e = snap_to_grid(energy_meV, n_steps, dt_fs)
    else:
        e = np.atleast_1d(np.asarray(energy_meV, dtype=float))
    if sigma.shape != e.shape:
        raise InputError(f"{sigma.size} amplitudes for {e.size} modes")
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=e.size)
    t = np.arange(int(n_steps)) * float(dt_fs)
    arg = np.outer(t, e / HBAR_MEV_FS) + phase
    return float(mean_meV) + (np.sqrt(2.0) * sigma * np.cos(arg)).sum(axis=1), e


def band_of_modes(lo_meV, hi_meV, sigma_meV, n_steps, dt_fs, *, every=1, offset=0):
    """Grid modes spread evenly over [lo, hi) meV with a total rms of sigma_meV.

    ``every`` and ``offset`` take every ``every``-th grid bin from ``offset``, so that two
    bands (e.g. HOMO and LUMO) can share an energy range on disjoint bins and stay exactly
    uncorrelated.

    Returns
    -------
    energy_meV, sigma_meV : ndarray
    """
    grid = grid_energies(n_steps, dt_fs)
    idx = np.flatnonzero((grid >= lo_meV) & (grid < hi_meV))
    idx = idx[(idx % int(every)) == int(offset) % int(every)]
    idx = idx[(idx > 0) & (idx < len(grid) - 1)]
    if idx.size == 0:
        raise InputError(f"no grid bin between {lo_meV} and {hi_meV} meV")
    return grid[idx], np.full(idx.size, float(sigma_meV) / np.sqrt(idx.size))


def mode_cumulant(time_fs, energy_meV, sigma_meV):
    """Exact line-shape cumulant g(t) = sum_k (sigma_k / hbar omega_k)^2 (1 - cos omega_k t)."""
    t = np.asarray(time_fs, dtype=float)[:, None]
    w = np.asarray(energy_meV, dtype=float)[None, :] / HBAR_MEV_FS
    s = np.asarray(sigma_meV, dtype=float)[None, :] / HBAR_MEV_FS
    return ((s / w) ** 2 * (1.0 - np.cos(w * t))).sum(axis=1)


__all__ = [
    "band_of_modes",
    "gap_from_modes",
    "grid_energies",
    "mode_cumulant",
    "mode_sigmas",
    "snap_to_grid",
]
