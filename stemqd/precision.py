"""The Cramér-Rao lower bound of column parameters under Poisson noise (algorithms.md III)."""

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
    y, x = np.mgrid[-w:w + 1, -w:w + 1].astype(float)
    inside = x**2 + y**2 <= radius_px**2
    x, y = x[inside], y[inside]
    g = np.exp(-0.5 * (x**2 + y**2) / sigma_px**2)
    lam = dose * (amplitude * g + background)
    a = amplitude * g
    d = dose * np.stack([g, a * x / sigma_px**2, a * y / sigma_px**2, a * x**2 / sigma_px**3,
                         a * y**2 / sigma_px**3, np.ones_like(g)])
    fisher = (d / lam) @ d.T
    return dict(zip(CRB_PARAMS, np.sqrt(np.diag(np.linalg.inv(fisher)))))
