"""A run's MD time series as the analyses read them.

The policy that turns CP2K files into the arrays of the analyses, in one place:

* :func:`load_trajectory`: positions and/or velocities on the steps both files hold, the
  atomic masses and the time step: given, or the median spacing of the frame times, which
  must be equal (a missing frame would put every spectral line at the wrong energy);
* :func:`load_gap_series`: the HOMO-LUMO gap series of a log or CSV with its time step, by
  the same rule;
* :func:`choose_rigid_body`: what the phonon DOS removes before the spectrum and how many
  degrees of freedom remain: nothing in a run with fixed atoms (3 N_mobile), the Eckart frame
  for velocities with positions (3N - 6), the mass-weighted Kabsch fit to the mean structure
  for the DOS from positions (3N - 6), nothing without positions or with alignment off (3N);
* :func:`align_positions`: the alignment before an RMSF (index Kabsch, nearest-neighbour ICP
  or none).

Each result is a frozen dataclass that records what was given, what was inferred and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .readers import read_gap_table, read_gaps, read_xyz_trajectory
from .rigid import icp_align, remove_rigid_body

#: CP2K prints frame times to 1e-3 fs; two rounded times differ by up to this from the step.
TIME_RESOLUTION_FS = 1e-3

#: Relative spread of the frame spacings still counted as one time step.
SPACING_TOLERANCE = 1e-3

#: Fewest gap values a gap-series analysis accepts.
MIN_GAP_SAMPLES = 8

#: Alignments of :func:`align_positions`.
ALIGN_METHODS = ("kabsch", "icp", "none")


def element_masses(symbols):
    """Standard atomic masses (amu, ASE's table) of the elements ``symbols``."""
    from ase.data import atomic_masses, atomic_numbers

    try:
        return np.array([atomic_masses[atomic_numbers[s]] for s in symbols])
    except KeyError as exc:
        raise InputError(f"unknown element {exc.args[0]!r}") from None


def mobile_atoms(velocities, tolerance=0.0):
    """Atoms that move: False for atoms held fixed (all velocities zero) in frozen runs.

    Parameters
    ----------
    velocities : array_like, shape (n_frames, n_atoms, 3)
        Velocities (any unit).
    tolerance : float
        Largest |v| still counted as fixed.

    Returns
    -------
    ndarray of bool, shape (n_atoms,)
    """
    v = np.asarray(velocities, dtype=float)
    return np.abs(v).max(axis=(0, 2)) > tolerance


def timestep_from_times(time_fs, source):
    """The time step (fs) of equally spaced samples: the median spacing of their times.

    Parameters
    ----------
    time_fs : array_like
        Sample times (fs).
    source : str
        The file they came from, for the error messages.

    Returns
    -------
    float

    Raises
    ------
    InputError
        Fewer than two times, a missing time, or spacings that differ from the median by
        more than ``SPACING_TOLERANCE`` of it (or the print resolution
        ``TIME_RESOLUTION_FS``, whichever is larger).
    """
    t = np.asarray(time_fs, dtype=float)
    if t.size < 2 or np.isnan(t).any():
        raise InputError(f"{source}: no times to infer the time step from; give it (--dt FS)")
    steps = np.diff(t)
    dt = float(np.median(steps))
    tolerance = max(SPACING_TOLERANCE * dt, TIME_RESOLUTION_FS)
    if dt <= 0 or np.max(np.abs(steps - dt)) > tolerance:
        raise InputError(f"{source}: samples are not equally spaced in time (missing steps?)")
    return dt


def find_trajectory(run_dir, kind):
    """The run folder's only CP2K ``*-pos-1.xyz`` or ``*-vel-1.xyz`` (production preferred).

    Parameters
    ----------
    run_dir : str or Path
        A CP2K run folder.
    kind : {"positions", "velocities"}
        Which trajectory.

    Returns
    -------
    Path or None
        None when the folder holds none, or several without one production run.
    """
    tag = {"positions": "pos", "velocities": "vel"}[kind]
    run_dir = Path(run_dir)
    found = sorted(run_dir.glob(f"*production*-{tag}-1.xyz")) or sorted(
        run_dir.glob(f"*-{tag}-1.xyz")
    )
    return found[0] if len(found) == 1 else None


def count_free_atoms(velocity_file):
    """Atoms that move (v != 0 in some frame) in a CP2K velocity trajectory."""
    v = read_xyz_trajectory(velocity_file, kind="velocities").values
    return int(mobile_atoms(v).sum())


@dataclass(frozen=True)
class RunTrajectory:
    """Positions and/or velocities of one run on common frames, ready for the analyses.

    Attributes
    ----------
    symbols : tuple of str
        Element of each atom.
    masses : ndarray, shape (n_atoms,)
        Standard atomic masses (amu).
    positions, velocities : ndarray, shape (n_frames, n_atoms, 3), or None
        Positions (Å) and velocities (Å/fs); None where no file was given.
    step, time_fs : ndarray, shape (n_frames,)
        MD step and time (fs) of each frame.
    dt_fs : float or None
        Time between frames (fs); None when neither given nor inferable.
    dt_source : str
        ``"given"``, ``"frame times"`` or ``"none"`` (no times in the files).
    files : tuple
        The position and velocity files (None where absent).
    notes : tuple of str
        What the loading decided (e.g. frames dropped to match the two files).
    """

    symbols: tuple
    masses: np.ndarray
    positions: np.ndarray | None
    velocities: np.ndarray | None
    step: np.ndarray
    time_fs: np.ndarray
    dt_fs: float | None
    dt_source: str
    files: tuple
    notes: tuple = ()

    @property
    def n_atoms(self):
        """Number of atoms."""
        return len(self.symbols)

    def __len__(self):
        return len(self.step)


def load_trajectory(pos=None, vel=None, *, run_dir=None, dt_fs=None, skip_frames=0):
    """Read a run's position and/or velocity trajectory onto common frames.

    Parameters
    ----------
    pos, vel : str or Path, optional
        CP2K ``*-pos-1.xyz`` (Å) and ``*-vel-1.xyz`` (bohr/au_t, converted to Å/fs).
    run_dir : str or Path, optional
        Take the files not given from this folder (:func:`find_trajectory`).
    dt_fs : float, optional
        Time between frames (fs); default the spacing of the frame times
        (:func:`timestep_from_times`).
    skip_frames : int
        Leading frames to discard (equilibration).

    Returns
    -------
    RunTrajectory
        With both files, only the steps present in both (a note says so when some are
        dropped).
    """
    if run_dir is not None:
        if not Path(run_dir).is_dir():
            raise InputError(f"{run_dir}: not a run folder")
        pos = pos if pos is not None else find_trajectory(run_dir, "positions")
        vel = vel if vel is not None else find_trajectory(run_dir, "velocities")
    if pos is None and vel is None:
        where = f"{run_dir}: no single *-pos-1.xyz or *-vel-1.xyz" if run_dir else "no files"
        raise InputError(f"{where}; give --pos and/or --vel trajectories")
    p = read_xyz_trajectory(pos, kind="positions") if pos is not None else None
    v = read_xyz_trajectory(vel, kind="velocities") if vel is not None else None
    notes = []
    if p is not None and v is not None:
        if p.symbols != v.symbols:
            raise InputError(f"{pos} and {vel} hold different atoms")
        common = np.intersect1d(p.step, v.step)
        if len(common) < len(p.step) or len(common) < len(v.step):
            notes.append(f"using the {len(common)} steps present in both trajectories")
        ip, iv = np.searchsorted(p.step, common), np.searchsorted(v.step, common)
        pos_x, vel_x, step, time = p.values[ip], v.values[iv], p.step[ip], p.time_fs[ip]
    else:
        ref = p if p is not None else v
        pos_x = p.values if p is not None else None
        vel_x = v.values if v is not None else None
        step, time = ref.step, ref.time_fs
    symbols = (p or v).symbols
    sl = slice(int(skip_frames or 0), None)
    time = time[sl]
    if dt_fs is not None:
        dt, source = float(dt_fs), "given"
    elif len(time) < 2 or np.isnan(time).any():
        dt, source = None, "none"
    else:
        dt, source = timestep_from_times(time, pos if p is not None else vel), "frame times"
    return RunTrajectory(
        symbols=symbols,
        masses=element_masses(symbols),
        positions=pos_x[sl] if pos_x is not None else None,
        velocities=vel_x[sl] if vel_x is not None else None,
        step=step[sl],
        time_fs=time,
        dt_fs=dt,
        dt_source=source,
        files=(pos, vel),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class GapSeries:
    """The HOMO-LUMO gap of every MD step of a run, with its time step.

    Attributes
    ----------
    gap_meV : ndarray
        Gap of each step (meV).
    dt_fs : float
        Time step (fs).
    dt_source : str
        ``"given"`` or ``"time column"``.
    table : pandas.DataFrame
        The rows read (``step, time_fs, gap_eV`` at least; HOMO and LUMO from a log).
    path : Path
        The file read.
    """

    gap_meV: np.ndarray
    dt_fs: float
    dt_source: str
    table: pd.DataFrame
    path: Path

    def __len__(self):
        return len(self.gap_meV)


def load_gap_series(path, *, style="auto", dt_fs=None, skip=0):
    """Gap series of a CP2K log (``.out``, ``.out.gz``) or a CSV with a gap column.

    Parameters
    ----------
    path : str or Path
        The log, or a CSV with ``gap_eV`` or ``gap_meV`` (``stemqd aimd gaps``).
    style : {"auto", "mo_cubes", "mo"}
        Log print style, see :func:`stemqd.aimd.read_gaps`.
    dt_fs : float, optional
        Time step (fs); default from the table's ``time_fs`` (:func:`timestep_from_times`).
    skip : int
        Leading steps to discard (equilibration left in the log).

    Returns
    -------
    GapSeries
    """
    path = Path(path)
    table = read_gap_table(path) if path.suffix.lower() == ".csv" else read_gaps(path, style=style)
    table = table.iloc[int(skip) :].reset_index(drop=True)
    if len(table) < MIN_GAP_SAMPLES:
        raise InputError(
            f"{path}: {len(table)} gap values after skipping {skip}; "
            f"need at least {MIN_GAP_SAMPLES}"
        )
    if dt_fs is not None:
        dt, source = float(dt_fs), "given"
    else:
        times = table["time_fs"] if "time_fs" in table else [np.nan]
        dt, source = timestep_from_times(times, path), "time column"
    return GapSeries(
        gap_meV=table["gap_eV"].to_numpy(dtype=float) * 1000.0,
        dt_fs=dt,
        dt_source=source,
        table=table,
        path=path,
    )


@dataclass(frozen=True)
class RigidBodyChoice:
    """What the phonon DOS of a trajectory removes, and the degrees of freedom left.

    Attributes
    ----------
    route : {"velocities", "positions"}
        The DOS from velocities (VACF) or from positions (omega^2 |x(omega)|^2).
    motion : ndarray, shape (n_frames, n_atoms, 3)
        The velocities (Å/fs) or positions (Å) the spectrum is taken of.
    removal : str
        ``"eckart"`` (internal velocities in the Eckart frame of frame 0), ``"kabsch-mean"``
        (positions fitted to their mean structure), ``"none-fixed-atoms"``,
        ``"none-no-positions"`` or ``"none-alignment-off"``.
    n_dof : int
        Degrees of freedom left: 3N - 6 after a removal, 3 N_mobile with fixed atoms, 3N.
    note : str
        One line saying so (empty for positions with alignment off).
    """

    route: str
    motion: np.ndarray
    removal: str
    n_dof: int
    note: str


def choose_rigid_body(traj, *, from_positions=False, align=True):
    """Decide and apply the rigid-body removal before the phonon DOS of a trajectory.

    Parameters
    ----------
    traj : RunTrajectory
        From :func:`load_trajectory`.
    from_positions : bool
        The DOS from positions instead of velocities.
    align : bool
        Remove translation and rotation where the run allows it.

    Returns
    -------
    RigidBodyChoice
        Fixed atoms (v = 0 throughout) mean a frozen-shell or frozen-core run: the fixed
        atoms pin the frame, so nothing is removed and the moving atoms keep 3 N_mobile
        degrees of freedom.
    """
    n = traj.n_atoms
    if from_positions:
        if traj.positions is None:
            raise InputError("the DOS from positions needs a position trajectory (--pos)")
        if not align:
            return RigidBodyChoice("positions", traj.positions, "none-alignment-off", 3 * n, "")
        x = remove_rigid_body(traj.positions, traj.masses, reference="mean")["positions"]
        note = "rigid-body motion removed (mass-weighted Kabsch, mean reference)"
        return RigidBodyChoice("positions", x, "kabsch-mean", 3 * n - 6, note)
    vel = traj.velocities
    if vel is None:
        raise InputError("the velocity route needs --vel (or use --from-positions with --pos)")
    mobile = mobile_atoms(vel)
    frozen = int((~mobile).sum())
    if frozen:
        note = f"{frozen} fixed atoms (v = 0): no rigid-body removal, n_dof = 3 N_mobile"
        return RigidBodyChoice("velocities", vel, "none-fixed-atoms", 3 * int(mobile.sum()), note)
    if traj.positions is None:
        note = "no positions: velocities used as read, n_dof = 3N"
        return RigidBodyChoice("velocities", vel, "none-no-positions", 3 * n, note)
    if not align:
        note = "alignment off: velocities used as read, n_dof = 3N"
        return RigidBodyChoice("velocities", vel, "none-alignment-off", 3 * n, note)
    v = remove_rigid_body(traj.positions, traj.masses, velocities=vel, reference="first")
    note = "translation and rotation removed (Eckart frame), n_dof = 3N - 6"
    return RigidBodyChoice("velocities", v["velocities"], "eckart", 3 * n - 6, note)


@dataclass(frozen=True)
class AlignedPositions:
    """Frames aligned for an RMSF, with the structure they were aligned to.

    Attributes
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3)
        Aligned frames (Å).
    reference : ndarray, shape (n_atoms, 3)
        The reference structure (Å): the converged mean (``"kabsch"``, reference
        ``"mean"``) or frame 0.
    method : {"kabsch", "icp", "none"}
        The alignment.
    note : str
        Empty, or what the alignment found (ICP: atoms matched to other sites).
    """

    positions: np.ndarray
    reference: np.ndarray
    method: str
    note: str = ""


def align_positions(traj, *, method="kabsch", reference="mean"):
    """Remove the rigid-body motion of a trajectory's positions before an RMSF.

    Parameters
    ----------
    traj : RunTrajectory
        With positions.
    method : {"kabsch", "icp", "none"}
        ``"kabsch"``: mass-weighted Kabsch by atom index
        (:func:`stemqd.aimd.remove_rigid_body`); ``"icp"``: nearest-neighbour ICP onto
        frame 0 (:func:`stemqd.aimd.icp_align`), for atoms that swap places; ``"none"``.
    reference : {"first", "mean"}
        Kabsch reference (frame 0 or the iterated mean structure).

    Returns
    -------
    AlignedPositions
    """
    if method not in ALIGN_METHODS:
        raise InputError(f"alignment must be one of {', '.join(ALIGN_METHODS)}, not {method!r}")
    pos = traj.positions
    if pos is None:
        raise InputError("aligning needs a position trajectory (--pos)")
    if method == "none":
        return AlignedPositions(pos, pos[0], method)
    if method == "icp":
        res = icp_align(
            pos, pos[0], symbols=traj.symbols, reference_symbols=traj.symbols, masses=traj.masses
        )
        swapped = np.any(res["match"] != np.arange(traj.n_atoms)[None, :])
        note = "ICP matched some atoms to other reference sites (atoms swapped places)"
        return AlignedPositions(res["positions"], pos[0], method, note if swapped else "")
    res = remove_rigid_body(pos, traj.masses, reference=reference)
    return AlignedPositions(res["positions"], res["reference"], method)


__all__ = [
    "ALIGN_METHODS",
    "AlignedPositions",
    "GapSeries",
    "MIN_GAP_SAMPLES",
    "RigidBodyChoice",
    "RunTrajectory",
    "SPACING_TOLERANCE",
    "TIME_RESOLUTION_FS",
    "align_positions",
    "choose_rigid_body",
    "count_free_atoms",
    "element_masses",
    "find_trajectory",
    "load_gap_series",
    "load_trajectory",
    "mobile_atoms",
    "timestep_from_times",
]
