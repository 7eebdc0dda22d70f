"""Fit a mixture of Gaussians to a PSF stamp: EM start, least-squares polish, choice of K.

Works in the stamp's own pixel coordinates and flux units (``image[y, x]``, pixel centres at
integer 0-based coordinates); :func:`_model_from_stamp` centres and normalises for
:func:`mogviewer.psf.read_psf`.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np

from ..errors import PsfError, PsfWarning
from ..mixture import Mixture
from ._em import em_steps
from .model import (
    DEFAULT_TARGET,
    MAX_BAD_FRACTION,
    MAX_COMPONENTS,
    MIN_SIGMA,
    OFFCENTRE_TOLERANCE,
    PsfFit,
    PsfModel,
)
from .quality import _grid, _moments, quality_report


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
    one pixel. Compiled (:func:`mogviewer.psf._em.em_steps`); :func:`_em_numpy` is the same
    algorithm in numpy, the reference of the tests.
    """
    img = np.asarray(img, float)
    # pixels at or below zero weigh nothing in any sum: left out (a noisy stamp's outer half)
    pos = img > 0
    amps = np.array(start.amps, float)
    means = np.array(start.means, float)
    covs = np.array(start.covs, float)
    em_steps(img[pos], np.asarray(x, float)[pos], np.asarray(y, float)[pos], amps, means, covs,
             int(n_iter), float(tol), float(var_floor))
    # EM fits a density to weights summing to W; rescale to the stamp's total.
    amps = amps * (img.sum() / amps.sum())
    return Mixture(amps, means, covs, validate=False)


def _em_numpy(img, x, y, start, *, n_iter=300, tol=1e-7, var_floor=0.02):
    """:func:`_em` in numpy (K x N arrays per step): the reference of the compiled one."""
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


_BLAS = []


def _one_blas_thread():
    """``threadpool_limits(1, 'blas')`` through one ThreadpoolController made once: making a
    limiter scans the process's loaded libraries (4 ms, 7 % of a PSF fit with ~11 polishes)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _polish(img, x, y, start, *, allow_negative, min_sigma=MIN_SIGMA, max_nfev=500,
            solver="lm"):
    """Least-squares polish; returns (result, mixture), ``result`` with ``x``, ``cost``
    (half the sum of squares), ``nfev``, ``success`` and ``message``.

    ``solver="lm"`` (default): :func:`mogviewer.fitting.lm.levenberg_marquardt` on the normal
    equations ``J^T J``, ``J^T r`` (a 6K x 6K system), with BLAS held to one thread for the
    call (its threads made the Gram products 10-100x slower on a busy machine).
    ``solver="minpack"``: :func:`scipy.optimize.least_squares` (MINPACK's LM, a QR of the
    full pixels x 6K Jacobian at every step), the reference: the same sums of squares to
    1e-6 relative on the real stamps of the tests, 3-6x slower (51x51 Moffat, K = 3-5).
    """
    K = len(start)
    kw = dict(nonneg=not allow_negative, min_sigma=min_sigma)
    p0 = _pack(start, **kw)
    if solver == "minpack":
        from scipy.optimize import least_squares

        def fun(p):
            return _model_and_jacobian(p, K, x, y, jac=False, **kw)[0] - img

        def jac(p):
            return _model_and_jacobian(p, K, x, y, **kw)[1]

        with np.errstate(over="ignore", under="ignore"):
            res = least_squares(fun, p0, jac=jac, method="lm", x_scale="jac",
                                ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=max_nfev)
        return res, _to_mixture(res.x, K, validate=False, **kw)

    from ..fitting.lm import levenberg_marquardt

    def evaluate(p):
        model, J = _model_and_jacobian(p, K, x, y, **kw)
        r = img - model
        return float(np.einsum("i,i->", r, r)), J.T @ J, J.T @ r, None

    inf = np.full(p0.size, np.inf)
    with np.errstate(all="ignore"), _one_blas_thread():
        out = levenberg_marquardt(evaluate, p0, -inf, inf, max_nfev=max_nfev, xtol=1e-12,
                                  ftol=1e-12, gtol=1e-12)
    res = SimpleNamespace(x=out.z, cost=0.5 * out.chi2, nfev=out.nfev,
                          success=out.status == "converged", message=out.message)
    return res, _to_mixture(out.z, K, validate=False, **kw)


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
    """Fit K = 1, 2, ... and keep the smallest K good enough for galaxy sizes.

    Good enough (:meth:`PsfQuality.badness` <= 1): ``max|residual|/peak < target`` *and* the
    mixture's second-moment size within 0.1 % of the stamp's, its total within 0.1 % of the
    stamp's sum and its centroid within 0.01 px (see :mod:`mogviewer.psf.quality`); a peak
    residual alone can pass with a mixture whose size is several per cent off. When no K up to
    ``max_components`` is good enough, the smallest K whose badness is within 10 % of the best
    one is kept (a stamp with a negative ring defines no size, and its total cannot be matched:
    both are left out of the badness then).

    Returns
    -------
    best : PsfFit
    trials : dict
        ``{K: max|residual|/peak}`` for every K tried.
    """
    fits = fit_psf_sequence(image, max_components, allow_negative=allow_negative, mask=mask,
                            stop=lambda f: f.quality.badness(target=target) <= 1.0)
    trials = {f.n_components: f.quality.max_abs_residual_over_peak for f in fits}
    bad = [f.quality.badness(target=target) for f in fits]
    if bad[-1] <= 1.0:
        return fits[-1], trials
    lowest = min(bad)
    best = next(f for f, b in zip(fits, bad) if b <= 1.1 * lowest)
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
                           f"masked; repair the stamp (or, from Python, give read_psf a "
                           f"larger max_bad_fraction)")
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
        reached = fit.quality.badness() <= 1.0
        notes.append(f"K = {fit.n_components} chosen automatically: "
                     + ("the smallest K with max|res|/peak < 1 % and size, total and centroid "
                        "within 0.1 %, 0.1 % and 0.01 px of the stamp's" if reached else
                        f"no K up to {MAX_COMPONENTS} matched the stamp's size, total and "
                        f"centroid to 0.1 %, 0.1 % and 0.01 px with max|res|/peak < 1 %; kept "
                        f"the smallest K within 10 % of the best") + " (max|res|/peak: "
                     + ", ".join(f"K={k}: {100 * v:.2f} %" for k, v in trials.items()) + ")")
    else:
        fit = fit_psf_sequence(stamp, n_components, allow_negative=allow_negative)[-1]
        if fit.n_components != n_components:
            raise PsfError(f"{what}: too few usable pixels for {n_components} components")
        notes.append(f"K = {fit.n_components} as requested")
    good = np.isfinite(stamp)
    neg = float(-stamp[good & (stamp < 0)].sum())
    if neg > 0.01:
        notes.append(f"negative wings: the stamp's negative pixels hold {100 * neg:.3g} % of its "
                     f"sum (which counts them: the stamp is the PSF); a mixture of positive "
                     f"Gaussians cannot follow them. The exact-PSF mode (the default for an "
                     f"image) applies them through the residual; the mixture-only mode misses "
                     f"them (psf_res_flux, flag PSF_APPROX)")
    mix = fit.mixture
    tot = mix.total
    mix = mix.normalized()
    stamp = stamp / tot
    notes.append(f"mixture normalised to unit total; its fitted total was {tot:.6f} times the "
                 f"stamp's sum (flux beyond the stamp edge, or negative wings), so the stamp was "
                 f"divided by the same factor and the residuals are those of the fit")
    if centre == "centroid":
        # the stamp's own flux centroid, not its mixture's: the mixture's moves with K (HSC
        # gal2: -0.055, -0.011, -0.004 px in x for K = 3, 4, 5), the stamp's does not
        yy, xx = np.mgrid[0:stamp.shape[0], 0:stamp.shape[1]]
        tot_s = np.nansum(stamp)
        c = np.array([np.nansum(stamp * xx) / tot_s, np.nansum(stamp * yy) / tot_s])
        notes.append(f"centre = flux-weighted centroid of the stamp ({c[0]:.4f}, {c[1]:.4f}) "
                     f"in stamp pixels (the mixture's own centroid is "
                     f"{np.hypot(*(mix.centroid() - c)):.3g} px from it)")
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
