"""Versions recorded beside every output, so that each number traces back to its code."""

from __future__ import annotations

import importlib.metadata as md
import platform

from . import __version__

#: Libraries that shape stemqd's image-analysis numbers.
CORE_PACKAGES = ("numpy", "scipy", "scikit-image", "lmfit", "numba", "pandas", "tifffile",
                 "rosettasciio")


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
