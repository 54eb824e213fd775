"""Dot construction (atom counts, formal charge q = 3n - 7) and CP2K input generation."""

import numpy as np
import pytest
from ase.spacegroup import crystal

from stemqd.aimd import build_dot, cell_size_A, cp2k_input, dot_composition, edge_from_size, formula
from stemqd.aimd.cp2k import electron_count, frozen_indices, study_stages, write_cp2k_inputs
from stemqd.errors import InputError

EXPECTED = {  # n: (Cs, Pb, Br, q)
    2: (19, 8, 36, -1),
    3: (56, 27, 108, 2),
    4: (117, 64, 240, 5),
    5: (208, 125, 450, 8),
}


@pytest.mark.parametrize("n", range(2, 8))
def test_composition_and_charge(n):
    atoms = build_dot(n)
    sym = np.array(atoms.get_chemical_symbols())
    counts = {el: int((sym == el).sum()) for el in ("Cs", "Pb", "Br")}
    assert counts == {"Cs": (n + 1) ** 3 - 8, "Pb": n**3, "Br": 3 * n * n * (n + 1)}
    assert atoms.info["charge"] == 3 * n - 7
    assert dot_composition(n)["charge"] == 3 * n - 7
    if n in EXPECTED:
        cs, pb, br, q = EXPECTED[n]
        assert (counts["Cs"], counts["Pb"], counts["Br"], atoms.info["charge"]) == (cs, pb, br, q)


@pytest.mark.parametrize("n", [3, 4])
def test_matches_ase_spacegroup_cut(n):
    """Independent construction: ase.spacegroup.crystal + repeat + mask."""
    a = 5.87
    bulk = crystal(
        ["Pb", "Br", "Cs"],
        [(0, 0, 0), (0.5, 0, 0), (0.5, 0.5, 0.5)],
        spacegroup=221,
        cellpar=[a, a, a, 90, 90, 90],
    )
    big = bulk.repeat((n + 2, n + 2, n + 2))
    big.positions -= a  # cells from -1 to n
    f = big.positions / a
    sym = np.array(big.get_chemical_symbols())
    lo, hi = -0.5 - 1e-6, n - 0.5 + 1e-6
    inside = np.all((f >= lo) & (f <= hi), axis=1)
    # Pb and Br only where they belong to the n^3 octahedra: Pb in [0, n-1]^3.
    pb_ok = (sym != "Pb") | np.all((f > -1e-6) & (f < n - 1 + 1e-6), axis=1)
    br_ok = (sym != "Br") | (np.sum(np.abs(f - np.round(f)) > 0.25, axis=1) == 1) & np.all(
        np.where(np.abs(f - np.round(f)) > 0.25, True, (f > -1e-6) & (f < n - 1 + 1e-6)), axis=1
    )
    corner = np.all(np.isclose(f, -0.5) | np.isclose(f, n - 0.5), axis=1)
    keep = inside & pb_ok & br_ok & ~corner
    ref = sorted((s, *np.round(p, 6)) for s, p in zip(sym[keep], f[keep]))
    dot = build_dot(n)
    mine = sorted(
        (s, *np.round(p, 6)) for s, p in zip(dot.get_chemical_symbols(), dot.arrays["ideal_frac"])
    )
    assert mine == ref


def test_core_shell_36nm():
    atoms = build_dot("3.6nm", shell="CsCaBr3")
    sym = np.array(atoms.get_chemical_symbols())
    assert (sym == "Pb").sum() == 64 and (sym == "Ca").sum() == 152
    assert atoms.info["charge"] == 3 * 6 - 7
    assert formula(atoms) == "Cs335Ca152Pb64Br756"
    # Ca exactly on the outer B-site layer: depth 0 from a face of the Pb/Ca sublattice.
    b = atoms.arrays["ideal_frac"][np.isin(sym, ["Pb", "Ca"])]
    depth = np.min(np.concatenate([b, 5 - b], axis=1), axis=1)
    assert np.all((depth == 0) == (sym[np.isin(sym, ["Pb", "Ca"])] == "Ca"))


@pytest.mark.parametrize("n", range(3, 8))
def test_core_shell_ca_count(n):
    assert dot_composition(n, 1)["Ca"] == n**3 - (n - 2) ** 3
    assert (
        np.array(build_dot(n, shell="CsCaBr3").get_chemical_symbols()) == "Ca"
    ).sum() == n**3 - (n - 2) ** 3


def test_sizes_and_cells():
    assert [edge_from_size(s) for s in ("1.8nm", "2.4nm", "3.0nm", "3.6nm", "4.2nm")] == [
        3,
        4,
        5,
        6,
        7,
    ]
    assert edge_from_size("35.2A") == 6 and edge_from_size(6) == 6 and edge_from_size("6") == 6
    assert [cell_size_A(n) / 10 for n in range(3, 8)] == [5.0, 6.0, 7.0, 7.5, 7.5]
    atoms = build_dot(3)
    centre = 0.5 * (atoms.positions.min(0) + atoms.positions.max(0))
    assert np.allclose(centre, atoms.cell[0, 0] / 2)
    with pytest.raises(InputError):
        edge_from_size("big")
    with pytest.raises(InputError):
        build_dot(3, shell="CsSrBr3")


def test_write_structures(tmp_path):
    import ase.io

    from stemqd.aimd import write_structure

    atoms = build_dot(3)
    for suffix in ("xyz", "cif"):
        path = write_structure(atoms, tmp_path / f"dot.{suffix}")
        back = ase.io.read(path)
        assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
        assert np.allclose(back.positions, atoms.positions, atol=1e-4)


def test_cp2k_input_settings():
    atoms = build_dot(4)
    text = cp2k_input(atoms, run_type="MD", fixed=frozen_indices(atoms, 1.0, "shell"))
    for key in (
        "CUTOFF 300",
        "EPS_SCF 1.0e-08",
        "TYPE CSVR",
        "TIMESTEP 10",
        "TIMECON 15",
        "XC_FUNCTIONAL PBE",
        "POTENTIAL GTH-PBE-q9",
        "BASIS_SET DZVP-MOLOPT-SR-GTH",
        "&VELOCITIES ON",
        "&MO_CUBES",
        "NLUMO 1",
        "WRITE_CUBE F",
        "FIXED_ATOMS",
        "PERIODIC NONE",
        "ABC 60.0000",
    ):
        assert key in text, key
    # q = +5 for n = 4; CHARGE 0 leaves an odd electron count -> UKS doublet.
    assert electron_count(atoms.get_chemical_symbols(), 0) % 2 == 1
    assert "CHARGE 0" in text and "UKS" in text
    closed = cp2k_input(atoms, charge_mode="closed-shell")
    assert "CHARGE 5" in closed and "UKS" not in closed
    geo = cp2k_input(atoms, run_type="GEO_OPT")
    assert "OPTIMIZER BFGS" in geo and "MAX_FORCE 4.667257e-04" in geo  # 24 meV/Å in Ha/bohr
    mo = cp2k_input(atoms, solver="DIAG", mo_print=("MO",))
    assert "ADDED_MOS" in mo and "MO_INDEX_RANGE" in mo
    with pytest.raises(InputError):
        cp2k_input(atoms, mo_print=("MO",))  # MO needs diagonalisation


def test_cp2k_input_periodic_bulk():
    """The bulk supercell behind the frozen-phonon sigmas: periodic cell and Poisson solver,
    no MO printout, the screening threshold as given."""
    from stemqd.simulation import cspbbr3_slab

    bulk = cspbbr3_slab(2, cells=2)
    text = cp2k_input(bulk, periodic=True, mo_print=(), cutoff_Ry=200, eps_default=1e-10)
    assert text.count("PERIODIC XYZ") == 2 and "PERIODIC NONE" not in text
    assert "POISSON_SOLVER PERIODIC" in text and "POISSON_SOLVER MT" not in text
    assert "ABC 11.7400 11.7400 11.7400" in text and "EPS_DEFAULT 1.0E-10" in text
    assert "CHARGE 0" in text and "UKS" not in text and "MO_CUBES" not in text  # Cs8Pb8Br24


def test_frozen_regions_and_stages(tmp_path):
    atoms = build_dot(5)
    shell = frozen_indices(atoms, 1.0, "shell")
    core = frozen_indices(atoms, 1.0, "core")
    assert len(shell) + len(core) == len(atoms) and not set(shell) & set(core)
    sym = np.array(atoms.get_chemical_symbols())
    # A one-cell shell holds all Pb of the outer octahedral layer: 5^3 - 3^3.
    assert (sym[shell] == "Pb").sum() == 125 - 27
    half = frozen_indices(atoms, 0.5, "shell")
    assert not np.any(sym[half] == "Pb")
    stages = study_stages(cool_to_K=10.0)
    assert [s["name"] for s in stages] == ["geo_opt", "equilibration", "cooling", "production"]
    assert stages[1]["steps"] == 300 and stages[1]["timecon_fs"] == 15.0
    assert stages[-1]["steps"] == 1000 and stages[-1]["timecon_fs"] == 1000.0
    assert stages[-1]["temperature_K"] == 10.0
    paths = write_cp2k_inputs(atoms, tmp_path, stages=stages, fixed=shell)
    assert [p.name for p in paths] == [
        "geo_opt.inp",
        "equilibration.inp",
        "cooling.inp",
        "production.inp",
    ]
    assert "dot-cooling-1.restart" in paths[-1].read_text()
    assert (tmp_path / "run.sh").exists() and (tmp_path / "dot.xyz").exists()
