"""Figures and HTML/Markdown reports (stemqd.report) on synthetic columns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from stemqd.batch import run_batch
from stemqd.config import config_hash, load_config
from stemqd.errors import InputError
from stemqd.io import write_stack_tiff
from stemqd.report import compare_figure, depth_profile_figure, overlay_figure, write_report
from stemqd.simulation.synthetic import perovskite_dot

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
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in page and "<link" not in page  # nothing outside the file
    for text in (
        "dot1",
        "dot2",
        "broken.tif",
        "TiffFileError",
        config_hash(load_config()),
        "0.41",
        "Intensity per column type",
        "0.587",
    ):
        assert text in page
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
    html_path, md_path = write_report(tmp_path / "cmp")
    page = html_path.read_text()
    assert "one vs two" in page and page.count("data:image/png;base64,") == 1
    assert (tmp_path / "cmp" / "compare.png").is_file()


def test_report_of_unrelated_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a 'stemqd process' or 'stemqd compare'"):
        write_report(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        write_report(Path(tmp_path / "nope"))
