"""Figures and reports of ``stemqd process`` and ``stemqd compare`` runs.

- :func:`overlay_figure` / :func:`write_stack_figures`: the processed image with every
  fitted column coloured by sublattice, flagged columns marked, the dot outline, a scale
  bar in nm and a legend (``OUT/<name>/overlay.png``).
- :func:`depth_profile_figure`: the intensity ratio versus depth below the dot surface.
- :func:`compare_figure`: the per-dot ratios of each group with their confidence intervals
  and the group mean and standard deviation.
- :func:`write_report`: one self-contained HTML page (figures embedded as base64 PNG) and a
  Markdown twin (figures as files beside it) for a process or a compare folder.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no
pyplot state), so they can be drawn in worker processes and threads; every file is written
atomically.
"""

from __future__ import annotations

import base64
import html
import io as _io
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .analysis.statistics import RatioEstimate, in_statistics
from .errors import InputError
from .files import atomic_write_bytes, atomic_write_text, read_json
from .summary import (
    BatchRun,
    ColumnCounts,
    CompareRecord,
    DotSummary,
    InputSummary,
    LatticeSummary,
    PerTypeSummary,
    SpacingSummary,
    ThicknessSummary,
    series_path,
)

__all__ = [
    "SITE_COLOURS",
    "overlay_figure",
    "write_stack_figures",
    "depth_profile_figure",
    "compare_figure",
    "group_depth_figure",
    "figure_png",
    "write_report",
    "MAP_CMAP",
    "column_intensity_map",
    "intensity_map_figure",
    "group_figure",
    "image_png",
    "read_dot",
    "count_map_figure",
    "ratio_thickness_figure",
    "thickness_distribution_figure",
]

#: Marker colours per sublattice (site); chosen to stay distinct on a grey-scale image and
#: for the common colour-vision deficiencies (Okabe-Ito palette).
SITE_COLOURS = {"A": "#56B4E9", "BX": "#E69F00", "X": "#009E73"}
_EXTRA_COLOURS = ["#CC79A7", "#F0E442", "#0072B2", "#D55E00"]
_FLAG_COLOUR = "#FF2D95"
_NICE_NM = (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _site_colours(sites) -> dict:
    colours, k = {}, 0
    for s in sites:
        if s in SITE_COLOURS:
            colours[s] = SITE_COLOURS[s]
        else:
            colours[s] = _EXTRA_COLOURS[k % len(_EXTRA_COLOURS)]
            k += 1
    return colours


def _scale_bar_nm(width_nm: float) -> float:
    """A round length near a fifth of the field of view, nm."""
    target = width_nm / 5
    return max([n for n in _NICE_NM if n <= target] or [_NICE_NM[0]])


def overlay_figure(
    image,
    columns: pd.DataFrame,
    pixel_size_A: float,
    *,
    title: str | None = None,
    dot_mask=None,
    marker_diameter_px: float | None = None,
):
    """The processed image with the fitted columns, coloured by sublattice.

    Parameters
    ----------
    image : array_like, 2-D
        The image the columns were fitted on.
    columns : pandas.DataFrame
        The column table of :func:`stemqd.pipeline.analyse_image` (``x_px``, ``y_px``,
        ``site``, ``label``, ``flag``).
    pixel_size_A : float
        Å per pixel, for the scale bar.
    title : str, optional
        Figure title.
    dot_mask : ndarray of bool, optional
        Segmented dot, drawn as an outline.
    marker_diameter_px : float, optional
        Marker circle diameter in image pixels; default 0.7 x the median nearest-neighbour
        distance of the columns.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Columns used in the statistics are open circles in their sublattice's colour. Columns
    inside the dot that are excluded (a failed or doubtful fit, an unassigned column) get a
    magenta cross on top; detections outside the dot are small grey plus signs.
    """
    from matplotlib.lines import Line2D
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    image = np.asarray(image, float)
    ny, nx = image.shape
    fig = _figure((7.0, 7.0 * ny / nx + 0.5))
    ax = fig.add_axes([0.0, 0.0, 1.0, 1.0 - 0.5 / (7.0 * ny / nx + 0.5)])
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [0.5, 99.8]) if finite.size else (0, 1)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(ny - 0.5, -0.5)
    ax.set_axis_off()

    x = columns["x_px"].to_numpy(float)
    y = columns["y_px"].to_numpy(float)
    flag = (
        columns["flag"].fillna("").astype(str).to_numpy()
        if "flag" in columns
        else np.full(len(x), "")
    )
    site = (
        columns["site"].fillna("").astype(str).to_numpy()
        if "site" in columns
        else np.full(len(x), "")
    )
    label = columns["label"].fillna("").astype(str).to_numpy() if "label" in columns else site
    outside = np.array(["outside dot" in f for f in flag], bool)
    excluded = ~outside & ~in_statistics(columns)

    if marker_diameter_px is None:
        from scipy.spatial import cKDTree

        pos = np.column_stack([x, y])
        nn = cKDTree(pos).query(pos, k=2)[0][:, 1] if len(pos) > 2 else np.array([10.0])
        marker_diameter_px = 0.7 * float(np.median(nn))
    # points per image pixel on this axes
    pt_per_px = ax.get_position().width * fig.get_figwidth() * 72 / nx
    size = (max(marker_diameter_px * pt_per_px, 3.0)) ** 2
    lw = float(np.clip(0.08 * np.sqrt(size), 0.6, 1.6))

    if dot_mask is not None and np.any(dot_mask):
        ax.contour(
            np.asarray(dot_mask, float),
            levels=[0.5],
            colors=["#FFFFFF"],
            linewidths=0.8,
            linestyles="dashed",
            alpha=0.7,
        )

    handles = []
    present = [s for s in dict.fromkeys(site[~outside]) if s]
    sites = [s for s in SITE_COLOURS if s in present] + [
        s for s in present if s not in SITE_COLOURS
    ]
    colours = _site_colours(sites)
    for s in sites:
        sel = (site == s) & ~outside
        names = pd.Series(label[sel]).value_counts()
        name = names.index[0] if len(names) else ""
        ax.scatter(x[sel], y[sel], s=size, facecolors="none", edgecolors=colours[s], linewidths=lw)
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                mfc="none",
                mec=colours[s],
                mew=1.5,
                ms=8,
                label=f"{s}: {name}  ({int(sel.sum())})"
                if name != s
                else f"{s}  ({int(sel.sum())})",
            )
        )
    unassigned = ~outside & (site == "")
    if unassigned.any():
        ax.scatter(
            x[unassigned],
            y[unassigned],
            s=size,
            facecolors="none",
            edgecolors="#BBBBBB",
            linewidths=lw,
        )
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                mfc="none",
                mec="#BBBBBB",
                mew=1.5,
                ms=8,
                label=f"unassigned  ({int(unassigned.sum())})",
            )
        )
    if excluded.any():
        ax.scatter(
            x[excluded], y[excluded], s=size * 0.6, marker="x", c=_FLAG_COLOUR, linewidths=lw * 1.3
        )
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="x",
                color=_FLAG_COLOUR,
                mew=2,
                ms=8,
                label=f"flagged, excluded  ({int(excluded.sum())})",
            )
        )
    if outside.any():
        ax.scatter(x[outside], y[outside], s=size * 0.6, marker="+", c="#9A9A9A", linewidths=lw)
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="+",
                color="#9A9A9A",
                mew=1.5,
                ms=8,
                label=f"outside dot  ({int(outside.sum())})",
            )
        )
    if dot_mask is not None and np.any(dot_mask):
        handles.append(Line2D([], [], color="#FFFFFF", ls="--", lw=1.0, label="dot outline"))
    # Below the image, so that it never hides a column.
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.005),
        ncol=min(3, len(handles)),
        fontsize=9,
        framealpha=1.0,
        facecolor="#2A2A2A",
        edgecolor="#2A2A2A",
        labelcolor="white",
        borderpad=0.6,
        handletextpad=0.4,
        columnspacing=1.5,
    )

    width_nm = nx * pixel_size_A / 10
    bar_nm = _scale_bar_nm(width_nm)
    bar = AnchoredSizeBar(
        ax.transData,
        bar_nm * 10 / pixel_size_A,
        f"{bar_nm:g} nm",
        "lower left",
        pad=0.6,
        sep=4,
        color="white",
        frameon=True,
        size_vertical=max(ny / 120, 1.0),
        fontproperties={"size": 11, "weight": "bold"},
    )
    bar.patch.set(facecolor="#000000", alpha=0.55, edgecolor="none")
    ax.add_artist(bar)
    if title:
        fig.suptitle(title, fontsize=11, y=0.995, va="top")
    return fig


def write_stack_figures(analysis, folder, name: str) -> None:
    """Write ``overlay.png``, ``intensity_map.png`` and ``image.png`` of one stack.

    ``image.png`` is the fitted image as an 8-bit grey PNG at its own pixel size (for the
    group figure of :func:`group_figure`); ``intensity_map.png`` is
    :func:`intensity_map_figure`.

    This is the ``render`` callback of :func:`stemqd.batch.run_batch`.

    Parameters
    ----------
    analysis : stemqd.pipeline.Analysis
    folder : path-like
        Destination folder.
    name : str
        Stack name, used in the title.
    """
    s = analysis.summary
    dot = analysis.extra.get("dot")
    fig = overlay_figure(
        analysis.images.get("final"),
        analysis.columns,
        float(s["pixel_size_A"]),
        title=_stack_title(name, s),
        dot_mask=getattr(dot, "mask", None),
    )
    atomic_write_bytes(Path(folder) / "overlay.png", figure_png(fig, dpi=110))
    atomic_write_bytes(Path(folder) / "image.png", image_png(analysis.images.get("final")))
    fig = intensity_map_figure(analysis.columns, s, title=f"{name}: column intensities")
    atomic_write_bytes(Path(folder) / "intensity_map.png", figure_png(fig, dpi=110))
    for png, filename, _ in _counting_figures(analysis.columns, s, name):
        atomic_write_bytes(Path(folder) / filename, png)


def _has_counts(columns: pd.DataFrame) -> bool:
    return "count" in columns and bool(
        pd.to_numeric(columns["count"], errors="coerce").notna().any()
    )


def _dot_thickness(columns: pd.DataFrame, summary: dict) -> dict:
    """:func:`~stemqd.analysis.column_thickness.dot_thickness` of a counted result folder.

    The thickness is ``count_library`` where the pipeline counted against a library (in unit
    cells), else ``count``; the series beside the ratio is the config's
    ``reference_series``, else ``counting.library`` (``series_note`` says why there is
    none where one is named but cannot be read)."""
    from .analysis.column_thickness import dot_thickness, series_ratio
    from .simulation.files import read_series

    ratio = RatioEstimate.from_dict(summary)
    num, den = (ratio.numerator, ratio.denominator) if ratio else (None, None)
    path = series_path(summary)
    reference, note = None, None
    if path and num and den:
        try:
            reference = series_ratio(read_series(path), num, den, name=str(path))
        except InputError as exc:
            note = f"no simulated series beside the ratio: {exc}"
    count = (
        "count_library"
        if "count_library" in columns and columns["count_library"].notna().any()
        else "count"
    )
    found = dot_thickness(
        columns, num, den, count=count, used=in_statistics(columns), reference=reference
    )
    return found | {"reference": reference, "series": path, "series_note": note}


def _counting_figures(columns: pd.DataFrame, summary: dict, name: str) -> list:
    """``(png, filename, alt)`` of the thickness map, the thickness distribution and the
    ratio against counted thickness of a result with counts (none without)."""
    if not _has_counts(columns):
        return []
    pixel = float(summary.get("pixel_size_A") or 1.0)
    found = _dot_thickness(columns, summary)
    shown = columns.assign(count=columns[found["count"]])
    out = [
        (
            figure_png(count_map_figure(shown, pixel, title=f"{name}: counted thickness map")),
            "thickness_map.png",
            f"{name} thickness map",
        ),
        (
            figure_png(
                thickness_distribution_figure(found["distribution"], title=f"{name}: thickness")
            ),
            "thickness_distribution.png",
            f"{name} thickness distribution",
        ),
    ]
    if found["ratio"] is not None and len(found["ratio"]):
        ratio = RatioEstimate.from_dict(summary)
        fig = ratio_thickness_figure(
            found["ratio"],
            found["reference"],
            ratio_label=f"{ratio.numerator}:{ratio.denominator}",
            binned_by=found["binned_by"],
            title=f"{name}: ratio of the local cells against counted thickness",
        )
        out.append((figure_png(fig), "ratio_by_thickness.png", f"{name} ratio by thickness"))
    return out


# --------------------------------------------------------------------------------------
# Column-intensity maps (the study's Supplementary Figures 11-12)

#: Colour map of the intensity maps: perceptually uniform and readable with the common
#: colour-vision deficiencies.
MAP_CMAP = "viridis"


def column_intensity_map(columns: pd.DataFrame, summary: dict | None = None) -> pd.DataFrame:
    """The used columns' fitted intensities, normalised to the brightest one.

    Parameters
    ----------
    columns : pandas.DataFrame
        A ``columns.csv`` table: ``x_px``, ``y_px``, ``label``, ``flag`` and ``intensity``
        (the measure the ratio uses; ``volume`` where it is absent).
    summary : dict, optional
        The stack's ``summary.json``: its ratio's numerator and denominator name the
        sublattices shown (e.g. Cs and PbBr); without them, every labelled sublattice.

    Returns
    -------
    pandas.DataFrame
        ``x_px``, ``y_px``, ``label`` and ``value`` (intensity / the largest intensity of
        the columns returned, so the brightest is 1), for the used columns of those
        sublattices with a finite intensity, in the sublattices' order. ``attrs["labels"]``
        lists the sublattices.
    """
    measure = "intensity" if "intensity" in columns else "volume"
    empty = pd.DataFrame(columns=["x_px", "y_px", "label", "value"])
    empty.attrs["labels"] = []
    if measure not in columns or "label" not in columns or columns.empty:
        return empty
    used = columns[in_statistics(columns)]
    label = used["label"].fillna("").astype(str)
    ratio = RatioEstimate.from_dict(summary)
    labels = [ratio.numerator, ratio.denominator] if ratio else [None, None]
    if not all(labels) or not set(labels) <= set(label):
        # every labelled sublattice, in the order of the sites (A, BX, X, others)
        site = used["site"].fillna("").astype(str) if "site" in used else label
        rank = {s: k for k, s in enumerate(SITE_COLOURS)}
        first = dict(zip(label[::-1], site[::-1]))  # each label's site (its first row)
        labels = sorted((s for s in first if s), key=lambda s: rank.get(first[s], len(rank)))
    value = pd.to_numeric(used[measure], errors="coerce").to_numpy(float)
    keep = label.isin(labels).to_numpy() & np.isfinite(value) & (value > 0)
    if not keep.any():
        return empty
    out = pd.DataFrame(
        {
            "x_px": used["x_px"].to_numpy(float)[keep],
            "y_px": used["y_px"].to_numpy(float)[keep],
            "label": label.to_numpy()[keep],
            "value": value[keep] / value[keep].max(),
        }
    )
    out["order"] = out["label"].map({s: k for k, s in enumerate(labels)})
    out = out.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)
    out.attrs["labels"] = [s for s in labels if (out["label"] == s).any()]
    return out


def _map_window(data: pd.DataFrame, size_px=None) -> tuple[float, float, float, float, float]:
    """Crop (x0, x1, y0, y1) in px around the columns and the column spacing in px.

    One spacing (median nearest-neighbour distance over the shown columns) of margin, two
    below, where the scale bar goes, so that it hides no column. With `size_px` (width,
    height), the crop has that size, centred on the columns (equal scales in a group).
    """
    from scipy.spatial import cKDTree

    pos = data[["x_px", "y_px"]].to_numpy(float)
    nn = float(np.median(cKDTree(pos).query(pos, k=2)[0][:, 1])) if len(pos) > 2 else 10.0
    x0, y0 = pos.min(axis=0) - nn
    x1, y1 = pos.max(axis=0) + np.array([nn, 2.2 * nn])
    if size_px is not None:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1 = cx - size_px[0] / 2, cx + size_px[0] / 2
        y0, y1 = cy - size_px[1] / 2, cy + size_px[1] / 2
    return x0, x1, y0, y1, nn


def _add_scale_bar(ax, width_px: float, pixel_size_A: float, colour="black", size=9) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bar_nm = _scale_bar_nm(width_px * pixel_size_A / 10)
    bar = AnchoredSizeBar(
        ax.transData,
        bar_nm * 10 / pixel_size_A,
        f"{bar_nm:g} nm",
        "lower left",
        pad=0.3,
        sep=2,
        color=colour,
        frameon=False,
        size_vertical=max(width_px / 100, 0.5),
        fontproperties={"size": size},
    )
    ax.add_artist(bar)


def _draw_map(ax, data, label, window, norm, pixel_size_A):
    """One sublattice's columns as discs coloured by normalised intensity."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    x0, x1, y0, y1, nn = window
    d = data[data["label"] == label]
    discs = PatchCollection(
        [Circle((x, y), 0.42 * nn) for x, y in zip(d["x_px"], d["y_px"])],
        cmap=MAP_CMAP,
        norm=norm,
        edgecolors="none",
    )
    discs.set_array(d["value"].to_numpy(float))
    ax.add_collection(discs)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#F4F4F4")
    ax.set_title(f"{label} ({len(d)} columns)", fontsize=8)
    _add_scale_bar(ax, x1 - x0, pixel_size_A)
    return discs


def _map_norm(values):
    from matplotlib.colors import Normalize

    values = np.asarray(values, float)
    low = float(np.min(values)) if values.size else 0.0
    return Normalize(vmin=min(low, 0.999), vmax=1.0)


def intensity_map_figure(columns: pd.DataFrame, summary: dict, *, title: str | None = None):
    """Per-dot column-intensity map: one panel per sublattice, one shared colour scale.

    Each used column of the ratio's sublattices (e.g. Cs and PbBr) is a disc at its fitted
    position, coloured by its fitted intensity normalised to the brightest column of the
    dot; the panels share the colour scale and colour bar, each has a scale bar, and the
    dot's ratio is written below, as in the study's Supplementary Figures 11-12.

    Parameters
    ----------
    columns : pandas.DataFrame
        The stack's ``columns.csv``.
    summary : dict
        The stack's ``summary.json`` (``pixel_size_A``, ``ratio``).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = column_intensity_map(columns, summary)
    labels = data.attrs["labels"]
    fig = _figure((0.6 + 3.1 * max(len(labels), 1), 3.9))
    if not labels:
        fig.text(0.5, 0.5, "no used column with a fitted intensity", ha="center")
        return fig
    pixel = float(summary.get("pixel_size_A") or 1.0)
    window = _map_window(data)
    norm = _map_norm(data["value"])
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    for ax, label in zip(axes, labels):
        discs = _draw_map(ax, data, label, window, norm, pixel)
    bar = fig.colorbar(discs, ax=list(axes), fraction=0.04, pad=0.02)
    bar.set_label("intensity / brightest column", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.text(0.45, 0.02, _ratio_text(summary), ha="center", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def group_figure(dots: Sequence[tuple[str, object, pd.DataFrame, dict]], *, per_row: int = 6):
    """A whole group in the study's layout: images on top, intensity maps below, ratio under.

    Parameters
    ----------
    dots : sequence of (name, image, columns, summary)
        Per dot: its name, the image the columns were fitted on (2-D array, or None when
        absent), its ``columns.csv`` table and its ``summary.json``.
    per_row : int
        Dots side by side; more dots continue in a further block below.

    Returns
    -------
    matplotlib.figure.Figure
        One column of panels per dot (the image, then one map per sublattice, each
        cropped to the dot), one colour scale over all maps (each dot normalised to its
        own brightest column), a scale bar in every panel and the ratio under each dot.
    """
    maps = [column_intensity_map(cols, s) for _, _, cols, s in dots]
    labels = list(dict.fromkeys(lab for m in maps for lab in m.attrs["labels"]))
    values = np.concatenate([m["value"].to_numpy(float) for m in maps] or [np.ones(1)])
    norm = _map_norm(values)
    n_rows = 1 + len(labels)
    blocks = [list(range(k, min(k + per_row, len(dots)))) for k in range(0, len(dots), per_row)]
    ncol = min(per_row, len(dots))
    cell = 2.1
    fig = _figure((0.8 + cell * ncol, (cell * n_rows + 0.55) * len(blocks) + 0.3))
    grid = fig.add_gridspec(len(blocks) * n_rows, ncol + 1, width_ratios=[1] * ncol + [0.07])
    discs = None
    # one crop size in Å for every dot, so that all panels share one length scale
    pixels = [float(s.get("pixel_size_A") or 1.0) for _, _, _, s in dots]
    windows = [_map_window(m) if len(m) else None for m in maps]
    size_A = np.max(
        [[(w[1] - w[0]) * p, (w[3] - w[2]) * p] for w, p in zip(windows, pixels) if w] or [[1, 1]],
        axis=0,
    )
    for b, block in enumerate(blocks):
        for c, k in enumerate(block):
            name, image, _, summary = dots[k]
            data = maps[k]
            pixel = float(summary.get("pixel_size_A") or 1.0)
            top = fig.add_subplot(grid[b * n_rows, c])
            top.set_xticks([])
            top.set_yticks([])
            top.set_title(name, fontsize=9)
            if len(data) == 0:
                top.text(0.5, 0.5, "no map", ha="center", transform=top.transAxes)
                continue
            window = _map_window(data, size_A / pixel)
            x0, x1, y0, y1, _ = window
            top.set_facecolor("black")
            if image is not None:
                img = np.asarray(image, float)
                lo, hi = np.nanpercentile(img, [0.5, 99.8])
                top.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                top.set_xlim(x0, x1)
                top.set_ylim(y1, y0)
                _add_scale_bar(top, x1 - x0, pixel, colour="white")
            else:
                top.text(0.5, 0.5, "no image.png", ha="center", transform=top.transAxes)
            for r, label in enumerate(labels, start=1):
                ax = fig.add_subplot(grid[b * n_rows + r, c])
                drawn = _draw_map(ax, data, label, window, norm, pixel)
                discs = drawn if len(data[data["label"] == label]) else discs
                if c == 0:
                    ax.set_ylabel(label, fontsize=9)
                if r == len(labels):
                    ax.set_xlabel(_short_ratio(summary), fontsize=9)
    if discs is not None:
        bar = fig.colorbar(discs, cax=fig.add_subplot(grid[1:n_rows, ncol]))
        bar.set_label("intensity / brightest column of the dot", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.subplots_adjust(wspace=0.08, hspace=0.28, left=0.03, right=0.93, top=0.95, bottom=0.06)
    return fig


def _short_ratio(summary: dict) -> str:
    """``Cs:PbBr 0.409 ± 0.001`` (ratio ± s.e. of a summary) for a figure label."""
    r = RatioEstimate.from_dict(summary)
    if r is None or not np.isfinite(r.ratio):
        return "ratio: not measured"
    se = f" ± {r.stderr:.3f}" if np.isfinite(r.stderr) else ""
    return f"{r.numerator}:{r.denominator} {r.ratio:.3f}{se}"


def image_png(image) -> bytes:
    """The image as an 8-bit grey PNG, one PNG pixel per image pixel (0.5-99.8 % stretch)."""
    from matplotlib.image import imsave

    img = np.asarray(image, float)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [0.5, 99.8]) if finite.size else (0.0, 1.0)
    buf = _io.BytesIO()
    imsave(
        buf,
        np.nan_to_num(img, nan=lo),
        cmap="gray",
        vmin=lo,
        vmax=max(hi, lo + 1e-12),
        format="png",
    )
    return buf.getvalue()


def read_dot(folder: str | os.PathLike) -> tuple[str, object, pd.DataFrame, dict] | None:
    """``(name, image, columns, summary)`` of one stack's result folder, for the figures.

    The image is ``image.png`` (grey, the fitted image; None when absent); None when the
    folder has no ``columns.csv`` or ``summary.json``.
    """
    from matplotlib.image import imread

    folder = Path(folder)
    summary = read_json(folder / "summary.json")
    if summary is None or not (folder / "columns.csv").is_file():
        return None
    try:
        columns = pd.read_csv(folder / "columns.csv")
    except (OSError, ValueError):
        return None
    for text in ("flag", "label", "site"):
        if text in columns:
            columns[text] = columns[text].fillna("").astype(str)
    image = None
    if (folder / "image.png").is_file():
        image = np.asarray(imread(folder / "image.png"), float)
        image = image[..., 0] if image.ndim == 3 else image
    return folder.name, image, columns, summary


def _fmt(value, digits=3, none="–") -> str:
    if value is None:
        return none
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(v):
        return none
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.4g}"


def _confidence(r: RatioEstimate) -> float:
    """The level of the ratio's interval (0.95 where an older summary lacks it)."""
    return r.confidence if np.isfinite(r.confidence) and r.confidence else 0.95


def _ratio_text(summary: dict) -> str:
    """``Cs:PbBr = 0.409 [0.405, 0.413] (95% CI)`` (the ratio of a summary) for a caption."""
    r = RatioEstimate.from_dict(summary)
    if r is None or not np.isfinite(r.ratio):
        return "ratio: not measured"
    ci = (
        f" [{r.ci_low:.3f}, {r.ci_high:.3f}] ({_confidence(r):.0%} CI)"
        if np.isfinite(r.ci_low) and np.isfinite(r.ci_high)
        else ""
    )
    return f"{r.numerator}:{r.denominator} = {r.ratio:.3f}{ci}"


def _stack_title(name: str, summary: dict) -> str:
    edges = [e for e in DotSummary.from_dict(summary).edge_lengths_nm or () if e]
    dot = f", dot {' x '.join(f'{e:.1f}' for e in edges)} nm" if edges else ""
    return f"{name}: {_ratio_text(summary)}{dot}"


def depth_profile_figure(records, ratio: dict | None = None):
    """The ratio of mean intensities versus depth below the dot surface.

    Parameters
    ----------
    records : list of dict or pandas.DataFrame
        ``ratio_by_depth`` of a summary: ``depth_uc``, ``ratio``, ``stderr``,
        ``n_numerator``, ``n_denominator``.
    ratio : dict, optional
        The whole-dot ratio (``ratio``, ``ci_low``, ``ci_high``, ``numerator``,
        ``denominator``), drawn as a line and band.

    Returns
    -------
    matplotlib.figure.Figure
        Depths with an s.e. have error bars; a depth where a sublattice has a single column
        has none (no s.e. from one column) and is drawn open and named in the legend. Each
        point is labelled with its numbers of columns.
    """
    df = pd.DataFrame(records)
    fig = _figure((5.0, 3.6))
    ax = fig.add_subplot()
    num, den = "numerator", "denominator"
    label = "ratio"
    ratio = RatioEstimate.from_dict(ratio)
    if ratio and ratio.numerator:
        num, den = ratio.numerator, ratio.denominator
        label = f"{num} : {den} ratio"
    if ratio and np.isfinite(ratio.ratio):
        ax.axhline(ratio.ratio, color="#0072B2", lw=1, label="whole dot")
        if np.isfinite(ratio.ci_low) and np.isfinite(ratio.ci_high):
            ax.axhspan(
                ratio.ci_low,
                ratio.ci_high,
                color="#0072B2",
                alpha=0.15,
                label=f"{_confidence(ratio):.0%} CI",
            )
    if not df.empty and "ratio" in df:
        df = df.astype({"ratio": float, "stderr": float})
        d = df[np.isfinite(df["ratio"].to_numpy())]
        has_se = np.isfinite(d["stderr"].to_numpy())
        ax.plot(d["depth_uc"], d["ratio"], "-", color="#D55E00", lw=1)
        ax.errorbar(
            d["depth_uc"][has_se],
            d["ratio"][has_se],
            yerr=d["stderr"][has_se],
            fmt="o",
            color="#D55E00",
            ms=5,
            capsize=3,
            label="per depth (± s.e.)",
        )
        if (~has_se).any():
            ax.plot(
                d["depth_uc"][~has_se],
                d["ratio"][~has_se],
                "o",
                mfc="white",
                mec="#D55E00",
                ms=6,
                label="a single column there: no s.e.",
            )
        for _, row in d.iterrows():
            ax.annotate(
                f"{int(row['n_numerator'])}/{int(row['n_denominator'])}",
                (row["depth_uc"], row["ratio"]),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=7,
                color="#555555",
            )
        ax.set_xticks(sorted(df["depth_uc"].astype(int).unique()))
        ax.margins(x=0.12)
    ax.set_xlabel("depth below surface (unit cells; 0 = outermost)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"labels: number of {num} / {den} columns at each depth", fontsize=8)
    fig.tight_layout()
    return fig


def group_depth_figure(depth: pd.DataFrame, ratio_label: str | None = None):
    """Group depth profiles: per depth, the mean ± s.e. of the dots' ratios, all groups.

    Parameters
    ----------
    depth : pandas.DataFrame
        ``group``, ``depth_uc``, ``n_dots``, ``mean``, ``sem`` (see
        :func:`stemqd.batch.compare_batches`), groups in display order.
    ratio_label : str, optional
        E.g. ``"Cs:PbBr"``.

    Returns
    -------
    matplotlib.figure.Figure
        A depth measured in a single dot of a group has no error bar (no s.e. from one
        dot), is drawn open and named in the legend; each point is labelled with its
        number of dots.
    """
    fig = _figure((5.6, 3.8))
    ax = fig.add_subplot()
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
    groups = list(dict.fromkeys(depth["group"])) if len(depth) else []
    single, handles = False, []
    for k, g in enumerate(groups):
        d = depth[(depth["group"] == g) & np.isfinite(depth["mean"].astype(float))]
        x = d["depth_uc"].to_numpy(float) + (k - (len(groups) - 1) / 2) * 0.08
        m, se = d["mean"].to_numpy(float), d["sem"].to_numpy(float)
        ok = np.isfinite(se)
        colour = palette[k % len(palette)]
        ax.plot(x, m, "-", color=colour, lw=1)
        handles.append(
            ax.errorbar(x[ok], m[ok], yerr=se[ok], fmt="o", color=colour, ms=5, capsize=3, label=g)
        )
        if (~ok).any():
            single = True
            ax.plot(x[~ok], m[~ok], "o", mfc="white", mec=colour, ms=6)
        for xi, mi, n in zip(x, m, d["n_dots"]):
            # labels of alternate groups above and below their points, so they never overlap
            ax.annotate(
                f"{int(n)}",
                (xi, mi),
                textcoords="offset points",
                xytext=(4, 5 - 16 * (k % 2)),
                fontsize=7,
                color=colour,
            )
    if single:
        handles += ax.plot([], [], "o", mfc="white", mec="#555555", label="one dot there: no s.e.")
    if len(depth):
        ax.set_xticks(sorted(depth["depth_uc"].astype(int).unique()))
    ax.margins(x=0.1)
    ax.set_xlabel("depth below surface (unit cells; 0 = outermost)")
    ax.set_ylabel(f"{ratio_label or 'intensity'} ratio")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title("mean ± s.e. over the dots of each group; labels: number of dots", fontsize=8)
    fig.tight_layout()
    return fig


def compare_figure(
    dots: pd.DataFrame,
    groups: pd.DataFrame,
    tests: pd.DataFrame | None = None,
    ratio_label: str | None = None,
):
    """Per-dot ratios by group, with each dot's CI and the group mean ± standard deviation.

    Parameters
    ----------
    dots : pandas.DataFrame
        ``group``, ``name``, ``ratio``, ``ci_low``, ``ci_high``.
    groups : pandas.DataFrame
        ``group``, ``mean``, ``std``, ``n`` in display order.
    tests : pandas.DataFrame, optional
        Pairwise tests (``group_a``, ``group_b``, ``welch_p``, ``permutation_p``); the
        p-values of adjacent groups are written between them.
    ratio_label : str, optional
        E.g. ``"Cs:PbBr"``, for the axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    order = list(groups["group"])
    fig = _figure((1.6 + 1.5 * len(order), 4.2))
    ax = fig.add_subplot()
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
    for k, g in enumerate(order):
        d = dots[dots["group"] == g].reset_index(drop=True)
        n = len(d)
        xs = k + (np.linspace(-0.18, 0.18, n) if n > 1 else np.zeros(n))
        r = d["ratio"].to_numpy(float)
        lo = d["ci_low"].to_numpy(float) if "ci_low" in d else np.full(n, np.nan)
        hi = d["ci_high"].to_numpy(float) if "ci_high" in d else np.full(n, np.nan)
        yerr = np.vstack([np.nan_to_num(r - lo), np.nan_to_num(hi - r)])
        ax.errorbar(
            xs,
            r,
            yerr=yerr,
            fmt="o",
            color=palette[k % len(palette)],
            ms=6,
            capsize=3,
            elinewidth=1.2,
            label=None,
        )
        row = groups[groups["group"] == g].iloc[0]
        if np.isfinite(row["mean"]):
            ax.hlines(row["mean"], k - 0.32, k + 0.32, color="black", lw=2)
            if np.isfinite(row.get("std", np.nan)):
                ax.errorbar(
                    k + 0.36,
                    row["mean"],
                    yerr=row["std"],
                    fmt="none",
                    ecolor="black",
                    capsize=5,
                    lw=1.5,
                )
            ax.annotate(
                f"{row['mean']:.3f} ± {_fmt(row.get('std'), 2)}",
                (k + 0.4, row["mean"]),
                fontsize=8,
                va="center",
            )
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{g}\n(n = {int(n)})" for g, n in zip(order, groups["n"])])
    ax.set_xlim(-0.6, len(order) - 0.2)
    ax.set_ylabel(f"{ratio_label or 'intensity'} ratio per dot")
    ax.grid(axis="y", alpha=0.3)
    if tests is not None and len(tests):
        top = ax.get_ylim()[1]
        span = np.diff(ax.get_ylim())[0]
        for k in range(len(order) - 1):
            t = tests[(tests["group_a"] == order[k]) & (tests["group_b"] == order[k + 1])]
            if t.empty or "welch_p" not in t or pd.isna(t.iloc[0].get("welch_p")):
                continue
            t = t.iloc[0]
            ax.annotate(
                f"Welch p = {_fmt(t['welch_p'], 2)}\nperm. p = {_fmt(t['permutation_p'], 2)}",
                (k + 0.5, top + 0.02 * span),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylim(ax.get_ylim()[0], top + 0.15 * span)
    ax.set_title("dots: ratio with its CI; black: group mean ± s.d.", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# Reports

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em}h2{border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:1.6em}
h3{margin-bottom:0.3em}
table{border-collapse:collapse;margin:8px 0 14px 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}tr.failed td{background:#fdecea}
.meta{color:#555;font-size:0.9em}.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px}
.stack{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.stack img.overlay{width:520px;max-width:100%;border:1px solid #ccc}
.stack .side{flex:1;min-width:320px}.stack .side img{max-width:100%}
img.wide,img.thumb{max-width:100%;border:1px solid #ddd}
code,pre{background:#f6f6f6;font-size:0.85em}pre{padding:8px;overflow-x:auto}
"""


def _b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _html_table(df: pd.DataFrame, left=(), row_class=None) -> str:
    head = "".join(
        f"<th class='{'l' if c in left else ''}'>{html.escape(str(c))}</th>" for c in df.columns
    )
    body = []
    for _, row in df.iterrows():
        cls = f" class='{row_class(row)}'" if row_class else ""
        cells = "".join(
            f"<td class='{'l' if c in left else ''}'>{html.escape(_cell(row[c]))}</td>"
            for c in df.columns
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([head, sep, *rows])


def _cell(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return _fmt(v, 4)
    return str(v)


class _Doc:
    """Builds the HTML and Markdown texts side by side (state: the two part lists)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = folder / "report_files"
        self.html: list[str] = []
        self.md: list[str] = []

    def heading(self, text, level=2, anchor=None):
        a = f" id='{html.escape(anchor)}'" if anchor else ""
        self.html.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}\n")

    def para(self, text, cls=None):
        c = f" class='{cls}'" if cls else ""
        self.html.append(f"<p{c}>{html.escape(text)}</p>")
        self.md.append(("> " if cls == "warn" else "") + text + "\n")

    def table(self, df, left=(), row_class=None):
        self.html.append(_html_table(df, left, row_class))
        self.md.append(_md_table(df) + "\n")

    def pre(self, text, summary=None):
        body = f"<pre>{html.escape(text)}</pre>"
        self.html.append(
            f"<details><summary>{html.escape(summary)}</summary>{body}</details>"
            if summary
            else body
        )
        self.md.append(
            (f"<details><summary>{summary}</summary>\n\n" if summary else "")
            + "```\n"
            + text.rstrip()
            + "\n```\n"
            + ("\n</details>\n" if summary else "")
        )

    def figure_bytes(self, png: bytes, filename: str, alt: str, cls=""):
        """Embed PNG bytes in the HTML and save them for the Markdown."""
        self.files.mkdir(exist_ok=True)
        atomic_write_bytes(self.files / filename, png)
        self.html.append(f"<img class='{cls}' alt='{html.escape(alt)}' src='{_b64(png)}'>")
        self.md.append(f"![{alt}](report_files/{filename})\n")

    def figure_file(self, path: Path, alt: str, cls=""):
        png = path.read_bytes()
        self.html.append(f"<img class='{cls}' alt='{html.escape(alt)}' src='{_b64(png)}'>")
        self.md.append(f"![{alt}]({path.relative_to(self.folder).as_posix()})\n")

    def raw_html(self, text):
        self.html.append(text)

    def write(self, title: str) -> tuple[Path, Path]:
        page = (
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(self.html)
            + "</body></html>\n"
        )
        html_path, md_path = self.folder / "report.html", self.folder / "report.md"
        atomic_write_text(html_path, page)
        atomic_write_text(md_path, "\n".join(self.md))
        return html_path, md_path


def _nm_to_A(value):
    """A length in nm in Å (None where it is None or NaN)."""
    return None if value is None or not np.isfinite(value) else 10.0 * float(value)


def _versions_text(versions: dict | None) -> str:
    if not versions:
        return "unknown"
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None)


def _counts(df: pd.DataFrame, columns) -> pd.DataFrame:
    """`columns` of `df` (those present) as integers, blank where missing."""
    df = df.copy()
    for c in columns:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    return df


def _group_dots(folder: Path, names) -> list:
    return [d for d in (read_dot(folder / str(n)) for n in names) if d is not None]


def _process_report(folder: Path, doc: _Doc) -> str:
    from .batch import collect_results, read_run, read_summary

    run = read_run(folder) or BatchRun()
    table = pd.read_csv(folder / "summary.csv") if (folder / "summary.csv").is_file() else None
    try:
        rows = collect_results(folder)
    except InputError:
        rows = pd.DataFrame(columns=["name", "status"])
    failures = table[table["status"] == "failed"] if table is not None else pd.DataFrame()

    title = f"stemqd process report: {folder.name}"
    doc.heading(title, 1)
    counts = run.counts or {}
    doc.para(
        f"Folder {folder.resolve()} · {len(rows)} stack(s) with results"
        + (
            f" · this run: {counts.get('processed', 0)} processed, {counts.get('skipped', 0)} "
            f"reused, {counts.get('failed', 0)} failed"
            if counts
            else ""
        )
        + (f" · started {run.started_utc}" if run.started_utc else ""),
        cls="meta",
    )
    summaries = {n: read_summary(folder / n) or {} for n in rows["name"]}
    hashes = sorted({s.get("config_hash") for s in summaries.values() if s.get("config_hash")})
    versions = next(
        (s.get("versions") for s in summaries.values() if s.get("versions")), run.versions
    )
    doc.para(
        f"Config hash: {', '.join(hashes) or run.config_hash or 'unknown'} · "
        f"versions: {_versions_text(versions)}",
        cls="meta",
    )
    if run.command:
        doc.para(f"Command: {run.command}", cls="meta")
    if len(hashes) > 1:
        doc.para(
            "The stacks in this folder were processed with different configs; compare "
            "their numbers with care.",
            cls="warn",
        )

    doc.heading("Summary")
    if len(rows):
        cols = [
            "name",
            "status",
            "ratio_label",
            "ratio",
            "ci_low",
            "ci_high",
            "n_numerator",
            "n_denominator",
            "dot_edge_nm",
            "lattice_a_A",
            "lattice_b_A",
        ]
        shown = rows[[c for c in cols if c in rows]].rename(
            columns={
                "ratio_label": "ratio of",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "n_numerator": "n num.",
                "n_denominator": "n den.",
                "dot_edge_nm": "dot edge (nm)",
                "lattice_a_A": "a (Å)",
                "lattice_b_A": "b (Å)",
            }
        )
        shown["status"] = shown["status"].replace({"skipped": "reused"})
        doc.table(_counts(shown, ["n num.", "n den."]), left=("name", "status", "ratio of"))
        r = rows["ratio"].astype(float)
        r = r[np.isfinite(r)]
        if len(r) > 1:
            doc.para(
                f"Per-dot ratio over {len(r)} dots: mean {r.mean():.4f}, standard deviation "
                f"{r.std(ddof=1):.4f}."
            )
    else:
        doc.para("No stack has results.")
    dots = _group_dots(folder, rows["name"])
    if dots:
        doc.heading("Images and column-intensity maps")
        doc.para(
            "Per dot: the fitted image (top) and each used column of the ratio's sublattices "
            "at its fitted position, coloured by its fitted intensity divided by the dot's "
            "brightest column (one colour scale for all); the ratio ± s.e. below.",
            cls="meta",
        )
        png = figure_png(group_figure(dots), dpi=90)
        doc.figure_bytes(png, "group_maps.png", "images and column-intensity maps", cls="wide")

    doc.heading("Failures")
    if len(failures):
        f = failures[["file", "error_class", "message"]].rename(columns={"error_class": "error"})
        doc.table(f, left=("file", "error", "message"), row_class=lambda _: "failed")
        doc.para(
            "Details (and tracebacks of unexpected errors) are in <name>/error.log.", cls="meta"
        )
    else:
        doc.para("None.")

    for name in rows["name"]:
        s = summaries[name]
        sub = folder / name
        doc.heading(name, 2, anchor=f"stack-{name}")
        inp = InputSummary.from_dict(s)
        doc.para(
            f"{_ratio_text(s)} · input {inp.path or '?'} "
            f"(SHA-256 {(inp.sha256 or '?')[:16]}…, {inp.frames or '?'} frames "
            f"of {' x '.join(str(v) for v in inp.shape or ())} px, "
            f"{_fmt(s.get('pixel_size_A'), 4)} Å/px from {inp.pixel_size_source or '?'})",
            cls="meta",
        )
        doc.raw_html("<div class='stack'>")
        if (sub / "overlay.png").is_file():
            doc.figure_file(sub / "overlay.png", f"{name} overlay", cls="overlay")
        doc.raw_html("<div class='side'>")
        if (sub / "intensity_map.png").is_file():
            doc.figure_file(sub / "intensity_map.png", f"{name} column-intensity map")
        else:
            dot = read_dot(sub)
            if dot is not None:
                fig = intensity_map_figure(dot[2], s, title=f"{name}: column intensities")
                doc.figure_bytes(figure_png(fig, dpi=100), f"{name}_map.png", f"{name} map")
        depth = s.get("ratio_by_depth") or []
        if depth:
            png = figure_png(depth_profile_figure(depth, s.get("ratio")), dpi=100)
            doc.figure_bytes(png, f"{name}_depth.png", f"{name} ratio by depth")
        per_type = PerTypeSummary.from_dict(s)
        if per_type:
            pt = pd.DataFrame(
                [{"column type": label, **stats.to_dict()} for label, stats in per_type.items()]
            )
            doc.heading("Intensity per column type", 3)
            doc.table(_counts(pt, ["count"]), left=("column type",))
        spacing = SpacingSummary.from_dict(s)
        lat = LatticeSummary.from_dict(s)
        if spacing or lat:
            doc.heading("Lattice", 3)
            # in Å, as the lattice fit below and the summary table (summary.json keeps nm)
            sp_rows = [
                {
                    "sublattice": k,
                    "a (Å)": _nm_to_A(v.spacing_a_nm_mean),
                    "s.d. a (Å)": _nm_to_A(v.spacing_a_nm_std),
                    "pairs a": v.n_pairs_a,
                    "b (Å)": _nm_to_A(v.spacing_b_nm_mean),
                    "s.d. b (Å)": _nm_to_A(v.spacing_b_nm_std),
                    "pairs b": v.n_pairs_b,
                }
                for k, v in spacing.items()
            ]
            if sp_rows:
                doc.table(
                    _counts(pd.DataFrame(sp_rows), ["pairs a", "pairs b"]), left=("sublattice",)
                )
            if lat:
                doc.para(
                    f"Lattice fit: a = {_fmt(lat.a_A, 4)} Å, b = {_fmt(lat.b_A, 4)} Å "
                    f"(expected {_fmt(lat.expected_a_A, 4)}, {_fmt(lat.expected_b_A, 4)}), "
                    f"rotation {_fmt(lat.rotation_deg, 3)}°, rms misfit "
                    f"{_fmt(lat.rms_misfit_A, 2)} Å.",
                    cls="meta",
                )
        _counting_section(doc, sub, name, s)
        thick = ThicknessSummary.from_dict(s)
        if thick is not None and thick.estimate is not None:
            doc.para(f"Thickness {thick}", cls="meta")
        cols = ColumnCounts.from_dict(s)
        flags = cols.flags or {}
        doc.para(
            f"Columns: {'?' if cols.total is None else cols.total} found, "
            f"{'?' if cols.used is None else cols.used} used"
            + (" · flags: " + ", ".join(f"{k} {v}" for k, v in flags.items()) if flags else ""),
            cls="meta",
        )
        doc.raw_html("</div></div>")

    config_text = (
        (folder / "config.toml").read_text() if (folder / "config.toml").is_file() else None
    )
    if config_text:
        doc.heading("Configuration")
        doc.pre(config_text, summary="effective config (TOML)")
    return title


def _counting_section(doc: _Doc, sub: Path, name: str, summary: dict) -> None:
    """Atom counting of one stack (``counting.enabled``): the thickness map, the thickness
    distribution and the ratio against counted thickness, with the per-type statistics."""
    dot = read_dot(sub)
    if dot is None or not _has_counts(dot[2]):
        return
    doc.heading("Atom counting", 3)
    found = _dot_thickness(dot[2], summary)
    rows = [
        {
            "column type": label,
            "counted": v["n_columns"],
            "mean": v["mean"],
            "s.d.": v["std"],
            "min": v["min"],
            "max": v["max"],
        }
        for label, v in found["stats"].items()
    ]
    doc.para(
        f"Thickness per column ({found['count']}: "
        + ("library, unit cells" if found["count"] == "count_library" else "mixture component")
        + ") of the columns the statistics use.",
        cls="meta",
    )
    doc.table(pd.DataFrame(rows), left=("column type",))
    if (sub / "thickness_map.png").is_file():  # drawn by 'process' (write_stack_figures)
        for filename in (
            "thickness_map.png",
            "thickness_distribution.png",
            "ratio_by_thickness.png",
        ):
            if (sub / filename).is_file():
                doc.figure_file(sub / filename, f"{name} {filename[:-4].replace('_', ' ')}")
    else:
        for png, filename, alt in _counting_figures(dot[2], summary, name):
            doc.figure_bytes(png, f"{name}_{filename}", alt)
    if found["ratio"] is not None and len(found["ratio"]):
        shown = (
            found["ratio"]
            .drop(columns=["ratio_std"])
            .rename(columns={"n_cells": "cells", "partner_count_mean": "partners' mean count"})
        )
        doc.raw_html(f"<details><summary>ratio by counted {found['binned_by']} thickness</summary>")
        doc.table(shown)
        doc.raw_html("</details>")
    if found["series_note"]:
        doc.para(found["series_note"], cls="warn")


def _compare_report(folder: Path, doc: _Doc) -> str:
    data = CompareRecord.from_dict(read_json(folder / "compare.json"))
    title = f"stemqd compare report: {' vs '.join(data.groups or {})}"
    doc.heading(title, 1)
    doc.para(
        f"Folder {folder.resolve()} · created {data.created_utc or '?'} · "
        f"versions: {_versions_text(data.versions)}",
        cls="meta",
    )
    for w in data.warnings or []:
        doc.para(w, cls="warn")
    doc.heading("Groups")
    groups = data.table("group_stats")
    src = pd.DataFrame([{"group": g, "folder": p} for g, p in (data.groups or {}).items()])
    if len(groups):
        doc.table(
            groups.merge(src, on="group", how="left"), left=("group", "config_hashes", "folder")
        )
    links = []
    for g, p in (data.groups or {}).items():
        page = Path(p) / "report.html"
        if page.is_file():
            rel = os.path.relpath(page, folder)
            links.append((g, rel))
    if links:
        doc.raw_html(
            "<p class='meta'>Per-stack reports: "
            + " · ".join(f"<a href='{html.escape(rel)}'>{html.escape(g)}</a>" for g, rel in links)
            + "</p>"
        )
        doc.md.append(
            "Per-stack reports: " + " · ".join(f"[{g}]({rel})" for g, rel in links) + "\n"
        )
    dots = data.table("dots")
    if len(groups) and len(dots):
        tests = data.table("tests")
        fig = compare_figure(dots, groups, tests, data.ratio_label)
        doc.figure_bytes(figure_png(fig, dpi=110), "compare.png", "per-dot ratios by group")
    depth = data.table("depth")
    if len(depth):
        doc.heading("Depth profiles")
        doc.para(
            "Per group and depth below the dot surface: the mean ± s.e. over the dots of their "
            "ratio at that depth (labels: number of dots). A depth seen in a single dot has no "
            "s.e. and is drawn open.",
            cls="meta",
        )
        fig = group_depth_figure(depth, data.ratio_label)
        doc.figure_bytes(figure_png(fig, dpi=110), "depth.png", "group depth profiles")
        shown = _counts(depth, ["n_dots", "n_numerator", "n_denominator"]).rename(
            columns={
                "depth_uc": "depth (uc)",
                "n_dots": "dots",
                "n_numerator": "n num.",
                "n_denominator": "n den.",
            }
        )
        doc.raw_html("<details><summary>table</summary>")
        doc.table(shown, left=("group",))
        doc.raw_html("</details>")
    thickness = data.table("thickness")
    if len(thickness):
        doc.heading("Counted thickness")
        doc.para(
            "Per group and column type: the fraction of the counted columns at each count "
            "(atom counting in 'process' with counting.enabled; the library thickness in unit "
            "cells where a dot was counted against a series), pooled over the group's dots; "
            "sem_dots is the standard error of the dots' mean counts.",
            cls="meta",
        )
        fig = thickness_distribution_figure(thickness)
        doc.figure_bytes(figure_png(fig, dpi=110), "thickness.png", "counted thickness by group")
        stats = data.table("thickness_stats")
        if len(stats):
            doc.table(
                _counts(stats, ["n_dots", "n_columns", "min", "max"]),
                left=("group", "label", "thickness_from"),
            )
    maps = [
        (g, _group_dots(Path(p), dots.loc[dots["group"] == g, "name"]) if len(dots) else [])
        for g, p in (data.groups or {}).items()
    ]
    if any(d for _, d in maps):
        doc.heading("Images and column-intensity maps")
        doc.para(
            "Thumbnails per group (each group's own report has them full size): the fitted "
            "image of each dot over its columns' fitted intensities, divided by the dot's "
            "brightest column.",
            cls="meta",
        )
        for g, group_dots in maps:
            if group_dots:
                doc.heading(g, 3)
                png = figure_png(group_figure(group_dots, per_row=8), dpi=55)
                doc.figure_bytes(
                    png,
                    f"maps_{re.sub(r'[^A-Za-z0-9._-]', '_', g)}.png",
                    f"{g}: intensity maps",
                    cls="thumb",
                )
    doc.heading("Tests")
    tests = data.table("tests")
    if len(tests):
        doc.para(
            "difference = mean(b) − mean(a); Welch's t-test, two-sided permutation test of the "
            "difference of means, Hedges' g, and a bootstrap CI of the difference"
            + ("; *_holm: Holm-adjusted over all pairs." if "welch_p_holm" in tests else "."),
            cls="meta",
        )
        # one column per pair of groups: the statistics read down, and the page stays narrow
        shown = tests.copy()
        shown.index = [f"{a} → {b}" for a, b in zip(shown.pop("group_a"), shown.pop("group_b"))]
        shown = shown.T.reset_index().rename(columns={"index": "statistic"})
        doc.table(shown, left=("statistic",))
    doc.heading("Dots")
    if len(dots):
        cols = [
            c
            for c in (
                "group",
                "name",
                "ratio",
                "ci_low",
                "ci_high",
                "n_numerator",
                "n_denominator",
                "dot_edge_nm",
                "lattice_a_A",
                "config_hash",
            )
            if c in dots
        ]
        doc.table(
            _counts(dots[cols], ["n_numerator", "n_denominator"]),
            left=("group", "name", "config_hash"),
        )
    return title


def write_report(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for a process, compare or sizes
    folder.

    Parameters
    ----------
    folder : str or path-like
        The ``--out`` folder of ``stemqd process`` (with ``summary.csv`` or stack result
        folders), of ``stemqd compare`` (with ``compare.json``) or of ``stemqd sizes``
        (with ``<name>/sizes.csv``).

    Returns
    -------
    html_path, md_path : Path
        The Markdown's figures are under ``folder/report_files/`` and the stacks' own
        ``overlay.png`` files.

    Raises
    ------
    InputError
        The folder is neither.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    doc = _Doc(folder)
    if (folder / "compare.json").is_file():
        title = _compare_report(folder, doc)
    elif _size_folders(folder):
        title = _sizes_report(folder, doc)
    elif (folder / "summary.csv").is_file() or any(
        (p / "summary.json").is_file() for p in folder.iterdir() if p.is_dir()
    ):
        title = _process_report(folder, doc)
    else:
        raise InputError(
            f"{folder}: not a 'stemqd process', 'compare' or 'sizes' output folder "
            "(no summary.csv, compare.json, <name>/summary.json or <name>/sizes.csv)"
        )
    doc.para(
        f"Report written {datetime.now(timezone.utc).isoformat(timespec='seconds')} by "
        f"stemqd {_stemqd_version()}.",
        cls="meta",
    )
    return doc.write(title)


def _size_folders(folder: Path) -> list[Path]:
    """The per-image folders of a ``stemqd sizes --out`` folder (they hold sizes.csv)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "sizes.csv").is_file())


def _sizes_report(folder: Path, doc: _Doc) -> str:
    """The report of a ``stemqd sizes`` folder: the size statistics per image and pooled."""
    from .analysis.sizes import summarize_sizes

    title = f"stemqd sizes report: {folder.name}"
    doc.heading(title, 1)
    rows, pooled = [], []
    for sub in _size_folders(folder):
        summary = read_json(sub / "summary.json") or {}
        table = pd.read_csv(sub / "sizes.csv", keep_default_na=False)
        measured = table.loc[table["flag"] == "", "edge_nm"].astype(float)
        pooled.append(measured.to_numpy())
        rows.append(_size_row(sub.name, summary, len(table)))
    if len(rows) > 1:
        everything = summarize_sizes(np.concatenate(pooled))
        rows.append(_size_row("all images", everything, sum(r["regions"] for r in rows)))
    doc.para(
        "Edge length of each square dot from its minimum-area rectangle; dots cut by the "
        "border and aggregates are excluded (their reasons are in each sizes.csv).",
        cls="meta",
    )
    doc.table(pd.DataFrame(rows), left=("image",))
    for sub in _size_folders(folder):
        if (sub / "sizes.png").is_file():
            doc.heading(sub.name, 2)
            doc.figure_file(sub / "sizes.png", f"{sub.name}: dots and size histogram")
    return title


def _size_row(name: str, summary: dict, regions: int) -> dict:
    def fmt(value, spec):
        return format(value, spec) if isinstance(value, (int, float)) else "n/a"

    return {
        "image": name,
        "dots measured": summary.get("n"),
        "regions": regions,
        "mean (nm)": fmt(summary.get("mean_nm"), ".2f"),
        "std (nm)": fmt(summary.get("std_nm"), ".2f"),
        "relative spread": fmt(summary.get("relative_spread"), ".3f"),
        "log-normal median (nm)": fmt(summary.get("lognormal_median_nm"), ".2f"),
        "log-normal sigma": fmt(summary.get("lognormal_sigma"), ".3f"),
    }


def _stemqd_version() -> str:
    from . import __version__

    return __version__


def count_map_figure(columns: pd.DataFrame, pixel_size_A: float, *, title: str | None = None):
    """Counted columns at their fitted positions, coloured by count (a thickness map).

    Columns of several types (``label``; ``stemqd process`` with ``counting.enabled``
    counts every type) are drawn one panel per type on one colour scale.

    Parameters
    ----------
    columns : pandas.DataFrame
        ``counts.csv`` of ``stemqd count`` or columns.csv of ``stemqd process``: ``x_px``,
        ``y_px``, ``count`` (missing where a column was not counted), optionally ``label``.
    pixel_size_A : float
        Å per pixel, for the scale bar.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import BoundaryNorm
    from matplotlib.patches import Circle

    counted = columns[pd.to_numeric(columns["count"], errors="coerce").notna()]
    counts = counted["count"].to_numpy(int)
    labels = (
        counted["label"].fillna("").astype(str).to_numpy()
        if "label" in counted
        else np.full(len(counted), "")
    )
    types = sorted(set(labels.tolist())) or [""]
    fig = _figure((0.9 + 4.3 * len(types), 4.4))
    axes = fig.subplots(1, len(types), squeeze=False)[0]
    if len(counted):
        window = _map_window(counted)
        x0, x1, y0, y1, nn = window
        lo, hi = int(counts.min()), int(counts.max())
        norm = BoundaryNorm(np.arange(lo - 0.5, hi + 1.5), 256)
        for ax, label in zip(axes, types):
            sel = labels == label
            discs = PatchCollection(
                [Circle((x, y), 0.42 * nn) for x, y in counted[["x_px", "y_px"]].to_numpy()[sel]],
                cmap="viridis",
                norm=norm,
            )
            discs.set_array(counts[sel].astype(float))
            ax.add_collection(discs)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y1, y0)
            _add_scale_bar(ax, x1 - x0, pixel_size_A)
            if len(types) > 1:
                ax.set_title(f"{label} ({int(sel.sum())} columns)", fontsize=8)
        ticks = np.unique(np.linspace(lo, hi, min(hi - lo + 1, 11)).round().astype(int))
        fig.colorbar(discs, ax=list(axes), label="count (atoms or cells per column)", ticks=ticks)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"counted columns: {len(counted)}", fontsize=9)
    return fig


_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def _weighted_stats(counts, weights):
    """Mean and standard deviation (ddof 1) of counts given with their multiplicities."""
    n = float(np.sum(weights))
    mean = float(np.sum(counts * weights) / n)
    var = float(np.sum(weights * (counts - mean) ** 2) / (n - 1)) if n > 1 else float("nan")
    return mean, np.sqrt(var)


def thickness_distribution_figure(table: pd.DataFrame, *, title: str | None = None):
    """Histogram of the counted thickness per column type (and per group, side by side).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`stemqd.analysis.column_thickness.thickness_distribution`'s table
        (``label``, ``count``, ``n_columns``, ``fraction``), optionally with ``group`` (then
        ``n_dots`` too, for the legend): each group's fractions are drawn as bars side by
        side, so groups of different sizes compare.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per type: the fraction of its counted columns at each count; the legend
        gives n, the mean and the standard deviation.
    """
    types = sorted(set(table["label"])) if len(table) else []
    fig = _figure((0.8 + 4.2 * max(len(types), 1), 3.6))
    axes = fig.subplots(1, max(len(types), 1), squeeze=False)[0]
    if not types:
        axes[0].text(0.5, 0.5, "no counted column", ha="center", transform=axes[0].transAxes)
    groups = list(dict.fromkeys(table["group"])) if "group" in table else [None]
    width = 0.8 / len(groups)
    for ax, label in zip(axes, types):
        for k, g in enumerate(groups):
            d = table[(table["label"] == label) & ((table["group"] == g) if g else True)]
            if d.empty:
                continue
            c, n = d["count"].to_numpy(float), d["n_columns"].to_numpy(float)
            mean, std = _weighted_stats(c, n)
            what = f"n = {int(n.sum())}"
            if g is not None and "n_dots" in d:
                what = f"{g}: {what} in {int(d['n_dots'].max())} dot(s)"
            ax.bar(
                c + (k - (len(groups) - 1) / 2) * width,
                d["fraction"],
                width=width,
                color=_PALETTE[k % len(_PALETTE)],
                alpha=0.85,
                label=f"{what}, {mean:.2f} ± {_fmt(std, 2)}",
            )
        ax.set_xlabel("count (repeats along the beam)")
        ax.set_ylabel("fraction of counted columns")
        ax.set_title(f"{label} columns", fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, 1.3 * float(table.loc[table["label"] == label, "fraction"].max()))
        ax.legend(fontsize=7, loc="upper left", title="mean ± s.d.", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ratio_thickness_figure(
    table: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    *,
    ratio_label: str | None = None,
    binned_by: str | None = None,
    title: str | None = None,
):
    """The measured ratio against counted thickness beside the simulated series.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`stemqd.analysis.column_thickness.ratio_by_thickness` (``count``,
        ``n_cells``, ``ratio``, ``ratio_sem``).
    reference : pandas.DataFrame, optional
        :func:`stemqd.analysis.column_thickness.series_ratio`: drawn as a line with its
        ± 1 s.e. band over the counted range.
    ratio_label : str, optional
        E.g. ``"Cs:PbBr"``.
    binned_by : str, optional
        The sublattice whose counts are on the x axis, for its label.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Points: mean ratio of the cells at each count ± s.e., labelled with their number; a
        count with a single cell has no s.e. and is drawn open. Crosses: ``expected_ratio``
        where the table has it (the series for those cells' own and neighbours' counts).
    """
    fig = _figure((5.6, 3.9))
    ax = fig.add_subplot()
    lo = int(table["count"].min()) if len(table) else 1
    hi = int(table["count"].max()) if len(table) else 1
    if reference is not None and len(reference):
        ref = reference[
            (reference["thickness_uc"] >= lo - 1) & (reference["thickness_uc"] <= hi + 1)
        ]
        t, r, e = (ref[k].to_numpy(float) for k in ("thickness_uc", "ratio", "ratio_err"))
        ax.plot(t, r, "-", color="0.3", lw=1.2, label="simulated series")
        ax.fill_between(t, r - e, r + e, color="0.3", alpha=0.15, lw=0, label="series ± s.e.")
    if len(table):
        d = table[np.isfinite(table["ratio"].to_numpy(float))]
        se = d["ratio_sem"].to_numpy(float)
        ok = np.isfinite(se)
        x, y = d["count"].to_numpy(float), d["ratio"].to_numpy(float)
        ax.errorbar(
            x[ok],
            y[ok],
            yerr=se[ok],
            fmt="o",
            color="#D55E00",
            ms=5,
            capsize=3,
            label="counted cells: mean ± s.e.",
        )
        if (~ok).any():
            ax.plot(
                x[~ok], y[~ok], "o", mfc="white", mec="#D55E00", ms=6, label="one cell: no s.e."
            )
        for xi, yi, n in zip(x, y, d["n_cells"]):
            ax.annotate(
                f"{int(n)}",
                (xi, yi),
                textcoords="offset points",
                xytext=(4, 5),
                fontsize=7,
                color="#555555",
            )
        if "expected_ratio" in d and np.isfinite(d["expected_ratio"].to_numpy(float)).any():
            ax.plot(
                x,
                d["expected_ratio"].to_numpy(float),
                "x",
                color="#0072B2",
                ms=6,
                label="series at the cells' own and neighbours' counts",
            )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(f"counted thickness of the {binned_by or 'binned'} columns (unit cells)")
    ax.set_ylabel(f"{ratio_label or 'A : BX'} ratio of the local cell")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "labels: number of cells at each count", fontsize=9)
    fig.tight_layout()
    return fig
