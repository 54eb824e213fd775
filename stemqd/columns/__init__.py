"""Atomic columns: finding, fitting, and their crystallographic meaning.

Modules (loaded on first use; their public names are also available here):

* ``find``: column seeds from local maxima (:func:`find_columns`)
* ``fit``: the per-column window fit and the dispatcher (:func:`refine_columns`)
* ``joint``: the joint overlap-robust fit (:func:`fit_columns_jointly`)
* ``precision``: Cramér-Rao bounds of positions and volumes
* ``cell``: projected unit cells of any crystal (:func:`projected_cell`)
* ``sublattice``: lattice fit and column labels (:func:`assign_sublattices`)
* ``quality``: do the found columns form the lattice? (:func:`lattice_quality`, the gate)
* ``dot``: dot segmentation and surface depth (:func:`segment_dot`)
* ``markers``: HyperSpy markers of fitted columns
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[
        "cell",
        "dot",
        "find",
        "fit",
        "joint",
        "markers",
        "precision",
        "quality",
        "sublattice",
    ],
    submod_attrs={
        "cell": [
            "ProjectedColumn",
            "ProjectedCell",
            "projected_cell",
            "parse_ratio",
            "parse_zone_axis",
            "nearest_neighbour_A",
            "pair_distance_A",
            "load_structure",
            "describe",
        ],
        "dot": ["column_flags", "Dot", "edge_lengths_from_columns", "segment_dot", "surface_depth"],
        "find": ["column_spacing_px", "find_columns"],
        "fit": ["gaussian2d", "refine_columns"],
        "joint": ["COLUMN_PARAMS", "OFFSET_BLOCK_SIGMA", "SHAPE_PARAMS", "fit_columns_jointly"],
        "markers": ["LABEL_COLOURS", "column_markers"],
        "precision": ["CRB_PARAMS", "cramer_rao_bound", "cramer_rao_bound_overlap"],
        "quality": [
            "SIGNIFICANCE",
            "QualityRecord",
            "check_quality",
            "fit_quality",
            "lattice_quality",
        ],
        "sublattice": ["LatticeFit", "assign_sublattices", "missing_sites"],
    },
)
