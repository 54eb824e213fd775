"""Ab-initio MD side of stemqd: dots, CP2K recipes and readers, and the phonon analyses.

Modules are named after what they study (``mobility``: RMSF; ``coupling``: Huang-Rhys
factors; ``optical_response``: dephasing), so that the functions named after what they
compute (``rmsf``, ``huang_rhys``, ``dephasing``) never shadow a module. ``trajectory``
holds the policy between the files and the analyses (common frames, time step, rigid-body
choice, alignment); ``trajectory_dos`` and ``trajectory_rmsf`` are the analyses of a loaded
run, as ``stemqd aimd dos`` and ``rmsf`` run them.

Each module names its sources. Units: meV, fs, K, Å, amu.
"""

from __future__ import annotations

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[
        "build",
        "coupling",
        "cp2k",
        "dos",
        "linewidth",
        "mobility",
        "optical_response",
        "pdos",
        "readers",
        "rigid",
        "series",
        "synthetic",
        "temperature",
        "trajectory",
        "units",
    ],
    submod_attrs={
        "build": [
            "build_dot",
            "cell_size_A",
            "depth_in_cells",
            "dot_composition",
            "edge_from_size",
            "formula",
            "write_structure",
        ],
        "coupling": [
            "DEFAULT_WINDOWS_MEV",
            "GapCoupling",
            "effective_s_per_free_atom",
            "gap_coupling",
            "gap_spectrum",
            "huang_rhys",
        ],
        "cp2k": ["cp2k_input", "frozen_indices", "study_stages", "write_cp2k_inputs"],
        "dos": [
            "TrajectoryDOS",
            "periodogram",
            "phonon_dos",
            "phonon_dos_from_positions",
            "quantum_factor",
            "trajectory_dos",
        ],
        "linewidth": [
            "fwhm_from_reorganization",
            "linewidth_fwhm",
            "linewidth_table",
            "reorganization_energy",
        ],
        "mobility": [
            "RMSFResult",
            "element_msd",
            "layer_index",
            "rmsf",
            "rmsf_by_layer",
            "site_displacements",
            "trajectory_rmsf",
        ],
        "optical_response": [
            "GapDephasing",
            "autocorrelation",
            "cumulant",
            "dephasing",
            "gap_dephasing",
            "gap_histogram",
        ],
        "pdos": [
            "band_edge_weights",
            "cube_weights",
            "localisation",
            "occupied_populations",
            "read_pdos",
            "read_pdos_run",
            "read_populations",
        ],
        "readers": [
            "Trajectory",
            "read_ener",
            "read_gap_table",
            "read_gaps",
            "read_xyz_trajectory",
        ],
        "rigid": [
            "eckart_residual",
            "icp_align",
            "internal_velocities",
            "kabsch_rotation",
            "remove_rigid_body",
        ],
        "series": [
            "FROZEN_CORE_WINDOWS_MEV",
            "FrozenSeriesAnalysis",
            "STUDY_THICKNESSES_CELLS",
            "analyse_series",
            "read_run",
            "write_frozen_series",
        ],
        "temperature": ["temperature_series"],
        "trajectory": [
            "AlignedPositions",
            "GapSeries",
            "RigidBodyChoice",
            "RunTrajectory",
            "align_positions",
            "choose_rigid_body",
            "count_free_atoms",
            "element_masses",
            "find_trajectory",
            "load_gap_series",
            "load_trajectory",
            "mobile_atoms",
            "timestep_from_times",
        ],
    },
)
