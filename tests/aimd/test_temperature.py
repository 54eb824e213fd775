"""Temperature series: dephasing linewidth against T beside the harmonic Gamma(T).

Truth: gap series of modes with known Huang-Rhys factors in the three Table 1 windows
(classical amplitudes sigma_k^2 = 2 S_k hbar omega_k k_B T), plus a slow anharmonic band
whose variance grows as T^3 (negligible at 10 K) and is sized so that the sideband gives 70 % of the 300 K
linewidth, as in the study. The known dephasing is the Gaussian fit of the exact
D(t) = exp(-g(t)), g(t) = sum_k (sigma_k / hbar omega_k)^2 (1 - cos omega_k t).
"""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from stemqd.aimd import synthetic
from stemqd.aimd.coupling import DEFAULT_WINDOWS_MEV
from stemqd.aimd.linewidth import fwhm_from_reorganization
from stemqd.aimd.series import read_run
from stemqd.aimd.temperature import temperature_series
from stemqd.aimd.units import HBAR_MEV_FS, KB_MEV_K
from stemqd.cli import main
from stemqd.errors import InputError
from stemqd.optics import FWHM_PER_SIGMA

S_WINDOWS = {"low": 1.0, "medium": 0.6, "high": 0.3}
TEMPS = (10.0, 77.0, 150.0, 200.0, 300.0)


def _modes(n_steps, dt_fs, s_windows, snap):
    e, s = [], []
    for name, lo, hi in DEFAULT_WINDOWS_MEV:
        c = 0.5 * (lo + hi)
        e += [c - 0.8, c, c + 0.8]
        s += list(s_windows[name] * np.array([0.25, 0.5, 0.25]))
    e, s = np.array(e), np.array(s)
    if snap:
        _, e = synthetic.snap_to_grid(e, n_steps, dt_fs)
    return e, s


def _series(n_steps, dt_fs, fraction_300, snap, seed):
    """Runs at TEMPS and the truth: Lambda, and the exact dephasing FWHM of each run."""
    e, s = _modes(n_steps, dt_fs, S_WINDOWS, snap)
    lam = float((s * e).sum())
    # Anharmonic slow band: sigma_a(300 K) such that Gamma_h / Gamma_total = fraction_300 in
    # the static limit; sigma_a proportional to T^1.5.
    sa300 = np.sqrt(2 * lam * KB_MEV_K * 300.0 * (1.0 / fraction_300**2 - 1.0))
    runs, truth = [], {}
    for k, t in enumerate(TEMPS):
        sig = synthetic.mode_sigmas(s, e, t)
        e_a, s_a = synthetic.band_of_modes(0.05, 0.45, sa300 * (t / 300.0) ** 1.5, n_steps, dt_fs)
        g1, e_used = synthetic.gap_from_modes(e, sig, n_steps, dt_fs, seed=seed + k, snap=snap)
        g2, _ = synthetic.gap_from_modes(e_a, s_a, n_steps, dt_fs, seed=seed + 50 + k)
        runs.append(
            {
                "name": f"T{t:g}",
                "gap_meV": 2000.0 + g1 + g2,
                "dt_fs": dt_fs,
                "meta": {"temperature_K": t},
            }
        )
        time = np.arange(0.0, 600.0, dt_fs)
        d = np.exp(-synthetic.mode_cumulant(time, np.r_[e_used, e_a], np.r_[sig, s_a]))
        stop = np.flatnonzero(d < 0.05)
        stop = stop[0] + 1 if stop.size else d.size
        (tau,), _ = optimize.curve_fit(
            lambda x, ta: np.exp(-(x**2) / (2 * ta**2)), time[:stop], d[:stop], p0=[30.0]
        )
        truth[t] = FWHM_PER_SIGMA * HBAR_MEV_FS / abs(tau)
    return runs, lam, truth


@pytest.mark.parametrize(
    "n_steps, dt_fs, snap, taper",
    [(8192, 5.0, True, None), (4096, 5.0, True, None), (4096, 5.0, False, "hann")],
)
@pytest.mark.parametrize("fraction_300", [0.7, 0.5, 0.9])
def test_gamma_and_s_recovered(n_steps, dt_fs, snap, taper, fraction_300):
    runs, lam, truth = _series(n_steps, dt_fs, fraction_300, snap, seed=11)
    res = temperature_series(runs[::-1], taper=taper)
    assert res["reference"]["temperature_K"] == 10.0
    win = res["windows"].set_index("window")
    for name, s in S_WINDOWS.items():
        assert win.loc[name, "S"] == pytest.approx(s, rel=0.03)
    assert res["reorganization_windows_meV"] == pytest.approx(lam, rel=0.03)
    table = res["table"]
    assert list(table["temperature_K"]) == list(TEMPS)
    for _, row in table.iterrows():
        t = row["temperature_K"]
        assert row["harmonic_fwhm_meV"] == pytest.approx(fwhm_from_reorganization(t, lam), rel=0.03)
        assert row["dephasing_decayed"] == (t >= 77.0)
        if t >= 77.0:
            # At 10 K the undamped modes keep D(t) from decaying: no Gaussian linewidth.
            assert row["dephasing_fwhm_meV"] == pytest.approx(truth[t], rel=0.03)
    exact = fwhm_from_reorganization(300.0, lam) / truth[300.0]
    assert res["sideband_fraction"] == pytest.approx(exact, rel=0.03)
    # The static-limit design value, within the dephasing's departure from a Gaussian.
    assert res["sideband_fraction"] == pytest.approx(fraction_300, rel=0.03)


def test_reference_and_fraction_temperatures():
    runs, _, _ = _series(4096, 5.0, 0.7, True, seed=3)
    res = temperature_series(runs, reference_K=77.0)
    assert res["reference"]["run"] == "T77"
    # Huang-Rhys factors do not depend on the temperature of the harmonic run.
    assert res["windows"].set_index("window").loc["high", "S"] == pytest.approx(0.3, rel=0.03)
    with pytest.raises(InputError, match="reference temperature"):
        temperature_series(runs, reference_K=4.0)
    res = temperature_series(runs[:2])
    assert np.isnan(res["sideband_fraction"])
    bad = [dict(r, meta={}) for r in runs]
    with pytest.raises(InputError, match="temperature"):
        temperature_series(bad)
    with pytest.raises(InputError, match="values of temperatures_K"):
        temperature_series(runs, temperatures_K=[10.0])


def test_temperature_series_cli(tmp_path, capsys):
    runs, lam, _ = _series(4096, 5.0, 0.7, True, seed=5)
    dirs = []
    for r in runs:
        d = tmp_path / r["name"]
        d.mkdir()
        n = len(r["gap_meV"])
        pd.DataFrame(
            {"step": np.arange(n), "time_fs": np.arange(n) * 5.0, "gap_eV": r["gap_meV"] / 1000}
        ).to_csv(d / "gaps.csv", index=False)
        (d / "stemqd_run.json").write_text(json.dumps(r["meta"]))
        dirs.append(str(d))
    assert read_run(dirs[0])["meta"]["temperature_K"] == 10.0
    out = tmp_path / "out"
    assert main(["aimd", "temperature-series", *dirs, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sideband fraction of the 300 K linewidth" in text
    table = pd.read_csv(out / "temperature_series.csv")
    assert len(table) == len(TEMPS)
    side = json.loads((out / "temperature_series.json").read_text())
    assert side["results"]["reorganization_windows_meV"] == pytest.approx(lam, rel=0.03)
    assert (out / "temperature_series.png").stat().st_size > 1000
    # Temperatures on the command line override the metadata; a wrong count is an error.
    assert main(["aimd", "temperature-series", *dirs, "--temperature", "10", "20"]) != 0
    assert "--temperature" in capsys.readouterr().err
