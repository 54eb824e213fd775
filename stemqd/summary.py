"""Typed parts of an image's summary (``summary.json``): input, dot, columns, lattice,
per-type statistics, spacings, thickness, fitting and run.

Each part is a small frozen dataclass whose :meth:`to_dict` is exactly the dict the
pipeline writes into the summary, and whose :meth:`from_dict` reads it back from a summary
written by this or an older version: a key the file lacks becomes None (and is left out
of :meth:`to_dict` again, except in :class:`InputSummary` and :class:`JointFit`, whose
fields may be null in the file, and :class:`ThicknessSummary`, which always writes its
series and flag), or NaN for the measured numbers of
:class:`TypeStatistics` and :class:`SublatticeSpacing`; a missing part reads as every
field None (an empty mapping for the per-label parts :class:`PerTypeSummary` and
:class:`SpacingSummary`). The ratio is :class:`stemqd.analysis.statistics.RatioEstimate`;
the quality record :class:`stemqd.columns.quality.QualityRecord`.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .analysis.thickness import ThicknessEstimate

__all__ = [
    "BatchRun",
    "ColumnCounts",
    "CompareRecord",
    "DotSummary",
    "FittingSummary",
    "InputSummary",
    "JointFit",
    "LatticeSummary",
    "PerTypeSummary",
    "RunSummary",
    "SpacingSummary",
    "SublatticeSpacing",
    "ThicknessSummary",
    "TypeStatistics",
    "series_path",
]


def series_path(summary: dict) -> str | None:
    """The simulated series a result was measured against, as its config names it: the
    ``reference_series``, else the ``counting.library`` (None where it names neither)."""
    config = (summary or {}).get("config") or {}
    return config.get("reference_series") or (config.get("counting") or {}).get("library")


def _fields_of(cls, part) -> dict:
    """The fields of ``cls`` read from one summary part (a dict, or None where missing)."""
    part = part or {}
    return {f.name: part.get(f.name) for f in dataclasses.fields(cls)}


def _present(obj) -> dict:
    """The fields of a part that are not None, in field order."""
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}


def _num(value, fmt) -> str:
    """``value`` formatted with ``fmt``, or "n/a" where it is None or not finite."""
    if value is None or not np.isfinite(float(value)):
        return "n/a"
    return format(float(value), fmt)


def _float(value) -> float:
    """``value`` as a float, NaN where it is None (a null or a missing key in the file)."""
    return np.nan if value is None else float(value)


def _measured(cls, part) -> dict:
    """The fields of ``cls`` read from one entry of a per-label part, float fields as
    :func:`_float` gives them."""
    fields = _fields_of(cls, part)
    return {
        f.name: _float(fields[f.name]) if f.type == "float" else fields[f.name]
        for f in dataclasses.fields(cls)
    }


@dataclass(frozen=True)
class InputSummary:
    """The input file (``summary["input"]``).

    Attributes
    ----------
    path : str or None
        The image file as given.
    sha256 : str or None
        Its SHA-256 (hex).
    frames : int or None
        Number of frames in the stack.
    shape : tuple of int or None
        Frame shape (ny, nx), px.
    pixel_size_source : str or None
        Where the pixel size came from (the file's calibration or the config).
    voltage_kv, convergence_mrad : float or None
        As the file records them (None where it does not).
    """

    path: str | None = None
    sha256: str | None = None
    frames: int | None = None
    shape: tuple | None = None
    pixel_size_source: str | None = None
    voltage_kv: float | None = None
    convergence_mrad: float | None = None

    @classmethod
    def from_dict(cls, summary: dict) -> InputSummary:
        """The part ``summary["input"]`` of a summary."""
        fields = _fields_of(cls, (summary or {}).get("input"))
        if fields["shape"] is not None:
            fields["shape"] = tuple(fields["shape"])
        return cls(**fields)

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (every field, None as null)."""
        out = dataclasses.asdict(self)
        if out["shape"] is not None:
            out["shape"] = list(out["shape"])
        return out

    def __str__(self) -> str:
        shape = " x ".join(map(str, self.shape or ())) or "?"
        return (
            f"{self.path} ({self.frames} frames of {shape} px, SHA-256 "
            f"{(self.sha256 or '?')[:16]}, pixel size from {self.pixel_size_source})"
        )

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


@dataclass(frozen=True)
class DotSummary:
    """The dot's outline (``summary["dot"]``).

    Attributes
    ----------
    edge_lengths_nm : tuple of float
        Extent along the two lattice vectors, nm (NaN for a crystal filling the field).
    area_nm2 : float
        Area of the segmented dot, nm² (the whole field in ``dot.mode = none``).
    edge_lengths_method : str or None
        How the edge lengths were measured (None without a material).
    mode : {"dot", "none"} or None
        ``dot.mode`` used on the image (None in summaries that predate it).
    coverage : float or None
        Fraction of the field within one column spacing of a found column.
    """

    edge_lengths_nm: tuple | None = None
    area_nm2: float | None = None
    edge_lengths_method: str | None = None
    mode: str | None = None
    coverage: float | None = None

    @classmethod
    def from_dict(cls, summary: dict) -> DotSummary:
        """The part ``summary["dot"]`` of a summary."""
        fields = _fields_of(cls, (summary or {}).get("dot"))
        if fields["edge_lengths_nm"] is not None:
            fields["edge_lengths_nm"] = tuple(fields["edge_lengths_nm"])
        return cls(**fields)

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (fields that are None left out)."""
        out = _present(self)
        if "edge_lengths_nm" in out:
            out["edge_lengths_nm"] = list(out["edge_lengths_nm"])
        return out

    @property
    def mean_edge_nm(self) -> float | None:
        """Mean of the edge lengths that were measured, nm (None where none was)."""
        edges = [e for e in (self.edge_lengths_nm or ()) if e is not None]
        return float(np.mean(edges)) if edges else None

    def __str__(self) -> str:
        edges = " x ".join(_num(e, ".2f") for e in self.edge_lengths_nm or ())
        text = f"dot {edges or 'n/a'} nm, area {_num(self.area_nm2, '.1f')} nm²"
        if self.mode is not None:
            text += f", mode {self.mode} (coverage {_num(self.coverage, '.2f')})"
        return text

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


@dataclass(frozen=True)
class ColumnCounts:
    """How many columns were found, used and flagged (``summary["columns"]``).

    Attributes
    ----------
    total, used : int or None
        Columns fitted, and those that entered the statistics.
    flags : dict of str to int or None
        Columns per flag (a column with two flags counts under both).
    excluded_total : int or None
        Columns left out of the statistics.
    excluded_by_reason : dict of str to int or None
        The excluded columns per flag.
    """

    total: int | None = None
    used: int | None = None
    flags: dict | None = None
    excluded_total: int | None = None
    excluded_by_reason: dict | None = None

    @classmethod
    def from_dict(cls, summary: dict) -> ColumnCounts:
        """The part ``summary["columns"]`` of a summary."""
        part = (summary or {}).get("columns") or {}
        excluded = part.get("excluded") or {}
        return cls(
            total=part.get("total"),
            used=part.get("used"),
            flags=part.get("flags"),
            excluded_total=excluded.get("total"),
            excluded_by_reason=excluded.get("by_reason"),
        )

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (fields that are None left out)."""
        out = {
            k: v
            for k, v in (("total", self.total), ("used", self.used), ("flags", self.flags))
            if v is not None
        }
        excluded = {
            k: v
            for k, v in (("total", self.excluded_total), ("by_reason", self.excluded_by_reason))
            if v is not None
        }
        if excluded:
            out["excluded"] = excluded
        return out

    def __str__(self) -> str:
        text = f"columns {self.total} found, {self.used} used"
        if self.flags:
            text += "; flags: " + ", ".join(f"{k} {v}" for k, v in self.flags.items())
        return text

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


@dataclass(frozen=True)
class LatticeSummary:
    """The lattice registered on the columns (``summary["lattice"]``; absent without a
    material).

    Attributes
    ----------
    a_A, b_A : float or None
        Fitted lengths of the two lattice vectors, Å.
    expected_a_A, expected_b_A : float or None
        Their lengths in the projected cell, Å.
    rotation_deg : float or None
        Rotation of the lattice in the image, degrees.
    mirrored : bool or None
        Whether the lattice is the mirror image of the cell's.
    rms_misfit_A : float or None
        Root-mean-square distance of the columns to their sites, Å.
    """

    a_A: float | None = None
    b_A: float | None = None
    expected_a_A: float | None = None
    expected_b_A: float | None = None
    rotation_deg: float | None = None
    mirrored: bool | None = None
    rms_misfit_A: float | None = None

    @classmethod
    def from_dict(cls, summary: dict) -> LatticeSummary | None:
        """The part ``summary["lattice"]`` of a summary; None where the summary has none."""
        part = (summary or {}).get("lattice")
        return cls(**_fields_of(cls, part)) if part else None

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (fields that are None left out)."""
        return _present(self)

    def __str__(self) -> str:
        return (
            f"a, b = {_num(self.a_A, '.4f')}, {_num(self.b_A, '.4f')} Å (expected "
            f"{_num(self.expected_a_A, '.4f')}, {_num(self.expected_b_A, '.4f')}), rotation "
            f"{_num(self.rotation_deg, '.3f')}°, rms misfit {_num(self.rms_misfit_A, '.3f')} Å"
        )

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


@dataclass(frozen=True)
class TypeStatistics:
    """Intensity statistics of one column type (an entry of ``summary["per_type"]``, a row
    of :func:`stemqd.analysis.statistics.type_statistics` over the used columns).

    Attributes
    ----------
    count : float
        Columns of the type (a whole number, a float as summary.json has it).
    mean, std, sem : float
        Mean, standard deviation (ddof 1) and standard error of their intensities, in the
        units of ``analysis.intensity`` (NaN where the file has none).
    """

    count: float = np.nan
    mean: float = np.nan
    std: float = np.nan
    sem: float = np.nan

    @classmethod
    def from_dict(cls, entry: dict | None) -> TypeStatistics:
        """The statistics from their dict (a row of the table, or of the summary)."""
        return cls(**_measured(cls, entry))

    def to_dict(self) -> dict:
        """The entry as written to ``summary.json``."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (
            f"{_num(self.count, '.0f')} columns, mean {_num(self.mean, '.4g')} +- "
            f"{_num(self.sem, '.2g')} (s.e.), s.d. {_num(self.std, '.4g')}"
        )


@dataclass(frozen=True)
class SublatticeSpacing:
    """Peak-pair spacings of one sublattice (an entry of ``summary["spacing"]``, from
    :func:`stemqd.analysis.lattice.peak_pair_spacing` on its columns inside the dot).

    Attributes
    ----------
    spacing_a_nm_mean, spacing_a_nm_std : float
        Mean and standard deviation (ddof 1) of the spacings along a, nm (NaN without
        pairs, or without two for the standard deviation).
    spacing_b_nm_mean, spacing_b_nm_std : float
        The same along b, nm.
    n_pairs_a, n_pairs_b : int or None
        Peak pairs found along a and b.
    reference_vectors_A : tuple of (float, float) or None
        The reference vectors a and b, Å.
    """

    spacing_a_nm_mean: float = np.nan
    spacing_a_nm_std: float = np.nan
    spacing_b_nm_mean: float = np.nan
    spacing_b_nm_std: float = np.nan
    n_pairs_a: int | None = None
    n_pairs_b: int | None = None
    reference_vectors_A: tuple | None = None

    @classmethod
    def from_dict(cls, entry: dict | None) -> SublatticeSpacing:
        """The spacings from their dict (``peak_pair_spacing``'s, or the summary's)."""
        fields = _measured(cls, entry)
        if fields["reference_vectors_A"] is not None:
            fields["reference_vectors_A"] = tuple(
                tuple(map(_float, v)) for v in fields["reference_vectors_A"]
            )
        return cls(**fields)

    def to_dict(self) -> dict:
        """The entry as written to ``summary.json``."""
        out = dataclasses.asdict(self)
        if out["reference_vectors_A"] is not None:
            out["reference_vectors_A"] = [list(v) for v in out["reference_vectors_A"]]
        return out

    def __str__(self) -> str:
        def along(mean, std, pairs):
            return f"{_num(10 * mean, '.3f')} Å (s.d. {_num(10 * std, '.3f')}, {pairs} pairs)"

        return (
            f"a {along(self.spacing_a_nm_mean, self.spacing_a_nm_std, self.n_pairs_a)}, "
            f"b {along(self.spacing_b_nm_mean, self.spacing_b_nm_std, self.n_pairs_b)}"
        )


@dataclass(frozen=True)
class _ByLabel(Mapping):
    """A summary part holding one record per column label, read as a mapping from the
    label to its record (empty where the summary has no such part)."""

    by_label: dict = field(default_factory=dict)

    # The part's key in the summary and the record of one label (set by each subclass).
    _part = ""
    _record = None

    @classmethod
    def from_dict(cls, summary: dict):
        """The part of a summary, one record per label."""
        part = (summary or {}).get(cls._part) or {}
        return cls({label: cls._record.from_dict(entry) for label, entry in part.items()})

    def to_dict(self) -> dict:
        """The part as written to ``summary.json``."""
        return {label: record.to_dict() for label, record in self.by_label.items()}

    def __getitem__(self, label):
        return self.by_label[label]

    def __iter__(self):
        return iter(self.by_label)

    def __len__(self) -> int:
        return len(self.by_label)

    def __str__(self) -> str:
        return "\n".join(f"{label}: {record}" for label, record in self.items())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th>{html.escape(str(label))}</th><td>{html.escape(str(record))}</td></tr>"
            for label, record in self.items()
        )
        return f"<table>{rows}</table>"


@dataclass(frozen=True)
class PerTypeSummary(_ByLabel):
    """Intensity statistics per column type (``summary["per_type"]``): a mapping from the
    column label (e.g. ``"Cs"``, or ``"column"`` without a material) to its
    :class:`TypeStatistics`."""

    _part = "per_type"
    _record = TypeStatistics

    @classmethod
    def from_table(cls, table) -> PerTypeSummary:
        """From the table of :func:`stemqd.analysis.statistics.type_statistics`."""
        return cls(
            {
                label: TypeStatistics.from_dict(row)
                for label, row in table.to_dict(orient="index").items()
            }
        )


@dataclass(frozen=True)
class SpacingSummary(_ByLabel):
    """Peak-pair spacings of the ratio's two sublattices (``summary["spacing"]``; empty
    without a material): a mapping from the column label to its
    :class:`SublatticeSpacing`."""

    _part = "spacing"
    _record = SublatticeSpacing


@dataclass(frozen=True)
class ThicknessSummary:
    """Thicknesses consistent with the ratio under a reference series
    (``summary["thickness"]``; absent without ``reference_series``).

    Attributes
    ----------
    series : str or None
        The reference series file.
    refused : str or None
        Why the series was refused (it was fitted with another column model); None
        otherwise.
    estimate : ThicknessEstimate or None
        The consistent ranges; None where no ratio was measured or the series was refused.
    """

    series: str | None = None
    refused: str | None = None
    estimate: ThicknessEstimate | None = None

    @property
    def flag(self) -> str:
        """The estimate's flags joined by "; " ("" when none), "refused", or "no ratio
        measured"."""
        if self.estimate is not None:
            return self.estimate.flag
        return "refused" if self.refused is not None else "no ratio measured"

    @classmethod
    def from_dict(cls, summary: dict) -> ThicknessSummary | None:
        """The part ``summary["thickness"]`` of a summary; None where the summary has none."""
        part = (summary or {}).get("thickness")
        if not part:
            return None
        estimate = ThicknessEstimate.from_dict(part) if "ranges_uc" in part else None
        return cls(part.get("series"), part.get("refused"), estimate)

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (the estimate's fields, then ``flag``)."""
        out = {"series": self.series}
        if self.refused is not None:
            out["refused"] = self.refused
        if self.estimate is not None:
            out.update(self.estimate.to_dict())
        out["flag"] = self.flag
        return out

    def __str__(self) -> str:
        if self.refused is not None:
            return f"series {self.series} refused: {self.refused}"
        if self.estimate is None:
            return f"none under {self.series} ({self.flag})"
        ranges = ", ".join(
            f"{lo:.1f}-{hi:.1f} nm ({lo_uc:.1f}-{hi_uc:.1f} uc)"
            for (lo, hi), (lo_uc, hi_uc) in zip(self.estimate.ranges_nm, self.estimate.ranges_uc)
        )
        text = f"consistent with the ratio under {self.series}: {ranges or 'none'}"
        return text + (f" ({self.flag})" if self.flag else "")

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


@dataclass(frozen=True)
class JointFit:
    """Image-wide results of the joint column fit (``attrs["joint"]`` of
    :func:`stemqd.columns.fit.refine_columns`, within ``summary["fitting"]``; a window fit
    has none).

    Attributes
    ----------
    shapes, shapes_err : dict of str to dict of str to float or None
        The shared shape parameters per column type ("" for one type for all), px (angles
        rad), and their standard errors.
    constant : float or None
        The constant background (None with a local or a spline background).
    iterations : int or None
        Levenberg-Marquardt iterations.
    converged : bool or None
        Whether every column converged: the fit met its convergence test, or it stopped
        at its iteration limit with every column settled (see ``not_converged``).
    not_converged : int or None
        Columns still moving when the fit stopped at its iteration limit (flagged "not
        converged" and left out of the statistics).
    residual_variance : float or None
        Variance of the residuals, (image units)².
    pixels : int or None
        Pixels in the fit.
    smooth_rounds : int or None
        ``local`` and ``smooth`` backgrounds: rounds of background and shape run.
    smooth_width_change : float or None
        The largest relative change of a width in the last of those rounds (settled below
        1e-3; see ``columns.background_rounds`` for what an unsettled background costs).
    centre_width_ratio : float or None
        ``local`` and ``smooth``: the shared width refitted on the central 160 columns
        alone over the image's (the type farthest from 1); None on images of fewer
        columns, or where a column type is absent from the centre. Far from 1 (outside 0.8-1.25) the width is not shared: the background's
        rounds have not settled, and a warning says so.
    other : dict
        Further results the fit reports that this record does not name, as given.
    """

    shapes: dict | None = None
    shapes_err: dict | None = None
    constant: float | None = None
    iterations: int | None = None
    converged: bool | None = None
    not_converged: int | None = None
    residual_variance: float | None = None
    pixels: int | None = None
    smooth_rounds: int | None = None
    smooth_width_change: float | None = None
    centre_width_ratio: float | None = None
    other: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, part: dict) -> JointFit:
        """The results from their dict (keys the record does not name go to ``other``)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "other"]
        other = {k: v for k, v in part.items() if k not in names}
        return cls(**{name: part.get(name) for name in names}, other=other)

    def to_dict(self) -> dict:
        """The results as written to ``summary.json`` (every named field, None as null,
        then ``other``)."""
        out = dataclasses.asdict(self)
        other = out.pop("other")
        return out | other

    def __str__(self) -> str:
        state = {True: "converged", False: "did not converge"}.get(self.converged, "ended")
        if self.converged is False and self.not_converged:
            state += f" ({self.not_converged} columns still moving)"
        text = (
            f"joint fit {state} after {self.iterations} iterations, residual variance "
            f"{_num(self.residual_variance, '.4g')} over {self.pixels} px"
        )
        if self.constant is not None:
            text += f", constant background {_num(self.constant, '.4g')}"
        errors = self.shapes_err or {}
        for label, params in (self.shapes or {}).items():
            err = errors.get(label) or {}
            values = ", ".join(
                f"{name} {_num(v, '.4g')} +- {_num(err.get(name), '.2g')}"
                for name, v in params.items()
            )
            text += f"; {label + ': ' if label else ''}{values}"
        return text


@dataclass(frozen=True)
class FittingSummary:
    """How the columns were fitted (``summary["fitting"]``).

    Attributes
    ----------
    model : str or None
        ``columns.model`` (``round``, ``gaussian7``, ``window7``).
    background : str or None
        The background model (``offset per window`` for window fits).
    fit_on : str or None
        The image the intensities were fitted on (``columns.fit_on``).
    spacing_px : float or None
        Nearest-neighbour column distance used, px.
    spacing_source : str or None
        Where it came from (the projected cell, ``columns.spacing_A``, the image).
    seeds : str or None
        ``found`` or ``positions file``.
    seeds_from_lattice : int or None
        Seeds added at lattice sites no column was found on.
    joint : JointFit or None
        The joint fit's results (None for window fits).
    seeds_dropped_off_lattice : int or None
        Found seeds dropped as off every lattice site (None where none was refitted).
    positions_file : dict or None
        ``path`` and ``sha256`` of the positions file the seeds came from.
    """

    model: str | None = None
    background: str | None = None
    fit_on: str | None = None
    spacing_px: float | None = None
    spacing_source: str | None = None
    seeds: str | None = None
    seeds_from_lattice: int | None = None
    joint: JointFit | None = None
    seeds_dropped_off_lattice: int | None = None
    positions_file: dict | None = None

    @classmethod
    def from_dict(cls, summary: dict) -> FittingSummary:
        """The part ``summary["fitting"]`` of a summary (its keys that are not this
        record's are the joint fit's)."""
        part = (summary or {}).get("fitting") or {}
        names = [f.name for f in dataclasses.fields(cls) if f.name != "joint"]
        rest = {k: v for k, v in part.items() if k not in names}
        return cls(
            **{name: part.get(name) for name in names},
            joint=JointFit.from_dict(rest) if rest else None,
        )

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (fields that are None left out, the joint
        fit's results after the seeds)."""
        out = _present(self)
        joint = out.pop("joint", None)
        tail = {k: out.pop(k) for k in ("seeds_dropped_off_lattice", "positions_file") if k in out}
        return out | (self.joint.to_dict() if joint is not None else {}) | tail

    def __str__(self) -> str:
        seeds = f"seeds {self.seeds}"
        if self.positions_file:
            seeds += f" {self.positions_file.get('path')}"
        seeds += f" ({self.seeds_from_lattice} added from the lattice"
        if self.seeds_dropped_off_lattice is not None:
            seeds += f", {self.seeds_dropped_off_lattice} dropped off it"
        text = (
            f"{self.model} Gaussians, {self.background} background, fitted on the "
            f"{self.fit_on} image; spacing {_num(self.spacing_px, '.3f')} px "
            f"({self.spacing_source}); {seeds})"
        )
        return text + (f"\n{self.joint}" if self.joint is not None else "")

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


@dataclass(frozen=True)
class RunSummary:
    """The run that wrote the summary (``summary["run"]``; written by ``stemqd process``,
    absent from a summary held in memory).

    Attributes
    ----------
    name : str or None
        The stack's output-folder name.
    file : str or None
        The input as the user gave it.
    elapsed_s : float or None
        Processing time of the stack, s.
    finished_utc : str or None
        When the results were written (ISO 8601, UTC).
    """

    name: str | None = None
    file: str | None = None
    elapsed_s: float | None = None
    finished_utc: str | None = None

    @classmethod
    def from_dict(cls, summary: dict) -> RunSummary:
        """The part ``summary["run"]`` of a summary."""
        return cls(**_fields_of(cls, (summary or {}).get("run")))

    def to_dict(self) -> dict:
        """The part as written to ``summary.json`` (fields that are None left out)."""
        return _present(self)

    def __str__(self) -> str:
        return (
            f"{self.name} from {self.file} in {_num(self.elapsed_s, '.1f')} s, finished "
            f"{self.finished_utc}"
        )

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


@dataclass(frozen=True)
class BatchRun:
    """What one ``stemqd process`` run of a folder did (its ``run.json``): the command, the
    counts, what an interrupt left unfinished, and the versions.

    Attributes
    ----------
    command : str or None
        The command line (None for a run started from Python without one).
    started_utc : str or None
        When the run started (ISO 8601, UTC).
    elapsed_s : float or None
        Wall time of the whole run, s.
    executor : str or None
        ``serial``, ``process`` or ``dask``.
    config_hash : str or None
        Hash of the run's config (``config.toml`` beside it holds the config).
    counts : dict or None
        Stacks ``processed``, ``skipped`` (results reused) and ``failed`` in this run.
    interrupted : bool or None
        Whether the run was stopped (Ctrl-C) before every stack finished.
    not_finished : list of str or None
        The stacks an interrupt left unprocessed (rerun the same command to resume).
    versions : dict or None
        Library versions.
    stacks : list of dict or None
        ``name``, ``file`` and ``status`` of every stack of the run.
    """

    command: str | None = None
    started_utc: str | None = None
    elapsed_s: float | None = None
    executor: str | None = None
    config_hash: str | None = None
    counts: dict | None = None
    interrupted: bool | None = None
    not_finished: list | None = None
    versions: dict | None = None
    stacks: list | None = None

    @classmethod
    def from_dict(cls, record: dict) -> BatchRun:
        """The record of a ``run.json`` (keys it lacks are None)."""
        return cls(**_fields_of(cls, record))

    def to_dict(self) -> dict:
        """The record as written to ``run.json`` (every field, None as null)."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        counts = self.counts or {}
        text = (
            f"run started {self.started_utc} ({self.executor}), "
            f"{_num(self.elapsed_s, '.1f')} s: {counts.get('processed', 0)} processed, "
            f"{counts.get('skipped', 0)} reused, {counts.get('failed', 0)} failed"
        )
        if self.interrupted:
            text += (
                f"; interrupted, {len(self.not_finished or [])} not finished "
                "(rerun the same command to resume)"
            )
        failed = [s["name"] or s["file"] for s in self.stacks or [] if s["status"] == "failed"]
        if failed:
            text += f"\nfailed: {', '.join(map(str, failed))}"
        return text + (f"\ncommand: {self.command}" if self.command else "")

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


@dataclass(frozen=True)
class CompareRecord:
    """A comparison of groups of dots (``compare.json``, written by ``stemqd compare``).

    The tables are lists of row dicts, as written; :meth:`table` gives one as a DataFrame.

    Attributes
    ----------
    stemqd_version, versions, parameters, inputs
        Provenance (:func:`stemqd.provenance.record`): the test settings, and the SHA-256 of
        every dot's ``summary.json`` compared.
    groups : dict of str to str or None
        Group name to its ``stemqd process`` folder (absolute path).
    ratio_label : str or None
        The ratio compared (e.g. ``Cs:PbBr``).
    group_stats, tests, depth, dots : list of dict or None
        Per-group statistics, per pair of groups, per group and depth, per dot.
    thickness, thickness_stats : list of dict or None
        Where dots were counted: per group, type and count; per group and type.
    warnings : list of str or None
    created_utc : str or None
        When the comparison was written (ISO 8601, UTC).
    """

    stemqd_version: str | None = None
    versions: dict | None = None
    parameters: dict | None = None
    inputs: dict | None = None
    groups: dict | None = None
    ratio_label: str | None = None
    group_stats: list | None = None
    tests: list | None = None
    depth: list | None = None
    thickness: list | None = None
    thickness_stats: list | None = None
    dots: list | None = None
    warnings: list | None = None
    created_utc: str | None = None

    #: The fields that hold tables (lists of row dicts).
    TABLES = ("group_stats", "tests", "depth", "thickness", "thickness_stats", "dots")
    #: Tables only a comparison of counted dots has (left out of the file otherwise).
    COUNTED = ("thickness", "thickness_stats")

    @classmethod
    def from_dict(cls, record: dict | None) -> CompareRecord:
        """The record of a ``compare.json`` (keys it lacks are None)."""
        return cls(**_fields_of(cls, record))

    def to_dict(self) -> dict:
        """The record as written to ``compare.json`` (the tables of a comparison without
        counts left out)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None or k not in self.COUNTED}

    def table(self, name: str):
        """The table ``name`` (one of :attr:`TABLES`) as a DataFrame (empty where absent)."""
        import pandas as pd

        if name not in self.TABLES:
            raise ValueError(f"{name!r} is not a table of compare.json ({', '.join(self.TABLES)})")
        return pd.DataFrame(getattr(self, name) or [])

    def __str__(self) -> str:
        groups = " vs ".join(self.groups or {}) or "?"
        text = f"{self.ratio_label or 'ratio'} compared over {groups}: {len(self.dots or [])} dots"
        return text + "".join(f"\nwarning: {w}" for w in self.warnings or [])

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"
