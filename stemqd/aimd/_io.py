"""Output helpers of the AIMD side: atomic writes and provenance sidecars.

Every table is written to a temporary file in the destination folder and moved into place
with :func:`os.replace`, so a reader never sees a half-written file. Every CSV gets a
``<name>.json`` sidecar with the stemqd version, the parameters and the SHA-256 of each
input file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path, write, mode):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text):
    """Write text to ``path`` atomically (temp file in the same folder, then os.replace)."""
    return _atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path, data):
    """Write bytes to ``path`` atomically."""
    return _atomic_write(path, lambda fh: fh.write(data), "wb")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def provenance(parameters=None, inputs=()):
    """Provenance record: stemqd version, parameters and the SHA-256 of each input file."""
    from .. import __version__

    return {
        "stemqd_version": __version__,
        "parameters": _jsonable(parameters or {}),
        "inputs": {str(p): sha256_file(p) for p in inputs if p is not None},
    }


def write_json(path, data):
    """Write a JSON document atomically."""
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")


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
        record["results"] = _jsonable(results)
    write_json(path.with_suffix(".json"), record)
    return path


def save_figure(fig, path, dpi=120):
    """Save a matplotlib Figure atomically as PNG."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())
