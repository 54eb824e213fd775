"""Tests of ``stemqd info``, run as a user would: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemqd.io import write_stack_tiff

ROOT = Path(__file__).resolve().parents[1]


def run_info(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "stemqd.cli", "info", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def files(tmp_path):
    frames = np.random.default_rng(1).random((3, 40, 48)).astype(np.float32)
    write_stack_tiff(tmp_path / "good.tif", frames, 0.25, voltage_kv=300, convergence_mrad=21.4)
    (tmp_path / "bad.tif").write_text("not a tiff\n")
    np.save(tmp_path / "raw.npy", frames[0])
    return tmp_path


def test_info_good_and_bad(files):
    result = run_info("good.tif", "bad.tif", cwd=files)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "good.tif" in result.stdout
    for expected in (
        "3 x 40 x 48",
        "frames:        3",
        "float32",
        "0.25 Å",
        "ImageJ",
        "300 kV",
        "21.4 mrad",
    ):
        assert expected in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "bad.tif" in errors[0]
    assert "bad.tif" not in result.stdout


def test_info_bad_first_still_prints_the_rest(files):
    result = run_info("missing.tif", "bad.tif", "good.tif", cwd=files)
    assert result.returncode != 0
    assert "good.tif" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert "missing.tif" in errors[0] and "bad.tif" in errors[1]


def test_info_all_good(files):
    result = run_info("good.tif", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_info_json(files):
    result = run_info("--json", "good.tif", "bad.tif", cwd=files)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    entries = json.loads(result.stdout)
    assert [e["path"] for e in entries] == ["good.tif", "bad.tif"]
    good, bad = entries
    assert good["ok"] is True and bad["ok"] is False
    assert good["shape"] == [3, 40, 48] and good["n_frames"] == 3 and good["dtype"] == "float32"
    assert good["pixel_size_A"] == pytest.approx(0.25)
    assert "ImageJ" in good["pixel_size_source"]
    assert good["voltage_kv"] == 300 and good["convergence_mrad"] == pytest.approx(21.4)
    assert "bad.tif" in bad["error"]


def test_info_uncalibrated_needs_pixel_size(files):
    result = run_info("raw.npy", cwd=files)
    assert result.returncode != 0
    assert "raw.npy" in result.stderr and "--pixel-size 0.25A" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_info("raw.npy", "good.tif", "--pixel-size", "0.03nm", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[override]") == 2
    assert "0.3 Å" in result.stdout
    assert "the file says 0.25 Å" in result.stdout  # good.tif's own calibration is shown


def test_info_bad_pixel_size(files):
    result = run_info("good.tif", "--pixel-size", "banana", cwd=files)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--pixel-size" in lines[0] and "banana" in lines[0]
    assert "Traceback" not in result.stderr


def test_info_help(files):
    result = run_info("--help", cwd=files)
    assert result.returncode == 0
    assert "--pixel-size" in result.stdout and "--json" in result.stdout
