"""RMSF per atom, element and layer, on vibrations and noise of known RMSF."""

from pathlib import Path

import numpy as np
import pytest

from stemqd.aimd import build_dot, element_msd, layer_index, remove_rigid_body, rmsf, rmsf_by_layer
from stemqd.errors import InputError

AIMD_RUNS = Path(__file__).parents[2] / "simulations" / "reference" / "cspbbr3_bulk_aimd"


def test_rmsf_of_known_vibrations():
    nf, nat = 400, 6
    t = np.arange(nf)
    a = np.linspace(0.05, 0.3, nat)
    pos = np.zeros((nf, nat, 3))
    pos[:, :, 0] = a * np.cos(2 * np.pi * 8 * t / nf)[:, None]  # integer number of periods
    assert np.allclose(rmsf(pos), a / np.sqrt(2), rtol=1e-12)
    sigma = 0.1
    noise = np.random.default_rng(0).normal(scale=sigma, size=(20000, 3, 3))
    assert np.allclose(rmsf(noise), np.sqrt(3) * sigma, rtol=0.01)


def test_layers_of_ideal_dot():
    atoms = build_dot(5)
    sym = np.array(atoms.get_chemical_symbols())
    layers = layer_index(atoms.positions, 5.87)
    frac = atoms.arrays["ideal_frac"]
    # Surface Cs and terminal Br at depth 0, Pb of the outer octahedra at 1/2: all layer 0.
    assert np.all(layers[(sym == "Pb") & np.any((frac == 0) | (frac == 4), axis=1)] == 0)
    assert layers.max() == 2 and np.all(
        layers[sym == "Pb"][np.all(frac[sym == "Pb"] == 2, axis=1)] == 2
    )
    assert np.all(
        layer_index(atoms.positions, 5.87, rounding="round")[
            (sym == "Pb") & np.any(frac == 0, axis=1)
        ]
        == 1
    )
    # Robust to small relaxations.
    jitter = np.random.default_rng(1).normal(scale=0.1, size=atoms.positions.shape)
    assert np.array_equal(layer_index(atoms.positions + jitter, 5.87), layers)


def test_rmsf_by_layer_recovers_planted_amplitudes():
    atoms = build_dot(4)
    sym = np.array(atoms.get_chemical_symbols())
    layers = layer_index(atoms.positions, 5.87)
    amp = {0: 0.4, 1: 0.15, 2: 0.08}
    rng = np.random.default_rng(2)
    nf = 200
    t = np.arange(nf)
    # Each atom oscillates along a random direction with amplitude set by its layer.
    dirs = rng.normal(size=(len(atoms), 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    a = np.array([amp[k] for k in layers])
    freq = rng.integers(3, 20, size=len(atoms))
    pos = atoms.positions + (a * np.cos(2 * np.pi * freq * t[:, None] / nf))[:, :, None] * dirs
    aligned = remove_rigid_body(pos, atoms.get_masses(), reference="mean")["positions"]
    rho = rmsf(aligned)
    table = rmsf_by_layer(rho, sym, layers)
    for layer, value in amp.items():
        row = table[(table["layer"] == layer) & (table["element"] == "all")]
        # Rigid-body removal takes out a small share of the planted motion.
        assert row["rmsf_mean_A"].iloc[0] == pytest.approx(value / np.sqrt(2), rel=0.05)
    per_el = table[(table["layer"] >= 0) & (table["element"] != "all")]
    assert per_el["n_atoms"].sum() == len(atoms)
    whole = table[table["layer"] == -1].set_index("element")
    assert whole.loc["Cs", "n_atoms"] == (sym == "Cs").sum()


def test_element_msd_recovers_planted_sigmas_under_drift():
    """Independent Gaussian displacements of known rms per element and direction (Br: small
    along x, large across), on top of a random-walk drift of the whole crystal."""
    from stemqd.simulation import cspbbr3_slab

    rng = np.random.default_rng(5)
    atoms = cspbbr3_slab(2, cells=2)
    symbols = np.array(atoms.get_chemical_symbols())
    truth = {"Cs": (0.20, 0.20, 0.20), "Pb": (0.12, 0.12, 0.12), "Br": (0.10, 0.25, 0.25)}
    scale = np.array([truth[s] for s in symbols])
    n_frames = 3000
    drift = np.cumsum(rng.normal(0.0, 0.05, (n_frames, 1, 3)), axis=0)
    x = atoms.positions + rng.normal(size=(n_frames, len(atoms), 3)) * scale + drift
    table = element_msd(x, symbols, n_blocks=6)
    # Removing the mass-weighted centre of mass c = sum_j w_j u_j (w = m / M) leaves
    # <(u_i - c)^2> = s_i^2 (1 - 2 w_i) + sum_j w_j^2 s_j^2 per direction.
    w = atoms.get_masses() / atoms.get_masses().sum()
    com_var = (w[:, None] ** 2 * scale**2).sum(axis=0)
    expected = scale**2 * (1 - 2 * w[:, None]) + com_var
    for el, s in truth.items():
        u_true = float(np.mean(np.square(s)))
        row = table.loc[el]
        assert row["n_atoms"] == (symbols == el).sum()
        assert row["u_iso_A2"] == pytest.approx(expected[symbols == el].mean(), rel=0.015)
        assert abs(row["u_iso_A2"] - u_true) < 0.06 * u_true
        assert row["sigma_A"] == pytest.approx(np.sqrt(row["u_iso_A2"]))
        assert row["sigma_min_A"] == pytest.approx(min(s), rel=0.04)
        assert row["sigma_max_A"] == pytest.approx(max(s), rel=0.04)
        # The block error is the size of the scatter of independent frames.
        assert (
            0.3
            < row["u_iso_err_A2"] / (u_true * np.sqrt(2.0 / (3 * n_frames * row["n_atoms"])))
            < 3
        )


def test_element_msd_about_reference_sites_counts_static_offsets():
    """A static offset d of every Br (a frozen tilt) adds d^2 / 3 per direction to U_iso
    about the ideal sites, and nothing about the atoms' own mean positions."""
    from stemqd.simulation import cspbbr3_slab

    rng = np.random.default_rng(2)
    atoms = cspbbr3_slab(2, cells=2)
    symbols = np.array(atoms.get_chemical_symbols())
    br = symbols == "Br"
    offset = np.zeros((len(atoms), 3))
    offset[br] = rng.choice([-1.0, 1.0], size=(br.sum(), 3)) * 0.3 / np.sqrt(3)  # |d| = 0.3 Å
    x = atoms.positions + offset + rng.normal(0.0, 0.1, (2000, len(atoms), 3))
    thermal = element_msd(x, symbols, n_blocks=4)
    total = element_msd(x, symbols, reference=atoms.positions, n_blocks=4)
    assert thermal.loc["Br", "u_iso_A2"] == pytest.approx(0.01, rel=0.05)
    # The planted offsets sum to nearly zero mass-weighted, so the centre barely moves.
    assert total.loc["Br", "u_iso_A2"] == pytest.approx(0.01 + 0.09 / 3, rel=0.05)
    assert total.loc["Pb", "u_iso_A2"] == pytest.approx(thermal.loc["Pb", "u_iso_A2"], rel=0.1)
    with pytest.raises(InputError, match="reference"):
        element_msd(x, symbols, reference=atoms.positions[:3], n_blocks=4)


def test_element_msd_rejects_too_few_frames():
    with pytest.raises(InputError, match="frames"):
        element_msd(np.zeros((5, 2, 3)), ["Cs", "Pb"], n_blocks=5)
    with pytest.raises(InputError, match="symbols"):
        element_msd(np.zeros((20, 2, 3)), ["Cs"], n_blocks=5)


@pytest.mark.parametrize(
    "run", sorted(p.name for p in AIMD_RUNS.iterdir()) if AIMD_RUNS.is_dir() else []
)
def test_committed_aimd_sigmas_reproduce(run):
    """The committed sigmas of the thickness series' AIMD runs follow from the committed
    production trajectories (simulations/cp2k/phonon_sigmas.py)."""
    import json

    from ase.io import read

    from stemqd.aimd import read_xyz_trajectory

    folder = AIMD_RUNS / run
    recorded = json.loads((folder / "phonon_sigmas.json").read_text())
    traj = read_xyz_trajectory(folder / "bulk-production-pos-1.xyz.gz")
    frames = traj.values[recorded["skipped_frames"] :]
    assert len(frames) == recorded["frames"]
    sites = read(folder / "dot.xyz").positions
    for key, reference in (("sigma_A", sites), ("thermal_sigma_A", None)):
        table = element_msd(frames, traj.symbols, reference=reference, n_blocks=recorded["blocks"])
        for el, value in recorded[key].items():
            assert table.loc[el, "sigma_A"] == pytest.approx(value, abs=1e-4)
