"""Analyses of fitted columns: statistics, lattice spacing, thickness.

Modules (loaded on first use; their public names are also available here):

* ``statistics``: intensity ratios, per-type and per-depth statistics, group comparison
* ``lattice``: peak-pair spacings and per-column strain
* ``thickness``: thickness read from a simulated ratio series
* ``counting``: atoms per column from a Gaussian mixture of the volumes (StatSTEM's model)
* ``library``: thickness per column from a simulated cross-section series
* ``column_thickness``: counted thicknesses per dot, and the A : BX ratio against them
* ``sizes``: dot size distribution from low-magnification images
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[
        "column_thickness",
        "counting",
        "lattice",
        "library",
        "sizes",
        "statistics",
        "thickness",
    ],
    submod_attrs={
        "counting": [
            "AtomCounts",
            "MixtureFit",
            "assign_counts",
            "count_atoms",
            "count_columns",
            "fit_mixture",
            "fit_mixtures",
            "library_offset",
            "mixture_criteria",
            "select_components",
        ],
        "column_thickness": [
            "NEIGHBOUR_TOLERANCE",
            "cell_ratios",
            "dot_thickness",
            "ratio_by_thickness",
            "series_ratio",
            "thickness_distribution",
        ],
        "library": ["count_from_library", "library_curve", "series_prefix"],
        "lattice": ["peak_pair_spacing", "peak_pairs"],
        "sizes": [
            "BACKGROUND_WIDTH",
            "SIZE_COLUMNS",
            "SizeResult",
            "decide_contrast",
            "flatten_background",
            "measure_sizes",
            "min_area_rectangle",
            "plot_sizes",
            "score_sizes",
            "summarize_sizes",
            "write_size_results",
        ],
        "statistics": [
            "RatioEstimate",
            "compare_groups",
            "intensity_ratio",
            "ratio_by_depth",
            "type_statistics",
            "voronoi_cross_sections",
        ],
        "thickness": ["ThicknessEstimate", "thickness_from_ratio"],
    },
)
