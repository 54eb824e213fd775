"""Refinement of atomic columns: the entry point, and the study's per-column window fit.

:func:`refine_columns` fits either jointly (models ``round`` and ``gaussian7`` of
:mod:`stemqd.columns.joint`, which hold when columns overlap) or, with ``model="window7"``, by the
study's per-column window fit implemented here.

Model of one column in ``window7`` (a rotated elliptical Gaussian on a local offset)::

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
Jacobian below; the reference path hands each window to ``lmfit.Model`` (scipy's
``least_squares``). Both minimise the same sum of squares on the same pixels, so they agree
to the convergence tolerance.

Standard errors come from the Jacobian at the optimum: by default the sandwich estimator
(JᵀJ)⁻¹ [Σ r² j jᵀ] (JᵀJ)⁻¹, which is right when the noise variance varies across the window
as Poisson noise does; optionally the classical (JᵀJ)⁻¹ s², s² = RSS / (n_pixels - 7). Parameters are reported in the canonical
form sx >= sy, t in [0, pi).
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from ..jit import njit

PARAMS = ("amplitude", "x_px", "y_px", "sigma_x_px", "sigma_y_px", "theta_rad", "offset")
_A, _X, _Y, _SX, _SY, _T, _B = range(7)


def gaussian2d(x, y, amplitude, x0, y0, sigma_x, sigma_y, theta, offset):
    """Rotated elliptical Gaussian plus offset (the 7-parameter column model)."""
    c, s = np.cos(theta), np.sin(theta)
    dx, dy = x - x0, y - y0
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return amplitude * np.exp(-0.5 * (u**2 / sigma_x**2 + v**2 / sigma_y**2)) + offset


@njit(fastmath=True)
def _normal_equations(p, x, y, data, weights, meat=False):
    """JᵀJ (7 x 7), Jᵀr (7) and the cost of one window, without storing the Jacobian.

    With ``meat`` the first output is instead sum_k r_k² j_k j_kᵀ, the middle factor of the
    heteroscedasticity-consistent (sandwich) covariance.
    """
    jtj = np.zeros((7, 7))
    grad = np.zeros(7)
    cost = 0.0
    A, x0, y0, sx, sy, t, B = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    c, s = np.cos(t), np.sin(t)
    isx2, isy2 = 1.0 / (sx * sx), 1.0 / (sy * sy)
    j = np.empty(7)
    for k in range(x.shape[0]):
        w = weights[k]
        if w == 0.0:
            continue
        dx, dy = x[k] - x0, y[k] - y0
        u = c * dx + s * dy
        v = -s * dx + c * dy
        g = np.exp(-0.5 * (u * u * isx2 + v * v * isy2))
        ag = A * g
        r = (data[k] - ag - B) * w
        cost += r * r
        j[0] = g
        j[1] = ag * (u * c * isx2 - v * s * isy2)
        j[2] = ag * (u * s * isx2 + v * c * isy2)
        j[3] = ag * u * u * isx2 / sx
        j[4] = ag * v * v * isy2 / sy
        j[5] = -ag * u * v * (isx2 - isy2)
        j[6] = 1.0
        scale = r * r if meat else 1.0
        for a in range(7):
            ja = j[a] * w
            grad[a] += ja * r
            for b in range(a + 1):
                jtj[a, b] += ja * j[b] * w * scale
    for a in range(7):
        for b in range(a):
            jtj[b, a] = jtj[a, b]
    return jtj, grad, cost


@njit(parallel=True)
def _normal_batch(p, x, y, data, weights, meat):
    """JᵀJ (N, 7, 7) (or the sandwich's middle factor) and cost (N,) of every window."""
    n = p.shape[0]
    jtj = np.empty((n, 7, 7))
    cost = np.empty(n)
    for i in numba.prange(n):
        jtj[i], _, cost[i] = _normal_equations(p[i], x[i], y[i], data[i], weights[i], meat)
    return jtj, cost


@njit()
def _solve7(m, rhs):
    """Gaussian elimination with partial pivoting for one small dense system."""
    n = rhs.shape[0]
    a = m.copy()
    b = rhs.copy()
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(a[r, col]) > abs(a[piv, col]):
                piv = r
        if piv != col:
            for k in range(n):
                a[col, k], a[piv, k] = a[piv, k], a[col, k]
            b[col], b[piv] = b[piv], b[col]
        d = a[col, col]
        if d == 0.0:
            d = 1e-300
        for r in range(col + 1, n):
            f = a[r, col] / d
            for k in range(col, n):
                a[r, k] -= f * a[col, k]
            b[r] -= f * b[col]
    out = np.zeros(n)
    for r in range(n - 1, -1, -1):
        acc = b[r]
        for k in range(r + 1, n):
            acc -= a[r, k] * out[k]
        out[r] = acc / (a[r, r] if a[r, r] != 0.0 else 1e-300)
    return out


@njit(parallel=True)
def _lm_batch(p0, x, y, data, weights, free, max_iterations, xtol, seeds, radius):
    """Levenberg-Marquardt (Marquardt scaling) on every window, in parallel.

    scipy's ``least_squares`` solves one problem per Python call and numpy has no batched
    LM; with thousands of 7-parameter windows the per-call overhead would dominate, so the
    loop is compiled and runs over the windows in parallel threads. The normal equations
    are accumulated pixel by pixel with the analytic Jacobian of :func:`gaussian2d`.

    A step is rejected (like one that raises the cost) if it takes the centre more than
    ``radius`` from the seed or makes a width non-positive or wider than the window radius: the
    model is then no longer a column in this window, and an unconstrained LM would run off.

    Returns parameters (N, 7), iterations (N,) and converged (N,).
    """
    n = p0.shape[0]
    p = p0.copy()
    iterations = np.zeros(n, np.int64)
    converged = np.zeros(n, np.bool_)
    for i in numba.prange(n):
        pi = p0[i].copy()
        lam = 1e-3
        jtj, grad, cost = _normal_equations(pi, x[i], y[i], data[i], weights[i])
        done = False
        it = 0
        while it < max_iterations and not done:
            it += 1
            dmax = 0.0
            for a in range(7):
                if not free[a]:
                    grad[a] = 0.0
                    for b in range(7):
                        jtj[a, b] = 0.0
                        jtj[b, a] = 0.0
                dmax = max(dmax, jtj[a, a])
            lhs = jtj.copy()
            for a in range(7):
                # Marquardt scaling by diag(JᵀJ), floored so that a direction the data
                # cannot determine (theta of a round column) is damped, not singular.
                lhs[a, a] += lam * max(jtj[a, a], 1e-9 * dmax + 1e-30)
                if not free[a]:
                    lhs[a, a] = 1.0
            step = _solve7(lhs, grad)
            trial = pi + step
            off = np.hypot(trial[1] - seeds[i, 0], trial[2] - seeds[i, 1])
            if (
                trial[3] <= 0.0
                or trial[4] <= 0.0
                or off > radius
                or max(trial[3], trial[4]) > radius
            ):
                lam *= 4.0
                done = lam > 1e8
                continue
            # Most steps are accepted, so evaluate the trial's normal equations at once
            # rather than its cost first and the Jacobian again after acceptance.
            tjtj, tgrad, tcost = _normal_equations(trial, x[i], y[i], data[i], weights[i])
            if tcost <= cost:
                rel = (cost - tcost) / max(cost, 1e-300)
                small = True
                for a in range(7):
                    if abs(step[a]) >= xtol * (1.0 + abs(trial[a])):
                        small = False
                pi, jtj, grad, cost = trial, tjtj, tgrad, tcost
                lam = max(lam / 3.0, 1e-12)
                # Converged when an undamped step no longer changes the parameters or the
                # cost; a step shrunk by heavy damping says nothing about convergence.
                if (small or rel < 1e-10) and lam < 1e-2:
                    done = True
            else:
                lam *= 4.0
                # No step in any direction lowers the cost: at the minimum to rounding.
                if lam > 1e8:
                    done = True
        p[i] = pi
        iterations[i] = it
        converged[i] = done
    return p, iterations, converged


def _lmfit_window(p0, x, y, data, weights, max_iterations, seed, radius, vary_theta=True):
    """Fit one window with ``lmfit.Model``; parameters, evaluations, success, ModelResult.

    The bounds hold the model inside its window as the fast path does (centre within
    ``radius`` of the seed along each axis, widths at most ``radius``), so that neither path
    lets a runaway fit spill into its neighbours' windows.
    """
    import lmfit

    model = lmfit.Model(gaussian2d, independent_vars=["x", "y"])
    params = model.make_params(
        amplitude=p0[_A],
        x0=p0[_X],
        y0=p0[_Y],
        sigma_x=p0[_SX],
        sigma_y=p0[_SY],
        theta=p0[_T],
        offset=p0[_B],
    )
    for name, centre in (("x0", seed[0]), ("y0", seed[1])):
        params[name].set(min=centre - radius, max=centre + radius)
    for name in ("sigma_x", "sigma_y"):
        params[name].set(min=1e-6, max=radius)
    params["theta"].set(vary=vary_theta)
    keep = weights > 0
    # scipy's trust-region least_squares takes the bounds as they are. lmfit's default
    # (MINPACK's leastsq) maps a bounded parameter to arcsin(2 (v - min) / (max - min) - 1)
    # and steps it by 1.5e-8 of that internal value for its finite differences: a seed at
    # its box's midpoint gives an internal value of 0 (step 1.5e-8) or, after rounding, of
    # 1e-15, whose step moves the centre by less than its last bit; the derivative is then
    # 0 and the centre never leaves its seed (bench_columns: 14 of 150 columns stayed up to
    # 1 px off, position RMS 0.22 px against the fast path's 0.09 px on the same columns).
    result = model.fit(
        data[keep],
        params,
        x=x[keep],
        y=y[keep],
        method="least_squares",
        max_nfev=200 * max_iterations,
        fit_kws={"xtol": 1e-12, "ftol": 1e-14},
    )
    v = result.params
    p = np.array(
        [
            v["amplitude"].value,
            v["x0"].value,
            v["y0"].value,
            v["sigma_x"].value,
            v["sigma_y"].value,
            v["theta"].value,
            v["offset"].value,
        ]
    )
    return p, result.nfev, bool(result.success), result


def _covariance(p, x, y, data, weights, errors="classical"):
    """Parameter covariance per window, and the residual variance s² = RSS / (n - 7).

    ``classical``: (JᵀJ)⁻¹ s², the textbook least-squares covariance (what lmfit reports).
    ``robust``: the sandwich (JᵀJ)⁻¹ [sum_k r_k² j_k j_kᵀ] (JᵀJ)⁻¹ (White's HC0 estimator),
    correct when the noise variance varies over the window, as Poisson noise does (largest
    at the column peak, where the position information is).
    """
    jtj, cost = _normal_batch(p, x, y, data, weights, False)
    dof = np.maximum(weights.astype(bool).sum(axis=1) - 7, 1)
    s2 = cost / dof
    meat = _normal_batch(p, x, y, data, weights, True)[0] if errors == "robust" else None
    cov = np.full_like(jtj, np.nan)
    # A round column leaves theta undetermined; the other six parameters are still well
    # defined, so those windows use the 6 x 6 block without theta.
    remaining = np.ones(len(p), bool)
    for idx in (np.arange(7), np.array([k for k in range(7) if k != _T])):
        block = np.ix_(idx, idx)
        sub = jtj[:, idx][:, :, idx]
        cond = np.linalg.cond(sub)
        ok = remaining & np.isfinite(cond) & (cond < 1e14)
        if not ok.any():
            continue
        inv = np.linalg.inv(sub[ok])
        if meat is None:
            values = inv * s2[ok, None, None]
        else:
            values = inv @ meat[ok][:, idx][:, :, idx] @ inv
        full = cov[ok]
        full[:, block[0], block[1]] = values
        cov[ok] = full
        remaining &= ~ok
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


@njit()
def _quadratic_form(p):
    """A, x0, y0 and the a, b, c of A exp(-(a dx² + 2b dx dy + c dy²)) for one column."""
    c2, s2 = np.cos(p[_T]) ** 2, np.sin(p[_T]) ** 2
    ix, iy = 0.5 / (p[_SX] * p[_SX]), 0.5 / (p[_SY] * p[_SY])
    # For u = cos(t) dx + sin(t) dy, v = -sin(t) dx + cos(t) dy as in gaussian2d.
    return (
        p[_A],
        p[_X],
        p[_Y],
        c2 * ix + s2 * iy,
        0.5 * np.sin(2 * p[_T]) * (ix - iy),
        s2 * ix + c2 * iy,
    )


@njit(fastmath=True)
def _value(form, xk, yk):
    # The same arithmetic wherever a column is added or taken back out, so that the two
    # cancel exactly.
    A, x0, y0, a, b, c = form
    dx, dy = xk - x0, yk - y0
    return A * np.exp(-(a * dx * dx + 2.0 * b * dx * dy + c * dy * dy))


@njit()
def _neighbour_models(ny, nx, p, half, flat, xs, ys, weights):
    """Sum of all other columns' models on every window (N, P).

    Every column is rendered into one image within the box of half-width ``half`` around
    its rounded centre; each window then reads that image and takes its own column back
    out (same box, same arithmetic). A serial loop: the scatter into the image would race
    in parallel, and it is a small part of the fit.
    """
    n = p.shape[0]
    total = np.zeros(ny * nx)
    for i in range(n):
        form = _quadratic_form(p[i])
        cx, cy = int(np.rint(p[i, _X])), int(np.rint(p[i, _Y]))
        for yy in range(max(cy - half, 0), min(cy + half + 1, ny)):
            for xx in range(max(cx - half, 0), min(cx + half + 1, nx)):
                total[yy * nx + xx] += _value(form, xx, yy)
    others = np.empty(xs.shape)
    for i in range(n):
        form = _quadratic_form(p[i])
        cx, cy = int(np.rint(p[i, _X])), int(np.rint(p[i, _Y]))
        for k in range(xs.shape[1]):
            value = total[flat[i, k]]
            if weights[i, k] != 0.0 and abs(xs[i, k] - cx) <= half and abs(ys[i, k] - cy) <= half:
                value -= _value(form, xs[i, k], ys[i, k])
            others[i, k] = value
    return others


def refine_columns(
    image,
    positions_px,
    *,
    radius_px=None,
    model="round",
    labels=None,
    background="local",
    nn_px=None,
    sigma_px=None,
    method="fast",
    max_iterations=50,
    neighbour_iterations=20,
    tolerance_px=1e-4,
    errors="robust",
    background_level=None,
    smooth_rounds=None,
    smooth_rounds_max=None,
    max_shift_px=None,
):
    """Refine column positions and intensities by 2D Gaussian fits that handle overlap.

    Parameters
    ----------
    image : array_like, 2-D
        Image (background removed, or raw as a StatSTEM user fits it).
    positions_px : array_like, shape (N, 2)
        Seeds (x, y), px, e.g. from :func:`stemqd.columns.find_columns`.
    radius_px : float, optional
        ``window7``: radius of the fit disk around each seed, px (about half the
        nearest-neighbour column distance; required). Joint models: pixels within this
        distance of a column are fitted (default: the whole image).
    model : {"round", "gaussian7", "window7"}
        ``round``: joint fit, round Gaussians with one width per column type (StatSTEM's
        model, the default). ``gaussian7``: joint fit, rotated elliptical Gaussians with
        widths and rotation shared per type. ``window7``: the study's per-column
        7-parameter fit with a free offset per window and the neighbours subtracted; it
        collapses when sigma / nn >= 0.3. See :func:`stemqd.columns.joint.fit_columns_jointly`.
    labels : array_like of str, optional
        Column type per seed (joint models: one shape per type).
    background : {"constant", "smooth", "local", "spline"}
        Joint models: see :func:`stemqd.columns.joint.fit_columns_jointly`.
    nn_px : float, optional
        Nearest-neighbour distance, px (joint models; default: from the seeds).
    sigma_px : float, optional
        Initial width, px; default radius_px / 3 (``window7``) or the best of a coarse
        grid (joint).
    method : {"fast", "lmfit"}
        ``fast``: all windows at once by batched Levenberg-Marquardt with the analytic
        Jacobian. ``lmfit``: one ``lmfit.Model`` fit per column (transparent, slow).
    max_iterations : int
        Levenberg-Marquardt iterations per window and sweep.
    neighbour_iterations : int
        Maximum number of neighbour-subtraction sweeps.
    tolerance_px : float
        The sweeps stop when no centre moves by more than this, px.
    errors : {"robust", "classical"}
        Standard errors from the sandwich estimator (default), which stays right under
        Poisson noise, or from (JᵀJ)⁻¹ s² (classical, what lmfit reports), which is about
        15 % too small there (``benchmarks/bench_columns.py`` prints both against the
        Cramér-Rao bound).
    background_level : float, optional
        Joint fits with ``background="constant"``: hold the constant at this level, image
        units (:func:`stemqd.columns.joint.fit_columns_jointly`).
    smooth_rounds : int, optional
        Joint fits with ``background="smooth"`` or ``"local"``: at most this many rounds of
        background and shape (default that of
        :func:`stemqd.columns.joint.fit_columns_jointly`, where what each costs is measured).
    smooth_rounds_max : int, optional
        Joint fits with those backgrounds: the rounds go on up to this many where they
        have not settled and the central columns disagree with the image's width (default
        that of :func:`stemqd.columns.joint.fit_columns_jointly`).
    max_shift_px : float or array_like of shape (N,), optional
        Joint fits: each centre is held within this distance of its seed, px (default half
        the nearest-neighbour distance).

    Returns
    -------
    pandas.DataFrame
        One row per seed, in order: the seven parameters ``amplitude``, ``x_px``, ``y_px``,
        ``sigma_x_px``, ``sigma_y_px``, ``theta_rad``, ``offset`` and their standard errors
        (suffix ``_err``; NaN where undetermined, e.g. theta of a round column);
        with ``method="lmfit"``, ``attrs["lmfit_reports"]`` holds lmfit's fit report of
        every column;
        ``volume`` = 2 pi A sx sy (integrated intensity above the offset) and
        ``volume_err``; ``seed_x_px``, ``seed_y_px``; ``redchi`` (residual variance);
        ``sweeps``; ``converged``; ``flag`` ("" for a good fit, else the reasons, e.g.
        "not converged", "negative amplitude", "centre at window edge", "width out of range",
        "elongated (sx/sy > 4)", "too few pixels", "singular covariance"). Failed fits are
        flagged, never replaced by another estimate.
    """
    if model != "window7":
        from .joint import fit_columns_jointly

        return fit_columns_jointly(
            image,
            positions_px,
            fit_radius_px=radius_px,
            labels=labels,
            model=model,
            background=background,
            background_level=background_level,
            **({} if smooth_rounds is None else {"smooth_rounds": smooth_rounds}),
            **({} if smooth_rounds_max is None else {"smooth_rounds_max": smooth_rounds_max}),
            max_shift_px=max_shift_px,
            sigma_px=sigma_px,
            nn_px=nn_px,
            max_iterations=max_iterations,
            tolerance_px=tolerance_px,
            errors=errors,
        )
    if background_level is not None:
        raise ValueError("background_level holds the constant of a joint fit: not for window7")
    if smooth_rounds is not None or smooth_rounds_max is not None:
        raise ValueError(
            "smooth_rounds and smooth_rounds_max belong to the joint fits' backgrounds: "
            "not for window7"
        )
    if max_shift_px is not None:
        raise ValueError("max_shift_px holds the centres of a joint fit: not for window7")
    if radius_px is None:
        raise ValueError("model='window7' needs radius_px, the radius of each fit window")
    if method not in ("fast", "lmfit"):
        raise ValueError(f"method must be 'fast' or 'lmfit', got {method!r}")
    if errors not in ("classical", "robust"):
        raise ValueError(f"errors must be 'classical' or 'robust', got {errors!r}")
    image = np.asarray(image, dtype=np.float64)
    seeds = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
    n = len(seeds)
    columns = [
        *PARAMS,
        *(f"{k}_err" for k in PARAMS),
        "volume",
        "volume_err",
        "seed_x_px",
        "seed_y_px",
        "redchi",
        "sweeps",
        "converged",
        "flag",
    ]
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
    iterations = np.zeros(n, int)
    converged = np.zeros(n, bool)
    sweeps = 0
    all_free = np.ones(7, np.bool_)
    reports = [None] * n
    round_first = all_free.copy()
    round_first[_T] = False
    for sweep in range(max(1, neighbour_iterations)):
        sweeps = sweep + 1
        # Each column's model is rendered out to five widths (exp(-12.5) of its peak), using
        # the 99th percentile of the widths so that one runaway fit does not inflate every
        # tile; the column's own contribution is removed with the same truncation.
        reach = 5 * np.percentile(np.maximum(p[:, _SX], p[:, _SY]), 99)
        half = int(np.ceil(np.clip(reach, 3, 2.5 * radius_px)))
        others = _neighbour_models(image.shape[0], image.shape[1], p, half, flat, xs, ys, weights)
        data = data_raw - others
        previous = p.copy()
        if method == "fast":
            if sweep == 0:
                # Fit with the rotation fixed first: theta is undefined for a round start.
                p, _, _ = _lm_batch(
                    p, xs, ys, data, weights, round_first, max_iterations, 1e-8, seeds, radius_px
                )
            p, iterations, converged = _lm_batch(
                p, xs, ys, data, weights, all_free, max_iterations, 1e-8, seeds, radius_px
            )
        else:
            for i in range(n):
                if sweep == 0:
                    p[i], _, _, _ = _lmfit_window(
                        p[i],
                        xs[i],
                        ys[i],
                        data[i],
                        weights[i],
                        max_iterations,
                        seeds[i],
                        radius_px,
                        vary_theta=False,
                    )
                p[i], iterations[i], converged[i], result = _lmfit_window(
                    p[i], xs[i], ys[i], data[i], weights[i], max_iterations, seeds[i], radius_px
                )
                reports[i] = result.fit_report()
        moved = np.hypot(p[:, _X] - previous[:, _X], p[:, _Y] - previous[:, _Y])
        if np.all(moved[np.isfinite(moved)] < tolerance_px) and sweep > 0:
            break
    cov, s2 = _covariance(p, xs, ys, data, weights, errors)
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
    out.update(
        volume=volume,
        volume_err=volume_err,
        seed_x_px=seeds[:, 0],
        seed_y_px=seeds[:, 1],
        redchi=s2,
        sweeps=sweeps,
        converged=converged,
        flag=flags,
    )
    table = pd.DataFrame(out, columns=columns)
    if method == "lmfit":
        # lmfit's own report of each column's last fit (neighbours subtracted), in order.
        table.attrs["lmfit_reports"] = reports
    return table


def _flags(p, seeds, radius_px, converged, weights, err):
    reasons = [[] for _ in range(len(p))]

    def mark(mask, text):
        for i in np.flatnonzero(mask):
            reasons[i].append(text)

    mark(~converged, "not converged")
    mark(p[:, _A] <= 0, "negative amplitude")
    mark(
        np.hypot(p[:, _X] - seeds[:, 0], p[:, _Y] - seeds[:, 1]) > 0.95 * radius_px,
        "centre at window edge",
    )
    mark((p[:, _SY] <= 0.05) | (p[:, _SX] > 0.95 * radius_px), "width out of range")
    mark(p[:, _SX] > 4 * p[:, _SY], "elongated (sx/sy > 4)")
    mark(weights.astype(bool).sum(axis=1) < 8, "too few pixels")
    mark(~np.isfinite(err[:, [_A, _X, _Y, _B]]).all(axis=1), "singular covariance")
    return np.array(["; ".join(r) for r in reasons], dtype=object)


__all__ = ["gaussian2d", "refine_columns"]
