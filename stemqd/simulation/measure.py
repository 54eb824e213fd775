"""Measurement of simulated cell images: interpolation, blur, the column fitter and disc integrals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .parameters import SeriesParameters


def cell_images(full: np.ndarray, params: SeriesParameters) -> np.ndarray:
    """Blurred periodic cell images on the fit grid, [..., y, x], from ny x nx scan images.

    The blur is a Gaussian multiplier on the Fourier series; the interpolation zero-pads
    the series (exact for a band-limited periodic image sampled at or below Nyquist). An
    even-n Nyquist term is split between +/- n/2, as in :func:`scipy.signal.resample`.
    """
    ny, nx = full.shape[-2:]
    mx, my = params.fit_shape
    lx, ly = params.cell_A
    spec = np.fft.fft2(full)
    kx = np.fft.fftfreq(nx, d=lx / nx)
    ky = np.fft.fftfreq(ny, d=ly / ny)
    s = params.total_blur_sigma_A
    spec = spec * np.exp(-2 * np.pi**2 * s**2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    padded = np.zeros(spec.shape[:-2] + (my, mx), complex)
    for src, dst, wy in _pad_index(ny, my):
        for src2, dst2, wx in _pad_index(nx, mx):
            padded[..., dst, dst2] += wy * wx * spec[..., src, src2]
    return np.fft.ifft2(padded).real * (my * mx) / (ny * nx)


def _pad_index(n, m):
    """(source index, target index, weight) triples that zero-pad an n-point spectrum to m."""
    out = []
    for q in range(n):
        f = q if q < (n + 1) // 2 else q - n  # signed frequency
        if n % 2 == 0 and q == n // 2:
            out.append((q, n // 2, 0.5))
            out.append((q, m - n // 2, 0.5))
        else:
            out.append((q, f % m, 1.0))
    return out


def disc_integrals(images: np.ndarray, params: SeriesParameters) -> dict:
    """Integral of each periodic cell image over a disc around each column type, Å².

    Exact for the band-limited Fourier series: sum_k c_k exp(2 pi i k.c) D(k) with
    D(k) = r J1(2 pi |k| r) / |k| and D(0) = pi r².
    """
    from scipy.special import j1

    my, mx = images.shape[-2:]
    lx, ly = params.cell_A
    r = params.effective_disc_radius_A
    coef = np.fft.fft2(images) / (my * mx)
    ky, kx = np.meshgrid(
        np.fft.fftfreq(my, d=ly / my), np.fft.fftfreq(mx, d=lx / mx), indexing="ij"
    )
    kr = np.hypot(kx, ky)
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = np.where(kr > 0, r * j1(2 * np.pi * kr * r) / kr, np.pi * r**2)
    out = {}
    for typ, fracs in params.oriented.column_fracs.items():
        vals = []
        for fx, fy in fracs:
            phase = np.exp(2j * np.pi * (kx * fx * lx + ky * fy * ly))
            vals.append((coef * disc * phase).sum(axis=(-2, -1)).real)
        out[typ] = np.mean(vals, axis=0)
    return out


def _fit_cell_image(image: np.ndarray, params: SeriesParameters) -> dict:
    """Column fitter on one tiled cell image: volume (Å²) and peak per type, centre tile."""
    from ..columns.fit import refine_columns

    my, mx = image.shape[-2:]
    tiles = params.fit_tiles
    lx, ly = params.cell_A
    px, py = lx / mx, ly / my  # equal to 0.5 / my (see SeriesParameters.fit_shape)
    tiled = np.tile(image, (tiles, tiles))
    column_fracs = params.oriented.column_fracs
    seeds, labels = [], []
    for i in range(tiles + 1):
        for j in range(tiles + 1):
            for typ, fracs in column_fracs.items():
                for fx, fy in fracs:
                    x, y = (i + fx) * mx, (j + fy) * my
                    if x < tiles * mx and y < tiles * my:
                        seeds.append((x, y))
                        centre = (i == tiles // 2) and (j == tiles // 2)
                        labels.append(typ if centre else "")
    seeds = np.array(seeds, float)
    labels = np.array(labels)
    if params.fit_model == "window7":
        table = refine_columns(
            tiled, seeds, radius_px=params.effective_fit_radius_A / px, model="window7"
        )
    else:
        # as the pipeline fits an image: every column jointly, one shared width
        table = refine_columns(
            tiled,
            seeds,
            model=params.fit_model,
            background=params.fit_background,
            nn_px=params.oriented.nearest_neighbour_A() / px,
        )
    out = {}
    for typ in column_fracs:
        rows = table[labels == typ]
        out[typ] = {
            "volume": float(rows["volume"].mean()) * px * py,
            "peak": float(rows["amplitude"].mean()),
            "flag": ";".join(sorted(set(f for f in rows["flag"] if f))),
        }
    return out


def measure_cell_images(images: np.ndarray, params: SeriesParameters) -> dict:
    """Fitted and disc intensities of cell images [..., y, x] on the fit grid.

    Returns
    -------
    dict
        ``{(label, method): ndarray of shape images.shape[:-2]}`` (labels of the oriented
        cell's columns) for methods "volume" (Å²),
        "peak" (fraction of the probe) and "disc" (Å²), plus ``"flags"``: a set of fitter
        flags raised on any centre-tile column.
    """
    images = np.asarray(images, float)
    lead = images.shape[:-2]
    flat = images.reshape((-1,) + images.shape[-2:])
    types = params.oriented.labels
    out = {(t, meth): np.empty(len(flat)) for t in types for meth in ("volume", "peak")}
    flags = set()
    for n, img in enumerate(flat):
        res = _fit_cell_image(img, params)
        for t in types:
            out[(t, "volume")][n] = res[t]["volume"]
            out[(t, "peak")][n] = res[t]["peak"]
            if res[t]["flag"]:
                flags.add(f"{t}: {res[t]['flag']}")
    out = {k: v.reshape(lead) for k, v in out.items()}
    for t, v in disc_integrals(flat, params).items():
        out[(t, "disc")] = v.reshape(lead)
    out["flags"] = flags
    return out


__all__ = ["cell_images", "disc_integrals", "measure_cell_images"]
