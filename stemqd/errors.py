"""Exceptions raised by stemqd.

Every error a user can cause derives from :class:`StemqdError`; the CLI prints its message
as one line and exits non-zero, with no traceback.
"""


class StemqdError(Exception):
    """Base class of all user-facing stemqd errors."""


class InputError(StemqdError):
    """An input file or array cannot be used (missing, unreadable, wrong shape, bad pixels)."""


class CalibrationError(InputError):
    """The pixel size is unknown: the file has no calibration and no override was given."""


class ConfigError(StemqdError):
    """A configuration file or ``--set`` override is invalid."""


class FitError(StemqdError):
    """A fit cannot be set up (e.g. no columns found)."""


class BlankImageError(InputError):
    """The image holds no contrast (all zero, constant, or not finite)."""


class LatticeQualityError(FitError):
    """The found columns do not form the projected lattice (or, without a material, are not
    significant peaks): the image is noise, support or vacuum, or the calibration or material
    is wrong (see :mod:`stemqd.columns.quality`).

    Attributes
    ----------
    quality : dict
        The measured quality, its thresholds and the failed tests (as in summary.json).
    """

    def __init__(self, message, quality=None):
        super().__init__(message)
        self.quality = quality or {}


class ModelMismatchError(InputError):
    """A measured ratio and a simulated series were fitted with different column models."""


__all__ = [
    "BlankImageError",
    "CalibrationError",
    "ConfigError",
    "FitError",
    "InputError",
    "LatticeQualityError",
    "ModelMismatchError",
    "StemqdError",
]
