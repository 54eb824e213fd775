import numpy as np
import pytest

from stemqd.analysis.lattice import peak_pair_spacing


def test_spacing_and_uniform_strain():
    a = 29.35  # px; 5.87 Å at 0.2 Å/px
    ij = np.array([(i, j) for i in range(8) for j in range(8)], float)
    pos = ij * a + 50
    cols, summ = peak_pair_spacing(pos, [[a, 0], [0, a]], 0.2)
    assert summ["spacing_a_nm_mean"] == pytest.approx(0.587, abs=1e-9)
    assert summ["n_pairs_a"] == 7 * 8
    # 1 % tensile strain along x and a 0.5° rotation against a given reference.
    t = np.deg2rad(0.5)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    deformed = (rot @ np.diag([1.01, 1.0]) @ (ij * a).T).T
    cols, _ = peak_pair_spacing(deformed, [[a, 0], [0, a]], 0.2, reference=[[a, 0], [0, a]])
    ok = cols.dropna()
    assert np.allclose(ok.exx, 1.01 * np.cos(t) - 1, atol=1e-4)
    assert np.allclose(ok.rotation_rad, t, atol=1e-4)
    assert np.allclose(ok.eyy, np.cos(t) - 1, atol=1e-4)
