"""The typed configuration of the whole pipeline.

One frozen dataclass tree whose defaults are the study's methods (``docs/methods.md`` goes
through the keys and their defaults). It loads from TOML, takes dotted ``key=value``
overrides, prints as TOML and hashes into every output so that a result can always be traced
to the exact parameters that produced it.

Units are part of every field name: ``_A`` is Å, ``_mrad`` milliradian, ``_kv`` kilovolt,
``_px`` pixel, ``_inv_A`` Å⁻¹, ``_eV`` electronvolt, ``_mm`` millimetre.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .columns.find import DETECTION_SIGNIFICANCE
from .columns.joint import SMOOTH_ROUNDS, SMOOTH_ROUNDS_MAX
from .errors import ConfigError


@dataclass(frozen=True)
class MaterialConfig:
    """The crystal and its projection.

    Parameters
    ----------
    name : str or None
        Built-in material name (``CsPbBr3``, ``SrTiO3``, ...) or a path to a CIF file; None
        (``"none"`` in TOML and ``--set``) for an image of unknown structure: no projected
        cell, no sublattices, no ratio, the column spacing measured from the image.
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

    name: str | None = "CsPbBr3"
    zone_axis: tuple[int, int, int] = (0, 0, 1)
    lattice_constant_A: float | None = field(default=None, metadata={"min": 0.5, "max": 100.0})
    ratio: str = "Cs:PbBr"
    contrast_exponent: float = field(default=1.7, metadata={"min": 0.1, "max": 4.0})

    def __post_init__(self):
        if not any(self.zone_axis):
            raise ConfigError(
                f"config key 'material.zone_axis': {list(self.zone_axis)} is not a direction; "
                "give a nonzero [uvw], for example 0 0 1"
            )


@dataclass(frozen=True)
class AcquisitionConfig:
    """Microscope settings used where the file metadata lacks them (``docs/methods.md``, section 1).

    ``vacuum_level`` and ``beam_level`` (image intensity units, both or neither) put the
    image on the scale of the incident beam, I_norm = (I - vacuum) / (beam - vacuum), as
    the simulated cross-sections are: columns.csv then carries ``volume_norm`` (Å², the
    fraction of the incident beam scattered onto the detector by the column), the volume
    of the normalised image times the pixel area. The vacuum level is the detector's
    reading with the beam off the sample (or blanked), the beam level its reading in the
    detector scan with the beam on the detector.
    """

    voltage_kv: float = field(default=300.0, metadata={"min": 1.0, "max": 3000.0})
    convergence_mrad: float = field(default=18.0, metadata={"min": 0.1, "max": 200.0})
    pixel_size_A: float | None = field(default=None, metadata={"min": 1e-4, "max": 1000.0})
    vacuum_level: float | None = None
    beam_level: float | None = None

    def __post_init__(self):
        vacuum, beam = self.vacuum_level, self.beam_level
        if (vacuum is None) != (beam is None):
            raise ConfigError(
                "config keys 'acquisition.vacuum_level' and 'acquisition.beam_level' go "
                "together: set both (normalised intensities) or neither"
            )
        if vacuum is not None and not (math.isfinite(vacuum) and math.isfinite(beam)):
            raise ConfigError("config keys 'acquisition.vacuum_level', 'beam_level': not finite")
        if vacuum is not None and beam <= vacuum:
            raise ConfigError(
                f"config key 'acquisition.beam_level': {beam!r} must exceed "
                f"'acquisition.vacuum_level' ({vacuum!r}), the detector's reading in vacuum"
            )


@dataclass(frozen=True)
class AlignConfig:
    """Rigid frame registration (phase cross-correlation)."""

    enabled: bool = True
    upsample_factor: int = field(default=100, metadata={"min": 1, "max": 10000})
    reference_iterations: int = field(default=2, metadata={"min": 0, "max": 100})


@dataclass(frozen=True)
class BackgroundConfig:
    """Morphological background removal (``docs/methods.md``, section 3: background).

    ``radius_lattice`` is the disk radius in lattice constants; ``radius_px`` overrides it.
    The smoothing Gaussian has sigma equal to the radius.
    """

    enabled: bool = True
    radius_lattice: float = field(default=3.0, metadata={"min": 0.1, "max": 1000.0})
    radius_px: float | None = field(default=None, metadata={"min": 0.5})


@dataclass(frozen=True)
class DenoiseConfig:
    """Du (2015) nonlinear filter (Ultramicroscopy 151, 62).

    ``cutoff_inv_A`` is the sigma of the Gaussian low-pass in Å⁻¹; None means 0.6 x Nyquist,
    the setting of the public ports (sigma_k = 0.3 N frequency pixels).
    """

    enabled: bool = True
    cutoff_inv_A: float | None = field(default=None, metadata={"min": 1e-3, "max": 100.0})
    cycles: int = field(default=10, metadata={"min": 1, "max": 1000})
    delta_percent: float = field(default=10.0, metadata={"min": 1e-3, "max": 100.0})
    anscombe: bool = False


@dataclass(frozen=True)
class ProbeConfig:
    """Probe beyond voltage and convergence angle (conventions in :mod:`stemqd.preprocess.probe`).

    ``source_size_A`` is a FWHM (state: 0.25 Å FWHM gives a 0.602 Å probe at 300 kV,
    18 mrad). The focal spread sigma is ``cc_mm * energy_spread_eV / E`` with the energy
    spread taken as FWHM and converted to sigma.
    """

    defocus_A: float = field(default=0.0, metadata={"min": -1e5, "max": 1e5})
    cs_mm: float = field(default=0.0, metadata={"min": -100.0, "max": 100.0})
    source_size_A: float = field(default=0.0, metadata={"min": 0.0, "max": 100.0})
    energy_spread_eV: float = field(default=0.0, metadata={"min": 0.0, "max": 100.0})
    cc_mm: float = field(default=1.6, metadata={"min": 0.0, "max": 100.0})


@dataclass(frozen=True)
class DeconvolveConfig:
    """Blind accelerated damped Richardson-Lucy, as MATLAB's deconvblind.

    Fish et al., JOSA A 12, 58 (1995); Biggs & Andrews, Appl. Opt. 36, 1766 (1997).
    """

    enabled: bool = True
    blind: bool = True
    iterations: int = field(default=10, metadata={"min": 1, "max": 10000})
    damping: float = field(default=0.0, metadata={"min": 0.0})
    readout: float = field(default=0.0, metadata={"min": 0.0})
    psf_half_width_A: float = field(default=1.5, metadata={"min": 0.1, "max": 100.0})
    pad_px: int | None = field(default=None, metadata={"min": 0})


@dataclass(frozen=True)
class ColumnsConfig:
    """Column finding and refinement.

    Distances are fractions of the nearest-neighbour column distance of the projected cell
    (or, without a material, of the spacing measured from the image).

    Parameters
    ----------
    model : {"round", "gaussian7", "window7"}
        ``round`` (default): all columns fitted jointly as round Gaussians with one width
        per column type, StatSTEM's model; it holds when columns overlap (sigma / nn up to
        0.45) and reproduces StatSTEM's volumes on its own PtIr example to 0.2 %.
        ``gaussian7``: the same joint fit with the study's rotated elliptical Gaussian,
        its widths and rotation shared per type (an astigmatic probe). ``window7``: the
        study's per-column 7-parameter fit in a disk with a free offset and the neighbours
        subtracted (``method`` applies); it collapses once sigma / nn >= 0.3.
    background : {"local", "smooth", "spline", "constant"}
        Background of the joint models. ``local`` (default): positions and width are
        fitted over a smooth background (the residual with the columns removed, smoothed
        over 1.5 spacings, re-estimated until the width settles), then one offset per block
        of columns is solved at the fitted positions and width: a column's own Voronoi cell
        while the spacing exceeds 6 column widths, else square blocks 6 widths across (on
        its own small cell a wide Gaussian is nearly flat and its height trades against the
        offset). ``smooth``: the smooth background and a constant only. ``constant``: one
        constant (StatSTEM's). Measured on synthetic CsPbBr3 (mean of 3 seeds): a crystal
        filling the field at sigma / nn 0.15, 500 counts: local +0.3 %, smooth +4 %; dots
        over carbon (``benchmarks/bench_chain.py``) at sigma / nn 0.1 and 20 counts local
        -3.6 %, smooth -5.7 %; at 0.3 and 100 counts -0.2 % and -0.4 %; at 0.45 and 20
        counts -22 % and -7.7 %; at 0.45 and 100 counts -1.2 % and +0.1 %: where columns
        overlap strongly at low dose, ``smooth`` is the better choice. On the real PtIr
        example (vacuum; ``benchmarks/bench_statstem.py``) the volumes' scatter against
        StatSTEM's is 0.2 % (constant), 1.2 % (smooth), 3.7 % (local). ``spline``: a
        bilinear spline background fitted together with the columns; on a dot over a
        strongly varying carbon support (level 0.4 of a Pb-Br peak, 100 counts, sigma
        0.5-0.9 Å) its volumes are within 1 % (A, BX) and 6 % (Br) against +18-31 % and up
        to +270 % for ``local`` (ratio through the default chain within 0.7 % against up to
        +12 % / -8.5 %), but it separates the support from the columns only by the columns'
        Gaussian shape: on the real PtIr image it takes their broader tails (volumes 0.43 of
        StatSTEM's, ``benchmarks/bench_statstem.py``). Use it where the columns are close to
        Gaussian (simulated images, deconvolved data), not as a default for raw images.
    background_level : float or None
        With ``background = "constant"``: hold the constant at this level (image units,
        of the fitted image) instead of fitting it, as StatSTEM fits a specimen on no
        support whose vacuum level is known. None (default): fitted. On the real PtIr
        example (vacuum 0) a fitted constant settles at 1.3e-4 (0.1 % of its brightest pixel), the
        volumes at 0.988 of StatSTEM's, held at 0 at 0.992.
    background_rounds : int
        ``local`` and ``smooth``: at most this many rounds of background and shape (default
        3). The default stops early, which keeps the columns' tails in the columns where
        there is no support; raise it (20) for a dot that thins towards its edges over a
        support: on such a synthetic dot 3 rounds leave the width 2.0x the probe and the
        volumes 3-6x high, 20 give them within 1.3 % and 2.6 %, at the cost of volumes 4.5 %
        lower in vacuum (the PtIr example, against StatSTEM's). Details under
        ``smooth_rounds`` in :func:`stemqd.columns.joint.fit_columns_jointly`.
    background_rounds_max : int
        ``local`` and ``smooth``: where the first ``background_rounds`` rounds end unsettled
        and the width the central columns give alone differs from the image's by more
        than 1.25x (either way), the rounds go on, up to this many in all (default 20).
        The early stop is kept where the centre agrees (the sample dots, SrTiO3, MoS2) and
        on images of at most 160 columns (the PtIr example); the dot that thins towards its
        edges then gets the right width without a setting. Set it to
        ``background_rounds`` to never go on.
    width_per_type : bool
        Joint models: one width (shape) per column type instead of one for all columns.
        Off by default: a weak column type (O, Br) on a varying background takes a wide
        width that absorbs the background (on the SrTiO3 dot above the O width runs to
        2.8x the probe and biases the ratio by +13 %); in ADF the probe sets the width.
    fit_on : {"average", "background_removed", "final"}
        Image whose intensities are fitted; columns are always found on the final
        (restored) image. ``average`` (default) is the aligned frame average, the data as
        recorded: the local background of the joint fit takes the support's place, and no
        nonlinear step (denoising, deconvolution) or background subtraction, which eats
        the tails of wide columns, touches the intensities. On CsPbBr3 dots over carbon
        (``benchmarks/bench_chain.py``) the subtracted background costs 3 % of the ratio at
        sigma / nn = 0.45; the deconvolved image is biased where columns overlap.
    complete_lattice : bool
        Joint models with a material: add the lattice sites that no column was found at
        (inside the dot) as seeds and fit again. Weak columns beside bright ones make no
        local maximum once columns overlap; left out, their intensity goes to their
        neighbours (the CsPbBr3 ratio 7 % low at sigma / nn = 0.3).
    spacing_A : float or None
        Nearest-neighbour column distance, Å; None: from the projected cell, or measured
        from the image's autocorrelation without a material.
    errors : {"robust", "classical"}
        Sandwich standard errors (right under Poisson noise) or (JᵀJ)⁻¹ s² (as lmfit
        reports; ~15 % too small under Poisson noise).
    method : {"fast", "lmfit"}
        Solver of ``window7``.
    detection : {"relative", "significance"}
        Which local maxima become seeds (:func:`stemqd.columns.find_columns`).
        ``relative`` (default): above ``threshold_rel`` of the brightest. ``significance``:
        height above the local background (a disk of one spacing) above ``significance``
        times the local noise measured from the image. On the real PtIr example
        (``benchmarks/bench_statstem.py``) ``significance`` finds 0.978 of StatSTEM's
        columns against 0.941; on CsPbBr3 dots over carbon it keeps 0-1 noise maxima where
        ``relative`` keeps 300-400, but at 20-50 counts and sigma 0.8 Å it misses up to 40 %
        of the weak Br columns between Pb-Br columns (``complete_lattice`` adds them back).
        Its noise model is white pixel noise, so each maximum of the final image is judged
        on the fitted image (``fit_on``; by default the frames' average): on a 10-frame dot
        without support, 0 noise seeds where the denoised and deconvolved final image gives
        27-488. A textured carbon support is real structure, significant against the shot
        noise: 13-45 seeds on it in a 256 x 256 px field, where ``relative`` on the
        background-removed final image gives 0 (``tests/columns/test_find.py``).
    significance : float
        ``significance``: the minimum height in noise standard deviations of the smoothed
        image (about 1 in 7000 maxima of pure noise reaches 7).
    """

    model: Literal["round", "gaussian7", "window7"] = "round"
    background: Literal["local", "smooth", "spline", "constant"] = "local"
    width_per_type: bool = False
    fit_on: Literal["average", "background_removed", "final"] = "average"
    complete_lattice: bool = True
    spacing_A: float | None = field(default=None, metadata={"min": 0.1})
    min_separation_nn: float = field(default=0.6, metadata={"min": 0.05, "max": 2.0})
    threshold_rel: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    detection: Literal["relative", "significance"] = "relative"
    significance: float = field(default=DETECTION_SIGNIFICANCE, metadata={"min": 0.0})
    com_radius_nn: float = field(default=0.3, metadata={"min": 0.05, "max": 2.0})
    fit_radius_nn: float = field(default=0.5, metadata={"min": 0.1, "max": 5.0})
    method: Literal["fast", "lmfit"] = "fast"
    max_iterations: int = field(default=50, metadata={"min": 1})
    neighbour_iterations: int = field(default=20, metadata={"min": 1})
    position_tolerance_px: float = field(default=1e-4, metadata={"min": 0.0})
    errors: Literal["robust", "classical"] = "robust"
    background_level: float | None = None
    background_rounds: int = field(default=SMOOTH_ROUNDS, metadata={"min": 1, "max": 100})
    background_rounds_max: int = field(default=SMOOTH_ROUNDS_MAX, metadata={"min": 1, "max": 100})

    def __post_init__(self):
        level = self.background_level
        joint_constant = self.background == "constant" and self.model != "window7"
        if level is not None and not (joint_constant and math.isfinite(level)):
            raise ConfigError(
                f"config key 'columns.background_level': {level!r} holds the constant "
                f"background of a joint fit; it needs a finite level, columns.background = "
                f"'constant' (not {self.background!r}) and columns.model 'round' or "
                f"'gaussian7' (not {self.model!r})"
            )


@dataclass(frozen=True)
class DotConfig:
    """Segmentation of the dot from its support.

    ``mode``: ``dot`` segments a nanocrystal from its support; ``none`` uses every column
    away from the image border (a crystal that fills the field); ``auto`` (default) takes
    ``none`` when the found columns cover the field and ``dot`` otherwise.
    """

    mode: Literal["auto", "dot", "none"] = "auto"
    smoothing_lattice: float = field(default=1.0, metadata={"min": 0.05})
    edge_margin_lattice: float = field(default=0.5, metadata={"min": 0.0})


@dataclass(frozen=True)
class AnalysisConfig:
    """Statistics.

    ``intensity`` is the per-column measure used for ratios: ``volume`` (Gaussian volume,
    2 pi A sigma_x sigma_y, the default), ``cross_section`` (Voronoi-cell integral) or
    ``amplitude``.
    """

    intensity: Literal["volume", "cross_section", "amplitude"] = "volume"
    bootstrap: int = field(default=2000, metadata={"min": 0})
    permutations: int = field(default=10000, metadata={"min": 0})
    seed: int = field(default=0, metadata={"min": 0})


@dataclass(frozen=True)
class CountingConfig:
    """Atom counting per image in ``stemqd process`` (``stemqd count`` pools images).

    With ``enabled``, every column type's counted columns (those the statistics use) get
    ``count`` and ``count_probability`` from a Gaussian mixture of their volumes
    (:func:`stemqd.analysis.counting.count_atoms`: 1..``components_max`` components,
    selected with ``criterion``, its first local minimum with ``first_local_minimum``);
    with ``library`` (a thickness-series CSV) and normalised volumes (``acquisition.
    vacuum_level`` and ``beam_level``) also ``count_library`` with its range. A type that
    cannot be counted (too few columns, no criterion minimum) is a warning.
    """

    enabled: bool = False
    components_max: int = field(default=20, metadata={"min": 1})
    criterion: Literal["icl", "aic", "bic"] = "icl"
    first_local_minimum: bool = False
    library: str | None = None


@dataclass(frozen=True)
class QualityConfig:
    """The quality gate: a stack whose found columns do not form the projected lattice (or,
    without a material, are not significant peaks) fails instead of reporting a result.

    The measures and how the thresholds were measured are in :mod:`stemqd.columns.quality`
    and ``benchmarks/bench_quality.py``. ``gate = false`` records the measures in
    summary.json without failing the stack.
    """

    gate: bool = True
    min_on_site_intensity_fraction: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    max_rms_misfit_nn: float = field(default=0.15, metadata={"min": 0.0})
    min_cells: int = field(default=4, metadata={"min": 1})
    min_significant_fraction: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    min_columns: int = field(default=4, metadata={"min": 1})
    min_width_px: float = field(default=0.6, metadata={"min": 0.0})


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
    quality: QualityConfig = field(default_factory=QualityConfig)
    counting: CountingConfig = field(default_factory=CountingConfig)
    reference_series: str | None = None
    preset: Literal["default", "study"] = "default"

    def __post_init__(self):
        # The ranges are checked here, not only when a file or --set is read, so that a
        # Config built or replaced in Python is held to the same limits.
        for section in fields(self):
            value = getattr(self, section.name)
            if dataclasses.is_dataclass(value):
                for f in fields(value):
                    _check_range(getattr(value, f.name), f, f"{section.name}.{f.name}")


#: Named starting points under the config file and ``--set`` (``preset = "study"`` in the
#: file, ``--preset study`` on the command line). ``default`` is stemqd's measurement:
#: columns found on the restored image and completed from the lattice, intensities fitted
#: jointly (round Gaussians, one width, a local offset per column) on the aligned average. ``study`` is the study's exact chain: the
#: per-column 7-parameter fit on the blind-deconvolved image, inside the segmented dot.
#: The ratio bias each preset was measured to have on synthetic dots is in
#: ``chain_bias.json`` (written by ``benchmarks/bench_chain.py --write``) and is copied
#: into every summary.json.
PRESETS = {
    "default": {},
    "study": {
        "columns": {"model": "window7", "fit_on": "final", "complete_lattice": False},
        "dot": {"mode": "dot"},
    },
}

_BIAS_FILE = Path(__file__).with_name("chain_bias.json")


def preset_bias(name: str) -> dict | None:
    """The A : BX ratio bias measured for a preset on synthetic CsPbBr3 dots (over width
    and dose), as written by ``benchmarks/bench_chain.py --write``; None if not measured."""
    if not _BIAS_FILE.is_file():
        return None
    table = json.loads(_BIAS_FILE.read_text())
    entry = table.get("presets", {}).get(name)
    if entry is None:
        return None
    return {"measured_by": table.get("measured_by"), "grid": table.get("grid"), **entry}


#: How an unset value (Python None, JSON null) is written in TOML, which has no null; on
#: reading, "none" and "null" (any case) are accepted back.
TOML_NONE = "none"


def _is_none(value):
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _coerce(value, hint, key):
    """Convert a TOML or command-line value to the field's type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if _is_none(value):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"config key {key!r}: {value!r} is not allowed; choose one of "
                f"{', '.join(map(repr, args))}"
            )
        return value
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
            if hint is int and isinstance(value, str):
                return int(value.strip())
            if hint is not str and isinstance(value, bool):
                raise ValueError(value)
            return hint(value)
        if origin is tuple:
            if isinstance(value, str):
                value = [
                    v for v in value.replace("[", "").replace("]", "").replace(",", " ").split()
                ]
                if len(value) == 1 and len(args) == 3 and len(value[0]) == 3:
                    value = list(value[0])
            return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"config key {key!r}: cannot read {value!r} as {getattr(hint, '__name__', hint)}"
        ) from exc
    return value


def _check_range(value, f, key):
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key!r}: {value!r} is not a finite number")
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if value is None or (low is None and high is None):
        return
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = " and ".join(
            t for t in (low is not None and f">= {low}", high is not None and f"<= {high}") if t
        )
        raise ConfigError(f"config key {key!r}: {value!r} is out of range; it must be {allowed}")


def _build(cls, data: dict, prefix: str = ""):
    names = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
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
            kwargs[name] = _coerce(value, hints[name], prefix + name)
    return cls(**kwargs)


def _merge(base: dict, top: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(data: dict) -> Config:
    """Build a :class:`Config` from a nested dict (as read from TOML).

    The dict's ``preset`` (default ``"default"``, see :data:`PRESETS`) supplies the values
    the dict does not set.
    """
    name = data.get("preset", "default")
    if name not in PRESETS:
        raise ConfigError(
            f"config key 'preset': {name!r} is not allowed; choose one of "
            f"{', '.join(map(repr, PRESETS))}"
        )
    return _build(Config, _merge(PRESETS[name], data))


def config_to_dict(config: Config, *, unset=TOML_NONE) -> dict:
    """Nested dict of a config.

    Parameters
    ----------
    config : Config
    unset : object
        How an unset (None) value is written: :data:`TOML_NONE` (the default; TOML has no
        null) or None for JSON outputs, where it becomes ``null``. Both load back.
    """

    def clean(obj):
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, tuple):
            return list(obj)
        return unset if obj is None else obj

    return clean(dataclasses.asdict(config))


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, preset: str | None = None
) -> Config:
    """The effective config: defaults, the preset, a TOML file, then ``key=value`` overrides.

    Parameters
    ----------
    path : str or Path, optional
        TOML file with sections named after the :class:`Config` fields.
    overrides : list of str, optional
        Dotted assignments such as ``"background.radius_lattice=2.5"``.
    preset : {"default", "study"}, optional
        Named starting point (:data:`PRESETS`); default: the file's ``preset`` key, else
        ``"default"``. The file and the overrides still apply on top of it.
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
    if preset is not None:
        data["preset"] = preset
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
    "CountingConfig",
    "QualityConfig",
    "PRESETS",
    "preset_bias",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "config_hash",
    "replace",
]
