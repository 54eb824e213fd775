"""Parameters of a thickness series and the run-wide defaults, with their sources."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..columns.joint import BACKGROUNDS as JOINT_BACKGROUNDS
from ..columns.joint import MODELS as JOINT_MODELS
from ..errors import InputError
from ..materials import CSPBBR3_LATTICE_CONSTANT_A
from ..optics import FWHM_PER_SIGMA, focal_nodes, focal_spread_A, wavelength_A
from .scan import wedge_indices

#: Default rms displacement per Cartesian direction, Å (U_iso = sigma²). Source: the project's
#: PBE AIMD of bulk CsPbBr3 at 300 K (CP2K, 2 x 2 x 2 cell, a = 6.00 Å, 1.32 ps production;
#: simulations/reference/cspbbr3_bulk_aimd/a6.00/phonon_sigmas.json, ``thermal_sigma_A``,
#: made by simulations/cp2k/phonon_sigmas.py), rounded to 0.01 Å: each atom's motion about
#: its mean position (block errors +- 0.02 Å). No citable CsPbBr3 refinement with
#: displacement parameters was reachable. The same run measured about the ideal cubic sites
#: (Cs 0.37, Pb 0.23, Br 0.56) counts its static octahedral tilts as disorder; the tilted
#: structure is outside the cubic model, and its effect on the series is in
#: simulations/reference/README.md ("Phonon sigmas"). Sensitivity: sigma x 1.25 changes the
#: ratio by -2 % (15 uc) to -6 % (30 uc) (docs/abtem.md).
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
)


@dataclass(frozen=True)
class SeriesParameters:
    """Every physical and numerical input of a thickness series (units in the names).

    Attributes
    ----------
    lattice_constant_A : float
        Cubic lattice constant a, Å (CsPbBr3: 5.87).
    thicknesses_uc : tuple of int
        Crystal thicknesses, unit cells along [001] (2 to 30 in steps of 2).
    cells : int
        Lateral tiling of the periodic box, cells per side (>= 3 for the probe tails).
    slices_per_cell : int
        Multislice slices per unit cell along the beam (2: slices a/2 thick).
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
        ``window7``: radius of the fit disk, Å; None: a / 4 (the X-BX and X-A distances are
        a / 2).
    disc_radius_A : float or None
        Radius of the integration disc, Å; None: a / 4 (discs do not overlap).
    device : str
        "cpu" or "gpu" (abTEM's ``device``).
    """

    lattice_constant_A: float = CSPBBR3_LATTICE_CONSTANT_A
    thicknesses_uc: tuple = tuple(range(2, 31, 2))
    cells: int = 3
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

    def __post_init__(self):
        t = tuple(int(v) for v in np.atleast_1d(self.thicknesses_uc))
        object.__setattr__(self, "thicknesses_uc", t)
        sig = self.phonon_sigmas_A
        if isinstance(sig, dict):
            sig = sig.items()
        object.__setattr__(
            self, "phonon_sigmas_A", tuple(sorted((str(k), float(v)) for k, v in sig))
        )
        if not self.lattice_constant_A > 0:
            raise InputError(f"lattice constant must be positive, got {self.lattice_constant_A}")
        if not t or min(t) < 1 or any(b <= a for a, b in zip(t, t[1:])):
            raise InputError(f"thicknesses must be increasing positive cell counts, got {t}")
        if self.cells < 3:
            raise InputError(
                f"the box needs at least 3 x 3 cells for the probe tails, got {self.cells}"
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
        missing = {"Cs", "Pb", "Br"} - {k for k, _ in self.phonon_sigmas_A}
        if missing or any(v < 0 for _, v in self.phonon_sigmas_A):
            raise InputError(
                f"phonon sigmas need non-negative values for Cs, Pb and Br, "
                f"got {dict(self.phonon_sigmas_A)}"
            )
        if self.spread_scan and self.gpts is not None and self.gpts % self.cells:
            raise InputError(
                f"a spread scan needs a whole number of grid points per cell: "
                f"gpts {self.gpts} is not a multiple of cells {self.cells}"
            )
        if self.device not in ("cpu", "gpu"):
            raise InputError(f"device must be 'cpu' or 'gpu', got {self.device!r}")

    # Derived quantities -------------------------------------------------------------
    @property
    def sigmas(self) -> dict:
        """rms displacement per element, Å."""
        return dict(self.phonon_sigmas_A)

    @property
    def wavelength_A(self) -> float:
        return wavelength_A(self.energy_kV)

    @property
    def box_A(self) -> float:
        return self.cells * self.lattice_constant_A

    @property
    def grid_points(self) -> int:
        """Potential grid points per side."""
        if self.gpts is not None:
            return int(self.gpts)
        # abTEM's anti-aliasing aperture keeps 2/3 of the Nyquist frequency 1 / (2 dx):
        # theta_max = lambda / (3 dx) must reach the detector's outer angle.
        dx_max = self.sampling_factor * self.wavelength_A / (3.0 * self.detector_outer_mrad * 1e-3)
        # A whole number of grid points per cell makes lattice translations and the p4mm
        # operations exact on the grid (the spread scan relies on it). 5-smooth per cell:
        # FFTW 1080² (360 per cell) takes 9.5 ms, 1024² 12 ms, 1029² (7³) 29 ms.
        per_cell = smooth_size(math.ceil(self.lattice_constant_A / dx_max), (2, 3, 5))
        return self.cells * per_cell

    @property
    def sampling_A(self) -> float:
        return self.box_A / self.grid_points

    @property
    def scan_points(self) -> int:
        """Probe positions per cell side."""
        if self.scan_per_cell is not None:
            return int(self.scan_per_cell)
        nyquist = self.wavelength_A / (4.0 * self.semiangle_mrad * 1e-3)
        return math.ceil(self.lattice_constant_A / nyquist)

    @property
    def focal_spread_A(self) -> float:
        return focal_spread_A(
            self.energy_spread_fwhm_eV, self.chromatic_aberration_mm, self.energy_kV
        )

    @property
    def total_blur_sigma_A(self) -> float:
        return math.hypot(self.source_size_fwhm_A / FWHM_PER_SIGMA, self.blur_sigma_A)

    @property
    def fit_pixels_per_cell(self) -> int:
        return max(self.scan_points, math.ceil(self.lattice_constant_A / self.fit_pixel_A))

    def derived(self) -> dict:
        """Derived numbers, for sidecars and reports."""
        nodes, weights = focal_nodes(self.focal_nodes, self.focal_spread_A)
        return {
            "wavelength_A": self.wavelength_A,
            "box_A": self.box_A,
            "gpts": self.grid_points,
            "sampling_A": self.sampling_A,
            "max_scattering_angle_mrad": 1e3 * self.wavelength_A / (3 * self.sampling_A),
            "slice_thickness_A": self.lattice_constant_A / self.slices_per_cell,
            "scan_points_per_cell": self.scan_points,
            "scan_step_A": self.lattice_constant_A / self.scan_points,
            "scan_nyquist_step_A": self.wavelength_A / (4 * self.semiangle_mrad * 1e-3),
            "scanned_positions": len(wedge_indices(self.scan_points)),
            "focal_spread_sigma_A": self.focal_spread_A,
            "defocus_nodes_A": nodes.tolist(),
            "defocus_weights": weights.tolist(),
            "source_sigma_A": self.source_size_fwhm_A / FWHM_PER_SIGMA,
            "total_blur_sigma_A": self.total_blur_sigma_A,
            "fit_pixels_per_cell": self.fit_pixels_per_cell,
            "fit_pixel_A": self.lattice_constant_A / self.fit_pixels_per_cell,
            "fit_radius_A": self.effective_fit_radius_A,
            "disc_radius_A": self.effective_disc_radius_A,
        }

    @property
    def effective_fit_radius_A(self) -> float:
        return self.lattice_constant_A / 4 if self.fit_radius_A is None else self.fit_radius_A

    @property
    def effective_disc_radius_A(self) -> float:
        return self.lattice_constant_A / 4 if self.disc_radius_A is None else self.disc_radius_A

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["thicknesses_uc"] = list(self.thicknesses_uc)
        d["phonon_sigmas_A"] = dict(self.phonon_sigmas_A)
        return d

    def scan_dict(self) -> dict:
        """The parameters that change the raw scans (structure, phonons, potential, probe,
        detector, scan): :meth:`to_dict` without :data:`MEASUREMENT_FIELDS`."""
        d = self.to_dict()
        for k in MEASUREMENT_FIELDS:
            d.pop(k)
        return d


__all__ = [
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
