"""Rigid-body removal: mass-weighted Kabsch fit, Eckart condition and ICP.

Eckart frame: Kudin & Dymarsky, J. Chem. Phys. 122, 224105 (2005); ICP: Besl & McKay,
IEEE TPAMI 14, 239 (1992).
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stemqd.aimd import (
    build_dot,
    eckart_residual,
    icp_align,
    kabsch_rotation,
    remove_rigid_body,
    rmsf,
)
from stemqd.aimd.dos import phonon_dos


def _cluster(seed=0, n=3):
    atoms = build_dot(n)
    masses = atoms.get_masses()
    return atoms.positions.copy(), masses, np.array(atoms.get_chemical_symbols())


def test_random_rigid_motion_removed_to_1e10():
    r0, m, _ = _cluster()
    rng = np.random.default_rng(0)
    nf = 50
    rot = Rotation.random(nf, random_state=1).as_matrix()
    shift = rng.normal(scale=20.0, size=(nf, 3))
    frames = np.einsum("fab,nb->fna", rot, r0) + shift[:, None, :]
    out = remove_rigid_body(frames, m, reference=r0)
    assert np.abs(out["positions"] - r0[None]).max() < 1e-10
    first = remove_rigid_body(frames, m)  # reference = frame 0
    assert np.abs(first["positions"] - frames[0][None]).max() < 1e-10
    # R undoes the applied rotation.
    assert np.abs(np.einsum("fab,fbc->fac", out["rotation"], rot) - np.eye(3)).max() < 1e-12


def test_kabsch_matches_scipy_and_eckart_condition():
    r0, m, _ = _cluster()
    rng = np.random.default_rng(2)
    noisy = r0 + rng.normal(scale=0.1, size=r0.shape)
    mob = noisy @ Rotation.random(random_state=3).as_matrix().T + 5.0
    com = lambda x: x - (m @ x) / m.sum()  # noqa: E731
    r = kabsch_rotation(com(mob), com(r0), m)
    ref_scipy, _ = Rotation.align_vectors(com(r0), com(mob), weights=m)
    assert np.abs(r - ref_scipy.as_matrix()).max() < 1e-12
    assert np.isclose(np.linalg.det(r), 1.0)
    out = remove_rigid_body(mob[None], m, reference=r0)
    assert np.abs(eckart_residual(out["positions"], r0, m)).max() < 1e-9


def test_spinning_drifting_cluster_has_no_internal_motion():
    r0, m, _ = _cluster()
    r0 = r0 - (m @ r0) / m.sum()
    omega = 0.002  # rad/fs
    vdrift = np.array([0.01, -0.02, 0.005])  # Å/fs
    t = np.arange(40) * 10.0
    c, s = np.cos(omega * t), np.sin(omega * t)
    rz = np.zeros((len(t), 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1.0
    pos = np.einsum("fab,nb->fna", rz, r0) + vdrift * t[:, None, None]
    # v = Omega x R r0 + V
    vel = np.cross(np.array([0.0, 0.0, omega]), np.einsum("fab,nb->fna", rz, r0)) + vdrift
    out = remove_rigid_body(pos, m, velocities=vel)
    assert np.abs(out["velocities"]).max() < 1e-12
    assert np.allclose(out["angular_velocity"], [0.0, 0.0, omega], atol=1e-14)
    assert rmsf(out["positions"]).max() < 1e-10


def test_rigid_motion_leaves_dos_and_rmsf_unchanged():
    r0, m, _ = _cluster()
    rng = np.random.default_rng(4)
    nf, dt = 64, 10.0
    t = np.arange(nf) * dt
    omega = 2 * np.pi * rng.integers(3, 20, size=r0.shape) / (nf * dt)
    amp = rng.uniform(0.01, 0.05, size=r0.shape)
    ph = rng.uniform(0, 2 * np.pi, size=r0.shape)
    # Internal vibrations with zero total momentum are not guaranteed; remove the COM
    # part so that the vibration itself is rigid-body free to first order.
    disp = amp * np.sin(omega * t[:, None, None] + ph)
    disp -= (np.einsum("n,fna->fa", m, disp) / m.sum())[:, None, :]
    internal = r0 + disp
    ref = remove_rigid_body(internal, m, reference="mean")
    rot = Rotation.random(nf, random_state=5).as_matrix()
    moved = np.einsum("fab,fnb->fna", rot, internal) + rng.normal(scale=3.0, size=(nf, 1, 3))
    out = remove_rigid_body(moved, m, reference="mean")
    assert out["iterations"] >= 2
    assert np.allclose(rmsf(out["positions"]), rmsf(ref["positions"]), atol=1e-10)
    g1 = phonon_dos(np.gradient(ref["positions"], dt, axis=0), m, dt, n_dof=100)
    g2 = phonon_dos(np.gradient(out["positions"], dt, axis=0), m, dt, n_dof=100)
    assert np.allclose(g1["dos_per_meV"], g2["dos_per_meV"], atol=1e-9)


def test_icp_recovers_permuted_rotated_frames():
    """A turning, drifting trajectory whose atom order is shuffled in every frame."""
    r0, m, sym = _cluster()
    centre = r0.mean(axis=0)
    rng = np.random.default_rng(6)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    frames, perms = [], []
    for k in range(8):
        rot = Rotation.from_rotvec(axis * np.deg2rad(3.0) * k).as_matrix()
        perm = rng.permutation(len(r0))
        frames.append(((r0 - centre) @ rot.T + centre + np.array([0.7, -0.4, 0.2]) * k)[perm])
        perms.append(perm)
    syms = [sym[p] for p in perms]
    out = icp_align(np.array(frames), r0, symbols=syms, reference_symbols=sym)
    for k in range(len(frames)):
        assert np.array_equal(out["match"][k], perms[k])
        assert np.abs(out["positions"][k] - r0[perms[k]]).max() < 1e-10
    assert out["rms_A"].max() < 1e-10
    # With index correspondence ICP is the Kabsch fit.
    ordered = frames[3][np.argsort(perms[3])]
    single = icp_align(ordered, r0, masses=m)
    direct = remove_rigid_body(ordered[None], m, reference=r0)
    assert np.allclose(single["positions"], direct["positions"][0], atol=1e-10)


def test_bad_shapes():
    from stemqd.errors import InputError

    with pytest.raises(InputError):
        remove_rigid_body(np.zeros((3, 4)), np.ones(3))
    with pytest.raises(InputError):
        remove_rigid_body(np.zeros((2, 3, 3)), np.ones(2))
