"""The summary's typed parts: exactly the dicts the pipeline writes, read back from old files."""

import json

import numpy as np
import pytest

from stemqd.analysis.statistics import RatioEstimate
from stemqd.batch import summary_row
from stemqd.columns.quality import QualityRecord
from stemqd.config import load_config
from stemqd.files import json_text
from stemqd.io import Stack
from stemqd.pipeline import process_stack
from stemqd.simulation.synthetic import perovskite_dot
from stemqd.summary import ColumnCounts, DotSummary, InputSummary, LatticeSummary

PIXEL = 0.2
NO_RESTORATION = ["denoise.enabled=false", "deconvolve.enabled=false", "analysis.bootstrap=0"]


def _analyse(overrides=()):
    frames, truth = perovskite_dot((256, 256), pixel_size_A=PIXEL, edge_cells=5, dose=300, seed=1)
    config = load_config(overrides=[*NO_RESTORATION, *overrides])
    # a file without microscope metadata: summary["input"] keeps its nulls
    stack = Stack(frames, PIXEL, "test", None, None, "dot.tif", "0" * 64, "float32")
    return process_stack(stack, config), truth


@pytest.fixture(scope="module")
def core():
    return _analyse()


@pytest.fixture(scope="module")
def no_material():
    return _analyse(["material.name=none"])[0]


def _written(summary):
    """The summary as summary.json holds it (NaN -> null)."""
    return json.loads(json_text(summary))


@pytest.mark.parametrize("which", ["core", "no_material"])
def test_to_dict_is_exactly_the_written_part(which, request):
    analysis = request.getfixturevalue(which)
    analysis = analysis[0] if isinstance(analysis, tuple) else analysis
    s = analysis.summary
    assert analysis.input.to_dict() == s["input"] and s["input"]["voltage_kv"] is None
    assert list(analysis.input.to_dict()) == list(s["input"])
    assert analysis.dot.to_dict() == s["dot"]
    assert analysis.column_counts.to_dict() == s["columns"]
    assert analysis.quality.to_dict() == s["quality"]
    # key order too: summary.json stays byte-identical when written from the parts
    assert list(analysis.dot.to_dict()) == list(s["dot"])
    assert list(analysis.quality.to_dict()) == list(s["quality"])
    if s["material"] is None:
        assert analysis.lattice is None and "lattice" not in s
    else:
        assert analysis.lattice.to_dict() == s["lattice"]
    # and from the JSON file (NaN edge lengths of a field-filling crystal become None)
    written = _written(s)
    for part, key in ((InputSummary, "input"), (DotSummary, "dot"), (ColumnCounts, "columns")):
        assert part.from_dict(written).to_dict() == written[key]
    assert QualityRecord.from_dict(written["quality"]).to_dict() == written["quality"]


def test_parts_hold_the_measured_numbers(core):
    analysis, truth = core
    s = analysis.summary
    assert analysis.dot.edge_lengths_nm == tuple(s["dot"]["edge_lengths_nm"])
    assert analysis.dot.mean_edge_nm == pytest.approx(5 * 0.587, abs=0.05)
    assert analysis.column_counts.used == int(
        analysis.columns["flag"].isin(["", "edge margin"]).sum()
    )
    assert analysis.lattice.a_A == pytest.approx(5.87, rel=0.005)
    q = analysis.quality
    assert q.kind == "lattice" and q.passed is True and q.reasons == ()
    assert q.on_site_intensity_fraction > 0.9


@pytest.mark.parametrize(
    "part",
    [
        InputSummary("a.dm4", "ab" * 32, 10, (256, 256), "file", 300.0, None),
        DotSummary((2.5, 3.0), 7.5, "extent", "dot", 0.4),
        DotSummary((np.nan, np.nan), 40.0, None, "none", 0.95),
        ColumnCounts(10, 8, {"edge margin": 3, "image edge": 2}, 2, {"image edge": 2}),
        LatticeSummary(5.87, 5.86, 5.874, 5.874, 12.5, False, 0.05),
        QualityRecord("fit", n_columns=12, n_significant=11, significant_fraction=11 / 12),
        QualityRecord(
            "lattice",
            50,
            49,
            0.98,
            0.99,
            0.04,
            20,
            thresholds={"n_cells": 4},
            passed=True,
            reasons=(),
        ),
    ],
    ids=repr,
)
def test_round_trip(part):
    summary = {
        {
            InputSummary: "input",
            DotSummary: "dot",
            ColumnCounts: "columns",
            LatticeSummary: "lattice",
        }.get(type(part), "quality"): part.to_dict()
    }
    back = (
        QualityRecord.from_dict(summary["quality"])
        if isinstance(part, QualityRecord)
        else type(part).from_dict(summary)
    )
    assert repr(back) == repr(part)  # NaN != NaN, so compare the reprs
    if not isinstance(part, DotSummary) or part.mode == "dot":
        assert back == part


def test_an_older_summary_lacking_keys_reads_as_none():
    old = {
        "dot": {"edge_lengths_nm": [4.0, 4.2], "area_nm2": 16.0},  # before mode and coverage
        "columns": {"total": 120, "used": 100, "flags": {}},  # before the exclusions
        "quality": {"kind": "lattice", "n_found": 120, "on_site_intensity_fraction": 0.97},
    }
    dot = DotSummary.from_dict(old)
    assert dot.mode is None and dot.coverage is None and dot.edge_lengths_method is None
    assert dot.to_dict() == old["dot"]
    cols = ColumnCounts.from_dict(old)
    assert cols.excluded_total is None and cols.to_dict() == old["columns"]
    q = QualityRecord.from_dict(old["quality"])
    assert q.passed is None and q.rms_misfit_nn is None and q.to_dict() == old["quality"]
    assert "not checked" in str(q) and "97%" in str(q)
    # a summary without the parts at all (a material-less or a very old one)
    assert DotSummary.from_dict({}) == DotSummary()
    assert InputSummary.from_dict({"input": {"path": "a.tif"}}).sha256 is None
    assert ColumnCounts.from_dict({}).total is None
    assert LatticeSummary.from_dict({}) is None
    assert QualityRecord.from_dict(None) is None
    row = summary_row("old", "old.tif", old, "skipped")
    assert row["n_columns"] == 120 and row["dot_edge_nm"] == pytest.approx(4.1)
    assert row["quality_passed"] is None and row["on_site_intensity_fraction"] == 0.97
    assert row["lattice_a_A"] is None and row["rms_misfit_nn"] is None


def test_reports_show_the_key_numbers(core, no_material):
    analysis, _ = core
    dot, cols, lat, q = analysis.dot, analysis.column_counts, analysis.lattice, analysis.quality
    assert f"{dot.edge_lengths_nm[0]:.2f}" in str(dot) and f"{dot.area_nm2:.1f} nm²" in str(dot)
    assert f"{cols.total} found, {cols.used} used" in str(cols)
    assert f"{lat.a_A:.4f}" in str(lat) and f"{lat.rms_misfit_A:.3f} Å" in str(lat)
    assert str(q).startswith("quality passed") and f"{q.n_cells} cells" in str(q)
    text = analysis.report()
    frames = analysis.summary["input"]["frames"]
    assert f"dot.tif ({frames} frames of 256 x 256 px" in str(analysis.input)
    for part in (analysis.input, dot, lat, q):
        assert str(part) in text
        assert part._repr_html_().startswith("<p>")
    # without a material: the fit measures, no lattice, and the report still reads
    q = no_material.quality
    assert q.kind == "fit" and f"of {q.n_columns} columns significant" in str(q)
    assert "[[Lattice]]" not in no_material.report() and str(q) in no_material.report()
    failing = QualityRecord.from_dict(
        {**no_material.summary["quality"], "passed": False, "reasons": ["too few"]}
    )
    assert str(failing).endswith("; too few") and "below the thresholds" in str(failing)


@pytest.mark.parametrize(
    "ratio",
    [
        RatioEstimate("Cs", "PbBr", 0.41, 0.002, 0.0021, 0.406, 0.414, 0.95, 49, 64),
        RatioEstimate(
            "Cs", "PbBr", 0.41, 0.002, np.nan, np.nan, np.nan, 0.95, 3, 4
        ),  # no bootstrap
        RatioEstimate("Cs", "PbBr", np.nan, np.nan, np.nan, np.nan, np.nan, 0.9, 1, 4),  # too few
    ],
    ids=repr,
)
def test_ratio_round_trip(ratio):
    # from the ratio's dict, from a summary holding it, and from summary.json (NaN -> null)
    written = _written({"ratio": ratio.to_dict()})
    for data in (ratio.to_dict(), {"ratio": ratio.to_dict()}, written, written["ratio"]):
        back = RatioEstimate.from_dict(data)
        assert repr(back) == repr(ratio)  # NaN != NaN, so compare the reprs
        assert _written(back.to_dict()) == written["ratio"]
    if np.isfinite(ratio.ci_low):
        assert RatioEstimate.from_dict(ratio.to_dict()) == ratio


def test_ratio_of_a_processed_stack(core, no_material):
    analysis, _ = core
    ratio = RatioEstimate.from_dict(_written(analysis.summary))
    assert repr(ratio) == repr(analysis.ratio) and ratio.numerator == "Cs"
    assert np.isfinite(ratio.ratio) and np.isnan(ratio.ci_low)  # analysis.bootstrap=0
    row = summary_row("core", "dot.tif", _written(analysis.summary), "processed")
    assert row["ratio_label"] == "Cs:PbBr" and row["ratio"] == ratio.ratio
    assert row["n_numerator"] == ratio.n_numerator and row["ci_low"] is None
    # without a material there is no ratio, and the row's ratio cells are empty
    assert RatioEstimate.from_dict(no_material.summary) is None
    row = summary_row("none", "dot.tif", no_material.summary, "processed")
    cells = ("ratio_label", "ratio", "stderr", "ci_low", "ci_high", "n_numerator", "n_denominator")
    assert all(row[k] is None for k in cells)


def test_an_older_ratio_lacking_keys():
    old = {"ratio": {"numerator": "Cs", "denominator": "PbBr", "ratio": 0.4, "stderr": 0.01}}
    ratio = RatioEstimate.from_dict(old)  # before the bootstrap and the column counts
    assert (ratio.ratio, ratio.stderr) == (0.4, 0.01)
    assert np.isnan(ratio.bootstrap_stderr) and np.isnan(ratio.confidence)
    assert ratio.n_numerator is None and ratio.n_denominator is None
    assert str(ratio) == "Cs : PbBr = 0.4000 +- 0.0100 (propagated s.e.); None / None columns"
    row = summary_row("old", "old.tif", old, "skipped")
    assert row["ratio_label"] == "Cs:PbBr" and row["ratio"] == 0.4 and row["stderr"] == 0.01
    assert row["ci_low"] is None and row["n_numerator"] is None
    # no ratio: no material (an empty part), a summary without one, nothing at all
    for data in ({"ratio": {}}, {"material": None}, {"ratio": None}, {}, None):
        assert RatioEstimate.from_dict(data) is None
