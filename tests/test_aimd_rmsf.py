"""RMSF per atom, element and layer (algorithms.md Part II §1.8, §5 item 6)."""

import numpy as np
import pytest

from stemqd.aimd import build_dot, layer_index, remove_rigid_body, rmsf, rmsf_by_layer


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
    assert layers.max() == 2 and np.all(layers[sym == "Pb"][np.all(frac[sym == "Pb"] == 2, axis=1)] == 2)
    assert np.all(layer_index(atoms.positions, 5.87, rounding="round")[(sym == "Pb") & np.any(frac == 0, axis=1)] == 1)
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
