"""``stemqd cell``: print the projected unit cell of a crystal along a zone axis.

Examples::

    stemqd cell                              # CsPbBr3 [001], the study's default
    stemqd cell SrTiO3 --zone 110 --png sto110.png
    stemqd cell my.cif --zone 1-10 --exponent 2
"""

from __future__ import annotations

import numpy as np

from ..columns.cell import describe, parse_ratio, projected_cell
from ..config import MaterialConfig
from ..errors import InputError
from ..files import save_figure
from ..materials import BUILTIN_MATERIALS


def add_parser(subparsers):
    """Register the ``cell`` subcommand."""
    defaults = MaterialConfig()
    zone = "".join(str(v) for v in defaults.zone_axis)
    p = subparsers.add_parser(
        "cell",
        help="print the projected unit cell of a crystal along a zone axis",
        description="Projected unit cell: in-plane lattice, columns, their composition per "
        "repeat length along the beam and expected ADF contrast (sum Z^n per Å). "
        f"MATERIAL is a built-in name ({', '.join(BUILTIN_MATERIALS)}) or a "
        "structure file ASE can read (CIF).",
    )
    p.add_argument(
        "material",
        nargs="?",
        default=defaults.name,
        help=f"built-in name or CIF path (default {defaults.name})",
    )
    p.add_argument(
        "--zone",
        default=zone,
        help=f"zone axis [uvw], e.g. 001, 110, 1-10, '1 1 0', 0001 (default {zone})",
    )
    p.add_argument(
        "--lattice-constant",
        type=float,
        default=defaults.lattice_constant_A,
        metavar="A",
        help="override the lattice constant a, Å",
    )
    p.add_argument(
        "--exponent",
        type=float,
        default=defaults.contrast_exponent,
        help=f"n of the contrast sum Z^n (default {defaults.contrast_exponent})",
    )
    p.add_argument(
        "--ratio", default=None, help="check a ratio NUM:DEN against the column labels, e.g. Ti:SrO"
    )
    p.add_argument(
        "--png", default=None, metavar="FILE", help="also draw the projected cell into this PNG"
    )
    p.add_argument(
        "--cells", type=int, default=2, help="cells along a and b drawn in the PNG (default 2)"
    )
    p.set_defaults(func=handler)
    return p


def handler(args) -> int:
    """Print the projected cell (and write the PNG)."""
    cell = projected_cell(
        args.material, args.zone, lattice_constant_A=args.lattice_constant, exponent=args.exponent
    )
    print(describe(cell))
    if args.ratio:
        num, den = parse_ratio(args.ratio, cell)
        ratio = num.contrast / den.contrast
        print(f"  ratio {num.label}:{den.label}: expected contrast ratio {ratio:.3f}")
    if args.png:
        write_cell_png(cell, args.png, cells=args.cells)
        print(f"  wrote {args.png}")
    return 0


def write_cell_png(cell, path, *, cells=2, dpi=120):
    """Draw ``cells`` x ``cells`` projected cells into a PNG, atomically.

    Columns are discs whose area follows the expected contrast, coloured by label; the
    first cell is outlined. The file is written to a temporary name in the target
    directory and moved into place, so a reader never sees a partial PNG.
    """
    if cells < 1:
        raise InputError(f"--cells must be at least 1, got {cells}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vec = cell.vectors_A
    rel = cell.relative_contrast()
    colours = {label: f"C{k % 10}" for k, label in enumerate(cell.labels)}
    n = np.arange(0, cells + 1)
    shown = set()
    for col, r in zip(cell.columns, rel):
        f = np.array(col.frac)
        pts = np.array(
            [
                (i + f[0], j + f[1])
                for i in n
                for j in n
                if i + f[0] <= cells + 1e-9 and j + f[1] <= cells + 1e-9
            ]
        )
        xy = pts @ vec
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=40 + 360 * r,
            color=colours[col.label],
            edgecolor="k",
            linewidth=0.5,
            zorder=3,
            label=None if col.label in shown else f"{col.label} ({col.site})",
        )
        shown.add(col.label)
    outline = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]) @ vec
    ax.plot(outline[:, 0], outline[:, 1], "k-", lw=1, zorder=2)
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    zone = "".join(str(v) if v >= 0 else f"-{-v}" for v in cell.zone_axis)
    ax.set_title(
        f"{cell.name} [{zone}]  a={cell.a_A:.3f} Å b={cell.b_A:.3f} Å γ={cell.gamma_deg:.1f}°",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=dpi, bbox_inches="tight")
    return path


__all__ = ["add_parser", "handler", "write_cell_png"]
