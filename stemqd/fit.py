"""Overlap-aware 7-parameter Gaussian refinement of atomic columns.

Model of one column (algorithms.md §E)::

    I(x, y) = B + A exp(-[u**2 / (2 sx**2) + v**2 / (2 sy**2)])
    u =  cos(t) (x - x0) + sin(t) (y - y0)
    v = -sin(t) (x - x0) + cos(t) (y - y0)

with amplitude A (peak height, not a volume), centre (x0, y0), widths sx, sy, rotation t
and a local offset B. Each column is fitted in a disk around its seed. Neighbouring
columns overlap (Cs and Pb-Br are 4.15 Å apart, Br sits 2.9 Å from Pb-Br), so before each
fit the current models of all other columns are subtracted from the window, and the sweep
is repeated until no centre moves by more than ``tolerance_px`` (the neighbour-subtraction
scheme of StatSTEM and Atomap, done for every column at once). Within a sweep, the fast
path solves all windows together with a batched Levenberg-Marquardt with the analytic
Jacobian below; the reference path hands each window to ``lmfit.Model`` (MINPACK). Both
minimise the same sum of squares on the same pixels, so they agree to the convergence
tolerance.

Standard errors are the square roots of the diagonal of (JᵀJ)⁻¹ s² at the optimum, with
s² = RSS / (n_pixels - 7) (the residual variance). Parameters are reported in the canonical
form sx >= sy, t in [0, pi).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PARAMS = ("amplitude", "x_px", "y_px", "sigma_x_px", "sigma_y_px", "theta_rad", "offset")
_A, _X, _Y, _SX, _SY, _T, _B = range(7)


def gaussian2d(x, y, amplitude, x0, y0, sigma_x, sigma_y, theta, offset):
    """Rotated elliptical Gaussian plus offset (the 7-parameter column model)."""
    c, s = np.cos(theta), np.sin(theta)
    dx, dy = x - x0, y - y0
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return amplitude * np.exp(-0.5 * (u**2 / sigma_x**2 + v**2 / sigma_y**2)) + offset


def _model_and_jacobian(p, x, y):
    """Batched model (N, P) and Jacobian (N, P, 7) for parameter rows p (N, 7)."""
    A, x0, y0, sx, sy, t, B = (p[:, k:k + 1] for k in range(7))
    c, s = np.cos(t), np.sin(t)
    dx, dy = x - x0, y - y0
    u = c * dx + s * dy
    v = -s * dx + c * dy
    isx2, isy2 = 1.0 / sx**2, 1.0 / sy**2
    g = np.exp(-0.5 * (u * u * isx2 + v * v * isy2))
    ag = A * g
    jac = np.empty(x.shape + (7,))
    jac[..., _A] = g
    jac[..., _X] = ag * (u * c * isx2 - v * s * isy2)
    jac[..., _Y] = ag * (u * s * isx2 + v * c * isy2)
    jac[..., _SX] = ag * u * u * isx2 / sx
    jac[..., _SY] = ag * v * v * isy2 / sy
    jac[..., _T] = -ag * u * v * (isx2 - isy2)
    jac[..., _B] = 1.0
    return ag + B, jac


def _lm_batch(p0, x, y, data, weights, *, max_iterations=50, free=None, xtol=1e-8):
    """Batched Levenberg-Marquardt (Marquardt scaling) over independent windows.

    numpy has no batched LM and scipy's ``least_squares`` solves one problem per call; all
    windows share the same small size, so one vectorised loop over the batch solves them
    together with 7 x 7 normal equations per column.

    Returns parameters (N, 7), number of iterations (N,) and a converged mask (N,).
    """
    p = p0.copy()
    n = len(p)
    lam = np.full(n, 1e-3)
    free = np.ones(7, bool) if free is None else free
    fixed = ~free
    model, jac = _model_and_jacobian(p, x, y)
    res = (data - model) * weights
    cost = np.einsum("np,np->n", res, res)
    active = np.ones(n, bool)
    iterations = np.zeros(n, int)
    eye = np.eye(7)
    for _ in range(max_iterations):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        iterations[idx] += 1
        jw = jac[idx] * weights[idx, :, None]
        jtj = np.einsum("npi,npj->nij", jw, jw)
        grad = np.einsum("npi,np->ni", jw, res[idx])
        jtj[:, fixed, :] = 0.0
        jtj[:, :, fixed] = 0.0
        grad[:, fixed] = 0.0
        diag = np.einsum("nii->ni", jtj)
        # Marquardt scaling by diag(JᵀJ), floored so that a direction the data cannot
        # determine (theta of a round column) is damped instead of making the system
        # singular.
        floor = 1e-9 * diag.max(axis=1, keepdims=True) + 1e-30
        scale = np.maximum(diag, floor)
        lhs = jtj + (lam[idx, None] * scale)[:, :, None] * eye + fixed[None, :, None] * eye
        step = np.linalg.solve(lhs, grad[..., None])[..., 0]
        trial = p[idx] + step
        # Widths must stay positive: a step that flips a sign is rejected like a bad one.
        ok_width = (trial[:, _SX] > 0) & (trial[:, _SY] > 0)
        tm, tj = _model_and_jacobian(trial, x[idx], y[idx])
        tres = (data[idx] - tm) * weights[idx]
        tcost = np.einsum("np,np->n", tres, tres)
        better = ok_width & (tcost <= cost[idx])
        acc = idx[better]
        p[acc] = trial[better]
        model[acc], jac[acc], res[acc] = tm[better], tj[better], tres[better]
        rel_cost = (cost[acc] - tcost[better]) / np.maximum(cost[acc], 1e-300)
        cost[acc] = tcost[better]
        lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
        rej = idx[~better]
        lam[rej] = lam[rej] * 4.0
        # Converged when an undamped step no longer changes the parameters or the cost; a
        # step shrunk by heavy damping says nothing about convergence.
        small_step = np.abs(step[better]).max(axis=1) < xtol * (1 + np.abs(p[acc]).max(axis=1))
        done = (small_step | (rel_cost < 1e-12)) & (lam[acc] < 1e-2)
        active[acc[done]] = False
        # No step along any direction lowers the cost any more: at the minimum to rounding.
        active[rej[lam[rej] > 1e8]] = False
    converged = ~active | (iterations < max_iterations)
    return p, iterations, converged, cost


def _lmfit_window(p0, x, y, data, weights, max_iterations, vary_theta=True):
    """Fit one window with ``lmfit.Model``; returns parameters, iterations, success."""
    import lmfit

    model = lmfit.Model(gaussian2d, independent_vars=["x", "y"])
    params = model.make_params(amplitude=p0[_A], x0=p0[_X], y0=p0[_Y], sigma_x=p0[_SX],
                               sigma_y=p0[_SY], theta=p0[_T], offset=p0[_B])
    params["sigma_x"].set(min=1e-6)
    params["sigma_y"].set(min=1e-6)
    params["theta"].set(vary=vary_theta)
    keep = weights > 0
    result = model.fit(data[keep], params, x=x[keep], y=y[keep],
                       max_nfev=200 * max_iterations,
                       fit_kws={"xtol": 1e-12, "ftol": 1e-14})
    v = result.params
    p = np.array([v["amplitude"].value, v["x0"].value, v["y0"].value, v["sigma_x"].value,
                  v["sigma_y"].value, v["theta"].value, v["offset"].value])
    return p, result.nfev, bool(result.success)


def _covariance(p, x, y, weights, cost):
    """Parameter covariance (JᵀJ)⁻¹ s² per window, s² = RSS / (n - 7)."""
    _, jac = _model_and_jacobian(p, x, y)
    jw = jac * weights[..., None]
    jtj = np.einsum("npi,npj->nij", jw, jw)
    dof = np.maximum(weights.astype(bool).sum(axis=1) - 7, 1)
    s2 = cost / dof
    cov = np.full_like(jtj, np.nan)
    cond = np.linalg.cond(jtj)
    ok = np.isfinite(cond) & (cond < 1e14)
    if ok.any():
        cov[ok] = np.linalg.inv(jtj[ok]) * s2[ok, None, None]
    # A round column leaves theta undetermined; the other six parameters are still well
    # defined, so invert the 6 x 6 block without theta for those.
    bad = np.flatnonzero(~ok)
    if bad.size:
        keep = [k for k in range(7) if k != _T]
        sub = jtj[bad][:, keep][:, :, keep]
        cond6 = np.linalg.cond(sub)
        ok6 = np.isfinite(cond6) & (cond6 < 1e14)
        for b, good in zip(bad, ok6):
            if good:
                inv = np.linalg.inv(jtj[b][np.ix_(keep, keep)]) * s2[b]
                cov[b][np.ix_(keep, keep)] = inv
    return cov, s2


def _canonical(p, cov):
    """sx >= sy and theta in [0, pi); covariance rows permuted alike."""
    p = p.copy()
    cov = cov.copy()
    swap = p[:, _SX] < p[:, _SY]
    p[swap, _SX], p[swap, _SY] = p[swap, _SY], p[swap, _SX].copy()
    p[swap, _T] += np.pi / 2
    perm = np.arange(7)
    perm[_SX], perm[_SY] = _SY, _SX
    cov[swap] = cov[swap][:, perm][:, :, perm]
    p[:, _T] = np.mod(p[:, _T], np.pi)
    return p, cov


def _windows(shape, seeds, radius_px):
    """Flat pixel indices, coordinates and weights of a disk window around every seed."""
    ny, nx = shape
    w = int(np.ceil(radius_px))
    off = np.arange(-w, w + 1)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    inside = (ox**2 + oy**2) <= radius_px**2
    ox, oy = ox[inside], oy[inside]
    cx = np.rint(seeds[:, 0]).astype(int)[:, None]
    cy = np.rint(seeds[:, 1]).astype(int)[:, None]
    xs, ys = cx + ox, cy + oy
    valid = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
    flat = np.clip(ys, 0, ny - 1) * nx + np.clip(xs, 0, nx - 1)
    return flat, xs.astype(float), ys.astype(float), valid.astype(float)


def _render(shape, p, half_width):
    """Sum of all column Gaussians (no offsets) and each column's own tile box."""
    ny, nx = shape
    off = np.arange(-half_width, half_width + 1)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    cx = np.rint(p[:, _X]).astype(int)[:, None]
    cy = np.rint(p[:, _Y]).astype(int)[:, None]
    xs, ys = cx + ox.ravel(), cy + oy.ravel()
    valid = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
    vals = gaussian2d(xs, ys, *(p[:, k:k + 1] for k in range(6)), 0.0)
    flat = (ys * nx + xs)[valid]
    image = np.bincount(flat, weights=vals[valid], minlength=ny * nx)
    return image, cx[:, 0], cy[:, 0]


def refine_columns(image, positions_px, *, radius_px, sigma_px=None, method="fast",
                   max_iterations=50, neighbour_iterations=20, tolerance_px=1e-4):
    """Refine column positions and intensities by overlap-aware 2D Gaussian fits.

    Parameters
    ----------
    image : array_like, 2-D
        Preprocessed image (background removed).
    positions_px : array_like, shape (N, 2)
        Seeds (x, y), px, e.g. from :func:`stemqd.columns.find_columns`.
    radius_px : float
        Radius of the fit disk around each seed, px (about half the nearest-neighbour
        column distance).
    sigma_px : float, optional
        Initial width, px; default radius_px / 3.
    method : {"fast", "lmfit"}
        ``fast``: all windows at once by batched Levenberg-Marquardt with the analytic
        Jacobian. ``lmfit``: one ``lmfit.Model`` fit per column (transparent, slow).
    max_iterations : int
        Levenberg-Marquardt iterations per window and sweep.
    neighbour_iterations : int
        Maximum number of neighbour-subtraction sweeps.
    tolerance_px : float
        The sweeps stop when no centre moves by more than this, px.

    Returns
    -------
    pandas.DataFrame
        One row per seed, in order: the seven parameters ``amplitude``, ``x_px``, ``y_px``,
        ``sigma_x_px``, ``sigma_y_px``, ``theta_rad``, ``offset`` and their standard errors
        (suffix ``_err``; NaN where undetermined, e.g. theta of a round column);
        ``volume`` = 2 pi A sx sy (integrated intensity above the offset) and
        ``volume_err``; ``seed_x_px``, ``seed_y_px``; ``redchi`` (residual variance);
        ``sweeps``; ``converged``; ``flag`` ("" for a good fit, else the reasons, e.g.
        "not converged", "negative amplitude", "centre left window", "width out of range",
        "elongated (sx/sy > 4)", "too few pixels", "singular covariance"). Failed fits are
        flagged, never replaced by another estimate.
    """
    if method not in ("fast", "lmfit"):
        raise ValueError(f"method must be 'fast' or 'lmfit', got {method!r}")
    image = np.asarray(image, dtype=np.float64)
    seeds = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
    n = len(seeds)
    columns = [*PARAMS, *(f"{k}_err" for k in PARAMS), "volume", "volume_err", "seed_x_px",
               "seed_y_px", "redchi", "sweeps", "converged", "flag"]
    if n == 0:
        return pd.DataFrame(columns=columns)
    sigma0 = radius_px / 3.0 if sigma_px is None else float(sigma_px)
    flat, xs, ys, weights = _windows(image.shape, seeds, radius_px)
    data_raw = image.ravel()[flat]
    centre = np.argmin((xs - seeds[:, :1]) ** 2 + (ys - seeds[:, 1:]) ** 2, axis=1)
    rows = np.arange(n)
    p = np.empty((n, 7))
    low = np.where(weights > 0, data_raw, np.inf).min(axis=1)
    p[:, _A] = np.maximum(data_raw[rows, centre] - low, 1e-6)
    p[:, _X], p[:, _Y] = seeds[:, 0], seeds[:, 1]
    p[:, _SX] = p[:, _SY] = sigma0
    p[:, _T] = 0.0
    p[:, _B] = low
    half = int(np.ceil(2.5 * radius_px))
    iterations = np.zeros(n, int)
    converged = np.zeros(n, bool)
    cost = np.zeros(n)
    sweeps = 0
    round_first = np.ones(7, bool)
    round_first[_T] = False
    for sweep in range(max(1, neighbour_iterations)):
        sweeps = sweep + 1
        total, cx, cy = _render(image.shape, p, half)
        others = total[flat] - _own(p, xs, ys, cx, cy, half)
        data = data_raw - others
        previous = p.copy()
        if method == "fast":
            if sweep == 0:
                # Fit with the rotation fixed first: theta is undefined for a round start.
                p, _, _, _ = _lm_batch(p, xs, ys, data, weights, max_iterations=max_iterations,
                                       free=round_first)
            p, iterations, converged, cost = _lm_batch(p, xs, ys, data, weights,
                                                       max_iterations=max_iterations)
        else:
            for i in range(n):
                if sweep == 0:
                    p[i], _, _ = _lmfit_window(p[i], xs[i], ys[i], data[i], weights[i],
                                               max_iterations, vary_theta=False)
                p[i], iterations[i], converged[i] = _lmfit_window(
                    p[i], xs[i], ys[i], data[i], weights[i], max_iterations)
            model, _ = _model_and_jacobian(p, xs, ys)
            cost = (((data - model) * weights) ** 2).sum(axis=1)
        moved = np.hypot(p[:, _X] - previous[:, _X], p[:, _Y] - previous[:, _Y])
        if np.all(moved[np.isfinite(moved)] < tolerance_px) and sweep > 0:
            break
    cov, s2 = _covariance(p, xs, ys, weights, cost)
    p, cov = _canonical(p, cov)
    err = np.sqrt(np.einsum("nii->ni", cov))
    volume = 2 * np.pi * p[:, _A] * p[:, _SX] * p[:, _SY]
    grad = np.zeros((n, 7))
    grad[:, _A] = 2 * np.pi * p[:, _SX] * p[:, _SY]
    grad[:, _SX] = 2 * np.pi * p[:, _A] * p[:, _SY]
    grad[:, _SY] = 2 * np.pi * p[:, _A] * p[:, _SX]
    volume_err = np.sqrt(np.einsum("ni,nij,nj->n", grad, np.nan_to_num(cov), grad))
    flags = _flags(p, seeds, radius_px, converged, weights, err)
    out = {k: p[:, i] for i, k in enumerate(PARAMS)}
    out.update({f"{k}_err": err[:, i] for i, k in enumerate(PARAMS)})
    out.update(volume=volume, volume_err=volume_err, seed_x_px=seeds[:, 0],
               seed_y_px=seeds[:, 1], redchi=s2, sweeps=sweeps, converged=converged,
               flag=flags)
    return pd.DataFrame(out, columns=columns)


def _own(p, xs, ys, cx, cy, half):
    """Each column's own model on its window, truncated to the same box as in _render."""
    own = gaussian2d(xs, ys, *(p[:, k:k + 1] for k in range(6)), 0.0)
    inside = (np.abs(xs - cx[:, None]) <= half) & (np.abs(ys - cy[:, None]) <= half)
    return np.where(inside, own, 0.0)


def _flags(p, seeds, radius_px, converged, weights, err):
    reasons = [[] for _ in range(len(p))]

    def mark(mask, text):
        for i in np.flatnonzero(mask):
            reasons[i].append(text)

    mark(~converged, "not converged")
    mark(p[:, _A] <= 0, "negative amplitude")
    mark(np.hypot(p[:, _X] - seeds[:, 0], p[:, _Y] - seeds[:, 1]) > radius_px,
         "centre left window")
    mark((p[:, _SY] <= 0.05) | (p[:, _SX] > 2 * radius_px), "width out of range")
    mark(p[:, _SX] > 4 * p[:, _SY], "elongated (sx/sy > 4)")
    mark(weights.astype(bool).sum(axis=1) < 8, "too few pixels")
    mark(~np.isfinite(err[:, [_A, _X, _Y, _B]]).all(axis=1), "singular covariance")
    return np.array(["; ".join(r) for r in reasons], dtype=object)
