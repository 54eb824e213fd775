"""CP2K input generation for the study's AIMD runs.

Settings: Quickstep GPW, PBE, GTH pseudopotentials with DZVP-MOLOPT-SR basis sets, 300 Ry
cutoff, SCF to 1e-8; cubic non-periodic cells of 5.0/6.0/7.0/7.5/7.5 nm for the 1.8 to
4.2 nm dots (Martyna-Tuckerman Poisson solver); BFGS geometry optimisation to a 24 meV/Å
maximum force; NVT MD with a CSVR thermostat and 10 fs steps, 3 ps equilibration with a
15 fs time constant and 10 ps production with 1 ps. HOMO and LUMO are printed every MD step
(``MO_CUBES`` without cubes and/or ``MO`` eigenvalues), and velocities are written.

Charge convention (atom counts in :mod:`stemqd.aimd.build`): the dot's formal ionic charge
is q = 3n - 7. With ``charge_mode="electrons"`` (default, as the study describes) CP2K gets
``CHARGE 0``, i.e. the q extra electrons sit in conduction-like states; ``"closed-shell"``
sets ``CHARGE q``. An odd electron count switches on UKS with the lowest multiplicity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write_text
from ..materials import CSPBBR3_LATTICE_CONSTANT_A
from .build import STUDY_CELL_NM, cell_size_A, depth_in_cells  # noqa: F401  (re-exported)
from .units import HARTREE_EV

#: Valence electrons of the GTH-PBE pseudopotentials in CP2K's GTH_POTENTIALS.
GTH_VALENCE = {"Cs": 9, "Pb": 4, "Br": 7, "Ca": 10, "H": 1, "C": 4, "N": 5, "O": 6}

BOHR_A = 0.529177210903

#: Thermostat time constants of the study's equilibration and production (fs).
TIMECON_EQUILIBRATION_FS = 15.0
TIMECON_PRODUCTION_FS = 1000.0


def electron_count(symbols, charge=0):
    """Number of valence electrons with GTH pseudopotentials for a given CP2K CHARGE."""
    try:
        return sum(GTH_VALENCE[s] for s in symbols) - int(charge)
    except KeyError as exc:
        raise InputError(f"no GTH valence known for element {exc.args[0]!r}") from None


def _ranges(indices):
    """CP2K LIST text of 1-based atom indices, compressed to ``a..b`` ranges."""
    idx = sorted({int(i) + 1 for i in indices})
    out, start, prev = [], None, None
    for i in idx:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}..{prev}" if prev > start else f"{start}")
            start = prev = i
    if start is not None:
        out.append(f"{start}..{prev}" if prev > start else f"{start}")
    # CP2K reads long keyword values over continuation lines ending in backslash.
    lines, line = [], ""
    for tok in out:
        if len(line) + len(tok) > 70:
            lines.append(line)
            line = ""
        line += (" " if line else "") + tok
    lines.append(line)
    return " \\\n            ".join(lines)


def frozen_indices(atoms, shell_cells, which="shell", lattice_constant_A=None):
    """Atoms held fixed in a frozen-shell or frozen-core run.

    Parameters
    ----------
    atoms : ase.Atoms
        The (ideal or optimised) dot.
    shell_cells : float
        Shell thickness in unit cells (the study uses 0.5, 1, 1.5, 2).
    which : {"shell", "core"}
        ``"shell"`` fixes the atoms with depth < shell_cells; ``"core"`` fixes the rest.
    lattice_constant_A : float, optional
        a (Å); default ``atoms.info["lattice_constant_A"]`` or cubic CsPbBr3's.

    Returns
    -------
    ndarray of int
        0-based indices of the fixed atoms.
    """
    a = lattice_constant_A or atoms.info.get("lattice_constant_A", CSPBBR3_LATTICE_CONSTANT_A)
    d = depth_in_cells(atoms.positions, a)
    # A small tolerance keeps atoms exactly at a half-cell depth (e.g. surface Pb at d = 1/2)
    # out of a 0.5-cell shell: "shell of t cells" means d < t.
    in_shell = d < float(shell_cells) - 1e-6
    if which == "shell":
        mask = in_shell
    elif which == "core":
        mask = ~in_shell
    else:
        raise InputError(f"frozen region must be 'shell' or 'core', not {which!r}")
    return np.flatnonzero(mask)


def cp2k_input(
    atoms,
    *,
    run_type="MD",
    project="dot",
    coord_file="dot.xyz",
    cutoff_Ry=300.0,
    rel_cutoff_Ry=60.0,
    eps_scf=1e-8,
    eps_default=1e-12,
    charge_mode="electrons",
    temperature_K=300.0,
    steps=300,
    timestep_fs=10.0,
    timecon_fs=TIMECON_EQUILIBRATION_FS,
    max_force_eV_A=0.024,
    fixed=None,
    mo_print=("MO_CUBES",),
    solver="OT",
    added_mos=4,
    mo_window=2,
    basis="DZVP-MOLOPT-SR-GTH",
    cell_A=None,
    periodic=False,
    restart_file=None,
    seed=None,
    pdos_each=None,
    pdos_nlumo=4,
    pdos_lists=None,
    populations=(),
):
    """Text of a CP2K input for geometry optimisation or NVT AIMD of a dot or a bulk cell.

    Parameters
    ----------
    atoms : ase.Atoms
        The dot; ``atoms.info["charge"]`` is its formal charge q (default 0).
    run_type : {"MD", "GEO_OPT"}
        NVT molecular dynamics or BFGS geometry optimisation.
    project : str
        CP2K project name (prefix of the ``-pos-1.xyz``, ``-vel-1.xyz``, ``-1.ener`` files).
    coord_file : str
        XYZ coordinate file the input refers to (write it with :func:`write_cp2k_inputs`).
    cutoff_Ry, rel_cutoff_Ry : float
        Plane-wave cutoff and relative cutoff of the multigrid (Ry).
    eps_scf : float
        SCF convergence (Hartree).
    eps_default : float
        Quickstep's default integral/density screening threshold (``QS/EPS_DEFAULT``).
    charge_mode : {"electrons", "closed-shell"}
        ``CHARGE 0`` (q extra electrons) or ``CHARGE q``; see the module notes.
    temperature_K, steps, timestep_fs, timecon_fs : float, int, float, float
        NVT target (K), number of steps, time step (fs) and CSVR time constant (fs).
    max_force_eV_A : float
        GEO_OPT maximum-force criterion (eV/Å); written in Hartree/bohr.
    fixed : array_like of int, optional
        0-based indices of atoms held fixed (frozen shell or core).
    mo_print : sequence of {"MO_CUBES", "MO"}
        HOMO/LUMO print styles, every MD step. ``"MO"`` needs diagonalisation.
    solver : {"OT", "DIAG"}
        OT minimisation, or Broyden-mixed diagonalisation with ``added_mos`` empty orbitals.
    mo_window : int
        The ``MO`` style prints only the orbitals HOMO-mo_window+1 ... LUMO+mo_window-1
        (``MO_INDEX_RANGE``); with diagonalisation it is printed after every SCF step, and a
        full list for a 1000-atom dot would swamp the log.
    basis : str
        Basis set name in BASIS_MOLOPT.
    cell_A : float, optional
        Cubic cell edge (Å); default ``atoms.cell[0, 0]``.
    periodic : bool
        ``False``: an isolated dot in a non-periodic cell (Martyna-Tuckerman Poisson solver).
        ``True``: a periodic bulk supercell (``PERIODIC XYZ``, plane-wave Poisson solver),
        as for the phonon rms displacements of the thickness series.
    restart_file : str, optional
        ``EXT_RESTART`` file to continue from (positions, velocities, thermostat).
    seed : int, optional
        Global random seed (initial velocities).
    pdos_each : int, optional
        Print the projected DOS (``DFT%PRINT%PDOS``: one ``*-k<kind>-1.pdos`` file per kind,
        one row per MO with its Löwdin-projected weight per angular momentum) every this
        many MD or GEO_OPT steps; read with :func:`stemqd.aimd.pdos.read_pdos_run`.
    pdos_nlumo : int
        Unoccupied orbitals included in the PDOS (``NLUMO``; at least 1 for the LUMO).
    pdos_lists : mapping of str to array_like of int, optional
        Named atom sets (0-based indices) projected as well (``&LDOS``, one
        ``*-list<k>-1.pdos`` file each); the names are recorded as ``# stemqd LDOS k NAME``
        comments that the reader maps back.
    populations : sequence of {"MULLIKEN", "LOWDIN"}
        Population analyses printed at the same steps as the PDOS (every step if no PDOS).
        CP2K's PDOS is a Löwdin projection, so the occupation-weighted PDOS weights of the
        occupied MOs add up to the ``LOWDIN`` populations.

    Returns
    -------
    str
        The input file text.
    """
    run_type = run_type.upper()
    if run_type not in ("MD", "GEO_OPT"):
        raise InputError(f"run_type must be MD or GEO_OPT, not {run_type!r}")
    solver = solver.upper()
    mo_print = tuple(s.upper() for s in mo_print)
    if "MO" in mo_print and solver != "DIAG":
        raise InputError("the MO print style needs solver='DIAG' (ADDED_MOS); use MO_CUBES with OT")
    symbols = atoms.get_chemical_symbols()
    q = int(atoms.info.get("charge", 0))
    if charge_mode == "electrons":
        charge = 0
    elif charge_mode == "closed-shell":
        charge = q
    else:
        raise InputError(f"charge_mode must be 'electrons' or 'closed-shell', not {charge_mode!r}")
    n_el = electron_count(symbols, charge)
    cell = float(cell_A if cell_A is not None else atoms.cell[0, 0])
    if cell <= 0:
        raise InputError("the cell edge must be positive; build the dot with a cell")

    lines = []
    add = lines.append
    add(f"# stemqd-generated CP2K input: {run_type}, {len(atoms)} atoms, formal charge q={q},")
    add(f"# CHARGE {charge} ({charge_mode}), {n_el} valence electrons")
    add("&GLOBAL")
    add(f"  PROJECT {project}")
    add(f"  RUN_TYPE {run_type}")
    add("  PRINT_LEVEL LOW")
    if seed is not None:
        add(f"  SEED {int(seed)}")
    add("&END GLOBAL")
    if restart_file:
        add("&EXT_RESTART")
        add(f"  RESTART_FILE_NAME {restart_file}")
        add("  RESTART_COUNTERS F")
        add("&END EXT_RESTART")
    add("&MOTION")
    if run_type == "MD":
        add("  &MD")
        add("    ENSEMBLE NVT")
        add(f"    STEPS {int(steps)}")
        add(f"    TIMESTEP {timestep_fs:g}")
        add(f"    TEMPERATURE {temperature_K:g}")
        add("    &THERMOSTAT")
        add("      TYPE CSVR")
        add("      REGION GLOBAL")
        add("      &CSVR")
        add(f"        TIMECON {timecon_fs:g}")
        add("      &END CSVR")
        add("    &END THERMOSTAT")
        add("  &END MD")
    else:
        add("  &GEO_OPT")
        add("    OPTIMIZER BFGS")
        add(f"    MAX_ITER {int(max(steps, 1))}")
        # 24 meV/Å in CP2K's internal Hartree/bohr.
        add(f"    MAX_FORCE {max_force_eV_A / HARTREE_EV * BOHR_A:.6e}")
        add("  &END GEO_OPT")
    if fixed is not None and len(fixed):
        add("  &CONSTRAINT")
        add("    &FIXED_ATOMS")
        add("      COMPONENTS_TO_FIX XYZ")
        add(f"      LIST {_ranges(fixed)}")
        add("    &END FIXED_ATOMS")
        add("  &END CONSTRAINT")
    add("  &PRINT")
    add("    &TRAJECTORY")
    add("      FORMAT XYZ")
    add("      &EACH")
    add(f"        {run_type} 1")
    add("      &END EACH")
    add("    &END TRAJECTORY")
    if run_type == "MD":
        add("    &VELOCITIES ON")
        add("      FORMAT XYZ")
        add("      &EACH")
        add("        MD 1")
        add("      &END EACH")
        add("    &END VELOCITIES")
    add("    &RESTART")
    add("      BACKUP_COPIES 0")
    add("      &EACH")
    add(f"        {run_type} 10")
    add("      &END EACH")
    add("    &END RESTART")
    add("    &RESTART_HISTORY OFF")
    add("    &END RESTART_HISTORY")
    add("  &END PRINT")
    add("&END MOTION")
    add("&FORCE_EVAL")
    add("  METHOD Quickstep")
    add("  &DFT")
    add("    BASIS_SET_FILE_NAME BASIS_MOLOPT")
    add("    POTENTIAL_FILE_NAME GTH_POTENTIALS")
    add(f"    CHARGE {charge}")
    if n_el % 2:
        add("    UKS")
        add("    MULTIPLICITY 2")
    add("    &MGRID")
    add(f"      CUTOFF {cutoff_Ry:g}")
    add(f"      REL_CUTOFF {rel_cutoff_Ry:g}")
    add("    &END MGRID")
    add("    &QS")
    add(f"      EPS_DEFAULT {eps_default:.1E}")
    add("    &END QS")
    add("    &POISSON")
    add(f"      PERIODIC {'XYZ' if periodic else 'NONE'}")
    add(f"      POISSON_SOLVER {'PERIODIC' if periodic else 'MT'}")
    add("    &END POISSON")
    add("    &SCF")
    add(f"      EPS_SCF {eps_scf:.1e}")
    add("      MAX_SCF 50")
    add("      SCF_GUESS ATOMIC")
    if solver == "OT":
        add("      &OT")
        add("        MINIMIZER DIIS")
        add("        PRECONDITIONER FULL_SINGLE_INVERSE")
        add("      &END OT")
        add("      &OUTER_SCF")
        add(f"        EPS_SCF {eps_scf:.1e}")
        add("        MAX_SCF 10")
        add("      &END OUTER_SCF")
    elif solver == "DIAG":
        add(f"      ADDED_MOS {int(added_mos)}")
        add("      &DIAGONALIZATION")
        add("        ALGORITHM STANDARD")
        add("      &END DIAGONALIZATION")
        add("      &MIXING")
        add("        METHOD BROYDEN_MIXING")
        add("        ALPHA 0.3")
        add("      &END MIXING")
    else:
        raise InputError(f"solver must be OT or DIAG, not {solver!r}")
    add("    &END SCF")
    add("    &XC")
    add("      &XC_FUNCTIONAL PBE")
    add("      &END XC_FUNCTIONAL")
    add("    &END XC")
    each = int(pdos_each) if pdos_each else 1
    if pdos_each is not None and each < 1:
        raise InputError(f"pdos_each must be a positive number of steps, not {pdos_each!r}")
    populations = tuple(p.upper() for p in populations)
    if set(populations) - {"MULLIKEN", "LOWDIN"}:
        raise InputError(f"populations must be MULLIKEN and/or LOWDIN, not {populations}")
    if mo_print or pdos_each or populations:
        add("    &PRINT")
        if "MO_CUBES" in mo_print:
            add("      &MO_CUBES")
            add("        NHOMO 1")
            add("        NLUMO 1")
            add("        WRITE_CUBE F")
            add("        &EACH")
            add(f"          {run_type} 1")
            add("        &END EACH")
            add("      &END MO_CUBES")
        if "MO" in mo_print:
            # RKS: HOMO index n_el/2; UKS (doublet): alpha (n_el+1)/2, beta (n_el-1)/2.
            lo = max(1, n_el // 2 - int(mo_window) + 1)
            hi = (n_el + 1) // 2 + int(mo_window)
            add("      &MO")
            add(f"        MO_INDEX_RANGE {lo} {hi}")
            add("        EIGENVALUES")
            add("        OCCUPATION_NUMBERS")
            add("        &EACH")
            add(f"          {run_type} 1")
            add("        &END EACH")
            add("      &END MO")
        if pdos_each:
            if int(pdos_nlumo) > int(added_mos) and solver == "DIAG":
                raise InputError(
                    f"pdos_nlumo={pdos_nlumo} needs at least as many ADDED_MOS ({added_mos})"
                )
            add("      &PDOS")
            add(f"        NLUMO {int(pdos_nlumo)}")
            add("        COMPONENTS F")
            # Without APPEND each print overwrites the file: keep every step's block.
            add("        APPEND T")
            add("        &EACH")
            add(f"          {run_type} {each}")
            add("        &END EACH")
            for k, (name, indices) in enumerate((pdos_lists or {}).items(), start=1):
                if not len(indices):
                    raise InputError(f"PDOS atom set {name!r} is empty")
                add(f"        # stemqd LDOS {k} {name}")
                add("        &LDOS")
                add(f"          LIST {_ranges(indices)}")
                add("        &END LDOS")
            add("      &END PDOS")
        for name in populations:
            add(f"      &{name} ON")
            add("        &EACH")
            add(f"          {run_type} {each}")
            add("        &END EACH")
            add(f"      &END {name}")
        add("    &END PRINT")
    add("  &END DFT")
    add("  &SUBSYS")
    add("    &CELL")
    add(f"      ABC {cell:.4f} {cell:.4f} {cell:.4f}")
    add(f"      PERIODIC {'XYZ' if periodic else 'NONE'}")
    add("    &END CELL")
    add("    &TOPOLOGY")
    add(f"      COORD_FILE_NAME {coord_file}")
    add("      COORD_FILE_FORMAT XYZ")
    add("    &END TOPOLOGY")
    for el in sorted(set(symbols)):
        if el not in GTH_VALENCE:
            raise InputError(f"no GTH-PBE pseudopotential known for {el!r}")
        add(f"    &KIND {el}")
        add(f"      BASIS_SET {basis}")
        add(f"      POTENTIAL GTH-PBE-q{GTH_VALENCE[el]}")
        add("    &END KIND")
    add("  &END SUBSYS")
    add("&END FORCE_EVAL")
    return "\n".join(lines) + "\n"


def write_cp2k_inputs(atoms, folder, *, stages=None, project="dot", **kwargs):
    """Write the coordinates and a chain of CP2K inputs (one per stage) into a folder.

    Parameters
    ----------
    atoms : ase.Atoms
        The dot.
    folder : str or Path
        Destination (created).
    stages : list of dict, optional
        Each dict gives ``name`` and :func:`cp2k_input` keywords for one stage; every stage
        after the first restarts from the previous one. Default :func:`study_stages`.
    project : str
        Project prefix; each stage's project is ``{project}-{name}``.
    **kwargs
        Defaults passed to every stage (e.g. ``cutoff_Ry``, ``charge_mode``, ``fixed``).

    Returns
    -------
    list of Path
        The input files written, in run order.
    """
    from .build import write_structure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_structure(atoms, folder / "dot.xyz")
    stages = stages if stages is not None else study_stages()
    written, previous = [], None
    for stage in stages:
        stage = dict(stage)
        name = stage.pop("name")
        params = {**kwargs, **stage}
        text = cp2k_input(
            atoms,
            project=f"{project}-{name}",
            coord_file="dot.xyz",
            restart_file=previous,
            **params,
        )
        path = folder / f"{name}.inp"
        atomic_write_text(path, text)
        written.append(path)
        previous = f"{project}-{name}-1.restart"
    script = [
        "#!/bin/sh",
        "# Run the stages in order; each restarts from the previous one.",
        "set -e",
        'CP2K="${CP2K:-cp2k}"',
        'export CP2K_DATA_DIR="${CP2K_DATA_DIR:-/usr/share/cp2k}"',
    ]
    script += [f'"$CP2K" -i {p.name} -o {p.stem}.out' for p in written]
    atomic_write_text(folder / "run.sh", "\n".join(script) + "\n")
    (folder / "run.sh").chmod(0o755)
    return written


def study_stages(
    temperature_K=300.0,
    equilibration_ps=3.0,
    production_ps=10.0,
    timestep_fs=10.0,
    cool_to_K=None,
    geo_opt=True,
):
    """The study's stage chain: GEO_OPT, NVT equilibration, (cooling), NVT production.

    Parameters
    ----------
    temperature_K : float
        Simulation temperature (K).
    equilibration_ps, production_ps : float
        Stage lengths (ps): 3 ps with a 15 fs CSVR time constant, then 10 ps with 1 ps.
    timestep_fs : float
        MD time step (fs).
    cool_to_K : float, optional
        Add a cooling stage (equilibration at ``cool_to_K`` with the 15 fs time constant,
        started from the ``temperature_K`` run), and collect production at ``cool_to_K``;
        the study cooled the largest dot from 300 K to 10 K.
    geo_opt : bool
        Start with a BFGS geometry optimisation.

    Returns
    -------
    list of dict
        Stages for :func:`write_cp2k_inputs`.
    """
    steps = lambda ps: int(round(ps * 1000.0 / timestep_fs))  # noqa: E731
    stages = []
    if geo_opt:
        stages.append({"name": "geo_opt", "run_type": "GEO_OPT", "steps": 500})
    stages.append(
        {
            "name": "equilibration",
            "run_type": "MD",
            "temperature_K": temperature_K,
            "steps": steps(equilibration_ps),
            "timestep_fs": timestep_fs,
            "timecon_fs": TIMECON_EQUILIBRATION_FS,
        }
    )
    final_T = temperature_K
    if cool_to_K is not None:
        final_T = cool_to_K
        stages.append(
            {
                "name": "cooling",
                "run_type": "MD",
                "temperature_K": cool_to_K,
                "steps": steps(equilibration_ps),
                "timestep_fs": timestep_fs,
                "timecon_fs": TIMECON_EQUILIBRATION_FS,
            }
        )
    stages.append(
        {
            "name": "production",
            "run_type": "MD",
            "temperature_K": final_T,
            "steps": steps(production_ps),
            "timestep_fs": timestep_fs,
            "timecon_fs": TIMECON_PRODUCTION_FS,
        }
    )
    return stages


__all__ = [
    "GTH_VALENCE",
    "TIMECON_EQUILIBRATION_FS",
    "cp2k_input",
    "electron_count",
    "frozen_indices",
    "study_stages",
    "write_cp2k_inputs",
]
