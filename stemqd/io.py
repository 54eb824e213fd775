"""Reading and writing image stacks, with their physical calibration.

:func:`load` turns any supported microscope file into a :class:`Stack`: float32 frames
``(n, y, x)``, the pixel size in Å and where it came from, the beam voltage and convergence
semi-angle where the file records them, and a SHA-256 of the file for provenance. Every
problem a user can cause (a missing, empty, truncated or unsupported file, colour or 4-D
data, non-finite pixels, frames too small, no calibration) raises an
:class:`~stemqd.errors.InputError` whose message names the file and says what to do.

Supported formats
-----------------
========================  ==================================  =========================
Extension                 Reader                              Calibration from
========================  ==================================  =========================
``.tif``, ``.tiff``       tifffile                            ImageJ unit + resolution,
                                                              OME ``PhysicalSizeX``, FEI
                                                              ``PixelWidth``, resolution
                                                              tags in cm/mm/µm
``.dm3``, ``.dm4``        ``rsciio.digitalmicrograph``        axis scale and units
``.emd`` (Velox, NCEM)    ``rsciio.emd``                      axis scale and units
``.ser``                  ``rsciio.tia``                      axis scale and units
``.hspy``, ``.hdf5``,     ``rsciio.hspy`` (``rsciio.emd`` for  axis scale and units
``.h5``                   EMD files with those extensions)
``.zspy``                 ``rsciio.zspy``                     axis scale and units
``.npy``                  numpy                               none: pass an override
========================  ==================================  =========================

Files are written through :func:`stemqd.files.atomic_write`, so that an interrupted run
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CalibrationError, InputError
from .files import atomic_write, sha256_file, to_jsonable

__all__ = [
    "MIN_FRAME_PX",
    "SUPPORTED_EXTENSIONS",
    "Stack",
    "from_array",
    "from_signal",
    "load",
    "parse_length",
    "to_signal",
    "write_stack_tiff",
]

#: Smallest frame side (px) that column finding can work with.
MIN_FRAME_PX = 32

#: File extensions :func:`load` reads (lower case).
SUPPORTED_EXTENSIONS = (
    ".tif", ".tiff", ".dm3", ".dm4", ".emd", ".ser", ".hspy", ".hdf5", ".h5", ".zspy", ".npy",
)  # fmt: skip

_PIXEL_SIZE_HINT = "pass --pixel-size, e.g. --pixel-size 0.25A"
_PIXEL_SIZE_HINT_PYTHON = "pass pixel_size_A, e.g. pixel_size_A='0.25A'"

# Length units in Å. Keys are normalised by ``_norm_unit`` (NFKC folds the micro sign
# into Greek mu and the Ångström sign into Å; then lower case).
_LENGTH_UNITS_A = {
    "a": 1.0, "å": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0, "ångström": 1.0,
    "pm": 1e-2, "picometer": 1e-2, "picometers": 1e-2, "picometre": 1e-2,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0,
    "μm": 1e4, "um": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4,
    "micrometers": 1e4, "micrometre": 1e4,
    "mm": 1e7, "millimeter": 1e7, "cm": 1e8, "centimeter": 1e8, "m": 1e10, "meter": 1e10,
}  # fmt: skip


# --------------------------------------------------------------------------------------
# The loaded stack


@dataclass(frozen=True, eq=False)
class Stack:
    """An image stack with its physical calibration, as loaded by :func:`load`.

    Attributes
    ----------
    frames : ndarray of float32, shape (n, y, x)
        Detector intensities, read-only. A single image has ``n == 1``.
    pixel_size_A : float
        Pixel size in Å (square pixels).
    pixel_size_source : str
        Where the pixel size came from, e.g. ``"metadata (ImageJ resolution, nm)"`` or
        ``"override"``.
    voltage_kv : float or None
        Accelerating voltage (kV), if the file records it.
    convergence_mrad : float or None
        Probe convergence semi-angle (mrad), if the file records it.
    path : str
        The file that was read.
    sha256 : str
        Hex SHA-256 of the file bytes (see :func:`sha256_file`).
    dtype : str
        Name of the dtype stored in the file, before conversion to float32.
    metadata : dict
        A small JSON-able summary: format, reader, original shape and axes, signal title,
        the file's own pixel size when overridden, reader warnings, instrument fields.
    """

    frames: np.ndarray = field(repr=False)
    pixel_size_A: float
    pixel_size_source: str
    voltage_kv: float | None
    convergence_mrad: float | None
    path: str
    sha256: str = field(repr=False)
    dtype: str
    metadata: dict = field(default_factory=dict, repr=False)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n, y, x)`` shape of :attr:`frames`."""
        return tuple(int(s) for s in self.frames.shape)  # type: ignore[return-value]

    @property
    def field_of_view_A(self) -> tuple[float, float]:
        """``(y, x)`` extent of one frame in Å."""
        return (self.frames.shape[1] * self.pixel_size_A, self.frames.shape[2] * self.pixel_size_A)

    def summary(self) -> dict:
        """Everything but the pixels, as a JSON-able dict (what ``stemqd info`` prints)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "shape": list(self.shape),
            "n_frames": self.n_frames,
            "dtype": self.dtype,
            "pixel_size_A": self.pixel_size_A,
            "pixel_size_source": self.pixel_size_source,
            "voltage_kv": self.voltage_kv,
            "convergence_mrad": self.convergence_mrad,
            "metadata": self.metadata,
        }


@dataclass
class _Raw:
    """What a format reader hands to :func:`load`, before validation."""

    data: np.ndarray
    pixel_size_A: float | None = None
    pixel_size_source: str | None = None
    calibration_note: str | None = None  # why there is no pixel size, for the error
    calibration_error: str | None = None  # a calibration that is there but unusable
    voltage_kv: float | None = None
    convergence_mrad: float | None = None
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Public functions


def load(path: str | os.PathLike, pixel_size_A: float | str | None = None) -> Stack:
    """Load an image or image stack with its calibration.

    Parameters
    ----------
    path : str or path-like
        A file of a supported format (see the module docstring). A ``.zspy`` store is a
        folder.
    pixel_size_A : float or str, optional
        Pixel size in Å that replaces the file's calibration; a string is parsed by
        :func:`parse_length` (``"0.025nm"``). Required for files without calibration
        (e.g. ``.npy``).

    Returns
    -------
    Stack
        Frames as read-only float32 ``(n, y, x)``, with the pixel size (Å), its source,
        the voltage (kV) and convergence semi-angle (mrad) where recorded.

    Raises
    ------
    InputError
        The file is missing, empty, truncated, of an unsupported format, colour (RGB),
        1-D or more than 3-D, has non-finite pixels, frames smaller than
        ``MIN_FRAME_PX`` or of different shapes.
    CalibrationError
        The file has no usable pixel size and no `pixel_size_A` was given.

    Examples
    --------
    >>> stack = load("scan.dm4")                          # doctest: +SKIP
    >>> stack.frames.shape, stack.pixel_size_A             # doctest: +SKIP
    ((20, 1024, 1024), 0.1953)
    >>> load("scan.npy", pixel_size_A="0.25A").pixel_size_source  # doctest: +SKIP
    'override'
    """
    path = os.fspath(path)
    override = _check_override(pixel_size_A)
    ext = _check_path(path)

    with (
        warnings.catch_warnings(record=True) as caught,
        _LogCapture(("rsciio", "tifffile", "hyperspy")) as log,
    ):
        warnings.simplefilter("always")
        raw = _read(path, ext)
    notes = sorted({str(w.message) for w in caught} | set(log.errors))
    if notes:
        raw.metadata["reader_warnings"] = notes

    return _to_stack(raw, path, override, sha256_file(path))


def from_array(
    frames: Any,
    pixel_size_A: float | str,
    *,
    voltage_kv: float | None = None,
    convergence_mrad: float | None = None,
    name: str = "array",
) -> Stack:
    """A :class:`Stack` of frames already in memory, validated as :func:`load` validates
    a file.

    Parameters
    ----------
    frames : array_like, shape (y, x) or (n, y, x)
        Detector intensities (any real numeric dtype; a dask array is computed).
    pixel_size_A : float or str
        Pixel size in Å, or a length string for :func:`parse_length` (``"0.025nm"``).
    voltage_kv : float, optional
        Accelerating voltage in kV.
    convergence_mrad : float, optional
        Probe convergence semi-angle in mrad.
    name : str
        What the stack is called in messages and outputs, in place of a file path.

    Returns
    -------
    Stack
        With ``pixel_size_source == "given"`` and ``sha256`` the SHA-256 of the float32
        frames' bytes (C order), so identical arrays give identical provenance.

    Raises
    ------
    InputError
        For the data problems :func:`load` reports (colour, 1-D or 4-D, non-finite
        pixels, frames under ``MIN_FRAME_PX``), naming `name`.

    Examples
    --------
    >>> import numpy as np
    >>> stack = from_array(np.ones((64, 64)), "0.2A", voltage_kv=300)
    >>> stack.shape, stack.pixel_size_A
    ((1, 64, 64), 0.2)
    """
    raw = _Raw(
        data=np.asarray(frames),
        voltage_kv=voltage_kv,
        convergence_mrad=convergence_mrad,
        metadata={"format": "array", "original_shape": list(np.shape(frames))},
    )
    size = parse_length(pixel_size_A)
    _set_size(raw, size, "given")
    return _to_stack(raw, name, None, None)


def from_signal(signal: Any, pixel_size_A: float | str | None = None) -> Stack:
    """A :class:`Stack` of a HyperSpy ``Signal2D``, calibrated from its axes and metadata
    the way :func:`load` calibrates a file that rosettasciio reads.

    The inverse of :func:`to_signal`: the pixel size comes from the two signal axes' scale
    and units (a length unit is required), the voltage and convergence semi-angle from
    ``Acquisition_instrument.TEM`` (and the microscope tags DM and NCEM files keep in the
    original metadata). A navigation axis becomes the frames.

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D
        The image or stack (with at most one navigation axis); a lazy signal is computed.
    pixel_size_A : float or str, optional
        Pixel size in Å that replaces the axes' calibration, as in :func:`load`.

    Returns
    -------
    Stack
        ``path`` is the signal's title (or ``original_filename``), and ``sha256`` the
        SHA-256 of the float32 frames' bytes.

    Raises
    ------
    InputError
        The signal is not an image (or stack of images), or its data are unusable.
    CalibrationError
        The axes carry no length calibration and no `pixel_size_A` was given.
    """
    axes_manager = getattr(signal, "axes_manager", None)
    if axes_manager is None or getattr(signal, "metadata", None) is None:
        raise InputError(
            f"from_signal needs a HyperSpy signal, not {type(signal).__name__}; for a NumPy "
            "array use from_array"
        )
    md = signal.metadata.as_dictionary()
    name = (
        _get_path(md, "General.title")
        or _get_path(md, "General.original_filename")
        or "HyperSpy signal"
    )
    if len(axes_manager.signal_axes) != 2:
        raise InputError(
            f"{name}: a signal with {len(axes_manager.signal_axes)} signal axes is not an "
            "image; pass a Signal2D (e.g. signal.as_signal2D((0, 1)))"
        )
    # rosettasciio's dictionaries list axes in array order, HyperSpy's axes manager in
    # natural (x first) order.
    axes = [
        a.get_axis_dictionary()
        for a in (*axes_manager.navigation_axes[::-1], *axes_manager.signal_axes[::-1])
    ]
    sig = {
        "data": signal.data,
        "axes": axes,
        "metadata": md,
        "original_metadata": signal.original_metadata.as_dictionary(),
    }
    import hyperspy

    raw = _raw_from_signal(sig, "HyperSpy", name, f"hyperspy {hyperspy.__version__}")
    return _to_stack(raw, name, _check_override(pixel_size_A), None, _PIXEL_SIZE_HINT_PYTHON)


def _to_stack(
    raw: _Raw,
    path: str,
    override: float | None,
    sha256: str | None,
    hint: str = _PIXEL_SIZE_HINT,
) -> Stack:
    """Validate what a reader (or an in-memory source) gave and calibrate it.

    `sha256` is the file's checksum; None hashes the validated float32 frames. `hint`
    says how to give a pixel size where there is none.
    """
    frames, dtype = _to_frames(raw.data, path)

    if override is not None:
        if raw.pixel_size_A is not None:
            raw.metadata["pixel_size_A_file"] = raw.pixel_size_A
            raw.metadata["pixel_size_source_file"] = raw.pixel_size_source
        pixel_size, source = override, "override"
    elif raw.pixel_size_A is not None:
        pixel_size, source = raw.pixel_size_A, raw.pixel_size_source or "metadata"
    elif raw.calibration_error is not None:
        raise CalibrationError(raw.calibration_error)
    else:
        note = f" ({raw.calibration_note})" if raw.calibration_note else ""
        raise CalibrationError(f"{path}: no pixel size in the file's metadata{note}; {hint}")

    return Stack(
        frames=frames,
        pixel_size_A=float(pixel_size),
        pixel_size_source=source,
        voltage_kv=_positive_or_none(raw.voltage_kv),
        convergence_mrad=_positive_or_none(raw.convergence_mrad),
        path=path,
        sha256=sha256 if sha256 is not None else hashlib.sha256(frames.tobytes()).hexdigest(),
        dtype=dtype,
        metadata=to_jsonable(raw.metadata, max_array=16),
    )


def parse_length(text: str | float) -> float:
    """Parse a length such as ``"0.25A"``, ``"0.025 nm"`` or ``"25pm"`` into Å.

    Parameters
    ----------
    text : str or float
        A positive number with an optional unit: Å (``A``, ``Å``, ``angstrom``), ``pm``,
        ``nm``, ``um``/``µm``, ``mm``, ``m``. A bare number, or a float, is in Å.

    Returns
    -------
    float
        The length in Å.

    Raises
    ------
    InputError
        The text is not a positive, finite length with a known unit.

    Examples
    --------
    >>> parse_length("0.025nm")
    0.25
    >>> parse_length("25 pm")
    0.25
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit, factor = float(text), "", 1.0
    else:
        match = re.fullmatch(
            r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S*)\s*", str(text)
        )
        factor = None
        if match:
            value, unit = float(match.group(1)), match.group(2)
            factor = 1.0 if unit == "" else _unit_to_A(unit)
        if factor is None:
            raise InputError(
                f"invalid length {text!r}: give a number with a unit, e.g. '0.25A', "
                "'0.025nm' or '25pm' (a bare number is in Å)"
            )
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"invalid length {text!r}: it must be positive and finite")
    return value * factor


def write_stack_tiff(
    path: str | os.PathLike,
    frames: np.ndarray,
    pixel_size_A: float,
    voltage_kv: float | None = None,
    convergence_mrad: float | None = None,
    dtype: str = "float32",
) -> None:
    """Write frames as a calibrated ImageJ hyperstack TIFF, atomically.

    The pixel size is stored as ImageJ expects it (``unit=nm`` in the description, pixels
    per nm in the X/YResolution tags), so Fiji shows the calibration; the voltage and
    convergence angle go in the ImageJ ``Info`` text, which ImageJ keeps on re-saving.
    :func:`load` reads all of them back.

    Parameters
    ----------
    path : str or path-like
        Output file (``.tif``).
    frames : array_like, shape (n, y, x) or (y, x)
        Image or stack.
    pixel_size_A : float
        Pixel size in Å.
    voltage_kv : float, optional
        Accelerating voltage in kV.
    convergence_mrad : float, optional
        Convergence semi-angle in mrad.
    dtype : {"float32", "uint16"}
        Pixel type on disk; ``uint16`` stores rounded counts (4x smaller than float32
        with ImageJ's layout) and refuses values outside 0..65535.
    """
    import tifffile

    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    if frames.ndim != 3:
        raise InputError(
            f"{path}: cannot write frames of shape {frames.shape}; expected (n, y, x) or (y, x)"
        )
    pixel_size_A = parse_length(pixel_size_A)
    px_per_nm = 10.0 / pixel_size_A
    info = [f"stemqd_pixel_size_A = {pixel_size_A!r}"]
    if voltage_kv is not None:
        info.append(f"stemqd_voltage_kv = {float(voltage_kv)!r}")
    if convergence_mrad is not None:
        info.append(f"stemqd_convergence_mrad = {float(convergence_mrad)!r}")
    if dtype == "uint16":
        counts = np.rint(frames)
        if counts.min() < 0 or counts.max() > np.iinfo(np.uint16).max:
            raise InputError(f"{path}: values outside 0..65535 cannot be written as uint16")
        data = counts.astype(np.uint16)
    elif dtype == "float32":
        data = frames.astype(np.float32, copy=False)
    else:
        raise InputError(f"{path}: dtype must be 'float32' or 'uint16', not {dtype!r}")
    with atomic_write(path, "wb") as fh:
        tifffile.imwrite(
            fh,
            data,
            imagej=True,
            resolution=(px_per_nm, px_per_nm),
            metadata={"axes": "TYX", "unit": "nm", "Info": "\n".join(info)},
        )


def to_signal(stack: Stack):
    """The stack as a HyperSpy ``Signal2D`` with calibrated axes (nm) and metadata.

    A single frame gives a 2-D signal; a stack has a ``frame`` navigation axis.
    """
    import hyperspy.api as hs

    data = stack.frames[0] if stack.n_frames == 1 else stack.frames
    signal = hs.signals.Signal2D(np.array(data))
    for axis, name in zip(signal.axes_manager.signal_axes, ("x", "y"), strict=True):
        axis.name, axis.scale, axis.units = name, stack.pixel_size_A / 10.0, "nm"
    for axis in signal.axes_manager.navigation_axes:
        axis.name = "frame"
    signal.metadata.General.title = Path(stack.path).name
    signal.metadata.General.original_filename = Path(stack.path).name
    if stack.voltage_kv is not None:
        signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", stack.voltage_kv)
    if stack.convergence_mrad is not None:
        signal.metadata.set_item(
            "Acquisition_instrument.TEM.convergence_angle", stack.convergence_mrad
        )
    return signal


# --------------------------------------------------------------------------------------
# Validation


def _check_override(pixel_size_A: float | str | None) -> float | None:
    if pixel_size_A is None:
        return None
    return parse_length(pixel_size_A)


def _check_path(path: str) -> str:
    p = Path(path)
    ext = p.suffix.lower()
    if not p.exists():
        raise InputError(f"{path}: no such file; check the path")
    if p.is_dir() and ext != ".zspy":
        raise InputError(f"{path}: is a folder, not an image file")
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(
            f"{path}: unsupported file type {ext or '(no extension)'!r}; supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)} (convert it to TIFF, e.g. with Fiji)"
        )
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes); copy or export it again")
    return ext


def _to_frames(data: Any, path: str) -> tuple[np.ndarray, str]:
    """Validate pixel data and return read-only float32 ``(n, y, x)`` and the dtype name."""
    data = np.asarray(data)
    if data.dtype.names is not None:  # DM and Velox store RGB(A) as a structured dtype
        raise InputError(
            f"{path}: colour (RGB) image; stemqd needs single-channel detector intensities, "
            "export the raw data instead of a rendered view"
        )
    if np.iscomplexobj(data):
        raise InputError(
            f"{path}: complex data (an FFT or DPC image?); stemqd needs real ADF intensities"
        )
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise InputError(f"{path}: pixel type {data.dtype} is not numeric")
    dtype = data.dtype.name
    if data.ndim > 3:
        # ImageJ and OME carry singleton Z/C axes; drop them but never y and x.
        keep = [i for i, s in enumerate(data.shape[:-2]) if s != 1]
        data = data.reshape([data.shape[i] for i in keep] + list(data.shape[-2:]))
    if data.ndim < 2:
        raise InputError(
            f"{path}: {data.ndim}-D data of shape {data.shape} (a spectrum or profile?); "
            "stemqd needs a 2-D image or a (frames, y, x) stack"
        )
    if data.ndim > 3:
        raise InputError(
            f"{path}: {data.ndim}-D data of shape {data.shape} (4D-STEM or a multi-channel "
            "hyperstack?); export the ADF image or a single (frames, y, x) stack"
        )
    if data.ndim == 2:
        data = data[np.newaxis]
    ny, nx = data.shape[1:]
    if min(ny, nx) < MIN_FRAME_PX:
        raise InputError(
            f"{path}: frames are {ny} x {nx} px; at least {MIN_FRAME_PX} x {MIN_FRAME_PX} px are "
            "needed (is this a thumbnail or a cropped patch?)"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        frames = np.array(data, dtype=np.float32, order="C")  # always a fresh array
    finite = np.isfinite(frames)
    if not finite.all():
        bad = np.argwhere(~finite)
        n, y, x = bad[0]
        hint = " (values beyond the float32 range)" if np.isfinite(data).all() else ""
        raise InputError(
            f"{path}: {len(bad)} non-finite pixel(s) (NaN or inf){hint}, the first in frame {n} at "
            f"y={y}, x={x}; replace or crop them before analysis"
        )
    frames.setflags(write=False)
    return frames, dtype


def _positive_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


# --------------------------------------------------------------------------------------
# Units and metadata helpers


def _norm_unit(unit: Any) -> str:
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    text = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    return unicodedata.normalize("NFKC", text).lower()


def _unit_to_A(unit: Any) -> float | None:
    """Å per `unit`, or None when it is not a length unit (``px``, ``1/nm``, ``''``)."""
    if unit is None:
        return None
    return _LENGTH_UNITS_A.get(_norm_unit(unit))


def _get_path(tree: Any, dotted: str) -> Any:
    """Look up ``"A.B C.D"`` in nested dicts, treating spaces and underscores alike
    (HyperSpy's metadata browser does the same)."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        if part in node:
            node = node[part]
            continue
        want = part.replace(" ", "_")
        for key, value in node.items():
            if str(key).replace(" ", "_") == want:
                node = value
                break
        else:
            return None
    return node


# --------------------------------------------------------------------------------------
# Readers


def _read(path: str, ext: str) -> _Raw:
    try:
        if ext in (".tif", ".tiff"):
            return _read_tiff(path)
        if ext == ".npy":
            return _read_npy(path)
        return _read_rsciio(path, ext)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: too large to load into memory; crop or bin it first") from None
    except Exception as exc:  # any reader failure is a bad file from the user's side
        kind = _FORMAT_NAMES.get(ext, ext)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise InputError(
            f"{path}: cannot read it as {kind} ({reason}); the file may be truncated, corrupt "
            f"or not really {kind} - copy or export it again"
        ) from exc


_FORMAT_NAMES = {
    ".tif": "TIFF", ".tiff": "TIFF", ".dm3": "DM3", ".dm4": "DM4", ".emd": "EMD",
    ".ser": "TIA SER", ".hspy": "HyperSpy HDF5", ".hdf5": "HDF5", ".h5": "HDF5",
    ".zspy": "HyperSpy zarr", ".npy": "NumPy .npy",
}  # fmt: skip


def _read_npy(path: str) -> _Raw:
    data = np.load(path, allow_pickle=False)
    return _Raw(
        data=data,
        calibration_note="NumPy files carry no calibration",
        metadata={
            "format": "NPY",
            "reader": f"numpy {np.__version__}",
            "original_shape": list(data.shape),
        },
    )


# ---- TIFF


def _read_tiff(path: str) -> _Raw:
    import tifffile

    with _LogCapture(("tifffile",), logging.ERROR) as log, tifffile.TiffFile(path) as tif:
        series = tif.series
        if not series:
            raise InputError(f"{path}: TIFF without image data; export it again")
        shapes = [tuple(s.shape) for s in series]
        if len(series) > 1 and len({s[-2:] for s in shapes}) > 1:
            raise InputError(
                f"{path}: the TIFF pages have different sizes ({', '.join('x'.join(map(str, s)) for s in shapes[:4])}"
                f"{', ...' if len(shapes) > 4 else ''}); save each image as its own file or crop them to one size"
            )
        first = series[0]
        page = first.pages[0] if first.pages else tif.pages[0]
        if "S" in first.axes or page.samplesperpixel > 1 or page.photometric in (2, 3):
            # photometric 2 = RGB, 3 = palette (a rendered, not a measured, image)
            raise InputError(
                f"{path}: colour (RGB or palette) TIFF; stemqd needs single-channel detector "
                "intensities, export the raw data instead of a rendered view"
            )
        _check_tiff_complete(tif, path)
        if len(series) > 1:  # same-sized pages that tifffile could not join into one series
            data = np.stack([s.asarray() for s in series])
            axes = "I" + first.axes
        else:
            data = first.asarray()
            axes = first.axes
        expected = (tif.imagej_metadata or {}).get("images", 1) if tif.is_imagej else 1
        if log.errors or data.size < expected * data.shape[-1] * data.shape[-2]:
            # tifffile logs (rather than raises) a broken page chain and returns fewer frames
            reason = log.errors[0] if log.errors else f"{expected} images announced"
            raise InputError(
                f"{path}: TIFF is damaged or truncated ({reason}); copy or export it again"
            )
        raw = _Raw(data=data)
        kind = (
            "ImageJ" if tif.is_imagej else "OME" if tif.is_ome else "FEI" if tif.is_fei else "plain"
        )
        raw.metadata = {
            "format": f"TIFF ({kind})",
            "reader": f"tifffile {tifffile.__version__}",
            "original_shape": list(data.shape),
            "axes": axes,
        }
        _tiff_calibration(tif, page, raw, path)
    return raw


class _LogCapture(logging.Handler):
    """Collect what the readers log while a file is read, instead of printing it.

    Readers log (rather than raise) many problems; Python would print those to stderr,
    which breaks the CLI's one-line-per-file promise.
    """

    def __init__(self, names: tuple[str, ...], level: int = logging.WARNING) -> None:
        super().__init__(level=level)
        self.names = names
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(" ".join(record.getMessage().split())[:200])

    def __enter__(self) -> _LogCapture:
        self._saved = []
        for name in self.names:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.propagate))
            logger.addHandler(self)
            logger.propagate = False
        return self

    def __exit__(self, *exc: Any) -> None:
        for logger, propagate in self._saved:
            logger.removeHandler(self)
            logger.propagate = propagate


def _check_tiff_complete(tif: Any, path: str) -> None:
    # tifffile can hand back zero-filled strips for a truncated file; refuse instead.
    size = tif.filehandle.size
    for page in tif.pages:
        if page is None or not hasattr(page, "dataoffsets"):
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            if offset + count > size:
                raise InputError(
                    f"{path}: TIFF is truncated (pixel data end at byte {offset + count}, the file "
                    f"has {size}); copy or export it again"
                )


def _tiff_calibration(tif: Any, page: Any, raw: _Raw, path: str) -> None:
    """Fill pixel size, voltage, convergence from ImageJ, OME, FEI or resolution tags."""
    ij = (tif.imagej_metadata or {}) if tif.is_imagej else {}
    if ij:
        _imagej_extras(ij, raw)
        unit = ij.get("unit")
        factor = _unit_to_A(unit)
        if factor is not None and page.resolution[0] > 0:
            size = _square(1.0 / page.resolution[0], 1.0 / page.resolution[1], raw, "ImageJ", path)
            if size is not None:
                _set_size(raw, size * factor, f"metadata (ImageJ resolution, {unit})")
                return
        elif unit is not None:
            raw.calibration_note = f"ImageJ unit is {unit!r}, not a length"
    if tif.is_ome:
        pixels = _ome_pixels(tif.ome_metadata)
        if pixels is not None and pixels.get("PhysicalSizeX"):
            unit = pixels.get("PhysicalSizeXUnit", "µm")  # the OME schema default
            factor = _unit_to_A(unit)
            sx = float(pixels["PhysicalSizeX"])
            sy = float(pixels.get("PhysicalSizeY", sx))
            if factor is not None and _square(sx, sy, raw, "OME", path) is not None:
                _set_size(raw, sx * factor, f"metadata (OME PhysicalSizeX, {unit})")
                return
    if tif.is_fei:
        fei = tif.fei_metadata or {}
        width = _get_path(fei, "Scan.PixelWidth") or _get_path(fei, "EScan.PixelWidth")
        hv = _get_path(fei, "Beam.HV") or _get_path(fei, "EBeam.HV")
        if hv:
            raw.voltage_kv = float(hv) / 1e3
        if width and float(width) > 0:
            _set_size(raw, float(width) * 1e10, "metadata (FEI PixelWidth, m)")
            return
    unit = getattr(page, "resolutionunit", 1)
    if raw.pixel_size_A is None and "XResolution" in page.tags and page.resolution[0] > 0:
        per_unit = {3: ("cm", 1e8), 4: ("mm", 1e7), 5: ("µm", 1e4)}.get(int(unit))
        if per_unit is not None:
            size = _square(
                1.0 / page.resolution[0], 1.0 / page.resolution[1], raw, "resolution", path
            )
            if size is not None:
                _set_size(
                    raw, size * per_unit[1], f"metadata (TIFF resolution tags, {per_unit[0]})"
                )
                return
        elif raw.calibration_note is None:
            # dots per inch (or no unit) describe printing, not the specimen
            raw.calibration_note = (
                "TIFF resolution tags give no physical unit"
                if int(unit) == 1
                else ("TIFF resolution is in dots per inch, a display setting")
            )


def _imagej_extras(ij: dict, raw: _Raw) -> None:
    """Voltage and convergence written by :func:`write_stack_tiff` (or by hand) in ImageJ Info."""
    found: dict[str, str] = {}
    for line in str(ij.get("Info", "")).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip().lower()] = value.strip()
    for key, value in ij.items():
        if isinstance(key, str) and key.lower().startswith("stemqd_"):
            found.setdefault(key.lower(), str(value))
    raw.voltage_kv = _positive_or_none(found.get("stemqd_voltage_kv"))
    raw.convergence_mrad = _positive_or_none(found.get("stemqd_convergence_mrad"))


def _ome_pixels(xml: str | None) -> dict | None:
    import xml.etree.ElementTree as ET

    if not xml:
        return None
    root = ET.fromstring(xml)
    for element in root.iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            return dict(element.attrib)
    return None


def _square(sx: float, sy: float, raw: _Raw, where: str, path: str) -> float | None:
    """`sx` if the pixels are square (within 0.1 %), else a note and None."""
    if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
        raw.calibration_note = f"{where} calibration is not positive"
        return None
    if abs(sx - sy) > 1e-3 * max(sx, sy):
        # Only an error if nothing else calibrates the file; an override settles it.
        raw.calibration_error = (
            f"{path}: non-square pixels ({where}: x {sx:g}, y {sy:g}); resample the image to "
            f"square pixels, or {_PIXEL_SIZE_HINT} to use one size for both"
        )
        return None
    return sx


def _set_size(raw: _Raw, size_A: float, source: str) -> None:
    raw.pixel_size_A, raw.pixel_size_source, raw.calibration_note = float(size_A), source, None


# ---- rosettasciio formats


def _rsciio_plugin(path: str, ext: str) -> tuple[Any, str]:
    if ext in (".dm3", ".dm4"):
        from rsciio import digitalmicrograph as plugin

        return plugin, ext[1:].upper()
    if ext == ".ser":
        from rsciio import tia as plugin

        return plugin, "SER"
    if ext == ".zspy":
        from rsciio import zspy as plugin

        return plugin, "ZSPY"
    from rsciio import emd

    if ext == ".emd" or _is_emd(path):
        return emd, "EMD"
    from rsciio import hspy as plugin

    return plugin, "HSPY"


def _is_emd(path: str) -> bool:
    import h5py
    from rsciio.emd._api import is_EMD_NCEM, is_EMD_Velox

    with h5py.File(path, "r") as f:
        return bool(is_EMD_Velox(f) or is_EMD_NCEM(f))


def _read_rsciio(path: str, ext: str) -> _Raw:
    import rsciio

    plugin, name = _rsciio_plugin(path, ext)
    signals = plugin.file_reader(path, lazy=False)
    if not signals:
        raise InputError(f"{path}: the file holds no data; export it again")
    index = _pick_image_signal(signals)
    reader = f"rosettasciio {rsciio.__version__} ({plugin.__name__.split('.')[-1]})"
    raw = _raw_from_signal(signals[index], name, path, reader)
    raw.metadata["n_signals"] = len(signals)
    raw.metadata["signal_index"] = index
    if len(signals) > 1:
        raw.metadata["signal_titles"] = [
            _get_path(s.get("metadata") or {}, "General.title") or "" for s in signals
        ]
    return raw


def _raw_from_signal(sig: dict, name: str, path: str, reader: str) -> _Raw:
    """Calibration and instrument fields of a rosettasciio signal dictionary (``data``,
    ``axes`` in array order, ``metadata``, ``original_metadata``, ``mapping``)."""
    data = np.asarray(sig["data"])
    axes = list(sig.get("axes") or [])
    om = sig.get("original_metadata") or {}
    md = _merge(sig.get("metadata") or {}, _apply_mapping(om, sig.get("mapping") or {}))
    if name == "EMD":
        name = "EMD (Velox)" if "BinaryResult" in om else "EMD (NCEM)"

    title = _get_path(md, "General.title") or ""
    raw = _Raw(data=data)
    raw.metadata = {
        "format": name,
        "reader": reader,
        "original_shape": list(data.shape),
        "axes": [
            {
                k: a.get(k)
                for k in ("name", "size", "scale", "offset", "units", "navigate")
                if k in a
            }
            for a in axes
        ],
        "title": title,
    }
    instrument = _get_path(md, "Acquisition_instrument")
    if isinstance(instrument, dict):
        raw.metadata["acquisition_instrument"] = instrument

    # Pixel size from the two image axes, which rosettasciio lists last (array order).
    if data.ndim >= 2 and len(axes) >= 2:
        ay, ax = axes[-2], axes[-1]
        fx, fy = _unit_to_A(ax.get("units")), _unit_to_A(ay.get("units"))
        if fx is None or fy is None:
            units = ax.get("units") or ""
            scale = _positive_or_none(ax.get("scale"))
            if units and units not in ("<undefined>", "px", "pixel", "pixels"):
                raw.calibration_note = f"{name} axis units are {units!r}, not a length"
            elif scale is not None and scale != 1.0:
                # Atomap's and other scripts' files keep a scale in nm without its unit.
                raw.calibration_note = (
                    f"{name} axes have a scale of {scale:g} but no length unit; if it is in "
                    f"nm, the pixel size is {10 * scale:g}A"
                )
            else:
                raw.calibration_note = f"{name} axes are uncalibrated"
        else:
            size = _square(
                float(ax["scale"]) * fx, float(ay["scale"]) * fy, raw, f"{name} axes, Å", path
            )
            if size is not None:
                _set_size(raw, size, f"metadata ({name} axis scale, {ax.get('units')})")

    raw.voltage_kv = _positive_or_none(
        _get_path(md, "Acquisition_instrument.TEM.beam_energy")
        or _get_path(md, "Acquisition_instrument.SEM.beam_energy")
    )
    raw.convergence_mrad = _positive_or_none(
        _get_path(md, "Acquisition_instrument.TEM.convergence_angle")
    )
    _format_specific_optics(om, raw)
    return raw


def _pick_image_signal(signals: list[dict]) -> int:
    """Index of the image signal to use: the HAADF one if named so, else the first image.

    Velox and DM files can hold several detectors (HAADF, DF4, BF) and spectra; an image
    is data whose last two axes are signal (not navigation) axes.
    """

    def is_image(sig: dict) -> bool:
        axes = sig.get("axes") or []
        ndim = np.ndim(sig["data"]) if "data" in sig else 0
        if ndim < 2 or getattr(sig["data"], "dtype", np.dtype(float)).names:
            return False
        return len(axes) < 2 or not (axes[-1].get("navigate") or axes[-2].get("navigate"))

    images = [i for i, s in enumerate(signals) if is_image(s)]
    for i in images:
        title = str(_get_path(signals[i].get("metadata") or {}, "General.title") or "")
        if "haadf" in title.lower():
            return i
    return images[0] if images else 0


def _apply_mapping(om: dict, mapping: dict) -> dict:
    """Apply a rosettasciio ``mapping`` (original-metadata path -> metadata path, function)
    the way HyperSpy does on loading; only the instrument entries matter here."""
    out: dict = {}
    for source, (target, func) in mapping.items():
        if not str(target).startswith("Acquisition_instrument"):
            continue
        value = _get_path(om, source)
        if value is None:
            continue
        try:
            value = func(value) if func is not None else value
        except Exception:  # a malformed tag: skip it, as HyperSpy does
            continue
        node = out
        *parents, leaf = str(target).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out.setdefault(key, value)
    return out


def _format_specific_optics(om: dict, raw: _Raw) -> None:
    """Fields rosettasciio does not map: Velox beam convergence, DM and NCEM microscope tags."""
    if raw.convergence_mrad is None:
        conv = _positive_or_none(_get_path(om, "Optics.BeamConvergence"))  # Velox, rad
        if conv is not None:
            raw.convergence_mrad = conv * 1e3
    # DM: "Microscope Info" of the image; NCEM: attributes of the /microscope group.
    groups = [
        _get_path(om, "ImageList.TagGroup0.ImageTags.Microscope Info"),
        om.get("microscope"),
    ]
    for group in groups:
        if not isinstance(group, dict):
            continue
        for key, value in group.items():
            k = str(key).lower().replace("_", " ")
            number = _positive_or_none(value)
            if number is None:
                continue
            if raw.convergence_mrad is None and "convergence" in k:
                # DM and NCEM write mrad; a value below 1 can only be radians.
                raw.convergence_mrad = number * 1e3 if number < 1 else number
            if raw.voltage_kv is None and (
                k in ("voltage", "high tension", "accelerating voltage", "beam energy", "ht")
                or k.startswith("voltage")
                or k.startswith("high tension")
            ):
                # kV in the key, or a value above 1000 (then volts)
                raw.voltage_kv = number if ("kv" in k or number < 1000) else number / 1e3
