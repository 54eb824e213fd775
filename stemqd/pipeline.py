"""Composition of the pipeline stages: preprocessing, columns, statistics.

Every stage is a plain function of its own module; this module only chains them with the
parameters of one :class:`~stemqd.config.Config` and returns every intermediate, so that a
user (or the report) can inspect each step.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .analysis.counting import count_columns
from .analysis.lattice import peak_pair_spacing
from .analysis.statistics import (
    RatioEstimate,
    in_statistics,
    intensity_ratio,
    ratio_by_depth,
    type_statistics,
    voronoi_cross_sections,
)
from .columns.cell import nearest_neighbour_A, parse_ratio, projected_cell
from .columns.dot import Dot, column_flags, edge_lengths_from_columns, segment_dot, surface_depth
from .columns.find import find_columns
from .columns.fit import refine_columns
from .columns.joint import CENTRE_WIDTH_TOLERANCE
from .columns.quality import QualityRecord, check_quality, fit_quality, lattice_quality
from .columns.sublattice import assign_sublattices, missing_sites
from .config import Config, config_hash, config_to_dict, preset_bias
from .errors import BlankImageError, FitError, ModelMismatchError
from .preprocess.align import align_frames
from .preprocess.background import disk_radius_px, remove_background
from .preprocess.deconvolve import deconvolve_blind
from .preprocess.denoise import du_filter
from .preprocess.normalise import normalised_volume
from .preprocess.probe import probe_psf
from .provenance import versions
from .summary import (
    ColumnCounts,
    DotSummary,
    FittingSummary,
    InputSummary,
    JointFit,
    LatticeSummary,
    PerTypeSummary,
    RunSummary,
    SpacingSummary,
    SublatticeSpacing,
    ThicknessSummary,
)

#: Stages reported to a ``progress`` callback, in order.
PIPELINE_STAGES = ("align", "background", "denoise", "deconvolve", "columns", "statistics")

#: A column inside the dot whose intensity is below this fraction of the median of its type
#: is flagged "weak" (a noise peak on a lattice site, not a column).
WEAK_FRACTION = 0.2

#: The crystal is the hull of the columns that are clearly columns: on a site, not weak, and
#: either at least ``CLEAR_FRACTION`` of their type's median volume or ``CLEAR_SIGNIFICANCE``
#: standard errors above zero. A found column outside it (by more than
#: ``COMPLETE_TOLERANCE_NN``) is flagged "outside crystal": a noise peak on the support beside
#: the crystal lands on a site of the lattice extended past it. On CsPbBr3 dots over carbon at
#: sigma / nn 0.1 and 20 counts (``benchmarks/bench_chain.py``, 5 seeds) 5-13 such peaks per
#: image had 0.1-0.36 of a Cs column's volume and 0.6-5.1 standard errors, passed the
#: "weak" test and entered the Cs and Br statistics (ratio -3 %, one image -6 %); the real Cs
#: and Pb-Br columns had 0.71 of their type's median and more.
CLEAR_FRACTION = 0.5
CLEAR_SIGNIFICANCE = 5.0


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

    The summary's parts are read as typed records: :attr:`ratio`, :attr:`input`,
    :attr:`dot`, :attr:`column_counts`, :attr:`lattice`, :attr:`quality`,
    :attr:`per_type`, :attr:`spacing`, :attr:`thickness`, :attr:`fitting`, :attr:`run`.
    """

    columns: pd.DataFrame
    summary: dict
    images: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> RatioEstimate | None:
        """The headline ratio (None where the image has no material, hence no ratio)."""
        return RatioEstimate.from_dict(self.summary)

    @property
    def input(self) -> InputSummary:
        """The input file (``summary["input"]``; all None before :func:`process_stack`)."""
        return InputSummary.from_dict(self.summary)

    @property
    def dot(self) -> DotSummary:
        """The dot's outline (``summary["dot"]``)."""
        return DotSummary.from_dict(self.summary)

    @property
    def column_counts(self) -> ColumnCounts:
        """Columns found, used, flagged and excluded (``summary["columns"]``)."""
        return ColumnCounts.from_dict(self.summary)

    @property
    def lattice(self) -> LatticeSummary | None:
        """The registered lattice (None without a material)."""
        return LatticeSummary.from_dict(self.summary)

    @property
    def quality(self) -> QualityRecord | None:
        """The quality record and its verdict (``summary["quality"]``)."""
        return QualityRecord.from_dict(self.summary.get("quality"))

    @property
    def per_type(self) -> PerTypeSummary:
        """Intensity statistics per column type (``summary["per_type"]``)."""
        return PerTypeSummary.from_dict(self.summary)

    @property
    def spacing(self) -> SpacingSummary:
        """Peak-pair spacings of the ratio's sublattices (empty without a material)."""
        return SpacingSummary.from_dict(self.summary)

    @property
    def thickness(self) -> ThicknessSummary | None:
        """Thicknesses consistent with the ratio (None without ``reference_series``)."""
        return ThicknessSummary.from_dict(self.summary)

    @property
    def fitting(self) -> FittingSummary:
        """How the columns were fitted (``summary["fitting"]``)."""
        return FittingSummary.from_dict(self.summary)

    @property
    def run(self) -> RunSummary:
        """The run that wrote the results (``summary["run"]``; all None in memory, as the
        run is recorded only in the written ``summary.json``)."""
        return RunSummary.from_dict(self.summary)

    def report(self) -> str:
        """A readable report of the image's result, in the manner of lmfit's ``fit_report``."""
        s = self.summary
        cols = self.column_counts
        lines = ["[[Image]]"]
        if self.run.name is not None:
            lines.append(f"    run         {self.run}")
        if "input" in s:
            lines.append(f"    file        {self.input}")
        zone = s.get("zone_axis")
        lines.append(
            f"    material    {s.get('material') or 'none'}"
            + (f" [{''.join(map(str, zone))}]" if zone else "")
            + f", pixel {s.get('pixel_size_A', float('nan')):.4f} Å"
        )
        lines += [
            "[[Columns]]",
            f"    found       {cols.total}, used {cols.used}",
            f"    {self.dot}",
        ]
        for reason, n in (cols.flags or {}).items():
            lines.append(f"    flagged     {n} x {reason}")
        parts = (
            ("Fitting", self.fitting if "fitting" in s else None),
            ("Quality", self.quality),
            ("Per type", self.per_type or None),
            ("Lattice", self.lattice),
            ("Spacing", self.spacing or None),
            ("Ratio", self.ratio),
            ("Thickness", self.thickness),
        )
        for title, part in parts:
            if part is not None:
                lines += [f"[[{title}]]", *(f"    {line}" for line in str(part).splitlines())]
        for w in s.get("warnings", []):
            lines.append(f"[[Warning]] {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.report())}</pre>"


def cell_for(config: Config):
    """The projected cell of the configured material and zone axis."""
    m = config.material
    return projected_cell(
        m.name,
        tuple(m.zone_axis),
        lattice_constant_A=m.lattice_constant_A,
        exponent=m.contrast_exponent,
    )


def lattice_constant_A(cell) -> float:
    """Length of the projected cell's first in-plane vector, Å."""
    return float(np.hypot(*np.asarray(cell.vectors_A)[0]))


def preprocess(
    frames, pixel_size_A, config: Config, *, voltage_kv=None, convergence_mrad=None, progress=None
):
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
    images, info = {}, {}
    tick = progress or (lambda stage: None)
    if config.align.enabled and len(frames) > 1:
        average, shifts = align_frames(
            frames,
            upsample_factor=config.align.upsample_factor,
            reference_iterations=config.align.reference_iterations,
        )
    else:
        average, shifts = frames.mean(axis=0), np.zeros((len(frames), 2))
    images["average"] = average
    info["shifts_px"] = shifts
    tick("align")
    current = average
    if config.material.name is not None:
        a_A = lattice_constant_A(cell_for(config))
    else:
        a_A = column_spacing_for(average, pixel_size_A, config)[0] * pixel_size_A
    if config.background.enabled:
        radius = config.background.radius_px or disk_radius_px(
            a_A, pixel_size_A, config.background.radius_lattice
        )
        current, background = remove_background(current, radius)
        images["background"] = background
        images["background_removed"] = current
        info["background_radius_px"] = float(radius)
    tick("background")
    if config.denoise.enabled:
        d = config.denoise
        current = du_filter(
            current,
            pixel_size_A,
            cutoff_inv_A=d.cutoff_inv_A,
            cycles=d.cycles,
            delta_percent=d.delta_percent,
            anscombe=d.anscombe,
        )
        images["denoised"] = current
    tick("denoise")
    info["psf_initial"] = info["psf"] = None
    if config.deconvolve.enabled:
        p, dc = config.probe, config.deconvolve
        psf0 = probe_psf(
            pixel_size_A,
            voltage_kv or config.acquisition.voltage_kv,
            convergence_mrad or config.acquisition.convergence_mrad,
            defocus_A=p.defocus_A,
            cs_mm=p.cs_mm,
            source_size_A=p.source_size_A,
            energy_spread_eV=p.energy_spread_eV,
            cc_mm=p.cc_mm,
            half_width_A=dc.psf_half_width_A,
        )
        current, psf = deconvolve_blind(
            current,
            psf0,
            iterations=dc.iterations,
            damping=dc.damping,
            readout=dc.readout,
            blind=dc.blind,
            pad_px=dc.pad_px,
        )
        images["deconvolved"] = current
        info["psf_initial"], info["psf"] = psf0, psf
    tick("deconvolve")
    images["final"] = current
    return images, info


#: In ``dot.mode = auto`` the image is taken as a crystal filling the field when disks of
#: one column spacing around the found columns cover more than this fraction of it.
FULL_FIELD_COVERAGE = 0.8

#: A lattice site within this many nearest-neighbour distances of a found column is taken
#: as found; farther, it is added as a seed (``columns.complete_lattice``).
COMPLETE_TOLERANCE_NN = 0.35

#: A seed added from the lattice is held within this many spacings of its site in the fit
#: (inside the sublattice assignment's 0.25, so that it stays on its site); found seeds are
#: held within half a spacing.
LATTICE_SEED_SHIFT_NN = 0.2

#: ``stemqd process`` warns when more than this fraction of the found columns is excluded.
EXCLUDED_WARNING_FRACTION = 0.3

#: Columns expected closer than this (px) cannot be resolved: the pixel size is too large.
MIN_SPACING_PX = 2.0

#: An image whose pixels spread by less than this fraction of its largest value is blank.
BLANK_RELATIVE_SPREAD = 1e-6


def column_spacing_for(image, pixel_size_A, config: Config, cell=None) -> tuple[float, str]:
    """Nearest-neighbour column distance in px and where it came from."""
    if config.columns.spacing_A is not None:
        return config.columns.spacing_A / pixel_size_A, "columns.spacing_A"
    if cell is not None:
        return nearest_neighbour_A(cell) / pixel_size_A, "projected cell"
    from .columns.find import column_spacing_px

    nn = column_spacing_px(image)
    if not np.isfinite(nn):
        raise FitError(
            "no periodic contrast in the image, so no column spacing can be "
            "measured; give it with --set columns.spacing_A=VALUE, or check "
            "that the image shows atomic columns"
        )
    return nn, "image autocorrelation"


def read_positions(path) -> pd.DataFrame:
    """Column seeds from a CSV with columns ``x_px``, ``y_px`` and optionally ``label``.

    Such a file can be exported from StatSTEM, Atomap or a previous ``columns.csv``.
    """
    from .errors import InputError

    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the positions file ({exc})") from None
    missing = {"x_px", "y_px"} - set(table.columns)
    if missing:
        raise InputError(
            f"{path}: the positions file needs columns x_px, y_px (optional "
            f"label); missing {sorted(missing)}, found {list(table.columns)}"
        )
    xy = table[["x_px", "y_px"]].to_numpy(float)
    if len(xy) == 0 or not np.isfinite(xy).all():
        raise InputError(f"{path}: the positions file has no rows or non-numeric positions")
    out = pd.DataFrame({"x_px": xy[:, 0], "y_px": xy[:, 1]})
    if "label" in table:
        out["label"] = table["label"].astype(str).to_numpy()
    return out


def _refine(image, seeds, labels, nn_px, c, max_shift_px=None):
    if c.model == "window7":
        return refine_columns(
            image,
            seeds,
            model="window7",
            radius_px=c.fit_radius_nn * nn_px,
            method=c.method,
            max_iterations=c.max_iterations,
            neighbour_iterations=c.neighbour_iterations,
            tolerance_px=c.position_tolerance_px,
            errors=c.errors,
        )
    return refine_columns(
        image,
        seeds,
        model=c.model,
        labels=labels,
        background=c.background,
        background_level=c.background_level,
        smooth_rounds=c.background_rounds,
        smooth_rounds_max=c.background_rounds_max,
        nn_px=nn_px,
        max_iterations=c.max_iterations,
        tolerance_px=c.position_tolerance_px,
        errors=c.errors,
        max_shift_px=max_shift_px,
    )


def _dot_mode(config, seeds, shape, spacing_px):
    """``dot`` or ``none`` for this image, and the fraction of the field the columns cover."""
    mask = np.zeros(shape, bool)
    ix = np.clip(np.rint(seeds[:, 0]).astype(int), 0, shape[1] - 1)
    iy = np.clip(np.rint(seeds[:, 1]).astype(int), 0, shape[0] - 1)
    mask[iy, ix] = True
    from scipy import ndimage

    covered = ndimage.distance_transform_edt(~mask) <= spacing_px
    coverage = float(covered.mean())
    if config.dot.mode != "auto":
        return config.dot.mode, coverage
    return ("none" if coverage > FULL_FIELD_COVERAGE else "dot"), coverage


def _within_hull(points, hull_points, tolerance_px):
    """Which points lie inside the convex hull of ``hull_points`` or within
    ``tolerance_px`` outside a facet."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(hull_points)
    except (QhullError, ValueError):  # fewer than 3 points, or all on a line
        return np.zeros(len(points), bool)
    # equations: unit normal n and offset b with n.x + b <= 0 inside
    return (points @ hull.equations[:, :2].T + hull.equations[:, 2]).max(axis=1) <= tolerance_px


def _clear_columns(volume, error, labels, on_site, ratio_labels):
    """Which columns are clearly columns of the ratio's two types (see ``CLEAR_FRACTION``).

    Only the ratio's types: they are found reliably, whereas a noise peak on the support can
    reach half the median of a weak type (Br of CsPbBr3 at 20 counts)."""
    volume = np.asarray(volume, float)
    labels = np.asarray(labels)
    typical = pd.Series(volume).groupby(labels).transform("median").to_numpy()
    return (
        np.asarray(on_site, bool)
        & np.isin(labels, ratio_labels)
        & (volume >= WEAK_FRACTION * typical)
        & (
            (volume >= CLEAR_FRACTION * typical)
            | (volume >= CLEAR_SIGNIFICANCE * np.asarray(error))
        )
    )


def _in_statistics_region(position_flags):
    """Columns inside the dot and away from the image border (their position allows them
    into the statistics)."""
    return ~np.isin(position_flags, ["outside dot", "image edge"])


def _image_edge_flags(pos, shape, margin_px):
    ny, nx = shape
    d = np.minimum.reduce([pos[:, 0], pos[:, 1], nx - 1 - pos[:, 0], ny - 1 - pos[:, 1]])
    return np.where(d < margin_px, "image edge", "")


def analyse_image(
    image, pixel_size_A, config: Config, *, fit_image=None, positions=None, progress=None
):
    """Find, fit and assign the columns of one preprocessed image, and measure the dot.

    Parameters
    ----------
    image : array_like, 2-D
        Image on which columns are found (the end of the preprocessing chain).
    pixel_size_A : float
    config : Config
    fit_image : array_like, 2-D, optional
        Image whose intensities are fitted (default ``image``); see ``columns.fit_on``.
    positions : pandas.DataFrame, optional
        Seeds ``x_px``, ``y_px`` (optional ``label``, see :func:`read_positions`), refined
        instead of found.
    progress : callable, optional
        Called with "columns" after the fit and "statistics" at the end.

    Returns
    -------
    Analysis
        ``columns`` has, per column: ``x_px``, ``y_px``, ``x_nm``, ``y_nm``, the seven
        Gaussian parameters with standard errors, ``volume``, ``cross_section`` (Voronoi),
        ``intensity`` (the configured measure), ``label`` (composition, e.g. Cs, PbBr, Br),
        ``site`` (A, BX, X for a perovskite), cell indices ``i``, ``j``, ``misfit_A``,
        ``depth_uc`` (unit cells below the surface; -1 outside the dot) and ``flag``
        (fit, assignment and position flags joined by "; "; "" for a clean column).
        Without a material (``material.name = none``) there is no sublattice assignment
        and no ratio; the labels are those of ``positions`` or "column".
    """
    tick = progress or (lambda stage: None)
    image = np.asarray(image, dtype=np.float64)
    fit_image = image if fit_image is None else np.asarray(fit_image, dtype=np.float64)
    cell = cell_for(config) if config.material.name is not None else None
    check_contrast(image)
    nn_px, spacing_source = column_spacing_for(image, pixel_size_A, config, cell)
    if nn_px < MIN_SPACING_PX:
        raise FitError(
            f"at the pixel size {pixel_size_A:.4g} Å the columns of "
            f"{config.material.name or 'the image'} would be {nn_px:.3g} px apart, closer than "
            f"the {MIN_SPACING_PX:g} px an image can resolve: the pixel size is probably too "
            f"large (by 10x?); check the calibration (--pixel-size) and the material"
        )
    a_px = lattice_constant_A(cell) / pixel_size_A if cell is not None else nn_px
    c = config.columns
    labels = None
    if positions is not None:
        seeds = positions[["x_px", "y_px"]].to_numpy(float)
        labels = positions["label"].to_numpy() if "label" in positions else None
    else:
        seeds = find_columns(
            image,
            min_separation_px=c.min_separation_nn * nn_px,
            com_radius_px=c.com_radius_nn * nn_px,
            detection=c.detection,
            threshold_rel=c.threshold_rel,
            significance=c.significance,
            background_radius_px=nn_px,
            # judged on the fitted image: by default the frames' average, whose noise is
            # still white (a denoised or deconvolved image's is not)
            significance_image=fit_image,
        )
    if len(seeds) < 4:
        raise FitError(
            _too_few(f"{len(seeds)} column position(s) found", pixel_size_A, nn_px, config)
        )
    fit = _refine(fit_image, seeds, labels if c.width_per_type else None, nn_px, c)
    joint = dict(fit.attrs.get("joint", {}))
    dropped_off_lattice = None
    registration = None
    mode, coverage = _dot_mode(config, seeds, image.shape, a_px)
    if mode == "none":
        dot = Dot(
            np.ones(image.shape, bool),
            (np.nan, np.nan),
            float(image.size * (pixel_size_A / 10) ** 2),
            (image.shape[1] / 2, image.shape[0] / 2),
        )

        def flags_at(p):
            return _image_edge_flags(p, image.shape, 0.5 * nn_px)
    else:
        dot = segment_dot(
            image, pixel_size_A, smoothing_px=config.dot.smoothing_lattice * 0.5 * a_px
        )

        def flags_at(p):
            return column_flags(p, dot, margin_px=config.dot.edge_margin_lattice * a_px)

    position_flags = flags_at(fit[["x_px", "y_px"]].to_numpy())
    inside = _in_statistics_region(position_flags)
    seed_source = np.full(len(fit), "found" if positions is None else "positions file", object)
    quality = None
    if cell is not None:
        if inside.sum() < 4:
            raise FitError(
                _too_few(
                    f"{int(inside.sum())} of the {len(fit)} columns found lie inside the dot",
                    pixel_size_A,
                    nn_px,
                    config,
                )
            )
        # The quality gate, on the columns as found (before the lattice completes them):
        # do they form the projected lattice at all?
        pos0 = fit[["x_px", "y_px"]].to_numpy()
        volume0 = fit["volume"].to_numpy()[inside]
        assigned0, lattice0 = assign_sublattices(pos0[inside], volume0, pixel_size_A, cell)
        # The later assignments start from this registration: the columns as found and
        # their intensities decide which sublattice is which. Registered afresh after the
        # lattice completion, a Se-doped MoS2 monolayer with scan distortion (gamma 117°)
        # was registered mirrored, Mo on the S2 sites (S2 : Mo 2.44 instead of 0.42): the
        # completed columns made the other basis fit 5 % more columns, which outranks the
        # contrast ordering.
        registration = lattice0
        quality = check_quality(
            lattice_quality(
                assigned0["assign_flag"],
                assigned0[["i", "j"]].to_numpy(),
                assigned0["misfit_A"],
                nearest_neighbour_A(cell),
                volume0,
            ),
            config.quality,
        )
    if (
        cell is not None
        and positions is None
        and c.complete_lattice
        and c.model != "window7"
        and inside.sum() >= 4
    ):
        # Sites no local maximum marked (weak columns beside bright ones under overlap) are
        # added from the lattice of the found columns, and everything is fitted again.
        # Only sites within the hull of the columns found on sites (not weak: a noise peak
        # on the support can land on a site): the segmented dot reaches past the last
        # columns by the blur, and sites added there would fit nothing but the tails of
        # the edge columns.
        on_sites = pos0[inside][
            _clear_columns(
                volume0,
                fit["volume_err"].to_numpy()[inside],
                assigned0["label"].to_numpy(),
                (assigned0["assign_flag"] == "").to_numpy(),
                [t.label for t in parse_ratio(config.material.ratio, cell)],
            )
        ]
        # Where the crystal runs into the image border its last columns are cut and not
        # found; sites there next to found columns are modelled all the same (flagged
        # "image edge", kept out of the statistics), or their intensity goes into their
        # neighbours.
        ny, nx = image.shape

        def addable(p):
            in_image = (p[:, 0] >= 0) & (p[:, 1] >= 0) & (p[:, 0] <= nx - 1) & (p[:, 1] <= ny - 1)
            # the band where find_columns drops seeds (its centre-of-mass disk)
            at_border = (_image_edge_flags(p, image.shape, c.com_radius_nn * nn_px + 1) != "") & (
                cKDTree(on_sites).query(p)[0] <= 1.5 * nn_px
            )
            return (
                in_image
                & (flags_at(p) != "outside dot")
                & (_within_hull(p, on_sites, COMPLETE_TOLERANCE_NN * nn_px) | at_border)
            )

        # Inside the crystal every column sits on a site: a found peak off every site
        # (or a second one on an occupied site) is noise, and is dropped.
        off = np.zeros(len(fit), bool)
        off[np.flatnonzero(inside)] = (assigned0["assign_flag"] != "").to_numpy() & _within_hull(
            pos0[inside], on_sites, -COMPLETE_TOLERANCE_NN * nn_px
        )
        # A site is free when no kept seed occupies it. A dropped peak 0.25-0.35 spacings
        # from its site (off it for the assignment, on it for the completion's tolerance)
        # had counted as occupying it: at sigma / nn 0.45 and 20 counts 5-15 columns of a
        # CsPbBr3 dot were then fitted by nothing, their intensity went into their
        # neighbours, the width ran 4 % wide and the ratio 7 % low (bench_chain.py).
        if len(on_sites) >= 3:  # a hull to add sites in
            extra, _ = missing_sites(
                pos0[inside & ~off],
                lattice0,
                cell,
                addable,
                tolerance_px=COMPLETE_TOLERANCE_NN * nn_px,
            )
        else:
            extra = np.empty((0, 2))
        if len(extra) or off.any():
            keep = ~off
            seeds = np.vstack([seeds[keep], extra])
            # A site added from the lattice was marked by no peak: the lattice knows where
            # it is better than the image, so its centre is held near the site. Held in the
            # usual half-spacing box, the weak O2 sites of a real SrTiO3 [110] HAADF image
            # wandered 4-7 px into their neighbours' tails and ended off every site.
            shift = np.concatenate(
                [
                    np.full(int(keep.sum()), 0.5 * nn_px),
                    np.full(len(extra), LATTICE_SEED_SHIFT_NN * nn_px),
                ]
            )
            fit = _refine(fit_image, np.vstack([pos0[keep], extra]), None, nn_px, c, shift)
            fit["seed_x_px"], fit["seed_y_px"] = seeds[:, 0], seeds[:, 1]
            joint = dict(fit.attrs.get("joint", {}))
            dropped_off_lattice = int(off.sum())
            seed_source = np.concatenate(
                [seed_source[keep], np.full(len(extra), "lattice", object)]
            )
            position_flags = flags_at(fit[["x_px", "y_px"]].to_numpy())
            inside = _in_statistics_region(position_flags)
    fit["seed_source"] = seed_source
    if cell is not None and c.model != "window7" and c.width_per_type and labels is None:
        # One width per column type: assign the sublattices on a one-width fit, then refit
        # with the types (the second fit starts at the first one's positions).
        pos0 = fit[["x_px", "y_px"]].to_numpy()
        assigned0, _ = assign_sublattices(
            pos0[inside],
            fit["volume"].to_numpy()[inside],
            pixel_size_A,
            cell,
            registration=registration,
        )
        types = np.full(len(fit), "other", dtype=object)
        types[inside] = np.where(
            assigned0["label"].to_numpy() == "", "other", assigned0["label"].to_numpy()
        )
        if len(set(types)) > 1:
            shift = np.where(seed_source == "lattice", LATTICE_SEED_SHIFT_NN, 0.5) * nn_px
            refit = _refine(fit_image, pos0, types, nn_px, c, shift)
            refit["seed_x_px"], refit["seed_y_px"] = seeds[:, 0], seeds[:, 1]
            fit = refit
            joint = dict(fit.attrs.get("joint", {}))
    tick("columns")
    pos = fit[["x_px", "y_px"]].to_numpy()
    fit["cross_section"] = voronoi_cross_sections(
        fit_image, pos, max_radius_px=0.5 * a_px, offsets=fit["offset"].to_numpy()
    )
    fit["intensity"] = fit[config.analysis.intensity]
    fit["x_nm"] = fit["x_px"] * pixel_size_A / 10
    fit["y_nm"] = fit["y_px"] * pixel_size_A / 10
    # the joint fit reports its model and background too (the same, or more precise)
    fitting = FittingSummary(
        model=joint.pop("model", c.model),
        background=joint.pop(
            "background", c.background if c.model != "window7" else "offset per window"
        ),
        fit_on=c.fit_on,
        spacing_px=float(nn_px),
        spacing_source=spacing_source,
        seeds="positions file" if positions is not None else "found",
        seeds_from_lattice=int(np.sum(seed_source == "lattice")),
        joint=JointFit.from_dict(joint) if joint else None,
        seeds_dropped_off_lattice=dropped_off_lattice,
    ).to_dict()
    if cell is None:
        return _analyse_without_cell(
            fit,
            labels,
            position_flags,
            inside,
            dot,
            mode,
            coverage,
            fitting,
            config,
            pixel_size_A,
            tick,
        )
    assigned, lattice = assign_sublattices(
        pos[inside],
        fit["intensity"].to_numpy()[inside],
        pixel_size_A,
        cell,
        registration=registration,
    )
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
        "; ".join(f for f in (old, "weak") if f) for old in fit.loc[weak, "assign_flag"]
    ]
    # The surface is the hull of the two sublattices of the ratio: they are found reliably,
    # whereas a weak column at the edge may be a noise peak that would push the hull out.
    numerator, denominator = parse_ratio(config.material.ratio, cell)
    clear = inside & _clear_columns(
        fit["volume"].to_numpy(),
        fit["volume_err"].to_numpy(),
        fit["label"].to_numpy(),
        (fit["assign_flag"] == "").to_numpy(),
        [numerator.label, denominator.label],
    )
    crystal = _within_hull(pos, pos[clear], COMPLETE_TOLERANCE_NN * nn_px)
    beyond = inside & ~crystal
    if crystal.any():  # else too few clear columns for a hull: nothing to judge by
        fit.loc[beyond, "assign_flag"] = [
            "; ".join(f for f in (old, "outside crystal") if f)
            for old in fit.loc[beyond, "assign_flag"]
        ]
    frame = (
        inside
        & ~weak
        & fit["label"].isin([numerator.label, denominator.label]).to_numpy()
        & (fit["flag"] == "").to_numpy()
    )
    if mode == "none":
        fit["depth_uc"] = np.where(inside, 0, -1)
    else:
        fit["depth_uc"] = surface_depth(
            pos, frame, a_px, others=inside, vectors_px=lattice.vectors_px
        )
        dot = replace(
            dot,
            edge_lengths_nm=edge_lengths_from_columns(pos[frame], lattice.vectors_px, pixel_size_A),
        )
    fit["flag"] = [
        "; ".join(f for f in parts if f)
        for parts in zip(fit["flag"], fit["assign_flag"], position_flags)
    ]
    fit = fit.drop(columns="assign_flag")
    summary, extra = _summarise(
        fit, numerator.label, denominator.label, config, pixel_size_A, dot, lattice, mode, coverage
    )
    summary["fitting"] = fitting
    summary["quality"] = quality
    _quality_warning(summary)
    _exclusion_warnings(summary)
    if lattice.contrast_correlation < 0:
        # The brighter expected sites hold the dimmer columns: a swapped registration, or
        # the wrong material or zone axis; the ratio is then of the wrong columns.
        summary.setdefault("warnings", []).append(
            "the column intensities run against the sites' expected contrast (Spearman "
            f"{lattice.contrast_correlation:.2f}): the sublattices may be swapped, or the "
            "material or zone axis is wrong"
        )
    tick("statistics")
    return Analysis(columns=fit, summary=summary, extra=extra)


def _quality_warning(summary):
    """With ``quality.gate = false`` a stack below the thresholds is reported, with a warning."""
    q = summary["quality"]
    if not q["passed"]:
        summary.setdefault("warnings", []).append(
            "quality below the thresholds (gate off): " + "; ".join(q["reasons"])
        )


def _too_few(found, pixel_size_A, nn_px, config):
    """The message for too few columns: a wrong calibration is the usual cause."""
    return (
        f"{found}, too few for a lattice (at least 4 needed); at the pixel size "
        f"{pixel_size_A:.4g} Å the columns of {config.material.name or 'the image'} are expected "
        f"{nn_px:.3g} px apart: check the pixel size (a calibration 10x too large or too small "
        f"looks like this), the material, and that the image shows the crystal"
    )


def check_contrast(image, source="the image"):
    """Raise :class:`~stemqd.errors.BlankImageError` if ``image`` holds no contrast.

    Parameters
    ----------
    image : array_like
        An image or a stack of frames.
    source : str
        What to name in the message (e.g. the file).
    """
    a = np.asarray(image, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise BlankImageError(f"{source}: the image is blank (no finite pixel)")
    # relative to the level, so that float32 rounding of a constant does not count as contrast
    spread = float(np.ptp(a.reshape(-1, *a.shape[-2:]), axis=(1, 2)).max()) if a.ndim >= 2 else 0.0
    if spread <= BLANK_RELATIVE_SPREAD * max(float(np.abs(finite).max()), np.finfo(float).tiny):
        value = float(finite.flat[0])
        raise BlankImageError(
            f"{source}: the image is blank (every pixel {value:.6g}, no contrast): "
            f"check that the file holds the ADF image, not an empty channel, a dark "
            f"reference or a frame read before the scan started"
        )


def _column_counts(columns) -> ColumnCounts:
    """Columns fitted, used by the statistics and flagged, and those left out by reason."""
    use = in_statistics(columns)
    flags = columns["flag"].str.split("; ").explode()
    reasons = columns.loc[~use, "flag"].str.split("; ").explode()
    return ColumnCounts(
        total=int(len(columns)),
        used=int(use.sum()),
        flags={k: int(v) for k, v in flags[flags != ""].value_counts().items()},
        excluded_total=int((~use).sum()),
        excluded_by_reason={k: int(v) for k, v in reasons.value_counts().items()},
    )


def _exclusion_warnings(summary):
    """A warning when many columns are left out of the statistics, the shared width is not
    shared (the centre against the whole image), or the fit did not converge."""
    counts = ColumnCounts.from_dict(summary)
    warnings = summary.setdefault("warnings", [])
    n, out = counts.total, counts.excluded_total
    if n and out > EXCLUDED_WARNING_FRACTION * n:
        top = ", ".join(f"{k} {v}" for k, v in list(counts.excluded_by_reason.items())[:3])
        warnings.append(
            f"{out} of {n} columns ({out / n:.0%}) are excluded from the statistics ({top})"
        )
    joint = FittingSummary.from_dict(summary).joint
    ratio = None if joint is None else joint.centre_width_ratio
    if ratio is not None and not 1 / CENTRE_WIDTH_TOLERANCE <= ratio <= CENTRE_WIDTH_TOLERANCE:
        warnings.append(
            f"the shared column width is {1 / ratio:.2f}x the width the central columns give "
            f"alone, after {joint.smooth_rounds} rounds of background and width: it is not "
            "shared over the image (weak columns over a support, where the rounds have not "
            "settled, or columns that broaden with thickness), and the volumes and the ratio "
            "are biased; if the rounds reached columns.background_rounds_max, raise it "
            "(--set columns.background_rounds_max=50)"
        )
    if joint is not None and joint.converged is False:
        moving = joint.not_converged
        warnings.append(
            "the joint column fit did not converge"
            + (
                f": {moving} of {n} columns were still moving at the iteration limit (flagged "
                "'not converged')"
                if moving
                else ""
            )
        )


def _analyse_without_cell(
    fit, labels, position_flags, inside, dot, mode, coverage, fitting, config, pixel_size_A, tick
):
    # No lattice to test: the gate is on the fits of the columns inside the region.
    quality = check_quality(
        fit_quality(
            fit["flag"].to_numpy()[inside],
            fit["amplitude"].to_numpy()[inside],
            fit["amplitude_err"].to_numpy()[inside],
            fit["sigma_x_px"].to_numpy()[inside],
        ),
        config.quality,
    )
    fit["label"] = labels if labels is not None else "column"
    fit["site"] = ""
    for name in ("i", "j", "misfit_A"):
        fit[name] = np.nan
    fit["depth_uc"] = np.where(inside, 0, -1) if mode == "none" else -1
    fit["flag"] = ["; ".join(f for f in parts if f) for parts in zip(fit["flag"], position_flags)]
    use = fit[in_statistics(fit)]
    stats_table = type_statistics(use["intensity"], use["label"])
    summary = {
        "pixel_size_A": pixel_size_A,
        "material": None,
        "zone_axis": None,
        "intensity_measure": config.analysis.intensity,
        "dot": DotSummary(
            edge_lengths_nm=tuple(dot.edge_lengths_nm),
            area_nm2=dot.area_nm2,
            mode=mode,
            coverage=coverage,
        ).to_dict(),
        "columns": _column_counts(fit).to_dict(),
        "per_type": PerTypeSummary.from_table(stats_table).to_dict(),
        "ratio": {},
        "ratio_by_depth": [],
        "fitting": fitting,
        "quality": quality,
    }
    _quality_warning(summary)
    _exclusion_warnings(summary)
    tick("statistics")
    return Analysis(columns=fit, summary=summary, extra={"dot": dot})


def _summarise(columns, numerator, denominator, config, pixel_size_A, dot, lattice, mode, coverage):
    # Columns in the edge margin are flagged but kept for the statistics when the margin is
    # their only flag: the outermost cells are where a depleted shell shows. Failed fits,
    # unassigned columns and columns outside the dot never enter them.
    use = columns[in_statistics(columns)]
    stats_table = type_statistics(use["intensity"], use["label"])
    a = config.analysis
    ratio = intensity_ratio(
        use["intensity"], use["label"], numerator, denominator, bootstrap=a.bootstrap, seed=a.seed
    )
    inside = use[use["depth_uc"] >= 0]
    depth = ratio_by_depth(
        inside["intensity"], inside["label"], inside["depth_uc"], numerator, denominator
    )
    spacing = {}
    for label in (numerator, denominator):
        sel = columns[(columns["label"] == label) & (columns["depth_uc"] >= 0)]
        cols, summ = peak_pair_spacing(
            sel[["x_px", "y_px"]].to_numpy(), lattice.vectors_px, pixel_size_A
        )
        for k in cols:
            columns.loc[sel.index, k] = cols[k].to_numpy()
        spacing[label] = SublatticeSpacing.from_dict(summ)
    summary = {
        "pixel_size_A": pixel_size_A,
        "material": config.material.name,
        "zone_axis": list(config.material.zone_axis),
        "intensity_measure": a.intensity,
        "dot": DotSummary(
            edge_lengths_nm=tuple(dot.edge_lengths_nm),
            area_nm2=dot.area_nm2,
            edge_lengths_method="extent of the A and BX column centres along the two "
            "lattice vectors",
            mode=mode,
            coverage=coverage,
        ).to_dict(),
        "columns": _column_counts(columns).to_dict(),
        "per_type": PerTypeSummary.from_table(stats_table).to_dict(),
        "ratio": ratio.to_dict(),
        "ratio_by_depth": depth.to_dict(orient="records"),
        "lattice": LatticeSummary(
            a_A=lattice.a_A,
            b_A=lattice.b_A,
            expected_a_A=lattice.expected_a_A,
            expected_b_A=lattice.expected_b_A,
            rotation_deg=lattice.rotation_deg,
            mirrored=bool(lattice.mirrored),
            rms_misfit_A=lattice.rms_misfit_A,
        ).to_dict(),
        "spacing": SpacingSummary(spacing).to_dict(),
    }
    return summary, {"dot": dot, "lattice": lattice, "depth_profile": depth}


def thickness_summary(
    ratio: RatioEstimate | None, series_path: str, fit_model: str | None = None
) -> ThicknessSummary:
    """Thicknesses consistent with the measured ratio under a reference series.

    The measured ratio and its (propagated) standard error are read against the series'
    fitted-volume ratio (the same measure as the default ``analysis.intensity``); every
    consistent range is returned, with a flag where the series is not monotonic. Without a
    ratio (None, or NaN) there is no estimate; a series fitted with another column model
    than ``fit_model`` is refused: the result then holds only the reason (``refused``).
    """
    from .analysis.thickness import thickness_from_ratio

    series = str(series_path)
    if ratio is None or not np.isfinite(ratio.ratio):
        return ThicknessSummary(series)
    try:
        estimate = thickness_from_ratio(ratio.ratio, ratio.stderr, series_path, fit_model=fit_model)
    except ModelMismatchError as exc:
        return ThicknessSummary(series, refused=str(exc))
    return ThicknessSummary(series, estimate=estimate)


def acquisition_used(stack, config: Config) -> tuple[dict, str | None]:
    """The voltage and convergence angle the pipeline uses for a stack, and where they came from.

    The file's metadata wins; where it has none, the config's ``acquisition`` values are
    used (300 kV and 18 mrad unless set).

    Returns
    -------
    acquisition : dict
        ``voltage_kv``, ``voltage_source``, ``convergence_mrad``, ``convergence_source``
        (``"file"`` or ``"config acquisition.<key>"``) and ``used_by`` (the stages that use
        them: the probe of the deconvolution, or none).
    note : str or None
        One sentence naming the values taken from the config, for the log; None when the
        file gave both (or when no stage uses them).
    """
    a = config.acquisition
    out, missing, taken = {}, [], []
    for key, what, unit, value in (
        ("voltage_kv", "accelerating voltage", "kV", stack.voltage_kv),
        ("convergence_mrad", "convergence semi-angle", "mrad", stack.convergence_mrad),
    ):
        source = key.split("_")[0] + "_source"
        if value:
            out[key], out[source] = float(value), "file"
        else:
            out[key], out[source] = float(getattr(a, key)), f"config acquisition.{key}"
            missing.append(what)
            taken.append(f"acquisition.{key} = {getattr(a, key):g} {unit}")
    out["used_by"] = ["deconvolve (probe PSF)"] if config.deconvolve.enabled else []
    note = None
    if taken and out["used_by"]:
        note = (
            f"the file records no {' and no '.join(missing)}; the deconvolution's probe uses "
            f"{' and '.join(taken)} from the config (set them with --set "
            f"acquisition.KEY=VALUE if the microscope differs)"
        )
    return out, note


def _count(analysis, config: Config) -> None:
    """Per-image atom counting (``counting.enabled``): counts into the columns, the mixtures
    into ``summary["counting"]``, the types that could not be counted into the warnings."""
    from .simulation.files import read_series

    c, warnings = config.counting, analysis.summary.setdefault("warnings", [])
    series = None
    if c.library and config.acquisition.vacuum_level is None:
        warnings.append(
            "counting: library counting skipped: counting.library needs normalised volumes "
            "(set acquisition.vacuum_level and acquisition.beam_level)"
        )
    elif c.library:
        series = read_series(c.library)
    analysis.columns, counted = count_columns(
        analysis.columns,
        in_statistics(analysis.columns),
        components_max=c.components_max,
        criterion=c.criterion,
        first_local_minimum=c.first_local_minimum,
        series=series,
    )
    analysis.summary["counting"] = counted
    warnings += [f"counting {k}: {v['error']}" for k, v in counted.items() if "error" in v]
    warnings += [f"counting {k}: {w}" for k, v in counted.items() for w in v.get("warnings", [])]


def process_stack(stack, config: Config, *, positions=None, progress=None) -> Analysis:
    """The whole pipeline on a loaded stack (:class:`stemqd.io.Stack`).

    The summary also records the effective config, its hash, the versions and the input's
    SHA-256, so that every number can be traced back. ``progress`` is called with the name
    of each of :data:`PIPELINE_STAGES` as it completes. ``positions`` (a CSV path, see
    :func:`read_positions`, or its table) are refined instead of finding the columns.
    """
    seeds_source = None
    if positions is not None and not isinstance(positions, pd.DataFrame):
        from .files import sha256_file

        seeds_source = {"path": str(positions), "sha256": sha256_file(positions)}
        positions = read_positions(positions)
    pixel = config.acquisition.pixel_size_A or stack.pixel_size_A
    check_contrast(stack.frames, str(stack.path))
    acquisition, defaults_note = acquisition_used(stack, config)
    images, info = preprocess(
        stack.frames,
        pixel,
        config,
        voltage_kv=acquisition["voltage_kv"],
        convergence_mrad=acquisition["convergence_mrad"],
        progress=progress,
    )
    fit_image = images.get(config.columns.fit_on, images["final"])
    if config.columns.fit_on == "background_removed" and "background_removed" not in images:
        fit_image = images["average"]
    analysis = analyse_image(
        images["final"], pixel, config, fit_image=fit_image, positions=positions, progress=progress
    )
    analysis.images = images
    analysis.extra.update(info)
    a = config.acquisition
    if a.vacuum_level is not None:
        # Cross-sections as fractions of the incident beam (Å²), as the simulated series.
        for key in ("volume", "volume_err"):
            analysis.columns[key.replace("volume", "volume_norm")] = normalised_volume(
                analysis.columns[key], pixel, a.vacuum_level, a.beam_level
            )
    if config.counting.enabled:
        _count(analysis, config)
    analysis.summary["acquisition"] = acquisition
    if defaults_note:
        analysis.summary.setdefault("warnings", []).append(defaults_note)
    if seeds_source is not None:
        fitting = replace(analysis.fitting, positions_file=seeds_source)
        analysis.summary["fitting"] = fitting.to_dict()
    if config.reference_series:
        thickness = thickness_summary(analysis.ratio, config.reference_series, config.columns.model)
        analysis.summary["thickness"] = thickness.to_dict()
        if thickness.refused is not None:
            analysis.summary.setdefault("warnings", []).append("thickness: " + thickness.refused)
    analysis.summary.update(
        {
            "input": InputSummary(
                path=str(stack.path),
                sha256=stack.sha256,
                frames=int(stack.frames.shape[0]),
                shape=tuple(stack.frames.shape[1:]),
                pixel_size_source=stack.pixel_size_source,
                voltage_kv=stack.voltage_kv,
                convergence_mrad=stack.convergence_mrad,
            ).to_dict(),
            "drift_px": {
                "max": float(np.abs(info["shifts_px"]).max()) if len(info["shifts_px"]) else 0.0
            },
            "config": config_to_dict(config, unset=None),
            "config_hash": config_hash(config),
            "preset": {"name": config.preset, "ratio_bias": preset_bias(config.preset)},
            "versions": versions(),
        }
    )
    return analysis


__all__ = [
    "CLEAR_FRACTION",
    "CLEAR_SIGNIFICANCE",
    "COMPLETE_TOLERANCE_NN",
    "EXCLUDED_WARNING_FRACTION",
    "FULL_FIELD_COVERAGE",
    "PIPELINE_STAGES",
    "WEAK_FRACTION",
    "BLANK_RELATIVE_SPREAD",
    "MIN_SPACING_PX",
    "acquisition_used",
    "analyse_image",
    "Analysis",
    "check_contrast",
    "cell_for",
    "column_spacing_for",
    "lattice_constant_A",
    "preprocess",
    "process_stack",
    "read_positions",
    "thickness_summary",
]
