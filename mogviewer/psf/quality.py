"""How well a mixture describes a PSF stamp: residuals, FWHM (second moments and aperture), flux.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

#: Radius, in core FWHMs, of the aperture of the second-moment FWHM in :class:`PsfQuality`.
APERTURE_FWHMS = 3.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: What the automatic choice of K asks of a mixture, besides max|res|/peak < 1 %: second-moment
#: size within 0.1 %, total within 0.1 %, centroid within 0.01 px of the stamp's (what a
#: galaxy's fitted size, flux and centre inherit from the PSF).
SIZE_TOL = 1e-3
FLUX_TOL = 1e-3
CENTROID_TOL = 0.01



@dataclass(frozen=True, eq=False)
class PsfQuality:
    """How well a mixture reproduces a PSF stamp.

    Attributes
    ----------
    model : ndarray, shape (h, w)
        The mixture evaluated at the stamp's pixel centres (same flux units as the stamp).
    residual : ndarray, shape (h, w)
        ``stamp - model``; NaN where the stamp was masked.
    peak : float
        Maximum of the stamp over the unmasked pixels.
    max_abs_residual_over_peak : float
        ``max |residual| / peak`` (dimensionless; 0.01 means 1 % of the peak).
    residual_flux_fraction : float
        ``sum |residual| / sum(stamp)`` over the unmasked pixels: the fraction of the flux that is
        misplaced.
    fwhm_stamp, fwhm_model : float
        Second-moment FWHM in pixels, ``2 sqrt(2 ln 2) det(M)^(1/4)`` with ``M`` the unweighted
        second-moment matrix (about the centroid, pixel values as they are) inside a circle of
        radius ``APERTURE_FWHMS`` (= 3) core FWHMs of the stamp around the stamp centroid; the same
        pixels for the stamp and for the model. For a Gaussian it is the FWHM (to 1e-4). It
        weighs the wings, which a convolution adds to a galaxy's second moments; the aperture
        keeps out the far wings, where noise and negative sky residuals of real stamps (PSFEx,
        KiDS) would dominate. NaN when ``M`` is not positive definite.
    fwhm_ratio : float
        ``fwhm_model / fwhm_stamp``; 1 is a perfect match of the second moments (the size
        ratio). NaN when the stamp's moments are undefined (see :attr:`size_defined`).
    core_fwhm_stamp, core_fwhm_model, core_fwhm_ratio : float
        The same with adaptive (Gaussian-weighted, Bernstein & Jarvis 2002) moments: the FWHM of
        the core. Least squares matches the core even with K = 1, so this ratio stays near 1.
    flux_ratio : float
        ``sum(model) / sum(stamp)`` over the unmasked pixels.
    centroid_offset : float
        Distance (pixels) between the model's and the stamp's centroids inside the aperture.
    """

    model: np.ndarray
    residual: np.ndarray
    peak: float
    max_abs_residual_over_peak: float
    residual_flux_fraction: float
    fwhm_stamp: float
    fwhm_model: float
    fwhm_ratio: float
    core_fwhm_stamp: float = float("nan")
    core_fwhm_model: float = float("nan")
    core_fwhm_ratio: float = float("nan")
    flux_ratio: float = float("nan")
    centroid_offset: float = float("nan")

    @property
    def size_defined(self):
        """False when the stamp's aperture second moments are not positive definite (a negative
        ring inside the aperture, as in KiDS stamps): no size can be compared."""
        return math.isfinite(self.fwhm_ratio)

    def moment_errors(self):
        """``(|size ratio - 1|, |flux ratio - 1|, centroid offset in px)``; the size term is
        None when :attr:`size_defined` is false."""
        size = abs(self.fwhm_ratio - 1.0) if self.size_defined else None
        return size, abs(self.flux_ratio - 1.0), self.centroid_offset

    def badness(self, *, target=0.01, size_tol=SIZE_TOL, flux_tol=FLUX_TOL,
                centroid_tol=CENTROID_TOL):
        """Largest of the four figures over its tolerance (<= 1: the mixture is good enough
        for galaxy sizes). With an undefined size, size and total are left out."""
        size, flux, off = self.moment_errors()
        terms = [self.max_abs_residual_over_peak / target, off / centroid_tol]
        if size is not None:
            # a stamp without a size has negative wings, whose (negative) flux no mixture of
            # positive Gaussians can match either: both terms are left out then, or the choice
            # would fall on K = 1 (KiDS G265911: its total is nearest the stamp's only because
            # it misses most of the core)
            terms += [size / size_tol, flux / flux_tol]
        return float(max(terms))

    def summary(self):
        """One line for people: ``max|res|/peak = 0.42 %, |res| flux = 1.1 %, size ratio 0.998,
        total ratio 1.0003``; a figure that cannot be computed is named, never printed as nan."""
        size = (f"size ratio (mixture/stamp, 2nd moments) = {self.fwhm_ratio:.4f}"
                if self.size_defined else
                "size ratio undefined (the stamp's second moments are not positive: negative "
                "wings)")
        return (f"max|res|/peak = {100 * self.max_abs_residual_over_peak:.3g} %, "
                f"|res| flux = {100 * self.residual_flux_fraction:.3g} %, {size}, "
                f"total ratio = {self.flux_ratio:.4f}, centroid offset = "
                f"{self.centroid_offset:.3g} px")



# ------------------------------------------------------------------------- evaluation
def _grid(shape):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    return x.astype(float), y.astype(float)


def _render(mixture, shape):
    x, y = _grid(shape)
    return mixture.evaluate(x, y)



# -------------------------------------------------------------------------- moments
def _moments(img, x, y):
    """Flux-weighted centroid (x, y) and 2x2 second-moment matrix of values ``img`` at (x, y)."""
    s = img.sum()
    cx = (img * x).sum() / s
    cy = (img * y).sum() / s
    dx, dy = x - cx, y - cy
    mxx = (img * dx * dx).sum() / s
    myy = (img * dy * dy).sum() / s
    mxy = (img * dx * dy).sum() / s
    return np.array([cx, cy]), np.array([[mxx, mxy], [mxy, myy]])


def _moment_fwhm(img, x, y, *, n_iter=100, rtol=1e-10):
    """Adaptive second-moment FWHM (pixels) of values ``img`` at points ``(x, y)``.

    Gaussian-weighted moments (Bernstein & Jarvis 2002): iterate ``S <- 2 M_W(S)`` where
    ``M_W(S)`` is the second-moment matrix of ``img * exp(-d^T S^-1 d / 2)`` about its centroid.
    For a Gaussian of covariance C the fixed point is ``S = C``; the result is
    ``2 sqrt(2 ln 2) det(S)^(1/4)``, the FWHM of a Gaussian of the same area. The weight makes it
    insensitive to noise in the far wings. NaN if it does not converge to a positive definite S.
    """
    pos = np.clip(img, 0, None)
    if not pos.sum() > 0:
        return float("nan")
    c = np.array([x[np.argmax(img)], y[np.argmax(img)]], float)
    area = np.count_nonzero(pos >= 0.5 * pos.max())
    S = np.eye(2) * max(area / (2 * math.pi * math.log(2.0)), 1.0)
    for _ in range(n_iter):
        P = np.linalg.inv(S)
        dx, dy = x - c[0], y - c[1]
        W = np.exp(-0.5 * (P[0, 0] * dx * dx + 2 * P[0, 1] * dx * dy + P[1, 1] * dy * dy))
        wi = img * W
        if not wi.sum() > 0:
            return float("nan")
        c, M = _moments(wi, x, y)
        S_new = 2.0 * M
        det = S_new[0, 0] * S_new[1, 1] - S_new[0, 1] ** 2
        if not (S_new[0, 0] > 0 and det > 0):
            return float("nan")
        done = np.abs(S_new - S).max() < rtol * np.abs(S).max()
        S = S_new
        if done:
            break
    return _FWHM_PER_SIGMA * (S[0, 0] * S[1, 1] - S[0, 1] ** 2) ** 0.25


def _aperture_fwhm(img, x, y, centre, radius):
    """Unweighted second-moment FWHM (pixels) of ``img`` inside a circular aperture."""
    inside = np.hypot(x - centre[0], y - centre[1]) <= radius
    v = img[inside]
    if not v.sum() > 0:
        return float("nan")
    _, M = _moments(v, x[inside], y[inside])
    det = M[0, 0] * M[1, 1] - M[0, 1] ** 2
    if not (M[0, 0] > 0 and det > 0):
        return float("nan")
    return _FWHM_PER_SIGMA * det ** 0.25


def quality_report(stamp, mixture):
    """Compare a mixture with a stamp on the stamp's pixel grid.

    Parameters
    ----------
    stamp : array_like, shape (h, w)
        The PSF image ``stamp[y, x]``; non-finite pixels are ignored.
    mixture : Mixture
        In the stamp's pixel coordinates and flux units.

    Returns
    -------
    PsfQuality
        See :class:`PsfQuality` for the definitions.
    """
    with np.errstate(all="ignore"):   # undefined figures are NaN by definition, not warnings
        return _quality_report(stamp, mixture)


#: The stamp's own figures by content (a PSF fit reports the quality of K = 1, 2, ... against
#: one stamp: its adaptive moments were half of every report's time)
_STAMP_CACHE = {}


def _stamp_figures(stamp, good, x, y):
    """``(s, xs, ys, cs, centre, radius, fs, inside)`` of the stamp, computed once per stamp."""
    key = (stamp.shape, hashlib.blake2b(stamp.tobytes(), digest_size=16).digest())
    hit = _STAMP_CACHE.get(key)
    if hit is not None:
        return hit
    s = stamp[good]
    xs, ys = x[good], y[good]
    cs = _moment_fwhm(s, xs, ys)
    centre, _ = _moments(np.clip(s, 0, None), xs, ys)
    radius = APERTURE_FWHMS * cs
    fs = _aperture_fwhm(s, xs, ys, centre, radius)
    inside = np.hypot(xs - centre[0], ys - centre[1]) <= radius
    out = (s, xs, ys, cs, centre, radius, fs, inside)
    if len(_STAMP_CACHE) >= 8:
        _STAMP_CACHE.clear()
    _STAMP_CACHE[key] = out
    return out


def _quality_report(stamp, mixture):
    stamp = np.asarray(stamp, float)
    good = np.isfinite(stamp)
    x, y = _grid(stamp.shape)
    model = mixture.evaluate(x, y)
    residual = np.where(good, stamp - model, np.nan)
    s, xs, ys, cs, centre, radius, fs, inside = _stamp_figures(stamp, good, x, y)
    peak = float(s.max())
    res = residual[good]
    cm = _moment_fwhm(model[good], xs, ys)
    fm = _aperture_fwhm(model[good], xs, ys, centre, radius)
    if inside.sum() > 0 and s[inside].sum() > 0 and model[good][inside].sum() > 0:
        c_s, _ = _moments(s[inside], xs[inside], ys[inside])
        c_m, _ = _moments(model[good][inside], xs[inside], ys[inside])
        offset = float(np.hypot(*(c_m - c_s)))
    else:
        offset = float("nan")
    return PsfQuality(model=model, residual=residual, peak=peak,
                      max_abs_residual_over_peak=float(np.abs(res).max() / peak),
                      residual_flux_fraction=float(np.abs(res).sum() / s.sum()),
                      fwhm_stamp=fs, fwhm_model=fm, fwhm_ratio=fm / fs,
                      core_fwhm_stamp=cs, core_fwhm_model=cm, core_fwhm_ratio=cm / cs,
                      flux_ratio=float(model[good].sum() / s.sum()), centroid_offset=offset)
