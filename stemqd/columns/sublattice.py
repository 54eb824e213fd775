"""Registration of fitted column positions to a projected cell (sublattice assignment).

Given the fitted columns of an image and the :class:`~stemqd.columns.cell.ProjectedCell` of the
crystal, :func:`assign_sublattices` tells which column of the cell every fitted column
is. It works in four steps:

1. **Lattice estimate.** Difference vectors between nearby columns are clustered; a
   lattice vector of the crystal appears as a dense cluster (every column has a partner
   one lattice vector away). The pair of clusters whose lengths, length ratio and angle
   best match the cell's a and b (at the nominal calibration, within ±15 %) is the
   first estimate of the lattice in pixels.
2. **Registration.** Every symmetry of the 2D lattice metric (including the improper
   ones, i.e. a mirrored image) combined with every origin that puts a column onto a
   cell site is a hypothesis. Hypotheses are ranked by how many columns lie within
   ``tolerance`` x nearest-neighbour distance of a site; among the geometrically
   equivalent ones (e.g. the A and B-X lattices of a perovskite along [001] are both
   square lattices offset by (1/2, 1/2)) the one whose expected contrast ordering best
   matches the measured intensities (largest Spearman rank correlation) wins.
3. **Refinement.** Origin and lattice vectors are refined by linear least squares of
   the assigned positions against their ideal fractional coordinates, iterating the
   assignment, first near the centre of the pattern and then over all columns.
4. **Assignment.** Every column gets the nearest site, its cell indices and its misfit;
   columns with no site within tolerance are flagged ``"unexpected"``, a second column
   on an already occupied site ``"duplicate"``. Sites with no fitted column are simply
   absent (weak columns are never invented).

Pixel coordinates are (x, y) with y down the image rows; the mapping from the cell's
in-plane frame (Å) to pixels is ``px = origin + (frac @ cell.vectors_A) @ M`` with M a
similarity, improper (``mirrored``) when det M < 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import spatial, stats

from ..errors import FitError, InputError
from .cell import ProjectedCell

#: Relative window on the lattice-vector lengths at the nominal pixel size.
_LENGTH_WINDOW = 0.15
#: Largest deviation of the measured angle between a and b from the cell's, degrees.
_ANGLE_WINDOW_DEG = 8.0


@dataclass(frozen=True, eq=False)
class LatticeFit:
    """The crystal lattice measured in an image and its registration to the cell.

    Attributes
    ----------
    vectors_px : ndarray, shape (2, 2)
        Rows are the cell vectors a, b in pixels, (x, y).
    origin_px : ndarray, shape (2,)
        Position (x, y), px, of the cell origin (fractional (0, 0)) nearest the centroid
        of the columns.
    rotation_deg : float
        Direction of a in the image, degrees from +x towards +y (image rows).
    mirrored : bool
        True when the image shows the cell mirrored (det of the Å -> px map < 0). For a
        projection with mirror symmetry both choices fit equally and False is reported.
    a_A, b_A : float
        Measured lattice parameters at the given pixel size, Å.
    expected_a_A, expected_b_A : float
        The structure's in-plane lattice parameters, Å.
    rms_misfit_A : float
        Root-mean-square distance of the assigned columns to their ideal sites, Å.
    gamma_deg, expected_gamma_deg : float
        Measured and expected angle between a and b, degrees.
    n_assigned, n_unexpected : int
        Columns assigned to a site (duplicates excluded), and flagged as unexpected.
    contrast_correlation : float
        Spearman correlation between the expected contrast of the assigned sites and the
        measured intensities (NaN if undefined).
    """

    vectors_px: np.ndarray
    origin_px: np.ndarray
    rotation_deg: float
    mirrored: bool
    a_A: float
    b_A: float
    expected_a_A: float
    expected_b_A: float
    rms_misfit_A: float
    gamma_deg: float = float("nan")
    expected_gamma_deg: float = float("nan")
    n_assigned: int = 0
    n_unexpected: int = 0
    contrast_correlation: float = float("nan")

    @property
    def strain_a(self) -> float:
        """Relative deviation of the measured a from the structure's (a/a0 - 1)."""
        return self.a_A / self.expected_a_A - 1.0

    @property
    def strain_b(self) -> float:
        """Relative deviation of the measured b from the structure's (b/b0 - 1)."""
        return self.b_A / self.expected_b_A - 1.0

    def __str__(self) -> str:
        return (
            f"lattice: a = {self.a_A:.4f} Å (structure {self.expected_a_A:.4f}, "
            f"{100 * self.strain_a:+.2f} %), b = {self.b_A:.4f} Å (structure "
            f"{self.expected_b_A:.4f}, {100 * self.strain_b:+.2f} %), gamma = "
            f"{self.gamma_deg:.2f}° (structure {self.expected_gamma_deg:.2f}°)\n"
            f"rotation {self.rotation_deg:.2f}°, mirrored {self.mirrored}, rms misfit "
            f"{self.rms_misfit_A:.3f} Å, {self.n_assigned} assigned, "
            f"{self.n_unexpected} unexpected, contrast-intensity rank correlation "
            f"{self.contrast_correlation:.3f}"
        )


def assign_sublattices(
    positions_px,
    intensities,
    pixel_size_A,
    cell: ProjectedCell,
    *,
    tolerance=0.25,
    min_relative_contrast=0.0,
    registration=None,
):
    """Assign fitted columns to the columns of a projected cell.

    Parameters
    ----------
    positions_px : array_like, shape (N, 2)
        Fitted column centres (x, y), px.
    intensities : array_like, shape (N,) or None
        Measured column intensities (e.g. Gaussian volumes). They resolve origins that
        geometry alone cannot (which square lattice is Cs and which Pb-Br); with None the
        first geometrically equivalent registration is kept.
    pixel_size_A : float
        Å per pixel (nominal; the measured lattice may differ by up to ~15 %).
    cell : ProjectedCell
        The projected cell of the crystal (:func:`stemqd.columns.cell.projected_cell`).
    tolerance : float
        A column is assigned to a site within ``tolerance`` x the cell's nearest-neighbour
        column distance; otherwise it is flagged ``"unexpected"``.
    min_relative_contrast : float
        Sites expected fainter than this fraction of the brightest site are not offered
        for assignment (columns found there are flagged). 0 offers every site.
    registration : LatticeFit, optional
        The registration of an earlier assignment of the same crystal (e.g. of the columns
        as found, before the lattice completed them): its origin and vectors start the
        refinement and no other registration is tried, so the sublattices keep their
        labels from one assignment to the next.

    Returns
    -------
    table : pandas.DataFrame
        One row per input column, in input order: ``label``, ``site`` (of the assigned
        cell column; "" when unexpected), ``u``, ``v`` (the site's fractional coordinates;
        for unexpected columns the measured ones), ``i``, ``j`` (cell indices),
        ``misfit_A`` (distance to the ideal site of the fitted lattice, Å; for unexpected
        columns to the nearest site), ``expected_contrast`` (relative to the brightest
        site; NaN if unexpected) and ``assign_flag`` ("" if fine, ``"unexpected"`` or
        ``"duplicate"``).
    fit : LatticeFit

    Raises
    ------
    InputError
        Bad shapes or pixel size.
    FitError
        Too few columns, or no lattice matching the cell is found.
    """
    pos = np.asarray(positions_px, float)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise InputError(f"positions must have shape (N, 2), got {pos.shape}")
    n = len(pos)
    if intensities is None:
        inten = None
    else:
        inten = np.asarray(intensities, float).reshape(-1)
        if len(inten) != n:
            raise InputError(f"{len(inten)} intensities for {n} positions")
    if not (pixel_size_A and pixel_size_A > 0):
        raise InputError(f"pixel size must be positive, got {pixel_size_A}")
    if n < 4 or not np.all(np.isfinite(pos)):
        raise FitError(f"need at least 4 finite column positions to find a lattice, got {n}")

    rel = cell.relative_contrast()
    offered = np.flatnonzero(rel >= min_relative_contrast)
    if len(offered) == 0:
        raise InputError(f"min_relative_contrast={min_relative_contrast} leaves no site")
    sites = cell.fracs[offered]
    contrast = rel[offered]
    nn_A = cell.nearest_neighbour_A()
    tol_px = tolerance * nn_A / pixel_size_A

    # Register near the centre first, where an imperfect first lattice still indexes
    # correctly, then extend to the whole pattern. Several lattices can explain the
    # difference vectors equally well (e.g. all of SrTiO3 [001]'s columns together form a
    # square lattice of a/2, so (1/2, 1) is as populated as a): each candidate is
    # registered and the one putting most columns on sites wins.
    centre = pos.mean(axis=0)
    ref = pos[np.argsort(np.linalg.norm(pos - centre, axis=1))[:6]]
    span = 8.0 * max(cell.a_A, cell.b_A) / pixel_size_A
    local = np.linalg.norm(pos - ref[0], axis=1) <= span
    subsets = (local, local, np.ones(n, bool), np.ones(n, bool), np.ones(n, bool))
    if registration is not None:
        # refined from the centre out over growing disks: a distorted scan moves the
        # outer columns by cells against the earlier lattice
        origin = np.asarray(registration.origin_px, float)
        basis = np.asarray(registration.vectors_px, float)
        cell_px = max(cell.a_A, cell.b_A) / pixel_size_A
        growing = tuple(
            np.linalg.norm(pos - ref[0], axis=1) <= k * cell_px for k in (2.0, 4.0, 8.0)
        )
        subsets = (*growing, *subsets)
    else:
        origin, basis = _register(
            pos, inten, local, ref, cell, sites, contrast, pixel_size_A, tol_px
        )
    for subset in subsets:
        res = _match(pos[subset], origin, basis, np.linalg.inv(basis), sites, tol_px)
        origin, basis = _refine(pos[subset], res, sites, origin, basis)
    res = _match(pos, origin, basis, np.linalg.inv(basis), sites, tol_px)

    return _tabulate(pos, inten, pixel_size_A, cell, offered, sites, contrast, res, origin, basis)


def _register(pos, inten, local, ref, cell, sites, contrast, pixel_size_A, tol_px):
    """The best registration hypothesis (origin, basis in px) near the centre (step 2 of
    the module docstring)."""
    ops = _metric_symmetries(cell.vectors_A)
    best = None
    to_px = np.linalg.inv(cell.vectors_A)
    for basis0 in _candidate_bases(pos, cell, pixel_size_A):
        # Unmirrored hypotheses first: where the projection has a mirror line both fit
        # equally and the first one found is kept.
        ordered = sorted(ops, key=lambda p: np.linalg.det(to_px @ p @ basis0) < 0)
        for op in ordered:
            basis = op @ basis0
            inv = np.linalg.inv(basis)
            for origin in _origin_candidates(ref, sites, basis):
                res = _match(pos[local], origin, basis, inv, sites, tol_px)
                mirrored = bool(np.linalg.det(to_px @ op @ basis0) < 0)
                score = (
                    *_score(res, inten[local] if inten is not None else None, contrast),
                    (mirrored, abs(np.degrees(np.arctan2(basis[0, 1], basis[0, 0])))),
                )
                if best is None or _better(score, best[0], local.sum()):
                    best = (score, origin, basis)
    return best[1], best[2]


def _candidate_bases(pos, cell, pixel_size_A, max_candidates=4):
    """Candidate lattice vectors (rows, px) from clusters of inter-column difference vectors.

    Returns up to ``max_candidates`` distinct lattices, best supported first, each as a
    (2, 2) array whose rows match the cell's a and b in length ratio and angle.
    """
    va = cell.vectors_A / pixel_size_A
    la, lb = np.linalg.norm(va, axis=1)
    gamma0 = np.degrees(np.arccos(va[0] @ va[1] / (la * lb)))
    r_max = (1 + _LENGTH_WINDOW) * max(la, lb) + 1.0
    pairs = spatial.cKDTree(pos).query_pairs(r_max, output_type="ndarray")
    if len(pairs) == 0:
        raise FitError(
            "no two columns are within a lattice spacing of each other; "
            "check the pixel size and the projected cell"
        )
    d = pos[pairs[:, 1]] - pos[pairs[:, 0]]
    d = np.vstack([d, -d])
    length = np.linalg.norm(d, axis=1)
    window = lambda L: np.abs(length / L - 1) <= _LENGTH_WINDOW  # noqa: E731
    d = d[window(la) | window(lb)]
    eps = max(0.5, 0.12 * min(la, lb, cell.nearest_neighbour_A() / pixel_size_A))
    centres, counts = _cluster(d, eps)
    if len(centres) < 2:
        raise FitError(
            "no lattice matching the projected cell found in the column "
            "positions; check the pixel size and the material"
        )
    lengths = np.linalg.norm(centres, axis=1)
    found = []
    for i in np.flatnonzero(np.abs(lengths / la - 1) <= _LENGTH_WINDOW):
        for j in np.flatnonzero(np.abs(lengths / lb - 1) <= _LENGTH_WINDOW):
            if i == j:
                continue
            ratio = (lengths[j] / lengths[i]) / (lb / la)
            cosang = centres[i] @ centres[j] / (lengths[i] * lengths[j])
            angle = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
            if abs(ratio - 1) > 0.06 or abs(angle - gamma0) > _ANGLE_WINDOW_DEG:
                continue
            # Many partners make a lattice vector; closeness to the nominal lengths only
            # breaks ties between equally populated candidates.
            score = (
                counts[i] + counts[j] - 0.01 * (abs(lengths[i] / la - 1) + abs(lengths[j] / lb - 1))
            )
            found.append((score, i, j))
    if not found:
        raise FitError(
            "no pair of lattice vectors matching the projected cell "
            f"({cell.a_A:.3f} Å, {cell.b_A:.3f} Å, {cell.gamma_deg:.1f}°) found in "
            "the column positions; check the pixel size and the material"
        )
    found.sort(key=lambda t: -t[0])
    bases = []
    for score, i, j in found:
        if score < 0.5 * found[0][0] or len(bases) == max_candidates:
            break
        basis = np.array([centres[i], centres[j]])
        # The same lattice in another basis (an integer unimodular change) adds nothing:
        # the lattice symmetries are tried for every candidate anyway.
        if any(_same_lattice(basis, b) for b in bases):
            continue
        bases.append(basis)
    return bases


def _same_lattice(b1, b2, tol=0.05):
    p = b1 @ np.linalg.inv(b2)
    return bool(
        np.allclose(p, np.round(p), atol=tol) and abs(abs(np.linalg.det(np.round(p))) - 1) < 1e-9
    )


def _cluster(vectors, eps):
    """Greedy density clustering: (centres, member counts), densest first."""
    if len(vectors) == 0:
        return np.zeros((0, 2)), np.zeros(0, int)
    tree = spatial.cKDTree(vectors)
    density = tree.query_ball_point(vectors, eps, return_length=True)
    claimed = np.zeros(len(vectors), bool)
    centres, counts = [], []
    floor = max(2, 0.05 * density.max())
    for idx in np.argsort(-density, kind="stable"):
        if claimed[idx]:
            continue
        members = [m for m in tree.query_ball_point(vectors[idx], eps) if not claimed[m]]
        if len(members) < floor:
            continue
        centre = vectors[members].mean(axis=0)
        members = [m for m in tree.query_ball_point(centre, eps) if not claimed[m]]
        if not members:
            continue
        claimed[members] = True
        centres.append(vectors[members].mean(axis=0))
        counts.append(len(members))
    return np.array(centres).reshape(-1, 2), np.array(counts, int)


def _metric_symmetries(vectors_A):
    """Integer 2x2 matrices P (|det| = 1) with P G P^T = G for the cell metric G.

    These are the lattice's point-group operations in the reduced basis, identity first.
    """
    g = vectors_A @ vectors_A.T
    ops = []
    for entries in np.ndindex(3, 3, 3, 3):
        p = np.array(entries, float).reshape(2, 2) - 1
        if abs(abs(np.linalg.det(p)) - 1) > 1e-9:
            continue
        if np.allclose(p @ g @ p.T, g, rtol=1e-4, atol=1e-4 * np.abs(g).max()):
            ops.append(p)
    ops.sort(key=lambda p: not np.allclose(p, np.eye(2)))
    return ops


def _origin_candidates(ref, sites, basis):
    """Origins (px) that put one of the reference columns on one of the sites."""
    out = []
    for p in ref:
        for s in sites:
            o = p - s @ basis
            if not any(np.linalg.norm(o - q) < 1e-6 for q in out):
                out.append(o)
    return out


def _match(pos, origin, basis, inv, sites, tol_px):
    """Nearest site of every column: dict of site index, cell indices, distance (px)."""
    f = (pos - origin) @ inv  # (N, 2) fractional coordinates
    d = f[:, None, :] - sites[None, :, :]  # (N, M, 2)
    cells = np.round(d)
    r = (d - cells) @ basis
    dist = np.linalg.norm(r, axis=-1)
    # The rounded cell is the nearest image only for a reduced, not too oblique basis;
    # check the neighbours of that cell too.
    for shift in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)):
        alt = cells + np.array(shift)
        dist_alt = np.linalg.norm((d - alt) @ basis, axis=-1)
        better = dist_alt < dist
        dist = np.where(better, dist_alt, dist)
        cells = np.where(better[..., None], alt, cells)
    k = np.argmin(dist, axis=1)
    rows = np.arange(len(pos))
    return {
        "site": k,
        "cell": cells[rows, k].astype(int),
        "dist": dist[rows, k],
        "inlier": dist[rows, k] <= tol_px,
        "frac": f,
    }


def _score(res, inten, contrast):
    n_in = int(res["inlier"].sum())
    corr = 0.0
    if inten is not None and n_in >= 3:
        c = contrast[res["site"][res["inlier"]]]
        y = inten[res["inlier"]]
        if np.ptp(c) > 0 and np.ptp(y) > 0:
            corr = float(stats.spearmanr(c, y)[0])
    total = float(contrast[res["site"][res["inlier"]]].sum())
    rms = float(np.sqrt(np.mean(res["dist"][res["inlier"]] ** 2))) if n_in else np.inf
    return n_in, corr, total, rms


def _better(score, best, n):
    """Ranking of registration hypotheses (see the module docstring)."""
    slack = max(1, int(0.02 * n))
    if score[0] < best[0] - slack:
        return False
    if score[0] > best[0] + slack:
        return True
    # Geometrically equivalent: the contrast ordering decides, then brighter sites (a
    # weak site is a worse explanation of a found column), then the better fit.
    if abs(score[1] - best[1]) > 1e-9:
        return score[1] > best[1]
    if abs(score[2] - best[2]) > 1e-9 * max(1.0, abs(best[2])):
        return score[2] > best[2]
    if score[0] != best[0]:
        return score[0] > best[0]
    if abs(score[3] - best[3]) > 1e-9:
        return score[3] < best[3]
    # Symmetry-equivalent choices fit alike: keep an unmirrored one, and of those the a
    # closest to +x, so a dot turned by 1.5° reports 1.5°, not -88.5°.
    if score[4][0] != best[4][0]:
        return not score[4][0]
    return score[4][1] < best[4][1] - 1e-6


def _refine(pos, res, sites, origin, basis):
    """Least-squares origin and lattice vectors from the assigned inliers."""
    inl = res["inlier"]
    if inl.sum() < 3:
        return origin, basis
    ideal = res["cell"][inl] + sites[res["site"][inl]]  # fractional coordinates
    design = np.column_stack([np.ones(inl.sum()), ideal])
    if np.linalg.matrix_rank(design) < 3:
        return origin, basis
    sol, *_ = np.linalg.lstsq(design, pos[inl], rcond=None)
    return sol[0], sol[1:3]


def _tabulate(pos, inten, pixel_size_A, cell, offered, sites, contrast, res, origin, basis):
    inl = res["inlier"]
    k = res["site"]
    cols = [cell.columns[m] for m in offered]
    labels = np.array([cols[m].label if inl[t] else "" for t, m in enumerate(k)], object)
    site_names = np.array([cols[m].site if inl[t] else "" for t, m in enumerate(k)], object)
    # Report the cell origin nearest the centroid of the columns, indices relative to it.
    shift = np.round((pos.mean(axis=0) - origin) @ np.linalg.inv(basis))
    origin = origin + shift @ basis
    f = res["frac"] - shift
    res = dict(res, cell=res["cell"] - shift.astype(int))
    uv = np.where(inl[:, None], sites[k], f - np.floor(f))
    ij = np.where(inl[:, None], res["cell"], np.floor(f).astype(int))
    misfit = res["dist"] * pixel_size_A
    flags = np.where(inl, "", "unexpected").astype(object)
    # Two columns on one site: the farther one is a duplicate.
    seen = {}
    for t in np.argsort(misfit, kind="stable"):
        if not inl[t]:
            continue
        key = (int(k[t]), int(ij[t, 0]), int(ij[t, 1]))
        if key in seen:
            flags[t] = "duplicate"
        else:
            seen[key] = t
    table = pd.DataFrame(
        {
            "label": labels,
            "site": site_names,
            "u": uv[:, 0],
            "v": uv[:, 1],
            "i": ij[:, 0].astype(int),
            "j": ij[:, 1].astype(int),
            "misfit_A": misfit,
            "expected_contrast": np.where(inl, contrast[k], np.nan),
            "assign_flag": flags,
        }
    )
    good = flags == ""
    m = np.linalg.solve(cell.vectors_A, basis * pixel_size_A)  # Å (cell frame) -> Å (image)
    a_len, b_len = np.linalg.norm(basis, axis=1) * pixel_size_A
    gamma = np.degrees(np.arccos(basis[0] @ basis[1] / np.prod(np.linalg.norm(basis, axis=1))))
    corr = float("nan")
    if inten is not None and good.sum() >= 3:
        c, y = contrast[k[good]], inten[good]
        if np.ptp(c) > 0 and np.ptp(y) > 0:
            corr = float(stats.spearmanr(c, y)[0])
    fit = LatticeFit(
        vectors_px=basis,
        origin_px=origin,
        rotation_deg=float(np.degrees(np.arctan2(basis[0, 1], basis[0, 0]))),
        mirrored=bool(np.linalg.det(m) < 0),
        a_A=float(a_len),
        b_A=float(b_len),
        expected_a_A=cell.a_A,
        expected_b_A=cell.b_A,
        rms_misfit_A=float(np.sqrt(np.mean(misfit[good] ** 2))) if good.any() else np.nan,
        gamma_deg=float(gamma),
        expected_gamma_deg=cell.gamma_deg,
        n_assigned=int(good.sum()),
        n_unexpected=int((flags == "unexpected").sum()),
        contrast_correlation=corr,
    )
    return table, fit


def missing_sites(positions_px, lattice: LatticeFit, cell: ProjectedCell, keep, *, tolerance_px):
    """Sites of the fitted lattice that no column occupies.

    Weak columns next to bright ones (Br beside Pb-Br in CsPbBr3 [001] once sigma / nn
    exceeds about 0.3) make no local maximum, so they are never found; left out of a joint
    fit, their intensity goes into their neighbours (a Cs : Pb/Br ratio 7 % low at
    sigma / nn = 0.3, 15 % at 0.45). Every site of every cell spanned by the columns is
    predicted from the lattice; the ones farther than ``tolerance_px`` from every column
    and accepted by ``keep`` (e.g. inside the dot) are returned.

    Parameters
    ----------
    positions_px : array_like, shape (N, 2)
        Columns found (x, y), px.
    lattice : LatticeFit
        From :func:`assign_sublattices`.
    cell : ProjectedCell
    keep : callable
        ``keep(positions) -> bool array``: which predicted sites may be added.
    tolerance_px : float
        A site within this distance of a column is occupied, px.

    Returns
    -------
    positions : ndarray, shape (M, 2)
    labels : ndarray of str, shape (M,)
        The sites' column labels.
    """
    pos = np.asarray(positions_px, float).reshape(-1, 2)
    if len(pos) == 0:
        return np.empty((0, 2)), np.empty(0, object)
    basis = lattice.vectors_px
    frac = (pos - lattice.origin_px) @ np.linalg.inv(basis)
    lo = np.floor(frac.min(axis=0)).astype(int) - 1
    hi = np.ceil(frac.max(axis=0)).astype(int) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    cells = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
    fracs = cell.fracs
    grid = (cells[:, None, :] + fracs[None, :, :]).reshape(-1, 2)
    labels = np.tile(np.array([c.label for c in cell.columns], object), len(cells))
    predicted = lattice.origin_px + grid @ basis
    free = spatial.cKDTree(pos).query(predicted)[0] > tolerance_px
    ok = free & np.asarray(keep(predicted), bool)
    return predicted[ok], labels[ok]


__all__ = ["LatticeFit", "assign_sublattices", "missing_sites"]
