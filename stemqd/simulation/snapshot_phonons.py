"""Frozen-phonon configurations from MD snapshots of a periodic cubic perovskite supercell.

The Einstein model of :func:`stemqd.simulation.displaced_configuration` displaces every atom
independently. Snapshots of an ab-initio MD run keep what that model drops: the correlations
between atoms, above all the octahedral tilts of CsPbBr3 at room temperature, which move the
Br of a column together. This module maps the displacement field of an n x n x n supercell
trajectory onto the slab of :func:`stemqd.simulation.cspbbr3_slab` (the same idea as abTEM's
``MDFrozenPhonons``, but a ps-long run of a small cell has to be reused many times over a
series' 30-cell columns, and the scan must see a symmetric ensemble):

- displacements are measured from the ideal cubic sites (static tilts included) or from
  each atom's mean position (thermal motion only, placed on the cubic sites) after each
  frame's centre-of-mass drift is removed (:func:`stemqd.aimd.site_displacements`), and
  scaled by the ratio of the lattice constants (a homologous scaling: tilt angles are kept);
- every configuration applies one operation of the cubic point group m-3m (48) and one
  lattice translation of the supercell, drawn from (seed, configuration), to every frame it
  uses. The ensemble is then invariant under the cubic operations and lattice translations,
  as a dot with tilt domains in every orientation is (the spread scan of the series relies
  on that), while one configuration's tilt pattern stays coherent along the whole column;
- every block of n unit cells along the beam takes its own frame, drawn from
  (seed, configuration, block).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import sha256_file
from ..materials import CSPBBR3_LATTICE_CONSTANT_A
from .structure import SITES, apply_displacements

__all__ = ["SnapshotPhonons", "cubic_operations", "snapshot_phonons"]

# Sites of the series' slab (Pb, Br along x, y, z, Cs): symbol and doubled fractional offset
# within the cell.
_SITE_SYMBOLS = tuple(sym for sym, _ in SITES)
_SITE_OFFSETS = tuple(tuple(int(2 * f) for f in frac) for _, frac in SITES)
_SITE_OF_OFFSET = {o: s for s, o in enumerate(_SITE_OFFSETS)}


def cubic_operations() -> np.ndarray:
    """The 48 operations of m-3m as signed permutation matrices, shape (48, 3, 3).

    The identity comes first.
    """
    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            g = np.zeros((3, 3), int)
            g[np.arange(3), perm] = signs
            ops.append(g)
    return np.array(ops)


@dataclass(frozen=True, eq=False)
class SnapshotPhonons:
    """Displacement field of MD snapshots, ready to displace series slabs.

    Call it as ``phonons(slab, seed, config)`` in place of
    :func:`stemqd.simulation.displaced_configuration`.

    Attributes
    ----------
    displacements : ndarray, shape (frames, n, n, n, 5, 3)
        Displacement (Å, already scaled) of site s (Pb, Br x, Br y, Br z, Cs) of cell
        (i, j, k) of the supercell in every frame.
    source : dict
        Provenance: trajectory and sites files with SHA-256, frames, supercell, both lattice
        constants and the scale. Its JSON is the identity of a raw-scan checkpoint.
    """

    displacements: np.ndarray
    source: dict = field(default_factory=dict)

    @property
    def period(self) -> int:
        """Supercell size n, unit cells."""
        return self.displacements.shape[1]

    @property
    def key(self) -> str:
        return json.dumps(self.source, sort_keys=True)

    def rms_A(self) -> dict:
        """rms displacement per Cartesian direction per element over all frames, Å."""
        out = {}
        for el in sorted(set(_SITE_SYMBOLS)):
            sel = [s for s, sym in enumerate(_SITE_SYMBOLS) if sym == el]
            out[el] = float(np.sqrt(np.mean(self.displacements[..., sel, :] ** 2)))
        return out

    def transformed(self, frames, operation: int, translation) -> np.ndarray:
        """The displacement field of ``frames`` after a cubic operation and a translation.

        Parameters
        ----------
        frames : array_like of int
        operation : int
            Index into :func:`cubic_operations`, applied about a Pb site.
        translation : array_like of int, shape (3,)
            Lattice translation, unit cells.

        Returns
        -------
        ndarray, shape (len(frames), n, n, n, 5, 3)
        """
        n = self.period
        g = cubic_operations()[int(operation)]
        src = self.displacements[np.asarray(frames, int)]
        out = np.empty_like(src)
        for i, j, k in itertools.product(range(n), repeat=3):
            for s, off in enumerate(_SITE_OFFSETS):
                h = g @ (2 * np.array([i, j, k]) + off) + 2 * np.asarray(translation)
                h %= 2 * n
                cell, rem = h // 2, h % 2
                out[:, cell[0], cell[1], cell[2], _SITE_OF_OFFSET[tuple(rem)]] = (
                    src[:, i, j, k, s] @ g.T
                )
        return out

    def __call__(self, slab, seed: int, config: int):
        """One configuration of ``slab`` (from :func:`stemqd.simulation.cspbbr3_slab`)."""
        n = self.period
        cell_idx = slab.get_array("stemqd_cell")
        site = slab.get_array("stemqd_site")
        lateral = cell_idx[:, :2].max(axis=0) - cell_idx[:, :2].min(axis=0) + 1
        if np.any(lateral % n):
            raise InputError(
                f"the box ({lateral[0]} x {lateral[1]} cells) must be a whole "
                f"number of {n} x {n} MD supercells"
            )
        rng = np.random.default_rng([int(seed), int(config)])
        operation = int(rng.integers(48))
        translation = rng.integers(n, size=3)
        blocks = cell_idx[:, 2] // n
        n_blocks = int(blocks.max()) + 1
        frames = [
            np.random.default_rng([int(seed), int(config), b]).integers(len(self.displacements))
            for b in range(n_blocks)
        ]
        field_ = self.transformed(frames, operation, translation)
        c = np.mod(cell_idx, n)
        return apply_displacements(slab, field_[blocks, c[:, 0], c[:, 1], c[:, 2], site])


def snapshot_phonons(
    trajectory,
    sites,
    *,
    target_lattice_constant_A: float = CSPBBR3_LATTICE_CONSTANT_A,
    about: str = "sites",
    skip: int = 0,
) -> SnapshotPhonons:
    """Read a periodic MD run of a cubic perovskite supercell into :class:`SnapshotPhonons`.

    Parameters
    ----------
    trajectory : path
        CP2K position trajectory (``*-pos-1.xyz``, optionally gzipped) of the production run.
    sites : path
        Structure file (any ASE format) with the ideal cubic sites, atoms in the order of the
        trajectory (the ``dot.xyz`` that :mod:`simulations.cp2k.phonon_sigmas` writes).
    target_lattice_constant_A : float
        Lattice constant of the series, Å; displacements are scaled by its ratio to the
        MD's.
    about : {"sites", "mean"}
        Measure displacements from the ideal cubic sites (static octahedral tilts and
        off-centring count) or from each atom's mean position over the frames (the
        correlated thermal motion alone, on the cubic lattice).
    skip : int
        Leading frames to drop.

    Returns
    -------
    SnapshotPhonons
    """
    from ase.io import read

    from ..aimd import read_xyz_trajectory, site_displacements

    if about not in ("sites", "mean"):
        raise InputError(f"about must be 'sites' or 'mean', not {about!r}")
    traj = read_xyz_trajectory(trajectory)
    ideal = read(str(sites))
    symbols = ideal.get_chemical_symbols()
    if tuple(symbols) != tuple(traj.symbols):
        raise InputError(f"{sites} does not list the atoms of {trajectory} in its order")
    frames = traj.values[int(skip) :]
    if len(frames) < 1:
        raise InputError(f"{trajectory}: no frames left after skipping {skip}")
    pb = ideal.positions[[s == "Pb" for s in symbols]]
    n = round(len(pb) ** (1 / 3))
    if n**3 != len(pb) or len(symbols) != 5 * n**3:
        raise InputError(f"{sites}: not an n x n x n CsPbBr3 supercell ({len(symbols)} atoms)")
    dist = np.linalg.norm(pb[:, None] - pb[None], axis=-1)
    a = float(np.median(np.where(dist > 0.1, dist, np.inf).min(axis=1)))
    h2 = 2.0 * (ideal.positions - pb[0]) / a
    h = np.rint(h2).astype(int)
    if np.abs(h2 - h).max() > 0.05:
        raise InputError(f"{sites}: atoms are not on the ideal cubic sites (a = {a:.3f} Å)")
    cell, rem = np.mod(h // 2, n), h % 2
    site = np.array([_SITE_OF_OFFSET.get(tuple(r), -1) for r in rem])
    if np.any(site < 0) or any(_SITE_SYMBOLS[s] != el for s, el in zip(site, symbols)):
        raise InputError(f"{sites}: sites do not match the Pb-origin perovskite cell")
    if len({(*c, s) for c, s in zip(cell.tolist(), site.tolist())}) != len(symbols):
        raise InputError(f"{sites}: two atoms on one site")
    scale = float(target_lattice_constant_A) / a
    u = (
        site_displacements(frames, symbols, reference=ideal.positions if about == "sites" else None)
        * scale
    )
    disp = np.empty((len(frames), n, n, n, 5, 3))
    disp[:, cell[:, 0], cell[:, 1], cell[:, 2], site] = u
    source = {
        "model": "MD snapshots",
        "trajectory": Path(trajectory).name,
        "trajectory_sha256": sha256_file(trajectory),
        "sites": Path(sites).name,
        "sites_sha256": sha256_file(sites),
        "frames": int(len(frames)),
        "skip": int(skip),
        "displacements_about": ("ideal cubic sites" if about == "sites" else "mean positions"),
        "supercell": n,
        "md_lattice_constant_A": round(a, 6),
        "target_lattice_constant_A": float(target_lattice_constant_A),
        "displacement_scale": round(scale, 6),
    }
    return SnapshotPhonons(displacements=disp, source=source)
