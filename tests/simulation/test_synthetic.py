import numpy as np

from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.simulation.synthetic import perovskite_dot


def test_deterministic_and_complete():
    f1, t1 = perovskite_dot(seed=5, n_frames=3)
    f2, t2 = perovskite_dot(seed=5, n_frames=3)
    assert np.array_equal(f1, f2) and np.array_equal(t1.shifts_px, t2.shifts_px)
    f3, _ = perovskite_dot(seed=6, n_frames=3)
    assert not np.array_equal(f1, f3)
    n = 6
    assert (t1.types == "BX").sum() == (n + 1) ** 2
    assert (t1.types == "A").sum() == n**2
    assert (t1.types == "X").sum() == 2 * n * (n + 1)
    assert f1.dtype == np.float32 and f1.shape == (3, 256, 256)
    assert np.all(t1.shifts_px[0] == 0)


def test_geometry_and_shell():
    _, t = perovskite_dot(shell_cells=2, shell_factor=0.5, edge_cells=8, shape=(300, 300))
    a_px = CSPBBR3_LATTICE_CONSTANT_A / 0.2
    a, bx = t.positions_px[t.types == "A"], t.positions_px[t.types == "BX"]
    d = np.hypot(*(a[:, None] - bx[None]).T).min()
    assert d == np.float64(d) and abs(d - a_px / np.sqrt(2)) < 1e-9  # 4.15 Å
    shell = (t.types == "BX") & (t.depth_uc < 2)
    assert np.allclose(t.amplitudes[shell], 0.5)
    assert np.allclose(t.amplitudes[(t.types == "BX") & ~shell], 1.0)


def test_dose_sets_the_counts():
    f, t = perovskite_dot(dose=400, background_level=0.0, n_frames=1, drift_px=0)
    i = np.flatnonzero(t.types == "BX")[20]
    x, y = np.rint(t.positions_px[i]).astype(int)
    assert abs(t.clean[y, x] / 400 - 1.0) < 0.05
    assert abs(f[0].mean() / t.clean.mean() - 1) < 0.01
