"""Galaxy profiles and their mixture-of-Gaussians approximations (Hogg & Lang 2013).

Radius ``xi`` is in units of the half-light radius ``r_e``; every profile is normalised to
``Q(1) = 1`` (intensity at r_e). A mixture approximates

    Q(xi) ~ sum_m a_m N(xi | 0, v_m I),   N(xi | 0, v I) = exp(-xi^2 / (2 v)) / (2 pi v),

so ``sum(a_m)`` is the mixture's total flux in units of ``I(r_e) r_e^2`` and ``v_m`` are variances
in units of ``r_e^2``. The 12 tables published in the paper (arXiv:1210.6563 v1, as transcribed in
the project's design reference, section 1) are served by :func:`get_mixture`; ``ser`` tables for
n = 2, 3, 5 derived by :func:`derive` ship in ``mogviewer/data/ser_tables.json``.

Profiles
--------
========  ======================================================================  ===============
name      Q(xi)                                                                   a
========  ======================================================================  ===============
exp       exp(-a (xi - 1))                                                        1.67834699
dev       exp(-a (xi^(1/4) - 1))                                                  7.66924944
ser(n)    exp(-a_n (xi^(1/n) - 1)),  a_n = gammaincinv(2n, 1/2)
lux       exp(-a (xi - 1)) for xi < 3; times (1 - (xi - 3)^2)^2 for 3 < xi < 4;     1.67835
          0 beyond 4
luv       exp(-a ((xi^2 + 0.0004)^(1/8) - 1)) for xi < 7; times                    7.66925
          (1 - (xi - 7)^2)^2 for 7 < xi < 8; 0 beyond 8
========  ======================================================================  ===============

What r_e means: a fitted r_e is always the half-light radius of the *target* profile (for lux and
luv, of the exponential/de Vaucouleurs law they truncate). A truncated mixture holds a fraction of
that profile's flux (:attr:`ProfileMixture.flux_fraction`) and its own half-light radius is
:attr:`ProfileMixture.half_light_ratio` times r_e.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import integrate, optimize, special

__all__ = [
    "PROFILES", "profile_value", "sersic_b", "available", "get_mixture", "ProfileMixture",
    "badness", "badness_grid", "derive", "exact_total", "PUBLISHED",
]

PROFILES = ("exp", "dev", "lux", "luv", "ser")

A_EXP = 1.67834699
A_DEV = 7.66924944
A_LUX = 1.67835
A_LUV = 7.66925


def sersic_b(n):
    """``b_n = gammaincinv(2n, 1/2)``: the Sérsic constant making r_e the half-light radius."""
    return float(special.gammaincinv(2.0 * n, 0.5))


def _taper(xi, start):
    """SDSS truncation factor ``(1 - (xi - start)^2)^2`` on [start, start+1], 1 before, 0 after."""
    t = np.clip(xi - start, 0.0, 1.0)
    return (1.0 - t * t) ** 2


def profile_value(profile, xi, *, n=None):
    """Exact profile ``Q(xi)`` normalised to ``Q(1) = 1``; ``xi`` in units of r_e (vectorised).

    Parameters
    ----------
    profile : {'exp', 'dev', 'lux', 'luv', 'ser'}
    xi : array_like
        Radius / r_e (>= 0).
    n : float, optional
        Sérsic index, required for ``'ser'``.
    """
    xi = np.asarray(xi, float)
    if profile == "exp":
        return np.exp(-A_EXP * (xi - 1.0))
    if profile == "dev":
        return np.exp(-A_DEV * (xi ** 0.25 - 1.0))
    if profile == "ser":
        if n is None or not (n > 0):
            raise ValueError("profile 'ser' needs a Sérsic index n > 0")
        b = sersic_b(n)
        return np.exp(-b * (xi ** (1.0 / n) - 1.0))
    if profile == "lux":
        return np.exp(-A_LUX * (xi - 1.0)) * _taper(xi, 3.0) * (xi < 4.0)
    if profile == "luv":
        return (np.exp(-A_LUV * ((xi * xi + 0.0004) ** 0.125 - 1.0)) * _taper(xi, 7.0)
                * (xi < 8.0))
    raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


def exact_total(profile, *, n=None):
    """2-D integral of ``Q`` over the plane, in units of ``I(r_e) r_e^2``.

    Analytic for exp, dev and ser (``2 pi n e^b Gamma(2n) / b^(2n)``); a quadrature to the cut
    for lux and luv.
    """
    if profile in ("exp", "dev", "ser"):
        nn = {"exp": 1.0, "dev": 4.0}.get(profile, n)
        b = {"exp": A_EXP, "dev": A_DEV}.get(profile) or sersic_b(nn)
        return float(2 * math.pi * nn * math.exp(b) * math.gamma(2 * nn) / b ** (2 * nn))
    cut = {"lux": 4.0, "luv": 8.0}[profile]
    knots = [0.0, 0.02, 0.1, 1.0, cut - 1.0, cut]
    return float(sum(
        integrate.quad(lambda r: 2 * math.pi * r * float(profile_value(profile, r)), a, b,
                       epsabs=1e-13, epsrel=1e-12, limit=200)[0]
        for a, b in zip(knots[:-1], knots[1:])))


# --------------------------------------------------------------------------------------------
# The 12 published tables. Provenance: Hogg & Lang (2013, PASP 125, 719), arXiv:1210.6563 v1,
# Table 1 (amplitudes a_m and root-variances sqrt(v_m) in units of r_e) and the badness values,
# as transcribed in the project's design reference (REFERENCE.md section 1). The final journal
# text differs from these by at most 2e-5 relative.
# --------------------------------------------------------------------------------------------
PUBLISHED = {
    ("exp", 4): ([0.09733, 1.12804, 4.99846, 5.63632],
                 [0.12068, 0.32730, 0.68542, 1.28089], 4.35e-6, 11.860),
    ("exp", 6): ([0.00735, 0.09481, 0.63572, 2.60077, 5.42848, 3.16445],
                 [0.05072, 0.13756, 0.28781, 0.53195, 0.91209, 1.50157], 1.59e-7, 11.932),
    ("exp", 8): ([0.00077, 0.01017, 0.07313, 0.37184, 1.39736, 3.56100, 4.74338, 1.78684],
                 [0.02394, 0.06492, 0.13581, 0.25095, 0.42942, 0.69675, 1.08885, 1.67302],
                 8.90e-9, 11.944),
    ("dev", 6): ([0.01308, 0.12425, 0.63551, 2.22560, 5.63989, 9.81523],
                 [0.00263, 0.01202, 0.04031, 0.12128, 0.36229, 1.23604], 2.01e-3, 18.454),
    ("dev", 8): ([0.00262, 0.02500, 0.13413, 0.51326, 1.52005, 3.56204, 6.44845, 8.10105],
                 [0.00113, 0.00475, 0.01462, 0.03930, 0.09926, 0.24699, 0.63883, 1.92560],
                 3.16e-4, 20.307),
    ("dev", 10): ([0.00139, 0.00941, 0.04441, 0.16162, 0.48121, 1.20357, 2.54182, 4.46441,
                   6.22820, 6.15393],
                  [0.00087, 0.00296, 0.00792, 0.01902, 0.04289, 0.09351, 0.20168, 0.44126,
                   1.01833, 2.74555], 3.90e-5, 21.290),
    ("lux", 4): ([0.07275, 0.86763, 4.33214, 6.48325],
                 [0.10938, 0.29694, 0.62601, 1.19571], 1.37e-5, 11.756),
    ("lux", 6): ([0.00235, 0.03080, 0.22336, 1.17949, 4.33874, 5.99821],
                 [0.03465, 0.09405, 0.19785, 0.37413, 0.67894, 1.22540], 4.64e-6, 11.773),
    ("lux", 8): ([0.00007, 0.00098, 0.00736, 0.04404, 0.24005, 1.18175, 4.31918, 5.97985],
                 [0.01092, 0.02966, 0.06241, 0.11794, 0.21345, 0.38155, 0.68169, 1.22635],
                 4.55e-6, 11.773),
    ("luv", 6): ([0.11960, 0.61327, 1.75843, 3.84242, 6.48187, 7.59437],
                 [0.01988, 0.05008, 0.12067, 0.28955, 0.72628, 2.12717], 1.40e-4, 20.410),
    ("luv", 8): ([0.04263, 0.24013, 0.68591, 1.51937, 2.83627, 4.46467, 5.72441, 5.60990],
                 [0.01496, 0.03166, 0.06471, 0.13017, 0.26170, 0.53592, 1.15464, 2.89864],
                 8.42e-6, 21.123),
    ("luv", 10): ([0.01468, 0.09627, 0.28454, 0.63005, 1.19909, 2.03195, 3.07255, 4.10682,
                   4.83948, 4.94943],
                  [0.01190, 0.02210, 0.03995, 0.07117, 0.12586, 0.22240, 0.39593, 0.71922,
                   1.37549, 3.13117], 1.44e-6, 21.225),
}


@lru_cache(maxsize=1)
def _ser_tables():
    """Derived Sérsic tables shipped as package data (see the file's own provenance block)."""
    with resources.files("mogviewer").joinpath("data/ser_tables.json").open() as fh:
        doc = json.load(fh)
    out = {}
    for row in doc["tables"]:
        out[(float(row["n"]), int(row["M"]))] = (row["amps"], row["sqrt_var"], row["badness"],
                                                 sum(row["amps"]))
    return out


def _key_n(n):
    return float(round(float(n), 6))


def available(profile, *, n=None):
    """The valid mixture sizes M for ``profile`` (for ``'ser'``: at the tabulated index ``n``)."""
    if profile in ("exp", "dev", "lux", "luv"):
        return sorted(M for (p, M) in PUBLISHED if p == profile)
    if profile == "ser":
        tab = _ser_tables()
        if n is None:
            return sorted({M for (_, M) in tab})
        return sorted(M for (nn, M) in tab if nn == _key_n(n))
    raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


@dataclass(frozen=True)
class ProfileMixture:
    """A profile's mixture, normalised to unit flux.

    Attributes
    ----------
    profile, M, n :
        What it approximates (``n`` only for Sérsic).
    amps : ndarray (M,)
        Amplitudes normalised to ``sum = 1`` (unit total flux).
    variances : ndarray (M,)
        Variances in units of ``r_e^2``.
    raw_amps : ndarray (M,)
        The table's amplitudes, in units of ``I(r_e) r_e^2``.
    ie_factor : float
        ``1 / sum(raw_amps)``: a galaxy of total flux F, semi-major r_e and axis ratio q has
        ``I(r_e) = F * ie_factor / (q r_e^2)`` (flux per pixel, r_e in pixels).
    badness : float
        The paper's badness of this table (recomputed with :func:`badness`).
    flux_fraction : float
        ``sum(raw_amps)`` over the total of the *untruncated* target (exp for lux, dev for luv):
        the fraction of the target profile's flux the mixture holds.
    half_light_ratio : float
        The mixture's own half-light radius in units of the target's r_e.
    source : str
        Provenance.
    """

    profile: str
    M: int
    n: float | None
    amps: np.ndarray
    variances: np.ndarray
    raw_amps: np.ndarray
    ie_factor: float
    badness: float
    flux_fraction: float
    half_light_ratio: float
    source: str


#: The untruncated law whose r_e a truncated profile keeps (the target of a fit).
_PARENT = {"lux": "exp", "luv": "dev"}


def _half_light_ratio(amps, variances):
    w = np.asarray(amps) / np.sum(amps)

    def enclosed(r):
        return float(np.sum(w * (1.0 - np.exp(-r * r / (2 * np.asarray(variances))))) - 0.5)

    return float(optimize.brentq(enclosed, 1e-6, 100.0, xtol=1e-14))


@lru_cache(maxsize=None)
def get_mixture(profile, M, *, n=None):
    """The mixture for ``profile`` with ``M`` components, normalised to unit flux.

    Raises
    ------
    ValueError
        For an unknown profile, or an M (or Sérsic n) for which no table exists; the message
        lists what exists.
    """
    M = int(M)
    if profile == "ser":
        if n is None:
            raise ValueError("profile 'ser' needs a Sérsic index n")
        key = (_key_n(n), M)
        tab = _ser_tables()
        if key not in tab:
            ns = sorted({k[0] for k in tab})
            raise ValueError(f"no Sérsic table for n = {n}, M = {M}; tabulated: n in {ns}, "
                             f"M in {available('ser')}")
        amps, sv, _, _ = tab[key]
        source = "derived by mogviewer.profiles.derive (mogviewer/data/ser_tables.json)"
    else:
        valid = available(profile)
        if (profile, M) not in PUBLISHED:
            raise ValueError(f"no {profile} mixture with M = {M}; available M: {valid}")
        amps, sv, _, _ = PUBLISHED[(profile, M)]
        source = "Hogg & Lang 2013 (arXiv:1210.6563v1) Table 1"
        n = None
    raw = np.array(amps, float)
    var = np.array(sv, float) ** 2
    for arr in (raw, var):
        arr.setflags(write=False)
    norm = raw / raw.sum()
    norm.setflags(write=False)
    return ProfileMixture(
        profile=profile, M=M, n=None if n is None else float(n), amps=norm, variances=var,
        raw_amps=raw, ie_factor=float(1.0 / raw.sum()),
        badness=badness(profile, raw, var, n=n),
        flux_fraction=float(raw.sum() / exact_total(_PARENT.get(profile, profile), n=n)),
        half_light_ratio=_half_light_ratio(raw, var), source=source)


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
    res = optimize.least_squares(resid, p0, jac=jac, method="lm", xtol=1e-15, ftol=1e-15,
                                 gtol=1e-15, max_nfev=4000)
    a, v = unpack(res.x)
    order = np.argsort(v)
    return a[order], v[order], float(np.sum(res.fun ** 2))


def _nnls_amps(xi, target, sw, variances):
    v = np.asarray(variances)
    G = np.exp(-xi[:, None] ** 2 / (2 * v[None, :])) / (2 * np.pi * v[None, :])
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
        raise ValueError("M must be >= 1")
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
