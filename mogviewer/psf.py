"""PSF mixtures: read every PSF a user brings and turn it into a mixture of Gaussians.

The Hogg & Lang (2013) method needs the **pixel-convolved** PSF as a mixture of Gaussians
(:class:`mogviewer.mixture.Mixture`). Users bring a PSF image, a PSFEx file or a Tractor mixture;
:func:`read_psf` accepts all of them (dispatching on the file's *content*, never on its name) and
returns a :class:`PsfModel`: the mixture, the stamp it was fitted to, a quality report and the
notes of what was assumed.

Conventions
-----------
* Images are ``image[y, x]``; pixel centres sit at integer, 0-based coordinates ``(x, y)``.
* A PSF image is the pixel-convolved PSF sampled at pixel centres, so a mixture is compared with
  it by *evaluating* the Gaussians at pixel centres (no further pixel integration).
* A mixture returned by :func:`read_psf` is centred (its reference centre, by default the
  flux-weighted centroid, is at ``(0, 0)``) and normalised to unit total: ``sum(amps) = 1``.
  Means are offsets ``(x, y)`` in pixels, covariances ``[[xx, xy], [xy, yy]]`` in pixels^2.
* :func:`fit_psf` works in the stamp's own pixel coordinates and on the stamp's own flux units; it
  neither centres nor normalises.

Error policy
------------
A file or array that cannot be a PSF raises :class:`PsfError` (a ``ValueError``) whose message
names the file and says what is wrong and what to do. A missing file raises the usual
``FileNotFoundError``. Something that works but deserves attention (an off-centre or even-sized
stamp, masked NaNs, a PSFEx position outside the fitted range, several candidate HDUs) emits a
:class:`PsfWarning` and is also recorded in :attr:`PsfModel.notes`.

File formats (REFERENCE.md section 3)
-------------------------------------
* PSF image: any 2-D image HDU of a FITS file, or a ``.npy`` array.
* PSFEx: BINTABLE with column ``PSF_MASK`` of shape ``(n_terms, h, w)`` and keywords ``POLZERO1/2``,
  ``POLSCAL1/2``, ``POLDEG1``, ``PSF_SAMP``.
* Tractor mixture, header form: ``PSF_P0 ... PSF_P{6K-1}`` = K amplitudes, K ``(x, y)`` means,
  K ``(xx, yy, xy)`` variances.
* Tractor mixture, table form: one BINTABLE row per component, columns ``amp`` (D), ``mean`` (2D),
  ``var`` (4D, TDIM ``(2,2)``).
* mogviewer JSON: ``{"format": "mogviewer-psf-mixture", "amps": [...], "means": [...],
  "covs": [...]}``.

:func:`write_psf` writes the table form *and* the header form into one FITS file (so the Tractor
can read ours either way), or JSON when the file name ends in ``.json``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .mixture import Mixture

__all__ = ["PsfError", "PsfWarning", "PsfQuality", "PsfFit", "PsfModel", "fit_psf",
           "fit_psf_auto", "fit_psf_sequence", "quality_report", "read_psf", "write_psf",
           "psfex_stamp", "prepare_stamp", "register_cli", "DEFAULT_TARGET", "MAX_COMPONENTS"]

#: Target of the automatic choice of K: max |residual| / peak below this (1 %).
DEFAULT_TARGET = 0.01
#: Largest K tried by the automatic choice.
MAX_COMPONENTS = 6
#: Default largest fraction of non-finite pixels that is masked rather than refused.
MAX_BAD_FRACTION = 0.05
#: An off-centre warning is emitted when the stamp centroid is further than this (pixels) from
#: the geometric centre along x or y.
OFFCENTRE_TOLERANCE = 0.5
#: Lower bound (pixels) on the diagonal of each covariance's Cholesky factor in the fit: a
#: Gaussian narrower than this, sampled at pixel centres, only fits single-pixel noise.
MIN_SIGMA = 0.2
#: Radius, in core FWHMs, of the aperture of the second-moment FWHM in :class:`PsfQuality`.
APERTURE_FWHMS = 3.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_JSON_FORMAT = "mogviewer-psf-mixture"


class PsfError(ValueError):
    """A file or array that cannot be used as a PSF; the message says why and what to do."""


class PsfWarning(UserWarning):
    """A PSF was accepted, but with an assumption the user should know about."""


# ----------------------------------------------------------------------------- results
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
        ``fwhm_model / fwhm_stamp``; 1 is a perfect match of the second moments.
    core_fwhm_stamp, core_fwhm_model, core_fwhm_ratio : float
        The same with adaptive (Gaussian-weighted, Bernstein & Jarvis 2002) moments: the FWHM of
        the core. Least squares matches the core even with K = 1, so this ratio stays near 1.
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

    def summary(self):
        """One line for people: ``max|res|/peak = 0.42 %, |res| flux = 1.1 %, FWHM ratio 0.998``."""
        return (f"max|res|/peak = {100 * self.max_abs_residual_over_peak:.3g} %, "
                f"|res| flux = {100 * self.residual_flux_fraction:.3g} %, "
                f"FWHM ratio (mixture/stamp) = {self.fwhm_ratio:.4f}")


@dataclass(frozen=True, eq=False)
class PsfFit:
    """Result of :func:`fit_psf`.

    Attributes
    ----------
    mixture : Mixture
        The fitted mixture in the stamp's pixel coordinates and flux units.
    quality : PsfQuality
        Residuals and summary figures.
    n_components : int
        K.
    converged : bool
        Whether the least-squares polish reported convergence.
    message : str
        The optimiser's message.
    """

    mixture: Mixture
    quality: PsfQuality
    n_components: int
    converged: bool
    message: str


@dataclass(frozen=True, eq=False)
class PsfModel:
    """A PSF ready for use: what :func:`read_psf` returns.

    Attributes
    ----------
    mixture : Mixture
        Centred on the reference centre and normalised to unit total (when it came from a stamp),
        or exactly as stored (when the file held a mixture).
    source : str
        What the file was: ``"image"``, ``"npy"``, ``"psfex"``, ``"tractor-header"``,
        ``"tractor-table"`` or ``"json"``.
    stamp : ndarray or None
        The stamp the mixture was fitted to, NaN where masked, on the mixture's flux scale: the
        stamp normalised to unit sum, then divided by the fitted mixture's total (a factor near
        1, stated in ``notes``), or None for a mixture file.
    centre : tuple of float or None
        Reference centre ``(x, y)`` of the stamp in its pixel coordinates; ``mixture`` is the
        fitted mixture shifted by ``-centre``.
    quality : PsfQuality or None
        Quality report of the mixture on the stamp (computed after normalisation).
    notes : tuple of str
        What was assumed or chosen (HDU, plane, centre, normalisation, K, ...), in order.
    trials : dict
        ``{K: max|res|/peak}`` of every K tried by the automatic choice (empty when K was given).
    """

    mixture: Mixture
    source: str
    stamp: np.ndarray | None = None
    centre: tuple | None = None
    quality: PsfQuality | None = None
    notes: tuple = ()
    trials: dict = field(default_factory=dict)

    @property
    def n_components(self):
        """Number of Gaussians K."""
        return len(self.mixture)

    def model_image(self):
        """The mixture evaluated on the stamp's pixel grid (None without a stamp)."""
        if self.stamp is None:
            return None
        return _render(self.mixture.shifted(*self.centre), self.stamp.shape)


# ------------------------------------------------------------------------- evaluation
def _grid(shape):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    return x.astype(float), y.astype(float)


def _render(mixture, shape):
    x, y = _grid(shape)
    return mixture.evaluate(x, y)


def _unpack(p, K, nonneg=False, min_sigma=0.0):
    """Parameter vector -> amps, means, Cholesky factors, covariances.

    Per component k the six parameters are ``(alpha, mx, my, t11, l21, t22)`` with
    ``L = [[l11, 0], [l21, l22]]``, ``l11 = min_sigma + exp(t11)``, ``l22 = min_sigma + exp(t22)``
    and ``C = L L^T`` (so C is positive definite for every p and its Cholesky diagonal is at least
    ``min_sigma``); the amplitude is ``alpha^2`` when ``nonneg`` else ``alpha``. No bounds are
    needed, so MINPACK's Levenberg-Marquardt (single-threaded, no BLAS) can be used.
    """
    q = p.reshape(K, 6)
    amps = q[:, 0] ** 2 if nonneg else q[:, 0]
    means = q[:, 1:3]
    l11 = min_sigma + np.exp(q[:, 3])
    l21 = q[:, 4]
    l22 = min_sigma + np.exp(q[:, 5])
    cxx = l11 * l11
    cxy = l11 * l21
    cyy = l21 * l21 + l22 * l22
    return amps, means, l11, l21, l22, cxx, cxy, cyy


def _pack(mixture, nonneg=False, min_sigma=0.0):
    K = len(mixture)
    p = np.empty((K, 6))
    p[:, 0] = np.sqrt(np.abs(mixture.amps)) if nonneg else mixture.amps
    p[:, 1:3] = mixture.means
    L = np.linalg.cholesky(mixture.covs)
    floor = 1e-3 * max(min_sigma, 1e-3)
    p[:, 3] = np.log(np.maximum(L[:, 0, 0] - min_sigma, floor))
    p[:, 4] = L[:, 1, 0]
    p[:, 5] = np.log(np.maximum(L[:, 1, 1] - min_sigma, floor))
    return p.ravel()


def _to_mixture(p, K, nonneg=False, min_sigma=0.0, validate=True):
    amps, means, _, _, _, cxx, cxy, cyy = _unpack(p, K, nonneg, min_sigma)
    covs = np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], -2)
    return Mixture(amps, means, covs, validate=validate)


def _model_and_jacobian(p, K, x, y, *, jac=True, nonneg=False, min_sigma=0.0):
    """Mixture model at points (x, y) and its derivatives w.r.t. the packed parameters.

    The model is ``f(x) = sum_k a_k N(x | m_k, C_k)``. With ``d = x - m``, ``P = C^-1`` and
    ``u = P d``: ``df/da = N``, ``df/dm = a N u`` and ``df/dC = a N G`` with
    ``G = (u u^T - P) / 2``; the Cholesky parameters follow from ``dC = dL L^T + L dL^T``
    (see :func:`_unpack` for the parametrisation). Returns ``model`` (n,) and ``J`` (n, 6K).
    """
    amps, means, l11, l21, l22, cxx, cxy, cyy = _unpack(p, K, nonneg, min_sigma)
    det = cxx * cyy - cxy * cxy
    pxx = (cyy / det)[:, None]
    pyy = (cxx / det)[:, None]
    pxy = (-cxy / det)[:, None]
    dx = x[None, :] - means[:, 0:1]
    dy = y[None, :] - means[:, 1:2]
    ux = pxx * dx + pxy * dy
    uy = pxy * dx + pyy * dy
    chi2 = dx * ux + dy * uy
    N = np.exp(-0.5 * chi2) / (2.0 * np.pi * np.sqrt(det))[:, None]
    model = (amps[:, None] * N).sum(axis=0)      # no BLAS: see _unpack
    if not jac:
        return model, None
    aN = amps[:, None] * N
    gxx = 0.5 * (ux * ux - pxx)
    gyy = 0.5 * (uy * uy - pyy)
    gxy = 0.5 * (ux * uy - pxy)
    # tr(G dC) for symmetric dC: gxx dCxx + gyy dCyy + 2 gxy dCxy
    a11, a21, a22 = l11[:, None], l21[:, None], l22[:, None]
    e11, e22 = a11 - min_sigma, a22 - min_sigma     # d l11 / d t11, d l22 / d t22
    J = np.empty((K, 6, x.size))
    J[:, 0] = 2 * p.reshape(K, 6)[:, 0:1] * N if nonneg else N
    J[:, 1] = aN * ux
    J[:, 2] = aN * uy
    J[:, 3] = aN * e11 * (gxx * 2 * a11 + 2 * gxy * a21)       # d/d t11
    J[:, 4] = aN * (2 * gxy * a11 + gyy * 2 * a21)              # d/d l21
    J[:, 5] = aN * e22 * (gyy * 2 * a22)                         # d/d t22
    return model, J.reshape(6 * K, x.size).T


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
    stamp = np.asarray(stamp, float)
    good = np.isfinite(stamp)
    x, y = _grid(stamp.shape)
    model = mixture.evaluate(x, y)
    residual = np.where(good, stamp - model, np.nan)
    s = stamp[good]
    peak = float(s.max())
    res = residual[good]
    xs, ys = x[good], y[good]
    cs = _moment_fwhm(s, xs, ys)
    cm = _moment_fwhm(model[good], xs, ys)
    centre, _ = _moments(np.clip(s, 0, None), xs, ys)
    radius = APERTURE_FWHMS * cs
    fs = _aperture_fwhm(s, xs, ys, centre, radius)
    fm = _aperture_fwhm(model[good], xs, ys, centre, radius)
    return PsfQuality(model=model, residual=residual, peak=peak,
                      max_abs_residual_over_peak=float(np.abs(res).max() / peak),
                      residual_flux_fraction=float(np.abs(res).sum() / s.sum()),
                      fwhm_stamp=fs, fwhm_model=fm, fwhm_ratio=fm / fs,
                      core_fwhm_stamp=cs, core_fwhm_model=cm, core_fwhm_ratio=cm / cs)


# ---------------------------------------------------------------------------- fitting
def _initial_mixture(img, x, y, K):
    """Start for EM from moments: K concentric Gaussians sharing the stamp's ellipticity.

    The core variance comes from the area A above half the peak (``sigma^2 = A / (2 pi ln 2)``
    for a Gaussian); the widest from the second moments of the positive pixels; the K variances
    are spaced geometrically between the two, the amplitudes equal.
    """
    w = np.clip(img, 0, None)
    centre, M = _moments(w, x, y)
    det = M[0, 0] * M[1, 1] - M[0, 1] ** 2
    if not (M[0, 0] > 0 and det > 0):
        M, det = np.eye(2), 1.0
    shape = M / math.sqrt(det)                     # unit-determinant ellipticity
    area = np.count_nonzero(w >= 0.5 * w.max())
    v_core = max(area / (2 * math.pi * math.log(2.0)), 0.05)
    v_wide = max(math.sqrt(det), 1.5 * v_core)
    v = np.geomspace(v_core, v_wide, K) if K > 1 else np.array([math.sqrt(v_core * v_wide)])
    covs = v[:, None, None] * shape[None]
    return Mixture(np.full(K, w.sum() / K), np.tile(centre, (K, 1)), covs)


def _em(img, x, y, start, *, n_iter=300, tol=1e-7, var_floor=0.02):
    """Expectation-maximisation on pixel values clipped at zero (pixels as weighted points).

    Stops when the weighted mean log-likelihood changes by less than ``tol`` or after ``n_iter``
    steps; a floor ``var_floor`` (pixels^2) on the diagonal keeps components from collapsing onto
    one pixel.
    """
    w = np.clip(img, 0, None)
    W = w.sum()
    amps = np.array(start.amps, float)
    means = np.array(start.means, float)
    covs = np.array(start.covs, float)
    last = -np.inf
    pts = np.stack([x, y])
    for _ in range(n_iter):
        det = covs[:, 0, 0] * covs[:, 1, 1] - covs[:, 0, 1] ** 2
        dx = x[None] - means[:, 0:1]
        dy = y[None] - means[:, 1:2]
        chi2 = (covs[:, 1, 1, None] * dx * dx - 2 * covs[:, 0, 1, None] * dx * dy
                + covs[:, 0, 0, None] * dy * dy) / det[:, None]
        logp = np.log(np.maximum(amps, 1e-300))[:, None] - 0.5 * chi2 \
            - np.log(2 * np.pi * np.sqrt(det))[:, None]
        mx = logp.max(axis=0)
        p = np.exp(logp - mx)
        tot = p.sum(axis=0)
        ll = float((w * (np.log(tot) + mx)).sum() / W)
        r = p / tot * w[None]
        rk = r.sum(axis=1)
        keep = rk > 1e-12 * W
        rk = np.where(keep, rk, 1.0)
        means = np.where(keep[:, None], (r @ pts.T) / rk[:, None], means)
        dx = x[None] - means[:, 0:1]
        dy = y[None] - means[:, 1:2]
        cxx = (r * dx * dx).sum(1) / rk + var_floor
        cyy = (r * dy * dy).sum(1) / rk + var_floor
        cxy = (r * dx * dy).sum(1) / rk
        newcovs = np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], -2)
        covs = np.where(keep[:, None, None], newcovs, covs)
        amps = np.where(keep, r.sum(axis=1), amps * 1e-3)
        if abs(ll - last) < tol:
            break
        last = ll
    # EM fits a density to weights summing to W; rescale to the stamp's total.
    amps = amps * (img.sum() / amps.sum())
    return Mixture(amps, means, covs, validate=False)


def _polish(img, x, y, start, *, allow_negative, min_sigma=MIN_SIGMA, max_nfev=500):
    """Least-squares polish; returns (scipy result, mixture)."""
    from scipy.optimize import least_squares

    K = len(start)
    kw = dict(nonneg=not allow_negative, min_sigma=min_sigma)
    p0 = _pack(start, **kw)

    def fun(p):
        return _model_and_jacobian(p, K, x, y, jac=False, **kw)[0] - img

    def jac(p):
        return _model_and_jacobian(p, K, x, y, **kw)[1]

    with np.errstate(over="ignore", under="ignore"):
        res = least_squares(fun, p0, jac=jac, method="lm", x_scale="jac",
                            ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=max_nfev)
    return res, _to_mixture(res.x, K, validate=False, **kw)


def _check_stamp(image, what="the PSF image"):
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise PsfError(f"{what} has data type {arr.dtype}; a PSF image must be numeric")
    arr = arr.astype(float)
    if arr.ndim != 2:
        raise PsfError(f"{what} has shape {arr.shape} ({arr.ndim}-D); a PSF image must be a 2-D "
                       f"array image[y, x]")
    if arr.size == 0:
        raise PsfError(f"{what} is empty (shape {arr.shape})")
    return arr


def fit_psf(image, n_components, *, allow_negative=False, mask=None, init=None,
            em_iterations=300, max_nfev=500, min_sigma=MIN_SIGMA):
    """Fit a mixture of ``n_components`` Gaussians to a PSF image by EM, then least squares.

    Model: ``f(x, y) = sum_k a_k N((x, y) | m_k, C_k)`` evaluated at the pixel centres (the image
    is the pixel-convolved PSF, so no pixel integration), fitted to ``image[y, x]`` by unweighted
    least squares ``sum_pixels (f - image)^2``.

    1. Start: K concentric Gaussians from the image moments (see :func:`_initial_mixture`),
       refined by EM on the pixel values clipped at zero. When ``init`` has K components it
       replaces this start; when it has fewer (a fit with K - 1), it is a *second* start, completed
       by a wide component (twice the widest covariance, 3 % of the flux, at the centroid).
    2. Polish: :func:`scipy.optimize.least_squares` (Levenberg-Marquardt) with the analytic
       Jacobian w.r.t. amplitude, mean and Cholesky factor ``L`` of each covariance
       (``C = L L^T`` with diagonal ``min_sigma + exp(t)``, so every covariance stays positive
       definite and no Gaussian gets narrower than ``min_sigma`` pixels along x, or along y
       given x); amplitudes ``alpha^2 >= 0`` unless ``allow_negative``. Of several starts the
       lowest sum of squares wins.

    Parameters
    ----------
    image : array_like, shape (h, w)
        PSF stamp ``image[y, x]`` in any flux units; non-finite pixels are left out.
    n_components : int
        K >= 1.
    allow_negative : bool, keyword-only
        Allow negative amplitudes (the total stays positive).
    mask : array_like of bool, shape (h, w), optional
        True marks pixels to leave out.
    init : Mixture, optional
        Starting mixture in the stamp's pixel coordinates (see above).
    em_iterations, max_nfev : int
        Limits for EM steps and least-squares evaluations.
    min_sigma : float
        Lower bound (pixels) on the diagonal of each Cholesky factor.

    Returns
    -------
    PsfFit
        The mixture is in the stamp's pixel coordinates (means ``(x, y)``, 0-based) and the
        image's flux units: neither centred nor normalised.

    Raises
    ------
    PsfError
        For an image that is not 2-D, empty, has no positive flux, or has fewer usable pixels than
        parameters; or when the fit ends in an invalid mixture.
    """
    arr = _check_stamp(image)
    K = int(n_components)
    if K < 1:
        raise PsfError(f"the number of components must be at least 1, got {n_components}")
    good = np.isfinite(arr)
    if mask is not None:
        good &= ~np.asarray(mask, bool)
    if not good.any():
        raise PsfError("every pixel of the PSF image is masked or not finite")
    x, y = _grid(arr.shape)
    xs, ys, vs = x[good], y[good], arr[good]
    if not np.any(vs != 0):
        raise PsfError("the PSF image is all zeros; there is no PSF to fit")
    if not vs.sum() > 0 or not vs.max() > 0:
        raise PsfError(f"the PSF image sums to {vs.sum():.4g}; a PSF needs positive total flux")
    if vs.size <= 6 * K:
        raise PsfError(f"the PSF image has {vs.size} usable pixels, too few for {K} components "
                       f"({6 * K} parameters)")
    starts = []
    if init is not None and len(init) > K:
        raise PsfError(f"init has {len(init)} components, more than n_components = {K}")
    if init is not None and len(init) == K:
        starts.append(init)
    else:
        starts.append(_em(vs, xs, ys, _initial_mixture(vs, xs, ys, K), n_iter=em_iterations))
        if init is not None:
            starts.append(_augment(init, K))
    res = None
    for start in starts:
        r, m = _polish(vs, xs, ys, start, allow_negative=allow_negative, max_nfev=max_nfev,
                       min_sigma=min_sigma)
        if res is None or r.cost < res.cost:
            res, mix = r, m
    try:
        mix.validate()
    except ValueError as exc:
        raise PsfError(f"the {K}-component fit ended in an invalid mixture: {exc}") from None
    full = np.where(good, arr, np.nan)
    return PsfFit(mixture=mix, quality=quality_report(full, mix), n_components=K,
                  converged=bool(res.success), message=str(res.message))


def _augment(mix, K):
    """Complete a mixture to K components with wide Gaussians at its centroid."""
    amps, means, covs = list(mix.amps), list(mix.means), list(mix.covs)
    c = mix.centroid()
    while len(amps) < K:
        widest = covs[int(np.argmax([np.linalg.det(v) for v in covs]))]
        amps.append(0.03 * mix.total)
        means.append(c)
        covs.append(2.0 * widest)
    return Mixture(amps, means, covs, validate=False)


def fit_psf_sequence(image, max_components, *, allow_negative=False, mask=None, stop=None):
    """Fit K = 1, 2, ..., ``max_components``, each K also started from the K - 1 fit.

    Warm starts make the sum of squares non-increasing in K (the moment start alone can land in
    a worse local minimum).

    Parameters
    ----------
    stop : callable, optional
        ``stop(fit) -> bool``; the sequence ends early at the first fit where it is true.

    Returns
    -------
    list of PsfFit
        Index ``K - 1`` holds the K-component fit.
    """
    fits = []
    for K in range(1, int(max_components) + 1):
        try:
            f = fit_psf(image, K, allow_negative=allow_negative, mask=mask,
                        init=fits[-1].mixture if fits else None)
        except PsfError:
            if K == 1:
                raise
            break
        fits.append(f)
        if stop is not None and stop(f):
            break
    return fits


def fit_psf_auto(image, *, max_components=MAX_COMPONENTS, target=DEFAULT_TARGET,
                 allow_negative=False, mask=None):
    """Fit K = 1, 2, ... and keep the smallest K with ``max|residual|/peak < target``.

    When no K up to ``max_components`` reaches the target, the K with the smallest
    ``max|residual|/peak`` is kept.

    Returns
    -------
    best : PsfFit
    trials : dict
        ``{K: max|residual|/peak}`` for every K tried.
    """
    fits = fit_psf_sequence(image, max_components, allow_negative=allow_negative, mask=mask,
                            stop=lambda f: f.quality.max_abs_residual_over_peak < target)
    trials = {f.n_components: f.quality.max_abs_residual_over_peak for f in fits}
    best = fits[-1] if trials[fits[-1].n_components] < target else min(
        fits, key=lambda f: f.quality.max_abs_residual_over_peak)
    return best, trials


# ------------------------------------------------------------------------ stamp handling
def prepare_stamp(image, *, max_bad_fraction=MAX_BAD_FRACTION, what="the PSF image"):
    """Check a PSF image, mask non-finite pixels and normalise it to unit sum.

    Parameters
    ----------
    image : array_like, shape (h, w)
        ``image[y, x]``.
    max_bad_fraction : float, keyword-only
        Largest fraction of non-finite pixels that is masked (with a :class:`PsfWarning`);
        more is refused.

    Returns
    -------
    stamp : ndarray
        ``image / sum(finite pixels)``, NaN where masked.
    notes : list of str
        What was done.

    Raises
    ------
    PsfError
        Not 2-D, empty, all zero, too many NaNs, or no positive total.
    """
    arr = _check_stamp(image, what)
    notes = []
    good = np.isfinite(arr)
    nbad = int(arr.size - good.sum())
    if nbad:
        frac = nbad / arr.size
        if frac > max_bad_fraction:
            raise PsfError(f"{what}: {nbad} of {arr.size} pixels ({100 * frac:.1f} %) are NaN or "
                           f"infinite, more than the {100 * max_bad_fraction:.0f} % that can be "
                           f"masked; repair the stamp or raise max_bad_fraction")
        msg = (f"{what}: {nbad} of {arr.size} pixels are NaN or infinite; they are masked "
               f"(left out of the fit and of the normalisation)")
        warnings.warn(msg, PsfWarning, stacklevel=3)
        notes.append(msg)
    vals = arr[good]
    if not np.any(vals != 0):
        raise PsfError(f"{what} is all zeros (shape {arr.shape}); there is no PSF in it")
    total = float(vals.sum())
    if not total > 0:
        raise PsfError(f"{what} sums to {total:.4g}; a PSF image needs a positive total flux")
    stamp = np.where(good, arr / total, np.nan)
    notes.append(f"normalised: the stamp summed to {total:.6g}, now 1")
    return stamp, notes


def _centre_notes(stamp, what):
    """Warn about even-sized or off-centre stamps; return the stamp centroid and notes."""
    h, w = stamp.shape
    good = np.isfinite(stamp)
    x, y = _grid(stamp.shape)
    c, _ = _moments(stamp[good], x[good], y[good])
    geo = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    off = c - geo
    notes = []
    problems = []
    if w % 2 == 0 or h % 2 == 0:
        problems.append(f"it is even-sized ({w} x {h} pixels), so no pixel sits at its centre")
    if np.any(np.abs(off) > OFFCENTRE_TOLERANCE):
        problems.append("its light is off-centre")
    if problems:
        msg = (f"{what}: {' and '.join(problems)}: the centroid ({c[0]:.3f}, {c[1]:.3f}) is off "
               f"the geometric centre ({geo[0]:.1f}, {geo[1]:.1f}) by dx = {off[0]:+.3f}, "
               f"dy = {off[1]:+.3f} pixels; the mixture is centred on the fitted centre, "
               f"not the stamp centre")
        warnings.warn(msg, PsfWarning, stacklevel=4)
        notes.append(msg)
    return notes


def _model_from_stamp(image, source, notes, *, n_components, allow_negative, centre,
                      max_bad_fraction, what):
    stamp, more = prepare_stamp(image, max_bad_fraction=max_bad_fraction, what=what)
    notes = list(notes) + more
    notes += _centre_notes(stamp, what)
    trials = {}
    if n_components is None:
        fit, trials = fit_psf_auto(stamp, allow_negative=allow_negative)
        reached = fit.quality.max_abs_residual_over_peak < DEFAULT_TARGET
        notes.append(f"K = {fit.n_components} chosen automatically: "
                     + ("the smallest K with max|res|/peak < 1 %" if reached else
                        f"no K up to {MAX_COMPONENTS} reached max|res|/peak < 1 %; "
                        f"kept the best") + " (tried "
                     + ", ".join(f"K={k}: {100 * v:.2f} %" for k, v in trials.items()) + ")")
    else:
        fit = fit_psf_sequence(stamp, n_components, allow_negative=allow_negative)[-1]
        if fit.n_components != n_components:
            raise PsfError(f"{what}: too few usable pixels for {n_components} components")
        notes.append(f"K = {fit.n_components} as requested")
    mix = fit.mixture
    tot = mix.total
    mix = mix.normalized()
    stamp = stamp / tot
    notes.append(f"mixture normalised to unit total; its fitted total was {tot:.6f} times the "
                 f"stamp's sum (flux beyond the stamp edge, or negative wings), so the stamp was "
                 f"divided by the same factor and the residuals are those of the fit")
    if centre == "centroid":
        c = mix.centroid()
        notes.append(f"centre = flux-weighted centroid of the fitted mixture "
                     f"({c[0]:.4f}, {c[1]:.4f}) in stamp pixels")
    elif centre == "peak":
        c = _mixture_peak(mix)
        notes.append(f"centre = peak of the fitted mixture ({c[0]:.4f}, {c[1]:.4f}) "
                     f"in stamp pixels")
    elif centre == "geometric":
        h, w = stamp.shape
        c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        notes.append(f"centre = geometric centre of the stamp ({c[0]:.1f}, {c[1]:.1f})")
    else:
        raise PsfError(f"centre must be 'centroid', 'peak' or 'geometric', got {centre!r}")
    quality = quality_report(stamp, mix)
    return PsfModel(mixture=mix.shifted(-c[0], -c[1]), source=source, stamp=stamp,
                    centre=(float(c[0]), float(c[1])), quality=quality, notes=tuple(notes),
                    trials=trials)


def _mixture_peak(mix):
    from scipy.optimize import minimize

    c0 = mix.means[np.argmax(mix.amps / np.sqrt(np.linalg.det(mix.covs)))]
    res = minimize(lambda p: -mix.evaluate(p[0], p[1]), c0, method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-14})
    return np.asarray(res.x, float)


# ------------------------------------------------------------------------------- PSFEx
_PSFEX_REQUIRED = ("POLZERO1", "POLZERO2", "POLSCAL1", "POLSCAL2", "POLDEG1", "PSF_SAMP")


def psfex_stamp(hdu, position=None, *, what="PSFEx file"):
    """Evaluate a PSFEx model at a position and resample it to image pixels.

    The PSF is ``sum_t c_t(u, v) PSF_MASK[t]`` with the terms ``u^i v^j`` in the order
    ``j = 0..d, i = 0..d-j`` (1, u, u^2, ..., v, u v, ..., v^d) and
    ``u = (X - POLZERO1) / POLSCAL1``, ``v = (Y - POLZERO2) / POLSCAL2``, where ``(X, Y)`` is the
    position in the coordinates named by ``POLNAME1/2`` (usually SExtractor's ``X_IMAGE``,
    ``Y_IMAGE``, which are 1-based; a 1-pixel difference changes ``u`` by ``1 / POLSCAL``, about
    5e-4 for a DECam CCD). PSFEx fits the polynomial to stars with ``|u|, |v| <= 1/2``; outside that
    range the PSF is extrapolated and a :class:`PsfWarning` says so.

    When ``PSF_SAMP`` (image pixels per PSF pixel) is not 1, the stamp is resampled to image pixels
    with cubic splines, centred on the PSFEx centre pixel ``(w // 2, h // 2)``.

    Returns
    -------
    stamp : ndarray, shape (h', w')
        Not normalised.
    notes : list of str
    """
    hdr = hdu.header
    missing = [k for k in _PSFEX_REQUIRED if k not in hdr]
    naxis = int(hdr.get("POLNAXIS", 2))
    if naxis == 0:
        missing = [k for k in missing if k == "PSF_SAMP"]
    if missing:
        raise PsfError(f"{what}: missing header keyword(s) {', '.join(missing)} in HDU "
                       f"{hdu.name or '?'}; without them the PSFEx polynomial cannot be evaluated "
                       f"(is this a complete PSFEx .psf file?)")
    try:
        mask = np.asarray(hdu.data["PSF_MASK"][0], float)
    except Exception as exc:  # noqa: BLE001 - any astropy failure becomes a user message
        raise PsfError(f"{what}: cannot read column PSF_MASK ({exc})") from None
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise PsfError(f"{what}: PSF_MASK has shape {mask.shape}; expected (n_terms, h, w)")
    notes = []
    if naxis == 0:
        deg, nterms = 0, 1
    else:
        if naxis != 2 or int(hdr.get("POLNGRP", 1)) != 1:
            raise PsfError(f"{what}: POLNAXIS = {naxis}, POLNGRP = {hdr.get('POLNGRP')}; only a "
                           f"single polynomial in two position parameters is supported")
        deg = int(hdr["POLDEG1"])
        nterms = (deg + 1) * (deg + 2) // 2
    if mask.shape[0] != nterms:
        raise PsfError(f"{what}: PSF_MASK has {mask.shape[0]} planes but POLDEG1 = {deg} needs "
                       f"{nterms}")
    if nterms == 1:
        img = mask[0]
        notes.append("PSFEx: constant PSF (polynomial degree 0)")
    else:
        if position is None:
            raise PsfError(f"{what}: this PSFEx model varies across the image (degree {deg}); "
                           f"give the position (x, y) of the cutout centre on the original image, "
                           f"in {hdr.get('POLNAME1', 'X_IMAGE').strip()}, "
                           f"{hdr.get('POLNAME2', 'Y_IMAGE').strip()} coordinates")
        X, Y = (float(v) for v in position)
        z1, z2 = float(hdr["POLZERO1"]), float(hdr["POLZERO2"])
        s1, s2 = float(hdr["POLSCAL1"]), float(hdr["POLSCAL2"])
        u, v = (X - z1) / s1, (Y - z2) / s2
        if abs(u) > 0.5 + 1e-9 or abs(v) > 0.5 + 1e-9:
            msg = (f"{what}: position ({X:g}, {Y:g}) is outside the range PSFEx fitted "
                   f"(x {z1 - s1 / 2:.1f} .. {z1 + s1 / 2:.1f}, y {z2 - s2 / 2:.1f} .. "
                   f"{z2 + s2 / 2:.1f}); the PSF polynomial is extrapolated there")
            warnings.warn(msg, PsfWarning, stacklevel=4)
            notes.append(msg)
        coef = [u ** i * v ** j for j in range(deg + 1) for i in range(deg + 1 - j)]
        img = np.tensordot(np.array(coef), mask, axes=1)
        notes.append(f"PSFEx: degree-{deg} polynomial evaluated at ({X:g}, {Y:g}) "
                     f"(u = {u:+.4f}, v = {v:+.4f})")
    samp = float(hdr["PSF_SAMP"])
    if not samp > 0:
        raise PsfError(f"{what}: PSF_SAMP = {samp}; it must be positive")
    if abs(samp - 1.0) > 1e-9:
        from scipy.ndimage import map_coordinates

        h, w = img.shape
        cy, cx = h // 2, w // 2
        hx = int(math.floor(min(cx, w - 1 - cx) * samp))
        hy = int(math.floor(min(cy, h - 1 - cy) * samp))
        oy, ox = np.mgrid[-hy:hy + 1, -hx:hx + 1].astype(float)
        img = map_coordinates(img, [cy + oy / samp, cx + ox / samp], order=3, mode="constant")
        notes.append(f"PSFEx: resampled from PSF_SAMP = {samp:g} image pixels per PSF pixel to "
                     f"image pixels ({img.shape[1]} x {img.shape[0]}) with cubic splines")
    return img, notes


# ------------------------------------------------------------------ mixture file forms
def _mixture_or_error(amps, means, covs, what):
    try:
        return Mixture(amps, means, covs)
    except ValueError as exc:
        raise PsfError(f"{what}: {exc}") from None


def _read_header_form(header, what):
    cls = str(header.get("PSF", "")).strip()
    if cls and "GaussianMixturePSF" not in cls:
        raise PsfError(f"{what}: PSF = '{cls}' is not supported; only "
                       f"'tractor.psf.GaussianMixturePSF' (amplitudes, means, variances) is")
    vals = []
    while f"PSF_P{len(vals)}" in header:
        vals.append(float(header[f"PSF_P{len(vals)}"]))
    n = len(vals)
    if n == 0 or n % 6:
        raise PsfError(f"{what}: found {n} PSF_P keywords; a Tractor mixture of K components "
                       f"needs 6K (K amplitudes, K (x, y) means, K (xx, yy, xy) variances)")
    K = n // 6
    p = np.array(vals)
    var = p[3 * K:].reshape(K, 3)
    covs = np.stack([np.stack([var[:, 0], var[:, 2]], -1), np.stack([var[:, 2], var[:, 1]], -1)],
                    -2)
    return _mixture_or_error(p[:K], p[K:3 * K].reshape(K, 2), covs, what)


def _read_table_form(hdu, what):
    names = {n.lower(): n for n in hdu.columns.names}
    try:
        amps = np.asarray(hdu.data[names["amp"]], float).reshape(-1)
        K = amps.size
        means = np.asarray(hdu.data[names["mean"]], float).reshape(K, 2)
        covs = np.asarray(hdu.data[names["var"]], float).reshape(K, 2, 2)
    except (ValueError, KeyError) as exc:
        raise PsfError(f"{what}: columns amp, mean, var do not have the shapes (K,), (K, 2), "
                       f"(K, 2, 2) of a Tractor mixture table ({exc})") from None
    return _mixture_or_error(amps, means, covs, what)


def _read_json(text, what):
    try:
        d = json.loads(text)
        amps, means, covs = d["amps"], d["means"], d["covs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PsfError(f"{what}: not a mogviewer PSF mixture JSON file (needs keys amps, means, "
                       f"covs): {exc}") from None
    try:
        return Mixture(amps, means, covs)
    except ValueError as exc:
        raise PsfError(f"{what}: {exc}") from None


# ------------------------------------------------------------------------------ reading
def _sniff(path):
    with open(path, "rb") as fh:
        head = fh.read(2880)
    if not head:
        raise PsfError(f"{path}: the file is empty")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"SIMPLE  =") or head.startswith(b"\x1f\x8b"):
        return "fits"
    if head.lstrip()[:1] == b"{":
        return "json"
    shown = head[:16].decode("ascii", "replace").encode("unicode_escape").decode()
    raise PsfError(f"{path}: not a FITS file, a NumPy .npy file or a mogviewer mixture JSON "
                   f"file (it starts with '{shown}'); mogviewer reads PSF images, PSFEx files and "
                   f"Tractor mixtures in FITS")


def _hdu_label(i, h):
    return f"HDU {i}" + (f" ({h.name})" if h.name and h.name != "PRIMARY" else "")


def _image_of(h):
    return h.is_image and h.data is not None and h.data.size > 0


def _pick_plane(data, plane, what):
    if data.ndim == 3:
        n = data.shape[0]
        if n == 1 and plane in (None, 0):
            return data[0], [f"{what}: the only plane of a 1 x {data.shape[1]} x {data.shape[2]} "
                             f"cube used"]
        if plane is None:
            raise PsfError(f"{what} is a cube of {n} planes (shape {data.shape}); choose one with "
                           f"plane=0..{n - 1} (command line: --plane)")
        if not 0 <= int(plane) < n:
            raise PsfError(f"{what}: plane {plane} does not exist; the cube has planes 0..{n - 1}")
        return data[int(plane)], [f"{what}: plane {int(plane)} of {n} used"]
    if plane not in (None, 0) and data.ndim == 2:
        raise PsfError(f"{what} is a 2-D image; plane={plane} does not apply")
    if data.ndim != 2:
        raise PsfError(f"{what} has shape {data.shape} ({data.ndim}-D); a PSF image must be a "
                       f"2-D array image[y, x] (or a cube with plane= chosen)")
    return data, []


def read_psf(path, *, hdu=None, plane=None, position=None, n_components=None,
             allow_negative=False, centre="centroid", max_bad_fraction=MAX_BAD_FRACTION):
    """Read any supported PSF file and return it as a mixture of Gaussians.

    The format is recognised from the content: ``.npy`` magic, FITS ``SIMPLE`` card (or gzip), or
    JSON. In a FITS file the first match in this order is used, over all HDUs or only ``hdu``:
    a Tractor mixture table (columns ``amp``, ``mean``, ``var``); a header with ``PSF_P0``
    (Tractor header form); a PSFEx table (column ``PSF_MASK``); an image HDU with data.

    Parameters
    ----------
    path : str or Path
    hdu : int or str, keyword-only, optional
        FITS HDU index or EXTNAME to read.
    plane : int, optional
        Plane of a 3-D image cube (required when the cube has more than one plane).
    position : (float, float), optional
        ``(x, y)`` of the cutout centre on the original image, in the PSFEx position coordinates
        (``POLNAME1/2``, usually 1-based ``X_IMAGE, Y_IMAGE``); required for a varying PSFEx
        model.
    n_components : int, optional
        K for fitting a stamp; default: the smallest K <= 6 with max|residual|/peak < 1 %.
    allow_negative : bool
        Allow negative amplitudes in the fit.
    centre : {'centroid', 'peak', 'geometric'}
        Reference centre put at (0, 0): the fitted mixture's flux-weighted centroid, its peak,
        or the stamp's geometric centre ``((w - 1) / 2, (h - 1) / 2)``.
    max_bad_fraction : float
        Largest fraction of NaN pixels that is masked instead of refused.

    Returns
    -------
    PsfModel

    Raises
    ------
    PsfError
        The file is none of the supported formats, or is one but unusable (the message says why).
    FileNotFoundError
        No such file.
    """
    path = Path(path)
    kind = _sniff(path)
    what = str(path)
    if kind == "json":
        mix = _read_json(path.read_text(), what)
        return PsfModel(mixture=mix, source="json", notes=(f"read mogviewer JSON mixture "
                                                           f"({len(mix)} components)",))
    opts = dict(n_components=n_components, allow_negative=allow_negative, centre=centre,
                max_bad_fraction=max_bad_fraction)
    if kind == "npy":
        if hdu is not None:
            raise PsfError(f"{what} is a NumPy file; hdu= applies to FITS files only")
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise PsfError(f"{what}: cannot read the NumPy array ({exc})") from None
        img, notes = _pick_plane(np.asarray(data), plane, what)
        return _model_from_stamp(img, "npy", [f"read {what} (NumPy array {data.shape})"] + notes,
                                 what=what, **opts)
    return _read_fits(path, hdu=hdu, plane=plane, position=position, what=what, **opts)


def _read_fits(path, *, hdu, plane, position, what, **opts):
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # astropy's warnings about odd headers
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix+ignore")
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for a corrupt file
        raise PsfError(f"{what}: cannot be read as FITS ({type(exc).__name__}: {exc})") from None
    try:
        with hdul:
            return _dispatch_fits(hdul, hdu=hdu, plane=plane, position=position, what=what,
                                  **opts)
    except PsfError:
        raise
    except (ValueError, OSError, TypeError, KeyError, IndexError) as exc:
        raise PsfError(f"{what}: cannot be read as FITS, the file may be truncated or corrupt "
                       f"({type(exc).__name__}: {exc})") from None


def _dispatch_fits(hdul, *, hdu, plane, position, what, **opts):
    from astropy.io import fits

    if True:
        if hdu is not None:
            try:
                idx = hdul.index_of(hdu)
            except (KeyError, IndexError):
                avail = ", ".join(_hdu_label(i, h) for i, h in enumerate(hdul))
                raise PsfError(f"{what}: there is no HDU {hdu!r}; the file has {avail}") from None
            cands = [(idx, hdul[idx])]
        else:
            cands = list(enumerate(hdul))
        for i, h in cands:
            if isinstance(h, fits.BinTableHDU):
                cols = {c.lower() for c in h.columns.names}
                if {"amp", "mean", "var"} <= cols:
                    w = f"{what} {_hdu_label(i, h)}"
                    mix = _read_table_form(h, w)
                    return PsfModel(mixture=mix, source="tractor-table",
                                    notes=(f"read Tractor mixture table form from "
                                           f"{_hdu_label(i, h)} ({len(mix)} components)",))
        for i, h in cands:
            if "PSF_P0" in h.header:
                mix = _read_header_form(h.header, f"{what} {_hdu_label(i, h)}")
                return PsfModel(mixture=mix, source="tractor-header",
                                notes=(f"read Tractor mixture header form (PSF_P*) from "
                                       f"{_hdu_label(i, h)} ({len(mix)} components)",))
        for i, h in cands:
            if isinstance(h, fits.BinTableHDU) and "PSF_MASK" in [c.upper()
                                                                  for c in h.columns.names]:
                w = f"{what} {_hdu_label(i, h)}"
                img, notes = psfex_stamp(h, position, what=w)
                return _model_from_stamp(img, "psfex", [f"read PSFEx model from "
                                                        f"{_hdu_label(i, h)}"] + notes,
                                         what=w, **opts)
        images = [(i, h) for i, h in cands if _image_of(h)]
        if not images:
            avail = ", ".join(f"{_hdu_label(i, h)}: {type(h).__name__}" for i, h in cands)
            raise PsfError(f"{what}: no PSF found: no image data, PSFEx PSF_MASK table or Tractor "
                           f"mixture in {avail}")
        notes = []
        i, h = images[0]
        if len(images) > 1:
            msg = (f"{what}: {len(images)} HDUs hold images "
                   f"({', '.join(_hdu_label(j, g) for j, g in images)}); using "
                   f"{_hdu_label(i, h)}. Pass hdu= (command line: --hdu) to choose another")
            warnings.warn(msg, PsfWarning, stacklevel=3)
            notes.append(msg)
        w = f"{what} {_hdu_label(i, h)}"
        img, more = _pick_plane(np.asarray(h.data), plane, w)
        notes = [f"read PSF image from {_hdu_label(i, h)} ({h.data.shape})"] + notes + more
        return _model_from_stamp(img, "image", notes, what=w, **opts)


# ------------------------------------------------------------------------------ writing
def _table_hdu(mixture):
    from astropy.io import fits

    K = len(mixture)
    cols = [fits.Column(name="amp", format="D", array=np.asarray(mixture.amps)),
            fits.Column(name="mean", format="2D", array=np.asarray(mixture.means)),
            fits.Column(name="var", format="4D", dim="(2,2)",
                        array=np.asarray(mixture.covs).reshape(K, 2, 2))]
    t = fits.BinTableHDU.from_columns(cols, name="PSF_MOG")
    t.header["TUNIT2"] = "pixel"
    t.header["TUNIT3"] = "pixel**2"
    t.header.add_comment("Mixture of Gaussians PSF, one row per component:")
    t.header.add_comment("amp = integrated flux; mean = (x, y) offset; var = [[xx, xy], [xy, yy]]")
    return t


def _header_form(header, mixture):
    K = len(mixture)
    header["PSF"] = ("tractor.psf.GaussianMixturePSF", "Tractor PSF class")
    vals, names = [], []
    for k in range(K):
        vals.append(mixture.amps[k])
        names.append(f"amp{k}")
    for k in range(K):
        vals += list(mixture.means[k])
        names += [f"mean{k}.x", f"mean{k}.y"]
    for k in range(K):
        c = mixture.covs[k]
        vals += [c[0, 0], c[1, 1], c[0, 1]]
        names += [f"var{k}.xx", f"var{k}.yy", f"var{k}.xy"]
    for i, (v, n) in enumerate(zip(vals, names, strict=True)):
        header[f"PSF_P{i}"] = (float(v), n)


def write_psf(path, mixture, *, overwrite=True, notes=()):
    """Write a PSF mixture so that mogviewer and the Tractor can read it.

    A FITS file gets the Tractor header form (``PSF``, ``PSF_P0...``) in the primary header and
    the Tractor table form in extension 1 (``PSF_MOG``: columns ``amp``, ``mean``, ``var``); both
    hold the same mixture (the header to about 14 significant digits, the table exactly). A path
    ending in ``.json`` gets JSON with ``amps``, ``means``, ``covs`` (exact: floats are written
    with their shortest round-tripping repr).

    Parameters
    ----------
    path : str or Path
    mixture : Mixture or PsfModel
    overwrite : bool, keyword-only
    notes : sequence of str
        Written as HISTORY cards (FITS) or a ``notes`` list (JSON).
    """
    if isinstance(mixture, PsfModel):
        notes = tuple(notes) or mixture.notes
        mixture = mixture.mixture
    mixture = Mixture(mixture.amps, mixture.means, mixture.covs)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if path.suffix.lower() == ".json":
        d = {"format": _JSON_FORMAT, "version": 1,
             "conventions": "f(x) = sum_k amps[k] N(x | means[k], covs[k]); means (x, y) in "
                            "pixels, covs [[xx, xy], [xy, yy]] in pixels^2; 0-based pixel "
                            "centres at integers",
             "amps": mixture.amps.tolist(), "means": mixture.means.tolist(),
             "covs": mixture.covs.tolist(), "notes": list(notes)}
        tmp.write_text(json.dumps(d, indent=1) + "\n")
    else:
        from astropy.io import fits

        prim = fits.PrimaryHDU()
        _header_form(prim.header, mixture)
        prim.header["MOGNCOMP"] = (len(mixture), "number of Gaussian components")
        prim.header.add_comment("mogviewer PSF mixture: the same mixture is in PSF_P* (Tractor "
                                "header form) and in extension PSF_MOG (table form)")
        for n in notes:
            prim.header.add_history(str(n)[:1000])
        fits.HDUList([prim, _table_hdu(mixture)]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------- CLI
def plot_psf_model(model, path):
    """Save stamp / model / residual side by side (PNG via matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import SymLogNorm
    from matplotlib.figure import Figure

    stamp = model.stamp
    mod = model.model_image()
    res = stamp - mod
    peak = np.nanmax(stamp)
    fig = Figure(figsize=(12, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    norm = SymLogNorm(linthresh=1e-3 * peak, vmin=-0.01 * peak, vmax=peak)
    q = model.quality
    for ax, img, title, kw in (
            (axes[0], stamp, "stamp (normalised)", dict(norm=norm, cmap="viridis")),
            (axes[1], mod, f"mixture, K = {model.n_components}", dict(norm=norm, cmap="viridis")),
            (axes[2], res / peak, f"residual / peak (max {100 * q.max_abs_residual_over_peak:.2g}"
                                  f" %)", dict(cmap="RdBu_r", vmin=-0.02, vmax=0.02))):
        im = ax.imshow(img, origin="lower", interpolation="nearest", **kw)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"FWHM ratio mixture/stamp {q.fwhm_ratio:.4f}; |res| flux "
                 f"{100 * q.residual_flux_fraction:.2g} %")
    fig.savefig(path, dpi=90)


def _cli_fit(args):
    from .cli import UserError

    if not args.output and not args.plot:
        raise UserError("nothing to write: give -o OUTPUT (.fits or .json) and/or --plot PNG")
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PsfWarning)
            model = read_psf(args.psf, hdu=args.hdu, plane=args.plane,
                             position=tuple(args.position) if args.position else None,
                             n_components=args.K, allow_negative=args.allow_negative,
                             centre=args.centre)
    except (PsfError, OSError) as exc:
        raise UserError(str(exc)) from None
    import sys

    for w in caught:
        print(f"mogviewer: warning: {w.message}", file=sys.stderr)
    if args.output:
        try:
            write_psf(args.output, model)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc}") from None
    print(f"{args.psf}: {model.source}, K = {model.n_components}")
    if model.quality is not None:
        print("  " + model.quality.summary())
    for n in model.notes:
        print(f"  - {n}")
    if args.output:
        print(f"wrote {args.output}")
    if args.plot:
        if model.stamp is None:
            raise UserError(f"{args.psf} holds a mixture, not an image: nothing to plot")
        plot_psf_model(model, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _hdu_arg(s):
    return int(s) if s.lstrip("-").isdigit() else s


def register_cli(sub):
    """Add ``mogviewer psf fit PSFFILE [-K K] -o OUT [--plot PNG]`` to the subparsers."""
    p = sub.add_parser("psf", help="PSF tools: fit a mixture of Gaussians to a PSF",
                       description="PSF tools.")
    psub = p.add_subparsers(dest="psf_command", metavar="ACTION")
    f = psub.add_parser(
        "fit", help="fit a mixture of Gaussians to a PSF image or PSFEx file",
        description="Read a PSF (FITS image in any HDU, .npy array, PSFEx file or Tractor "
                    "mixture), fit K Gaussians and write the mixture (Tractor table + header "
                    "form FITS, or JSON if OUTPUT ends in .json).")
    f.add_argument("psf", metavar="PSFFILE")
    f.add_argument("-K", type=int, default=None,
                   help="number of Gaussians (default: smallest K <= 6 with max|res|/peak < 1%%)")
    f.add_argument("-o", "--output", default=None,
                   help="output mixture file (.fits or .json); -o and/or --plot")
    f.add_argument("--plot", default=None, help="write stamp / model / residual to this PNG")
    f.add_argument("--hdu", type=_hdu_arg, default=None, help="FITS HDU index or name")
    f.add_argument("--plane", type=int, default=None, help="plane of a 3-D cube")
    f.add_argument("--position", type=float, nargs=2, metavar=("X", "Y"), default=None,
                   help="PSFEx: cutout centre on the original image (PSFEx X_IMAGE, Y_IMAGE)")
    f.add_argument("--allow-negative", action="store_true", help="allow negative amplitudes")
    f.add_argument("--centre", choices=("centroid", "peak", "geometric"), default="centroid",
                   help="which point of the PSF becomes (0, 0) (default: centroid)")
    f.set_defaults(func=_cli_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
