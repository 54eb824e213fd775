import pytest

from stemqd.config import Config, config_hash, config_to_toml, load_config
from stemqd.errors import ConfigError


def test_defaults_from_methods():
    c = Config()
    assert c.material.name == "CsPbBr3" and c.material.zone_axis == (0, 0, 1)
    assert c.acquisition.voltage_kv == 300 and c.acquisition.convergence_mrad == 18


def test_file_and_overrides_round_trip(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[background]\nradius_lattice = 2.5\n[material]\nzone_axis = [1, 1, 0]\n')
    c = load_config(p, ["columns.method=lmfit", "acquisition.pixel_size_A=0.2"])
    assert c.background.radius_lattice == 2.5 and c.material.zone_axis == (1, 1, 0)
    assert c.columns.method == "lmfit" and c.acquisition.pixel_size_A == 0.2
    p2 = tmp_path / "round.toml"
    p2.write_text(config_to_toml(c))
    assert load_config(p2) == c
    assert config_hash(load_config(p2)) == config_hash(c) != config_hash(Config())


@pytest.mark.parametrize("override", ["nosuch.key=1", "columns.max_iterations=abc",
                                      "columns", "align.enabled=maybe"])
def test_bad_overrides_are_clear(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])
