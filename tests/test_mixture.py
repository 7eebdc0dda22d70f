"""The Mixture value object: validation, value semantics, transforms and convolution."""

import copy
import pickle

import numpy as np
import pytest

from mogviewer.ellipse import affine_matrix
from mogviewer.mixture import Mixture


def make():
    return Mixture([0.7, 0.3], [[1.0, 2.0], [1.5, 1.0]],
                   [[[2.0, 0.3], [0.3, 1.0]], [[5.0, -1.0], [-1.0, 4.0]]])


def test_value_semantics_roundtrip():
    # GalSim habit: pickle, copy, hash and repr round-trip to an equal object
    m = make()
    for other in (pickle.loads(pickle.dumps(m)), copy.copy(m), copy.deepcopy(m),
                  eval(repr(m), {"Mixture": Mixture})):
        assert other == m and hash(other) == hash(m)
    assert m != m.scaled(2.0)
    with pytest.raises(ValueError):
        m.amps[0] = 3.0  # read-only


def test_user_arrays_are_copied():
    a = np.array([1.0])
    c = np.eye(2)[None].copy()
    m = Mixture(a, None, c)
    a[0] = 5.0
    c[0, 0, 0] = -1
    assert m.amps[0] == 1.0 and m.covs[0, 0, 0] == 1.0


I2 = [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("covs,msg", [
    ([I2, [[1.0, 2.0], [2.0, 1.0]]], "component 1: covariance .* not positive definite"),
    ([I2, [[-1.0, 0.0], [0.0, 1.0]]], "component 1: covariance"),
    ([[[1.0, 0.5], [0.0, 1.0]], I2], "component 0: covariance is not symmetric"),
    ([[[np.nan, 0.0], [0.0, 1.0]], I2], "component 0: covariance is not finite"),
])
def test_invalid_covariances_name_the_component(covs, msg):
    with pytest.raises(ValueError, match=msg):
        Mixture([0.5, 0.5], None, covs)


def test_negative_amplitudes_allowed_but_total_positive():
    Mixture([1.2, -0.2], None, [np.eye(2), 3 * np.eye(2)])
    with pytest.raises(ValueError, match="total amplitude"):
        Mixture([0.2, -0.4], None, [np.eye(2), 3 * np.eye(2)])
    with pytest.raises(ValueError, match="shape"):
        Mixture([1.0], [[0.0, 0.0, 0.0]], [np.eye(2)])


def test_convolution_adds_means_and_covariances():
    a = make()
    b = Mixture([0.6, 0.4], [[0.1, -0.2], [0.0, 0.3]], [np.eye(2), 2 * np.eye(2)])
    c = a.convolve(b)
    assert len(c) == 4
    assert c.total == pytest.approx(a.total * b.total, rel=1e-15)
    np.testing.assert_allclose(c.means[1], a.means[0] + b.means[1])
    np.testing.assert_allclose(c.covs[2], a.covs[1] + b.covs[0])
    assert c.amps[3] == pytest.approx(a.amps[1] * b.amps[1])
    # second moments of a convolution add (exact property of convolution)
    np.testing.assert_allclose(c.second_moments(), a.second_moments() + b.second_moments(),
                               rtol=1e-12)


def test_transform_maps_the_unit_circle_to_the_ellipse():
    unit = Mixture.isotropic([1.0], [1.0])
    A = affine_matrix(5.0, 0.4, 30.0)
    e = unit.transformed(A, (10.0, 20.0))
    w, V = np.linalg.eigh(e.covs[0])
    assert np.sqrt(w) == pytest.approx([2.0, 5.0])
    # major axis at 30 degrees CCW from +x
    assert np.degrees(np.arctan2(V[1, 1], V[0, 1])) % 180 == pytest.approx(30.0)
    np.testing.assert_allclose(e.means[0], [10.0, 20.0])


def test_evaluate_integrates_to_total():
    m = make()
    x, y = np.meshgrid(np.linspace(-30, 30, 601), np.linspace(-30, 30, 601))
    integral = m.evaluate(x, y).sum() * 0.1 ** 2
    assert integral == pytest.approx(m.total, rel=1e-9)
    assert m.normalized().total == pytest.approx(1.0)
    np.testing.assert_allclose(m.centered().centroid(), [0.0, 0.0], atol=1e-14)


def test_hash_agrees_with_equality_for_signed_zeros():
    # issue 13: -0.0 == 0.0, so mixtures that differ only there are equal and must hash alike
    # (a dict or cache keyed by mixtures would otherwise hold two entries for one value)
    a = Mixture([1.0], [[0.0, 0.0]], [np.eye(2)])
    b = Mixture([1.0], [[-0.0, 0.0]], [np.eye(2)])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
