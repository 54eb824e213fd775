"""Experimental ADF-STEM images from PyPI packages, through the default chain.

The images (GPL-3.0 test data of atomap and temul-toolkit, not part of stemqd) are fetched
by ``python benchmarks/fetch_real_images.py`` into ``../shared/data/pypi/``; the tests skip,
saying so, where they are absent. There is no peer analysis of these images, so the tests
assert what holds without one: identical pixels in two crops of one scan give the same
columns and ratio, the fitted lattice is the material's, no column is left unfitted, and
the ratio is inside the range the ADF contrast law allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stemqd import io
from stemqd.config import load_config
from stemqd.pipeline import process_stack

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pypi"

#: The atomap files' axes are scaled in nm without the unit (0.009326 nm).
SRTIO3_PIXEL_A = 0.09326
SRTIO3_110 = ["material.name=SrTiO3", "material.zone_axis=[1,1,0]", "material.ratio=Ti:SrO"]


def _image(name):
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: run python benchmarks/fetch_real_images.py")
    return path


def _clean(columns):
    return columns[columns["flag"].fillna("") == ""]


@pytest.fixture(scope="module")
def srtio3_crops():
    """Both crops of the atomap SrTiO3 [110] scan, processed with the defaults; the small
    crop's columns in the large crop's pixels (it is [0:400, 5:385] of it)."""
    config = load_config(overrides=SRTIO3_110)
    out = {}
    for name, shift in (("SrTiO3_110_ADF_400x380.hdf5", 5.0), ("SrTiO3_110_ADF_520x599.hdf5", 0.0)):
        result = process_stack(io.load(_image(name), pixel_size_A=SRTIO3_PIXEL_A), config)
        columns = result.columns.copy()
        columns["x_px"] += shift
        out[name] = (result.summary, columns)
    return out


def test_srtio3_lattice_and_columns(srtio3_crops):
    """The fitted cell is SrTiO3's (a 3.905 Å, a / sqrt 2 across) to 1 %, and the sites
    added from the lattice stay on them: at most 5 % of the columns end "unexpected"
    (before they were held near their sites, the weak O2 sites wandered into their
    neighbours and 60 of 347 did)."""
    for summary, columns in srtio3_crops.values():
        lattice = summary["lattice"]
        assert lattice["a_A"] == pytest.approx(lattice["expected_a_A"], rel=0.01)
        assert lattice["b_A"] == pytest.approx(lattice["expected_b_A"], rel=0.01)
        unexpected = columns["flag"].fillna("").str.contains("unexpected").mean()
        assert unexpected <= 0.05
        assert summary["fitting"]["converged"]
        assert summary["quality"]["passed"]
        assert not any("the central columns give" in w for w in summary["warnings"])


def test_srtio3_two_crops_of_one_scan_agree(srtio3_crops):
    """The same pixels give the same answer whatever the field of view: the Ti : SrO ratio
    within 0.5 %, each Ti and SrO column's volume with a scatter (MAD / median) under 1.5 %
    and a median of 1 to 0.5 %, positions to 0.05 px. Measured: 0.5499 and 0.5489;
    Ti 1.0 %, SrO 0.5 %; medians 1.000; 0.02 px."""
    (small_summary, small), (large_summary, large) = srtio3_crops.values()
    assert small_summary["ratio"]["ratio"] == pytest.approx(
        large_summary["ratio"]["ratio"], rel=0.005
    )
    small, large = _clean(small), _clean(large)
    margin = 45.0  # px: the small crop's columns at least two Sr-Sr spacings inside it
    inner = small[
        (small["x_px"] > 5 + margin)
        & (small["x_px"] < 385 - margin)
        & (small["y_px"] > margin)
        & (small["y_px"] < 400 - margin)
    ]
    # the cations; the O2 columns are barely seen in HAADF, their positions loose
    inner = inner[inner["label"].isin(["Ti", "SrO"])]
    d, j = cKDTree(large[["x_px", "y_px"]].to_numpy()).query(inner[["x_px", "y_px"]].to_numpy())
    assert (d < 1.0).mean() >= 0.95
    assert np.median(d) < 0.05
    for label in ("Ti", "SrO"):
        mine = (inner["label"].to_numpy() == label) & (d < 1.0)
        assert mine.sum() >= 40, label
        q = inner["volume"].to_numpy()[mine] / large["volume"].to_numpy()[j[mine]]
        assert np.median(q) == pytest.approx(1.0, abs=0.005), label
        assert np.median(np.abs(q - np.median(q))) / np.median(q) < 0.015, label


@pytest.fixture(scope="module")
def mos2():
    """A 512 x 512 px corner of the Se-implanted MoS2 monolayer, with the defaults."""
    stack = io.load(_image("MoS2_Se-implanted_ADF_60kV.dm3"))
    crop = io.from_array(
        stack.frames[:, :512, :512],
        stack.pixel_size_A,
        voltage_kv=stack.voltage_kv,
        name="MoS2 crop",
    )
    config = load_config(overrides=["material.name=MoS2-1H", "material.ratio=S2:Mo"])
    return process_stack(crop, config)


def test_mos2_monolayer_is_fitted_and_in_the_contrast_law(mos2):
    """Every column is fitted (on the whole image the fit once stopped at its iteration
    limit and flagged all 4323 columns "not converged"; now only columns still moving may
    be, at most 5 %, and the warning counts them), at least 85 % are used, and the S2 : Mo
    ratio lies where ADF contrast Z**n, n 1.5-2.0, puts two S against one Mo (0.29-0.47),
    or up to 0.55 with the implanted Se on S sites. (Since the lattice completion leaves no
    site empty, 51 of this crop's 1121 columns, 4.5 %, are still moving when the fit stops
    at its iteration limit, bright ones among them; before, 0 of 1096, also at the limit.)"""
    summary = mos2.summary
    columns = mos2.columns
    moving = columns["flag"].fillna("").str.contains("not converged")
    assert moving.mean() <= 0.05
    if moving.any():
        assert any(f"{moving.sum()} of {len(columns)} columns" in w for w in summary["warnings"])
    assert summary["columns"]["used"] >= 0.85 * summary["columns"]["total"]
    assert 0.29 <= summary["ratio"]["ratio"] <= 0.55
    assert summary["ratio"]["n_numerator"] >= 300 and summary["ratio"]["n_denominator"] >= 300
    assert not any("expected contrast" in w for w in summary["warnings"])
    assert 0.9 <= summary["fitting"]["centre_width_ratio"] <= 1.1


@pytest.mark.slow
def test_mos2_whole_monolayer_keeps_mo_on_the_mo_sites():
    """The whole 1024 x 1024 px image (4323 columns, 2.5 min): re-registered after the
    lattice completion, with its scan distortion (gamma 117° for 120°), it came out
    mirrored, Mo on the S2 sites, S2 : Mo 2.44 with no warning. Now 0.409, the fit
    converged (all 4323 columns were once flagged "not converged")."""
    stack = io.load(_image("MoS2_Se-implanted_ADF_60kV.dm3"))
    config = load_config(overrides=["material.name=MoS2-1H", "material.ratio=S2:Mo"])
    summary = process_stack(stack, config).summary
    assert 0.29 <= summary["ratio"]["ratio"] <= 0.55
    assert summary["fitting"]["converged"]
    assert summary["columns"]["used"] >= 0.85 * summary["columns"]["total"]
    assert not any("expected contrast" in w for w in summary["warnings"])
