"""Scan geometry: the irreducible p4mm wedge of a cell and its spread over the box."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

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


#: Seed of the fixed assignment of wedge positions to cells and p4mm images (part of the
#: scan geometry, not of the phonons: the same for every configuration and run).
_SPREAD_SEED = 20261201


# The 8 operations of 4mm about the BX column acting on (x, y) offsets.
_P4MM = np.array(
    [
        [[1, 0], [0, 1]],
        [[-1, 0], [0, 1]],
        [[1, 0], [0, -1]],
        [[-1, 0], [0, -1]],
        [[0, 1], [1, 0]],
        [[0, -1], [1, 0]],
        [[0, 1], [-1, 0]],
        [[0, -1], [-1, 0]],
    ]
)


def scan_positions(params: SeriesParameters) -> np.ndarray:
    """Probe positions (x, y), Å, one per point of :func:`wedge_indices`.

    Without ``params.spread_scan`` the wedge lies in the centre cell of the box. With it,
    wedge point k is moved to cell ``c_k`` of the box and mapped by the p4mm operation
    ``g_k`` about that cell's BX column. The assignment is a fixed, balanced pseudo-random
    one (every cell and every operation used equally often, to within one). Because the frozen-phonon ensemble is invariant under lattice
    translations and the p4mm operations, the expected signal at every point is unchanged,
    but within one configuration the points near a column sample up to ``cells²``
    different columns (and different sides of them): the column-to-column scatter of one
    configuration is averaged down instead of entering the ratio whole.

    Returns
    -------
    ndarray, shape (n_wedge, 2)
        Positions inside the periodic box [0, cells a)².
    """
    a = params.lattice_constant_A
    n = params.scan_points
    offsets = wedge_indices(n) / n  # fractional (x, y) from the BX column
    c0 = params.cells // 2
    if not params.spread_scan:
        return (c0 + offsets) * a
    k = len(offsets)
    rng = np.random.default_rng(_SPREAD_SEED)
    ncell = params.cells**2
    cell = rng.permutation(np.arange(k) % ncell)
    op = rng.permutation(np.arange(k) % len(_P4MM))
    cells_xy = np.stack([cell % params.cells, cell // params.cells], axis=1)
    mapped = np.einsum("kij,kj->ki", _P4MM[op], offsets)
    return np.mod(cells_xy + mapped, params.cells) * a


__all__ = ["scan_positions", "unfold_wedge", "wedge_indices"]
