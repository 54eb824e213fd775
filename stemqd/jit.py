"""numba's ``njit`` with an on-disk cache wherever one can be written.

``numba.njit(cache=True)`` stores compiled code next to the module (``__pycache__``) or,
failing that, in the user's cache folder (``~/.cache/numba``); where neither is writable (a
system-wide, read-only install run by a user without a writable home) numba raises
``RuntimeError: cannot cache function ...`` when the module is imported. :func:`njit` then
caches in a private folder of this user under the temporary directory
(:func:`fallback_cache_dir`), and compiles without a cache if even that is impossible,
with one warning per process saying so. ``NUMBA_CACHE_DIR``, when set to a writable
folder, is used as numba always does.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from pathlib import Path

import numba
from numba.core import config as numba_config

__all__ = ["fallback_cache_dir", "njit"]

_warned = False


def fallback_cache_dir() -> Path | None:
    """A cache folder private to this user under the temporary directory, or None.

    The folder is created with mode 0700; an existing one is used only if it belongs to
    this user and nobody else can write it (numba's cache holds compiled code, which must
    not come from another user).
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"stemqd-numba-cache-{uid if uid is not None else 'user'}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        if uid is not None and info.st_uid != uid:
            return None
        probe = tempfile.TemporaryFile(dir=path)
        probe.close()
    except OSError:
        return None
    return path


def _warn_once(text):
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(text, RuntimeWarning, stacklevel=4)


def njit(**options):
    """``numba.njit(cache=True, **options)``, falling back where numba cannot cache.

    Parameters
    ----------
    **options
        Passed to :func:`numba.njit` (``parallel``, ``fastmath``, ``inline``, ...).

    Returns
    -------
    callable
        A decorator.
    """

    def decorate(func):
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
        folder = fallback_cache_dir()
        if folder is not None:
            # numba's locator reads CACHE_DIR when the function is decorated, so setting
            # it for this decoration only leaves every other package's caching alone.
            previous = numba_config.CACHE_DIR
            numba_config.CACHE_DIR = str(folder)
            try:
                compiled = numba.njit(cache=True, **options)(func)
            except RuntimeError:
                compiled = None
            finally:
                numba_config.CACHE_DIR = previous
            if compiled is not None:
                _warn_once(
                    f"numba cannot write its cache next to stemqd or in the user cache "
                    f"folder; compiled functions are cached in {folder} instead (set "
                    f"NUMBA_CACHE_DIR to choose another folder)"
                )
                return compiled
        _warn_once(
            "numba can write its cache nowhere (not next to stemqd, not in the user cache "
            "folder, not in the temporary folder): functions are compiled anew in every "
            "process, which adds up to a minute to the first fit; set NUMBA_CACHE_DIR to a "
            "writable folder to avoid it"
        )
        return numba.njit(**options)(func)

    return decorate
