"""Intensities on the scale of the incident beam, as simulated cross-sections are.

A detector reading I becomes the fraction of the incident beam I_norm = (I - vacuum) /
(beam - vacuum), with the vacuum level (the reading without electrons on the detector) and
the beam level (the reading with the whole probe on it, from a detector scan). A column's
volume in the normalised image times the pixel area is its scattering cross-section in Å²
(E et al., Ultramicroscopy 133 (2013) 109; the quantity StatSTEM's library counting uses).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["normalise_intensity", "normalised_volume"]


def _check(vacuum_level, beam_level):
    if not (np.isfinite(vacuum_level) and np.isfinite(beam_level)) or beam_level <= vacuum_level:
        raise InputError(
            f"normalisation: the beam level ({beam_level}) must be finite and above the "
            f"vacuum level ({vacuum_level}); measure both on the detector scan"
        )
    return float(beam_level) - float(vacuum_level)


def normalise_intensity(image, vacuum_level: float, beam_level: float) -> np.ndarray:
    """The image as a fraction of the incident beam, (I - vacuum) / (beam - vacuum).

    Parameters
    ----------
    image : array_like
        Detector readings.
    vacuum_level, beam_level : float
        Readings in vacuum and with the whole beam on the detector (same unit as `image`).

    Returns
    -------
    ndarray of float
        A new array, dimensionless (fraction of the incident beam per pixel).
    """
    span = _check(vacuum_level, beam_level)
    return (np.asarray(image, dtype=float) - vacuum_level) / span


def normalised_volume(volume, pixel_size_A: float, vacuum_level: float, beam_level: float):
    """A column volume fitted on the raw image as a cross-section in Å² of the incident beam.

    Every column model of :mod:`stemqd.columns` fits the volume above a fitted offset or
    background, which takes up the vacuum level; so the volume of the normalised image is
    the raw volume over (beam - vacuum), and times the pixel area it is in Å². This holds
    for the fits on the aligned average or the background-removed image (linear in the
    readings); for the deconvolved or denoised image it holds as far as they conserve the
    intensity.

    Parameters
    ----------
    volume : array_like
        Volumes (or their standard errors) in px² x reading.
    pixel_size_A : float
        Å per pixel.
    vacuum_level, beam_level : float
        As for :func:`normalise_intensity`.

    Returns
    -------
    ndarray
        Cross-sections, Å² (fraction of the incident beam x Å²).
    """
    span = _check(vacuum_level, beam_level)
    return np.asarray(volume, dtype=float) * float(pixel_size_A) ** 2 / span
