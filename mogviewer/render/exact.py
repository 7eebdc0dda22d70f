"""Exact-PSF mode: the galaxy convolved with the PSF *stamp*, not only with its mixture.

A PSF image ``T`` (the pixel-convolved PSF sampled at pixel centres, unit sum) is split into its
Gaussian mixture ``P`` and the residual ``R = T - P(pixel centres)``, which may be negative (the
negative rings of KiDS stamps, the wings a small K misses). The model image is

    I = G (x) P  at pixel centres  +  G (x) R,

* the first term is the ordinary mixture render (exact for Gaussians, no sampling of the galaxy);
* the second is a discrete convolution computed in Fourier space with the galaxy's *analytic*
  transform: for ``G = flux sum_m a_m N(x_g, v_m S)``,
  ``G^(k) = flux exp(-i k.x_g) sum_m a_m exp(-v_m k^T S k / 2)``. Treating the residual as
  band-limited (the Whittaker-Shannon reading of a sampled stamp), the samples of ``G (x) R`` at
  pixel centres are ``IDFT(R^(k) G^(k))`` over ``|kx|, |ky| <= pi``: a cuspy profile is never
  sampled, only its transform evaluated, so a dev core costs nothing extra and loses nothing.

Every derivative follows from the transform: ``d/dx_g = -i kx``, ``d/dy_g = -i ky``,
``d/dS_xx = -kx^2 A1 / 2``, ``d/dS_xy = -kx ky A1``, ``d/dS_yy = -ky^2 A1 / 2`` with
``A1 = sum_m a_m v_m exp(-v_m k^T S k / 2)`` (``S_xy`` the shared off-diagonal entry, as in
:mod:`mogviewer.render`); ``d/dn`` uses ``da_m/dn`` and ``dv_m/dn`` the same way.

Normalisation and centring: the stamp is divided by its sum (the stamp *is* the PSF, so its
total, negative rings included, is the PSF's total: a model's flux is its galaxy's flux) and the
mixture by the same factor; the origin is the reference centre the reader chose (flux centroid of
the mixture by default), the same origin as the mixture's, at a sub-pixel position applied as a
phase.

The FFT is circular, on a grid chosen per call (:func:`_grid_len`): odd sizes (no Nyquist bin,
where a real transform would drop the imaginary part of a sub-pixel phase), at least the image
plus the residual's extent, and far enough from the galaxy's centre that its Gaussian light
convolved with the residual wrapping round onto the image is below :data:`WRAP_TOL` of its flux
(from each component's amplitude and width along the axis, and ``sum |R|``). A galaxy much
larger than its image hits the cap of three images plus the residual. The residual stamp is
cropped to the smallest centred box outside which ``sum |R|`` is below :data:`CROP_TOL` (the
stamp sums to 1), which bounds the change of the model by that fraction of the galaxy's flux.
The image plane is computed in double precision, the five derivative planes (and d/dn) in
single (complex64) unless ``double=True``: the residual term is a few per cent of the model, so
single precision's 1e-7 relative rounding is ~1e-9 of it, harmless in a Jacobian that only
steers the steps, but in the model it made chi^2 noisy at ~1e-8 of itself on a high-S/N 64 px
cutout, which LM's ftol test read as progress: the exact 64 px fit of IC 3478 took 20
evaluations instead of 8. Plans (the residual's transform on a grid, with the mixture's
aliases) are cached per grid size; the grid, the phases and the per-frequency sums are compiled.
"""

from __future__ import annotations

import math
import threading
import weakref

import numba
import numpy as np
from scipy import fft as sfft

from ..mixture import Mixture

#: ExactPsf.from_model's results by model (see there)
_FROM_MODEL = weakref.WeakKeyDictionary()
_FROM_MODEL_LOCK = threading.Lock()

#: Mixture components whose minor-axis variance (px^2) is below this are left in the residual
#: (rendered by FFT with the galaxy's analytic transform) rather than drawn as Gaussians: a
#: Gaussian convolved with a cuspy galaxy and sampled at pixel centres aliases by up to
#: 2 exp(-2 pi^2 sigma^2) per axis (sigma = 0.8: 6e-6), a narrow PSF component much more.
FAST_MIN_VAR = 0.64
#: Residual pixels dropped from the FFT term: at most this much of sum |R| (the stamp sums to 1),
#: so the model changes by at most this fraction of the galaxy's flux.
CROP_TOL = 1e-4
#: The FFT term is circular: the grid is made large enough that the galaxy's light convolved
#: with the residual that wraps round onto the image is at most this fraction of the galaxy's
#: flux (the same bound as :data:`CROP_TOL`'s; see :func:`_grid_len`).
WRAP_TOL = 1e-4
#: A galaxy component's transform is skipped where it is below exp(-_CUT) (1e-13) of its value at
#: k = 0.
_CUT = 30.0


@numba.njit(cache=True, nogil=True, inline="always")
def _row_sums(coef, v, sxx, sxy, syy, dkx, k2, j_end, acc, st):
    """``acc[c, j] = sum_m coef[c, m] exp(-v_m Q / 2)``, ``Q = k^T S k`` at ``k = (j dkx, k2)``
    for ``j < j_end`` (``coef`` has one or two rows); each component only over the run of ``j``
    where its exponent is above ``-_CUT``. Along the run a Gaussian is stepped exactly by
    multiplications: ``E(j+1) = E(j) r(j)``, ``r(j+1) = r(j) exp(-v_m A)``, here as four
    interleaved chains ``j, j+1, j+2, j+3`` advanced by four at a time, so the chains do not
    wait on each other. Returns the largest ``j`` touched plus one (0: no component reaches
    this row). ``st`` is unused scratch kept for the signature."""
    R, M = coef.shape
    two = R > 1
    top = 0
    A = sxx * dkx * dkx
    B = 2.0 * sxy * dkx * k2
    C = syy * k2 * k2
    for j in range(j_end):
        acc[0, j] = 0.0
        if two:
            acc[1, j] = 0.0
    for m in range(M):
        h = 0.5 * v[m]
        c0 = coef[0, m]
        c1 = coef[1, m] if two else 0.0
        if h <= 0.0:
            for j in range(j_end):
                acc[0, j] += c0
                if two:
                    acc[1, j] += c1
            top = j_end
            continue
        disc = B * B - 4.0 * A * (C - _CUT / h)
        if disc <= 0.0:
            continue
        sq = math.sqrt(disc)
        j0 = max(0, int(math.ceil((-B - sq) / (2.0 * A))))
        j1 = min(j_end - 1, int(math.floor((-B + sq) / (2.0 * A))))
        if j1 < j0:
            continue
        top = max(top, j1 + 1)
        e0 = math.exp(-h * (A * j0 * j0 + B * j0 + C))
        r = math.exp(-h * (A * (2 * j0 + 1) + B))
        rr = math.exp(-2.0 * h * A)
        e1 = e0 * r
        r1 = r * rr
        e2 = e1 * r1
        r2 = r1 * rr
        e3 = e2 * r2
        r3 = r2 * rr
        rr2 = rr * rr
        rr4 = rr2 * rr2
        q0 = r * r1 * r2 * r3            # E(j+4)/E(j) for the chain of j0
        q1 = q0 * rr4
        q2 = q1 * rr4
        q3 = q2 * rr4
        rr16 = rr4 * rr4 * rr4 * rr4
        j = j0
        while j + 3 <= j1:
            acc[0, j] += c0 * e0
            acc[0, j + 1] += c0 * e1
            acc[0, j + 2] += c0 * e2
            acc[0, j + 3] += c0 * e3
            if two:
                acc[1, j] += c1 * e0
                acc[1, j + 1] += c1 * e1
                acc[1, j + 2] += c1 * e2
                acc[1, j + 3] += c1 * e3
            e0 *= q0
            e1 *= q1
            e2 *= q2
            e3 *= q3
            q0 *= rr16
            q1 *= rr16
            q2 *= rr16
            q3 *= rr16
            j += 4
        if j <= j1:
            acc[0, j] += c0 * e0
            if two:
                acc[1, j] += c1 * e0
        if j + 1 <= j1:
            acc[0, j + 1] += c0 * e1
            if two:
                acc[1, j + 1] += c1 * e1
        if j + 2 <= j1:
            acc[0, j + 2] += c0 * e2
            if two:
                acc[1, j + 2] += c1 * e2
    return top


@numba.njit(cache=True, nogil=True)
def _residual_planes(coef, v, sxx, sxy, syy, dkx, kx, ky, rhat, x, y, flux, mode, out0, out,
                     acc, st):
    """Spectra of the residual term on the half-spectrum grid, written into ``out``.

    ``B = flux R^(k) exp(-i k.x_g)`` (``rhat * py[i] * px[j] * flux`` with the phases
    ``px = exp(-i kx x)``, ``py = exp(-i ky y)`` of the galaxy centre ``(x, y)``) times the galaxy's
    transform sums ``A_c = sum_m coef[c, m] exp(-v_m k^T S k / 2)``. ``mode`` 0: one plane
    ``B A_0``; 1: six planes (image, d/dx, d/dy, d/dSxx, d/dSxy, d/dSyy with ``coef`` rows
    ``a_m`` and ``a_m v_m``); 2: one plane ``B (A_0 - Q A_1 / 2)`` (d/dn with rows ``da_m/dn``
    and ``a_m dv_m/dn``). The image plane (modes 0 and 1) goes to ``out0`` (ny, 2 nxr) float64,
    the derivative planes to ``out`` (P, ny, 2 nxr), float32 or float64: mode 1's five
    derivatives in ``out[0:5]``, mode 2's plane in ``out[0]``. The model is thus always in
    double precision (chi^2 is smooth to rounding, so LM's tests are not fooled by its noise),
    the derivatives may be in single (1e-7 relative of a few per cent of the model: they only
    steer the steps). Complex numbers are split into (re, im) pairs: ``rhat`` is (ny, nxr, 2);
    written out by hand, the products cost a fraction of numba's complex arithmetic with its
    inf/nan checks.
    """
    ny, nxr = rhat.shape[0], rhat.shape[1]
    px = np.empty((nxr, 2))
    for j in range(nxr):
        px[j, 0] = math.cos(kx[j] * x)
        px[j, 1] = -math.sin(kx[j] * x)
    py = np.empty((ny, 2))
    for i in range(ny):
        py[i, 0] = math.cos(ky[i] * y)
        py[i, 1] = -math.sin(ky[i] * y)
    P = 0 if mode == 0 else (5 if mode == 1 else 1)
    for i in range(ny):
        k2 = ky[i]
        top = _row_sums(coef, v, sxx, sxy, syy, dkx, k2, nxr, acc, st)
        # what the loop below does not write is zero (only that: a full clearing first was
        # a second pass over the planes, most of which the loop overwrites)
        if mode != 2:
            for j in range(2 * top, 2 * nxr):
                out0[i, j] = 0.0
        for p in range(P):
            for j in range(2 * top, 2 * nxr):
                out[p, i, j] = 0.0
        pyr = py[i, 0] * flux
        pyi = py[i, 1] * flux
        for j in range(top):
            # c = rhat * py * px
            ar = rhat[i, j, 0] * pyr - rhat[i, j, 1] * pyi
            ai = rhat[i, j, 0] * pyi + rhat[i, j, 1] * pyr
            br = ar * px[j, 0] - ai * px[j, 1]
            bi = ar * px[j, 1] + ai * px[j, 0]
            k1 = kx[j]
            if mode == 0:
                g = acc[0, j]
                out0[i, 2 * j] = br * g
                out0[i, 2 * j + 1] = bi * g
            elif mode == 1:
                g = acc[0, j]
                fr, fi = br * g, bi * g
                out0[i, 2 * j] = fr
                out0[i, 2 * j + 1] = fi
                out[0, i, 2 * j] = k1 * fi          # -i k1 f
                out[0, i, 2 * j + 1] = -k1 * fr
                out[1, i, 2 * j] = k2 * fi
                out[1, i, 2 * j + 1] = -k2 * fr
                t = acc[1, j]
                tr, ti = br * t, bi * t
                c3 = -0.5 * k1 * k1
                c4 = -k1 * k2
                c5 = -0.5 * k2 * k2
                out[2, i, 2 * j] = c3 * tr
                out[2, i, 2 * j + 1] = c3 * ti
                out[3, i, 2 * j] = c4 * tr
                out[3, i, 2 * j + 1] = c4 * ti
                out[4, i, 2 * j] = c5 * tr
                out[4, i, 2 * j + 1] = c5 * ti
            else:
                q = sxx * k1 * k1 + 2.0 * sxy * k1 * k2 + syy * k2 * k2
                g = acc[0, j] - 0.5 * q * acc[1, j]
                out[0, i, 2 * j] = br * g
                out[0, i, 2 * j + 1] = bi * g
    return 0


def _size_ratio(stamp, model, xx, yy):
    """Aperture second-moment size of ``model`` over ``stamp`` (see ``size_ratio``)."""
    from ..psf.quality import APERTURE_FWHMS, _aperture_fwhm, _moment_fwhm, _moments

    with np.errstate(all="ignore"):
        x, y = xx.ravel().astype(float), yy.ravel().astype(float)
        s, m = stamp.ravel(), model.ravel()
        core = _moment_fwhm(s, x, y)
        if not math.isfinite(core):
            return None
        centre, _ = _moments(np.clip(s, 0, None), x, y)
        fs = _aperture_fwhm(s, x, y, centre, APERTURE_FWHMS * core)
        fm = _aperture_fwhm(m, x, y, centre, APERTURE_FWHMS * core)
        r = fm / fs
    return float(r) if math.isfinite(r) and r > 0 else None


def _alias_sum(mix, kx, ky):
    """``sum_{n != 0} P^(k + 2 pi n)``: what sampling the mixture at pixel centres adds to its
    transform (Poisson summation), on the half-spectrum grid.

    The residual's samples are ``stamp - mixture samples``, whose transform is
    ``T^ - sum_n P^(k + 2 pi n)``; the mixture part is rendered as continuous Gaussians (``P^``
    alone), so this sum is added back to the residual's transform: the model's transform is
    then ``G^ T^`` (plus the aliases of ``G (x) P`` itself, which fall beyond the stamp's band),
    and its total is the stamp's sum whatever the mixture, even with components narrower than
    a pixel. ``n`` runs until every term is below 1e-12 of the mixture's total.
    """
    lam = np.linalg.eigvalsh(mix.covs)[:, 0]
    sig = math.sqrt(max(lam.min(), 1e-6))
    nmax = int(math.ceil((math.sqrt(2 * 27.7) / sig + math.pi) / (2 * math.pi)))
    out = np.zeros((ky.size, kx.size, 2))
    _alias_sum_kernel(np.ascontiguousarray(mix.amps, np.float64),
                      np.ascontiguousarray(mix.means, np.float64),
                      np.ascontiguousarray(mix.covs, np.float64), kx, ky, nmax, out)
    return out[..., 0] + 1j * out[..., 1]


@numba.njit(cache=True, nogil=True)
def _alias_sum_kernel(amps, means, covs, kx, ky, nmax, out):
    """The loops of :func:`_alias_sum` (a plan's cost: numpy took 0.3 s on a 256 px grid),
    terms below exp(-27.7) skipped; ``out`` (ny, nx, 2) real and imaginary parts."""
    twopi = 2.0 * math.pi
    for c in range(amps.shape[0]):
        a = amps[c]
        cxx, cxy, cyy = covs[c, 0, 0], covs[c, 0, 1], covs[c, 1, 1]
        mx, my = means[c, 0], means[c, 1]
        for ny_ in range(-nmax, nmax + 1):
            for i in range(ky.shape[0]):
                qy = ky[i] + twopi * ny_
                for nx_ in range(-nmax, nmax + 1):
                    if nx_ == 0 and ny_ == 0:
                        continue
                    for j in range(kx.shape[0]):
                        qx = kx[j] + twopi * nx_
                        e = -0.5 * (cxx * qx * qx + 2.0 * cxy * qx * qy + cyy * qy * qy)
                        if e < -27.7:
                            continue
                        g = a * math.exp(e)
                        ph = qx * mx + qy * my
                        out[i, j, 0] += g * math.cos(ph)
                        out[i, j, 1] -= g * math.sin(ph)


@numba.njit(cache=True, nogil=True)
def _tail(amps, v, s_axis, res_abs, tol):
    """Distance (px) along one axis beyond which the galaxy ``sum_m a_m N(0, v_m s_axis)``
    (``s_axis``: the shape matrix's diagonal entry for that axis, so ``v_m s_axis`` is the
    component's marginal variance), convolved with a residual of ``sum|R| = res_abs``, holds
    less than ``tol`` of the galaxy's flux: with the tolerance shared equally among the ``M``
    components, ``t_m = sigma_m u_m`` for the smallest ``u_m`` with
    ``erfc(u / sqrt 2) <= q_m = tol / (M |a_m| res_abs)`` (``|a_m|`` normalised to unit sum),
    from the bound ``erfc(u / sqrt 2) <= min(1, sqrt(2 / pi) / u) exp(-u^2 / 2)``
    (:func:`_erfc_reach`); returns the largest ``t_m``. (With ``exp(-u^2 / 2)`` alone, as
    before, ``u`` was 6 % larger at the usual ``q ~ 1e-7``, 16 % at 1e-2: enough to cross
    one of the gaps between odd 7-smooth sizes, e.g. 105 x 125 instead of 125 x 125 for the
    64 px Sérsic of benchmarks/bench_render.py's fits.)"""
    M = amps.shape[0]
    tot = 0.0
    for m in range(M):
        tot += abs(amps[m])
    if tot <= 0.0:
        return 0.0
    t = 0.0
    for m in range(M):
        arg = M * abs(amps[m]) / tot * res_abs / tol
        if arg > 1.0 and v[m] * s_axis > 0.0:
            t = max(t, math.sqrt(v[m] * s_axis) * _erfc_reach(1.0 / arg))
    return t


@numba.njit(cache=True, nogil=True)
def _erfc_reach(q):
    """Smallest ``u >= 0`` (to ~1e-10, never below it) with ``B(u) <= q`` for the bound
    ``B(u) = min(1, c / u) exp(-u^2 / 2) >= erfc(u / sqrt 2)``, ``c = sqrt(2 / pi)`` (the
    Mills-ratio bound of the Gaussian tail, and the plain exponential where ``c / u > 1``);
    ``0 < q < 1``. Newton's method on ``g(u) = ln(c / u) - u^2 / 2 - ln q`` from
    ``u = sqrt(2 ln(1 / q))`` (where the exponential alone is ``q``): ``g`` decreases and is
    concave for ``u >= 1``, so each tangent's zero has ``g <= 0`` and the iterates descend to
    the root from above (a bound at every step); an iterate that would leave that region or
    break ``g <= 0`` ends the search at the last one."""
    c = math.sqrt(2.0 / math.pi)
    lq = math.log(q)
    u = math.sqrt(-2.0 * lq)
    if u <= 1.0:
        return u
    for _ in range(20):
        g = math.log(c / u) - 0.5 * u * u - lq
        nu = u + g / (1.0 / u + u)
        if nu < 1.0 or math.log(c / nu) - 0.5 * nu * nu - lq > 0.0:
            break
        if u - nu < 1e-10:
            u = nu
            break
        u = nu
    return u


def _grid_len(n, centre, reach, tail):
    """FFT length along one axis: odd and fast (:func:`_odd_fast_len`), at least
    ``max(n + 2 reach, max(c, n - 1 - c) + reach + tail)`` for an image of ``n`` pixels and a
    galaxy centre ``c``, at most ``3 n + 2 reach``.

    The first term is the linear convolution of the image's extent with the residual's: the
    band-limited term has slowly decaying (sinc) tails from the cusp's transform cut at the
    band edge, and below it they wrap round onto the image (2x the error on the KiDS stamp).
    The second bounds the galaxy's Gaussian light that wraps in. The circular convolution
    gives, at image pixel ``p``, the sum of the linear result at ``p + j N`` over all ``j``;
    the terms ``j != 0`` lie at least ``N - max(c, n - 1 - c)`` from the galaxy centre, and
    the linear result ``G (x) R`` there is the galaxy's light beyond that distance less the
    residual's ``reach`` (its farthest pixel from the origin), so ``tail`` (:func:`_tail`)
    bounds what wraps in."""
    need = max(n + math.ceil(2 * reach), math.ceil(max(centre, n - 1 - centre) + reach + tail))
    # at most the image, the stamp and twice the image again (a galaxy far larger than the
    # image: what wraps in is then a smooth fraction of the light, no longer bounded)
    need = min(need, n + math.ceil(2 * reach) + 2 * n)
    got = _fast_lens.get(need)
    if got is None:
        got = _fast_lens[need] = _odd_fast_len(need)
    return got


def _odd_fast_len(n):
    """The smallest odd ``m >= n`` with no prime factor above 7 (fast for pocketfft; sizes
    with a factor 11 were slower than the next 7-smooth one: 121 than 125, 231 than 243, 363
    than 375). Odd,
    so that the grid has no Nyquist bin: there a real transform keeps only the real part of
    ``R^ G^ exp(-i k.x_g)``, which is complex for a sub-pixel centre (on the KiDS stamp an
    even grid erred by 1e-4 of the peak, an odd one by 3.5e-5)."""
    m = n | 1
    while True:
        r = m
        for f in (3, 5, 7):
            while r % f == 0:
                r //= f
        if r == 1:
            return m
        m += 2


_fast_lens = {}


class _Scratch(threading.local):
    """Per-thread spectra and work arrays of :meth:`ExactPsf._planes`, kept from call to call
    by role, shape and dtype (the kernel clears what it writes). Allocated afresh at every
    call, the five derivative spectra (1.4 MB on a 128 px image's 225 x 315 grid) and their
    transforms cost page faults: render + derivatives took 4.0 ms instead of 2.3 ms at 128 px
    (benchmarks/bench_render.py's galaxy, thread time, side by side)."""

    def __init__(self):
        self.kept = {}

    def get(self, role, shape, dtype):
        key = (role, shape, np.dtype(dtype).str)
        a = self.kept.get(key)
        if a is None:
            if len(self.kept) > 24:
                self.kept.clear()
            a = self.kept[key] = np.empty(shape, dtype)
        return a


_scratch = _Scratch()


def _crop(res, centre, tol):
    """Smallest box centred on the pixel nearest ``centre`` holding all but ``tol`` of sum|res|
    (absolute: the stamp sums to 1);
    returns the cropped array and the centre in its coordinates."""
    h, w = res.shape
    cx, cy = centre
    i0, j0 = int(round(cy)), int(round(cx))
    a = np.abs(res)
    total = a.sum()
    if total == 0.0:
        return res[i0:i0 + 1, j0:j0 + 1] * 0.0, (cx - j0, cy - i0)
    rmax = max(i0, h - 1 - i0, j0, w - 1 - j0)
    for r in range(rmax + 1):
        ys, ye = max(0, i0 - r), min(h, i0 + r + 1)
        xs, xe = max(0, j0 - r), min(w, j0 + r + 1)
        if total - a[ys:ye, xs:xe].sum() <= tol:
            break
    return res[ys:ye, xs:xe].copy(), (cx - xs, cy - ys)


class ExactPsf:
    """A PSF stamp used exactly: its mixture (rendered as Gaussians) plus the residual (by FFT).

    Parameters
    ----------
    mixture : Mixture
        The stamp's mixture, means relative to the PSF origin, on the flux scale of ``stamp``.
    stamp : ndarray (h, w)
        The pixel-convolved PSF sampled at pixel centres, NaN where masked (NaN pixels count as
        zero residual). Normalised here to unit sum, and ``mixture`` by the same factor.
    centre : (cx, cy)
        The PSF origin in stamp pixel coordinates (0-based, pixel centres at integers).
    double : bool, keyword-only
        Compute the derivative planes of the FFT term in double precision too (for
        finite-difference checks of the derivatives; single precision is ~1e-9 of the model and
        faster). The image plane is always in double precision.

    Attributes
    ----------
    mixture : Mixture
        On the unit-sum scale of the stamp: ``mixture.total`` is the flux share of the mixture
        part, ``1 - mixture.total`` the residual's.
    fast : Mixture or None
        The components of ``mixture`` drawn as Gaussians (minor-axis variance at least
        :data:`FAST_MIN_VAR`); the others stay in the residual.
    residual : ndarray
        ``stamp - fast`` at the stamp's pixel centres, cropped (see :data:`CROP_TOL`).
    res_flux : float
        ``1 - mixture.total``: the flux the mixture-only model misses (signed; negative when the
        mixture holds more than the stamp, e.g. a stamp with a negative ring).
    res_abs : float
        ``sum |residual|``: flux misplaced by the mixture-only model.
    res_peak : float
        ``max |residual| / max(stamp)``.
    size_ratio : float or None
        ``(det M_mixture / det M_stamp)^(1/4)``: unweighted second moments about the stamp's
        centroid inside a circle of 3 core FWHMs (the ``fwhm_ratio`` of
        :class:`mogviewer.psf.PsfQuality`: what a convolution adds to a galaxy's moments, with
        the far wings' noise kept out); None when the stamp's moments there are not positive
        definite (a negative ring can make them so).
    """

    def __init__(self, mixture, stamp, centre, *, double=False):
        stamp = np.asarray(stamp, float)
        good = np.isfinite(stamp)
        s = float(stamp[good].sum())
        if not s > 0:
            raise ValueError(f"the PSF stamp sums to {s:.4g}; it needs a positive total")
        st = np.where(good, stamp / s, 0.0)
        mix = mixture.scaled(1.0 / s)
        h, w = st.shape
        yy, xx = np.mgrid[0:h, 0:w]
        model = mix.evaluate(xx - centre[0], yy - centre[1])
        lam = np.linalg.eigvalsh(mix.covs)[:, 0]
        keep = lam >= FAST_MIN_VAR
        self.fast = (Mixture(mix.amps[keep], mix.means[keep], mix.covs[keep], validate=False)
                     if keep.any() else None)
        fast_model = (self.fast.evaluate(xx - centre[0], yy - centre[1])
                      if self.fast is not None else 0.0 * st)
        res = np.where(good, st - fast_model, 0.0)
        self.mixture = mix
        self.stamp = st
        #: False where the stamp given was not finite (masked: no residual there)
        self.valid = good
        self.valid.setflags(write=False)
        self.centre = (float(centre[0]), float(centre[1]))
        self.res_flux = float(1.0 - mix.total)
        res_mix = np.where(good, st - model, 0.0)
        self.res_abs = float(np.abs(res_mix).sum())
        self.res_peak = float(np.abs(res_mix).max() / st.max())
        self.size_ratio = _size_ratio(st, model, xx, yy)
        self.residual, self._rc = _crop(res, self.centre, CROP_TOL)
        self.residual.setflags(write=False)
        rh, rw = self.residual.shape
        cx, cy = self._rc
        i0, j0 = int(round(cy)), int(round(cx))
        # farthest residual pixel from the origin along y and x, and what the crop kept
        self._reach = (float(max(i0, rh - 1 - i0)) + 0.5, float(max(j0, rw - 1 - j0)) + 0.5)
        self.res_abs_crop = float(np.abs(self.residual).sum())
        self._plans = {}
        self._cdtype = np.complex128 if double else np.complex64
        self._rdtype = np.float64 if double else np.float32

    @classmethod
    def from_model(cls, model, *, double=False):
        """From a :class:`mogviewer.psf.PsfModel` read from an image (stamp, .npy, PSFEx).

        One per model and precision (models are immutable): a batch builds a problem per
        cutout from one shared PSF, and each ExactPsf measured the stamp's size again
        (6-8 ms, more than the fit of a 64 px cutout)."""
        if model.stamp is None:
            raise ValueError(f"a {model.source} PSF is a mixture with no stamp: it can only be "
                             f"used in mixture mode")
        try:
            per = _FROM_MODEL.setdefault(model, {})
        except TypeError:       # not weak-referenceable: made each time
            per = {}
        with _FROM_MODEL_LOCK:
            if double not in per:
                per[double] = cls(model.mixture, model.stamp, model.centre, double=double)
            return per[double]

    # a Mixture's face, for code that only needs the PSF's mixture (start guess, exports)
    @property
    def amps(self):
        return self.mixture.amps

    @property
    def means(self):
        return self.mixture.means

    @property
    def covs(self):
        return self.mixture.covs

    def __len__(self):
        return len(self.mixture)

    def second_moments(self):
        """Second moments of the mixture part (pixels^2)."""
        return self.mixture.second_moments()

    def normalized(self):
        return self

    def __repr__(self):
        return (f"ExactPsf(K={len(self.mixture)}, stamp {self.stamp.shape}, residual "
                f"{self.residual.shape}, res_flux={self.res_flux:.3g})")

    # ------------------------------------------------------------------ the FFT term
    def _plan(self, Ny, Nx):
        key = (int(Ny), int(Nx))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        Ny, Nx = key
        rh, rw = self.residual.shape
        cx, cy = self._rc
        i0, j0 = int(round(cy)), int(round(cx))
        Z = np.zeros((Ny, Nx))
        rows = (np.arange(rh) - i0) % Ny
        cols = (np.arange(rw) - j0) % Nx
        np.add.at(Z, (rows[:, None], cols[None, :]), self.residual)   # wraps if Ny < rh
        kx = 2 * np.pi * np.fft.rfftfreq(Nx)
        ky = 2 * np.pi * np.fft.fftfreq(Ny)
        Rhat = sfft.rfft2(Z)
        Rhat *= np.exp(-1j * ky * (i0 - cy))[:, None] * np.exp(-1j * kx * (j0 - cx))[None, :]
        if self.fast is not None:
            Rhat += _alias_sum(self.fast, kx, ky)
        plan = dict(Ny=Ny, Nx=Nx, kx=kx, ky=ky, dkx=2 * np.pi / Nx,
                    Rhat_ri=np.ascontiguousarray(Rhat).view(np.float64).reshape(Ny, -1, 2))
        if len(self._plans) > 16:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def grid(self, shape, x, y, s3, amps, v):
        """``(Ny, Nx)``: the FFT grid for a galaxy at ``(x, y)`` with shape ``s3`` and profile
        amplitudes ``amps``, variances ``v`` on an image of ``shape`` (see
        :func:`_grid_len`)."""
        H, W = int(shape[0]), int(shape[1])
        tol = 0.5 * WRAP_TOL      # half for each axis
        Ny = _grid_len(H, y, self._reach[0], _tail(amps, v, s3[2], self.res_abs_crop, tol))
        Nx = _grid_len(W, x, self._reach[1], _tail(amps, v, s3[0], self.res_abs_crop, tol))
        return Ny, Nx

    def _planes(self, dest, flux, x, y, s3, coef, v, mode, amps):
        """Add the image-space planes of the residual term to ``dest`` ((6 or 1, ny, nx) for
        modes 1 and 0, (ny, nx) for mode 2): the image plane by a double-precision FFT, the
        derivative planes in the precision chosen at construction."""
        H, W = dest.shape[-2:]
        v = np.ascontiguousarray(v, np.float64)
        plan = self._plan(*self.grid((H, W), float(x), float(y), s3,
                                     np.ascontiguousarray(amps, np.float64), v))
        kx, ky = plan["kx"], plan["ky"]
        Ny, nxr = plan["Ny"], kx.size
        P = 5 if mode == 1 else (1 if mode == 2 else 0)
        out0 = _scratch.get("out0", (Ny if mode != 2 else 1, nxr), np.complex128)
        out = _scratch.get("out", (P, Ny if P else 1, nxr), self._cdtype)
        acc = _scratch.get("acc", (coef.shape[0], nxr), np.float64)
        _residual_planes(np.ascontiguousarray(coef, np.float64), v, s3[0], s3[1], s3[2],
                         plan["dkx"], kx, ky, plan["Rhat_ri"], float(x), float(y), float(flux),
                         mode, out0.view(np.float64), out.view(self._rdtype), acc, acc)

        def back(a):
            # inverse along y for every column (in place: the spectra are scratch), then
            # along x only for the rows of the image
            g = sfft.ifft(a, axis=-2, overwrite_x=True)[..., :H, :]
            return sfft.irfft(g, n=plan["Nx"], axis=-1, overwrite_x=True)[..., :W]
        if mode == 2:
            dest += back(out)[0]
            return dest
        dest[0] += back(out0)
        if mode == 1:
            dest[1:6] += back(out)
        return dest

    def add_residual(self, buf, flux, x, y, s3, amps, variances, derivs):
        """Add the residual term (and, with ``derivs``, its five derivative planes) to ``buf``
        (6 or 1, ny, nx), for profile amplitudes ``a_m`` (unit sum) and variances ``v_m``."""
        a = np.asarray(amps, float)
        v = np.asarray(variances, float)
        coef = np.vstack([a, a * v]) if derivs else a[None, :]
        self._planes(buf, flux, x, y, s3, coef, v, 1 if derivs else 0, a)
        return buf

    def residual_dn(self, shape, flux, x, y, s3, amps, variances, damps, dvariances):
        """``d/dn`` of the residual term for a profile whose ``a_m, v_m`` depend on ``n``."""
        a = np.asarray(amps, float)
        coef = np.vstack([np.asarray(damps, float), a * np.asarray(dvariances, float)])
        return self._planes(np.zeros(tuple(shape)), flux, x, y, s3, coef, variances, 2, a)


class ExactDn:
    """``d image / d n`` of a unit-flux galaxy with a PSF stamp used exactly, into a given
    plane: the fit's :class:`~mogviewer.render.normal.DnPlane` for the drawn mixture (its
    central difference in ``n``, one image render of ``2 M`` components, within 1e-8 of the
    plane's peak of the analytic formula) plus :meth:`ExactPsf.residual_dn` for the residual
    term (analytic, by FFT).

    :func:`~mogviewer.render.render_galaxy_dn` gives the same plane (to that 1e-8) at about
    twice the cost, because its mixture part takes an image render and a derivative render
    (six planes) of the galaxy: it made d/dn a third of an exact-mode evaluation (64 px
    Sérsic fit, HSC gal2 stamp).

    Called as ``DnPlane`` is: ``(out, x, y, S3, family, psf_packed)``; ``psf_packed`` is
    ignored (the PSF is the one given here).
    """

    def __init__(self, psf, shape, *, keep=False):
        from .api import _psf_packed
        from .normal import DnPlane

        if type(psf) is not ExactPsf:
            raise TypeError(f"ExactDn takes an ExactPsf, not {type(psf).__name__}")
        self.psf = psf
        self._fast = None if psf.fast is None else _psf_packed(psf.fast)
        self._mixture = DnPlane(shape, keep=keep)

    def __call__(self, out, x, y, S3, family, psf_packed=None):
        if self._fast is None:
            out[:] = 0.0
        else:
            self._mixture(out, x, y, S3, family, self._fast)
        out += self.psf.residual_dn(out.shape, 1.0, x, y, tuple(float(v) for v in S3),
                                    family.amps, family.variances, family.damps,
                                    family.dvariances)
        return out


# ---------------------------------------------------------------------------------------------
# the pixel as a PSF (no PSF given)
# ---------------------------------------------------------------------------------------------

#: Sub-Gaussians per axis of the pixel mixture used for narrow galaxy components.
PIXEL_N = 6
#: Their sigma in units of the sub-grid spacing 1/PIXEL_N: Poisson summation puts the flux error
#: of sampling the mixture at pixel centres below 2 exp(-2 pi^2 c^2) = 1.3e-4 per axis at any
#: sub-pixel position, whatever the galaxy component (a delta function included).
PIXEL_C = 0.7
#: Per-axis variance of that pixel mixture (a box has 1/12): comb + sub-Gaussians.
PIXEL_VAR = 1.0 / 12.0 - 1.0 / (12.0 * PIXEL_N ** 2) + (PIXEL_C / PIXEL_N) ** 2
#: Galaxy components whose minor-axis variance is at least this (px^2) take the pixel as one
#: Gaussian of variance PIXEL_VAR; narrower ones take the PIXEL_N^2 mixture.
PIXEL_WIDE_VAR = 1.0


def _pixel_mixtures():
    d = (np.arange(PIXEL_N) + 0.5) / PIXEL_N - 0.5
    xx, yy = np.meshgrid(d, d)
    n2 = PIXEL_N * PIXEL_N
    s2 = (PIXEL_C / PIXEL_N) ** 2
    comb = Mixture(np.full(n2, 1.0 / n2), np.column_stack([xx.ravel(), yy.ravel()]),
                   np.tile(np.eye(2) * s2, (n2, 1, 1)))
    one = Mixture(np.ones(1), np.zeros((1, 2)), (np.eye(2) * PIXEL_VAR)[None])
    return comb, one


PIXEL_COMB, PIXEL_ONE = _pixel_mixtures()


def _warm_exact():
    """Compile (or load) the exact mode's kernels: the per-frequency sums in single and double
    precision, the grid's tails and the alias sum (a first exact-mode render otherwise compiles
    them silently)."""
    one = np.ones(1)
    k = np.zeros(3)
    rhat = np.zeros((3, 2, 2))
    acc = np.zeros((2, 2))
    for dtype in (np.float32, np.float64):
        out = np.zeros((5, 3, 4), dtype)
        _residual_planes(np.ones((2, 1)), one, 1.0, 0.1, 1.0, 1.0, k[:2], k, rhat, 0.5, 0.5,
                         1.0, 1, np.zeros((3, 4)), out, acc, np.zeros((5, 1)))
    _tail(one, one, 1.0, 0.5, 1e-4)
    _alias_sum_kernel(one, np.zeros((1, 2)), np.eye(2)[None], k[:2], k, 1,
                      np.zeros((3, 2, 2)))
