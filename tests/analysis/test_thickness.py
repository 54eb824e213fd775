"""Tests of stemqd.analysis.thickness: thickness ranges from a measured ratio."""

import numpy as np
import pandas as pd
import pytest

from stemqd.analysis.thickness import thickness_from_ratio
from stemqd.errors import InputError

A_NM = 0.587


def _series(ratio, err=None):
    t = np.arange(2, 2 + 2 * len(ratio), 2, dtype=float)
    table = pd.DataFrame({"thickness_uc": t, "thickness_nm": t * A_NM, "ratio": ratio})
    table["ratio_err"] = 0.0 if err is None else err
    return table


def test_inverts_a_tabulated_point_of_a_monotonic_series():
    series = _series(np.linspace(0.25, 0.45, 15))
    r14 = float(series.loc[series.thickness_uc == 14, "ratio"].iloc[0])
    est = thickness_from_ratio(r14, 1e-4, series)
    assert est.monotonic and est.flag == ""
    assert len(est.ranges_uc) == 1
    lo, hi = est.ranges_uc[0]
    assert lo < 14 < hi and hi - lo < 0.05
    assert est.best_uc == pytest.approx(14.0)
    assert est.ranges_nm[0] == pytest.approx((lo * A_NM, hi * A_NM))


def test_range_edges_solve_the_band_equation():
    # Linear series R = 0.2 + 0.01 t: r +- s maps to t = (r -+ s - 0.2) / 0.01.
    series = _series(0.2 + 0.01 * np.arange(2, 32, 2))
    est = thickness_from_ratio(0.35, 0.02, series, n_sigma=1.0)
    assert est.ranges_uc[0] == pytest.approx((13.0, 17.0), abs=1e-6)
    wide = thickness_from_ratio(0.35, 0.02, series, n_sigma=2.0)
    assert wide.ranges_uc[0] == pytest.approx((11.0, 19.0), abs=1e-6)


def test_series_error_widens_the_band():
    ratio = 0.2 + 0.01 * np.arange(2, 32, 2)
    est = thickness_from_ratio(0.35, 0.03, _series(ratio, err=0.04))
    # sqrt(0.03^2 + 0.04^2) = 0.05 -> t in 10..20
    assert est.ranges_uc[0] == pytest.approx((10.0, 20.0), abs=1e-6)
    plain = thickness_from_ratio(0.35, 0.03, _series(ratio, err=0.04), include_series_error=False)
    assert plain.ranges_uc[0] == pytest.approx((12.0, 18.0), abs=1e-6)


def test_non_monotonic_series_returns_every_range_and_says_so():
    t = np.arange(2, 32, 2)
    series = _series(0.3 + 0.1 * np.sin(2 * np.pi * t / 16))
    est = thickness_from_ratio(0.3, 0.005, series)
    assert not est.monotonic
    assert "non-monotonic" in est.flag
    assert len(est.ranges_uc) >= 3
    for lo, hi in est.ranges_uc:
        mid = 0.5 * (lo + hi)
        assert abs(np.interp(mid, t, series.ratio) - 0.3) <= 0.005 + 1e-9
    starts = [r[0] for r in est.ranges_uc]
    assert starts == sorted(starts)


def test_no_consistent_thickness_and_open_ends_are_flagged():
    series = _series(np.linspace(0.25, 0.45, 15))
    none = thickness_from_ratio(0.9, 0.01, series)
    assert none.ranges_uc == [] and "no thickness" in none.flag
    top = thickness_from_ratio(0.45, 0.02, series)
    assert top.ranges_uc[-1][1] == pytest.approx(30.0) and "open-ended" in top.flag
    d = top.to_dict()
    assert d["ranges_uc"][-1][1] == pytest.approx(30.0) and isinstance(d["flag"], str)


def test_bad_inputs_raise_input_error():
    series = _series(np.linspace(0.25, 0.45, 15))
    with pytest.raises(InputError):
        thickness_from_ratio(0.3, -0.1, series)
    with pytest.raises(InputError):
        thickness_from_ratio(float("nan"), 0.1, series)
    with pytest.raises(InputError):
        thickness_from_ratio(0.3, 0.1, series, column="ratio_nope")
    with pytest.raises(InputError):
        thickness_from_ratio(0.3, 0.1, "/nonexistent/series.csv")
