"""Cubic CsPbBr3 quantum dots for AIMD.

A dot of edge n is an n x n x n block of corner-sharing PbBr6 octahedra cut from cubic
CsPbBr3 (Pm-3m, a = 5.87 Å; Pb at 1a, Br at 3d, Cs at 1b), with every Cs A-site of the
(n+1)^3 shell around it except the 8 corners:

* N_Pb = n^3, N_Br = 3 n^2 (n+1), N_Cs = (n+1)^3 - 8,
* formal charge q = N_Cs + 2 N_Pb - N_Br = 3n - 7.

The core/shell variant replaces Pb by Ca in the outer ``shell_layers`` octahedral layers
(Ca2+ for Pb2+, so q is unchanged); with n = 6 and one layer that is the study's 3.6 nm
CsPbBr3/CsCaBr3 dot, 64 Pb in the core and 152 Ca in the shell.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import InputError
from ..files import atomic_write_text
from ..materials import CSPBBR3_LATTICE_CONSTANT_A, PEROVSKITE_SITES

#: Formal ionic charges used for the charge bookkeeping q = sum of formal charges.
FORMAL_CHARGE = {"Cs": 1, "Pb": 2, "Ca": 2, "Br": -1}

#: The study's cubic cell edge (nm) by dot edge n (sizes 1.8, 2.4, 3.0, 3.6, 4.2 nm).
STUDY_CELL_NM = {3: 5.0, 4: 6.0, 5: 7.0, 6: 7.5, 7: 7.5}

#: Shell compositions understood by ``shell=``: the B-site element replacing Pb.
SHELL_B_SITE = {"CsCaBr3": "Ca"}


def edge_from_size(size):
    """Number of octahedra along an edge for a nominal size.

    Parameters
    ----------
    size : str, float or int
        ``"3.6nm"``, ``"36A"``, a float in nm (``3.6``) or an integer edge n (``6``).

    Returns
    -------
    int
        n, the nearest integer to size / a (a = 5.87 Å); must be >= 1.
    """
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        n = int(size)
    else:
        text = str(size).strip().lower().replace(" ", "")
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)(nm|a|å)?", text)
        if not m:
            raise InputError(
                f"cannot read dot size {size!r}; use e.g. 3.6nm, 36A or an edge n like 6"
            )
        value = float(m.group(1))
        unit = m.group(2)
        if unit is None and value.is_integer() and "." not in text:
            n = int(value)
        else:
            length_A = value * (10.0 if unit in (None, "nm") else 1.0)
            n = int(round(length_A / CSPBBR3_LATTICE_CONSTANT_A))
    if n < 1:
        raise InputError(f"dot size {size!r} is smaller than one unit cell")
    return n


def cell_size_A(n, lattice_constant_A=CSPBBR3_LATTICE_CONSTANT_A, vacuum_nm=3.0):
    """Cubic cell edge (Å) for a dot of n octahedra.

    The study's cells (5.0/6.0/7.0/7.5/7.5 nm for n = 3..7) are used where defined; other
    sizes get the dot edge plus ``vacuum_nm``, rounded up to 0.5 nm.
    """
    n = int(n)
    if n in STUDY_CELL_NM:
        return STUDY_CELL_NM[n] * 10.0
    edge_nm = n * lattice_constant_A / 10.0 + vacuum_nm
    return float(np.ceil(edge_nm * 2.0) / 2.0) * 10.0


def depth_in_cells(positions, lattice_constant_A):
    """Depth of each atom below the dot surface, in unit cells (the layers of the RMSF).

    d_i = min over the 6 faces of (distance to the outermost atomic plane) / a, with the
    outermost planes taken as the extreme coordinates of the structure along x, y and z.
    """
    p = np.asarray(positions, dtype=float)
    lo, hi = p.min(axis=0), p.max(axis=0)
    return np.min(np.concatenate([p - lo, hi - p], axis=1), axis=1) / float(lattice_constant_A)


def dot_composition(n, shell_layers=0):
    """Atom counts and formal charge of an n-octahedra dot.

    Parameters
    ----------
    n : int
        Edge length in octahedra (unit cells).
    shell_layers : int
        Outer octahedral layers in which Ca replaces Pb (0: core-only dot).

    Returns
    -------
    dict
        ``{"Cs": ..., "Pb": ..., "Br": ..., "Ca": ..., "charge": q}`` with q = 3n - 7.
    """
    n = int(n)
    core = max(n - 2 * int(shell_layers), 0)
    counts = {
        "Cs": (n + 1) ** 3 - 8,
        "Pb": core**3,
        "Ca": n**3 - core**3,
        "Br": 3 * n * n * (n + 1),
    }
    counts["charge"] = sum(FORMAL_CHARGE[el] * c for el, c in counts.items() if el in FORMAL_CHARGE)
    return counts


def _fractional_sites(n):
    """Site coordinates in units of a, by role (B, X, A), for an n-octahedra dot.

    The cubic cell's sites (:data:`~stemqd.materials.PEROVSKITE_SITES`, B at the origin)
    on every lattice point, kept inside the block from -1/2 to n - 1/2 along each axis:
    n**3 B sites; the X sites of complete octahedra (shared between neighbours, terminal
    outside); and the A sites between them except the eight corners of the block.
    """
    lattice = np.stack(np.meshgrid(*[np.arange(-1, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = {"B": [], "X": [], "A": []}
    for role, frac in PEROVSKITE_SITES:
        p = lattice + np.asarray(frac)
        sites[role].append(p[np.all((p >= -0.5) & (p <= n - 0.5), axis=1)])
    pb, br, cs = (np.concatenate(sites[role]).astype(float) for role in "BXA")
    corner = np.all((cs == -0.5) | (cs == n - 0.5), axis=1)
    return pb, br, cs[~corner]


def build_dot(
    size,
    *,
    shell=None,
    shell_layers=1,
    lattice_constant_A=CSPBBR3_LATTICE_CONSTANT_A,
    vacuum_A=None,
    cell_A=None,
):
    """Build a cubic CsPbBr3 dot (or CsPbBr3/CsCaBr3 core/shell dot).

    Parameters
    ----------
    size : str, float or int
        Nominal size (``"3.6nm"``) or edge n in octahedra; see :func:`edge_from_size`.
    shell : str or None
        ``"CsCaBr3"`` replaces Pb by Ca in the outer ``shell_layers`` layers; None: core only.
    shell_layers : int
        Number of outer octahedral layers of the shell (the study uses 1).
    lattice_constant_A : float
        Cubic lattice constant a (Å).
    vacuum_A : float or None
        Not None: a cubic cell of the dot's extent plus this vacuum on every side.
    cell_A : float or None
        Edge of the cubic cell (Å). Default: the study's cell for this size
        (:func:`cell_size_A`). The dot is centred in the cell.

    Returns
    -------
    ase.Atoms
        Cs, Pb/Ca and Br positions (Å), non-periodic, centred in the cell. ``atoms.info``
        holds ``n``, ``charge`` (formal, 3n - 7), ``lattice_constant_A``, ``shell`` and
        ``shell_layers``; the array ``ideal_frac`` holds each atom's ideal site in units of a.
    """
    n = edge_from_size(size)
    if shell is not None and shell not in SHELL_B_SITE:
        raise InputError(f"unknown shell {shell!r}; known: {sorted(SHELL_B_SITE)}")
    if shell is not None and int(shell_layers) < 1:
        raise InputError("shell_layers must be >= 1 for a core/shell dot")
    pb, br, cs = _fractional_sites(n)
    b_symbols = np.array(["Pb"] * len(pb), dtype=object)
    if shell is not None:
        # Depth of a B site in octahedral layers from the outermost layer (0 = outermost).
        depth = np.min(np.concatenate([pb, n - 1 - pb], axis=1), axis=1)
        b_symbols[depth < int(shell_layers)] = SHELL_B_SITE[shell]
    frac = np.concatenate([cs, pb, br])
    symbols = ["Cs"] * len(cs) + list(b_symbols) + ["Br"] * len(br)
    a = float(lattice_constant_A)
    positions = frac * a
    if cell_A is None:
        if vacuum_A is not None:
            cell_A = (n * a) + 2.0 * float(vacuum_A)
        else:
            cell_A = cell_size_A(n, lattice_constant_A=a)
    atoms = Atoms(symbols=symbols, positions=positions, cell=[cell_A] * 3, pbc=False)
    # Centre the ideal block (its outer planes at -a/2 and (n - 1/2) a) in the cell.
    atoms.positions += 0.5 * cell_A - (n - 1) * a / 2.0
    atoms.set_array("ideal_frac", frac)
    counts = Counter(symbols)
    charge = sum(FORMAL_CHARGE[el] * c for el, c in counts.items())
    atoms.info.update(
        n=n,
        charge=int(charge),
        lattice_constant_A=a,
        shell=shell or "",
        shell_layers=int(shell_layers) if shell else 0,
    )
    return atoms


def formula(atoms):
    """Hill-like formula in the order Cs, Ca, Pb, Br (e.g. ``Cs56Ca26Pb1Br108``)."""
    counts = Counter(atoms.get_chemical_symbols())
    order = ["Cs", "Ca", "Pb", "Br"] + sorted(set(counts) - {"Cs", "Ca", "Pb", "Br"})
    return "".join(f"{el}{counts[el]}" for el in order if counts.get(el))


def write_structure(atoms, path):
    """Write a dot as XYZ or CIF (by suffix), atomically.

    Parameters
    ----------
    atoms : ase.Atoms
        The dot.
    path : str or Path
        ``.xyz`` (plain XYZ, Å, formula and charge in the title) or ``.cif``.
    """
    import io

    import ase.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".xyz":
        lines = [
            str(len(atoms)),
            f"{formula(atoms)} charge={atoms.info.get('charge', 0)} "
            f"cell={atoms.cell[0, 0]:.4f}A stemqd",
        ]
        lines += [
            f"{s:<2s} {x:16.8f} {y:16.8f} {z:16.8f}"
            for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)
        ]
        atomic_write_text(path, "\n".join(lines) + "\n")
    elif suffix == ".cif":
        buf = io.BytesIO()
        plain = Atoms(atoms.get_chemical_symbols(), atoms.positions, cell=atoms.cell, pbc=True)
        ase.io.write(buf, plain, format="cif")
        atomic_write_text(path, buf.getvalue().decode())
    else:
        raise InputError(f"{path}: unknown structure format {suffix!r}; use .xyz or .cif")
    return path


__all__ = [
    "FORMAL_CHARGE",
    "SHELL_B_SITE",
    "STUDY_CELL_NM",
    "build_dot",
    "cell_size_A",
    "depth_in_cells",
    "dot_composition",
    "edge_from_size",
    "formula",
    "write_structure",
]
