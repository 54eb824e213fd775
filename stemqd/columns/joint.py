"""Joint least-squares fit of overlapping atomic columns (sparse Levenberg-Marquardt).

Real HAADF images have columns whose Gaussians overlap strongly (sigma / nearest-neighbour
distance 0.3-0.45). Fitting each column in its own window with a free width and a free
offset is then degenerate: the width grows into the neighbours and the offset goes negative.
Here every column is fitted **together** with all others, on one model of the whole image
(the model of StatSTEM, De Backer et al., Ultramicroscopy 171 (2016) 104)::

    round:      I(r) = b(r) + sum_n eta_n exp(-|r - beta_n|² / 2 rho_t(n)²)
    gaussian7:  I(r) = b(r) + sum_n A_n exp(-[u² / 2 sx_n² + v² / 2 sy_n²])

``round`` has one width rho_t per column type, shared over the image (StatSTEM's default);
``gaussian7`` is the study's rotated elliptical Gaussian, its widths and rotation shared per
column type. The background b(r) is one constant over the image (``constant``), the smoothed
residual (``smooth``), or, for ``round`` only, that plus one offset per column (or per small
block of columns) that holds on the pixels nearest to it (``local``: piecewise constant on
the columns' Voronoi cells, which follows a carbon support that varies within a unit cell),
solved at the fitted positions and widths; or a bilinear spline with knots several column
widths apart fitted together with the columns (``spline``). A free width per column
together with a local offset is not offered: that is exactly the degenerate pair.

All parameters are refined at once by Levenberg-Marquardt on the sparse normal equations
JᵀJ: a column couples only to the columns whose footprints (``reach_sigma`` widths) overlap
its own, so JᵀJ has a fixed number of blocks per column and both its assembly (compiled,
in parallel over columns) and the sparse solve grow linearly with the number of columns on a
lattice. scipy's ``least_squares`` would need the whole sparse Jacobian (pixels x
overlapping columns x parameters) stored per iteration, which is larger than the image by
an order of magnitude; assembling JᵀJ directly avoids that.

Standard errors come from the inverse of JᵀJ restricted to a column and its nearest
neighbours (their offsets included, the image-wide widths and constant held at their
estimates), as the sandwich estimator (default; right under Poisson noise) or classically
with s² = RSS / dof. The restriction leaves out the far columns, whose correlation with a
column's parameters is negligible.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numba
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, cg, spsolve
from scipy.spatial import Delaunay, QhullError, cKDTree

from ..jit import njit

MODELS = ("round", "gaussian7")
BACKGROUNDS = ("constant", "smooth", "local", "spline")

#: Per-column parameters, in the order of the parameter vector.
COLUMN_PARAMS = ("amplitude", "x_px", "y_px")

#: Shape parameters shared by the columns of one type, per model.
SHAPE_PARAMS = {"round": ("sigma_px",), "gaussian7": ("sigma_x_px", "sigma_y_px", "theta_rad")}

#: Initial widths tried for a shared width, as fractions of the nearest-neighbour distance.
_SIGMA_GRID_NN = (0.12, 0.2, 0.3, 0.42)

#: Columns modelled, and columns whose pixels are fitted, when the initial width is chosen.
_PATCH_COLUMNS, _PATCH_INNER = 160, 100

#: ``smooth`` and ``local`` backgrounds: the smooth part of the residual is taken over this
#: many spacings (a Gaussian of that sigma), in up to ``SMOOTH_ROUNDS`` rounds of shape fits
#: (the default of ``smooth_rounds``), until the widths change by less than this fraction in
#: a round.
SMOOTH_BACKGROUND_NN, SMOOTH_ROUNDS, _SMOOTH_WIDTH_TOLERANCE = 1.5, 3, 1e-3

#: The shared width refitted on the central columns alone (``centre_width_ratio``) may
#: differ from the image's by up to this factor, either way (sample dots, SrTiO3 and MoS2:
#: 0.95-1.02; a dot thinning towards its edges over carbon after 3 rounds: 0.54-0.67). Beyond
#: it, rounds that have not settled go on, up to ``SMOOTH_ROUNDS_MAX`` (the default of
#: ``smooth_rounds_max``).
CENTRE_WIDTH_TOLERANCE, SMOOTH_ROUNDS_MAX = 1.25, 20

#: Rounds past the first ``SMOOTH_ROUNDS`` over-relax the smooth background by this factor
#: (backfitting by successive over-relaxation; 1 is plain alternation): the columns and the
#: background trade along a nearly degenerate direction, along which plain rounds move a
#: few % of the way each (under a thinning dot over carbon the width took 20 plain rounds
#: to settle, 12 over-relaxed ones; Anderson acceleration was unstable there).
_SMOOTH_RELAXATION = 1.8

#: ``spline`` background: the knots are at least this many column widths apart, and at
#: least this many nearest-neighbour spacings.
KNOT_SPACING_SIGMA, KNOT_SPACING_NN = 6.0, 1.5

#: ``spline`` background: weight of the membrane penalty between neighbouring knots, as a
#: fraction of a fully covered knot's curvature.
KNOT_PENALTY = 1e-2

#: ``local`` background: an offset's block is at least this many column widths across.
OFFSET_BLOCK_SIGMA = 6.0

#: Neighbours held in each column's local covariance block.
_LOCAL_NEIGHBOURS = 8

#: A fit stopped at its iteration limit: a column whose last step moved it by less than
#: this fraction of its position's standard error counts as converged (moving at that rate
#: it would need tens of further iterations to move by a standard error).
_SETTLED_SE = 0.03
#: A Levenberg-Marquardt stage stops when a step lowers (or is predicted to lower) chi² by
#: less than this: no parameter is then more than about 0.03 standard errors from the minimum.
_STOP_CHI2 = 1e-3

#: Relative ridge on the normal matrix when the shared shapes' errors are solved for.
_SHAPE_ERR_RIDGE = 1e-6


def _aux(kind, shape_col):
    """Per-column shape constants for the kernels, six per column: (sigma, 1/sigma², 0, ...)
    for ``round``; (sx, sy, cos theta, sin theta, 1/sx², 1/sy²) for ``gaussian7``."""
    out = np.zeros((len(shape_col), 6))
    if kind == 0:
        out[:, 0] = shape_col[:, 0]
        out[:, 1] = 1.0 / shape_col[:, 0] ** 2
        return out
    sx, sy, t = shape_col.T
    out[:] = np.column_stack([sx, sy, np.cos(t), np.sin(t), 1.0 / sx**2, 1.0 / sy**2])
    return out


@njit(parallel=True, fastmath=True)
def _footprints(kind, cp, aux, centres, half):
    """Unit-height model of every column on its footprint box (2h+1)², ragged (CSR offsets
    ``ptr``); read through :func:`_unit`. A round Gaussian is separable: its box is stored
    as its two 1-D factors, ex (2h+1 values) then ey, which costs 2(2h+1) exponentials and
    as many stored values instead of (2h+1)², and lets the normal equations sum its
    products with a neighbour axis by axis (:func:`_moments`). A rotated Gaussian is stored
    as the whole box, row-major."""
    n = cp.shape[0]
    ptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        w = 2 * half[i] + 1
        ptr[i + 1] = ptr[i] + (2 * w if kind == 0 else w * w)
    table = np.empty(ptr[n])
    for i in numba.prange(n):
        h = half[i]
        w = 2 * h + 1
        x0 = centres[i, 0] - h - cp[i, 1]
        y0 = centres[i, 1] - h - cp[i, 2]
        at = ptr[i]
        if kind == 0:
            for a in range(w):
                table[at + a] = np.exp(-0.5 * (x0 + a) ** 2 * aux[i, 1])
                table[at + w + a] = np.exp(-0.5 * (y0 + a) ** 2 * aux[i, 1])
        else:
            c, s, isx2, isy2 = aux[i, 2], aux[i, 3], aux[i, 4], aux[i, 5]
            for b in range(w):
                for a in range(w):
                    dx, dy = x0 + a, y0 + b
                    u = c * dx + s * dy
                    v = -s * dx + c * dy
                    table[at + b * w + a] = np.exp(-0.5 * (u * u * isx2 + v * v * isy2))
    return ptr, table


@njit(inline="always")
def _unit(kind, table, at, w, a, b):
    """Unit-height value of a footprint stored at ``table[at:]`` by :func:`_footprints`,
    ``w`` px wide, at box pixel (``a``, ``b``)."""
    if kind == 0:
        return table[at + w + b] * table[at + a]
    return table[at + b * w + a]


@njit(fastmath=True, inline="always")
def _jacobian(kind, cp, aux, i, dx, dy, e, jac, dshape):
    """Value of column ``i`` at a pixel (``dx, dy`` from its centre, ``e`` its unit-height
    value); Jacobian in ``jac`` (height, x, y) and ``dshape`` (its type's shape).

    Elements are read one by one: a row view per call would touch the arrays' reference
    counts, which the parallel threads then contend for.
    """
    f = cp[i, 0] * e
    jac[0] = e
    if kind == 0:
        is2 = aux[i, 1]
        jac[1] = f * dx * is2
        jac[2] = f * dy * is2
        dshape[0] = f * (dx * dx + dy * dy) * is2 / aux[i, 0]
        return f
    c, s, isx2, isy2 = aux[i, 2], aux[i, 3], aux[i, 4], aux[i, 5]
    u = c * dx + s * dy
    v = -s * dx + c * dy
    jac[1] = f * (u * c * isx2 - v * s * isy2)
    jac[2] = f * (u * s * isx2 + v * c * isy2)
    dshape[0] = f * u * u * isx2 / aux[i, 0]
    dshape[1] = f * v * v * isy2 / aux[i, 1]
    dshape[2] = -f * u * v * (isx2 - isy2)
    return f


#: Rows of the image rendered by one thread.
_RENDER_BAND = 32


@njit(parallel=True, fastmath=True)
def _render(kind, cp, centres, half, fptr, table, nx, pix, npix):
    """Model of all columns on the fitted pixels (without the background).

    In parallel over bands of ``_RENDER_BAND`` rows, each thread adding every column's part
    in its own rows: a pixel still takes its columns in index order, so the sum is the same
    as a serial render's, and no two threads write one pixel."""
    model = np.zeros(npix)
    ny = pix.shape[0] // nx
    for band in numba.prange((ny + _RENDER_BAND - 1) // _RENDER_BAND):
        r0 = band * _RENDER_BAND
        r1 = min(r0 + _RENDER_BAND, ny)
        for i in range(cp.shape[0]):
            cx, cy, h = centres[i, 0], centres[i, 1], half[i]
            w = 2 * h + 1
            height = cp[i, 0]
            for yy in range(max(cy - h, r0), min(cy + h + 1, r1)):
                for xx in range(max(cx - h, 0), min(cx + h + 1, nx)):
                    q = pix[yy * nx + xx]
                    if q >= 0:
                        model[q] += height * _unit(
                            kind, table, fptr[i], w, xx - cx + h, yy - cy + h
                        )
    return model


@njit(fastmath=True)
def _weighted_sse(weight, data, model):
    """sum of weight (data - model)², in one pass (no image-sized temporaries)."""
    total = 0.0
    for q in range(data.shape[0]):
        d = data[q] - model[q]
        total += weight[q] * d * d
    return total


@njit(fastmath=True)
def _add_offsets(model, offsets, owner):
    """model += offsets[owner], in place."""
    for q in range(model.shape[0]):
        model[q] += offsets[owner[q]]


@njit(inline="always")
def _slot(nb_idx, lo, hi, j):
    """Position of column ``j`` in the sorted neighbour list ``nb_idx[lo:hi]`` (bisection
    on indices, no slice view)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if nb_idx[mid] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo


#: Exponents (in dx, dy) of the monomials 1, dx, dy by which a round column's Jacobian rows
#: (height, x, y) differ from its unit-height value.
_MONO_X, _MONO_Y = (0, 1, 0), (0, 0, 1)


@njit(fastmath=True, inline="always")
def _moments(table, at_i, lo_i, ci, at_j, lo_j, cj, x0, x1, out):
    """Axis moments of two round columns' overlap: ``out[p, q]`` = sum over x0..x1 of
    e_i(x) e_j(x) (x - ci)^p (x - cj)^q, p, q <= 2, from their 1-D factors stored at
    ``table[at_i:]`` and ``table[at_j:]`` for boxes starting at ``lo_i``, ``lo_j``."""
    for p in range(3):
        for q in range(3):
            out[p, q] = 0.0
    for x in range(x0, x1 + 1):
        di = x - ci
        dj = x - cj
        u0 = table[at_i + x - lo_i] * table[at_j + x - lo_j]
        for p in range(3):
            out[p, 0] += u0
            out[p, 1] += u0 * dj
            out[p, 2] += u0 * dj * dj
            u0 *= di


@njit(fastmath=True, inline="always")
def _round_pair(mx, my, gi, gj, si, sj, w, acc_b, acc_g, acc_s, acc_r):
    """The pair products of :func:`_assemble_columns` for two round columns on an overlap
    whose pixels are all fitted, at one weight ``w``, from the axis moments ``mx``, ``my``
    (:func:`_moments`).

    A round Gaussian is separable, and so is each of its Jacobian rows: height e, x
    g e dx, y g e dy, width (g / sigma) e (dx² + dy²), with g = A / sigma². The sum of a
    product dx_i^a dy_i^b dx_j^c dy_j^d e_i e_j over the overlap box is then mx[a, c]
    my[b, d]: 2 x 9 sums over its sides instead of 16 over its pixels. ``gi``, ``gj``: g
    of the two columns; ``si``, ``sj``: their sigma.
    """
    for a in range(3):
        pa, qa = _MONO_X[a], _MONO_Y[a]
        ca = 1.0 if a == 0 else gi
        ra = 1.0 if a == 0 else gj
        for b in range(3):
            cb = 1.0 if b == 0 else gj
            acc_b[a, b] = w * ca * cb * mx[pa, _MONO_X[b]] * my[qa, _MONO_Y[b]]
        acc_g[a, 0] = w * ca * gj / sj * (mx[pa, 2] * my[qa, 0] + mx[pa, 0] * my[qa, 2])
        acc_r[a, 0] = w * ra * gi / si * (mx[2, pa] * my[0, qa] + mx[0, pa] * my[2, qa])
    acc_s[0, 0] = (
        w
        * gi
        / si
        * gj
        / sj
        * (mx[2, 2] * my[0, 0] + mx[2, 0] * my[0, 2] + mx[0, 2] * my[2, 0] + mx[0, 0] * my[2, 2])
    )


@njit(inline="always")
def _filled(holes, x0, x1, y0, y1):
    """Whether every pixel of the box x0..x1, y0..y1 is fitted (``holes``: summed-area
    table of the unfitted pixels, :func:`_holes`)."""
    return holes[y1 + 1, x1 + 1] - holes[y0, x1 + 1] - holes[y1 + 1, x0] + holes[y0, x0] == 0


@njit(fastmath=True)
def _round_column(table, at, lx, ly, w, px, py, g, sigma, pix, nx, resid, x0, x1, y0, y1):
    """The own-footprint sums of :func:`_assemble_columns` for a round column whose box
    x0..x1, y0..y1 is fully fitted, at unit weight: its gradient rows sum(J r) (height, x,
    y, width) and its couplings sum(J) to a constant.

    The pixels of a fully fitted row are consecutive in the fitted order, and the column's
    value is ex(x) ey(y) (:func:`_footprints`, box from ``lx``, ``ly``, ``w`` wide; centre
    ``px``, ``py``; g = A / sigma²): the residual is summed along each row against ex(x)
    dx^p, then the rows against ey(y) dy^q, 5 operations a pixel instead of a Jacobian.
    Returns the four gradient rows, then the four couplings.
    """
    r0 = 0.0  # sum e r, then e r dx, e r dy, e r (dx² + dy²)
    rx = 0.0
    ry = 0.0
    rs = 0.0
    mx0 = 0.0  # sum ex dx^p, then ey dy^p
    mx1 = 0.0
    mx2 = 0.0
    my0 = 0.0
    my1 = 0.0
    my2 = 0.0
    for x in range(x0, x1 + 1):
        d = x - px
        e = table[at + x - lx]
        mx0 += e
        mx1 += e * d
        mx2 += e * d * d
    for y in range(y0, y1 + 1):
        q0 = pix[y * nx + x0] - x0
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for x in range(x0, x1 + 1):
            d = x - px
            t = table[at + x - lx] * resid[q0 + x]
            s0 += t
            s1 += t * d
            s2 += t * d * d
        d = y - py
        e = table[at + w + y - ly]
        my0 += e
        my1 += e * d
        my2 += e * d * d
        r0 += e * s0
        rx += e * s1
        ry += e * d * s0
        rs += e * (s2 + d * d * s0)
    out = np.empty(8)
    out[0], out[1], out[2], out[3] = r0, g * rx, g * ry, g / sigma * rs
    out[4], out[5], out[6] = mx0 * my0, g * mx1 * my0, g * mx0 * my1
    out[7] = g / sigma * (mx2 * my0 + mx0 * my2)
    return out


@njit(parallel=True, fastmath=True)
def _assemble_columns(
    kind,
    cp,
    aux,
    n_shape,
    types,
    n_glob,
    constant,
    centres,
    half,
    fptr,
    table,
    nx,
    pix,
    weight,
    uniform,
    holes,
    resid,
    local,
    owner,
    nb_ptr,
    nb_idx,
    kidx,
    kwt,
    kx,
    kbase,
    m,
):
    """Column rows of JᵀWJ and JᵀWr, and the column sums of the image-wide rows.

    The image-wide parameters are the shapes per type and shape parameter (index ``type *
    n_shape + parameter``), then the constant if ``constant``. Their Jacobian
    at a pixel is a sum over the columns covering it, so every product of two Jacobian
    entries is a sum over pairs of overlapping columns: column ``i`` visits the overlap of
    its footprint with each neighbour's (the pixels of both), and its own footprint once.
    A pair is visited once, from its lower column: what the higher column's row takes from
    it (the transposed block, its couplings to the lower column's shape) is returned per
    slot, ``rev_g`` (S, k, n_shape) and ``pair_s`` (S, n_shape, n_shape), for
    :func:`_normal` to mirror.

    Returns the column-column blocks per neighbour slot (S, k, k), the column-offset
    couplings per slot (S, k), the column-global couplings (N, G, k), the gradient (N, k),
    and per column ``i`` (to be summed over columns): its shape gradient (N, n_shape), its
    shape-offset couplings per slot (S, n_shape) and its shape rows of the image-wide
    block (N, n_shape, G). Every thread writes only the rows of its own column.

    With a spline background (``m`` > 0) every pixel also depends on its four knots
    ``kidx`` with the bilinear weights ``kwt``: the couplings of a column's parameters and
    of its shape to the knots under its footprint (an m x m box of the ``kx``-wide knot
    grid from ``kbase``) are returned as (N, k, m²) and (N, n_shape, m²).
    """
    n, k = cp.shape
    ny = pix.shape[0] // nx
    blocks = np.zeros((nb_idx.shape[0], k, k))
    coupling = np.zeros((nb_idx.shape[0], k))
    glob = np.zeros((n, n_glob, k))
    grad = np.zeros((n, k))
    sgrad = np.zeros((n, n_shape))
    soff = np.zeros((nb_idx.shape[0], n_shape))
    sglob = np.zeros((n, n_shape, n_glob))
    rev_g = np.zeros((nb_idx.shape[0], k, n_shape))
    pair_s = np.zeros((nb_idx.shape[0], n_shape, n_shape))
    kc = np.zeros((n, k, max(m * m, 1)))
    ks = np.zeros((n, n_shape, max(m * m, 1)))
    for i in numba.prange(n):
        jj = np.empty(k)
        dj = np.empty(n_shape)
        lo, hi = nb_ptr[i], nb_ptr[i + 1]
        cx, cy, h = centres[i, 0], centres[i, 1], half[i]
        w_i = 2 * h + 1
        x0 = max(cx - h, 0)
        x1 = min(cx + h, nx - 1)
        y0 = max(cy - h, 0)
        y1 = min(cy + h, ny - 1)
        # a round column on a fully fitted box at one weight, with a constant background:
        # its own sums by rows, and every pair by axes (its overlaps are inside its box)
        by_axes = constant and uniform >= 0 and _filled(holes, x0, x1, y0, y1)
        # the column's Jacobian on its footprint, weighted: computed once, read per neighbour
        size = 0 if by_axes else w_i * w_i
        wji = np.zeros((size, k))
        wdi = np.zeros((size, n_shape))
        if by_axes:
            g_i = cp[i, 0] * aux[i, 1]
            sums = _round_column(
                table,
                fptr[i],
                cx - h,
                cy - h,
                w_i,
                cp[i, 1],
                cp[i, 2],
                g_i,
                aux[i, 0],
                pix,
                nx,
                resid,
                x0,
                x1,
                y0,
                y1,
            )
            for a in range(k):
                grad[i, a] = uniform * sums[a]
                glob[i, n_glob - 1, a] = uniform * sums[4 + a]
            sgrad[i, 0] = uniform * sums[3]
            sglob[i, 0, n_glob - 1] = uniform * sums[7]
        else:
            for yy in range(max(cy - h, 0), min(cy + h + 1, ny)):
                for xx in range(max(cx - h, 0), min(cx + h + 1, nx)):
                    q = pix[yy * nx + xx]
                    if q < 0:
                        continue
                    w = weight[q]
                    at = (yy - cy + h) * w_i + xx - cx + h
                    e = _unit(kind, table, fptr[i], w_i, xx - cx + h, yy - cy + h)
                    _jacobian(kind, cp, aux, i, xx - cp[i, 1], yy - cp[i, 2], e, jj, dj)
                    wr = w * resid[q]
                    for a in range(k):
                        grad[i, a] += jj[a] * wr
                        wji[at, a] = jj[a] * w
                    for p in range(n_shape):
                        sgrad[i, p] += dj[p] * wr
                        wdi[at, p] = dj[p] * w
                    o = owner[q] if local else -1
                    if o >= 0:
                        s = _slot(nb_idx, lo, hi, o)
                        for a in range(k):
                            coupling[s, a] += wji[at, a]
                        for p in range(n_shape):
                            soff[s, p] += wdi[at, p]
                    if constant:
                        for a in range(k):
                            glob[i, n_glob - 1, a] += wji[at, a]
                        for p in range(n_shape):
                            sglob[i, p, n_glob - 1] += wdi[at, p]
                    if m > 0:
                        for c in range(4):
                            g = kidx[q, c]
                            t = kwt[q, c]
                            lj = (g // kx - kbase[i, 1]) * m + g % kx - kbase[i, 0]
                            for a in range(k):
                                kc[i, a, lj] += wji[at, a] * t
                            for p in range(n_shape):
                                ks[i, p, lj] += wdi[at, p] * t
        # overlaps with every neighbour (itself included), summed in small local arrays
        acc_b = np.empty((k, k))
        acc_g = np.empty((k, n_shape))
        acc_s = np.empty((n_shape, n_shape))
        acc_r = np.empty((k, n_shape))
        mx = np.empty((3, 3))
        my = np.empty((3, 3))
        for s in range(lo, hi):
            j = nb_idx[s]
            if j < i:
                continue  # the pair's blocks are mirrored from column j's row
            hj = half[j]
            w_j = 2 * hj + 1
            x0 = max(cx - h, centres[j, 0] - hj, 0)
            x1 = min(cx + h, centres[j, 0] + hj, nx - 1)
            y0 = max(cy - h, centres[j, 1] - hj, 0)
            y1 = min(cy + h, centres[j, 1] + hj, ny - 1)
            if x0 > x1 or y0 > y1:
                continue
            if uniform >= 0 and _filled(holes, x0, x1, y0, y1):
                lx, ly, ljx, ljy = cx - h, cy - h, centres[j, 0] - hj, centres[j, 1] - hj
                _moments(table, fptr[i], lx, cp[i, 1], fptr[j], ljx, cp[j, 1], x0, x1, mx)
                _moments(
                    table, fptr[i] + w_i, ly, cp[i, 2], fptr[j] + w_j, ljy, cp[j, 2], y0, y1, my
                )
                g_i, g_j = cp[i, 0] * aux[i, 1], cp[j, 0] * aux[j, 1]
                _round_pair(
                    mx, my, g_i, g_j, aux[i, 0], aux[j, 0], uniform, acc_b, acc_g, acc_s, acc_r
                )
            else:
                acc_b[:] = 0.0
                acc_g[:] = 0.0
                acc_s[:] = 0.0
                acc_r[:] = 0.0
                for yy in range(y0, y1 + 1):
                    for xx in range(x0, x1 + 1):
                        q = pix[yy * nx + xx]
                        if q < 0:
                            continue
                        at = (yy - cy + h) * w_i + xx - cx + h
                        e = _unit(
                            kind,
                            table,
                            fptr[j],
                            w_j,
                            xx - centres[j, 0] + hj,
                            yy - centres[j, 1] + hj,
                        )
                        _jacobian(kind, cp, aux, j, xx - cp[j, 1], yy - cp[j, 2], e, jj, dj)
                        for a in range(k):
                            wa = wji[at, a]
                            for b in range(k):
                                acc_b[a, b] += wa * jj[b]
                            for p in range(n_shape):
                                acc_g[a, p] += wa * dj[p]
                        for p in range(n_shape):
                            wp = wdi[at, p]
                            for r in range(n_shape):
                                acc_s[p, r] += wp * dj[r]
                            for a in range(k):
                                acc_r[a, p] += jj[a] * wp
            gj = types[j] * n_shape
            for a in range(k):
                for b in range(k):
                    blocks[s, a, b] += acc_b[a, b]
                for p in range(n_shape):
                    glob[i, gj + p, a] += acc_g[a, p]
            for p in range(n_shape):
                for r in range(n_shape):
                    sglob[i, p, gj + r] += acc_s[p, r]
                    pair_s[s, p, r] = acc_s[p, r]
                for a in range(k):
                    rev_g[s, a, p] = acc_r[a, p]
    return blocks, coupling, glob, grad, sgrad, soff, sglob, rev_g, pair_s, kc, ks


@njit(parallel=True)
def _local_blocks(
    k,
    blocks,
    coupling,
    meat_blocks,
    meat_coupling,
    off_diag,
    meat_off,
    nb_ptr,
    nb_idx,
    local,
    has_offsets,
):
    """Each column's local block of JᵀWJ (``H``) and of the sandwich's meat (``M``), made
    invertible, and which of their rows are parameters (``keep``).

    ``local`` (N, m) lists the column itself first, then its nearest neighbours (-1: none).
    Column slot c holds rows c k .. c k + k - 1, its offset (with ``has_offsets``) row
    m k + c. An undetermined direction (theta of a round column) or an absent neighbour
    leaves rows with no curvature (diagonal at most 1e-12 of the largest): they are
    replaced by a decoupled diagonal entry equal to the largest kept diagonal element,
    which lies between the kept block's extreme eigenvalues and so changes neither its
    condition number nor its inverse (a block with no kept row becomes the identity).
    """
    n, m = local.shape
    dim = m * k + (m if has_offsets else 0)
    H = np.zeros((n, dim, dim))
    M = np.zeros((n, dim, dim))
    keep = np.zeros((n, dim), np.bool_)
    for i in numba.prange(n):
        for ca in range(m):
            a = local[i, ca]
            if a < 0:
                continue
            lo, hi = nb_ptr[a], nb_ptr[a + 1]
            for cb in range(m):
                b = local[i, cb]
                if b < 0:
                    continue
                s = _slot(nb_idx, lo, hi, b)
                if s >= hi or nb_idx[s] != b:
                    continue
                for u in range(k):
                    for v in range(k):
                        H[i, ca * k + u, cb * k + v] = blocks[s, u, v]
                        M[i, ca * k + u, cb * k + v] = meat_blocks[s, u, v]
                if has_offsets:
                    for u in range(k):
                        H[i, ca * k + u, m * k + cb] = coupling[s, u]
                        H[i, m * k + cb, ca * k + u] = coupling[s, u]
                        M[i, ca * k + u, m * k + cb] = meat_coupling[s, u]
                        M[i, m * k + cb, ca * k + u] = meat_coupling[s, u]
            if has_offsets:
                H[i, m * k + ca, m * k + ca] = off_diag[a]
                M[i, m * k + ca, m * k + ca] = meat_off[a]
        top = 0.0
        for d in range(dim):
            top = max(top, abs(H[i, d, d]))
        floor = 1e-12 * max(top, 1e-300)
        pad = -np.inf
        for d in range(dim):
            keep[i, d] = H[i, d, d] > floor
            if keep[i, d]:
                pad = max(pad, H[i, d, d])
        for d in range(dim):
            if not keep[i, d]:
                for e in range(dim):
                    H[i, d, e] = 0.0
                    H[i, e, d] = 0.0
                    M[i, d, e] = 0.0
                    M[i, e, d] = 0.0
                H[i, d, d] = pad if pad > -np.inf else 1.0
    return H, M, keep


#: Columns whose local blocks are inverted at once (bounds the stacked blocks' memory).
_COVARIANCE_CHUNK = 2048


def _local_covariances(H, M, keep, k, robust):
    """Covariance of each column's own ``k`` parameters from its local block.

    The blocks (:func:`_local_blocks`) are inverted as stacks by numpy's batched LAPACK
    calls, one stack per thread (they release the GIL): written inside the compiled
    gather, the same eigenvalue and solve calls took most of a first fit's compile time.
    Parameters outside ``keep`` are reported as NaN, as are whole blocks that are
    numerically singular (condition number above 1e14).

    Returns
    -------
    ndarray, shape (N, k, k)
        Sandwich (``robust``) or classical (unscaled (JᵀWJ)⁻¹) covariance.
    """
    n, dim = H.shape[0], H.shape[1]
    out = np.full((n, k, k), np.nan)
    unit = np.zeros((dim, k))
    unit[:k, :k] = np.eye(k)

    def invert(lo, hi):
        h, kept = H[lo:hi], keep[lo:hi]
        ev = np.abs(np.linalg.eigvalsh(h))
        good = kept.any(axis=1) & (ev.min(axis=1) * 1e14 >= ev.max(axis=1))
        h[~good] = np.eye(dim)  # reported as NaN; an exactly singular block would stop solve
        inv = np.linalg.solve(h, np.broadcast_to(unit, (hi - lo, dim, k)))
        cov = np.swapaxes(inv, 1, 2) @ M[lo:hi] @ inv if robust else inv[:, :k]
        valid = good[:, None, None] & kept[:, :k, None] & kept[:, None, :k]
        out[lo:hi] = np.where(valid, cov, np.nan)

    threads = numba.get_num_threads()
    step = max(1, min(_COVARIANCE_CHUNK, -(-n // threads)))
    edges = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    if len(edges) == 1:
        invert(*edges[0])
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda e: invert(*e), edges))
    return out


@dataclass
class _Spline:
    """Bilinear spline on a square grid of knots ``spacing_px`` apart, over the fitted
    pixels: pixel q is sum_c kwt[q, c] * knot[kidx[q, c]] (knot ids on the full ``kx`` x
    ``ky`` grid). Only the knots that carry fitted pixels are parameters: ``used`` gives
    each full-grid knot's index among them (-1: none), ``design`` is the (pixels, knots)
    matrix over them."""

    spacing_px: float
    kx: int
    ky: int
    kidx: np.ndarray
    kwt: np.ndarray
    used: np.ndarray
    design: sparse.csr_matrix
    #: membrane penalty on neighbouring knots (knots, knots), added to the cost as cᵀPc
    penalty: sparse.csr_matrix

    @property
    def size(self):
        return self.design.shape[1]

    def box(self, centres, half):
        """First knot (x, y) of each column's footprint box and the box's side, knots (a
        footprint 2h + 1 px wide spans at most floor(2h / spacing) + 3 knots)."""
        lo = np.maximum(centres - half[:, None], 0) / self.spacing_px
        base = np.minimum(lo.astype(np.int64), [self.kx - 2, self.ky - 2])
        return base, int(2 * half.max() // self.spacing_px) + 3


def _bilinear(shape, flat, spacing_px):
    """Knots (full-grid ids, (P, 4)) and bilinear weights of the pixels ``flat`` of an
    image of ``shape`` on a knot grid ``spacing_px`` apart; (kx, ky, kidx, kwt)."""
    ny, nx = shape
    kx = max(int(np.ceil((nx - 1) / spacing_px)) + 1, 2)
    ky = max(int(np.ceil((ny - 1) / spacing_px)) + 1, 2)
    y, x = np.divmod(np.asarray(flat, np.int64), nx)
    fx, fy = x / spacing_px, y / spacing_px
    ix = np.minimum(fx.astype(np.int64), kx - 2)
    iy = np.minimum(fy.astype(np.int64), ky - 2)
    tx, ty = fx - ix, fy - iy
    base = iy * kx + ix
    kidx = np.column_stack([base, base + 1, base + kx, base + kx + 1])
    kwt = np.column_stack([(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty])
    return kx, ky, kidx, kwt


def _spline(shape, flat, spacing_px):
    """The spline background of the fitted pixels ``flat`` (:class:`_Spline`)."""
    kx, ky, kidx, kwt = _bilinear(shape, flat, spacing_px)
    carried = np.bincount(kidx.ravel(), kwt.ravel(), minlength=kx * ky) > 0
    used = np.where(carried, np.cumsum(carried) - 1, -1).astype(np.int64)
    rows = np.repeat(np.arange(len(flat)), 4)
    cols = used[kidx].ravel()
    keep = cols >= 0
    size = int(carried.sum())
    design = sparse.csr_matrix(
        (kwt.ravel()[keep], (rows[keep], cols[keep])), shape=(len(flat), size)
    )
    # A knot at the edge of the fitted region carries a few pixels at small weights and is
    # nearly free, traded against the heights of the columns beside it. A weak membrane
    # penalty ties every knot to its neighbours: KNOT_PENALTY of a fully covered knot's
    # curvature per neighbour pair, which holds the edge knots and leaves the covered ones
    # to the data.
    grid = used.reshape(ky, kx)
    pairs = [
        (grid[:, :-1].ravel(), grid[:, 1:].ravel()),
        (grid[:-1, :].ravel(), grid[1:, :].ravel()),
    ]
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    both = (a >= 0) & (b >= 0)
    a, b = a[both], b[both]
    diff = sparse.csr_matrix(
        (
            np.r_[np.ones(len(a)), -np.ones(len(a))],
            (np.r_[np.arange(len(a)), np.arange(len(a))], np.r_[a, b]),
        ),
        shape=(len(a), size),
    )
    full = (4.0 / 9.0) * spacing_px**2  # sum of a bilinear hat's square over its support
    penalty = (KNOT_PENALTY * full * (diff.T @ diff)).tocsr()
    return _Spline(float(spacing_px), kx, ky, kidx, kwt, used, design, penalty)


def _spline_image(spline, knots, shape):
    """The spline with coefficients ``knots`` on every pixel of an image of ``shape``; a
    knot that carried no fitted pixel takes the value of the nearest one that did."""
    from scipy import ndimage

    grid = np.full(spline.kx * spline.ky, np.nan)
    grid[spline.used >= 0] = knots
    grid = grid.reshape(spline.ky, spline.kx)
    missing = np.isnan(grid)
    if missing.any():
        iy, ix = ndimage.distance_transform_edt(
            missing, return_distances=False, return_indices=True
        )
        grid = grid[iy, ix]
    _, _, kidx, kwt = _bilinear(shape, np.arange(shape[0] * shape[1]), spline.spacing_px)
    return np.sum(grid.ravel()[kidx] * kwt, axis=1).reshape(shape)


@dataclass
class _Problem:
    """Pixels, ownership and parameter layout of one joint fit."""

    kind: int
    k: int
    nx: int
    pix: np.ndarray
    data: np.ndarray
    weight: np.ndarray
    owner: np.ndarray
    types: np.ndarray
    n_types: int
    local: bool
    reach_sigma: float
    max_half: int
    seeds: np.ndarray
    max_shift: float | np.ndarray
    #: ``local``: the column whose offset each column's cell takes (itself, or the anchor
    #: of its block), and how much farther than its own cell an owner can lie, px.
    anchor: np.ndarray | None = None
    owner_reach: float = 0.0
    #: The last neighbour lists, with the geometry they were drawn for (reused while the
    #: rounded centres and footprints do not change).
    neighbour_cache: tuple | None = None
    #: ``smooth`` background: the bilinear spline fitted with the columns (replaces the
    #: constant).
    spline: _Spline | None = None
    #: The summed-area table of the unfitted pixels, with the ``pix`` it was drawn for.
    holes_cache: tuple | None = None
    #: ``constant`` background held at its start (``background_level``), not fitted.
    fixed_constant: bool = False

    @property
    def n_shape(self):
        return 1 if self.kind == 0 else 3

    @property
    def n_sig(self):
        return self.n_types * self.n_shape


def _fit_pixels(shape, positions, radius_px):
    """Pixels within ``radius_px`` of a column and the nearest column of each."""
    ny, nx = shape
    r = int(np.ceil(radius_px))
    lo = np.maximum(np.floor(positions.min(axis=0)).astype(int) - r, 0)
    hi = np.minimum(np.ceil(positions.max(axis=0)).astype(int) + r, [nx - 1, ny - 1])
    try:
        tri = Delaunay(positions)
    except (QhullError, ValueError):  # fewer than three columns, or all on one line
        tri = None
    if tri is None or len(positions) < 4:
        yy, xx = np.mgrid[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
        grid = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
        dist, nearest = cKDTree(positions).query(grid, distance_upper_bound=radius_px)
        inside = np.isfinite(dist)
        flat = grid[inside, 1].astype(int) * nx + grid[inside, 0].astype(int)
        nearest = nearest[inside].astype(np.int64)
    else:
        indptr, indices = tri.vertex_neighbor_vertices
        # start the walk at a vertex of the triangulation (a repeated seed is not one)
        start = int(tri.simplices[0, 0])
        flat, nearest = _nearest_columns(
            positions,
            indptr.astype(np.int64),
            indices.astype(np.int64),
            lo,
            hi,
            nx,
            radius_px,
            start,
        )
    pix = np.full(ny * nx, -1, np.int64)
    pix[flat] = np.arange(len(flat))
    return pix, flat, nearest


@njit()
def _nearest_columns(positions, indptr, indices, lo, hi, nx, radius_px, start):
    """Nearest column of every pixel of the box ``lo``-``hi`` (x, y, inclusive) that lies
    within ``radius_px`` of it; (flat pixel indices, columns), row-major. ``start``: a
    column of the triangulation.

    A walk on the Delaunay graph (``indptr``, ``indices``): a column that is not the nearest
    to a point always has a Delaunay neighbour nearer to it, so moving to the nearest
    neighbour until none is nearer ends at the nearest column. Started from the previous
    pixel's column it takes about one step per pixel, against a tree search per pixel
    (scipy's cKDTree: 0.4 s for a 1024² image, this 0.04 s). A pixel equidistant from two
    columns goes to either.
    """
    size = (hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1)
    flat = np.empty(size, np.int64)
    nearest = np.empty(size, np.int64)
    r2 = radius_px * radius_px
    m = 0
    cur = start
    for y in range(lo[1], hi[1] + 1):
        for x in range(lo[0], hi[0] + 1):
            dx, dy = positions[cur, 0] - x, positions[cur, 1] - y
            best = dx * dx + dy * dy
            moved = True
            while moved:
                moved = False
                for c in range(indptr[cur], indptr[cur + 1]):
                    j = indices[c]
                    dx, dy = positions[j, 0] - x, positions[j, 1] - y
                    d = dx * dx + dy * dy
                    if d < best:
                        best, cur, moved = d, j, True
            if best <= r2:
                flat[m] = y * nx + x
                nearest[m] = cur
                m += 1
    return flat[:m], nearest[:m]


class _State:
    """Current parameters: heights and positions, offsets, shapes per type, constant, and
    the spline background's knots."""

    def __init__(self, cp, offsets, shapes, zeta, knots=None):
        self.cp, self.offsets, self.shapes, self.zeta = cp, offsets, shapes, zeta
        self.knots = np.zeros(0) if knots is None else knots

    def copy(self):
        return _State(
            self.cp.copy(),
            self.offsets.copy(),
            self.shapes.copy(),
            float(self.zeta),
            self.knots.copy(),
        )


def _widths(prob, st):
    shape = st.shapes[prob.types]
    return shape[:, 0] if prob.kind == 0 else np.maximum(shape[:, 0], shape[:, 1])


def _geometry(prob, st):
    centres = np.rint(st.cp[:, 1:3]).astype(np.int64)
    half = np.clip(np.ceil(prob.reach_sigma * _widths(prob, st)), 2, prob.max_half)
    return centres, half.astype(np.int64)


def _evaluate(prob, st):
    """Model on the fitted pixels at the parameters ``st``, with what the normal equations
    at the same parameters reuse: (model, cost, (centres, half, aux, fptr, table))."""
    centres, half = _geometry(prob, st)
    aux = _aux(prob.kind, st.shapes[prob.types])
    fptr, table = _footprints(prob.kind, st.cp, aux, centres, half)
    model = _render(prob.kind, st.cp, centres, half, fptr, table, prob.nx, prob.pix, len(prob.data))
    if prob.local:
        _add_offsets(model, st.offsets, prob.owner)
    elif prob.spline is not None:
        model += prob.spline.design @ st.knots
    else:
        model += st.zeta
    cost = _weighted_sse(prob.weight, prob.data, model)
    if prob.spline is not None:
        cost += float(st.knots @ (prob.spline.penalty @ st.knots))
    return model, cost, (centres, half, aux, fptr, table)


def _neighbours(centres, half, local, owner_reach=0.0):
    """Columns that can share a pixel with each column (CSR, sorted): their footprints
    overlap, or (``local``) the column's footprint reaches into their offset's region. A
    pixel of column i's footprint lies within sqrt(2) h_i of it, and the column whose cell
    holds it is no further from it than column i is, so that column lies within
    2 sqrt(2) h_i (+ 2 px for the rounding of centres and the positions' drift since the
    cells were drawn); the anchor of that column's block lies within ``owner_reach`` more."""
    reach = half + half.max() + 1
    if local:
        reach = np.maximum(reach, np.ceil(2 * np.sqrt(2) * half + owner_reach) + 2)
    lists = cKDTree(centres).query_ball_point(centres, reach, p=np.inf, return_sorted=True)
    sizes = np.array([len(x) for x in lists])
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    idx = np.concatenate(lists).astype(np.int64)
    return ptr, idx


def _holes(prob):
    """Summed-area table (ny + 1, nx + 1) of the pixels not fitted, for :func:`_filled`;
    drawn once per set of fitted pixels."""
    if prob.holes_cache is None or prob.holes_cache[0] is not prob.pix:
        missing = (prob.pix < 0).reshape(-1, prob.nx).astype(np.int64)
        table = np.zeros((missing.shape[0] + 1, prob.nx + 1), np.int64)
        table[1:, 1:] = missing.cumsum(axis=0).cumsum(axis=1)
        prob.holes_cache = (prob.pix, table)
    return prob.holes_cache[1]


def _normal(prob, st, weight=None, resid=None, at=None):
    """JᵀWJ (scipy sparse) and JᵀWr at the current parameters, plus the raw blocks.
    ``at``: the evaluation of :func:`_evaluate` at these parameters, if already made."""
    model, _, (centres, half, aux, fptr, table) = _evaluate(prob, st) if at is None else at
    r = prob.data - model if resid is None else resid
    w = prob.weight if weight is None else weight
    cache = prob.neighbour_cache
    if not (
        cache is not None
        and cache[0] == (prob.local, prob.owner_reach)
        and np.array_equal(cache[1], centres)
        and np.array_equal(cache[2], half)
    ):
        cache = (
            (prob.local, prob.owner_reach),
            centres,
            half,
            *_neighbours(centres, half, prob.local, prob.owner_reach),
        )
        prob.neighbour_cache = cache
    nb_ptr, nb_idx = cache[3:]
    spline = prob.spline
    constant = not prob.local and spline is None
    n_glob = prob.n_sig + int(constant)
    if spline is None:
        kidx, kwt, kx, kbase, m = np.zeros((1, 4), np.int64), np.zeros((1, 4)), 1, centres, 0
    else:
        kidx, kwt, kx = spline.kidx, spline.kwt, spline.kx
        kbase, m = spline.box(centres, half)
    # one weight on every pixel (all but the sandwich's meat): round pairs sum by axes
    uniform = float(w[0]) if prob.kind == 0 and len(w) and np.all(w == w[0]) else -1.0
    blocks, coupling, glob, grad, sgrad, soff, sglob, rev_g, pair_s, kc, ks = _assemble_columns(
        prob.kind,
        st.cp,
        aux,
        prob.n_shape,
        prob.types,
        n_glob,
        constant,
        centres,
        half,
        fptr,
        table,
        prob.nx,
        prob.pix,
        w,
        uniform,
        _holes(prob),
        r,
        prob.local,
        prob.owner,
        nb_ptr,
        nb_idx,
        kidx,
        kwt,
        kx,
        kbase,
        m,
    )
    # the pairs visited from their lower column, mirrored into the higher column's row
    n, k = st.cp.shape
    rows_i = np.repeat(np.arange(n), np.diff(nb_ptr))
    key = rows_i * n + nb_idx
    mirror = np.minimum(np.searchsorted(key, nb_idx * n + rows_i), len(key) - 1)
    upper = (nb_idx > rows_i) & (key[mirror] == nb_idx * n + rows_i)
    blocks[mirror[upper]] = blocks[upper].transpose(0, 2, 1)
    hi_col, lo_shape = nb_idx[upper], prob.types[rows_i[upper]] * prob.n_shape
    for p in range(prob.n_shape):
        np.add.at(glob, (hi_col, lo_shape + p), rev_g[upper, :, p])
        for u in range(prob.n_shape):
            np.add.at(sglob, (hi_col, u, lo_shape + p), pair_s[upper, p, u])
    # the image-wide rows: sums of the columns' parts
    rows = (prob.types[:, None] * prob.n_shape + np.arange(prob.n_shape)).ravel()
    g_grad = np.bincount(rows, sgrad.ravel(), minlength=n_glob)
    gg = np.zeros((n_glob, n_glob))
    np.add.at(gg, rows, sglob.reshape(-1, n_glob))
    if prob.local:
        off_diag = np.bincount(prob.owner, w, minlength=n)
        off_grad = np.bincount(prob.owner, w * r, minlength=n)
        slot_rows = np.repeat(prob.types * prob.n_shape, np.diff(nb_ptr))
        off_glob = np.zeros((n, n_glob))
        for p in range(prob.n_shape):
            np.add.at(off_glob, (nb_idx, slot_rows + p), soff[:, p])
    else:
        off_diag, off_grad, off_glob = np.zeros(n), np.zeros(n), np.zeros((n, n_glob))
    if constant:
        g_grad[-1] = np.sum(w * r)
        gg[-1, -1] = np.sum(w)
        gg[-1, :-1] = gg[:-1, -1]
    n_off = n if prob.local else 0
    g0 = n * k + n_off
    n_knots = 0 if spline is None else spline.size
    size = g0 + n_glob + n_knots
    ar = np.arange(k)
    parts_r, parts_c, parts_v = [], [], []
    # column-column blocks
    parts_r.append((rows_i[:, None, None] * k + ar[None, :, None]).repeat(k, 2).ravel())
    parts_c.append((nb_idx[:, None, None] * k + ar[None, None, :]).repeat(k, 1).ravel())
    parts_v.append(blocks.ravel())
    if prob.local:
        rr = (rows_i[:, None] * k + ar[None, :]).ravel()
        cc = np.repeat(n * k + nb_idx, k)
        parts_r += [rr, cc]
        parts_c += [cc, rr]
        parts_v += [coupling.ravel(), coupling.ravel()]
        parts_r.append(n * k + np.arange(n))
        parts_c.append(n * k + np.arange(n))
        parts_v.append(off_diag)
        for g in range(n_glob):
            parts_r += [n * k + np.arange(n), np.full(n, g0 + g)]
            parts_c += [np.full(n, g0 + g), n * k + np.arange(n)]
            parts_v += [off_glob[:, g], off_glob[:, g]]
    for g in range(n_glob):
        rr = (np.arange(n)[:, None] * k + ar[None, :]).ravel()
        parts_r += [rr, np.full(n * k, g0 + g)]
        parts_c += [np.full(n * k, g0 + g), rr]
        parts_v += [glob[:, g, :].ravel(), glob[:, g, :].ravel()]
    gr, gc = np.meshgrid(np.arange(n_glob), np.arange(n_glob), indexing="ij")
    parts_r.append(g0 + gr.ravel())
    parts_c.append(g0 + gc.ravel())
    parts_v.append(gg.ravel())
    knot_grad = []
    if spline is not None:
        # knots with knots (AᵀWA), with the columns' parameters and with the shapes; a
        # column's box of knots is mapped to the fitted knots (-1: off the grid or unused)
        k0 = g0 + n_glob
        design = spline.design
        kk = (design.T @ design.multiply(w[:, None]) + spline.penalty).tocoo()
        parts_r.append(k0 + kk.row)
        parts_c.append(k0 + kk.col)
        parts_v.append(kk.data)
        knot_grad = design.T @ (w * r) - spline.penalty @ st.knots
        lj = np.arange(m * m)
        gx = kbase[:, :1] + lj % m
        gy = kbase[:, 1:] + lj // m
        on = (gx < spline.kx) & (gy < spline.ky)
        knot = np.where(on, spline.used[np.where(on, gy * spline.kx + gx, 0)], -1)
        ci, cj = np.nonzero(knot >= 0)
        for a in range(k):
            rr, cc = ci * k + a, k0 + knot[ci, cj]
            parts_r += [rr, cc]
            parts_c += [cc, rr]
            parts_v += [kc[ci, a, cj], kc[ci, a, cj]]
        for p in range(prob.n_shape):
            rr, cc = g0 + prob.types[ci] * prob.n_shape + p, k0 + knot[ci, cj]
            parts_r += [rr, cc]
            parts_c += [cc, rr]
            parts_v += [ks[ci, p, cj], ks[ci, p, cj]]
    H = sparse.csr_matrix(
        (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
        shape=(size, size),
    )
    gvec = np.concatenate([grad.ravel(), off_grad if prob.local else [], g_grad, knot_grad])
    raw = dict(blocks=blocks, coupling=coupling, off_diag=off_diag, nb_ptr=nb_ptr, nb_idx=nb_idx)
    return H, gvec, raw


def _solve(A, b):
    """Solve the symmetric positive definite system A x = b (scipy sparse).

    Conjugate gradients with a diagonal (Jacobi) preconditioner: every iteration costs one
    sparse product, linear in the number of columns, and the iteration count does not grow
    with the image (the coupling is local: about 10 iterations at sigma / nn = 0.15, 110
    at 0.4). A sparse LU (``spsolve``) is exact but fills in along the image-wide shape
    rows and grows much faster than linearly (0.02 s for 361 columns, 0.5-2 s for 2025);
    it is kept as the fallback when CG does not converge.
    """
    d = A.diagonal()
    d = np.where(d > 0, d, 1.0)
    x, info = cg(
        A,
        b,
        rtol=1e-10,
        maxiter=20 * int(np.sqrt(len(b))) + 200,
        M=LinearOperator(A.shape, matvec=lambda v: v / d, dtype=float),
    )
    return x if info == 0 else spsolve(A.tocsc(), b)


def _vector(prob, st):
    parts = [st.cp.ravel()]
    if prob.local:
        parts.append(st.offsets)
    parts.append(st.shapes.ravel())
    if prob.spline is not None:
        parts.append(st.knots)
    elif not prob.local:
        parts.append([st.zeta])
    return np.concatenate(parts)


def _unpack(prob, st, vec):
    n, k = st.cp.shape
    out = st.copy()
    out.cp = vec[: n * k].reshape(n, k).copy()
    at = n * k
    if prob.local:
        out.offsets = vec[at : at + n].copy()
        at += n
    out.shapes = vec[at : at + prob.n_sig].reshape(prob.n_types, prob.n_shape).copy()
    at += prob.n_sig
    if prob.spline is not None:
        out.knots = vec[at:].copy()
    elif not prob.local:
        out.zeta = float(vec[at])
    return out


def _free_mask(prob, n, stage):
    """Parameters refined in a stage: 'linear' (heights, offsets), 'shape' (heights, offsets
    and the shared shapes), 'fixed-theta', 'all'."""
    moves = stage not in ("linear", "shape")
    col = np.array([True, moves, moves])
    shape = np.full(prob.n_shape, stage != "linear")
    if stage == "fixed-theta" and prob.kind == 1:
        shape[2] = False  # theta is undefined for the round start
    parts = [np.tile(col, n)]
    if prob.local:
        parts.append(prob.anchor == np.arange(n))  # only the anchors' offsets exist
    parts.append(np.tile(shape, prob.n_types))
    if prob.spline is not None:
        parts.append(np.ones(prob.spline.size, bool))
    elif not prob.local:
        parts.append([not prob.fixed_constant])
    return np.concatenate(parts)


def _valid(prob, st, cap):
    """A step is taken only if every width stays in (0.3 px, cap)."""
    widths = st.shapes[:, :1] if prob.kind == 0 else st.shapes[:, :2]
    return bool(np.all(widths > 0.3) and np.all(widths < cap))


def _leaving(prob, trial):
    """Columns that ``trial`` takes more than ``prob.max_shift`` from their seeds: the seeds
    say where the columns are, and a weak column on a varying background would otherwise
    wander onto another feature (StatSTEM holds each centre in a box of +-dist/2 around its
    start for the same reason)."""
    return np.hypot(*(trial.cp[:, 1:3] - prob.seeds).T) >= prob.max_shift


def _clip_moves(prob, st, trial):
    """Shorten each centre's step in ``trial`` to at most half its column's width (the
    ``spline`` background): a near Gauss-Newton step from the rough start of the knots
    sends the weak columns of a dot over carbon half a spacing away, from where they crawl
    back one per iteration (50 iterations, not converged, against 7-15 with the clip). The
    other backgrounds do not need it, and their committed results were measured without."""
    d = trial.cp[:, 1:3] - st.cp[:, 1:3]
    length = np.hypot(*d.T)
    limit = 0.5 * _widths(prob, st)
    over = length > limit
    trial.cp[over, 1:3] = st.cp[over, 1:3] + d[over] * (limit[over] / length[over])[:, None]
    return trial


def _reduced(H, g, free):
    """The normal equations of the free parameters, their diagonal and its damping floor."""
    Hf = H if free.all() else H[free][:, free]
    diag = Hf.diagonal()
    return Hf, g[free], diag, 1e-9 * diag.max() + 1e-30


def _lm(prob, st, stage, max_iterations, tolerance_px, cap):
    """Levenberg-Marquardt over the free parameters of ``stage``.

    Returns the state, the iterations, whether the stage converged, and how far each
    centre moved in the last accepted step (px; zeros where none was taken).
    """
    free = _free_mask(prob, len(st.cp), stage)
    lam = 1e-4
    at = _evaluate(prob, st)
    cost = at[1]
    converged = False
    step_px = np.zeros(len(st.cp))
    it = 0
    while it < max_iterations:
        it += 1
        H, g, _ = _normal(prob, st, at=at)
        Hf, gf, diag, floor = _reduced(H, g, free)
        while True:
            A = Hf + sparse.diags(lam * np.maximum(diag, floor))
            step = _solve(A, gf)
            vec = _vector(prob, st)
            vec[free] += step
            trial = _unpack(prob, st, vec)
            if prob.spline is not None:
                trial = _clip_moves(prob, st, trial)
            leaving = _leaving(prob, trial) & free[1 :: prob.k][: len(st.cp)]
            if np.all(np.isfinite(step)) and leaving.any():
                # An active set: a centre the step would take out of its box stays where it
                # is for the rest of the stage, and the step is solved again for the rest.
                # Rejecting the step instead (a larger damping) froze the whole image once
                # one column had reached its bound: on a CsPbBr3 dot over carbon a weak Br
                # column at a corner, negative under a too-high constant, sat there and every
                # later step of every column was refused (the width stayed 5 % too wide and
                # the volumes 4-7 % high; the smooth background's rounds did nothing).
                held = np.flatnonzero(leaving)
                free[held * prob.k + 1] = False
                free[held * prob.k + 2] = False
                Hf, gf, diag, floor = _reduced(H, g, free)
                continue
            if np.all(np.isfinite(step)) and _valid(prob, trial, cap):
                trial_at = _evaluate(prob, trial)
                tcost = trial_at[1]
                if tcost <= cost:
                    break
                # The step is predicted (by the quadratic model) to lower chi² by less than
                # the stopping tolerance, yet the cost rose: a centre crossed half a pixel
                # or a width a footprint's size, and the footprints moved (the truncated
                # model jumps by up to 5e-3 in chi² on a 2000-column image). At the
                # minimum: stop here; a larger damping only shrinks the step until the
                # jump goes (13 rejected trials on bench_columns' image).
                dof = max(len(prob.data) - len(vec), 1)
                predicted = (2 * step @ gf - step @ (Hf @ step)) / max(cost / dof, 1e-300)
                if predicted < _STOP_CHI2:
                    return st, it, True, np.zeros(len(st.cp))
            lam *= 4.0
            if lam > 1e10:
                # no step lowers the cost: at the minimum to rounding
                return st, it, True, np.zeros(len(st.cp))
        # Stop when a step lowers chi² = cost / s² by less than _STOP_CHI2: no parameter is then
        # more than about 0.03 standard errors from the minimum. (A position tolerance alone
        # never stops on a nearly empty site, whose position wanders without changing the
        # cost.)
        dof = max(len(prob.data) - len(vec), 1)
        step_px = np.hypot(trial.cp[:, 1] - st.cp[:, 1], trial.cp[:, 2] - st.cp[:, 2])
        moved = step_px.max()
        dchi2 = (cost - tcost) / max(cost / dof, 1e-300)
        st, cost, at = trial, tcost, trial_at
        lam = max(lam / 3.0, 1e-12)
        if stage == "linear" or dchi2 < _STOP_CHI2 or (moved < tolerance_px and dchi2 < 0.1):
            converged = True
            break
    return st, it, converged, step_px


def _patch(prob, seeds):
    """The sub-problem of the columns nearest the seeds' median: the pixels of the inner
    ``_PATCH_INNER`` columns' cells, modelled with the ``_PATCH_COLUMNS`` nearest columns
    (the outer ring absorbs the tails of the columns beyond). Returns (problem, columns)."""
    n = len(seeds)
    if n <= _PATCH_COLUMNS:
        return prob, np.arange(n)
    order = cKDTree(seeds).query(np.median(seeds, axis=0), k=_PATCH_COLUMNS)[1]
    cols = np.sort(order)
    remap = np.full(n, -1, np.int64)
    remap[cols] = np.arange(len(cols))
    inner = np.zeros(n, bool)
    inner[order[:_PATCH_INNER]] = True
    keep = inner[prob.owner]
    q_old = np.flatnonzero(prob.pix >= 0)
    q_old = q_old[keep[prob.pix[q_old]]]
    pix = np.full(prob.pix.shape, -1, np.int64)
    pix[q_old] = np.arange(len(q_old))
    old = prob.pix[q_old]
    present = np.unique(prob.types[cols])
    if len(present) < prob.n_types:  # a type absent from the patch: use the whole image
        return prob, np.arange(n)
    sub = replace(
        prob,
        pix=pix,
        data=prob.data[old],
        weight=prob.weight[old],
        owner=remap[prob.owner[old]],
        types=prob.types[cols],
        seeds=seeds[cols],
        max_shift=prob.max_shift if np.ndim(prob.max_shift) == 0 else prob.max_shift[cols],
    )
    return sub, cols


def fit_columns_jointly(
    image,
    positions_px,
    *,
    fit_radius_px,
    labels=None,
    model="round",
    background="local",
    sigma_px=None,
    nn_px=None,
    max_iterations=50,
    tolerance_px=1e-4,
    reach_sigma=4.0,
    errors="robust",
    background_level=None,
    smooth_rounds=SMOOTH_ROUNDS,
    smooth_rounds_max=SMOOTH_ROUNDS_MAX,
    max_shift_px=None,
):
    """Fit all columns of an image together: positions, heights, widths and background.

    Parameters
    ----------
    image : array_like, 2-D
        Image, in any linear intensity unit (no preprocessing needed).
    positions_px : array_like, shape (N, 2)
        Seeds (x, y), px.
    fit_radius_px : float
        Pixels within this distance of a column enter the fit, px (about half the
        nearest-neighbour distance or more); a pixel's local offset is that of its nearest
        column.
    labels : array_like of str, shape (N,), optional
        Column type of every seed; with ``round`` each type has its own width. Default: one
        type.
    model : {"round", "gaussian7"}
        Round Gaussians with one width per type, or rotated elliptical Gaussians with their
        own widths and rotation.
    background : {"local", "smooth", "spline", "constant"}
        ``smooth``: positions, widths and heights over a smooth background (the residual
        with the columns removed, smoothed over ``SMOOTH_BACKGROUND_NN`` spacings, in up to
        ``smooth_rounds`` rounds until the widths settle) plus a constant. ``local``
        (``round`` only): then one offset per block of columns at least
        ``OFFSET_BLOCK_SIGMA`` widths across (a column's Voronoi cell while the spacing
        allows). ``spline``: everything fitted
        together with a bilinear spline background whose knots are :func:`knot_spacing`
        apart; unbiased on a strongly varying support seen around the columns (a dot on
        carbon), degenerate in a crystal that fills the field. The reported ``offset`` is
        the whole background under the column. ``constant``: one constant.
    sigma_px : float, optional
        Initial width, px. Default: the best of a coarse grid of widths (0.12-0.42 x
        ``nn_px``) by the profiled residual.
    nn_px : float, optional
        Nearest-neighbour distance, px (default: measured from the seeds).
    max_iterations : int
        Levenberg-Marquardt iterations per stage.
    tolerance_px : float
        Converged when no centre moves by more than this in an accepted step, px.
    reach_sigma : float
        Each column is rendered out to this many widths.
    errors : {"robust", "classical"}
        Sandwich standard errors (right under Poisson noise) or (JᵀJ)⁻¹ s².
    background_level : float, optional
        ``constant`` only: hold the constant at this level (image units) instead of fitting
        it, as StatSTEM does when its background is not fitted: for a specimen on no
        support whose vacuum level is known. A fitted constant trades against the columns'
        tails (on Example_PtIr, vacuum 0, it settles at 1.3e-4, 0.1 % of the brightest
        pixel, and the volumes run 1.2 % below StatSTEM's; held at 0, 0.8 % below).
    smooth_rounds : int
        ``smooth`` and ``local``: at most this many rounds of background and shape
        (default ``SMOOTH_ROUNDS``, 3; rounds past the third are over-relaxed). The default
        stops early, which keeps the columns' tails in the columns where there is no
        support: run until the width settles (20), the volumes on the real PtIr example
        fall from 0.942 to 0.899 of StatSTEM's (``local``; 0.960 to 0.918 ``smooth``).
        Under a CsPbBr3 dot one cell thinner per cell towards its edge, over a support at
        0.15 of its brightest column (sigma / nn 0.15, 200 and 500 counts, true positions),
        3 rounds leave the width 2.0x the truth and the median Cs and Pb-Br volumes 3-6x
        high; 20 rounds give the width within 1.3 % and those volumes within 2.6 %
        (``tests/columns/test_joint.py``; ``benchmarks/bench_background.py`` sweeps more dots).
    smooth_rounds_max : int
        ``smooth`` and ``local``: where the ``smooth_rounds`` rounds end unsettled and the
        width the central columns give alone differs from the image's by more than
        ``CENTRE_WIDTH_TOLERANCE``, the rounds go on, up to this many in all (default
        ``SMOOTH_ROUNDS_MAX``, 20). The early stop is kept where the centre agrees (the
        sample dots, SrTiO3, MoS2, and images of at most 160 columns, such as the PtIr
        example, which have no centre to compare); the thinning dot above is taken to
        convergence. ``smooth_rounds_max <= smooth_rounds``: never.
    max_shift_px : float or array_like of shape (N,), optional
        Each centre is held within this distance of its seed, px (default ``nn_px / 2``,
        StatSTEM's box). A smaller value per seed suits seeds whose site is known better
        than the image shows it: sites added from the lattice that no peak marked.

    Returns
    -------
    pandas.DataFrame
        One row per seed, in order, with the columns of :func:`stemqd.columns.fit.refine_columns`
        (``sweeps`` is the number of Levenberg-Marquardt iterations). For ``round``,
        ``sigma_x_px`` = ``sigma_y_px`` is the column's type width and ``theta_rad`` is 0
        (error NaN); ``offset`` is the column's local offset or the constant.
        ``attrs["joint"]`` holds the image-wide results: widths per type with standard
        errors, the constant, iterations, convergence and the residual variance.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    for name, value in (("smooth_rounds", smooth_rounds), ("smooth_rounds_max", smooth_rounds_max)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if model == "gaussian7" and background == "local":
        raise ValueError(
            "a local offset per column with a free width per column is "
            "degenerate when columns overlap; use background='constant' with "
            "model='gaussian7', or model='round'"
        )
    if errors not in ("classical", "robust"):
        raise ValueError(f"errors must be 'classical' or 'robust', got {errors!r}")
    if background_level is not None and (
        background != "constant" or not np.isfinite(background_level)
    ):
        raise ValueError(
            f"background_level={background_level!r} holds a constant background: it needs "
            f"background='constant' (not {background!r}) and a finite level"
        )
    image = np.asarray(image, dtype=np.float64)
    seeds = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
    n = len(seeds)
    if n == 0:
        return _table(
            np.empty((0, 7)),
            np.empty((0, 7)),
            seeds,
            np.empty(0),
            np.empty(0),
            np.empty(0, bool),
            np.empty(0, object),
            0,
            np.nan,
        )
    labels = np.full(n, "", object) if labels is None else np.asarray(labels, object)
    names, types = np.unique(labels.astype(str), return_inverse=True)
    if nn_px is None:
        nn_px = float(np.median(cKDTree(seeds).query(seeds, k=2)[0][:, 1])) if n > 1 else 10.0
    kind = MODELS.index(model)
    radius = float(np.hypot(*image.shape)) if fit_radius_px is None else float(fit_radius_px)
    pix, flat, owner = _fit_pixels(image.shape, seeds, radius)
    data = image.ravel()[flat]
    # The widest column model: at sigma / nn = 0.6 a column is no longer resolved from its
    # neighbours (the regime of real images ends at about 0.45).
    cap = 0.6 * nn_px + 1
    # Positions and widths are always fitted over a constant background: a local offset
    # per column trades against the Gaussian tails once columns overlap (on Example_PtIr
    # a joint fit with free local offsets shrinks the width by 28 % and the volumes by half).
    # A local background is then solved at those positions and widths, where it is linear
    # and well determined.
    prob = _Problem(
        kind=kind,
        k=len(COLUMN_PARAMS),
        nx=image.shape[1],
        pix=pix,
        data=data,
        weight=np.ones(len(data)),
        owner=owner,
        types=types.astype(np.int64),
        n_types=len(names),
        local=False,
        reach_sigma=reach_sigma,
        max_half=int(np.ceil(reach_sigma * cap)),
        seeds=seeds,
        max_shift=(
            0.5 * nn_px
            if max_shift_px is None
            else np.broadcast_to(np.asarray(max_shift_px, float), (n,)).copy()
        ),
        fixed_constant=background_level is not None,
    )
    low = float(np.percentile(data, 5)) if background_level is None else float(background_level)

    def start(sigma, at=seeds):
        cp = np.zeros((len(at), prob.k))
        cp[:, 0] = 1.0
        cp[:, 1:3] = at
        shape = [sigma] if kind == 0 else [sigma, sigma, 0.0]
        return _State(cp, np.full(len(at), low), np.tile(shape, (len(names), 1)), low)

    if sigma_px is None:
        # The profiled residual (heights and background solved exactly) over a coarse grid
        # of widths: a start near the truth keeps LM out of the local minima that a far
        # too narrow or too wide start reaches under strong overlap. It is evaluated on a
        # patch of the image (a fixed number of columns), so it costs the same on any image.
        patch, cols = _patch(prob, seeds)
        trials = []
        for frac in _SIGMA_GRID_NN:
            st0, *_ = _lm(patch, start(frac * nn_px, seeds[cols]), "linear", 1, tolerance_px, cap)
            trials.append((_evaluate(patch, st0)[1], frac))
        sigma_px = min(trials)[1] * nn_px
    st, *_ = _lm(prob, start(float(sigma_px)), "linear", 1, tolerance_px, cap)
    iterations = 0
    stages = ("fixed-theta", "all") if kind == 1 else ("all",)
    converged, step_px = False, np.zeros(n)
    smooth = np.zeros(image.shape)
    rounds, width_change, centre_width_ratio = 0, None, None
    if background != "spline":
        for stage in stages:
            st, its, converged, step_px = _lm(prob, st, stage, max_iterations, tolerance_px, cap)
            iterations += its
    if background in ("smooth", "local"):
        # A support that varies over the image (carbon) biases the shared width when it is
        # modelled by one constant (on an SrTiO3 dot over carbon by +9 %). The smooth part
        # of the residual (columns removed, smoothed over SMOOTH_BACKGROUND_NN spacings, far
        # wider than a column) is taken as background and the shape fitted again, until the
        # width settles: backfitting, which converges to the joint fit of columns and
        # background, slowly where the columns are weak against the support. Stopped after
        # SMOOTH_ROUNDS it is early stopping, and that is the default on purpose: run to
        # its end, the smooth part also takes the columns' non-Gaussian tails (see
        # smooth_rounds in the docstring for what each costs).

        def run_rounds(first, last):
            """Rounds ``first`` to ``last - 1``; True when the widths settled."""
            nonlocal st, smooth, iterations, converged, step_px, rounds, width_change
            for round_ in range(first, last):
                width = _widths(prob, st).copy()
                columns = _evaluate(prob, st)[0] - st.zeta
                update = _smooth(
                    image.shape, flat, image.ravel()[flat] - columns, SMOOTH_BACKGROUND_NN * nn_px
                )
                if round_ < SMOOTH_ROUNDS:
                    smooth = update
                else:
                    smooth = smooth + _SMOOTH_RELAXATION * (update - smooth)
                prob.data = image.ravel()[flat] - smooth.ravel()[flat]
                st.zeta = 0.0
                st, its, converged, step_px = _lm(
                    prob, st, stages[-1], max_iterations, tolerance_px, cap
                )
                iterations += its
                rounds = round_ + 1
                width_change = float(np.max(np.abs(_widths(prob, st) / width - 1)))
                if width_change < _SMOOTH_WIDTH_TOLERANCE:
                    return True
            return False

        def centre():
            return _centre_width_ratio(prob, st, seeds, max_iterations, tolerance_px, cap)

        settled = run_rounds(0, smooth_rounds)
        centre_width_ratio = centre()
        # Early stopping is wrong where the centre disagrees with the whole image: under a
        # dot that thins towards its edges over carbon the weak edge columns hold the shared
        # width at 2.2x the truth after 3 rounds; run to convergence it is right.
        if (
            not settled
            and centre_width_ratio is not None
            and abs(np.log(centre_width_ratio)) > np.log(CENTRE_WIDTH_TOLERANCE)
            and smooth_rounds_max > smooth_rounds
        ):
            run_rounds(smooth_rounds, smooth_rounds_max)
            centre_width_ratio = centre()
    if background == "spline":
        # A bilinear spline with knots far wider apart than a column (knot_spacing), fitted
        # together with every column from the start: it cannot take a column's core, and
        # fitted jointly it has no fixed point at the wrong width. Inside a crystal, though,
        # a knot's level is told from the columns only by their shape: exact for Gaussian
        # columns (synthetic dots over carbon: volumes within 1 %), not on a real image,
        # whose columns have broader tails (Example_PtIr, vacuum 0: the spline takes the
        # tails, the width drops from 5.4 to 4.0 px and the volumes to 0.43 of StatSTEM's).
        # A membrane stiff inside the columns' hull was tried: PtIr 0.96, but then the spline
        # cannot follow a support that varies under the dot (volumes +4 to +44 % again).
        st.zeta = 0.0
        prob.spline = _spline(image.shape, flat, knot_spacing(float(sigma_px), nn_px))
        design = prob.spline.design
        st.knots = np.zeros(prob.spline.size)
        columns = _evaluate(prob, st)[0]
        st.knots = spsolve(
            (design.T @ design + prob.spline.penalty).tocsc(), design.T @ (prob.data - columns)
        )
        for stage in stages:
            st, its, converged, step_px = _lm(prob, st, stage, max_iterations, tolerance_px, cap)
            iterations += its
        smooth = _spline_image(prob.spline, st.knots, image.shape)
    if background == "local":
        # One offset per block of columns at least OFFSET_BLOCK_SIGMA widths across (one
        # per column while the spacing allows): on a column's own Voronoi cell a wide
        # Gaussian is nearly flat and its height trades against the offset (a CsPbBr3 dot
        # at sigma / nn = 0.45 and 20 counts: the ratio 41 % low with an offset per column).
        pix, flat, nearest = _fit_pixels(image.shape, st.cp[:, 1:3], radius)
        block = max(nn_px, OFFSET_BLOCK_SIGMA * float(_widths(prob, st).max()))
        prob.anchor = _anchors(st.cp[:, 1:3], block, nn_px)
        prob.owner_reach = float(np.sqrt(2) * block) if block > nn_px else 0.0
        prob.pix, prob.owner = pix, prob.anchor[nearest]
        prob.data = image.ravel()[flat] - smooth.ravel()[flat]
        prob.weight = np.ones(len(prob.data))
        prob.local = True
        st.offsets = np.full(n, st.zeta)
        st, *_ = _lm(prob, st, "linear", 1, tolerance_px, cap)
    table = _finish(prob, st, seeds, names, nn_px, iterations, converged, step_px, errors)
    table.attrs["joint"]["background"] = background
    if background in ("smooth", "local"):
        # how far the background's rounds got: the last round's largest relative change
        # of a width (below _SMOOTH_WIDTH_TOLERANCE: settled)
        table.attrs["joint"]["smooth_rounds"] = rounds
        table.attrs["joint"]["smooth_width_change"] = width_change
        table.attrs["joint"]["centre_width_ratio"] = centre_width_ratio
    if background != "constant":
        # the reported offset is the whole background under the column
        ix = np.clip(np.rint(table["x_px"].to_numpy()).astype(int), 0, image.shape[1] - 1)
        iy = np.clip(np.rint(table["y_px"].to_numpy()).astype(int), 0, image.shape[0] - 1)
        table["offset"] = table["offset"].to_numpy() + smooth[iy, ix]
    return table


def _centre_width_ratio(prob, st, seeds, max_iterations, tolerance_px, cap):
    """The shared width refitted on the central patch alone (:func:`_patch`, the background
    and the positions held), over the image's: the one type whose ratio is farthest from 1.

    A shared width should fit the whole image and its centre alike. Under a dot that
    thins towards its edges over carbon, after the early-stopped background rounds, the
    weak edge columns hold the image's width at 2.2x the truth while the thick central
    columns alone give 1.1-1.5x (ratio 0.54-0.67); on the sample dots, the SrTiO3 and MoS2
    images it is 0.95-1.02. None where the patch would be the whole image (at most
    ``_PATCH_COLUMNS`` columns, or a column type absent from the patch).
    """
    patch, cols = _patch(prob, seeds)
    if len(cols) == len(seeds):
        return None
    sub = st.copy()
    sub.cp = st.cp[cols].copy()
    sub.offsets = st.offsets[cols].copy()
    # The positions are held where the whole image put them: the width and the heights
    # alone converge in 3-4 iterations, against 10 (with 16 rejected trials) with the
    # positions free, whose patch-edge columns drift outwards into the missing tails.
    sub, *_ = _lm(patch, sub, "shape", max_iterations, tolerance_px, cap)
    widths = 1 if prob.kind == 0 else 2  # sigma, or sigma_x and sigma_y
    ratio = (sub.shapes[:, :widths] / st.shapes[:, :widths]).ravel()
    return float(ratio[np.argmax(np.abs(np.log(ratio)))])


def knot_spacing(sigma_px, nn_px):
    """Knot spacing of the spline background, px: ``KNOT_SPACING_SIGMA`` column widths or
    ``KNOT_SPACING_NN`` spacings, whichever is wider.

    A bilinear patch that wide is nearly flat across a column, so it cannot take a column's
    tails (the degeneracy of a free width with a local offset), yet it follows a carbon
    support that varies over a few unit cells.
    """
    return max(KNOT_SPACING_SIGMA * float(sigma_px), KNOT_SPACING_NN * float(nn_px))


def _anchors(positions, block_px, nn_px):
    """The column whose offset each column shares: every column itself when ``block_px``
    is one spacing, else the column nearest the centre of its square block of that size."""
    n = len(positions)
    if block_px <= nn_px:
        return np.arange(n, dtype=np.int64)
    cell = np.floor((positions - positions.min(axis=0)) / block_px).astype(np.int64)
    key = cell[:, 0] * (cell[:, 1].max() + 1) + cell[:, 1]
    centre = (cell + 0.5) * block_px + positions.min(axis=0)
    dist = np.hypot(*(positions - centre).T)
    order = np.lexsort((dist, key))
    first = np.ones(n, bool)
    first[1:] = key[order][1:] != key[order][:-1]
    leader = np.empty(n, np.int64)
    groups = np.cumsum(first) - 1
    leader_of_group = order[first]
    leader[order] = leader_of_group[groups]
    return leader


def _smooth(shape, flat, values, sigma_px):
    """Gaussian smoothing of ``values`` given on the fitted pixels ``flat`` of an image of
    ``shape``, normalised by the smoothed mask so that the edge of the fitted region is not
    pulled to zero.

    The Gaussian is many columns wide, so it is applied to block sums over blocks of
    ``sigma_px / 4`` px and interpolated back (linearly): about 1/50 of the work of filtering
    every pixel (0.55 s for a 1024² image at sigma 29 px). Measured on a noisy varying
    background: it differs from filtering every pixel by 0.1 % of the background's range
    (rms; 0.5 % at most), an 80th of the smoothed noise, and is no further from the true
    background.
    """
    from scipy import ndimage

    b = max(1, int(sigma_px / 4))
    ny, nx = shape
    grid = np.zeros((2, ny * nx))
    grid[0, flat] = values
    grid[1, flat] = 1.0
    # extend the image by the filter's reach (4 sigma) with its edge pixels, as
    # mode="nearest" does, before the blocks are formed: a block mean at the edge lies
    # (b - 1) / 2 px inside it and would tilt a sloped background
    m = b * int(np.ceil(4 * sigma_px / b))
    pad = ((0, 0), (m, m - ny % b), (m, m - nx % b))
    grid = np.pad(grid.reshape(2, ny, nx), pad, mode="edge")
    blocks = grid.reshape(2, grid.shape[1] // b, b, grid.shape[2] // b, b).mean(axis=(2, 4))
    # the block mean is itself a box filter of variance (b² - 1) / 12 px²
    width = np.sqrt(max(sigma_px**2 - (b * b - 1) / 12.0, 0.0)) / b
    coarse = ndimage.gaussian_filter(blocks[0], width, mode="nearest") / np.maximum(
        ndimage.gaussian_filter(blocks[1], width, mode="nearest"), 1e-6
    )
    fine = ndimage.zoom(coarse, b, order=1, mode="nearest", grid_mode=True) if b > 1 else coarse
    fine = fine[m : m + ny, m : m + nx]
    return fine


def _finish(prob, st, seeds, names, nn_px, iterations, converged, step_px, errors):
    """The table and ``attrs["joint"]`` of the fitted state.

    Where the last stage stopped at its iteration limit, a column counts as converged
    when its last step moved it by less than ``_SETTLED_SE`` of its position's standard
    error: a few columns wandering over an empty site or a defect of a real image (on a
    Se-doped MoS2 monolayer, 8 of 4323 after 50 iterations) then do not fail the rest.
    """
    n, k = st.cp.shape
    at = _evaluate(prob, st)
    H, _, raw = _normal(prob, st, at=at)
    resid = prob.data - at[0]
    exists = H.diagonal() > 0  # offsets of non-anchor columns do not exist
    if prob.fixed_constant:
        exists[-1] = False  # the constant is held, not estimated
    n_par = int(np.sum(exists))
    dof = max(len(prob.data) - n_par, 1)
    s2 = float(np.sum(resid**2) / dof)
    robust = errors == "robust"
    if robust:
        _, _, meat = _normal(prob, st, weight=prob.weight * resid**2, resid=resid, at=at)
    else:
        meat = raw
    tree = cKDTree(st.cp[:, 1:3])
    m = min(_LOCAL_NEIGHBOURS + 1, n)
    local = tree.query(st.cp[:, 1:3], k=m)[1].reshape(n, m).astype(np.int64)
    H_local, M_local, keep = _local_blocks(
        k,
        raw["blocks"],
        raw["coupling"],
        meat["blocks"],
        meat["coupling"],
        raw["off_diag"],
        meat["off_diag"],
        raw["nb_ptr"],
        raw["nb_idx"],
        local,
        prob.local,
    )
    cov = _local_covariances(H_local, M_local, keep, k, robust)
    if not robust:
        cov = cov * s2
    # The shared shapes are determined by all columns: their variance from the full matrix.
    n_shape = prob.n_shape
    shape_err = np.full(prob.n_sig, np.nan)
    g0 = n * k + (n if prob.local else 0)
    Hx = H[exists][:, exists]
    # A ridge of _SHAPE_ERR_RIDGE of each diagonal: a column that is barely there (a zero
    # height on a vacancy) leaves its position nearly undetermined, and without the ridge
    # CG stalls on that direction and the sparse LU fallback took 54 s of a 145 s fit (the
    # real MoS2 monolayer, 4323 columns; with the ridge it takes 101 s). The width's error
    # moves by 0.03 % on a synthetic 400-column lattice, by 0.4 % on that image.
    Hx = Hx + sparse.diags(_SHAPE_ERR_RIDGE * Hx.diagonal())
    at = np.cumsum(exists) - 1
    for t in range(prob.n_sig):
        e = np.zeros(Hx.shape[0])
        e[at[g0 + t]] = 1.0
        col = _solve(Hx, e)
        if np.isfinite(col[at[g0 + t]]) and col[at[g0 + t]] > 0:
            shape_err[t] = np.sqrt(col[at[g0 + t]] * s2)
    shape_err = shape_err.reshape(prob.n_types, n_shape)
    shapes = st.shapes.copy()
    if prob.kind == 1:
        # canonical form sx >= sy, theta in [0, pi)
        swap = shapes[:, 0] < shapes[:, 1]
        shapes[swap, :2] = shapes[swap, 1::-1]
        shape_err[swap, :2] = shape_err[swap, 1::-1]
        shapes[swap, 2] += np.pi / 2
        shapes[:, 2] = np.mod(shapes[:, 2], np.pi)
    else:
        shapes = np.column_stack([shapes, shapes, np.zeros(len(shapes))])
        shape_err = np.column_stack([shape_err, shape_err, np.full(len(shapes), np.nan)])
    p = np.zeros((n, 7))
    perr = np.full((n, 7), np.nan)
    p[:, :3] = st.cp
    perr[:, :3] = np.sqrt(np.einsum("nii->ni", cov))
    p[:, 3:6] = shapes[prob.types]
    perr[:, 3:6] = shape_err[prob.types]
    volume = 2 * np.pi * p[:, 0] * p[:, 3] * p[:, 4]
    # The shared shape's error is common to all columns of a type (it scales every volume
    # of the type alike) and is reported apart; the volume error is the column's own,
    # from its height.
    volume_err = 2 * np.pi * p[:, 3] * p[:, 4] * perr[:, 0]
    p[:, 6] = st.offsets[prob.anchor] if prob.local else st.zeta
    if prob.local:
        off_var = 1.0 / np.maximum(raw["off_diag"][prob.anchor], 1e-300)
        perr[:, 6] = np.sqrt(off_var * s2)
    # a column without a standard error (flagged "singular covariance") settled if it stood
    se = np.nan_to_num(np.hypot(perr[:, 1], perr[:, 2]))
    settled = np.full(n, True) if converged else step_px <= _SETTLED_SE * se
    flags = _flags(p, perr, seeds, nn_px, settled)
    table = _table(p, perr, seeds, volume, volume_err, settled, flags, iterations, s2)
    table.attrs["joint"] = {
        "model": MODELS[prob.kind],
        "background": "local" if prob.local else "constant",
        "shapes": {
            str(t): dict(zip(SHAPE_PARAMS[MODELS[prob.kind]], map(float, row)))
            for t, row in zip(names, shapes if prob.kind == 1 else shapes[:, :1])
        },
        "shapes_err": {
            str(t): dict(zip(SHAPE_PARAMS[MODELS[prob.kind]], map(float, row)))
            for t, row in zip(names, shape_err if prob.kind == 1 else shape_err[:, :1])
        },
        "constant": None if prob.local or prob.spline is not None else float(st.zeta),
        "iterations": int(iterations),
        "converged": bool(settled.all()),
        "not_converged": int(np.sum(~settled)),
        "residual_variance": s2,
        "pixels": int(len(prob.data)),
    }
    return table


def _table(p, perr, seeds, volume, volume_err, converged, flags, iterations, s2):
    from .fit import PARAMS

    out = {key: p[:, i] for i, key in enumerate(PARAMS)}
    out.update({f"{key}_err": perr[:, i] for i, key in enumerate(PARAMS)})
    out.update(
        volume=volume,
        volume_err=volume_err,
        seed_x_px=seeds[:, 0],
        seed_y_px=seeds[:, 1],
        redchi=s2,
        sweeps=iterations,
        converged=converged,
        flag=flags,
    )
    return pd.DataFrame(out)


def _flags(p, perr, seeds, nn_px, settled):
    reasons = [[] for _ in range(len(p))]

    def mark(mask, text):
        for i in np.flatnonzero(mask):
            reasons[i].append(text)

    mark(~settled, "not converged")
    mark(p[:, 0] <= 0, "negative amplitude")
    mark(
        np.hypot(p[:, 1] - seeds[:, 0], p[:, 2] - seeds[:, 1]) > 0.5 * nn_px, "moved far from seed"
    )
    mark(~np.isfinite(perr[:, [0, 1, 2]]).all(axis=1), "singular covariance")
    return np.array(["; ".join(r) for r in reasons], dtype=object)


__all__ = [
    "CENTRE_WIDTH_TOLERANCE",
    "COLUMN_PARAMS",
    "KNOT_SPACING_NN",
    "KNOT_SPACING_SIGMA",
    "OFFSET_BLOCK_SIGMA",
    "SHAPE_PARAMS",
    "SMOOTH_BACKGROUND_NN",
    "SMOOTH_ROUNDS",
    "SMOOTH_ROUNDS_MAX",
    "fit_columns_jointly",
    "knot_spacing",
]
