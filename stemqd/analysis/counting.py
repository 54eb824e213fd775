"""Statistical atom counting: a Gaussian mixture of column volumes, StatSTEM's model.

The scattering cross-sections (volumes) of columns that hold 1, 2, 3, ... atoms form a
mixture of Gaussians with ordered locations and one shared width (the noise and the
column-to-column scatter of one count). For 1..N components the mixture is fitted by
expectation-maximisation (EM), the order is chosen with an information criterion (ICL by
default) and each column is assigned the count of its most probable component
(De Backer et al., Ultramicroscopy 134 (2013) 23; Van Aert et al., Phys. Rev. B 87 (2013)
064107; the procedure of StatSTEM's ``fitGMM``).

Initialisation follows StatSTEM: one component starts at the mean and standard deviation of
the data; the fit with k components starts from the k - 1 locations of the previous fit plus
one new location inserted in one of the k gaps (below the first, between neighbours, above
the last), with the previous width and equal proportions. StatSTEM runs every start to
convergence and keeps the best; so does :func:`fit_mixtures` up to
:data:`EXHAUSTIVE_COMPONENTS` components and :data:`SCREEN_SAMPLE` volumes. Beyond, every
start runs :data:`SCREEN_ITERATIONS` EM steps on a subsample of at most
:data:`SCREEN_SAMPLE` volumes and only the best continues to convergence on all of them:
6000 columns over 1-100 components take seconds instead of many minutes.

EM is hand-written (numba) rather than scikit-learn's ``GaussianMixture`` (whose "tied"
covariance is the same model) because the E-step here visits only the components within a
few widths of each volume (the data and the locations are sorted), so its cost grows with
the overlap rather than with n x k, and the iterations are accelerated with SQUAREM;
scikit-learn evaluates every volume against every component at every step.

Criteria are on StatSTEM's scale (twice the negative log-likelihood plus a penalty), with
2k free parameters for k components (k locations, k - 1 proportions, one width):
``AIC = -2 L + 4 k``, ``BIC = -2 L + 2 k ln n``, ``ICL = BIC + 2 EN``, where
``EN = -sum_ij t_ij ln t_ij`` is the entropy of the assignment probabilities t
(Biernacki et al., IEEE PAMI 22 (2000) 719).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..jit import njit

__all__ = [
    "CRITERIA",
    "SCREEN_SAMPLE",
    "EXHAUSTIVE_COMPONENTS",
    "MIN_COLUMNS",
    "MIN_COLUMNS_PER_COMPONENT",
    "SCREEN_ITERATIONS",
    "AtomCounts",
    "MixtureFit",
    "assign_counts",
    "column_model",
    "count_atoms",
    "count_columns",
    "fit_mixture",
    "fit_mixtures",
    "library_offset",
    "mixture_criteria",
    "select_components",
]

#: Order-selection criteria computed for every number of components.
CRITERIA = ("icl", "aic", "bic")

#: EM steps run from every start before the best ones are continued to convergence.
SCREEN_ITERATIONS = 3

#: Largest subsample of the volumes the starts are screened on; up to this many volumes
#: and :data:`EXHAUSTIVE_COMPONENTS` components every start runs to convergence.
SCREEN_SAMPLE = 1000

#: Up to this many components (and :data:`SCREEN_SAMPLE` volumes) every start runs to
#: convergence, as in StatSTEM.
EXHAUSTIVE_COMPONENTS = 20

#: Fewest columns counted at all.
MIN_COLUMNS = 10

#: Fewest columns per mixture component of the largest fit (2 parameters per component).
MIN_COLUMNS_PER_COMPONENT = 3

# Components farther than this many widths from a volume are left out of its E-step: their
# weight is below exp(-CUT**2 / 2) = 2e-11 of the nearest one's, far under the tolerance.
_CUT = 7.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class MixtureFit:
    """One Gaussian mixture with a shared width, fitted by EM.

    Attributes
    ----------
    locations : ndarray, shape (k,)
        Component means, ascending, in the unit of the volumes.
    width : float
        Shared standard deviation, in the unit of the volumes.
    proportions : ndarray, shape (k,)
        Mixing proportions, in the order of `locations`; they sum to 1.
    log_likelihood : float
        Log-likelihood of the data under the fit.
    entropy : float
        ``EN = -sum t ln t`` of the assignment probabilities.
    iterations : int
        EM steps of the start that was kept.
    converged : bool
        The relative change of the log-likelihood fell below the tolerance.
    """

    locations: np.ndarray
    width: float
    proportions: np.ndarray
    log_likelihood: float
    entropy: float
    iterations: int
    converged: bool

    @property
    def components(self) -> int:
        return len(self.locations)


@dataclass(frozen=True)
class AtomCounts:
    """The result of :func:`count_atoms`.

    Attributes
    ----------
    counts : ndarray of int, shape (n,)
        Atoms per column, in the order of the input volumes.
    probability : ndarray, shape (n,)
        Probability of the assigned count under the selected mixture.
    components : int
        The selected number of components.
    selection : str
        How it was selected (``"icl minimum"``, ``"icl first local minimum"``, ``"fixed"``).
    fits : list of MixtureFit
        The fits for 1, 2, ... components.
    criteria : dict of str to ndarray
        ``icl``, ``aic``, ``bic`` for 1, 2, ... components.
    offset : int
        Count of the first component minus one.
    atom_volume : float
        Volume of one atom: slope of the locations against the count (least squares).
    linearity : dict
        ``intercept`` (volume at count 0), ``r2``, ``max_relative_residual`` (largest
        |location - line| over the slope) and ``relative_increments`` (successive location
        differences over the slope).
    """

    counts: np.ndarray
    probability: np.ndarray
    components: int
    selection: str
    fits: list
    criteria: dict
    offset: int
    atom_volume: float
    linearity: dict = field(default_factory=dict)

    @property
    def fit(self) -> MixtureFit:
        """The selected mixture."""
        return self.fits[self.components - 1]

    def with_offset(self, offset: int) -> AtomCounts:
        """The same mixture with the thinnest component holding ``1 + offset`` atoms."""
        atom_volume, linearity = _linearity(
            self.fit.locations, np.arange(1, self.components + 1) + offset
        )
        return replace(
            self,
            counts=self.counts - self.offset + int(offset),
            offset=int(offset),
            atom_volume=atom_volume,
            linearity=linearity,
        )

    def warnings(self, offset_given: bool = False) -> list[str]:
        """Why the counts may not be numbers of atoms (empty when nothing is suspect).

        Parameters
        ----------
        offset_given : bool
            The offset was set by the user or anchored to a library: a single component is
            then a count, not only a group.
        """
        if self.components == 1 and not offset_given:
            return [
                f"one component: the {len(self.counts)} volumes form a single group, so "
                "the mixture cannot tell how many atoms its columns hold; every count is "
                f"1 + offset = {1 + self.offset} by convention, not a thickness. Count "
                "against a simulated library (--library with --offset library) or set "
                "the offset"
            ]
        intercept = self.linearity.get("intercept") or 0.0
        if self.components > 1 and abs(intercept) > 0.5 * abs(self.atom_volume):
            return [
                f"the mixture's locations extrapolate to {intercept:.4g} at count 0, "
                f"{intercept / self.atom_volume:+.1f} atoms' worth: the thinnest component "
                "is probably not 1 + offset atoms; set --offset or count against a "
                "--library (with --offset library)"
            ]
        return []

    def to_dict(self) -> dict:
        """JSON-ready summary: selection, the selected mixture and the criteria curves."""
        fit = self.fit
        return {
            "components": self.components,
            "selection": self.selection,
            "offset": self.offset,
            "locations": fit.locations,
            "counts_of_locations": np.arange(1, fit.components + 1) + self.offset,
            "width": fit.width,
            "proportions": fit.proportions,
            "atom_volume": self.atom_volume,
            "linearity": self.linearity,
            "n_columns": len(self.counts),
            "converged": fit.converged,
            "criteria": {
                "components": np.arange(1, len(self.fits) + 1),
                **self.criteria,
                "log_likelihood": np.array([f.log_likelihood for f in self.fits]),
            },
        }


@njit(fastmath=True)
def _estep(x, mu, sigma, pi, cut, entropy):
    """Log-likelihood, entropy (if `entropy`) and the responsibility sums sum_i t_ij and
    sum_i t_ij x_i of sorted data under sorted means.

    Each datum sees only the components within `cut` widths (and its nearest one), so the
    cost grows with n times the local overlap, not n times k.
    """
    n, k = x.size, mu.size
    inv = 0.5 / (sigma * sigma)
    reach = cut * sigma
    logpi = np.log(pi)
    r0 = np.zeros(k)
    r1 = np.zeros(k)
    a = np.empty(k)
    ll = 0.0
    en = 0.0
    near = 0
    for i in range(n):
        xi = x[i]
        while near + 1 < k and abs(mu[near + 1] - xi) <= abs(mu[near] - xi):
            near += 1
        lo = near
        while lo > 0 and xi - mu[lo - 1] < reach:
            lo -= 1
        hi = near + 1
        while hi < k and mu[hi] - xi < reach:
            hi += 1
        top = -np.inf
        for j in range(lo, hi):
            d = xi - mu[j]
            a[j] = logpi[j] - d * d * inv
            top = max(top, a[j])
        s = 0.0
        for j in range(lo, hi):
            a[j] = math.exp(a[j] - top)
            s += a[j]
        ll += top + math.log(s)
        w = 1.0 / s
        for j in range(lo, hi):
            t = a[j] * w
            r0[j] += t
            r1[j] += t * xi
        if entropy:
            for j in range(lo, hi):
                t = a[j] * w
                if t > 0.0:
                    en -= t * math.log(t)
    ll -= n * (math.log(sigma) + _LOG_SQRT_2PI)
    return ll, en, r0, r1


@njit()
def _update(x, mu, sigma, pi, cut):
    """One EM step: the log-likelihood at (mu, sigma, pi) and the updated parameters."""
    n = x.size
    ll, en, r0, r1 = _estep(x, mu, sigma, pi, cut, False)
    mu = mu.copy()
    # The shared variance: sum_ij t_ij (x_i - mu_j)^2 = sum_i x_i^2 - sum_j (sum_i t_ij x_i)^2
    # / sum_i t_ij at the updated means.
    var = np.sum(x * x)
    for j in range(mu.size):
        if r0[j] > 1e-300:
            mu[j] = r1[j] / r0[j]
            var -= r1[j] * r1[j] / r0[j]
    pi = r0 / n
    # Floor: a component on a single datum would drive the width to 0.
    sigma = math.sqrt(max(var / n, 1e-12))
    order = np.argsort(mu)
    return ll, mu[order], sigma, pi[order]


@njit()
def _em(x, mu, sigma, pi, max_iterations, tolerance, cut):
    """EM from (mu, sigma, pi) on sorted standardised data; returns the fit and its state.

    Accelerated with SQUAREM (Varadhan & Roland, Scand. J. Stat. 35 (2008) 335): two EM
    steps give a direction, an extrapolated point is stabilised by a third step and kept
    only where it raises the likelihood, so the fixed point is EM's; plain EM on
    overlapping components needs hundreds of steps.
    """
    k = mu.size
    old = -np.inf
    converged = False
    it = 0
    while it < max_iterations:
        ll0, mu1, s1, pi1 = _update(x, mu, sigma, pi, cut)
        it += 1
        if abs(ll0 - old) <= tolerance * max(abs(ll0), x.size):
            converged = True
            break
        old = ll0
        ll1, mu2, s2, pi2 = _update(x, mu1, s1, pi1, cut)
        it += 1
        t0 = np.concatenate((mu, np.array([sigma]), pi))
        r = np.concatenate((mu1, np.array([s1]), pi1)) - t0
        v = np.concatenate((mu2, np.array([s2]), pi2)) - t0 - 2 * r
        nv = math.sqrt(np.sum(v * v))
        alpha = -math.sqrt(np.sum(r * r)) / nv if nv > 0 else -1.0
        mu, sigma, pi = mu2, s2, pi2
        if alpha < -1.0:
            t = t0 - 2 * alpha * r + alpha * alpha * v
            tmu, ts, tpi = t[:k], t[k], t[k + 1 :]
            if ts > 0 and np.all(tpi > 0):
                order = np.argsort(tmu)
                tpi = tpi[order] / np.sum(tpi)
                llt, mut, st, pit = _update(x, tmu[order], ts, tpi, cut)
                it += 1
                if llt >= ll1:
                    mu, sigma, pi = mut, st, pit
    ll, en = _estep(x, mu, sigma, pi, cut, True)[:2]
    return mu, sigma, pi, ll, en, it, converged


def _standardise(volumes):
    x = np.asarray(volumes, dtype=float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise InputError("atom counting: the volumes must be finite and at least one")
    centre, scale = float(np.mean(x)), float(np.std(x))
    if scale == 0:
        raise InputError("atom counting: all volumes are equal; there is nothing to count")
    return np.sort((x - centre) / scale), centre, scale


def _to_fit(z_fit, centre, scale, n):
    mu, sigma, pi, ll, en, it, converged = z_fit
    return MixtureFit(
        locations=np.asarray(mu) * scale + centre,
        width=float(sigma * scale),
        proportions=np.asarray(pi),
        # The density of the volumes is that of the standardised data over the scale.
        log_likelihood=float(ll - n * math.log(scale)),
        entropy=float(en),
        iterations=int(it),
        converged=bool(converged),
    )


def fit_mixture(
    volumes, locations, width, proportions=None, *, max_iterations=1000, tolerance=1e-8
):
    """Fit one Gaussian mixture with a shared width by EM from a given start.

    Parameters
    ----------
    volumes : array_like, shape (n,)
        Column volumes (any unit; e.g. px² x counts or Å² x fraction of the beam).
    locations : array_like, shape (k,)
        Starting component means, in the unit of the volumes.
    width : float
        Starting shared standard deviation.
    proportions : array_like, shape (k,), optional
        Starting proportions; equal by default.
    max_iterations : int
        EM steps at most (StatSTEM: 1000).
    tolerance : float
        Stop when the log-likelihood changes by less than this fraction (StatSTEM: 1e-8).

    Returns
    -------
    MixtureFit
    """
    x, centre, scale = _standardise(volumes)
    mu = (np.sort(np.asarray(locations, float)) - centre) / scale
    pi = (
        np.full(mu.size, 1.0 / mu.size)
        if proportions is None
        else np.asarray(proportions, float)[np.argsort(locations)]
    )
    if width <= 0:
        raise InputError(f"atom counting: the starting width must be positive, not {width}")
    z = _em(x, mu, float(width) / scale, pi / pi.sum(), int(max_iterations), tolerance, _CUT)
    return _to_fit(z, centre, scale, x.size)


@njit()
def _screen(x, mu, sigma, steps, cut):
    """Log-likelihood after `steps` plain EM steps from each of StatSTEM's k starts.

    Start g inserts a location in gap g of the sorted `mu` (below the first, between
    neighbours, above the last) and takes equal proportions and the width `sigma`.
    """
    k = mu.size + 1
    edges = np.empty(k + 1)
    edges[0], edges[-1] = x[0], x[-1]
    edges[1:-1] = mu
    out = np.empty(k)
    pi0 = np.full(k, 1.0 / k)
    for g in range(k):
        m = np.sort(np.append(mu, 0.5 * (edges[g] + edges[g + 1])))
        s, p = sigma, pi0
        ll = -np.inf
        for _ in range(steps):
            ll, m, s, p = _update(x, m, s, p, cut)
        out[g] = ll
    return out


def fit_mixtures(
    volumes,
    components_max: int,
    *,
    max_iterations: int = 1000,
    tolerance: float = 1e-8,
    screen_iterations: int = SCREEN_ITERATIONS,
    screen_sample: int = SCREEN_SAMPLE,
) -> list:
    """Fit mixtures of 1..`components_max` components, each started from the previous one.

    See the module docstring for the starts (StatSTEM's) and the screening.

    Parameters
    ----------
    volumes : array_like, shape (n,)
    components_max : int
        Largest number of components.
    max_iterations, tolerance
        As for :func:`fit_mixture`.
    screen_iterations : int
        EM steps run from every start to choose the one continued to convergence.
    screen_sample : int
        The starts are screened on every m-th of the sorted volumes, m chosen to leave at
        most this many (all of them when there are fewer).

    Returns
    -------
    list of MixtureFit
        Element k - 1 is the fit with k components.

    Raises
    ------
    InputError
        Fewer than :data:`MIN_COLUMNS` volumes, or fewer than
        :data:`MIN_COLUMNS_PER_COMPONENT` per component.
    """
    x, centre, scale = _standardise(volumes)
    n = x.size
    components_max = int(components_max)
    if components_max < 1:
        raise InputError(f"atom counting: at least one component, not {components_max}")
    need = max(MIN_COLUMNS, MIN_COLUMNS_PER_COMPONENT * components_max)
    if n < need:
        raise InputError(
            f"atom counting: {n} columns are too few for up to {components_max} components "
            f"(at least {MIN_COLUMNS} columns and {MIN_COLUMNS_PER_COMPONENT} per component); "
            f"lower the number of components to {max(1, n // MIN_COLUMNS_PER_COMPONENT)} or "
            "pool more images"
        )
    sample = x[:: max(1, -(-n // max(1, int(screen_sample))))]
    mi, tol = int(max_iterations), float(tolerance)
    z = _em(x, np.zeros(1), 1.0, np.ones(1), mi, tol, _CUT)  # the exact one-Gaussian MLE
    fits = [_to_fit(z, centre, scale, n)]
    for k in range(2, components_max + 1):
        mu, sigma = z[0], z[1]
        edges = np.concatenate(([x[0]], mu, [x[-1]]))
        inserted = 0.5 * (edges[:-1] + edges[1:])
        pi = np.full(k, 1.0 / k)
        if n <= screen_sample and k <= EXHAUSTIVE_COMPONENTS:
            runs = [_em(x, np.sort(np.append(mu, m)), sigma, pi, mi, tol, _CUT) for m in inserted]
            z = max(runs, key=lambda r: r[3])
        else:
            g = int(np.argmax(_screen(sample, mu, sigma, max(1, int(screen_iterations)), _CUT)))
            z = _em(x, np.sort(np.append(mu, inserted[g])), sigma, pi, mi, tol, _CUT)
        fits.append(_to_fit(z, centre, scale, n))
    return fits


def mixture_criteria(fits, n: int) -> dict:
    """ICL, AIC and BIC of each fit on StatSTEM's scale (see the module docstring).

    Parameters
    ----------
    fits : sequence of MixtureFit
    n : int
        Number of volumes fitted.

    Returns
    -------
    dict of str to ndarray
        ``icl``, ``aic``, ``bic``, one value per fit.
    """
    ll = np.array([f.log_likelihood for f in fits])
    en = np.array([f.entropy for f in fits])
    k = np.array([f.components for f in fits], float)
    bic = -2 * ll + 2 * k * math.log(n)
    return {"icl": bic + 2 * en, "aic": -2 * ll + 4 * k, "bic": bic}


def select_components(values, *, first_local_minimum: bool = False, name: str = "icl") -> int:
    """The number of components at the minimum of a criterion curve.

    Parameters
    ----------
    values : array_like
        Criterion for 1, 2, ... components.
    first_local_minimum : bool
        The smallest k > 1 whose value is below both neighbours' instead of the global
        minimum (in-range only).
    name : str
        Criterion name, for the messages.

    Returns
    -------
    int

    Raises
    ------
    InputError
        The minimum is at the largest number of components fitted (it may lie beyond the
        range), or there is no interior local minimum.
    """
    v = np.asarray(values, float)
    kmax = len(v)
    if first_local_minimum:
        interior = np.flatnonzero((v[1:-1] < v[:-2]) & (v[1:-1] < v[2:])) + 2
        if interior.size == 0:
            raise InputError(
                f"atom counting: the {name.upper()} curve has no local minimum between 2 "
                f"and {kmax - 1} components; raise --components-max or fix --components"
            )
        return int(interior[0])
    best = int(np.argmin(v)) + 1
    if best == kmax and kmax > 1:
        raise InputError(
            f"atom counting: the {name.upper()} is lowest at the largest number of components "
            f"fitted ({kmax}), so its minimum may lie beyond the range; raise "
            "--components-max or fix --components"
        )
    return best


def assign_counts(volumes, fit: MixtureFit, offset: int = 0):
    """Count of the most probable component for each volume, and its probability.

    Parameters
    ----------
    volumes : array_like, shape (n,)
    fit : MixtureFit
    offset : int
        Added to the component index (1 for the lowest location).

    Returns
    -------
    counts : ndarray of int, shape (n,)
    probability : ndarray, shape (n,)
    """
    v = np.asarray(volumes, float)[:, None]
    with np.errstate(divide="ignore"):
        logp = np.log(fit.proportions)[None, :] - 0.5 * ((v - fit.locations) / fit.width) ** 2
    logp -= logp.max(axis=1, keepdims=True)
    t = np.exp(logp)
    t /= t.sum(axis=1, keepdims=True)
    best = np.argmax(t, axis=1)
    return best + 1 + int(offset), t[np.arange(len(v)), best]


def library_offset(counts, library_counts) -> int:
    """The offset that puts statistical counts on a simulated library's thickness scale.

    A mixture groups the columns but numbers its components from 1; a library assigns each
    column an absolute thickness. The offset is the median, over the columns, of the
    library count minus the statistical count, rounded, and at least ``-min(counts) + 1``
    so that no column is counted below one.

    Parameters
    ----------
    counts : array_like of int, shape (n,)
        Statistical counts (component index plus the current offset).
    library_counts : array_like of int, shape (n,)
        The library's nearest thickness of the same columns.

    Returns
    -------
    int
        The change of offset to apply (:meth:`AtomCounts.with_offset` takes the new
        offset, the current one plus this).

    Raises
    ------
    InputError
        No column has both counts.
    """
    c = np.asarray(counts, float)
    lib = np.asarray(library_counts, float)
    ok = np.isfinite(c) & np.isfinite(lib)
    if not ok.any():
        raise InputError("atom counting: no column has both a statistical and a library count")
    shift = int(np.round(np.median(lib[ok] - c[ok])))
    return max(shift, int(1 - c[ok].min()))


def _linearity(locations, counts):
    n = np.asarray(counts, float)
    if len(n) < 2:
        return float(locations[0] / n[0]), {"intercept": 0.0, "r2": None}
    slope, intercept = np.polyfit(n, locations, 1)
    resid = locations - (intercept + slope * n)
    ss = float(np.sum((locations - locations.mean()) ** 2))
    return float(slope), {
        "intercept": float(intercept),
        "r2": float(1 - np.sum(resid**2) / ss) if ss > 0 else None,
        "max_relative_residual": float(np.max(np.abs(resid)) / abs(slope)),
        "relative_increments": np.diff(locations) / slope,
    }


def count_atoms(
    volumes,
    *,
    components_max: int | None = None,
    components: int | None = None,
    criterion: str = "icl",
    first_local_minimum: bool = False,
    offset: int = 0,
    max_iterations: int = 1000,
    tolerance: float = 1e-8,
) -> AtomCounts:
    """Count atoms per column from its volume with a Gaussian mixture (StatSTEM's method).

    Parameters
    ----------
    volumes : array_like, shape (n,)
        Volumes of the columns of one type (any unit).
    components_max : int, optional
        Fit 1..`components_max` components and select with `criterion`; default 20 (or
        `components` when that is given).
    components : int, optional
        Use this number of components (the criteria are still computed up to it).
    criterion : {"icl", "aic", "bic"}
        Selection criterion.
    first_local_minimum : bool
        Select the first interior local minimum instead of the global minimum.
    offset : int
        Count of the lowest component minus one (StatSTEM's offset).
    max_iterations, tolerance
        As for :func:`fit_mixture`.

    Returns
    -------
    AtomCounts

    Raises
    ------
    InputError
        Too few volumes for the components asked for, or no criterion minimum in range.
    """
    if criterion not in CRITERIA:
        raise InputError(f"atom counting: criterion {criterion!r}; choose one of {CRITERIA}")
    if components is not None and components_max is not None and components > components_max:
        raise InputError(
            f"atom counting: --components {components} exceeds --components-max {components_max}"
        )
    kmax = components if components is not None else (components_max or 20)
    fits = fit_mixtures(volumes, kmax, max_iterations=max_iterations, tolerance=tolerance)
    crit = mixture_criteria(fits, len(np.ravel(volumes)))
    if components is not None:
        chosen, how = int(components), "fixed"
    else:
        chosen = select_components(
            crit[criterion], first_local_minimum=first_local_minimum, name=criterion
        )
        how = f"{criterion} {'first local minimum' if first_local_minimum else 'minimum'}"
    fit = fits[chosen - 1]
    counts, probability = assign_counts(volumes, fit, offset)
    atom_volume, linearity = _linearity(fit.locations, np.arange(1, chosen + 1) + offset)
    return AtomCounts(
        counts=counts,
        probability=probability,
        components=chosen,
        selection=how,
        fits=fits,
        criteria=crit,
        offset=int(offset),
        atom_volume=atom_volume,
        linearity=linearity,
    )


def count_columns(
    columns,
    used,
    *,
    components_max: int = 20,
    criterion: str = "icl",
    first_local_minimum: bool = False,
    series=None,
):
    """Count the columns of one image, each column type (``label``) on its own.

    Parameters
    ----------
    columns : pandas.DataFrame
        A columns table (``label``, ``volume``; with `series` also ``volume_norm`` and
        ``volume_norm_err``).
    used : array_like of bool
        The columns to count (the others get no count).
    components_max, criterion, first_local_minimum
        As for :func:`count_atoms`; a type with fewer columns is fitted with fewer
        components (:data:`MIN_COLUMNS_PER_COMPONENT` per component).
    series : pandas.DataFrame, optional
        A thickness series for library counting (:mod:`stemqd.analysis.library`). It
        also anchors the statistical counts: the mixture's offset is the one that best
        matches the library's thicknesses (:func:`library_offset`), so that ``count`` is
        in repeats along the beam even for a dot of one thickness (one component).

    Returns
    -------
    columns : pandas.DataFrame
        A copy with ``count`` and ``count_probability`` (and ``count_library``,
        ``count_library_low``, ``count_library_high``, ``library_flag``).
    summary : dict
        Per type: the :meth:`AtomCounts.to_dict` of its mixture, ``offset_from``
        (``"library"`` or ``"default"``), ``warnings`` (:meth:`AtomCounts.warnings`) and
        the library agreement; or ``{"error": message}`` where it could not be counted.
    """
    import pandas as pd

    from .library import count_from_library, library_curve

    out = columns.copy()
    used = np.asarray(used, bool)
    n = len(out)
    out["count"] = pd.array([pd.NA] * n, dtype="Int64")
    out["count_probability"] = np.nan
    if series is not None:
        for key in ("count_library", "count_library_low", "count_library_high"):
            out[key] = pd.array([pd.NA] * n, dtype="Int64")
        out["library_flag"] = ""
    labels = out["label"].fillna("").astype(str) if "label" in out else pd.Series("", out.index)
    summary = {}
    for label in sorted(set(labels[used])):
        sel = used & (labels == label).to_numpy() & np.isfinite(out["volume"].to_numpy(float))
        name = label or "all"
        try:
            kmax = max(1, min(components_max, int(sel.sum()) // MIN_COLUMNS_PER_COMPONENT))
            r = count_atoms(
                out["volume"].to_numpy(float)[sel],
                components_max=kmax,
                criterion=criterion,
                first_local_minimum=first_local_minimum,
            )
        except InputError as exc:
            summary[name] = {"error": str(exc)}
            continue
        found = None
        if series is not None:
            try:
                found = count_from_library(
                    out["volume_norm"].to_numpy(float)[sel],
                    out["volume_norm_err"].to_numpy(float)[sel],
                    *library_curve(series, label),
                )
            except (InputError, KeyError) as exc:
                library_error = str(exc)
            else:
                # The library anchors the mixture's numbering: component k holds k + offset
                # repeats, the offset that best matches the library's thicknesses.
                shift = library_offset(r.counts, found["thickness_uc"].to_numpy())
                r = r.with_offset(r.offset + shift)
        out.loc[sel, "count"] = r.counts
        out.loc[sel, "count_probability"] = r.probability
        summary[name] = r.to_dict()
        summary[name]["offset_from"] = "library" if found is not None else "default"
        summary[name]["warnings"] = r.warnings(offset_given=found is not None)
        if series is None:
            continue
        if found is None:
            summary[name]["library"] = {"error": library_error}
            continue
        for key, col in (
            ("count_library", "thickness_uc"),
            ("count_library_low", "thickness_low_uc"),
            ("count_library_high", "thickness_high_uc"),
            ("library_flag", "library_flag"),
        ):
            out.loc[sel, key] = found[col].to_numpy()
        agree = (r.counts >= found["thickness_low_uc"]) & (r.counts <= found["thickness_high_uc"])
        summary[name]["library"] = {"agree": int(agree.sum()), "compared": int(sel.sum())}
    return out, summary


def _composition(label):
    """Atoms of one repeat of a column label: ``"PbBr"`` -> ["Pb", "Br"], ``"O2"`` -> ["O", "O"]."""
    from ase.data import atomic_numbers
    from ase.formula import Formula

    try:
        atoms = list(Formula(str(label)))
    except ValueError:
        atoms = []
    if not atoms or any(el not in atomic_numbers for el in atoms):
        raise InputError(
            f"column label {label!r} is not a composition (e.g. 'Pt', 'PbBr', 'O2'); "
            "give the element of the counted columns"
        )
    return atoms


def column_model(x_A, y_A, counts, labels, repeat_A):
    """A 3D model of counted columns, each centred along the beam, as ase.Atoms.

    A column counted n repeats holds n copies of its label's composition per repeat,
    spaced evenly along the beam (z) within each repeat (Pb and Br of a PbBr column along
    cubic [001] alternate every a/2), and is centred at z = 0 (StatSTEM's 3D model makes the
    same choice: a count says how many atoms, not where along the beam).

    Parameters
    ----------
    x_A, y_A : array_like
        Column positions, Å.
    counts : array_like of int
        Repeats per column (0 or missing: no atoms).
    labels : array_like of str or str
        Composition of one repeat of each column (``"Pt"``, ``"PbBr"``).
    repeat_A : float
        Period of the column along the beam, Å (the projected cell's ``repeat_A``, or the
        atom spacing of a one-element column).

    Returns
    -------
    ase.Atoms
        Positions in Å, z along the beam; ``info["counts"]`` the total per element.
    """
    from ase import Atoms

    x_A, y_A = np.asarray(x_A, float), np.asarray(y_A, float)
    counts = _counts_as_int(counts)
    labels = np.broadcast_to(np.asarray(labels, dtype=object), x_A.shape)
    if not repeat_A > 0:
        raise InputError(f"repeat along the beam must be positive, got {repeat_A} Å")
    symbols, positions = [], []
    for x, y, n, label in zip(x_A, y_A, counts, labels):
        if n <= 0:
            continue
        per_repeat = _composition(label)
        step = repeat_A / len(per_repeat)
        z = (np.arange(n * len(per_repeat)) - (n * len(per_repeat) - 1) / 2) * step
        symbols += per_repeat * int(n)
        positions += [(x, y, zz) for zz in z]
    atoms = Atoms(symbols, positions=np.reshape(positions, (-1, 3)))
    atoms.info["counts"] = {el: symbols.count(el) for el in sorted(set(symbols))}
    return atoms


def _counts_as_int(values):
    """Integer counts from a column that may hold missing values (missing -> 0)."""
    import pandas as pd

    return pd.Series(values).fillna(0).astype(int).to_numpy()
