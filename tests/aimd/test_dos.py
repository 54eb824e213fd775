"""Phonon DOS from mass-weighted velocities and positions, on oscillators of known DOS.

Mass-weighted velocity autocorrelation: Dickey & Paskin, Phys. Rev. 188, 1407 (1969).
"""

import numpy as np
import pytest
from ase.data import atomic_masses, atomic_numbers

from stemqd.aimd import mobile_atoms, phonon_dos, phonon_dos_from_positions, quantum_factor
from stemqd.aimd.units import AMU_A2_PER_FS2_MEV, H_MEV_FS, KB_MEV_K
from stemqd.errors import InputError

NF, DT, T = 2048, 10.0, 300.0
BINS = {"Cs": 40, "Pb": 90, "Br": 150}  # FFT bins of each element's frequency


@pytest.fixture(scope="module")
def oscillators():
    """3 elements x 4 atoms; each component v = sqrt(2 kT/m) cos(w_X t + phi), w_X on the grid."""
    rng = np.random.default_rng(0)
    symbols = [el for el in BINS for _ in range(4)]
    masses = np.array([atomic_masses[atomic_numbers[s]] for s in symbols])
    t = np.arange(NF) * DT
    omega = np.array([2 * np.pi * BINS[s] / (NF * DT) for s in symbols])[:, None]
    amp = np.sqrt(2 * KB_MEV_K * T / (masses * AMU_A2_PER_FS2_MEV))[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(12, 3))
    arg = omega[None] * t[:, None, None] + phase[None]
    vel = amp[None] * np.cos(arg)
    pos = 10.0 + amp[None] / omega[None] * np.sin(arg)
    return symbols, masses, pos, vel


def test_integral_partials_and_peaks(oscillators):
    symbols, masses, _, vel = oscillators
    for normalize in ("temperature", "dof"):
        d = phonon_dos(
            vel, masses, DT, symbols=symbols, temperature_K=T, normalize=normalize, n_dof=36
        )
        de = d.attrs["bin_meV"]
        assert de == pytest.approx(H_MEV_FS / (NF * DT))
        assert d["dos_per_meV"].sum() * de == pytest.approx(36.0, abs=1e-10)
        for el, b in BINS.items():
            g = d[f"dos_{el}_per_meV"].to_numpy()
            assert g.sum() * de == pytest.approx(12.0, abs=1e-10)
            assert np.argmax(g) == b and g[b] * de == pytest.approx(12.0, abs=1e-10)
        partial = sum(d[f"dos_{el}_per_meV"] for el in BINS)
        assert np.allclose(partial, d["dos_per_meV"], atol=1e-12)
    assert d.attrs["temperature_K"] == pytest.approx(T, rel=1e-12)  # kinetic T recovered


def test_position_route_and_central_difference(oscillators):
    symbols, masses, pos, vel = oscillators
    ref = phonon_dos(vel, masses, DT, symbols=symbols, temperature_K=T, normalize="temperature")
    spec = phonon_dos_from_positions(
        pos, masses, DT, symbols=symbols, temperature_K=T, normalize="temperature"
    )
    assert np.allclose(spec["dos_per_meV"], ref["dos_per_meV"], atol=1e-10)
    cen = phonon_dos_from_positions(
        pos,
        masses,
        DT,
        symbols=symbols,
        temperature_K=T,
        normalize="temperature",
        derivative="central",
    )
    de = cen.attrs["bin_meV"]
    for el, b in BINS.items():
        x = 2 * np.pi * b / NF  # omega dt
        # Central differences scale the amplitude by sin(w dt)/(w dt), the power by its square.
        assert cen[f"dos_{el}_per_meV"].sum() * de / 12 == pytest.approx(
            (np.sin(x) / x) ** 2, rel=2e-3
        )


def test_window_smoothing_and_quantum_factor(oscillators):
    symbols, masses, _, vel = oscillators
    d = phonon_dos(
        vel, masses, DT, symbols=symbols, n_dof=36, window="hann", pad=2, smoothing_meV=0.5
    )
    assert d.attrs["integral"] == pytest.approx(36.0, rel=1e-6)
    e = d["energy_meV"].to_numpy()
    for el, b in BINS.items():
        assert abs(e[np.argmax(d[f"dos_{el}_per_meV"])] - b * H_MEV_FS / (NF * DT)) < 0.05
    # Q -> 1 classically; the harmonic factor beta E / (1 - exp(-beta E)).
    q = quantum_factor([0.0, 1e-6, 25.85], T, "harmonic")
    assert (
        q[0] == 1.0
        and q[1] == pytest.approx(1.0)
        and q[2] == pytest.approx(1.0 / (1 - np.exp(-1.0)), rel=1e-3)
    )
    qe = quantum_factor([25.85], T, "energy")
    assert qe[0] == pytest.approx(0.5 / np.tanh(0.5), rel=1e-3)
    dq = phonon_dos(vel, masses, DT, temperature_K=T, n_dof=36, quantum_correction="harmonic")
    assert dq.attrs["integral"] > 36.0


def test_frozen_atoms_excluded_from_dof(oscillators):
    symbols, masses, _, vel = oscillators
    v = vel.copy()
    v[:, :4] = 0.0  # the four Cs held fixed
    assert mobile_atoms(v).sum() == 8
    d = phonon_dos(v, masses, DT, symbols=symbols)
    assert d.attrs["n_dof"] == 24 and d.attrs["integral"] == pytest.approx(24.0)
    assert d.attrs["temperature_K"] == pytest.approx(T, rel=1e-12)
    assert d["dos_Cs_per_meV"].abs().max() == 0.0


def test_bad_input(oscillators):
    symbols, masses, _, vel = oscillators
    with pytest.raises(InputError):
        phonon_dos(vel, masses[:5], DT)
    with pytest.raises(InputError):
        phonon_dos(vel, masses, DT, normalize="temperature")
    with pytest.raises(InputError):
        phonon_dos(vel[:2], masses, DT)
