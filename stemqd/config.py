"""The typed configuration of the whole pipeline.

One frozen dataclass tree whose defaults are the study's methods (``shared/docs/methods.md``).
It loads from TOML, takes dotted ``key=value`` overrides, prints as TOML and hashes into every
output so that a result can always be traced to the exact parameters that produced it.

Units are part of every field name: ``_A`` is Å, ``_mrad`` milliradian, ``_kv`` kilovolt,
``_px`` pixel, ``_inv_A`` Å⁻¹, ``_eV`` electronvolt, ``_mm`` millimetre.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import ConfigError


@dataclass(frozen=True)
class MaterialConfig:
    """The crystal and its projection.

    Parameters
    ----------
    name : str
        Built-in material name (``CsPbBr3``, ``SrTiO3``, ...) or a path to a CIF file.
    zone_axis : tuple of int
        Beam direction [uvw].
    lattice_constant_A : float or None
        Overrides the structure's cubic lattice constant (Å); None keeps the structure's.
    ratio : str
        The reported intensity ratio, numerator:denominator by column composition
        (``Cs:PbBr`` for CsPbBr3, ``Ti:SrO`` for SrTiO3 [110]).
    contrast_exponent : float
        n in the expected ADF contrast sum(Z**n) per unit length along the beam.
    """

    name: str = "CsPbBr3"
    zone_axis: tuple[int, int, int] = (0, 0, 1)
    lattice_constant_A: float | None = None
    ratio: str = "Cs:PbBr"
    contrast_exponent: float = 1.7


@dataclass(frozen=True)
class AcquisitionConfig:
    """Microscope settings used where the file metadata lacks them (methods.md §1)."""

    voltage_kv: float = 300.0
    convergence_mrad: float = 18.0
    pixel_size_A: float | None = None


@dataclass(frozen=True)
class AlignConfig:
    """Rigid frame registration (phase cross-correlation)."""

    enabled: bool = True
    upsample_factor: int = 100
    reference_iterations: int = 2


@dataclass(frozen=True)
class BackgroundConfig:
    """Morphological background removal (methods.md §2.1).

    ``radius_lattice`` is the disk radius in lattice constants; ``radius_px`` overrides it.
    The smoothing Gaussian has sigma equal to the radius.
    """

    enabled: bool = True
    radius_lattice: float = 3.0
    radius_px: float | None = None


@dataclass(frozen=True)
class DenoiseConfig:
    """Du (2015) nonlinear filter (algorithms.md §A).

    ``cutoff_inv_A`` is the sigma of the Gaussian low-pass in Å⁻¹; None means 0.6 x Nyquist,
    the setting of the public ports (sigma_k = 0.3 N frequency pixels).
    """

    enabled: bool = True
    cutoff_inv_A: float | None = None
    cycles: int = 10
    delta_percent: float = 10.0
    anscombe: bool = False


@dataclass(frozen=True)
class ProbeConfig:
    """Probe beyond voltage and convergence angle (algorithms.md §C).

    ``source_size_A`` is a FWHM (state: 0.25 Å FWHM gives a 0.602 Å probe at 300 kV,
    18 mrad). The focal spread sigma is ``cc_mm * energy_spread_eV / E`` with the energy
    spread taken as FWHM and converted to sigma.
    """

    defocus_A: float = 0.0
    cs_mm: float = 0.0
    source_size_A: float = 0.0
    energy_spread_eV: float = 0.0
    cc_mm: float = 1.6


@dataclass(frozen=True)
class DeconvolveConfig:
    """Blind accelerated damped Richardson-Lucy, as MATLAB's deconvblind (algorithms.md §B)."""

    enabled: bool = True
    blind: bool = True
    iterations: int = 10
    damping: float = 0.0
    readout: float = 0.0
    psf_half_width_A: float = 1.5
    pad_px: int | None = None


@dataclass(frozen=True)
class ColumnsConfig:
    """Column finding and 7-parameter Gaussian refinement.

    Distances are fractions of the nearest-neighbour column distance of the projected cell.
    ``errors`` is ``robust`` (sandwich standard errors, right under Poisson noise) or
    ``classical`` ((JᵀJ)⁻¹ s², as lmfit reports; ~15 % too small under Poisson noise).
    """

    min_separation_nn: float = 0.6
    threshold_rel: float = 0.1
    com_radius_nn: float = 0.3
    fit_radius_nn: float = 0.5
    method: str = "fast"
    max_iterations: int = 50
    neighbour_iterations: int = 20
    position_tolerance_px: float = 1e-4
    errors: str = "robust"


@dataclass(frozen=True)
class DotConfig:
    """Segmentation of the dot from its support."""

    smoothing_lattice: float = 1.0
    edge_margin_lattice: float = 0.5


@dataclass(frozen=True)
class AnalysisConfig:
    """Statistics.

    ``intensity`` is the per-column measure used for ratios: ``volume`` (Gaussian volume,
    2 pi A sigma_x sigma_y, the default), ``cross_section`` (Voronoi-cell integral) or
    ``amplitude``.
    """

    intensity: str = "volume"
    bootstrap: int = 2000
    permutations: int = 10000
    seed: int = 0


@dataclass(frozen=True)
class Config:
    """Every parameter of stemqd, grouped by pipeline stage."""

    material: MaterialConfig = field(default_factory=MaterialConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    deconvolve: DeconvolveConfig = field(default_factory=DeconvolveConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    dot: DotConfig = field(default_factory=DotConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    reference_series: str | None = None


def _coerce(value, annotation, key):
    """Convert a TOML or command-line value to the field's annotated type."""
    hint = annotation if not isinstance(annotation, str) else eval(annotation, vars(typing) | {})
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint in (int, float, str):
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return hint(value)
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("[", "").replace("]", "").replace(",", " ").split()]
                if len(value) == 1 and len(args) == 3 and len(value[0]) == 3:
                    value = list(value[0])
            return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {key!r}: cannot read {value!r} as {hint}") from exc
    return value


def _build(cls, data: dict, prefix: str = ""):
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(prefix + k for k in unknown)}; "
            f"valid keys under {prefix or 'top level'}: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        f = names[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix + name!r} is a section, not a value")
            kwargs[name] = _build(type(default), value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, f.type, prefix + name)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Build a :class:`Config` from a nested dict (as read from TOML)."""
    return _build(Config, data)


def config_to_dict(config: Config) -> dict:
    """Nested dict of a config; None values are kept as the string ``"none"`` for TOML."""

    def clean(obj):
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, tuple):
            return list(obj)
        return "none" if obj is None else obj

    return clean(dataclasses.asdict(config))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The effective config: defaults, then a TOML file, then ``key=value`` overrides.

    Parameters
    ----------
    path : str or Path, optional
        TOML file with sections named after the :class:`Config` fields.
    overrides : list of str, optional
        Dotted assignments such as ``"background.radius_lattice=2.5"``.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. columns.method=lmfit")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a section")
        node[parts[-1]] = value.strip()
    return config_from_dict(data)


def config_to_toml(config: Config) -> str:
    """The config as TOML text (None written as ``"none"``)."""
    return tomli_w.dumps(config_to_dict(config))


def config_hash(config: Config) -> str:
    """SHA-256 of the canonical JSON form of the config (hex, first 16 characters)."""
    text = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = [
    "Config",
    "MaterialConfig",
    "AcquisitionConfig",
    "AlignConfig",
    "BackgroundConfig",
    "DenoiseConfig",
    "ProbeConfig",
    "DeconvolveConfig",
    "ColumnsConfig",
    "DotConfig",
    "AnalysisConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "config_hash",
    "replace",
]
