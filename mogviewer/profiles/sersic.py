"""A Sérsic mixture-of-Gaussians family for any index 0.5 <= n <= 8, smooth in n.

Hogg & Lang (2013, PASP 125, 719; Figure 4) show that the best mixtures' amplitudes and variances
vary smoothly with the Sérsic index and call expressions for them as a function of n "a valuable
follow-up". This module serves such a family: ``M_FAMILY = 10`` non-negative components whose
log-amplitudes and log-variances are cubic splines in ``ln n`` through knots derived, with the
paper's badness, by ``scripts/derive_sersic_family.py`` (stored, with its generating command and
per-knot badness, in ``mogviewer/data/sersic_family.json``).

Units as in :mod:`mogviewer.profiles.laws`: radius in units of the half-light radius r_e, the
profile normalised to ``Q(1) = 1``, raw amplitudes in units of ``I(r_e) r_e^2`` and variances in
units of ``r_e^2``.

Why M = 10
----------
Render cost is linear in M. Badness of the best (globally searched, grown-start) mixture at
fixed n (the paper's discrete badness, ``xi_max = 8``)::

    n      M=4      M=6      M=8      M=10     M=12
    0.5    0 (the profile is a single Gaussian)
    1      4.35e-6  1.59e-7  8.90e-9  6.64e-10 6.1e-11
    2      3.38e-4  3.05e-5  3.42e-6  4.37e-7  6.03e-8
    4      1.21e-2  2.01e-3  3.16e-4  3.90e-5  4.22e-6
    6      9.56e-2  1.23e-2  1.60e-3  2.01e-4  2.18e-5
    8      2.58e-1  2.95e-2  3.75e-3  4.83e-4  5.29e-5

Two more components buy a factor ~8 everywhere. With M = 10 the worst case over the whole range
(n = 8, 4.8e-4) is as good as the paper's de Vaucouleurs M = 8 table (3.16e-4), the size The
Tractor and many fits use for n = 4; with M = 8 the high-n end would be 5-12x worse than that
(worse than dev M = 6). M = 10 is also ngmix's dev size and matches the published dev M = 10 table
at n = 4 (3.90e-5); M = 12 costs 20 % more rendering for accuracy far below pixel noise.

Interpolation
-------------
Not-a-knot cubic splines (:class:`scipy.interpolate.CubicSpline`, C2) of ``ln a_m`` and ``ln v_m``
against ``ln n``; the derivatives d/dn are the spline's own analytic derivatives. Amplitudes stay
positive by construction. Interpolation between knots loses at most a factor 1.45 in badness at
every midpoint against a direct derivation there (stored in the data file; ratios taken on
``max(badness, BADNESS_FLOOR)``).

The end n = 0.5 is singular: the profile becomes a single Gaussian; approaching it, the best
tables keep their variances but all amplitudes except the outermost go to zero linearly in
(n - 0.5), so ln a has no finite limit. The knots are therefore graded (geometric in n - 0.5,
down to ~1e-7) and the n = 0.5 knot is extrapolated; the badness there is below 1e-12 and the
amplitude derivatives d a_m/dn stay finite, but the spline's ln-space curvature is huge within
~1e-3 of n = 0.5 and d v_m/dn of the (negligible, < 1e-5 of the flux) inner components wobbles
there. For n >= 0.6 the family is regular (1/6-octave knots, refined where needed).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import ProfileError
from .derivation import _mog_radial, _polish, badness_grid
from .laws import exact_total, profile_value
from .profile_mixture import ProfileMixture, _half_light_ratio

__all__ = ["N_MIN", "N_MAX", "M_FAMILY", "BADNESS_FLOOR", "sersic_mixture", "raw_mixture",
           "ie_factor", "family_badness", "sersic_profile_mixture", "family_knots",
           "direct_derivation"]

#: Valid range of the Sérsic index.
N_MIN = 0.5
N_MAX = 8.0
#: Number of Gaussian components of every member of the family.
M_FAMILY = 10
#: Badness below which interpolation accuracy is not judged by ratio (rms residual 1e-6 I(r_e)):
#: only 0.5 <= n <~ 0.6 comes below it.
BADNESS_FLOOR = 1e-12

DATA_PATH = "data/sersic_family.json"
SOURCE = ("mogviewer Sérsic family (mogviewer/data/sersic_family.json; "
          "cubic spline in ln a, ln v vs ln n)")


# --------------------------------------------------------------------------------------------
# Spline construction (shared with scripts/derive_sersic_family.py, so that the derivation checks
# exactly the interpolant served here)
# --------------------------------------------------------------------------------------------

def build_spline(n_knots, amps, variances):
    """The C2 interpolant: a not-a-knot cubic spline of ``[ln a_m, ln v_m]`` against ``ln n``.

    ``amps`` and ``variances`` are (K, M) arrays at the K increasing knots ``n_knots``.
    """
    from scipy import interpolate  # on use (the first Sérsic): it imports scipy.optimize

    x = np.log(np.asarray(n_knots, float))
    y = np.hstack([np.log(np.asarray(amps, float)), np.log(np.asarray(variances, float))])
    return interpolate.CubicSpline(x, y, axis=0, bc_type="not-a-knot")


def eval_spline(spline, n):
    """Raw amplitudes, variances and their d/dn from a spline made by :func:`build_spline`."""
    x = math.log(n)
    y = spline(x)
    dy = spline(x, 1) / n                       # d ln(.)/dn
    M = y.shape[0] // 2
    a, v = np.exp(y[:M]), np.exp(y[M:])
    return a, v, a * dy[:M], v * dy[M:]


@lru_cache(maxsize=1)
def _family():
    with resources.files("mogviewer").joinpath(DATA_PATH).open() as fh:
        doc = json.load(fh)
    if int(doc["M"]) != M_FAMILY:
        raise RuntimeError(f"{DATA_PATH} holds M = {doc['M']}, the code expects {M_FAMILY}")
    knots = doc["knots"]
    n = np.array([k["n"] for k in knots], float)
    a = np.array([k["amps"] for k in knots], float)
    v = np.array([k["variances"] for k in knots], float)
    b = np.array([k["badness"] for k in knots], float)
    for arr in (n, a, v, b):
        arr.setflags(write=False)
    if not (n[0] == N_MIN and n[-1] == N_MAX and np.all(np.diff(n) > 0)):
        raise RuntimeError(f"{DATA_PATH}: knots must increase from {N_MIN} to {N_MAX}")
    return {"n": n, "amps": a, "variances": v, "badness": b, "doc": doc,
            "spline": build_spline(n, a, v)}


def family_knots():
    """``(n, raw_amps, variances, badness)`` of the stored knots (read-only arrays)."""
    f = _family()
    return f["n"], f["amps"], f["variances"], f["badness"]


def _check_n(n):
    try:
        n = float(n)
    except (TypeError, ValueError):
        raise ProfileError(f"Sérsic index n must be a number, got {n!r}") from None
    if not (N_MIN <= n <= N_MAX):        # also rejects NaN
        raise ProfileError(f"Sérsic index n = {n:g} is outside the valid range "
                         f"{N_MIN:g} <= n <= {N_MAX:g}")
    return n


def sersic_mixture(n):
    """The family at index ``n``, normalised to unit flux, with its exact derivatives in n.

    Returns
    -------
    amps : ndarray (M_FAMILY,)
        Amplitudes normalised to ``sum = 1``.
    variances : ndarray (M_FAMILY,)
        Variances in units of r_e^2 (increasing).
    damps_dn, dvariances_dn : ndarray (M_FAMILY,)
        d/dn of the two, from the spline's analytic derivative (``damps_dn`` includes the
        normalisation, so it sums to zero).

    Raises
    ------
    ValueError
        If ``n`` is outside ``[N_MIN, N_MAX]``.
    """
    n = _check_n(n)
    a, v, da, dv = eval_spline(_family()["spline"], n)
    dla = da / a                                # d ln a_m / dn
    w = a / a.sum()
    dw = w * (dla - np.dot(w, dla))
    return w, v, dw, dv


def raw_mixture(n):
    """``(raw_amps, variances)`` at ``n``: amplitudes in units of ``I(r_e) r_e^2`` (not
    normalised; their sum is the mixture's flux for ``I(r_e) = 1``), variances in r_e^2."""
    n = _check_n(n)
    a, v, _, _ = eval_spline(_family()["spline"], n)
    return a, v


def ie_factor(n):
    """``1 / sum(raw_amps)``: a galaxy of flux F, semi-major r_e and axis ratio q has
    ``I(r_e) = F * ie_factor(n) / (q r_e^2)``."""
    return float(1.0 / raw_mixture(n)[0].sum())


@lru_cache(maxsize=1)
def _xi_weights():
    # the paper's badness radii, exactly as badness_grid (xi_max = 8), computed here
    # once so that badness at many n does not fill that function's per-n cache
    xi = (np.arange(int(round(8.0 / 0.001))) + 0.5) * 0.001
    xi = xi[xi < 8.0]
    return xi, xi / xi.sum()


def _badness(n, amps, variances):
    xi, w = _xi_weights()
    r = _mog_radial(xi, amps, variances) - profile_value("ser", xi, n=n)
    return float(np.sum(w * r * r))


def family_badness(n):
    """The paper's badness of the interpolated family at ``n`` (as :func:`profiles.badness`)."""
    a, v = raw_mixture(n)
    return _badness(float(n), a, v)


@lru_cache(maxsize=256)
def _profile_mixture(n):
    a, v = raw_mixture(n)
    w = a / a.sum()
    for arr in (a, v, w):
        arr.setflags(write=False)
    return ProfileMixture(
        profile="ser", M=M_FAMILY, n=n, amps=w, variances=v, raw_amps=a,
        ie_factor=float(1.0 / a.sum()), badness=_badness(n, a, v),
        flux_fraction=float(a.sum() / exact_total("ser", n=n)),
        half_light_ratio=_half_light_ratio(a, v), source=SOURCE)


def sersic_profile_mixture(n):
    """The family at ``n`` as a :class:`mogviewer.ProfileMixture` (profile ``'ser'``),
    usable wherever a table from :func:`profiles.get_mixture` is (e.g. ``render_galaxy``)."""
    return _profile_mixture(_check_n(n))


def direct_derivation(n, start=None):
    """A direct derivation at ``n``: the paper's badness minimised by the same log-parametrised
    Levenberg-Marquardt as :func:`profiles.derive`, warm-started from the interpolated family
    (or ``start = (raw_amps, variances)``), so it stays on the family's branch.

    Returns ``(raw_amps, variances, badness)``.
    """
    n = _check_n(n)
    a0, v0 = raw_mixture(n) if start is None else start
    xi, target, w = badness_grid("ser", n=n)
    a, v, _ = _polish(xi, target, np.sqrt(w), np.asarray(a0, float),
                               np.asarray(v0, float))
    return a, v, _badness(n, a, v)
