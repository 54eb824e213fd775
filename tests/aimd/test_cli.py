"""``stemqd aimd`` subcommands on the real CP2K fixture and synthetic series."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemqd import __version__
from stemqd.aimd.units import H_MEV_FS, HBAR_MEV_FS, KB_MEV_K
from stemqd.cli import main
from stemqd.optics import FWHM_PER_SIGMA

FIX = Path(__file__).parent / "fixtures" / "cp2k" / "ot"


def _sidecar(path):
    data = json.loads(Path(path).with_suffix(".json").read_text())
    assert data["stemqd_version"] == __version__
    return data


def test_linewidth_prints_fwhm(capsys):
    assert (
        main(
            [
                "aimd",
                "linewidth",
                "--mode",
                "2:0.5",
                "--mode",
                "7:0.3",
                "--mode",
                "17:0.1",
                "--temperature",
                "300",
            ]
        )
        == 0
    )
    lam = 2 * 0.5 + 7 * 0.3 + 17 * 0.1
    expected = FWHM_PER_SIGMA * np.sqrt(2 * lam * KB_MEV_K * 300)
    value, unit = capsys.readouterr().out.split()
    assert unit == "meV" and float(value) == pytest.approx(expected, abs=1e-4)


def test_linewidth_table_and_plot(tmp_path, capsys):
    csv, png = tmp_path / "lw.csv", tmp_path / "lw.png"
    assert (
        main(
            [
                "aimd",
                "linewidth",
                "--mode",
                "2:1",
                "--temperature",
                "10:300:10",
                "-o",
                str(csv),
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    table = pd.read_csv(csv)
    assert len(table) == 30 and png.stat().st_size > 1000
    assert _sidecar(csv)["results"]["reorganization_meV"] == 2.0


def test_bad_input_is_one_line_error(capsys, tmp_path):
    assert main(["aimd", "linewidth", "--mode", "2-0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["aimd", "huang-rhys", str(tmp_path / "missing.out"), "--temperature", "10"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_build_and_cp2k(tmp_path, capsys):
    assert (
        main(["aimd", "build", "--size", "3.6nm", "--shell", "CsCaBr3", "-o", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "Cs335Ca152Pb64Br756" in out and "q=+11" in out
    assert (tmp_path / "dot_n6_CsCaBr3.xyz").exists() and (tmp_path / "dot_n6_CsCaBr3.cif").exists()
    assert (
        main(["aimd", "cp2k", "--size", "1.8nm", "--frozen", "core", "-o", str(tmp_path / "inp")])
        == 0
    )
    text = (tmp_path / "inp" / "production.inp").read_text()
    assert "FIXED_ATOMS" in text and "TIMECON 1000" in text and "ABC 50.0000" in text


def test_gaps_dos_rmsf_on_fixture(tmp_path, capsys):
    gaps = tmp_path / "gaps.csv"
    assert main(["aimd", "gaps", str(FIX / "md.out.gz"), "-o", str(gaps)]) == 0
    table = pd.read_csv(gaps)
    assert len(table) == 21 and table["gap_eV"].iloc[0] == pytest.approx(3.726241)
    side = _sidecar(gaps)
    assert list(side["inputs"].values())[0] and len(list(side["inputs"].values())[0]) == 64
    pos, vel = FIX / "cspbbr3-md-pos-1.xyz", FIX / "cspbbr3-md-vel-1.xyz"
    assert (
        main(["aimd", "dos", "--pos", str(pos), "--vel", str(vel), "-o", str(tmp_path / "dos")])
        == 0
    )
    dos = pd.read_csv(tmp_path / "dos" / "dos.csv")
    de = dos["energy_meV"].iloc[1]
    assert dos["dos_per_meV"].sum() * de == pytest.approx(9.0)  # 3N - 6 for 5 atoms
    assert {"dos_Cs_per_meV", "dos_Pb_per_meV", "dos_Br_per_meV"} <= set(dos.columns)
    assert (tmp_path / "dos" / "dos.png").exists()
    assert _sidecar(tmp_path / "dos" / "dos.csv")["parameters"]["dt_fs"] == 10.0
    assert main(["aimd", "rmsf", "--pos", str(pos), "-o", str(tmp_path / "rmsf")]) == 0
    per_atom = pd.read_csv(tmp_path / "rmsf" / "rmsf_atoms.csv")
    assert len(per_atom) == 5 and (per_atom["rmsf_A"] > 0).all()
    assert (tmp_path / "rmsf" / "rmsf.png").exists()
    # No stray temporary files from the atomic writes.
    assert not list(tmp_path.rglob("*.tmp"))


def test_huang_rhys_and_dephasing_from_csv(tmp_path, capsys):
    n, dt, T = 4096, 10.0, 10.0
    e = np.array([20, 69, 168]) * H_MEV_FS / (n * dt)
    s = np.array([20.0, 5.0, 1.0])
    a = np.sqrt(4 * s * e * KB_MEV_K * T)
    t = np.arange(n) * dt
    gap_meV = 1850 + (
        a[:, None] * np.cos(e[:, None] / HBAR_MEV_FS * t + np.array([[0.1], [1.0], [2.0]]))
    ).sum(0)
    csv = tmp_path / "gap.csv"
    pd.DataFrame({"step": np.arange(n), "time_fs": t, "gap_eV": gap_meV / 1000}).to_csv(
        csv, index=False
    )
    out = tmp_path / "hr"
    assert (
        main(
            [
                "aimd",
                "huang-rhys",
                str(csv),
                "--temperature",
                "10",
                "-o",
                str(out),
                "--n-free",
                "10",
            ]
        )
        == 0
    )
    win = pd.read_csv(out / "huang_rhys_windows.csv")
    assert np.allclose(win["S"], s, rtol=1e-9)
    assert np.allclose(win["S_per_free_atom"], s / 10, rtol=1e-9)
    res = _sidecar(out / "huang_rhys_windows.csv")["results"]
    assert res["reorganization_meV"] == pytest.approx((s * e).sum(), rel=1e-9)
    assert (out / "huang_rhys.png").exists()
    assert (
        main(["aimd", "dephasing", str(csv), "--max-time", "500", "-o", str(tmp_path / "deph")])
        == 0
    )
    d = pd.read_csv(tmp_path / "deph" / "dephasing.csv")
    assert d["D"].iloc[0] == 1.0 and d["time_fs"].iloc[-1] == 500.0
    assert (tmp_path / "deph" / "dephasing.png").exists()
