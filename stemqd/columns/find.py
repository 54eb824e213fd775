"""Atomic-column seeds: local maxima refined by background-subtracted centre of mass."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.morphology import disk

#: Default significance of a seed (``detection="significance"``): its height above the
#: local background in standard deviations of the smoothed image's noise. Set from the null
#: distribution: of ~11 000 local maxima in six 512 x 512 px images of pure noise (spacing
#: 14.7 px), 0 (white Gaussian), 3, 1 and 0 (Poisson, 1, 3 and 20 counts/px) reach 7, and
#: 6, 95, 36 and 16 reach 6; Cs and Pb-Br columns reach 9-60 at 20-50 counts/px, those of
#: the PtIr example 24 and more. Pure noise thus gives at most one seed per image
#: (``tests/columns/test_find.py``). Sparse counts (0.2/px) have heavier tails: 27 reach 7.
DETECTION_SIGNIFICANCE = 7.0
#: Percentile of the smoothed image in the background disk taken as the local background:
#: low enough to reach the vacuum or the gaps between columns, stable against the noise
#: (the minimum of ~700 px sits 2-3 noise sigmas low: in white noise 1241 of 7400 maxima
#: then reach 6 sigmas, against 10 with the 10th percentile).
BACKGROUND_PERCENTILE = 10.0
#: Immerkaer (1996) noise mask, the product of two second differences: it annihilates any
#: locally quadratic signal and has unit gain for white noise (sum of squares 36 / 36).
_IMMERKAER = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0]) / 6.0
#: Clip level (in sigmas) and passes of the clipped RMS of the noise residual.
_CLIP_SIGMAS, _CLIP_PASSES = 3.0, 2


def find_columns(
    image,
    *,
    min_separation_px,
    com_radius_px,
    detection="relative",
    threshold_rel=0.1,
    significance=DETECTION_SIGNIFICANCE,
    background_radius_px=None,
    significance_image=None,
    smoothing_px=1.0,
    com_iterations=3,
    exclude_border_px=None,
):
    """Column seeds from local maxima, refined by centre of mass.

    Local maxima of the lightly smoothed image at least ``min_separation_px`` apart are
    the candidates (``skimage.feature.peak_local_max``). ``detection`` decides which are
    kept: ``relative`` keeps those above ``threshold_rel`` of the highest maximum;
    ``significance`` keeps those whose height above the local background exceeds
    ``significance`` times the local noise (:func:`peak_significance`). Each seed is then
    moved to the centre of mass of the intensity in a disk of ``com_radius_px`` around it,
    after subtracting the lowest value in that disk: without the subtraction the uniform
    part of the disk pulls every estimate toward the disk centre. The disk is re-centred and
    the centre of mass recomputed ``com_iterations`` times.

    Parameters
    ----------
    image : array_like, 2-D
        Preprocessed image.
    min_separation_px : float
        Minimum distance between seeds, px (a fraction of the nearest-neighbour distance).
    com_radius_px : float
        Radius of the centre-of-mass disk, px (about 0.3 x the nearest-neighbour distance).
    detection : {"relative", "significance"}
        Criterion for keeping a maximum. ``relative`` misses faint columns of a dot whose
        thickness falls toward its edges (on the PtIr example, recall 0.94 at 0.1) and,
        on a noisy image, keeps the noise maxima in the vacuum that exceed the fraction;
        ``significance`` judges each maximum against its own surroundings.
    threshold_rel : float
        ``relative``: minimum peak height as a fraction of the highest peak.
    significance : float
        ``significance``: minimum height above the local background, in noise standard
        deviations of the smoothed image (default :data:`DETECTION_SIGNIFICANCE`).
    background_radius_px : float, optional
        ``significance``: radius of the disk that gives the local background and noise, px
        (about one nearest-neighbour distance). Required with ``significance``.
    significance_image : array_like, 2-D, optional
        ``significance``: the image whose height and noise judge each maximum, of the shape
        of ``image`` (default ``image``). The maxima are found on ``image``; give here an
        image whose noise is still white at the pixel scale (the frames' average, not its
        denoised or deconvolved version, whose noise :func:`peak_significance` would
        underestimate).
    smoothing_px : float
        Gaussian sigma applied before the maxima search only, px.
    com_iterations : int
        Number of re-centred centre-of-mass steps.
    exclude_border_px : int, optional
        Seeds closer than this to the image border are dropped (default: com_radius_px).

    Returns
    -------
    ndarray, shape (N, 2)
        Column positions (x, y), px, sorted by y then x.
    """
    if detection not in ("relative", "significance"):
        raise ValueError(f"detection must be 'relative' or 'significance', not {detection!r}")
    if detection == "significance" and background_radius_px is None:
        raise ValueError("detection='significance' needs background_radius_px")
    image = np.asarray(image, dtype=np.float64)
    smooth = _smoothed(image, smoothing_px)
    border = int(np.ceil(com_radius_px if exclude_border_px is None else exclude_border_px))
    # A disk footprint and Euclidean suppression: the default square box of side
    # 2 min_distance + 1 reaches 1.4x further along its diagonals, where the tail of a bright
    # neighbour can exceed a weak column's peak (a Br column 2.9 Å from Pb-Br in a rotated
    # image would then not count as a maximum).
    peaks = peak_local_max(
        smooth,
        min_distance=max(1, int(min_separation_px)),
        footprint=disk(max(1, int(round(min_separation_px / 2)))),
        threshold_rel=threshold_rel if detection == "relative" else None,
        exclude_border=max(border, 1),
        p_norm=2,
    )
    if detection == "significance" and len(peaks):
        if significance_image is None:
            judged, judged_smooth = image, smooth
        else:
            judged = np.asarray(significance_image, dtype=np.float64)
            if judged.shape != image.shape:
                raise ValueError(
                    f"significance_image has shape {judged.shape}, the image {image.shape}"
                )
            judged_smooth = _smoothed(judged, smoothing_px)
        height, noise = _significance(
            judged, judged_smooth, peaks, background_radius_px, smoothing_px
        )
        peaks = peaks[height > significance * noise]
    if len(peaks) == 0:
        return np.empty((0, 2))
    pos = _centre_of_mass(image, peaks[:, ::-1].astype(float), com_radius_px, com_iterations)
    order = np.lexsort((pos[:, 0], np.rint(pos[:, 1])))
    return pos[order]


def peak_significance(image, peaks, *, radius_px, smoothing_px=1.0):
    """Height of local maxima above their local background, and the noise it is judged by.

    The height is the smoothed image at the maximum minus the
    :data:`BACKGROUND_PERCENTILE` th percentile of the smoothed image in a disk of
    ``radius_px`` around it: for a column inside a crystal that reaches the gaps between
    columns, for a surface column the vacuum or support beside it. The noise is measured
    in the same disk, from the data: the Immerkaer (1996) residual (a filter that removes
    any locally quadratic signal and passes white noise with unit gain) gives the pixel
    noise as its clipped RMS, which follows the local signal under Poisson statistics;
    multiplied by the white-noise gain of the smoothing Gaussian, (sum g^2)^1/2, it is the
    standard deviation of the smoothed image. Pixels whose 3 x 3 neighbourhood is constant
    (vacuum masked to zero) carry no noise and are left out.

    Parameters
    ----------
    image : array_like, 2-D
        The image, unsmoothed.
    peaks : ndarray of int, shape (N, 2)
        Maxima (row, col), px, as from ``skimage.feature.peak_local_max``.
    radius_px : float
        Radius of the background and noise disk, px.
    smoothing_px : float
        Gaussian sigma of the smoothing the maxima were found on, px.

    Returns
    -------
    height : ndarray, shape (N,)
        Height above the local background, image units.
    noise : ndarray, shape (N,)
        Noise standard deviation of the smoothed image at each maximum, image units; 0
        where the disk holds no noise.

    Notes
    -----
    The noise estimate assumes the noise is white at the pixel scale (raw counts, or an
    image with only a smooth background subtracted). A denoised or deconvolved image has
    less high-frequency noise than its smoothed version implies, so its noise is
    underestimated and more noise maxima pass.

    References
    ----------
    J. Immerkaer, "Fast noise variance estimation", Comput. Vis. Image Underst. 64, 300
    (1996).
    """
    image = np.asarray(image, dtype=np.float64)
    smooth = _smoothed(image, smoothing_px)
    return _significance(image, smooth, peaks, radius_px, smoothing_px)


def _smoothed(image, sigma_px):
    """``image`` after a Gaussian filter of ``sigma_px`` (itself where it is 0)."""
    return ndimage.gaussian_filter(image, sigma_px) if sigma_px > 0 else image


def _significance(image, smooth, peaks, radius_px, smoothing_px):
    """:func:`peak_significance` on an image already smoothed (``smooth``)."""
    residual = ndimage.convolve(image, _IMMERKAER, mode="reflect")
    flat = ndimage.maximum_filter(image, 3) == ndimage.minimum_filter(image, 3)
    r = int(np.ceil(radius_px))
    oy, ox = np.nonzero(disk(r))
    rows = peaks[:, :1] + oy
    cols = peaks[:, 1:] + ox
    pad = {"pad_width": r, "mode": "reflect"}
    background = np.percentile(np.pad(smooth, **pad)[rows, cols], BACKGROUND_PERCENTILE, axis=1)
    height = smooth[peaks[:, 0], peaks[:, 1]] - background
    res = np.where(np.pad(flat, **pad)[rows, cols], np.nan, np.pad(residual, **pad)[rows, cols])
    return height, _clipped_rms(res) * _white_noise_gain(smoothing_px)


def _clipped_rms(values):
    """RMS along axis 1 ignoring NaN, after clipping outliers (column structure); 0 if none."""
    valid = np.isfinite(values)
    sq = np.where(valid, values, 0.0) ** 2
    rms = np.sqrt(sq.sum(axis=1) / np.maximum(valid.sum(axis=1), 1))
    for _ in range(_CLIP_PASSES):
        inside = valid & (sq <= (_CLIP_SIGMAS * rms[:, None]) ** 2)
        rms = np.sqrt(np.where(inside, sq, 0.0).sum(axis=1) / np.maximum(inside.sum(axis=1), 1))
    return rms


def _white_noise_gain(sigma_px):
    """Standard deviation of white unit noise after a Gaussian filter of ``sigma_px``."""
    if sigma_px <= 0:
        return 1.0
    r = int(np.ceil(4 * sigma_px)) + 1
    delta = np.zeros((2 * r + 1, 2 * r + 1))
    delta[r, r] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(delta, sigma_px) ** 2).sum()))


def _centre_of_mass(image, pos, com_radius_px, iterations):
    """Seeds (x, y) moved to the background-subtracted centre of mass of their disk."""
    r = int(np.ceil(com_radius_px))
    off = np.arange(-r, r + 1)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    ny, nx = image.shape
    for _ in range(max(1, iterations)):
        cx = np.rint(pos[:, 0]).astype(int)[:, None]
        cy = np.rint(pos[:, 1]).astype(int)[:, None]
        xs = cx + ox.ravel()
        ys = cy + oy.ravel()
        inside = (
            ((xs - pos[:, :1]) ** 2 + (ys - pos[:, 1:]) ** 2 <= com_radius_px**2)
            & (xs >= 0)
            & (xs < nx)
            & (ys >= 0)
            & (ys < ny)
        )
        vals = image[np.clip(ys, 0, ny - 1), np.clip(xs, 0, nx - 1)]
        low = np.where(inside, vals, np.inf).min(axis=1, keepdims=True)
        w = np.where(inside, vals - low, 0.0)
        total = w.sum(axis=1)
        ok = total > 0
        pos[ok, 0] = (w * xs).sum(axis=1)[ok] / total[ok]
        pos[ok, 1] = (w * ys).sum(axis=1)[ok] / total[ok]
    return pos


def column_spacing_px(image, *, min_px=3.0):
    """Nearest-neighbour column distance measured from the image's autocorrelation, px.

    For an image of unknown structure the spacing that sets the seed separation and the
    fit must come from the image itself, before any column is found. The autocorrelation
    (Wiener-Khinchin: inverse FFT of the power spectrum of the mean-subtracted, Hann-
    windowed image) of a lattice of columns has its largest off-centre maxima at the
    shortest lattice vectors; the distance of the nearest strong maximum outside the
    central peak is returned.

    Parameters
    ----------
    image : array_like, 2-D
    min_px : float
        Spacings below this are not considered (the central peak), px.

    Returns
    -------
    float
        The spacing, px; NaN when the image shows no periodic contrast.
    """
    image = np.asarray(image, dtype=np.float64)
    ny, nx = image.shape
    window = np.outer(np.hanning(ny), np.hanning(nx))
    f = np.fft.rfft2((image - image.mean()) * window)
    ac = np.fft.fftshift(np.fft.irfft2(np.abs(f) ** 2, s=image.shape))
    if not np.isfinite(ac).all() or ac.max() <= 0:
        return float("nan")
    ac /= ac[ny // 2, nx // 2]
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(xx - nx // 2, yy - ny // 2)
    # The central peak falls monotonically to its first minimum; maxima beyond it are the
    # lattice. Take the radial profile's first minimum as the inner limit.
    profile = ndimage.mean(ac, labels=np.rint(r).astype(int), index=np.arange(int(r.max())))
    start = int(min_px)
    while start + 1 < len(profile) and profile[start + 1] < profile[start]:
        start += 1
    peaks = peak_local_max(
        ac, min_distance=max(1, start // 2), threshold_abs=0.05, exclude_border=False
    )
    dist = r[peaks[:, 0], peaks[:, 1]]
    keep = (dist > start) & (dist < 0.25 * min(nx, ny))
    if not keep.any():
        return float("nan")
    heights = ac[peaks[keep, 0], peaks[keep, 1]]
    dist = dist[keep]
    strong = heights >= 0.5 * heights.max()
    return float(dist[strong].min())


__all__ = ["column_spacing_px", "find_columns", "peak_significance"]
