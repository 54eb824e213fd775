"""Crystal thickness from a measured column-intensity ratio and a simulated series.

The Cs : Pb/Br ratio of ADF-STEM columns depends on the thickness (``docs/methods.md``,
section 6: ``reference_series``), so a measured ratio with its uncertainty constrains the
thickness through a multislice reference (:mod:`stemqd.simulation`,
``simulations/reference/cspbbr3_001_adf_series.csv``). The series is interpolated linearly
in thickness, ratio and ratio error; a thickness t is *consistent* with the measurement
r +- s when

    |R(t) - r| <= n_sigma * sqrt(s² + s_R(t)²),

with s_R the frozen-phonon standard error of the series (optional). A ratio curve that is
not monotonic can admit several disjoint ranges: all are returned and the result says so.
The answer never extends beyond the tabulated thicknesses; a range that touches either end
of the series is flagged as open-ended.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from ..errors import InputError, ModelMismatchError

__all__ = ["ThicknessEstimate", "thickness_from_ratio"]


@dataclass(frozen=True)
class ThicknessEstimate:
    """Thickness ranges consistent with a measured ratio.

    Attributes
    ----------
    ranges_uc : list of (float, float)
        Consistent thickness intervals (t_min, t_max), unit cells, in increasing order;
        empty when no tabulated thickness is consistent.
    ranges_nm : list of (float, float)
        The same in nm.
    monotonic : bool
        Whether the series ratio is strictly monotonic over its thickness range.
    flags : list of str
        Plain-language warnings ("non-monotonic series ...", "open-ended ...", "no thickness
        ...").
    best_uc : float
        Thickness where the interpolated series is closest to the measured ratio (a point
        estimate for display; the ranges are the result).
    ratio, ratio_err, n_sigma : float
        The measurement and the width of the acceptance band.
    series_range_uc : (float, float)
        Thinnest and thickest tabulated thickness.
    column : str
        The series column used (e.g. "ratio" = fitted volumes).
    series_fit_model : str or None
        Column model the series was measured with (None: unknown).
    """

    ranges_uc: list
    ranges_nm: list
    monotonic: bool
    flags: list = field(default_factory=list)
    best_uc: float = float("nan")
    ratio: float = float("nan")
    ratio_err: float = float("nan")
    n_sigma: float = 1.0
    series_range_uc: tuple = (float("nan"), float("nan"))
    column: str = "ratio"
    series_fit_model: str | None = None

    @property
    def flag(self) -> str:
        """All flags joined by "; " ("" when none)."""
        return "; ".join(self.flags)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (for summary.json and reports)."""
        d = asdict(self)
        d["ranges_uc"] = [list(map(float, r)) for r in self.ranges_uc]
        d["ranges_nm"] = [list(map(float, r)) for r in self.ranges_nm]
        d["series_range_uc"] = list(map(float, self.series_range_uc))
        d["flag"] = self.flag
        return d

    @classmethod
    def from_dict(cls, part: dict) -> ThicknessEstimate:
        """The estimate from its :meth:`to_dict` (e.g. ``summary["thickness"]``): a float
        the file has as null reads as NaN, a key it lacks as the default, and keys that
        are not fields (``flag``, ``series``) are ignored."""
        fields = {}
        for f in dataclasses.fields(cls):
            if f.name in part:
                value = part[f.name]
                fields[f.name] = (
                    (np.nan if value is None else float(value)) if f.type == "float" else value
                )
        for key in ("ranges_uc", "ranges_nm"):
            fields[key] = [tuple(_nan_floats(r)) for r in fields.get(key) or ()]
        fields["monotonic"] = fields.get("monotonic")
        fields["flags"] = list(fields.get("flags") or ())
        if fields.get("series_range_uc") is not None:
            fields["series_range_uc"] = tuple(_nan_floats(fields["series_range_uc"]))
        else:
            fields.pop("series_range_uc", None)
        return cls(**fields)


def _nan_floats(values):
    """Floats of ``values``, NaN where JSON has null."""
    return [np.nan if v is None else float(v) for v in values]


def thickness_from_ratio(
    ratio: float,
    ratio_err: float,
    series,
    *,
    n_sigma: float = 1.0,
    column: str = "ratio",
    include_series_error: bool = True,
    grid_step_uc: float = 0.01,
    fit_model: str | None = None,
    allow_other_model: bool = False,
) -> ThicknessEstimate:
    """Thickness ranges consistent with a measured ratio under a reference series.

    Parameters
    ----------
    ratio : float
        Measured Cs : Pb/Br ratio (same definition as the series column, e.g. fitted
        Gaussian volumes for ``"ratio"``).
    ratio_err : float
        Its standard uncertainty (>= 0), e.g. from ``stemqd process``.
    series : pandas.DataFrame or path
        Series with ``thickness_uc``, ``thickness_nm``, ``column`` and ``column + "_err"``
        (see :func:`stemqd.simulation.write_series`).
    n_sigma : float
        Half-width of the acceptance band in combined standard uncertainties (1 = 68 %
        for Gaussian errors, 2 = 95 %).
    column : str
        Ratio column of the series ("ratio", "ratio_volume", "ratio_disc", "ratio_peak").
    include_series_error : bool
        Add the series' frozen-phonon standard error in quadrature.
    grid_step_uc : float
        Step of the scan for band crossings, unit cells; each crossing is then refined by
        Brent's method to 1e-9 uc.
    fit_model : str, optional
        Column model the ratio was measured with (``columns.model``). A series measured
        with another model (its sidecar says which; ``attrs["fit_model"]`` of a table) is
        refused (:class:`~stemqd.errors.ModelMismatchError`): on the reference the models'
        ratios differ by more than its error.
    allow_other_model : bool
        Compare all the same; the estimate is then flagged.

    Returns
    -------
    ThicknessEstimate

    Examples
    --------
    >>> est = thickness_from_ratio(0.33, 0.01, "simulations/reference/"
    ...                            "cspbbr3_001_adf_series.csv")  # doctest: +SKIP
    >>> est.ranges_uc, est.monotonic, est.flag  # doctest: +SKIP
    """
    table = _load(series)
    if column not in table.columns:
        raise InputError(f"series has no column {column!r}")
    series_model = table.attrs.get("fit_model")
    model_flags = []
    if fit_model is not None and series_model is not None and fit_model != series_model:
        if not allow_other_model:
            name = "the series" if isinstance(series, pd.DataFrame) else str(series)
            raise ModelMismatchError(
                f"the ratio was measured with the column model {fit_model!r} but {name} was "
                f"fitted with {series_model!r}; the two measure different ratios. Use a "
                f"series measured with {fit_model!r} ('stemqd simulate reanalyse SERIES.csv "
                f"--fit-model {fit_model} --out NEW.csv' re-measures its scans) or allow the "
                f"comparison explicitly"
            )
        model_flags.append(f"series fitted with {series_model!r}, ratio with {fit_model!r}")
    elif fit_model is not None and series_model is None:
        model_flags.append("the series' column model is unknown")
    if not np.isfinite(ratio) or not np.isfinite(ratio_err) or ratio_err < 0:
        raise InputError(
            f"need a finite ratio and a non-negative uncertainty, got {ratio} +- {ratio_err}"
        )
    if not n_sigma > 0:
        raise InputError(f"n_sigma must be positive, got {n_sigma}")
    table = table.sort_values("thickness_uc")
    t = table["thickness_uc"].to_numpy(float)
    r_series = table[column].to_numpy(float)
    err_col = column + "_err"
    if include_series_error and err_col in table.columns:
        s_series = np.nan_to_num(table[err_col].to_numpy(float), nan=0.0)
    else:
        s_series = np.zeros_like(t)
    if not np.all(np.isfinite(r_series)):
        raise InputError(f"series column {column!r} has non-finite values")
    nm_per_uc = float(np.median(table["thickness_nm"].to_numpy(float) / t))

    def excess(x):
        """Distance outside the acceptance band (<= 0 inside)."""
        rr = np.interp(x, t, r_series)
        ss = np.interp(x, t, s_series)
        return np.abs(rr - ratio) - n_sigma * np.sqrt(ratio_err**2 + ss**2)

    n_grid = max(int(np.ceil((t[-1] - t[0]) / grid_step_uc)), 1) + 1
    grid = np.union1d(np.linspace(t[0], t[-1], n_grid), t)
    inside = excess(grid) <= 0
    ranges = []
    k = 0
    while k < len(grid):
        if not inside[k]:
            k += 1
            continue
        start = k
        while k + 1 < len(grid) and inside[k + 1]:
            k += 1
        lo = grid[start] if start == 0 else brentq(excess, grid[start - 1], grid[start], xtol=1e-9)
        hi = grid[k] if k == len(grid) - 1 else brentq(excess, grid[k], grid[k + 1], xtol=1e-9)
        ranges.append((float(lo), float(hi)))
        k += 1
    diffs = np.diff(r_series)
    monotonic = bool(np.all(diffs > 0) or np.all(diffs < 0))
    flags = list(model_flags)
    if not monotonic:
        flags.append(
            "non-monotonic series: the ratio does not determine the thickness "
            "uniquely; every consistent range is returned"
        )
    if not ranges:
        flags.append(
            f"no thickness in {t[0]:g}-{t[-1]:g} uc is consistent with "
            f"{ratio:.4g} +- {ratio_err:.2g} (n_sigma {n_sigma:g})"
        )
    else:
        if ranges[0][0] <= t[0]:
            flags.append(
                f"open-ended: consistent down to the thinnest tabulated thickness ({t[0]:g} uc)"
            )
        if ranges[-1][1] >= t[-1]:
            flags.append(
                f"open-ended: consistent up to the thickest tabulated thickness ({t[-1]:g} uc)"
            )
    best = float(grid[np.argmin(np.abs(np.interp(grid, t, r_series) - ratio))])
    return ThicknessEstimate(
        ranges_uc=ranges,
        ranges_nm=[(lo * nm_per_uc, hi * nm_per_uc) for lo, hi in ranges],
        monotonic=monotonic,
        flags=flags,
        best_uc=best,
        ratio=float(ratio),
        ratio_err=float(ratio_err),
        n_sigma=float(n_sigma),
        series_range_uc=(float(t[0]), float(t[-1])),
        column=column,
        series_fit_model=series_model,
    )


def _load(series) -> pd.DataFrame:
    if isinstance(series, pd.DataFrame):
        table = series
    else:
        from ..simulation import read_series

        return read_series(series)
    need = {"thickness_uc", "thickness_nm"}
    if need - set(table.columns) or len(table) < 2:
        raise InputError("series needs thickness_uc and thickness_nm and at least two rows")
    return table
