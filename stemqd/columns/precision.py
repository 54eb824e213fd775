"""The Cramér-Rao lower bound of column parameters under Poisson noise (inverse Fisher matrix)."""

from __future__ import annotations

import numpy as np

#: Parameters of a round column in the order of the returned bounds.
CRB_PARAMS = ("amplitude", "x_px", "y_px", "sigma_x_px", "sigma_y_px", "offset")


def cramer_rao_bound(amplitude, sigma_px, background, dose, radius_px):
    """Lowest standard errors any unbiased estimator can reach for one round column.

    The expected counts in pixel k of the fit disk are
    lambda_k = dose (A g_k + B), g_k = exp(-r_k² / 2 sigma²), sampled at the pixel centres of a
    disk of ``radius_px`` around a column centred on a pixel; the Fisher matrix is
    F_ij = sum_k (d lambda_k / d theta_i)(d lambda_k / d theta_j) / lambda_k and the bound is
    sqrt(diag(F⁻¹)). Without background and pixelation the position bound reduces to
    sigma / sqrt(N), N the column's total counts. The rotation is left out: it is undefined
    for a round column.

    Parameters
    ----------
    amplitude, background : float
        Peak height and offset, in the same relative units.
    sigma_px : float
        Column width (standard deviation), px.
    dose : float
        Counts per pixel per unit of amplitude.
    radius_px : float
        Radius of the fit disk, px.

    Returns
    -------
    dict
        Bound per parameter name of :data:`CRB_PARAMS` (amplitude and offset in relative
        units, positions and widths in px).
    """
    w = int(np.ceil(radius_px))
    y, x = np.mgrid[-w : w + 1, -w : w + 1].astype(float)
    inside = x**2 + y**2 <= radius_px**2
    x, y = x[inside], y[inside]
    g = np.exp(-0.5 * (x**2 + y**2) / sigma_px**2)
    lam = dose * (amplitude * g + background)
    a = amplitude * g
    d = dose * np.stack(
        [
            g,
            a * x / sigma_px**2,
            a * y / sigma_px**2,
            a * x**2 / sigma_px**3,
            a * y**2 / sigma_px**3,
            np.ones_like(g),
        ]
    )
    fisher = (d / lam) @ d.T
    return dict(zip(CRB_PARAMS, np.sqrt(np.diag(np.linalg.inv(fisher)))))


def cramer_rao_bound_overlap(shape, positions_px, amplitude, sigma_px, background, dose):
    """Cramér-Rao bound of every column's parameters with all its neighbours in the model.

    Under overlap a column's position and height are correlated with its neighbours', so the
    isolated-column bound of :func:`cramer_rao_bound` is too low. Here the Fisher matrix of
    the whole image model lambda_k = dose (sum_n A_n g_n(k) + B) is built on every pixel, over
    all heights and positions, the shared width and the background (a dense matrix: meant
    for test images of up to a few hundred columns), and inverted.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx).
    positions_px : array_like, shape (N, 2)
    amplitude : float or array_like, shape (N,)
        Peak height of every column (or one for all), relative units.
    background : float or array_like, shape (ny, nx)
        Background, relative units: a constant, or an image whose shape is known and whose
        level is one free constant added to it.
    sigma_px : float
        Column width, px.
    dose : float
        Counts per pixel per unit of amplitude.

    Returns
    -------
    dict
        ``amplitude``, ``x_px``, ``y_px``: arrays (N,) of the bounds; ``sigma_px`` and
        ``offset``: floats.
    """
    pos = np.asarray(positions_px, float).reshape(-1, 2)
    y, x = np.mgrid[: shape[0], : shape[1]].astype(float)
    x, y = x.ravel(), y.ravel()
    dx = x[None, :] - pos[:, :1]
    dy = y[None, :] - pos[:, 1:]
    g = np.exp(-0.5 * (dx**2 + dy**2) / sigma_px**2)
    f = np.broadcast_to(np.asarray(amplitude, float).reshape(-1, 1), (len(pos), 1)) * g
    lam = dose * (f.sum(axis=0) + np.broadcast_to(background, shape).ravel())
    rows = [g, f * dx / sigma_px**2, f * dy / sigma_px**2]
    d = (
        np.vstack(
            [
                np.stack(rows, axis=1).reshape(-1, len(x)),
                (f * (dx**2 + dy**2) / sigma_px**3).sum(axis=0, keepdims=True),
                np.ones((1, len(x))),
            ]
        )
        * dose
    )
    fisher = (d / lam) @ d.T
    err = np.sqrt(np.diag(np.linalg.inv(fisher)))
    per = err[:-2].reshape(-1, 3)
    return {
        "amplitude": per[:, 0],
        "x_px": per[:, 1],
        "y_px": per[:, 2],
        "sigma_px": float(err[-2]),
        "offset": float(err[-1]),
    }


__all__ = ["CRB_PARAMS", "cramer_rao_bound", "cramer_rao_bound_overlap"]
