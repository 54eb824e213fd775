"""Tests of stemqd.simulation (abTEM thickness series) and ``stemqd simulate``.

The quick mode runs once per session (module fixture, ~20 s on 2 cores); everything else
uses closed-form checks or a thin slab.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemqd import simulation as sim
from stemqd.analysis.thickness import thickness_from_ratio
from stemqd.cli import main
from stemqd.errors import InputError
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A

# Closed-form pieces ---------------------------------------------------------------------


def test_focal_spread_follows_the_stated_convention():
    sigma_e = 0.8 / (2 * math.sqrt(2 * math.log(2)))  # FWHM -> standard deviation, eV
    expected = 1.6e7 * sigma_e / 300e3  # Cc (Å) sigma_E / E0
    assert sim.focal_spread_A(0.8, 1.6, 300.0) == pytest.approx(expected)
    nodes, weights = sim.focal_nodes(2, 18.0)
    assert nodes == pytest.approx([-18.0, 18.0]) and weights == pytest.approx([0.5, 0.5])
    nodes, weights = sim.focal_nodes(3, 2.0)
    assert weights.sum() == pytest.approx(1.0)
    assert np.sum(weights * nodes**2) == pytest.approx(4.0)  # variance sigma^2
    assert np.sum(weights * nodes**4) == pytest.approx(3 * 16.0)  # Gaussian 4th moment


def test_total_blur_adds_fwhm_source_and_extra_sigma_in_quadrature():
    p = sim.SeriesParameters()
    assert p.total_blur_sigma_A == pytest.approx(math.hypot(0.25 / 2.35482, 0.3), rel=1e-4)


def test_grid_and_scan_satisfy_the_sampling_limits():
    p = sim.SeriesParameters()
    lam = p.wavelength_A
    assert lam == pytest.approx(0.019687, rel=1e-4)  # 300 kV
    # Outer detector angle inside abTEM's 2/3 anti-aliasing aperture.
    assert p.sampling_A <= lam / (3 * 0.190) + 1e-12
    # A whole, 2-3-5-smooth number of grid points per cell.
    assert p.grid_points % p.cells == 0
    assert sim.smooth_size(p.grid_points // p.cells, (2, 3, 5)) == p.grid_points // p.cells
    # Scan step at or below the Nyquist step of the ADF image, lambda / (4 alpha).
    assert p.lattice_constant_A / p.scan_points <= lam / (4 * 0.018)
    assert p.derived()["scanned_positions"] == len(sim.wedge_indices(p.scan_points))


@pytest.mark.parametrize("n", [1, 2, 7, 11, 542, 1000])
def test_smooth_size_is_the_next_2357_smooth_number(n):
    def smooth(k):
        for q in (2, 3, 5, 7):
            while k % q == 0:
                k //= q
        return k == 1

    m = sim.smooth_size(n)
    assert m >= n and smooth(m)
    assert not any(smooth(k) for k in range(n, m))


def test_default_phonon_sigmas_are_the_committed_aimd_thermal_sigmas():
    """The defaults' stated source: the AIMD run's sigmas about the mean positions."""
    run = Path(__file__).parents[2] / "simulations/reference/cspbbr3_bulk_aimd/a6.00"
    aimd = json.loads((run / "phonon_sigmas.json").read_text())
    assert sim.DEFAULT_PHONON_SIGMAS_A == {
        el: round(v, 2) for el, v in aimd["thermal_sigma_A"].items()
    }


def test_committed_reference_series_uses_the_defaults():
    ref = Path(__file__).parents[2] / "simulations/reference/cspbbr3_001_adf_series.json"
    side = json.loads(ref.read_text())
    assert side["parameters"]["phonon_sigmas_A"] == sim.DEFAULT_PHONON_SIGMAS_A
    assert side["complete"] and side["frozen_phonon_convergence"]["target_met"]


def test_parameters_reject_bad_input():
    with pytest.raises(InputError):
        sim.SeriesParameters(cells=2)
    with pytest.raises(InputError):
        sim.SeriesParameters(thicknesses_uc=(4, 2))
    with pytest.raises(InputError):
        sim.SeriesParameters(phonon_sigmas_A={"Cs": 0.1})
    with pytest.raises(InputError):
        sim.SeriesParameters(device="tpu")
    with pytest.raises(InputError, match="whole number of grid points per cell"):
        sim.SeriesParameters(gpts=1024)
    assert sim.SeriesParameters(gpts=1024, spread_scan=False).grid_points == 1024


def test_slab_geometry_and_mid_slice_planes():
    a, cells, t = CSPBBR3_LATTICE_CONSTANT_A, 3, 4
    atoms = sim.cspbbr3_slab(t, cells=cells)
    symbols = atoms.get_chemical_symbols()
    assert len(atoms) == 5 * cells**2 * t
    assert symbols.count("Cs") == symbols.count("Pb") == cells**2 * t
    assert symbols.count("Br") == 3 * cells**2 * t
    assert np.allclose(np.diag(atoms.cell), [cells * a, cells * a, t * a])
    # Atomic planes at a/4 and 3a/4 of every cell: the middle of the a/2 slices.
    assert np.allclose(np.mod(atoms.positions[:, 2], a / 2), a / 4)
    # Ordered by depth: a thin slab is the top of a thick one.
    thick = sim.cspbbr3_slab(2 * t, cells=cells)
    assert np.allclose(thick.positions[: len(atoms)], atoms.positions)


def test_displacements_have_the_requested_rms_and_do_not_depend_on_box_or_thickness():
    sig = {"Cs": 0.2, "Pb": 0.1, "Br": 0.3}
    slab = sim.cspbbr3_slab(30, cells=4)
    moved = sim.displaced_configuration(slab, sig, seed=3, config=0)
    d = moved.positions - slab.positions
    box = np.diag(slab.cell)[:2]
    d[:, :2] -= box * np.round(d[:, :2] / box)  # undo the wrap
    symbols = np.array(slab.get_chemical_symbols())
    for el, s in sig.items():
        rms = np.sqrt(np.mean(d[symbols == el] ** 2, axis=0))
        assert rms == pytest.approx([s, s, s], rel=0.12)
    thin = sim.cspbbr3_slab(5, cells=4)
    thin_moved = sim.displaced_configuration(thin, sig, seed=3, config=0)
    assert np.array_equal(thin_moved.positions, moved.positions[: len(thin)])
    # Same relative cell -> same draws in a 3 x 3 and a 4 x 4 box.
    small = sim.cspbbr3_slab(2, cells=3)
    big = sim.cspbbr3_slab(2, cells=4)
    ds = sim.displaced_configuration(small, sig, 3, 0).positions - small.positions
    db = sim.displaced_configuration(big, sig, 3, 0).positions - big.positions
    key = lambda atoms: {
        tuple(c) + (s,): i
        for i, (c, s) in enumerate(  # noqa: E731
            zip(atoms.get_array("stemqd_cell"), atoms.get_array("stemqd_site"))
        )
    }
    ks, kb = key(small), key(big)
    common = [k for k in ks if k in kb and k[0] == 0 and k[1] == 0]
    assert common
    for k in common:
        assert np.allclose(ds[ks[k], 2], db[kb[k], 2])
    other = sim.displaced_configuration(small, sig, 3, 1).positions
    assert not np.allclose(other, small.positions + ds)


def test_wedge_unfolds_a_p4mm_symmetric_image():
    n = 22
    assert len(sim.wedge_indices(n)) == 78  # the p4mm 1/8 wedge: 78 of 484 positions
    k = np.arange(n)
    x, y = np.meshgrid(k, k, indexing="xy")  # [y, x]
    f = (
        np.cos(2 * np.pi * x / n)
        + np.cos(2 * np.pi * y / n)
        + 0.3 * np.cos(2 * np.pi * x / n) * np.cos(2 * np.pi * y / n)
        + 0.1 * np.cos(4 * np.pi * x / n) * np.cos(4 * np.pi * y / n)
    )
    wedge = sim.wedge_indices(n)
    values = f[wedge[:, 1], wedge[:, 0]]
    assert np.allclose(sim.unfold_wedge(values, n), f)


def test_spread_scan_maps_every_wedge_point_to_a_symmetry_equivalent_position():
    p = sim.SeriesParameters()
    a, n = p.lattice_constant_A, p.scan_points
    spread = sim.scan_positions(p)
    centre = sim.scan_positions(dataclasses.replace(p, spread_scan=False))
    assert spread.shape == centre.shape == (len(sim.wedge_indices(n)), 2)
    assert np.all((spread >= 0) & (spread < p.box_A))
    # Reduced into one cell and folded by p4mm about the BX column, each point is the
    # wedge point it stands for.
    frac = np.mod(spread / a + 0.5, 1.0) - 0.5
    folded = np.sort(np.abs(frac), axis=1)[:, ::-1]
    assert np.allclose(folded, sim.wedge_indices(n) / n, atol=1e-9)
    # Spread over every cell of the box (the BX column a point is mapped about is ambiguous
    # on the cell edge, |frac| = 1/2, so those points are left out of the count).
    inside = np.all(np.abs(frac) < 0.5 - 1e-9, axis=1)
    cells = np.round(spread / a - frac).astype(int)[inside] % p.cells
    counts = np.bincount(cells[:, 0] + p.cells * cells[:, 1], minlength=p.cells**2)
    assert counts.min() >= 0.5 * counts.mean()
    assert np.allclose(np.mod(centre / a, 1.0), sim.wedge_indices(n) / n)


def test_spread_scan_gives_the_centre_cell_signal_for_a_static_lattice():
    """Without displacements every cell and mirror image is the same: identical signal."""
    p = sim.SeriesParameters(
        thicknesses_uc=(3,),
        sampling_factor=1.0,
        focal_nodes=1,
        phonon_sigmas_A={"Cs": 0.0, "Pb": 0.0, "Br": 0.0},
    )
    spread = sim.simulate_scans(p, [0], seed=0)
    centre = sim.simulate_scans(dataclasses.replace(p, spread_scan=False), [0], seed=0)
    # float32 multislice: agreement to ~1e-7 of the incident intensity (1).
    np.testing.assert_allclose(spread, centre, rtol=2e-5, atol=1e-6)


def test_cell_images_interpolate_exactly_and_blur_by_the_gaussian_multiplier():
    p = sim.SeriesParameters(source_size_fwhm_A=0.0, blur_sigma_A=0.0)
    a, n = p.lattice_constant_A, p.scan_points
    m = p.fit_pixels_per_cell

    def field(num):
        u = np.arange(num) * a / num
        x, y = np.meshgrid(u, u, indexing="xy")
        return 1.0 + 0.5 * np.cos(2 * np.pi * 3 * x / a) * np.cos(2 * np.pi * 2 * y / a)

    out = sim.measure.cell_images(field(n)[None], p)[0]
    assert out.shape == (m, m)
    assert np.allclose(out, field(m), atol=1e-12)
    blurred = sim.SeriesParameters(source_size_fwhm_A=0.0, blur_sigma_A=0.4)
    k2 = (3 / a) ** 2 + (2 / a) ** 2
    expected = 1.0 + 0.5 * np.exp(-2 * np.pi**2 * 0.4**2 * k2) * (field(m) - 1.0) / 0.5
    assert np.allclose(sim.measure.cell_images(field(n)[None], blurred)[0], expected, atol=1e-12)


def test_disc_integrals_match_direct_quadrature():
    p = sim.SeriesParameters()
    a, m, r = p.lattice_constant_A, p.fit_pixels_per_cell, p.lattice_constant_A / 4
    q = 2.0 / a

    def f(x, y):
        return 0.2 + np.cos(2 * np.pi * q * x) * (1 + 0.5 * np.cos(2 * np.pi * q * y))

    u = np.arange(m) * a / m
    xx, yy = np.meshgrid(u, u, indexing="xy")
    out = sim.measure.disc_integrals(f(xx, yy)[None], p)
    # Polar quadrature around the A column at (a/2, a/2).
    rho, phi = np.polynomial.legendre.leggauss(80), np.linspace(0, 2 * np.pi, 400, endpoint=False)
    rr = 0.5 * r * (rho[0] + 1)
    w = 0.5 * r * rho[1]
    R, PH = np.meshgrid(rr, phi, indexing="ij")
    vals = f(a / 2 + R * np.cos(PH), a / 2 + R * np.sin(PH)) * R
    direct = np.sum(vals * w[:, None]) * (2 * np.pi / len(phi))
    assert out["Cs"][0] == pytest.approx(direct, rel=1e-9)  # the A column


# abTEM runs ------------------------------------------------------------------------------


# Slow: the same exit-plane check runs fast on the Pnma cell
# (test_simulation_structures.py::test_pnma_exit_plane_pass_equals_a_single_thickness_run).
@pytest.mark.slow
def test_exit_planes_equal_separate_single_thickness_runs():
    """One pass with exit planes == a separate slab per thickness, same seed."""
    p = sim.SeriesParameters(thicknesses_uc=(2, 4, 6), sampling_factor=1.0)
    single_pass = sim.simulate_scans(p, [0, 1], seed=11)
    separate = sim.simulate_scans(p, [0, 1], seed=11, exit_planes=False)
    assert single_pass.shape == separate.shape == (2, 3, len(sim.wedge_indices(p.scan_points)))
    assert np.all(np.isfinite(single_pass)) and np.all(single_pass > 0)
    np.testing.assert_allclose(single_pass, separate, rtol=1e-5, atol=0)
    # A different seed gives different phonons, hence a different signal.
    other = sim.simulate_scans(p, [0], seed=12, thicknesses_uc=(6,))
    assert not np.allclose(other[0, 0], single_pass[0, 2], rtol=1e-3)


#: Thicknesses of the quick run below: the quick mode's 2-30 unit cells cut to 2-14 (the
#: exit-plane pass costs in proportion to the deepest slab); the default thicknesses are
#: checked on the parameters (test_quick_mode_defaults_span_2_to_30_unit_cells).
QUICK_RUN_UC = list(range(2, 15, 2))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("series") / "quick.csv"
    args = ["simulate", "thickness-series", "--quick", "--out", str(out), "--device", "cpu"]
    assert main(args + ["--thicknesses", "2:14:2"]) == 0
    return out


def test_quick_mode_defaults_span_2_to_30_unit_cells():
    p = sim.SeriesParameters(sampling_factor=sim.QUICK_SAMPLING_FACTOR)
    assert p.thicknesses_uc == tuple(range(2, 31, 2))
    assert p.thicknesses_uc[-1] * p.lattice_constant_A / 10 == pytest.approx(17.61)


def test_quick_mode_writes_csv_sidecar_raw_and_plot(quick_run):
    out = quick_run
    table = pd.read_csv(out)
    text = out.with_suffix(".json").read_text()
    side = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the sidecar"))
    assert side["frozen_phonon_convergence"]["ratio_grid_correction"] is None  # one level
    assert out.with_suffix(".png").stat().st_size > 0
    assert sim.raw_path_for(out).is_file()
    p = sim.SeriesParameters()
    assert side["parameters"]["sampling_factor"] == sim.QUICK_SAMPLING_FACTOR
    assert list(table.thickness_uc) == QUICK_RUN_UC
    assert np.allclose(table.thickness_nm, table.thickness_uc * p.lattice_constant_A / 10)
    assert table.thickness_nm.iloc[-1] == pytest.approx(8.218)
    assert side["mode"] == "quick" and side["num_configs"] == sim.QUICK_NUM_CONFIGS
    assert side["complete"] is True
    assert side["versions"]["abtem"].startswith("1.0")
    for key in ("stemqd", "ase", "numpy"):
        assert key in side["versions"]
    assert side["parameters"]["phonon_sigmas_A"] == sim.DEFAULT_PHONON_SIGMAS_A
    assert side["run_time_s"] > 0 and "thickness-series" in side["command"]
    assert side["frozen_phonon_convergence"]["target_se"] == sim.TARGET_RATIO_SE


def test_quick_mode_intensities_are_positive_finite_and_ordered(quick_run):
    table = pd.read_csv(quick_run)
    for meth, unit in (("volume", "_A2"), ("peak", ""), ("disc", "_A2")):
        for prefix in ("cs", "pbbr", "br"):
            col = f"{prefix}_{meth}{unit}"
            assert np.all(np.isfinite(table[col])) and np.all(table[col] > 0), col
            assert np.all(np.isfinite(table[col + "_err"])) and np.all(table[col + "_err"] >= 0)
        assert np.all(np.isfinite(table[f"ratio_{meth}"]))
        # Pb-Br (Z 82 + 35) scatters more than Cs (55) at every thickness.
        assert np.all(table[f"pbbr_{meth}{unit}"] > table[f"cs_{meth}{unit}"])
    assert np.all((table.ratio > 0) & (table.ratio < 1))
    assert np.array_equal(table.ratio, table.ratio_volume)
    # The cross-section of a Pb-Br column grows with thickness over the series.
    assert table.pbbr_disc_A2.iloc[-1] > 3 * table.pbbr_disc_A2.iloc[0]


def test_thickness_inference_inverts_a_point_of_the_quick_series(quick_run):
    table = pd.read_csv(quick_run)
    row = table[table.thickness_uc == 8].iloc[0]
    est = thickness_from_ratio(float(row.ratio), 1e-6, table, include_series_error=False)
    assert any(lo <= 8 <= hi for lo, hi in est.ranges_uc)
    assert est.monotonic == bool(
        np.all(np.diff(table.ratio) > 0) or np.all(np.diff(table.ratio) < 0)
    )
    if not est.monotonic:
        assert "non-monotonic" in est.flag


def test_series_amplitudes_feed_the_synthetic_dot(quick_run):
    from stemqd.simulation.synthetic import perovskite_dot

    table = pd.read_csv(quick_run)
    f = sim.series_amplitudes(quick_run)
    amp = f(np.array(["A", "BX", "X"]), np.zeros(3, int), 10)
    row = table[table.thickness_uc == 10].iloc[0]
    assert amp == pytest.approx([row.ratio_volume, 1.0, row.br_volume_A2 / row.pbbr_volume_A2])
    mid = f(np.array(["A"]), np.zeros(1, int), 11)[0]
    r12 = table[table.thickness_uc == 12].iloc[0]
    cs = 0.5 * (row.cs_volume_A2 + r12.cs_volume_A2)  # linear in each intensity
    pbbr = 0.5 * (row.pbbr_volume_A2 + r12.pbbr_volume_A2)
    assert mid == pytest.approx(cs / pbbr)
    frames, truth = perovskite_dot(
        (96, 96), edge_cells=10, amplitudes=f, shell_cells=1, n_frames=1, seed=1
    )
    core_a = truth.amplitudes[(truth.types == "A")]
    assert core_a == pytest.approx(np.full(len(core_a), row.ratio_volume))
    shell_bx = truth.amplitudes[(truth.types == "BX") & (truth.depth_uc < 1)]
    assert shell_bx == pytest.approx(0.6)  # shell applied by perovskite_dot
    with pytest.raises(InputError):
        f(np.array(["A"]), np.zeros(1, int), 40)
    absolute = sim.series_amplitudes(table, method="disc", relative_to=None)
    assert absolute(np.array(["BX"]), np.zeros(1, int), 10)[0] == pytest.approx(row.pbbr_disc_A2)


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["simulate", "thickness-series", "--quick", "--out", str(tmp_path / "x.txt")]) == 2
    assert (
        main(
            [
                "simulate",
                "thickness-series",
                "--quick",
                "--thicknesses",
                "a:b",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "simulate",
                "thickness-series",
                "--quick",
                "--cells",
                "2",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


@pytest.mark.slow  # the two-level run below checkpoints and resumes too, in a quarter of the time
def test_resume_continues_the_checkpoint_and_records_every_session(tmp_path):
    out = tmp_path / "tiny.csv"
    common = [
        "simulate",
        "thickness-series",
        "--out",
        str(out),
        "--thicknesses",
        "2,4",
        "--scan-per-cell",
        "8",
        "--sampling-factor",
        "1",
        "--plot",
        "none",
        "--device",
        "cpu",
    ]
    assert main(common + ["--configs", "2"]) == 0
    first = np.load(sim.raw_path_for(out))["raw"]
    assert main(common + ["--configs", "4", "--resume"]) == 0
    raw = np.load(sim.raw_path_for(out))["raw"]
    assert raw.shape[0] == 4 and np.array_equal(raw[:2], first)
    side = json.loads(out.with_suffix(".json").read_text())
    assert [s["configs_simulated"] for s in side["sessions"]] == [2, 2]
    assert side["resumed_configs"] == 2 and side["num_configs"] == 4
    assert side["simulation_time_total_s"] == pytest.approx(
        sum(s["simulation_time_s"] for s in side["sessions"])
    )
    assert side["error_method"].startswith("jackknife")
    # Configurations are independent of the run they were made in.
    fresh = sim.simulate_scans(
        sim.SeriesParameters(thicknesses_uc=(2, 4), scan_per_cell=8, sampling_factor=1.0),
        [2, 3],
        seed=0,
    )
    np.testing.assert_allclose(fresh, raw[2:], rtol=1e-6)


def test_quick_mode_does_not_claim_the_error_target(quick_run):
    side = json.loads(quick_run.with_suffix(".json").read_text())
    fp = side["frozen_phonon_convergence"]
    assert fp["se_reliable"] is False and fp["target_met"] is False
    assert "unreliable" in side["status"]


# Two-level Monte Carlo ---------------------------------------------------------------------


def _wedge_scans(params, amplitudes, rng, noise):
    """Wedge scans of periodic Gaussian columns: amplitudes (configs, thicknesses, 3 types)."""
    n, a = params.scan_points, params.lattice_constant_A
    x = np.arange(n) * a / n

    def bump(c):  # periodic Gaussian of sigma 0.4 Å centred at c, Å
        d = (x - c + a / 2) % a - a / 2
        return np.exp(-(d**2) / (2 * 0.4**2))

    gx = {f: bump(f * a) for f in (0.0, 0.5)}
    shapes = [
        np.outer(gx[0.0], gx[0.0]),
        np.outer(gx[0.5], gx[0.5]),  # BX, A
        np.outer(gx[0.0], gx[0.5]) + np.outer(gx[0.5], gx[0.0]),
    ]  # X [y, x]
    wedge = sim.wedge_indices(n)
    basis = np.stack([s[wedge[:, 1], wedge[:, 0]] for s in shapes])  # (3, positions)
    scans = np.einsum("ctk,kp->ctp", amplitudes, basis)
    return scans + noise * rng.standard_normal(scans.shape)


def test_two_level_estimate_is_the_target_grid_average_when_the_levels_share_configurations():
    """mean(coarse) + mean(fine - coarse) over the same configurations == mean(fine).

    The window fit converges to rounding, so the identity is checked to 1e-9; the joint
    fit stops at a chi² change of 1e-3, which leaves differences of ~1e-9 relative."""
    p = sim.SeriesParameters(
        thicknesses_uc=(2, 4), scan_per_cell=12, fit_pixel_A=0.25, fit_model="window7"
    )
    rng = np.random.default_rng(5)
    amp = np.array([[1.0, 0.35, 0.2], [1.8, 0.6, 0.35]])  # BX, A, X per thickness
    coarse = _wedge_scans(p, amp * (1 + 0.05 * rng.standard_normal((6, 2, 3))), rng, 1e-3)
    fine = coarse + _wedge_scans(p, np.tile([0.02, 0.03, 0.0], (6, 2, 1)), rng, 1e-4)
    nodes = sim.ensemble.config_nodes(6, sim.focal_nodes(p.focal_nodes, p.focal_spread_A)[1])
    two, _, _, method = sim.analyse_series(
        coarse, nodes, p, correction=(np.stack([coarse, fine]), nodes)
    )
    direct = sim.analyse_series(fine, nodes, p).table
    one = sim.analyse_series(coarse, nodes, p)
    assert one.error_method.startswith("jackknife") and isinstance(one.flags, list)
    # it prints its ratios and error method, and goes to JSON
    assert str(one).splitlines()[0].split() == ["thickness_uc", "ratio", "ratio_err"]
    assert str(one).splitlines()[-1].startswith("errors: jackknife")
    data = json.loads(json.dumps(one.to_dict()))
    assert len(data["table"]) == len(one.table) and data["error_method"] == one.error_method
    one = one.table
    np.testing.assert_allclose(two.ratio, direct.ratio, rtol=1e-9)
    np.testing.assert_allclose(two.ratio_grid_correction, direct.ratio - one.ratio, rtol=1e-9)
    # The correction raised A more than BX (0.03 / 0.35 vs 0.02 / 1): the ratio goes up.
    assert np.all(two.ratio_grid_correction > 0)
    assert method.startswith("two-level") and np.all(two.ratio_err >= two.ratio_err_phonon)
    assert np.all(np.isnan(one.ratio_grid_correction))


def test_two_level_run_checkpoints_resumes_and_records_both_grids(tmp_path):
    out = tmp_path / "two.csv"
    common = [
        "simulate",
        "thickness-series",
        "--out",
        str(out),
        "--thicknesses",
        "2",
        "--scan-per-cell",
        "8",
        "--sampling-factor",
        "0.9",
        "--plot",
        "none",
        "--device",
        "cpu",
        "--phonon-sampling-factor",
        "1.0",
        "--correction-configs",
        "4",
    ]
    assert main(common + ["--configs", "2"]) == 0
    z = np.load(sim.raw_path_for(out))
    assert z["raw"].shape == (2, 1, len(sim.wedge_indices(8))) and z["corr"].shape[:2] == (2, 4)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["two_level"] and side["phonon_grid"]["gpts"] == 540
    assert side["derived"]["gpts"] == 576 and side["correction_configs"] == 4
    assert side["error_method"].startswith("two-level")
    table = pd.read_csv(out)
    assert np.all(np.isfinite(table.ratio_grid_correction))
    # The correction configurations are independent of the phonon level's.
    assert not np.allclose(z["corr"][0, :2], z["raw"], rtol=1e-3)
    # Resuming with more phonon configurations re-uses both levels.
    assert main(common + ["--configs", "4", "--resume"]) == 0
    z2 = np.load(sim.raw_path_for(out))
    assert np.array_equal(z2["corr"], z["corr"]) and np.array_equal(z2["raw"][:2], z["raw"])
    side = json.loads(out.with_suffix(".json").read_text())
    assert [s["configs_simulated"] for s in side["sessions"]] == [2, 2]
    assert [s["correction_configs_simulated"] for s in side["sessions"]] == [4, 0]


def test_sidecar_records_the_fitter_and_reanalysis_reproduces_the_series(quick_run, tmp_path):
    """One implementation: re-measuring the raw scans with the model they were measured
    with gives the same table; another model gives another table, recorded as such."""
    side = json.loads(quick_run.with_suffix(".json").read_text())
    assert side["fitter"] == sim.fitter_settings(
        sim.SeriesParameters(sampling_factor=sim.QUICK_SAMPLING_FACTOR)
    )
    assert side["fitter"]["model"] == "round" == sim.series_fit_model(side)
    assert sim.read_series(quick_run).attrs["fit_model"] == "round"
    again = sim.reanalyse_series(quick_run, fit_model="round")
    table = pd.read_csv(quick_run)
    assert np.allclose(again.table["ratio"], table["ratio"], rtol=1e-6, atol=0)
    out = tmp_path / "window7.csv"
    code = main(
        [
            "simulate",
            "reanalyse",
            str(quick_run),
            "--fit-model",
            "window7",
            "--out",
            str(out),
            "--side-by-side",
            str(tmp_path / "both.csv"),
        ]
    )
    assert code == 0
    new = json.loads(out.with_suffix(".json").read_text())
    assert new["fitter"]["model"] == "window7" and new["mode"] == "reanalysis"
    assert new["reanalysis_of"]["fitter"]["model"] == "round"
    assert new["raw_archive_sha256"] == side["raw_archive_sha256"]
    assert not sim.raw_path_for(out).exists()  # the scans are named, not copied
    both = pd.read_csv(tmp_path / "both.csv")
    assert {"ratio_round", "ratio_window7", "difference"} <= set(both.columns)
    assert not np.allclose(both["ratio_round"], both["ratio_window7"], rtol=1e-4)


def test_a_series_of_another_model_is_refused_unless_allowed(quick_run):
    from stemqd.errors import ModelMismatchError

    table = sim.read_series(quick_run)
    row = table[table.thickness_uc == 14].iloc[0]
    with pytest.raises(ModelMismatchError, match="window7.*round"):
        thickness_from_ratio(float(row.ratio), 0.01, quick_run, fit_model="window7")
    est = thickness_from_ratio(
        float(row.ratio), 0.01, quick_run, fit_model="window7", allow_other_model=True
    )
    assert "series fitted with 'round'" in est.flag and est.series_fit_model == "round"
    assert (
        thickness_from_ratio(float(row.ratio), 0.01, quick_run, fit_model="round").flag.find(
            "round"
        )
        < 0
    )


def test_the_committed_reference_predates_the_fitter_record_and_was_window7():
    ref = Path(__file__).parents[2] / "simulations/reference/cspbbr3_001_adf_series.csv"
    assert sim.read_series(ref).attrs["fit_model"] == "window7"


#: Environment that runs numba, numpy and OpenBLAS on the AVX2 code paths of the machine
#: (AVX2, no AVX-512) that wrote the committed reference. The window7 fitter stops
#: at tolerances (1e-4 px between neighbour sweeps, 1e-10 relative cost) far above the
#: rounding, so its volumes move by ~1e-7 and the jackknife errors, differences of nearly
#: equal refits, by ~1e-4 when the last bits of the arithmetic change (AVX-512 sums and exp
#: on a znver4 machine); on the recorded code paths every digit comes back.
REFERENCE_CODE_PATHS = {
    "NUMBA_CPU_NAME": "haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL",
    "OPENBLAS_CORETYPE": "Haswell",
}


def _has_avx2():
    import platform

    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return platform.machine() == "x86_64" and " avx2" in flags and " fma" in flags


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx2(), reason="the reference's AVX2 code paths need x86-64 AVX2")
def test_committed_reference_reproduces_from_its_raw_scans(tmp_path):
    """One implementation: the committed raw scans re-measured with the committed series'
    own fitter (window7), on the instruction set that wrote them, give the committed table
    to its last printed digit (CSV with 8 significant digits; ~5 min)."""
    import os
    import subprocess
    import sys

    ref = Path(__file__).parents[2] / "simulations/reference/cspbbr3_001_adf_series.csv"
    out = tmp_path / "again.csv"
    code = (
        "import sys; from stemqd import simulation as sim; "
        "sim.reanalyse_series(sys.argv[1], fit_model='window7').table"
        ".to_csv(sys.argv[2], index=False, float_format='%.17g')"
    )
    env = {**os.environ, **REFERENCE_CODE_PATHS}
    subprocess.run([sys.executable, "-c", code, str(ref), str(out)], env=env, check=True)
    again, table = pd.read_csv(out), pd.read_csv(ref)
    assert list(again.columns) == list(table.columns)
    for col in table.columns:
        printed = [f"{v:.8g}" for v in again[col]]
        assert printed == [f"{v:.8g}" for v in table[col]], col
