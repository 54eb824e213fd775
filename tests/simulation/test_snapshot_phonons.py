"""Tests of stemqd.snapshot_phonons: MD snapshots as frozen-phonon configurations.

A synthetic 2 x 2 x 2 "trajectory" with a planted displacement field (a static staggered
pattern plus random motion and a centre-of-mass drift) is the ground truth.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import write
from scipy.spatial import cKDTree

from stemqd import simulation as sim
from stemqd.aimd import element_msd, read_xyz_trajectory
from stemqd.cli import main
from stemqd.errors import InputError
from stemqd.simulation.snapshot_phonons import cubic_operations, snapshot_phonons

A_MD = 6.0
N = 2
SIGMA = {"Cs": 0.25, "Pb": 0.12, "Br": 0.3}
AIMD_RUN = Path(__file__).parents[2] / "simulations/reference/cspbbr3_bulk_aimd/a6.00"


def _ideal():
    """2 x 2 x 2 periodic supercell in the slab's site convention (Pb at the origin)."""
    atoms = sim.cspbbr3_slab(N, lattice_constant_A=A_MD, cells=N, slices_per_cell=2)
    atoms.positions -= atoms.positions[0]
    atoms.set_array("stemqd_cell", np.floor(atoms.positions / A_MD + 1e-6).astype(int) % N)
    return atoms


@pytest.fixture(scope="module")
def md_run(tmp_path_factory):
    """Trajectory file, ideal sites file and the planted displacements (COM-free)."""
    folder = tmp_path_factory.mktemp("md")
    ideal = _ideal()
    symbols = ideal.get_chemical_symbols()
    rng = np.random.default_rng(5)
    n_frames = 12
    sigma = np.array([SIGMA[s] for s in symbols])
    # A static pattern that alternates between neighbouring cells (like an anti-phase tilt).
    cell = ideal.get_array("stemqd_cell")
    stagger = (-1.0) ** cell.sum(axis=1)
    static = 0.4 * stagger[:, None] * np.array([0.0, 1.0, 0.5])[None]
    planted = static + sigma[None, :, None] * rng.standard_normal((n_frames, len(ideal), 3))
    drift = np.cumsum(rng.normal(0, 0.05, (n_frames, 1, 3)), axis=0)
    masses = ideal.get_masses()
    w = masses / masses.sum()
    planted -= np.einsum("n,fna->fa", w, planted)[:, None, :]
    frames = ideal.positions + planted + drift
    lines = []
    for f, x in enumerate(frames):
        lines += [str(len(x)), f" i = {f}, time = {10.0 * f:.3f}, E = -100.0"]
        lines += [f"{s} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f}" for s, p in zip(symbols, x)]
    traj = folder / "run-pos-1.xyz"
    traj.write_text("\n".join(lines) + "\n")
    sites = folder / "dot.xyz"
    write(sites, ideal)
    return traj, sites, planted, ideal


def test_cubic_operations_are_the_48_signed_permutations():
    ops = cubic_operations()
    assert ops.shape == (48, 3, 3)
    assert np.array_equal(ops[0], np.eye(3, dtype=int))
    assert len({g.tobytes() for g in ops}) == 48
    for g in ops:
        np.testing.assert_array_equal(g @ g.T, np.eye(3))


def test_snapshot_field_recovers_the_planted_displacements(md_run):
    traj, sites, planted, ideal = md_run
    ph = snapshot_phonons(traj, sites, target_lattice_constant_A=A_MD)
    cell = np.mod(ideal.get_array("stemqd_cell"), N)
    site = ideal.get_array("stemqd_site")
    got = ph.displacements[:, cell[:, 0], cell[:, 1], cell[:, 2], site]
    np.testing.assert_allclose(got, planted, atol=1e-8)
    assert ph.source["supercell"] == N and ph.source["md_lattice_constant_A"] == A_MD
    assert ph.source["frames"] == len(planted)
    # Its per-element rms is the cubic-site sigma of element_msd.
    x = read_xyz_trajectory(traj)
    msd = element_msd(x.values, x.symbols, reference=ideal.positions, n_blocks=2)
    for el, rms in ph.rms_A().items():
        assert rms == pytest.approx(msd.loc[el, "sigma_A"], abs=1e-9)
    # About the mean positions: the thermal sigma, and no static offset left at any site.
    thermal = snapshot_phonons(traj, sites, target_lattice_constant_A=A_MD, about="mean")
    msd = element_msd(x.values, x.symbols, n_blocks=2)
    for el, rms in thermal.rms_A().items():
        assert rms == pytest.approx(msd.loc[el, "sigma_A"], abs=1e-9)
    np.testing.assert_allclose(thermal.displacements.mean(axis=0), 0, atol=1e-9)
    assert thermal.source["displacements_about"] == "mean positions"
    with pytest.raises(InputError, match="about"):
        snapshot_phonons(traj, sites, about="origin")
    # Homologous scaling to another lattice constant.
    scaled = snapshot_phonons(traj, sites, target_lattice_constant_A=5.87)
    np.testing.assert_allclose(scaled.displacements, ph.displacements * 5.87 / A_MD)


@pytest.mark.parametrize(
    "op, shift", [(0, (1, 0, 0)), (5, (0, 0, 0)), (17, (1, 1, 0)), (47, (0, 1, 1))]
)
def test_transformed_field_is_the_rotated_and_translated_crystal(md_run, op, shift):
    """The field after operation g and translation t is the displaced crystal g x + t a."""
    traj, sites, _, ideal = md_run
    ph = snapshot_phonons(traj, sites, target_lattice_constant_A=A_MD)
    cell = np.mod(ideal.get_array("stemqd_cell"), N)
    site = ideal.get_array("stemqd_site")
    g = cubic_operations()[op]
    box = N * A_MD
    f = 3
    moved = ideal.positions + ph.displacements[f, cell[:, 0], cell[:, 1], cell[:, 2], site]
    expected = np.mod(moved @ g.T + A_MD * np.array(shift), box)
    field = ph.transformed([f], op, shift)[0]
    got = np.mod(ideal.positions + field[cell[:, 0], cell[:, 1], cell[:, 2], site], box)
    dist, idx = cKDTree(expected, boxsize=box).query(got)
    assert dist.max() < 1e-9
    assert np.array_equal(
        np.array(ideal.get_chemical_symbols())[idx], np.array(ideal.get_chemical_symbols())
    )


def test_configurations_tile_the_supercell_and_draw_a_frame_per_block(md_run):
    traj, sites, _, _ = md_run
    ph = snapshot_phonons(traj, sites, target_lattice_constant_A=A_MD)
    slab = sim.cspbbr3_slab(6, lattice_constant_A=A_MD, cells=4)
    moved = ph(slab, seed=1, config=4)
    disp = moved.positions - slab.positions
    box = np.diag(slab.cell)[:2]
    disp[:, :2] = (disp[:, :2] + box / 2) % box - box / 2
    cell = slab.get_array("stemqd_cell")
    site = slab.get_array("stemqd_site")
    key = {(*c, s): d for c, s, d in zip(map(tuple, cell), site, disp)}
    # Laterally periodic with the supercell ...
    for (i, j, k, s), d in key.items():
        if (i + N, j, k, s) in key:
            np.testing.assert_allclose(key[(i + N, j, k, s)], d)
    # ... and each block of N cells along z draws its own frame.
    blocks = [np.array([d for (i, j, k, s), d in key.items() if k // N == b]) for b in range(3)]
    assert not np.allclose(blocks[0], blocks[1]) or not np.allclose(blocks[1], blocks[2])
    # Deterministic in (seed, config).
    np.testing.assert_array_equal(ph(slab, seed=1, config=4).positions, moved.positions)
    assert not np.array_equal(ph(slab, seed=1, config=5).positions, moved.positions)
    with pytest.raises(InputError, match="whole number"):
        ph(sim.cspbbr3_slab(2, lattice_constant_A=A_MD, cells=3), seed=0, config=0)


def test_ensemble_over_configurations_has_no_static_offset(md_run):
    """Random cubic operations average the planted static pattern out of every site."""
    traj, sites, _, _ = md_run
    ph = snapshot_phonons(traj, sites, target_lattice_constant_A=A_MD)
    slab = sim.cspbbr3_slab(2, lattice_constant_A=A_MD, cells=4)
    disp = np.array([ph(slab, 0, c).positions - slab.positions for c in range(1600)])
    box = np.diag(slab.cell)[:2]
    disp[..., :2] = (disp[..., :2] + box / 2) % box - box / 2
    rms = np.sqrt((disp**2).mean())
    assert np.abs(disp.mean(axis=0)).max() < 0.15 * rms


def test_bad_sites_are_rejected(md_run, tmp_path):
    traj, _, _, ideal = md_run
    shifted = ideal.copy()
    shifted.positions[3] += [0.6, 0.0, 0.0]
    bad = tmp_path / "bad.xyz"
    write(bad, shifted)
    with pytest.raises(InputError, match="ideal cubic sites"):
        snapshot_phonons(traj, bad)
    swapped = ideal.copy()
    swapped.numbers[[0, 4]] = swapped.numbers[[4, 0]]
    write(bad, swapped)
    with pytest.raises(InputError):
        snapshot_phonons(traj, bad)


def test_the_committed_aimd_run_gives_its_cubic_site_sigmas():
    ph = snapshot_phonons(
        AIMD_RUN / "bulk-production-pos-1.xyz.gz",
        AIMD_RUN / "dot.xyz",
        target_lattice_constant_A=6.0,
    )
    sigmas = json.loads((AIMD_RUN / "phonon_sigmas.json").read_text())["sigma_A"]
    for el, rms in ph.rms_A().items():
        assert rms == pytest.approx(sigmas[el], abs=1e-4)


def test_series_hook_uses_the_snapshots_and_keys_the_checkpoint(md_run, tmp_path):
    """A zero field gives the static lattice exactly; the checkpoint key names the source."""
    traj, sites, _, _ = md_run
    ph = snapshot_phonons(traj, sites, target_lattice_constant_A=5.87)
    still = type(ph)(displacements=np.zeros_like(ph.displacements), source=ph.source)
    p = sim.SeriesParameters(
        thicknesses_uc=(2,),
        cells=4,
        sampling_factor=1.0,
        focal_nodes=1,
        scan_per_cell=8,
        phonon_sigmas_A={"Cs": 0, "Pb": 0, "Br": 0},
    )
    np.testing.assert_allclose(
        sim.simulate_scans(p, [0], seed=0, phonons=still),
        sim.simulate_scans(p, [0], seed=0),
        rtol=1e-6,
        atol=1e-7,
    )
    assert sim.files.params_key(p, 0, ph.key) != sim.files.params_key(p, 0)
    assert sim.files.phonons_key({"phonons": ph.source}) == ph.key
    assert sim.files.phonons_key({"phonons": {"model": "Einstein"}}) is None


def test_cli_runs_the_series_on_md_snapshots_and_records_the_source(md_run, tmp_path, capsys):
    traj, sites, _, _ = md_run
    out = tmp_path / "md.csv"
    common = [
        "simulate",
        "thickness-series",
        "--out",
        str(out),
        "--thicknesses",
        "2,4",
        "--scan-per-cell",
        "8",
        "--sampling-factor",
        "1",
        "--plot",
        "none",
        "--device",
        "cpu",
        "--configs",
        "2",
        "--md-snapshots",
        str(traj),
        str(sites),
    ]
    assert main(common + ["--cells", "3"]) == 2
    assert "multiple of the MD supercell" in capsys.readouterr().err
    assert main(common + ["--cells", "4", "--md-about", "mean"]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["phonons"]["model"] == "MD snapshots"
    assert side["phonons"]["displacements_about"] == "mean positions"
    assert (
        side["phonons"]["trajectory_sha256"]
        == snapshot_phonons(traj, sites).source["trajectory_sha256"]
    )
    assert f"--md-snapshots {traj} {sites}" in side["command"]
    table = sim.read_series(out)
    assert np.isfinite(table.ratio).all() and (table.ratio > 0).all()
