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
    """Segment the dot from its support by its local lattice contrast.

    A dot is where atomic columns are, so the mask is drawn on the local energy of the
    high-pass image rather than on its intensity: the image minus its Gaussian blur
    (sigma = smoothing_px / 2) is squared, smoothed with sigma = ``smoothing_px``, and its
    logarithm is split by Otsu's threshold; the largest component is kept and its holes are
    filled. Columns give a contrast energy orders of magnitude above the support's noise, and
    a Pb/Br-depleted shell, dim in intensity, still has strong columns: an intensity
    threshold cuts such shells off, this does not.

    Parameters
    ----------
    image : array_like, 2-D
        Image (background removed or not).
    pixel_size_A : float
        Å per pixel.
    smoothing_px : float
        About half a lattice constant in px: the mask then reaches about one cell beyond
        the outermost column centres.

    Returns
    -------
    Dot
    """
    image = np.asarray(image, float)
    high_pass = image - ndimage.gaussian_filter(image, 0.5 * smoothing_px)
    energy = np.log(ndimage.gaussian_filter(high_pass**2, smoothing_px) + 1e-30)
    mask = energy > filters.threshold_otsu(energy)
    labels = measure.label(mask)
    if labels.max() == 0:
        mask = np.zeros_like(mask)
    else:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = ndimage.binary_fill_holes(labels == np.argmax(sizes))
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return Dot(mask, (0.0, 0.0), 0.0, (np.nan, np.nan))
    eig = np.sort(np.linalg.eigvalsh(np.cov(np.vstack([xs, ys]))))[::-1]
    edges = tuple(float(np.sqrt(12 * e) * pixel_size_A / 10) for e in eig)
    return Dot(
        mask,
        edges,
        float(mask.sum() * (pixel_size_A / 10) ** 2),
        (float(xs.mean()), float(ys.mean())),
    )


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


def surface_depth(positions_px, inside, lattice_constant_px, *, others=None, vectors_px=None):
    """Depth of each column below the dot surface, in whole unit cells.

    The surface is given by the columns selected by ``inside``: with ``vectors_px`` (the
    in-plane lattice vectors, rows (x, y) in px) it is the box of their extent along the two
    lattice directions, the facets of a nanocube, which one missing corner column does not
    move; without, it is their convex hull. The distance to the nearest facet in lattice
    constants d gives the depth floor(d + 1/4) (0 = outermost cell): a column half a cell in
    (the A site next to a B-X corner) is still at depth 0, one a whole cell in is at depth 1,
    whatever the scatter of the fit. Columns in ``others`` (default: ``inside``) get a depth
    too, clipped at 0 outside the surface; all remaining columns get -1.
    """
    pos = np.asarray(positions_px, float)
    depth = np.full(len(pos), -1, int)
    others = np.asarray(inside if others is None else others, bool) | np.asarray(inside, bool)
    pts = pos[inside]
    if len(pts) < 3:
        return depth
    if vectors_px is not None:
        units = np.asarray(vectors_px, float)
        units = units / np.hypot(units[:, 0], units[:, 1])[:, None]
        # Distance to a facet along its normal: project on the direction perpendicular to
        # the other lattice vector (the two coincide for a square lattice).
        normals = np.array([[-units[1, 1], units[1, 0]], [-units[0, 1], units[0, 0]]])
        normals /= np.hypot(normals[:, 0], normals[:, 1])[:, None]
        proj_in, proj = pts @ normals.T, pos[others] @ normals.T
        dist = np.minimum(proj - proj_in.min(axis=0), proj_in.max(axis=0) - proj).min(axis=1)
    else:
        try:
            hull = ConvexHull(pts)
        except QhullError:
            return depth
        # Facet equations n.x + d <= 0 inside; distance to a facet is -(n.x + d).
        dist = (-(pos[others] @ hull.equations[:, :2].T + hull.equations[:, 2])).min(axis=1)
    depth[others] = np.floor(np.maximum(dist, 0) / lattice_constant_px + 0.25).astype(int)
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


__all__ = ["column_flags", "Dot", "edge_lengths_from_columns", "segment_dot", "surface_depth"]
