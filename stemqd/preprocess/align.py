"""Rigid sub-pixel registration and averaging of a frame series."""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage
from skimage.filters import window
from skimage.registration import phase_cross_correlation


def _shift(frame, shift):
    # Cubic spline with edge replication: sub-pixel exact inside, no wrap-around of the
    # opposite edge into the field of view (a Fourier shift would wrap).
    return ndimage.shift(frame, shift, order=3, mode="nearest", prefilter=True)


def align_frames(frames, *, upsample_factor=100, reference_iterations=2):
    """Register every frame to a refined reference and average them.

    The first reference is the first frame. Each iteration registers all frames to the
    current reference by phase cross-correlation (Guizar-Sicairos et al., Opt. Lett. 33
    (2008) 156; ``skimage.registration.phase_cross_correlation``), and the aligned mean
    becomes the next reference, so the estimate converges to the running mean of the
    series rather than to one noisy frame. Shifts are reported relative to the mean
    position of all frames' content with frame 0 as zero.

    Parameters
    ----------
    frames : array_like, shape (n, ny, nx)
        Frame series.
    upsample_factor : int
        Sub-pixel precision of the registration is 1/upsample_factor px.
    reference_iterations : int
        Number of register-average cycles (>= 1).

    Returns
    -------
    average : ndarray, float32, shape (ny, nx)
        Mean of the aligned frames.
    shifts : ndarray, shape (n, 2)
        Displacement (dy, dx) of each frame's content relative to frame 0, px: content at
        r in frame 0 is at r + shift in frame k.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    n = len(frames)
    if n == 1:
        return frames[0].copy(), np.zeros((1, 2))
    # A Hann window removes the edge discontinuity of the periodic FFT (the support's
    # gradient would otherwise pin the correlation peak at zero shift).
    taper = window("hann", frames.shape[1:])
    # Everything until the final average stays in Fourier space: each windowed frame is
    # transformed once, the refined reference is the mean of the phase-shifted transforms,
    # and the registration takes transforms directly (space="fourier").
    spectra = [fft.fft2((f - f.mean()) * taper, workers=-1) for f in frames]
    reference = spectra[0]
    shifts = np.zeros((n, 2))
    fy = fft.fftfreq(frames.shape[1])[:, None]
    fx = fft.fftfreq(frames.shape[2])[None, :]
    iterations = max(1, int(reference_iterations))
    for it in range(iterations):
        for k in range(n):
            # phase_cross_correlation returns the shift that registers the moving image
            # onto the reference, i.e. minus the content displacement.
            correction, _, _ = phase_cross_correlation(
                reference,
                spectra[k],
                upsample_factor=upsample_factor,
                space="fourier",
                normalization=None,
            )
            shifts[k] = -correction
        shifts -= shifts[0]
        if it == iterations - 1:
            break
        # Shift theorem, separable in y and x: moving content by -s multiplies the
        # spectrum by exp(2 pi i f.s).
        reference = np.zeros_like(spectra[0])
        for spec, (sy, sx) in zip(spectra, shifts):
            reference += spec * np.exp(2j * np.pi * fy * sy) * np.exp(2j * np.pi * fx * sx)
        reference /= n
    average = np.mean([_shift(f, -sh) for f, sh in zip(frames, shifts)], axis=0)
    return average.astype(np.float32), shifts


__all__ = ["align_frames"]
