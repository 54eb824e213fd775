"""Materials: every built-in crystal structure and its constants, defined once.

Every other module takes lattice constants and sites from here (the projected cells of
:mod:`stemqd.columns.cell`, the multislice slabs of :mod:`stemqd.simulation.structure`, the
AIMD dots of :mod:`stemqd.aimd.build` and the defaults of the synthetic images).
"""

from __future__ import annotations

import math

#: Cubic perovskites ABX3: name -> ((A, B, X) species, lattice constant a in Å). They are the cubic (Pm-3m) aristotypes; lattice constants at room temperature
#: (CsPbI3 and CsPbCl3: the high-temperature cubic phases).
PEROVSKITES = {
    "CsPbBr3": (("Cs", "Pb", "Br"), 5.87),
    "CsPbI3": (("Cs", "Pb", "I"), 6.29),
    "CsPbCl3": (("Cs", "Pb", "Cl"), 5.61),
    "SrTiO3": (("Sr", "Ti", "O"), 3.905),
}

#: Lattice constant of cubic CsPbBr3, Å (the study's material).
CSPBBR3_LATTICE_CONSTANT_A = PEROVSKITES["CsPbBr3"][1]

#: Sites of the cubic perovskite cell ABX3 with the B cation at the origin:
#: (role, fractional position). The A-origin setting of :func:`builtin_structure` is the
#: same cell shifted by (1/2, 1/2, 1/2).
PEROVSKITE_SITES = (
    ("B", (0.0, 0.0, 0.0)),
    ("X", (0.5, 0.0, 0.0)),
    ("X", (0.0, 0.5, 0.0)),
    ("X", (0.0, 0.0, 0.5)),
    ("A", (0.5, 0.5, 0.5)),
)


#: Orthorhombic CsPbBr3 at room temperature, Pnma in the standard setting (b is the doubled
#: pseudo-cubic axis; a and c are face diagonals of the pseudo-cubic cell): lattice
#: constants a, b, c in Å. Single-crystal X-ray refinement of Stoumpos et al., Cryst. Growth
#: Des. 13, 2722 (2013), COD 4510745.
CSPBBR3_PNMA_CELL_A = (8.2440, 11.7351, 8.1982)

#: Asymmetric unit of :data:`CSPBBR3_PNMA_CELL_A`: (element, fractional position), Wyckoff
#: sites Cs 4c, Pb 4a, Br1 4c, Br2 8d. Read from the 20-atom cell of
#: github.com/nlesc-nano/QDEX, benchmarks/bulk_bands/inputs_rt_structures/CsPbBr3_ortho/
#: cp2k_job.in (commit 7232d0c9), a CP2K input built from COD 4510745 at its lattice (that
#: repository's benchmarks/bulk_bands/README.md, step 6). Its cell is (c, a, b) of this
#: setting, so x, y, z here are its Cartesian y / a, z / b, x / c.
CSPBBR3_PNMA_SITES = (
    ("Cs", (0.5310, 0.25, 0.00702)),
    ("Pb", (0.0, 0.0, 0.0)),
    ("Br", (0.9963, 0.25, 0.9545)),
    ("Br", (0.29347, 0.47611, 0.20607)),
)

#: 2H-MoS2 (P6_3/mmc), a = 3.16 Å, c = 12.29 Å, S at z = 0.621 (Wyckoff 4f).
_MOS2_A, _MOS2_C, _MOS2_ZS = 3.16, 12.29, 0.621


def _perovskite(species, a):
    from ase.spacegroup import crystal

    # Pm-3m in the A-origin setting (A 1a (0,0,0), B 1b (1/2,1/2,1/2), X 3c (0,1/2,1/2)):
    # the first site of each role in PEROVSKITE_SITES, shifted by (1/2, 1/2, 1/2).
    first = {}
    for role, frac in PEROVSKITE_SITES:
        first.setdefault(role, tuple((f + 0.5) % 1.0 for f in frac))
    return crystal(
        list(species),
        basis=[first[role] for role in "ABX"],
        spacegroup=221,
        cellpar=[a, a, a, 90, 90, 90],
    )


def _cspbbr3_pnma():
    from ase.spacegroup import crystal

    a, b, c = CSPBBR3_PNMA_CELL_A
    return crystal(
        [el for el, _ in CSPBBR3_PNMA_SITES],
        basis=[frac for _, frac in CSPBBR3_PNMA_SITES],
        spacegroup=62,
        cellpar=[a, b, c, 90, 90, 90],
    )


def _mos2_2h():
    from ase.spacegroup import crystal

    return crystal(
        ["Mo", "S"],
        basis=[(1 / 3, 2 / 3, 0.25), (1 / 3, 2 / 3, _MOS2_ZS)],
        spacegroup=194,
        cellpar=[_MOS2_A, _MOS2_A, _MOS2_C, 90, 90, 120],
    )


def _mos2_1h():
    """One MoS2 layer repeated every bulk interlayer spacing (c/2) without rotation.

    Along [001] this gives the columns of a monolayer (Mo and S2), with contrast per Å
    taken over one layer period, 6.145 Å.
    """
    from ase import Atoms

    c = _MOS2_C / 2
    dz = (_MOS2_ZS - 0.25) * _MOS2_C  # S height above the Mo plane, Å
    cell = [[_MOS2_A, 0, 0], [-_MOS2_A / 2, _MOS2_A * math.sqrt(3) / 2, 0], [0, 0, c]]
    scaled = [(1 / 3, 2 / 3, 0.5), (2 / 3, 1 / 3, 0.5 + dz / c), (2 / 3, 1 / 3, 0.5 - dz / c)]
    return Atoms("MoS2", scaled_positions=scaled, cell=cell, pbc=True)


def _diamond_si():
    from ase.build import bulk

    return bulk("Si", "diamond", a=5.431, cubic=True)


def _fcc_au():
    from ase.build import bulk

    return bulk("Au", "fcc", a=4.078, cubic=True)


def _builtins():
    table = {name: (lambda s=s, a=a: _perovskite(s, a)) for name, (s, a) in PEROVSKITES.items()}
    table["CsPbBr3-Pnma"] = _cspbbr3_pnma
    table.update({"MoS2": _mos2_2h, "MoS2-1H": _mos2_1h, "Si": _diamond_si, "Au": _fcc_au})
    return table


#: Names accepted by :func:`stemqd.columns.cell.projected_cell` besides CIF paths and
#: ase.Atoms.
BUILTIN_MATERIALS = tuple(_builtins())


def builtin_structure(name):
    """The built-in crystal ``name`` (one of :data:`BUILTIN_MATERIALS`) as ase.Atoms."""
    return _builtins()[name]()


__all__ = [
    "BUILTIN_MATERIALS",
    "CSPBBR3_LATTICE_CONSTANT_A",
    "CSPBBR3_PNMA_CELL_A",
    "CSPBBR3_PNMA_SITES",
    "PEROVSKITES",
    "PEROVSKITE_SITES",
    "builtin_structure",
]
