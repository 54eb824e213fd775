"""Projected unit cells: the atomic columns of any crystal seen down any zone axis.

A crystal viewed along a lattice direction [uvw] is a 2D periodic pattern of atomic
columns. :func:`projected_cell` derives that pattern from the 3D structure (a built-in
name, a CIF file read with ASE, or an :class:`ase.Atoms`) with no assumption about the
crystal system:

1. The translation lattice of the structure is found from the atoms themselves (the
   conventional cell plus any centring translations, so that an fcc crystal given in
   its cubic cell is handled with its true, shorter periods).
2. The repeat along the beam is the shortest lattice vector parallel to [uvw].
3. The 2D lattice of the projection is spanned by the two shortest non-collinear
   projections of lattice vectors (in 2D these successive minima always form a basis),
   reduced so that |a| <= |b| and, where there is a choice, gamma >= 90 degrees.
4. Every atom is projected into that 2D cell; atoms whose projections coincide within
   ``merge_tol_A`` form one column, whose composition is counted per repeat length.

Each column carries an expected relative ADF contrast, the sum of Z**n over its atoms
per Å along the beam (incoherent Z-contrast; n = 1.7 by default, between Rutherford's 2
and the screened ~1.6-1.8 of Hartel et al., Ultramicroscopy 63 (1996) 93 and Krivanek
et al., Nature 464 (2010) 571).

Conventions
-----------
* In-plane frame: x along the cell vector a, z along +[uvw] (towards the viewer),
  y = z x x, so an [001] projection is drawn the usual way (x right, y up).
* Fractional coordinates (u, v) refer to the 2D basis (a, b); the origin is the
  projection of the structure's origin (for the built-in perovskites the A cation).
* Column labels are compositions per repeat length with elements in order of
  decreasing atomic number and counts > 1 written as digits (``"PbBr"``, ``"SrO"``,
  ``"O2"``, ``"MoS2"``). Columns of equal composition share a label.
* Sites are roles: for an ABX3 perovskite the roles of the column's elements in A, B,
  X order (``"A"``, ``"BX"``, ``"X"`` along [001]; ``"AX"``, ``"B"``, ``"X"`` along
  [110]); for any other crystal the site equals the label.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import reduce

import numpy as np

from ..errors import InputError
from ..materials import BUILTIN_MATERIALS, builtin_structure


@dataclass(frozen=True)
class ProjectedColumn:
    """One atomic column of a projected cell.

    Attributes
    ----------
    label : str
        Composition name, e.g. ``"Cs"``, ``"PbBr"``, ``"O2"``, ``"MoS2"``.
    site : str
        Role name (``"A"``, ``"BX"``, ``"X"`` ... for perovskites; else the label).
    frac : tuple of float
        In-plane fractional coordinates (u, v) in the projected cell, in [0, 1).
    composition : dict
        Element -> atoms per repeat length along the beam.
    contrast : float
        Expected ADF contrast: sum of Z**n over the column's atoms per Å along the beam.
    """

    label: str
    site: str
    frac: tuple[float, float]
    composition: dict
    contrast: float


@dataclass(frozen=True, eq=False)
class ProjectedCell:
    """A crystal projected along a zone axis.

    Attributes
    ----------
    name : str
        Material name (built-in name, CIF file stem, or chemical formula).
    zone_axis : tuple of int
        Beam direction [uvw] in the basis of the structure's cell.
    vectors_A : ndarray, shape (2, 2)
        Rows are the in-plane lattice vectors a, b in Å in the in-plane frame (a along +x).
    repeat_A : float
        Period of the structure along the beam, Å.
    columns : tuple of ProjectedColumn
        The columns of one projected cell, brightest first.
    exponent : float
        n of the contrast sum(Z**n).
    """

    name: str
    zone_axis: tuple
    vectors_A: np.ndarray
    repeat_A: float
    columns: tuple
    exponent: float = 1.7

    @property
    def a_A(self) -> float:
        """Length of the in-plane vector a, Å."""
        return float(np.linalg.norm(self.vectors_A[0]))

    @property
    def b_A(self) -> float:
        """Length of the in-plane vector b, Å."""
        return float(np.linalg.norm(self.vectors_A[1]))

    @property
    def gamma_deg(self) -> float:
        """Angle between a and b, degrees."""
        a, b = self.vectors_A
        return float(np.degrees(np.arccos(a @ b / (self.a_A * self.b_A))))

    @property
    def area_A2(self) -> float:
        """Area of the projected cell, Å²."""
        return float(abs(np.linalg.det(self.vectors_A)))

    @property
    def labels(self) -> tuple:
        """Distinct column labels, brightest first."""
        return tuple(dict.fromkeys(c.label for c in self.columns))

    @property
    def fracs(self) -> np.ndarray:
        """Fractional coordinates (u, v) of the columns, shape (M, 2)."""
        return np.array([c.frac for c in self.columns], float).reshape(-1, 2)

    @property
    def contrasts(self) -> np.ndarray:
        """Expected contrast of each column (sum Z**n per Å), shape (M,)."""
        return np.array([c.contrast for c in self.columns], float)

    def relative_contrast(self) -> np.ndarray:
        """Expected contrast of each column relative to the brightest one."""
        c = self.contrasts
        return c / c.max()

    def positions_A(self) -> np.ndarray:
        """Column positions (x, y) in Å in the in-plane frame, shape (M, 2)."""
        return self.fracs @ self.vectors_A

    def nearest_neighbour_A(self, min_relative_contrast: float = 0.0) -> float:
        """Smallest distance between distinct column positions; see :func:`nearest_neighbour_A`."""
        return nearest_neighbour_A(self, min_relative_contrast=min_relative_contrast)

    def column(self, label: str) -> ProjectedColumn:
        """The first column with this label (columns sharing a label are identical in
        composition and contrast); raises :class:`InputError` naming the labels."""
        for c in self.columns:
            if c.label == label:
                return c
        raise InputError(
            f"no column {label!r} in the {self.name} {_zone_str(self.zone_axis)} "
            f"projection; available: {', '.join(self.labels)}"
        )

    def __str__(self) -> str:
        return describe(self)


def nearest_neighbour_A(cell: ProjectedCell, *, min_relative_contrast: float = 0.0) -> float:
    """Smallest distance between two distinct column positions, periodic images included.

    Parameters
    ----------
    cell : ProjectedCell
    min_relative_contrast : float
        Only columns at least this bright relative to the brightest take part (e.g. 0.3
        to ignore the weak pure-Br columns of CsPbBr3 [001]).

    Returns
    -------
    float
        Distance in Å.
    """
    keep = cell.relative_contrast() >= min_relative_contrast
    pos = cell.positions_A()[keep]
    return float(min(_pair_distances(cell, pos, pos).ravel()))


def pair_distance_A(cell: ProjectedCell, label1: str, label2: str) -> float:
    """Shortest in-plane distance between a column ``label1`` and a column ``label2``, Å.

    For equal labels this is the distance between two distinct columns of that type.
    """
    p1 = np.array([c.frac for c in cell.columns if c.label == label1]) @ cell.vectors_A
    p2 = np.array([c.frac for c in cell.columns if c.label == label2]) @ cell.vectors_A
    if len(p1) == 0 or len(p2) == 0:
        cell.column(label1 if len(p1) == 0 else label2)  # raises, naming the labels
    return float(_pair_distances(cell, p1, p2).min())


def _pair_distances(cell, p1, p2):
    """(len(p1), len(p2)) minimum distances over periodic images, excluding zero."""
    n = np.arange(-2, 3)
    shifts = np.stack(np.meshgrid(n, n, indexing="ij"), -1).reshape(-1, 2) @ cell.vectors_A
    d = p2[None, :, None, :] + shifts[None, None] - p1[:, None, None, :]
    r = np.linalg.norm(d, axis=-1)
    r[r < 1e-6] = np.inf
    return r.min(axis=-1)


def parse_ratio(ratio: str, cell: ProjectedCell) -> tuple:
    """The two column types named by a ratio string such as ``"Cs:PbBr"``.

    Each side is matched, in this order, to a column label (``PbBr``; case, spaces,
    ``-`` and ``/`` ignored, so ``Pb-Br`` and ``pb/br`` work), to a site name (``BX``),
    or to the element set of exactly one label ignoring counts (``O`` for ``O2``).

    Returns
    -------
    (ProjectedColumn, ProjectedColumn)
        Numerator and denominator.

    Raises
    ------
    InputError
        When a side names no column of ``cell`` (the message lists the labels), or both
        sides name the same column type.
    """
    parts = str(ratio).split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise InputError(
            f"ratio {ratio!r} must be 'NUMERATOR:DENOMINATOR', e.g. "
            f"'{':'.join(cell.labels[:2][::-1])}'"
        )
    num, den = (_match_column(p.strip(), cell) for p in parts)
    if num.label == den.label:
        raise InputError(f"ratio {ratio!r} names the same column type twice")
    return num, den


def _normalise(name):
    return "".join(ch for ch in name if ch not in " -/_").lower()


def _match_column(name, cell):
    for c in cell.columns:
        if c.label == name:
            return c
    for c in cell.columns:
        if _normalise(c.label) == _normalise(name):
            return c
    for c in cell.columns:
        if c.site == name:
            return c
    wanted = _element_set(name)
    hits = {c.label: c for c in cell.columns if wanted and set(c.composition) == wanted}
    if len(hits) == 1:
        return next(iter(hits.values()))
    raise InputError(
        f"no column {name!r} in the {cell.name} {_zone_str(cell.zone_axis)} "
        f"projection; available: {', '.join(cell.labels)}"
    )


def _element_set(name):
    import re

    from ase.data import atomic_numbers

    tokens = re.findall(r"([A-Z][a-z]?)\d*(?:\.\d+)?", name.replace("-", "").replace("/", ""))
    if not tokens or "".join(re.findall(r"[A-Za-z]", name)) != "".join(tokens):
        return set()
    return set(tokens) if all(t in atomic_numbers for t in tokens) else set()


# --------------------------------------------------------------------------- building


def load_structure(material):
    """An :class:`ase.Atoms` from a built-in name, a CIF (or any ASE-readable) path, or Atoms.

    Returns
    -------
    atoms : ase.Atoms
        A copy; the input is never modified.
    name : str
    """
    from ase import Atoms

    if isinstance(material, Atoms):
        return material.copy(), material.get_chemical_formula(mode="reduce")
    name = str(material)
    lowered = {k.lower(): k for k in BUILTIN_MATERIALS}
    if name in BUILTIN_MATERIALS or (name.lower() in lowered and not os.path.exists(name)):
        key = name if name in BUILTIN_MATERIALS else lowered[name.lower()]
        return builtin_structure(key), key
    if not os.path.exists(name):
        raise InputError(
            f"unknown material {name!r}: not a built-in "
            f"({', '.join(BUILTIN_MATERIALS)}) and no such file"
        )
    import ase.io

    try:
        atoms = ase.io.read(name)
    except Exception as exc:  # ASE raises many types for unreadable files
        reason = str(exc).strip() or f"not a structure file ({type(exc).__name__})"
        raise InputError(f"cannot read structure {name!r}: {reason}") from exc
    if isinstance(atoms, list):
        atoms = atoms[-1]
    return atoms, os.path.splitext(os.path.basename(name))[0]


def parse_zone_axis(zone) -> tuple:
    """A zone axis as a primitive integer triple.

    Accepts a sequence of 3 integers, a 4-index Miller-Bravais direction [UVTW] (converted
    to [2U+V, 2V+U, W]), or a string such as ``"001"``, ``"1-10"``, ``"[1 1 0]"``,
    ``"0,0,1"`` or ``"0001"``. Common factors are removed ([220] -> [110]).
    """
    if isinstance(zone, str):
        text = zone.strip().strip("[]<>()").strip()
        try:
            if any(sep in text for sep in ", "):
                values = [int(t) for t in text.replace(",", " ").split()]
            else:
                values, sign = [], 1
                for ch in text:
                    if ch == "-":
                        sign = -1
                        continue
                    values.append(sign * int(ch))
                    sign = 1
        except ValueError:
            raise InputError(f"zone axis {zone!r} is not [uvw] (e.g. 001, 1-10, '1 1 0')") from None
    else:
        try:
            values = [int(round(float(v))) for v in zone]
            if not np.allclose(values, np.asarray(zone, float)):
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"zone axis {zone!r} must be integers [uvw]") from None
    if len(values) == 4:
        U, V, T, W = values
        if U + V + T != 0:
            raise InputError(f"zone axis {zone!r}: Miller-Bravais [UVTW] needs U+V+T = 0")
        values = [2 * U + V, 2 * V + U, W]
    if len(values) != 3:
        raise InputError(f"zone axis {zone!r} must have 3 (or 4) indices")
    g = reduce(math.gcd, (abs(v) for v in values))
    if g == 0:
        raise InputError("zone axis [000] is not a direction")
    return tuple(v // g for v in values)


def _zone_str(zone):
    return "[" + "".join(str(v) if v >= 0 else f"-{-v}" for v in zone) + "]"


def _centring_translations(frac, numbers, cell, tol_A):
    """Fractional translations (mod 1) that map the structure onto itself, 0 included."""
    species, counts = np.unique(numbers, return_counts=True)
    rare = species[np.argmin(counts)]
    idx = np.flatnonzero(numbers == rare)
    candidates = (frac[idx] - frac[idx[0]]) % 1.0
    found = []
    for c in candidates:
        moved = (frac + c) % 1.0
        d = moved[:, None, :] - frac[None, :, :]
        d -= np.round(d)
        dist = np.linalg.norm(d @ cell, axis=-1)
        same = numbers[:, None] == numbers[None, :]
        if np.all(np.min(np.where(same, dist, np.inf), axis=1) < tol_A):
            c = np.where(np.abs(c - 1) < 1e-6, 0.0, c)
            if not any(np.allclose(c, f, atol=1e-4) for f in found):
                found.append(c)
    return np.array(found)


def _in_plane_basis(cell, centrings, t, e_z):
    """The two shortest non-collinear projected lattice vectors (3D, in-plane)."""
    proj = lambda v: v - np.outer(v @ e_z, e_z)  # noqa: E731
    t_len = np.linalg.norm(t)
    pmax = np.linalg.norm(proj(cell), axis=1).max()
    radius = math.hypot(pmax, t_len / 2) + 1e-6
    inv = np.linalg.inv(cell)
    bounds = [int(math.ceil(radius * np.linalg.norm(inv[:, i]))) + 1 for i in range(3)]
    if np.prod([2 * b + 1 for b in bounds]) * len(centrings) > 4_000_000:
        raise InputError("zone axis index too high for a projected cell")
    grids = np.meshgrid(*[np.arange(-b, b + 1) for b in bounds], indexing="ij")
    n = np.stack(grids, -1).reshape(-1, 3).astype(float)
    f = (n[:, None, :] + centrings[None]).reshape(-1, 3)
    v = f @ cell
    along = v @ e_z
    p = proj(v)
    length = np.linalg.norm(p, axis=1)
    keep = (np.abs(along) <= t_len / 2 + 1e-6) & (length > 1e-4) & (length <= pmax + 1e-6)
    p, length = p[keep], length[keep]
    # Prefer, among equally short vectors, the one closest in direction to the projection
    # of the structure's first cell vector that is not along the beam, so that a cubic
    # [001] cell keeps a along [100].
    ref = next(r for r in proj(cell) if np.linalg.norm(r) > 1e-4)
    ref = ref / np.linalg.norm(ref)
    cosang = (p @ ref) / length
    order = np.lexsort((-cosang, np.round(length, 6)))
    a = p[order[0]]
    e_x = a / np.linalg.norm(a)
    e_y = np.cross(e_z, e_x)
    cross = p @ e_y
    noncol = np.abs(cross) > 1e-4 * length
    cand = order[noncol[order]]
    b = p[cand[0]]
    if b @ e_y < 0:
        b = -b
    blen = np.linalg.norm(b)
    # In a centred choice (e.g. hexagonal) b and b - a are equally short: take gamma >= 90.
    if a @ b > 1e-6 and abs(np.linalg.norm(b - a) - blen) < 1e-6 * blen:
        b = b - a
    return a, b, e_x, e_y


def projected_cell(
    material="CsPbBr3",
    zone_axis=(0, 0, 1),
    *,
    lattice_constant_A=None,
    exponent=1.7,
    merge_tol_A=0.1,
) -> ProjectedCell:
    """Project a crystal along a zone axis into its 2D cell of atomic columns.

    Parameters
    ----------
    material : str or ase.Atoms
        Built-in name (see :data:`BUILTIN_MATERIALS`: ``CsPbBr3``, ``CsPbI3``,
        ``CsPbCl3``, ``SrTiO3``, ``MoS2`` (2H bulk), ``MoS2-1H`` (one layer), ``Si``,
        ``Au``), a path to a CIF (or any file ASE reads), or a periodic ase.Atoms.
    zone_axis : sequence of int or str
        Beam direction [uvw] in the basis of the structure's cell (see
        :func:`parse_zone_axis`).
    lattice_constant_A : float, optional
        Scales the structure isotropically so that its first cell vector has this length,
        Å (the cubic lattice constant of a perovskite).
    exponent : float
        n in the expected contrast sum(Z**n) per Å.
    merge_tol_A : float
        Atoms whose projected positions are closer than this (Å) form one column.

    Returns
    -------
    ProjectedCell

    Raises
    ------
    InputError
        Unknown material, unreadable file, non-periodic structure, zero zone axis.

    Examples
    --------
    >>> cell = projected_cell("CsPbBr3", "001")
    >>> [c.label for c in cell.columns]
    ['PbBr', 'Cs', 'Br', 'Br']
    >>> round(pair_distance_A(cell, "Cs", "PbBr"), 3)
    4.151
    """
    atoms, name = load_structure(material)
    zone = parse_zone_axis(zone_axis)
    cell = np.array(atoms.cell.array, float)
    if len(atoms) == 0 or not np.all(atoms.pbc) or abs(np.linalg.det(cell)) < 1e-6:
        raise InputError(f"structure {name!r} is not a periodic 3D crystal")
    if lattice_constant_A is not None:
        if not lattice_constant_A > 0:
            raise InputError(f"lattice constant must be positive, got {lattice_constant_A}")
        cell = cell * (float(lattice_constant_A) / np.linalg.norm(cell[0]))
    frac = atoms.get_scaled_positions(wrap=True)
    numbers = atoms.numbers.copy()
    occupancy = _site_occupancies(atoms)
    # Symmetry is judged on the sites as ASE built them (one atom per mixed site).
    species = np.array([hash(tuple(sorted(o.items()))) for o in occupancy])
    centrings = _centring_translations(frac, species, cell, merge_tol_A)

    # The shortest lattice vector along [uvw]: zone/k is one when it equals a centring
    # translation modulo the cell (k divides the number of centrings).
    zone_v = np.array(zone, float)
    k_best = 1
    for k in range(2, len(centrings) + 1):
        f = (zone_v / k) % 1.0
        d = f[None] - centrings
        if np.any(np.all(np.abs(d - np.round(d)) < 1e-6, axis=1)):
            k_best = k
    t = (zone_v / k_best) @ cell
    repeat = float(np.linalg.norm(t))
    e_z = t / repeat

    a3, b3, e_x, e_y = _in_plane_basis(cell, centrings, t, e_z)
    vectors = np.array([[a3 @ e_x, 0.0], [b3 @ e_x, b3 @ e_y]])
    vectors[np.abs(vectors) < 1e-10] = 0.0
    volume = abs(np.linalg.det(cell))
    # Each atom of the given cell stands for (lattice points per cell)^-1 of an atom per
    # primitive column cell (2D cell x repeat), which has the primitive volume.
    weight = abs(np.linalg.det(vectors)) * repeat / volume
    n_atoms_per_repeat = len(atoms) * weight
    if abs(n_atoms_per_repeat - round(n_atoms_per_repeat)) > 1e-3:
        raise InputError(
            f"{name}: inconsistent projection ({n_atoms_per_repeat:.3f} atoms "
            "per column cell); is the structure complete?"
        )

    xyz = frac @ cell
    inplane = np.stack([xyz @ e_x, xyz @ e_y], axis=1)
    uv = inplane @ np.linalg.inv(vectors)
    groups = _merge_columns(uv % 1.0, vectors, merge_tol_A)

    from ase.data import chemical_symbols

    roles = _perovskite_roles(atoms, cell, numbers)
    columns = []
    for members, centre in groups:
        comp = {}
        for m in members:
            for z, occ in occupancy[m].items():
                comp[z] = comp.get(z, 0.0) + weight * occ
        ordered = sorted(comp, reverse=True)
        composition = {chemical_symbols[z]: _tidy_count(comp[z]) for z in ordered}
        label = "".join(sym + _count_str(n) for sym, n in composition.items())
        contrast = sum(comp[z] * z**exponent for z in ordered) / repeat
        if roles:
            site = "".join(r for r in "ABX" if any(roles[r] == numbers[m] for m in members))
        else:
            site = label
        columns.append(
            ProjectedColumn(
                label=label,
                site=site,
                frac=centre,
                composition=composition,
                contrast=float(contrast),
            )
        )
    columns.sort(key=lambda c: (-round(c.contrast, 9), c.frac[0], c.frac[1]))
    vectors.setflags(write=False)
    return ProjectedCell(
        name=name,
        zone_axis=zone,
        vectors_A=vectors,
        repeat_A=repeat,
        columns=tuple(columns),
        exponent=float(exponent),
    )


def _site_occupancies(atoms):
    """{Z: occupancy} of every atom: 1 for its own element unless the file gave partial or
    mixed occupancies (ASE's CIF reader keeps them in ``info['occupancy']`` keyed by the
    ``spacegroup_kinds`` of the atoms, or by their tags)."""
    from ase.data import atomic_numbers

    plain = [{int(z): 1.0} for z in atoms.numbers]
    table = atoms.info.get("occupancy")
    if not table:
        return plain
    kinds = atoms.arrays.get("spacegroup_kinds", atoms.get_tags())
    out = []
    for atom, kind in zip(plain, kinds):
        occ = table.get(str(int(kind)), table.get(int(kind)))
        try:
            out.append({atomic_numbers[el]: float(v) for el, v in occ.items()} if occ else atom)
        except KeyError:
            out.append(atom)
    return out


def _merge_columns(uv, vectors, tol_A):
    """Group projected atoms (fractional uv in [0, 1)) closer than tol_A, periodically."""
    n = np.arange(-1, 2)
    images = np.stack(np.meshgrid(n, n, indexing="ij"), -1).reshape(-1, 2)
    groups = []  # [first uv, list of members, list of unwrapped uv]
    for i, p in enumerate(uv):
        for g in groups:
            d = p - g[0]
            d = d - np.round(d)
            shifted = d[None] + images
            dist = np.linalg.norm(shifted @ vectors, axis=1)
            j = int(np.argmin(dist))
            if dist[j] < tol_A:
                g[1].append(i)
                g[2].append(g[0] + shifted[j])
                break
        else:
            groups.append([p, [i], [p.copy()]])
    out = []
    for _, members, unwrapped in groups:
        centre = np.mean(unwrapped, axis=0) % 1.0
        centre = np.round(centre, 6) % 1.0
        centre[np.isclose(centre, 1.0)] = 0.0
        out.append((members, (float(centre[0]), float(centre[1]))))
    return out


def _tidy_count(n):
    return int(round(n)) if abs(n - round(n)) < 1e-6 else round(float(n), 4)


def _count_str(n):
    if n == 1:
        return ""
    return str(n) if isinstance(n, int) else f"{n:g}"


def _perovskite_roles(atoms, cell, numbers):
    """{'A': Z, 'B': Z, 'X': Z} for an ABX3 compound, else None.

    X is the element three times as abundant as the others; B is the cation closer to X
    (the octahedral site), A the other.
    """
    species, counts = np.unique(numbers, return_counts=True)
    if len(species) != 3:
        return None
    g = reduce(math.gcd, counts.tolist())
    reduced = sorted(zip((counts // g).tolist(), species.tolist()))
    if [r[0] for r in reduced] != [1, 1, 3]:
        return None
    x = reduced[2][1]
    c1, c2 = reduced[0][1], reduced[1][1]
    frac = np.mod(np.linalg.solve(cell.T, atoms.positions.T).T, 1.0)

    def shortest(z):
        d = frac[numbers == z][:, None, :] - frac[numbers == x][None, :, :]
        d -= np.round(d)
        return np.linalg.norm(d @ cell, axis=-1).min()

    b, a = (c1, c2) if shortest(c1) <= shortest(c2) else (c2, c1)
    return {"A": a, "B": b, "X": x}


# --------------------------------------------------------------------------- printing


def describe(cell: ProjectedCell) -> str:
    """A readable table of the projected cell: lattice, repeat and columns."""
    rel = cell.relative_contrast()
    lines = [
        f"{cell.name} {_zone_str(cell.zone_axis)}",
        f"  a = {cell.a_A:.4f} Å, b = {cell.b_A:.4f} Å, gamma = {cell.gamma_deg:.2f}°, "
        f"repeat along the beam = {cell.repeat_A:.4f} Å",
        f"  nearest-neighbour column distance = {nearest_neighbour_A(cell):.4f} Å; "
        f"contrast = sum Z^{cell.exponent:g} per Å",
    ]
    comps = [
        " ".join(f"{el}{'' if n == 1 else ' x' + str(n)}" for el, n in c.composition.items())
        for c in cell.columns
    ]
    wl = max([10] + [len(c.label) + 2 for c in cell.columns])
    ws = max([7] + [len(c.site) + 2 for c in cell.columns])
    wc = max([22] + [len(c) + 2 for c in comps])
    lines.append(
        f"  {'label':<{wl}}{'site':<{ws}}{'u':>8}{'v':>8}  "
        f"{'atoms per repeat':<{wc}}{'contrast/Å':>11}{'relative':>10}"
    )
    for c, comp, r in zip(cell.columns, comps, rel):
        lines.append(
            f"  {c.label:<{wl}}{c.site:<{ws}}{c.frac[0]:>8.4f}{c.frac[1]:>8.4f}  "
            f"{comp:<{wc}}{c.contrast:>11.2f}{r:>10.3f}"
        )
    labels = cell.labels
    pairs = [(l1, l2) for i, l1 in enumerate(labels) for l2 in labels[i + 1 :]]
    if pairs:
        lines.append(
            "  shortest distances: "
            + ", ".join(f"{l1}-{l2} {pair_distance_A(cell, l1, l2):.3f} Å" for l1, l2 in pairs)
        )
    return "\n".join(lines)


__all__ = [
    "ProjectedColumn",
    "ProjectedCell",
    "projected_cell",
    "parse_ratio",
    "parse_zone_axis",
    "nearest_neighbour_A",
    "pair_distance_A",
    "load_structure",
    "describe",
]
