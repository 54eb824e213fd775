"""File utilities of the whole package: atomic writes, checksums, strict JSON, figures.

Every output of stemqd goes through :func:`atomic_write`: an interrupted run never leaves a
half-written file under the final name. Provenance (versions, config, input checksums) is
:mod:`stemqd.provenance`; reading and writing image stacks is :mod:`stemqd.io`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import InputError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "json_text",
    "read_json",
    "save_figure",
    "sha256_file",
    "to_jsonable",
    "write_json",
]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks.

    A folder (a ``.zspy`` store) is hashed as the sequence of its files' relative paths
    and bytes, in sorted order, so that the digest depends only on the content.
    """
    digest = hashlib.sha256()
    path = Path(path)
    files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file is not path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "w",
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO]:
    """Open `path` for writing so that it appears complete or not at all.

    Writes go to a temporary file in the same folder, which is flushed, fsync-ed and then
    renamed over `path` (:func:`os.replace` is atomic on POSIX and Windows). On any error,
    including :class:`KeyboardInterrupt`, the temporary file is removed and `path` is left
    as it was.

    Parameters
    ----------
    path : str or path-like
        Final file name; its folder must exist.
    mode : {"w", "wt", "wb"}
        Text or binary.
    encoding, newline : str, optional
        As for :func:`open`, text mode only.

    Examples
    --------
    >>> with atomic_write("table.csv") as fh:  # doctest: +SKIP
    ...     fh.write("x_px,y_px\\n")
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w', 'wt' or 'wb', not {mode!r}")
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise InputError(
            f"{path}: cannot write, folder {str(folder)!r} does not exist; create it first"
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    binary = "b" in mode
    os.close(fd)  # reopen by name: writers such as tifffile want a named file object
    try:
        with open(
            tmp,
            "wb" if binary else "w",
            **({} if binary else {"encoding": encoding, "newline": newline}),
        ) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)


def save_figure(fig, path: str | os.PathLike, *, dpi: float = 120, **savefig_kwargs) -> None:
    """Write a matplotlib figure to `path` as PNG, atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, **savefig_kwargs)


def to_jsonable(obj: Any, *, max_array: int | None = None, _depth: int = 0) -> Any:
    """A copy of `obj` that :func:`json.dumps` writes as strict JSON.

    NaN and infinities become None (``null``); numpy scalars and arrays become Python
    numbers and lists (arrays larger than `max_array` elements, when given, become a short
    description instead, as for file metadata); tuples and sets become lists, paths strings,
    bytes text, DataFrames lists of records; anything else its ``str``. Nesting deeper than
    12 levels is written as its ``repr``.
    """
    import pandas as pd

    if _depth > 12:
        return repr(obj)

    def rec(value):
        return to_jsonable(value, max_array=max_array, _depth=_depth + 1)

    if isinstance(obj, dict):
        return {str(k): rec(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [rec(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return rec(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return rec(obj.to_dict())
    if isinstance(obj, np.ndarray):
        if max_array is not None and obj.size > max_array:
            return f"<array {obj.dtype} {list(obj.shape)}>"
        return rec(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def json_text(data: Any) -> str:
    """`data` as indented strict JSON text (see :func:`to_jsonable`), ending in a newline."""
    return json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at `path`, or None where the file is absent or not valid JSON
    (a result folder that is incomplete, or a file from an interrupted writer)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented strict JSON (see :func:`json_text`), atomically."""
    atomic_write_text(path, json_text(data))


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not possible on every platform or file system.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
