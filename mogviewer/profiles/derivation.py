"""Re-derive mixture tables from the paper's definition of badness (Hogg & Lang 2013, section 2).

``badness = sum_i xi_i (MoG(xi_i) - Q(xi_i))^2 / sum_i xi_i`` on ``xi_i = (i + 1/2) 0.001`` up to
``xi_max`` (4 for lux, 8 otherwise), radii in units of r_e, amplitudes in ``I(r_e) r_e^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ProfileError
from .laws import profile_value

# --------------------------------------------------------------------------------------------
# Badness and derivation
# --------------------------------------------------------------------------------------------

def _xi_max(profile):
    return 4.0 if profile == "lux" else 8.0


@lru_cache(maxsize=None)
def _grid(profile, n):
    xi_max = _xi_max(profile)
    xi = (np.arange(int(round(xi_max / 0.001))) + 0.5) * 0.001
    xi = xi[xi < xi_max]
    target = profile_value(profile, xi, n=n)
    w = xi / xi.sum()
    for a in (xi, target, w):
        a.setflags(write=False)
    return xi, target, w


def badness_grid(profile, *, n=None):
    """The radii ``xi_i``, target ``Q(xi_i)`` and weights ``xi_i / sum(xi)`` of the badness sum."""
    return _grid(profile, None if n is None else float(n))


def _mog_radial(xi, amps, variances):
    v = np.asarray(variances, float)
    return (np.asarray(amps, float)[None, :] / (2 * np.pi * v[None, :])
            * np.exp(-xi[:, None] ** 2 / (2 * v[None, :]))).sum(axis=1)


def badness(profile, amps, variances, *, n=None):
    """The paper's badness of a mixture (REFERENCE.md section 1).

    ``xi_i = (i + 1/2) * 0.001`` while ``xi_i < xi_max`` (4 for lux, 8 otherwise);
    ``badness = sum_i xi_i (MoG(xi_i) - Q(xi_i))^2 / sum_i xi_i``, with ``amps`` in units of
    ``I(r_e) r_e^2`` (not normalised) and ``variances`` in units of ``r_e^2``.
    """
    xi, target, w = badness_grid(profile, n=n)
    r = _mog_radial(xi, amps, variances) - target
    return float(np.sum(w * r * r))


def _polish(xi, target, sw, amps, variances):
    """Least-squares refinement of (ln a, ln v); returns (amps, variances, badness)."""
    M = len(amps)

    # ln v is clipped to [ln 1e-14, ln 1e4] (r_e^2 units) so no trial step can overflow; the
    # published tables live well inside (1e-6 .. 8).
    def unpack(p):
        return np.exp(np.clip(p[:M], -700, 50)), np.exp(np.clip(p[M:], -32.2, 9.2))

    def resid(p):
        a, v = unpack(p)
        return sw * (_mog_radial(xi, a, v) - target)

    def jac(p):
        a, v = unpack(p)
        g = np.exp(-xi[:, None] ** 2 / (2 * v[None, :])) / (2 * np.pi * v[None, :])
        ja = g * a[None, :]                       # d/d ln a
        jv = a[None, :] * g * (xi[:, None] ** 2 / (2 * v[None, :]) - 1.0)  # d/d ln v
        return sw[:, None] * np.hstack([ja, jv])

    p0 = np.concatenate([np.log(amps), np.log(variances)])
    from scipy import optimize  # on use: 0.4-0.6 s of start-up
    res = optimize.least_squares(resid, p0, jac=jac, method="lm", xtol=1e-15, ftol=1e-15,
                                 gtol=1e-15, max_nfev=4000)
    a, v = unpack(res.x)
    order = np.argsort(v)
    return a[order], v[order], float(np.sum(res.fun ** 2))


def _nnls_amps(xi, target, sw, variances):
    v = np.asarray(variances)
    G = np.exp(-xi[:, None] ** 2 / (2 * v[None, :])) / (2 * np.pi * v[None, :])
    from scipy import optimize  # on use: 0.4-0.6 s of start-up
    a, _ = optimize.nnls(sw[:, None] * G, sw * target, maxiter=50 * len(v))
    return np.maximum(a, 1e-12 * max(a.max(), 1e-300) + 1e-300)


@dataclass(frozen=True)
class DerivedTable:
    """Result of :func:`derive`: amplitudes (units of I(r_e) r_e^2), variances (r_e^2), badness."""

    profile: str
    M: int
    n: float | None
    amps: np.ndarray
    variances: np.ndarray
    badness: float


def derive(profile, M, *, n=None, n_starts=12, seed=0, previous=None):
    """Re-derive a mixture table by minimising the paper's badness.

    Optimises ``(ln a_m, ln v_m)`` (so amplitudes and variances stay positive) by Levenberg-
    Marquardt from many starts: the best ``M - 1`` table grown by one component at every gap and
    both ends (the ``M - 1`` table itself derived recursively, down to M = 1), plus ``n_starts``
    random log-spaced variance ladders with non-negative least-squares amplitudes. The best
    badness wins.

    Parameters
    ----------
    profile : str
        ``'exp'``, ``'dev'``, ``'lux'``, ``'luv'`` or ``'ser'``.
    M : int
        Number of components.
    n : float, optional
        Sérsic index for ``'ser'``.
    n_starts : int
        Random starts per M (besides the grown ones).
    seed : int
        Random seed: the derivation is reproducible.
    previous : DerivedTable, optional
        A table to warm-start from (e.g. the same M at a neighbouring Sérsic n).

    Returns
    -------
    DerivedTable
    """
    if M < 1:
        raise ProfileError("M must be >= 1")
    if previous is None:  # deterministic: share the recursion (M-1, M-2, ...) between calls
        return _derive_cached(profile, int(M), None if n is None else float(n), int(n_starts),
                              int(seed))
    return _derive(profile, M, n=n, n_starts=n_starts, seed=seed, previous=previous)


@lru_cache(maxsize=256)
def _derive_cached(profile, M, n, n_starts, seed):
    return _derive(profile, M, n=n, n_starts=n_starts, seed=seed, previous=None)


def _derive(profile, M, *, n, n_starts, seed, previous):
    xi, target, w = badness_grid(profile, n=n)
    sw = np.sqrt(w)
    rng = np.random.default_rng(seed)
    starts = []
    if previous is not None and len(previous.variances) == M:
        starts.append(np.asarray(previous.variances))
    smaller = None
    if M > 1:
        smaller = derive(profile, M - 1, n=n, n_starts=n_starts, seed=seed)
        lv = np.log(smaller.variances)
        cand = np.concatenate([[lv[0] - 1.5], 0.5 * (lv[1:] + lv[:-1]), [lv[-1] + 1.5]])
        for c in cand:
            starts.append(np.exp(np.sort(np.append(lv, c))))
    lo, hi = math.log(1e-6), math.log(20.0)
    for _ in range(n_starts):
        a, b = np.sort(rng.uniform(lo, hi, size=2))
        b = max(b, a + 1.0)
        starts.append(np.exp(np.sort(rng.uniform(a, b, size=M))))
    best = None
    for v0 in starts:
        a0 = _nnls_amps(xi, target, sw, v0)
        try:
            a, v, bad = _polish(xi, target, sw, a0, v0)
        except (ValueError, FloatingPointError):
            continue
        if not np.isfinite(bad):
            continue
        if best is None or bad < best[2]:
            best = (a, v, bad)
    a, v, bad = best
    for arr in (a, v):
        arr.setflags(write=False)
    return DerivedTable(profile, M, None if n is None else float(n), a, v,
                        badness(profile, a, v, n=n))
