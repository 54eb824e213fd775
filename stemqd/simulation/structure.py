"""Crystals oriented for multislice: an orthogonal periodic box along any zone axis, its
projected columns, slabs, and frozen-phonon displacements.

:func:`oriented_cell` takes a crystal from the same source as
:func:`stemqd.columns.cell.projected_cell` (a built-in name or a CIF read by ASE) and a zone
axis [uvw], and returns one *orthogonal* lateral cell of it with the beam along z:

1. The repeat along the beam is the lattice vector t = [uvw] of the structure's cell.
2. The lateral cell is spanned by the two shortest lattice vectors v1, v2 whose projections
   are perpendicular to each other, each with a component along the beam that is a whole
   number of repeats (after subtracting it) to within ``max_mismatch_A``; v1 is preferred
   along the structure's first cell vector, so that cubic [001] keeps x along [100]. The
   atoms of the supercell (v1, v2, t) come from :func:`ase.build.make_supercell`.
3. The box is that supercell made orthogonal by a homogeneous strain: fractional
   coordinates in (v1, v2, t) become fractional coordinates of the orthogonal box
   (|v1|, |v2 perpendicular|, |t|). For orthogonal lattices along their axes, or cubic
   [001] and [110], the strain is zero; otherwise the largest residual (beam component of
   v1 or v2, or the in-plane shear) is ``mismatch_A`` and is reported (e.g. a [101] axis of
   an orthorhombic cell with a != c). This is the choice of :func:`abtem.orthogonalize_cell`
   (strain instead of an ever larger box), made explicit and bounded.
4. The origin is moved onto the heaviest atom of the brightest column (expected contrast of
   :mod:`stemqd.columns.cell`), so that a perovskite [001] box has its BX column, the 4mm
   point, at the origin. Fractions are rounded to 1e-10 so that exact lattices stay exact.
5. The atoms' projections are grouped into columns (closer than ``merge_tol_A``) and each
   column is labelled by matching its composition per repeat with the columns of
   :func:`stemqd.columns.cell.projected_cell` for the same crystal and zone axis: tables
   name columns by those labels (lowercased, e.g. ``cs``, ``pbbr``, ``br`` for CsPbBr3
   [001], ``sr``, ``tio``, ``o`` for SrTiO3 [001]).
6. The scan symmetry is ``p4mm`` when the box is square and the 8 operations of 4mm about
   the origin map the 3D atoms onto themselves with z unchanged (exact for a finite slab,
   unlike screw axes and glides), else ``p1`` (the whole cell is scanned).

Slabs (:func:`slab`) tile the box laterally and repeat it along the beam; they are sliced
in slices of thickness unit / ``slices_per_unit``, with the thickness unit the repeat /
``divisions`` (2 for a Pnma [010] or [101] repeat of two pseudo-cubic cells). All atoms are
shifted along z by the offset that keeps them farthest from the slice boundaries (a / 4 for
cubic perovskite [001] in slices of a / 2: the planes sit mid-slice; atoms on slice
boundaries hop between slices under phonon displacements).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..materials import CSPBBR3_LATTICE_CONSTANT_A, PEROVSKITE_SITES, PEROVSKITES

#: Sites of cubic CsPbBr3 (B at the origin) -> CSV prefix, as in
#: :mod:`stemqd.simulation.synthetic`: the lowercased labels of the [001] columns.
COLUMN_PREFIX = {"A": "cs", "BX": "pbbr", "X": "br"}


#: Sites of the cubic cell: (symbol, fractional position), Pb on the origin (B site). The
#: box of :func:`oriented_cell` for CsPbBr3 [001] has exactly these sites in this order
#: (tests/simulation/test_structure.py); :mod:`stemqd.simulation.snapshot_phonons` maps MD
#: supercells onto them.
SITES = tuple(
    (dict(zip("ABX", PEROVSKITES["CsPbBr3"][0], strict=True))[role], frac)
    for role, frac in PEROVSKITE_SITES
)

_DIGITS = 10  # rounding of lengths (Å) and fractions: exact lattices stay exact


@dataclass(frozen=True, eq=False)
class OrientedCell:
    """One orthogonal periodic cell of a crystal with the beam along z.

    Attributes
    ----------
    name : str
    zone_axis : tuple of int
    size_A : tuple of float
        Lateral box (Lx, Ly), Å.
    repeat_A : float
        Box length along the beam (one lattice repeat along [uvw]), Å.
    symbols : tuple of str
        Element of every site, sites ordered by depth, then y, then x.
    fracs : ndarray, shape (n_sites, 3)
        Fractional site positions in the box.
    column_fracs : dict
        Column label -> list of in-plane fractions (fx, fy) of its columns in the box,
        labels in the order of their sites' names (``A``, ``BX``, ``X``; alphabetical).
    column_sites : dict
        Column label -> site name (perovskite roles, else the label).
    contrast : dict
        Column label -> expected contrast, sum Z**n per Å (:mod:`stemqd.columns.cell`).
    symmetry : {"p4mm", "p1"}
        Scan symmetry about the origin column.
    mismatch_A : float
        Largest strain residual made to orthogonalise the box, Å (0 for exact boxes).
    projected : stemqd.columns.cell.ProjectedCell
        The material's projected cell along the zone axis (labels, ``stemqd cell``).
    """

    name: str
    zone_axis: tuple
    size_A: tuple
    repeat_A: float
    symbols: tuple
    fracs: np.ndarray
    column_fracs: dict
    column_sites: dict
    contrast: dict
    symmetry: str
    mismatch_A: float
    projected: object

    @property
    def labels(self) -> tuple:
        """Column labels, in measurement order."""
        return tuple(self.column_fracs)

    @property
    def prefixes(self) -> dict:
        """Column label -> prefix of its CSV columns (:func:`column_prefixes`)."""
        return column_prefixes(self.labels)

    @property
    def elements(self) -> tuple:
        return tuple(sorted(set(self.symbols)))

    def positions_A(self, label: str) -> np.ndarray:
        """In-plane positions (x, y), Å, of the columns ``label`` in the box."""
        return np.array(self.column_fracs[label], float) * np.array(self.size_A)

    def nearest_neighbour_A(self) -> float:
        """Shortest distance between two column positions of the box, periodic images
        included, Å."""
        pos = np.concatenate([self.positions_A(lab) for lab in self.labels])
        n = np.arange(-1, 2)
        shifts = np.stack(np.meshgrid(n, n, indexing="ij"), -1).reshape(-1, 2) * self.size_A
        d = pos[None, :, None, :] + shifts[None, None] - pos[:, None, None, :]
        r = np.hypot(d[..., 0], d[..., 1])
        r[r < 1e-6] = np.inf
        return float(r.min())

    def default_ratio(self) -> tuple:
        """(numerator, denominator) labels: the second-brightest over the brightest column
        type (Cs : PbBr for CsPbBr3 [001])."""
        order = sorted(self.labels, key=lambda lab: -self.contrast[lab])
        if len(order) < 2:
            raise InputError(f"{self.name}: a ratio needs two column types, got {order}")
        return order[1], order[0]

    def describe(self) -> str:
        lines = [
            f"{self.name} [{''.join(str(v) for v in self.zone_axis)}] box "
            f"{self.size_A[0]:.4f} x {self.size_A[1]:.4f} Å, repeat {self.repeat_A:.4f} Å, "
            f"{len(self.symbols)} atoms, scan symmetry {self.symmetry}, strain residual "
            f"{self.mismatch_A:.4f} Å"
        ]
        for lab in self.labels:
            fr = ", ".join(f"({u:.3f}, {v:.3f})" for u, v in self.column_fracs[lab])
            lines.append(f"  {lab:<8} {self.column_sites[lab]:<5} {fr}")
        return "\n".join(lines)


def column_prefixes(labels) -> dict:
    """Column label -> prefix of its series CSV columns: the lowercased label (``PbBr`` ->
    ``pbbr``), or the label itself for all when lowercasing would merge two labels."""
    low = {lab: lab.lower() for lab in labels}
    if len(set(low.values())) < len(low):  # e.g. "Co" and "CO"
        return {lab: lab for lab in labels}
    return low


def _tidy(values):
    out = np.round(np.asarray(values, float), _DIGITS) % 1.0
    out[np.isclose(out, 1.0, atol=10.0**-_DIGITS)] = 0.0
    return out + 0.0  # no negative zeros


@functools.lru_cache(maxsize=32)
def oriented_cell(
    material: str = "CsPbBr3",
    zone_axis=(0, 0, 1),
    *,
    lattice_constant_A: float | None = None,
    max_mismatch_A: float = 0.1,
    merge_tol_A: float = 0.1,
) -> OrientedCell:
    """The orthogonal periodic box of ``material`` along ``zone_axis`` (see the module).

    Parameters
    ----------
    material : str
        Built-in name (:data:`stemqd.materials.BUILTIN_MATERIALS`) or a CIF (any file ASE
        reads).
    zone_axis : str or tuple of int
        Beam direction [uvw] in the basis of the structure's cell.
    lattice_constant_A : float, optional
        Scale the structure so that its first cell vector has this length, Å.
    max_mismatch_A : float
        Largest strain residual accepted to make the box orthogonal, Å.
    merge_tol_A : float
        Atoms whose projections are closer than this form one column, Å.

    Returns
    -------
    OrientedCell

    Raises
    ------
    InputError
        Unknown material, unreadable file, or no orthogonal box within ``max_mismatch_A``
        among lattice vectors of up to 4 cells per axis.
    """
    from ase.build import make_supercell
    from ase.data import atomic_numbers

    from ..columns.cell import load_structure, parse_zone_axis, projected_cell

    atoms, name = load_structure(material)
    zone = parse_zone_axis(zone_axis)
    if lattice_constant_A is not None:
        if not lattice_constant_A > 0:
            raise InputError(f"lattice constant must be positive, got {lattice_constant_A}")
        atoms.set_cell(
            atoms.cell.array * (float(lattice_constant_A) / np.linalg.norm(atoms.cell.array[0])),
            scale_atoms=True,
        )
    projected = projected_cell(atoms, zone, merge_tol_A=merge_tol_A)
    cell = np.array(atoms.cell.array, float)
    t = np.array(zone, float) @ cell
    repeat = float(np.linalg.norm(t))
    e_z = t / repeat

    # Lateral periods: lattice vectors minus whole repeats along the beam.
    r = np.arange(-4, 5)
    n = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    v = n @ cell
    along = v @ e_z
    k = np.round(along / repeat)
    delta = along - k * repeat
    n = n - k[:, None].astype(int) * np.array(zone)
    p = v - np.outer(along, e_z)
    length = np.linalg.norm(p, axis=1)
    ok = (length > 1e-6) & (np.abs(delta) <= max_mismatch_A)
    if not ok.any():
        raise InputError(f"{name} {zone}: no lattice vector perpendicular to the beam")
    proj = cell - np.outer(cell @ e_z, e_z)
    ref = next(q for q in proj if np.linalg.norm(q) > 1e-6)
    ref = ref / np.linalg.norm(ref)
    idx = np.flatnonzero(ok)
    cosang = (p[idx] @ ref) / length[idx]
    first = idx[np.lexsort((-np.round(cosang, 9), np.round(length[idx], 6)))[0]]
    e_x = p[first] / length[first]
    e_y = np.cross(e_z, e_x)
    shear = p @ e_x
    ok2 = ok & (np.abs(shear) <= max_mismatch_A) & (np.abs(p @ e_y) > 1e-6)
    if not ok2.any():
        raise InputError(
            f"{name} {zone}: no orthogonal lateral cell within {max_mismatch_A} Å; try "
            "another zone axis or a larger max_mismatch_A"
        )
    idx2 = np.flatnonzero(ok2)
    second = idx2[np.lexsort((np.round(np.abs(shear[idx2]), 9), np.round(length[idx2], 6)))[0]]
    sign = 1 if p[second] @ e_y > 0 else -1
    transform = np.array([n[first], sign * n[second], zone], int)
    mismatch = float(max(abs(delta[first]), abs(delta[second]), abs(shear[second])))
    size = (
        round(float(length[first]), _DIGITS),
        round(float(abs(p[second] @ e_y)), _DIGITS),
    )
    super_atoms = make_supercell(atoms, transform)
    fr = _tidy(super_atoms.get_scaled_positions(wrap=True))
    symbols = np.array(super_atoms.get_chemical_symbols())

    columns = _group_columns(fr[:, :2], size, merge_tol_A)
    z_numbers = np.array([atomic_numbers[s] for s in symbols])
    per_repeat = repeat / projected.repeat_A  # box repeats of the primitive repeat
    labels, sites, contrast = [], [], {}
    for members in columns:
        comp = {}
        for m in members:
            comp[symbols[m]] = comp.get(symbols[m], 0) + 1
        match = [
            c
            for c in projected.columns
            if set(c.composition) == set(comp)
            and all(abs(c.composition[el] * per_repeat - comp[el]) < 1e-6 for el in comp)
        ]
        if not match:
            raise InputError(f"{name} {zone}: a box column {comp} matches no projected column")
        labels.append(match[0].label)
        sites.append(match[0].site)
        contrast[match[0].label] = match[0].contrast
    brightest = max(range(len(columns)), key=lambda c: (contrast[labels[c]], -c))
    heavy = max(columns[brightest], key=lambda m: (z_numbers[m], -fr[m, 2]))
    fr = _tidy(fr - fr[heavy])
    order = np.lexsort((np.round(fr[:, 0], 8), np.round(fr[:, 1], 8), np.round(fr[:, 2], 8)))
    fr, symbols = fr[order], symbols[order]
    rank = np.empty(len(order), int)
    rank[order] = np.arange(len(order))
    column_fracs = {}
    site_of = {}
    for members, lab, site in zip(columns, labels, sites):
        f = fr[rank[members], :2]
        centre = _tidy(f[0] + np.mean((f - f[0] + 0.5) % 1.0 - 0.5, axis=0))
        column_fracs.setdefault(lab, []).append((float(centre[0]), float(centre[1])))
        site_of[lab] = site
    keyed = sorted(column_fracs, key=lambda lab: (site_of[lab], lab))
    column_fracs = {
        lab: sorted(column_fracs[lab], key=lambda f: (round(f[1], 8), round(f[0], 8)))
        for lab in keyed
    }
    fr.setflags(write=False)
    return OrientedCell(
        name=name,
        zone_axis=zone,
        size_A=size,
        repeat_A=round(repeat, _DIGITS),
        symbols=tuple(symbols.tolist()),
        fracs=fr,
        column_fracs=column_fracs,
        column_sites={lab: site_of[lab] for lab in keyed},
        contrast={lab: float(contrast[lab]) for lab in keyed},
        symmetry="p4mm" if _has_p4mm(fr, symbols, size) else "p1",
        mismatch_A=mismatch,
        projected=projected,
    )


def _group_columns(uv, size, tol_A):
    """Indices of the atoms of every column: projections closer than tol_A, periodically.

    Hand-written rather than :mod:`stemqd.columns.cell`'s grouping, which works in the
    primitive projected cell; the multislice box is a (possibly larger) orthogonal cell.
    """
    size = np.asarray(size, float)
    groups = []  # (first uv, members)
    for i, q in enumerate(uv):
        for first, members in groups:
            d = (q - first + 0.5) % 1.0 - 0.5
            if np.hypot(*(d * size)) < tol_A:
                members.append(i)
                break
        else:
            groups.append((q, [i]))
    return [members for _, members in groups]


#: The 8 operations of 4mm about the origin acting on (x, y) offsets.
P4MM = np.array(
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


def _has_p4mm(fr, symbols, size) -> bool:
    if abs(size[0] - size[1]) > 1e-9:
        return False
    for g in P4MM[1:]:
        moved = fr.copy()
        moved[:, :2] = (fr[:, :2] @ g.T) % 1.0
        d = (moved[:, None, :] - fr[None, :, :] + 0.5) % 1.0 - 0.5
        hit = np.all(np.abs(d) < 1e-6, axis=-1) & (symbols[:, None] == symbols[None, :])
        if not np.all(hit.any(axis=1)):
            return False
    return True


def slice_offset(cell: OrientedCell, slice_A: float) -> float:
    """Shift along z, as a fraction of the repeat, that puts every atom farthest from the
    boundaries of slices ``slice_A`` thick (the middle of the largest gap between atomic
    planes, folded into one slice, goes onto a boundary)."""
    z = np.round((cell.fracs[:, 2] * cell.repeat_A) % slice_A, 9)
    z = np.unique(np.where(slice_A - z < 1e-9, 0.0, z))
    gaps = np.diff(np.concatenate([z, [z[0] + slice_A]]))
    j = int(np.argmax(gaps))
    middle = (z[j] + gaps[j] / 2) % slice_A
    shift = (slice_A - middle) % slice_A
    return round(shift / cell.repeat_A, 12)


def slab(
    cell: OrientedCell,
    thickness: int,
    *,
    cells: int = 3,
    slices_per_unit: int = 2,
    divisions: int = 1,
):
    """Periodic slab of ``thickness`` units (repeat / ``divisions``) for multislice, as Atoms.

    Parameters
    ----------
    cell : OrientedCell
    thickness : int
        Thickness in units of repeat / divisions along the beam (z).
    cells : int
        Lateral tiling, boxes per side.
    slices_per_unit : int
        Slices per thickness unit the slab is meant for; atoms are shifted along z by
        :func:`slice_offset` of that slice thickness.
    divisions : int
        Thickness units per repeat.

    Returns
    -------
    ase.Atoms
        Cell (cells Lx, cells Ly, thickness x unit), periodic. Atoms are ordered by depth;
        the arrays ``stemqd_cell`` (i, j, k: box relative to the centre box, which the
        scan covers, and repeat) and ``stemqd_site`` (index into ``cell.symbols``) key the
        phonon displacements.
    """
    from ase import Atoms

    t = int(thickness)
    if t < 1:
        raise InputError(f"thickness must be at least one unit, got {thickness}")
    lx, ly = cell.size_A
    c = cell.repeat_A
    unit = c / divisions
    dz = slice_offset(cell, unit / slices_per_unit)
    c0 = cells // 2
    fr = cell.fracs
    planes = np.unique(fr[:, 2])
    symbols, pos, cell_idx, site_idx = [], [], [], []
    for k in range(math.ceil(t / divisions)):
        for plane in planes:
            if (k + plane + dz) * divisions >= t:
                continue
            sel = np.flatnonzero(fr[:, 2] == plane)
            for i in range(cells):
                for j in range(cells):
                    for s in sel:
                        f = fr[s]
                        symbols.append(cell.symbols[s])
                        pos.append(((i + f[0]) * lx, (j + f[1]) * ly, (k + f[2] + dz) * c))
                        cell_idx.append((i - c0, j - c0, k))
                        site_idx.append(s)
    atoms = Atoms(symbols, positions=pos, cell=[cells * lx, cells * ly, t * unit], pbc=True)
    atoms.set_array("stemqd_cell", np.array(cell_idx, int))
    atoms.set_array("stemqd_site", np.array(site_idx, int))
    atoms.info["stemqd_sites"] = len(cell.symbols)
    return atoms


def cspbbr3_slab(
    thickness_uc: int,
    *,
    lattice_constant_A: float = CSPBBR3_LATTICE_CONSTANT_A,
    cells: int = 3,
    slices_per_cell: int = 2,
):
    """The cubic CsPbBr3 [001] slab of the reference series: :func:`slab` of the cubic
    cell (Pb at the origin, planes shifted by a / 4 for two slices per cell).

    Parameters
    ----------
    thickness_uc : int
        Unit cells along the beam (z).
    lattice_constant_A : float
        Cubic lattice constant, Å.
    cells : int
        Lateral tiling, cells per side.
    slices_per_cell : int
        Slices per cell the slab is meant for.

    Returns
    -------
    ase.Atoms
        See :func:`slab`; ``stemqd_site`` indexes :data:`SITES` (0 Pb, 1-3 Br, 4 Cs).
    """
    cell = oriented_cell("CsPbBr3", (0, 0, 1), lattice_constant_A=float(lattice_constant_A))
    return slab(cell, thickness_uc, cells=cells, slices_per_unit=slices_per_cell)


def displaced_configuration(atoms, sigmas_A: dict, seed: int, config: int):
    """One frozen-phonon configuration: independent Gaussian displacements per atom.

    Each Cartesian component is drawn from N(0, sigma²) of the atom's element (Einstein
    model, as :class:`abtem.FrozenPhonons`). The draws of one box come from a generator
    seeded by (seed, config, i, j, k), so they do not depend on the slab thickness or the
    lateral box size. In-plane positions are wrapped into the periodic cell.
    """
    cell_idx = atoms.get_array("stemqd_cell")
    site = atoms.get_array("stemqd_site")
    sigma = np.array([sigmas_A[s] for s in atoms.get_chemical_symbols()], float)
    keys, inverse = np.unique(cell_idx, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n_sites = int(atoms.info.get("stemqd_sites", site.max() + 1))
    draws = np.empty((len(keys), n_sites, 3))
    offset = 2**20  # SeedSequence entropy must be non-negative
    for n, (i, j, k) in enumerate(keys):
        rng = np.random.default_rng(
            [int(seed), int(config), int(i) + offset, int(j) + offset, int(k)]
        )
        draws[n] = rng.standard_normal((n_sites, 3))
    return apply_displacements(atoms, sigma[:, None] * draws[inverse, site])


def apply_displacements(atoms, displacements):
    """A copy of ``atoms`` moved by ``displacements`` (Å), wrapped into the periodic box."""
    out = atoms.copy()
    positions = out.positions + displacements
    positions[:, :2] %= np.diag(out.cell)[:2]
    out.positions = positions
    return out


__all__ = [
    "COLUMN_PREFIX",
    "OrientedCell",
    "P4MM",
    "SITES",
    "apply_displacements",
    "column_prefixes",
    "cspbbr3_slab",
    "displaced_configuration",
    "oriented_cell",
    "slab",
    "slice_offset",
]
