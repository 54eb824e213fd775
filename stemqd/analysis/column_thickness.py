"""Counted thicknesses of a dot: their distribution, and the A : BX ratio against them.

Atom counting (:mod:`stemqd.analysis.counting`, :mod:`stemqd.analysis.library`) gives every
column its thickness in repeats along the beam (unit cells of CsPbBr3 [001]). Two results
follow per dot:

* :func:`thickness_distribution`: how many columns of each type have each count, with the
  mean and standard deviation per type.
* :func:`cell_ratios` and :func:`ratio_by_thickness`: the study's question (are core/shell
  dots depleted of Pb/Br, or only thinner?) answered column by column. Each counted column
  of one sublattice of the ratio (by default the denominator, the B-X columns) forms a local
  cell with its nearest neighbours of the other sublattice (the four A columns around a
  B-X column along [001]); the cell's ratio is the numerator volume over the denominator
  volume, the side with several columns entering as their mean. The cells are grouped by
  the count of their binned column and the mean ratio at each count is set beside the
  simulated series' ratio at that thickness (:func:`series_ratio`). A dot that is only
  thinner lies on the series; B-X columns thinner than their A neighbours (a depleted
  shell) lie above it.

The standard error of a mean ratio is the standard deviation of the cells' ratios over the
square root of their number. Neighbouring cells share columns, so it is a lower bound
(for four shared A neighbours per B-X column, by up to about a factor 2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import InputError
from .library import library_curve, series_prefix

__all__ = [
    "NEIGHBOUR_TOLERANCE",
    "cell_ratios",
    "dot_thickness",
    "ratio_by_thickness",
    "series_ratio",
    "thickness_distribution",
]

#: A partner column belongs to a cell when it lies within this factor of the median
#: nearest partner distance of the binned columns (the four A columns around a B-X column
#: along CsPbBr3 [001] are equidistant; the next are sqrt(5) times farther).
NEIGHBOUR_TOLERANCE = 1.3


def _counts(values) -> np.ndarray:
    """Counts as floats, NaN where missing (pandas' nullable integers included)."""
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)


def thickness_distribution(counts, labels=None, *, repeat_A: float | None = None):
    """Histogram, mean and standard deviation of the counts of each column type.

    Parameters
    ----------
    counts : array_like, shape (n,)
        Count per column (repeats along the beam); missing values (NaN, ``pd.NA``) are
        columns that were not counted and are left out.
    labels : array_like of str, shape (n,), optional
        Column type of each column (``label`` of columns.csv); one type ``"all"`` if
        omitted.
    repeat_A : float, optional
        Period of a column along the beam, Å: adds the thickness in nm (count x repeat).

    Returns
    -------
    table : pandas.DataFrame
        One row per type and count: ``label``, ``count``, ``n_columns``, ``fraction`` (of
        that type's counted columns) and, with `repeat_A`, ``thickness_nm``.
    stats : dict of str to dict
        Per type: ``n_columns``, ``mean``, ``std`` (ddof 1; NaN for one column),
        ``median``, ``min``, ``max`` (counts) and, with `repeat_A`, ``mean_nm`` and
        ``std_nm``.
    """
    c = _counts(counts)
    lab = np.full(c.size, "all", dtype=object) if labels is None else np.asarray(labels, object)
    if lab.shape != c.shape:
        raise InputError(f"thickness distribution: {lab.size} labels for {c.size} counts")
    keep = np.isfinite(c)
    c, lab = c[keep], lab[keep].astype(str)
    rows, stats = [], {}
    for label in sorted(set(lab.tolist())):
        v = c[lab == label].astype(int)
        values, n = np.unique(v, return_counts=True)
        for value, k in zip(values, n):
            row = {"label": label, "count": int(value), "n_columns": int(k), "fraction": k / v.size}
            if repeat_A is not None:
                row["thickness_nm"] = value * repeat_A / 10
            rows.append(row)
        s = {
            "n_columns": int(v.size),
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "median": float(np.median(v)),
            "min": int(v.min()),
            "max": int(v.max()),
        }
        if repeat_A is not None:
            s["mean_nm"] = s["mean"] * repeat_A / 10
            s["std_nm"] = s["std"] * repeat_A / 10
        stats[label] = s
    columns = ["label", "count", "n_columns", "fraction"] + (["thickness_nm"] if repeat_A else [])
    return pd.DataFrame(rows, columns=columns), stats


def cell_ratios(
    columns: pd.DataFrame,
    numerator: str,
    denominator: str,
    *,
    by: str | None = None,
    count: str = "count",
    volume: str = "volume",
    partners=None,
    tolerance: float = NEIGHBOUR_TOLERANCE,
) -> pd.DataFrame:
    """The ratio of every local cell around a counted column (see the module docstring).

    Parameters
    ----------
    columns : pandas.DataFrame
        One image's columns: ``x_px``, ``y_px``, ``label``, `volume` and `count`.
    numerator, denominator : str
        Labels of the ratio's sublattices (``Cs``, ``PbBr``).
    by : str, optional
        The sublattice whose counted columns define the cells (default `denominator`).
    count : str
        Count column (``count`` statistical, ``count_library`` from a series).
    volume : str
        Volume column (``volume`` or ``volume_norm``: the ratio is the same).
    partners : array_like of bool, optional
        Columns of the other sublattice allowed into the cells (e.g. those the statistics
        use); all with a finite volume by default.
    tolerance : float
        Partners lie within this factor of the median nearest partner distance.

    Returns
    -------
    pandas.DataFrame
        One row per counted column of `by` with at least one partner: ``row`` (its row in
        `columns`), ``x_px``, ``y_px``, ``count``, ``ratio`` (numerator : denominator
        volume of the cell), ``n_partners``, ``partner_count_mean`` (mean `count` of the
        partners; NaN where they are not counted) and ``counted`` (``"numerator"`` or
        ``"denominator"``: which side of the ratio `count` belongs to).

    Raises
    ------
    InputError
        `by` is neither sublattice, or a needed column is missing.
    """
    by = denominator if by is None else by
    if by not in (numerator, denominator):
        raise InputError(
            f"ratio by thickness: the counted columns ({by!r}) are neither sublattice of the "
            f"ratio {numerator}:{denominator}; count {numerator} or {denominator}"
        )
    missing = {"x_px", "y_px", "label", volume, count} - set(columns.columns)
    if missing:
        raise InputError(
            f"ratio by thickness: the columns table has no {', '.join(sorted(missing))}"
        )
    other = numerator if by == denominator else denominator
    labels = columns["label"].fillna("").astype(str).to_numpy()
    vol = pd.to_numeric(columns[volume], errors="coerce").to_numpy(float)
    cnt = _counts(columns[count])
    xy = columns[["x_px", "y_px"]].to_numpy(float)
    own = np.flatnonzero((labels == by) & np.isfinite(cnt) & np.isfinite(vol) & (vol > 0))
    ok = (labels == other) & np.isfinite(vol) & (vol > 0)
    if partners is not None:
        ok &= np.asarray(partners, bool)
    mate = np.flatnonzero(ok)
    out = ["row", "x_px", "y_px", "count", "ratio", "n_partners", "partner_count_mean", "counted"]
    side = "denominator" if by == denominator else "numerator"
    if own.size == 0 or mate.size == 0:
        return pd.DataFrame(columns=out)
    tree = cKDTree(xy[mate])
    nearest = tree.query(xy[own])[0]
    radius = tolerance * float(np.median(nearest))
    rows = []
    for i, found in zip(own, tree.query_ball_point(xy[own], radius)):
        if not found:
            continue
        j = mate[found]
        mean_other = float(np.mean(vol[j]))
        ratio = mean_other / vol[i] if by == denominator else vol[i] / mean_other
        partner_counts = cnt[j][np.isfinite(cnt[j])]
        rows.append(
            {
                "row": int(i),
                "x_px": xy[i, 0],
                "y_px": xy[i, 1],
                "count": int(cnt[i]),
                "ratio": float(ratio),
                "n_partners": len(j),
                "partner_count_mean": (
                    float(partner_counts.mean()) if partner_counts.size else float("nan")
                ),
                "counted": side,
            }
        )
    return pd.DataFrame(rows, columns=out)


def series_ratio(series: pd.DataFrame, numerator: str, denominator: str, *, name="series"):
    """The simulated ratio at every whole thickness of a series, with its standard error.

    The cross-sections (and their frozen-phonon standard errors) are interpolated to whole
    thicknesses as for library counting (:func:`stemqd.analysis.library.library_curve`:
    linear, through zero at zero thickness); the ratio's error adds the two relative errors
    in quadrature.

    Parameters
    ----------
    series : pandas.DataFrame
        A thickness series (:func:`stemqd.simulation.files.read_series`).
    numerator, denominator : str
        Column labels (``Cs``, ``PbBr``).
    name : str
        The series' file name, for messages.

    Returns
    -------
    pandas.DataFrame
        ``thickness_uc`` (1, 2, ...), ``ratio`` and ``ratio_err``, and the two
        cross-sections ``numerator_A2`` and ``denominator_A2``.
    """
    t, num = library_curve(series, numerator, name=name)
    _, den = library_curve(series, denominator, name=name)
    rel2 = np.zeros(t.size)
    tab = np.concatenate(([0.0], series["thickness_uc"].to_numpy(float)))
    for label, cs in ((numerator, num), (denominator, den)):
        err = f"{series_prefix(label)}_volume_A2_err"
        if err in series:
            e = np.interp(t, tab, np.concatenate(([0.0], series[err].to_numpy(float))))
            rel2 += (e / cs) ** 2
    ratio = num / den
    return pd.DataFrame(
        {
            "thickness_uc": t,
            "ratio": ratio,
            "ratio_err": ratio * np.sqrt(rel2),
            "numerator_A2": num,
            "denominator_A2": den,
        }
    )


def ratio_by_thickness(cells: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean cell ratio at each count, beside the simulated ratio at that thickness.

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`cell_ratios` of one or several images.
    reference : pandas.DataFrame, optional
        :func:`series_ratio`.

    Returns
    -------
    pandas.DataFrame
        One row per count: ``count`` (thickness in repeats along the beam), ``n_cells``,
        ``ratio`` (mean), ``ratio_std`` and ``ratio_sem`` (NaN for one cell; see the module
        docstring), ``partner_count_mean``; with `reference` also ``series_ratio``,
        ``series_ratio_err`` (NaN beyond the series), ``difference`` (ratio - series) and
        ``z`` (difference over the root sum of squares of the two errors), and
        ``expected_ratio``: the mean over the cells of the series' ratio for the cell's own
        count over (or under) its partners' mean count, so that a dot whose neighbouring
        columns differ in thickness (a pyramid, a faceted edge) is compared with what the
        series predicts for those very columns (NaN where the partners are not counted or
        a count lies beyond the series).
    """
    columns = ["count", "n_cells", "ratio", "ratio_std", "ratio_sem", "partner_count_mean"]
    rows = []
    for value, d in cells.groupby("count", sort=True):
        r = d["ratio"].to_numpy(float)
        std = float(r.std(ddof=1)) if r.size > 1 else float("nan")
        partner = d["partner_count_mean"].to_numpy(float)
        rows.append(
            {
                "count": int(value),
                "n_cells": int(r.size),
                "ratio": float(r.mean()),
                "ratio_std": std,
                "ratio_sem": std / np.sqrt(r.size),
                "partner_count_mean": (
                    float(np.nanmean(partner)) if np.isfinite(partner).any() else float("nan")
                ),
            }
        )
    table = pd.DataFrame(rows, columns=columns)
    if reference is None:
        return table
    ref = reference.set_index("thickness_uc")
    table["series_ratio"] = table["count"].map(ref["ratio"]).astype(float)
    table["series_ratio_err"] = table["count"].map(ref["ratio_err"]).astype(float)
    table["difference"] = table["ratio"] - table["series_ratio"]
    table["z"] = table["difference"] / np.hypot(
        table["ratio_sem"].fillna(0.0), table["series_ratio_err"].fillna(0.0)
    ).replace(0.0, np.nan)
    if {"numerator_A2", "denominator_A2"} <= set(reference.columns) and len(cells):
        t = reference["thickness_uc"].to_numpy(float)

        def cross_section(name, n):
            # linear between whole thicknesses (the mean partner count is fractional)
            return np.interp(n, t, reference[name].to_numpy(float), left=np.nan, right=np.nan)

        own = cells["count"].to_numpy(float)
        mates = cells["partner_count_mean"].to_numpy(float)
        numerator_side = cells["counted"].to_numpy() == "numerator"
        num = cross_section("numerator_A2", np.where(numerator_side, own, mates))
        den = cross_section("denominator_A2", np.where(numerator_side, mates, own))
        expected = pd.Series(num / den, index=cells.index)
        table["expected_ratio"] = (
            table["count"].map(expected.groupby(cells["count"]).mean()).astype(float).to_numpy()
        )
    return table


def dot_thickness(
    columns: pd.DataFrame,
    numerator: str | None = None,
    denominator: str | None = None,
    *,
    count: str = "count",
    volume: str = "volume",
    used=None,
    reference: pd.DataFrame | None = None,
    by: str | None = None,
    repeat_A: float | None = None,
) -> dict:
    """Thickness distribution and ratio against counted thickness of one dot.

    Parameters
    ----------
    columns : pandas.DataFrame
        The dot's columns with `count` (``counts.csv`` of ``stemqd count``, or columns.csv
        of ``stemqd process`` with ``counting.enabled``).
    numerator, denominator : str, optional
        The ratio's sublattices; without them only the distribution is computed.
    count, volume : str
        Count and volume columns.
    used : array_like of bool, optional
        Partner columns allowed into the cells (:func:`cell_ratios`).
    reference : pandas.DataFrame, optional
        :func:`series_ratio` of the simulated series.
    by : str, optional
        Sublattice whose counts bin the cells: the counted one of the two when only one is
        counted, else `denominator`.
    repeat_A : float, optional
        Column period along the beam, Å (thicknesses in nm).

    Returns
    -------
    dict
        ``count`` (the count column used), ``distribution`` and ``stats``
        (:func:`thickness_distribution`), ``ratio`` (:func:`ratio_by_thickness`, or None)
        with ``binned_by``, or ``ratio_skipped`` (why there is no ratio table).
    """
    labels = columns["label"].fillna("").astype(str) if "label" in columns else None
    table, stats = thickness_distribution(columns[count], labels, repeat_A=repeat_A)
    out = {"count": count, "distribution": table, "stats": stats, "ratio": None}
    if not numerator or not denominator:
        out["ratio_skipped"] = "no ratio sublattices (the result has no material)"
        return out
    if by is None:
        counted = set(table["label"])
        by = numerator if numerator in counted and denominator not in counted else denominator
    if by not in set(table["label"]):
        out["ratio_skipped"] = f"no counted {by} columns"
        return out
    if volume not in columns:
        out["ratio_skipped"] = f"the columns table has no {volume!r}"
        return out
    cells = cell_ratios(
        columns, numerator, denominator, by=by, count=count, volume=volume, partners=used
    )
    out["binned_by"] = by
    out["ratio"] = ratio_by_thickness(cells, reference)
    return out
