"""Readers of CP2K MD output (record formats of CP2K's ``motion_utils.F``, ``qs_mo_methods.F``).

* ``*-pos-1.xyz`` / ``*-vel-1.xyz``: :func:`read_xyz_trajectory` (Å; velocities converted
  from bohr/au_t to Å/fs), with the step, time (fs) and potential energy (Hartree) of each
  frame from the CP2K title line ``i = ..., time = ..., E = ...``.
* ``*-1.ener``: :func:`read_ener`.
* per-step HOMO, LUMO and gap from the ``.out`` log: :func:`read_gaps`, in the ``MO|`` and
  the ``MO_CUBES`` print styles, keeping the converged block of each MD step.

All readers tolerate a truncated last record (a run that was killed) by dropping it with a
warning, and a restart that repeats steps by keeping the last occurrence of each step (the
restarted run supersedes the frames written after the restart point).
"""

from __future__ import annotations

import gzip
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .units import HARTREE_EV

#: bohr / atomic time unit in Å/fs (ase.units.Bohr / (ase.units._aut * 1e15)).
BOHR_PER_AUT_IN_A_PER_FS = 21.876912636433


def read_text(path):
    """Text of a (possibly gzipped) file; unreadable files raise InputError."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", errors="replace") as fh:
                return fh.read()
        return path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


_TITLE = re.compile(r"i\s*=\s*(-?\d+)\s*,\s*time\s*=\s*(\S+?)\s*,\s*E\s*=\s*(\S+)")


@dataclass(frozen=True)
class Trajectory:
    """Frames of a CP2K XYZ trajectory.

    Attributes
    ----------
    symbols : tuple of str
        Element of each atom.
    values : ndarray, shape (n_frames, n_atoms, 3)
        Positions (Å) or velocities (Å/fs).
    step : ndarray of int, shape (n_frames,)
        MD step number of each frame.
    time_fs : ndarray, shape (n_frames,)
        Simulation time (fs).
    energy_Ha : ndarray, shape (n_frames,)
        Potential energy on the title line (Hartree).
    kind : str
        ``"positions"`` or ``"velocities"``.
    """

    symbols: tuple
    values: np.ndarray
    step: np.ndarray
    time_fs: np.ndarray
    energy_Ha: np.ndarray
    kind: str = "positions"

    @property
    def timestep_fs(self):
        """Median spacing of the frame times (fs)."""
        if len(self.time_fs) < 2:
            raise InputError("a trajectory with fewer than 2 frames has no time step")
        return float(np.median(np.diff(self.time_fs)))

    def __len__(self):
        return len(self.step)


def _keep_last(steps):
    """Indices that keep the last occurrence of each step, sorted by step."""
    steps = np.asarray(steps)
    if len(steps) == 0:
        return np.zeros(0, dtype=int)
    # np.unique on the reversed array finds each step's last occurrence, sorted by step.
    _, first_in_rev = np.unique(steps[::-1], return_index=True)
    return len(steps) - 1 - first_in_rev


def read_xyz_trajectory(path, kind="auto"):
    """Read a CP2K position or velocity XYZ trajectory.

    Parameters
    ----------
    path : str or Path
        ``*-pos-1.xyz`` or ``*-vel-1.xyz``.
    kind : {"auto", "positions", "velocities"}
        ``"auto"`` takes velocities when the file name contains ``-vel-``. Velocities are
        converted from bohr/au_t to Å/fs (x 21.876913).

    Returns
    -------
    Trajectory
        Frames sorted by step, repeated steps (restarts) resolved to their last occurrence.
        A truncated last frame is dropped with a warning.
    """
    path = Path(path)
    if kind == "auto":
        kind = "velocities" if "-vel-" in path.name or path.name.startswith("vel") else "positions"
    if kind not in ("positions", "velocities"):
        raise InputError(f"kind must be positions or velocities, not {kind!r}")
    lines = read_text(path).splitlines()
    headers, bodies = [], []
    i, nl = 0, len(lines)
    natoms = None
    while i < nl:
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i])
        except ValueError:
            raise InputError(
                f"{path}:{i + 1}: expected an atom count, got {lines[i][:40]!r}"
            ) from None
        if natoms is None:
            natoms = n
        elif n != natoms:
            raise InputError(f"{path}:{i + 1}: frame has {n} atoms, the first had {natoms}")
        if i + 2 + n > nl or len(lines[i + 1 + n].split()) < 4:
            warnings.warn(f"{path}: truncated last frame at line {i + 1} dropped", stacklevel=2)
            break
        headers.append(lines[i + 1])
        bodies.append((i + 2, i + 2 + n))
        i += 2 + n
    if not headers:
        raise InputError(f"{path}: no complete frame")
    symbols = tuple(lines[k].split()[0] for k in range(*bodies[0]))
    last = tuple(lines[k].split()[0] for k in range(*bodies[-1]))
    if last != symbols:
        raise InputError(f"{path}: the element order changes between frames")
    # numpy's C text parser on the atom lines only (about 3x faster than splitting tokens).
    try:
        values = np.loadtxt(
            [ln for a, b in bodies for ln in lines[a:b]], usecols=(1, 2, 3), dtype=float, ndmin=2
        ).reshape(len(bodies), natoms, 3)
    except ValueError as exc:
        raise InputError(f"{path}: unreadable coordinates ({exc})") from None
    step = np.empty(len(headers), dtype=int)
    time_fs = np.full(len(headers), np.nan)
    energy = np.full(len(headers), np.nan)
    for k, title in enumerate(headers):
        m = _TITLE.search(title)
        if m:
            step[k] = int(m.group(1))
            time_fs[k] = float(m.group(2))
            energy[k] = float(m.group(3))
        else:
            step[k] = k
    keep = _keep_last(step)
    if kind == "velocities":
        values = values * BOHR_PER_AUT_IN_A_PER_FS
    return Trajectory(
        symbols=symbols,
        values=values[keep],
        step=step[keep],
        time_fs=time_fs[keep],
        energy_Ha=energy[keep],
        kind=kind,
    )


ENER_COLUMNS = [
    "step",
    "time_fs",
    "kinetic_Ha",
    "temperature_K",
    "potential_Ha",
    "conserved_Ha",
    "used_time_s",
]


def read_ener(path):
    """Read a CP2K ``*-1.ener`` file.

    Parameters
    ----------
    path : str or Path
        The energy file, rows ``(I10,F20.6,5F20.9)``.

    Returns
    -------
    pandas.DataFrame
        Columns ``step, time_fs, kinetic_Ha, temperature_K, potential_Ha, conserved_Ha,
        used_time_s``; sorted by step, repeated steps resolved to their last occurrence, a
        truncated last row dropped with a warning.
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    rows = []
    data_lines = [
        (k, ln) for k, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    for j, (k, ln) in enumerate(data_lines):
        parts = ln.split()
        try:
            if len(parts) != 7:
                raise ValueError
            rows.append([int(parts[0])] + [float(x) for x in parts[1:]])
        except ValueError:
            if j == len(data_lines) - 1:
                warnings.warn(f"{path}: truncated last row (line {k + 1}) dropped", stacklevel=2)
                break
            raise InputError(f"{path}:{k + 1}: expected 7 numbers, got {ln[:60]!r}") from None
    if not rows:
        raise InputError(f"{path}: no energy rows")
    frame = pd.DataFrame(rows, columns=ENER_COLUMNS)
    keep = _keep_last(frame["step"].to_numpy())
    return frame.iloc[keep].reset_index(drop=True)


_STEP = re.compile(r"^ MD\| Step number\s+(\d+)\s*$|^ +STEP NUMBER\s+=\s+(\d+)\s*$")
_TIME = re.compile(r"^ MD\| Time \[fs\]\s+(\S+)\s*$|^ +TIME \[fs\]\s+=\s+(\S+)\s*$")
_MD_INI = re.compile(r"^ MD_INI\| MD initialization")
_GAP_LINE = re.compile(r"^ HOMO - LUMO gap \[eV\] :\s*(\S+)\s*$")
_OCC_HEAD = re.compile(r"^\s+Eigenvalues of the occupied subspace spin\s+(\d+)")
_UNOCC_HEAD = re.compile(r"^\s+Lowest [Ee]igenvalues of the unoccupied subspace spin\s+(\d+)")
_MO_HEAD = re.compile(r"^ MO\|.*EIGENVALUES AND OCCUPATION NUMBERS")
_MO_ROW = re.compile(r"^ MO\|\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_MO_GAP = re.compile(r"^ MO\| Band gap:\s+(\S+) a\.u\.\s+(\S+) eV")
_NUMBERS = re.compile(r"^\s*-?\d+\.\d+(\s+-?\d+\.\d+)*\s*$")


def _new_block():
    return {
        "mo_cubes": {"homo": {}, "lumo": {}, "gap": []},
        "mo": {"rows": [], "gap": [], "spin": 0},
    }


def _block_values(block, style):
    """(homo_eV, lumo_eV, gap_eV) of one SCF block in one print style, or None."""
    if style == "mo_cubes":
        b = block["mo_cubes"]
        homo = max(b["homo"].values()) * HARTREE_EV if b["homo"] else np.nan
        lumo = min(b["lumo"].values()) * HARTREE_EV if b["lumo"] else np.nan
        if len(b["gap"]) == 1 and len(b["homo"]) <= 1:
            gap = b["gap"][0]
        else:
            # Spin-polarised or no gap line (diagonalisation prints none): the gap between the
            # highest occupied and lowest unoccupied level over both spins.
            gap = lumo - homo
    else:
        b = block["mo"]
        if not b["rows"] and not b["gap"]:
            return None
        rows = np.array(b["rows"], dtype=float).reshape(-1, 2)
        occupied = rows[:, 1] > 1e-8
        homo = rows[occupied, 0].max() if occupied.any() else np.nan
        lumo = rows[~occupied, 0].min() if (~occupied).any() else np.nan
        gap = b["gap"][-1] if len(b["gap"]) == 1 else lumo - homo
    if not np.isfinite(gap):
        return None
    return homo, lumo, gap


def _style_present(block, style):
    if style == "mo_cubes":
        b = block["mo_cubes"]
        return bool(b["homo"] or b["lumo"] or b["gap"])
    b = block["mo"]
    return bool(b["rows"] or b["gap"])


def read_gaps(paths, style="auto", missing="error"):
    """Per-MD-step HOMO, LUMO and HOMO-LUMO gap from CP2K ``.out`` logs.

    The SCF/MO printout of step n precedes the line ``MD| Step number n``; step 0 precedes
    ``MD_INI|``. The last block before each marker is the converged one (with
    diagonalisation the ``MO|`` block is printed after every SCF iteration).

    Parameters
    ----------
    paths : path or sequence of paths
        One log, or several (e.g. a run and its restarts) read in order.
    style : {"auto", "mo_cubes", "mo"}
        ``DFT%PRINT%MO_CUBES`` (``Eigenvalues of the occupied subspace`` / ``HOMO - LUMO
        gap [eV]``) or ``DFT%PRINT%MO`` (``MO|`` table with occupations and ``MO| Band
        gap``). ``"auto"`` takes MO_CUBES when the log has it, else MO.
    missing : {"error", "drop"}
        What to do with MD steps that have no HOMO/LUMO printout.

    Returns
    -------
    pandas.DataFrame
        Columns ``step, time_fs, homo_eV, lumo_eV, gap_eV``, sorted by step; a repeated
        step keeps its last occurrence; an unfinished step at the end of a truncated log is
        dropped. ``attrs["style"]`` records the style used.

    Raises
    ------
    InputError
        No MD steps, no HOMO/LUMO printout at all, or (``missing="error"``) steps without it.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    records = []  # (step or None for MD_INI, time, block)
    for path in paths:
        lines = read_text(path).splitlines(keepends=True)
        block = _new_block()
        mode = None  # "occ", "unocc" while reading MO_CUBES eigenvalue lines
        spin = 1
        for line in lines:
            if mode is not None:
                if _NUMBERS.match(line):
                    vals = [float(x) for x in line.split()]
                    target = block["mo_cubes"]["homo" if mode == "occ" else "lumo"]
                    if mode == "occ":
                        target[spin] = vals[-1]
                    elif spin not in target:
                        target[spin] = vals[0]
                    continue
                # Dashes, blank lines and the OT eigensolver's progress lines sit between
                # the header and the eigenvalues.
                if (
                    not line.strip()
                    or line.lstrip().startswith("---")
                    or "OT|" in line
                    or "eigensolver" in line.lower()
                ):
                    continue
                waiting = mode == "unocc" and spin not in block["mo_cubes"]["lumo"]
                if waiting and not (
                    line.startswith(" HOMO - LUMO")
                    or line.startswith(" MD")
                    or line.startswith(" ENERGY|")
                    or "subspace" in line
                ):
                    continue
                mode = None
            m = _OCC_HEAD.match(line)
            if m:
                mode, spin = "occ", int(m.group(1))
                continue
            m = _UNOCC_HEAD.match(line)
            if m:
                mode, spin = "unocc", int(m.group(1))
                continue
            if line.startswith(" HOMO - LUMO gap"):
                m = _GAP_LINE.match(line.rstrip("\n"))
                if m:
                    block["mo_cubes"]["gap"].append(float(m.group(1)))
                continue
            if line.startswith(" MO|"):
                m = _MO_HEAD.match(line)
                if m:
                    mo = block["mo"]
                    # A new table restarts the block unless it is the second spin's table.
                    if "BETA" not in line.upper():
                        mo["rows"], mo["gap"] = [], []
                    continue
                m = _MO_ROW.match(line)
                if m:
                    block["mo"]["rows"].append((float(m.group(3)), float(m.group(4))))
                    continue
                m = _MO_GAP.match(line)
                if m:
                    block["mo"]["gap"].append(float(m.group(2)))
                continue
            if _MD_INI.match(line):
                records.append([None, np.nan, block])
                block = _new_block()
                continue
            m = _STEP.match(line)
            if m:
                records.append([int(m.group(1) or m.group(2)), np.nan, block])
                block = _new_block()
                continue
            m = _TIME.match(line)
            if m and records and np.isnan(records[-1][1]):
                records[-1][1] = float(m.group(1) or m.group(2))
        # Whatever follows the last step marker belongs to an unfinished step: dropped.
    if not records:
        raise InputError(
            f"{', '.join(map(str, paths))}: no MD steps found (no 'MD| Step number' "
            "or 'MD_INI|' lines); is this the .out log of an MD run?"
        )
    # MD_INI is the initial step of its run: one before the next numbered step.
    for k, rec in enumerate(records):
        if rec[0] is None:
            nxt = next((r[0] for r in records[k + 1 :] if r[0] is not None), None)
            rec[0] = (nxt - 1) if nxt is not None else 0
    if style == "auto":
        style = "mo_cubes" if any(_style_present(r[2], "mo_cubes") for r in records) else "mo"
    if style not in ("mo_cubes", "mo"):
        raise InputError(f"style must be auto, mo_cubes or mo, not {style!r}")
    rows, absent = [], []
    for step, time_fs, block in records:
        vals = _block_values(block, style)
        if vals is None:
            absent.append(step)
            continue
        rows.append((step, time_fs, *vals))
    names = ", ".join(map(str, paths))
    if not rows:
        raise InputError(
            f"{names}: no HOMO-LUMO gap printout ({style} style) in any of {len(records)} MD steps; "
            "enable DFT%PRINT%MO_CUBES (NHOMO 1, NLUMO 1, WRITE_CUBE F) or DFT%PRINT%MO with "
            "&EACH MD 1 (smearing suppresses the gap line)"
        )
    if absent and missing == "error":
        shown = ", ".join(map(str, absent[:8])) + (" ..." if len(absent) > 8 else "")
        raise InputError(
            f"{names}: {len(absent)} of {len(records)} MD steps have no HOMO-LUMO gap "
            f"printout ({style} style): steps {shown}; pass missing='drop' to skip them"
        )
    frame = pd.DataFrame(rows, columns=["step", "time_fs", "homo_eV", "lumo_eV", "gap_eV"])
    frame = frame.iloc[_keep_last(frame["step"].to_numpy())].reset_index(drop=True)
    # Steps whose time line is absent (MD_INI) get it from the steps' linear time axis.
    t = frame["time_fs"].to_numpy()
    known = np.isfinite(t)
    if (~known).any() and known.sum() >= 2:
        s = frame["step"].to_numpy()
        coef = np.polyfit(s[known], t[known], 1)
        t = np.where(known, t, np.polyval(coef, s))
        frame["time_fs"] = np.round(t, 6)
    frame.attrs["style"] = style
    return frame


def read_gap_table(path):
    """Gap series from a CSV with a ``gap_eV`` (or ``gap_meV``) column, or from a CP2K log.

    Returns
    -------
    pandas.DataFrame
        Columns ``step, time_fs, gap_eV`` at least.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, comment="#")
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read CSV ({exc})") from None
        if "gap_eV" not in frame and "gap_meV" in frame:
            frame["gap_eV"] = frame["gap_meV"] / 1000.0
        if "gap_eV" not in frame:
            raise InputError(
                f"{path}: no gap_eV or gap_meV column (columns: {list(frame.columns)})"
            )
        return frame
    return read_gaps(path)


__all__ = [
    "BOHR_PER_AUT_IN_A_PER_FS",
    "read_ener",
    "read_gap_table",
    "read_gaps",
    "read_text",
    "read_xyz_trajectory",
    "Trajectory",
]
