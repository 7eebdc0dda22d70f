"""The :class:`Mixture` value object: a weighted sum of 2-D Gaussians.

Conventions (stated once, used everywhere in mogviewer)
-------------------------------------------------------
* Images are indexed ``image[y, x]``; pixel centres sit at integer, 0-based coordinates.
* A mixture is ``f(x) = sum_k amps[k] * N(x | means[k], covs[k])`` with ``N`` the *normalised*
  2-D Gaussian ``exp(-d^T C^-1 d / 2) / (2 pi sqrt(det C))``; so ``sum(amps)`` is the total flux.
* ``means[k] = (x, y)`` in pixels; ``covs[k]`` is the 2x2 covariance ``[[xx, xy], [xy, yy]]`` in
  pixels squared, in the same ``(x, y)`` order.

A galaxy image in the Hogg & Lang (2013) method is one mixture: the profile mixture stretched by the
galaxy ellipse (:meth:`Mixture.transformed`) and convolved with the pixel-convolved PSF mixture
(:meth:`Mixture.convolve`): means add, covariances add, amplitudes multiply (M x K components).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mixture"]


def _frozen(a, shape_tail, name):
    arr = np.array(a, dtype=float, copy=True)
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ValueError(f"{name} must have shape (K, {', '.join(map(str, shape_tail))})"
                         .replace("(K, )", "(K,)") + f", got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Mixture:
    """Immutable mixture of K two-dimensional Gaussians.

    Parameters
    ----------
    amps : array_like, shape (K,)
        Amplitudes (integrated flux of each component). Negative values are allowed (PSF fits
        may need them) but the total must be positive when ``validate=True``.
    means : array_like, shape (K, 2)
        Component centres ``(x, y)`` in pixels (0-based, pixel centres at integers).
    covs : array_like, shape (K, 2, 2)
        Covariance matrices in pixels^2, ``[[xx, xy], [xy, yy]]``; each must be symmetric and
        positive definite.

    Raises
    ------
    ValueError
        If shapes disagree, a value is not finite, a covariance is not symmetric positive
        definite (the message names the component), or the total amplitude is not positive.
    """

    amps: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __init__(self, amps, means=None, covs=None, *, validate=True):
        amps = _frozen(amps, (), "amps")
        K = amps.shape[0]
        if means is None:
            means = np.zeros((K, 2))
        means = _frozen(means, (2,), "means")
        covs = _frozen(covs, (2, 2), "covs")
        if not (means.shape[0] == K == covs.shape[0]):
            raise ValueError(f"amps, means and covs disagree on the number of components: "
                             f"{K}, {means.shape[0]}, {covs.shape[0]}")
        object.__setattr__(self, "amps", amps)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)
        if validate:
            self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self):
        """Raise ``ValueError`` naming the first invalid component, else return ``self``."""
        if len(self) == 0:
            raise ValueError("a mixture needs at least one component")
        for name, arr in (("amplitude", self.amps), ("mean", self.means),
                          ("covariance", self.covs)):
            bad = ~np.isfinite(arr.reshape(len(self), -1)).all(axis=1)
            if bad.any():
                k = int(np.argmax(bad))
                raise ValueError(f"component {k}: {name} is not finite ({arr[k].tolist()})")
        c = self.covs
        asym = np.abs(c[:, 0, 1] - c[:, 1, 0]) > 1e-12 * np.maximum(
            1.0, np.abs(c[:, 0, 0]) + np.abs(c[:, 1, 1]))
        if asym.any():
            k = int(np.argmax(asym))
            raise ValueError(f"component {k}: covariance is not symmetric "
                             f"(xy = {float(c[k, 0, 1]):.6g}, yx = {float(c[k, 1, 0]):.6g})")
        det = c[:, 0, 0] * c[:, 1, 1] - c[:, 0, 1] * c[:, 1, 0]
        notpd = (c[:, 0, 0] <= 0) | (det <= 0)
        if notpd.any():
            k = int(np.argmax(notpd))
            raise ValueError(
                f"component {k}: covariance [[{c[k, 0, 0]:.6g}, {c[k, 0, 1]:.6g}], "
                f"[{c[k, 1, 0]:.6g}, {c[k, 1, 1]:.6g}]] is not positive definite "
                f"(determinant {det[k]:.6g}); every Gaussian needs a positive width along "
                f"both axes")
        if not self.amps.sum() > 0:
            raise ValueError(f"the total amplitude of the mixture is {self.amps.sum():.6g}; "
                             f"it must be positive")
        return self

    # ------------------------------------------------------------ properties
    def __len__(self):
        return int(self.amps.shape[0])

    @property
    def n_components(self):
        """Number of components K."""
        return len(self)

    @property
    def total(self):
        """Total flux ``sum(amps)`` (each normalised Gaussian integrates to 1)."""
        return float(self.amps.sum())

    def centroid(self):
        """Flux-weighted mean ``(x, y)``."""
        return self.amps @ self.means / self.amps.sum()

    def second_moments(self):
        """Flux-weighted covariance about the centroid, 2x2 in pixels^2."""
        c = self.centroid()
        d = self.means - c
        w = self.amps / self.amps.sum()
        return np.einsum("k,kij->ij", w, self.covs) + np.einsum("k,ki,kj->ij", w, d, d)

    # ---------------------------------------------------------- operations
    def normalized(self):
        """The same shape scaled to unit total flux."""
        return Mixture(self.amps / self.amps.sum(), self.means, self.covs)

    def scaled(self, factor):
        """Amplitudes multiplied by ``factor``."""
        return Mixture(self.amps * factor, self.means, self.covs)

    def shifted(self, dx, dy):
        """All means moved by ``(dx, dy)`` pixels."""
        return Mixture(self.amps, self.means + np.array([dx, dy], float), self.covs)

    def centered(self):
        """Shifted so the flux-weighted centroid is at (0, 0)."""
        cx, cy = self.centroid()
        return self.shifted(-cx, -cy)

    def transformed(self, matrix, offset=(0.0, 0.0)):
        """Affine image ``x -> matrix @ x + offset``: means ``A m + o``, covariances ``A C A^T``.

        Amplitudes are unchanged (flux is conserved by the change of variables).
        """
        A = np.asarray(matrix, float)
        if A.shape != (2, 2):
            raise ValueError(f"matrix must be 2x2, got {A.shape}")
        means = self.means @ A.T + np.asarray(offset, float)
        covs = np.einsum("ij,kjl,ml->kim", A, self.covs, A)
        return Mixture(self.amps, means, covs)

    def convolve(self, other):
        """Convolution with another mixture: K*L components, amps multiply, means and covs add.

        Components are ordered ``self``-major: component ``i * len(other) + j`` is
        ``self[i] * other[j]``.
        """
        amps = np.multiply.outer(self.amps, other.amps).ravel()
        means = (self.means[:, None, :] + other.means[None, :, :]).reshape(-1, 2)
        covs = (self.covs[:, None] + other.covs[None, :]).reshape(-1, 2, 2)
        return Mixture(amps, means, covs)

    def evaluate(self, x, y):
        """Evaluate the mixture density at points ``(x, y)`` (broadcast arrays), in flux/pixel^2."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        out = np.zeros(np.broadcast(x, y).shape)
        for a, m, c in zip(self.amps, self.means, self.covs):
            det = c[0, 0] * c[1, 1] - c[0, 1] ** 2
            dx = x - m[0]
            dy = y - m[1]
            chi2 = (c[1, 1] * dx * dx - 2 * c[0, 1] * dx * dy + c[0, 0] * dy * dy) / det
            out += a / (2 * np.pi * np.sqrt(det)) * np.exp(-0.5 * chi2)
        return out

    # ------------------------------------------------------ value semantics
    def _key(self):
        # ``+ 0.0`` turns -0.0 into 0.0: the two compare equal, so they must hash alike
        return tuple((a + 0.0).tobytes() for a in (self.amps, self.means, self.covs))

    def __eq__(self, other):
        if not isinstance(other, Mixture):
            return NotImplemented
        return (self.amps.shape == other.amps.shape and np.array_equal(self.amps, other.amps)
                and np.array_equal(self.means, other.means)
                and np.array_equal(self.covs, other.covs))

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        return (_rebuild, (self.amps.copy(), self.means.copy(), self.covs.copy()))

    def __repr__(self):
        return (f"Mixture(amps={self.amps.tolist()!r}, means={self.means.tolist()!r}, "
                f"covs={self.covs.tolist()!r})")

    def allclose(self, other, *, rtol=1e-12, atol=0.0):
        """Component-by-component comparison (same order)."""
        return (len(self) == len(other)
                and np.allclose(self.amps, other.amps, rtol=rtol, atol=atol)
                and np.allclose(self.means, other.means, rtol=rtol, atol=atol)
                and np.allclose(self.covs, other.covs, rtol=rtol, atol=atol))

    @classmethod
    def isotropic(cls, amps, variances, means=None):
        """Concentric round Gaussians: ``covs[k] = variances[k] * I``."""
        amps = np.asarray(amps, float)
        v = np.asarray(variances, float)
        covs = v[:, None, None] * np.eye(2)[None]
        return cls(amps, means, covs)


def _rebuild(amps, means, covs):
    return Mixture(amps, means, covs, validate=False)
