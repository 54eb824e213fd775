"""The trajectory policy of ``stemqd.aimd.trajectory`` called from Python on the real CP2K
fixture (tests/aimd/fixtures/cp2k): what it infers (time step, common frames, rigid-body choice,
alignment) against the fixture's own input and start structure, and the same numbers as the
CLI."""

import json
import re
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase.data import atomic_masses, atomic_numbers

from stemqd.aimd import (
    align_positions,
    choose_rigid_body,
    count_free_atoms,
    eckart_residual,
    gap_coupling,
    gap_dephasing,
    load_gap_series,
    load_trajectory,
    remove_rigid_body,
    rmsf,
    trajectory_dos,
    trajectory_rmsf,
)
from stemqd.cli import main
from stemqd.errors import InputError

FIX = Path(__file__).parent / "fixtures" / "cp2k"
POS, VEL = "cspbbr3-md-pos-1.xyz", "cspbbr3-md-vel-1.xyz"


def _frame_interval_fs(run):
    """TIMESTEP x the MD print interval of the trajectory, from the fixture's md.inp."""
    text = (FIX / run / "md.inp").read_text()
    timestep = float(re.search(r"^\s*TIMESTEP\s+(\S+)", text, re.M).group(1))
    each = int(re.search(r"&TRAJECTORY.*?&EACH\s+MD\s+(\d+)", text, re.S).group(1))
    return timestep * each


def _xyz_frames(path):
    """The frames of an XYZ file as lists of lines (count, title, atoms)."""
    lines = Path(path).read_text().splitlines(keepends=True)
    n = int(lines[0])
    return [lines[k : k + n + 2] for k in range(0, len(lines), n + 2)]


@pytest.mark.parametrize("run", ["ot", "diag"])
def test_time_step_and_atoms_inferred_from_the_files(run):
    traj = load_trajectory(FIX / run / POS, FIX / run / VEL)
    assert traj.dt_fs == _frame_interval_fs(run) == 10.0 and traj.dt_source == "frame times"
    start = ase.io.read(FIX / run / "dot.xyz")
    assert traj.symbols == tuple(start.get_chemical_symbols())
    assert np.array_equal(traj.masses, [atomic_masses[atomic_numbers[s]] for s in traj.symbols])
    assert len(traj) == 21 and list(traj.step) == list(range(21)) and traj.notes == ()
    # The folder form finds the same two files.
    found = load_trajectory(run_dir=FIX / run)
    assert [Path(f).name for f in found.files] == [POS, VEL]
    assert np.array_equal(found.velocities, traj.velocities)
    # A given dt wins and says so; skipped frames leave the spacing alone.
    given = load_trajectory(FIX / run / POS, dt_fs=5.0, skip_frames=3)
    assert (given.dt_fs, given.dt_source, given.step[0], len(given)) == (5.0, "given", 3, 18)
    assert given.velocities is None


def test_common_frames_of_position_and_velocity_files(tmp_path):
    vel = tmp_path / VEL
    vel.write_text("".join(line for frame in _xyz_frames(FIX / "ot" / VEL)[:15] for line in frame))
    traj = load_trajectory(FIX / "ot" / POS, vel)
    assert len(traj) == 15 and list(traj.step) == list(range(15))
    assert traj.notes == ("using the 15 steps present in both trajectories",)
    full = load_trajectory(FIX / "ot" / POS)
    assert np.array_equal(traj.positions, full.positions[:15])


def test_missing_frame_is_an_error_not_a_wrong_time_step(tmp_path):
    frames = _xyz_frames(FIX / "ot" / POS)
    pos = tmp_path / POS
    pos.write_text("".join(line for k, frame in enumerate(frames) if k != 7 for line in frame))
    with pytest.raises(InputError, match="not equally spaced"):
        load_trajectory(pos)
    # Given the time step, the user takes responsibility for the spacing.
    assert load_trajectory(pos, dt_fs=10.0).dt_fs == 10.0


def test_gap_series_time_step_from_the_log():
    gaps = load_gap_series(FIX / "ot" / "md.out.gz")
    assert gaps.dt_fs == _frame_interval_fs("ot") and gaps.dt_source == "time column"
    assert len(gaps) == 21 and gaps.gap_meV[0] == pytest.approx(3726.241)
    assert len(load_gap_series(FIX / "ot" / "md.out.gz", skip=3)) == 18
    with pytest.raises(InputError, match="need at least 8"):
        load_gap_series(FIX / "ot" / "md.out.gz", skip=14)


def test_gap_series_without_times_needs_dt(tmp_path):
    csv = tmp_path / "gap.csv"
    pd.DataFrame({"gap_eV": np.linspace(1.8, 1.9, 10)}).to_csv(csv, index=False)
    with pytest.raises(InputError, match="give it"):
        load_gap_series(csv)
    gaps = load_gap_series(csv, dt_fs=2.0)
    assert gaps.dt_source == "given" and gaps.gap_meV[-1] == pytest.approx(1900.0)


@pytest.mark.parametrize(
    ("vel", "from_positions", "align", "removal", "n_dof"),
    [
        (True, False, True, "eckart", 9),  # 3N - 6 for 5 atoms
        (True, False, False, "none-alignment-off", 15),
        (False, True, True, "kabsch-mean", 9),
        (False, True, False, "none-alignment-off", 15),
    ],
)
def test_rigid_body_choice_with_positions(vel, from_positions, align, removal, n_dof):
    traj = load_trajectory(FIX / "ot" / POS, FIX / "ot" / VEL if vel else None)
    choice = choose_rigid_body(traj, from_positions=from_positions, align=align)
    assert (choice.removal, choice.n_dof) == (removal, n_dof)
    assert choice.route == ("positions" if from_positions else "velocities")
    dos = trajectory_dos(traj, from_positions=from_positions, align=align)
    assert dos.table.attrs["integral"] == pytest.approx(n_dof)


def test_eckart_velocities_carry_no_momentum():
    traj = load_trajectory(FIX / "ot" / POS, FIX / "ot" / VEL)
    v = choose_rigid_body(traj).motion
    m = traj.masses
    momentum = np.einsum("n,fna->fa", m, traj.velocities)
    assert np.abs(momentum).max() > 1e-4  # CP2K's CSVR thermostat lets the cluster drift
    assert np.abs(np.einsum("n,fna->fa", m, v)).max() < 1e-12
    # No angular momentum about the centre of mass of the frames they are expressed in.
    x = remove_rigid_body(traj.positions, m, reference="first")["positions"]
    r = x - (np.einsum("n,fna->fa", m, x) / m.sum())[:, None]
    assert np.abs(np.einsum("n,fna->fa", m, np.cross(r, v))).max() < 1e-12


def test_kabsch_mean_positions_satisfy_the_eckart_condition():
    traj = load_trajectory(FIX / "ot" / POS)
    x = choose_rigid_body(traj, from_positions=True).motion
    assert np.abs(eckart_residual(x, x.mean(axis=0), traj.masses)).max() < 1e-9


def test_velocities_only_and_fixed_atoms(tmp_path):
    traj = load_trajectory(vel=FIX / "ot" / VEL)
    choice = choose_rigid_body(traj)
    assert (choice.removal, choice.n_dof) == ("none-no-positions", 15)
    assert np.array_equal(choice.motion, traj.velocities)
    # A frozen run: Pb (first atom) held fixed, v = 0 in every frame.
    frames = _xyz_frames(FIX / "ot" / VEL)
    vel = tmp_path / VEL
    vel.write_text("".join("".join(f[:2]) + " Pb 0.0 0.0 0.0\n" + "".join(f[3:]) for f in frames))
    assert count_free_atoms(vel) == 4
    frozen = choose_rigid_body(load_trajectory(FIX / "ot" / POS, vel))
    assert (frozen.removal, frozen.n_dof) == ("none-fixed-atoms", 12)
    with pytest.raises(InputError, match="--vel"):
        choose_rigid_body(load_trajectory(FIX / "ot" / POS))
    with pytest.raises(InputError, match="--pos"):
        choose_rigid_body(traj, from_positions=True)


def test_alignments_for_rmsf():
    traj = load_trajectory(FIX / "ot" / POS)
    mean = align_positions(traj)
    assert np.abs(mean.positions.mean(axis=0) - mean.reference).max() < 1e-9
    # No atom swaps places in 200 fs: ICP keeps the index matching and equals Kabsch on frame 0.
    icp = align_positions(traj, method="icp")
    first = remove_rigid_body(traj.positions, traj.masses, reference="first")["positions"]
    assert icp.note == "" and np.abs(icp.positions - first).max() < 1e-9
    none = trajectory_rmsf(traj, align="none")
    assert np.array_equal(none.per_atom["rmsf_A"], rmsf(traj.positions))
    with pytest.raises(InputError, match="alignment"):
        align_positions(traj, method="eckart")


def test_cli_and_library_give_the_same_files(tmp_path, capsys):
    pos, vel = FIX / "ot" / POS, FIX / "ot" / VEL
    traj = load_trajectory(pos, vel)
    dos = trajectory_dos(traj, smoothing_meV=0.5)
    assert (
        main(
            [
                "aimd",
                "dos",
                "--pos",
                str(pos),
                "--vel",
                str(vel),
                "--smoothing",
                "0.5",
                "-o",
                str(tmp_path / "dos"),
            ]
        )
        == 0
    )
    assert dos.report() in capsys.readouterr().out
    csv = tmp_path / "dos" / "dos.csv"
    assert csv.read_text() == dos.table.to_csv(index=False, float_format="%.10g")
    side = json.loads(csv.with_suffix(".json").read_text())
    assert side["results"] == dos.table.attrs
    assert side["parameters"]["dt_fs"] == traj.dt_fs

    res = trajectory_rmsf(traj, align="icp")
    assert main(["aimd", "rmsf", "--pos", str(pos), "--icp", "-o", str(tmp_path / "rmsf")]) == 0
    for name, table in (("rmsf_atoms.csv", res.per_atom), ("rmsf_layers.csv", res.layers)):
        text = (tmp_path / "rmsf" / name).read_text()
        assert text == table.to_csv(index=False, float_format="%.10g")

    # Huang-Rhys with the free atoms counted from the velocities (all 5 move).
    log = FIX / "ot" / "md.out.gz"
    hr = gap_coupling(load_gap_series(log), 300.0, n_free=count_free_atoms(vel))
    assert hr.n_free == 5
    argv = ["aimd", "huang-rhys", str(log), "--temperature", "300", "--vel", str(vel)]
    assert main([*argv, "-o", str(tmp_path / "hr")]) == 0
    assert hr.report() in capsys.readouterr().out
    for name, table in (("huang_rhys_spectrum", hr.spectrum), ("huang_rhys_windows", hr.windows)):
        text = (tmp_path / "hr" / f"{name}.csv").read_text()
        assert text == table.to_csv(index=False, float_format="%.10g")
    side = json.loads((tmp_path / "hr" / "huang_rhys_windows.json").read_text())
    assert side["results"] == hr.results()


def test_cli_and_library_dephasing(tmp_path, capsys):
    # A gap that fluctuates on ~50 fs, sampled every 2 fs: D(t) decays over many steps.
    rng = np.random.default_rng(1)
    n, dt = 2000, 2.0
    gap = 1850.0 + np.convolve(rng.normal(0, 30, n + 49), np.ones(50) / np.sqrt(50), "valid")
    csv = tmp_path / "gap.csv"
    pd.DataFrame({"time_fs": dt * np.arange(n), "gap_eV": gap / 1000}).to_csv(csv, index=False)
    gaps = load_gap_series(csv, skip=10)
    assert (gaps.dt_fs, gaps.dt_source, len(gaps)) == (dt, "time column", n - 10)
    both = gap_dephasing(gaps, max_time_fs=300.0)
    argv = ["aimd", "dephasing", str(csv), "--max-time", "300", "--skip-frames", "10"]
    assert main([*argv, "-o", str(tmp_path / "deph")]) == 0
    assert both.report() in capsys.readouterr().out
    for name, res in (("dephasing", both.dephasing), ("gap_histogram", both.histogram)):
        text = (tmp_path / "deph" / f"{name}.csv").read_text()
        assert text == res["table"].to_csv(index=False, float_format="%.10g")
    side = json.loads((tmp_path / "deph" / "dephasing.json").read_text())
    assert side["results"] == both.results() and side["parameters"]["dt_fs"] == dt
