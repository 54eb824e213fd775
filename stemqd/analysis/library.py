"""Library counting: each column's thickness from a simulated cross-section series.

A column's normalised volume (``volume_norm``, Å², fraction of the incident beam; see
:mod:`stemqd.preprocess.normalise`) is compared with the cross-sections a multislice series
simulates for its column type against thickness (``<prefix>_volume_A2`` of a series CSV,
:func:`stemqd.simulation.files.read_series`); the column is assigned the thickness whose
cross-section is nearest (LeBeau et al., Nano Lett. 10 (2010) 4405; Van Aert et al., Phys.
Rev. B 87 (2013) 064107). The series is tabulated at a few thicknesses; it is
interpolated linearly to every whole number of repeats, through zero at zero thickness.
The uncertainty is the range of thicknesses whose cross-section lies within one standard
error of the volume; where that range is not contiguous (the series turns over, as the Cs
column's does beyond ~24 unit cells in CsPbBr3 [001]), the column is flagged ambiguous.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["count_from_library", "library_curve", "series_prefix"]


def series_prefix(label: str) -> str:
    """The series column prefix of a column label: lowercased, letters and digits only
    (``PbBr`` -> ``pbbr``, ``Cs`` -> ``cs``)."""
    return re.sub(r"[^a-z0-9]", "", str(label).lower())


def library_curve(series: pd.DataFrame, label: str, *, name: str = "series"):
    """Simulated cross-section of one column type at every whole thickness of the series.

    Parameters
    ----------
    series : pandas.DataFrame
        A thickness series (:func:`stemqd.simulation.files.read_series`).
    label : str
        Column label of columns.csv (``Cs``, ``PbBr``, ...).
    name : str
        The series' file name, for messages.

    Returns
    -------
    thickness : ndarray of int
        1, 2, ... up to the thickest tabulated thickness, in repeats (unit cells) along
        the beam.
    cross_section : ndarray
        Å², linear between tabulated thicknesses and from zero at zero thickness.

    Raises
    ------
    InputError
        The series has no cross-sections for this column type.
    """
    column = f"{series_prefix(label)}_volume_A2"
    if column not in series:
        have = sorted(c[: -len("_volume_A2")] for c in series.columns if c.endswith("_volume_A2"))
        raise InputError(
            f"{name}: no simulated cross-section {column!r} for column type {label!r}; it "
            f"has {', '.join(have) or 'none'}"
        )
    t = np.concatenate(([0.0], series["thickness_uc"].to_numpy(float)))
    cs = np.concatenate(([0.0], series[column].to_numpy(float)))
    thickness = np.arange(1, int(np.floor(t[-1])) + 1)
    return thickness, np.interp(thickness, t, cs)


def count_from_library(volume_norm, volume_norm_err, thickness, cross_section) -> pd.DataFrame:
    """Nearest library thickness of each column, with its one-standard-error range.

    Parameters
    ----------
    volume_norm, volume_norm_err : array_like, shape (n,)
        Normalised volumes and their standard errors, Å².
    thickness, cross_section : array_like
        The library of :func:`library_curve`.

    Returns
    -------
    pandas.DataFrame
        ``thickness_uc`` (nearest), ``thickness_low_uc`` and ``thickness_high_uc`` (the
        thicknesses whose cross-section is within one standard error, at least the
        nearest), ``library_residual_A2`` (volume minus the nearest cross-section) and
        ``library_flag`` (``""``, ``"ambiguous"`` for a non-contiguous range, ``"beyond
        library"`` for a volume more than one standard error above the largest
        cross-section).
    """
    v = np.asarray(volume_norm, float)[:, None]
    err = np.nan_to_num(np.asarray(volume_norm_err, float), nan=0.0)[:, None]
    cs = np.asarray(cross_section, float)[None, :]
    t = np.asarray(thickness)
    nearest = np.argmin(np.abs(v - cs), axis=1)
    within = np.abs(v - cs) <= err
    within[np.arange(len(v)), nearest] = True
    low = np.argmax(within, axis=1)
    high = within.shape[1] - 1 - np.argmax(within[:, ::-1], axis=1)
    contiguous = within.sum(axis=1) == high - low + 1
    beyond = v[:, 0] - err[:, 0] > cs.max()
    flag = np.where(beyond, "beyond library", np.where(contiguous, "", "ambiguous"))
    return pd.DataFrame(
        {
            "thickness_uc": t[nearest],
            "thickness_low_uc": t[low],
            "thickness_high_uc": t[high],
            "library_residual_A2": v[:, 0] - cs[0, nearest],
            "library_flag": flag,
        }
    )
