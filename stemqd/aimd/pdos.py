"""Band-edge localisation from CP2K's projected DOS (Supplementary Figure 5).

CP2K's ``DFT%PRINT%PDOS`` writes one file per atomic kind (``<project>-k<n>-1.pdos``;
``-ALPHA_k<n>-`` / ``-BETA_k<n>-`` for UKS) and one per ``&LDOS`` atom list
(``-list<n>-1.pdos``), with a block per printed step (``APPEND T``, as
:func:`stemqd.aimd.cp2k_input` writes it): a header ``# Projected DOS for atomic kind Pb at
iteration step i = 12, E(Fermi) = ... a.u.``, the column names, then one row per MO: index,
eigenvalue (Hartree), occupation and the projection of the MO on the kind's basis functions
per angular momentum. The projection is Löwdin's, w_A,i = sum_{mu on A} ((S^1/2 c_i)_mu)^2, so the kinds'
weights of an MO add up to c_i^T S c_i = 1, and the occupation-weighted sum over the occupied
MOs is the Löwdin population of the kind (:func:`read_populations`, ``DFT%PRINT%LOWDIN``):
the check the tests make on a real run, where the sums agree with CP2K's printed Löwdin
populations to their 6 printed decimals (Mulliken's c S c partition differs by about 0.1 e
per kind).

The fraction of the hole (HOMO, the VBM) and of the electron (LUMO, the CBM) on each kind or
atom set is that MO's weight; :func:`band_edge_weights` takes it per step and
:func:`localisation` gives the per-step table of an MD run, its time average and the value
of the relaxed (last GEO_OPT) geometry. :func:`cube_weights` gives the same fractions in real
space from an MO cube file, integrated over nearest-atom regions.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .readers import read_text
from .units import HARTREE_EV

_FILE = re.compile(
    r"^(?P<project>.+)-(?:(?P<spin>ALPHA|BETA)_)?(?P<what>k|list)(?P<n>\d+)-1\.pdos(?:\.gz)?$"
)
_HEAD_KIND = re.compile(r"^# Projected DOS for atomic kind (\S+) at iteration step i =\s*(\d+)")
_HEAD_LIST = re.compile(
    r"^# Projected DOS for list\s+(\d+) of\s+(\d+) atoms, at iteration step i =\s*(\d+)"
)
_LDOS_NAME = re.compile(r"^\s*#\s*stemqd LDOS\s+(\d+)\s+(\S+)", re.MULTILINE)
_PROJECT = re.compile(r"^\s*PROJECT(?:_NAME)?\s+(\S+)", re.MULTILINE | re.IGNORECASE)
_RUN_TYPE = re.compile(r"^\s*RUN_TYPE\s+(\S+)", re.MULTILINE | re.IGNORECASE)
_TIMESTEP = re.compile(r"^\s*TIMESTEP\s+(\S+)", re.MULTILINE | re.IGNORECASE)


def read_pdos(path):
    """Read one CP2K ``.pdos`` file (kind or LDOS list), every printed step.

    Parameters
    ----------
    path : str or Path
        ``<project>-k<n>-1.pdos`` or ``<project>-list<n>-1.pdos`` (or gzipped).

    Returns
    -------
    pandas.DataFrame
        Columns ``step, mo, eigenvalue_eV, occupation, weight`` (the sum over the angular
        momentum columns); a step printed twice (a restart) keeps its last block; a
        truncated last block is dropped. ``attrs``: ``label`` (the kind's name, or
        ``list<n>``) and ``n_atoms`` (lists only).
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    blocks, label, n_atoms = [], None, None
    current = None
    for k, line in enumerate(lines):
        if line.startswith("#"):
            m = _HEAD_KIND.match(line)
            n = _HEAD_LIST.match(line)
            if m:
                label, step = m.group(1), int(m.group(2))
            elif n:
                label, n_atoms, step = f"list{n.group(1)}", int(n.group(2)), int(n.group(3))
            else:
                continue  # the column-name line
            current = {"step": step, "rows": []}
            blocks.append(current)
            continue
        if not line.strip():
            continue
        if current is None:
            raise InputError(f"{path}:{k + 1}: data before the first '# Projected DOS' header")
        parts = line.split()
        try:
            current["rows"].append([float(x) for x in parts])
        except ValueError:
            raise InputError(f"{path}:{k + 1}: unreadable PDOS row {line[:60]!r}") from None
    if not blocks:
        raise InputError(f"{path}: no '# Projected DOS' block; is this a CP2K .pdos file?")
    if len(blocks) > 1 and len(blocks[-1]["rows"]) < len(blocks[-2]["rows"]):
        blocks.pop()  # a run killed while writing its last block
    by_step = {b["step"]: b for b in blocks}  # the last block of a repeated step wins
    frames = []
    for step, b in sorted(by_step.items()):
        widths = {len(r) for r in b["rows"]}
        if not b["rows"] or len(widths) != 1 or min(widths) < 4:
            raise InputError(f"{path}: step {step} has an empty or ragged PDOS block")
        a = np.array(b["rows"])
        frames.append(
            pd.DataFrame(
                {
                    "step": step,
                    "mo": a[:, 0].astype(int),
                    "eigenvalue_eV": a[:, 1] * HARTREE_EV,
                    "occupation": a[:, 2],
                    "weight": a[:, 3:].sum(axis=1),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(label=label, n_atoms=n_atoms)
    return out


def _inputs(run_dir):
    """{project: (run_type, {list number: name}, timestep_fs)} from a folder's CP2K inputs."""
    found = {}
    for inp in sorted(Path(run_dir).glob("*.inp")):
        text = inp.read_text(errors="replace")
        m = _PROJECT.search(text)
        if m:
            rt = _RUN_TYPE.search(text)
            dt = _TIMESTEP.search(text)
            names = {int(k): v for k, v in _LDOS_NAME.findall(text)}
            found[m.group(1)] = (
                rt.group(1).upper() if rt else "ENERGY",
                names,
                float(dt.group(1)) if dt else None,
            )
    return found


def read_pdos_run(run_dir, project=None):
    """All PDOS files of one CP2K project in a folder, as one table per spin.

    Parameters
    ----------
    run_dir : str or Path
        Folder with the ``.pdos`` files (and the ``.inp`` that names the LDOS lists).
    project : str, optional
        CP2K project; default the only one with PDOS files in the folder.

    Returns
    -------
    pandas.DataFrame
        Columns ``spin`` (0 for RKS, 1/2 for UKS alpha/beta), ``step, mo, eigenvalue_eV,
        occupation`` and one ``w_<label>`` column per kind (its element name) or list (its
        name from the input's ``# stemqd LDOS k NAME`` comment, else ``list<k>``).
        ``attrs``: ``project``, ``kinds`` and ``lists`` (labels), ``run_type``,
        ``timestep_fs`` (from the input, MD only), ``files``.

    Notes
    -----
    CP2K 2023.1 with ``APPEND T`` replaces the file at the second print, so the block of the
    first printed step (step 0 of an MD, the start geometry of a GEO_OPT) is not in the
    files; every later step is.
    """
    run_dir = Path(run_dir)
    groups = {}
    for path in sorted(run_dir.iterdir()):
        m = _FILE.match(path.name)
        if m:
            groups.setdefault(m.group("project"), []).append((path, m))
    if not groups:
        raise InputError(
            f"{run_dir}: no CP2K .pdos files; print them with DFT%PRINT%PDOS "
            "(stemqd aimd cp2k --pdos N)"
        )
    if project is None:
        if len(groups) > 1:
            raise InputError(f"{run_dir}: PDOS files of {sorted(groups)}; choose one (--project)")
        project = next(iter(groups))
    if project not in groups:
        raise InputError(
            f"{run_dir}: no PDOS files of project {project!r} (found {sorted(groups)})"
        )
    run_type, names, timestep = _inputs(run_dir).get(project, ("ENERGY", {}, None))
    per_spin, kinds, lists, files = {}, [], [], []
    for path, m in groups[project]:
        spin = {"ALPHA": 1, "BETA": 2}.get(m.group("spin"), 0)
        frame = read_pdos(path)
        if m.group("what") == "k":
            label = frame.attrs["label"]
            (kinds if label not in kinds else []).append(label)
        else:
            label = names.get(int(m.group("n")), f"list{m.group('n')}")
            (lists if label not in lists else []).append(label)
        files.append(path)
        base = per_spin.get(spin)
        col = frame.rename(columns={"weight": f"w_{label}"})
        if base is None:
            per_spin[spin] = col
            continue
        key = ["step", "mo"]
        merged = base.merge(col[key + [f"w_{label}"]], on=key, how="inner")
        if len(merged) != len(base) or len(merged) != len(col):
            raise InputError(
                f"{path}: its steps or MOs differ from the other PDOS files of {project!r} "
                "(a file from another run?)"
            )
        per_spin[spin] = merged
    frames = [f.assign(spin=s) for s, f in sorted(per_spin.items())]
    out = pd.concat(frames, ignore_index=True)
    out = out[
        ["spin", "step", "mo", "eigenvalue_eV", "occupation"]
        + [c for c in out.columns if c.startswith("w_")]
    ]
    out.attrs.update(
        project=project,
        kinds=kinds,
        lists=lists,
        run_type=run_type,
        timestep_fs=timestep,
        files=[str(f) for f in files],
    )
    return out


def band_edge_weights(pdos, *, labels=None, occupied_fraction=0.5):
    """HOMO and LUMO energies and their weights on each kind or atom set, per step.

    Parameters
    ----------
    pdos : pandas.DataFrame
        :func:`read_pdos_run` table.
    labels : sequence of str, optional
        Kinds or lists to report (``w_<label>`` columns); default all.
    occupied_fraction : float
        An MO counts as occupied when its occupation is at least this fraction of the largest
        occupation (2 for RKS, 1 for UKS); the HOMO is the highest occupied MO over both
        spins, the LUMO the lowest unoccupied one.

    Returns
    -------
    pandas.DataFrame
        One row per step: ``step, homo_mo, homo_spin, homo_eV, lumo_mo, lumo_spin, lumo_eV,
        gap_eV``, ``homo_<label>`` and ``lumo_<label>`` weights, and ``homo_sum_kinds`` /
        ``lumo_sum_kinds`` (the kinds' weights added, 1 up to CP2K's printed precision).
    """
    all_labels = [c[2:] for c in pdos.columns if c.startswith("w_")]
    kinds = pdos.attrs.get("kinds", all_labels)
    labels = list(labels) if labels is not None else all_labels
    unknown = [x for x in labels if x not in all_labels]
    if unknown:
        raise InputError(
            f"atom set(s) {unknown} not in the PDOS output (available: {all_labels}); "
            "add &LDOS lists to the input for other atom sets"
        )
    occ_max = float(pdos["occupation"].max())
    if occ_max <= 0:
        raise InputError("no occupied MO in the PDOS output")
    rows = []
    for step, grp in pdos.groupby("step", sort=True):
        occupied = grp["occupation"] >= occupied_fraction * occ_max
        if not occupied.any() or occupied.all():
            raise InputError(
                f"step {step}: the PDOS holds no {'occupied' if not occupied.any() else 'empty'}"
                " MO; print unoccupied orbitals with PDOS NLUMO >= 1"
            )
        h = grp[occupied].loc[grp.loc[occupied, "eigenvalue_eV"].idxmax()]
        lu = grp[~occupied].loc[grp.loc[~occupied, "eigenvalue_eV"].idxmin()]
        row = {
            "step": int(step),
            "homo_mo": int(h["mo"]),
            "homo_spin": int(h["spin"]),
            "homo_eV": float(h["eigenvalue_eV"]),
            "lumo_mo": int(lu["mo"]),
            "lumo_spin": int(lu["spin"]),
            "lumo_eV": float(lu["eigenvalue_eV"]),
            "gap_eV": float(lu["eigenvalue_eV"] - h["eigenvalue_eV"]),
        }
        for edge, r in (("homo", h), ("lumo", lu)):
            for lab in labels:
                row[f"{edge}_{lab}"] = float(r[f"w_{lab}"])
            row[f"{edge}_sum_kinds"] = float(sum(r[f"w_{k}"] for k in kinds))
        rows.append(row)
    return pd.DataFrame(rows)


def localisation(run_dir, *, md_project=None, relaxed_project=None, labels=None, skip=0):
    """Per-step, time-averaged and relaxed HOMO/LUMO weights of a run folder.

    Parameters
    ----------
    run_dir : str or Path
        Folder of a CP2K run with PDOS output (e.g. ``stemqd aimd cp2k --pdos N``).
    md_project, relaxed_project : str, optional
        CP2K projects of the MD run and of the relaxation; default from the folder's inputs
        (``RUN_TYPE MD``: the last such project with PDOS files, preferring one named
        ``*production``; ``RUN_TYPE GEO_OPT``: its last step is the relaxed geometry).
    labels : sequence of str, optional
        Kinds or atom lists to report; default all.
    skip : int
        Leading MD steps to leave out of the time average.

    Returns
    -------
    dict
        ``steps`` (:func:`band_edge_weights` of the MD project, or None), ``relaxed`` (one
        row, or None), ``average`` (mean and standard deviation over the MD steps kept: a
        table ``quantity, mean, std, relaxed``), ``md_project``, ``relaxed_project`` and
        ``labels``.
    """
    run_dir = Path(run_dir)
    present = {m.group("project") for p in run_dir.iterdir() if (m := _FILE.match(p.name))}
    if not present:
        raise InputError(
            f"{run_dir}: no CP2K .pdos files; print them with DFT%PRINT%PDOS "
            "(stemqd aimd cp2k --pdos N)"
        )
    kinds = {p: v[0] for p, v in _inputs(run_dir).items() if p in present}
    if md_project is None:
        md = [p for p, rt in kinds.items() if rt == "MD"]
        prod = [p for p in md if p.endswith("production")]
        md_project = (prod or md or [None])[-1]
    if relaxed_project is None:
        geo = [p for p, rt in kinds.items() if rt == "GEO_OPT"]
        relaxed_project = geo[-1] if geo else None
    if md_project is None and relaxed_project is None:
        if len(present) != 1:
            raise InputError(
                f"{run_dir}: PDOS of {sorted(present)} and no inputs that say which is the MD "
                "run; pass --md-project / --relaxed-project"
            )
        md_project = next(iter(present))
    steps = relaxed = None
    if md_project is not None:
        md = read_pdos_run(run_dir, md_project)
        steps = band_edge_weights(md, labels=labels)
        if md.attrs["timestep_fs"]:
            steps.insert(1, "time_fs", steps["step"] * md.attrs["timestep_fs"])
    if relaxed_project is not None:
        relaxed = band_edge_weights(read_pdos_run(run_dir, relaxed_project), labels=labels)
        relaxed = relaxed.iloc[[-1]].reset_index(drop=True)
    ref = steps if steps is not None else relaxed
    cols = [c for c in ref.columns if c.endswith("_eV") or c.startswith(("homo_", "lumo_"))]
    cols = [c for c in cols if not c.endswith(("_mo", "_spin")) and c != "time_fs"]
    cols = list(dict.fromkeys(cols))
    kept = steps.iloc[int(skip) :] if steps is not None else None
    if kept is not None and len(kept) == 0:
        raise InputError(f"{run_dir}: no MD steps left after skipping {skip}")
    average = pd.DataFrame(
        {
            "quantity": cols,
            "mean": [float(kept[c].mean()) if kept is not None else np.nan for c in cols],
            "std": [float(kept[c].std(ddof=0)) if kept is not None else np.nan for c in cols],
            "relaxed": [float(relaxed[c].iloc[0]) if relaxed is not None else np.nan for c in cols],
        }
    )
    labels_out = [c[5:] for c in ref.columns if c.startswith("homo_")]
    labels_out = [x for x in labels_out if x not in ("mo", "spin", "eV", "sum_kinds")]
    return {
        "steps": steps,
        "relaxed": relaxed,
        "average": average,
        "md_project": md_project,
        "relaxed_project": relaxed_project,
        "labels": labels_out,
    }


_POP_ROW = re.compile(r"^\s+(\d+)\s+([A-Z][a-z]?)\s+(\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s*$")
_POP_HEAD = {"lowdin": "LOWDIN POPULATION ANALYSIS", "mulliken": "Mulliken Population Analysis"}


def read_populations(path, method="lowdin"):
    """Löwdin or Mulliken populations of every printed step of a CP2K log (RKS).

    Parameters
    ----------
    path : str or Path
        The ``.out`` log (or ``.out.gz``) of a run with ``DFT%PRINT%LOWDIN`` or ``MULLIKEN``.
    method : {"lowdin", "mulliken"}
        Which analysis.

    Returns
    -------
    list of pandas.DataFrame
        One table per printed analysis, in log order: ``atom`` (1-based), ``element``,
        ``kind`` (CP2K's kind number), ``population`` (electrons), ``charge``.
    """
    if method not in _POP_HEAD:
        raise InputError(f"method must be 'lowdin' or 'mulliken', not {method!r}")
    head = _POP_HEAD[method]
    blocks, rows, inside = [], [], False
    for line in read_text(path).splitlines():
        if head in line:
            inside, rows = True, []
            continue
        if inside:
            m = _POP_ROW.match(line)
            if m:
                rows.append(
                    (
                        int(m.group(1)),
                        m.group(2),
                        int(m.group(3)),
                        float(m.group(4)),
                        float(m.group(5)),
                    )
                )
            elif line.startswith(" # Total charge"):
                blocks.append(
                    pd.DataFrame(rows, columns=["atom", "element", "kind", "population", "charge"])
                )
                inside = False
    if not blocks:
        raise InputError(
            f"{path}: no {method} populations; print them with DFT%PRINT%{method.upper()}"
        )
    return blocks


def cube_weights(path, *, atom_sets=None):
    """Fraction of an MO's density |psi|^2 in each atom's region of a cube file.

    Each voxel goes to its nearest atom (Voronoi cells; ``scipy.spatial.cKDTree``), the
    density is summed per element and per given atom set and divided by the total, so the
    fractions of the elements add up to 1. This real-space partition is not the basis-set
    (Löwdin) partition of the PDOS: on a real CP2K run they agree within the tolerance
    stated in ``tests/aimd/test_pdos.py``.

    Parameters
    ----------
    path : str or Path
        Gaussian cube of one MO (CP2K ``MO_CUBES`` with ``WRITE_CUBE T``: psi, not psi^2),
        optionally gzipped.
    atom_sets : mapping of str to array_like of int, optional
        Named sets of 0-based atom indices, reported beside the elements.

    Returns
    -------
    dict
        ``{label: fraction}`` for each element (in order of first appearance) and set.
    """
    import io

    from ase.io.cube import read_cube
    from scipy.spatial import cKDTree

    try:
        cube = read_cube(io.StringIO(read_text(path)))
    except (ValueError, IndexError) as exc:
        raise InputError(f"{path}: not a readable cube file ({exc})") from None
    atoms, data = cube["atoms"], np.asarray(cube["data"], dtype=float)
    idx = np.indices(data.shape).reshape(3, -1).T
    points = np.asarray(cube["origin"], dtype=float) + idx @ np.asarray(cube["spacing"])
    # Voronoi assignment without periodic images: the MO cubes of an isolated dot are
    # non-periodic; the nearest-atom query is what the atom-centred regions are.
    _, owner = cKDTree(atoms.positions).query(points)
    dens = data.reshape(-1) ** 2
    per_atom = np.bincount(owner, weights=dens, minlength=len(atoms)) / dens.sum()
    symbols = np.array(atoms.get_chemical_symbols())
    out = {str(el): float(per_atom[symbols == el].sum()) for el in dict.fromkeys(symbols)}
    for name, indices in (atom_sets or {}).items():
        out[name] = float(per_atom[np.asarray(indices, dtype=int)].sum())
    return out


def occupied_populations(pdos):
    """Occupation-weighted sum of each kind's or list's MO weights, per spin and step.

    For a PDOS with every occupied MO (CP2K prints them all) this is the Löwdin population
    of the kind or atom list (electrons), the check against :func:`read_populations`.

    Returns
    -------
    pandas.DataFrame
        ``step`` and one column per label (summed over spins).
    """
    w = [c for c in pdos.columns if c.startswith("w_")]
    prod = pdos[w].mul(pdos["occupation"], axis=0)
    prod["step"] = pdos["step"]
    out = prod.groupby("step", sort=True).sum().reset_index()
    return out.rename(columns={c: c[2:] for c in w})


__all__ = [
    "band_edge_weights",
    "cube_weights",
    "localisation",
    "occupied_populations",
    "read_pdos",
    "read_pdos_run",
    "read_populations",
]
