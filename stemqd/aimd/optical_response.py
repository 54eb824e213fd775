"""Optical-response dephasing from the gap fluctuation.

Second-order cumulant (Mukamel, Principles of Nonlinear Optical Spectroscopy, ch. 8), real
part in the classical limit:

    g(t) = (1 / hbar^2) int_0^t dtau_1 int_0^tau_1 dtau_2 C(tau_2),   D(t) = exp(-g(t)),

with C(t) = <dE(t) dE(0)> the gap autocorrelation. A Gaussian fit D ~ exp(-t^2 / 2 tau^2)
gives the pure-dephasing time tau and FWHM = 2 sqrt(2 ln 2) hbar / tau (as nano-qmflows
``fit_dephasing`` and Hefei-NAMD); an exponential fit exp(-t / tau) a Lorentzian of FWHM
2 hbar / tau. In the static limit tau = hbar / sigma and the dephasing FWHM equals the FWHM
of the gap histogram (:func:`gap_histogram`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate, optimize, stats

from ..errors import InputError
from ..optics import FWHM_PER_SIGMA
from .units import HBAR_MEV_FS


def autocorrelation(signal, *, max_lag=None, estimator="biased", detrend=True):
    """Autocorrelation C_k = <x(t + k dt) x(t)> by FFT.

    Parameters
    ----------
    signal : array_like, shape (n,)
        Samples (e.g. gap in meV).
    max_lag : int, optional
        Largest lag returned (default n - 1).
    estimator : {"biased", "unbiased", "circular"}
        ``"biased"``: sum / n with zero padding (positive semidefinite, the default);
        ``"unbiased"``: sum / (n - k); ``"circular"``: periodic sum / n (exact cosine sums
        for frequencies on the FFT grid).
    detrend : bool
        Subtract the mean first.

    Returns
    -------
    ndarray, shape (max_lag + 1,)
        C_k in the squared unit of the signal; C_0 is the variance.
    """
    x = np.asarray(signal, dtype=float).reshape(-1)
    n = x.size
    if n < 2:
        raise InputError("an autocorrelation needs at least 2 samples")
    if detrend:
        x = x - x.mean()
    max_lag = n - 1 if max_lag is None else int(min(max_lag, n - 1))
    if estimator == "circular":
        f = np.fft.rfft(x)
        c = np.fft.irfft(np.abs(f) ** 2, n=n)[: max_lag + 1] / n
    elif estimator in ("biased", "unbiased"):
        nfft = 1 << int(np.ceil(np.log2(2 * n - 1)))
        f = np.fft.rfft(x, n=nfft)
        c = np.fft.irfft(np.abs(f) ** 2, n=nfft)[: max_lag + 1]
        c = c / (n - np.arange(max_lag + 1)) if estimator == "unbiased" else c / n
    else:
        raise InputError(f"estimator must be biased, unbiased or circular, not {estimator!r}")
    return c


def cumulant(acf_meV2, dt_fs):
    """Line-shape function g(t) = (1/hbar^2) int_0^t (t - tau) C(tau) dtau (dimensionless).

    C is taken as linear between its samples, and both integrals are done exactly for that
    interpolant: F_{k+1} = F_k + dt (C_k + C_{k+1}) / 2 and
    G_{k+1} = G_k + dt F_k + dt^2 (C_k / 3 + C_{k+1} / 6), g = G / hbar^2. (A double
    cumulative trapezoid, as in Hefei-NAMD, is off by dt^2 (C_k - C_{k+1}) / 12 per step.)

    Parameters
    ----------
    acf_meV2 : array_like
        C(t_k), meV^2, t_k = k dt.
    dt_fs : float
        Lag spacing (fs).

    Returns
    -------
    ndarray
        g(t_k), with g(0) = 0.
    """
    c = np.asarray(acf_meV2, dtype=float) / HBAR_MEV_FS**2
    dt = float(dt_fs)
    first = integrate.cumulative_trapezoid(c, dx=dt, initial=0.0)
    step = dt * first[:-1] + dt * dt * (c[:-1] / 3.0 + c[1:] / 6.0)
    return np.concatenate([[0.0], np.cumsum(step)])


def _fit_tau(t, d, shape):
    if shape == "gaussian":
        model = lambda tt, tau: np.exp(-(tt**2) / (2.0 * tau**2))  # noqa: E731
        target = np.exp(-0.5)
    elif shape == "exponential":
        model = lambda tt, tau: np.exp(-tt / tau)  # noqa: E731
        target = np.exp(-1.0)
    else:
        raise InputError(f"fit must be 'gaussian' or 'exponential', not {shape!r}")
    below = np.flatnonzero(d < target)
    guess = t[below[0]] if below.size else t[-1]
    guess = max(guess, t[1])
    (tau,), cov = optimize.curve_fit(model, t, d, p0=[guess], bounds=(1e-12, np.inf))
    return float(abs(tau)), float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else np.nan, model


def dephasing(
    gap_meV, dt_fs, *, max_time_fs=None, fit="gaussian", fit_threshold=0.01, estimator="biased"
):
    """Pure-dephasing function D(t) = exp(-g(t)) from a gap series and its fitted FWHM.

    Parameters
    ----------
    gap_meV : array_like
        Gap series (meV) at equal steps.
    dt_fs : float
        Time step (fs).
    max_time_fs : float, optional
        Longest lag (fs); default: a quarter of the trajectory.
    fit : {"gaussian", "exponential"}
        Shape of the fit of D(t).
    fit_threshold : float
        The fit uses lags from 0 up to where D first drops below this value.
    estimator : str
        ACF estimator, see :func:`autocorrelation`.

    Returns
    -------
    dict
        ``table``: DataFrame ``time_fs, acf_meV2, acf_norm, g, D, D_fit``; ``tau_fs`` and
        ``tau_err_fs``; ``fwhm_meV`` (2 sqrt(2 ln 2) hbar / tau for a Gaussian, 2 hbar / tau
        for an exponential); ``sigma_meV`` (sqrt C(0)); ``fit``.
    """
    if dt_fs is None or float(dt_fs) <= 0:
        raise InputError("the time step dt_fs must be positive")
    x = np.asarray(gap_meV, dtype=float).reshape(-1)
    if x.size < 8:
        raise InputError("the dephasing analysis needs at least 8 gap samples")
    n_lag = int(round(max_time_fs / dt_fs)) if max_time_fs else max(x.size // 4, 4)
    c = autocorrelation(x, max_lag=n_lag, estimator=estimator)
    t = np.arange(c.size) * float(dt_fs)
    g = cumulant(c, dt_fs)
    d = np.exp(-g)
    below = np.flatnonzero(d < fit_threshold)
    stop = below[0] + 1 if below.size else d.size
    if stop < 3:
        raise InputError(
            f"D(t) decays within two time steps (hbar/sigma = {HBAR_MEV_FS / np.sqrt(c[0]):.3g} fs, "
            f"dt = {float(dt_fs):g} fs): the sampling is too coarse to fit the dephasing"
        )
    tau, tau_err, model = _fit_tau(t[:stop], d[:stop], fit)
    fwhm = (FWHM_PER_SIGMA if fit == "gaussian" else 2.0) * HBAR_MEV_FS / tau
    table = pd.DataFrame(
        {
            "time_fs": t,
            "acf_meV2": c,
            "acf_norm": c / c[0] if c[0] > 0 else c,
            "g": g,
            "D": d,
            "D_fit": model(t, tau),
        }
    )
    return {
        "table": table,
        "tau_fs": tau,
        "tau_err_fs": tau_err,
        "fwhm_meV": float(fwhm),
        "sigma_meV": float(np.sqrt(max(c[0], 0.0))),
        "fit": fit,
        "fit_points": int(stop),
    }


def gap_histogram(gap_meV, *, bins="auto"):
    """Gaussian fit of the normalised histogram of the gap fluctuation.

    Parameters
    ----------
    gap_meV : array_like
        Gap series (meV).
    bins : int or str
        Histogram bins (``numpy.histogram_bin_edges``).

    Returns
    -------
    dict
        ``sigma_meV`` and ``mean_meV`` of the fitted normal density N(mu, sigma) of
        dE = E - <E>, ``fwhm_meV`` = 2 sqrt(2 ln 2) sigma, ``sigma_err_meV``, the sample
        standard deviation ``std_meV`` and ``table``: ``center_meV, density_per_meV, fit``.
    """
    x = np.asarray(gap_meV, dtype=float).reshape(-1)
    if x.size < 8 or not np.all(np.isfinite(x)):
        raise InputError("the gap histogram needs at least 8 finite samples")
    dx = x - x.mean()
    std = float(dx.std())
    if std == 0:
        raise InputError("the gap does not fluctuate")
    density, edges = np.histogram(dx, bins=bins, density=True)
    centers = 0.5 * (edges[1:] + edges[:-1])
    (mu, sigma), cov = optimize.curve_fit(
        lambda e, m, s: stats.norm.pdf(e, m, abs(s)), centers, density, p0=[0.0, std]
    )
    sigma = abs(float(sigma))
    table = pd.DataFrame(
        {
            "center_meV": centers,
            "density_per_meV": density,
            "fit": stats.norm.pdf(centers, mu, sigma),
        }
    )
    return {
        "sigma_meV": sigma,
        "sigma_err_meV": float(np.sqrt(cov[1, 1])),
        "mean_meV": float(mu),
        "fwhm_meV": FWHM_PER_SIGMA * sigma,
        "std_meV": std,
        "table": table,
    }


@dataclass(frozen=True)
class GapDephasing:
    """Dephasing and gap histogram of a run's gap series, as ``stemqd aimd dephasing``
    reports them.

    Attributes
    ----------
    dephasing : dict
        :func:`dephasing` of the series (``table`` of D(t), ``tau_fs``, ``fwhm_meV``, ...).
    histogram : dict
        :func:`gap_histogram` of the series.
    n_samples : int
        Gap values used.
    dt_fs : float
        Time step (fs).
    """

    dephasing: dict
    histogram: dict
    n_samples: int
    dt_fs: float

    def results(self) -> dict:
        """tau, its error, the FWHM and sigma of D(t), and the histogram's sigma and FWHM."""
        d, h = self.dephasing, self.histogram
        return {
            "tau_fs": d["tau_fs"],
            "tau_err_fs": d["tau_err_fs"],
            "fwhm_meV": d["fwhm_meV"],
            "sigma_meV": d["sigma_meV"],
            "histogram_sigma_meV": h["sigma_meV"],
            "histogram_fwhm_meV": h["fwhm_meV"],
        }

    def report(self) -> str:
        """Samples, time step and sigma; tau and FWHM of the fit; the histogram's fit."""
        d, h = self.dephasing, self.histogram
        return "\n".join(
            [
                f"{self.n_samples} gap samples, dt {self.dt_fs:g} fs, sigma {d['sigma_meV']:.4f} meV",
                f"dephasing ({d['fit']} fit): tau {d['tau_fs']:.3f} ± {d['tau_err_fs']:.3f} fs, "
                f"FWHM {d['fwhm_meV']:.4f} meV",
                f"gap histogram (Gaussian fit): sigma {h['sigma_meV']:.4f} meV, "
                f"FWHM {h['fwhm_meV']:.4f} meV",
            ]
        )

    def __str__(self) -> str:
        return self.report()


def gap_dephasing(gaps, *, max_time_fs=None, fit="gaussian", estimator="biased"):
    """Dephasing D(t), its fitted FWHM and the gap histogram of a loaded gap series.

    Parameters
    ----------
    gaps : GapSeries
        From :func:`stemqd.aimd.trajectory.load_gap_series`.
    max_time_fs, fit, estimator
        As :func:`dephasing`.

    Returns
    -------
    GapDephasing
    """
    res = dephasing(gaps.gap_meV, gaps.dt_fs, max_time_fs=max_time_fs, fit=fit, estimator=estimator)
    return GapDephasing(
        dephasing=res,
        histogram=gap_histogram(gaps.gap_meV),
        n_samples=len(gaps.gap_meV),
        dt_fs=gaps.dt_fs,
    )


__all__ = [
    "GapDephasing",
    "autocorrelation",
    "cumulant",
    "dephasing",
    "gap_dephasing",
    "gap_histogram",
]
