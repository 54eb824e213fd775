"""Huang-Rhys factors from the HOMO-LUMO gap time series.

For displaced harmonic oscillators the gap fluctuates as dE(t) = -sum_k c_k q_k(t), with
reorganisation energy lambda_k = c_k^2 / (2 omega_k^2) = S_k hbar omega_k (Tokmakoff,
"Energy Gap Hamiltonian"; Mukamel, Principles of Nonlinear Optical Spectroscopy, ch. 7-8).
In classical MD <q_k^2> = k_B T / omega_k^2, so the variance of mode k is
sigma_k^2 = 2 lambda_k k_B T and

    S_k = sigma_k^2 / (2 k_B T hbar omega_k).

The variance per mode is read from the one-sided periodogram of dE, P_j = 2 |rfft(dE)_j|^2
/ N^2 with hbar omega_j = j h / (N dt) and sum_j P_j = sigma^2 (Parseval), so a mode on the
FFT grid returns its S_k exactly. The quantum DHO relation sigma_k^2 = S_k (hbar omega_k)^2
coth(beta hbar omega_k / 2) is available as ``convention="quantum"``; applied to classical
MD it underestimates S by 2 k_B T / hbar omega.

The total reorganisation energy is Lambda = sum_k S_k hbar omega_k = sigma^2 / (2 k_B T)
(classical), which fixes the linewidth (:mod:`stemqd.aimd.linewidth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from .dos import energy_grid, periodogram
from .linewidth import fwhm_from_reorganization
from .units import KB_MEV_K

#: Default windows (meV, [lo, hi)): the study's low, medium and high-energy groups centred
#: near 2, 7 and 17 meV, +-1.5 meV. The study gives only the centres; pass your own edges.
DEFAULT_WINDOWS_MEV = (("low", 0.5, 3.5), ("medium", 5.5, 8.5), ("high", 15.5, 18.5))


def _gap_fluctuation(gap_meV, detrend):
    x = np.asarray(gap_meV, dtype=float).reshape(-1)
    if x.size < 4:
        raise InputError("the gap series needs at least 4 samples")
    if not np.all(np.isfinite(x)):
        raise InputError("the gap series contains NaN or infinite values")
    if detrend == "constant":
        return x - x.mean()
    if detrend == "linear":
        t = np.arange(x.size, dtype=float)
        return x - np.polyval(np.polyfit(t, x, 1), t)
    raise InputError(f"detrend must be 'constant' or 'linear', not {detrend!r}")


def gap_spectrum(gap_meV, dt_fs, *, window=None, pad=1, detrend="constant"):
    """One-sided power spectrum of the gap fluctuation.

    Parameters
    ----------
    gap_meV : array_like
        Gap E(t) (meV) at equal time steps.
    dt_fs : float
        Time step (fs).
    window : {None, "hann"}
        Taper for frequencies off the FFT grid.
    pad : int
        Zero-padding factor.
    detrend : {"constant", "linear"}
        Remove the mean, or a linear drift.

    Returns
    -------
    energy_meV, power_meV2 : ndarray
        hbar omega_j (meV) and P_j (meV^2 per bin), sum_j P_j = sigma^2.
    """
    d_e = _gap_fluctuation(gap_meV, detrend)
    return energy_grid(d_e.size, dt_fs, pad), periodogram(d_e, window=window, pad=pad)


def _parse_windows(windows):
    out = []
    for w in windows:
        if len(w) == 3:
            name, lo, hi = w
        elif len(w) == 2:
            lo, hi = w
            name = f"{float(lo):g}-{float(hi):g}meV"
        else:
            raise InputError(f"window {w!r}: expected (lo, hi) or (name, lo, hi) in meV")
        lo, hi = float(lo), float(hi)
        if not 0 <= lo < hi:
            raise InputError(f"window {name}: need 0 <= lo < hi, got {lo}, {hi} meV")
        out.append((str(name), lo, hi))
    return out


def huang_rhys(
    gap_meV,
    dt_fs,
    temperature_K,
    *,
    windows=DEFAULT_WINDOWS_MEV,
    convention="classical",
    window=None,
    pad=1,
    detrend="constant",
):
    """Huang-Rhys spectrum S(omega), window sums and reorganisation energy.

    Parameters
    ----------
    gap_meV : array_like
        HOMO-LUMO gap series (meV), equally spaced in time.
    dt_fs : float
        Time step (fs).
    temperature_K : float
        Temperature of the trajectory (K).
    windows : sequence of (name, lo, hi) or (lo, hi)
        Energy windows (meV, lo <= E < hi) for the window sums; default
        :data:`DEFAULT_WINDOWS_MEV`.
    convention : {"classical", "quantum"}
        S_j = P_j / (2 k_B T E_j) (classical MD, the right choice for AIMD) or
        S_j = P_j / (E_j^2 coth(E_j / 2 k_B T)) (quantum DHO variance).
    window, pad, detrend
        As :func:`gap_spectrum`.

    Returns
    -------
    dict
        ``spectrum``: DataFrame ``energy_meV, power_meV2, S, S_per_meV`` (S per bin and
        its density); ``windows``: DataFrame ``window, lo_meV, hi_meV, S, lambda_meV,
        mean_energy_meV`` (S-weighted mean energy); ``reorganization_meV`` Lambda =
        sum_j S_j E_j over all bins; ``S_total``; ``variance_meV2`` sigma^2;
        ``sigma_meV``; ``mean_gap_meV``; ``temperature_K``; ``dt_fs``; ``resolution_meV``.
    """
    if temperature_K is None or float(temperature_K) <= 0:
        raise InputError("the Huang-Rhys analysis needs a positive temperature (K)")
    if dt_fs is None or float(dt_fs) <= 0:
        raise InputError("the time step dt_fs must be positive")
    kt = KB_MEV_K * float(temperature_K)
    energy, power = gap_spectrum(gap_meV, dt_fs, window=window, pad=pad, detrend=detrend)
    s = np.zeros_like(power)
    e = energy[1:]
    if convention == "classical":
        s[1:] = power[1:] / (2.0 * kt * e)
    elif convention == "quantum":
        s[1:] = power[1:] / (e**2 / np.tanh(e / (2.0 * kt)))
    else:
        raise InputError(f"convention must be 'classical' or 'quantum', not {convention!r}")
    d_e = energy[1] - energy[0]
    spectrum = pd.DataFrame(
        {"energy_meV": energy, "power_meV2": power, "S": s, "S_per_meV": s / d_e}
    )
    rows = []
    for name, lo, hi in _parse_windows(windows):
        sel = (energy >= lo) & (energy < hi)
        s_w = float(s[sel].sum())
        lam = float((s[sel] * energy[sel]).sum())
        rows.append((name, lo, hi, s_w, lam, lam / s_w if s_w > 0 else np.nan))
    table = pd.DataFrame(
        rows, columns=["window", "lo_meV", "hi_meV", "S", "lambda_meV", "mean_energy_meV"]
    )
    x = np.asarray(gap_meV, dtype=float)
    variance = float(power.sum())
    return {
        "spectrum": spectrum,
        "windows": table,
        "reorganization_meV": float((s * energy).sum()),
        "S_total": float(s.sum()),
        "variance_meV2": variance,
        "sigma_meV": float(np.sqrt(variance)),
        "mean_gap_meV": float(x.mean()),
        "temperature_K": float(temperature_K),
        "dt_fs": float(dt_fs),
        "resolution_meV": float(d_e),
        "convention": convention,
    }


def effective_s_per_free_atom(s, n_free):
    """Effective Huang-Rhys factor per free atom of a frozen-shell or frozen-core run.

    Parameters
    ----------
    s : float or array_like or pandas.DataFrame
        S (total or per window); a window table from :func:`huang_rhys` gains a column.
    n_free : int
        Number of atoms that move (e.g. ``dos.mobile_atoms(v).sum()``).

    Returns
    -------
    float, ndarray or DataFrame
        S / n_free; for a table, a copy with ``S_per_free_atom``.
    """
    n_free = int(n_free)
    if n_free <= 0:
        raise InputError("the number of free atoms must be positive")
    if isinstance(s, pd.DataFrame):
        out = s.copy()
        out["S_per_free_atom"] = out["S"] / n_free
        return out
    return np.asarray(s, dtype=float) / n_free if np.ndim(s) else float(s) / n_free


@dataclass(frozen=True)
class GapCoupling:
    """Huang-Rhys analysis of a run's gap series, as ``stemqd aimd huang-rhys`` reports it.

    Attributes
    ----------
    huang_rhys : dict
        :func:`huang_rhys` of the series (``spectrum``, ``windows`` and the scalars).
    windows : pandas.DataFrame
        The window sums, with ``S_per_free_atom`` when ``n_free`` is known.
    n_samples : int
        Gap values used.
    n_free : int or None
        Atoms that move (frozen-shell/core runs), for the effective S per free atom.
    fwhm_at_T_meV : float
        Gaussian FWHM Gamma(T) (meV) of the reorganisation energy at the run's temperature
        (:func:`stemqd.aimd.linewidth.fwhm_from_reorganization`).
    """

    huang_rhys: dict
    windows: pd.DataFrame
    n_samples: int
    n_free: int | None
    fwhm_at_T_meV: float

    @property
    def spectrum(self):
        """S per bin and per meV against energy (:func:`huang_rhys`'s ``spectrum``)."""
        return self.huang_rhys["spectrum"]

    def results(self) -> dict:
        """The scalars (resolution, sigma, S_total, Lambda, ..., n_free, Gamma(T))."""
        out = {k: v for k, v in self.huang_rhys.items() if k not in ("spectrum", "windows")}
        out.update(n_free=self.n_free, fwhm_at_T_meV=self.fwhm_at_T_meV)
        return out

    def report(self) -> str:
        """Samples, time step, resolution and sigma; the window table; S_total, Lambda and
        Gamma(T)."""
        hr = self.huang_rhys
        t = hr["temperature_K"]
        return "\n".join(
            [
                f"{self.n_samples} gap samples, dt {hr['dt_fs']:g} fs, T {t:g} K, resolution "
                f"{hr['resolution_meV']:.3f} meV, sigma {hr['sigma_meV']:.3f} meV",
                self.windows.to_string(index=False, float_format=lambda v: f"{v:.5g}"),
                f"S_total {hr['S_total']:.5g}   Lambda {hr['reorganization_meV']:.5g} meV   "
                f"Gamma({t:g} K) {self.fwhm_at_T_meV:.4f} meV"
                + (f"   free atoms {self.n_free}" if self.n_free else ""),
            ]
        )

    def __str__(self) -> str:
        return self.report()


def gap_coupling(
    gaps,
    temperature_K,
    *,
    windows=DEFAULT_WINDOWS_MEV,
    n_free=None,
    convention="classical",
    taper=None,
    detrend="constant",
):
    """Huang-Rhys factors, window sums and Gamma(T) of a loaded gap series.

    Parameters
    ----------
    gaps : GapSeries
        From :func:`stemqd.aimd.trajectory.load_gap_series`.
    temperature_K : float
        Trajectory temperature (K).
    windows : sequence of (name, lo, hi) or (lo, hi)
        Energy windows (meV); default :data:`DEFAULT_WINDOWS_MEV`.
    n_free : int, optional
        Atoms that move (:func:`stemqd.aimd.trajectory.count_free_atoms`): adds the
        effective S per free atom.
    convention : {"classical", "quantum"}
        As :func:`huang_rhys`.
    taper : {None, "hann"}
        Window function of the gap series.
    detrend : {"constant", "linear"}
        As :func:`huang_rhys`.

    Returns
    -------
    GapCoupling
    """
    hr = huang_rhys(
        gaps.gap_meV,
        gaps.dt_fs,
        temperature_K,
        windows=windows,
        convention=convention,
        window=taper,
        detrend=detrend,
    )
    table = effective_s_per_free_atom(hr["windows"], n_free) if n_free else hr["windows"]
    return GapCoupling(
        huang_rhys=hr,
        windows=table,
        n_samples=len(gaps.gap_meV),
        n_free=n_free,
        fwhm_at_T_meV=fwhm_from_reorganization(temperature_K, hr["reorganization_meV"]),
    )


__all__ = [
    "DEFAULT_WINDOWS_MEV",
    "GapCoupling",
    "effective_s_per_free_atom",
    "gap_coupling",
    "gap_spectrum",
    "huang_rhys",
]
