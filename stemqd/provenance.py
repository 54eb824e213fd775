"""Provenance recorded beside every output, so that each number traces back to its code.

One schema for every sidecar (:func:`record`): the stemqd version, the library versions,
the parameters and the SHA-256 of each input.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from pathlib import Path

from . import __version__
from .files import atomic_write_text, sha256_file, to_jsonable, write_json

#: Libraries that shape stemqd's image-analysis numbers.
CORE_PACKAGES = (
    "numpy",
    "scipy",
    "scikit-image",
    "lmfit",
    "numba",
    "pandas",
    "tifffile",
    "rosettasciio",
)


def versions(extra=()) -> dict:
    """Versions of stemqd, Python, :data:`CORE_PACKAGES` and ``extra`` distributions.

    A distribution that is not installed is recorded as None.
    """
    out = {"stemqd": __version__, "python": platform.python_version()}
    for pkg in (*CORE_PACKAGES, *extra):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def record(parameters=None, inputs=(), *, extra_packages=()) -> dict:
    """The provenance block of an output's sidecar, in the one schema every output uses.

    Parameters
    ----------
    parameters : dict, optional
        The parameters (or the full config) that produced the output.
    inputs : sequence of path, optional
        Input files; each is recorded with its SHA-256.
    extra_packages : sequence of str
        Distributions recorded besides :data:`CORE_PACKAGES` (e.g. ``("abtem", "ase")``).

    Returns
    -------
    dict
        ``{"stemqd_version", "versions", "parameters", "inputs": {path: sha256}}``.
    """
    return {
        "stemqd_version": __version__,
        "versions": versions(extra=extra_packages),
        "parameters": to_jsonable(parameters or {}),
        "inputs": {str(p): sha256_file(p) for p in inputs if p is not None},
    }


def write_table(path, frame, *, parameters=None, inputs=(), results=None, extra_packages=()):
    """Write a DataFrame as CSV plus a ``.json`` provenance sidecar, both atomically.

    The folder is created if needed.

    Parameters
    ----------
    path : str or Path
        CSV destination; the sidecar is the same path with the suffix ``.json``.
    frame : pandas.DataFrame
        The table; column names carry units.
    parameters : dict, optional
        Parameters of the analysis, recorded in the sidecar.
    inputs : sequence of path, optional
        Input files whose SHA-256 goes into the sidecar.
    results : dict, optional
        Scalar results (e.g. Λ, FWHM) recorded in the sidecar.
    extra_packages : sequence of str
        As for :func:`record`.

    Returns
    -------
    Path
        The CSV path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g"))
    sidecar = record(parameters, inputs, extra_packages=extra_packages)
    sidecar["table"] = path.name
    if results is not None:
        sidecar["results"] = to_jsonable(results)
    write_json(path.with_suffix(".json"), sidecar)
    return path


__all__ = ["CORE_PACKAGES", "record", "versions", "write_table"]
