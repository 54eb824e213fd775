"""Frozen-shell and frozen-core series: inputs (checked by CP2K where installed) and analysis.

Truth: synthetic HOMO and LUMO series built from cosines on disjoint FFT bins
(``stemqd.aimd.synthetic``), so each run's HOMO, LUMO and gap amplitudes are known exactly,
and frozen-core gaps built from modes with known Huang-Rhys factors per free atom that vary
linearly with the free-shell thickness.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemqd.aimd import build_dot, frozen_indices, synthetic
from stemqd.aimd.series import (
    FROZEN_CORE_WINDOWS_MEV,
    analyse_series,
    read_run,
    write_frozen_series,
)
from stemqd.cli import main
from stemqd.errors import InputError
from stemqd.optics import FWHM_PER_SIGMA

FIX = Path(__file__).parent / "fixtures" / "cp2k" / "ot"
CP2K = shutil.which("cp2k")


def _write_run(folder, homo_meV, lumo_meV, dt_fs, meta):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(homo_meV)
    pd.DataFrame(
        {
            "step": np.arange(n),
            "time_fs": np.arange(n) * dt_fs,
            "homo_eV": (-4000.0 + homo_meV) / 1000.0,
            "lumo_eV": (-2000.0 + lumo_meV) / 1000.0,
            "gap_eV": (2000.0 + lumo_meV - homo_meV) / 1000.0,
        }
    ).to_csv(folder / "gaps.csv", index=False)
    (folder / "stemqd_run.json").write_text(json.dumps(meta))
    return folder


def _amplitude_runs(tmp_path, n_steps, dt_fs, sigmas, seed):
    """One run per thickness with known HOMO and LUMO rms amplitudes (meV)."""
    dirs = []
    for k, (t, (s_h, s_l)) in enumerate(sigmas.items()):
        e_h, a_h = synthetic.band_of_modes(0.5, 40.0, s_h, n_steps, dt_fs, every=2, offset=0)
        e_l, a_l = synthetic.band_of_modes(0.5, 40.0, s_l, n_steps, dt_fs, every=2, offset=1)
        h, _ = synthetic.gap_from_modes(e_h, a_h, n_steps, dt_fs, seed=seed + k)
        lu, _ = synthetic.gap_from_modes(e_l, a_l, n_steps, dt_fs, seed=seed + 100 + k)
        meta = {"series": "frozen-shell", "shell_cells": t, "n_free": 100, "temperature_K": 300}
        dirs.append(_write_run(tmp_path / f"run_{t:g}", h, lu, dt_fs, meta))
    return dirs


# The study: 230 meV gap FWHM for the free dot down to about 50 meV with a 2-cell frozen shell.
STUDY_FWHM = {0.0: 230.0, 0.5: 180.0, 1.0: 130.0, 1.5: 85.0, 2.0: 50.0}


@pytest.mark.parametrize("n_steps", [1000, 4000, 8000])
@pytest.mark.parametrize("seed", [1, 2])
def test_frozen_shell_fwhm_recovered(tmp_path, n_steps, seed):
    # HOMO carries 40 % of the gap variance, LUMO 60 %, at every thickness.
    sig = {t: f / FWHM_PER_SIGMA for t, f in STUDY_FWHM.items()}
    sigmas = {t: (s * np.sqrt(0.4), s * np.sqrt(0.6)) for t, s in sig.items()}
    dirs = _amplitude_runs(tmp_path, n_steps, 10.0, sigmas, seed)
    res = analyse_series([read_run(d) for d in dirs[::-1]], "frozen-shell")
    table = res.table
    assert list(table["shell_cells"]) == sorted(STUDY_FWHM)
    for _, row in table.iterrows():
        t = row["shell_cells"]
        assert row["gap_fwhm_meV"] == pytest.approx(STUDY_FWHM[t], rel=0.02)
        assert row["homo_sigma_meV"] == pytest.approx(sigmas[t][0], rel=0.02)
        assert row["lumo_sigma_meV"] == pytest.approx(sigmas[t][1], rel=0.02)
        # The least-squares fit of the histogram is noisier: 2 % only for long series.
        tol = 0.02 if n_steps >= 8000 else 0.08
        assert row["gap_fwhm_hist_meV"] == pytest.approx(STUDY_FWHM[t], rel=tol)
    assert res.fits.empty
    # a typed result: it prints its table and goes to JSON as plain rows
    assert str(res).startswith(f"frozen-shell series, {len(STUDY_FWHM)} runs\n")
    data = json.loads(json.dumps(res.to_dict()))
    assert data["kind"] == "frozen-shell" and data["fits"] == []
    assert [r["shell_cells"] for r in data["table"]] == list(table["shell_cells"])


def _frozen_core_runs(tmp_path, n_steps, dt_fs, temperature_K, law, n_free, seed, snap):
    """Runs whose S per free atom in each window is intercept + slope * thickness."""
    dirs, truth = [], {}
    for k, (t, nf) in enumerate(n_free.items()):
        energies, sigmas = [], []
        for name, lo, hi in FROZEN_CORE_WINDOWS_MEV:
            a, b = law[name]
            s_total = (a + b * t) * nf
            # Three modes per window, sharing the window's S in 1 : 2 : 1.
            e = np.array([lo + 0.75, 0.5 * (lo + hi), hi - 0.75])
            if snap:
                _, e = synthetic.snap_to_grid(e, n_steps, dt_fs)
            s = s_total * np.array([0.25, 0.5, 0.25])
            energies.append(e)
            sigmas.append(synthetic.mode_sigmas(s, e, temperature_K))
            truth[(t, name)] = a + b * t
        gap, _ = synthetic.gap_from_modes(
            np.concatenate(energies),
            np.concatenate(sigmas),
            n_steps,
            dt_fs,
            seed=seed + k,
            snap=snap,
        )
        meta = {
            "series": "frozen-core",
            "shell_cells": t,
            "n_free": nf,
            "temperature_K": temperature_K,
        }
        dirs.append(_write_run(tmp_path / f"core_{t:g}", -gap / 2, gap / 2, dt_fs, meta))
    return dirs, truth


LAW = {"4meV": (2.0e-3, 1.0e-3), "8meV": (1.0e-3, 0.5e-3), "17meV": (4.0e-4, -1.0e-4)}
N_FREE = {0.5: 196, 1.0: 488, 1.5: 602, 2.0: 800}


@pytest.mark.parametrize("snap", [True, False])
@pytest.mark.parametrize("temperature_K", [10.0, 300.0])
def test_frozen_core_s_per_free_atom_and_fits(tmp_path, snap, temperature_K):
    dirs, truth = _frozen_core_runs(
        tmp_path, 2000, 10.0, temperature_K, LAW, N_FREE, seed=7, snap=snap
    )
    # Off-grid modes leak out of untapered windows (about 10 % at 2000 steps): Hann taper.
    res = analyse_series([read_run(d) for d in dirs], "frozen-core", taper=None if snap else "hann")
    table = res.table
    for _, row in table.iterrows():
        for name, _, _ in FROZEN_CORE_WINDOWS_MEV:
            got = row[f"S_per_free_atom_{name}"]
            assert got == pytest.approx(truth[(row["shell_cells"], name)], rel=0.03)
    fits = res.fits.set_index("window")
    for name, (a, b) in LAW.items():
        assert fits.loc[name, "slope"] == pytest.approx(b, abs=0.03 * abs(a + 2 * b))
        assert fits.loc[name, "intercept"] == pytest.approx(a, abs=0.03 * abs(a + 2 * b))


def test_windows_are_parameters(tmp_path):
    dirs, _ = _frozen_core_runs(tmp_path, 2000, 10.0, 300.0, LAW, N_FREE, seed=3, snap=True)
    runs = [read_run(d) for d in dirs]
    res = analyse_series(runs, "frozen-core", windows=[(2.5, 9.5)])
    tab = res.table
    both = tab["S_per_free_atom_2.5-9.5meV"]
    t = tab["shell_cells"]
    expect = LAW["4meV"][0] + LAW["4meV"][1] * t + LAW["8meV"][0] + LAW["8meV"][1] * t
    np.testing.assert_allclose(both, expect, rtol=1e-6)
    with pytest.raises(InputError, match="free atoms"):
        analyse_series(runs, "frozen-core", n_free=[0, 0, 0, 0])
    # One value per run, or a clear error (an extra value was silently ignored before).
    with pytest.raises(InputError, match="5 values of n_free"):
        analyse_series(runs, "frozen-core", n_free=[10, 10, 10, 10, 10])
    with pytest.raises(InputError, match="3 values of thicknesses_cells"):
        analyse_series(runs, "frozen-core", thicknesses_cells=[1, 2, 3])


def test_read_run_real_cp2k_log(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIX / "md.out.gz", run / "production.out.gz")
    shutil.copy(FIX / "md.inp", run / "production.inp")
    shutil.copy(FIX / "cspbbr3-md-vel-1.xyz", run / "cspbbr3-md-vel-1.xyz")
    r = read_run(run)
    assert r["meta"]["n_free"] == 5  # no frozen atoms in the fixture run
    assert r["dt_fs"] == pytest.approx(10.0)
    assert r["meta"]["temperature_K"] == 300.0
    assert len(r["gap_meV"]) == 21
    res = analyse_series([r], "frozen-shell", thicknesses_cells=[1.0])
    assert res.table["gap_sigma_meV"].iloc[0] == pytest.approx(np.std(r["gap_meV"]))
    with pytest.raises(InputError, match="not a run folder"):
        read_run(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["frozen-shell", "frozen-core"])
def test_write_series(tmp_path, kind):
    atoms = build_dot("3.6nm")
    table = write_frozen_series(atoms, tmp_path, kind, cutoff_Ry=300.0)
    assert list(table["run"])[0] == "free"
    assert len(table) == 5
    which = "shell" if kind == "frozen-shell" else "core"
    for _, row in table.iloc[1:].iterrows():
        fixed = frozen_indices(atoms, row["shell_cells"], which=which)
        assert row["n_fixed"] == len(fixed) and row["n_free"] == len(atoms) - len(fixed)
        meta = json.loads((Path(row["folder"]) / "stemqd_run.json").read_text())
        assert meta["series"] == kind and meta["temperature_K"] == 300.0
        # the provenance block of every stemqd output, with the series' parameters
        assert meta["versions"]["stemqd"] == meta["stemqd_version"]
        assert meta["parameters"]["kind"] == kind and meta["parameters"]["cutoff_Ry"] == 300.0
        text = (Path(row["folder"]) / "production.inp").read_text()
        assert "&FIXED_ATOMS" in text
    assert "&FIXED_ATOMS" not in (tmp_path / "free" / "production.inp").read_text()
    # Frozen shells grow with t; frozen cores shrink as the free shell thickens.
    n_fixed = table["n_fixed"].to_numpy()[1:]
    assert np.all(np.diff(n_fixed) > 0 if kind == "frozen-shell" else np.diff(n_fixed) < 0)


def test_series_cli(tmp_path, capsys):
    dirs, truth = _frozen_core_runs(tmp_path, 1000, 10.0, 300.0, LAW, N_FREE, seed=5, snap=True)
    out = tmp_path / "out"
    rc = main(["aimd", "series", *map(str, dirs), "--kind", "frozen-core", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "linear fits" in text
    table = pd.read_csv(out / "series.csv")
    assert len(table) == 4 and (out / "series.png").stat().st_size > 1000
    side = json.loads((out / "series.json").read_text())
    assert len(side["results"]["fits"]) == 3 and len(side["inputs"]) == 4
    rc = main(["aimd", "series", *map(str, dirs), "--kind", "frozen-core", "--n-free", "1"])
    assert rc != 0  # one value for four runs: a clear error, no traceback
    assert "--n-free" in capsys.readouterr().err


def _check(inp):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CP2K_DATA_DIR": "/usr/share/cp2k"}
    proc = subprocess.run(
        [CP2K, "-i", inp.name, "--check"],
        cwd=inp.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow  # 15 CP2K input checks, about 30 s per series on 2 cores
@pytest.mark.skipif(CP2K is None, reason="cp2k not installed (apt-get install -y cp2k)")
@pytest.mark.parametrize("kind", ["frozen-shell", "frozen-core"])
def test_series_inputs_pass_cp2k_check(tmp_path, kind):
    rc = main(
        [
            "aimd",
            "cp2k",
            "--size",
            "3.6nm",
            "--series",
            kind,
            "--pdos",
            "10",
            "--pdos-shell",
            "1",
            "-o",
            str(tmp_path),
        ]
    )
    assert rc == 0
    checked = 0
    for run in sorted(p for p in tmp_path.iterdir() if p.is_dir()):
        for inp in sorted(run.glob("*.inp")):
            text = inp.read_text()
            if "RESTART_FILE_NAME" in text:
                # --check reads the restart file named by EXT_RESTART: give it the previous
                # stage's input, itself a valid CP2K input.
                name = text.split("RESTART_FILE_NAME")[1].split()[0]
                prev = name.replace("dot-", "", 1).replace("-1.restart", ".inp")
                shutil.copy(run / prev, run / name)
            rc, log = _check(inp)
            assert rc == 0 and "SUCCESS" in log, f"{inp}: {log[-2000:]}"
            checked += 1
    assert checked == 15


def test_cp2k_series_cli(tmp_path, capsys):
    args = ["aimd", "cp2k", "--size", "3.6nm", "--series", "frozen-core", "-o", str(tmp_path)]
    assert main([*args, "--thicknesses", "1,2", "--no-free", "--pdos", "5"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frozen_core_1cells",
        "frozen_core_2cells",
    ]
    text = (tmp_path / "frozen_core_1cells" / "production.inp").read_text()
    assert "&PDOS" in text and "&FIXED_ATOMS" in text
    assert "n_free" in capsys.readouterr().out
    assert main([*args, "--frozen", "shell"]) != 0
    assert "--series" in capsys.readouterr().err
