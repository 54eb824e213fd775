"""One abTEM multislice pass per frozen-phonon configuration, with exit planes, and the device it runs on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..optics import focal_nodes
from .ensemble import config_nodes
from .scan import scan_positions
from .structure import displaced_configuration, slab

if TYPE_CHECKING:
    from .parameters import SeriesParameters


def resolve_device(device: str = "auto") -> str:
    """ "cpu" or "gpu": "auto" picks the GPU when CuPy is installed and sees a device."""
    if device not in ("auto", "cpu", "gpu"):
        raise InputError(f"device must be auto, cpu or gpu, got {device!r}")
    if device != "auto":
        if device == "gpu" and not _gpu_available():
            raise InputError("device gpu requested but CuPy or a CUDA device is not available")
        return device
    return "gpu" if _gpu_available() else "cpu"


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "no GPU"
        return False


def simulate_scans(
    params: SeriesParameters,
    configs,
    seed: int,
    *,
    nodes=None,
    thicknesses_uc=None,
    exit_planes: bool = True,
    num_workers: int | None = None,
    phonons=None,
):
    """ADF signal on the cell's scan for the given phonon configurations, every thickness.

    Parameters
    ----------
    params : SeriesParameters
    configs : sequence of int
        Configuration indices (each has its own displacements and focal node).
    seed : int
        Seed of the displacements.
    nodes : sequence of int, optional
        Focal node of each configuration (default: the prefix-stable allocation of
        configurations 0, 1, ... over the nodes).
    thicknesses_uc : sequence of int, optional
        Thicknesses to record, in units of ``params.thickness_unit_A`` (default
        ``params.thicknesses_uc``).
    exit_planes : bool
        True: one multislice pass through the thickest slab with an exit plane at every
        thickness. False: a separate slab and pass for every thickness (for checks and
        benchmarks only).
    num_workers : int, optional
        Dask threads (default: all cores).
    phonons : callable, optional
        ``phonons(slab, seed, config)`` returns a displaced copy of the slab, e.g. a
        :class:`stemqd.snapshot_phonons.SnapshotPhonons`. Default: the Einstein model with
        ``params.sigmas`` (:func:`displaced_configuration`).

    Returns
    -------
    ndarray, float64, shape (len(configs), len(thicknesses), n_positions)
        Fraction of the incident probe intensity reaching the ADF detector.
    """
    import abtem
    import dask

    abtem.config.set({"diagnostics.progress_bar": False})
    thick = tuple(
        params.thicknesses_uc if thicknesses_uc is None else (int(t) for t in thicknesses_uc)
    )
    configs = np.atleast_1d(np.asarray(configs, int))
    defocus_nodes, weights = focal_nodes(params.focal_nodes, params.focal_spread_A)
    node_of = (
        config_nodes(int(configs.max()) + 1, weights)[configs]
        if nodes is None
        else np.asarray(nodes, int)
    )
    positions = scan_positions(params)
    scan = abtem.CustomScan(positions)
    detector = abtem.AnnularDetector(params.detector_inner_mrad, params.detector_outer_mrad)
    spc = params.slices_per_cell
    if phonons is None:

        def phonons(atoms, seed, config):
            return displaced_configuration(atoms, params.sigmas, seed, config)

    def measurement(slab_uc, planes, cfgs, defocus):
        atoms = slab(
            params.oriented,
            slab_uc,
            cells=params.cells,
            slices_per_unit=spc,
            divisions=params.divisions,
        )
        ensemble = abtem.AtomsEnsemble([phonons(atoms, seed, c) for c in cfgs], ensemble_mean=False)
        potential = abtem.Potential(
            ensemble,
            gpts=params.grid_shape,
            slice_thickness=params.thickness_unit_A / spc,
            parametrization=params.parametrization,
            projection=params.projection,
            exit_planes=planes,
            device=params.device,
        )
        probe = abtem.Probe(
            energy=params.energy_kV * 1e3,
            semiangle_cutoff=params.semiangle_mrad,
            defocus=float(defocus),
            device=params.device,
        )
        return probe.scan(potential, scan=scan, detectors=detector)

    jobs = []  # (config rows, thickness columns, lazy measurement)
    for j, defocus in enumerate(defocus_nodes):
        rows = np.flatnonzero(node_of == j)
        if len(rows) == 0:
            continue
        cfgs = configs[rows]
        if exit_planes:
            planes = tuple(spc * t - 1 for t in thick)
            jobs.append((rows, slice(None), measurement(max(thick), planes, cfgs, defocus)))
        else:
            for it, t in enumerate(thick):
                jobs.append((rows, it, measurement(t, None, cfgs, defocus)))
    arrays = dask.compute(
        *[m.array for _, _, m in jobs],
        scheduler="threads",
        num_workers=num_workers or os.cpu_count(),
    )
    out = np.full((len(configs), len(thick), len(positions)), np.nan)
    for (rows, cols, _), arr in zip(jobs, arrays):
        arr = _to_numpy(arr).astype(np.float64)
        arr = (
            arr.reshape(len(rows), -1, len(positions))
            if cols == slice(None)
            else arr.reshape(len(rows), len(positions))
        )
        out[rows, cols] = arr
    return out


def _to_numpy(array):
    if hasattr(array, "get"):  # CuPy
        return array.get()
    return np.asarray(array)


__all__ = ["resolve_device", "simulate_scans"]
