"""Phonon density of states from the mass-weighted velocity autocorrelation.

g(nu) = (2 / k_B T) sum_i m_i int <v_i(t) . v_i(0)> exp(-2 pi i nu t) dt, whose integral is
the number of degrees of freedom (Dickey & Paskin, Phys. Rev. 188, 1407 (1969); the 2PT
method of Lin, Blanco & Goddard, J. Chem. Phys. 119, 11792 (2003)). By Wiener-Khinchin the
discrete version is the one-sided periodogram of every velocity component,
P_j = 2 |rfft(v)_j|^2 / N^2 (j = 0 and the Nyquist bin not doubled), so that sum_j P_j is
the time average of v^2 (Parseval) and g_j = (1 / k_B T) sum_{i,a} m_i P_{j,ia} sums to
sum_i m_i <v_i^2> / k_B T = 3N by equipartition. A per-element partial DOS restricts the sum
to that element's atoms, so the partial DOS add up to the total.

Energies are hbar omega in meV on the grid E_j = j h / (N dt); the DOS is a density per meV
whose rectangle-rule integral sum_j g_j dE is the number of degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import InputError
from .trajectory import RigidBodyChoice, choose_rigid_body, mobile_atoms
from .units import AMU_A2_PER_FS2_MEV, H_MEV_FS, KB_MEV_K, MEV_PER_INV_CM, MEV_PER_THZ


def _window(name, n):
    if name in (None, "none", "boxcar"):
        return None
    if name == "hann":
        return np.hanning(n)
    raise InputError(f"window must be None or 'hann', not {name!r}")


def periodogram(signal, *, window=None, pad=1, axis=0):
    """One-sided periodogram whose bins sum to the (window-weighted) mean square.

    P_j = c_j |rfft(w x)_j|^2 / (N_fft sum w^2), c_j = 2 except at j = 0 and the Nyquist bin
    (c_j = 1); without a window and padding this is 2 |rfft(x)_j|^2 / N^2 and
    sum_j P_j = mean(x^2) exactly (Parseval).

    Parameters
    ----------
    signal : array_like
        Real samples along ``axis``.
    window : {None, "hann"}
        Taper against leakage of frequencies off the FFT grid.
    pad : int
        Zero-padding factor (N_fft = pad N); refines the grid, keeps the sum.
    axis : int
        Time axis.

    Returns
    -------
    ndarray
        P with ``axis`` of length N_fft // 2 + 1, in the squared unit of the signal.
    """
    x = np.moveaxis(np.asarray(signal, dtype=float), axis, 0)
    n = x.shape[0]
    w = _window(window, n)
    sumw2 = float(n) if w is None else float(np.sum(w**2))
    if w is not None:
        x = x * w.reshape((-1,) + (1,) * (x.ndim - 1))
    nfft = int(pad) * n
    spec = np.fft.rfft(x, n=nfft, axis=0)
    p = np.abs(spec) ** 2 / (nfft * sumw2)
    p[1:] *= 2.0
    if nfft % 2 == 0:
        p[-1] /= 2.0
    return np.moveaxis(p, 0, axis)


def energy_grid(n_frames, dt_fs, pad=1):
    """hbar omega_j = j h / (N_fft dt) in meV for the rfft bins of an N-frame series."""
    nfft = int(pad) * int(n_frames)
    return np.arange(nfft // 2 + 1) * H_MEV_FS / (nfft * float(dt_fs))


def quantum_factor(energy_meV, temperature_K, kind):
    """Optional quantum/temperature factor Q(E) applied to a classical spectrum.

    Parameters
    ----------
    energy_meV : array_like
        hbar omega (meV).
    temperature_K : float
        T (K).
    kind : {None, "harmonic", "energy"}
        ``"harmonic"``: Q = beta E / (1 - exp(-beta E)) (the harmonic correction of a
        classical correlation function); ``"energy"``: Q = (beta E / 2) coth(beta E / 2),
        i.e. hbar omega (n_B + 1/2) / k_B T. Both tend to 1 as beta E -> 0. None: Q = 1.

    Returns
    -------
    ndarray
        Q(E), 1 at E = 0.
    """
    e = np.asarray(energy_meV, dtype=float)
    if kind in (None, "none"):
        return np.ones_like(e)
    if temperature_K is None or temperature_K <= 0:
        raise InputError("a quantum factor needs a positive temperature")
    x = e / (KB_MEV_K * float(temperature_K))
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "harmonic":
            q = x / -np.expm1(-x)
        elif kind == "energy":
            q = 0.5 * x / np.tanh(0.5 * x)
        else:
            raise InputError(f"quantum factor must be None, 'harmonic' or 'energy', not {kind!r}")
    return np.where(x == 0, 1.0, q)


def _as_frames(x, name):
    x = np.asarray(x, dtype=float)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"{name} must have shape (n_frames, n_atoms, 3), not {x.shape}")
    if x.shape[0] < 4:
        raise InputError(f"{name}: at least 4 frames are needed for a spectrum")
    return x


def phonon_dos(
    velocities,
    masses,
    dt_fs,
    *,
    symbols=None,
    temperature_K=None,
    normalize="dof",
    n_dof=None,
    window=None,
    pad=1,
    smoothing_meV=0.0,
    quantum_correction=None,
):
    """Phonon DOS and per-element partial DOS from mass-weighted velocities.

    Parameters
    ----------
    velocities : array_like, shape (n_frames, n_atoms, 3)
        Velocities (Å/fs), ideally internal ones (:func:`stemqd.aimd.rigid.remove_rigid_body`).
    masses : array_like, shape (n_atoms,)
        Masses (amu).
    dt_fs : float
        Time between frames (fs).
    symbols : sequence of str, optional
        Elements; gives the partial DOS columns ``dos_<El>_per_meV``.
    temperature_K : float, optional
        T (K); needed for ``normalize="temperature"`` and a quantum correction.
    normalize : {"dof", "temperature"}
        ``"dof"``: scale so the integral equals ``n_dof`` (robust: uses the measured
        sum m <v^2>, not 3 N k_B T). ``"temperature"``: divide by k_B T, so the integral is
        3N only where equipartition holds.
    n_dof : float, optional
        Degrees of freedom for ``"dof"``; default 3 x (number of moving atoms). Pass
        3N - 6 after rigid-body removal, 3 N_mobile in frozen-shell/core runs.
    window : {None, "hann"}
        Taper of each velocity series.
    pad : int
        Zero-padding factor.
    smoothing_meV : float
        Gaussian broadening (standard deviation, meV) of the final spectrum; keeps the
        integral.
    quantum_correction : {None, "harmonic", "energy"}
        Multiplies the normalised DOS by :func:`quantum_factor` (then the integral is no
        longer n_dof). Peak positions and integrals need none.

    Returns
    -------
    pandas.DataFrame
        ``energy_meV``, ``frequency_THz``, ``wavenumber_cm-1``, ``dos_per_meV`` and one
        ``dos_<El>_per_meV`` per element. ``attrs``: ``n_dof``, ``integral`` (sum g dE),
        ``bin_meV``, ``normalize``, ``temperature_K`` (the kinetic temperature
        sum m <v^2> / (n_dof k_B) with ``"dof"``).
    """
    v = _as_frames(velocities, "velocities")
    m = np.asarray(masses, dtype=float).reshape(-1)
    if m.shape != (v.shape[1],):
        raise InputError(f"{len(m)} masses for {v.shape[1]} atoms")
    nf = v.shape[0]
    # sum over Cartesian components per atom: (n_bins, n_atoms), in (Å/fs)^2.
    p = periodogram(v, window=window, pad=pad, axis=0).sum(axis=2)
    # m P in meV per bin.
    mp = p * (m * AMU_A2_PER_FS2_MEV)[None, :]
    return _dos_table(
        mp,
        nf,
        dt_fs,
        mobile_atoms(v),
        symbols=symbols,
        pad=pad,
        normalize=normalize,
        n_dof=n_dof,
        temperature_K=temperature_K,
        smoothing_meV=smoothing_meV,
        quantum_correction=quantum_correction,
    )


def phonon_dos_from_positions(positions, masses, dt_fs, *, derivative="spectral", **kwargs):
    """Phonon DOS from positions: velocities in Fourier space, v~(omega) = i omega x~(omega).

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3)
        Aligned positions (Å).
    masses : array_like
        Masses (amu).
    dt_fs : float
        Frame spacing (fs).
    derivative : {"spectral", "central"}
        ``"spectral"``: multiply the position periodogram by omega^2 (exact for periodic
        series). ``"central"``: central finite differences (x_{t+1} - x_{t-1}) / (2 dt),
        whose amplitude is attenuated by sin(omega dt) / (omega dt) (about 1 % at 17 meV
        for 10 fs).
    **kwargs
        As :func:`phonon_dos`.

    Returns
    -------
    pandas.DataFrame
        As :func:`phonon_dos`.
    """
    x = _as_frames(positions, "positions")
    if derivative == "central":
        v = (x[2:] - x[:-2]) / (2.0 * float(dt_fs))
        return phonon_dos(v, masses, dt_fs, **kwargs)
    if derivative != "spectral":
        raise InputError(f"derivative must be 'spectral' or 'central', not {derivative!r}")
    m = np.asarray(masses, dtype=float).reshape(-1)
    if m.shape != (x.shape[1],):
        raise InputError(f"{len(m)} masses for {x.shape[1]} atoms")
    window, pad = kwargs.pop("window", None), kwargs.pop("pad", 1)
    x = x - x.mean(axis=0)
    p = periodogram(x, window=window, pad=pad, axis=0).sum(axis=2)
    omega = 2.0 * np.pi * energy_grid(x.shape[0], dt_fs, pad) / H_MEV_FS  # rad/fs
    mp = p * (omega**2)[:, None] * (m * AMU_A2_PER_FS2_MEV)[None, :]
    moving = np.ptp(x, axis=0).max(axis=1) > 0
    return _dos_table(mp, x.shape[0], dt_fs, moving, pad=pad, **kwargs)


def _dos_table(
    mp,
    nf,
    dt_fs,
    moving,
    *,
    symbols=None,
    pad=1,
    normalize="dof",
    n_dof=None,
    temperature_K=None,
    smoothing_meV=0.0,
    quantum_correction=None,
    **extra,
):
    if extra:
        raise InputError(f"unknown DOS option(s): {sorted(extra)}")
    if dt_fs is None or float(dt_fs) <= 0:
        raise InputError("the time step dt_fs must be positive")
    energy = energy_grid(nf, dt_fs, pad)
    d_e = energy[1] - energy[0]
    total_power = mp.sum()  # sum_i m_i <v_i^2>, meV
    if n_dof is None:
        n_dof = 3.0 * int(np.count_nonzero(moving))
    if normalize == "dof":
        if total_power <= 0:
            raise InputError("all velocities are zero: nothing to normalise")
        scale = float(n_dof) / total_power
        t_kin = total_power / (float(n_dof) * KB_MEV_K)
    elif normalize == "temperature":
        if temperature_K is None or temperature_K <= 0:
            raise InputError("normalize='temperature' needs a positive temperature_K")
        scale = 1.0 / (KB_MEV_K * float(temperature_K))
        t_kin = float(temperature_K)
    else:
        raise InputError(f"normalize must be 'dof' or 'temperature', not {normalize!r}")
    q = quantum_factor(energy, temperature_K if temperature_K else t_kin, quantum_correction)
    table = {
        "energy_meV": energy,
        "frequency_THz": energy / MEV_PER_THZ,
        "wavenumber_cm-1": energy / MEV_PER_INV_CM,
    }

    def density(cols):
        g = mp[:, cols].sum(axis=1) * scale * q / d_e
        if smoothing_meV and smoothing_meV > 0:
            # Reflection at E = 0 mirrors the even spectrum and keeps the integral.
            g = ndimage.gaussian_filter1d(g, float(smoothing_meV) / d_e, mode="reflect")
        return g

    table["dos_per_meV"] = density(slice(None))
    if symbols is not None:
        sym = np.asarray(symbols)
        if sym.shape != (mp.shape[1],):
            raise InputError(f"{len(sym)} symbols for {mp.shape[1]} atoms")
        for el in dict.fromkeys(sym):
            table[f"dos_{el}_per_meV"] = density(np.flatnonzero(sym == el))
    frame = pd.DataFrame(table)
    frame.attrs.update(
        n_dof=float(n_dof),
        bin_meV=float(d_e),
        normalize=normalize,
        temperature_K=float(t_kin),
        quantum_correction=quantum_correction or "none",
        integral=float(frame["dos_per_meV"].sum() * d_e),
    )
    return frame


@dataclass(frozen=True)
class TrajectoryDOS:
    """The phonon DOS of a loaded trajectory, with the rigid-body choice made before it.

    Attributes
    ----------
    table : pandas.DataFrame
        As :func:`phonon_dos` (energies, total and partial DOS; ``attrs`` with ``n_dof``,
        ``integral``, ``bin_meV``, ``temperature_K``, ...).
    rigid_body : RigidBodyChoice
        What was removed and the degrees of freedom it left
        (:func:`stemqd.aimd.trajectory.choose_rigid_body`).
    n_atoms : int
        Atoms of the trajectory.
    dt_fs : float
        Time between frames (fs).
    """

    table: pd.DataFrame
    rigid_body: RigidBodyChoice
    n_atoms: int
    dt_fs: float

    def report(self) -> str:
        """Resolution, n_dof, integral and kinetic T, then each DOS column's integral,
        mean energy and peak."""
        at, e = self.table.attrs, self.table["energy_meV"].to_numpy()
        d_e = at["bin_meV"]
        lines = [
            f"{self.n_atoms} atoms, dt {self.dt_fs:g} fs, resolution {d_e:.3f} meV, "
            f"n_dof {at['n_dof']:g}, integral {at['integral']:.4f}, "
            f"kinetic T {at['temperature_K']:.2f} K"
        ]
        for col in [c for c in self.table.columns if c.startswith("dos_")]:
            g = self.table[col].to_numpy()
            mean_e = float((g * e).sum() / g.sum()) if g.sum() > 0 else float("nan")
            lines.append(
                f"  {col:<22s} integral {g.sum() * d_e:10.4f}   mean energy {mean_e:7.3f} meV   "
                f"peak {e[np.argmax(g)]:7.3f} meV"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def trajectory_dos(
    traj, *, from_positions=False, align=True, n_dof=None, derivative="spectral", **options
):
    """Phonon DOS of a loaded trajectory, after the rigid-body removal the run allows.

    Parameters
    ----------
    traj : RunTrajectory
        From :func:`stemqd.aimd.trajectory.load_trajectory`.
    from_positions : bool
        The DOS from positions (:func:`phonon_dos_from_positions`) instead of velocities.
    align : bool
        Remove translation and rotation where the run allows it
        (:func:`stemqd.aimd.trajectory.choose_rigid_body`).
    n_dof : float, optional
        Degrees of freedom; default the choice's (3N - 6 aligned, 3 N_mobile with fixed
        atoms, 3N otherwise).
    derivative : {"spectral", "central"}
        Velocities from positions (positions route only).
    **options
        ``temperature_K``, ``normalize``, ``window``, ``pad``, ``smoothing_meV``,
        ``quantum_correction``, as :func:`phonon_dos`.

    Returns
    -------
    TrajectoryDOS
    """
    if traj.dt_fs is None:
        raise InputError("no frame times in the trajectory; give the time step (--dt FS)")
    choice = choose_rigid_body(traj, from_positions=from_positions, align=align)
    options.update(symbols=traj.symbols, n_dof=choice.n_dof if n_dof is None else n_dof)
    if choice.route == "positions":
        table = phonon_dos_from_positions(
            choice.motion, traj.masses, traj.dt_fs, derivative=derivative, **options
        )
    else:
        table = phonon_dos(choice.motion, traj.masses, traj.dt_fs, **options)
    return TrajectoryDOS(table=table, rigid_body=choice, n_atoms=traj.n_atoms, dt_fs=traj.dt_fs)


__all__ = [
    "TrajectoryDOS",
    "energy_grid",
    "periodogram",
    "phonon_dos",
    "phonon_dos_from_positions",
    "quantum_factor",
    "trajectory_dos",
]
