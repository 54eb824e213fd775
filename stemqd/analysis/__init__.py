"""Analyses of fitted columns: statistics, lattice spacing, thickness.

Modules (loaded on first use; their public names are also available here):

* ``statistics``: intensity ratios, per-type and per-depth statistics, group comparison
* ``lattice``: peak-pair spacings and per-column strain
* ``thickness``: thickness read from a simulated ratio series
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=["lattice", "statistics", "thickness"],
    submod_attrs={
        "lattice": ["peak_pair_spacing", "peak_pairs"],
        "statistics": [
            "compare_groups",
            "intensity_ratio",
            "ratio_by_depth",
            "type_statistics",
            "voronoi_cross_sections",
        ],
        "thickness": ["ThicknessEstimate", "thickness_from_ratio"],
    },
)
