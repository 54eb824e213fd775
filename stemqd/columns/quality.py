"""Is there a crystal? Quality measures of the found columns, and the gate on them.

Noise has local maxima too: an image of pure Poisson noise yields hundreds of "columns",
and the sublattice registration always finds *some* lattice that puts part of them on
sites. A result is only meaningful when the found columns form the projected lattice, so
every analysed image gets one of two quality records, and a stack below the thresholds
fails with :class:`~stemqd.errors.LatticeQualityError` instead of reporting a ratio.

With a material (:func:`lattice_quality`), from the columns found in the image (not those
added from the lattice) inside the statistics region:

* ``on_site_intensity_fraction`` (the gate) and ``on_site_fraction``: the share of their
  intensity (fitted volumes, negative ones counted as 0), and of the columns themselves,
  within the assignment tolerance (0.25 nearest-neighbour distances) of a site of the
  registered lattice. Random points put only those inside the tolerance disks on sites,
  about a quarter even after the registration picked the best lattice for them. A crystal
  puts its columns on sites; the noise peaks found beside a small, sharp, low-dose dot
  (inside its segmented outline) are many but weak, so they lower the count far more than
  the intensity: 0.45 of the columns but 0.77 of the intensity on a 4-cell dot at
  sigma / nn 0.1 and dose 20. Measured (``benchmarks/bench_quality.py``): synthetic
  CsPbBr3 dots of 6 cells over sigma / nn 0.10-0.45 and doses 20-1000 give 0.93-1.00 of
  the intensity on sites (0.77-1.00 of the columns; the lowest at sigma / nn 0.45, dose
  20), a crystal filling the field 1.00, the real Pt-Ir image 0.97; Poisson noise and the
  carbon support alone 0.20-0.29. Threshold 0.5.
* ``rms_misfit_nn``: the root-mean-square distance of the on-site columns to their ideal
  sites, in nearest-neighbour distances. Points spread evenly over the tolerance disk give
  0.25 / sqrt(2) = 0.18 (noise: 0.155-0.170); the dots 0.003-0.112 (the highest again at
  sigma / nn 0.45, dose 20), the real image 0.066. Threshold 0.15.
* ``n_cells``: the number of distinct unit cells holding an on-site column: a lattice needs
  a few cells to be one at all (2 x 2; the 6-cell dots measured hold 49). Threshold 4.

Without a material (:func:`fit_quality`) there is no lattice to test, so the gate is on
the column finding and fitting: ``significant_fraction``, the fraction of the fitted
columns with a positive amplitude above :data:`SIGNIFICANCE` standard errors and no fit
flag (threshold 0.5, and at least 4 columns, ``n_columns``); and ``width_px``, the median
fitted column width (sigma), which must be at least ``min_width_px`` (0.6 px). A fit to
pure Poisson noise (128 x 128 px, 50 or 1000 counts, spacing 2.9 or 4 Å at 0.3 Å/px)
collapses onto single pixels: width 0.34-0.54 px, and 0.46-0.68 of its peaks are
"significant" by their amplitude (their standard errors, of a model that fits one pixel,
say nothing). Columns imaged at any usable sampling are wider: 3.8 px on the real MoS2
monolayer, 5.3 px on the real SrTiO3 [110] image, 5.4 px on StatSTEM's PtIr example, at
least 1.0 px on the synthetic sweep (sigma / nn 0.10). Without the width test the gate
failed noise only while its fit ran to the iteration limit and flagged every column.

The thresholds are the ``quality`` section of the config (:class:`stemqd.config.
QualityConfig`); ``quality.gate = false`` records the measures without failing.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass

import numpy as np

from ..errors import LatticeQualityError

__all__ = ["SIGNIFICANCE", "QualityRecord", "check_quality", "fit_quality", "lattice_quality"]

#: A fitted amplitude counts as significant above this many standard errors.
SIGNIFICANCE = 3.0


@dataclass(frozen=True)
class QualityRecord:
    """A quality record with its verdict (``summary["quality"]``, :func:`check_quality`).

    The fields of the other kind are None: a ``"lattice"`` record has no
    ``significant_fraction``, a ``"fit"`` record no ``on_site_intensity_fraction``.

    Attributes
    ----------
    kind : {"lattice", "fit"} or None
        From :func:`lattice_quality` or :func:`fit_quality`.
    n_found, n_on_site, on_site_fraction, on_site_intensity_fraction, rms_misfit_nn, n_cells
        The lattice measures (see :func:`lattice_quality`).
    n_columns, n_significant, significant_fraction, width_px
        The fit measures (see :func:`fit_quality`).
    thresholds : dict of str to float or None
        The threshold of each gated measure.
    passed : bool or None
        Whether every measure met its threshold.
    reasons : tuple of str or None
        One text per measure below its threshold.
    """

    kind: str | None = None
    n_found: int | None = None
    n_on_site: int | None = None
    on_site_fraction: float | None = None
    on_site_intensity_fraction: float | None = None
    rms_misfit_nn: float | None = None
    n_cells: int | None = None
    n_columns: int | None = None
    n_significant: int | None = None
    significant_fraction: float | None = None
    width_px: float | None = None
    thresholds: dict | None = None
    passed: bool | None = None
    reasons: tuple | None = None

    @classmethod
    def from_dict(cls, quality: dict | None) -> QualityRecord | None:
        """A record from its dict (``summary["quality"]`` or ``LatticeQualityError.quality``);
        None for None or an empty dict; keys the dict lacks become None."""
        if not quality:
            return None
        fields = {f.name: quality.get(f.name) for f in dataclasses.fields(cls)}
        if fields["reasons"] is not None:
            fields["reasons"] = tuple(fields["reasons"])
        return cls(**fields)

    def to_dict(self) -> dict:
        """The record as written to ``summary.json`` (fields that are None left out)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "reasons" in out:
            out["reasons"] = list(out["reasons"])
        return out

    def __str__(self) -> str:
        def num(value, fmt):
            return "n/a" if value is None or not np.isfinite(value) else format(value, fmt)

        verdict = {True: "passed", False: "below the thresholds", None: "not checked"}
        if self.kind == "lattice":
            text = (
                f"{num(self.on_site_intensity_fraction, '.0%')} of the intensity on lattice "
                f"sites ({self.n_on_site} of {self.n_found} columns), rms misfit "
                f"{num(self.rms_misfit_nn, '.3f')} nn, {self.n_cells} cells"
            )
        else:
            text = (
                f"{num(self.significant_fraction, '.0%')} of {self.n_columns} columns "
                f"significant ({self.n_significant}), width {num(self.width_px, '.2f')} px"
            )
        return "; ".join([f"quality {verdict[self.passed]}: {text}", *(self.reasons or ())])

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


def lattice_quality(assign_flags, cell_indices, misfit_A, nn_A, intensities=None) -> dict:
    """How well the columns found in an image form the projected lattice.

    Parameters
    ----------
    assign_flags : array_like of str, shape (N,)
        Assignment flag of each found column ("" on a site, else "unexpected" or
        "duplicate"; see :func:`stemqd.columns.sublattice.assign_sublattices`).
    cell_indices : array_like of int, shape (N, 2)
        Cell indices (i, j) of each column.
    misfit_A : array_like, shape (N,)
        Distance of each column to its site, Å.
    nn_A : float
        Nearest-neighbour column distance of the projected cell, Å.
    intensities : array_like, shape (N,), optional
        Column intensities (e.g. fitted volumes); negative ones count as 0. Without them
        every column weighs the same.

    Returns
    -------
    dict
        ``kind`` ("lattice"), ``n_found``, ``n_on_site``, ``on_site_fraction`` (of the
        columns), ``on_site_intensity_fraction`` (of their intensity), ``rms_misfit_nn``,
        ``n_cells`` (see the module docstring); NaN where undefined.
    """
    flags = np.asarray(assign_flags, dtype=object).reshape(-1)
    on = flags == ""
    misfit = np.asarray(misfit_A, float).reshape(-1)
    cells = np.asarray(cell_indices).reshape(-1, 2)[on]
    n_found = len(flags)
    weight = (
        np.ones(n_found)
        if intensities is None
        else np.clip(np.nan_to_num(np.asarray(intensities, float).reshape(-1)), 0, None)
    )
    return {
        "kind": "lattice",
        "n_found": n_found,
        "n_on_site": int(on.sum()),
        "on_site_fraction": float(on.mean()) if n_found else float("nan"),
        "on_site_intensity_fraction": float(weight[on].sum() / weight.sum())
        if weight.sum() > 0
        else float("nan"),
        "rms_misfit_nn": float(np.sqrt(np.mean(misfit[on] ** 2)) / nn_A)
        if on.any()
        else float("nan"),
        "n_cells": int(len({(int(i), int(j)) for i, j in cells})),
    }


def fit_quality(flags, amplitude, amplitude_err, width_px) -> dict:
    """How many fitted columns are real peaks (for images without a material).

    Parameters
    ----------
    flags : array_like of str, shape (N,)
        Fit flag of each column ("" for a good fit).
    amplitude, amplitude_err : array_like, shape (N,)
        Fitted peak height and its standard error (image units).
    width_px : array_like, shape (N,)
        Fitted width (sigma) of each column, px.

    Returns
    -------
    dict
        ``kind`` ("fit"), ``n_columns``, ``n_significant`` and ``significant_fraction``:
        columns with no flag and amplitude > :data:`SIGNIFICANCE` x its standard error;
        ``width_px``, the median width (NaN without columns).
    """
    flags = np.asarray(flags, dtype=object).reshape(-1)
    a = np.asarray(amplitude, float).reshape(-1)
    e = np.asarray(amplitude_err, float).reshape(-1)
    with np.errstate(invalid="ignore"):
        significant = (flags == "") & (a > 0) & (a > SIGNIFICANCE * e)
    n = len(flags)
    width = np.asarray(width_px, float).reshape(-1)
    return {
        "kind": "fit",
        "n_columns": int(n),
        "n_significant": int(significant.sum()),
        "significant_fraction": float(significant.mean()) if n else float("nan"),
        "width_px": float(np.nanmedian(width)) if np.isfinite(width).any() else float("nan"),
    }


def check_quality(quality: dict, thresholds) -> dict:
    """Compare a quality record with its thresholds; raise if the gate fails.

    Parameters
    ----------
    quality : dict
        From :func:`lattice_quality` or :func:`fit_quality`.
    thresholds : stemqd.config.QualityConfig
        ``gate``, ``min_on_site_intensity_fraction``, ``max_rms_misfit_nn``, ``min_cells``,
        ``min_significant_fraction``, ``min_columns``.

    Returns
    -------
    dict
        ``quality`` with ``thresholds``, ``passed`` and ``reasons`` (one text per measure
        below its threshold) added.

    Raises
    ------
    LatticeQualityError
        When a measure is below its threshold and ``thresholds.gate`` is true; the
        message names every failed measure with its value and threshold.
    """
    t = thresholds
    if quality["kind"] == "lattice":
        limits = {
            "on_site_intensity_fraction": t.min_on_site_intensity_fraction,
            "rms_misfit_nn": t.max_rms_misfit_nn,
            "n_cells": t.min_cells,
        }
        tests = [
            (
                not quality["on_site_intensity_fraction"] >= t.min_on_site_intensity_fraction,
                f"{quality['on_site_intensity_fraction']:.0%} of the intensity of the "
                f"{quality['n_found']} found columns lies on lattice sites (at least "
                f"{t.min_on_site_intensity_fraction:.0%} needed; {quality['n_on_site']} "
                f"columns on sites)",
            ),
            (
                not quality["rms_misfit_nn"] <= t.max_rms_misfit_nn,
                f"their rms distance to the sites is {quality['rms_misfit_nn']:.3f} "
                f"nearest-neighbour distances (at most {t.max_rms_misfit_nn:g} allowed)",
            ),
            (
                quality["n_cells"] < t.min_cells,
                f"they occupy {quality['n_cells']} unit cell(s) (at least {t.min_cells} needed)",
            ),
        ]
        what = "the found columns do not form the projected lattice"
    else:
        limits = {
            "significant_fraction": t.min_significant_fraction,
            "n_columns": t.min_columns,
            "width_px": t.min_width_px,
        }
        tests = [
            (
                not quality["significant_fraction"] >= t.min_significant_fraction,
                f"{quality['significant_fraction']:.0%} of the {quality['n_columns']} fitted "
                f"columns have a clean fit with an amplitude above {SIGNIFICANCE:g} standard "
                f"errors (at least {t.min_significant_fraction:.0%} needed)",
            ),
            (
                quality["n_columns"] < t.min_columns,
                f"{quality['n_columns']} columns were fitted (at least {t.min_columns} needed)",
            ),
            (
                not quality.get("width_px", np.nan) >= t.min_width_px,
                f"the fitted column width is {quality.get('width_px', np.nan):.2f} px (at least "
                f"{t.min_width_px:g} px needed: narrower, the fit has collapsed onto single "
                "noisy pixels)",
            ),
        ]
        what = "the found peaks are not atomic columns"
    reasons = [text for failed, text in tests if failed]
    out = {**quality, "thresholds": limits, "passed": not reasons, "reasons": reasons}
    if reasons and t.gate:
        raise LatticeQualityError(
            f"{what}: {'; '.join(reasons)}. Is this an image of the crystal "
            f"(not noise, support or vacuum), with the right pixel size and material? "
            f"The measures are explained in the README (Quality gate); "
            f"--set quality.gate=false reports the result anyway",
            quality=out,
        )
    return out
