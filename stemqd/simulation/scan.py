"""Scan geometry: the probe positions of one cell (the irreducible p4mm wedge, or the whole
cell without that symmetry) and their spread over the box."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .structure import P4MM

if TYPE_CHECKING:
    from .parameters import SeriesParameters


def wedge_indices(n: int) -> np.ndarray:
    """Scan indices (i, j), 0 <= j <= i <= n // 2, of the irreducible 1/8 of a p4mm cell.

    Index i runs along x, j along y; the full grid is k a / n, k = 0..n-1, with the BX column
    (the 4mm point) at index 0.
    """
    return np.array([(i, j) for i in range(n // 2 + 1) for j in range(i + 1)], int)


def unfold_wedge(values, n: int) -> np.ndarray:
    """Unfold values on :func:`wedge_indices` to the full n x n cell, indexed [..., y, x].

    Uses the mirrors x -> -x, y -> -y and x <-> y through the BX column (p4mm of the
    projected cubic perovskite along [001]).
    """
    values = np.asarray(values)
    wedge = wedge_indices(n)
    lookup = -np.ones((n // 2 + 1, n // 2 + 1), int)
    lookup[wedge[:, 0], wedge[:, 1]] = np.arange(len(wedge))
    k = np.arange(n)
    r = np.minimum(k, n - k)
    ry, rx = np.meshgrid(r, r, indexing="ij")
    index = lookup[np.maximum(rx, ry), np.minimum(rx, ry)]
    return values[..., index]


def scan_indices(params: SeriesParameters) -> np.ndarray:
    """Scan indices (i along x, j along y) of one cell: :func:`wedge_indices` when the
    oriented cell has p4mm symmetry about its origin column, else every point of the
    nx x ny grid (y-major, so that :func:`unfold_scan` is a reshape)."""
    nx, ny = params.scan_shape
    if params.oriented.symmetry == "p4mm":
        return wedge_indices(nx)
    return np.array([(i, j) for j in range(ny) for i in range(nx)], int)


def unfold_scan(values, params: SeriesParameters) -> np.ndarray:
    """Values on :func:`scan_indices` as the full cell image, indexed [..., y, x]."""
    nx, ny = params.scan_shape
    if params.oriented.symmetry == "p4mm":
        return unfold_wedge(values, nx)
    values = np.asarray(values)
    return values.reshape(values.shape[:-1] + (ny, nx))


#: Seed of the fixed assignment of wedge positions to cells and p4mm images (part of the
#: scan geometry, not of the phonons: the same for every configuration and run).
_SPREAD_SEED = 20261201


def scan_positions(params: SeriesParameters) -> np.ndarray:
    """Probe positions (x, y), Å, one per point of :func:`scan_indices`.

    Without ``params.spread_scan`` the points lie in the centre cell of the box. With it,
    point k is moved to cell ``c_k`` of the box and, for a p4mm cell, mapped by the
    operation ``g_k`` of 4mm about that cell's origin column (the BX column of a perovskite
    [001] cell). The assignment is a fixed, balanced pseudo-random one (every cell and every
    operation used equally often, to within one). Because the frozen-phonon ensemble is
    invariant under lattice translations and the point-group operations, the expected
    signal at every point is unchanged, but within one configuration the points near a
    column sample up to ``cells²`` different columns (and different sides of them): the
    column-to-column scatter of one configuration is averaged down instead of entering the
    ratio whole.

    Returns
    -------
    ndarray, shape (n_points, 2)
        Positions inside the periodic box [0, cells Lx) x [0, cells Ly).
    """
    size = np.array(params.cell_A)
    offsets = scan_indices(params) / np.array(params.scan_shape)  # fractional (x, y)
    c0 = params.cells // 2
    if not params.spread_scan:
        return (c0 + offsets) * size
    ops = P4MM if params.oriented.symmetry == "p4mm" else P4MM[:1]
    k = len(offsets)
    rng = np.random.default_rng(_SPREAD_SEED)
    ncell = params.cells**2
    cell = rng.permutation(np.arange(k) % ncell)
    op = rng.permutation(np.arange(k) % len(ops))
    cells_xy = np.stack([cell % params.cells, cell // params.cells], axis=1)
    mapped = np.einsum("kij,kj->ki", ops[op], offsets)
    return np.mod(cells_xy + mapped, params.cells) * size


__all__ = ["scan_indices", "scan_positions", "unfold_scan", "unfold_wedge", "wedge_indices"]
