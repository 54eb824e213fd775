"""Blind, accelerated, damped Richardson-Lucy deconvolution, as MATLAB's ``deconvblind``.

The loop follows the behaviour of ``deconvblind`` documented on its MathWorks reference page
(Image Processing Toolbox), written from that description: Richardson-Lucy (Richardson,
JOSA 62 (1972) 55; Lucy, AJ 79 (1974) 745) alternating between image and PSF (Fish,
Brinicombe, Pike & Walker, JOSA A 12 (1995) 58), with Biggs-Andrews vector extrapolation
(Appl. Opt. 36 (1997) 1766) and the damped Poisson ratio of Hanisch, White & Gilliland (1997).
"""

from __future__ import annotations

import numpy as np
from scipy import fft

__all__ = ["deconvolve_blind"]

_EPS = np.finfo(np.float64).eps
_SQRT_EPS = np.sqrt(_EPS)


def _wrap_index(psf_shape, shape):
    """Rows and columns of an image-sized array at which a centred PSF sits after psf2otf.

    psf2otf zero-pads the PSF to the image size and shifts it circularly by -floor(n / 2),
    so PSF element i lands at (i - floor(n / 2)) mod N: the centre of an odd PSF at 0.
    """
    return tuple((np.arange(m) - m // 2) % n for m, n in zip(psf_shape, shape))


def _psf2otf(psf, shape, index):
    full = np.zeros(shape)
    full[np.ix_(*index)] = psf
    return fft.rfft2(full, workers=-1)


def _otf2psf(otf, shape, index):
    return fft.irfft2(otf, s=shape, workers=-1)[np.ix_(*index)]


def _irfft(spec, shape):
    return fft.irfft2(spec, s=shape, workers=-1)


def _lambda(g1, g2):
    """Biggs-Andrews acceleration <g_{k-1}, g_{k-2}> / <g_{k-2}, g_{k-2}>, clipped to [0, 1]."""
    lam = np.vdot(g1, g2) / (np.vdot(g2, g2) + _EPS)
    return float(min(max(lam, 0.0), 1.0))


def deconvolve_blind(
    image,
    psf,
    *,
    iterations=10,
    damping=0.0,
    readout=0.0,
    weight=None,
    blind=True,
    pad_px=None,
    accelerate=True,
    init=None,
):
    """Deconvolve the probe from an image, refining the PSF at the same time.

    The loop of MATLAB's ``deconvblind``, k = 1 ... ``iterations``:

    1. for k > 2 (and ``accelerate``), extrapolate image and PSF,
       Y = max(J + lam_J (J - J_prev), 0), B = max(P + lam_P (P - P_prev), 0) / sum, with
       lam = <g_{k-1}, g_{k-2}> / <g_{k-2}, g_{k-2}> clipped to [0, 1], g the last two
       update steps (Biggs & Andrews 1997); otherwise Y = max(J, 0), B = P;
    2. reblur R = B * Y + readout and form the ratio A = wI / R + eps, wI = W (I + readout);
       with ``damping``, A -> 1 + G (A - 1), G = g^9 (10 - 9 g),
       g = min((wI ln A + R - wI) / (damping^2 / 2), 1) (Hanisch et al. 1997);
    3. image update with the *previous* PSF P: J = max(Y (P (x) A) / (P (x) W + sqrt eps), 0),
       (x) the correlation;
    4. PSF update (``blind``) with the *previous* image J_prev:
       P = max(B (J_prev (x) A) / (J_prev (x) W) + sqrt eps, 0), renormalised to unit sum,
       on the fixed support of the initial PSF.

    Parameters
    ----------
    image : array_like, 2-D
        Image (e.g. after background removal and denoising), in any linear intensity unit;
        ``damping`` and ``readout`` are in the same unit. May contain negative pixels (see
        Notes).
    psf : array_like, 2-D
        Initial PSF, odd shape, centred (e.g. :func:`stemqd.preprocess.probe.probe_psf`); its shape is
        the support of the refined PSF. Normalised to unit sum internally.
    iterations : int
        Number of iterations (NUMIT).
    damping : float
        DAMPAR: the threshold deviation between reblurred estimate and data below which
        the update is damped, in standard deviations of the Poisson noise when the image
        is in counts (the damping function is g = deviance / (damping^2 / 2), and the
        Poisson deviance is ~ z^2 / 2 for a z-sigma deviation). 0 = no damping.
    readout : float
        READOUT: additive noise/background level of the data (image units).
    weight : array_like, optional
        WEIGHT, the per-pixel weight of the data (0 masks a bad pixel); default ones.
    blind : bool
        Refine the PSF. False keeps the PSF fixed: plain (accelerated) Richardson-Lucy.
    pad_px : int, optional
        Mirror padding on every side, px, removed afterwards; default the larger PSF
        dimension. 0 = no padding (circular boundary, as MATLAB).
    accelerate : bool
        Biggs-Andrews acceleration (on in MATLAB; off gives the classical RL iteration).
    init : float or array_like, optional
        Starting image estimate; default the data, as MATLAB (scikit-image starts from 0.5).
        An array must have the image's shape; it is padded like the image.

    Returns
    -------
    image : ndarray
        Deconvolved image, the input's shape; float32 for float32 input, else float64.
    psf : ndarray, float64
        Refined PSF (the initial one, normalised, with ``blind=False``), unit sum.

    Notes
    -----
    * Negative pixels. RL models Poisson data and needs I + readout >= 0; MATLAB clips
      W (I + readout) at 0, which biases a background-subtracted or filtered image upwards.
      Here an offset c = max(0, -min(I) - readout) is added to the image (and to ``init``)
      before the loop, so that nothing is clipped, and subtracted from the result. A
      constant is a valid object for a unit-sum PSF (PSF * c = c), so the offset does not
      change the model; the deconvolved image may therefore be negative down to -c.
    * Edges. The image is mirror-padded by ``pad_px`` on every side (and up to an
      FFT-friendly size) so that the circular convolution sees no edge discontinuity
      (MATLAB recommends ``edgetaper`` instead), then cropped.
    * psf2otf / otf2psf use the circular shift by floor(n / 2), exact for odd PSF sizes
      (the centre of an even PSF would be ambiguous, so even shapes are rejected).
    * The loop runs in float64 with real FFTs (``scipy.fft``, all cores).
    * The blind problem is degenerate: PSF = delta with image = data fits the data
      exactly, and Richardson-Lucy, a maximum-likelihood iteration, drifts towards it the
      faster the noisier the data (the PSF update correlates the noise in J with the
      noise in the ratio). The iteration count is the regulariser, as in MATLAB; denoise
      first, and keep ``iterations`` near the default. On a synthetic CsPbBr3 [001]
      lattice (columns sigma 0.4 Å, true PSF FWHM 0.80 Å, ~2000 counts per column, start
      1.12 Å) 10 iterations return 0.82 Å; with little noise the width stays within
      10 % of the truth for 40 iterations, while at 2000 counts it is 0.60 Å after 20
      and 0.28 Å after 40.

    References
    ----------
    D. S. C. Biggs and M. Andrews, Appl. Opt. 36 (1997) 1766-1775.
    D. A. Fish, A. M. Brinicombe, E. R. Pike and J. G. Walker, JOSA A 12 (1995) 58-65.
    R. J. Hanisch, R. L. White and R. L. Gilliland, in *Deconvolution of Images and
    Spectra*, 2nd ed., ed. P. A. Jansson (Academic Press, 1997).
    MathWorks, ``deconvblind`` documentation.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"deconvolve_blind expects a 2-D image, got shape {arr.shape}")
    p0 = np.asarray(psf, dtype=np.float64)
    if p0.ndim != 2 or p0.shape[0] % 2 == 0 or p0.shape[1] % 2 == 0:
        raise ValueError(f"the PSF must be 2-D with odd sizes, got shape {p0.shape}")
    if not (np.isfinite(p0).all() and (p0 >= 0).all() and p0.sum() > 0):
        raise ValueError("the PSF must be finite, non-negative and not all zero")
    if any(m > n for m, n in zip(p0.shape, arr.shape)):
        raise ValueError("the PSF is larger than the image")
    if damping < 0 or readout < 0 or iterations < 0:
        raise ValueError("iterations, damping and readout must be >= 0")
    out_dtype = np.float32 if arr.dtype.kind == "f" and arr.dtype.itemsize <= 4 else np.float64
    data = arr.astype(np.float64)
    if not np.isfinite(data).all():
        raise ValueError("deconvolve_blind: the image has non-finite pixels")

    # Mirror padding to an FFT-friendly size.
    ny0, nx0 = data.shape
    pad = max(p0.shape) if pad_px is None else int(pad_px)
    widths = []
    for n in (ny0, nx0):
        before = min(pad, n - 1)
        total = fft.next_fast_len(n + 2 * before, real=True) if pad > 0 else n
        widths.append((before, min(total - n - before, n - 1)))
    crop = (slice(widths[0][0], widths[0][0] + ny0), slice(widths[1][0], widths[1][0] + nx0))

    def padded(a):
        return np.pad(a, widths, mode="reflect") if pad > 0 else a

    offset = max(0.0, -float(data.min()) - readout)
    obs = padded(data + offset)
    shape = obs.shape
    index = _wrap_index(p0.shape, shape)
    w = None if weight is None else padded(np.asarray(weight, dtype=np.float64))
    if w is not None and w.shape != shape:
        raise ValueError("weight must have the image's shape")
    wI = np.maximum((obs + readout) if w is None else w * (obs + readout), 0.0)
    fw = None if w is None else fft.rfft2(w, workers=-1)
    damp22 = damping**2 / 2.0

    if init is None:
        j2 = obs.copy()
    elif np.ndim(init) == 0:
        j2 = np.full(shape, float(init) + offset)
    else:
        j2 = padded(np.asarray(init, dtype=np.float64) + offset)
    j3 = np.zeros(shape)
    p2 = p0 / p0.sum()
    p3 = np.zeros_like(p2)
    g_j = [np.zeros(shape), np.zeros(shape)]  # update steps of iterations k-1, k-2
    g_p = [np.zeros_like(p2), np.zeros_like(p2)]
    otf_p2 = _psf2otf(p2, shape, index)
    fj2 = fft.rfft2(j2, workers=-1) if blind else None

    for k in range(1, int(iterations) + 1):
        # 1. Biggs-Andrews extrapolation from the third iteration on.
        lam_j = _lambda(g_j[0], g_j[1]) if accelerate and k > 2 else 0.0
        y = np.maximum(j2 + lam_j * (j2 - j3), 0.0)
        if blind:
            lam_p = _lambda(g_p[0], g_p[1]) if accelerate and k > 2 else 0.0
            b = np.maximum(p2 + lam_p * (p2 - p3), 0.0)
            b /= b.sum()
            otf_b = otf_p2 if lam_p == 0.0 else _psf2otf(b, shape, index)
        else:
            b, otf_b = p2, otf_p2

        # 2. Ratio of data to reblurred estimate (MATLAB's corelucy).
        reblurred = _irfft(otf_b * fft.rfft2(y, workers=-1), shape) + readout
        reblurred[reblurred == 0] = _EPS
        ratio = wI / reblurred + _EPS
        if damp22 > 0:
            with np.errstate(divide="ignore"):
                log_ratio = np.log(ratio)
            g = np.minimum((wI * log_ratio + reblurred - wI) / damp22, 1.0)
            # Hanisch et al.: G = g^(m-1) (m - (m-1) g) with m = 10 flattens the ratio
            # towards 1 where the fit is already within the noise.
            ratio = 1.0 + g**9 * (10.0 - 9.0 * g) * (ratio - 1.0)
        cc = fft.rfft2(ratio, workers=-1)

        # 3. Image update with the previous (un-extrapolated) PSF P2.
        if w is None:
            scale = p2.sum() + _SQRT_EPS  # P (x) ones = sum(P) everywhere
        else:
            scale = _irfft(np.conj(otf_p2) * fw, shape) + _SQRT_EPS
        j3 = j2
        j2 = np.maximum(y * _irfft(np.conj(otf_p2) * cc, shape) / scale, 0.0)
        g_j = [j2 - y, g_j[0]]

        # 4. PSF update with the previous image J3, on the fixed support.
        if blind:
            fj3 = fj2
            numer = _otf2psf(np.conj(fj3) * cc, shape, index)
            if w is None:
                denom = fj3[0, 0].real  # J3 (x) ones = sum(J3) at every lag
            else:
                denom = _otf2psf(np.conj(fj3) * fw, shape, index)
            p3 = p2
            p2 = np.maximum(b * numer / denom + _SQRT_EPS, 0.0)
            p2 /= p2.sum()
            g_p = [p2 - b, g_p[0]]
            otf_p2 = _psf2otf(p2, shape, index)
            fj2 = fft.rfft2(j2, workers=-1)

    result = j2[crop] - offset
    return result.astype(out_dtype), p2
