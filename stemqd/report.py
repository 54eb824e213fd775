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
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .files import atomic_write_bytes, atomic_write_text

__all__ = [
    "SITE_COLOURS",
    "overlay_figure",
    "write_stack_figures",
    "depth_profile_figure",
    "compare_figure",
    "figure_png",
    "write_report",
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
    excluded = ~outside & ~np.isin(flag, ["", "edge margin"])

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
    """Write ``overlay.png`` of one processed stack into `folder`.

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


def _ratio_text(r: dict) -> str:
    if not r or r.get("ratio") is None or not np.isfinite(float(r["ratio"])):
        return "ratio: not measured"
    conf = r.get("confidence") or 0.95
    lo, hi = (r.get(k) for k in ("ci_low", "ci_high"))
    ci = (
        f" [{float(lo):.3f}, {float(hi):.3f}] ({conf:.0%} CI)"
        if lo is not None and hi is not None
        else ""
    )
    return f"{r.get('numerator')}:{r.get('denominator')} = {float(r['ratio']):.3f}{ci}"


def _stack_title(name: str, summary: dict) -> str:
    edges = [e for e in ((summary.get("dot") or {}).get("edge_lengths_nm") or []) if e]
    dot = f", dot {' x '.join(f'{e:.1f}' for e in edges)} nm" if edges else ""
    return f"{name}: {_ratio_text(summary.get('ratio') or {})}{dot}"


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
    """
    df = pd.DataFrame(records)
    fig = _figure((5.0, 3.4))
    ax = fig.add_subplot()
    label = "ratio"
    if ratio and ratio.get("numerator"):
        label = f"{ratio['numerator']} : {ratio['denominator']} ratio"
    if ratio and ratio.get("ratio") is not None:
        ax.axhline(ratio["ratio"], color="#0072B2", lw=1, label="whole dot")
        if ratio.get("ci_low") is not None and ratio.get("ci_high") is not None:
            ax.axhspan(
                ratio["ci_low"],
                ratio["ci_high"],
                color="#0072B2",
                alpha=0.15,
                label=f"{(ratio.get('confidence') or 0.95):.0%} CI",
            )
    if not df.empty and "ratio" in df:
        df = df.astype({"ratio": float, "stderr": float})
        ok = np.isfinite(df["ratio"].to_numpy())
        d = df[ok]
        ax.errorbar(
            d["depth_uc"],
            d["ratio"],
            yerr=d["stderr"].fillna(0.0),
            fmt="o-",
            color="#D55E00",
            ms=5,
            capsize=3,
            label="per depth (± s.e.)",
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
    ax.set_title("numbers: columns per depth (numerator/denominator)", fontsize=8, color="#555555")
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
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
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


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _versions_text(versions: dict | None) -> str:
    if not versions:
        return "unknown"
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None)


def _process_report(folder: Path, doc: _Doc) -> str:
    from .batch import collect_results, read_summary

    run = _read_json(folder / "run.json") or {}
    table = pd.read_csv(folder / "summary.csv") if (folder / "summary.csv").is_file() else None
    try:
        rows = collect_results(folder)
    except InputError:
        rows = pd.DataFrame(columns=["name", "status"])
    failures = table[table["status"] == "failed"] if table is not None else pd.DataFrame()

    title = f"stemqd process report: {folder.name}"
    doc.heading(title, 1)
    counts = run.get("counts") or {}
    doc.para(
        f"Folder {folder.resolve()} · {len(rows)} stack(s) with results"
        + (
            f" · this run: {counts.get('processed', 0)} processed, {counts.get('skipped', 0)} "
            f"reused, {counts.get('failed', 0)} failed"
            if counts
            else ""
        )
        + (f" · started {run['started_utc']}" if run.get("started_utc") else ""),
        cls="meta",
    )
    summaries = {n: read_summary(folder / n) or {} for n in rows["name"]}
    hashes = sorted({s.get("config_hash") for s in summaries.values() if s.get("config_hash")})
    versions = next(
        (s.get("versions") for s in summaries.values() if s.get("versions")), run.get("versions")
    )
    doc.para(
        f"Config hash: {', '.join(hashes) or run.get('config_hash', 'unknown')} · "
        f"versions: {_versions_text(versions)}",
        cls="meta",
    )
    if run.get("command"):
        doc.para(f"Command: {run['command']}", cls="meta")
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
        doc.table(shown, left=("name", "status", "ratio of"))
        r = rows["ratio"].astype(float)
        r = r[np.isfinite(r)]
        if len(r) > 1:
            doc.para(
                f"Per-dot ratio over {len(r)} dots: mean {r.mean():.4f}, standard deviation "
                f"{r.std(ddof=1):.4f}."
            )
    else:
        doc.para("No stack has results.")

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
        inp = s.get("input") or {}
        doc.para(
            f"{_ratio_text(s.get('ratio') or {})} · input {inp.get('path', '?')} "
            f"(SHA-256 {str(inp.get('sha256', '?'))[:16]}…, {inp.get('frames', '?')} frames "
            f"of {' x '.join(str(v) for v in inp.get('shape', []))} px, "
            f"{_fmt(s.get('pixel_size_A'), 4)} Å/px from {inp.get('pixel_size_source', '?')})",
            cls="meta",
        )
        doc.raw_html("<div class='stack'>")
        if (sub / "overlay.png").is_file():
            doc.figure_file(sub / "overlay.png", f"{name} overlay", cls="overlay")
        doc.raw_html("<div class='side'>")
        depth = s.get("ratio_by_depth") or []
        if depth:
            png = figure_png(depth_profile_figure(depth, s.get("ratio")), dpi=100)
            doc.figure_bytes(png, f"{name}_depth.png", f"{name} ratio by depth")
        per_type = s.get("per_type") or {}
        if per_type:
            pt = pd.DataFrame(per_type).T.reset_index().rename(columns={"index": "column type"})
            doc.heading("Intensity per column type", 3)
            doc.table(pt, left=("column type",))
        spacing = s.get("spacing") or {}
        lat = s.get("lattice") or {}
        if spacing or lat:
            doc.heading("Lattice", 3)
            sp_rows = [
                {
                    "sublattice": k,
                    "a (nm)": v.get("spacing_a_nm_mean"),
                    "s.d. a": v.get("spacing_a_nm_std"),
                    "pairs a": v.get("n_pairs_a"),
                    "b (nm)": v.get("spacing_b_nm_mean"),
                    "s.d. b": v.get("spacing_b_nm_std"),
                    "pairs b": v.get("n_pairs_b"),
                }
                for k, v in spacing.items()
            ]
            if sp_rows:
                doc.table(pd.DataFrame(sp_rows), left=("sublattice",))
            if lat:
                doc.para(
                    f"Lattice fit: a = {_fmt(lat.get('a_A'), 4)} Å, b = {_fmt(lat.get('b_A'), 4)} Å "
                    f"(expected {_fmt(lat.get('expected_a_A'), 4)}, {_fmt(lat.get('expected_b_A'), 4)}), "
                    f"rotation {_fmt(lat.get('rotation_deg'), 3)}°, rms misfit "
                    f"{_fmt(lat.get('rms_misfit_A'), 2)} Å.",
                    cls="meta",
                )
        thick = s.get("thickness") or {}
        if thick.get("ranges_nm") is not None:
            ranges = (
                ", ".join(
                    f"{lo:.1f}-{hi:.1f} nm ({lo_uc:.1f}-{hi_uc:.1f} uc)"
                    for (lo, hi), (lo_uc, hi_uc) in zip(thick["ranges_nm"], thick["ranges_uc"])
                )
                or "none"
            )
            doc.para(
                f"Thickness consistent with the ratio under {thick.get('series')}: "
                f"{ranges}" + (f" ({thick['flag']})" if thick.get("flag") else ""),
                cls="meta",
            )
        cols = s.get("columns") or {}
        flags = cols.get("flags") or {}
        doc.para(
            f"Columns: {cols.get('total', '?')} found, {cols.get('used', '?')} used"
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


def _compare_report(folder: Path, doc: _Doc) -> str:
    data = _read_json(folder / "compare.json") or {}
    title = f"stemqd compare report: {' vs '.join(data.get('groups', {}))}"
    doc.heading(title, 1)
    doc.para(
        f"Folder {folder.resolve()} · created {data.get('created_utc', '?')} · "
        f"versions: {_versions_text(data.get('versions'))}",
        cls="meta",
    )
    for w in data.get("warnings") or []:
        doc.para(w, cls="warn")
    doc.heading("Groups")
    groups = pd.DataFrame(data.get("group_stats") or [])
    src = pd.DataFrame([{"group": g, "folder": p} for g, p in (data.get("groups") or {}).items()])
    if len(groups):
        doc.table(
            groups.merge(src, on="group", how="left"), left=("group", "config_hashes", "folder")
        )
    links = []
    for g, p in (data.get("groups") or {}).items():
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
    if (folder / "compare.png").is_file():
        doc.figure_file(folder / "compare.png", "per-dot ratios by group")
    doc.heading("Tests")
    tests = pd.DataFrame(data.get("tests") or [])
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
    dots = pd.DataFrame(data.get("dots") or [])
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
        doc.table(dots[cols], left=("group", "name", "config_hash"))
    return title


def write_report(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for a process or compare folder.

    Parameters
    ----------
    folder : str or path-like
        The ``--out`` folder of ``stemqd process`` (with ``summary.csv`` or stack result
        folders) or of ``stemqd compare`` (with ``compare.json``).

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
    elif (folder / "summary.csv").is_file() or any(
        (p / "summary.json").is_file() for p in folder.iterdir() if p.is_dir()
    ):
        title = _process_report(folder, doc)
    else:
        raise InputError(
            f"{folder}: not a 'stemqd process' or 'stemqd compare' output folder "
            "(no summary.csv, compare.json or <name>/summary.json)"
        )
    doc.para(
        f"Report written {datetime.now(timezone.utc).isoformat(timespec='seconds')} by "
        f"stemqd {_stemqd_version()}.",
        cls="meta",
    )
    return doc.write(title)


def _stemqd_version() -> str:
    from . import __version__

    return __version__
