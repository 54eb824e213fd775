"""CP2K readers on the real fixture (tests/aimd/fixtures/cp2k, made by simulations/cp2k/make_fixture.py)
and on format-exact synthetic logs written with CP2K's Fortran formats."""

import gzip
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.data import atomic_masses, atomic_numbers

from stemqd.aimd import read_ener, read_gaps, read_xyz_trajectory
from stemqd.aimd.readers import BOHR_PER_AUT_IN_A_PER_FS
from stemqd.aimd.units import HARTREE_EV
from stemqd.errors import InputError

FIX = Path(__file__).parent / "fixtures" / "cp2k"
PROJECT = "cspbbr3-md"


def _lines(run):
    with gzip.open(FIX / run / "md.out.gz", "rt") as fh:
        return fh.read().splitlines(keepends=True)


# ----------------------------------------------------------------------------- real fixture
@pytest.mark.parametrize("run", ["diag", "ot"])
def test_real_trajectories(run):
    pos = read_xyz_trajectory(FIX / run / f"{PROJECT}-pos-1.xyz")
    vel = read_xyz_trajectory(FIX / run / f"{PROJECT}-vel-1.xyz")
    ener = read_ener(FIX / run / f"{PROJECT}-1.ener")
    assert pos.symbols == ("Pb", "Br", "Br", "Br", "Cs") and vel.kind == "velocities"
    assert pos.values.shape == (21, 5, 3) and list(pos.step) == list(range(21))
    assert np.allclose(pos.time_fs, 10.0 * np.arange(21)) and pos.timestep_fs == 10.0
    # Same frames as ASE's extxyz reader (positions, title time).
    frames = ase.io.read(FIX / run / f"{PROJECT}-pos-1.xyz", ":", format="extxyz")
    assert np.array_equal(np.array([f.positions for f in frames]), pos.values)
    assert [f.info["time"] for f in frames] == list(pos.time_fs)
    # Velocities in Å/fs: the kinetic energy reproduces CP2K's .ener column to its digits.
    m = np.array([atomic_masses[atomic_numbers[s]] for s in vel.symbols])
    kin_ha = 0.5 * np.einsum("n,fna->f", m, vel.values**2) * 103642.69652680504 / HARTREE_EV / 1000
    assert list(ener.columns) == [
        "step",
        "time_fs",
        "kinetic_Ha",
        "temperature_K",
        "potential_Ha",
        "conserved_Ha",
        "used_time_s",
    ]
    assert np.allclose(kin_ha, ener["kinetic_Ha"], rtol=2e-6, atol=1e-9)
    assert np.allclose(pos.energy_Ha, ener["potential_Ha"], atol=1e-8)
    assert ener["temperature_K"].iloc[0] == pytest.approx(300.0)


def test_real_gaps_both_styles_agree():
    mo = read_gaps(FIX / "diag" / "md.out.gz", style="mo")
    cubes = read_gaps(FIX / "diag" / "md.out.gz", style="mo_cubes")
    ot = read_gaps(FIX / "ot" / "md.out.gz")
    assert ot.attrs["style"] == "mo_cubes"
    for g in (mo, cubes, ot):
        assert list(g["step"]) == list(range(21))
        assert np.allclose(g["time_fs"], 10.0 * np.arange(21))
    # Step 0 from the log itself: MO| Band gap 3.726241 eV, OT "HOMO - LUMO gap" 3.726241 eV.
    assert mo["gap_eV"].iloc[0] == pytest.approx(3.726241, abs=1e-9)
    assert ot["gap_eV"].iloc[0] == pytest.approx(3.726241, abs=1e-9)
    assert np.allclose(mo["gap_eV"], cubes["gap_eV"], atol=2e-6)
    assert np.allclose(cubes["gap_eV"], ot["gap_eV"], atol=1e-5)  # OT vs diagonalisation
    assert np.allclose(cubes["lumo_eV"] - cubes["homo_eV"], cubes["gap_eV"])


def test_mo_style_keeps_converged_block():
    """With diagonalisation the MO| table follows every SCF step; the last one counts."""
    lines = _lines("diag")
    marker = next(
        i
        for i, ln in enumerate(lines)
        if ln.startswith(" MD| Step number") and ln.split()[-1] == "1"
    )
    gaps_before = [
        float(ln.split()[-2]) for ln in lines[:marker] if ln.startswith(" MO| Band gap:")
    ]
    ini = next(i for i, ln in enumerate(lines) if ln.startswith(" MD_INI|"))
    n_ini = sum(1 for ln in lines[:ini] if ln.startswith(" MO| Band gap:"))
    assert len(gaps_before) - n_ini > 2  # several SCF-step tables in step 1
    assert read_gaps(FIX / "diag" / "md.out.gz", style="mo")["gap_eV"].iloc[1] == pytest.approx(
        gaps_before[-1]
    )


def test_truncated_log_drops_unfinished_step(tmp_path):
    lines = _lines("ot")
    last = max(i for i, ln in enumerate(lines) if ln.startswith(" MD| Step number"))
    cut = tmp_path / "cut.out"
    # Keep the SCF printout of step 20 but not its MD| marker: the step is unfinished.
    cut.write_text("".join(lines[: last - 2]))
    g = read_gaps(cut)
    assert list(g["step"]) == list(range(20))


def test_restart_repeating_steps(tmp_path):
    """A restart from step 10 repeats steps 10..20; the restarted values win."""
    lines = _lines("ot")
    start = next(
        i
        for i, ln in enumerate(lines)
        if ln.startswith(" MD| Step number") and ln.split()[-1] == "10"
    )
    first = "".join(lines)
    shifted = []
    for ln in lines[start + 1 :]:
        if ln.startswith(" HOMO - LUMO gap [eV] :"):
            ln = f" HOMO - LUMO gap [eV] :{float(ln.split()[-1]) + 0.5:12.6f}\n"
        shifted.append(ln)
    log = tmp_path / "restart.out"
    log.write_text(first + "".join(lines[: start + 1]) + "".join(shifted))
    base = read_gaps(FIX / "ot" / "md.out.gz")
    g = read_gaps(log)
    assert list(g["step"]) == list(range(21))
    assert np.allclose(g["gap_eV"].iloc[:11], base["gap_eV"].iloc[:11])
    assert np.allclose(g["gap_eV"].iloc[11:], base["gap_eV"].iloc[11:] + 0.5)
    # The same through two files, and for the XYZ and .ener readers.
    a, b = tmp_path / "a.out", tmp_path / "b.out"
    a.write_text(first)
    b.write_text("".join(lines[: start + 1]) + "".join(shifted))
    assert np.allclose(read_gaps([a, b])["gap_eV"], g["gap_eV"])
    text = (FIX / "ot" / f"{PROJECT}-pos-1.xyz").read_text().splitlines(keepends=True)
    frame = 7  # 5 atoms + 2 lines
    repeated = tmp_path / "r-pos-1.xyz"
    repeated.write_text("".join(text) + "".join(text[10 * frame :]))
    traj = read_xyz_trajectory(repeated)
    assert list(traj.step) == list(range(21))
    ener = (FIX / "ot" / f"{PROJECT}-1.ener").read_text().splitlines(keepends=True)
    (tmp_path / "r.ener").write_text("".join(ener) + "".join(ener[11:]))
    assert list(read_ener(tmp_path / "r.ener")["step"]) == list(range(21))


def test_truncated_frames(tmp_path):
    text = (FIX / "ot" / f"{PROJECT}-pos-1.xyz").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut-pos-1.xyz"
    cut.write_text("".join(text[:-2]) + text[-2][:20])
    with pytest.warns(UserWarning, match="truncated"):
        traj = read_xyz_trajectory(cut)
    assert len(traj) == 20
    ener = (FIX / "ot" / f"{PROJECT}-1.ener").read_text()
    (tmp_path / "cut.ener").write_text(ener[:-40])
    with pytest.warns(UserWarning, match="truncated"):
        assert len(read_ener(tmp_path / "cut.ener")) == 20


def test_missing_gap_lines_is_a_clear_error(tmp_path):
    lines = [ln for ln in _lines("ot") if not (ln.startswith(" HOMO - LUMO") or "subspace" in ln)]
    no_gap = tmp_path / "nogap.out"
    no_gap.write_text("".join(lines))
    with pytest.raises(InputError, match="no HOMO-LUMO gap printout"):
        read_gaps(no_gap)
    # Gap missing for some steps only.
    lines = _lines("ot")
    idx = [i for i, ln in enumerate(lines) if ln.startswith(" HOMO - LUMO")]
    drop = set(idx[3:5])
    partial = tmp_path / "partial.out"
    partial.write_text("".join(ln for i, ln in enumerate(lines) if i not in drop))
    # MO_CUBES eigenvalues still give the gap when the gap line alone is missing...
    assert len(read_gaps(partial)) == 21
    # ...but a step without any printout is an error unless dropped.
    blocks = [i for i, ln in enumerate(lines) if "Eigenvalues of the occupied subspace" in ln]
    kill = set()
    for b in blocks[3:5]:
        kill.update(range(b, b + 16))
    hole = tmp_path / "hole.out"
    hole.write_text("".join(ln for i, ln in enumerate(lines) if i not in kill))
    with pytest.raises(InputError, match="2 of 21 MD steps have no HOMO-LUMO gap"):
        read_gaps(hole)
    assert len(read_gaps(hole, missing="drop")) == 19
    with pytest.raises(InputError, match="no MD steps"):
        (tmp_path / "empty.out").write_text("nothing here\n")
        read_gaps(tmp_path / "empty.out")


# ----------------------------------------------------------------------------- format-exact
def _xyz_frame(step, time, energy, symbols, xyz):
    out = [f"{len(symbols):8d}", f" i = {step:8d}, time = {time:12.3f}, E = {energy:20.10f}"]
    out += [f" {s:<2s} " + "".join(f"{c:20.10f}" for c in row) for s, row in zip(symbols, xyz)]
    return "\n".join(out) + "\n"


def _mo_cubes_block(occ, lumo, gap_line=True):
    vals = "".join(
        f" {v:16.8f}" + ("\n" if (k + 1) % 4 == 0 else "") for k, v in enumerate(occ)
    ).rstrip("\n")
    text = (
        "  \n  Eigenvalues of the occupied subspace spin            1\n"
        " ---------------------------------------------\n" + vals + "\n"
        f" Fermi Energy [eV] : {occ[-1] * HARTREE_EV:11.6f}\n"
        "  Using OT eigensolver for additional unoccupied orbitals spin            1\n"
        "  Lowest Eigenvalues of the unoccupied subspace spin            1\n"
        " -----------------------------------------------------\n"
        "     1      0.1234E-02     -0.1201\n"
        " OT| Eigensolver reached convergence in 12 iterations\n"
        f" {lumo:16.8f}\n"
    )
    if gap_line:
        text += f"  \n {'HOMO - LUMO gap [eV] :'}{(lumo - occ[-1]) * HARTREE_EV:12.6f}\n"
    return text


def _md_block(step, time):
    return (
        " MD| ***************************************************************************\n"
        f" MD| Step number{step:64d}\n"
        f" MD| Time [fs]{time:66.6f}\n"
        f" MD| Conserved quantity [hartree]{-2345.1:43.12E}\n"
    )


def test_format_exact_fixture(tmp_path):
    symbols = ["Cs", "Pb", "Br"]
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(3, 3, 3)) * 3
    (tmp_path / "t-pos-1.xyz").write_text(
        "".join(
            _xyz_frame(100 + k, 1000.0 + 10 * k, -2345.6789012345 + k, symbols, xyz[k])
            for k in range(3)
        )
    )
    (tmp_path / "t-vel-1.xyz").write_text(
        "".join(
            _xyz_frame(100 + k, 1000.0 + 10 * k, -2345.6789012345, symbols, xyz[k] * 1e-3)
            for k in range(3)
        )
    )
    header = "#     Step Nr.          Time[fs]        Kin.[a.u.]          Temp[K]            Pot.[a.u.]        Cons Qty[a.u.]        UsedTime[s]\n"
    rows = "".join(
        f"{100 + k:10d}{1000.0 + 10 * k:20.6f}{0.543210987:20.9f}{10.012345678:20.9f}"
        f"{-2345.678901234:20.9f}{-2345.1:20.9f}{35.12:20.9f}\n"
        for k in range(3)
    )
    (tmp_path / "t-1.ener").write_text(header + rows)
    homo = [-0.38935241, -0.33071083, -0.26107110, -0.19987427, -0.180]
    gaps = [2.169895, 2.171234, 2.168001]
    log = ""
    for k, gap in enumerate(gaps):
        lumo = homo[-1] + gap / HARTREE_EV
        log += _mo_cubes_block(homo, lumo)
        log += _md_block(100 + k, 1000.0 + 10 * k) if k else " MD_INI| MD initialization\n"
    log += _mo_cubes_block(homo, homo[-1] + 0.1)  # unfinished step 103
    (tmp_path / "t.out").write_text(log)

    pos = read_xyz_trajectory(tmp_path / "t-pos-1.xyz")
    assert list(pos.step) == [100, 101, 102] and np.allclose(pos.values, xyz, atol=5e-11)
    assert np.allclose(pos.time_fs, [1000.0, 1010.0, 1020.0])
    assert [
        f.info["time"] for f in ase.io.read(tmp_path / "t-pos-1.xyz", ":", format="extxyz")
    ] == [1000.0, 1010.0, 1020.0]
    vel = read_xyz_trajectory(tmp_path / "t-vel-1.xyz")
    assert np.allclose(vel.values, xyz * 1e-3 * BOHR_PER_AUT_IN_A_PER_FS, atol=1e-9)
    ener = read_ener(tmp_path / "t-1.ener")
    assert list(ener["step"]) == [100, 101, 102] and ener["used_time_s"].iloc[0] == 35.12
    g = read_gaps(tmp_path / "t.out")
    assert list(g["step"]) == [100, 101, 102]  # MD_INI is the step before 101
    assert np.allclose(g["gap_eV"], gaps, atol=1e-12)
    assert np.allclose(g["time_fs"], [1000.0, 1010.0, 1020.0])
    assert np.allclose(g["homo_eV"], homo[-1] * HARTREE_EV)
    # Without the gap line (diagonalisation, spin-polarised) the eigenvalues give it.
    (tmp_path / "nogapline.out").write_text(log.replace(" HOMO - LUMO gap [eV] :", " (removed)"))
    assert np.allclose(read_gaps(tmp_path / "nogapline.out")["gap_eV"], gaps, atol=1e-6)


def test_spin_polarised_blocks(tmp_path):
    """UKS: one MO_CUBES block per spin; the gap is min LUMO - max HOMO over both spins."""

    def spin_block(spin, occ, lumo):
        return (
            f"  Eigenvalues of the occupied subspace spin{spin:13d}\n"
            " ---------------------------------------------\n"
            + "".join(f" {v:16.8f}" for v in occ)
            + "\n"
            f" Fermi Energy [eV] : {occ[-1] * HARTREE_EV:11.6f}\n"
            f"  Lowest Eigenvalues of the unoccupied subspace spin{spin:13d}\n"
            " -----------------------------------------------------\n"
            f" {lumo:16.8f}\n"
            f" HOMO - LUMO gap [eV] :{(lumo - occ[-1]) * HARTREE_EV:12.6f}\n"
        )

    log = ""
    for k in range(3):
        log += spin_block(1, [-0.30, -0.20 - 0.001 * k], -0.12) + spin_block(
            2, [-0.31, -0.22], -0.10
        )
        log += _md_block(k + 1, 10.0 * (k + 1))
    (tmp_path / "uks.out").write_text(log)
    g = read_gaps(tmp_path / "uks.out")
    assert np.allclose(
        g["gap_eV"], [(-0.12 - (-0.20 - 0.001 * k)) * HARTREE_EV for k in range(3)], atol=1e-9
    )
    mo = "".join(
        f" MO| {spin} EIGENVALUES AND OCCUPATION NUMBERS\n MO|\n"
        " MO|  Index      Eigenvalue [a.u.]        Eigenvalue [eV]             Occupation\n"
        + "".join(
            f" MO|{i:7d}{e:23.6f}{e * HARTREE_EV:23.6f}{o:23.6f}\n"
            for i, (e, o) in enumerate(rows, 1)
        )
        for spin, rows in (
            ("ALPHA", [(-0.2, 1.0), (-0.12, 0.0)]),
            ("BETA", [(-0.22, 1.0), (-0.10, 0.0)]),
        )
    ) + _md_block(1, 10.0)
    (tmp_path / "uks_mo.out").write_text(mo)
    g = read_gaps(tmp_path / "uks_mo.out", style="mo")
    assert g["gap_eV"].iloc[0] == pytest.approx(0.08 * HARTREE_EV, abs=1e-5)
