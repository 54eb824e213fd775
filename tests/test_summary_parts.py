"""The summary's typed parts: exactly the dicts the pipeline writes, read back from old files."""

import json
from pathlib import Path

import numpy as np
import pytest

from stemqd.analysis.statistics import RatioEstimate
from stemqd.analysis.thickness import ThicknessEstimate
from stemqd.batch import summary_row
from stemqd.columns.quality import QualityRecord
from stemqd.config import load_config
from stemqd.files import json_text
from stemqd.io import from_array
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.pipeline import process_stack, thickness_summary
from stemqd.simulation.synthetic import perovskite_dot
from stemqd.summary import (
    ColumnCounts,
    DotSummary,
    FittingSummary,
    InputSummary,
    JointFit,
    LatticeSummary,
    PerTypeSummary,
    RunSummary,
    SpacingSummary,
    SublatticeSpacing,
    ThicknessSummary,
    TypeStatistics,
)

PIXEL = 0.2
NO_RESTORATION = ["denoise.enabled=false", "deconvolve.enabled=false", "analysis.bootstrap=0"]
REFERENCE = Path(__file__).parents[1] / "simulations/reference"
SERIES = REFERENCE / "cspbbr3_001_adf_series_round.csv"  # measured with the default model


def _analyse(overrides=()):
    frames, truth = perovskite_dot((256, 256), pixel_size_A=PIXEL, edge_cells=5, dose=300, seed=1)
    config = load_config(overrides=[*NO_RESTORATION, *overrides])
    # a file without microscope metadata: summary["input"] keeps its nulls
    stack = from_array(frames, PIXEL, name="dot.tif")
    return process_stack(stack, config), truth


@pytest.fixture(scope="module")
def core():
    return _analyse([f"reference_series={SERIES}"])


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
    assert analysis.dot.mean_edge_nm == pytest.approx(5 * CSPBBR3_LATTICE_CONSTANT_A / 10, abs=0.05)
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
        QualityRecord(
            "fit", n_columns=12, n_significant=11, significant_fraction=11 / 12, width_px=2.1
        ),
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


# --------------------------------------------------------------------------------------
# per_type, spacing, thickness, fitting, run

_NEW_PARTS = (
    (PerTypeSummary, "per_type"),
    (SpacingSummary, "spacing"),
    (ThicknessSummary, "thickness"),
    (FittingSummary, "fitting"),
    (RunSummary, "run"),
)


@pytest.mark.parametrize("which", ["core", "no_material"])
def test_new_parts_to_dict_are_exactly_the_written_parts(which, request):
    analysis = request.getfixturevalue(which)
    analysis = analysis[0] if isinstance(analysis, tuple) else analysis
    s = analysis.summary
    parts = {
        "per_type": analysis.per_type,
        "spacing": analysis.spacing,
        "thickness": analysis.thickness,
        "fitting": analysis.fitting,
    }
    for key, part in parts.items():
        if key not in s:  # no spacing or thickness without a material and a series
            assert part is None or len(part) == 0
            continue
        # the written bytes, key order included (NaN spacings of a sparse sublattice too)
        assert json_text(part.to_dict()) == json_text(s[key]), key
    # and from summary.json, where NaN is null
    written = _written(s)
    for part, key in _NEW_PARTS:
        if key in written:
            assert json_text(part.from_dict(written).to_dict()) == json_text(written[key]), key
    assert analysis.run == RunSummary()  # recorded only when 'process' writes the results


def test_new_parts_hold_the_measured_numbers(core, no_material):
    analysis, truth = core
    per_type, spacing, fitting = analysis.per_type, analysis.spacing, analysis.fitting
    used = analysis.columns[analysis.columns["flag"].isin(["", "edge margin"])]
    assert set(per_type) == set(used["label"])
    cs = used.loc[used["label"] == "Cs", "intensity"]
    assert per_type["Cs"].count == len(cs)
    assert per_type["Cs"].mean == pytest.approx(cs.mean(), rel=1e-12)
    assert per_type["Cs"].sem == pytest.approx(cs.std(ddof=1) / np.sqrt(len(cs)), rel=1e-12)
    assert set(spacing) == {"Cs", "PbBr"}
    for sp in spacing.values():  # the synthetic lattice constant, 5.87 Å
        assert 10 * sp.spacing_a_nm_mean == pytest.approx(5.87, rel=0.005)
        assert 10 * sp.spacing_b_nm_mean == pytest.approx(5.87, rel=0.005)
        assert sp.n_pairs_a > 0 and len(sp.reference_vectors_A) == 2
    assert fitting.model == "round" and fitting.seeds == "found"
    assert fitting.spacing_source == "projected cell"
    assert fitting.joint.converged is True and fitting.joint.iterations > 0
    assert fitting.joint.constant is None and "constant" in fitting.to_dict()  # local offsets
    thick = analysis.thickness
    assert thick.series == str(SERIES) and thick.refused is None
    assert thick.estimate.series_fit_model == "round"
    assert thick.flag == analysis.summary["thickness"]["flag"]
    # without a material: one type, no spacings, the spacing from the image
    assert list(no_material.per_type) == ["column"] and not no_material.spacing
    assert no_material.fitting.spacing_source == "image autocorrelation"
    assert no_material.thickness is None


def _thickness_estimate():
    return ThicknessEstimate(
        ranges_uc=[(4.2, 7.2)],
        ranges_nm=[(2.45, 4.21)],
        monotonic=False,
        flags=["non-monotonic series"],
        best_uc=6.0,
        ratio=0.3787,
        ratio_err=0.0023,
        series_range_uc=(2.0, 30.0),
        series_fit_model="round",
    )


@pytest.mark.parametrize(
    "part",
    [
        PerTypeSummary(
            {
                "Cs": TypeStatistics(49.0, 262.8, 10.2, 1.45),
                "PbBr": TypeStatistics(64.0, 694.0, 13.0, 1.6),
            }
        ),
        PerTypeSummary({"column": TypeStatistics(1.0, 5.0, np.nan, np.nan)}),  # one column
        PerTypeSummary(),
        SpacingSummary(
            {
                "Cs": SublatticeSpacing(
                    0.587, 0.003, 0.5867, 0.0031, 42, 42, ((5.86, 0.16), (-0.15, 5.87))
                ),
                "PbBr": SublatticeSpacing(
                    np.nan, np.nan, np.nan, np.nan, 0, 0, ((np.nan, np.nan),) * 2
                ),
            }
        ),
        ThicknessSummary("series.csv", estimate=_thickness_estimate()),
        ThicknessSummary("series.csv", estimate=ThicknessEstimate([], [], True, ["no thickness"])),
        ThicknessSummary("series.csv", refused="fitted with window7"),
        ThicknessSummary("series.csv"),
        FittingSummary(
            "round",
            "local",
            "average",
            9.78,
            "projected cell",
            "found",
            3,
            JointFit(
                {"": {"sigma_px": 1.95}},
                {"": {"sigma_px": 0.002}},
                None,
                27,
                True,
                0.56,
                65536,
                other={"spline_knots": 8},
            ),
            seeds_dropped_off_lattice=2,
            positions_file={"path": "seeds.csv", "sha256": "ab" * 32},
        ),
        FittingSummary(
            "window7", "offset per window", "deconvolved", 9.78, "columns.spacing_A", "found", 0
        ),
        RunSummary("core_01", "data/core_01.tif", 11.514, "2026-01-02T03:04:05+00:00"),
    ],
    ids=lambda part: type(part).__name__,
)
def test_new_parts_round_trip(part):
    key = dict((cls, k) for cls, k in _NEW_PARTS)[type(part)]
    for summary in ({key: part.to_dict()}, _written({key: part.to_dict()})):
        back = type(part).from_dict(summary)
        assert repr(back) == repr(part)  # NaN != NaN, so compare the reprs
        assert json_text(back.to_dict()) == json_text(part.to_dict())


def test_fitting_keeps_the_joint_fits_key_order_and_unknown_keys():
    part = {
        "model": "round",
        "background": "spline",
        "fit_on": "average",
        "spacing_px": 9.8,
        "spacing_source": "projected cell",
        "seeds": "positions file",
        "seeds_from_lattice": 0,
        "shapes": {"Cs": {"sigma_px": 1.9}, "PbBr": {"sigma_px": 2.0}},
        "shapes_err": {"Cs": {"sigma_px": 0.01}, "PbBr": {"sigma_px": 0.02}},
        "constant": None,
        "iterations": 12,
        "converged": False,
        "not_converged": 3,
        "residual_variance": 0.5,
        "pixels": 1000,
        "smooth_rounds": None,  # a spline background has no rounds
        "smooth_width_change": None,
        "centre_width_ratio": None,
        "knots": 6,  # a result this version does not name
        "seeds_dropped_off_lattice": 1,
        "positions_file": {"path": "p.csv", "sha256": "0" * 64},
    }
    fitting = FittingSummary.from_dict({"fitting": part})
    assert fitting.joint.other == {"knots": 6} and fitting.joint.converged is False
    assert list(fitting.to_dict()) == list(part) and fitting.to_dict() == part
    text = str(fitting)
    assert "round Gaussians, spline background, fitted on the average image" in text
    assert "seeds positions file p.csv (0 added from the lattice, 1 dropped off it)" in text
    assert "did not converge (3 columns still moving) after 12 iterations" in text
    assert "Cs: sigma_px 1.9 +- 0.01; PbBr: sigma_px 2 +- 0.02" in text


def test_older_summaries_lacking_the_new_parts_or_their_keys():
    # a summary without the parts at all
    assert PerTypeSummary.from_dict({}) == PerTypeSummary() and not PerTypeSummary.from_dict({})
    assert len(SpacingSummary.from_dict({"spacing": None})) == 0
    assert ThicknessSummary.from_dict({}) is None
    assert FittingSummary.from_dict({}) == FittingSummary()
    assert RunSummary.from_dict(None) == RunSummary()
    # parts lacking keys: measured numbers NaN, the rest None
    old = {
        "per_type": {"Cs": {"count": 10.0, "mean": 2.0}},
        "spacing": {"Cs": {"spacing_a_nm_mean": 0.587, "n_pairs_a": 40}, "PbBr": None},
        "fitting": {"model": "window7", "background": "offset per window", "fit_on": "final"},
        "thickness": {"series": "s.csv", "ranges_uc": [[4.0, 5.0]], "ranges_nm": [[2.3, 2.9]]},
        "run": {"name": "a", "elapsed_s": 3.0},
    }
    stats = PerTypeSummary.from_dict(old)["Cs"]
    assert (stats.count, stats.mean) == (10.0, 2.0) and np.isnan(stats.std) and np.isnan(stats.sem)
    spacing = SpacingSummary.from_dict(old)
    assert spacing["Cs"].n_pairs_a == 40 and spacing["Cs"].n_pairs_b is None
    assert (
        np.isnan(spacing["PbBr"].spacing_a_nm_mean) and spacing["PbBr"].reference_vectors_A is None
    )
    fitting = FittingSummary.from_dict(old)
    assert (
        fitting.joint is None and fitting.spacing_px is None and fitting.to_dict() == old["fitting"]
    )
    thick = ThicknessSummary.from_dict(old)
    assert thick.estimate.ranges_uc == [(4.0, 5.0)] and thick.estimate.monotonic is None
    assert thick.flag == "" and np.isnan(thick.estimate.best_uc)
    assert "2.3-2.9 nm (4.0-5.0 uc)" in str(thick)
    run = RunSummary.from_dict(old)
    assert run.file is None and run.to_dict() == old["run"]
    row = summary_row("old", "old.tif", old, "skipped")
    assert row["spacing_a_nm_Cs"] == 0.587 and row["spacing_b_nm_Cs"] is None
    assert row["spacing_a_nm_PbBr"] is None


def test_thickness_summary_without_a_ratio_and_refused():
    ratio = RatioEstimate("Cs", "PbBr", 0.38, 0.002, np.nan, np.nan, np.nan, 0.95, 49, 64)
    found = thickness_summary(ratio, SERIES, "round")
    assert found.estimate is not None and found.to_dict()["series"] == str(SERIES)
    assert list(found.to_dict())[-1] == "flag" and found.to_dict()["ratio"] == 0.38
    none = thickness_summary(None, SERIES, "round")
    assert none.to_dict() == {"series": str(SERIES), "flag": "no ratio measured"}
    assert str(none) == f"none under {SERIES} (no ratio measured)"
    nan = RatioEstimate("Cs", "PbBr", np.nan, np.nan, np.nan, np.nan, np.nan, 0.95, 1, 1)
    assert thickness_summary(nan, SERIES, "round") == none
    refused = thickness_summary(ratio, REFERENCE / "cspbbr3_001_adf_series.csv", "round")
    assert list(refused.to_dict()) == ["series", "refused", "flag"]
    assert refused.flag == "refused" and "window7" in refused.refused
    assert str(refused).startswith("series ") and "refused: " in str(refused)


def test_new_parts_read_in_the_report(core, no_material):
    analysis, _ = core
    text = analysis.report()
    cs = analysis.per_type["Cs"]
    assert f"{cs.count:.0f} columns, mean {cs.mean:.4g}" in str(analysis.per_type)
    sp = analysis.spacing["PbBr"]
    assert f"a {10 * sp.spacing_a_nm_mean:.3f} Å (s.d. {10 * sp.spacing_a_nm_std:.3f}" in str(sp)
    fitting = analysis.fitting
    assert str(fitting).startswith("round Gaussians, local background, fitted on the average")
    assert f"spacing {fitting.spacing_px:.3f} px (projected cell)" in str(fitting)
    assert f"converged after {fitting.joint.iterations} iterations" in str(fitting)
    assert str(analysis.thickness).startswith(f"consistent with the ratio under {SERIES}: ")
    for title in ("Fitting", "Per type", "Spacing", "Thickness"):
        assert f"[[{title}]]" in text
    for part in (analysis.per_type, analysis.spacing, analysis.fitting, analysis.thickness):
        for line in str(part).splitlines():
            assert f"    {line}" in text
        assert part._repr_html_().startswith(("<p>", "<pre>", "<table>"))
    run = RunSummary("core_01", "core_01.tif", 11.514, "2026-01-02T03:04:05+00:00")
    assert str(run) == "core_01 from core_01.tif in 11.5 s, finished 2026-01-02T03:04:05+00:00"
    # without a material: no spacing and no thickness sections
    text = no_material.report()
    assert "[[Spacing]]" not in text and "[[Thickness]]" not in text
    assert "column: " in text and "[[Fitting]]" in text
