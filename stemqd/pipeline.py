"""Composition of the pipeline stages: preprocessing, columns, statistics.

Every stage is a plain function of its own module; this module only chains them with the
parameters of one :class:`~stemqd.config.Config` and returns every intermediate, so that a
user (or the report) can inspect each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .align import align_frames
from .background import disk_radius_px, remove_background
from .cell import nearest_neighbour_A, parse_ratio, projected_cell
from .columns import find_columns
from .config import Config, config_hash, config_to_dict
from .deconvolve import deconvolve_blind
from .denoise import du_filter
from .dot import column_flags, edge_lengths_from_columns, segment_dot, surface_depth
from .errors import ConfigError, FitError
from .fit import refine_columns
from .lattice import peak_pair_spacing
from .probe import probe_psf
from .provenance import versions
from .statistics import intensity_ratio, ratio_by_depth, type_statistics, voronoi_cross_sections
from .sublattice import assign_sublattices


#: Column intensities ``analysis.intensity`` may name (columns of the column table).
INTENSITY_MEASURES = ("volume", "cross_section", "amplitude")

#: Stages reported to a ``progress`` callback, in order.
PIPELINE_STAGES = ("align", "background", "denoise", "deconvolve", "columns", "statistics")

#: A column inside the dot whose intensity is below this fraction of the median of its type
#: is flagged "weak" (a noise peak on a lattice site, not a column).
WEAK_FRACTION = 0.2


@dataclass
class Analysis:
    """Everything measured on one image.

    Attributes
    ----------
    columns : pandas.DataFrame
        One row per column (see :func:`analyse_image`).
    summary : dict
        JSON-ready numbers of the dot.
    images : dict of str to ndarray
        Intermediate images by stage name, in pipeline order.
    extra : dict
        Objects for plotting: the Dot, the LatticeFit, the PSFs, the depth profile.
    """

    columns: pd.DataFrame
    summary: dict
    images: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def cell_for(config: Config):
    """The projected cell of the configured material and zone axis."""
    m = config.material
    return projected_cell(m.name, tuple(m.zone_axis), lattice_constant_A=m.lattice_constant_A,
                          exponent=m.contrast_exponent)


def lattice_constant_A(cell) -> float:
    """Length of the projected cell's first in-plane vector, Å."""
    return float(np.hypot(*np.asarray(cell.vectors_A)[0]))


def preprocess(frames, pixel_size_A, config: Config, *, voltage_kv=None,
               convergence_mrad=None, progress=None):
    """Align, remove the background, denoise and deconvolve a frame series.

    Parameters
    ----------
    frames : array_like, shape (n, ny, nx) or (ny, nx)
    pixel_size_A : float
        Å per pixel.
    config : Config
    voltage_kv, convergence_mrad : float, optional
        From the file's metadata; the config's acquisition values otherwise.
    progress : callable, optional
        Called with each stage's name (:data:`PIPELINE_STAGES`) when it is done, whether
        the stage is enabled or not.

    Returns
    -------
    images : dict of str to ndarray
        ``average``, ``background``, ``background_removed``, ``denoised``,
        ``deconvolved`` (present for the enabled stages) and ``final``.
    info : dict
        ``shifts_px`` (n, 2), ``psf_initial``, ``psf`` (None without deconvolution) and the
        background radius in px.
    """
    frames = np.asarray(frames, dtype=np.float32)
    frames = frames[None] if frames.ndim == 2 else frames
    cell = cell_for(config)
    a_A = lattice_constant_A(cell)
    images, info = {}, {}
    tick = progress or (lambda stage: None)
    if config.align.enabled and len(frames) > 1:
        average, shifts = align_frames(frames, upsample_factor=config.align.upsample_factor,
                                       reference_iterations=config.align.reference_iterations)
    else:
        average, shifts = frames.mean(axis=0), np.zeros((len(frames), 2))
    images["average"] = average
    info["shifts_px"] = shifts
    tick("align")
    current = average
    if config.background.enabled:
        radius = config.background.radius_px or disk_radius_px(
            a_A, pixel_size_A, config.background.radius_lattice)
        current, background = remove_background(current, radius)
        images["background"] = background
        images["background_removed"] = current
        info["background_radius_px"] = float(radius)
    tick("background")
    if config.denoise.enabled:
        d = config.denoise
        current = du_filter(current, pixel_size_A, cutoff_inv_A=d.cutoff_inv_A,
                            cycles=d.cycles, delta_percent=d.delta_percent,
                            anscombe=d.anscombe)
        images["denoised"] = current
    tick("denoise")
    info["psf_initial"] = info["psf"] = None
    if config.deconvolve.enabled:
        p, dc = config.probe, config.deconvolve
        psf0 = probe_psf(pixel_size_A, voltage_kv or config.acquisition.voltage_kv,
                         convergence_mrad or config.acquisition.convergence_mrad,
                         defocus_A=p.defocus_A, cs_mm=p.cs_mm, source_size_A=p.source_size_A,
                         energy_spread_eV=p.energy_spread_eV, cc_mm=p.cc_mm,
                         half_width_A=dc.psf_half_width_A)
        current, psf = deconvolve_blind(current, psf0, iterations=dc.iterations,
                                        damping=dc.damping, readout=dc.readout,
                                        blind=dc.blind, pad_px=dc.pad_px)
        images["deconvolved"] = current
        info["psf_initial"], info["psf"] = psf0, psf
    tick("deconvolve")
    images["final"] = current
    return images, info


def analyse_image(image, pixel_size_A, config: Config, *, progress=None):
    """Find, fit and assign the columns of one preprocessed image, and measure the dot.

    Returns
    -------
    Analysis
        ``columns`` has, per column: ``x_px``, ``y_px``, ``x_nm``, ``y_nm``, the seven
        Gaussian parameters with standard errors, ``volume``, ``cross_section`` (Voronoi),
        ``intensity`` (the configured measure), ``label`` (composition, e.g. Cs, PbBr, Br),
        ``site`` (A, BX, X for a perovskite), cell indices ``i``, ``j``, ``misfit_A``,
        ``depth_uc`` (unit cells below the surface; -1 outside the dot) and ``flag``
        (fit, assignment and position flags joined by "; "; "" for a clean column).
        ``progress`` is called with "columns" after the fit and "statistics" at the end.
    """
    tick = progress or (lambda stage: None)
    image = np.asarray(image, dtype=np.float64)
    cell = cell_for(config)
    a_A = lattice_constant_A(cell)
    a_px = a_A / pixel_size_A
    nn_px = nearest_neighbour_A(cell) / pixel_size_A
    c = config.columns
    seeds = find_columns(image, min_separation_px=c.min_separation_nn * nn_px,
                         com_radius_px=c.com_radius_nn * nn_px, threshold_rel=c.threshold_rel)
    if len(seeds) < 4:
        raise FitError(f"only {len(seeds)} column(s) found; check the pixel size "
                       f"({pixel_size_A:.4g} Å) and the material ({config.material.name})")
    fit = refine_columns(image, seeds, radius_px=c.fit_radius_nn * nn_px, method=c.method,
                         max_iterations=c.max_iterations,
                         neighbour_iterations=c.neighbour_iterations,
                         tolerance_px=c.position_tolerance_px, errors=c.errors)
    tick("columns")
    pos = fit[["x_px", "y_px"]].to_numpy()
    fit["cross_section"] = voronoi_cross_sections(image, pos, max_radius_px=0.5 * a_px,
                                                  offsets=fit["offset"].to_numpy())
    dot = segment_dot(image, pixel_size_A, smoothing_px=config.dot.smoothing_lattice * 0.5 * a_px)
    position_flags = column_flags(pos, dot, margin_px=config.dot.edge_margin_lattice * a_px)
    inside = position_flags != "outside dot"
    if config.analysis.intensity not in INTENSITY_MEASURES:
        raise ConfigError(f"analysis.intensity must be one of {INTENSITY_MEASURES}, "
                          f"not {config.analysis.intensity!r}")
    fit["intensity"] = fit[config.analysis.intensity]
    assigned, lattice = assign_sublattices(pos[inside], fit["intensity"].to_numpy()[inside],
                                           pixel_size_A, cell)
    for name in ("label", "site", "i", "j", "misfit_A", "assign_flag"):
        default = "" if name in ("label", "site", "assign_flag") else np.nan
        col = np.full(len(fit), default, dtype=object if isinstance(default, str) else float)
        col[inside] = assigned[name].to_numpy()
        fit[name] = col
    # A noise peak on the support next to the dot can land on a lattice site; its intensity
    # is a small fraction of its type's, whereas even a strongly depleted column keeps far
    # more, so such columns are flagged (and kept out of the statistics).
    intensity = fit["intensity"].to_numpy()
    typical = fit[inside].groupby("label")["intensity"].median()
    weak = inside & (intensity < WEAK_FRACTION * fit["label"].map(typical).fillna(0).to_numpy())
    fit.loc[weak, "assign_flag"] = [
        "; ".join(f for f in (old, "weak") if f) for old in fit.loc[weak, "assign_flag"]]
    # The surface is the hull of the two sublattices of the ratio: they are found reliably,
    # whereas a weak column at the edge may be a noise peak that would push the hull out.
    numerator, denominator = parse_ratio(config.material.ratio, cell)
    frame = inside & ~weak & fit["label"].isin([numerator.label, denominator.label]).to_numpy() & (
        fit["flag"] == "").to_numpy()
    fit["depth_uc"] = surface_depth(pos, frame, a_px, others=inside,
                                    vectors_px=lattice.vectors_px)
    dot = replace(dot, edge_lengths_nm=edge_lengths_from_columns(pos[frame], lattice.vectors_px,
                                                                 pixel_size_A))
    fit["x_nm"] = fit["x_px"] * pixel_size_A / 10
    fit["y_nm"] = fit["y_px"] * pixel_size_A / 10
    fit["flag"] = [
        "; ".join(f for f in parts if f)
        for parts in zip(fit["flag"], fit["assign_flag"], position_flags)
    ]
    fit = fit.drop(columns="assign_flag")
    summary, extra = _summarise(fit, numerator.label, denominator.label, config, pixel_size_A,
                                dot, lattice)
    tick("statistics")
    return Analysis(columns=fit, summary=summary, extra=extra)


def _summarise(columns, numerator, denominator, config, pixel_size_A, dot, lattice):
    # Columns in the edge margin are flagged but kept for the statistics when the margin is
    # their only flag: the outermost cells are where a depleted shell shows. Failed fits,
    # unassigned columns and columns outside the dot never enter them.
    use = columns[(columns["flag"] == "") | (columns["flag"] == "edge margin")]
    stats_table = type_statistics(use["intensity"], use["label"])
    a = config.analysis
    ratio = intensity_ratio(use["intensity"], use["label"], numerator, denominator,
                            bootstrap=a.bootstrap, seed=a.seed)
    inside = use[use["depth_uc"] >= 0]
    depth = ratio_by_depth(inside["intensity"], inside["label"], inside["depth_uc"],
                           numerator, denominator)
    spacing = {}
    for label in (numerator, denominator):
        sel = columns[(columns["label"] == label) & (columns["depth_uc"] >= 0)]
        cols, summ = peak_pair_spacing(sel[["x_px", "y_px"]].to_numpy(), lattice.vectors_px,
                                       pixel_size_A)
        for k in cols:
            columns.loc[sel.index, k] = cols[k].to_numpy()
        spacing[label] = summ
    flags = columns["flag"].str.split("; ").explode()
    summary = {
        "pixel_size_A": pixel_size_A,
        "material": config.material.name,
        "zone_axis": list(config.material.zone_axis),
        "intensity_measure": a.intensity,
        "dot": {"edge_lengths_nm": list(dot.edge_lengths_nm), "area_nm2": dot.area_nm2,
                "edge_lengths_method": "extent of the A and BX column centres along the two "
                                       "lattice vectors"},
        "columns": {"total": int(len(columns)), "used": int(len(use)),
                    "flags": {k: int(v) for k, v in flags[flags != ""].value_counts().items()}},
        "per_type": {k: {kk: float(vv) for kk, vv in row.items()}
                     for k, row in stats_table.to_dict(orient="index").items()},
        "ratio": {k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                  for k, v in ratio.items()},
        "ratio_by_depth": depth.to_dict(orient="records"),
        "lattice": {"a_A": lattice.a_A, "b_A": lattice.b_A, "expected_a_A": lattice.expected_a_A,
                    "expected_b_A": lattice.expected_b_A, "rotation_deg": lattice.rotation_deg,
                    "mirrored": bool(lattice.mirrored), "rms_misfit_A": lattice.rms_misfit_A},
        "spacing": spacing,
    }
    return summary, {"dot": dot, "lattice": lattice, "depth_profile": depth}


def thickness_summary(ratio: dict, series_path: str) -> dict:
    """Thicknesses consistent with the measured ratio under a reference series.

    The measured ratio and its (propagated) standard error are read against the series'
    fitted-volume ratio (the same measure as the default ``analysis.intensity``); every
    consistent range is returned, with a flag where the series is not monotonic.
    """
    from .thickness import thickness_from_ratio

    if not np.isfinite(ratio.get("ratio", np.nan)):
        return {"series": str(series_path), "flag": "no ratio measured"}
    estimate = thickness_from_ratio(ratio["ratio"], ratio["stderr"], series_path)
    return {"series": str(series_path), **estimate.to_dict()}


def process_stack(stack, config: Config, *, progress=None) -> Analysis:
    """The whole pipeline on a loaded stack (:class:`stemqd.io.Stack`).

    The summary also records the effective config, its hash, the versions and the input's
    SHA-256, so that every number can be traced back. ``progress`` is called with the name
    of each of :data:`PIPELINE_STAGES` as it completes.
    """
    pixel = config.acquisition.pixel_size_A or stack.pixel_size_A
    images, info = preprocess(stack.frames, pixel, config, voltage_kv=stack.voltage_kv,
                              convergence_mrad=stack.convergence_mrad, progress=progress)
    analysis = analyse_image(images["final"], pixel, config, progress=progress)
    analysis.images = images
    analysis.extra.update(info)
    if config.reference_series:
        analysis.summary["thickness"] = thickness_summary(analysis.summary["ratio"],
                                                          config.reference_series)
    analysis.summary.update({
        "input": {"path": str(stack.path), "sha256": stack.sha256,
                  "frames": int(stack.frames.shape[0]), "shape": list(stack.frames.shape[1:]),
                  "pixel_size_source": stack.pixel_size_source,
                  "voltage_kv": stack.voltage_kv, "convergence_mrad": stack.convergence_mrad},
        "drift_px": {"max": float(np.abs(info["shifts_px"]).max()) if len(info["shifts_px"])
                     else 0.0},
        "config": config_to_dict(config),
        "config_hash": config_hash(config),
        "versions": versions(),
    })
    return analysis
