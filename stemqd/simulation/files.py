"""Series files: the CSV, its JSON sidecar (parameters, fitter, versions, sessions), the raw-scan archive, and the plot."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import provenance
from ..errors import InputError
from .parameters import MIN_CONFIGS_FOR_SE, TARGET_RATIO_SE, SeriesParameters

if TYPE_CHECKING:
    from .series import SeriesResult


def versions() -> dict:
    """Versions of stemqd, abTEM, ASE and the libraries that shape the numbers."""
    return provenance.versions(extra=("abtem", "ase"))


def host_info() -> dict:
    """Platform, core count and the CPU that numba compiles for (LLVM's name, e.g. znver4).

    The window7 fitter's last digits depend on the instruction set (AVX2 or AVX-512 sums);
    the CPU name says which one a series was measured with.
    """
    import llvmlite.binding as llvm

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": str(llvm.get_host_cpu_name()),
    }


def sidecar_path(csv_path) -> Path:
    """The JSON sidecar beside a series CSV (same name, .json)."""
    return Path(csv_path).with_suffix(".json")


def raw_path_for(csv_path) -> Path:
    """The raw-scan archive beside a series CSV (same name, .raw.npz)."""
    p = Path(csv_path)
    return p.with_name(p.stem + ".raw.npz")


def correction_key(
    level0: SeriesParameters, params: SeriesParameters, seed: int, snapshot_key: str | None = None
) -> str:
    return json.dumps(
        {
            "phonon": params_key(level0, seed, snapshot_key),
            "target": params_key(params, seed, snapshot_key),
        },
        sort_keys=True,
    )


def params_key(params: SeriesParameters, seed: int, snapshot_key: str | None = None) -> str:
    """Identity of a raw-scan checkpoint: the parameters (and MD phonon source, if any) that
    change the raw signal."""
    key = {"params": params.scan_dict(), "seed": seed}
    if snapshot_key is not None:
        key["phonons"] = snapshot_key
    return json.dumps(key, sort_keys=True)


def phonons_key(info: dict) -> str | None:
    """Checkpoint key of the MD phonon source in a result's ``info`` (None: Einstein model)."""
    source = info.get("phonons", {})
    return (
        None
        if source.get("model", "Einstein") == "Einstein"
        else json.dumps(source, sort_keys=True)
    )


def save_raw(path, params, seed, raw, nodes, two_level=None, snapshot_key=None):
    """Checkpoint: phonon-level scans, and the grid-correction scans of a two-level run.

    ``two_level`` is ``(phonon_params, correction scans, correction nodes)`` or None; the
    keys that :func:`thickness_series` checks on resume are derived here.
    """
    import io as _io

    from ..files import atomic_write_bytes

    level0, extra = params, {}
    if two_level is not None:
        level0, corr, corr_nodes = two_level
        extra = {
            "corr": corr.astype(np.float64),
            "corr_nodes": corr_nodes,
            "corr_key": np.array(correction_key(level0, params, seed, snapshot_key)),
        }
    key = params_key(level0, seed, snapshot_key)
    buf = _io.BytesIO()
    np.savez_compressed(
        buf,
        raw=raw.astype(np.float64),
        nodes=nodes,
        key=np.array(key),
        seed=np.array(seed),
        **extra,
    )
    atomic_write_bytes(path, buf.getvalue())


def fitter_settings(params: SeriesParameters) -> dict:
    """How the simulated images were measured: what a measured ratio must match."""
    out = {"model": params.fit_model, "tiles": params.fit_tiles, "pixel_A": params.fit_pixel_A}
    if params.fit_model == "window7":
        out["radius_A"] = params.effective_fit_radius_A
    else:
        out["background"] = params.fit_background
    return out


def series_fit_model(sidecar: dict) -> str:
    """The column model a series was measured with, from its sidecar (``window7`` for
    series written before the model was recorded)."""
    return sidecar.get("fitter", {}).get("model") or sidecar.get("parameters", {}).get(
        "fit_model", "window7"
    )


def write_series(
    result: SeriesResult,
    csv_path,
    *,
    command: str | None = None,
    mode: str = "reference",
    extra: dict | None = None,
    raw_archive=None,
) -> dict:
    """Write the series CSV, its JSON sidecar and the raw-scan archive, each atomically.

    ``raw_archive``: an existing archive of these scans (a re-analysis) that the sidecar
    names, with its SHA-256, instead of writing a copy.

    CSV columns: ``thickness_uc`` (units of repeat / divisions along the beam: unit cells
    for cubic perovskites) and ``thickness_nm``; for each method (``volume``: fitted
    Gaussian volume, Å²; ``peak``: fitted peak amplitude, fraction of the incident probe;
    ``disc``: disc integral, Å²) and column type (its label lowercased: ``cs``, ``pbbr``,
    ``br`` for CsPbBr3 [001]): ``{type}_{method}[_A2]`` and its frozen-phonon standard
    error ``..._err``; the ratio of ``params.ratio_labels`` (Cs : Pb/Br by default)
    ``ratio_{method}`` with ``ratio_{method}_err``; ``ratio`` / ``ratio_err`` (= volume, the
    default); ``num_configs``. The sidecar's ``derived.structure`` names the structure, zone
    axis, box, columns and ratio.

    Returns
    -------
    dict
        The sidecar content.
    """
    from ..files import atomic_write_text, sha256_file, to_jsonable

    csv_path = Path(csv_path)
    if raw_archive is None:
        raw = raw_path_for(csv_path)
        save_raw(
            raw,
            result.params,
            result.seed,
            result.raw,
            result.nodes,
            None
            if result.phonon_params is None
            else (result.phonon_params, result.correction, result.correction_nodes),
            snapshot_key=phonons_key(result.info),
        )
        raw_name = raw.name
    else:
        raw = Path(raw_archive)
        raw_name = os.path.relpath(raw, csv_path.parent)
    table = result.table
    last = table.iloc[-1]
    n_cfg = result.info.get("num_configs", len(result.raw))
    s1 = float(last["ratio_err_phonon"]) * math.sqrt(n_cfg)
    reliable = bool(n_cfg >= MIN_CONFIGS_FOR_SE)
    sidecar = {
        "description": f"ADF-STEM thickness series of {series_title(result.params)} (abTEM "
        "multislice, frozen phonons, exit planes), column intensities from stemqd.columns.fit."
        "refine_columns on the simulated images; see stemqd/simulation/.",
        "fitter": fitter_settings(result.params),
        "mode": mode,
        "command": command if command is not None else " ".join(sys.argv),
        "seed": result.seed,
        "parameters": result.params.to_dict(),
        "derived": result.params.derived(),
        "conventions": {
            "phonon_sigmas": "rms displacement per Cartesian direction (U_iso = sigma^2); "
            "defaults from the project's PBE AIMD at 300 K, about the "
            "mean positions (simulations/reference/cspbbr3_bulk_aimd/"
            "a6.00/phonon_sigmas.json, thermal_sigma_A)",
            "energy_spread": "FWHM; focal spread sigma = Cc * sigma_E / E0 (Kirkland 2010)",
            "chromatic_aberration": "assumed, not given by the study",
            "source_size": "FWHM, Gaussian, added in quadrature to the extra blur sigma",
            "defocus": "0 = focused on the entrance surface",
            "intensity_units": "fraction of the incident probe; volume and disc in A^2",
        },
        "frozen_phonon_convergence": {
            "thickness_uc": int(last["thickness_uc"]),
            "ratio_se": float(last["ratio_err"]),
            "ratio_se_method": result.info.get("error_method"),
            "ratio_se_phonon_level": float(last["ratio_err_phonon"]),
            "ratio_se_per_config_scatter": float(last["ratio_err_per_config"]),
            "ratio_grid_correction": float(last["ratio_grid_correction"]),
            "ratio_grid_correction_se": float(last["ratio_grid_correction_err"]),
            "target_se": TARGET_RATIO_SE,
            "se_reliable": reliable,
            "target_met": bool(reliable and float(last["ratio_err"]) < TARGET_RATIO_SE),
            "single_config_equivalent_se": s1,
            "configs_needed_for_target": (
                math.ceil((s1 / TARGET_RATIO_SE) ** 2) if math.isfinite(s1) else None
            ),
            "single_config_equivalent_se_note": "phonon level: ratio_se_phonon_level x "
            "sqrt(configurations)",
        },
        **{k: v for k, v in result.info.items()},
        "versions": versions(),
        "host": host_info(),
        "raw_archive": raw_name,
        "raw_archive_sha256": sha256_file(raw),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        sidecar.update(extra)
    fp = sidecar["frozen_phonon_convergence"]
    sidecar["status"] = (
        f"{'complete' if sidecar.get('complete') else 'INCOMPLETE'}: "
        f"{sidecar.get('num_configs')} of {sidecar.get('num_configs_requested')} "
        f"configurations; ratio SE at {fp['thickness_uc']} uc {fp['ratio_se']:.4f} "
        f"({fp['ratio_se_method']}) vs target {TARGET_RATIO_SE}: "
        f"{'met' if fp['target_met'] else 'NOT met'}"
        + (
            ""
            if reliable
            else f" (error estimate unreliable with fewer than {MIN_CONFIGS_FOR_SE} configurations)"
        )
    )
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.8g"))
    atomic_write_text(sidecar_path(csv_path), json.dumps(to_jsonable(sidecar), indent=2) + "\n")
    return sidecar


def read_series(path) -> pd.DataFrame:
    """Read a series CSV written by :func:`write_series` (checks the required columns).

    ``attrs["fit_model"]`` is the column model it was measured with, from its sidecar
    (absent without one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such thickness-series CSV")
    try:
        table = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input file
        raise InputError(f"{path}: cannot read the series CSV ({exc})") from exc
    check_series(table, str(path))
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        table.attrs["fit_model"] = series_fit_model(json.loads(sidecar.read_text()))
    return table


def check_series(table: pd.DataFrame, name: str = "series") -> None:
    need = {"thickness_uc", "thickness_nm", "ratio", "ratio_err"}
    missing = need - set(table.columns)
    if missing:
        raise InputError(f"{name}: missing columns {sorted(missing)}")
    if len(table) < 2 or not np.all(np.diff(table["thickness_uc"].to_numpy()) > 0):
        raise InputError(f"{name}: needs at least two rows of increasing thickness")


def plot_series(
    table: pd.DataFrame, path, *, title: str | None = None, ratio_name: str = "Cs : Pb/Br ratio"
) -> None:
    """Ratio and intensities versus thickness, to a PNG written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..files import save_figure

    fig = Figure(figsize=(9.0, 3.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    t = table["thickness_uc"]
    for meth, style in (("volume", "o-"), ("disc", "s--"), ("peak", "^:")):
        if f"ratio_{meth}" in table:
            ax1.errorbar(
                t,
                table[f"ratio_{meth}"],
                yerr=table[f"ratio_{meth}_err"],
                fmt=style,
                ms=4,
                capsize=2,
                label={"volume": "fitted volume", "disc": "disc", "peak": "fitted peak"}[meth],
            )
    ax1.set_xlabel("thickness (units)")
    ax1.set_ylabel(ratio_name)
    ax1.legend(fontsize=8)
    prefixes = [c[: -len("_volume_A2")] for c in table.columns if c.endswith("_volume_A2")]
    for n, prefix in enumerate(prefixes):
        label, colour = prefix, f"C{n}"
        col = f"{prefix}_volume_A2"
        ax2.errorbar(
            t,
            table[col],
            yerr=table[col + "_err"],
            fmt="o-",
            ms=3,
            capsize=2,
            color=colour,
            label=f"{label} (fit)",
        )
        col = f"{prefix}_disc_A2"
        ax2.plot(t, table[col], "--", lw=1, color=colour, label=f"{label} (disc)")
    ax2.set_xlabel("thickness (unit cells)")
    ax2.set_ylabel("cross-section (Å²)")
    ax2.legend(fontsize=7, ncol=2)
    sec = ax1.secondary_xaxis(
        "top", functions=(lambda x: x * nm_per_uc(table), lambda x: x / nm_per_uc(table))
    )
    sec.set_xlabel("thickness (nm)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def series_title(params: SeriesParameters) -> str:
    """``"CsPbBr3 [001]"``: the material and zone axis of a series."""
    zone = "".join(str(v) if v >= 0 else f"-{-v}" for v in params.zone_axis)
    return f"{params.oriented.name} [{zone}]"


def nm_per_uc(table):
    return float(table["thickness_nm"].iloc[-1] / table["thickness_uc"].iloc[-1])


__all__ = [
    "check_series",
    "correction_key",
    "fitter_settings",
    "host_info",
    "nm_per_uc",
    "params_key",
    "phonons_key",
    "plot_series",
    "raw_path_for",
    "read_series",
    "save_raw",
    "series_fit_model",
    "series_title",
    "sidecar_path",
    "versions",
    "write_series",
]
