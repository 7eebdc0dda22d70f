"""Ellipse parametrisations: people's (re, q, angle) and the optimiser's (ln r_circ, eta1, eta2)."""

import math

import numpy as np
import pytest

from mogviewer.ellipse import (
    eta_to_physical,
    physical_to_eta,
    shape_jacobian_eta,
    shape_jacobian_physical,
    shape_matrix,
    shape_to_physical,
    wrap_angle,
)

CASES = [(3.0, 0.4, 30.0), (5.0, 1.0, 0.0), (2.0, 0.999999, 77.0), (7.0, 0.05, 135.0),
         (0.8, 0.7, 179.9), (12.0, 0.2, 90.0)]


def s3(S):
    return np.array([S[0, 0], S[0, 1], S[1, 1]])


@pytest.mark.parametrize("re,q,angle", CASES)
def test_roundtrip_and_shape_matrix(re, q, angle):
    u = physical_to_eta(re, q, angle)
    r2, q2, a2 = eta_to_physical(u)
    assert r2 == pytest.approx(re, rel=1e-12) and q2 == pytest.approx(q, rel=1e-12)
    if q < 1:
        assert a2 == pytest.approx(angle, abs=1e-9)
    S3, _ = shape_jacobian_eta(u)
    np.testing.assert_allclose(S3, s3(shape_matrix(re, q, angle)), rtol=1e-12,
                               atol=1e-12 * re * re)
    r3, q3, a3 = shape_to_physical(shape_matrix(re, q, angle))
    assert r3 == pytest.approx(re, rel=1e-10) and q3 == pytest.approx(q, rel=1e-8)
    if q < 0.999:
        assert a3 == pytest.approx(angle, abs=1e-7)


@pytest.mark.parametrize("re,q,angle", CASES)
def test_jacobians_match_central_differences(re, q, angle):
    # central differences with h = 1e-6 have truncation error ~h^2 * S''' ~ 1e-12 relative and
    # rounding error ~eps/h ~ 1e-10 relative: 1e-7 is a safe bound that a wrong sign or factor
    # (relative error >= 1e-2) cannot pass.
    h = 1e-6
    u = physical_to_eta(re, q, angle)
    _, J = shape_jacobian_eta(u)
    Jn = np.array([(shape_jacobian_eta(u + h * e)[0] - shape_jacobian_eta(u - h * e)[0]) / (2 * h)
                   for e in np.eye(3)]).T
    np.testing.assert_allclose(J, Jn, atol=1e-7 * np.abs(J).max())
    p = np.array([re, min(q, 1 - 2 * h), angle])
    Jp = shape_jacobian_physical(*p)
    Jpn = np.array([(s3(shape_matrix(*(p + h * e))) - s3(shape_matrix(*(p - h * e)))) / (2 * h)
                    for e in np.eye(3)]).T
    np.testing.assert_allclose(Jp, Jpn, atol=1e-7 * np.abs(Jp).max())


def test_every_unconstrained_vector_is_a_valid_ellipse():
    rng = np.random.default_rng(3)
    for u in rng.normal(0, 3, size=(500, 3)):
        re, q, angle = eta_to_physical(u)
        assert re > 0 and 0 < q <= 1 and 0 <= angle < 180
        S3, J = shape_jacobian_eta(u)
        assert S3[0] > 0 and S3[0] * S3[2] - S3[1] ** 2 > 0 and np.isfinite(J).all()


def test_wrap_angle_and_errors():
    assert wrap_angle(-10.0) == pytest.approx(170.0)
    assert wrap_angle(180.0) == 0.0 and wrap_angle(365.0) == pytest.approx(5.0)
    # the scalar path (Python's %) gives numpy's answer bit for bit, inside [0, 180), on the
    # edges where mod rounds: tiny negatives (-1e-20 % 180 rounds up to 180), -0.0, large
    rng = np.random.default_rng(3)
    edge = [-1e-20, -0.0, 0.0, 179.99999999999997, -180.0, 1e17, -1e17, 1e-300, -5e-324]
    for v in edge + list(rng.normal(0, 500, 300)):
        ref = float(np.where(np.mod(v, 180.0) >= 180.0, np.mod(v, 180.0) - 180.0,
                             np.mod(v, 180.0)))
        got = wrap_angle(float(v))
        assert type(got) is float and 0.0 <= got < 180.0
        assert got == ref and math.copysign(1, got) == math.copysign(1, ref), v
        assert wrap_angle(np.float64(v)) == got
    np.testing.assert_array_equal(wrap_angle(np.array(edge)),
                                  [wrap_angle(v) for v in edge])
    with pytest.raises(ValueError, match="q = b/a must be in"):
        physical_to_eta(2.0, 1.2, 0.0)
    with pytest.raises(ValueError, match="re must be positive"):
        physical_to_eta(0.0, 0.5, 0.0)
