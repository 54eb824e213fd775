"""The dot's geometry (stemqd.columns.dot) against a synthetic dot's known depths."""

import numpy as np

from stemqd.columns.dot import surface_depth
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.simulation.synthetic import perovskite_dot


def test_surface_depth_in_unit_cells():
    _, truth = perovskite_dot((400, 400), edge_cells=8, n_frames=1)
    depth = surface_depth(
        truth.positions_px, np.ones(len(truth.types), bool), CSPBBR3_LATTICE_CONSTANT_A / 0.2
    )
    assert np.array_equal(depth, truth.depth_uc)
