"""Parameters of a thickness series and the run-wide defaults, with their sources."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..columns.joint import BACKGROUNDS as JOINT_BACKGROUNDS
from ..columns.joint import MODELS as JOINT_MODELS
from ..errors import InputError
from ..materials import CSPBBR3_LATTICE_CONSTANT_A
from ..optics import FWHM_PER_SIGMA, focal_nodes, focal_spread_A, wavelength_A
from .scan import scan_indices
from .structure import oriented_cell

#: Default rms displacement per Cartesian direction, Å (U_iso = sigma²). Source: the project's
#: PBE AIMD of bulk CsPbBr3 at 300 K (CP2K, 2 x 2 x 2 cell, a = 6.00 Å, 1.32 ps production;
#: simulations/reference/cspbbr3_bulk_aimd/a6.00/phonon_sigmas.json, ``thermal_sigma_A``,
#: made by simulations/cp2k/phonon_sigmas.py), rounded to 0.01 Å: each atom's motion about
#: its mean position (block errors +- 0.02 Å). No citable CsPbBr3 refinement with
#: displacement parameters was reachable. The same run measured about the ideal cubic sites
#: (Cs 0.37, Pb 0.23, Br 0.56) counts its static octahedral tilts as disorder; the tilted
#: structure is outside the cubic model, and its effect on the series is in
#: simulations/reference/README.md ("Phonon sigmas"). Sensitivity: sigma x 1.25 changes the
#: ratio by -2 % (15 uc) to -6 % (30 uc) (fixed-seed trial runs).
DEFAULT_PHONON_SIGMAS_A = {"Cs": 0.23, "Pb": 0.18, "Br": 0.26}


def smooth_size(n: int, primes: tuple = (2, 3, 5, 7)) -> int:
    """Smallest integer >= n whose prime factors are all in ``primes`` (fast FFTs)."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in primes:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


#: Frozen-phonon standard error of the Cs : Pb/Br ratio required at 30 unit cells (issue 5).
TARGET_RATIO_SE = 0.005


#: Column models the series can be measured with (``columns.model`` of the pipeline).
FIT_MODELS = (*JOINT_MODELS, "window7")


#: Fewest configurations for which the frozen-phonon error is taken as an estimate (10
#: jackknife groups of one configuration per focal node).
MIN_CONFIGS_FOR_SE = 20


#: Default number of configurations of the full reference run. With the spread scan, 16
#: configurations (540² grid, seed 3) gave a 30 uc ratio SE of 0.0117 (jackknife), i.e. a
#: single-configuration equivalent s1 = 0.047, so N = (s1 / TARGET_RATIO_SE)² = 88. s1 is
#: itself uncertain by about +-20 % (16 configurations), so 128 are used: predicted SE
#: 0.0042 at 30 uc. (Without the spread scan s1 was 0.114 on the same grid and 0.088 on
#: 1024², needing 300-500 configurations.)
DEFAULT_NUM_CONFIGS = 128


#: Sampling factor of the phonon level of a two-level reference run (the admissible grid,
#: 180 points per cell, about 5x cheaper per configuration than the target grid) and the
#: number of grid-correction configurations run on both grids. The correction (target grid
#: minus phonon grid at the same displacements) is a smooth numerical effect (+0.0071 at
#: 30 uc, 0.004-0.010 over the series, in the sampling check) against a phonon scatter of
#: ~0.05 per configuration of the ratio itself, so a few configurations pin it down; its
#: own error is reported (``ratio_grid_correction_err``).
DEFAULT_PHONON_SAMPLING_FACTOR = 1.0


DEFAULT_CORRECTION_CONFIGS = 8


#: Configurations of ``--quick`` (one per focal node): a smoke run, not a reference.
QUICK_NUM_CONFIGS = 2


#: Potential-sampling factor of ``--quick``: the coarsest grid that still reaches the ADF
#: outer angle (about 3x cheaper than the reference grid, ratio ~0.007 low at 30 uc).
QUICK_SAMPLING_FACTOR = 1.0


#: Fields of :class:`SeriesParameters` applied after the multislice, to the averaged scans
#: (source blur, interpolation, fitter, discs) or naming where it ran: a re-analysis of
#: written scans may change them, and they are not part of the scans' identity.
MEASUREMENT_FIELDS = (
    "source_size_fwhm_A",
    "blur_sigma_A",
    "fit_pixel_A",
    "fit_tiles",
    "fit_model",
    "fit_background",
    "fit_radius_A",
    "disc_radius_A",
    "device",
    "ratio",
)


#: Structure fields of :class:`SeriesParameters` at their defaults (cubic CsPbBr3 [001]).
STRUCTURE_DEFAULTS = {
    "material": "CsPbBr3",
    "zone_axis": [0, 0, 1],
    "divisions": 1,
    "merge_tol_A": 0.1,
}


#: Smallest side of the periodic box, Å: the 3 x 3-cell CsPbBr3 box (17.61 Å) on which 4 x 4
#: and 5 x 5 boxes changed nothing (simulations/reference/README.md); ``cells`` defaults to
#: the fewest cells per side that reach it.
MIN_BOX_A = 3 * CSPBBR3_LATTICE_CONSTANT_A


def first_cell_vector_A(material: str) -> float:
    """Length of the first cell vector of a built-in structure or structure file, Å."""
    from ..columns.cell import load_structure

    atoms, _ = load_structure(material)
    return float(np.linalg.norm(atoms.cell.array[0]))


def _pair(values: tuple):
    """One number for equal (x, y) values, else the pair as a list."""
    return values[0] if values[0] == values[1] else list(values)


@dataclass(frozen=True)
class SeriesParameters:
    """Every physical and numerical input of a thickness series (units in the names).

    Attributes
    ----------
    lattice_constant_A : float or None
        Scale the structure so that its first cell vector has this length, Å (the cubic
        lattice constant a of a perovskite: CsPbBr3 5.87); None: the structure's own.
    thicknesses_uc : tuple of int
        Crystal thicknesses in thickness units (the repeat along the beam / ``divisions``:
        unit cells along [001] for a cubic perovskite; 2 to 30 in steps of 2).
    cells : int or None
        Lateral tiling of the periodic box, oriented cells per side; None: the fewest that
        make the box at least :data:`MIN_BOX_A` wide (3 for CsPbBr3 [001], for the probe
        tails).
    slices_per_cell : int
        Multislice slices per thickness unit along the beam (2: slices a/2 thick).
    energy_kV : float
        Beam energy, kV.
    semiangle_mrad : float
        Probe-forming aperture semi-angle, mrad.
    energy_spread_fwhm_eV : float
        Energy spread of the source, FWHM, eV.
    chromatic_aberration_mm : float
        Cc, mm. **Assumed** (typical of 300 kV objective lenses without Cc correction,
        1.2-1.7 mm); not given by the study.
    focal_nodes : int
        Gauss-Hermite nodes of the focal-spread average (1 = no focal spread).
    source_size_fwhm_A : float
        Effective source size, FWHM, Å.
    blur_sigma_A : float
        Extra Gaussian blur, standard deviation, Å.
    detector_inner_mrad, detector_outer_mrad : float
        ADF detector angles, mrad.
    phonon_sigmas_A : tuple of (str, float)
        rms displacement per Cartesian direction per element, Å (see
        :data:`DEFAULT_PHONON_SIGMAS_A` for their status).
    gpts : int or None
        Potential grid points per side; None: ``cells`` times the smallest 2-3-5-smooth
        number of points per cell with a sampling <= lambda / (3 theta_out)
        (``sampling_factor`` scales that limit).
    sampling_factor : float
        Multiplies the largest admissible sampling lambda / (3 theta_out). Default 0.5
        (360 points per cell, 0.0163 Å, 1080² for 3 x 3 cells), from the convergence check at
        a fixed seed (simulations/reference/convergence_sampling.csv): refining 180 -> 243
        -> 360 -> 486 points per cell (0.0326 -> 0.0242 -> 0.0163 -> 0.0121 Å) raised the
        30 uc ratio by 0.0037, 0.0071 and 0.0089, so the admissible grid (factor 1) is biased
        by more than the 0.005 target; 486 -> 648 points per cell moved it by 0.0004, and
        the default grid is 0.0015-0.0027 below the 648-point result from 4 uc on
        (convergence_sampling_limit.csv). ``--quick`` uses factor 1.
    scan_per_cell : int or None
        Probe positions per cell side; None: the fewest with a step <= lambda / (4 alpha).
    spread_scan : bool
        Take every wedge position of a configuration in a different cell of the box and a
        different one of the 8 p4mm images of the wedge (:func:`scan_positions`), so that one
        configuration averages over many column realisations instead of one. Unbiased (the
        phonon ensemble is invariant under lattice translations and the p4mm operations);
        it lowers the frozen-phonon error per configuration at no cost. False: the whole
        wedge in the centre cell (fixed-seed convergence checks use this).
    parametrization, projection : str
        abTEM potential parametrization and projection.
    fit_pixel_A : float
        Target pixel size of the interpolated image that is fitted, Å.
    fit_tiles : int
        Cells per side of the tiled image given to the column fitter.
    fit_model : {"round", "gaussian7", "window7"}
        Column model of the fitter (``columns.model`` of the pipeline, whose default it
        follows: a measured ratio is compared with a series fitted by the same model, see
        :func:`stemqd.analysis.thickness.thickness_from_ratio`). Series written before this
        parameter existed were fitted with ``window7``.
    fit_background : {"smooth", "local", "constant"}
        Background of the joint models (``columns.background``, whose default it follows).
    fit_radius_A : float or None
        ``window7``: radius of the fit disk, Å; None: half the shortest column distance
        (a / 4 for a cubic perovskite [001]: the X-BX and X-A distances are a / 2).
    disc_radius_A : float or None
        Radius of the integration disc, Å; None: half the shortest column distance (discs
        do not overlap).
    device : str
        "cpu" or "gpu" (abTEM's ``device``).
    material : str
        Built-in structure or a CIF (:func:`stemqd.columns.cell.load_structure`).
    zone_axis : tuple of int or str
        Beam direction [uvw] in the structure's cell.
    divisions : int
        Thickness units per repeat along the beam (2 when the repeat holds two
        pseudo-cubic cells, e.g. an orthorhombic perovskite along [010] or [101]).
    merge_tol_A : float
        Atoms whose projections along the beam are closer than this form one column, Å
        (about 0.6 for orthorhombic CsPbBr3 along [101] or [010], whose octahedral tilts
        split each cubic column by 0.4-0.6 Å: an image resolves them as one).
    ratio : str or None
        Column types of the ratio, ``"NUM:DEN"`` as :func:`stemqd.columns.cell.parse_ratio`
        reads it; None: the second-brightest over the brightest type (Cs : PbBr for
        CsPbBr3 [001]). Applied in the measurement only.

    The structure fields are resolved at construction (the box of
    :func:`stemqd.simulation.structure.oriented_cell`); every derived grid, scan and fit
    size follows the box, so cubic CsPbBr3 [001] gives the numbers of the reference.
    """

    lattice_constant_A: float | None = None
    thicknesses_uc: tuple = tuple(range(2, 31, 2))
    cells: int | None = None
    slices_per_cell: int = 2
    energy_kV: float = 300.0
    semiangle_mrad: float = 18.0
    energy_spread_fwhm_eV: float = 0.8
    chromatic_aberration_mm: float = 1.6
    focal_nodes: int = 2
    source_size_fwhm_A: float = 0.25
    blur_sigma_A: float = 0.3
    detector_inner_mrad: float = 35.0
    detector_outer_mrad: float = 190.0
    phonon_sigmas_A: tuple = tuple(sorted(DEFAULT_PHONON_SIGMAS_A.items()))
    gpts: int | None = None
    sampling_factor: float = 0.5
    scan_per_cell: int | None = None
    spread_scan: bool = True
    parametrization: str = "lobato"
    projection: str = "infinite"
    fit_pixel_A: float = 0.1
    fit_tiles: int = 3
    fit_model: str = "round"
    fit_background: str = "local"
    fit_radius_A: float | None = None
    disc_radius_A: float | None = None
    device: str = "cpu"
    material: str = "CsPbBr3"
    zone_axis: tuple = (0, 0, 1)
    divisions: int = 1
    merge_tol_A: float = 0.1
    ratio: str | None = None

    def __post_init__(self):
        t = tuple(int(v) for v in np.atleast_1d(self.thicknesses_uc))
        object.__setattr__(self, "thicknesses_uc", t)
        sig = self.phonon_sigmas_A
        if isinstance(sig, dict):
            sig = sig.items()
        object.__setattr__(
            self, "phonon_sigmas_A", tuple(sorted((str(k), float(v)) for k, v in sig))
        )
        object.__setattr__(self, "material", str(self.material))
        zone = self.zone_axis
        object.__setattr__(
            self, "zone_axis", tuple(int(v) for v in zone) if not isinstance(zone, str) else zone
        )
        if self.lattice_constant_A is None:
            object.__setattr__(self, "lattice_constant_A", first_cell_vector_A(self.material))
        if not self.lattice_constant_A > 0:
            raise InputError(f"lattice constant must be positive, got {self.lattice_constant_A}")
        if not self.merge_tol_A > 0:
            raise InputError(f"merge_tol_A must be positive, got {self.merge_tol_A}")
        if self.divisions < 1:
            raise InputError(f"divisions must be >= 1, got {self.divisions}")
        cell = self.oriented  # validates material and zone axis; zone_axis becomes (u, v, w)
        object.__setattr__(self, "zone_axis", tuple(cell.zone_axis))
        side = min(cell.size_A)
        if self.cells is None:
            object.__setattr__(self, "cells", max(1, math.ceil(MIN_BOX_A / side)))
        if not t or min(t) < 1 or any(b <= a for a, b in zip(t, t[1:])):
            raise InputError(f"thicknesses must be increasing positive cell counts, got {t}")
        if self.cells < 1 or self.cells * side < MIN_BOX_A:
            raise InputError(
                f"the box needs at least {MIN_BOX_A:.2f} Å per side for the probe tails: "
                f"{self.cells} x {side:.3f} Å is too small (cells >= "
                f"{math.ceil(MIN_BOX_A / side)})"
            )
        if self.slices_per_cell < 1 or self.focal_nodes < 1 or self.fit_tiles < 3:
            raise InputError("slices_per_cell and focal_nodes must be >= 1, fit_tiles >= 3")
        if self.fit_model not in FIT_MODELS or self.fit_background not in JOINT_BACKGROUNDS:
            raise InputError(
                f"fit_model must be one of {FIT_MODELS} and fit_background "
                f"'local' or 'constant', got {self.fit_model!r}, "
                f"{self.fit_background!r}"
            )
        if not 0 <= self.detector_inner_mrad < self.detector_outer_mrad:
            raise InputError("the ADF inner angle must be below the outer angle")
        missing = set(cell.elements) - {k for k, _ in self.phonon_sigmas_A}
        if missing or any(v < 0 for _, v in self.phonon_sigmas_A):
            raise InputError(
                f"phonon sigmas need non-negative values for every element of "
                f"{cell.name} ({', '.join(cell.elements)}); missing "
                f"{', '.join(sorted(missing)) or 'none'} (give them as --sigma EL=Å; defaults "
                f"exist for {', '.join(DEFAULT_PHONON_SIGMAS_A)} only), "
                f"got {dict(self.phonon_sigmas_A)}"
            )
        if self.spread_scan and self.gpts is not None and self.gpts % self.cells:
            raise InputError(
                f"a spread scan needs a whole number of grid points per cell: "
                f"gpts {self.gpts} is not a multiple of cells {self.cells}"
            )
        if self.device not in ("cpu", "gpu"):
            raise InputError(f"device must be 'cpu' or 'gpu', got {self.device!r}")
        self.ratio_labels  # noqa: B018 - validates ratio against the columns

    # Derived quantities -------------------------------------------------------------
    @property
    def oriented(self):
        """The crystal's orthogonal box along the zone axis
        (:func:`stemqd.simulation.structure.oriented_cell`)."""
        return oriented_cell(
            self.material,
            self.zone_axis,
            lattice_constant_A=self.lattice_constant_A,
            merge_tol_A=self.merge_tol_A,
        )

    @property
    def ratio_labels(self) -> tuple:
        """(numerator, denominator) column labels of ``ratio`` (default: the second-brightest
        over the brightest column type, Cs : PbBr for CsPbBr3 [001])."""
        cell = self.oriented
        if self.ratio is None:
            return cell.default_ratio()
        from ..columns.cell import parse_ratio

        num, den = parse_ratio(self.ratio, cell.projected)
        return num.label, den.label

    @property
    def sigmas(self) -> dict:
        """rms displacement per element, Å."""
        return dict(self.phonon_sigmas_A)

    @property
    def wavelength_A(self) -> float:
        return wavelength_A(self.energy_kV)

    @property
    def cell_A(self) -> tuple:
        """Lateral box of one cell (Lx, Ly), Å."""
        return tuple(self.oriented.size_A)

    @property
    def thickness_unit_A(self) -> float:
        """Thickness of one unit of ``thicknesses_uc``: repeat along the beam / divisions, Å."""
        return self.oriented.repeat_A / self.divisions

    @property
    def box_A(self):
        """Side of the periodic box, Å (a pair (x, y) for a rectangular box)."""
        return _pair(tuple(self.cells * v for v in self.cell_A))

    @property
    def grid_shape(self) -> tuple:
        """Potential grid points (x, y)."""
        if self.gpts is not None:
            return (int(self.gpts), int(self.gpts))
        # abTEM's anti-aliasing aperture keeps 2/3 of the Nyquist frequency 1 / (2 dx):
        # theta_max = lambda / (3 dx) must reach the detector's outer angle.
        dx_max = self.sampling_factor * self.wavelength_A / (3.0 * self.detector_outer_mrad * 1e-3)
        # A whole number of grid points per cell makes lattice translations and the p4mm
        # operations exact on the grid (the spread scan relies on it). 5-smooth per cell:
        # FFTW 1080² (360 per cell) takes 9.5 ms, 1024² 12 ms, 1029² (7³) 29 ms.
        return tuple(
            self.cells * smooth_size(math.ceil(length / dx_max), (2, 3, 5))
            for length in self.cell_A
        )

    @property
    def grid_points(self):
        """Potential grid points per side (a pair (x, y) for a rectangular grid)."""
        return _pair(self.grid_shape)

    @property
    def sampling_A(self):
        return _pair(
            tuple(self.cells * v / g for v, g in zip(self.cell_A, self.grid_shape, strict=True))
        )

    @property
    def scan_shape(self) -> tuple:
        """Probe positions per cell (x, y)."""
        if self.scan_per_cell is not None:
            return (int(self.scan_per_cell), int(self.scan_per_cell))
        nyquist = self.wavelength_A / (4.0 * self.semiangle_mrad * 1e-3)
        return tuple(math.ceil(length / nyquist) for length in self.cell_A)

    @property
    def scan_points(self):
        """Probe positions per cell side (a pair (x, y) for a rectangular cell)."""
        return _pair(self.scan_shape)

    @property
    def focal_spread_A(self) -> float:
        return focal_spread_A(
            self.energy_spread_fwhm_eV, self.chromatic_aberration_mm, self.energy_kV
        )

    @property
    def total_blur_sigma_A(self) -> float:
        return math.hypot(self.source_size_fwhm_A / FWHM_PER_SIGMA, self.blur_sigma_A)

    @property
    def fit_shape(self) -> tuple:
        """Pixels (x, y) of the interpolated cell image that is fitted. The pixels are
        square to within 0.5 / y pixels (exactly for square cells), as the fitter assumes."""
        lx, ly = self.cell_A
        nx, ny = self.scan_shape
        mx = max(nx, math.ceil(lx / self.fit_pixel_A))
        return (mx, max(ny, round(mx * ly / lx)))

    @property
    def fit_pixels_per_cell(self):
        return _pair(self.fit_shape)

    def derived(self) -> dict:
        """Derived numbers, for sidecars and reports."""
        nodes, weights = focal_nodes(self.focal_nodes, self.focal_spread_A)
        cell = self.oriented
        step = _pair(tuple(v / n for v, n in zip(self.cell_A, self.scan_shape, strict=True)))
        fit_px = _pair(tuple(v / m for v, m in zip(self.cell_A, self.fit_shape, strict=True)))
        return {
            "wavelength_A": self.wavelength_A,
            "box_A": self.box_A,
            "gpts": self.grid_points,
            "sampling_A": self.sampling_A,
            "max_scattering_angle_mrad": 1e3
            * self.wavelength_A
            / (3 * max(np.atleast_1d(self.sampling_A))),
            "slice_thickness_A": self.thickness_unit_A / self.slices_per_cell,
            "scan_points_per_cell": self.scan_points,
            "scan_step_A": step,
            "scan_nyquist_step_A": self.wavelength_A / (4 * self.semiangle_mrad * 1e-3),
            "scanned_positions": len(scan_indices(self)),
            "focal_spread_sigma_A": self.focal_spread_A,
            "defocus_nodes_A": nodes.tolist(),
            "defocus_weights": weights.tolist(),
            "source_sigma_A": self.source_size_fwhm_A / FWHM_PER_SIGMA,
            "total_blur_sigma_A": self.total_blur_sigma_A,
            "fit_pixels_per_cell": self.fit_pixels_per_cell,
            "fit_pixel_A": fit_px,
            "fit_radius_A": self.effective_fit_radius_A,
            "disc_radius_A": self.effective_disc_radius_A,
            "structure": {
                "material": cell.name,
                "zone_axis": list(cell.zone_axis),
                "cell_A": list(cell.size_A),
                "repeat_A": cell.repeat_A,
                "thickness_unit_A": self.thickness_unit_A,
                "atoms_per_cell": len(cell.symbols),
                "scan_symmetry": cell.symmetry,
                "strain_residual_A": cell.mismatch_A,
                "columns": {
                    lab: {"site": cell.column_sites[lab], "fracs": cell.column_fracs[lab]}
                    for lab in cell.labels
                },
                "ratio": list(self.ratio_labels),
            },
        }

    @property
    def effective_fit_radius_A(self) -> float:
        half = self.oriented.nearest_neighbour_A() / 2
        return half if self.fit_radius_A is None else self.fit_radius_A

    @property
    def effective_disc_radius_A(self) -> float:
        half = self.oriented.nearest_neighbour_A() / 2
        return half if self.disc_radius_A is None else self.disc_radius_A

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["thicknesses_uc"] = list(self.thicknesses_uc)
        d["phonon_sigmas_A"] = dict(self.phonon_sigmas_A)
        d["zone_axis"] = list(self.zone_axis)
        return d

    def scan_dict(self) -> dict:
        """The parameters that change the raw scans (structure, phonons, potential, probe,
        detector, scan): :meth:`to_dict` without :data:`MEASUREMENT_FIELDS`."""
        d = self.to_dict()
        for k in MEASUREMENT_FIELDS:
            d.pop(k)
        # Keys of series written before these fields existed (cubic CsPbBr3 [001]) stay valid.
        for k, default in STRUCTURE_DEFAULTS.items():
            if d[k] == default:
                d.pop(k)
        if Path(self.material).is_file():
            from ..files import sha256_file

            d["material_sha256"] = sha256_file(self.material)
        return d


__all__ = [
    "MIN_BOX_A",
    "STRUCTURE_DEFAULTS",
    "first_cell_vector_A",
    "DEFAULT_NUM_CONFIGS",
    "DEFAULT_PHONON_SAMPLING_FACTOR",
    "DEFAULT_PHONON_SIGMAS_A",
    "FIT_MODELS",
    "MEASUREMENT_FIELDS",
    "MIN_CONFIGS_FOR_SE",
    "QUICK_NUM_CONFIGS",
    "QUICK_SAMPLING_FACTOR",
    "TARGET_RATIO_SE",
    "SeriesParameters",
    "smooth_size",
]
