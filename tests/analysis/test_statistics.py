import numpy as np
import pytest

from stemqd.analysis.statistics import (
    compare_groups,
    intensity_ratio,
    ratio_by_depth,
    type_statistics,
    voronoi_cross_sections,
)


def test_ratio_uncertainty_propagated_and_bootstrapped():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.05, 400)
    b = rng.normal(1.0, 0.05, 400)
    values = np.concatenate([a, b])
    labels = np.array(["Cs"] * 400 + ["PbBr"] * 400)
    r = intensity_ratio(values, labels, "Cs", "PbBr", bootstrap=4000, seed=1)
    assert r.ratio == pytest.approx(0.5, abs=3 * r.stderr)
    expected = 0.5 * np.hypot(0.05 / 0.5, 0.05 / 1.0) / np.sqrt(400)
    assert r.stderr == pytest.approx(expected, rel=0.1)
    assert r.bootstrap_stderr == pytest.approx(r.stderr, rel=0.1)
    assert r.ci_low < r.ratio < r.ci_high
    table = type_statistics(values, labels)
    assert table.loc["Cs", "count"] == 400
    assert table.loc["PbBr", "sem"] == pytest.approx(table.loc["PbBr", "std"] / 20)


def test_ratio_by_depth_reveals_shell():
    depth = np.repeat([0, 1, 2, 3], 50)
    labels = np.tile(["Cs", "PbBr"], 100)
    values = np.where(labels == "Cs", 0.4, np.where(depth < 2, 0.6, 1.0))
    prof = ratio_by_depth(values, labels, depth, "Cs", "PbBr")
    assert np.allclose(prof.ratio, [0.4 / 0.6, 0.4 / 0.6, 0.4, 0.4])


def test_group_comparison():
    rng = np.random.default_rng(3)
    core = rng.normal(0.45, 0.02, 8)
    shell = rng.normal(0.60, 0.02, 8)
    out = compare_groups(core, shell, permutations=2000, bootstrap=2000, seed=0)
    assert out["welch_p"] < 1e-4 and out["permutation_p"] < 0.01
    assert out["hedges_g"] > 3
    assert out["diff_ci_low"] < out["difference"] < out["diff_ci_high"]
    assert out["diff_ci_low"] > 0
    same = compare_groups(core, core + rng.normal(0, 1e-3, 8), permutations=2000, seed=0)
    assert same["permutation_p"] > 0.5


def test_voronoi_cross_section_integrates_cells():
    image = np.zeros((20, 40))
    image[10, 10] = 3.0
    image[10, 30] = 5.0
    cs = voronoi_cross_sections(image, [[10, 10], [30, 10]], max_radius_px=8)
    assert np.allclose(cs, [3.0, 5.0])


def test_ratio_estimate_prints_and_serialises():
    labels = np.array(["Cs"] * 3 + ["PbBr"] * 4)
    values = np.array([1.0, 1.1, 0.9, 2.0, 2.2, 1.8, 2.0])
    r = intensity_ratio(values, labels, "Cs", "PbBr", bootstrap=0)
    d = r.to_dict()
    assert d["n_numerator"] == 3 and isinstance(d["n_numerator"], int)
    assert d["ratio"] == pytest.approx(0.5)
    assert np.isnan(d["bootstrap_stderr"])
    assert str(r).startswith("Cs : PbBr = 0.5000 +- ")
    assert "3 / 4 columns" in str(r)
    few = intensity_ratio(values[:4], labels[:4], "Cs", "PbBr")
    assert np.isnan(few.ratio) and "too few columns" in str(few)


def test_in_statistics_takes_clean_and_edge_margin_columns_only():
    import pandas as pd

    from stemqd.analysis.statistics import in_statistics

    table = pd.DataFrame(
        {"flag": ["", "edge margin", "edge margin; weak", "outside dot", None, "not converged"]}
    )
    assert in_statistics(table).tolist() == [True, True, False, False, True, False]
    assert in_statistics(pd.DataFrame({"x_px": [1.0, 2.0]})).tolist() == [True, True]
