"""Frozen-phonon and focal averages of the scans and their errors: stratified configurations, delete-a-group jackknife, two-level Monte Carlo."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from ..errors import InputError
from ..optics import focal_nodes
from .measure import cell_images, measure_cell_images
from .scan import unfold_scan

if TYPE_CHECKING:
    from .parameters import SeriesParameters


def config_nodes(num_configs: int, weights: np.ndarray) -> np.ndarray:
    """Focal node of each configuration: prefix-stable allocation proportional to weights."""
    counts = np.zeros(len(weights))
    nodes = np.empty(num_configs, int)
    for c in range(num_configs):
        j = int(np.argmax(weights * (c + 1) - counts))
        nodes[c] = j
        counts[j] += 1
    return nodes


#: Most groups of the delete-a-group jackknife of the frozen-phonon error.
JACKKNIFE_GROUPS = 20


def ensemble_weights(nodes, weights, keep=None):
    """Weight of every configuration in the ensemble mean (node weight shared by its configs)."""
    keep = np.ones(len(nodes), bool) if keep is None else keep
    counts = np.bincount(nodes[keep], minlength=len(weights)).astype(float)
    w = np.where(keep & (counts[nodes] > 0), weights[nodes] / np.maximum(counts[nodes], 1), 0.0)
    return w / w.sum()


def _jackknife_groups(nodes, n_nodes):
    """Groups of configurations, each holding about the same share of every focal node."""
    members = [np.flatnonzero(nodes == j) for j in range(n_nodes)]
    members = [m for m in members if len(m)]
    b = min(JACKKNIFE_GROUPS, min(len(m) for m in members))
    if b < 2:
        return []
    parts = [np.array_split(m, b) for m in members]
    return [np.concatenate([p[g] for p in parts]) for g in range(b)]


def _estimates(measured: dict, params: SeriesParameters) -> dict:
    """Intensities and ratios per (label or "ratio", method) from :func:`measure_cell_images`."""
    num, den = params.ratio_labels
    out = {}
    for meth in ("volume", "peak", "disc"):
        for typ in params.oriented.labels:
            out[(typ, meth)] = measured[(typ, meth)]
        out[("ratio", meth)] = measured[(num, meth)] / measured[(den, meth)]
    return out


class SeriesAnalysis(NamedTuple):
    """What :func:`analyse_series` measured (a named, immutable tuple: it also unpacks);
    ``print()`` gives the ratio per thickness and the error method, :meth:`to_dict` JSON."""

    #: One row per thickness: intensities, ratios and their standard errors.
    table: pd.DataFrame
    #: ``{(type, method): (configs, thicknesses)}`` per-configuration intensities.
    per_config: dict
    #: Fitter flags raised on any centre-tile column.
    flags: list
    #: "jackknife (B groups)" or "per-configuration scatter".
    error_method: str

    def to_dict(self) -> dict:
        """JSON-ready: the table as row dicts, the per-configuration intensities as
        ``{"type/method": [[...] per configuration]}``, the flags and the error method."""
        return {
            "table": self.table.to_dict(orient="records"),
            "per_config": {
                f"{typ}/{meth}": np.asarray(v).tolist()
                for (typ, meth), v in self.per_config.items()
            },
            "flags": list(self.flags),
            "error_method": self.error_method,
        }

    def __str__(self) -> str:
        cols = [c for c in ("thickness_uc", "ratio", "ratio_err") if c in self.table]
        text = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.5g}")
        flags = f"; fitter flags: {', '.join(self.flags)}" if self.flags else ""
        return f"{text}\nerrors: {self.error_method}{flags}"


def analyse_series(
    raw: np.ndarray, nodes: np.ndarray, params: SeriesParameters, *, correction=None
) -> SeriesAnalysis:
    """Table of intensities and ratios, with frozen-phonon errors, from raw wedge scans.

    Values are measured on the phonon- and focus-averaged image. Their standard errors come
    from a delete-a-group jackknife of that whole measurement (groups balanced over the
    focal nodes; up to :data:`JACKKNIFE_GROUPS`), which includes the non-linearity of the
    fit. With fewer than two configurations per node, the scatter of the per-configuration
    fits is used instead (stratified variance sum_j w_j² s² / n_j, ratio linearised). The
    per-configuration error of the default ratio is also reported as
    ``ratio_err_per_config`` for comparison.

    Two-level Monte Carlo (``correction`` given; Giles, Oper. Res. 56, 607 (2008)): the
    averaged image is the phonon average of ``raw`` (a cheaper potential grid) plus the mean
    difference target-grid minus phonon-grid over independent correction configurations
    simulated on both. Both terms are linear in the scans, so the sum is an unbiased
    estimate of the target-grid average; the two levels are jackknifed separately and their
    variances added. ``ratio_grid_correction`` is the change of the ratio that the second
    term makes (NaN for a one-level run).

    Parameters
    ----------
    raw : ndarray, shape (configs, thicknesses, wedge positions)
    nodes : ndarray of int
        Focal node of every configuration of ``raw``.
    params : SeriesParameters
    correction : tuple (ndarray of shape (2, m, thicknesses, positions), ndarray), optional
        Scans of the correction configurations on the phonon grid and on the target grid,
        and their focal nodes.

    Returns
    -------
    SeriesAnalysis
        ``table`` (pandas.DataFrame), ``per_config`` (``{(type, method): (configs,
        thicknesses)}`` per-configuration intensities), ``flags`` (fitter flags raised on any
        centre-tile column) and ``error_method`` ("jackknife (B groups)" or
        "per-configuration scatter"; two-level: both levels named).
    """
    num, den = params.ratio_labels
    _, weights = focal_nodes(params.focal_nodes, params.focal_spread_A)
    counts = np.bincount(nodes, minlength=len(weights)).astype(float)
    present = counts > 0
    wj = weights[present] / weights[present].sum()
    var_factor = float(np.sum(wj**2 / counts[present]))
    images = cell_images(unfold_scan(raw, params), params)  # (configs, thicknesses, m, m)
    phonon_mean = np.tensordot(ensemble_weights(nodes, weights), images, axes=(0, 0))
    if correction is not None:
        corr_raw, corr_nodes = correction
        # Interpolation and blur are linear: difference first, then one image per config.
        diffs = cell_images(unfold_scan(corr_raw[1] - corr_raw[0], params), params)
        grid_delta = np.tensordot(ensemble_weights(corr_nodes, weights), diffs, axes=(0, 0))
    else:
        grid_delta = np.zeros_like(phonon_mean)
    per = measure_cell_images(images, params)
    mean = measure_cell_images(phonon_mean + grid_delta, params)
    est = _estimates(mean, params)
    n_cfg = raw.shape[0]

    def per_config_se(values):
        if n_cfg < 2:
            return np.full(values.shape[1:], np.nan)
        return np.sqrt(np.var(values, axis=0, ddof=1) * var_factor)

    scatter = {}
    for meth in ("volume", "peak", "disc"):
        for typ in params.oriented.labels:
            scatter[(typ, meth)] = per_config_se(per[(typ, meth)])
        r = est[("ratio", meth)]
        z = (per[(num, meth)] - r * per[(den, meth)]) / mean[(den, meth)]
        scatter[("ratio", meth)] = per_config_se(z)

    def jackknife_variance(level_nodes, leave_out_image):
        groups = _jackknife_groups(level_nodes, len(weights))
        if not groups:
            return None, 0
        values = []
        for g in groups:
            keep = np.ones(len(level_nodes), bool)
            keep[g] = False
            values.append(_estimates(measure_cell_images(leave_out_image(keep), params), params))
        b = len(groups)
        return {
            k: (b - 1)
            / b
            * np.sum(
                (np.array([v[k] for v in values]) - np.mean([v[k] for v in values], axis=0)) ** 2,
                axis=0,
            )
            for k in est
        }, b

    var0, b0 = jackknife_variance(
        nodes,
        lambda keep: (
            np.tensordot(ensemble_weights(nodes, weights, keep), images, axes=(0, 0)) + grid_delta
        ),
    )
    if var0 is None:
        var0 = {k: v**2 for k, v in scatter.items()}
        error_method = "per-configuration scatter"
    else:
        error_method = f"jackknife ({b0} groups)"
    grid_corr = {k: np.full(len(params.thicknesses_uc), np.nan) for k in ("ratio", "err")}
    var = dict(var0)
    if correction is not None:
        var1, b1 = jackknife_variance(
            corr_nodes,
            lambda keep: (
                phonon_mean
                + np.tensordot(ensemble_weights(corr_nodes, weights, keep), diffs, axes=(0, 0))
            ),
        )
        if var1 is None:
            raise InputError("the grid correction needs at least two configurations per focal node")
        var = {k: var0[k] + var1[k] for k in est}
        error_method = (
            f"two-level: phonon grid {error_method}, grid correction jackknife ({b1} groups)"
        )
        phonon_only = _estimates(measure_cell_images(phonon_mean, params), params)
        grid_corr = {
            "ratio": est[("ratio", "volume")] - phonon_only[("ratio", "volume")],
            "err": np.sqrt(var1[("ratio", "volume")]),
        }
    errors = {k: np.sqrt(v) for k, v in var.items()}
    thick = np.array(params.thicknesses_uc)
    table = {"thickness_uc": thick, "thickness_nm": thick * params.thickness_unit_A / 10.0}
    units = {"volume": "_A2", "peak": "", "disc": "_A2"}
    for meth in ("volume", "peak", "disc"):
        for typ, prefix in params.oriented.prefixes.items():
            name = f"{prefix}_{meth}{units[meth]}"
            table[name] = est[(typ, meth)]
            table[name + "_err"] = errors[(typ, meth)]
        table[f"ratio_{meth}"] = est[("ratio", meth)]
        table[f"ratio_{meth}_err"] = errors[("ratio", meth)]
    table["ratio"] = table["ratio_volume"]
    table["ratio_err"] = table["ratio_volume_err"]
    table["ratio_err_phonon"] = np.sqrt(var0[("ratio", "volume")])
    table["ratio_err_per_config"] = scatter[("ratio", "volume")]
    table["ratio_grid_correction"] = grid_corr["ratio"]
    table["ratio_grid_correction_err"] = grid_corr["err"]
    table["num_configs"] = np.full(len(thick), n_cfg)
    flags = sorted(per["flags"] | mean["flags"])
    per_config = {k: v for k, v in per.items() if k != "flags"}
    return SeriesAnalysis(pd.DataFrame(table), per_config, flags, error_method)


__all__ = [
    "JACKKNIFE_GROUPS",
    "SeriesAnalysis",
    "analyse_series",
    "config_nodes",
    "ensemble_weights",
]
