import numpy as np
from scipy.spatial import cKDTree

from stemqd.columns import find_columns
from stemqd.columns.dot import column_flags, edge_lengths_from_columns, segment_dot, surface_depth
from stemqd.preprocess.background import remove_background
from stemqd.simulation.synthetic import perovskite_dot

NN = 2.935 / 0.2


def _found(dose):
    frames, truth = perovskite_dot(
        (400, 400), edge_cells=8, dose=dose, n_frames=1, drift_px=0, seed=2
    )
    image, _ = remove_background(frames[0], 3 * 5.87 / 0.2)
    pos = find_columns(image, min_separation_px=0.6 * NN, com_radius_px=0.3 * NN, threshold_rel=0.1)
    return image, pos, truth


def test_all_columns_of_the_dot_found_none_extra():
    image, pos, truth = _found(1000)
    dot = segment_dot(image, 0.2, smoothing_px=0.5 * 5.87 / 0.2)
    inside = column_flags(pos, dot, margin_px=0) != "outside dot"
    d, _ = cKDTree(pos[inside]).query(truth.positions_px)
    assert (d < 1.0).all()  # every true column has a seed within 1 px
    d_back, _ = cKDTree(truth.positions_px).query(pos[inside])
    assert (d_back < 1.0).all()  # no seed inside the dot without a column
    edges = edge_lengths_from_columns(pos[inside], truth.lattice_vectors_px, 0.2)
    assert np.allclose(edges, 8 * 0.587, atol=0.01)
    # The mask reaches about one cell beyond the outermost column centres on each side.
    assert np.allclose(dot.edge_lengths_nm, 10 * 0.587, atol=0.3)


def test_centre_of_mass_is_background_subtracted():
    image, pos, truth = _found(1e5)
    d, _ = cKDTree(pos).query(truth.positions_px)
    assert np.sqrt(np.mean(d**2)) < 0.2


def test_surface_depth_in_unit_cells():
    _, truth = perovskite_dot((400, 400), edge_cells=8, n_frames=1)
    depth = surface_depth(truth.positions_px, np.ones(len(truth.types), bool), 5.87 / 0.2)
    assert np.array_equal(depth, truth.depth_uc)
