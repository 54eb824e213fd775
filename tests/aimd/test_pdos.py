"""Band-edge localisation from CP2K PDOS files: synthetic PDOS with known weights, and a real
CP2K run (``tests/aimd/fixtures/cp2k_pdos``) of a Ca-containing Cs-Pb-Br cluster."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemqd.aimd import build_dot, cp2k_input
from stemqd.aimd.pdos import (
    band_edge_weights,
    cube_weights,
    localisation,
    occupied_populations,
    read_pdos,
    read_pdos_run,
    read_populations,
)
from stemqd.aimd.units import HARTREE_EV
from stemqd.cli import main
from stemqd.errors import InputError

FIX = Path(__file__).parent / "fixtures" / "cp2k_pdos"


def _write_pdos(path, label, steps, eig, occ, weights, *, is_list=False, n_atoms=3):
    """CP2K-format PDOS file: weights (n_steps, n_mo) split over s and p columns."""
    lines = []
    for k, step in enumerate(steps):
        if is_list:
            head = f"# Projected DOS for list {label} of {n_atoms} atoms, at iteration step i = "
        else:
            head = f"# Projected DOS for atomic kind {label} at iteration step i = "
        lines.append(f"{head}{step}, E(Fermi) =    -0.100000 a.u.")
        lines.append(
            "#     MO Eigenvalue [a.u.]      Occupation                 s                 p"
        )
        for j in range(eig.shape[1]):
            w = weights[k, j]
            lines.append(f"{j + 1:8d}{eig[k, j]:18.6f}{occ[j]:16.6f}{0.3 * w:18.8f}{0.7 * w:18.8f}")
    Path(path).write_text("\n".join(lines) + "\n")


def _synthetic_run(folder, n_steps=6, n_mo=8, n_occ=5, seed=0, project="dot-production"):
    """Kinds Pb, Br, Ca with random weights (rows sum to 1) and one LDOS list."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    steps = np.arange(n_steps)
    w = rng.dirichlet(np.ones(3), size=(n_steps, n_mo))  # (step, mo, kind)
    w = np.round(w, 8)
    w[..., 2] = 1.0 - w[..., 0] - w[..., 1]
    eig = np.sort(rng.uniform(-0.4, 0.1, size=(n_steps, n_mo)), axis=1)
    eig[:, n_occ:] += 0.1  # a gap
    occ = np.r_[np.full(n_occ, 2.0), np.zeros(n_mo - n_occ)]
    for k, kind in enumerate(["Pb", "Br", "Ca"]):
        _write_pdos(folder / f"{project}-k{k + 1}-1.pdos", kind, steps, eig, occ, w[..., k])
    _write_pdos(
        folder / f"{project}-list1-1.pdos", 1, steps, eig, occ, w[..., 0] + w[..., 2], is_list=True
    )
    (folder / "production.inp").write_text(
        f"&GLOBAL\n  PROJECT {project}\n  RUN_TYPE MD\n&END GLOBAL\n"
        "        # stemqd LDOS 1 cations\n"
    )
    return w, eig, occ


def test_synthetic_weights_recovered(tmp_path):
    w, eig, occ = _synthetic_run(tmp_path)
    table = read_pdos_run(tmp_path)
    assert table.attrs["kinds"] == ["Pb", "Br", "Ca"] and table.attrs["lists"] == ["cations"]
    edges = band_edge_weights(table)
    homo, lumo = 4, 5
    np.testing.assert_array_equal(edges["homo_mo"], homo + 1)
    np.testing.assert_allclose(edges["homo_Pb"], w[:, homo, 0], atol=1e-9)
    np.testing.assert_allclose(edges["lumo_Ca"], w[:, lumo, 2], atol=1e-9)
    np.testing.assert_allclose(edges["lumo_cations"], w[:, lumo, 0] + w[:, lumo, 2], atol=1e-8)
    np.testing.assert_allclose(edges["homo_sum_kinds"], 1.0, atol=3e-8)
    np.testing.assert_allclose(
        edges["gap_eV"], (eig[:, lumo] - eig[:, homo]) * HARTREE_EV, atol=1e-4
    )
    pops = occupied_populations(table)
    np.testing.assert_allclose(pops["Br"], 2 * w[:, :5, 1].sum(axis=1), atol=1e-7)
    res = localisation(tmp_path, labels=["Ca", "cations"], skip=2)
    avg = res["average"].set_index("quantity")
    assert avg.loc["lumo_Ca", "mean"] == pytest.approx(w[2:, lumo, 2].mean(), abs=1e-8)
    assert np.isnan(avg.loc["lumo_Ca", "relaxed"]) and res["relaxed"] is None
    with pytest.raises(InputError, match="not in the PDOS"):
        band_edge_weights(table, labels=["Cs"])


def test_restart_truncation_and_uks(tmp_path):
    w, eig, occ = _synthetic_run(tmp_path, n_steps=4)
    path = tmp_path / "dot-production-k1-1.pdos"
    text = path.read_text().splitlines()
    block = len(text) // 4
    # A restart repeats step 3 with new values, and the killed run left half a block.
    repeated = [ln.replace("i = 3", "i = 3") for ln in text[3 * block : 4 * block]]
    repeated = [repeated[0], repeated[1]] + [ln[:-18] + f"{0.123:18.8f}" for ln in repeated[2:]]
    truncated = text[:block][: block // 2]
    path.write_text("\n".join(text + repeated + truncated) + "\n")
    frame = read_pdos(path)
    assert sorted(frame["step"].unique()) == [0, 1, 2, 3]
    last = frame[frame["step"] == 3]["weight"].to_numpy()
    np.testing.assert_allclose(last, 0.3 * w[3, :, 0] + 0.123, atol=2e-8)
    # UKS: alpha and beta files; HOMO over both spins, LUMO over both spins.
    uks = tmp_path / "uks"
    uks.mkdir()
    for spin, shift, n_occ in (("ALPHA", 0.0, 5), ("BETA", 0.05, 4)):
        o = np.r_[np.ones(n_occ), np.zeros(8 - n_occ)]
        for k, kind in enumerate(["Pb", "Br", "Ca"]):
            _write_pdos(
                uks / f"d-{spin}_k{k + 1}-1.pdos", kind, [0], eig[:1] + shift, o, w[:1, :, k]
            )
    table = read_pdos_run(uks)
    assert set(table["spin"]) == {1, 2}
    e = band_edge_weights(table).iloc[0]
    # alpha HOMO: MO 5 at eig[4]; beta HOMO: MO 4 at eig[3] + 0.05 (whichever is higher).
    a_h, b_h = eig[0, 4], eig[0, 3] + 0.05
    assert e["homo_eV"] == pytest.approx(max(a_h, b_h) * HARTREE_EV, abs=1e-4)
    assert e["homo_spin"] == (1 if a_h > b_h else 2)


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="no CP2K .pdos files"):
        localisation(tmp_path)
    (tmp_path / "x-k1-1.pdos").write_text("garbage\n")
    with pytest.raises(InputError, match="before the first"):
        read_pdos(tmp_path / "x-k1-1.pdos")


def test_input_writer_pdos_sections():
    atoms = build_dot(4, shell="CsCaBr3")
    text = cp2k_input(
        atoms,
        pdos_each=5,
        pdos_lists={"shell": [0, 1, 2], "core": [5, 6]},
        populations=("MULLIKEN", "LOWDIN"),
    )
    assert "&PDOS" in text and "APPEND T" in text and "NLUMO 4" in text
    assert "# stemqd LDOS 1 shell" in text and "# stemqd LDOS 2 core" in text
    assert "MD 5" in text and "&MULLIKEN ON" in text and "&LOWDIN ON" in text
    with pytest.raises(InputError, match="ADDED_MOS"):
        cp2k_input(atoms, solver="DIAG", added_mos=2, pdos_each=1, pdos_nlumo=4)
    with pytest.raises(InputError, match="empty"):
        cp2k_input(atoms, pdos_each=1, pdos_lists={"none": []})


# ------------------------------------------------------------------- real CP2K run
needs_fixture = pytest.mark.skipif(
    not (FIX / "md.out.gz").exists(), reason="CP2K PDOS fixture not generated"
)


def _stage(name):
    return [f for f in sorted(FIX.glob(f"cspbcabr-{name}-*.pdos.gz"))]


@needs_fixture
@pytest.mark.parametrize("stage", ["geo_opt", "md"])
def test_real_weights_sum_to_one_and_match_populations(tmp_path, stage):
    for f in _stage(stage):
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(FIX / f"{stage}.inp", tmp_path)
    table = read_pdos_run(tmp_path)
    assert table.attrs["kinds"] == ["Pb", "Ca", "Br", "Cs"]
    kinds = [f"w_{k}" for k in table.attrs["kinds"]]
    # Each MO's weights over the kinds sum to 1 within 4 x the 5e-9 rounding of 8 decimals.
    np.testing.assert_allclose(table[kinds].sum(axis=1), 1.0, atol=4 * 5e-9 + 1e-12)
    edges = band_edge_weights(table)
    np.testing.assert_allclose(edges[["homo_sum_kinds", "lumo_sum_kinds"]], 1.0, atol=2e-8)
    # Occupation-weighted weights over the occupied MOs = CP2K's own population analysis of
    # the same steps, atom by atom summed per kind and over the LDOS list (printed with 6
    # decimals; 29 MOs x 2 x 5e-9 from the PDOS rounding).
    pops = occupied_populations(table)
    lowdin = read_populations(FIX / f"{stage}.out.gz", "lowdin")
    assert len(lowdin) >= len(pops)
    for (_, row), blk in zip(pops.iterrows(), lowdin[-len(pops) :]):
        for kind in table.attrs["kinds"]:
            assert row[kind] == pytest.approx(
                blk.loc[blk["element"] == kind, "population"].sum(), abs=2e-5
            )
        assert row["pb_site"] == pytest.approx(blk["population"].iloc[[0, 2, 3, 4]].sum(), abs=2e-5)
    # Mulliken (c S c) is a different partition of the same density: the same total.
    mull = read_populations(FIX / f"{stage}.out.gz", "mulliken")[-1]
    assert mull["population"].sum() == pytest.approx(58.0, abs=1e-5)
    assert pops[table.attrs["kinds"]].iloc[-1].sum() == pytest.approx(58.0, abs=1e-5)


@needs_fixture
def test_real_localisation_cli(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for f in FIX.glob("*.pdos.gz"):
        shutil.copy(f, run / f.name)
    for f in FIX.glob("*.inp"):
        shutil.copy(f, run / f.name)
    out = tmp_path / "out"
    assert (
        main(
            ["aimd", "localisation", str(run), "--lumo", "--atoms", "Ca,Pb,pb_site"]
            + ["--cube", str(FIX / "cspbcabr-cubes-WFN_00030_1-1_0.cube.gz"), "-o", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "lumo_Ca" in text and "homo_Ca" not in text
    steps = pd.read_csv(out / "localisation_steps.csv")
    # MD steps 1..5: CP2K 2023.1 loses the step-0 block when it appends the second.
    assert list(steps["step"]) == [1, 2, 3, 4, 5]
    assert list(steps["time_fs"]) == [10.0, 20.0, 30.0, 40.0, 50.0]
    summary = pd.read_csv(out / "localisation.csv").set_index("quantity")
    assert np.isfinite(summary.loc["lumo_Ca", "relaxed"])
    assert summary.loc["lumo_Ca", "mean"] == pytest.approx(steps["lumo_Ca"].mean())
    side = json.loads((out / "localisation.json").read_text())
    assert side["parameters"]["relaxed_project"] == "cspbcabr-geo_opt"
    assert (out / "localisation.png").stat().st_size > 1000
    cubes = pd.read_csv(out / "localisation_cubes.csv")
    assert cubes["Ca"].iloc[0] == pytest.approx(0.46, abs=0.02)


def _write_cube(path, symbols, positions_bohr, data, origin, spacing):
    z = {"Pb": 82, "Ca": 20, "Br": 35, "Cs": 55}
    lines = ["synthetic", "MO"]
    lines.append(f"{len(symbols):5d}{origin[0]:12.6f}{origin[1]:12.6f}{origin[2]:12.6f}")
    for n, ax in zip(data.shape, np.eye(3) * spacing):
        lines.append(f"{n:5d}{ax[0]:12.6f}{ax[1]:12.6f}{ax[2]:12.6f}")
    for sym, p in zip(symbols, positions_bohr):
        lines.append(f"{z[sym]:5d}{0.0:12.6f}{p[0]:12.6f}{p[1]:12.6f}{p[2]:12.6f}")
    flat = data.reshape(-1)
    lines += [" ".join(f"{v:13.5E}" for v in flat[i : i + 6]) for i in range(0, flat.size, 6)]
    Path(path).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("share", [0.017, 0.3, 0.67])
def test_cube_weights_synthetic(tmp_path, share):
    # Two well separated s-like orbitals: |psi|^2 share on Ca, the rest on Pb; a third atom
    # (Br) far away holds nothing.
    n, h = 60, 0.4
    g = (np.indices((n, n, n)).reshape(3, -1).T * h).reshape(n, n, n, 3)
    pos = np.array([[6.0, 12.0, 12.0], [18.0, 12.0, 12.0], [12.0, 22.0, 12.0]])
    blob = [np.exp(-((g - p) ** 2).sum(-1) / (2 * 1.0**2)) for p in pos[:2]]
    norm = [np.sqrt((b**2).sum()) for b in blob]
    psi = np.sqrt(share) * blob[0] / norm[0] + np.sqrt(1 - share) * blob[1] / norm[1]
    _write_cube(tmp_path / "mo.cube", ["Ca", "Pb", "Br"], pos, psi, np.zeros(3), h)
    w = cube_weights(tmp_path / "mo.cube", atom_sets={"cations": [0, 1]})
    assert w["Ca"] == pytest.approx(share, abs=1e-6)
    assert w["Pb"] == pytest.approx(1 - share, abs=1e-6)
    assert w["Br"] == pytest.approx(0.0, abs=1e-6)
    assert w["cations"] == pytest.approx(1.0, abs=1e-6)
    (tmp_path / "bad.cube").write_text("not a cube\n")
    with pytest.raises(InputError, match="cube"):
        cube_weights(tmp_path / "bad.cube")


@needs_fixture
def test_real_cube_weights_against_pdos(tmp_path):
    """The relaxed-geometry HOMO and LUMO cubes, Voronoi-integrated, against the PDOS."""
    for f in _stage("cubes"):
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(FIX / "cubes.inp", tmp_path)
    edges = band_edge_weights(read_pdos_run(tmp_path)).iloc[0]
    assert (edges["homo_mo"], edges["lumo_mo"]) == (29, 30)
    # Real-space (nearest-atom) and basis-set (Löwdin) partitions of the same orbital differ:
    # within 0.01 for the Br-p HOMO, within 0.12 for the LUMO spread over Ca, Br and Pb.
    for edge, tol in (("homo", 0.01), ("lumo", 0.12)):
        mo = int(edges[f"{edge}_mo"])
        cube = FIX / f"cspbcabr-cubes-WFN_{mo:05d}_1-1_0.cube.gz"
        w = cube_weights(cube, atom_sets={"pb_site": [0, 2, 3, 4]})
        assert sum(w[k] for k in ("Pb", "Ca", "Br", "Cs")) == pytest.approx(1.0, abs=1e-9)
        for label in ("Pb", "Ca", "Br", "Cs", "pb_site"):
            assert w[label] == pytest.approx(edges[f"{edge}_{label}"], abs=tol), (edge, label)
    # The dominant element is the same in both partitions.
    lumo = cube_weights(FIX / "cspbcabr-cubes-WFN_00030_1-1_0.cube.gz")
    assert max(lumo, key=lumo.get) == "Ca"
