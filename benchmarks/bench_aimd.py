"""AIMD analysis end to end on a 775-atom, 1000-frame trajectory (issue 6, "Performance").

Stages: reading the CP2K position XYZ, rigid-body removal (positions and velocities), phonon
DOS with per-element partial DOS, and RMSF per layer. Each stage is timed as the median over
repeats and compared with a reference path:

* read: ``ase.io.read(..., format="extxyz")`` of the same file;
* align: the batched SVD of ``remove_rigid_body`` against a per-frame loop of
  ``scipy.spatial.transform.Rotation.align_vectors`` (SciPy's weighted Kabsch solver), and,
  with velocities, against a per-frame Python loop of the weighted Kabsch fit plus the
  Eckart velocity correction;
* dos: a per-atom, per-component loop of FFT autocorrelations (tidynamics style) against
  the one-shot periodogram of ``phonon_dos``;
* rmsf: a per-frame accumulation loop against the vectorised ``rmsf``.

Run: ``.venv/bin/python benchmarks/bench_aimd.py [--frames 1000] [--repeats 5]``

``--study-analyses`` instead prints how well the frozen-series and temperature-series analyses
(issue 17) recover known truth on synthetic gap series (``stemqd.aimd.synthetic``), as the
median and the largest relative error over seeds, per regime.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stemqd.aimd import build_dot, layer_index, phonon_dos, read_xyz_trajectory, remove_rigid_body  # noqa: E402
from stemqd.aimd import rmsf as rmsf_fn  # noqa: E402
from stemqd.aimd.mobility import rmsf_by_layer  # noqa: E402
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A  # noqa: E402


def synthetic_trajectory(n_atoms=775, n_frames=1000, dt=10.0, seed=0):
    """A 5-octahedra dot (truncated to n_atoms) vibrating, drifting and tumbling."""
    from scipy.spatial.transform import Rotation

    atoms = build_dot(5)[:n_atoms]
    rng = np.random.default_rng(seed)
    r0 = atoms.positions - atoms.positions.mean(axis=0)
    t = np.arange(n_frames) * dt
    freq = rng.uniform(0.5, 25.0, size=(n_atoms, 3)) / 4135.667696  # 1/fs from meV
    amp = rng.uniform(0.02, 0.2, size=(n_atoms, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(n_atoms, 3))
    arg = 2 * np.pi * freq * t[:, None, None] + phase
    internal = r0 + amp * np.sin(arg)
    v_int = amp * 2 * np.pi * freq * np.cos(arg)
    rot = Rotation.from_rotvec(np.outer(t, [1e-4, 2e-4, -1e-4])).as_matrix()
    pos = np.einsum("fab,fnb->fna", rot, internal) + 1e-3 * t[:, None, None]
    vel = np.einsum("fab,fnb->fna", rot, v_int)  # rotation part omitted: timing only
    return atoms, pos, vel


def write_cp2k_xyz(path, symbols, frames, dt):
    with open(path, "w") as fh:
        for k, frame in enumerate(frames):
            fh.write(
                f"{len(symbols):8d}\n i = {k:8d}, time = {k * dt:12.3f}, E = {-1234.5:20.10f}\n"
            )
            fh.write(
                "".join(
                    f" {s:<2s} {x:20.10f}{y:20.10f}{z:20.10f}\n"
                    for s, (x, y, z) in zip(symbols, frame)
                )
            )


def align_scipy_loop(pos, masses):
    from scipy.spatial.transform import Rotation

    ref = pos[0] - masses @ pos[0] / masses.sum()
    out = np.empty_like(pos)
    for f in range(len(pos)):
        x = pos[f] - masses @ pos[f] / masses.sum()
        rot, _ = Rotation.align_vectors(ref, x, weights=masses)
        out[f] = rot.apply(x)
    return out


def align_python_loop(pos, masses, vel):
    """Per-frame weighted Kabsch and Eckart velocities, one frame at a time."""
    ref = pos[0] - masses @ pos[0] / masses.sum()
    out, vout = np.empty_like(pos), np.empty_like(vel)
    for f in range(len(pos)):
        x = pos[f] - masses @ pos[f] / masses.sum()
        u, _, vt = np.linalg.svd((x * masses[:, None]).T @ ref)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
        out[f] = x @ rot.T
        dv = vel[f] - masses @ vel[f] / masses.sum()
        ang = np.sum(masses[:, None] * np.cross(x, dv), axis=0)
        inertia = np.sum(masses * np.sum(x * x, axis=1)) * np.eye(3) - (x * masses[:, None]).T @ x
        omega = np.linalg.solve(inertia, ang)
        vout[f] = (dv - np.cross(omega, x)) @ rot.T
    return out, vout


def dos_reference(vel, masses, symbols):
    nf = vel.shape[0]
    nfft = 2 * nf
    total = np.zeros(nf)
    per = {el: np.zeros(nf) for el in set(symbols)}
    for i in range(vel.shape[1]):
        for a in range(3):
            f = np.fft.rfft(vel[:, i, a], n=nfft)
            acf = np.fft.irfft(np.abs(f) ** 2)[:nf] / nf
            total += masses[i] * acf
            per[symbols[i]] += masses[i] * acf
    spectra = [np.abs(np.fft.rfft(c)) for c in [total, *per.values()]]
    return spectra


def rmsf_reference(pos):
    mean = np.zeros(pos.shape[1:])
    for frame in pos:
        mean += frame
    mean /= len(pos)
    acc = np.zeros(pos.shape[1])
    for frame in pos:
        acc += np.sum((frame - mean) ** 2, axis=1)
    return np.sqrt(acc / len(pos))


def timeit(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _errors(fn, seeds):
    errs = np.array([fn(seed) for seed in seeds])
    return float(np.median(np.abs(errs))), float(np.abs(errs).max())


def study_analyses(seeds):
    """Recovery errors of the frozen and temperature series on synthetic gaps."""
    from scipy import optimize

    from stemqd.aimd import synthetic
    from stemqd.aimd.coupling import DEFAULT_WINDOWS_MEV, huang_rhys
    from stemqd.aimd.optical_response import dephasing, gap_histogram
    from stemqd.aimd.series import FROZEN_CORE_WINDOWS_MEV
    from stemqd.aimd.units import HBAR_MEV_FS
    from stemqd.optics import FWHM_PER_SIGMA

    rows = []
    for n in (1000, 4000, 8000):
        for fwhm in (230.0, 50.0):

            def fs(seed, n=n, fwhm=fwhm):
                sig = fwhm / FWHM_PER_SIGMA
                e_h, a_h = synthetic.band_of_modes(0.5, 40, sig * 0.63, n, 10.0, every=2)
                e_l, a_l = synthetic.band_of_modes(0.5, 40, sig * 0.77, n, 10.0, every=2, offset=1)
                h, _ = synthetic.gap_from_modes(e_h, a_h, n, 10.0, seed=seed)
                lu, _ = synthetic.gap_from_modes(e_l, a_l, n, 10.0, seed=seed + 99)
                sig_true = np.sqrt((a_h**2).sum() + (a_l**2).sum())
                hist = gap_histogram(lu - h)
                return hist["std_meV"] / sig_true - 1, hist["fwhm_meV"] / (
                    FWHM_PER_SIGMA * sig_true
                ) - 1

            errs = np.array([fs(seed) for seed in seeds])
            for k, what in enumerate(("ML Gaussian (rms)", "histogram LSQ fit")):
                a = np.abs(errs[:, k])
                rows.append(
                    (
                        f"frozen-shell FWHM, {what}",
                        f"{n} x 10 fs, {fwhm:g} meV",
                        np.median(a),
                        a.max(),
                    )
                )
    for n, snap, taper in (
        (1000, True, None),
        (1000, False, None),
        (1000, False, "hann"),
        (2000, False, None),
        (2000, False, "hann"),
    ):

        def sw(seed, n=n, snap=snap, taper=taper):
            e, s = [], []
            for _, lo, hi in FROZEN_CORE_WINDOWS_MEV:
                e += [lo + 0.75, 0.5 * (lo + hi), hi - 0.75]
                s += [0.25, 0.5, 0.25]
            e, s = np.array(e), np.array(s)
            if snap:
                _, e = synthetic.snap_to_grid(e, n, 10.0)
            g, _ = synthetic.gap_from_modes(
                e, synthetic.mode_sigmas(s, e, 300.0), n, 10.0, seed=seed, snap=snap
            )
            res = huang_rhys(g, 10.0, 300.0, windows=FROZEN_CORE_WINDOWS_MEV, window=taper)
            return np.abs(res["windows"]["S"].to_numpy() - 1.0).max()

        med, worst = _errors(sw, seeds)
        rows.append(
            (
                "frozen-core S per window",
                f"{n} x 10 fs, {'grid' if snap else 'off-grid'} modes, taper {taper}",
                med,
                worst,
            )
        )
    for temp in (77.0, 150.0, 300.0):

        def dp(seed, temp=temp):
            e, s = [], []
            for _, lo, hi in DEFAULT_WINDOWS_MEV:
                c = 0.5 * (lo + hi)
                e += [c - 0.8, c, c + 0.8]
                s += [0.25, 0.5, 0.25]
            n, dt = 4096, 5.0
            _, e = synthetic.snap_to_grid(np.array(e), n, dt)
            sig = synthetic.mode_sigmas(np.array(s), e, temp)
            g, _ = synthetic.gap_from_modes(e, sig, n, dt, seed=seed)
            t = np.arange(0.0, 600.0, dt)
            d = np.exp(-synthetic.mode_cumulant(t, e, sig))
            stop = np.flatnonzero(d < 0.05)[0] + 1
            (tau,), _ = optimize.curve_fit(
                lambda x, ta: np.exp(-(x**2) / (2 * ta**2)), t[:stop], d[:stop], p0=[30.0]
            )
            exact = FWHM_PER_SIGMA * HBAR_MEV_FS / tau
            return dephasing(g, dt)["fwhm_meV"] / exact - 1

        med, worst = _errors(dp, seeds)
        rows.append(("dephasing FWHM vs exact D(t)", f"{temp:g} K, 4096 x 5 fs", med, worst))
    print(f"issue 17 analyses on synthetic gaps: relative errors over {len(seeds)} seeds")
    print(f"{'analysis':<36s} {'regime':<40s} {'median':>8s} {'max':>8s}")
    for name, regime, med, worst in rows:
        print(f"{name:<36s} {regime:<40s} {100 * med:7.2f}% {100 * worst:7.2f}%")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--atoms", type=int, default=775)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=3)
    parser.add_argument("--study-analyses", action="store_true", help="issue 17 accuracy tables")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of --study-analyses")
    args = parser.parse_args(argv)
    if args.study_analyses:
        return study_analyses(range(args.seeds))

    atoms, pos, vel = synthetic_trajectory(args.atoms, args.frames)
    symbols = atoms.get_chemical_symbols()
    masses = atoms.get_masses()
    dt = 10.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-pos-1.xyz"
        write_cp2k_xyz(path, symbols, pos, dt)
        size_mb = os.path.getsize(path) / 1e6

        def ase_read():
            import ase.io

            return np.array([a.positions for a in ase.io.read(path, ":", format="extxyz")])

        t_new, traj = timeit(lambda: read_xyz_trajectory(path), args.repeats)
        t_ref, ref_pos = timeit(ase_read, 1)
        assert np.allclose(traj.values, ref_pos)
        rows.append(("read pos XYZ", t_new, t_ref, "ase.io.read extxyz"))

    com0 = masses @ pos[0] / masses.sum()
    t_new, aligned = timeit(lambda: remove_rigid_body(pos, masses), args.repeats)
    t_ref, ref_aligned = timeit(lambda: align_scipy_loop(pos, masses), args.reference_repeats)
    assert np.abs(aligned["positions"] - com0 - ref_aligned).max() < 1e-8
    rows.append(("align positions", t_new, t_ref, "per-frame scipy Rotation.align_vectors"))
    t_new, aligned = timeit(lambda: remove_rigid_body(pos, masses, velocities=vel), args.repeats)
    t_ref, (ref_pos, ref_vel) = timeit(
        lambda: align_python_loop(pos, masses, vel), args.reference_repeats
    )
    assert np.abs(aligned["positions"] - com0 - ref_pos).max() < 1e-8
    assert np.abs(aligned["velocities"] - ref_vel).max() < 1e-12
    rows.append(("align pos + Eckart v", t_new, t_ref, "per-frame python-loop Kabsch + omega"))

    v_int = aligned["velocities"]
    t_new, _ = timeit(
        lambda: phonon_dos(v_int, masses, dt, symbols=symbols, n_dof=3 * len(symbols) - 6),
        args.repeats,
    )
    t_ref, _ = timeit(lambda: dos_reference(v_int, masses, symbols), args.reference_repeats)
    rows.append(("DOS + partial DOS", t_new, t_ref, "per-atom FFT ACF loop"))

    layers = layer_index(aligned["reference"], CSPBBR3_LATTICE_CONSTANT_A)

    def rmsf_all():
        rho = rmsf_fn(aligned["positions"])
        return rmsf_by_layer(rho, symbols, layers)

    t_new, _ = timeit(rmsf_all, args.repeats)
    t_ref, _ = timeit(lambda: rmsf_reference(aligned["positions"]), args.reference_repeats)
    rows.append(("RMSF per layer", t_new, t_ref, "per-frame loop"))

    # End to end = read + align with velocities + DOS + RMSF (the positions-only row is a
    # sub-step of the velocity alignment).
    chain = [r for r in rows if r[0] != "align positions"]
    total_new = sum(r[1] for r in chain)
    total_ref = sum(r[2] for r in chain)
    print(
        f"AIMD analysis benchmark: {len(symbols)} atoms x {args.frames} frames "
        f"(XYZ {size_mb:.0f} MB), {os.cpu_count()} cores, medians of {args.repeats} "
        f"(reference: {args.reference_repeats}, ase read: 1)"
    )
    print(
        f"{'stage':<20s} {'stemqd (s)':>11s} {'reference (s)':>14s} {'speed-up':>9s}  reference path"
    )
    for name, new, ref, what in rows:
        print(f"{name:<20s} {new:11.3f} {ref:14.3f} {ref / new:8.1f}x  {what}")
    print(
        f"{'end to end':<20s} {total_new:11.3f} {total_ref:14.3f} {total_ref / total_new:8.1f}x  "
        "read + align pos/vel + DOS + RMSF"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
