"""The cubic CsPbBr3 slab, its projected columns, and frozen-phonon displacements."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..materials import CSPBBR3_LATTICE_CONSTANT_A, PEROVSKITE_SITES, PEROVSKITES

#: Column type (as in :mod:`stemqd.simulation.synthetic`) -> prefix of its CSV columns.
COLUMN_PREFIX = {"A": "cs", "BX": "pbbr", "X": "br"}


#: Fractional in-plane positions of the projected columns of one cell (BX at the origin).
COLUMN_FRACS = {"A": [(0.5, 0.5)], "BX": [(0.0, 0.0)], "X": [(0.5, 0.0), (0.0, 0.5)]}


#: Sites of the cubic cell: (symbol, fractional position), Pb on the origin (B site);
#: ``stemqd_site`` of the slab indexes this tuple.
SITES = tuple(
    (dict(zip("ABX", PEROVSKITES["CsPbBr3"][0], strict=True))[role], frac)
    for role, frac in PEROVSKITE_SITES
)


def cspbbr3_slab(
    thickness_uc: int,
    *,
    lattice_constant_A: float = CSPBBR3_LATTICE_CONSTANT_A,
    cells: int = 3,
    slices_per_cell: int = 2,
):
    """Periodic cubic CsPbBr3 slab for [001] multislice, as ASE Atoms.

    Parameters
    ----------
    thickness_uc : int
        Unit cells along the beam (z).
    lattice_constant_A : float
        Cubic lattice constant, Å.
    cells : int
        Lateral tiling, cells per side.
    slices_per_cell : int
        Slices per cell the slab is meant for; atoms are shifted by half a slice in z
        (a / 4 for two slices) so that each atomic plane sits mid-slice.

    Returns
    -------
    ase.Atoms
        Cell (cells a, cells a, thickness a), periodic. Atoms are ordered by depth; the
        arrays ``stemqd_cell`` (i, j, k relative to the centre cell, which the scan covers)
        and ``stemqd_site`` (0 Pb, 1-3 Br, 4 Cs) key the phonon displacements.
    """
    from ase import Atoms

    a = float(lattice_constant_A)
    t = int(thickness_uc)
    if t < 1:
        raise InputError(f"thickness must be at least one unit cell, got {thickness_uc}")
    c0 = cells // 2
    dz = 0.5 / slices_per_cell
    symbols, pos, cell_idx, site_idx = [], [], [], []
    for k in range(t):
        for plane in (0.0, 0.5):
            for i in range(cells):
                for j in range(cells):
                    for s, (sym, f) in enumerate(SITES):
                        if f[2] != plane:
                            continue
                        symbols.append(sym)
                        pos.append(((i + f[0]) * a, (j + f[1]) * a, (k + f[2] + dz) * a))
                        cell_idx.append((i - c0, j - c0, k))
                        site_idx.append(s)
    atoms = Atoms(symbols, positions=pos, cell=[cells * a, cells * a, t * a], pbc=True)
    atoms.set_array("stemqd_cell", np.array(cell_idx, int))
    atoms.set_array("stemqd_site", np.array(site_idx, int))
    return atoms


def displaced_configuration(atoms, sigmas_A: dict, seed: int, config: int):
    """One frozen-phonon configuration: independent Gaussian displacements per atom.

    Each Cartesian component is drawn from N(0, sigma²) of the atom's element (Einstein
    model, as :class:`abtem.FrozenPhonons`). The draws of one unit cell come from a generator
    seeded by (seed, config, i, j, k), so they do not depend on the slab thickness or the
    lateral box size. In-plane positions are wrapped into the periodic cell.
    """
    cell_idx = atoms.get_array("stemqd_cell")
    site = atoms.get_array("stemqd_site")
    sigma = np.array([sigmas_A[s] for s in atoms.get_chemical_symbols()], float)
    keys, inverse = np.unique(cell_idx, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    draws = np.empty((len(keys), len(SITES), 3))
    offset = 2**20  # SeedSequence entropy must be non-negative
    for n, (i, j, k) in enumerate(keys):
        rng = np.random.default_rng(
            [int(seed), int(config), int(i) + offset, int(j) + offset, int(k)]
        )
        draws[n] = rng.standard_normal((len(SITES), 3))
    return apply_displacements(atoms, sigma[:, None] * draws[inverse, site])


def apply_displacements(atoms, displacements):
    """A copy of ``atoms`` moved by ``displacements`` (Å), wrapped into the periodic box."""
    out = atoms.copy()
    positions = out.positions + displacements
    positions[:, :2] %= np.diag(out.cell)[:2]
    out.positions = positions
    return out


__all__ = [
    "COLUMN_FRACS",
    "COLUMN_PREFIX",
    "SITES",
    "apply_displacements",
    "cspbbr3_slab",
    "displaced_configuration",
]
