"""Output helpers of the AIMD side: atomic writes and provenance sidecars.

Every table is written to a temporary file in the destination folder and moved into place
with :func:`os.replace`, so a reader never sees a half-written file. Every CSV gets a
``<name>.json`` sidecar with the stemqd version, the parameters and the SHA-256 of each
input file.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import io


def atomic_write_text(path, text):
    """Write text to ``path`` atomically, creating its folder (see :func:`stemqd.io.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write_text(path, text)
    return path


def provenance(parameters=None, inputs=()):
    """Provenance record: stemqd version, parameters and the SHA-256 of each input file."""
    from .. import __version__

    return {
        "stemqd_version": __version__,
        "parameters": io.to_jsonable(parameters or {}),
        "inputs": {str(p): io.sha256_file(p) for p in inputs if p is not None},
    }


def write_json(path, data):
    """Write a JSON document atomically."""
    return atomic_write_text(path, json.dumps(io.to_jsonable(data), indent=2, sort_keys=True) + "\n")


def write_table(path, frame, *, parameters=None, inputs=(), results=None):
    """Write a DataFrame as CSV plus a ``.json`` provenance sidecar, both atomically.

    Parameters
    ----------
    path : str or Path
        CSV destination; the sidecar is the same path with ``.json`` appended to the stem.
    frame : pandas.DataFrame
        The table; column names carry units.
    parameters : dict, optional
        Parameters of the analysis, recorded in the sidecar.
    inputs : sequence of path, optional
        Input files whose SHA-256 goes into the sidecar.
    results : dict, optional
        Scalar results (e.g. Λ, FWHM) recorded in the sidecar.

    Returns
    -------
    Path
        The CSV path.
    """
    path = Path(path)
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g"))
    record = provenance(parameters, inputs)
    record["table"] = path.name
    if results is not None:
        record["results"] = io.to_jsonable(results)
    write_json(path.with_suffix(".json"), record)
    return path


def save_figure(fig, path, dpi=120):
    """Save a matplotlib Figure atomically as PNG, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.save_figure(fig, path, dpi=dpi, bbox_inches="tight")
    return path
