"""Ab-initio MD side of stemqd: dots, CP2K recipes and readers, and the phonon analyses.

Modules are named after what they study (``mobility``: RMSF; ``coupling``: Huang-Rhys
factors; ``optical_response``: dephasing), so that the functions named after what they
compute (``rmsf``, ``huang_rhys``, ``dephasing``) never shadow a module. ``trajectory``
holds the policy between the files and the analyses (common frames, time step, rigid-body
choice, alignment); ``trajectory_dos`` and ``trajectory_rmsf`` are the analyses of a loaded
run, as ``stemqd aimd dos`` and ``rmsf`` run them.

methods.md §4 and algorithms.md Part II. Units: meV, fs, K, Å, amu.
"""

from .build import (
    build_dot,
    cell_size_A,
    depth_in_cells,
    dot_composition,
    edge_from_size,
    formula,
    write_structure,
)
from .coupling import (
    DEFAULT_WINDOWS_MEV,
    GapCoupling,
    effective_s_per_free_atom,
    gap_coupling,
    gap_spectrum,
    huang_rhys,
)
from .cp2k import cp2k_input, frozen_indices, study_stages, write_cp2k_inputs
from .dos import (
    TrajectoryDOS,
    periodogram,
    phonon_dos,
    phonon_dos_from_positions,
    quantum_factor,
    trajectory_dos,
)
from .linewidth import (
    fwhm_from_reorganization,
    linewidth_fwhm,
    linewidth_table,
    reorganization_energy,
)
from .mobility import (
    RMSFResult,
    element_msd,
    layer_index,
    rmsf,
    rmsf_by_layer,
    site_displacements,
    trajectory_rmsf,
)
from .optical_response import (
    GapDephasing,
    autocorrelation,
    cumulant,
    dephasing,
    gap_dephasing,
    gap_histogram,
)
from .pdos import (
    band_edge_weights,
    cube_weights,
    localisation,
    occupied_populations,
    read_pdos,
    read_pdos_run,
    read_populations,
)
from .readers import Trajectory, read_ener, read_gap_table, read_gaps, read_xyz_trajectory
from .rigid import (
    eckart_residual,
    icp_align,
    internal_velocities,
    kabsch_rotation,
    remove_rigid_body,
)
from .series import (
    FROZEN_CORE_WINDOWS_MEV,
    STUDY_THICKNESSES_CELLS,
    analyse_series,
    read_run,
    write_frozen_series,
)
from .temperature import temperature_series
from .trajectory import (
    AlignedPositions,
    GapSeries,
    RigidBodyChoice,
    RunTrajectory,
    align_positions,
    choose_rigid_body,
    count_free_atoms,
    element_masses,
    find_trajectory,
    load_gap_series,
    load_trajectory,
    mobile_atoms,
    timestep_from_times,
)

__all__ = [
    "align_positions",
    "AlignedPositions",
    "analyse_series",
    "autocorrelation",
    "band_edge_weights",
    "build_dot",
    "cell_size_A",
    "choose_rigid_body",
    "count_free_atoms",
    "cp2k_input",
    "cube_weights",
    "cumulant",
    "DEFAULT_WINDOWS_MEV",
    "dephasing",
    "depth_in_cells",
    "dot_composition",
    "eckart_residual",
    "edge_from_size",
    "effective_s_per_free_atom",
    "element_masses",
    "element_msd",
    "find_trajectory",
    "formula",
    "FROZEN_CORE_WINDOWS_MEV",
    "frozen_indices",
    "fwhm_from_reorganization",
    "gap_coupling",
    "gap_dephasing",
    "gap_histogram",
    "gap_spectrum",
    "GapCoupling",
    "GapDephasing",
    "GapSeries",
    "huang_rhys",
    "icp_align",
    "internal_velocities",
    "kabsch_rotation",
    "layer_index",
    "linewidth_fwhm",
    "linewidth_table",
    "load_gap_series",
    "load_trajectory",
    "localisation",
    "mobile_atoms",
    "occupied_populations",
    "periodogram",
    "phonon_dos",
    "phonon_dos_from_positions",
    "quantum_factor",
    "read_ener",
    "read_gap_table",
    "read_gaps",
    "read_pdos",
    "read_pdos_run",
    "read_populations",
    "read_run",
    "read_xyz_trajectory",
    "remove_rigid_body",
    "reorganization_energy",
    "RigidBodyChoice",
    "rmsf",
    "rmsf_by_layer",
    "RMSFResult",
    "RunTrajectory",
    "site_displacements",
    "study_stages",
    "STUDY_THICKNESSES_CELLS",
    "temperature_series",
    "timestep_from_times",
    "Trajectory",
    "trajectory_dos",
    "trajectory_rmsf",
    "TrajectoryDOS",
    "write_cp2k_inputs",
    "write_frozen_series",
    "write_structure",
]
