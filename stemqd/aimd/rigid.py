"""Removal of the six rigid-body degrees of freedom.

Each frame is centred on its centre of mass and rotated onto a reference by the mass-weighted
Kabsch (SVD) rotation R = argmin sum_i m_i |R r'_i - r'_i,ref|^2. At that optimum
sum_i m_i r'_i,ref x R r'_i = 0, the Eckart rotational condition (Kudin & Dymarsky, J. Chem.
Phys. 122, 224105 (2005)). Velocities lose the centre-of-mass velocity V and the rigid
rotation omega = I^-1 L and are rotated into the same frame: v_int = R [v - V - omega x r'].

All frames are processed at once: one batched 3x3 SVD per frame, no Python loop over frames.
When atom identities are unknown (e.g. a re-ordered or re-wrapped trajectory),
:func:`icp_align` alternates nearest-neighbour matching (per element) with the same Kabsch
step (iterative closest point, Besl & McKay, IEEE TPAMI 14, 239 (1992)).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError


def _as_frames(x, name):
    x = np.asarray(x, dtype=float)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(
            f"{name} must have shape (n_frames, n_atoms, 3) or (n_atoms, 3), not {x.shape}"
        )
    return x


def _weights(masses, n):
    if masses is None:
        return np.ones(n)
    w = np.asarray(masses, dtype=float).reshape(-1)
    if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"masses must be {n} non-negative numbers with a positive sum")
    return w


def kabsch_rotation(mobile, reference, weights=None):
    """Weighted Kabsch rotations of centred frames onto a centred reference.

    Parameters
    ----------
    mobile : array_like, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
        Centred coordinates (Å).
    reference : array_like, shape (n_atoms, 3)
        Centred reference coordinates (Å).
    weights : array_like, shape (n_atoms,), optional
        Weights (masses, amu).

    Returns
    -------
    ndarray, shape (n_frames, 3, 3) or (3, 3)
        Proper rotations R minimising sum_i w_i |R mobile_i - reference_i|^2.
    """
    single = np.ndim(mobile) == 2
    x = _as_frames(mobile, "mobile")
    ref = np.asarray(reference, dtype=float)
    w = _weights(weights, x.shape[1])
    # Cross-covariance H_ab = sum_i w_i x_ia ref_ib; R = V diag(1, 1, d) U^T with H = U S V^T
    # and d = sign det(V U^T) to exclude reflections.
    h = np.swapaxes(x * w[None, :, None], 1, 2) @ ref
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("fba,fcb->fac", vt, u)))
    d[d == 0] = 1.0
    vt[:, 2, :] *= d[:, None]
    rot = np.einsum("fba,fcb->fac", vt, u)
    return rot[0] if single else rot


def _centre(x, w):
    com = np.swapaxes(x, 1, 2) @ w / w.sum()
    return x - com[:, None, :], com


def _align_to(x_c, ref_c, w):
    rot = kabsch_rotation(x_c, ref_c, w)
    return x_c @ np.swapaxes(rot, 1, 2), rot


def remove_rigid_body(
    positions,
    masses=None,
    velocities=None,
    *,
    reference="first",
    max_iterations=20,
    tolerance_A=1e-10,
):
    """Remove translation and rotation from every frame (mass-weighted Kabsch / Eckart frame).

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3)
        Positions (Å), atoms in the same order in every frame.
    masses : array_like, shape (n_atoms,), optional
        Atomic masses (amu); None weights all atoms equally.
    velocities : array_like, shape (n_frames, n_atoms, 3), optional
        Velocities (Å/fs) at the same frames, returned as internal velocities.
    reference : {"first", "mean"} or array_like, shape (n_atoms, 3)
        ``"first"``: frame 0. ``"mean"``: iterate aligning to the mean aligned structure
        until it moves less than ``tolerance_A`` (RMS, Å). An array: that structure.
    max_iterations : int
        Cap on the ``"mean"`` iterations.
    tolerance_A : float
        Convergence of the mean reference (Å).

    Returns
    -------
    dict
        ``positions``: aligned frames, centred on the reference's centre of mass (Å);
        ``rotation`` (n_frames, 3, 3): R applied to the centred frame; ``com`` (n_frames, 3):
        each frame's centre of mass (Å); ``reference``: the reference structure (Å);
        ``iterations``; and, with velocities, ``velocities``: v_int = R [v - V - omega x r']
        (Å/fs) and ``angular_velocity`` (n_frames, 3) omega (rad/fs).
    """
    x = _as_frames(positions, "positions")
    w = _weights(masses, x.shape[1])
    x_c, com = _centre(x, w)
    iterations = 1
    if isinstance(reference, str):
        if reference not in ("first", "mean"):
            raise InputError(f"reference must be 'first', 'mean' or an array, not {reference!r}")
        ref = x[0]
    else:
        ref = np.asarray(reference, dtype=float)
        if ref.shape != x.shape[1:]:
            raise InputError(f"reference has shape {ref.shape}, frames have {x.shape[1:]}")
    ref_com = np.einsum("na,n->a", ref, w) / w.sum()
    ref_c = ref - ref_com
    aligned, rot = _align_to(x_c, ref_c, w)
    if isinstance(reference, str) and reference == "mean":
        # MDAnalysis AverageStructure + AlignTraj: re-align to the mean until it settles.
        for iterations in range(2, int(max_iterations) + 2):  # noqa: B007 (read after the loop)
            mean = aligned.mean(axis=0)
            mean -= np.einsum("na,n->a", mean, w) / w.sum()
            shift = np.sqrt(np.mean(np.sum((mean - ref_c) ** 2, axis=1)))
            ref_c = mean
            aligned, rot = _align_to(x_c, ref_c, w)
            if shift < tolerance_A:
                break
    out = {
        "positions": aligned + ref_com,
        "rotation": rot,
        "com": com,
        "reference": ref_c + ref_com,
        "iterations": iterations,
    }
    if velocities is not None:
        v = _as_frames(velocities, "velocities")
        if v.shape != x.shape:
            raise InputError(f"velocities have shape {v.shape}, positions {x.shape}")
        v_int, omega = internal_velocities(x_c, v, w, rot)
        out["velocities"] = v_int
        out["angular_velocity"] = omega
    return out


def internal_velocities(centred_positions, velocities, masses, rotation=None):
    """Velocities without centre-of-mass translation and rigid rotation.

    Parameters
    ----------
    centred_positions : ndarray, shape (n_frames, n_atoms, 3)
        r' = r - r_com (Å).
    velocities : ndarray, shape (n_frames, n_atoms, 3)
        v (Å/fs).
    masses : ndarray, shape (n_atoms,)
        m (amu).
    rotation : ndarray, shape (n_frames, 3, 3), optional
        R of the alignment; v_int is rotated into the aligned frame.

    Returns
    -------
    v_int : ndarray, shape (n_frames, n_atoms, 3)
        R [v - V - omega x r'] (Å/fs), V = sum m v / M, omega = I^-1 L.
    omega : ndarray, shape (n_frames, 3)
        Angular velocity (rad/fs).
    """
    r = np.asarray(centred_positions, dtype=float)
    v = np.asarray(velocities, dtype=float)
    m = np.asarray(masses, dtype=float)
    # Everything as batched 3x3 matrix products (much faster than einsum/cross on
    # (frames, atoms, 3) arrays).
    vcom = np.swapaxes(v, 1, 2) @ m / m.sum()
    dv = v - vcom[:, None, :]
    mr = np.swapaxes(r * m[None, :, None], 1, 2)  # (F, 3, N)
    moment = mr @ dv  # sum_i m_i r_a v_b
    ang = np.stack(
        [
            moment[:, 1, 2] - moment[:, 2, 1],
            moment[:, 2, 0] - moment[:, 0, 2],
            moment[:, 0, 1] - moment[:, 1, 0],
        ],
        axis=1,
    )  # L = sum m r x v
    second = mr @ r  # sum_i m_i r_a r_b
    inertia = np.trace(second, axis1=1, axis2=2)[:, None, None] * np.eye(3) - second
    # A linear or single-atom structure has a singular inertia tensor; lstsq gives the
    # minimum-norm omega (no rotation about the molecular axis).
    try:
        omega = np.linalg.solve(inertia, ang[..., None])[..., 0]
    except np.linalg.LinAlgError:
        omega = np.stack([np.linalg.lstsq(i, a, rcond=None)[0] for i, a in zip(inertia, ang)])
    # omega x r = r @ W^T with W the skew matrix of omega.
    wx, wy, wz = omega.T
    zero = np.zeros_like(wx)
    skew = np.stack(
        [
            np.stack([zero, -wz, wy], -1),
            np.stack([wz, zero, -wx], -1),
            np.stack([-wy, wx, zero], -1),
        ],
        axis=1,
    )
    v_int = dv - r @ np.swapaxes(skew, 1, 2)
    if rotation is not None:
        v_int = v_int @ np.swapaxes(rotation, 1, 2)
    return v_int, omega


def eckart_residual(aligned, reference, masses=None):
    """sum_i m_i r'_i,ref x r'_i of aligned frames: zero in the Eckart frame (amu Å^2).

    Returns
    -------
    ndarray, shape (n_frames, 3)
    """
    x = _as_frames(aligned, "aligned")
    w = _weights(masses, x.shape[1])
    x_c, _ = _centre(x, w)
    ref = np.asarray(reference, dtype=float)
    ref_c = ref - np.einsum("na,n->a", ref, w) / w.sum()
    return np.einsum("n,fna->fa", w, np.cross(ref_c[None], x_c))


def icp_align(
    positions,
    reference,
    *,
    symbols=None,
    reference_symbols=None,
    masses=None,
    max_iterations=50,
    tolerance_A=1e-12,
):
    """Iterative-closest-point alignment when atom identities are unknown.

    Each frame alternates (i) matching every atom to its nearest reference atom of the same
    element (a KD-tree per element) and (ii) the weighted Kabsch step on the matched pairs,
    until the matching stops changing and the RMS displacement of an iteration is below
    ``tolerance_A``. Frame k starts from frame k-1's rotation (re-centred), so a trajectory
    whose frames turn little between steps converges in a few iterations; like any ICP it
    needs the start to be within about half a neighbour distance of the answer. With index
    correspondence (matching = identity) it is the Kabsch fit of :func:`remove_rigid_body`.

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
        Positions (Å), atom order arbitrary and possibly different between frames.
    reference : array_like, shape (n_ref, 3)
        Reference structure (Å).
    symbols, reference_symbols : sequence of str, optional
        Elements of the mobile and reference atoms; matching is restricted to equal elements.
        ``symbols`` may be a list of per-frame sequences if the order changes.
    masses : array_like, shape (n_atoms,), optional
        Weights of the mobile atoms (amu).
    max_iterations : int
        Cap on ICP iterations per frame.
    tolerance_A : float
        Convergence of the per-iteration RMS displacement (Å).

    Returns
    -------
    dict
        ``positions``: aligned frames (Å, in the reference's frame); ``rotation``
        (n_frames, 3, 3) and ``translation`` (n_frames, 3) with aligned = R r + t;
        ``match`` (n_frames, n_atoms): index of the matched reference atom; ``rms_A``: RMS
        distance to the matched atoms; ``iterations`` per frame.
    """
    single = np.ndim(positions) == 2
    x = _as_frames(positions, "positions")
    ref = np.asarray(reference, dtype=float)
    nf, n, _ = x.shape
    w = _weights(masses, n)
    if (symbols is None) != (reference_symbols is None):
        raise InputError("give both symbols and reference_symbols, or neither")
    if symbols is not None:
        ref_sym = np.asarray(reference_symbols)
        frame_sym = (
            [np.asarray(s) for s in symbols] if np.ndim(symbols[0]) else [np.asarray(symbols)] * nf
        )
        trees = {
            el: (cKDTree(ref[ref_sym == el]), np.flatnonzero(ref_sym == el))
            for el in np.unique(ref_sym)
        }
    else:
        frame_sym = [np.zeros(n, dtype=int)] * nf
        trees = {0: (cKDTree(ref), np.arange(len(ref)))}
    out = np.empty_like(x)
    rots = np.empty((nf, 3, 3))
    trans = np.empty((nf, 3))
    matches = np.empty((nf, n), dtype=int)
    rms = np.empty(nf)
    iters = np.empty(nf, dtype=int)
    # Start from the centroid alignment; afterwards from the previous frame's rotation.
    rot = np.eye(3)
    for f in range(nf):
        sym = frame_sym[f]
        if len(sym) != n:
            raise InputError(f"frame {f}: {len(sym)} symbols for {n} atoms")
        # Keep the previous rotation but re-centre, so a drifting structure starts matched.
        t = ref.mean(axis=0) - rot @ (x[f].T.dot(w) / w.sum())
        match = np.full(n, -1)
        for it in range(1, int(max_iterations) + 1):  # noqa: B007 (read after the loop)
            cur = x[f] @ rot.T + t
            new = np.empty(n, dtype=int)
            for el, (tree, idx) in trees.items():
                sel = sym == el
                if sel.any():
                    new[sel] = idx[tree.query(cur[sel])[1]]
            missing = set(np.unique(sym)) - set(trees)
            if missing:
                raise InputError(f"elements {sorted(missing)} are absent from the reference")
            target = ref[new]
            wc = w / w.sum()
            xm = x[f].T.dot(wc)
            tm = target.T.dot(wc)
            r_new = kabsch_rotation(x[f] - xm, target - tm, w)
            t_new = tm - r_new @ xm
            moved = np.sqrt(np.mean(np.sum((x[f] @ r_new.T + t_new - cur) ** 2, axis=1)))
            rot, t = r_new, t_new
            same = np.array_equal(new, match)
            match = new
            if same and moved < tolerance_A:
                break
        aligned = x[f] @ rot.T + t
        out[f], rots[f], trans[f], matches[f], iters[f] = aligned, rot, t, match, it
        rms[f] = np.sqrt(np.mean(np.sum((aligned - ref[match]) ** 2, axis=1)))
    res = {
        "positions": out,
        "rotation": rots,
        "translation": trans,
        "match": matches,
        "rms_A": rms,
        "iterations": iters,
    }
    if single:
        res = {k: v[0] for k, v in res.items()}
    return res


__all__ = [
    "eckart_residual",
    "icp_align",
    "internal_velocities",
    "kabsch_rotation",
    "remove_rigid_body",
]
