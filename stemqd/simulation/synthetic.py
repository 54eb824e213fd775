"""Synthetic ADF-STEM stacks with known ground truth.

Every test of stemqd recovers something these generators put in: column positions and
amplitudes, per-frame drift, the probe PSF, the background. All randomness comes from one
explicit seed, so a call is deterministic.

Image model (incoherent ADF imaging): each atomic column is a round Gaussian of peak height
``amplitude`` (relative units) and width ``sigma_A``, optionally convolved with a probe PSF;
the dot sits on a slowly varying amorphous-carbon background. One frame holds Poisson counts
with mean ``dose * (columns + background)``, i.e. ``dose`` is the expected number of counts per
pixel at the peak of a column of amplitude 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal

from ..materials import CSPBBR3_LATTICE_CONSTANT_A

#: Relative peak heights of the three CsPbBr3 [001] column types. The ratio Cs : Pb-Br
#: follows sum(Z**1.7) per column (Cs 912, Pb+Br 2213, Br 421): 0.41 and 0.19.
CSPBBR3_AMPLITUDES = {"A": 0.41, "BX": 1.0, "X": 0.19}


@dataclass(frozen=True)
class Truth:
    """Ground truth of a synthetic stack.

    Attributes
    ----------
    positions_px : ndarray, shape (N, 2)
        Column centres (x, y) in pixels of the reference (unshifted) frame.
    types : ndarray of str, shape (N,)
        Column type: ``"A"``, ``"BX"`` or ``"X"`` for a perovskite; any label otherwise.
    amplitudes : ndarray, shape (N,)
        Peak heights in relative units (before ``dose`` and any PSF).
    cell_index : ndarray of int, shape (N, 2)
        Unit-cell indices (i, j) of each column.
    depth_uc : ndarray of int, shape (N,)
        Depth below the dot surface in whole unit cells (0 = outermost cell).
    shifts_px : ndarray, shape (n_frames, 2)
        Displacement (dy, dx) of each frame's content relative to the reference frame:
        what is at r in the reference frame is at r + shift in frame k. Frame 0 has none.
    jitter_px : ndarray, shape (n_frames, ny)
        Horizontal scan-line offset of every row, px.
    sigma_px : float
        Gaussian column width (standard deviation), px.
    psf : ndarray or None
        Probe PSF the columns were convolved with, unit sum.
    background : ndarray
        Noise-free background (relative units, same scale as amplitudes).
    clean : ndarray
        Noise-free reference frame in counts: ``dose * (columns + background)``.
    pixel_size_A, lattice_constant_A, dose : float
        Calibration and dose.
    lattice_vectors_px : ndarray, shape (2, 2)
        Rows are the in-plane lattice vectors (x, y) in px.
    """

    positions_px: np.ndarray
    types: np.ndarray
    amplitudes: np.ndarray
    cell_index: np.ndarray
    depth_uc: np.ndarray
    shifts_px: np.ndarray
    jitter_px: np.ndarray
    sigma_px: float
    psf: np.ndarray | None
    background: np.ndarray
    clean: np.ndarray
    pixel_size_A: float
    lattice_constant_A: float
    dose: float
    lattice_vectors_px: np.ndarray
    extra: dict = field(default_factory=dict)

    def ratio(self, numerator: str = "A", denominator: str = "BX") -> float:
        """True ratio of mean amplitudes of two column types."""
        a = self.amplitudes[self.types == numerator].mean()
        b = self.amplitudes[self.types == denominator].mean()
        return float(a / b)


def render_columns(
    shape, positions_px, amplitudes, sigma_px, *, row_offsets_px=None, radius_sigma=5.0
):
    """Sum of round Gaussian columns sampled at pixel centres.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of the image.
    positions_px : array_like, shape (N, 2)
        Centres (x, y), px.
    amplitudes : array_like, shape (N,)
        Peak heights.
    sigma_px : float or array_like
        Gaussian standard deviation, px (scalar or one per column).
    row_offsets_px : array_like, shape (ny,), optional
        Horizontal shift of every scan row (scan-line jitter), px.
    radius_sigma : float
        Each column is evaluated within this many sigma of its centre.

    Returns
    -------
    ndarray, float64, shape ``shape``
    """
    ny, nx = shape
    pos = np.asarray(positions_px, float).reshape(-1, 2)
    amp = np.broadcast_to(np.asarray(amplitudes, float), (len(pos),))
    sig = np.broadcast_to(np.asarray(sigma_px, float), (len(pos),))
    image = np.zeros(shape)
    if len(pos) == 0:
        return image
    r = int(np.ceil(radius_sigma * sig.max())) + 1
    offs = np.arange(-r, r + 1)
    cx = np.rint(pos[:, 0]).astype(int)
    cy = np.rint(pos[:, 1]).astype(int)
    rows = cy[:, None] + offs  # (N, w)
    cols = cx[:, None] + offs
    jitter = np.zeros(ny) if row_offsets_px is None else np.asarray(row_offsets_px, float)
    row_shift = jitter[np.clip(rows, 0, ny - 1)]  # (N, w)
    gy = np.exp(-0.5 * ((rows - pos[:, 1:2]) / sig[:, None]) ** 2)
    dx = cols[:, None, :] - pos[:, 0, None, None] - row_shift[:, :, None]
    gx = np.exp(-0.5 * (dx / sig[:, None, None]) ** 2)
    tiles = amp[:, None, None] * gy[:, :, None] * gx
    valid = (
        (rows[:, :, None] >= 0)
        & (rows[:, :, None] < ny)
        & (cols[:, None, :] >= 0)
        & (cols[:, None, :] < nx)
    )
    rr = np.broadcast_to(rows[:, :, None], tiles.shape)
    cc = np.broadcast_to(cols[:, None, :], tiles.shape)
    np.add.at(image, (rr[valid], cc[valid]), tiles[valid])
    return image


def carbon_background(shape, pixel_size_A, *, level=0.15, variation=0.3, scale_A=25.0, rng=None):
    """Slowly varying amorphous-carbon support: a smooth random field plus a gradient.

    Parameters
    ----------
    level : float
        Mean background, in column-amplitude units.
    variation : float
        Relative peak-to-peak-ish modulation of the smooth field.
    scale_A : float
        Correlation length of the field (Gaussian sigma), Å.
    """
    rng = np.random.default_rng(rng)
    ny, nx = shape
    field_ = ndimage.gaussian_filter(
        rng.standard_normal(shape), scale_A / pixel_size_A, mode="wrap"
    )
    field_ = (field_ - field_.mean()) / (field_.std() + 1e-12)
    yy, xx = np.mgrid[0:ny, 0:nx]
    gradient = 0.5 * (xx / nx - 0.5) + 0.3 * (yy / ny - 0.5)
    return level * (1.0 + variation * (0.5 * field_ + gradient))


def perovskite_columns(
    edge_cells, lattice_constant_A, pixel_size_A, *, centre_px, rotation_deg=0.0, include_x=True
):
    """Projected columns of a cubic ABX3 cube along [001].

    B-X columns sit at the integer lattice points (i, j), 0 <= i, j <= n; A columns at
    (i + 1/2, j + 1/2), 0 <= i, j < n; pure X columns at the edge midpoints (i + 1/2, j)
    and (i, j + 1/2). The depth of a column below the surface is its distance in whole unit
    cells to the nearest side face.

    Returns
    -------
    positions_px, types, cell_index, depth_uc, lattice_vectors_px
    """
    n = int(edge_cells)
    frac, types = [], []
    for i in range(n + 1):
        for j in range(n + 1):
            frac.append((i, j))
            types.append("BX")
            if i < n and j < n:
                frac.append((i + 0.5, j + 0.5))
                types.append("A")
            if include_x and i < n:
                frac.append((i + 0.5, j))
                types.append("X")
            if include_x and j < n:
                frac.append((i, j + 0.5))
                types.append("X")
    frac = np.array(frac, float)
    a_px = lattice_constant_A / pixel_size_A
    t = np.deg2rad(rotation_deg)
    vectors = a_px * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    centred = frac - n / 2.0
    positions = centred @ vectors + np.asarray(centre_px, float)
    depth = np.floor(np.minimum(frac, n - frac).min(axis=1) + 1e-9).astype(int)
    return positions, np.array(types), np.floor(frac).astype(int), depth, vectors


def synthesize_stack(
    shape,
    positions_px,
    amplitudes,
    *,
    pixel_size_A,
    sigma_A=0.5,
    psf=None,
    dose=200.0,
    background=None,
    n_frames=10,
    drift_px=1.5,
    jitter_px=0.0,
    seed=0,
):
    """Noisy frames of given columns with drift, scan-line jitter and Poisson noise.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of every frame.
    positions_px, amplitudes : array_like
        Columns (x, y) in px of the reference frame and their peak heights.
    pixel_size_A : float
        Å per pixel.
    sigma_A : float
        Gaussian column width (standard deviation), Å. With ``psf`` this is the intrinsic
        column width before the probe blur.
    psf : ndarray, optional
        Probe PSF on the pixel grid (odd shape, unit sum) convolved with every frame.
    dose : float
        Expected counts per pixel at the peak of an amplitude-1 column (before the PSF).
    background : ndarray, optional
        Background in amplitude units (e.g. :func:`carbon_background`).
    n_frames : int
        Number of frames.
    drift_px : float
        Standard deviation of the per-frame step of a random-walk drift, px.
    jitter_px : float
        Standard deviation of the horizontal scan-line jitter, px.
    seed : int
        Seed of every random draw.

    Returns
    -------
    frames : ndarray, float32, shape (n_frames, ny, nx)
    shifts : ndarray, shape (n_frames, 2)
        (dy, dx) of each frame (see :class:`Truth`).
    jitter : ndarray, shape (n_frames, ny)
    clean : ndarray
        Noise-free reference frame in counts.
    """
    rng = np.random.default_rng(seed)
    pos = np.asarray(positions_px, float)
    sigma_px = sigma_A / pixel_size_A
    bg = np.zeros(shape) if background is None else np.asarray(background, float)
    steps = rng.normal(0.0, drift_px, size=(n_frames, 2))
    steps[0] = 0.0
    shifts = np.cumsum(steps, axis=0)
    jitter = (
        rng.normal(0.0, jitter_px, size=(n_frames, shape[0]))
        if jitter_px > 0
        else np.zeros((n_frames, shape[0]))
    )

    def frame(shift, row_offsets):
        img = render_columns(
            shape, pos + shift[::-1], amplitudes, sigma_px, row_offsets_px=row_offsets
        )
        if psf is not None:
            img = signal.fftconvolve(img, psf, mode="same")
        # The support moves with the specimen: shift the background by the same drift.
        moved_bg = ndimage.shift(bg, shift, order=3, mode="nearest") if np.any(shift) else bg
        return dose * np.clip(img + moved_bg, 0.0, None)

    clean = frame(np.zeros(2), None)
    frames = np.empty((n_frames, *shape), np.float32)
    for k in range(n_frames):
        frames[k] = rng.poisson(frame(shifts[k], jitter[k]))
    return frames, shifts, jitter, clean


def perovskite_dot(
    shape=(256, 256),
    *,
    pixel_size_A=0.2,
    lattice_constant_A=CSPBBR3_LATTICE_CONSTANT_A,
    edge_cells=6,
    amplitudes=None,
    sigma_A=0.5,
    psf=None,
    shell_cells=0,
    shell_factor=0.6,
    include_x=True,
    rotation_deg=0.0,
    centre_px=None,
    background_level=0.15,
    background_scale_A=25.0,
    dose=200.0,
    n_frames=10,
    drift_px=1.5,
    jitter_px=0.0,
    seed=0,
):
    """ADF-STEM stack of a cubic ABX3 perovskite dot along [001], with its ground truth.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of each frame, px.
    pixel_size_A : float
        Å per pixel.
    lattice_constant_A : float
        Cubic lattice constant, Å (CsPbBr3: 5.87).
    edge_cells : int
        Dot edge length in unit cells.
    amplitudes : dict or callable, optional
        Peak height per column type, ``{"A": ..., "BX": ..., "X": ...}`` (default
        :data:`CSPBBR3_AMPLITUDES`), or a callable ``f(types, depth_uc, thickness_uc)``
        returning one amplitude per column (e.g. from a multislice thickness series).
    sigma_A : float
        Gaussian column width (standard deviation), Å.
    psf : ndarray, optional
        Probe PSF on the pixel grid (see :func:`stemqd.preprocess.probe.probe_psf`).
    shell_cells : int
        Depleted shell: B-X columns within this many unit cells of the surface have their
        amplitude multiplied by ``shell_factor`` (core/shell dots). 0 = core-only dot.
    shell_factor : float
        Amplitude factor of the depleted B-X columns.
    include_x : bool
        Draw the weak pure-X columns.
    rotation_deg : float
        In-plane rotation of the lattice, degrees.
    centre_px : tuple, optional
        (x, y) of the dot centre; default the image centre.
    background_level, background_scale_A : float
        Carbon-support level (amplitude units) and correlation length (Å).
    dose : float
        Counts per pixel at the peak of an amplitude-1 column, per frame.
    n_frames, drift_px, jitter_px, seed
        See :func:`synthesize_stack`.

    Returns
    -------
    frames : ndarray, float32, shape (n_frames, ny, nx)
    truth : Truth
    """
    ny, nx = shape
    centre = ((nx - 1) / 2, (ny - 1) / 2) if centre_px is None else centre_px
    positions, types, cell_index, depth, vectors = perovskite_columns(
        edge_cells,
        lattice_constant_A,
        pixel_size_A,
        centre_px=centre,
        rotation_deg=rotation_deg,
        include_x=include_x,
    )
    if callable(amplitudes):
        amp = np.asarray(amplitudes(types, depth, edge_cells), float)
    else:
        table = dict(CSPBBR3_AMPLITUDES, **(amplitudes or {}))
        amp = np.array([table[t] for t in types], float)
    if shell_cells > 0:
        amp = np.where((types == "BX") & (depth < shell_cells), amp * shell_factor, amp)
    rng = np.random.default_rng(seed)
    background = carbon_background(
        shape,
        pixel_size_A,
        level=background_level,
        scale_A=background_scale_A,
        rng=rng.integers(2**32),
    )
    frames, shifts, jitter, clean = synthesize_stack(
        shape,
        positions,
        amp,
        pixel_size_A=pixel_size_A,
        sigma_A=sigma_A,
        psf=psf,
        dose=dose,
        background=background,
        n_frames=n_frames,
        drift_px=drift_px,
        jitter_px=jitter_px,
        seed=int(rng.integers(2**32)),
    )
    truth = Truth(
        positions_px=positions,
        types=types,
        amplitudes=amp,
        cell_index=cell_index,
        depth_uc=depth,
        shifts_px=shifts,
        jitter_px=jitter,
        sigma_px=sigma_A / pixel_size_A,
        psf=psf,
        background=background,
        clean=clean,
        pixel_size_A=pixel_size_A,
        lattice_constant_A=lattice_constant_A,
        dose=dose,
        lattice_vectors_px=vectors,
        extra={"edge_cells": edge_cells, "shell_cells": shell_cells, "shell_factor": shell_factor},
    )
    return frames, truth


def crystal_stack(
    cell,
    shape=(256, 256),
    *,
    pixel_size_A=0.2,
    extent_cells=None,
    amplitudes=None,
    rotation_deg=0.0,
    mirror=False,
    centre_px=None,
    sigma_A=0.5,
    psf=None,
    background_level=0.0,
    background_scale_A=25.0,
    dose=200.0,
    n_frames=1,
    drift_px=0.0,
    jitter_px=0.0,
    seed=0,
):
    """ADF-STEM stack of any crystal from its projected cell, with its ground truth.

    Parameters
    ----------
    cell : stemqd.columns.cell.ProjectedCell
        The projected cell (:func:`stemqd.columns.cell.projected_cell`).
    shape : tuple of int
        (ny, nx) of each frame, px.
    pixel_size_A : float
        Å per pixel.
    extent_cells : int or (int, int), optional
        Crystal size in cells along a and b, centred on ``centre_px``; columns on the far
        edges are included so that the crystal is closed. None fills the frame (columns
        at least 3 sigma inside it).
    amplitudes : dict, optional
        Peak height per column label (or site name); columns not named take the default,
        their expected contrast relative to the brightest column.
    rotation_deg : float
        Direction of the cell vector a in the image, degrees from +x towards +y (rows).
    mirror : bool
        Mirror the cell (y -> -y in the cell frame) before rotating.
    centre_px : tuple, optional
        (x, y) of the crystal centre; default the image centre.
    sigma_A, psf, dose, n_frames, drift_px, jitter_px, seed
        See :func:`synthesize_stack`.
    background_level, background_scale_A : float
        Carbon support (see :func:`carbon_background`); level 0 gives none.

    Returns
    -------
    frames : ndarray, float32, shape (n_frames, ny, nx)
    truth : Truth
        ``types`` holds the column labels; ``extra`` holds ``sites`` (role names),
        ``frac`` (fractional coordinates within the cell), ``rotation_deg`` and ``mirror``.
    """
    ny, nx = shape
    centre = np.array(((nx - 1) / 2, (ny - 1) / 2) if centre_px is None else centre_px, float)
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # row-vector form
    flip = np.diag([1.0, -1.0]) if mirror else np.eye(2)
    vectors = cell.vectors_A @ flip @ rot / pixel_size_A  # rows a, b in px
    fracs = cell.fracs
    sigma_px = sigma_A / pixel_size_A
    if extent_cells is None:
        corners = np.array([[0, 0], [nx, 0], [0, ny], [nx, ny]], float) - centre
        fc = corners @ np.linalg.inv(vectors)
        lo = np.floor(fc.min(axis=0)).astype(int) - 1
        hi = np.ceil(fc.max(axis=0)).astype(int) + 1
        ni_range, nj_range = range(lo[0], hi[0] + 1), range(lo[1], hi[1] + 1)
        n_cells = None
    else:
        n_cells = np.broadcast_to(np.asarray(extent_cells, int), (2,))
        ni_range, nj_range = range(n_cells[0] + 1), range(n_cells[1] + 1)
        centre = centre - (n_cells / 2.0) @ vectors
    ii, jj, kk = np.meshgrid(
        np.array(ni_range), np.array(nj_range), np.arange(len(fracs)), indexing="ij"
    )
    ii, jj, kk = ii.ravel(), jj.ravel(), kk.ravel()
    total = np.column_stack([ii, jj]) + fracs[kk]
    if n_cells is not None:
        keep = np.all((total >= -1e-9) & (total <= n_cells + 1e-9), axis=1)
    else:
        p = total @ vectors + centre
        margin = 3 * sigma_px
        keep = (
            (p[:, 0] >= margin)
            & (p[:, 0] <= nx - 1 - margin)
            & (p[:, 1] >= margin)
            & (p[:, 1] <= ny - 1 - margin)
        )
    ii, jj, kk, total = ii[keep], jj[keep], kk[keep], total[keep]
    positions = total @ vectors + centre
    labels = np.array([cell.columns[k].label for k in kk])
    sites = np.array([cell.columns[k].site for k in kk])
    rel = cell.relative_contrast()
    table = dict(amplitudes or {})
    amp = np.array(
        [table.get(cell.columns[k].label, table.get(cell.columns[k].site, rel[k])) for k in kk],
        float,
    )
    if n_cells is not None:
        depth = np.minimum(np.minimum(ii, n_cells[0] - 1 - ii), np.minimum(jj, n_cells[1] - 1 - jj))
        depth = np.clip(depth, 0, None)
    else:
        depth = np.full(len(kk), -1)
    rng = np.random.default_rng(seed)
    background = (
        carbon_background(
            shape,
            pixel_size_A,
            level=background_level,
            scale_A=background_scale_A,
            rng=rng.integers(2**32),
        )
        if background_level > 0
        else np.zeros(shape)
    )
    frames, shifts, jitter, clean = synthesize_stack(
        shape,
        positions,
        amp,
        pixel_size_A=pixel_size_A,
        sigma_A=sigma_A,
        psf=psf,
        dose=dose,
        background=background,
        n_frames=n_frames,
        drift_px=drift_px,
        jitter_px=jitter_px,
        seed=int(rng.integers(2**32)),
    )
    truth = Truth(
        positions_px=positions,
        types=labels,
        amplitudes=amp,
        cell_index=np.column_stack([ii, jj]).astype(int),
        depth_uc=depth,
        shifts_px=shifts,
        jitter_px=jitter,
        sigma_px=sigma_px,
        psf=psf,
        background=background,
        clean=clean,
        pixel_size_A=pixel_size_A,
        lattice_constant_A=cell.a_A,
        dose=dose,
        lattice_vectors_px=vectors,
        extra={
            "sites": sites,
            "frac": fracs[kk],
            "cell_name": cell.name,
            "zone_axis": cell.zone_axis,
            "rotation_deg": rotation_deg,
            "mirror": mirror,
        },
    )
    return frames, truth


__all__ = [
    "CSPBBR3_AMPLITUDES",
    "carbon_background",
    "crystal_stack",
    "low_magnification_field",
    "perovskite_columns",
    "perovskite_dot",
    "render_columns",
    "synthesize_stack",
    "Truth",
]


# --------------------------------------------------------------------------------------
# Low-magnification fields of many dots (size distributions)


def _square_corners(center, edge, angle_rad):
    """Corners (4, 2) of a square of side `edge` centred at `center` (x, y), rotated."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    half = 0.5 * edge * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    return np.asarray(center, float) + half @ np.array([[c, s], [-s, c]])


def _squares_overlap(a, b):
    """Whether two convex polygons (corners (4, 2)) overlap: separating-axis test."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.column_stack([-edges[:, 1], edges[:, 0]])
        pa, pb = a @ normals.T, b @ normals.T
        if np.any((pa.max(0) <= pb.min(0)) | (pb.max(0) <= pa.min(0))):
            return False
    return True


def _touching_offset(edge_a, angle_a, edge_b, angle_b, direction):
    """Centre distance (same units as the edges) at which square b, moved from square a's
    centre along `direction` (rad), just touches square a (bisection on the overlap test)."""
    a = _square_corners((0.0, 0.0), edge_a, angle_a)
    unit = np.array([np.cos(direction), np.sin(direction)])
    lo, hi = 0.0, (edge_a + edge_b) / np.sqrt(2.0) + 1e-9
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _squares_overlap(a, _square_corners(mid * unit, edge_b, angle_b)):
            lo = mid
        else:
            hi = mid
    return hi


def _render_square(image, center, edge, angle_rad, weight, supersample=4):
    """Add ``weight`` x (area fraction of each pixel inside the square) to `image`, in place."""
    ny, nx = image.shape
    corners = _square_corners(center, edge, angle_rad)
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, nx), min(y1, ny)
    if x1 <= x0 or y1 <= y0:
        return
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    xs = (np.arange(x0, x1)[:, None] + sub).ravel() - center[0]
    ys = (np.arange(y0, y1)[:, None] + sub).ravel() - center[1]
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    u = xs[None, :] * c + ys[:, None] * s
    v = -xs[None, :] * s + ys[:, None] * c
    inside = (np.abs(u) <= 0.5 * edge) & (np.abs(v) <= 0.5 * edge)
    frac = inside.reshape(y1 - y0, supersample, x1 - x0, supersample).mean(axis=(1, 3))
    image[y0:y1, x0:x1] += weight * frac


def low_magnification_field(
    shape=(1024, 1024),
    *,
    pixel_size_nm=0.25,
    edge_nm=14.0,
    relative_spread=0.15,
    coverage=0.15,
    touching_fraction=0.10,
    aggregates=2,
    gap_nm=2.0,
    contrast="bright",
    dose=30.0,
    psf_sigma_px=0.8,
    illumination_falloff=0.4,
    carbon_variation=0.3,
    seed=0,
):
    """A low-magnification image of many cubic dots with known sizes.

    Image model. Each dot is a cube seen along [001]: a square of edge ``L`` (log-normal,
    mean `edge_nm` (or one of several), relative standard deviation `relative_spread`) and uniform projected
    thickness ``L``, at a random in-plane rotation. Separate items keep at least `gap_nm`
    between their circumscribed circles (the ligand shell). A fraction `touching_fraction` of
    the dots come in touching pairs (the second square placed along a random direction at
    the distance where the two just touch, each with its own rotation); `aggregates` clumps
    of 3 to 5 overlapping dots are added. Dots may be cut by the border. The support is
    amorphous carbon: :func:`carbon_background` (smooth, correlation length 20 nm) plus a
    fine texture of 5 % rms; the illumination falls off quadratically by
    `illumination_falloff` from a random centre to the farthest corner. The frame holds
    Poisson counts whose mean, blurred by a Gaussian PSF of `psf_sigma_px`, is

    * ``"bright"`` (HAADF): ``dose * illumination * (carbon + 0.1 nm⁻¹ * thickness)``;
    * ``"dark"`` (bright-field TEM, mass-thickness contrast):
      ``dose * illumination * exp(-(0.15 * carbon + 0.05 nm⁻¹ * thickness))``.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) in pixels.
    pixel_size_nm : float
        Pixel size, nm.
    edge_nm : float or sequence of float
        Mean edge length of the log-normal population, nm; several give a mixture of
        equally likely populations (e.g. ``(7.0, 14.0)``).
    relative_spread : float
        Relative standard deviation of each population.
    coverage : float
        Target fraction of the field covered by dots (reached unless the field is full).
    touching_fraction : float
        Fraction of the dots that are members of a touching pair.
    aggregates : int
        Number of clumps of 3 to 5 overlapping dots.
    gap_nm : float
        Smallest clearance between separate items, nm.
    contrast : {"bright", "dark"}
        Bright dots on a dark field (HAADF) or dark dots on a bright field (TEM).
    dose : float
        Expected counts per pixel of the carbon support at full illumination (bright) or of
        the unattenuated beam (dark).
    psf_sigma_px : float
        Gaussian blur of the mean intensity, px.
    illumination_falloff, carbon_variation : float
        Relative illumination loss at the farthest corner; relative modulation of the
        carbon (see :func:`carbon_background`).
    seed : int
        Seed of all randomness.

    Returns
    -------
    image : ndarray, float32, shape ``shape``
        Poisson counts.
    truth : pandas.DataFrame
        One row per dot: ``x_px``, ``y_px`` (centre; pixel centres at integers),
        ``edge_nm``, ``orientation_deg`` (of one side, in [0, 90), from +x towards +y in
        pixel axes: clockwise on screen, where y points down), ``kind`` (``"isolated"``,
        ``"touching"`` or ``"aggregate"``), ``group`` (pair or clump id, -1 for isolated
        dots) and ``cut_by_border`` (the square reaches within 1 px of the outermost pixel).
    """
    import pandas as pd

    if contrast not in ("bright", "dark"):
        raise ValueError(f"contrast must be 'bright' or 'dark', not {contrast!r}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    means = np.atleast_1d(np.asarray(edge_nm, float))
    sigma_ln = np.sqrt(np.log1p(relative_spread**2))
    mu_ln = np.log(means) - 0.5 * sigma_ln**2

    def draw_edge():  # px; the population first, equally likely
        return float(rng.lognormal(mu_ln[rng.integers(len(means))], sigma_ln)) / pixel_size_nm

    mean_area_px = np.mean((means / pixel_size_nm) ** 2) * (1 + relative_spread**2)
    n_dots = int(round(coverage * nx * ny / mean_area_px))
    n_pairs = int(round(touching_fraction * n_dots / 2))
    n_single = max(n_dots - 2 * n_pairs - 4 * aggregates, 0)

    # Items as lists of (dx, dy, edge_px, angle) relative to the item's centre.
    items = []
    for _ in range(aggregates):
        members = [(0.0, 0.0, draw_edge(), rng.uniform(0, np.pi / 2))]
        for _ in range(int(rng.integers(3, 6)) - 1):
            ax, ay, ae, aa = members[int(rng.integers(len(members)))]
            be, ba, phi = draw_edge(), rng.uniform(0, np.pi / 2), rng.uniform(0, 2 * np.pi)
            d = _touching_offset(ae, aa, be, ba, phi) * rng.uniform(0.55, 0.85)
            members.append((ax + d * np.cos(phi), ay + d * np.sin(phi), be, ba))
        items.append(("aggregate", members))
    for _ in range(n_pairs):
        ae, aa = draw_edge(), rng.uniform(0, np.pi / 2)
        be, ba, phi = draw_edge(), rng.uniform(0, np.pi / 2), rng.uniform(0, 2 * np.pi)
        d = _touching_offset(ae, aa, be, ba, phi)
        half = 0.5 * d * np.array([np.cos(phi), np.sin(phi)])
        items.append(("touching", [(-half[0], -half[1], ae, aa), (half[0], half[1], be, ba)]))
    items += [
        ("isolated", [(0.0, 0.0, draw_edge(), rng.uniform(0, np.pi / 2))]) for _ in range(n_single)
    ]

    gap_px = gap_nm / pixel_size_nm
    placed = np.zeros((0, 3))  # x, y, circumradius of every placed dot
    rows = []
    for group, (kind, members) in enumerate(items):
        rel = np.array(members)
        radius = rel[:, 2] / np.sqrt(2.0)
        for _ in range(200):
            cx = rng.uniform(-0.3 * rel[0, 2], nx - 1 + 0.3 * rel[0, 2])
            cy = rng.uniform(-0.3 * rel[0, 2], ny - 1 + 0.3 * rel[0, 2])
            xy = rel[:, :2] + (cx, cy)
            if len(placed):
                dist = np.hypot(*(xy[:, None, :] - placed[None, :, :2]).transpose(2, 0, 1))
                if np.any(dist < radius[:, None] + placed[None, :, 2] + gap_px):
                    continue
            placed = np.vstack([placed, np.column_stack([xy, radius])])
            for (x, y), (_, _, e, a) in zip(xy, members):
                rows.append((x, y, e, a, kind, group if kind != "isolated" else -1))
            break

    thickness = np.zeros(shape)
    for x, y, e, a, _, _ in rows:
        _render_square(thickness, (x, y), e, a, e * pixel_size_nm)  # thickness in nm
    carbon = carbon_background(
        shape, pixel_size_nm * 10.0, level=1.0, variation=carbon_variation, scale_A=200.0, rng=rng
    )
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    carbon = carbon + 0.05 * texture / texture.std()
    yy, xx = np.mgrid[0:ny, 0:nx]
    x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
    r2 = (xx - x0) ** 2 + (yy - y0) ** 2
    illumination = 1.0 - illumination_falloff * r2 / r2.max()
    if contrast == "bright":
        mean = dose * illumination * (carbon + 0.1 * thickness)
    else:
        mean = dose * illumination * np.exp(-(0.15 * carbon + 0.05 * thickness))
    if psf_sigma_px > 0:  # the probe (STEM) or the objective (TEM) blurs the intensity
        mean = ndimage.gaussian_filter(mean, psf_sigma_px)
    image = rng.poisson(np.clip(mean, 0, None)).astype(np.float32)

    truth = pd.DataFrame(
        rows, columns=["x_px", "y_px", "edge_px", "angle_rad", "kind", "group"]
    ).astype({"group": int})
    corners = (
        np.stack(
            [
                _square_corners((x, y), e, a)
                for x, y, e, a in truth[["x_px", "y_px", "edge_px", "angle_rad"]].to_numpy()
            ]
        )
        if len(truth)
        else np.zeros((0, 4, 2))
    )
    truth["edge_nm"] = truth["edge_px"] * pixel_size_nm
    truth["orientation_deg"] = np.degrees(truth["angle_rad"]) % 90.0
    truth["cut_by_border"] = (
        (corners[..., 0].min(1) < 1.5)
        | (corners[..., 1].min(1) < 1.5)
        | (corners[..., 0].max(1) > nx - 2.5)
        | (corners[..., 1].max(1) > ny - 2.5)
    )
    truth = truth[["x_px", "y_px", "edge_nm", "orientation_deg", "kind", "group", "cut_by_border"]]
    return image, truth
