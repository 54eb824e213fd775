"""End-to-end command line: ``stemqd process``, ``compare``, ``report``, ``config``.

Every command runs as a user runs it, in a subprocess (``python cli.py ...``), on tiny
synthetic stacks (160 px, 2 frames, 4-cell dots) whose true ratio is known.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemqd.config import config_hash, load_config
from stemqd.io import write_stack_tiff
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.simulation.synthetic import perovskite_dot

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PIXEL_A = 0.3


def stemqd(*args, cwd=None):
    """Run ``python cli.py ARGS``; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def make_dot(path, *, shell_cells=0, seed=0, rotation_deg=2.0):
    frames, truth = perovskite_dot(
        (160, 160),
        pixel_size_A=PIXEL_A,
        edge_cells=4,
        n_frames=2,
        dose=400.0,
        shell_cells=shell_cells,
        rotation_deg=rotation_deg,
        drift_px=0.5,
        seed=seed,
    )
    write_stack_tiff(path, frames, PIXEL_A, voltage_kv=300, convergence_mrad=18)
    return truth


def strict_json(path):
    def no_constants(name):
        raise ValueError(f"{path}: non-standard JSON constant {name}")

    return json.loads(Path(path).read_text(), parse_constant=no_constants)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """One clean core dot processed once; shared by the read-only checks."""
    base = tmp_path_factory.mktemp("clean")
    truth = make_dot(base / "dot.tif")
    out = base / "out"
    result = stemqd("process", base / "dot.tif", "--out", out, "--save-intermediates")
    return base, out, truth, result


def test_process_writes_results_with_the_true_ratio(clean_run):
    base, out, truth, result = clean_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    folder = out / "dot"
    cols = pd.read_csv(folder / "columns.csv")
    params = ("amplitude", "x_px", "y_px", "sigma_x_px", "sigma_y_px", "theta_rad", "offset")
    for name in (
        *params,
        *(f"{p}_err" for p in params),
        "x_nm",
        "y_nm",
        "volume",
        "cross_section",
        "site",
        "label",
        "depth_uc",
        "flag",
    ):
        assert name in cols.columns, name
    assert list(cols.columns[:4]) == ["x_px", "y_px", "x_nm", "y_nm"]
    assert set(cols["site"].dropna()) >= {"A", "BX"}
    np.testing.assert_allclose(cols["x_nm"], cols["x_px"] * PIXEL_A / 10)

    summary = strict_json(folder / "summary.json")
    ratio = summary["ratio"]
    assert ratio["ratio"] == pytest.approx(truth.ratio("A", "BX"), rel=0.05)
    assert ratio["ci_low"] < ratio["ratio"] < ratio["ci_high"]
    assert summary["config_hash"] == config_hash(load_config())
    assert len(summary["input"]["sha256"]) == 64 and summary["versions"]["stemqd"]
    assert summary["config"]["acquisition"]["voltage_kv"] == 300.0
    # unset values are JSON null, not the TOML spelling "none"
    assert summary["config"]["acquisition"]["pixel_size_A"] is None
    assert summary["config"]["reference_series"] is None
    assert summary["preset"]["name"] == "default"
    bias = summary["preset"]["ratio_bias"]
    assert "bench_chain.py" in bias["measured_by"] and bias["max_abs_mean_bias"] >= 0

    table = pd.read_csv(out / "summary.csv")
    assert table.loc[0, "name"] == "dot" and table.loc[0, "status"] == "processed"
    assert table.loc[0, "ratio"] == pytest.approx(ratio["ratio"])
    assert table.loc[0, "lattice_a_A"] == pytest.approx(CSPBBR3_LATTICE_CONSTANT_A, rel=0.03)
    assert (folder / "overlay.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "intensity_map.png").read_bytes()[:4] == b"\x89PNG"
    from matplotlib.image import imread

    assert imread(folder / "image.png").shape[:2] == (160, 160)  # one PNG pixel per pixel
    assert sorted(p.name for p in (folder / "intermediates").glob("*.tif"))
    assert not (out / "failures.csv").exists()


def test_report_of_a_process_run(clean_run, tmp_path):
    _, out, _, _ = clean_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = stemqd("report", copy)
    assert result.returncode == 0, result.stderr
    html = Path(result.stdout.strip())
    assert html == copy / "report.html" or html.resolve() == (copy / "report.html").resolve()
    page = html.read_text()
    assert "data:image/png;base64," in page and "dot" in page
    assert (copy / "report.md").is_file()


def test_bad_inputs_are_reported_and_the_rest_processed(tmp_path, clean_run):
    base, _, _, _ = clean_run
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(base / "dot.tif", data / "good.tif")
    good = (data / "good.tif").read_bytes()
    (data / "truncated.tif").write_bytes(good[: len(good) // 2])
    (data / "empty.tif").write_bytes(b"")
    (data / "text.tif").write_text("this is a text file\n")
    np.save(data / "profile.npy", np.linspace(0, 1, 200))
    frames = np.ones((2, 160, 160), np.float32)
    frames[0, 10, 20] = np.nan
    write_stack_tiff(data / "nan.tif", frames, PIXEL_A)
    out = tmp_path / "out"
    result = stemqd("process", data, "--out", out, "--quiet", "--pixel-size", "0.3A")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(lines) == 5
    expected = {
        "truncated.tif": "truncated",
        "empty.tif": "empty",
        "text.tif": "not a TIFF",
        "profile.npy": "1-D",
        "nan.tif": "non-finite",
    }
    for name, words in expected.items():
        assert any(name in line and words in line for line in lines), (name, lines)
    failures = pd.read_csv(out / "failures.csv")
    assert sorted(Path(f).name for f in failures["file"]) == sorted(expected)
    assert set(failures["error_class"]) == {"InputError"}
    assert (out / "good" / "summary.json").is_file()
    assert "5 failed" in result.stderr


def test_rerun_skips_and_force_redoes(tmp_path, clean_run):
    base, out0, _, _ = clean_run
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    before = {p.relative_to(out): p.read_bytes() for p in (out / "dot").rglob("*") if p.is_file()}
    again = stemqd("process", base / "dot.tif", "--out", out, "--save-intermediates")
    assert again.returncode == 0, again.stderr
    assert "0 processed, 1 up to date" in again.stderr
    after = {p.relative_to(out): p.read_bytes() for p in (out / "dot").rglob("*") if p.is_file()}
    assert after == before
    assert pd.read_csv(out / "summary.csv").loc[0, "status"] == "skipped"

    forced = stemqd("process", base / "dot.tif", "--out", out, "--force", "--quiet")
    assert forced.returncode == 0 and "1 processed" in forced.stderr
    first = strict_json(out0 / "dot" / "summary.json")
    redo = strict_json(out / "dot" / "summary.json")
    assert redo["ratio"] == first["ratio"]  # deterministic
    # a different config is not "up to date"
    changed = stemqd(
        "process", base / "dot.tif", "--out", out, "--quiet", "--set", "analysis.bootstrap=500"
    )
    assert changed.returncode == 0 and "1 processed" in changed.stderr


def test_dask_scheduler_gives_the_same_results(tmp_path, clean_run):
    distributed = pytest.importorskip("distributed")
    base, out0, _, _ = clean_run
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(base / "dot.tif", data / "dot.tif")
    make_dot(data / "shell.tif", shell_cells=1, seed=5)
    local = stemqd("process", data, "--out", tmp_path / "local", "--quiet", "--jobs", "2")
    assert local.returncode == 0, local.stderr
    # threads in this process, reachable over TCP by the CLI's own process
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        result = stemqd(
            "process",
            data,
            "--out",
            tmp_path / "dask",
            "--quiet",
            "--scheduler",
            cluster.scheduler_address,
        )
    assert result.returncode == 0, result.stderr
    a = pd.read_csv(tmp_path / "local" / "summary.csv")
    b = pd.read_csv(tmp_path / "dask" / "summary.csv")
    cols = ["name", "status", "ratio", "ci_low", "ci_high", "n_numerator", "n_denominator"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert b.loc[b["name"] == "dot", "ratio"].item() == pytest.approx(
        pd.read_csv(out0 / "summary.csv")["ratio"].item()
    )


@pytest.mark.slow
def test_compare_core_and_shell_groups(tmp_path):
    for group, shell in (("core", 0), ("shell", 2)):
        (tmp_path / group).mkdir()
        for k in range(3):
            make_dot(
                tmp_path / group / f"{group}{k}.tif",
                shell_cells=shell,
                seed=10 * k + shell,
                rotation_deg=1.0 + k,
            )
        r = stemqd(
            "process",
            tmp_path / group,
            "--out",
            tmp_path / f"out_{group}",
            "--quiet",
            "--jobs",
            "2",
        )
        assert r.returncode == 0, r.stderr
    result = stemqd(
        "compare",
        f"core={tmp_path / 'out_core'}",
        f"shell={tmp_path / 'out_shell'}",
        "--out",
        tmp_path / "cmp",
    )
    assert result.returncode == 0, result.stderr
    tests = pd.read_csv(tmp_path / "cmp" / "tests.csv")
    assert tests.loc[0, "difference"] > 0  # the depleted shell raises Cs : PbBr
    groups = pd.read_csv(tmp_path / "cmp" / "groups.csv")
    assert list(groups["group"]) == ["core", "shell"] and list(groups["n"]) == [3, 3]
    assert strict_json(tmp_path / "cmp" / "compare.json")["ratio_label"] == "Cs:PbBr"
    assert (tmp_path / "cmp" / "compare.png").is_file()
    report = stemqd("report", tmp_path / "cmp")
    assert report.returncode == 0 and Path(report.stdout.strip()).is_file()


def test_config_show_round_trips(tmp_path):
    result = stemqd(
        "config", "--show", "--set", "denoise.cycles=3", "--set", "columns.method=lmfit"
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "c.toml").write_text(result.stdout)
    assert tomllib.loads(result.stdout)["denoise"]["cycles"] == 3
    config = load_config(tmp_path / "c.toml")
    assert config == load_config(None, ["denoise.cycles=3", "columns.method=lmfit"])
    assert f"config_hash = {config_hash(config)}" in result.stdout.splitlines()[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["config", "--set", "nosuch.key=1"], "unknown config key"),
        (["process", "x.tif", "--out", "o", "--pixel-size", "fast"], "--pixel-size"),
        (["process", "x.tif", "--out", "o", "--jobs", "0"], "--jobs"),
        (["compare", "justone", "--out", "o"], "NAME=DIR"),
        (["report", "nowhere"], "no such folder"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, words):
    result = stemqd(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_preset_study_runs_the_study_chain_and_says_so(clean_run):
    base, _, _, _ = clean_run
    out = base / "study"
    result = stemqd("process", base / "dot.tif", "--out", out, "--preset", "study")
    assert result.returncode == 0, result.stderr
    summary = strict_json(out / "dot" / "summary.json")
    assert summary["preset"]["name"] == "study"
    assert summary["config"]["columns"]["model"] == "window7"
    assert summary["config"]["columns"]["fit_on"] == "final"
    assert summary["fitting"]["model"] == "window7"
    assert summary["preset"]["ratio_bias"]["per_grid_point"]
