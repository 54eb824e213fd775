"""abTEM bridge: ADF-STEM thickness series of CsPbBr3 [001], measured like an experiment.

One multislice pass per frozen-phonon configuration gives every thickness at once (abTEM
exit planes); the simulated images are then blurred by the effective source, interpolated,
tiled to a few cells and run through stemqd's own column fitter
(:func:`stemqd.fit.refine_columns`), so that simulation and experiment are measured the same
way. Integrated-disc intensities are reported beside the fitted ones for comparison.

Model and conventions (methods.md §3; costs and pitfalls in docs/abtem.md)
--------------------------------------------------------------------------
* **Structure.** Cubic ABX3 with Pb at (0, 0, 0), Br at (½, 0, 0), (0, ½, 0), (0, 0, ½) and Cs
  at (½, ½, ½), tiled ``cells`` x ``cells`` laterally (periodic) and ``t`` cells along the
  beam [001]. Projected, Pb-Br ("BX") columns sit at the cell corners, Cs ("A") at the cell
  centre and pure Br ("X") at the edge midpoints. Every atom is shifted by +a/4 along z so
  that the PbBr2 and CsBr planes sit mid-slice for slices a/2 thick (atoms on slice
  boundaries hop between slices under phonon displacements: docs/abtem.md, pitfall 5).
* **Frozen phonons (Einstein model).** Every atom is displaced by an independent Gaussian of
  rms ``sigma`` per Cartesian direction (U_iso = sigma², B = 8 pi² sigma²), the model of
  :class:`abtem.FrozenPhonons`. The draws are keyed by (seed, configuration, unit cell relative
  to the scanned cell, site), so a thinner crystal is exactly the top of a thicker one and
  two boxes of different lateral size share the displacements of their common cells; the
  displaced structures go to abTEM as an :class:`abtem.AtomsEnsemble`. The default sigmas
  come from the project's AIMD (:data:`DEFAULT_PHONON_SIGMAS_A`). Alternatively
  (``phonons=``, ``--md-snapshots``) the configurations are built from the frames of a
  periodic MD run (:mod:`stemqd.snapshot_phonons`), which keeps the correlations and the
  octahedral tilts that the Einstein model drops.
* **Probe.** ``energy_kV`` (300 kV), aperture semi-angle ``semiangle_mrad`` (18 mrad), no
  residual aberrations, focused on the entrance surface (defocus 0).
* **Energy spread as focal spread.** The energy spread is read as a FWHM, converted to a
  standard deviation sigma_E = FWHM / (2 sqrt(2 ln 2)), and gives a Gaussian focal spread of
  standard deviation Delta = Cc sigma_E / E0 (Kirkland, *Advanced Computing in Electron
  Microscopy*, 2nd ed., 2010, §3.3.2, without the relativistic factor). Cc is not given by the
  study: ``chromatic_aberration_mm`` is an assumption, stated in every output. The
  incoherent focal average uses Gauss-Hermite quadrature in defocus (default two nodes at
  +-Delta with weights ½, exact for any cubic dependence on defocus); the phonon
  configurations are spread over the nodes in proportion to their weights, so the focal
  average costs no extra passes (stratified Monte Carlo over phonons and focus).
* **Source size and blur.** The effective source size is read as a FWHM and becomes a
  Gaussian of sigma = FWHM / 2.3548, convolved in quadrature with the extra Gaussian blur
  (sigma ``blur_sigma_A``): 0.25 Å FWHM and 0.3 Å give a total sigma of 0.318 Å.
* **Sampling.** The potential sampling must keep the ADF outer angle inside abTEM's 2/3
  anti-aliasing aperture: dx <= lambda / (3 theta_out) (0.0345 Å for 190 mrad at 300 kV); the
  grid holds a whole, 2-3-5-smooth number of points per cell (so lattice translations and
  the p4mm operations map the grid onto itself) that satisfies it, refined by
  ``sampling_factor`` (default 0.5) because the ratio was not converged at the limit. The
  ADF image of a probe of semi-angle alpha is band-limited to 2 alpha / lambda, so a periodic
  scan with a step <= lambda / (4 alpha) (0.273 Å) samples it exactly and Fourier
  interpolation is exact. Only
  the irreducible 1/8 of the p4mm cell is scanned and unfolded. Both choices are checked by
  :func:`convergence_check`.
* **Spread scan (variance reduction).** Within one configuration, the wedge points are
  taken in different cells of the box and different p4mm images of the wedge
  (:func:`scan_positions`), so one configuration samples many column realisations. The
  expected signal is unchanged (the phonon ensemble is invariant under the lattice
  translations and p4mm operations of the box); the frozen-phonon standard error of the
  30 uc ratio per configuration fell from 0.114 to 0.047 (16 configurations each, same
  seed and grid), i.e. about 6x fewer configurations for the same error.
* **Two-level Monte Carlo (cost reduction).** The reference takes the frozen-phonon average
  on the admissible grid (180 points per cell) and adds the grid correction, target grid
  (360 per cell) minus admissible grid at the same displacements, averaged over a few
  independent configurations simulated on both (Giles 2008; :func:`analyse_series`). The
  sum is an unbiased estimate of the target-grid average at about a fifth of its cost.
* **Measurement.** The per-cell image is Fourier-interpolated to about ``fit_pixel_A``, tiled
  ``fit_tiles`` x ``fit_tiles`` and fitted with :func:`stemqd.fit.refine_columns` (disk radius
  ``fit_radius_A``); the columns of the centre tile are kept. Intensities are ADF signals as a
  fraction of the incident probe: Gaussian volumes and disc integrals are scattering
  cross-sections in Å², peak amplitudes are dimensionless. Disc integrals (radius
  ``disc_radius_A``) are computed exactly from the Fourier series of the periodic image.
* **Frozen-phonon error.** Reported values are fitted on the phonon-averaged image (what an
  experiment sees); their standard errors come from a delete-a-group jackknife of that whole
  measurement over the configurations (see :func:`analyse_series`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import provenance
from .errors import InputError
from .joint import MODELS as JOINT_MODELS

__all__ = [
    "DEFAULT_NUM_CONFIGS",
    "DEFAULT_PHONON_SAMPLING_FACTOR",
    "DEFAULT_CORRECTION_CONFIGS",
    "DEFAULT_PHONON_SIGMAS_A",
    "QUICK_NUM_CONFIGS",
    "QUICK_SAMPLING_FACTOR",
    "MIN_CONFIGS_FOR_SE",
    "TARGET_RATIO_SE",
    "COLUMN_PREFIX",
    "SeriesParameters",
    "SeriesResult",
    "cspbbr3_slab",
    "displaced_configuration",
    "apply_displacements",
    "focal_spread_A",
    "focal_nodes",
    "wavelength_A",
    "smooth_size",
    "wedge_indices",
    "unfold_wedge",
    "scan_positions",
    "simulate_scans",
    "measure_cell_images",
    "thickness_series",
    "convergence_check",
    "write_series",
    "reanalyse_series",
    "fitter_settings",
    "series_fit_model",
    "FIT_MODELS",
    "read_series",
    "plot_series",
    "series_amplitudes",
    "resolve_device",
]

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

#: Column type (as in :mod:`stemqd.synthetic`) -> prefix of its CSV columns.
COLUMN_PREFIX = {"A": "cs", "BX": "pbbr", "X": "br"}

#: Fractional in-plane positions of the projected columns of one cell (BX at the origin).
_COLUMN_FRACS = {"A": [(0.5, 0.5)], "BX": [(0.0, 0.0)], "X": [(0.5, 0.0), (0.0, 0.5)]}

# Sites of the cubic cell: (symbol, fractional position). Pb on the origin (B site).
_SITES = (("Pb", (0.0, 0.0, 0.0)), ("Br", (0.5, 0.0, 0.0)), ("Br", (0.0, 0.5, 0.0)),
          ("Br", (0.0, 0.0, 0.5)), ("Cs", (0.5, 0.5, 0.5)))

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


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
        :func:`stemqd.thickness.thickness_from_ratio`). Series written before this
        parameter existed were fitted with ``window7``.
    fit_background : {"local", "constant"}
        Background of the joint models (``columns.background``).
    fit_radius_A : float or None
        ``window7``: radius of the fit disk, Å; None: a / 4 (the X-BX and X-A distances are
        a / 2).
    disc_radius_A : float or None
        Radius of the integration disc, Å; None: a / 4 (discs do not overlap).
    device : str
        "cpu" or "gpu" (abTEM's ``device``).
    """

    lattice_constant_A: float = 5.87
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
        object.__setattr__(self, "phonon_sigmas_A",
                           tuple(sorted((str(k), float(v)) for k, v in sig)))
        if not self.lattice_constant_A > 0:
            raise InputError(f"lattice constant must be positive, got {self.lattice_constant_A}")
        if not t or min(t) < 1 or any(b <= a for a, b in zip(t, t[1:])):
            raise InputError(f"thicknesses must be increasing positive cell counts, got {t}")
        if self.cells < 3:
            raise InputError(f"the box needs at least 3 x 3 cells for the probe tails, "
                             f"got {self.cells}")
        if self.slices_per_cell < 1 or self.focal_nodes < 1 or self.fit_tiles < 3:
            raise InputError("slices_per_cell and focal_nodes must be >= 1, fit_tiles >= 3")
        if self.fit_model not in FIT_MODELS or self.fit_background not in ("local", "constant"):
            raise InputError(f"fit_model must be one of {FIT_MODELS} and fit_background "
                             f"'local' or 'constant', got {self.fit_model!r}, "
                             f"{self.fit_background!r}")
        if not 0 <= self.detector_inner_mrad < self.detector_outer_mrad:
            raise InputError("the ADF inner angle must be below the outer angle")
        missing = {"Cs", "Pb", "Br"} - {k for k, _ in self.phonon_sigmas_A}
        if missing or any(v < 0 for _, v in self.phonon_sigmas_A):
            raise InputError(f"phonon sigmas need non-negative values for Cs, Pb and Br, "
                             f"got {dict(self.phonon_sigmas_A)}")
        if self.spread_scan and self.gpts is not None and self.gpts % self.cells:
            raise InputError(f"a spread scan needs a whole number of grid points per cell: "
                             f"gpts {self.gpts} is not a multiple of cells {self.cells}")
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
        dx_max = self.sampling_factor * self.wavelength_A / (
            3.0 * self.detector_outer_mrad * 1e-3)
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
        return focal_spread_A(self.energy_spread_fwhm_eV, self.chromatic_aberration_mm,
                              self.energy_kV)

    @property
    def total_blur_sigma_A(self) -> float:
        return math.hypot(self.source_size_fwhm_A / _FWHM_PER_SIGMA, self.blur_sigma_A)

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
            "source_sigma_A": self.source_size_fwhm_A / _FWHM_PER_SIGMA,
            "total_blur_sigma_A": self.total_blur_sigma_A,
            "fit_pixels_per_cell": self.fit_pixels_per_cell,
            "fit_pixel_A": self.lattice_constant_A / self.fit_pixels_per_cell,
            "fit_radius_A": self._fit_radius_A,
            "disc_radius_A": self._disc_radius_A,
        }

    @property
    def _fit_radius_A(self) -> float:
        return self.lattice_constant_A / 4 if self.fit_radius_A is None else self.fit_radius_A

    @property
    def _disc_radius_A(self) -> float:
        return self.lattice_constant_A / 4 if self.disc_radius_A is None else self.disc_radius_A

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["thicknesses_uc"] = list(self.thicknesses_uc)
        d["phonon_sigmas_A"] = dict(self.phonon_sigmas_A)
        return d


# Small physics helpers --------------------------------------------------------------------

def wavelength_A(energy_kV: float) -> float:
    """Relativistic electron wavelength, Å, for an accelerating voltage in kV."""
    import abtem

    return float(abtem.core.energy.energy2wavelength(energy_kV * 1e3))


def focal_spread_A(energy_spread_fwhm_eV: float, chromatic_aberration_mm: float,
                   energy_kV: float) -> float:
    """Standard deviation of the focal spread, Å, from an energy spread given as a FWHM.

    Delta = Cc sigma_E / E0 with sigma_E = FWHM / (2 sqrt(2 ln 2)) (Kirkland 2010, §3.3.2,
    energy-spread term only, no relativistic factor). 0.8 eV, 1.6 mm, 300 kV: 18.1 Å.
    """
    sigma_e = energy_spread_fwhm_eV / _FWHM_PER_SIGMA
    return chromatic_aberration_mm * 1e7 * sigma_e / (energy_kV * 1e3)


def focal_nodes(n: int, sigma_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Defocus nodes (Å) and weights of an n-point Gauss-Hermite average over N(0, sigma²).

    The probabilists' Hermite rule integrates polynomials of degree <= 2n - 1 exactly.
    """
    x, w = np.polynomial.hermite_e.hermegauss(int(n))
    return x * sigma_A, w / w.sum()


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


def resolve_device(device: str = "auto") -> str:
    """"cpu" or "gpu": "auto" picks the GPU when CuPy is installed and sees a device."""
    if device not in ("auto", "cpu", "gpu"):
        raise InputError(f"device must be auto, cpu or gpu, got {device!r}")
    if device != "auto":
        if device == "gpu" and not _gpu_available():
            raise InputError("device gpu requested but CuPy or a CUDA device is not available")
        return device
    return "gpu" if _gpu_available() else "cpu"


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "no GPU"
        return False


# Structure and phonons ----------------------------------------------------------------------

def cspbbr3_slab(thickness_uc: int, *, lattice_constant_A: float = 5.87, cells: int = 3,
                 slices_per_cell: int = 2):
    """Periodic cubic CsPbBr3 slab for [001] multislice, as ASE Atoms.

    Parameters
    ----------
    thickness_uc : int
        Unit cells along the beam (z).
    lattice_constant_A : float
        Cubic lattice constant, Å.
    cells : int
        Lateral tiling, cells per side.
    slices_per_cell : int
        Slices per cell the slab is meant for; atoms are shifted by half a slice in z
        (a / 4 for two slices) so that each atomic plane sits mid-slice.

    Returns
    -------
    ase.Atoms
        Cell (cells a, cells a, thickness a), periodic. Atoms are ordered by depth; the
        arrays ``stemqd_cell`` (i, j, k relative to the centre cell, which the scan covers)
        and ``stemqd_site`` (0 Pb, 1-3 Br, 4 Cs) key the phonon displacements.
    """
    from ase import Atoms

    a = float(lattice_constant_A)
    t = int(thickness_uc)
    if t < 1:
        raise InputError(f"thickness must be at least one unit cell, got {thickness_uc}")
    c0 = cells // 2
    dz = 0.5 / slices_per_cell
    symbols, pos, cell_idx, site_idx = [], [], [], []
    for k in range(t):
        for plane in (0.0, 0.5):
            for i in range(cells):
                for j in range(cells):
                    for s, (sym, f) in enumerate(_SITES):
                        if f[2] != plane:
                            continue
                        symbols.append(sym)
                        pos.append(((i + f[0]) * a, (j + f[1]) * a, (k + f[2] + dz) * a))
                        cell_idx.append((i - c0, j - c0, k))
                        site_idx.append(s)
    atoms = Atoms(symbols, positions=pos, cell=[cells * a, cells * a, t * a], pbc=True)
    atoms.set_array("stemqd_cell", np.array(cell_idx, int))
    atoms.set_array("stemqd_site", np.array(site_idx, int))
    return atoms


def displaced_configuration(atoms, sigmas_A: dict, seed: int, config: int):
    """One frozen-phonon configuration: independent Gaussian displacements per atom.

    Each Cartesian component is drawn from N(0, sigma²) of the atom's element (Einstein
    model, as :class:`abtem.FrozenPhonons`). The draws of one unit cell come from a generator
    seeded by (seed, config, i, j, k), so they do not depend on the slab thickness or the
    lateral box size. In-plane positions are wrapped into the periodic cell.
    """
    cell_idx = atoms.get_array("stemqd_cell")
    site = atoms.get_array("stemqd_site")
    sigma = np.array([sigmas_A[s] for s in atoms.get_chemical_symbols()], float)
    keys, inverse = np.unique(cell_idx, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    draws = np.empty((len(keys), len(_SITES), 3))
    offset = 2**20  # SeedSequence entropy must be non-negative
    for n, (i, j, k) in enumerate(keys):
        rng = np.random.default_rng([int(seed), int(config), int(i) + offset,
                                     int(j) + offset, int(k)])
        draws[n] = rng.standard_normal((len(_SITES), 3))
    return apply_displacements(atoms, sigma[:, None] * draws[inverse, site])


def apply_displacements(atoms, displacements):
    """A copy of ``atoms`` moved by ``displacements`` (Å), wrapped into the periodic box."""
    out = atoms.copy()
    positions = out.positions + displacements
    positions[:, :2] %= np.diag(out.cell)[:2]
    out.positions = positions
    return out


def _config_nodes(num_configs: int, weights: np.ndarray) -> np.ndarray:
    """Focal node of each configuration: prefix-stable allocation proportional to weights."""
    counts = np.zeros(len(weights))
    nodes = np.empty(num_configs, int)
    for c in range(num_configs):
        j = int(np.argmax(weights * (c + 1) - counts))
        nodes[c] = j
        counts[j] += 1
    return nodes


# Scan geometry ------------------------------------------------------------------------------

def wedge_indices(n: int) -> np.ndarray:
    """Scan indices (i, j), 0 <= j <= i <= n // 2, of the irreducible 1/8 of a p4mm cell.

    Index i runs along x, j along y; the full grid is k a / n, k = 0..n-1, with the BX column
    (the 4mm point) at index 0.
    """
    return np.array([(i, j) for i in range(n // 2 + 1) for j in range(i + 1)], int)


def unfold_wedge(values, n: int) -> np.ndarray:
    """Unfold values on :func:`wedge_indices` to the full n x n cell, indexed [..., y, x].

    Uses the mirrors x -> -x, y -> -y and x <-> y through the BX column (p4mm of the
    projected cubic perovskite along [001]).
    """
    values = np.asarray(values)
    wedge = wedge_indices(n)
    lookup = -np.ones((n // 2 + 1, n // 2 + 1), int)
    lookup[wedge[:, 0], wedge[:, 1]] = np.arange(len(wedge))
    k = np.arange(n)
    r = np.minimum(k, n - k)
    ry, rx = np.meshgrid(r, r, indexing="ij")
    index = lookup[np.maximum(rx, ry), np.minimum(rx, ry)]
    return values[..., index]


#: Seed of the fixed assignment of wedge positions to cells and p4mm images (part of the
#: scan geometry, not of the phonons: the same for every configuration and run).
_SPREAD_SEED = 20261201

# The 8 operations of 4mm about the BX column acting on (x, y) offsets.
_P4MM = np.array([[[1, 0], [0, 1]], [[-1, 0], [0, 1]], [[1, 0], [0, -1]], [[-1, 0], [0, -1]],
                  [[0, 1], [1, 0]], [[0, -1], [1, 0]], [[0, 1], [-1, 0]], [[0, -1], [-1, 0]]])


def scan_positions(params: SeriesParameters) -> np.ndarray:
    """Probe positions (x, y), Å, one per point of :func:`wedge_indices`.

    Without ``params.spread_scan`` the wedge lies in the centre cell of the box. With it,
    wedge point k is moved to cell ``c_k`` of the box and mapped by the p4mm operation
    ``g_k`` about that cell's BX column. The assignment is a fixed, balanced pseudo-random
    one (every cell and every operation used equally often, to within one). Because the frozen-phonon ensemble is invariant under lattice
    translations and the p4mm operations, the expected signal at every point is unchanged,
    but within one configuration the points near a column sample up to ``cells²``
    different columns (and different sides of them): the column-to-column scatter of one
    configuration is averaged down instead of entering the ratio whole.

    Returns
    -------
    ndarray, shape (n_wedge, 2)
        Positions inside the periodic box [0, cells a)².
    """
    a = params.lattice_constant_A
    n = params.scan_points
    offsets = wedge_indices(n) / n  # fractional (x, y) from the BX column
    c0 = params.cells // 2
    if not params.spread_scan:
        return (c0 + offsets) * a
    k = len(offsets)
    rng = np.random.default_rng(_SPREAD_SEED)
    ncell = params.cells**2
    cell = rng.permutation(np.arange(k) % ncell)
    op = rng.permutation(np.arange(k) % len(_P4MM))
    cells_xy = np.stack([cell % params.cells, cell // params.cells], axis=1)
    mapped = np.einsum("kij,kj->ki", _P4MM[op], offsets)
    return np.mod(cells_xy + mapped, params.cells) * a


# Multislice ---------------------------------------------------------------------------------

def simulate_scans(params: SeriesParameters, configs, seed: int, *, nodes=None,
                   thicknesses_uc=None, exit_planes: bool = True, num_workers: int | None = None,
                   phonons=None):
    """ADF signal on the wedge scan for the given phonon configurations, every thickness.

    Parameters
    ----------
    params : SeriesParameters
    configs : sequence of int
        Configuration indices (each has its own displacements and focal node).
    seed : int
        Seed of the displacements.
    nodes : sequence of int, optional
        Focal node of each configuration (default: the prefix-stable allocation of
        configurations 0, 1, ... over the nodes).
    thicknesses_uc : sequence of int, optional
        Thicknesses to record (default ``params.thicknesses_uc``).
    exit_planes : bool
        True: one multislice pass through the thickest slab with an exit plane at every
        thickness. False: a separate slab and pass for every thickness (for checks and
        benchmarks only).
    num_workers : int, optional
        Dask threads (default: all cores).
    phonons : callable, optional
        ``phonons(slab, seed, config)`` returns a displaced copy of the slab, e.g. a
        :class:`stemqd.snapshot_phonons.SnapshotPhonons`. Default: the Einstein model with
        ``params.sigmas`` (:func:`displaced_configuration`).

    Returns
    -------
    ndarray, float64, shape (len(configs), len(thicknesses), n_positions)
        Fraction of the incident probe intensity reaching the ADF detector.
    """
    import abtem
    import dask

    abtem.config.set({"diagnostics.progress_bar": False})
    thick = tuple(params.thicknesses_uc if thicknesses_uc is None else
                  (int(t) for t in thicknesses_uc))
    configs = np.atleast_1d(np.asarray(configs, int))
    defocus_nodes, weights = focal_nodes(params.focal_nodes, params.focal_spread_A)
    node_of = (_config_nodes(int(configs.max()) + 1, weights)[configs] if nodes is None
               else np.asarray(nodes, int))
    a = params.lattice_constant_A
    positions = scan_positions(params)
    scan = abtem.CustomScan(positions)
    detector = abtem.AnnularDetector(params.detector_inner_mrad, params.detector_outer_mrad)
    spc = params.slices_per_cell
    if phonons is None:
        def phonons(slab, seed, config):
            return displaced_configuration(slab, params.sigmas, seed, config)

    def measurement(slab_uc, planes, cfgs, defocus):
        slab = cspbbr3_slab(slab_uc, lattice_constant_A=a, cells=params.cells,
                            slices_per_cell=spc)
        ensemble = abtem.AtomsEnsemble(
            [phonons(slab, seed, c) for c in cfgs],
            ensemble_mean=False)
        potential = abtem.Potential(
            ensemble, gpts=params.grid_points, slice_thickness=a / spc,
            parametrization=params.parametrization, projection=params.projection,
            exit_planes=planes, device=params.device)
        probe = abtem.Probe(energy=params.energy_kV * 1e3,
                            semiangle_cutoff=params.semiangle_mrad, defocus=float(defocus),
                            device=params.device)
        return probe.scan(potential, scan=scan, detectors=detector)

    jobs = []  # (config rows, thickness columns, lazy measurement)
    for j, defocus in enumerate(defocus_nodes):
        rows = np.flatnonzero(node_of == j)
        if len(rows) == 0:
            continue
        cfgs = configs[rows]
        if exit_planes:
            planes = tuple(spc * t - 1 for t in thick)
            jobs.append((rows, slice(None), measurement(max(thick), planes, cfgs, defocus)))
        else:
            for it, t in enumerate(thick):
                jobs.append((rows, it, measurement(t, None, cfgs, defocus)))
    arrays = dask.compute(*[m.array for _, _, m in jobs], scheduler="threads",
                          num_workers=num_workers or os.cpu_count())
    out = np.full((len(configs), len(thick), len(positions)), np.nan)
    for (rows, cols, m), arr in zip(jobs, arrays):
        arr = _to_numpy(arr).astype(np.float64)
        arr = arr.reshape(len(rows), -1, len(positions)) if cols == slice(None) else arr.reshape(
            len(rows), len(positions))
        out[rows, cols] = arr
    return out


def _to_numpy(array):
    if hasattr(array, "get"):  # CuPy
        return array.get()
    return np.asarray(array)


# Measurement: interpolate, blur, fit, integrate ----------------------------------------------

def _cell_images(full: np.ndarray, params: SeriesParameters) -> np.ndarray:
    """Blurred periodic cell images on the fit grid, [..., y, x], from n x n scan images.

    The blur is a Gaussian multiplier on the Fourier series; the interpolation zero-pads
    the series (exact for a band-limited periodic image sampled at or below Nyquist). An
    even-n Nyquist term is split between +/- n/2, as in :func:`scipy.signal.resample`.
    """
    n = full.shape[-1]
    m = params.fit_pixels_per_cell
    a = params.lattice_constant_A
    spec = np.fft.fft2(full)
    k = np.fft.fftfreq(n, d=a / n)
    s = params.total_blur_sigma_A
    spec = spec * np.exp(-2 * np.pi**2 * s**2 * (k[:, None] ** 2 + k[None, :] ** 2))
    padded = np.zeros(spec.shape[:-2] + (m, m), complex)
    idx = _pad_index(n, m)
    for src, dst, wy in idx:
        for src2, dst2, wx in idx:
            padded[..., dst, dst2] += wy * wx * spec[..., src, src2]
    return np.fft.ifft2(padded).real * (m * m) / (n * n)


def _pad_index(n, m):
    """(source index, target index, weight) triples that zero-pad an n-point spectrum to m."""
    out = []
    for q in range(n):
        f = q if q < (n + 1) // 2 else q - n  # signed frequency
        if n % 2 == 0 and q == n // 2:
            out.append((q, n // 2, 0.5))
            out.append((q, m - n // 2, 0.5))
        else:
            out.append((q, f % m, 1.0))
    return out


def _disc_integrals(images: np.ndarray, params: SeriesParameters) -> dict:
    """Integral of each periodic cell image over a disc around each column type, Å².

    Exact for the band-limited Fourier series: sum_k c_k exp(2 pi i k.c) D(k) with
    D(k) = r J1(2 pi |k| r) / |k| and D(0) = pi r².
    """
    from scipy.special import j1

    m = images.shape[-1]
    a = params.lattice_constant_A
    r = params._disc_radius_A
    coef = np.fft.fft2(images) / (m * m)
    k = np.fft.fftfreq(m, d=a / m)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    kr = np.hypot(kx, ky)
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = np.where(kr > 0, r * j1(2 * np.pi * kr * r) / kr, np.pi * r**2)
    out = {}
    for typ, fracs in _COLUMN_FRACS.items():
        vals = []
        for fx, fy in fracs:
            phase = np.exp(2j * np.pi * (kx * fx * a + ky * fy * a))
            vals.append((coef * disc * phase).sum(axis=(-2, -1)).real)
        out[typ] = np.mean(vals, axis=0)
    return out


def _fit_cell_image(image: np.ndarray, params: SeriesParameters) -> dict:
    """Column fitter on one tiled cell image: volume (Å²) and peak per type, centre tile."""
    from .fit import refine_columns

    m = image.shape[-1]
    tiles = params.fit_tiles
    px = params.lattice_constant_A / m
    tiled = np.tile(image, (tiles, tiles))
    seeds, labels = [], []
    for i in range(tiles + 1):
        for j in range(tiles + 1):
            for typ, fracs in _COLUMN_FRACS.items():
                for fx, fy in fracs:
                    x, y = (i + fx) * m, (j + fy) * m
                    if x < tiles * m and y < tiles * m:
                        seeds.append((x, y))
                        centre = (i == tiles // 2) and (j == tiles // 2)
                        labels.append(typ if centre else "")
    seeds = np.array(seeds, float)
    labels = np.array(labels)
    if params.fit_model == "window7":
        table = refine_columns(tiled, seeds, radius_px=params._fit_radius_A / px,
                               model="window7")
    else:
        # as the pipeline fits an image: every column jointly, one shared width
        table = refine_columns(tiled, seeds, model=params.fit_model,
                               background=params.fit_background,
                               nn_px=params.lattice_constant_A / 2 / px)
    out = {}
    for typ in _COLUMN_FRACS:
        rows = table[labels == typ]
        out[typ] = {"volume": float(rows["volume"].mean()) * px * px,
                    "peak": float(rows["amplitude"].mean()),
                    "flag": ";".join(sorted(set(f for f in rows["flag"] if f)))}
    return out


def measure_cell_images(images: np.ndarray, params: SeriesParameters) -> dict:
    """Fitted and disc intensities of cell images [..., y, x] on the fit grid.

    Returns
    -------
    dict
        ``{(type, method): ndarray of shape images.shape[:-2]}`` for methods "volume" (Å²),
        "peak" (fraction of the probe) and "disc" (Å²), plus ``"flags"``: a set of fitter
        flags raised on any centre-tile column.
    """
    images = np.asarray(images, float)
    lead = images.shape[:-2]
    flat = images.reshape((-1,) + images.shape[-2:])
    out = {(t, meth): np.empty(len(flat)) for t in _COLUMN_FRACS for meth in ("volume", "peak")}
    flags = set()
    for n, img in enumerate(flat):
        res = _fit_cell_image(img, params)
        for t in _COLUMN_FRACS:
            out[(t, "volume")][n] = res[t]["volume"]
            out[(t, "peak")][n] = res[t]["peak"]
            if res[t]["flag"]:
                flags.add(f"{t}: {res[t]['flag']}")
    out = {k: v.reshape(lead) for k, v in out.items()}
    for t, v in _disc_integrals(flat, params).items():
        out[(t, "disc")] = v.reshape(lead)
    out["flags"] = flags
    return out


# The series ---------------------------------------------------------------------------------

@dataclass
class SeriesResult:
    """A thickness series and everything needed to reproduce and judge it.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per thickness (see :func:`write_series` for the columns).
    params : SeriesParameters
    seed : int
    raw : ndarray, shape (configs, thicknesses, wedge positions)
        ADF signal of every configuration on the scanned wedge.
    nodes : ndarray of int
        Focal node of every configuration.
    per_config : dict
        Per-configuration intensities ``{(type, method): (configs, thicknesses)}``.
    info : dict
        Run metadata (time, configurations requested and reached, device, flags, ...).
    phonon_params : SeriesParameters or None
        Parameters of the phonon level (``params`` on the coarser grid) of a two-level
        run; None for one level.
    correction : ndarray, shape (2, correction configs, thicknesses, wedge positions)
        Two-level runs only: the grid-correction configurations on the phonon grid [0] and
        on the target grid [1].
    correction_nodes : ndarray of int
        Focal node of every grid-correction configuration.
    """

    table: pd.DataFrame
    params: SeriesParameters
    seed: int
    raw: np.ndarray
    nodes: np.ndarray
    per_config: dict
    info: dict = field(default_factory=dict)
    phonon_params: SeriesParameters | None = None
    correction: np.ndarray | None = None
    correction_nodes: np.ndarray | None = None


#: Most groups of the delete-a-group jackknife of the frozen-phonon error.
JACKKNIFE_GROUPS = 20


def _ensemble_weights(nodes, weights, keep=None):
    """Weight of every configuration in the ensemble mean (node weight shared by its configs)."""
    keep = np.ones(len(nodes), bool) if keep is None else keep
    counts = np.bincount(nodes[keep], minlength=len(weights)).astype(float)
    w = np.where(keep & (counts[nodes] > 0), weights[nodes] / np.maximum(counts[nodes], 1), 0.0)
    return w / w.sum()


def _jackknife_groups(nodes, n_nodes):
    """Groups of configurations, each holding about the same share of every focal node."""
    members = [np.flatnonzero(nodes == j) for j in range(n_nodes)]
    members = [m for m in members if len(m)]
    b = min(JACKKNIFE_GROUPS, min(len(m) for m in members))
    if b < 2:
        return []
    parts = [np.array_split(m, b) for m in members]
    return [np.concatenate([p[g] for p in parts]) for g in range(b)]


def _estimates(measured: dict) -> dict:
    """Intensities and ratios per (type or "ratio", method) from :func:`measure_cell_images`."""
    out = {}
    for meth in ("volume", "peak", "disc"):
        for typ in COLUMN_PREFIX:
            out[(typ, meth)] = measured[(typ, meth)]
        out[("ratio", meth)] = measured[("A", meth)] / measured[("BX", meth)]
    return out


def analyse_series(raw: np.ndarray, nodes: np.ndarray, params: SeriesParameters, *,
                   correction=None) -> tuple:
    """Table of intensities and ratios, with frozen-phonon errors, from raw wedge scans.

    Values are measured on the phonon- and focus-averaged image. Their standard errors come
    from a delete-a-group jackknife of that whole measurement (groups balanced over the
    focal nodes; up to :data:`JACKKNIFE_GROUPS`), which includes the non-linearity of the
    fit. With fewer than two configurations per node, the scatter of the per-configuration
    fits is used instead (stratified variance sum_j w_j² s² / n_j, ratio linearised). The
    per-configuration error of the default ratio is also reported as
    ``ratio_err_per_config`` for comparison.

    Two-level Monte Carlo (``correction`` given; Giles, Oper. Res. 56, 607 (2008)): the
    averaged image is the phonon average of ``raw`` (a cheaper potential grid) plus the mean
    difference target-grid minus phonon-grid over independent correction configurations
    simulated on both. Both terms are linear in the scans, so the sum is an unbiased
    estimate of the target-grid average; the two levels are jackknifed separately and their
    variances added. ``ratio_grid_correction`` is the change of the ratio that the second
    term makes (NaN for a one-level run).

    Parameters
    ----------
    raw : ndarray, shape (configs, thicknesses, wedge positions)
    nodes : ndarray of int
        Focal node of every configuration of ``raw``.
    params : SeriesParameters
    correction : tuple (ndarray of shape (2, m, thicknesses, positions), ndarray), optional
        Scans of the correction configurations on the phonon grid and on the target grid,
        and their focal nodes.

    Returns
    -------
    table : pandas.DataFrame
    per_config : dict
        ``{(type, method): (configs, thicknesses)}`` per-configuration intensities.
    flags : list of str
        Fitter flags raised on any centre-tile column.
    error_method : str
        "jackknife (B groups)" or "per-configuration scatter" (two-level: both levels named).
    """
    n = params.scan_points
    _, weights = focal_nodes(params.focal_nodes, params.focal_spread_A)
    counts = np.bincount(nodes, minlength=len(weights)).astype(float)
    present = counts > 0
    wj = weights[present] / weights[present].sum()
    var_factor = float(np.sum(wj**2 / counts[present]))
    images = _cell_images(unfold_wedge(raw, n), params)  # (configs, thicknesses, m, m)
    phonon_mean = np.tensordot(_ensemble_weights(nodes, weights), images, axes=(0, 0))
    if correction is not None:
        corr_raw, corr_nodes = correction
        # Interpolation and blur are linear: difference first, then one image per config.
        diffs = _cell_images(unfold_wedge(corr_raw[1] - corr_raw[0], n), params)
        grid_delta = np.tensordot(_ensemble_weights(corr_nodes, weights), diffs, axes=(0, 0))
    else:
        grid_delta = np.zeros_like(phonon_mean)
    per = measure_cell_images(images, params)
    mean = measure_cell_images(phonon_mean + grid_delta, params)
    est = _estimates(mean)
    n_cfg = raw.shape[0]

    def per_config_se(values):
        if n_cfg < 2:
            return np.full(values.shape[1:], np.nan)
        return np.sqrt(np.var(values, axis=0, ddof=1) * var_factor)

    scatter = {}
    for meth in ("volume", "peak", "disc"):
        for typ in COLUMN_PREFIX:
            scatter[(typ, meth)] = per_config_se(per[(typ, meth)])
        r = est[("ratio", meth)]
        z = (per[("A", meth)] - r * per[("BX", meth)]) / mean[("BX", meth)]
        scatter[("ratio", meth)] = per_config_se(z)

    def jackknife_variance(level_nodes, leave_out_image):
        groups = _jackknife_groups(level_nodes, len(weights))
        if not groups:
            return None, 0
        values = []
        for g in groups:
            keep = np.ones(len(level_nodes), bool)
            keep[g] = False
            values.append(_estimates(measure_cell_images(leave_out_image(keep), params)))
        b = len(groups)
        return {k: (b - 1) / b * np.sum((np.array([v[k] for v in values])
                                         - np.mean([v[k] for v in values], axis=0)) ** 2,
                                        axis=0) for k in est}, b

    var0, b0 = jackknife_variance(nodes, lambda keep: np.tensordot(
        _ensemble_weights(nodes, weights, keep), images, axes=(0, 0)) + grid_delta)
    if var0 is None:
        var0 = {k: v**2 for k, v in scatter.items()}
        error_method = "per-configuration scatter"
    else:
        error_method = f"jackknife ({b0} groups)"
    grid_corr = {k: np.full(len(params.thicknesses_uc), np.nan) for k in ("ratio", "err")}
    var = dict(var0)
    if correction is not None:
        var1, b1 = jackknife_variance(corr_nodes, lambda keep: phonon_mean + np.tensordot(
            _ensemble_weights(corr_nodes, weights, keep), diffs, axes=(0, 0)))
        if var1 is None:
            raise InputError("the grid correction needs at least two configurations per "
                             "focal node")
        var = {k: var0[k] + var1[k] for k in est}
        error_method = (f"two-level: phonon grid {error_method}, grid correction "
                        f"jackknife ({b1} groups)")
        phonon_only = _estimates(measure_cell_images(phonon_mean, params))
        grid_corr = {"ratio": est[("ratio", "volume")] - phonon_only[("ratio", "volume")],
                     "err": np.sqrt(var1[("ratio", "volume")])}
    errors = {k: np.sqrt(v) for k, v in var.items()}
    thick = np.array(params.thicknesses_uc)
    table = {"thickness_uc": thick, "thickness_nm": thick * params.lattice_constant_A / 10.0}
    units = {"volume": "_A2", "peak": "", "disc": "_A2"}
    for meth in ("volume", "peak", "disc"):
        for typ, prefix in COLUMN_PREFIX.items():
            name = f"{prefix}_{meth}{units[meth]}"
            table[name] = est[(typ, meth)]
            table[name + "_err"] = errors[(typ, meth)]
        table[f"ratio_{meth}"] = est[("ratio", meth)]
        table[f"ratio_{meth}_err"] = errors[("ratio", meth)]
    table["ratio"] = table["ratio_volume"]
    table["ratio_err"] = table["ratio_volume_err"]
    table["ratio_err_phonon"] = np.sqrt(var0[("ratio", "volume")])
    table["ratio_err_per_config"] = scatter[("ratio", "volume")]
    table["ratio_grid_correction"] = grid_corr["ratio"]
    table["ratio_grid_correction_err"] = grid_corr["err"]
    table["num_configs"] = np.full(len(thick), n_cfg)
    flags = sorted(per["flags"] | mean["flags"])
    per_config = {k: v for k, v in per.items() if k != "flags"}
    return pd.DataFrame(table), per_config, flags, error_method


#: Configuration indices of the grid-correction level start here, so that its displacements
#: are independent of those of the phonon level (configurations 0, 1, ...).
CORRECTION_CONFIG_OFFSET = 2**30


def thickness_series(params: SeriesParameters | None = None, *,
                     num_configs: int = QUICK_NUM_CONFIGS, seed: int = 0,
                     phonon_sampling_factor: float | None = None, correction_configs: int = 0,
                     batch_configs: int | None = None, max_time_s: float | None = None,
                     raw_path=None, resume: bool = False, progress=None,
                     num_workers: int | None = None, phonons=None) -> SeriesResult:
    """ADF-STEM thickness series of CsPbBr3 [001], measured through the column fitter.

    Parameters
    ----------
    params : SeriesParameters, optional
        Physics and numerics (defaults: methods.md §3); the series is for these.
    num_configs : int
        Frozen-phonon configurations requested (spread over the focal nodes).
    seed : int
        Seed of every displacement; configuration c is the same in any run with this seed.
    phonon_sampling_factor : float, optional
        Two-level Monte Carlo: take the frozen-phonon average on the coarser potential grid
        of this sampling factor and add the grid correction (target grid minus phonon grid)
        measured on ``correction_configs`` further configurations simulated on both grids
        (see :func:`analyse_series`). The correction varies little between configurations,
        so a few suffice, while the many phonon configurations cost a fraction of the target
        grid's. None, or the factor of ``params``: one level on the grid of ``params``.
    correction_configs : int
        Configurations of the grid correction (two-level runs; at least two per focal node).
    batch_configs : int, optional
        Configurations simulated per batch (default: one per focal node times the cores).
    max_time_s : float, optional
        Wall-time budget: no batch is started that is expected to end after it. The result
        then holds the configurations reached (``info["complete"]`` is False). The grid
        correction is simulated first.
    raw_path : path, optional
        Checkpoint of the raw wedge scans (.npz), rewritten atomically after every batch.
    resume : bool
        Continue from ``raw_path`` if it holds configurations of the same parameters and seed.
    progress : callable, optional
        ``progress(done, total, elapsed_s)`` after every batch (corrections included).
    num_workers : int, optional
        Dask threads.
    phonons : SnapshotPhonons, optional
        Displacements from MD snapshots (:mod:`stemqd.snapshot_phonons`) instead of the
        Einstein model with ``params.sigmas``; its ``source`` goes into the checkpoint key
        and ``info["phonons"]``.

    Returns
    -------
    SeriesResult
    """
    params = params or SeriesParameters()
    if num_configs < 1:
        raise InputError(f"need at least one configuration, got {num_configs}")
    level0 = _phonon_level(params, phonon_sampling_factor)
    two_level = level0 != params
    if two_level and correction_configs < 2 * params.focal_nodes:
        raise InputError(f"a coarser phonon grid needs at least {2 * params.focal_nodes} "
                         f"grid-correction configurations (two per focal node), got "
                         f"{correction_configs}")
    m_corr = int(correction_configs) if two_level else 0
    t0 = time.perf_counter()
    _, weights = focal_nodes(params.focal_nodes, params.focal_spread_A)
    all_nodes = _config_nodes(num_configs, weights)
    corr_nodes_all = _config_nodes(m_corr, weights)
    pkey = None if phonons is None else phonons.key
    key = _params_key(level0, seed, pkey)
    corr_key = _correction_key(level0, params, seed, pkey)
    shape = (len(params.thicknesses_uc), len(wedge_indices(params.scan_points)))
    raw = np.empty((0,) + shape)
    corr = np.empty((2, 0) + shape)
    if resume and raw_path is not None and Path(raw_path).exists():
        with np.load(raw_path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                raw = z["raw"][:num_configs]
            if two_level and "corr_key" in z and str(z["corr_key"]) == corr_key:
                corr = z["corr"][:, :m_corr]
    if batch_configs is None:
        batch_configs = params.focal_nodes * max(1, (num_workers or os.cpu_count() or 1))
    resumed, resumed_corr = len(raw), corr.shape[1]
    total = num_configs + m_corr
    batch_times = {"correction": [], "phonon": []}
    stopped = False

    def save():
        if raw_path is not None:
            _save_raw(raw_path, params, seed, raw, all_nodes[:len(raw)],
                      (level0, corr, corr_nodes_all[:corr.shape[1]]) if two_level else None,
                      phonons_key=pkey)

    def over_budget(stage):
        times = batch_times[stage]
        return (max_time_s is not None and bool(times)
                and time.perf_counter() - t0 + max(times) > max_time_s)

    while corr.shape[1] < m_corr:
        if over_budget("correction"):
            stopped = True
            break
        k0 = corr.shape[1]
        k1 = min(m_corr, k0 + batch_configs)
        cfgs, nds = CORRECTION_CONFIG_OFFSET + np.arange(k0, k1), corr_nodes_all[k0:k1]
        tb = time.perf_counter()
        pair = np.stack([simulate_scans(p, cfgs, seed, nodes=nds, num_workers=num_workers,
                                        phonons=phonons) for p in (level0, params)])
        batch_times["correction"].append(time.perf_counter() - tb)
        corr = np.concatenate([corr, pair], axis=1)
        save()
        if progress is not None:
            progress(len(raw) + corr.shape[1], total, time.perf_counter() - t0)
    while len(raw) < num_configs and not stopped:
        if over_budget("phonon"):
            break
        done = len(raw)
        stop = min(num_configs, done + batch_configs)
        tb = time.perf_counter()
        chunk = simulate_scans(level0, np.arange(done, stop), seed, num_workers=num_workers,
                               phonons=phonons)
        batch_times["phonon"].append(time.perf_counter() - tb)
        raw = np.concatenate([raw, chunk])
        save()
        if progress is not None:
            progress(len(raw) + corr.shape[1], total, time.perf_counter() - t0)
    done = len(raw)
    nodes = all_nodes[:done]
    corr_nodes = corr_nodes_all[:corr.shape[1]]
    t_sim = time.perf_counter() - t0
    use_corr = two_level and corr.shape[1] >= 2 * params.focal_nodes
    table, per_config, flags, error_method = analyse_series(
        raw, nodes, params, correction=(corr, corr_nodes) if use_corr else None)
    info = {
        "num_configs_requested": int(num_configs),
        "num_configs": int(done),
        "resumed_configs": int(resumed),
        "configs_per_node": np.bincount(nodes, minlength=len(weights)).tolist(),
        "two_level": bool(two_level),
        "complete": bool(done == num_configs and corr.shape[1] == m_corr),
        "simulation_time_s": t_sim,
        "run_time_s": time.perf_counter() - t0,
        "fit_flags": flags,
        "error_method": error_method,
        "device": params.device,
        "phonons": ({"model": "Einstein", "sigmas_A": params.sigmas} if phonons is None
                    else phonons.source),
    }
    if two_level:
        info["phonon_grid"] = {"sampling_factor": level0.sampling_factor,
                               "gpts": level0.grid_points, "sampling_A": level0.sampling_A}
        info["correction_configs_requested"] = m_corr
        info["correction_configs"] = int(corr.shape[1])
        info["resumed_correction_configs"] = int(resumed_corr)
        info["correction_applied"] = bool(use_corr)
    return SeriesResult(table=table, params=params, seed=seed, raw=raw, nodes=nodes,
                        per_config=per_config, info=info,
                        phonon_params=level0 if two_level else None,
                        correction=corr if two_level else None,
                        correction_nodes=corr_nodes if two_level else None)


def _phonon_level(params: SeriesParameters, phonon_sampling_factor: float | None):
    """Parameters of the phonon level: ``params`` on the grid of the given sampling factor."""
    if phonon_sampling_factor is None or (params.gpts is None and
                                          phonon_sampling_factor == params.sampling_factor):
        return params
    level0 = dataclasses.replace(params, sampling_factor=float(phonon_sampling_factor),
                                 gpts=None)
    if level0.grid_points >= params.grid_points:
        raise InputError(f"the phonon grid ({level0.grid_points}²) must be coarser than the "
                         f"target grid ({params.grid_points}²)")
    return level0


def _correction_key(level0: SeriesParameters, params: SeriesParameters, seed: int,
                    phonons_key: str | None = None) -> str:
    return json.dumps({"phonon": _params_key(level0, seed, phonons_key),
                       "target": _params_key(params, seed, phonons_key)}, sort_keys=True)


def _params_key(params: SeriesParameters, seed: int, phonons_key: str | None = None) -> str:
    """Identity of a raw-scan checkpoint: the parameters (and MD phonon source, if any) that
    change the raw signal."""
    d = params.to_dict()
    for k in ("fit_pixel_A", "fit_tiles", "fit_model", "fit_background", "fit_radius_A",
              "disc_radius_A", "device", "source_size_fwhm_A", "blur_sigma_A"):
        d.pop(k)
    key = {"params": d, "seed": seed}
    if phonons_key is not None:
        key["phonons"] = phonons_key
    return json.dumps(key, sort_keys=True)


def _phonons_key(info: dict) -> str | None:
    """Checkpoint key of the MD phonon source in a result's ``info`` (None: Einstein model)."""
    source = info.get("phonons", {})
    return None if source.get("model", "Einstein") == "Einstein" else json.dumps(
        source, sort_keys=True)


def _save_raw(path, params, seed, raw, nodes, two_level=None, phonons_key=None):
    """Checkpoint: phonon-level scans, and the grid-correction scans of a two-level run.

    ``two_level`` is ``(phonon_params, correction scans, correction nodes)`` or None; the
    keys that :func:`thickness_series` checks on resume are derived here.
    """
    import io as _io

    from .io import atomic_write_bytes

    level0, extra = params, {}
    if two_level is not None:
        level0, corr, corr_nodes = two_level
        extra = {"corr": corr.astype(np.float64), "corr_nodes": corr_nodes,
                 "corr_key": np.array(_correction_key(level0, params, seed, phonons_key))}
    key = _params_key(level0, seed, phonons_key)
    buf = _io.BytesIO()
    np.savez_compressed(buf, raw=raw.astype(np.float64), nodes=nodes, key=np.array(key),
                        seed=np.array(seed), **extra)
    atomic_write_bytes(path, buf.getvalue())


# Convergence checks ----------------------------------------------------------------------

def convergence_check(base: SeriesParameters, variants: dict, *, num_configs: int = 2,
                      seed: int = 0, num_workers: int | None = None) -> pd.DataFrame:
    """Ratio of every variant minus the base at a fixed seed, per thickness.

    The displacements of a configuration depend only on (seed, configuration, cell), so the
    base and a variant (finer grid, finer scan, larger box) see the same atoms where they
    overlap and the difference is the numerical effect alone, free of phonon noise. For
    that, every run scans the wedge in the centre cell (``spread_scan=False``): a spread scan
    would put the probe over different columns in boxes of different size.

    Returns
    -------
    pandas.DataFrame
        Columns thickness_uc, variant, ratio, ratio_base, delta, rel_delta, time_s.
    """
    rows = []
    runs = {name: dataclasses.replace(p, spread_scan=False)
            for name, p in {"base": base, **variants}.items()}
    results = {}
    for name, p in runs.items():
        t0 = time.perf_counter()
        res = thickness_series(p, num_configs=num_configs, seed=seed, num_workers=num_workers)
        results[name] = (res.table, time.perf_counter() - t0)
    base_table = results["base"][0]
    for name, (table, dt) in results.items():
        for i, t in enumerate(table["thickness_uc"]):
            r, r0 = float(table["ratio"].iloc[i]), float(base_table["ratio"].iloc[i])
            rows.append({"thickness_uc": int(t), "variant": name, "ratio": r,
                         "ratio_base": r0, "delta": r - r0, "rel_delta": (r - r0) / r0,
                         "ratio_disc": float(table["ratio_disc"].iloc[i]),
                         "delta_disc": float(table["ratio_disc"].iloc[i]
                                             - base_table["ratio_disc"].iloc[i]),
                         "time_s": dt})
    return pd.DataFrame(rows)


# Files ------------------------------------------------------------------------------------

def versions() -> dict:
    """Versions of stemqd, abTEM, ASE and the libraries that shape the numbers."""
    return provenance.versions(extra=("abtem", "ase"))


def sidecar_path(csv_path) -> Path:
    """The JSON sidecar beside a series CSV (same name, .json)."""
    return Path(csv_path).with_suffix(".json")


def raw_path_for(csv_path) -> Path:
    """The raw-scan archive beside a series CSV (same name, .raw.npz)."""
    p = Path(csv_path)
    return p.with_name(p.stem + ".raw.npz")


def fitter_settings(params: SeriesParameters) -> dict:
    """How the simulated images were measured: what a measured ratio must match."""
    out = {"model": params.fit_model, "tiles": params.fit_tiles,
           "pixel_A": params.fit_pixel_A}
    if params.fit_model == "window7":
        out["radius_A"] = params._fit_radius_A
    else:
        out["background"] = params.fit_background
    return out


def series_fit_model(sidecar: dict) -> str:
    """The column model a series was measured with, from its sidecar (``window7`` for
    series written before the model was recorded)."""
    return sidecar.get("fitter", {}).get("model") or sidecar.get("parameters", {}).get(
        "fit_model", "window7")


def write_series(result: SeriesResult, csv_path, *, command: str | None = None,
                 mode: str = "reference", extra: dict | None = None,
                 raw_archive=None) -> dict:
    """Write the series CSV, its JSON sidecar and the raw-scan archive, each atomically.

    ``raw_archive``: an existing archive of these scans (a re-analysis) that the sidecar
    names, with its SHA-256, instead of writing a copy.

    CSV columns: ``thickness_uc``, ``thickness_nm``; for each method (``volume``: fitted
    Gaussian volume, Å²; ``peak``: fitted peak amplitude, fraction of the incident probe;
    ``disc``: disc integral, Å²) and column type (``cs`` = A, ``pbbr`` = BX, ``br`` = X):
    ``{type}_{method}[_A2]`` and its frozen-phonon standard error ``..._err``; the ratio
    Cs : Pb/Br ``ratio_{method}`` with ``ratio_{method}_err``; ``ratio`` / ``ratio_err``
    (= volume, the default); ``num_configs``.

    Returns
    -------
    dict
        The sidecar content.
    """
    from .io import atomic_write_text, to_jsonable

    from .io import sha256_file

    csv_path = Path(csv_path)
    if raw_archive is None:
        raw = raw_path_for(csv_path)
        _save_raw(raw, result.params, result.seed, result.raw, result.nodes,
                  None if result.phonon_params is None else
                  (result.phonon_params, result.correction, result.correction_nodes),
                  phonons_key=_phonons_key(result.info))
        raw_name = raw.name
    else:
        raw = Path(raw_archive)
        raw_name = os.path.relpath(raw, csv_path.parent)
    table = result.table
    last = table.iloc[-1]
    n_cfg = result.info.get("num_configs", len(result.raw))
    s1 = float(last["ratio_err_phonon"]) * math.sqrt(n_cfg)
    reliable = bool(n_cfg >= MIN_CONFIGS_FOR_SE)
    sidecar = {
        "description": "ADF-STEM thickness series of CsPbBr3 [001] (abTEM multislice, frozen "
                       "phonons, exit planes), column intensities from stemqd.fit."
                       "refine_columns on the simulated images; see stemqd/simulate.py.",
        "fitter": fitter_settings(result.params),
        "mode": mode,
        "command": command if command is not None else " ".join(sys.argv),
        "seed": result.seed,
        "parameters": result.params.to_dict(),
        "derived": result.params.derived(),
        "conventions": {
            "phonon_sigmas": "rms displacement per Cartesian direction (U_iso = sigma^2); "
                             "defaults from the project's PBE AIMD at 300 K, about the "
                             "mean positions (simulations/reference/cspbbr3_bulk_aimd/"
                             "a6.00/phonon_sigmas.json, thermal_sigma_A)",
            "energy_spread": "FWHM; focal spread sigma = Cc * sigma_E / E0 (Kirkland 2010)",
            "chromatic_aberration": "assumed, not given by the study",
            "source_size": "FWHM, Gaussian, added in quadrature to the extra blur sigma",
            "defocus": "0 = focused on the entrance surface",
            "intensity_units": "fraction of the incident probe; volume and disc in A^2",
        },
        "frozen_phonon_convergence": {
            "thickness_uc": int(last["thickness_uc"]),
            "ratio_se": float(last["ratio_err"]),
            "ratio_se_method": result.info.get("error_method"),
            "ratio_se_phonon_level": float(last["ratio_err_phonon"]),
            "ratio_se_per_config_scatter": float(last["ratio_err_per_config"]),
            "ratio_grid_correction": float(last["ratio_grid_correction"]),
            "ratio_grid_correction_se": float(last["ratio_grid_correction_err"]),
            "target_se": TARGET_RATIO_SE,
            "se_reliable": reliable,
            "target_met": bool(reliable and float(last["ratio_err"]) < TARGET_RATIO_SE),
            "single_config_equivalent_se": s1,
            "configs_needed_for_target": (math.ceil((s1 / TARGET_RATIO_SE) ** 2)
                                          if math.isfinite(s1) else None),
            "single_config_equivalent_se_note": "phonon level: ratio_se_phonon_level x "
                                                "sqrt(configurations)",
        },
        **{k: v for k, v in result.info.items()},
        "versions": versions(),
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "raw_archive": raw_name,
        "raw_archive_sha256": sha256_file(raw),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        sidecar.update(extra)
    fp = sidecar["frozen_phonon_convergence"]
    sidecar["status"] = (
        f"{'complete' if sidecar.get('complete') else 'INCOMPLETE'}: "
        f"{sidecar.get('num_configs')} of {sidecar.get('num_configs_requested')} "
        f"configurations; ratio SE at {fp['thickness_uc']} uc {fp['ratio_se']:.4f} "
        f"({fp['ratio_se_method']}) vs target {TARGET_RATIO_SE}: "
        f"{'met' if fp['target_met'] else 'NOT met'}"
        + ("" if reliable else f" (error estimate unreliable with fewer than "
                               f"{MIN_CONFIGS_FOR_SE} configurations)"))
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.8g"))
    atomic_write_text(sidecar_path(csv_path), json.dumps(to_jsonable(sidecar), indent=2) + "\n")
    return sidecar


def reanalyse_series(csv_path, *, fit_model: str, fit_background: str = "local"
                     ) -> SeriesResult:
    """Measure the raw scans of a written series again with another column model.

    No multislice is run: the archive beside ``csv_path`` (its ``raw_archive``) is read,
    checked against the sidecar's parameters and seed, and analysed as
    :func:`thickness_series` analyses it, with ``fit_model`` and ``fit_background``.

    Returns
    -------
    SeriesResult
        ``info`` carries the original run's metadata plus ``reanalysis_of`` (the series
        and its fitter).
    """
    csv_path = Path(csv_path)
    sidecar = json.loads(sidecar_path(csv_path).read_text())
    params = SeriesParameters(**{**sidecar["parameters"], "fit_model": fit_model,
                                 "fit_background": fit_background})
    raw_file = csv_path.parent / sidecar.get("raw_archive", raw_path_for(csv_path).name)
    grid = sidecar.get("phonon_grid")
    level0 = _phonon_level(params, grid["sampling_factor"] if grid else None)
    pkey = _phonons_key(sidecar)
    with np.load(raw_file, allow_pickle=False) as z:
        if str(z["key"]) != _params_key(level0, sidecar["seed"], pkey):
            raise InputError(f"{raw_file}: the scans do not belong to the parameters and "
                             f"seed of {sidecar_path(csv_path)}")
        raw, nodes = z["raw"], z["nodes"]
        corr = (z["corr"], z["corr_nodes"]) if "corr" in z else None
    use_corr = corr is not None and sidecar.get("correction_applied", False)
    table, per_config, flags, error_method = analyse_series(
        raw, nodes, params, correction=corr if use_corr else None)
    keep = ("num_configs_requested", "num_configs", "resumed_configs", "configs_per_node",
            "two_level", "complete", "simulation_time_s", "device", "phonons",
            "phonon_grid", "correction_configs_requested", "correction_configs",
            "resumed_correction_configs", "correction_applied", "sessions")
    info = {k: sidecar[k] for k in keep if k in sidecar}
    info.update(fit_flags=flags, error_method=error_method,
                reanalysis_of={"series": str(csv_path), "fitter": sidecar.get(
                    "fitter", {"model": series_fit_model(sidecar)})})
    return SeriesResult(table=table, params=params, seed=sidecar["seed"], raw=raw, nodes=nodes,
                        per_config=per_config, info=info,
                        phonon_params=level0 if level0 != params else None,
                        correction=None if corr is None else corr[0],
                        correction_nodes=None if corr is None else corr[1])


def read_series(path) -> pd.DataFrame:
    """Read a series CSV written by :func:`write_series` (checks the required columns).

    ``attrs["fit_model"]`` is the column model it was measured with, from its sidecar
    (absent without one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such thickness-series CSV")
    try:
        table = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input file
        raise InputError(f"{path}: cannot read the series CSV ({exc})") from exc
    _check_series(table, str(path))
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        table.attrs["fit_model"] = series_fit_model(json.loads(sidecar.read_text()))
    return table


def _check_series(table: pd.DataFrame, name: str = "series") -> None:
    need = {"thickness_uc", "thickness_nm", "ratio", "ratio_err"}
    missing = need - set(table.columns)
    if missing:
        raise InputError(f"{name}: missing columns {sorted(missing)}")
    if len(table) < 2 or not np.all(np.diff(table["thickness_uc"].to_numpy()) > 0):
        raise InputError(f"{name}: needs at least two rows of increasing thickness")


def plot_series(table: pd.DataFrame, path, *, title: str | None = None) -> None:
    """Ratio and intensities versus thickness, to a PNG written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .io import save_figure

    fig = Figure(figsize=(9.0, 3.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    t = table["thickness_uc"]
    for meth, style in (("volume", "o-"), ("disc", "s--"), ("peak", "^:")):
        if f"ratio_{meth}" in table:
            ax1.errorbar(t, table[f"ratio_{meth}"], yerr=table[f"ratio_{meth}_err"], fmt=style,
                         ms=4, capsize=2, label={"volume": "fitted volume", "disc": "disc",
                                                 "peak": "fitted peak"}[meth])
    ax1.set_xlabel("thickness (unit cells)")
    ax1.set_ylabel("Cs : Pb/Br ratio")
    ax1.legend(fontsize=8)
    names = {"cs": ("Cs", "C0"), "pbbr": ("Pb-Br", "C3"), "br": ("Br", "C2")}
    for prefix, (label, colour) in names.items():
        col = f"{prefix}_volume_A2"
        ax2.errorbar(t, table[col], yerr=table[col + "_err"], fmt="o-", ms=3, capsize=2,
                     color=colour, label=f"{label} (fit)")
        col = f"{prefix}_disc_A2"
        ax2.plot(t, table[col], "--", lw=1, color=colour, label=f"{label} (disc)")
    ax2.set_xlabel("thickness (unit cells)")
    ax2.set_ylabel("cross-section (Å²)")
    ax2.legend(fontsize=7, ncol=2)
    sec = ax1.secondary_xaxis("top", functions=(
        lambda x: x * _nm_per_uc(table), lambda x: x / _nm_per_uc(table)))
    sec.set_xlabel("thickness (nm)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _nm_per_uc(table):
    return float(table["thickness_nm"].iloc[-1] / table["thickness_uc"].iloc[-1])


# Simulated dots ---------------------------------------------------------------------------

def series_amplitudes(series, *, method: str = "volume", relative_to: str | None = "BX"):
    """Turn a thickness series into an ``amplitudes`` callable for synthetic dots.

    Incoherent-imaging approximation: every column of a dot is drawn as if it were a column
    of an infinite crystal of the dot's thickness, so its amplitude is the series intensity
    of its type at ``thickness_uc`` (linear interpolation between tabulated thicknesses; no
    extrapolation). Cross-talk between columns, the finite lateral size of the dot, surface
    relaxation and the depth of a column below the side faces are ignored; a depleted shell
    is applied afterwards by :func:`stemqd.synthetic.perovskite_dot` (``shell_cells``,
    ``shell_factor``). ``perovskite_dot`` renders every column with the same width, so
    amplitudes proportional to the fitted volumes keep the simulated intensity ratios.

    Parameters
    ----------
    series : pandas.DataFrame or path
        A series written by :func:`write_series` (e.g.
        ``simulations/reference/cspbbr3_001_adf_series.csv``).
    method : {"volume", "peak", "disc"}
        Which measured intensity to use.
    relative_to : {"BX", "A", "X"} or None
        Normalise so that this type has amplitude 1 at every thickness (the convention of
        :data:`stemqd.synthetic.CSPBBR3_AMPLITUDES`); None keeps absolute values.

    Returns
    -------
    callable
        ``f(types, depth_uc, thickness_uc) -> ndarray`` of one amplitude per column.
    """
    table = read_series(series) if not isinstance(series, pd.DataFrame) else series
    _check_series(table)
    suffix = {"volume": "_volume_A2", "peak": "_peak", "disc": "_disc_A2"}
    if method not in suffix:
        raise InputError(f"method must be volume, peak or disc, got {method!r}")
    if relative_to is not None and relative_to not in COLUMN_PREFIX:
        raise InputError(f"relative_to must be one of {list(COLUMN_PREFIX)} or None")
    t = table["thickness_uc"].to_numpy(float)
    curves = {typ: table[f"{p}{suffix[method]}"].to_numpy(float)
              for typ, p in COLUMN_PREFIX.items()}

    def amplitudes(types, depth_uc, thickness_uc):
        thickness = float(thickness_uc)
        if not t[0] <= thickness <= t[-1]:
            raise InputError(f"dot thickness {thickness:g} uc is outside the series "
                             f"({t[0]:g}-{t[-1]:g} uc)")
        value = {typ: float(np.interp(thickness, t, c)) for typ, c in curves.items()}
        norm = value[relative_to] if relative_to is not None else 1.0
        types = np.asarray(types)
        unknown = set(np.unique(types)) - set(value)
        if unknown:
            raise InputError(f"column types {sorted(unknown)} are not in the series")
        return np.array([value[x] / norm for x in types], float)

    return amplitudes

