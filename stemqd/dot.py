"""Segmentation of a nanocrystal from its support, and each column's place in it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import filters, measure


@dataclass(frozen=True)
class Dot:
    """A segmented dot.

    Attributes
    ----------
    mask : ndarray of bool
        Pixels of the dot.
    edge_lengths_nm : tuple of float
        Edge lengths of the equivalent rectangle along the principal axes, nm
        (sqrt(12 x variance) of the mask's pixel coordinates; exact for a rectangle).
    area_nm2 : float
    centroid_px : tuple of float
        (x, y).
    """

    mask: np.ndarray
    edge_lengths_nm: tuple
    area_nm2: float
    centroid_px: tuple


def segment_dot(image, pixel_size_A, *, smoothing_px):
    """Segment the dot: smooth, Otsu threshold, largest component, holes filled.

    The smoothing spreads the outermost columns' intensity half outward, half inward, so
    the half-height edge of the plateau runs through the outermost column centres; the mask
    is therefore grown by half of ``smoothing_px`` to cover those columns entirely.

    Parameters
    ----------
    image : array_like, 2-D
        Background-removed image (the dot is brighter than the support).
    pixel_size_A : float
        Å per pixel.
    smoothing_px : float
        Gaussian sigma, px; about one lattice constant blurs the columns into a plateau.

    Returns
    -------
    Dot
    """
    smooth = ndimage.gaussian_filter(np.asarray(image, float), smoothing_px)
    mask = smooth > filters.threshold_otsu(smooth)
    labels = measure.label(mask)
    if labels.max() == 0:
        mask = np.zeros_like(mask)
    else:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = ndimage.binary_fill_holes(labels == np.argmax(sizes))
        grow = ndimage.distance_transform_edt(~mask) <= 0.5 * smoothing_px
        mask = ndimage.binary_fill_holes(grow)
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return Dot(mask, (0.0, 0.0), 0.0, (np.nan, np.nan))
    eig = np.sort(np.linalg.eigvalsh(np.cov(np.vstack([xs, ys]))))[::-1]
    edges = tuple(float(np.sqrt(12 * e) * pixel_size_A / 10) for e in eig)
    return Dot(mask, edges, float(mask.sum() * (pixel_size_A / 10) ** 2),
               (float(xs.mean()), float(ys.mean())))


def column_flags(positions_px, dot, *, margin_px):
    """Flag columns outside the dot or within ``margin_px`` of its edge.

    Returns an array of strings: "" (inside), "outside dot" or "edge margin".
    """
    pos = np.asarray(positions_px, float)
    inside_dist = ndimage.distance_transform_edt(dot.mask)
    ny, nx = dot.mask.shape
    ix = np.clip(np.rint(pos[:, 0]).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(pos[:, 1]).astype(int), 0, ny - 1)
    d = inside_dist[iy, ix]
    return np.where(d <= 0, "outside dot", np.where(d < margin_px, "edge margin", ""))


def surface_depth(positions_px, inside, lattice_constant_px):
    """Depth of each column below the dot surface, in whole unit cells.

    The surface is the convex hull of the columns inside the dot; the depth is the distance
    to the nearest hull facet in lattice constants, rounded down (0 = outermost cell), so a
    column half a cell in (the A site next to a B-X corner) is still at depth 0. Columns
    outside the dot get -1.
    """
    pos = np.asarray(positions_px, float)
    depth = np.full(len(pos), -1, int)
    pts = pos[inside]
    if len(pts) < 3:
        return depth
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return depth
    # Facet equations n.x + d <= 0 inside; distance to a facet is -(n.x + d).
    dist = (-(pts @ hull.equations[:, :2].T + hull.equations[:, 2])).min(axis=1)
    depth[inside] = np.floor(np.maximum(dist, 0) / lattice_constant_px + 1e-6).astype(int)
    return depth


def edge_lengths_from_columns(positions_px, vectors_px, pixel_size_A):
    """Edge lengths of the dot along its two lattice directions, nm.

    The extent (max - min) of the in-dot column centres projected on each lattice vector's
    direction: for an n-cell cube this is n lattice constants, free of the segmentation's
    blur.
    """
    pos = np.asarray(positions_px, float)
    if len(pos) < 2:
        return (np.nan, np.nan)
    out = []
    for v in np.asarray(vectors_px, float):
        proj = pos @ (v / np.hypot(*v))
        out.append(float((proj.max() - proj.min()) * pixel_size_A / 10))
    return tuple(out)
