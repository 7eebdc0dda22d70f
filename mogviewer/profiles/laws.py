"""The exact galaxy profiles (Hogg & Lang 2013, section 2) and their totals.

Radius ``xi`` is in units of the half-light radius ``r_e``; every profile is normalised to
``Q(1) = 1`` (intensity at r_e). A mixture approximates

    Q(xi) ~ sum_m a_m N(xi | 0, v_m I),   N(xi | 0, v I) = exp(-xi^2 / (2 v)) / (2 pi v),

so ``sum(a_m)`` is the mixture's total flux in units of ``I(r_e) r_e^2`` and ``v_m`` are variances
in units of ``r_e^2``. The tables are in :mod:`mogviewer.profiles.tables`, the Sérsic family in
:mod:`mogviewer.profiles.sersic`.

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

import math

import numpy as np
from scipy import special

from ..errors import ProfileError

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
            raise ProfileError("profile 'ser' needs a Sérsic index n > 0")
        b = sersic_b(n)
        return np.exp(-b * (xi ** (1.0 / n) - 1.0))
    if profile == "lux":
        return np.exp(-A_LUX * (xi - 1.0)) * _taper(xi, 3.0) * (xi < 4.0)
    if profile == "luv":
        return (np.exp(-A_LUV * ((xi * xi + 0.0004) ** 0.125 - 1.0)) * _taper(xi, 7.0)
                * (xi < 8.0))
    raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


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
    from scipy import integrate  # on use: it imports scipy.optimize (0.4 s)
    return float(sum(
        integrate.quad(lambda r: 2 * math.pi * r * float(profile_value(profile, r)), a, b,
                       epsabs=1e-13, epsrel=1e-12, limit=200)[0]
        for a, b in zip(knots[:-1], knots[1:])))
