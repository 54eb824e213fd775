"""``stemqd count RESULT_DIR... --out DIR``: atoms per column from the fitted volumes.

Pools the volumes of one column type (``--label``) over the result folders of ``stemqd
process`` (a ``--out`` folder with ``<name>/columns.csv``, or one ``<name>`` folder), fits
Gaussian mixtures with one shared width for 1..N components
(:func:`stemqd.analysis.counting.count_atoms`, StatSTEM's model) and assigns each column its
count. Only the columns the statistics use are counted: unflagged ones and those flagged only
for the edge margin; the others keep their row in ``counts.csv`` with an empty count.

Writes, never into the result folders: ``DIR/<name>/counts.csv`` (every column of
columns.csv plus ``count`` and ``count_probability``), ``DIR/counting.json`` (criteria
curves, the selected mixture, the volume of one atom and its linearity, provenance) and
``DIR/counting.png`` (the histogram with the components, and the criterion curve).

``--library SERIES.csv`` (a thickness series, e.g.
``simulations/reference/cspbbr3_001_adf_series_round.csv``) also assigns every counted
column the thickness whose simulated cross-section is nearest its ``volume_norm``
(:mod:`stemqd.analysis.library`; ``process`` with ``acquisition.vacuum_level`` and
``beam_level``): ``count_library``, ``count_library_low``/``_high`` (one standard error),
``library_flag`` and ``counts_disagree`` in counts.csv, and under ``library`` in
counting.json every column whose statistical count lies outside the library's range.
``count`` is the component index (plus ``--offset``): repeats along the beam, which are
atoms for a column of one element per repeat. A mixture only groups the columns; which
count its thinnest component holds it cannot tell, least of all on a dot of one thickness
(one component). ``--offset library`` takes the offset that best matches the library's
thicknesses (:func:`stemqd.analysis.counting.library_offset`); otherwise counting.json and
stderr warn where the numbering is doubtful (:meth:`~stemqd.analysis.counting.AtomCounts.
warnings`).

Per image also (:mod:`stemqd.analysis.column_thickness`): ``thickness_distribution.csv`` and
``.png`` (columns per count, mean and standard deviation) and, where the counted type is a
sublattice of the result's ratio, ``ratio_by_thickness.csv`` and ``.png``: the mean ratio of
the local cells (each counted column with its nearest neighbours of the other sublattice)
at each count, beside the simulated series' ratio at that thickness (``--series``, else
``--library``, else the results' ``reference_series`` or ``counting.library``). With
``--library`` both use the library thickness (``count_library``), which is in unit cells.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.statistics import in_statistics
from ..errors import InputError

__all__ = ["add_parser", "counting_figure", "handler", "read_result_tables"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``count`` on the ``stemqd`` subparsers."""
    parser = subparsers.add_parser(
        "count",
        help="count atoms per column (Gaussian mixture of volumes, StatSTEM's model)",
        description="Count the atoms in every column of one type from its fitted volume: "
        "stemqd count out/dots --label Cs --out out/counts",
    )
    parser.add_argument("results", nargs="+", metavar="RESULT_DIR", help="'process' results")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--components-max",
        type=int,
        default=None,
        metavar="N",
        help="fit 1..N components and select with --criterion (default 20)",
    )
    size.add_argument("--components", type=int, default=None, metavar="N", help="use N components")
    parser.add_argument("--label", help="column type to count (the 'label' of columns.csv)")
    parser.add_argument(
        "--criterion", choices=("icl", "aic", "bic"), default="icl", help="default icl"
    )
    parser.add_argument(
        "--first-local-minimum",
        action="store_true",
        help="select the first local minimum of the criterion instead of the global one",
    )
    parser.add_argument(
        "--volume",
        default="volume",
        metavar="COLUMN",
        help="volume column of columns.csv to count from (default volume; volume_norm for "
        "normalised images)",
    )
    parser.add_argument(
        "--offset",
        type=_offset,
        default=0,
        help="count of the lowest component minus one, or 'library': the offset that best "
        "matches the --library thicknesses (needed for a dot of one thickness)",
    )
    parser.add_argument(
        "--library",
        metavar="SERIES.csv",
        help="also count against a simulated thickness series (needs volume_norm: "
        "'process' with acquisition.vacuum_level and beam_level)",
    )
    parser.add_argument(
        "--series",
        metavar="SERIES.csv",
        help="simulated series to set the ratio against counted thickness beside (default: "
        "--library, else the results' reference_series or counting.library)",
    )
    parser.add_argument(
        "--repeat",
        metavar="LENGTH",
        help="period of a column along the beam for the 3D model, e.g. 2.77A (default: the "
        "projected cell's, from the result's material and zone axis; needed without one)",
    )
    parser.set_defaults(func=handler)
    return parser


def _geometry(folder: Path, repeat):
    """Pixel size (Å) and the column repeat along the beam (Å, or None) of a result."""
    from ..batch import read_summary
    from ..columns.cell import projected_cell
    from ..io import parse_length

    summary = read_summary(folder) or {}
    pixel = summary.get("pixel_size_A")
    if repeat is not None:
        return pixel, parse_length(repeat)
    material = summary.get("material")
    if not material:
        return pixel, None
    cell = projected_cell(material, tuple(summary.get("zone_axis") or (0, 0, 1)))
    return pixel, cell.repeat_A


def _write_model(out: Path, name: str, table, folder: Path, repeat, label) -> dict:
    """thickness_map.png and model.xyz of one image; returns what was written (or why not)."""
    import ase.io

    from ..analysis.counting import column_model
    from ..files import atomic_write, save_figure
    from ..report import count_map_figure

    pixel, repeat_A = _geometry(folder, repeat)
    if pixel is None:
        return {"model": f"skipped: {folder}/summary.json gives no pixel size (no map either)"}
    save_figure(
        count_map_figure(table, pixel, title=f"{name}: {label or 'all'} columns, counts"),
        out / name / "thickness_map.png",
    )
    written = {"thickness_map": "thickness_map.png"}
    if repeat_A is None:
        written["model"] = "skipped: no material in the result; pass --repeat LENGTH"
        return written
    use = table["count"].notna().to_numpy()
    atoms = column_model(
        table["x_px"].to_numpy(float)[use] * pixel,
        table["y_px"].to_numpy(float)[use] * pixel,
        table["count"].to_numpy()[use],
        table["label"].astype(str).to_numpy()[use] if "label" in table else label,
        repeat_A,
    )
    with atomic_write(out / name / "model.xyz") as fh:
        ase.io.write(fh, atoms, format="xyz")
    written.update(model="model.xyz", repeat_A=repeat_A, atoms=atoms.info["counts"])
    return written


def read_result_tables(folders) -> dict:
    """``{image name: (columns.csv path, table)}`` of the given ``process`` results.

    Each folder is either one stack's result (it holds ``columns.csv``) or a ``process
    --out`` folder whose visible subfolders hold one each.

    Raises
    ------
    InputError
        A folder is missing, holds no columns.csv, or two images share a name.
    """
    tables = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder; give the --out folder of 'stemqd process'")
        if (folder / "columns.csv").is_file():
            found = [folder]
        else:
            found = sorted(
                p
                for p in folder.iterdir()
                if p.is_dir() and not p.name.startswith(".") and (p / "columns.csv").is_file()
            )
        if not found:
            raise InputError(
                f"{folder}: holds no columns.csv (nor <name>/columns.csv); "
                "run 'stemqd process ... --out' first"
            )
        for sub in found:
            if sub.name in tables:
                raise InputError(
                    f"{sub}: image name {sub.name!r} is given twice ({tables[sub.name][0]}); "
                    "pass each result once"
                )
            path = sub / "columns.csv"
            try:
                table = pd.read_csv(path, keep_default_na=False, na_values=[""])
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
                raise InputError(f"{path}: not a readable columns table ({e})") from None
            tables[sub.name] = (path, table)
    return tables


def _selection(tables, label, volume):
    labels = set()
    for path, table in tables.values():
        if volume not in table:
            hint = (
                " (set acquisition.vacuum_level and acquisition.beam_level in 'process')"
                if volume == "volume_norm"
                else ""
            )
            raise InputError(f"{path}: has no column {volume!r}{hint}")
        if "label" in table:
            labels |= set(table["label"].fillna("").astype(str)[in_statistics(table)])
    labels.discard("")
    if label is None and len(labels) > 1:
        raise InputError(
            f"the results hold several column types ({', '.join(sorted(labels))}); "
            "choose one with --label"
        )
    if label is None and len(labels) == 1:
        label = labels.pop()
    elif label is not None and label not in labels:
        raise InputError(
            f"no counted column has label {label!r}; the results hold "
            f"{', '.join(sorted(labels)) or 'no labels'}"
        )
    masks = {}
    for name, (_, table) in tables.items():
        use = in_statistics(table) & np.isfinite(pd.to_numeric(table[volume], errors="coerce"))
        if label is not None:
            use &= (table["label"].fillna("").astype(str) == label).to_numpy()
        masks[name] = use
    return label, masks


def counting_figure(volumes, result, *, criterion="icl", unit=""):
    """Histogram of the volumes with the selected mixture's components, and the criterion.

    Parameters
    ----------
    volumes : ndarray
        The counted volumes.
    result : stemqd.analysis.counting.AtomCounts
    criterion : str
        Criterion curve drawn on the right.
    unit : str
        Unit of the volumes, for the axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2, width_ratios=(2, 1))
    fit = result.fit
    bins = max(10, int(np.ceil(2 * len(volumes) ** (1 / 3))))  # Rice rule
    heights, edges, _ = ax.hist(volumes, bins=bins, color="0.75", edgecolor="0.4")
    grid = np.linspace(min(edges[0], 0.0), edges[-1] * 1.05, 1000)
    scale = len(volumes) * (edges[1] - edges[0])
    total = np.zeros_like(grid)
    for k, (m, p) in enumerate(zip(fit.locations, fit.proportions)):
        curve = scale * p * np.exp(-0.5 * ((grid - m) / fit.width) ** 2)
        curve /= fit.width * np.sqrt(2 * np.pi)
        total += curve
        ax.plot(grid, curve, lw=0.8, color=f"C{k % 10}")
    ax.plot(grid, total, lw=1.5, color="k", label=f"{fit.components} components")
    ax.set_xlabel(f"volume{f' ({unit})' if unit else ''}")
    ax.set_ylabel("columns")
    ax.legend(loc="upper right")
    values = result.criteria[criterion]
    ks = np.arange(1, len(values) + 1)
    bx.plot(ks, values, "o-", ms=3, color="k")
    bx.axvline(result.components, color="C3", lw=1, ls="--")
    bx.set_xlabel("components")
    bx.set_ylabel(criterion.upper())
    bx.set_title(f"selected: {result.components} ({result.selection})", fontsize=9)
    return fig


def _offset(text):
    """``--offset``: an integer or ``library``."""
    if text == "library":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an integer nor 'library'") from None


def _library(path, tables, masks, label):
    """Library thicknesses of the counted columns of every image."""
    from ..analysis.library import count_from_library, library_curve
    from ..simulation.files import read_series

    if not label:
        raise InputError(
            "--library: the columns have no type label; give --label with the series' "
            "column type (e.g. Cs)"
        )
    series = read_series(path)
    thickness, cross_section = library_curve(series, label, name=str(path))
    per_image = {}
    for name, use in masks.items():
        table_path, table = tables[name]
        missing = {"volume_norm", "volume_norm_err"} - set(table.columns)
        if missing:
            raise InputError(
                f"{table_path}: has no {', '.join(sorted(missing))}; library counting needs "
                "normalised volumes: run 'stemqd process' with --set "
                "acquisition.vacuum_level=... --set acquisition.beam_level=..."
            )
        per_image[name] = count_from_library(
            table["volume_norm"].to_numpy(float)[use],
            table["volume_norm_err"].to_numpy(float)[use],
            thickness,
            cross_section,
        )
    return {
        "series": str(path),
        "fit_model": series.attrs.get("fit_model"),
        "thickness_uc": thickness,
        "cross_section_A2": cross_section,
        "per_image": per_image,
    }


def _reference(args, tables):
    """``(path, series)`` of the simulated series the ratio is set beside, or (None, None).

    ``--series`` or ``--library`` must be readable; a series named only in a result's
    config is skipped with a warning where it is not found (its path may be relative to
    where ``process`` ran)."""
    from ..batch import read_summary
    from ..simulation.files import read_series
    from ..summary import series_path

    path = args.series or args.library
    if path:
        return path, read_series(path)
    for table_path, _ in tables.values():
        path = series_path(read_summary(table_path.parent))
        if path:
            try:
                return path, read_series(path)
            except InputError as exc:
                print(f"stemqd count: warning: no series beside the ratio ({exc})", file=sys.stderr)
                return None, None
    return None, None


def _ratio_labels(folder: Path):
    """The ratio's numerator and denominator labels of a result (None, None without)."""
    from ..analysis.statistics import RatioEstimate
    from ..batch import read_summary

    ratio = RatioEstimate.from_dict(read_summary(folder))
    return (ratio.numerator, ratio.denominator) if ratio else (None, None)


def _write_thickness(out, name, table, folder, reference, count, volume, repeat_A, parameters):
    """thickness_distribution.csv/.png and ratio_by_thickness.csv/.png of one image."""
    from ..analysis.column_thickness import dot_thickness, series_ratio
    from ..files import save_figure
    from ..provenance import write_table
    from ..report import ratio_thickness_figure, thickness_distribution_figure

    numerator, denominator = _ratio_labels(folder)
    ref, note = None, None
    series_path, series = reference
    if series is not None and numerator and denominator:
        try:
            ref = series_ratio(series, numerator, denominator, name=str(series_path))
        except InputError as exc:
            note = f"no series beside the ratio: {exc}"
    found = dot_thickness(
        table,
        numerator,
        denominator,
        count=count,
        volume=volume,
        used=in_statistics(table),
        reference=ref,
        repeat_A=repeat_A,
    )
    inputs = [folder / "columns.csv"]
    write_table(
        out / name / "thickness_distribution.csv",
        found["distribution"],
        parameters={**parameters, "thickness_from": count},
        inputs=inputs,
        results=found["stats"],
    )
    save_figure(
        thickness_distribution_figure(found["distribution"], title=f"{name}: counted thickness"),
        out / name / "thickness_distribution.png",
    )
    info = {
        "thickness_from": count,
        "distribution": "thickness_distribution.csv",
        "stats": found["stats"],
    }
    if found["ratio"] is None:
        info["ratio_by_thickness"] = {"skipped": found["ratio_skipped"]}
        return info
    label = f"{numerator}:{denominator}"
    ratio = found["ratio"]
    write_table(
        out / name / "ratio_by_thickness.csv",
        ratio,
        parameters={
            **parameters,
            "thickness_from": count,
            "ratio": label,
            "binned_by": found["binned_by"],
            "series": series_path if ref is not None else None,
        },
        inputs=inputs + ([series_path] if ref is not None else []),
    )
    save_figure(
        ratio_thickness_figure(
            ratio,
            ref,
            ratio_label=label,
            binned_by=found["binned_by"],
            title=f"{name}: {label} of the local cells against counted thickness",
        ),
        out / name / "ratio_by_thickness.png",
    )
    info["ratio_by_thickness"] = {
        "table": "ratio_by_thickness.csv",
        "ratio": label,
        "binned_by": found["binned_by"],
        "series": series_path if ref is not None else None,
        **({"note": note} if note else {}),
        "rows": ratio.to_dict(orient="records"),
    }
    return info


def _with_library(table, use, found):
    out = {
        "count_library": pd.array([pd.NA] * len(table), dtype="Int64"),
        "count_library_low": pd.array([pd.NA] * len(table), dtype="Int64"),
        "count_library_high": pd.array([pd.NA] * len(table), dtype="Int64"),
        "library_flag": np.full(len(table), "", dtype=object),
    }
    out["count_library"][use] = found["thickness_uc"].to_numpy()
    out["count_library_low"][use] = found["thickness_low_uc"].to_numpy()
    out["count_library_high"][use] = found["thickness_high_uc"].to_numpy()
    out["library_flag"][use] = found["library_flag"].to_numpy()
    table = table.assign(**out)
    disagree = (table["count"] < table["count_library_low"]) | (
        table["count"] > table["count_library_high"]
    )
    return table.assign(counts_disagree=disagree.fillna(False).astype(bool))


def _library_summary(library, tables, masks, counts):
    rows, start = [], 0
    for name, use in masks.items():
        found = library["per_image"][name]
        n = int(use.sum())
        stat = counts[start : start + n]
        start += n
        index = np.flatnonzero(use)
        bad = (stat < found["thickness_low_uc"].to_numpy()) | (
            stat > found["thickness_high_uc"].to_numpy()
        )
        table = tables[name][1]
        for k in np.flatnonzero(bad):
            rows.append(
                {
                    "image": name,
                    "row": int(index[k]),
                    "x_px": float(table["x_px"].iloc[index[k]]),
                    "y_px": float(table["y_px"].iloc[index[k]]),
                    "count": int(stat[k]),
                    "count_library": int(found["thickness_uc"].iloc[k]),
                    "count_library_low": int(found["thickness_low_uc"].iloc[k]),
                    "count_library_high": int(found["thickness_high_uc"].iloc[k]),
                }
            )
    return {
        "series": library["series"],
        "series_fit_model": library["fit_model"],
        "thickness_uc": library["thickness_uc"],
        "cross_section_A2": library["cross_section_A2"],
        "compared": len(counts),
        "agree": len(counts) - len(rows),
        "disagree": len(rows),
        "disagreements": rows,
    }


def handler(args: argparse.Namespace) -> int:
    """Count, write counts.csv per image, counting.json and counting.png; return 0."""
    from ..analysis.counting import count_atoms, library_offset
    from ..files import save_figure, write_json
    from ..provenance import record, write_table

    tables = read_result_tables(args.results)
    label, masks = _selection(tables, args.label, args.volume)
    pooled = np.concatenate(
        [
            pd.to_numeric(tables[name][1][args.volume], errors="coerce").to_numpy()[use]
            for name, use in masks.items()
        ]
    )
    what = f"columns{f' of type {label!r}' if label else ''}"
    if pooled.size == 0:
        raise InputError(f"no counted {what} in {', '.join(args.results)}")
    anchored = args.offset == "library"
    if anchored and not args.library:
        raise InputError("--offset library needs --library SERIES.csv")
    result = count_atoms(
        pooled,
        components_max=args.components_max,
        components=args.components,
        criterion=args.criterion,
        first_local_minimum=args.first_local_minimum,
        offset=0 if anchored else args.offset,
    )
    library = _library(args.library, tables, masks, label) if args.library else None
    if anchored:
        thickness = np.concatenate(
            [found["thickness_uc"].to_numpy() for found in library["per_image"].values()]
        )
        result = result.with_offset(library_offset(result.counts, thickness))
    reference = _reference(args, tables)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parameters = {
        "label": label,
        "volume": args.volume,
        "components_max": args.components_max,
        "components": args.components,
        "criterion": args.criterion,
        "first_local_minimum": args.first_local_minimum,
        "offset": args.offset,
        "library": args.library,
        "series": reference[0],
        "counted": "columns with an empty flag or flagged only 'edge margin'",
    }
    inputs = [path for path, _ in tables.values()] + ([args.library] if args.library else [])
    start = 0
    images = {}
    for name, use in masks.items():
        path, table = tables[name]
        n = int(use.sum())
        counts = pd.array([pd.NA] * len(table), dtype="Int64")
        probability = np.full(len(table), np.nan)
        counts[use] = result.counts[start : start + n]
        probability[use] = result.probability[start : start + n]
        start += n
        table = table.assign(count=counts, count_probability=probability)
        if library is not None:
            table = _with_library(table, use, library["per_image"][name])
        write_table(
            out / name / "counts.csv",
            table,
            parameters=parameters,
            inputs=[path],
            results={"counted": n, "not_counted": int(len(table) - n)},
        )
        images[name] = {"columns": len(table), "counted": n, "atoms": int(table["count"].sum())}
        try:
            images[name].update(_write_model(out, name, table, path.parent, args.repeat, label))
        except InputError as exc:
            images[name]["model"] = f"skipped: {exc}"
        images[name]["thickness"] = _write_thickness(
            out,
            name,
            table,
            path.parent,
            reference,
            "count_library" if library is not None else "count",
            args.volume,
            images[name].get("repeat_A"),
            parameters,
        )
        if images[name].get("model", "").startswith("skipped"):
            print(
                f"stemqd count: warning: {name}: no 3D model ({images[name]['model']})",
                file=sys.stderr,
            )
    unit = "Å²" if args.volume == "volume_norm" else "px² x intensity"
    summary = {
        **record(parameters, inputs),
        "images": images,
        "volume_unit": unit,
        "counting": result.to_dict(),
    }
    if library is not None:
        summary["library"] = _library_summary(library, tables, masks, result.counts)
    # Statistical counts are component indices: they are atoms only if the thinnest
    # component holds 1 + offset atoms (AtomCounts.warnings says when that is doubtful).
    summary["counting"]["offset_from"] = "library" if anchored else "--offset"
    summary["warnings"] = result.warnings(offset_given=anchored or args.offset != 0)
    for w in summary["warnings"]:
        print(f"stemqd count: warning: {w}", file=sys.stderr)
    write_json(out / "counting.json", summary)
    save_figure(
        counting_figure(pooled, result, criterion=args.criterion, unit=unit), out / "counting.png"
    )
    fit = result.fit
    print(
        f"{pooled.size} {what} from {len(tables)} image(s): {result.components} components "
        f"({result.selection}); one atom = {result.atom_volume:.5g} {unit}, width "
        f"{fit.width:.4g}, locations {np.array2string(fit.locations, precision=4)}"
    )
    for name, image in images.items():
        for type_, v in image["thickness"]["stats"].items():
            print(
                f"{name}: {type_} thickness ({image['thickness']['thickness_from']}) "
                f"{v['mean']:.2f} ± {v['std']:.2f} (mean ± s.d., {v['n_columns']} columns)"
            )
        for row in image["thickness"]["ratio_by_thickness"].get("rows", []):
            series = row.get("series_ratio", float("nan"))
            print(
                f"{name}:   {image['thickness']['ratio_by_thickness']['ratio']} at "
                f"{row['count']}: {row['ratio']:.4f} ± {row['ratio_sem']:.4f} "
                f"({row['n_cells']} cells); series {series:.4f}"
            )
    if library is not None:
        lib = summary["library"]
        print(
            f"library {args.library}: {lib['agree']} of {lib['compared']} columns agree with "
            f"the statistical count (within the library's one-standard-error range); "
            f"{lib['disagree']} disagree (counting.json lists them)"
        )
    print(
        f"counts in {out}/<name>/counts.csv (with thickness_map.png, model.xyz, "
        "thickness_distribution.csv/.png, ratio_by_thickness.csv/.png), counting.json, "
        "counting.png",
        file=sys.stderr,
    )
    return 0
