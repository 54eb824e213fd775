"""stemqd: quantitative ADF-STEM of perovskite nanocrystals.

The stages are plain functions grouped by layer, bottom up:

* ``files``, ``provenance``: atomic writes, checksums, the one sidecar schema;
* ``jit``: numba's njit with a cache wherever one can be written;
* ``optics``, ``materials``: electron optics and the built-in crystal structures;
* ``io``: reading and writing image stacks with their calibration;
* ``preprocess``: align, background, denoise, probe, deconvolve;
* ``columns``: find, fit, joint, precision, cell, sublattice, dot, markers;
* ``simulation``: the abTEM thickness series and synthetic images (it measures through
  ``columns``);
* ``analysis``: statistics, lattice, thickness (thickness reads a series);
* ``config``, ``pipeline``, ``batch``, ``report``, ``cli``: composition and outputs;
* ``aimd`` beside them: the CP2K bridge, sharing only the two bottom layers.

Subpackages load on first use (scikit-image's ``lazy_loader`` pattern), and the main entry
points are available here: ``stemqd.load``, ``stemqd.process_stack``,
``stemqd.refine_columns`` and so on.
"""

__version__ = "0.1.0"

import lazy_loader as lazy  # noqa: E402

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[
        "aimd",
        "analysis",
        "batch",
        "cli",
        "columns",
        "config",
        "errors",
        "files",
        "io",
        "jit",
        "materials",
        "optics",
        "pipeline",
        "preprocess",
        "provenance",
        "report",
        "simulation",
        "summary",
    ],
    submod_attrs={
        "analysis.statistics": ["compare_groups", "intensity_ratio"],
        "analysis.thickness": ["thickness_from_ratio"],
        "batch": ["compare_batches", "run_batch", "write_compare"],
        "columns.cell": ["projected_cell"],
        "columns.find": ["find_columns"],
        "columns.fit": ["refine_columns"],
        "columns.joint": ["fit_columns_jointly"],
        "config": ["Config", "load_config"],
        "errors": ["StemqdError"],
        "io": ["Stack", "from_array", "from_signal", "load"],
        "pipeline": ["analyse_image", "process_stack"],
        "report": ["write_report"],
    },
)
__all__ = [*__all__, "__version__"]
