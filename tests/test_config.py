import pytest

from stemqd.config import Config, config_hash, config_to_toml, load_config
from stemqd.errors import ConfigError


def test_defaults_from_methods():
    c = Config()
    assert c.material.name == "CsPbBr3" and c.material.zone_axis == (0, 0, 1)
    assert c.acquisition.voltage_kv == 300 and c.acquisition.convergence_mrad == 18


def test_file_and_overrides_round_trip(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[background]\nradius_lattice = 2.5\n[material]\nzone_axis = [1, 1, 0]\n")
    c = load_config(p, ["columns.method=lmfit", "acquisition.pixel_size_A=0.2"])
    assert c.background.radius_lattice == 2.5 and c.material.zone_axis == (1, 1, 0)
    assert c.columns.method == "lmfit" and c.acquisition.pixel_size_A == 0.2
    p2 = tmp_path / "round.toml"
    p2.write_text(config_to_toml(c))
    assert load_config(p2) == c
    assert config_hash(load_config(p2)) == config_hash(c) != config_hash(Config())


@pytest.mark.parametrize(
    "override", ["nosuch.key=1", "columns.max_iterations=abc", "columns", "align.enabled=maybe"]
)
def test_bad_overrides_are_clear(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_presets_start_below_the_file_and_the_overrides(tmp_path):
    from stemqd.config import PRESETS

    study = load_config(preset="study")
    assert study.preset == "study"
    assert (study.columns.model, study.columns.fit_on, study.dot.mode) == (
        "window7",
        "final",
        "dot",
    )
    assert not study.columns.complete_lattice
    # a file's preset key, and overrides on top of the preset
    f = tmp_path / "c.toml"
    f.write_text('preset = "study"\n[columns]\nfit_on = "average"\n')
    c = load_config(f, ["dot.mode=auto"])
    assert (c.preset, c.columns.model, c.columns.fit_on, c.dot.mode) == (
        "study",
        "window7",
        "average",
        "auto",
    )
    # the saved config of a run reproduces it
    from stemqd.config import config_from_dict, config_to_dict

    assert config_from_dict(config_to_dict(c)) == c
    assert set(PRESETS) == {"default", "study"}
    with pytest.raises(ConfigError, match="'preset'.*'default', 'study'"):
        load_config(preset="fast")


def test_unset_values_are_null_in_json_and_none_in_toml():
    import json

    from stemqd.config import Config, config_from_dict, config_hash, config_to_dict, config_to_toml

    config = Config()
    as_json = json.loads(json.dumps(config_to_dict(config, unset=None)))
    assert as_json["material"]["lattice_constant_A"] is None
    assert 'lattice_constant_A = "none"' in config_to_toml(config)
    assert config_from_dict(as_json) == config
    # The hash is taken of the TOML form, so it does not depend on the output's spelling.
    assert config_hash(config_from_dict(as_json)) == config_hash(config)


def test_background_level_needs_a_joint_constant_background():
    held = ["columns.background=constant", "columns.background_level=0"]
    assert load_config(overrides=held).columns.background_level == 0.0
    with pytest.raises(ConfigError, match="columns.background_level.*'local'"):
        load_config(overrides=["columns.background_level=0"])
    with pytest.raises(ConfigError, match="'window7'"):
        load_config(overrides=[*held, "columns.model=window7"])
    assert load_config().columns.background_level is None


# The values an audit found loading without error (stop 25), and the limits they break.
@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("align.upsample_factor=-5", ">= 1"),
        ("deconvolve.iterations=-3", ">= 1"),
        ("denoise.cycles=0", ">= 1"),
        ("probe.cc_mm=-1", ">= 0.0"),
        ("material.lattice_constant_A=-2", ">= 0.5"),
        ("columns.threshold_rel=nan", "not a finite number"),
        ("acquisition.voltage_kv=inf", "not a finite number"),
        ("probe.defocus_A=-inf", "not a finite number"),
        ("material.zone_axis=000", "not a direction"),
        ("background.radius_px=0", ">= 0.5"),
        ("denoise.delta_percent=0", ">= 0.001"),
    ],
)
def test_out_of_range_values_are_refused_with_the_limit(override, says):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert override.split("=")[0] in str(err.value) and says in str(err.value)


def test_a_config_built_in_python_is_held_to_the_same_ranges():
    from dataclasses import replace

    from stemqd.config import ColumnsConfig, ProbeConfig

    with pytest.raises(ConfigError, match="columns.threshold_rel"):
        Config(columns=ColumnsConfig(threshold_rel=float("nan")))
    with pytest.raises(ConfigError, match="probe.cc_mm"):
        replace(Config(), probe=ProbeConfig(cc_mm=-1.0))
    assert replace(Config(), probe=ProbeConfig(cc_mm=1.2)).probe.cc_mm == 1.2


def test_every_numeric_field_has_a_range():
    """A new numeric field must say its limits (``metadata={"min": ..., "max": ...}``); the
    acquisition levels, the held background level and the zone axis are checked by their
    own sections."""
    import dataclasses
    import typing

    checked_elsewhere = {"vacuum_level", "beam_level", "background_level", "zone_axis"}
    missing = []
    for section in dataclasses.fields(Config):
        cls = type(getattr(Config(), section.name))
        if not dataclasses.is_dataclass(cls):
            continue
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[f.name])) or {hints[f.name]}
            numeric = kinds & {int, float}
            if numeric and f.name not in checked_elsewhere and "min" not in f.metadata:
                missing.append(f"{section.name}.{f.name}")
    assert missing == []
