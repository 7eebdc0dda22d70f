"""Galaxy ellipse: parameters for people and the unconstrained vector the optimiser uses.

Conventions
-----------
* ``x, y``: centre in pixels, 0-based, pixel centres at integers, ``image[y, x]``.
* ``re``: semi-major half-light radius of the *target* profile, pixels.
* ``q = b/a`` in (0, 1].
* ``angle``: position angle of the major axis in **degrees counter-clockwise from +x** (image
  axes, y up), wrapped to [0, 180). GALFIT/imfit's PA (CCW from +y) is ``angle - 90``.

The ellipse acts on a profile mixture through the affine matrix
``R = Rot(angle) @ diag(re, q re)``, which maps the unit circle onto the half-light ellipse; a round
profile component of variance ``v`` (in units of re^2) becomes ``v * S`` with the *shape matrix*

    S = R R^T = re^2 Rot(angle) diag(1, q^2) Rot(angle)^T.

The renderer returns derivatives with respect to the three independent entries of ``S``
(``Sxx, Sxy, Syy``); :func:`shape_jacobian_physical` and :func:`shape_jacobian_eta` give
``dS/d(parameters)`` for the people's and the optimiser's parametrisation.

The optimiser works in ``u = (ln r_circ, eta1, eta2)`` with ``r_circ = re sqrt(q)`` (the
circularised radius), ``eta = -ln q >= 0`` (GalSim's conformal shear), ``eta1 = eta cos 2 angle``,
``eta2 = eta sin 2 angle``: every real vector is a valid ellipse, q never exceeds 1, there is no
angle wrap, and ``S`` is an analytic function of ``u`` (with ``ln re`` instead of ``ln r_circ`` the
area would have a cusp at q = 1).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "affine_matrix", "shape_matrix", "shape_jacobian_physical", "shape_jacobian_eta",
    "physical_to_eta", "eta_to_physical", "wrap_angle", "shape_to_physical",
]


def wrap_angle(angle_deg):
    """Wrap a position angle (degrees) to [0, 180)."""
    if isinstance(angle_deg, float):    # float and numpy's float64
        # Python's float % is numpy's mod (fmod, then the divisor's sign), without numpy's
        # scalar machinery (0.3 against 3.6 us; GalaxyParams wraps two angles per instance)
        a = float(angle_deg) % 180.0
        return a - 180.0 if a >= 180.0 else a
    a = np.mod(angle_deg, 180.0)
    a = np.where(a >= 180.0, a - 180.0, a)  # mod may round up to 180 for tiny negatives
    return float(a) if np.ndim(a) == 0 else a


def _rot(angle_deg):
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s], [s, c]])


def affine_matrix(re, q, angle_deg):
    """``R = Rot(angle) diag(re, q re)``: maps the unit circle to the half-light ellipse."""
    return _rot(angle_deg) @ np.diag([re, q * re])


def shape_matrix(re, q, angle_deg):
    """``S = R R^T`` in pixels^2 (see module docstring)."""
    R = affine_matrix(re, q, angle_deg)
    return R @ R.T


def _s3(S):
    return np.array([S[0, 0], S[0, 1], S[1, 1]])


def shape_jacobian_physical(re, q, angle_deg):
    """``d(Sxx, Sxy, Syy) / d(re, q, angle_deg)`` as a 3x3 array (rows: S entries).

    ``S = re^2 [c^2 + q^2 s^2, (1 - q^2) c s ; ., s^2 + q^2 c^2]`` with ``c, s = cos, sin(angle)``.
    """
    J = np.empty((3, 3))
    _shape_jacobian_physical_into(re, q, angle_deg, J)
    return J


def _shape_jacobian_physical_into(re, q, angle_deg, J):
    """:func:`shape_jacobian_physical` written into ``J`` (3, 3), in scalar code that numba
    compiles too (:mod:`mogviewer.fitting._fast`, for a fit's covariance): one formula, the
    same bits either way."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    q2 = q * q
    S0, S1, S2 = c * c + q2 * s * s, (1 - q2) * c * s, s * s + q2 * c * c
    dq0, dq1, dq2 = 2 * q * s * s, -2 * q * c * s, 2 * q * c * c
    # d/dt: d(c^2)= -2cs, d(s^2)= 2cs, d(cs) = c^2 - s^2
    dt0 = -2 * c * s * (1 - q2)
    dt1 = (1 - q2) * (c * c - s * s)
    dt2 = 2 * c * s * (1 - q2)
    r2 = 2 * re
    J[0, 0], J[1, 0], J[2, 0] = r2 * S0, r2 * S1, r2 * S2
    r2 = re * re
    J[0, 1], J[1, 1], J[2, 1] = r2 * dq0, r2 * dq1, r2 * dq2
    d = math.pi / 180.0
    J[0, 2], J[1, 2], J[2, 2] = r2 * dt0 * d, r2 * dt1 * d, r2 * dt2 * d


def physical_to_eta(re, q, angle_deg):
    """``(re, q, angle) -> u = (ln r_circ, eta1, eta2)`` with ``r_circ = re sqrt(q)``.

    ``q`` must be in (0, 1] and ``re > 0``.
    """
    if not (re > 0):
        raise ValueError(f"re must be positive, got {re!r}")
    if not (0 < q <= 1):
        raise ValueError(f"q = b/a must be in (0, 1], got {q!r}")
    eta = -math.log(q)
    t = 2 * math.radians(angle_deg)
    return np.array([math.log(re) + 0.5 * math.log(q), eta * math.cos(t), eta * math.sin(t)])


def eta_to_physical(u):
    """``(ln r_circ, eta1, eta2) -> (re, q, angle_deg)``, angle wrapped to [0, 180) (0 if round)."""
    lnrc, e1, e2 = (float(v) for v in u)
    eta = math.hypot(e1, e2)
    angle = wrap_angle(0.5 * math.degrees(math.atan2(e2, e1))) if eta > 0 else 0.0
    return math.exp(lnrc + 0.5 * eta), math.exp(-eta), angle


def _sinhc(x):
    """sinh(x)/x, accurate near 0."""
    return 1.0 + x * x / 6.0 + x ** 4 / 120.0 if abs(x) < 1e-4 else math.sinh(x) / x


def _dsinhc_over_x(x):
    """(d/dx sinhc(x)) / x = (x cosh x - sinh x) / x^3, finite at 0."""
    if abs(x) < 1e-3:
        return 1.0 / 3.0 + x * x / 30.0 + x ** 4 / 840.0
    return (x * math.cosh(x) - math.sinh(x)) / x ** 3


def shape_jacobian_eta(u):
    """``S`` and ``d(Sxx, Sxy, Syy)/du`` at the optimiser's ``u = (ln r_circ, eta1, eta2)``.

    ``S = r_circ^2 expm(N) = r_circ^2 (cosh(eta) I + sinh(eta)/eta N)`` with
    ``N = [[eta1, eta2], [eta2, -eta1]]`` and ``eta = |(eta1, eta2)| = -ln q``; this equals
    ``re^2 Rot diag(1, q^2) Rot^T`` and is analytic everywhere, including the round point.

    Returns
    -------
    S3 : ndarray (3,)
        ``(Sxx, Sxy, Syy)``.
    J : ndarray (3, 3)
        Rows ``Sxx, Sxy, Syy``; columns ``ln r_circ, eta1, eta2``.
    """
    lnrc, e1, e2 = (float(v) for v in u)
    r2 = math.exp(2 * lnrc)
    eta = math.hypot(e1, e2)
    ch = math.cosh(eta)
    sc = _sinhc(eta)
    dsc = _dsinhc_over_x(eta)
    N3 = np.array([e1, e2, -e1])
    I3 = np.array([1.0, 0.0, 1.0])
    S3 = r2 * (ch * I3 + sc * N3)
    J = np.empty((3, 3))
    J[:, 0] = 2 * S3
    for i, (ei, dN) in enumerate(((e1, np.array([1.0, 0.0, -1.0])),
                                  (e2, np.array([0.0, 1.0, 0.0])))):
        # d cosh(eta)/de_i = sinhc(eta) e_i ; d sinhc(eta)/de_i = dsc * e_i
        J[:, 1 + i] = r2 * (sc * ei * I3 + dsc * ei * N3 + sc * dN)
    return S3, J


def shape_to_physical(S):
    """``(re, q, angle_deg)`` of a 2x2 shape matrix ``S`` (symmetric positive definite)."""
    S = np.asarray(S, float)
    w, V = np.linalg.eigh(S)  # ascending
    re = math.sqrt(w[1])
    q = math.sqrt(w[0] / w[1])
    angle = wrap_angle(math.degrees(math.atan2(V[1, 1], V[0, 1])))
    return re, q, angle
