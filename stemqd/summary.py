"""Typed parts of an image's summary (``summary.json``): input, dot, columns, lattice.

Each part is a small frozen dataclass whose :meth:`to_dict` is exactly the dict the
pipeline writes into the summary, and whose :meth:`from_dict` reads it back from a summary
written by this or an older version: a key the file lacks becomes None (and is left out
of :meth:`to_dict` again, except in :class:`InputSummary`, whose fields may be null in the
file), a missing part reads as every field None. The ratio is
:class:`stemqd.analysis.statistics.RatioEstimate`; the quality record
:class:`stemqd.columns.quality.QualityRecord`.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass

import numpy as np

__all__ = ["ColumnCounts", "DotSummary", "InputSummary", "LatticeSummary"]


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
