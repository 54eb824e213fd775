"""Fixtures shared by more than one test module."""

from __future__ import annotations

import numpy as np
import pytest

from stemqd.simulation.synthetic import perovskite_dot

#: Peak height per unit cell of thickness of each CsPbBr3 column type (relative units).
_PER_CELL = {"A": 0.016, "BX": 0.05, "X": 0.0075}


@pytest.fixture(scope="session")
def thinning_dot_over_carbon():
    """``make(dose) -> (frames, truth)``: a CsPbBr3 dot of 10 x 10 cells, one cell thinner
    per cell towards its edge (sigma 0.45 Å at 0.25 Å/px, sigma / nn 0.15), over carbon at
    0.15 of its brightest column, one frame, seed 0: its edge columns are weaker than the
    support under them. Built once per dose."""
    made = {}

    def amplitudes(types, depth, edge_cells):
        cells = np.minimum(edge_cells, 1 + np.asarray(depth))
        return np.array([_PER_CELL[t] for t in types]) * cells

    def make(dose):
        if dose not in made:
            made[dose] = perovskite_dot(
                (300, 300),
                pixel_size_A=0.25,
                edge_cells=10,
                amplitudes=amplitudes,
                sigma_A=0.45,
                dose=dose,
                n_frames=1,
                drift_px=0.0,
                background_level=0.15,
                seed=0,
            )
        return made[dose]

    return make
