"""Column intensities of a series for synthetic images: cubic perovskite dots
(:func:`stemqd.simulation.synthetic.perovskite_dot`) and any projected cell
(:func:`stemqd.simulation.synthetic.crystal_stack`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .files import check_series, read_series
from .structure import COLUMN_PREFIX, column_prefixes

_SUFFIX = {"volume": "_volume_A2", "peak": "_peak", "disc": "_disc_A2"}


def series_amplitudes(series, *, method: str = "volume", relative_to: str | None = "BX"):
    """Turn a thickness series into an ``amplitudes`` callable for synthetic dots.

    Incoherent-imaging approximation: every column of a dot is drawn as if it were a column
    of an infinite crystal of the dot's thickness, so its amplitude is the series intensity
    of its type at ``thickness_uc`` (linear interpolation between tabulated thicknesses; no
    extrapolation). Cross-talk between columns, the finite lateral size of the dot, surface
    relaxation and the depth of a column below the side faces are ignored; a depleted shell
    is applied afterwards by :func:`stemqd.simulation.synthetic.perovskite_dot` (``shell_cells``,
    ``shell_factor``). ``perovskite_dot`` renders every column with the same width, so
    amplitudes proportional to the fitted volumes keep the simulated intensity ratios.

    Parameters
    ----------
    series : pandas.DataFrame or path
        A series written by :func:`write_series` (e.g.
        ``simulations/reference/cspbbr3_001_adf_series.csv``).
    method : {"volume", "peak", "disc"}
        Which measured intensity to use.
    relative_to : {"BX", "A", "X"} or None
        Normalise so that this type has amplitude 1 at every thickness (the convention of
        :data:`stemqd.simulation.synthetic.CSPBBR3_AMPLITUDES`); None keeps absolute values.

    Returns
    -------
    callable
        ``f(types, depth_uc, thickness_uc) -> ndarray`` of one amplitude per column.
    """
    table = read_series(series) if not isinstance(series, pd.DataFrame) else series
    check_series(table)
    suffix = _SUFFIX
    if method not in suffix:
        raise InputError(f"method must be volume, peak or disc, got {method!r}")
    if relative_to is not None and relative_to not in COLUMN_PREFIX:
        raise InputError(f"relative_to must be one of {list(COLUMN_PREFIX)} or None")
    t = table["thickness_uc"].to_numpy(float)
    curves = {
        typ: table[f"{p}{suffix[method]}"].to_numpy(float) for typ, p in COLUMN_PREFIX.items()
    }

    def amplitudes(types, depth_uc, thickness_uc):
        thickness = float(thickness_uc)
        if not t[0] <= thickness <= t[-1]:
            raise InputError(
                f"dot thickness {thickness:g} uc is outside the series ({t[0]:g}-{t[-1]:g} uc)"
            )
        value = {typ: float(np.interp(thickness, t, c)) for typ, c in curves.items()}
        norm = value[relative_to] if relative_to is not None else 1.0
        types = np.asarray(types)
        unknown = set(np.unique(types)) - set(value)
        if unknown:
            raise InputError(f"column types {sorted(unknown)} are not in the series")
        return np.array([value[x] / norm for x in types], float)

    return amplitudes


def series_column_amplitudes(
    series, thickness_uc: float, cell, *, method: str = "volume", relative_to: str | None = None
) -> dict:
    """Amplitude per column label of any series at one thickness, for
    :func:`stemqd.simulation.synthetic.crystal_stack` (``amplitudes=``).

    Same incoherent-imaging approximation as :func:`series_amplitudes`: every column is
    drawn with the series intensity of its type at ``thickness_uc`` (linear interpolation,
    no extrapolation); ``crystal_stack`` renders every column with the same width, so
    amplitudes proportional to the fitted volumes keep the simulated ratios.

    Parameters
    ----------
    series : pandas.DataFrame or path
        A series of the crystal and zone axis of ``cell`` (:func:`write_series`).
    thickness_uc : float
        Thickness in the series' units.
    cell : stemqd.columns.cell.ProjectedCell
        The projected cell to draw; its labels name the series' columns.
    method : {"volume", "peak", "disc"}
    relative_to : str, optional
        Label whose amplitude is 1; None keeps the absolute values (Å² for volume and disc).

    Returns
    -------
    dict
        ``{label: amplitude}`` for every label of ``cell``.
    """
    table = read_series(series) if not isinstance(series, pd.DataFrame) else series
    check_series(table)
    if method not in _SUFFIX:
        raise InputError(f"method must be volume, peak or disc, got {method!r}")
    t = table["thickness_uc"].to_numpy(float)
    if not t[0] <= float(thickness_uc) <= t[-1]:
        raise InputError(f"thickness {thickness_uc:g} is outside the series ({t[0]:g}-{t[-1]:g})")
    prefixes = column_prefixes(cell.labels)
    missing = [lab for lab, p in prefixes.items() if f"{p}{_SUFFIX[method]}" not in table]
    if missing:
        raise InputError(
            f"the series has no columns for {missing} of the {cell.name} projection: was it "
            "simulated for this crystal and zone axis?"
        )
    value = {
        lab: float(np.interp(float(thickness_uc), t, table[f"{p}{_SUFFIX[method]}"]))
        for lab, p in prefixes.items()
    }
    if relative_to is not None:
        if relative_to not in value:
            raise InputError(f"relative_to must be one of {list(value)} or None")
        norm = value[relative_to]
        value = {lab: v / norm for lab, v in value.items()}
    return value


__all__ = ["series_amplitudes", "series_column_amplitudes"]
