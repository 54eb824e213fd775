"""The default chain's Cs : Pb/Br ratio on synthetic CsPbBr3 dots over carbon, across column
width and dose (the reduced grid of ``benchmarks/bench_chain.py``, which has the full one)."""

import numpy as np
import pytest

from stemqd.config import load_config, replace
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.pipeline import analyse_image, preprocess
from stemqd.simulation.synthetic import perovskite_dot

PIXEL_A = 0.2
NN_A = CSPBBR3_LATTICE_CONSTANT_A / 2  # Br to Pb-Br


def _ratio_errors(overlap, dose, seeds):
    config = load_config()
    config = replace(config, analysis=replace(config.analysis, bootstrap=0))
    out = []
    for seed in seeds:
        frames, truth = perovskite_dot(
            (256, 256),
            pixel_size_A=PIXEL_A,
            edge_cells=7,
            sigma_A=overlap * NN_A,
            dose=dose,
            n_frames=1,
            drift_px=0.0,
            background_level=0.15,
            seed=seed,
        )
        images, _ = preprocess(frames, PIXEL_A, config)
        fit_image = images[config.columns.fit_on]
        summary = analyse_image(images["final"], PIXEL_A, config, fit_image=fit_image).summary
        out.append(summary["ratio"]["ratio"] / truth.ratio("A", "BX") - 1)
    return np.array(out)


# Measured with 5 seeds (bench_chain.py): at sigma / nn 0.1 and 20 counts the least-squares
# width is biased at about 20 counts per weak column (ratio -2.5 %); at 0.45 and 20 counts
# the weak Br columns next to Cs take its intensity (-20 % and worse). Kept as strict xfails
# so that the targets stay in view.
_LOW_DOSE = pytest.mark.xfail(
    strict=True, reason="low-dose least-squares bias (see the Real images issue note)"
)


@pytest.mark.parametrize(
    "overlap, dose",
    [
        (0.10, 1000),
        (0.30, 100),
        (0.45, 1000),
        pytest.param(0.10, 20, marks=[_LOW_DOSE, pytest.mark.slow]),
        pytest.param(0.45, 20, marks=[_LOW_DOSE, pytest.mark.slow]),
    ],
)
def test_default_chain_ratio_within_two_percent(overlap, dose):
    """Mean over seeds within 2 % of the truth, no single image beyond 5 %."""
    errors = _ratio_errors(overlap, dose, seeds=(0, 1, 2))
    assert abs(errors.mean()) < 0.02, errors
    assert np.abs(errors).max() < 0.05, errors
