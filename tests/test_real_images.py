"""Images without a dot, images of unknown structure and user-supplied positions."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from stemqd.columns import column_spacing_px
from stemqd.config import load_config
from stemqd.errors import InputError
from stemqd.pipeline import analyse_image, read_positions
from stemqd.simulation.synthetic import render_columns

NO_RESTORATION = ["denoise.enabled=false", "deconvolve.enabled=false"]


def _full_field_srtio3(size=300, pixel=0.12, seed=0):
    """SrTiO3 [001] filling the whole field: Sr at the corners, Ti-O at the centres."""
    a = 3.905 / pixel
    g = np.arange(-1, size / a + 1)
    sr = np.array([(i * a + 3.1, j * a + 2.7) for j in g for i in g])
    tio = sr + a / 2
    pos = np.vstack([sr, tio])
    amp = np.r_[np.full(len(sr), 1.0), np.full(len(tio), 0.47)]
    clean = render_columns((size, size), pos, amp, 0.45 / pixel) + 0.05
    image = np.random.default_rng(seed).poisson(300 * clean) / 300
    inside = (pos >= 0).all(axis=1) & (pos <= size - 1).all(axis=1)
    return image, pos[inside], amp[inside], pixel


def test_full_field_crystal_uses_every_interior_column():
    image, pos, amp, pixel = _full_field_srtio3()
    config = load_config(overrides=["material.name=SrTiO3", "material.ratio=TiO:Sr"])
    result = analyse_image(image, pixel, config)
    assert result.summary["dot"]["mode"] == "none"
    cols = result.columns
    nn = 3.905 / np.sqrt(2) / pixel
    border = np.minimum.reduce([pos[:, 0], pos[:, 1], 299 - pos[:, 0], 299 - pos[:, 1]])
    interior = pos[border > 0.5 * nn]
    used = cols[cols["flag"].isin(["", "edge margin"])][["x_px", "y_px"]].to_numpy()
    d = np.min(np.hypot(*(interior[:, None, :] - used[None, :, :]).transpose(2, 0, 1)), axis=1)
    assert (d < 1.0).mean() >= 0.98
    assert "excluded" in result.summary["columns"]


def test_full_field_crystal_ratio():
    """The columns cut by the image border are modelled (added from the lattice, flagged
    "image edge"): left out, their intensity went into their neighbours and the ratio
    came out 0.400 against 0.47."""
    image, pos, amp, pixel = _full_field_srtio3()
    config = load_config(overrides=["material.name=SrTiO3", "material.ratio=TiO:Sr"])
    result = analyse_image(image, pixel, config)
    assert result.summary["ratio"]["ratio"] == pytest.approx(0.47, rel=0.02)
    assert result.summary["fitting"]["seeds_from_lattice"] > 0
    added = result.columns[result.columns["seed_source"] == "lattice"]
    assert added["flag"].str.contains("image edge").any()
    # this crystal has no O columns: the O sites added from the lattice fit nothing
    o = added[added["label"] == "O"]
    assert (
        o["volume"].abs()
        < 0.1 * result.columns.loc[result.columns["label"] == "TiO", "volume"].median()
    ).all()


def test_dot_mode_dot_on_a_full_field_warns_about_exclusions():
    image, *_, pixel = _full_field_srtio3()
    config = load_config(
        overrides=["material.name=SrTiO3", "material.ratio=TiO:Sr", "dot.mode=dot"]
    )
    result = analyse_image(image, pixel, config)
    excluded = result.summary["columns"]["excluded"]["total"]
    if excluded > 0.3 * result.summary["columns"]["total"]:
        assert result.summary["warnings"]


def test_spacing_from_the_image_and_none_for_noise():
    image, pos, amp, pixel = _full_field_srtio3()
    assert column_spacing_px(image) == pytest.approx(3.905 / np.sqrt(2) / pixel, rel=0.03)
    noise = np.random.default_rng(1).poisson(20, (200, 200)).astype(float)
    assert np.isnan(column_spacing_px(noise))


def test_no_material_with_positions_and_labels():
    image, pos, amp, pixel = _full_field_srtio3()
    labels = np.where(amp > 0.7, "Sr", "TiO")
    positions = pd.DataFrame({"x_px": pos[:, 0] + 0.4, "y_px": pos[:, 1] - 0.3, "label": labels})
    config = load_config(overrides=["material.name=none"])
    result = analyse_image(image, pixel, config, positions=positions)
    cols = result.columns
    assert result.summary["ratio"] == {} and result.summary["material"] is None
    assert set(cols["label"]) == {"Sr", "TiO"}
    err = np.hypot(cols.x_px - pos[:, 0], cols.y_px - pos[:, 1])
    assert np.median(err) < 0.1
    means = cols[cols.flag == ""].groupby("label")["volume"].mean()
    assert means["TiO"] / means["Sr"] == pytest.approx(0.47, rel=0.02)


def test_positions_file_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="x_px, y_px"):
        read_positions(bad)


def test_cli_positions_and_no_material(tmp_path):
    image, pos, amp, pixel = _full_field_srtio3()
    tifffile.imwrite(tmp_path / "sto.tif", image.astype(np.float32))
    pd.DataFrame({"x_px": pos[:, 0], "y_px": pos[:, 1]}).to_csv(tmp_path / "seeds.csv", index=False)
    cmd = [
        sys.executable,
        "-m",
        "stemqd.cli",
        "process",
        str(tmp_path / "sto.tif"),
        "--out",
        str(tmp_path / "out"),
        "--pixel-size",
        str(pixel),
        "--positions",
        str(tmp_path / "seeds.csv"),
        "--set",
        "material.name=none",
        "-q",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "out" / "sto" / "summary.json").read_text())
    assert summary["fitting"]["seeds"] == "positions file"
    assert summary["fitting"]["positions_file"]["sha256"]
    assert summary["columns"]["total"] == len(pos)
