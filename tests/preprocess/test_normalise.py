"""Intensities normalised to the incident beam: volume_norm is the true cross-section."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stemqd.config import load_config
from stemqd.errors import ConfigError, InputError
from stemqd.io import from_array
from stemqd.preprocess.normalise import normalise_intensity, normalised_volume
from stemqd.simulation.synthetic import render_columns

PIXEL, SIGMA_A, SPACING_A = 0.2, 0.5, 4.0


def _stack(vacuum, beam, seed):
    """Columns of known cross-sections (Å², fraction of the beam) on a detector with the
    given vacuum and beam levels, with Poisson noise on the readings."""
    rng = np.random.default_rng(seed)
    n = 10
    grid = (np.arange(n) + 0.5) * SPACING_A / PIXEL + 10
    xy = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2) + rng.uniform(-0.5, 0.5, (n * n, 2))
    sigma_px = SIGMA_A / PIXEL
    cross_section = rng.uniform(0.02, 0.2, len(xy))  # Å², as PtIr's columns
    # A column of cross-section s is s / (2 pi sigma²) of the beam per Å² at its peak.
    peak = cross_section / (2 * np.pi * SIGMA_A**2)
    shape = (int(grid[-1] + 20),) * 2
    clean = vacuum + (beam - vacuum) * render_columns(shape, xy, peak, sigma_px)
    frames = rng.poisson(clean)[None].astype(np.float32)
    stack = from_array(
        frames, PIXEL, voltage_kv=300.0, convergence_mrad=30.0, name="normalised.tif"
    )
    return stack, xy, cross_section


@pytest.mark.parametrize("vacuum, beam", [(0.0, 5e4), (300.0, 2e4), (1500.0, 8e4)])
def test_volume_norm_is_the_cross_section(vacuum, beam):
    from stemqd.pipeline import process_stack

    stack, xy, truth = _stack(vacuum, beam, seed=int(beam) % 97)
    config = load_config(
        overrides=[
            "material.name=none",
            "align.enabled=false",
            "background.enabled=false",
            "denoise.enabled=false",
            "deconvolve.enabled=false",
            "columns.background=constant",
            "dot.mode=none",
            f"acquisition.vacuum_level={vacuum}",
            f"acquisition.beam_level={beam}",
        ]
    )
    columns = process_stack(stack, config).columns
    d, j = cKDTree(columns[["x_px", "y_px"]].to_numpy()).query(xy)
    assert (d < 0.5).all()
    ratio = columns["volume_norm"].to_numpy()[j] / truth
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.01)
    # Every column within 5 standard errors of its truth.
    err = columns["volume_norm_err"].to_numpy()[j]
    assert np.all(np.abs(columns["volume_norm"].to_numpy()[j] - truth) < 5 * err + 0.01 * truth)
    assert {"volume", "volume_err", "volume_norm", "volume_norm_err"} <= set(columns)


def test_without_levels_there_is_no_volume_norm():
    from stemqd.pipeline import process_stack

    stack, _, _ = _stack(0.0, 5e4, seed=1)
    config = load_config(
        overrides=[
            "material.name=none",
            "align.enabled=false",
            "background.enabled=false",
            "denoise.enabled=false",
            "deconvolve.enabled=false",
            "dot.mode=none",
        ]
    )
    assert "volume_norm" not in process_stack(stack, config).columns


def test_levels_are_validated():
    with pytest.raises(ConfigError, match="go together"):
        load_config(overrides=["acquisition.vacuum_level=10"])
    with pytest.raises(ConfigError, match="must exceed"):
        load_config(overrides=["acquisition.vacuum_level=10", "acquisition.beam_level=5"])
    with pytest.raises(InputError, match="above the vacuum level"):
        normalised_volume(1.0, 0.2, 5.0, 5.0)
    np.testing.assert_allclose(normalise_intensity([100.0, 1100.0], 100.0, 2100.0), [0.0, 0.5])
    assert normalised_volume(50.0, 0.2, 100.0, 2100.0) == pytest.approx(50 * 0.04 / 2000)
