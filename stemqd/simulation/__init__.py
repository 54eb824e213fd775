"""abTEM bridge: ADF-STEM thickness series of any crystal along any zone axis (cubic CsPbBr3
[001] by default), measured like an experiment.

One multislice pass per frozen-phonon configuration gives every thickness at once (abTEM
exit planes); the simulated images are then blurred by the effective source, interpolated,
tiled to a few cells and run through stemqd's own column fitter
(:func:`stemqd.columns.fit.refine_columns`), so that simulation and experiment are measured the same
way. Integrated-disc intensities are reported beside the fitted ones for comparison.

Model and conventions (costs and convergence in simulations/reference/README.md)
--------------------------------------------------------------------------------
* **Structure.** Any crystal from the source of :func:`stemqd.columns.cell.projected_cell`
  (built-in name or CIF) is oriented along the zone axis in an orthogonal periodic box
  (:func:`stemqd.simulation.structure.oriented_cell`: the choice of box, its strain
  residual, the origin and the column labels are documented there), tiled ``cells`` x
  ``cells`` laterally and ``t`` thickness units (repeat / ``divisions``) along the beam.
  For cubic CsPbBr3 [001] (the default) the box is the cubic cell with Pb at (0, 0, 0), Br
  at (½, 0, 0), (0, ½, 0), (0, 0, ½) and Cs at (½, ½, ½): projected, Pb-Br ("BX") columns
  sit at the cell corners, Cs ("A") at the cell centre and pure Br ("X") at the edge
  midpoints. Every atom is shifted along z so that it sits as far from the slice
  boundaries as possible (+a/4 for cubic perovskites in slices a/2 thick: the PbBr2 and
  CsBr planes sit mid-slice; atoms on slice boundaries hop between slices under phonon
  displacements).
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
  interpolation is exact. Only the irreducible 1/8 of a p4mm cell (symmetry checked on the
  3D atoms) is scanned and unfolded; any other cell is scanned whole. Both choices are
  checked by :func:`convergence_check`.
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
  ``fit_tiles`` x ``fit_tiles`` and fitted with :func:`stemqd.columns.fit.refine_columns` (disk radius
  ``fit_radius_A``); the columns of the centre tile are kept. Intensities are ADF signals as a
  fraction of the incident probe: Gaussian volumes and disc integrals are scattering
  cross-sections in Å², peak amplitudes are dimensionless. Disc integrals (radius
  ``disc_radius_A``) are computed exactly from the Fourier series of the periodic image.
* **Frozen-phonon error.** Reported values are fitted on the phonon-averaged image (what an
  experiment sees); their standard errors come from a delete-a-group jackknife of that whole
  measurement over the configurations (see :func:`analyse_series`).
"""

from __future__ import annotations

import lazy_loader as lazy

from ..optics import focal_nodes, focal_spread_A, wavelength_A

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[
        "dots",
        "ensemble",
        "files",
        "measure",
        "multislice",
        "parameters",
        "scan",
        "series",
        "snapshot_phonons",
        "structure",
        "synthetic",
    ],
    submod_attrs={
        "dots": ["series_amplitudes", "series_column_amplitudes"],
        "ensemble": ["SeriesAnalysis", "analyse_series"],
        "files": [
            "fitter_settings",
            "plot_series",
            "raw_path_for",
            "read_series",
            "series_fit_model",
            "sidecar_path",
            "versions",
            "write_series",
        ],
        "measure": ["measure_cell_images"],
        "multislice": ["resolve_device", "simulate_scans"],
        "parameters": [
            "DEFAULT_CORRECTION_CONFIGS",
            "DEFAULT_NUM_CONFIGS",
            "DEFAULT_PHONON_SAMPLING_FACTOR",
            "DEFAULT_PHONON_SIGMAS_A",
            "FIT_MODELS",
            "MIN_CONFIGS_FOR_SE",
            "QUICK_NUM_CONFIGS",
            "QUICK_SAMPLING_FACTOR",
            "SeriesParameters",
            "TARGET_RATIO_SE",
            "smooth_size",
        ],
        "scan": ["scan_indices", "scan_positions", "unfold_scan", "unfold_wedge", "wedge_indices"],
        "series": [
            "SeriesResult",
            "convergence_check",
            "phonon_level",
            "previous_sessions",
            "reanalyse_series",
            "record_session",
            "thickness_series",
        ],
        "structure": [
            "COLUMN_PREFIX",
            "OrientedCell",
            "apply_displacements",
            "cspbbr3_slab",
            "displaced_configuration",
            "oriented_cell",
            "slab",
        ],
    },
)
__all__ += ["focal_nodes", "focal_spread_A", "wavelength_A"]
