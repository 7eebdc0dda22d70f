"""Render mixtures and galaxy models: the functions the rest of mogviewer calls.

Conventions and the derivative formulas are in :mod:`mogviewer.render`; the compiled kernels that
do the work in :mod:`mogviewer.render.kernels`, their numpy specification in
:mod:`mogviewer.render.reference` (``backend="numpy"``).
"""

from __future__ import annotations

import math

import numpy as np

from ..ellipse import affine_matrix, shape_jacobian_physical, shape_matrix
from ..mixture import Mixture
from ..profiles import ProfileMixture, get_mixture
from .exact import PIXEL_COMB, PIXEL_ONE, PIXEL_WIDE_VAR, ExactPsf
from .kernels import _DELTA, _DELTA_PACKED, _galaxy_kernel, _mixture_kernel, _scratch
from .reference import _component_arrays, _render_numpy
from .warm import _warm, warmup

#: Order of the derivative planes returned by :func:`render_galaxy`.
DERIV_NAMES = ("x", "y", "Sxx", "Sxy", "Syy")
#: Parameters of :func:`render_model`, in Jacobian order.
PARAM_NAMES = ("flux", "x", "y", "re", "q", "angle", "sky")

def _use_numba(backend):
    if backend not in ("numba", "numpy"):
        raise ValueError(f"unknown backend {backend!r}; use 'numba' or 'numpy'")
    if backend == "numba":
        if not _warm["done"]:
            warmup()
        return True
    return False


def _output(shape, derivs, out, zero=True):
    """A ``(6 or 1, ny, nx)`` buffer: ``out`` reused when given (saves page faults), zeroed
    unless ``zero`` is false, in which case the second value says whether the caller must zero
    it (a new buffer is already zero)."""
    H, W = (int(shape[0]), int(shape[1]))
    if H <= 0 or W <= 0:
        raise ValueError(f"image shape must be positive, got {tuple(shape)}")
    planes = 6 if derivs else 1
    if out is None:
        buf = np.zeros((planes, H, W))
        return buf if zero else (buf, False)
    shp = out.shape
    flags = out.flags
    if len(shp) != 3 or shp[0] < planes or shp[1] != H or shp[2] != W \
            or out.dtype != np.float64 or not (flags.c_contiguous and flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous float64 array of shape "
                         f"({planes}, {H}, {W})")
    out = out[:planes]
    if zero:
        out.fill(0.0)
        return out
    return out, True




def render(mixture, shape, *, backend="numba", out=None):
    """Evaluate a :class:`~mogviewer.mixture.Mixture` at the pixel centres of an image.

    Parameters
    ----------
    mixture : Mixture
        Means in 0-based pixel coordinates ``(x, y)``; covariances in pixels^2.
    shape : tuple of int
        ``(ny, nx)`` of the output.
    backend : {'numba', 'numpy'}
    out : ndarray (1, ny, nx), optional
        Buffer to reuse.

    Returns
    -------
    ndarray, shape ``(ny, nx)``
        ``sum_k amps[k] N((x, y) | means[k], covs[k])`` at every pixel centre (flux per pixel).
    """
    buf = _output(shape, False, out)
    arrays = _component_arrays(mixture.amps, mixture.means, mixture.covs)
    vfac = np.zeros(len(mixture))
    if _use_numba(backend):
        _mixture_kernel(*arrays, vfac, buf, False, _scratch.full(buf.shape[2]))
    else:
        _render_numpy(*arrays, vfac, buf, False)
    return buf[0]


# ---------------------------------------------------------------------------------------------
# galaxy models
# ---------------------------------------------------------------------------------------------

def _profile(profile, M, n):
    if hasattr(profile, "amps"):
        return profile
    try:
        key = (profile, M, None if n is None else float(n))
    except (TypeError, ValueError):        # let get_mixture say what is wrong with n
        return get_mixture(profile, M, n=n)
    prof = _named_profiles.get(key)
    if prof is None:
        prof = get_mixture(profile, M, n=key[2])
        if len(_named_profiles) > 256:
            _named_profiles.clear()
        _named_profiles[key] = prof
    return prof


_named_profiles = {}





def _psf_entry(psf):
    """``(psf, six arrays, packed (6, K) array)``, cached by identity (Mixtures are immutable)."""
    key = id(psf)
    cached = _psf_cache.get(key)
    if cached is not None and cached[0] is psf:
        return cached
    arrays = _component_arrays(psf.amps, psf.means, psf.covs)
    if len(_psf_cache) > 32:
        _psf_cache.clear()
    entry = _psf_cache[key] = (psf, arrays, np.vstack(arrays))
    return entry


def _psf_arrays(psf):
    return _DELTA if psf is None else _psf_entry(psf)[1]


def _psf_packed(psf):
    return _DELTA_PACKED if psf is None else _psf_entry(psf)[2]


def _profile_packed(prof):
    """``(3, M)`` amplitudes, variances, variances of a profile mixture.

    Cached by the identity of its two arrays when both own their data and are read-only (the
    tables and the Sérsic family's mixtures are), so an object whose arrays are swapped or
    written is never stale (writing needs an explicit ``setflags(write=True)`` on a table,
    which is not supported). Anything else is packed afresh on every call (~1 us).
    """
    if type(prof) is ProfileMixture:   # frozen, read-only arrays: cache by the object
        cached = _prof_cache.get(id(prof))
        if cached is not None and cached[0] is prof:
            return cached[2]
    a, v = prof.amps, prof.variances
    frozen = (type(a) is np.ndarray and type(v) is np.ndarray and a.base is None
              and v.base is None and not a.flags.writeable and not v.flags.writeable)
    if frozen:
        cached = _prof_cache.get((id(a), id(v)))
        if cached is not None and cached[0] is a and cached[1] is v:
            return cached[2]
    packed = np.vstack([np.asarray(a, np.float64), np.asarray(v, np.float64),
                        np.asarray(v, np.float64)])
    if frozen:
        if len(_prof_cache) > 64:
            _prof_cache.clear()
        _prof_cache[(id(a), id(v))] = (a, v, packed)
        if type(prof) is ProfileMixture:
            _prof_cache[id(prof)] = (prof, None, packed)
    return packed


_psf_cache = {}
_prof_cache = {}


def _as_s3(S):
    if type(S) is np.ndarray and S.shape == (2, 2):   # the common case, quickly
        return float(S.item(0)), float(S.item(1)), float(S.item(3))
    S = np.asarray(S, float)
    if S.shape == (2, 2):
        return float(S[0, 0]), float(S[0, 1]), float(S[1, 1])
    if S.shape == (3,):
        return float(S[0]), float(S[1]), float(S[2])
    raise ValueError(f"S must be a 2x2 matrix or (Sxx, Sxy, Syy), got shape {S.shape}")


def galaxy_mixture(params, profile, M, psf=None, *, n=None):
    """The galaxy's :class:`Mixture` (profile x ellipse, convolved with ``psf`` if given).

    ``params`` has ``flux, x, y, re, q, angle`` (see :func:`render_model`).
    """
    prof = _profile(profile, M, n)
    base = Mixture.isotropic(np.asarray(prof.amps) * float(params["flux"]), prof.variances)
    gal = base.transformed(affine_matrix(params["re"], params["q"], params["angle"]),
                           (params["x"], params["y"]))
    if psf is None:
        return gal
    return gal.convolve(psf.mixture if type(psf) is ExactPsf else psf)


def render_galaxy(flux, x, y, S, profile, M=None, psf=None, shape=(64, 64), *, n=None,
                  derivs=False, backend="numba", out=None):
    """Image of one galaxy and, optionally, derivatives w.r.t. centre and shape matrix.

    Parameters
    ----------
    flux : float
        Total flux of the *mixture* (its amplitudes are normalised to unit sum).
    x, y : float
        Centre, 0-based pixels.
    S : array_like (2, 2) or (3,)
        Shape matrix ``Rot diag(re^2, q^2 re^2) Rot^T`` in pixels^2, or ``(Sxx, Sxy, Syy)``.
    profile : str or ProfileMixture
    M : int
    psf : Mixture, ExactPsf or None
        Pixel-convolved PSF mixture (means relative to the star's centre), a stamp used exactly
        (:class:`~mogviewer.render.exact.ExactPsf`: mixture plus residual by FFT, the
        derivatives too), or ``None``: no PSF, the model integrated over the pixel.
    shape : (ny, nx)
    derivs : bool
        Also return the derivative planes.
    out : ndarray (6, ny, nx) or (1, ny, nx), optional
        Buffer to reuse (the returned arrays are views of it).

    Returns
    -------
    image : ndarray (ny, nx)
    d : ndarray (5, ny, nx), only if ``derivs``
        ``dI/dx, dI/dy, dI/dSxx, dI/dSxy, dI/dSyy`` (see :data:`DERIV_NAMES`). ``dI/dflux`` is
        ``image / flux``.
    """
    sxx, sxy, syy = _as_s3(S)
    prof = _profile(profile, M, n)
    buf, clear = _output(shape, derivs, out, zero=False)
    numba_ = _use_numba(backend)
    pp = _profile_packed(prof)
    parts = _parts(pp, psf, sxx, sxy, syy)
    if len(parts) != 1 and clear:
        buf.fill(0.0)
        clear = False
    for ppi, mix in parts:
        _galaxy_pass(float(flux), float(x), float(y), sxx, sxy, syy, ppi, mix, buf, derivs,
                     clear, numba_)
        clear = False
    if type(psf) is ExactPsf:
        psf.add_residual(buf, flux, x, y, (sxx, sxy, syy), pp[0], pp[1], derivs)
    if derivs:
        return buf[0], buf[1:]
    return buf[0]


def _parts(pp, psf, sxx, sxy, syy):
    """``[(packed profile columns, PSF mixture or None)]`` to render for ``psf``.

    A :class:`~mogviewer.mixture.Mixture` is the whole PSF; an :class:`ExactPsf` contributes its
    mixture's well-sampled components here (the rest and its residual separately). No PSF
    means the pixel: galaxy components whose minor-axis variance ``v_m lambda_min(S)`` reaches
    :data:`~mogviewer.render.exact.PIXEL_WIDE_VAR` take it as one Gaussian, narrower ones as
    the pixel mixture that conserves flux at any sub-pixel centre (see
    :mod:`mogviewer.render.exact`).
    """
    if type(psf) is ExactPsf:
        return [] if psf.fast is None else [(pp, psf.fast)]
    if psf is not None:
        return [(pp, psf)]
    d = sxx - syy           # d * d, not d ** 2: Python's pow and numba's product differ in
    lam = 0.5 * (sxx + syy) - math.sqrt(0.25 * (d * d) + sxy * sxy)   # the last bit at times
    narrow = pp[1] * lam < PIXEL_WIDE_VAR
    if not narrow.any():
        return [(pp, PIXEL_ONE)]
    if narrow.all():
        return [(pp, PIXEL_COMB)]
    return [(np.ascontiguousarray(pp[:, ~narrow]), PIXEL_ONE),
            (np.ascontiguousarray(pp[:, narrow]), PIXEL_COMB)]


def _galaxy_pass(flux, x, y, sxx, sxy, syy, pp, psf, buf, derivs, clear, numba_):
    """One kernel call: profile columns ``pp`` (amplitudes, variances, variance factors of the
    derivative) convolved with the mixture ``psf``, added to (or, with ``clear``, written
    into) ``buf``."""
    if numba_:
        qq = _psf_packed(psf)
        sc = _scratch.full(buf.shape[2], pp.shape[1] * qq.shape[1] if derivs else 0)
        _galaxy_kernel(flux, x, y, sxx, sxy, syy, pp, qq, buf, derivs, sc, clear)
        return
    if clear:
        buf.fill(0.0)
    pa, pv, pf = pp
    qa, qmx, qmy, qcxx, qcxy, qcyy = _psf_arrays(psf)
    K = len(qa)
    amp = flux * np.multiply.outer(pa, qa).ravel()
    mx = np.add.outer(np.full(len(pa), x), qmx).ravel()
    my = np.add.outer(np.full(len(pa), y), qmy).ravel()
    cxx = np.add.outer(pv * sxx, qcxx).ravel()
    cxy = np.add.outer(pv * sxy, qcxy).ravel()
    cyy = np.add.outer(pv * syy, qcyy).ravel()
    _render_numpy(amp, mx, my, cxx, cxy, cyy, np.repeat(pf, K), buf, derivs)


def render_galaxy_dn(flux, x, y, S, profile, damps, dvariances, psf=None, shape=(64, 64), *,
                     backend="numba"):
    """``d image / d n`` of a galaxy whose profile amplitudes and variances depend on a
    parameter ``n`` (the Sérsic index of an interpolated family).

    ``profile`` gives the amplitudes ``a_m`` (unit sum) and variances ``v_m`` (r_e^2) at ``n``;
    ``damps`` and ``dvariances`` are ``da_m/dn`` and ``dv_m/dn``. With ``G_m`` the m-th galaxy
    component convolved with the PSF and ``u = Sigma^-1 (p - mu)``:

        dI/dn = sum_m (da_m/dn) G_m / a_m + (dv_m/dn) G_m (u^T S u - tr(Sigma^-1 S)) / 2,

    the first sum is a render with amplitudes ``da_m/dn`` (signed), the second the shape-derivative
    planes weighted by ``dv_m/dn`` contracted with ``S``.
    """
    sxx, sxy, syy = _as_s3(S)
    pa = np.ascontiguousarray(profile.amps, dtype=np.float64)
    pv = np.ascontiguousarray(profile.variances, dtype=np.float64)
    da = np.ascontiguousarray(damps, dtype=np.float64)
    dv = np.ascontiguousarray(dvariances, dtype=np.float64)
    H, W = int(shape[0]), int(shape[1])
    amp_part = np.zeros((1, H, W))
    var_part = np.zeros((6, H, W))
    numba_ = _use_numba(backend)
    packed = np.vstack([pa, pv, pv, da, dv])
    for cols, mix in _parts(packed, psf, sxx, sxy, syy):
        c0, c1, _, c3, c4 = (np.ascontiguousarray(r) for r in cols)
        _galaxy_pass(float(flux), float(x), float(y), sxx, sxy, syy, np.vstack([c3, c1, c1]),
                     mix, amp_part, False, False, numba_)
        _galaxy_pass(float(flux), float(x), float(y), sxx, sxy, syy, np.vstack([c0, c1, c4]),
                     mix, var_part, True, False, numba_)
    out = amp_part[0] + sxx * var_part[3] + sxy * var_part[4] + syy * var_part[5]
    if type(psf) is ExactPsf:
        out += psf.residual_dn((H, W), flux, x, y, (sxx, sxy, syy), pa, pv, da, dv)
    return out


def render_model(params, profile, M=None, psf=None, shape=(64, 64), *, n=None, jacobian=False,
                 backend="numba"):
    """Model image of one galaxy plus a constant sky, and optionally its Jacobian.

    Parameters
    ----------
    params : mapping
        ``flux`` (total flux of the mixture, image units), ``x``, ``y`` (0-based pixel centre),
        ``re`` (semi-major half-light radius of the target profile, pixels), ``q`` (b/a in
        (0, 1]), ``angle`` (degrees counter-clockwise from +x), optional ``sky`` (per pixel).
    profile : str or ProfileMixture
        ``'exp'``, ``'dev'``, ``'lux'``, ``'luv'`` or ``'ser'`` (with ``n``).
    M : int
        Number of profile components (see :func:`mogviewer.profiles.available`).
    psf : Mixture, ExactPsf or None
        Pixel-convolved PSF mixture, unit total (means relative to the star's centre), a stamp
        used exactly (:class:`~mogviewer.render.exact.ExactPsf`), or ``None``: the pixel only.
    shape : (ny, nx)
    jacobian : bool
        If true, also return a dict ``{name: d image / d param}`` for :data:`PARAM_NAMES`
        (``angle`` in degrees).

    Returns
    -------
    image : ndarray (ny, nx)
    jac : dict, only if ``jacobian``
    """
    flux = float(params["flux"])
    sky = float(params.get("sky", 0.0))
    re, q, ang = float(params["re"]), float(params["q"]), float(params["angle"])
    S = shape_matrix(re, q, ang)
    if not jacobian:
        img = render_galaxy(flux, params["x"], params["y"], S, profile, M, psf, shape, n=n,
                            backend=backend)
        if sky:
            img += sky
        return img
    img, d = render_galaxy(flux, params["x"], params["y"], S, profile, M, psf, shape, n=n,
                           derivs=True, backend=backend)
    Js = shape_jacobian_physical(re, q, ang)  # d(Sxx, Sxy, Syy)/d(re, q, angle)
    dS = np.tensordot(Js.T, d[2:], axes=1)    # (3, ny, nx)
    if flux != 0:
        dflux = img / flux
    else:
        dflux = render_galaxy(1.0, params["x"], params["y"], S, profile, M, psf, shape, n=n,
                              backend=backend)
    jac = {"flux": dflux, "x": d[0], "y": d[1], "re": dS[0], "q": dS[1], "angle": dS[2],
           "sky": np.ones(img.shape)}
    return img + sky, jac
