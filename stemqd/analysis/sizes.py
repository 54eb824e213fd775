"""Size distribution of cubic dots from low-magnification TEM/STEM images.

:func:`measure_sizes` finds every dot of an image and measures its edge length;
:func:`summarize_sizes` gives the distribution (mean, standard deviation, relative spread,
log-normal fit); :func:`write_size_results` writes ``sizes.csv``, ``summary.json`` and the
figure of one image; :func:`score_sizes` checks a result against a synthetic field's truth. ``stemqd sizes`` (:mod:`stemqd.cli.sizes`) runs them over files.

Method
------
1. **Contrast.** Bright dots on a dark field (HAADF) or dark dots on a bright field (TEM).
   ``"auto"`` takes the sign of the skewness of the illumination-flattened, smoothed image:
   dots cover a minority of the field and sit in one tail of the histogram (reliable while
   they cover less than about half of the field; pass the contrast otherwise).
2. **Background.** The support (carbon) and the uneven illumination are divided out:
   ``signal = ±(image / background - 1)``, so that the dots are positive, in units of the
   local background. The background is a Gaussian normalised convolution of the image with
   the dots (dilated) masked out, of width :data:`BACKGROUND_WIDTH` x the median dot's edge
   (three passes, each masking the dots of the one before).
3. **Segmentation.** Threshold of the smoothed signal: Otsu's, kept within
   ``noise_sigmas`` (2.5 to 4) robust standard deviations (MAD) of the support's noise
   above the support. Below 2.5 sigma the support's speckle would join into dot-sized
   regions (Otsu's threshold falls there when the dots cover little of the field); above 4
   sigma, Otsu's threshold has split the dot populations of a mixed field (7 and 14 nm
   dots differ twofold in contrast) instead of dots from the support.
   Holes are filled and specks smaller than a square of ``min_edge_nm`` dropped.
4. **Touching dots.** Watershed of the distance transform of the mask (smoothed over a fifth
   of the median inradius, so that a noisy outline puts no spurious maxima on the ridges)
   from its h-maxima (h = ``split_depth_px``): two squares that touch leave a neck, whose
   saddle in the distance transform is deeper than h.
5. **Edge length.** Per dot, the level half-way between the local background (median of a
   ring around the dot, other dots excluded) and the dot's plateau (median of its interior)
   is contoured with sub-pixel precision (marching squares on the smoothed signal, within
   the dot's own watershed territory). The half-height line of a blurred straight face lies
   on the face whatever the blur and the dot's brightness. The minimum-area rectangle of the
   contour (rotating calipers over its convex hull) gives the orientation; each face's
   position is then the median of the contour points on the middle half of that face, and
   the two sides are the distances between opposite faces. The calipers' own extent is not
   used: it follows the outermost noisy contour points (+1.2 px per side on 28-px dots at
   30 counts/px), and the blurred corners, cut inside by the half-height line, bias the
   area and moments (-2 % on 14-px dots). ``edge_nm`` is the mean of the two sides.
6. **Exclusions** (``flag``, "" for a measured dot), tested in this order. The shape tests
   hold for any size, since every single dot is a square; the thickness tests use that a
   cube seen along <001> has a uniform projected thickness, so a flat plateau:

   * ``"cut by border"``: the dot reaches the outermost pixel row or column;
   * ``"aggregate: aspect ..."``: long / short side > ``max_aspect`` (1.3): two merged
     squares, face to face, give about 2;
   * ``"aggregate: fill ..."``: contour area / rectangle area < ``min_fill`` (0.85):
     clumps of rotated dots leave re-entrant gaps;
   * ``"aggregate: misfit ..."``: rms distance of the contour from the rectangle, less the
     part that the outline noise explains (noise / edge gradient), > ``max_misfit``
     (0.045) x the edge: a clump's outline is not a square (single dots: < 0.03);
   * ``"aggregate: relief ..."``: 10-90 % spread of the interior (less that of the noise)
     > ``max_relief`` (0.4) x the dot's height: overlapping dots are thicker where they
     overlap (single dots: < 0.25; a clump of 4: 0.8);
   * ``"aggregate: junction ..."``: where the dot meets another segment, the signal is >
     ``max_junction`` (1.1) x the dot's height: the watershed cut runs through an overlap,
     which is thicker than either dot, whereas two dots that only touch meet at or below
     their height (0.7-1.0);
   * ``"aggregate: area ..."``: area > ``max_area_ratio`` (3) x the median area of the
     dots that passed the other tests: a 2 x 2 block is square, flat and full but has 4x
     the area; for a 15 % spread in edge length a single dot above 3x the median area is
     a 3.7-sigma event. For fields that mix populations of very different sizes, disable
     it (``max_area_ratio=None``, ``--max-area-ratio 0``);
   * ``"no contour"``: the half-height level did not give a closed contour.

The numbers in brackets come from the synthetic fields of
:func:`stemqd.simulation.synthetic.low_magnification_field`; ``benchmarks/bench_sizes.py``
prints the accuracy over sizes, contrasts, pixel sizes and doses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from ..errors import InputError
from ..files import atomic_write_text, save_figure, write_json
from ..provenance import record

__all__ = [
    "BACKGROUND_WIDTH",
    "SIZE_COLUMNS",
    "SizeResult",
    "decide_contrast",
    "flatten_background",
    "measure_sizes",
    "min_area_rectangle",
    "plot_sizes",
    "score_sizes",
    "summarize_sizes",
    "write_size_results",
]

#: Width of the background estimate (Gaussian sigma) in units of the median dot's edge
#: (square root of the median area of the segments). The dots are masked out, so the width
#: need not exceed the dots much; a narrow one follows the carbon's thickness variations
#: (tens of nm).
BACKGROUND_WIDTH = 2.0

#: Columns of the per-dot table (``sizes.csv``).
SIZE_COLUMNS = [
    "dot",
    "x_px",
    "y_px",
    "edge_nm",
    "side_a_nm",
    "side_b_nm",
    "orientation_deg",
    "area_nm2",
    "aspect",
    "fill",
    "misfit",
    "relief",
    "junction",
    "outline_noise_px",
    "flag",
]


@dataclass(frozen=True)
class SizeResult:
    """Dots of one image.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per dot, columns :data:`SIZE_COLUMNS`: ``dot`` (its label in `labels`),
        centre ``x_px``, ``y_px`` (pixel centres at integers), ``edge_nm`` (mean side),
        ``side_a_nm`` (the side at ``orientation_deg``), ``side_b_nm``, ``orientation_deg``
        (in [0, 90), from +x towards +y in pixel axes), ``area_nm2`` (half-height contour),
        ``aspect`` (long / short side), ``fill`` (area / rectangle area), ``misfit``,
        ``relief``, ``junction`` (the tests of the module docstring), ``outline_noise_px``
        (rms outline displacement that the noise causes) and ``flag`` ("" for a measured
        dot, else why it was excluded).
    labels : ndarray of int
        Watershed segmentation, 0 = background.
    contrast : str
        ``"bright"`` or ``"dark"``, as used.
    contrast_skewness : float
        Skewness of the flattened image that ``"auto"`` decides on (positive: bright).
    threshold : float
        Segmentation threshold, in units of the local background.
    rectangles : list of ndarray
        Corners (4, 2) (x, y) of every dot's minimum-area rectangle, px, in table order.
    parameters : dict
        Everything that determined the result.
    """

    table: pd.DataFrame
    labels: np.ndarray = field(repr=False)
    contrast: str
    contrast_skewness: float
    threshold: float
    rectangles: list = field(repr=False)
    parameters: dict


def min_area_rectangle(points):
    """Minimum-area enclosing rectangle of a 2-D point set (rotating calipers).

    The rectangle of least area has one side along an edge of the convex hull (Freeman &
    Shapira 1975), so every hull-edge direction is tried (vectorised over directions;
    written here because OpenCV is not a dependency).

    Parameters
    ----------
    points : array_like, shape (N, 2)
        Points (x, y), N >= 3, not all collinear.

    Returns
    -------
    center : ndarray, shape (2,)
        Rectangle centre (x, y).
    sides : tuple of float
        (side along `angle_deg`, side perpendicular to it), same units as the points.
    angle_deg : float
        Direction of the first side, degrees in [0, 90), from +x towards +y.
    corners : ndarray, shape (4, 2)
        Corners in order around the rectangle.
    """
    from scipy.spatial import ConvexHull

    pts = np.asarray(points, float)
    hull = pts[ConvexHull(pts).vertices]
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.round(np.arctan2(edges[:, 1], edges[:, 0]) % (np.pi / 2), 12))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = hull[:, 0] * c + hull[:, 1] * s  # (n_angles, n_hull)
    v = -hull[:, 0] * s + hull[:, 1] * c
    area = np.ptp(u, axis=1) * np.ptp(v, axis=1)
    k = int(np.argmin(area))
    th = angles[k]
    u0, u1, v0, v1 = u[k].min(), u[k].max(), v[k].min(), v[k].max()
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    local = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])
    corners = local @ rot.T
    center = np.array([(u0 + u1) / 2, (v0 + v1) / 2]) @ rot.T
    return center, (float(u1 - u0), float(v1 - v0)), float(np.degrees(th)), corners


def _smooth(image, sigma_px):
    # A wide Gaussian on a block-averaged copy: the background is smooth, and a full-size
    # filter of a 200-px sigma would cost seconds.
    from skimage.transform import downscale_local_mean, resize

    factor = max(int(sigma_px // 4), 1)
    if factor == 1:
        return ndimage.gaussian_filter(image, sigma_px, mode="reflect")
    small = downscale_local_mean(image, (factor, factor))
    small = ndimage.gaussian_filter(small, sigma_px / factor, mode="reflect")
    return resize(small, image.shape, order=1, mode="edge")


def flatten_background(image, dots_mask, sigma_px):
    """Background of `image` under the dots, by Gaussian normalised convolution.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
    dots_mask : ndarray of bool or None
        Pixels to leave out (the dots); None uses every pixel.
    sigma_px : float
        Gaussian width, px; larger than the dots.

    Returns
    -------
    ndarray, float64
        The background, positive.
    """
    image = np.asarray(image, float)
    weight = np.ones(image.shape) if dots_mask is None else (~dots_mask).astype(float)
    if weight.mean() < 0.05:
        weight = np.ones(image.shape)
    num = _smooth(image * weight, sigma_px)
    den = _smooth(weight, sigma_px)
    fallback = image[weight > 0].mean()
    background = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    floor = max(abs(fallback) * 1e-3, 1e-12)
    return np.maximum(background, floor)


def decide_contrast(image, sigma_px):
    """``("bright" | "dark", skewness)`` of an image divided by its smooth background."""
    image = np.asarray(image, float)
    flat = image / flatten_background(image, None, sigma_px) - 1.0
    skew = float(stats.skew(ndimage.gaussian_filter(flat, 2.0).ravel()))
    return ("bright" if skew >= 0 else "dark"), skew


def _threshold(signal, noise_sigmas):
    from skimage.filters import threshold_otsu

    otsu = float(threshold_otsu(signal))
    below = signal[signal < otsu]
    med = float(np.median(below))
    sigma = 1.4826 * float(np.median(np.abs(below - med)))
    low, high = noise_sigmas
    return float(np.clip(otsu, med + low * sigma, med + high * sigma))


def _dots_mask(signal, threshold, min_area_px):
    from skimage import morphology

    mask = ndimage.binary_fill_holes(signal > threshold)
    return morphology.remove_small_objects(mask, max_size=max(int(min_area_px), 1))


def _split_touching(mask, min_area_px, split_depth_px):
    """Watershed of the smoothed distance transform from its h-maxima, per component."""
    from skimage import morphology, segmentation

    dist = ndimage.distance_transform_edt(mask)
    components, n = ndimage.label(mask)
    # Smooth the distance map over a fifth of the typical inradius: the ragged outline of a
    # noisy dot puts spurious maxima on its ridges, whereas the saddle between two
    # touching dots is as wide as the dots.
    inradius = np.median(ndimage.maximum(dist, components, np.arange(1, n + 1)))
    dist = ndimage.gaussian_filter(dist, max(0.2 * inradius, 1.0))
    markers = np.zeros(mask.shape, int)
    # h_maxima sorts every pixel it is given: per component box, not the whole frame.
    for k, slc in enumerate(ndimage.find_objects(components), start=1):
        peaks = (morphology.h_maxima(dist[slc], split_depth_px) > 0) & (components[slc] == k)
        peak_labels, _ = ndimage.label(peaks)
        markers[slc][peaks] = peak_labels[peaks] + markers.max()
    labels = segmentation.watershed(-dist, markers, mask=mask)
    # Drop specks the watershed split off (smaller than a dot can be).
    sizes = np.bincount(labels.ravel())
    small = np.flatnonzero(sizes < min_area_px)
    labels[np.isin(labels, small[small > 0])] = 0
    return segmentation.relabel_sequential(labels)[0]


def _polygon_area(xy):
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _moment_sides(xy, angle_deg):
    """Area, centroid (x, y) and the sides (a, b) of the rectangle with the same area and
    second moments as the polygon `xy`, in the frame rotated by `angle_deg`.

    A rectangle of sides a, b has ``int u^2 dA = a^3 b / 12`` about its centre, so
    ``a = sqrt(12 M_uu / A)``. Unlike the calipers' extent, which follows the outermost
    noisy contour points (+1.2 px per edge on 28-px dots at 30 counts/px), the moments
    average over the whole outline. Polygon integrals by Green's theorem.
    """
    th = np.radians(angle_deg)
    u = xy[:, 0] * np.cos(th) + xy[:, 1] * np.sin(th)
    v = -xy[:, 0] * np.sin(th) + xy[:, 1] * np.cos(th)
    u1, v1 = np.roll(u, -1), np.roll(v, -1)
    cross = u * v1 - u1 * v
    area = 0.5 * cross.sum()
    cu = ((u + u1) * cross).sum() / (6 * area)
    cv = ((v + v1) * cross).sum() / (6 * area)
    muu = (u**2 + u * u1 + u1**2) @ cross / 12 - area * cu**2
    mvv = (v**2 + v * v1 + v1**2) @ cross / 12 - area * cv**2
    a = np.sqrt(max(12 * muu / area, 0.0))
    b = np.sqrt(max(12 * mvv / area, 0.0))
    centroid = np.array([cu * np.cos(th) - cv * np.sin(th), cu * np.sin(th) + cv * np.cos(th)])
    return abs(area), centroid, (float(a), float(b))


def _face_sides(xy, center, sides, angle_deg):
    """Centre and sides (a, b) from the middle halves of the four faces of the outline.

    Each face's position is the median over the outline points within the middle half of
    that face (starting from the moment-equivalent rectangle `sides` about `center`), so
    neither the shot noise of single points nor the corners, rounded by the blur (the
    half-height contour of a blurred 90-degree corner cuts inside it, -2 % on the moments
    of 14-px dots), bias the distance between opposite faces.
    """
    th = np.radians(angle_deg)
    d = xy - center
    u = d[:, 0] * np.cos(th) + d[:, 1] * np.sin(th)
    v = -d[:, 0] * np.sin(th) + d[:, 1] * np.cos(th)
    a, b = sides
    faces = []
    for along, across, half in ((u, v, b), (v, u, a)):
        mid = np.abs(across) < 0.25 * half
        plus, minus = along[mid & (along > 0)], along[mid & (along < 0)]
        if len(plus) < 3 or len(minus) < 3:
            return center, sides
        faces.append((float(np.median(minus)), float(np.median(plus))))
    (u0, u1), (v0, v1) = faces
    cu, cv = 0.5 * (u0 + u1), 0.5 * (v0 + v1)
    shift = np.array([cu * np.cos(th) - cv * np.sin(th), cu * np.sin(th) + cv * np.cos(th)])
    return center + shift, (u1 - u0, v1 - v0)


def _misfit(xy, center, sides, angle_deg):
    """Rms distance of the outline `xy` from the rectangle's outline, per unit arc length."""
    th = np.radians(angle_deg)
    d = xy - center
    u = np.abs(d[:, 0] * np.cos(th) + d[:, 1] * np.sin(th)) - 0.5 * sides[0]
    v = np.abs(-d[:, 0] * np.sin(th) + d[:, 1] * np.cos(th)) - 0.5 * sides[1]
    outside = np.hypot(np.maximum(u, 0), np.maximum(v, 0))
    dist = np.where((u > 0) | (v > 0), outside, -np.maximum(u, v))
    step = np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)
    return float(np.sqrt(np.sum(step * dist**2) / step.sum()))


def _rectangle_corners(center, sides, angle_deg):
    th = np.radians(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    half = 0.5 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * np.asarray(sides)
    return np.asarray(center) + half @ rot.T


def _measure_dot(signal, labels, territory, label, slc, pad):
    """Half-height outline of one dot and the measures of its interior.

    Returns
    -------
    dict
        ``outline`` ((M, 2) as (x, y), px, or None); ``relief`` (10-90 % spread of the
        interior in units of the dot's height, the part the noise does not explain);
        ``junction`` (median height where the dot meets another segment, in units of the
        dot's height; 0 when it meets none); ``outline_noise_px`` (rms displacement of the
        outline that the noise causes: noise / gradient across the edge).
    """
    from skimage import measure

    ny, nx = signal.shape
    y0, y1 = max(slc[0].start - pad, 0), min(slc[0].stop + pad, ny)
    x0, x1 = max(slc[1].start - pad, 0), min(slc[1].stop + pad, nx)
    sig = signal[y0:y1, x0:x1]
    own = labels[y0:y1, x0:x1] == label
    mine = territory[y0:y1, x0:x1] == label
    others = (labels[y0:y1, x0:x1] > 0) & ~own
    ring = ndimage.binary_dilation(own, iterations=pad // 2 + 2) & ~ndimage.binary_dilation(
        own, iterations=3
    )
    ring &= ~ndimage.binary_dilation(others, iterations=3)
    if ring.sum() < 10:
        ring = ~ndimage.binary_dilation(labels[y0:y1, x0:x1] > 0, iterations=3)
    smoother = ndimage.gaussian_filter(sig, 2.0)
    background, noise, noise_smooth = 0.0, 0.0, 0.0
    if ring.sum() >= 10:
        background = float(np.median(sig[ring]))
        noise = 1.4826 * float(np.median(np.abs(sig[ring] - background)))
        ref = np.median(smoother[ring])
        noise_smooth = 1.4826 * float(np.median(np.abs(smoother[ring] - ref)))
    dist = ndimage.distance_transform_edt(own)
    interior = dist >= max(2.0, 0.4 * dist.max())
    if interior.sum() < 10:
        interior = own
    plateau = float(np.median(sig[interior]))
    height = max(plateau - background, 1e-12)
    level = background + 0.5 * height
    # Relief: thickness steps inside the dot (overlapping dots), on a smoother copy, less
    # the spread that Gaussian noise alone gives (2.56 sigma between 10 and 90 %).
    spread = float(np.subtract(*np.percentile(smoother[interior], [90, 10])))
    relief = np.sqrt(max(spread**2 - (2.56 * noise_smooth) ** 2, 0.0)) / height
    junction = own & ndimage.binary_dilation(others)
    meet = (
        float((np.median(smoother[junction]) - background) / height) if junction.sum() >= 3 else 0.0
    )
    local = np.where(mine, sig, background)
    local = np.pad(local, 1, mode="constant", constant_values=background)
    contours = measure.find_contours(local, level)
    cy, cx = np.argwhere(own).mean(0) + 1
    best, best_area = None, 0.0
    for c in contours:
        if len(c) < 4 or np.abs(c[0] - c[-1]).max() > 1e-6:
            continue  # open (cannot happen after padding, but be safe)
        xy = c[:, ::-1]
        area = _polygon_area(xy)
        if area > best_area and _contains(xy, (cx, cy)):
            best, best_area = xy, area
    out = {"outline": None, "relief": relief, "junction": meet, "outline_noise_px": np.nan}
    if best is None:
        return out
    gy, gx = np.gradient(local)
    grad = ndimage.map_coordinates(np.hypot(gx, gy), best[:, ::-1].T, order=1)
    out["outline_noise_px"] = noise / max(float(np.median(grad)), 1e-12)
    out["outline"] = best + (x0 - 1, y0 - 1)
    return out


def _contains(poly_xy, point):
    from matplotlib.path import Path

    return bool(Path(poly_xy).contains_point(point))


def measure_sizes(
    image,
    pixel_size_nm,
    *,
    contrast="auto",
    smooth_px=1.0,
    min_edge_nm=2.0,
    noise_sigmas=(2.5, 4.0),
    split_depth_px=2.0,
    max_aspect=1.3,
    min_fill=0.85,
    max_misfit=0.045,
    max_relief=0.4,
    max_junction=1.1,
    max_area_ratio=3.0,
    background_sigma_nm=None,
):
    """Find the dots of a low-magnification image and measure their edge lengths.

    The method and the exclusion criteria are in the module docstring.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        One frame (counts or any positive intensity).
    pixel_size_nm : float
        Pixel size, nm.
    contrast : {"auto", "bright", "dark"}
        Bright dots on a dark field (HAADF), dark dots on a bright field (TEM), or decide.
    smooth_px : float
        Gaussian smoothing before thresholding and contouring, px.
    min_edge_nm : float
        Regions smaller than a square of this edge are noise, not dots, and are dropped.
    noise_sigmas : (float, float)
        Range of the threshold, in robust standard deviations of the support's noise.
    split_depth_px : float
        Depth of the distance-transform saddle that separates touching dots, px.
    max_aspect, min_fill, max_misfit : float
        Shape tests of a single square dot (see the module docstring).
    max_relief, max_junction : float
        Thickness tests: steps inside the dot, and an overlap where it meets another.
    max_area_ratio : float or None
        Area test against the population's median; None disables it.
    background_sigma_nm : float, optional
        Width of the background estimate, nm; default :data:`BACKGROUND_WIDTH` x the
        median dot's edge.

    Returns
    -------
    SizeResult

    Raises
    ------
    InputError
        The image is not 2-D, not finite, or holds no dot.
    """
    img = np.asarray(image, float)
    if img.ndim != 2 or min(img.shape) < 16:
        raise InputError(f"need one 2-D image of at least 16 x 16 pixels, not shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise InputError("the image has non-finite pixels")
    if not pixel_size_nm > 0:
        raise InputError(f"pixel size must be positive, not {pixel_size_nm} nm")
    if contrast not in ("auto", "bright", "dark"):
        raise InputError(f"contrast must be auto, bright or dark, not {contrast!r}")
    if np.ptp(img) == 0:
        raise InputError("found no dots: the image is constant")
    ny, nx = img.shape
    if img.min() <= 0:  # intensities for a ratio to the background must be positive
        img = img - img.min() + max(float(np.ptp(img)) * 1e-3, 1e-6)
    min_area_px = (min_edge_nm / pixel_size_nm) ** 2
    sigma0 = background_sigma_nm / pixel_size_nm if background_sigma_nm else max(ny, nx) / 8
    skew = float("nan")
    if contrast == "auto":
        contrast, skew = decide_contrast(img, sigma0)
    sign = 1.0 if contrast == "bright" else -1.0

    # A rough background, the dots, then the background with the dots masked out (twice).
    mask, sigma_bg = None, sigma0
    for _ in range(3):
        background = flatten_background(img, mask, sigma_bg)
        signal = ndimage.gaussian_filter(sign * (img / background - 1.0), smooth_px)
        threshold = _threshold(signal, noise_sigmas)
        dots = _dots_mask(signal, threshold, min_area_px)
        if not dots.any():
            raise InputError(
                "found no dots; check --contrast (bright dots on dark, or dark on bright) "
                "and the pixel size"
            )
        if background_sigma_nm is None:
            components, n = ndimage.label(dots)
            areas = np.bincount(components.ravel())[1:]
            sigma_bg = max(BACKGROUND_WIDTH * np.sqrt(np.median(areas)), 8.0)
        mask = ndimage.binary_dilation(dots, iterations=max(int(3 * smooth_px), 2) + 1)
    labels = _split_touching(dots, min_area_px, split_depth_px)

    from skimage.segmentation import expand_labels

    pad = int(np.ceil(4 * smooth_px)) + 4
    territory = expand_labels(labels, distance=pad)
    px = pixel_size_nm
    rows, rectangles = [], []
    for label, slc in enumerate(ndimage.find_objects(labels), start=1):
        if slc is None:
            continue
        own = labels[slc] == label
        ys, xs = np.nonzero(own)
        ys, xs = ys + slc[0].start, xs + slc[1].start
        row = dict.fromkeys(SIZE_COLUMNS, np.nan) | {"dot": label, "flag": ""}
        row["x_px"], row["y_px"] = xs.mean(), ys.mean()
        if ys.min() == 0 or xs.min() == 0 or ys.max() == ny - 1 or xs.max() == nx - 1:
            row["flag"] = "cut by border"
        dot = _measure_dot(signal, labels, territory, label, slc, pad)
        contour = dot.pop("outline")
        row |= dot
        corners = np.full((4, 2), np.nan)
        if contour is None or len(contour) < 3:
            row["flag"] = row["flag"] or "no contour"
        else:
            _, _, angle, _ = min_area_rectangle(contour)
            area, centroid, (a, b) = _moment_sides(contour, angle)
            centroid, (a, b) = _face_sides(contour, centroid, (a, b), angle)
            corners = _rectangle_corners(centroid, (a, b), angle)
            misfit = _misfit(contour, centroid, (a, b), angle)
            excess = np.sqrt(max(misfit**2 - row["outline_noise_px"] ** 2, 0.0))
            row.update(
                x_px=centroid[0],
                y_px=centroid[1],
                side_a_nm=a * px,
                side_b_nm=b * px,
                edge_nm=0.5 * (a + b) * px,
                orientation_deg=angle,
                area_nm2=area * px**2,
                aspect=max(a, b) / min(a, b),
                fill=area / (a * b),
                misfit=excess / (0.5 * (a + b)),
            )
            tests = (
                ("aspect", row["aspect"] > max_aspect, ">", max_aspect),
                ("fill", row["fill"] < min_fill, "<", min_fill),
                ("misfit", row["misfit"] > max_misfit, ">", max_misfit),
                ("relief", row["relief"] > max_relief, ">", max_relief),
                ("junction", row["junction"] > max_junction, ">", max_junction),
            )
            failed = [t for t in tests if t[1]]
            if failed and not row["flag"]:
                name, _, op, limit = failed[0]
                row["flag"] = f"aggregate: {name} {row[name]:.3g} {op} {limit}"
        rows.append(row)
        rectangles.append(corners)
    table = pd.DataFrame(rows, columns=SIZE_COLUMNS)
    if max_area_ratio is not None:
        good = table["flag"] == ""
        if good.any():
            median = float(table.loc[good, "area_nm2"].median())
            big = good & (table["area_nm2"] > max_area_ratio * median)
            table.loc[big, "flag"] = [
                f"aggregate: area {a / median:.1f} x median > {max_area_ratio}"
                for a in table.loc[big, "area_nm2"]
            ]
    parameters = {
        "pixel_size_nm": float(pixel_size_nm),
        "contrast": contrast,
        "smooth_px": smooth_px,
        "min_edge_nm": min_edge_nm,
        "noise_sigmas": noise_sigmas,
        "split_depth_px": split_depth_px,
        "max_aspect": max_aspect,
        "min_fill": min_fill,
        "max_misfit": max_misfit,
        "max_relief": max_relief,
        "max_junction": max_junction,
        "max_area_ratio": max_area_ratio,
        "background_sigma_nm": float(sigma_bg * pixel_size_nm),
    }
    return SizeResult(
        table=table,
        labels=labels,
        contrast=contrast,
        contrast_skewness=skew,
        threshold=float(threshold),
        rectangles=rectangles,
        parameters=parameters,
    )


def summarize_sizes(edges_nm):
    """Mean, standard deviation, relative spread and log-normal fit of edge lengths.

    Parameters
    ----------
    edges_nm : array_like
        Edge lengths of the measured dots, nm.

    Returns
    -------
    dict
        ``n``; ``mean_nm``, ``std_nm`` (sample, ddof=1), ``relative_spread`` (std / mean),
        ``median_nm``; the log-normal maximum-likelihood fit (location 0,
        :func:`scipy.stats.lognorm.fit`): ``lognormal_sigma`` (standard deviation of ln L),
        ``lognormal_median_nm`` (exp of the mean of ln L), ``lognormal_mean_nm`` and
        ``lognormal_std_nm``. Undefined values are None.
    """
    edges = np.asarray(edges_nm, float)
    edges = edges[np.isfinite(edges)]
    n = int(edges.size)
    out = {
        "n": n,
        "mean_nm": float(edges.mean()) if n else None,
        "std_nm": float(edges.std(ddof=1)) if n > 1 else None,
        "relative_spread": float(edges.std(ddof=1) / edges.mean()) if n > 1 else None,
        "median_nm": float(np.median(edges)) if n else None,
        "lognormal_sigma": None,
        "lognormal_median_nm": None,
        "lognormal_mean_nm": None,
        "lognormal_std_nm": None,
    }
    if n > 1 and np.ptp(edges) > 0:
        s, _, scale = stats.lognorm.fit(edges, floc=0)
        out.update(
            lognormal_sigma=float(s),
            lognormal_median_nm=float(scale),
            lognormal_mean_nm=float(scale * np.exp(s**2 / 2)),
            lognormal_std_nm=float(scale * np.exp(s**2 / 2) * np.sqrt(np.expm1(s**2))),
        )
    return out


def plot_sizes(image, result, summary, title=""):
    """Overlay (rectangles: measured green, excluded red) beside the histogram and fit.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.5), layout="constrained")
    ax_img, ax_hist = fig.subplots(1, 2, width_ratios=[1.15, 1])
    lo, hi = np.percentile(image, [0.5, 99.5])
    ax_img.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    for (_, row), corners in zip(result.table.iterrows(), result.rectangles):
        if not np.all(np.isfinite(corners)):
            continue
        closed = np.vstack([corners, corners[:1]])
        color = "lime" if row["flag"] == "" else "red"
        ax_img.plot(closed[:, 0], closed[:, 1], color=color, lw=0.8)
    ax_img.set_title(f"{title} ({result.contrast} dots; green measured, red excluded)")
    ax_img.set_axis_off()
    edges = result.table.loc[result.table["flag"] == "", "edge_nm"].to_numpy()
    if len(edges):
        ax_hist.hist(edges, bins="auto", density=True, color="0.7", edgecolor="0.3")
    if summary.get("lognormal_sigma"):
        x = np.linspace(max(edges.min() * 0.7, 0.01), edges.max() * 1.3, 300)
        pdf = stats.lognorm.pdf(x, summary["lognormal_sigma"], scale=summary["lognormal_median_nm"])
        ax_hist.plot(x, pdf, "C3", label="log-normal fit")
        ax_hist.legend()
    if summary.get("std_nm") is not None:
        ax_hist.set_title(
            f"n = {summary['n']}: {summary['mean_nm']:.2f} ± {summary['std_nm']:.2f} nm "
            f"({100 * summary['relative_spread']:.0f} %)"
        )
    ax_hist.set_xlabel("edge length (nm)")
    ax_hist.set_ylabel("probability density (1/nm)")
    return fig


def write_size_results(folder, image, result, *, inputs=(), extra=None, name=""):
    """Write ``sizes.csv``, ``summary.json`` and ``sizes.png`` of one image, atomically.

    Parameters
    ----------
    folder : str or Path
        Created if needed.
    image : ndarray
        The analysed frame (for the overlay).
    result : SizeResult
    inputs : sequence of path
        Input files, recorded with their SHA-256.
    extra : dict, optional
        More entries for ``summary.json`` (e.g. the pixel size's source).
    name : str
        Title of the figure.

    Returns
    -------
    dict
        The summary as written.
    """
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = result.table
    # the provenance first, at the top level, as in every other output's sidecar
    summary = record(result.parameters, inputs, extra_packages=("scikit-image",))
    summary |= summarize_sizes(table.loc[table["flag"] == "", "edge_nm"])
    flags = table.loc[table["flag"] != "", "flag"].str.split(r" \d| [<>]", regex=True).str[0]
    summary |= {
        "n_regions": len(table),
        "excluded": {str(k): int(v) for k, v in flags.value_counts().items()},
        "contrast": result.contrast,
        "contrast_skewness": result.contrast_skewness,
        "threshold": result.threshold,
        **(extra or {}),
    }
    atomic_write_text(folder / "sizes.csv", table.to_csv(index=False, float_format="%.6g"))
    write_json(folder / "summary.json", summary)
    save_figure(plot_sizes(image, result, summary, title=name), folder / "sizes.png")
    return summary


def score_sizes(result, truth):
    """Compare a :class:`SizeResult` with the truth of a synthetic field.

    Parameters
    ----------
    result : SizeResult
    truth : pandas.DataFrame
        As returned by :func:`stemqd.simulation.synthetic.low_magnification_field`:
        ``x_px``, ``y_px``, ``edge_nm``, ``kind``, ``cut_by_border``.

    Returns
    -------
    dict
        ``n_isolated`` (isolated truth dots not cut by the border), ``isolated_measured``
        (fraction of them measured: the only truth centre in the rectangle of a measured
        dot), ``merged`` (measured dots whose rectangle holds more than one truth centre:
        aggregates or pairs counted as one dot), ``aggregate_parts`` (measured dots that are one member
        of an aggregate, split off by the watershed), ``empty`` (measured dots without a
        truth centre: false detections or fragments), ``n_measured``; ``mean_nm``, ``std_nm`` (measured) beside
        ``true_mean_nm``, ``true_std_nm`` (every truth dot that is not in an aggregate nor
        cut by the border), ``mean_error`` and ``std_error`` (relative); ``edge_rms_nm``
        and ``edge_bias_nm``: per-dot error of the measured edges against their truth dot.
    """
    table = result.table
    measured = table[table["flag"] == ""]
    corners = np.stack([result.rectangles[i] for i in measured.index]).reshape(-1, 4, 2)
    # inside[i, j]: truth centre j lies in the rectangle of measured dot i.
    points = truth[["x_px", "y_px"]].to_numpy()
    origin = corners[:, 0, None, :]
    e1 = (corners[:, 1] - corners[:, 0])[:, None, :]
    e2 = (corners[:, 3] - corners[:, 0])[:, None, :]
    s = np.sum((points[None] - origin) * e1, axis=2) / np.sum(e1**2, axis=2)
    t = np.sum((points[None] - origin) * e2, axis=2) / np.sum(e2**2, axis=2)
    inside = (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
    holds = inside.sum(axis=1)
    aggregate = (truth["kind"] == "aggregate").to_numpy()
    alone = holds == 1
    merged = int((holds > 1).sum())
    members = int((alone & inside[:, aggregate].any(axis=1)).sum())
    # A truth dot is measured when it is the only one in exactly one measured rectangle.
    owner = np.where(inside[alone].sum(axis=0) == 1, np.argmax(inside[alone], axis=0), -1)
    ok = owner >= 0
    isolated = ((truth["kind"] == "isolated") & ~truth["cut_by_border"]).to_numpy()
    reference = truth[~aggregate & ~truth["cut_by_border"].to_numpy()]
    matched = ok & ~aggregate
    edges = measured["edge_nm"].to_numpy()[alone]
    errors = edges[owner[matched]] - truth["edge_nm"].to_numpy()[matched]
    mean, std = measured["edge_nm"].mean(), measured["edge_nm"].std(ddof=1)
    true_mean, true_std = reference["edge_nm"].mean(), reference["edge_nm"].std(ddof=1)
    return {
        "n_isolated": int(isolated.sum()),
        "isolated_measured": float((ok & isolated).sum() / max(isolated.sum(), 1)),
        "merged": merged,
        "aggregate_parts": members,
        "empty": int((holds == 0).sum()),
        "n_measured": len(measured),
        "mean_nm": float(mean),
        "true_mean_nm": float(true_mean),
        "mean_error": float(mean / true_mean - 1),
        "std_nm": float(std),
        "true_std_nm": float(true_std),
        "std_error": float(std / true_std - 1),
        "edge_rms_nm": float(np.sqrt(np.mean(errors**2))) if len(errors) else float("nan"),
        "edge_bias_nm": float(np.mean(errors)) if len(errors) else float("nan"),
    }
