"""Figures and HTML/Markdown reports (stemqd.report) on synthetic columns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from stemqd.batch import compare_batches, run_batch
from stemqd.config import config_hash, load_config
from stemqd.errors import InputError
from stemqd.io import write_stack_tiff
from stemqd.report import (
    column_intensity_map,
    compare_figure,
    depth_profile_figure,
    group_depth_figure,
    group_figure,
    intensity_map_figure,
    overlay_figure,
    write_report,
)
from stemqd.simulation.synthetic import perovskite_dot
from stemqd.summary import CompareRecord

SPECIES = {"A": "Cs", "BX": "PbBr", "X": "Br"}


def _columns(truth, n_flagged=3, n_outside=2):
    site = truth.types.astype(object)
    flag = np.where(truth.depth_uc == 0, "edge margin", "").astype(object)
    flag[:n_flagged] = "fit failed"
    cols = pd.DataFrame(
        {
            "x_px": truth.positions_px[:, 0],
            "y_px": truth.positions_px[:, 1],
            "site": site,
            "label": [SPECIES[s] for s in site],
            "flag": flag,
            "depth_uc": truth.depth_uc,
            "intensity": truth.amplitudes,
        }
    )
    out = pd.DataFrame(
        {
            "x_px": np.linspace(5, 20, n_outside),
            "y_px": np.full(n_outside, 5.0),
            "site": "",
            "label": "",
            "flag": "outside dot",
            "depth_uc": -1,
            "intensity": 99.0,  # brighter than any column, but not used: must not count
        }
    )
    return pd.concat([cols, out], ignore_index=True)


def synthetic_process(stack, config):
    """Columns at the synthetic truth of a 4-cell dot; ratio from the true amplitudes."""
    frames, truth = perovskite_dot((128, 128), pixel_size_A=0.3, edge_cells=4, n_frames=1, seed=3)
    cols = _columns(truth)
    ratio = truth.ratio()
    summary = {
        "pixel_size_A": 0.3,
        "ratio": {
            "numerator": "Cs",
            "denominator": "PbBr",
            "ratio": ratio,
            "ci_low": ratio - 0.01,
            "ci_high": ratio + 0.01,
            "stderr": 0.005,
            "confidence": 0.95,
            "n_numerator": 16,
            "n_denominator": 25,
        },
        "ratio_by_depth": [
            {"depth_uc": 0, "n_numerator": 12, "n_denominator": 16, "ratio": 0.42, "stderr": 0.01},
            {"depth_uc": 1, "n_numerator": 4, "n_denominator": 9, "ratio": 0.40, "stderr": np.nan},
        ],
        "per_type": {
            "Cs": {"count": 16, "mean": 0.41, "std": 0.02, "sem": 0.005},
            "PbBr": {"count": 25, "mean": 1.0, "std": 0.03, "sem": 0.006},
        },
        "spacing": {
            "Cs": {
                "spacing_a_nm_mean": 0.587,
                "spacing_a_nm_std": 0.004,
                "n_pairs_a": 12,
                "spacing_b_nm_mean": 0.586,
                "spacing_b_nm_std": 0.005,
                "n_pairs_b": 12,
            }
        },
        "lattice": {
            "a_A": 5.87,
            "b_A": 5.86,
            "expected_a_A": 5.87,
            "expected_b_A": 5.87,
            "rotation_deg": 0.1,
            "rms_misfit_A": 0.05,
        },
        "dot": {"edge_lengths_nm": [2.3, 2.4], "area_nm2": 5.5},
        "columns": {"total": len(cols), "used": 60, "flags": {"fit failed": 3}},
        "input": {"path": stack.path, "sha256": stack.sha256, "frames": 1, "shape": [64, 64]},
        "config_hash": config_hash(config),
        "versions": {"stemqd": "test"},
    }
    return SimpleNamespace(
        columns=cols,
        summary=summary,
        images={"final": frames[0]},
        extra={"dot": SimpleNamespace(mask=np.pad(np.ones((70, 70), bool), 29))},
    )


def _legend_texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]


def test_overlay_marks_sublattices_flags_and_scale():
    frames, truth = perovskite_dot((160, 160), pixel_size_A=0.3, edge_cells=5, n_frames=1, seed=1)
    fig = overlay_figure(frames[0], _columns(truth), 0.3, title="dot")
    texts = _legend_texts(fig)
    n_a, n_bx, n_x = ((truth.types == t).sum() for t in ("A", "BX", "X"))
    assert texts[:3] == [f"A: Cs  ({n_a})", f"BX: PbBr  ({n_bx})", f"X: Br  ({n_x})"]
    assert "flagged, excluded  (3)" in texts and "outside dot  (2)" in texts
    # 160 px x 0.3 Å = 4.8 nm field of view: a 0.5 nm bar (a round length near a fifth)
    labels = [t.get_text() for t in fig.axes[0].findobj(lambda a: hasattr(a, "get_text"))]
    assert "0.5 nm" in labels


def test_depth_and_compare_figures_draw():
    depth_profile_figure(
        [{"depth_uc": 0, "ratio": 0.5, "stderr": 0.02, "n_numerator": 10, "n_denominator": 12}],
        {"ratio": 0.45, "ci_low": 0.4, "ci_high": 0.5, "numerator": "Cs", "denominator": "PbBr"},
    )
    dots = pd.DataFrame(
        {
            "group": ["a", "a", "b"],
            "name": ["1", "2", "3"],
            "ratio": [0.4, 0.42, 0.5],
            "ci_low": [0.39, 0.4, 0.48],
            "ci_high": [0.41, 0.44, np.nan],
        }
    )
    groups = pd.DataFrame(
        {"group": ["a", "b"], "n": [2, 1], "mean": [0.41, 0.5], "std": [0.014, np.nan]}
    )
    fig = compare_figure(dots, groups, None, "Cs:PbBr")
    assert fig.axes[0].get_ylabel() == "Cs:PbBr ratio per dot"


@pytest.fixture
def process_dir(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("dot1", "dot2"):
        write_stack_tiff(src / f"{name}.tif", np.ones((1, 64, 64), np.float32), 0.3)
    (src / "broken.tif").write_text("not a tiff")
    from stemqd.report import write_stack_figures

    out = tmp_path / "out"
    run_batch(
        [src],
        out,
        load_config(),
        process=synthetic_process,
        render=write_stack_figures,
        progress=False,
        log=lambda line: None,
    )
    return out


def test_process_report_is_self_contained(process_dir):
    html_path, md_path = write_report(process_dir)
    page = html_path.read_text()
    sources = re.findall(r"src='([^']*)'", page)
    # the group figure; per dot the overlay, the intensity map and the depth plot
    assert len(sources) == 7 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in page and "<link" not in page  # nothing outside the file
    for text in (
        "dot1",
        "dot2",
        "broken.tif",
        "TiffFileError",
        config_hash(load_config()),
        "0.41",
        "Intensity per column type",
        "Images and column-intensity maps",
        "5.87",  # the spacings in Å, as everywhere in the report
        "a (Å)",
    ):
        assert text in page
    assert "a (nm)" not in page
    # counts are whole numbers: 16 and 25 columns, not 16.0
    assert "<td class=''>16</td><td class=''>25</td>" in page and ">16.0<" not in page
    md = md_path.read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (process_dir / target).is_file()
    assert "dot1/overlay.png" in md


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # two identical groups
def test_compare_report(tmp_path, process_dir):
    from stemqd.cli import main

    assert (
        main(
            [
                "compare",
                f"one={process_dir}",
                f"two={process_dir}",
                "--out",
                str(tmp_path / "cmp"),
                "--set",
                "analysis.permutations=99",
                "--set",
                "analysis.bootstrap=99",
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [g["group"] for g in data["group_stats"]] == ["one", "two"]
    # the typed record reads every key the file has and writes the file back unchanged
    record = CompareRecord.from_dict(data)
    assert record.to_dict() == data
    assert list(record.table("group_stats")["group"]) == ["one", "two"]
    assert record.table("thickness").empty and "thickness" not in data
    with pytest.raises(ValueError, match="not a table"):
        record.table("groups")
    html_path, md_path = write_report(tmp_path / "cmp")
    page = html_path.read_text()
    # per-dot ratios, depth profiles, a thumbnail of the maps per group
    assert "one vs two" in page and page.count("data:image/png;base64,") == 4
    assert "Depth profiles" in page and "Images and column-intensity maps" in page
    for name in ("compare.png", "depth.png", "depth.csv", "dots.csv", "tests.csv"):
        assert (tmp_path / "cmp" / name).is_file()


def test_report_of_unrelated_folder_is_a_clear_error(tmp_path):
    with pytest.raises(
        InputError, match="not a 'stemqd process', 'compare' or 'sizes' output folder"
    ):
        write_report(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        write_report(Path(tmp_path / "nope"))


def _summary(ratio=0.4):
    return {
        "pixel_size_A": 0.3,
        "ratio": {"numerator": "Cs", "denominator": "PbBr", "ratio": ratio, "stderr": 0.01},
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intensity_map_is_normalised_to_the_brightest_used_column(seed):
    rng = np.random.default_rng(seed)
    frames, truth = perovskite_dot(
        (128, 128), pixel_size_A=0.3, edge_cells=4, n_frames=1, seed=seed
    )
    cols = _columns(truth)
    cols["intensity"] = truth_intensity = np.append(
        truth.amplitudes * rng.uniform(0.9, 1.1, len(truth.amplitudes)), [99.0, 99.0]
    )
    data = column_intensity_map(cols, _summary())
    used = cols["flag"].isin(["", "edge margin"]) & cols["label"].isin(["Cs", "PbBr"])
    assert data.attrs["labels"] == ["Cs", "PbBr"]  # the ratio's sublattices, Br left out
    assert len(data) == used.sum() and data["value"].max() == pytest.approx(1.0)
    expected = truth_intensity[used] / truth_intensity[used].max()
    got = data.set_index(["x_px", "y_px"])["value"]
    want = pd.Series(
        expected, index=pd.MultiIndex.from_arrays([cols.loc[used, "x_px"], cols.loc[used, "y_px"]])
    )
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-12)
    # without a ratio: every labelled sublattice
    assert column_intensity_map(cols, {}).attrs["labels"] == ["Cs", "PbBr", "Br"]


def test_intensity_map_figure_has_a_panel_per_sublattice_a_colour_bar_and_scale():
    frames, truth = perovskite_dot((128, 128), pixel_size_A=0.3, edge_cells=4, n_frames=1, seed=3)
    fig = intensity_map_figure(_columns(truth), _summary(0.4123))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(" (")[0] for ax in panels] == ["Cs", "PbBr"]
    clims = {ax.collections[0].get_clim() for ax in panels}
    assert len(clims) == 1 and max(clims.pop()) == 1.0  # one shared scale up to the brightest
    assert len(fig.axes) == 3  # and the colour bar
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert "Cs:PbBr = 0.412" in texts and any(t.endswith(" nm") for t in texts)


@pytest.mark.parametrize("n_dots", [1, 3, 7])
def test_group_figure_layout(n_dots):
    dots = []
    for k in range(n_dots):
        frames, truth = perovskite_dot((96, 96), pixel_size_A=0.3, edge_cells=3, n_frames=1, seed=k)
        dots.append((f"dot{k}", frames[0] if k else None, _columns(truth), _summary(0.4 + k / 100)))
    fig = group_figure(dots, per_row=6)
    # per dot: the image and one map per sublattice; one colour bar
    assert len(fig.axes) == 3 * n_dots + 1
    maps = [
        ax for ax in fig.axes if ax.collections and ax.get_ylabel() != fig.axes[-1].get_ylabel()
    ]
    assert len(maps) == 2 * n_dots and len({ax.collections[0].get_clim() for ax in maps}) == 1
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    assert labels == [f"Cs:PbBr {0.4 + k / 100:.3f} ± 0.010" for k in range(n_dots)]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("dot")]
    assert titles == [f"dot{k}" for k in range(n_dots)]


def test_depth_profile_marks_single_column_depths():
    records = [
        {"depth_uc": 0, "ratio": 0.5, "stderr": 0.02, "n_numerator": 10, "n_denominator": 12},
        {"depth_uc": 1, "ratio": 0.45, "stderr": np.nan, "n_numerator": 1, "n_denominator": 4},
    ]
    fig = depth_profile_figure(records, {"ratio": 0.45, "numerator": "Cs", "denominator": "PbBr"})
    ax = fig.axes[0]
    assert ax.get_title() == "labels: number of Cs / PbBr columns at each depth"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a single column there: no s.e." in legend
    bars = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    assert len(bars) == 1 and len(bars[0].lines[0].get_xdata()) == 1  # only depth 0 has a bar


def test_group_depth_profile_marks_single_dot_depths():
    depth = pd.DataFrame(
        {
            "group": ["a", "a", "b", "b"],
            "depth_uc": [0, 1, 0, 1],
            "n_dots": [3, 1, 2, 2],
            "mean": [0.4, 0.41, 0.5, 0.52],
            "sem": [0.01, np.nan, 0.02, 0.02],
        }
    )
    fig = group_depth_figure(depth, "Cs:PbBr")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:2] == ["a", "b"] and "one dot there: no s.e." in legend
    assert fig.axes[0].get_ylabel() == "Cs:PbBr ratio"


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # two identical groups
def test_a_python_comparison_folder_is_reported(tmp_path, process_dir):
    """compare_batches(out=...) writes what the report reads, without the command line."""
    result = compare_batches(
        {"one": process_dir, "two": process_dir},
        permutations=99,
        bootstrap=99,
        out=tmp_path / "cmp",
    )
    depth = result["depth"]
    # both dots give 0.42 at depth 0 and 0.40 at depth 1: mean of the dots, s.e. 0
    one = depth[depth["group"] == "one"].set_index("depth_uc")
    assert one["n_dots"].tolist() == [2, 2] and one["mean"].tolist() == pytest.approx([0.42, 0.4])
    assert one["sem"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert one["n_numerator"].tolist() == [24, 8]
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["parameters"]["permutations"] == 99
    assert len(data["inputs"]) == 2  # each dot's summary.json with its SHA-256 (same folder twice)
    html_path, _ = write_report(tmp_path / "cmp")
    page = html_path.read_text()
    assert "Depth profiles" in page and page.count("data:image/png;base64,") == 4


# --------------------------------------------------------------------------------------
# Atom counting in the per-dot report and in compare

SERIES = (
    Path(__file__).resolve().parents[1] / "simulations/reference/cspbbr3_001_adf_series_round.csv"
)


def synthetic_counted_process(stack, config, thickness=3):
    """synthetic_process with counting.enabled: every used column counted `thickness` cells,
    its volume the committed series' cross-section there."""
    from stemqd.analysis.library import library_curve
    from stemqd.simulation.files import read_series

    analysis = synthetic_process(stack, config)
    cols = analysis.columns
    series = read_series(SERIES)
    used = cols["flag"].isin(["", "edge margin"]) & (cols["label"] != "")
    cols["volume"] = [
        np.interp(thickness, *library_curve(series, label)) if label else np.nan
        for label in cols["label"]
    ]
    cols["count"] = pd.array(np.where(used, thickness, 0), dtype="Int64")
    cols.loc[~used, "count"] = pd.NA
    analysis.summary["config"] = {"reference_series": str(SERIES)}
    return analysis


def _counted_dir(tmp_path, name, thickness, dots=("dot1", "dot2")):
    from functools import partial

    from stemqd.report import write_stack_figures

    src = tmp_path / f"in_{name}"
    src.mkdir()
    for dot in dots:
        write_stack_tiff(src / f"{dot}.tif", np.ones((1, 64, 64), np.float32), 0.3)
    run_batch(
        [src],
        tmp_path / name,
        load_config(),
        process=partial(synthetic_counted_process, thickness=thickness),
        render=write_stack_figures,
        progress=False,
        log=lambda line: None,
    )
    return tmp_path / name


FIGURES = ("thickness_map.png", "thickness_distribution.png", "ratio_by_thickness.png")


def test_process_report_shows_the_counted_thickness(tmp_path):
    out = _counted_dir(tmp_path, "core", 3)
    for dot in ("dot1", "dot2"):
        for name in FIGURES:
            assert (out / dot / name).stat().st_size > 0
    html_path, md_path = write_report(out)
    page, md = html_path.read_text(), md_path.read_text()
    # per dot the overlay, the intensity map, the depth plot and the three counting figures
    assert page.count("data:image/png;base64,") == 1 + 2 * (3 + 3)
    assert page.count("Atom counting") == 2 and "ratio by counted PbBr thickness" in page
    for dot in ("dot1", "dot2"):
        for name in FIGURES:
            assert f"{dot}/{name}" in md
    # Every column is 3 cells thick with the series' cross-sections: the ratio table is the
    # series' ratio at 3 cells, exactly.
    from stemqd.analysis.column_thickness import series_ratio
    from stemqd.simulation.files import read_series

    ref = series_ratio(read_series(SERIES), "Cs", "PbBr").set_index("thickness_uc")
    assert f"<td class=''>{float(ref.loc[3, 'ratio']):.4g}</td>" in page
    # Without the figures of 'process' (an older run), the report draws them.
    for name in FIGURES:
        (out / "dot1" / name).unlink()
    html_path, _ = write_report(out)
    assert html_path.read_text().count("data:image/png;base64,") == 13
    for name in FIGURES:
        assert (out / "report_files" / f"dot1_{name}").is_file()


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # identical dots
def test_compare_shows_the_groups_counted_thickness(tmp_path):
    from stemqd.cli import main

    core = _counted_dir(tmp_path, "core", 3)
    shell = _counted_dir(tmp_path, "shell", 5, dots=("dot1",))
    cmp = tmp_path / "cmp"
    argv = ["compare", f"core={core}", f"shell={shell}", "--out", str(cmp)]
    assert main(argv + ["--set", "analysis.permutations=99", "--set", "analysis.bootstrap=99"]) == 0
    data = json.loads((cmp / "compare.json").read_text())
    stats = pd.DataFrame(data["thickness_stats"]).set_index(["group", "label"])
    # every used column of group core (2 dots) is 3 cells, of shell (1 dot) 5
    assert stats.loc[("core", "Cs"), "mean"] == 3 and stats.loc[("shell", "PbBr"), "mean"] == 5
    assert stats.loc["core", "n_dots"].tolist() == [2, 2, 2]  # Br, Cs, PbBr
    assert stats.loc["shell", "n_dots"].tolist() == [1, 1, 1]
    assert stats.loc[("core", "Cs"), "std"] == 0 and stats.loc[("core", "Cs"), "sem_dots"] == 0
    assert np.isnan(stats.loc[("shell", "Cs"), "sem_dots"])  # one dot: no s.e. (null in JSON)
    cols = pd.read_csv(core / "dot1" / "columns.csv")
    n_cs = int(((cols["label"] == "Cs") & cols["count"].notna()).sum())
    assert stats.loc[("core", "Cs"), "n_columns"] == 2 * n_cs
    for name in ("thickness.png", "thickness.csv", "thickness_stats.csv"):
        assert (cmp / name).stat().st_size > 0
    table = pd.read_csv(cmp / "thickness.csv")
    assert set(table["group"]) == {"core", "shell"} and (table["fraction"] == 1).all()
    html_path, md_path = write_report(cmp)
    page = html_path.read_text()
    assert "Counted thickness" in page and "counted thickness by group" in page
    assert "report_files/thickness.png" in md_path.read_text()
    assert (cmp / "report_files" / "thickness.png").is_file()
