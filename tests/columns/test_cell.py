"""Projected unit cells, checked against hand-computed positions and compositions."""

import argparse
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemqd.columns.cell import (
    nearest_neighbour_A,
    pair_distance_A,
    parse_ratio,
    parse_zone_axis,
    projected_cell,
)
from stemqd.errors import InputError

N = 1.7
Z = {"Cs": 55, "Pb": 82, "Br": 35, "Sr": 38, "Ti": 22, "O": 8, "Mo": 42, "S": 16}


def by_label(cell):
    out = {}
    for c in cell.columns:
        out.setdefault(c.label, []).append(c)
    return out


def fracs_of(cell, label):
    return sorted(tuple(round(x, 4) for x in c.frac) for c in cell.columns if c.label == label)


def test_cspbbr3_001_default():
    cell = projected_cell()
    a = 5.87
    assert cell.name == "CsPbBr3" and cell.zone_axis == (0, 0, 1)
    np.testing.assert_allclose(cell.vectors_A, [[a, 0], [0, a]], atol=1e-9)
    assert cell.repeat_A == pytest.approx(a)
    cols = by_label(cell)
    assert set(cols) == {"Cs", "PbBr", "Br"}
    assert fracs_of(cell, "Cs") == [(0.0, 0.0)]
    assert fracs_of(cell, "PbBr") == [(0.5, 0.5)]
    assert fracs_of(cell, "Br") == [(0.0, 0.5), (0.5, 0.0)]
    assert cols["Cs"][0].composition == {"Cs": 1}
    assert cols["PbBr"][0].composition == {"Pb": 1, "Br": 1}
    assert {c.site for c in cell.columns} == {"A", "BX", "X"}
    assert cell.column("PbBr").site == "BX" and cell.column("Cs").site == "A"
    # Expected contrast: sum Z**1.7 per Å along the beam.
    assert cell.column("Cs").contrast == pytest.approx(Z["Cs"] ** N / a)
    assert cell.column("PbBr").contrast == pytest.approx((Z["Pb"] ** N + Z["Br"] ** N) / a)
    assert cell.columns[0].label == "PbBr"  # brightest first
    # 0.415 nm Cs to Pb-Br (half the face diagonal); Br sits a/2 from both.
    assert pair_distance_A(cell, "Cs", "PbBr") == pytest.approx(a / math.sqrt(2))
    assert pair_distance_A(cell, "Cs", "PbBr") == pytest.approx(4.151, abs=1e-3)
    assert nearest_neighbour_A(cell) == pytest.approx(a / 2)
    assert cell.nearest_neighbour_A(min_relative_contrast=0.3) == pytest.approx(a / math.sqrt(2))
    np.testing.assert_allclose(cell.positions_A()[0], [a / 2, a / 2])


def test_srtio3_001_is_sr_tio_o():
    # Along [001] the SrO and TiO2 planes alternate: pure Sr columns, Ti+O columns and
    # pure O columns; Sr to Ti-O is a/sqrt(2) = 2.76 Å (a/2 = 1.95 Å is Sr or TiO to O).
    cell = projected_cell("SrTiO3", (0, 0, 1))
    a = 3.905
    cols = by_label(cell)
    assert set(cols) == {"Sr", "TiO", "O"}
    assert cols["Sr"][0].composition == {"Sr": 1}
    assert cols["TiO"][0].composition == {"Ti": 1, "O": 1}
    assert len(cols["O"]) == 2 and cols["O"][0].composition == {"O": 1}
    assert cell.column("Sr").site == "A" and cell.column("TiO").site == "BX"
    assert pair_distance_A(cell, "Sr", "TiO") == pytest.approx(a / math.sqrt(2))
    assert pair_distance_A(cell, "Sr", "O") == pytest.approx(a / 2)
    # The A column is the bright one here, unlike CsPbBr3: the computed contrasts say so.
    assert cell.column("Sr").contrast == pytest.approx(Z["Sr"] ** N / a)
    assert cell.column("Sr").contrast > cell.column("TiO").contrast
    assert cell.columns[0].label == "Sr"


def test_srtio3_110_is_sro_ti_o2():
    cell = projected_cell("SrTiO3", "110")
    a = 3.905
    assert cell.a_A == pytest.approx(a / math.sqrt(2))
    assert cell.b_A == pytest.approx(a)
    assert cell.gamma_deg == pytest.approx(90)
    assert cell.repeat_A == pytest.approx(a * math.sqrt(2))
    cols = by_label(cell)
    assert set(cols) == {"SrO", "Ti", "O2"}
    assert cols["SrO"][0].composition == {"Sr": 1, "O": 1}
    assert cols["Ti"][0].composition == {"Ti": 1}
    assert cols["O2"][0].composition == {"O": 2}  # O every a/sqrt(2) along the beam
    assert fracs_of(cell, "SrO") == [(0.0, 0.0)]
    assert fracs_of(cell, "Ti") == [(0.0, 0.5)]
    assert fracs_of(cell, "O2") == [(0.5, 0.5)]
    assert {c.label: c.site for c in cell.columns} == {"SrO": "AX", "Ti": "B", "O2": "X"}
    # The "0.195 nm Sr-O to Ti" is this projection's distance.
    assert pair_distance_A(cell, "SrO", "Ti") == pytest.approx(a / 2)
    assert pair_distance_A(cell, "Ti", "O2") == pytest.approx(a / (2 * math.sqrt(2)))
    rep = a * math.sqrt(2)
    assert cell.column("SrO").contrast == pytest.approx((Z["Sr"] ** N + Z["O"] ** N) / rep)
    assert cell.column("O2").contrast == pytest.approx(2 * Z["O"] ** N / rep)


def test_mos2_monolayer_001_hexagonal():
    cell = projected_cell("MoS2-1H", "001")
    a = 3.16
    np.testing.assert_allclose(cell.vectors_A, [[a, 0], [-a / 2, a * math.sqrt(3) / 2]], atol=1e-9)
    assert cell.gamma_deg == pytest.approx(120)
    cols = by_label(cell)
    assert set(cols) == {"Mo", "S2"}
    assert cols["S2"][0].composition == {"S": 2}
    assert fracs_of(cell, "Mo") == [(0.3333, 0.6667)]
    assert fracs_of(cell, "S2") == [(0.6667, 0.3333)]
    assert pair_distance_A(cell, "Mo", "S2") == pytest.approx(a / math.sqrt(3))
    assert cell.column("Mo").contrast > cell.column("S2").contrast


def test_mos2_2h_bulk_001_has_two_equal_mixed_columns():
    # In 2H stacking each layer is rotated by 180°: every [001] column holds one Mo and
    # two S per c, so the two columns of the honeycomb are identical in composition.
    cell = projected_cell("MoS2", "0001")
    assert cell.zone_axis == (0, 0, 1)
    assert cell.repeat_A == pytest.approx(12.29)
    assert [c.label for c in cell.columns] == ["MoS2", "MoS2"]
    assert all(c.composition == {"Mo": 1, "S": 2} for c in cell.columns)
    assert fracs_of(cell, "MoS2") == [(0.3333, 0.6667), (0.6667, 0.3333)]


def test_centred_lattices_use_their_true_periods():
    au = projected_cell("Au", "110")
    assert au.repeat_A == pytest.approx(4.078 / math.sqrt(2))
    assert [c.composition for c in au.columns] == [{"Au": 1}]
    au001 = projected_cell("Au", "001")
    assert au001.a_A == pytest.approx(4.078 / 2) and au001.b_A == pytest.approx(4.078 / 2)
    assert au001.repeat_A == pytest.approx(4.078)
    si = projected_cell("Si", "110")
    assert len(si.columns) == 2  # the [110] dumbbell
    assert nearest_neighbour_A(si) == pytest.approx(5.431 / 4)


def test_supercell_and_cif_give_the_same_projection(tmp_path):
    import ase.io

    from stemqd.columns.cell import load_structure

    ref = projected_cell("SrTiO3", "110")
    atoms, _ = load_structure("SrTiO3")
    sup = projected_cell(atoms.repeat((2, 2, 3)), "110")
    path = tmp_path / "sto.cif"
    ase.io.write(str(path), atoms)
    from_cif = projected_cell(str(path), "110")
    assert from_cif.name == "sto"
    for other in (sup, from_cif):
        np.testing.assert_allclose(other.vectors_A, ref.vectors_A, atol=1e-6)
        assert other.repeat_A == pytest.approx(ref.repeat_A)
        assert [(c.label, c.frac, c.composition) for c in other.columns] == [
            (c.label, c.frac, c.composition) for c in ref.columns
        ]


def test_lattice_constant_override_and_exponent():
    cell = projected_cell("CsPbBr3", lattice_constant_A=6.0, exponent=2.0)
    assert cell.a_A == pytest.approx(6.0) and cell.repeat_A == pytest.approx(6.0)
    assert cell.column("Cs").contrast == pytest.approx(55**2 / 6.0)


@settings(max_examples=20, deadline=None)
@given(
    st.tuples(*[st.integers(-2, 2)] * 3).filter(lambda z: any(z)),
    st.sampled_from(["CsPbBr3", "MoS2", "Si"]),
)
def test_column_contrast_density_is_zone_independent(zone, material):
    # Every atom lands in exactly one column: sum(contrast per Å) / cell area is the Z**n
    # density of the crystal, whatever the zone axis.
    from stemqd.columns.cell import load_structure

    atoms, _ = load_structure(material)
    density = np.sum(atoms.numbers.astype(float) ** N) / atoms.get_volume()
    cell = projected_cell(material, zone)
    assert cell.contrasts.sum() / cell.area_A2 == pytest.approx(density, rel=1e-9)
    assert all(0 <= u < 1 and 0 <= v < 1 for u, v in cell.fracs)
    assert cell.b_A >= cell.a_A - 1e-9 and cell.gamma_deg >= 60 - 1e-6


def test_parse_zone_axis():
    assert parse_zone_axis("001") == (0, 0, 1)
    assert parse_zone_axis("1-10") == (1, -1, 0)
    assert parse_zone_axis("[2 2 0]") == (1, 1, 0)
    assert parse_zone_axis("0,0,1") == (0, 0, 1)
    assert parse_zone_axis("2-1-10") == (1, 0, 0)
    with pytest.raises(InputError):
        parse_zone_axis((0, 0, 0))
    with pytest.raises(InputError):
        parse_zone_axis("abc")
    with pytest.raises(InputError):
        parse_zone_axis("1110")  # U+V+T != 0


def test_parse_ratio():
    cell = projected_cell()
    num, den = parse_ratio("Cs:PbBr", cell)
    assert (num.label, den.label) == ("Cs", "PbBr")
    assert parse_ratio("cs:Pb-Br", cell)[1].label == "PbBr"
    assert parse_ratio("A:BX", cell)[1].label == "PbBr"
    sto = projected_cell("SrTiO3", "110")
    assert [c.label for c in parse_ratio("Ti:SrO", sto)] == ["Ti", "SrO"]
    assert parse_ratio("O:Ti", sto)[0].label == "O2"
    with pytest.raises(InputError, match="available: PbBr, Cs, Br"):
        parse_ratio("Cs:TiO", cell)
    with pytest.raises(InputError):
        parse_ratio("Cs", cell)
    with pytest.raises(InputError):
        parse_ratio("Cs:Cs", cell)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="unknown material"):
        projected_cell("Unobtainium")
    with pytest.raises(InputError):
        projected_cell("CsPbBr3", (0, 0, 0))
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a CIF\n")
    with pytest.raises(InputError, match="cannot read"):
        projected_cell(str(bad))
    with pytest.raises(InputError):
        projected_cell().column("Ti")


def _cli(argv):
    from stemqd.cli import cell as cli_cell

    parser = argparse.ArgumentParser()
    cli_cell.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_prints_and_writes_png(tmp_path, capsys):
    png = tmp_path / "cell.png"
    assert _cli(["cell", "SrTiO3", "--zone", "110", "--ratio", "Ti:SrO", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "SrTiO3 [110]" in out and "SrO" in out and "O2" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cell.png"]  # no temp file left
    assert _cli(["cell"]) == 0
    assert "CsPbBr3 [001]" in capsys.readouterr().out
    with pytest.raises(InputError):
        _cli(["cell", "nonexistent.cif"])


MIXED_CIF = """data_mixed
_cell_length_a 5.87
_cell_length_b 5.87
_cell_length_c 5.87
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P m -3 m'
_symmetry_Int_Tables_number 221
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Cs1 Cs 0 0 0 1
Pb1 Pb 0.5 0.5 0.5 1
Br1 Br 0 0.5 0.5 0.5
I1 I 0 0.5 0.5 0.5
"""


def test_mixed_halide_cif_counts_occupancies(tmp_path):
    path = tmp_path / "CsPbBrI.cif"
    path.write_text(MIXED_CIF)
    cell = projected_cell(str(path), "001")
    bx = next(c for c in cell.columns if c.site == "BX")
    assert bx.composition == {"Pb": 1, "I": 0.5, "Br": 0.5}
    assert bx.contrast == pytest.approx((82**N + (53**N + 35**N) / 2) / 5.87)
    assert parse_ratio("Cs:PbIBr", cell)[1] is bx
    x = [c for c in cell.columns if c.site == "X"]
    assert len(x) == 2 and x[0].composition == {"I": 0.5, "Br": 0.5}
