"""HyperSpy markers of fitted columns, for users who inspect results in HyperSpy."""

from __future__ import annotations

import numpy as np

#: Colours of the column labels in overlays and markers (matplotlib names); other labels
#: cycle through the default colour cycle.
LABEL_COLOURS = {
    "Cs": "tab:red",
    "PbBr": "tab:blue",
    "Br": "tab:green",
    "Sr": "tab:red",
    "TiO": "tab:blue",
    "O": "tab:green",
}


def column_markers(columns, *, size=8):
    """HyperSpy ``Points`` markers of a column table, coloured by label.

    The offsets are ``x_nm`` and ``y_nm``, matching the nm axes of
    :func:`stemqd.io.to_signal`; add them with ``signal.add_marker(markers)``.

    Parameters
    ----------
    columns : pandas.DataFrame
        A column table from :func:`stemqd.pipeline.analyse_image` (or ``columns.csv``).
    size : float
        Marker size in points.
    """
    from hyperspy.utils.markers import Points
    from matplotlib import colors

    labels = columns["label"].fillna("").astype(str).to_numpy()
    cycle = iter(f"C{k}" for k in range(3, 10))
    palette = dict(LABEL_COLOURS)
    for label in dict.fromkeys(labels):
        if label not in palette:
            palette[label] = "0.6" if label == "" else next(cycle, "k")
    rgba = np.array([colors.to_rgba(palette[label]) for label in labels])
    offsets = columns[["x_nm", "y_nm"]].to_numpy(float)
    return Points(offsets=offsets, sizes=size, color=rgba)


__all__ = ["LABEL_COLOURS", "column_markers"]
