"""Atomic-column seeds: local maxima refined by background-subtracted centre of mass."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.morphology import disk


def find_columns(
    image,
    *,
    min_separation_px,
    com_radius_px,
    threshold_rel=0.1,
    smoothing_px=1.0,
    com_iterations=3,
    exclude_border_px=None,
):
    """Column seeds from local maxima, refined by centre of mass.

    Local maxima of the lightly smoothed image at least ``min_separation_px`` apart and
    above ``threshold_rel`` of the highest maximum are the seeds
    (``skimage.feature.peak_local_max``). Each seed is then moved to the centre of mass of
    the intensity in a disk of ``com_radius_px`` around it, after subtracting the lowest
    value in that disk: without the subtraction the uniform part of the disk pulls every
    estimate toward the disk centre (algorithms.md, pitfall 9). The disk is re-centred and
    the centre of mass recomputed ``com_iterations`` times.

    Parameters
    ----------
    image : array_like, 2-D
        Preprocessed image.
    min_separation_px : float
        Minimum distance between seeds, px (a fraction of the nearest-neighbour distance).
    com_radius_px : float
        Radius of the centre-of-mass disk, px (about 0.3 x the nearest-neighbour distance).
    threshold_rel : float
        Minimum peak height as a fraction of the highest peak.
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
    image = np.asarray(image, dtype=np.float64)
    smooth = ndimage.gaussian_filter(image, smoothing_px) if smoothing_px > 0 else image
    border = int(np.ceil(com_radius_px if exclude_border_px is None else exclude_border_px))
    # A disk footprint and Euclidean suppression: the default square box of side
    # 2 min_distance + 1 reaches 1.4x further along its diagonals, where the tail of a bright
    # neighbour can exceed a weak column's peak (a Br column 2.9 Å from Pb-Br in a rotated
    # image would then not count as a maximum).
    peaks = peak_local_max(
        smooth,
        min_distance=max(1, int(min_separation_px)),
        footprint=disk(max(1, int(round(min_separation_px / 2)))),
        threshold_rel=threshold_rel,
        exclude_border=max(border, 1),
        p_norm=2,
    )
    if len(peaks) == 0:
        return np.empty((0, 2))
    pos = peaks[:, ::-1].astype(float)
    r = int(np.ceil(com_radius_px))
    off = np.arange(-r, r + 1)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    ny, nx = image.shape
    for _ in range(max(1, com_iterations)):
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
    order = np.lexsort((pos[:, 0], np.rint(pos[:, 1])))
    return pos[order]


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


__all__ = ["column_spacing_px", "find_columns"]
