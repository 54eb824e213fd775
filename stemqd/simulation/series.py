"""The thickness series: batches of configurations with checkpoints and resume, re-analysis of written scans, convergence checks."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..optics import focal_nodes
from .ensemble import analyse_series, config_nodes
from .files import (
    correction_key,
    params_key,
    phonons_key,
    raw_path_for,
    save_raw,
    series_fit_model,
    sidecar_path,
)
from .multislice import simulate_scans
from .parameters import QUICK_NUM_CONFIGS, SeriesParameters
from .scan import scan_indices


@dataclass
class SeriesResult:
    """A thickness series and everything needed to reproduce and judge it.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per thickness (see :func:`write_series` for the columns).
    params : SeriesParameters
    seed : int
    raw : ndarray, shape (configs, thicknesses, wedge positions)
        ADF signal of every configuration on the scanned wedge.
    nodes : ndarray of int
        Focal node of every configuration.
    per_config : dict
        Per-configuration intensities ``{(type, method): (configs, thicknesses)}``.
    info : dict
        Run metadata (time, configurations requested and reached, device, flags, ...).
    phonon_params : SeriesParameters or None
        Parameters of the phonon level (``params`` on the coarser grid) of a two-level
        run; None for one level.
    correction : ndarray, shape (2, correction configs, thicknesses, wedge positions)
        Two-level runs only: the grid-correction configurations on the phonon grid [0] and
        on the target grid [1].
    correction_nodes : ndarray of int
        Focal node of every grid-correction configuration.
    """

    table: pd.DataFrame
    params: SeriesParameters
    seed: int
    raw: np.ndarray
    nodes: np.ndarray
    per_config: dict
    info: dict = field(default_factory=dict)
    phonon_params: SeriesParameters | None = None
    correction: np.ndarray | None = None
    correction_nodes: np.ndarray | None = None


#: Configuration indices of the grid-correction level start here, so that its displacements
#: are independent of those of the phonon level (configurations 0, 1, ...).
CORRECTION_CONFIG_OFFSET = 2**30


def thickness_series(
    params: SeriesParameters | None = None,
    *,
    num_configs: int = QUICK_NUM_CONFIGS,
    seed: int = 0,
    phonon_sampling_factor: float | None = None,
    correction_configs: int = 0,
    batch_configs: int | None = None,
    max_time_s: float | None = None,
    raw_path=None,
    resume: bool = False,
    progress=None,
    num_workers: int | None = None,
    phonons=None,
) -> SeriesResult:
    """ADF-STEM thickness series of any crystal along any zone axis, measured through the
    column fitter.

    The crystal, zone axis and thickness unit are ``params.material``, ``params.zone_axis``
    and ``params.divisions`` (:func:`stemqd.simulation.structure.oriented_cell`); cubic
    CsPbBr3 [001] by default. Every column type of the oriented cell is measured.

    Parameters
    ----------
    params : SeriesParameters, optional
        Physics and numerics (defaults: the study's multislice settings); the series is for
        these.
    num_configs : int
        Frozen-phonon configurations requested (spread over the focal nodes).
    seed : int
        Seed of every displacement; configuration c is the same in any run with this seed.
    phonon_sampling_factor : float, optional
        Two-level Monte Carlo: take the frozen-phonon average on the coarser potential grid
        of this sampling factor and add the grid correction (target grid minus phonon grid)
        measured on ``correction_configs`` further configurations simulated on both grids
        (see :func:`analyse_series`). The correction varies little between configurations,
        so a few suffice, while the many phonon configurations cost a fraction of the target
        grid's. None, or the factor of ``params``: one level on the grid of ``params``.
    correction_configs : int
        Configurations of the grid correction (two-level runs; at least two per focal node).
    batch_configs : int, optional
        Configurations simulated per batch (default: one per focal node times the cores).
    max_time_s : float, optional
        Wall-time budget: no batch is started that is expected to end after it. The result
        then holds the configurations reached (``info["complete"]`` is False). The grid
        correction is simulated first.
    raw_path : path, optional
        Checkpoint of the raw wedge scans (.npz), rewritten atomically after every batch.
    resume : bool
        Continue from ``raw_path`` if it holds configurations of the same parameters and seed.
    progress : callable, optional
        ``progress(done, total, elapsed_s)`` after every batch (corrections included).
    num_workers : int, optional
        Dask threads.
    phonons : SnapshotPhonons, optional
        Displacements from MD snapshots (:mod:`stemqd.snapshot_phonons`) instead of the
        Einstein model with ``params.sigmas``; its ``source`` goes into the checkpoint key
        and ``info["phonons"]``.

    Returns
    -------
    SeriesResult
    """
    params = params or SeriesParameters()
    if num_configs < 1:
        raise InputError(f"need at least one configuration, got {num_configs}")
    level0 = phonon_level(params, phonon_sampling_factor)
    two_level = level0 != params
    if two_level and correction_configs < 2 * params.focal_nodes:
        raise InputError(
            f"a coarser phonon grid needs at least {2 * params.focal_nodes} "
            f"grid-correction configurations (two per focal node), got "
            f"{correction_configs}"
        )
    m_corr = int(correction_configs) if two_level else 0
    t0 = time.perf_counter()
    _, weights = focal_nodes(params.focal_nodes, params.focal_spread_A)
    all_nodes = config_nodes(num_configs, weights)
    corr_nodes_all = config_nodes(m_corr, weights)
    pkey = None if phonons is None else phonons.key
    key = params_key(level0, seed, pkey)
    corr_key = correction_key(level0, params, seed, pkey)
    shape = (len(params.thicknesses_uc), len(scan_indices(params)))
    raw = np.empty((0,) + shape)
    corr = np.empty((2, 0) + shape)
    if resume and raw_path is not None and Path(raw_path).exists():
        with np.load(raw_path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                raw = z["raw"][:num_configs]
            if two_level and "corr_key" in z and str(z["corr_key"]) == corr_key:
                corr = z["corr"][:, :m_corr]
    if batch_configs is None:
        batch_configs = params.focal_nodes * max(1, (num_workers or os.cpu_count() or 1))
    resumed, resumed_corr = len(raw), corr.shape[1]
    total = num_configs + m_corr
    batch_times = {"correction": [], "phonon": []}
    stopped = False

    def save():
        if raw_path is not None:
            save_raw(
                raw_path,
                params,
                seed,
                raw,
                all_nodes[: len(raw)],
                (level0, corr, corr_nodes_all[: corr.shape[1]]) if two_level else None,
                snapshot_key=pkey,
            )

    def over_budget(stage):
        times = batch_times[stage]
        return (
            max_time_s is not None
            and bool(times)
            and time.perf_counter() - t0 + max(times) > max_time_s
        )

    while corr.shape[1] < m_corr:
        if over_budget("correction"):
            stopped = True
            break
        k0 = corr.shape[1]
        k1 = min(m_corr, k0 + batch_configs)
        cfgs, nds = CORRECTION_CONFIG_OFFSET + np.arange(k0, k1), corr_nodes_all[k0:k1]
        tb = time.perf_counter()
        pair = np.stack(
            [
                simulate_scans(p, cfgs, seed, nodes=nds, num_workers=num_workers, phonons=phonons)
                for p in (level0, params)
            ]
        )
        batch_times["correction"].append(time.perf_counter() - tb)
        corr = np.concatenate([corr, pair], axis=1)
        save()
        if progress is not None:
            progress(len(raw) + corr.shape[1], total, time.perf_counter() - t0)
    while len(raw) < num_configs and not stopped:
        if over_budget("phonon"):
            break
        done = len(raw)
        stop = min(num_configs, done + batch_configs)
        tb = time.perf_counter()
        chunk = simulate_scans(
            level0, np.arange(done, stop), seed, num_workers=num_workers, phonons=phonons
        )
        batch_times["phonon"].append(time.perf_counter() - tb)
        raw = np.concatenate([raw, chunk])
        save()
        if progress is not None:
            progress(len(raw) + corr.shape[1], total, time.perf_counter() - t0)
    done = len(raw)
    nodes = all_nodes[:done]
    corr_nodes = corr_nodes_all[: corr.shape[1]]
    t_sim = time.perf_counter() - t0
    use_corr = two_level and corr.shape[1] >= 2 * params.focal_nodes
    table, per_config, flags, error_method = analyse_series(
        raw, nodes, params, correction=(corr, corr_nodes) if use_corr else None
    )
    info = {
        "num_configs_requested": int(num_configs),
        "num_configs": int(done),
        "resumed_configs": int(resumed),
        "configs_per_node": np.bincount(nodes, minlength=len(weights)).tolist(),
        "two_level": bool(two_level),
        "complete": bool(done == num_configs and corr.shape[1] == m_corr),
        "simulation_time_s": t_sim,
        "run_time_s": time.perf_counter() - t0,
        "fit_flags": flags,
        "error_method": error_method,
        "device": params.device,
        "phonons": (
            {"model": "Einstein", "sigmas_A": params.sigmas} if phonons is None else phonons.source
        ),
    }
    if two_level:
        info["phonon_grid"] = {
            "sampling_factor": level0.sampling_factor,
            "gpts": level0.grid_points,
            "sampling_A": level0.sampling_A,
        }
        info["correction_configs_requested"] = m_corr
        info["correction_configs"] = int(corr.shape[1])
        info["resumed_correction_configs"] = int(resumed_corr)
        info["correction_applied"] = bool(use_corr)
    return SeriesResult(
        table=table,
        params=params,
        seed=seed,
        raw=raw,
        nodes=nodes,
        per_config=per_config,
        info=info,
        phonon_params=level0 if two_level else None,
        correction=corr if two_level else None,
        correction_nodes=corr_nodes if two_level else None,
    )


def phonon_level(params: SeriesParameters, phonon_sampling_factor: float | None):
    """Parameters of the phonon level: ``params`` on the grid of the given sampling factor."""
    if phonon_sampling_factor is None or (
        params.gpts is None and phonon_sampling_factor == params.sampling_factor
    ):
        return params
    level0 = dataclasses.replace(params, sampling_factor=float(phonon_sampling_factor), gpts=None)
    # grid_points is one number for a square grid, a pair (x, y) for a rectangular one
    if np.any(np.atleast_1d(level0.grid_points) >= np.atleast_1d(params.grid_points)):
        raise InputError(
            f"the phonon grid ({level0.grid_points} points per side) must be coarser than "
            f"the target grid ({params.grid_points})"
        )
    return level0


def reanalyse_series(csv_path, *, fit_model: str, fit_background: str = "local") -> SeriesResult:
    """Measure the raw scans of a written series again with another column model.

    No multislice is run: the archive beside ``csv_path`` (its ``raw_archive``) is read,
    checked against the sidecar's parameters and seed, and analysed as
    :func:`thickness_series` analyses it, with ``fit_model`` and ``fit_background``.

    Returns
    -------
    SeriesResult
        ``info`` carries the original run's metadata plus ``reanalysis_of`` (the series
        and its fitter).
    """
    csv_path = Path(csv_path)
    sidecar = json.loads(sidecar_path(csv_path).read_text())
    params = SeriesParameters(
        **{**sidecar["parameters"], "fit_model": fit_model, "fit_background": fit_background}
    )
    raw_file = csv_path.parent / sidecar.get("raw_archive", raw_path_for(csv_path).name)
    grid = sidecar.get("phonon_grid")
    level0 = phonon_level(params, grid["sampling_factor"] if grid else None)
    pkey = phonons_key(sidecar)
    with np.load(raw_file, allow_pickle=False) as z:
        if str(z["key"]) != params_key(level0, sidecar["seed"], pkey):
            raise InputError(
                f"{raw_file}: the scans do not belong to the parameters and "
                f"seed of {sidecar_path(csv_path)}"
            )
        raw, nodes = z["raw"], z["nodes"]
        corr = (z["corr"], z["corr_nodes"]) if "corr" in z else None
    use_corr = corr is not None and sidecar.get("correction_applied", False)
    table, per_config, flags, error_method = analyse_series(
        raw, nodes, params, correction=corr if use_corr else None
    )
    keep = (
        "num_configs_requested",
        "num_configs",
        "resumed_configs",
        "configs_per_node",
        "two_level",
        "complete",
        "simulation_time_s",
        "device",
        "phonons",
        "phonon_grid",
        "correction_configs_requested",
        "correction_configs",
        "resumed_correction_configs",
        "correction_applied",
        "sessions",
    )
    info = {k: sidecar[k] for k in keep if k in sidecar}
    info.update(
        fit_flags=flags,
        error_method=error_method,
        reanalysis_of={
            "series": str(csv_path),
            "fitter": sidecar.get("fitter", {"model": series_fit_model(sidecar)}),
        },
    )
    return SeriesResult(
        table=table,
        params=params,
        seed=sidecar["seed"],
        raw=raw,
        nodes=nodes,
        per_config=per_config,
        info=info,
        phonon_params=level0 if level0 != params else None,
        correction=None if corr is None else corr[0],
        correction_nodes=None if corr is None else corr[1],
    )


def convergence_check(
    base: SeriesParameters,
    variants: dict,
    *,
    num_configs: int = 2,
    seed: int = 0,
    num_workers: int | None = None,
) -> pd.DataFrame:
    """Ratio of every variant minus the base at a fixed seed, per thickness.

    The displacements of a configuration depend only on (seed, configuration, cell), so the
    base and a variant (finer grid, finer scan, larger box) see the same atoms where they
    overlap and the difference is the numerical effect alone, free of phonon noise. For
    that, every run scans the wedge in the centre cell (``spread_scan=False``): a spread scan
    would put the probe over different columns in boxes of different size.

    Returns
    -------
    pandas.DataFrame
        Columns thickness_uc, variant, ratio, ratio_base, delta, rel_delta, time_s.
    """
    rows = []
    runs = {
        name: dataclasses.replace(p, spread_scan=False)
        for name, p in {"base": base, **variants}.items()
    }
    results = {}
    for name, p in runs.items():
        t0 = time.perf_counter()
        res = thickness_series(p, num_configs=num_configs, seed=seed, num_workers=num_workers)
        results[name] = (res.table, time.perf_counter() - t0)
    base_table = results["base"][0]
    for name, (table, dt) in results.items():
        for i, t in enumerate(table["thickness_uc"]):
            r, r0 = float(table["ratio"].iloc[i]), float(base_table["ratio"].iloc[i])
            rows.append(
                {
                    "thickness_uc": int(t),
                    "variant": name,
                    "ratio": r,
                    "ratio_base": r0,
                    "delta": r - r0,
                    "rel_delta": (r - r0) / r0,
                    "ratio_disc": float(table["ratio_disc"].iloc[i]),
                    "delta_disc": float(
                        table["ratio_disc"].iloc[i] - base_table["ratio_disc"].iloc[i]
                    ),
                    "time_s": dt,
                }
            )
    return pd.DataFrame(rows)


def previous_sessions(
    csv_path, level0: SeriesParameters, seed: int, snapshot_key: str | None = None
) -> list:
    """Sessions recorded in the sidecar of the run being resumed at ``csv_path``, if it has
    the same phonon level, seed and MD phonon source (``snapshot_key``); else none."""
    path = sidecar_path(csv_path)
    try:
        old = json.loads(path.read_text())
        old_params = SeriesParameters(
            **{k: (tuple(v) if k == "thicknesses_uc" else v) for k, v in old["parameters"].items()}
        )
        old_level0 = phonon_level(old_params, old.get("phonon_grid", {}).get("sampling_factor"))
    except (OSError, ValueError, KeyError, TypeError, InputError):
        return []
    if params_key(old_level0, old.get("seed"), phonons_key(old)) != params_key(
        level0, seed, snapshot_key
    ):
        return []
    if "sessions" in old:
        return list(old["sessions"])
    return [
        {
            "command": old.get("command"),
            "configs_simulated": old.get("num_configs", 0) - old.get("resumed_configs", 0),
            "configs_requested": old.get("num_configs_requested"),
            "configs_total": old.get("num_configs"),
            "simulation_time_s": old.get("simulation_time_s"),
            "run_time_s": old.get("run_time_s"),
            "device": old.get("device"),
            "finished": old.get("finished"),
        }
    ]


def record_session(
    result: SeriesResult,
    csv_path,
    *,
    command: str,
    requested: int,
    level0: SeriesParameters,
    snapshot_key: str | None = None,
) -> dict:
    """Add this run to the sessions of the series at ``csv_path``; the sidecar's extra keys.

    A resumed run continues the sessions of the sidecar it resumes (see
    :func:`previous_sessions`) and is complete only when it reaches the largest request of
    any session: ``result.info["num_configs_requested"]`` and ``["complete"]`` are set so.
    """
    info = result.info
    resumed = info["resumed_configs"] or info.get("resumed_correction_configs")
    sessions = previous_sessions(csv_path, level0, result.seed, snapshot_key) if resumed else []
    sessions.append(
        {
            "command": command,
            "configs_requested": info["num_configs_requested"],
            "configs_simulated": info["num_configs"] - info["resumed_configs"],
            "configs_total": info["num_configs"],
            **(
                {
                    "correction_configs_simulated": info["correction_configs"]
                    - info["resumed_correction_configs"],
                    "correction_configs_total": info["correction_configs"],
                }
                if info["two_level"]
                else {}
            ),
            "simulation_time_s": info["simulation_time_s"],
            "run_time_s": info["run_time_s"],
            "device": info["device"],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    info["num_configs_requested"] = max(
        [requested] + [x.get("configs_requested") or 0 for x in sessions]
    )
    info["complete"] = info["num_configs"] >= info["num_configs_requested"] and (
        info.get("correction_configs", 0) >= info.get("correction_configs_requested", 0)
    )
    known = [x["simulation_time_s"] for x in sessions if x.get("simulation_time_s") is not None]
    return {
        "sessions": sessions,
        "simulation_time_total_s": float(sum(known)),
        "simulation_time_total_complete": len(known) == len(sessions),
    }


__all__ = [
    "CORRECTION_CONFIG_OFFSET",
    "convergence_check",
    "phonon_level",
    "previous_sessions",
    "reanalyse_series",
    "record_session",
    "SeriesResult",
    "thickness_series",
]
