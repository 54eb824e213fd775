"""Dot size distribution (stemqd.analysis.sizes, ``stemqd sizes``) on fields of known truth.

Must show (issue 17, item 4), on synthetic low-magnification fields with known sizes (7 and
14 nm, 15 % spread, random rotation, 10 % touching pairs, aggregates, Poisson noise, carbon
support, uneven illumination), both contrasts: the mean within 2 %, the standard deviation
within 10 %, >= 95 % of the isolated dots measured, no aggregate or pair counted as one dot.
Fields: 28 px per mean edge (7 nm at 0.25 nm/px, 14 nm at 0.5 nm/px); 30 counts/px on the
carbon for HAADF (bright), 300 counts/px of beam for bright-field TEM (dark).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stemqd.analysis.sizes import (
    SIZE_COLUMNS,
    measure_sizes,
    min_area_rectangle,
    score_sizes,
    summarize_sizes,
)
from stemqd.cli import main
from stemqd.errors import InputError
from stemqd.files import sha256_file
from stemqd.simulation.synthetic import low_magnification_field

#: Counts per pixel per contrast: HAADF at low magnification, bright-field TEM.
DOSE = {"bright": 30.0, "dark": 300.0}


def check_field(edge_nm, pixel_nm, contrast, seed, shape):
    image, truth = low_magnification_field(
        shape, pixel_size_nm=pixel_nm, edge_nm=edge_nm, contrast=contrast, dose=DOSE[contrast],
        seed=seed,
    )  # fmt: skip
    result = measure_sizes(image, pixel_nm)
    score = score_sizes(result, truth)
    assert result.contrast == contrast  # decided by "auto"
    assert abs(score["mean_error"]) < 0.02, score
    assert abs(score["std_error"]) < 0.10, score
    assert score["isolated_measured"] >= 0.95, score
    assert score["merged"] == 0, score
    measured = result.table[result.table["flag"] == ""]
    ny, nx = image.shape
    corners = np.stack([result.rectangles[i] for i in measured.index])
    assert corners[..., 0].min() > 0 and corners[..., 0].max() < nx - 1
    assert corners[..., 1].min() > 0 and corners[..., 1].max() < ny - 1
    return score


@pytest.mark.parametrize(
    "edge_nm, pixel_nm, contrast, seed",
    [(7.0, 0.25, "bright", 0), (14.0, 0.5, "dark", 1)],
)
def test_sizes_recovered_on_small_fields(edge_nm, pixel_nm, contrast, seed):
    check_field(edge_nm, pixel_nm, contrast, seed, (512, 512))


@pytest.mark.slow
@pytest.mark.parametrize("contrast", ["bright", "dark"])
@pytest.mark.parametrize("edge_nm, pixel_nm", [(7.0, 0.25), (14.0, 0.5), (14.0, 0.25)])
def test_sizes_recovered_sweep(edge_nm, pixel_nm, contrast):
    for seed in range(3):
        check_field(edge_nm, pixel_nm, contrast, seed, (1024, 1024))


@pytest.mark.parametrize("seed", range(8))
def test_min_area_rectangle_of_rotated_rectangles(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(5, 50, 2)
    angle = rng.uniform(0, 90)
    th = np.radians(angle)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    local = rng.uniform(-0.5, 0.5, (200, 2)) * (a, b)  # interior points
    local[:4] = 0.5 * np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    center = rng.uniform(-100, 100, 2)
    got_center, (sa, sb), got_angle, corners = min_area_rectangle(local @ rot.T + center)
    np.testing.assert_allclose(got_center, center, atol=1e-9)
    # The first side lies along got_angle in [0, 90): a at `angle`, or b at angle - 90.
    want = (a, b) if np.isclose(got_angle, angle, atol=1e-6) else (b, a)
    assert np.isclose(got_angle % 90, angle % 90, atol=1e-6)
    np.testing.assert_allclose((sa, sb), want, rtol=1e-9)
    assert 0 <= got_angle < 90
    assert np.isclose(abs(np.cross(corners[1] - corners[0], corners[3] - corners[0])), a * b)


def test_summarize_sizes_lognormal_fit():
    rng = np.random.default_rng(4)
    sigma, median = 0.15, 13.8
    edges = rng.lognormal(np.log(median), sigma, 4000)
    summary = summarize_sizes(edges)
    assert summary["n"] == 4000
    assert np.isclose(summary["mean_nm"], edges.mean())
    assert np.isclose(summary["std_nm"], edges.std(ddof=1))
    assert np.isclose(summary["relative_spread"], edges.std(ddof=1) / edges.mean())
    # Maximum likelihood with the location fixed at 0: ln L is normal.
    assert np.isclose(summary["lognormal_sigma"], np.log(edges).std(), rtol=1e-3)
    assert abs(summary["lognormal_sigma"] / sigma - 1) < 0.05
    assert abs(summary["lognormal_median_nm"] / median - 1) < 0.01
    expected = stats.lognorm(summary["lognormal_sigma"], scale=summary["lognormal_median_nm"])
    assert np.isclose(summary["lognormal_mean_nm"], expected.mean())
    assert np.isclose(summary["lognormal_std_nm"], expected.std())
    single = summarize_sizes([7.0])
    assert single["n"] == 1 and single["std_nm"] is None and single["lognormal_sigma"] is None


def test_bad_images_raise_input_error():
    with pytest.raises(InputError, match="no dots"):
        measure_sizes(np.full((64, 64), 100.0), 0.25)
    with pytest.raises(InputError, match="2-D"):
        measure_sizes(np.ones((3, 64, 64)), 0.25)
    with pytest.raises(InputError, match="contrast"):
        measure_sizes(np.ones((64, 64)), 0.25, contrast="grey")


def test_cli_sizes_writes_results_and_reports_bad_files(tmp_path, capsys):
    image, truth = low_magnification_field(
        (320, 320), pixel_size_nm=0.25, edge_nm=7.0, contrast="dark", dose=300.0, seed=5
    )
    np.save(tmp_path / "field.npy", image)
    (tmp_path / "broken.npy").write_text("not an image")
    out = tmp_path / "out"
    rc = main(
        ["sizes", str(tmp_path / "field.npy"), str(tmp_path / "broken.npy"),
         "--pixel-size", "0.25nm", "--out", str(out)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 1  # one image failed, the other has results
    assert "broken.npy" in captured.err and captured.err.count("\n") == 1
    table = pd.read_csv(out / "field" / "sizes.csv", keep_default_na=False)
    assert list(table.columns) == SIZE_COLUMNS
    summary = json.loads((out / "field" / "summary.json").read_text())
    measured = table[table["flag"] == ""]
    assert summary["n"] == len(measured) > 5
    assert np.isclose(summary["mean_nm"], measured["edge_nm"].astype(float).mean(), rtol=1e-5)
    assert summary["contrast"] == "dark" and summary["contrast_skewness"] < 0
    assert summary["pixel_size_source"] == "override"
    # the provenance at the top level, in the schema every output uses
    assert set(summary["inputs"].values()) == {sha256_file(tmp_path / "field.npy")}
    assert summary["stemqd_version"] and summary["versions"]["scikit-image"]
    assert "provenance" not in summary and summary["parameters"]
    assert (out / "field" / "sizes.png").stat().st_size > 0
    reference = truth[(truth["kind"] != "aggregate") & ~truth["cut_by_border"]]
    assert abs(summary["mean_nm"] / reference["edge_nm"].mean() - 1) < 0.03
    # The contrast given explicitly is used and recorded.
    rc = main(
        ["sizes", str(tmp_path / "field.npy"), "--pixel-size", "0.25nm", "--contrast",
         "dark", "--out", str(tmp_path / "out2")]
    )  # fmt: skip
    assert rc == 0
    assert json.loads((tmp_path / "out2" / "field" / "summary.json").read_text())["contrast"] == (
        "dark"
    )
    # The sizes folder has its HTML report: the measured numbers and the figure.
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "stemqd sizes report" in page and f"{summary['mean_nm']:.2f}" in page
    assert page.count("<img") == 1


def test_cli_sizes_usage_errors(tmp_path, capsys):
    assert main(["sizes", "x.npy", "--pixel-size", "fast", "--out", str(tmp_path)]) == 2
    assert "--pixel-size" in capsys.readouterr().err
