"""Root-mean-square fluctuation per atom, element and layer.

rho_i = sqrt(N_f^-1 sum_t |r_i(t) - <r_i>|^2) on frames already aligned
(:func:`stemqd.aimd.rigid.remove_rigid_body`), as MDAnalysis ``rms.RMSF``. Layers count unit
cells below the surface: d_i = min over the 6 faces of the distance of the atom's reference
position to the outermost atomic plane, divided by a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..materials import CSPBBR3_LATTICE_CONSTANT_A
from .build import depth_in_cells
from .trajectory import AlignedPositions, align_positions, element_masses


def rmsf(positions):
    """RMSF of every atom about its mean position (Å).

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3)
        Aligned positions (Å).

    Returns
    -------
    ndarray, shape (n_atoms,)
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"positions must have shape (n_frames, n_atoms, 3), not {x.shape}")
    dev = x - x.mean(axis=0)
    return np.sqrt(np.einsum("fna,fna->n", dev, dev) / x.shape[0])


def layer_index(
    reference_positions, lattice_constant_A=CSPBBR3_LATTICE_CONSTANT_A, rounding="floor"
):
    """Layer of each atom below the dot surface (0 = outermost unit cell).

    Parameters
    ----------
    reference_positions : array_like, shape (n_atoms, 3)
        Ideal or mean positions (Å), dot faces along x, y and z.
    lattice_constant_A : float
        a (Å).
    rounding : {"floor", "round"}
        ``"floor"``: layer L holds the ideal depths L and L + 1/2 (the surface Pb at
        d = 1/2 is in layer 0 with its Cs/Br surface); ``"round"``: nearest integer with
        halves rounded up (the surface Pb counts as layer 1). Both tolerate displacements
        up to a/4 from the ideal depths.

    Returns
    -------
    ndarray of int
    """
    d = depth_in_cells(reference_positions, lattice_constant_A)
    # Ideal depths are multiples of 1/2; the 1/4 offsets make both rules tolerant to a
    # relaxation of up to a/4 (1.5 Å) around them.
    if rounding == "floor":
        return np.floor(d + 0.25).astype(int)
    if rounding == "round":
        return np.floor(d + 0.75).astype(int)
    raise InputError(f"rounding must be 'floor' or 'round', not {rounding!r}")


def rmsf_by_layer(rmsf_A, symbols, layers):
    """Mean RMSF per (layer, element).

    Parameters
    ----------
    rmsf_A : array_like, shape (n_atoms,)
        RMSF per atom (Å).
    symbols : sequence of str
        Element per atom.
    layers : array_like of int
        Layer per atom (:func:`layer_index`).

    Returns
    -------
    pandas.DataFrame
        ``layer, element, n_atoms, rmsf_mean_A, rmsf_std_A``, plus rows with element
        ``"all"`` per layer and layer ``-1`` for each element over the whole dot.
    """
    frame = pd.DataFrame(
        {
            "layer": np.asarray(layers, dtype=int),
            "element": np.asarray(symbols),
            "rmsf_A": np.asarray(rmsf_A, dtype=float),
        }
    )
    if not (len(frame["layer"]) == len(frame["element"]) == len(frame["rmsf_A"])):
        raise InputError("rmsf, symbols and layers must have one entry per atom")

    def agg(df):
        return df.agg(
            n_atoms=("rmsf_A", "size"),
            rmsf_mean_A=("rmsf_A", "mean"),
            rmsf_std_A=("rmsf_A", lambda s: float(np.std(s))),
        )

    per = agg(frame.groupby(["layer", "element"])).reset_index()
    layer_all = agg(frame.groupby("layer")).reset_index().assign(element="all")
    element_all = agg(frame.groupby("element")).reset_index().assign(layer=-1)
    out = pd.concat([per, layer_all, element_all], ignore_index=True)
    return (
        out[["layer", "element", "n_atoms", "rmsf_mean_A", "rmsf_std_A"]]
        .sort_values(["layer", "element"], kind="stable")
        .reset_index(drop=True)
    )


def site_displacements(positions, symbols, masses=None, *, reference=None):
    """Displacement of every atom from its site in every frame of a periodic crystal (Å).

    The mass-weighted centre-of-mass drift of every frame is removed first (no rotation: a
    periodic cell cannot rotate).

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3)
        Unwrapped positions (Å), as CP2K writes them.
    symbols : sequence of str
        Element per atom.
    masses : array_like, optional
        Atomic masses (u); default ASE's standard masses.
    reference : array_like, shape (n_atoms, 3), optional
        Sites, e.g. the ideal cubic lattice; their mass-weighted centre is matched to each
        frame's. Default: each atom's mean position over the frames.

    Returns
    -------
    ndarray, shape (n_frames, n_atoms, 3)
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"positions must have shape (n_frames, n_atoms, 3), not {x.shape}")
    if len(symbols) != x.shape[1]:
        raise InputError(f"{len(symbols)} symbols for {x.shape[1]} atoms")
    if masses is None:
        masses = element_masses(symbols)
    w = np.asarray(masses, dtype=float)
    w = w / w.sum()
    x = x - np.einsum("n,fna->fa", w, x)[:, None, :]
    if reference is None:
        return x - x.mean(axis=0)
    sites = np.asarray(reference, dtype=float)
    if sites.shape != x.shape[1:]:
        raise InputError(f"reference must have shape {x.shape[1:]}, not {sites.shape}")
    return x - (sites - w @ sites)


def element_msd(positions, symbols, masses=None, *, reference=None, n_blocks=5):
    """Per-element mean-square displacement of a periodic crystal (U_iso, Å²).

    The single-site quantity the frozen-phonon model needs: each atom's displacement from its
    site, after removing the mass-weighted centre-of-mass drift of every frame (no rotation:
    a periodic cell cannot rotate), averaged over frames, atoms of the element and the three
    Cartesian directions.

    Parameters
    ----------
    positions, symbols, masses, reference
        As :func:`site_displacements`. With ``reference`` the ideal cubic lattice, static
        offsets such as octahedral tilts count as displacements, as they do for a structure
        model on those sites; without it only the thermal motion about the mean positions.
    n_blocks : int
        Contiguous blocks of frames for the standard error (block averaging); the blocks
        should be longer than the slowest displacement correlation time.

    Returns
    -------
    pandas.DataFrame
        Indexed by element: ``n_atoms``, ``u_iso_A2``, ``u_iso_err_A2`` (block standard
        error), ``sigma_A`` = sqrt(U_iso) (rms displacement per direction, the sigma of
        ``abtem.FrozenPhonons``), ``sigma_err_A``, and ``sigma_min_A``, ``sigma_max_A``:
        the smallest and largest of each atom's three Cartesian rms displacements, averaged
        over the element (for Br in a cubic perovskite: along and across the Pb-Br bond).

    Notes
    -----
    Without ``reference`` the mean positions come from the same frames, which biases U_iso
    low by about the fraction of the run that the slowest mode's correlation time makes up.
    """
    x = np.asarray(positions, dtype=float)
    n_blocks = int(n_blocks)
    if x.ndim == 3 and (n_blocks < 2 or x.shape[0] < 2 * n_blocks):
        raise InputError(
            f"need n_blocks >= 2 and at least 2 frames per block; got "
            f"{x.shape[0]} frames for {n_blocks} blocks"
        )
    symbols = np.asarray(symbols)
    dev2 = site_displacements(x, symbols, masses, reference=reference) ** 2
    blocks = np.array_split(np.arange(x.shape[0]), n_blocks)
    rows = {}
    for el in sorted(set(symbols.tolist())):
        sel = symbols == el
        per_dir = dev2[:, sel].mean(axis=0)  # (atoms of el, 3)
        u = float(per_dir.mean())
        u_blocks = np.array([dev2[b][:, sel].mean() for b in blocks])
        u_err = float(u_blocks.std(ddof=1) / np.sqrt(n_blocks))
        ordered = np.sqrt(np.sort(per_dir, axis=1))
        rows[el] = {
            "n_atoms": int(sel.sum()),
            "u_iso_A2": u,
            "u_iso_err_A2": u_err,
            "sigma_A": np.sqrt(u),
            "sigma_err_A": u_err / (2.0 * np.sqrt(u)),
            "sigma_min_A": float(ordered[:, 0].mean()),
            "sigma_max_A": float(ordered[:, -1].mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("element")


#: Structures whose depths define the layers in :func:`trajectory_rmsf`.
LAYER_REFERENCES = ("reference", "first")


@dataclass(frozen=True)
class RMSFResult:
    """RMSF of a trajectory per atom and per (layer, element).

    Attributes
    ----------
    per_atom : pandas.DataFrame
        ``atom, element, layer, rmsf_A``.
    layers : pandas.DataFrame
        :func:`rmsf_by_layer` of the atoms.
    alignment : AlignedPositions
        The aligned frames and the reference structure
        (:func:`stemqd.aimd.trajectory.align_positions`).
    """

    per_atom: pd.DataFrame
    layers: pd.DataFrame
    alignment: AlignedPositions

    def report(self) -> str:
        """Atoms and frames, then the per-layer table (Å, 4 decimals)."""
        n_frames = len(self.alignment.positions)
        table = self.layers.to_string(index=False, float_format=lambda v: f"{v:.4f}")
        return f"{len(self.per_atom)} atoms, {n_frames} frames\n{table}"

    def __str__(self) -> str:
        return self.report()


def trajectory_rmsf(
    traj,
    *,
    align="kabsch",
    reference="mean",
    lattice_constant_A=CSPBBR3_LATTICE_CONSTANT_A,
    layer_reference="reference",
    rounding="floor",
):
    """RMSF per atom, element and layer below the surface of a loaded trajectory.

    Parameters
    ----------
    traj : RunTrajectory
        With positions (:func:`stemqd.aimd.trajectory.load_trajectory`).
    align : {"kabsch", "icp", "none"}
        Rigid-body removal first (:func:`stemqd.aimd.trajectory.align_positions`).
    reference : {"first", "mean"}
        Kabsch reference.
    lattice_constant_A : float
        a (Å) for the layer index (default: cubic CsPbBr3).
    layer_reference : {"reference", "first"}
        Structure whose depths define the layers: the alignment's reference or frame 0.
    rounding : {"floor", "round"}
        As :func:`layer_index`.

    Returns
    -------
    RMSFResult
    """
    if layer_reference not in LAYER_REFERENCES:
        raise InputError(
            f"layer_reference must be one of {', '.join(LAYER_REFERENCES)}, not {layer_reference!r}"
        )
    aligned = align_positions(traj, method=align, reference=reference)
    rho = rmsf(aligned.positions)
    structure = aligned.reference if layer_reference == "reference" else traj.positions[0]
    layers = layer_index(structure, lattice_constant_A, rounding=rounding)
    per_atom = pd.DataFrame(
        {"atom": np.arange(traj.n_atoms), "element": traj.symbols, "layer": layers, "rmsf_A": rho}
    )
    return RMSFResult(per_atom, rmsf_by_layer(rho, traj.symbols, layers), aligned)


__all__ = [
    "LAYER_REFERENCES",
    "RMSFResult",
    "element_msd",
    "layer_index",
    "rmsf",
    "rmsf_by_layer",
    "site_displacements",
    "trajectory_rmsf",
]
