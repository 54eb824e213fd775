"""Linewidth against temperature (Supplementary Figure 6d).

Two linewidths per temperature:

* the **dephasing** linewidth of the run at that temperature: the FWHM of the Gaussian fit of
  D(t) = exp(-g(t)) from the cumulant of its gap autocorrelation
  (:func:`stemqd.aimd.optical_response`), which holds every fluctuation of the gap, anharmonic and
  slow ones included;
* the **harmonic** linewidth Gamma(T) = 2 sqrt(2 ln 2) sqrt(2 Lambda k_B T) of the phonon
  sideband, from the reorganisation energy Lambda = sum_k S_k hbar omega_k of the Huang-Rhys
  factors of a low-temperature reference run (the study's 10 K run).

Their ratio at 300 K is the fraction of the room-temperature linewidth the sideband accounts
for (the study: about 70 %). Lambda is taken from the Huang-Rhys windows (Table 1's groups
near 2, 7 and 17 meV by default), and, for comparison, from the whole spectrum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .coupling import DEFAULT_WINDOWS_MEV, huang_rhys
from .linewidth import fwhm_from_reorganization
from .optical_response import dephasing, gap_histogram
from .series import check_per_run


def temperature_series(
    runs,
    *,
    temperatures_K=None,
    reference_K=None,
    windows=DEFAULT_WINDOWS_MEV,
    fraction_at_K=300.0,
    fit="gaussian",
    max_time_fs=None,
    curve_K=None,
    taper=None,
):
    """Dephasing linewidth of each run beside the harmonic Gamma(T) of a reference run.

    Parameters
    ----------
    runs : sequence of dict
        :func:`stemqd.aimd.series.read_run` results (``gap_meV``, ``dt_fs``, ``meta``,
        ``name``).
    temperatures_K : sequence of float, optional
        Temperature of each run (K); default ``meta["temperature_K"]``.
    reference_K : float, optional
        Temperature of the run whose Huang-Rhys factors give the harmonic Gamma(T); default
        the lowest temperature in the set (the study: 10 K).
    windows : sequence of (name, lo, hi)
        Huang-Rhys windows (meV) of the reference run; default
        :data:`stemqd.aimd.coupling.DEFAULT_WINDOWS_MEV` (Table 1).
    fraction_at_K : float
        Temperature (K) at which the sideband fraction Gamma_harmonic / Gamma_dephasing is
        reported; a run within 1 K of it is needed.
    fit : {"gaussian", "exponential"}
        Shape of the D(t) fit, see :func:`stemqd.aimd.optical_response`.
    max_time_fs : float, optional
        Longest lag of the autocorrelation (fs).
    curve_K : array_like, optional
        Temperatures (K) of the smooth harmonic curve; default 0 to the highest run
        temperature in 200 steps.
    taper : {None, "hann"}
        Taper of the reference gap series for its Huang-Rhys factors (see
        :func:`stemqd.aimd.series.analyse_series`).

    Returns
    -------
    dict
        ``table``: one row per run, sorted by temperature: ``run, temperature_K, n_steps,
        gap_sigma_meV, histogram_fwhm_meV, dephasing_fwhm_meV, tau_fs, dephasing_decayed,
        harmonic_fwhm_meV``
        (windows' Lambda), ``harmonic_full_fwhm_meV`` (whole spectrum) and
        ``harmonic_fraction`` (harmonic / dephasing); ``windows``: the reference run's
        window table (``window, lo_meV, hi_meV, S, lambda_meV, mean_energy_meV``);
        ``curve``: ``temperature_K, harmonic_fwhm_meV, harmonic_full_fwhm_meV``;
        ``reference`` (run name and temperature), ``reorganization_windows_meV``,
        ``reorganization_full_meV``, ``fraction_at_K`` and ``sideband_fraction`` (NaN
        without a run at ``fraction_at_K``).
    """
    runs = list(runs)
    if len(runs) < 1:
        raise InputError("the temperature series needs at least one run")
    check_per_run(temperatures_K, runs, "temperatures_K (--temperature)")
    temps = []
    for k, run in enumerate(runs):
        t = (
            temperatures_K[k]
            if temperatures_K is not None
            else run.get("meta", {}).get("temperature_K")
        )
        if t is None or not float(t) > 0:
            raise InputError(
                f"{run['name']}: no positive temperature; give one per run (--temperature K)"
            )
        temps.append(float(t))
    temps = np.array(temps)
    if reference_K is None:
        ref = int(np.argmin(temps))
    else:
        ref = int(np.argmin(np.abs(temps - float(reference_K))))
        if abs(temps[ref] - float(reference_K)) > 1.0:
            raise InputError(
                f"no run at the reference temperature {reference_K:g} K (runs: "
                f"{', '.join(f'{t:g}' for t in temps)} K)"
            )
    r = runs[ref]
    hr = huang_rhys(r["gap_meV"], r["dt_fs"], temps[ref], windows=windows, window=taper)
    lam_w = float(hr["windows"]["lambda_meV"].sum())
    lam_full = hr["reorganization_meV"]
    rows = []
    for run, t in zip(runs, temps):
        dph = dephasing(run["gap_meV"], run["dt_fs"], max_time_fs=max_time_fs, fit=fit)
        hist = gap_histogram(run["gap_meV"])
        rows.append(
            {
                "run": run["name"],
                "temperature_K": t,
                "n_steps": len(run["gap_meV"]),
                "gap_sigma_meV": hist["std_meV"],
                "histogram_fwhm_meV": hist["fwhm_meV"],
                "dephasing_fwhm_meV": dph["fwhm_meV"],
                "tau_fs": dph["tau_fs"],
                # False where D(t) never fell below the fit threshold (cold runs of undamped
                # modes): that run's Gaussian linewidth is not meaningful.
                "dephasing_decayed": dph["fit_points"] < len(dph["table"]),
                "harmonic_fwhm_meV": fwhm_from_reorganization(t, lam_w),
                "harmonic_full_fwhm_meV": fwhm_from_reorganization(t, lam_full),
            }
        )
    table = pd.DataFrame(rows)
    table["harmonic_fraction"] = table["harmonic_fwhm_meV"] / table["dephasing_fwhm_meV"]
    table = table.sort_values("temperature_K").reset_index(drop=True)
    near = np.abs(table["temperature_K"].to_numpy() - float(fraction_at_K))
    fraction = (
        float(table["harmonic_fraction"].iloc[np.argmin(near)]) if near.min() <= 1 else np.nan
    )
    grid = (
        np.asarray(curve_K, dtype=float)
        if curve_K is not None
        else np.linspace(0.0, float(temps.max()), 200)
    )
    curve = pd.DataFrame(
        {
            "temperature_K": grid,
            "harmonic_fwhm_meV": fwhm_from_reorganization(grid, lam_w),
            "harmonic_full_fwhm_meV": fwhm_from_reorganization(grid, lam_full),
        }
    )
    return {
        "table": table,
        "windows": hr["windows"],
        "curve": curve,
        "reference": {"run": r["name"], "temperature_K": float(temps[ref])},
        "reorganization_windows_meV": lam_w,
        "reorganization_full_meV": float(lam_full),
        "fraction_at_K": float(fraction_at_K),
        "sideband_fraction": fraction,
    }


__all__ = ["temperature_series"]
