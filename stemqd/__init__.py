"""stemqd: quantitative ADF-STEM of perovskite nanocrystals.

The stages are plain functions in modules named after what they do (``io``, ``align``,
``background``, ``denoise``, ``probe``, ``deconvolve``, ``columns``, ``fit``, ``cell``,
``sublattice``, ``dot``, ``statistics``, ``lattice``), composed by ``pipeline`` with one
typed :class:`~stemqd.config.Config`; ``aimd`` and ``simulate`` are the bridges to CP2K and
abTEM. The most used entry points are re-exported here.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import StemqdError  # noqa: E402
from .io import load  # noqa: E402

__all__ = ["Config", "StemqdError", "load", "load_config", "__version__"]
