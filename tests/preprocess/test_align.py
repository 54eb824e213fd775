import numpy as np

from stemqd.preprocess.align import align_frames
from stemqd.simulation.synthetic import perovskite_dot


def test_shifts_recovered_within_005_px():
    frames, truth = perovskite_dot((256, 256), n_frames=8, drift_px=2.0, dose=300, seed=11)
    _, shifts = align_frames(frames)
    assert np.abs(shifts - truth.shifts_px).max() < 0.05


def test_snr_of_average_grows_as_sqrt_n():
    frames, truth = perovskite_dot(
        (192, 192), n_frames=16, drift_px=1.0, dose=50, seed=2, edge_cells=5
    )
    inner = (slice(20, -20), slice(20, -20))

    def noise(n):
        avg, _ = align_frames(frames[:n])
        return np.std((avg - truth.clean)[inner])

    # Every aligned frame is interpolated, which smooths its noise a little, so compare
    # averages that are all interpolated: 16 frames against 4 should gain sqrt(4) = 2.
    gain = noise(4) / noise(16)
    assert 1.8 < gain < 2.2
