"""Column-intensity statistics: per type, ratios with uncertainties, depth profiles, groups.

Default intensity measure: the Gaussian ``volume`` (2 pi A sx sy), i.e. the fitted
scattering cross-section of the column. Unlike the peak amplitude it does not depend on how
the probe and the column's channelling share intensity between height and width, and unlike
the Voronoi-cell integral it is not contaminated by unfitted neighbours (the weak Br columns
next to Pb-Br) or by the cell shape at the dot edge. The Voronoi cross-section and the
amplitude are reported beside it and can be selected with ``analysis.intensity``.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import cKDTree


def voronoi_cross_sections(image, positions_px, *, max_radius_px, offsets=None):
    """Integrated intensity of the Voronoi cell of every column (scattering cross-section).

    Each pixel is given to its nearest column, provided it lies within ``max_radius_px`` of
    it (so that the open cells of edge columns do not collect the support). With
    ``offsets`` (one per column, e.g. the fitted local background) each pixel counts above
    its column's offset, so that what the background removal left does not enter.

    Returns
    -------
    ndarray, shape (N,)
        Sum of the pixel values in each cell (image units x px).
    """
    image = np.asarray(image, float)
    pos = np.asarray(positions_px, float)
    if len(pos) == 0:
        return np.empty(0)
    ny, nx = image.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    dist, owner = cKDTree(pos).query(
        np.column_stack([xx.ravel(), yy.ravel()]), distance_upper_bound=max_radius_px
    )
    keep = np.isfinite(dist)
    values = image.ravel()[keep]
    if offsets is not None:
        values = values - np.asarray(offsets, float)[owner[keep]]
    return np.bincount(owner[keep], weights=values, minlength=len(pos))


def type_statistics(intensities, labels):
    """Count, mean, standard deviation and standard error of intensity per column type.

    Returns
    -------
    pandas.DataFrame
        Indexed by label with ``count``, ``mean``, ``std`` (ddof=1), ``sem``.
    """
    df = pd.DataFrame({"label": np.asarray(labels), "value": np.asarray(intensities, float)})
    g = df.groupby("label")["value"]
    out = pd.DataFrame({"count": g.count(), "mean": g.mean(), "std": g.std(ddof=1)})
    out["sem"] = out["std"] / np.sqrt(out["count"])
    return out


@dataclass(frozen=True)
class RatioEstimate:
    """The ratio of the mean intensities of two column types, with its uncertainty.

    Attributes
    ----------
    numerator, denominator : str
        Column labels (e.g. ``"Cs"``, ``"PbBr"``).
    ratio : float
        mean(numerator) / mean(denominator); NaN where a type has fewer than 2 columns.
    stderr : float
        Propagated (first-order) standard error.
    bootstrap_stderr, ci_low, ci_high : float
        Bootstrap standard error and percentile interval (NaN without a bootstrap).
    confidence : float
        Level of the interval.
    n_numerator, n_denominator : int
        Columns of each type that entered the means.
    """

    numerator: str
    denominator: str
    ratio: float
    stderr: float
    bootstrap_stderr: float
    ci_low: float
    ci_high: float
    confidence: float
    n_numerator: int
    n_denominator: int

    @classmethod
    def from_dict(cls, data: dict | None) -> RatioEstimate | None:
        """The ratio read back from a summary (``summary["ratio"]``) or from the ratio's dict.

        Parameters
        ----------
        data : dict or None
            A ``summary.json`` (its ``ratio`` part is read) or a :meth:`to_dict` dict.

        Returns
        -------
        RatioEstimate or None
            None where there is no ratio (no material, hence an empty or absent part). A
            float the file has as null, or lacks (an older summary), reads as NaN; a label
            or a count it lacks reads as None.
        """
        data = data or {}
        part = data.get("ratio")
        if not isinstance(part, dict):  # a ratio's own dict, or a summary without a ratio
            part = data if "numerator" in data else None
        if not part:
            return None
        fields = {}
        for f in dataclasses.fields(cls):
            value = part.get(f.name)
            if f.type == "float":
                value = np.nan if value is None else float(value)
            fields[f.name] = value
        return cls(**fields)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (NaN stays NaN; the JSON writers make it null)."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        name = f"{self.numerator} : {self.denominator}"
        counts = f"{self.n_numerator} / {self.n_denominator} columns"
        if not np.isfinite(self.ratio):
            return f"{name} = n/a (too few columns: {counts})"
        text = f"{name} = {self.ratio:.4f} +- {self.stderr:.4f} (propagated s.e.)"
        if np.isfinite(self.bootstrap_stderr):
            text += (
                f", bootstrap s.e. {self.bootstrap_stderr:.4f}, "
                f"{100 * self.confidence:g} % interval [{self.ci_low:.4f}, {self.ci_high:.4f}]"
            )
        return f"{text}; {counts}"

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(str(self))}</b></p>"


def intensity_ratio(
    intensities, labels, numerator, denominator, *, bootstrap=2000, seed=0, confidence=0.95
):
    """Ratio of the mean intensities of two column types, with its uncertainty.

    The propagated standard error is r sqrt((sem_a / mean_a)**2 + (sem_b / mean_b)**2)
    (first order, independent means). The bootstrap resamples the columns of each type
    with replacement ``bootstrap`` times (seeded) and gives the standard deviation of the
    resampled ratios and their percentile interval (NaN with ``bootstrap`` < 2).

    Returns
    -------
    RatioEstimate
        NaN where a type has fewer than 2 columns.
    """
    values = np.asarray(intensities, float)
    labels = np.asarray(labels)
    a = values[(labels == numerator) & np.isfinite(values)]
    b = values[(labels == denominator) & np.isfinite(values)]
    nan = np.nan
    ratio = stderr = boot_se = lo = hi = nan
    if len(a) >= 2 and len(b) >= 2:
        ma, mb = a.mean(), b.mean()
        ratio = ma / mb
        sa, sb = a.std(ddof=1) / np.sqrt(len(a)), b.std(ddof=1) / np.sqrt(len(b))
        stderr = abs(ratio) * np.hypot(sa / ma, sb / mb)
        if bootstrap >= 2:
            rng = np.random.default_rng(seed)
            ra = a[rng.integers(0, len(a), (bootstrap, len(a)))].mean(axis=1)
            rb = b[rng.integers(0, len(b), (bootstrap, len(b)))].mean(axis=1)
            boot = ra / rb
            alpha = (1 - confidence) / 2
            lo, hi = np.quantile(boot, [alpha, 1 - alpha])
            boot_se = boot.std(ddof=1)
    return RatioEstimate(
        numerator=numerator,
        denominator=denominator,
        ratio=float(ratio),
        stderr=float(stderr),
        bootstrap_stderr=float(boot_se),
        ci_low=float(lo),
        ci_high=float(hi),
        confidence=float(confidence),
        n_numerator=int(len(a)),
        n_denominator=int(len(b)),
    )


def ratio_by_depth(intensities, labels, depth_uc, numerator, denominator):
    """The ratio of mean intensities per depth below the dot surface (unit cells).

    A Pb/Br-depleted shell shows as a higher Cs : Pb/Br ratio at small depths.

    Returns
    -------
    pandas.DataFrame
        One row per depth (>= 0) with the counts, means and standard errors of both types,
        ``ratio`` and ``stderr`` (propagated).
    """
    depth_uc = np.asarray(depth_uc)
    rows = []
    for d in sorted(set(depth_uc[depth_uc >= 0].tolist())):
        sel = depth_uc == d
        vals = np.asarray(intensities, float)[sel]
        lab = np.asarray(labels)[sel]
        a, b = vals[lab == numerator], vals[lab == denominator]
        ratio = a.mean() / b.mean() if len(a) and len(b) else np.nan
        sem = [x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan for x in (a, b)]
        stderr = (
            abs(ratio) * np.hypot(sem[0] / a.mean(), sem[1] / b.mean())
            if len(a) and len(b)
            else np.nan
        )
        rows.append(
            {
                "depth_uc": int(d),
                "n_numerator": len(a),
                "n_denominator": len(b),
                "mean_numerator": a.mean() if len(a) else np.nan,
                "mean_denominator": b.mean() if len(b) else np.nan,
                "ratio": ratio,
                "stderr": stderr,
            }
        )
    return pd.DataFrame(rows)


def compare_groups(
    group_a, group_b, *, permutations=10000, bootstrap=10000, seed=0, confidence=0.95
):
    """Compare the per-dot ratios of two groups of dots.

    Parameters
    ----------
    group_a, group_b : array_like
        Per-dot ratios of each group.

    Returns
    -------
    dict
        Per group ``mean``, ``std`` (ddof=1), ``n``; ``difference`` (mean b - mean a);
        Welch's t-test (``welch_t``, ``welch_p``); a two-sided permutation test of the
        difference of means (``permutation_p``); Hedges' g effect size (``hedges_g``, the
        pooled-SD standardised difference with the small-sample correction); and a
        percentile bootstrap CI of the difference (``diff_ci_low``, ``diff_ci_high``).
    """
    a = np.asarray(group_a, float)
    b = np.asarray(group_b, float)
    out = {
        "n_a": len(a),
        "n_b": len(b),
        "mean_a": a.mean(),
        "mean_b": b.mean(),
        "std_a": a.std(ddof=1) if len(a) > 1 else np.nan,
        "std_b": b.std(ddof=1) if len(b) > 1 else np.nan,
        "difference": b.mean() - a.mean(),
        "confidence": confidence,
    }
    if len(a) < 2 or len(b) < 2:
        return out
    t = stats.ttest_ind(b, a, equal_var=False)
    rng = np.random.default_rng(seed)
    perm = stats.permutation_test(
        (b, a),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        n_resamples=permutations,
        alternative="two-sided",
        random_state=rng,
    )
    pooled = np.sqrt(
        ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    )
    d = (b.mean() - a.mean()) / pooled if pooled > 0 else np.inf
    g = d * (1 - 3 / (4 * (len(a) + len(b)) - 9))
    ba = a[rng.integers(0, len(a), (bootstrap, len(a)))].mean(axis=1)
    bb = b[rng.integers(0, len(b), (bootstrap, len(b)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(bb - ba, [alpha, 1 - alpha])
    return out | {
        "welch_t": float(t.statistic),
        "welch_p": float(t.pvalue),
        "permutation_p": float(perm.pvalue),
        "hedges_g": float(g),
        "diff_ci_low": float(lo),
        "diff_ci_high": float(hi),
    }


#: Column flags that still let a column into the statistics: none, or only the edge margin
#: (the outermost cells are where a depleted shell shows).
STATISTICS_FLAGS = ("", "edge margin")


def in_statistics(columns: pd.DataFrame) -> np.ndarray:
    """Which columns of a columns table enter the statistics.

    Parameters
    ----------
    columns : pandas.DataFrame
        A columns table (``columns.csv``); its ``flag`` column holds each column's reasons
        for exclusion, ``"; "``-joined. A table without one (user-supplied positions read
        back, say) has every column in.

    Returns
    -------
    ndarray of bool
        True where the flag is empty or only the edge margin (:data:`STATISTICS_FLAGS`).
    """
    if "flag" not in columns:
        return np.ones(len(columns), bool)
    return np.isin(columns["flag"].fillna("").astype(str).to_numpy(), STATISTICS_FLAGS)


__all__ = [
    "STATISTICS_FLAGS",
    "RatioEstimate",
    "compare_groups",
    "in_statistics",
    "intensity_ratio",
    "ratio_by_depth",
    "type_statistics",
    "voronoi_cross_sections",
]
