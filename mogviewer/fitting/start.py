"""The starting point of a fit from the image itself (moments of the target's segment).

The algorithm runs compiled (:mod:`mogviewer.fitting.start_kernels`, one numba call a cutout):
in numpy, a small cutout's start cost more in per-call overhead than in arithmetic.
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy import ndimage

from ..errors import FitError
from ..render.warm import register as _register_warm
from . import start_kernels as _k
from .params import GalaxyParams

# ---------------------------------------------------------------------------------------------
# initial guess
# ---------------------------------------------------------------------------------------------

_SMOOTH = 1.5                                         # sigma (px) of the detection smoothing
# the weights ndimage.gaussian_filter(x, 1.5) correlates each axis with (truncate 4: 13 taps),
# taken once from the filter itself (the response to a unit impulse); the kernel correlates
# with them in scipy's order of operations (they are symmetric), so its smoothing is
# gaussian_filter's bit for bit
_SMOOTH_WEIGHTS = ndimage.gaussian_filter1d(
    np.eye(1, 2 * int(4.0 * _SMOOTH + 0.5) + 1, int(4.0 * _SMOOTH + 0.5)).ravel(), _SMOOTH,
    mode="constant")
assert np.array_equal(_SMOOTH_WEIGHTS, _SMOOTH_WEIGHTS[::-1])   # the kernel's symmetric form


def _readonly(a):
    """``a`` as a C-contiguous, read-only float64 array (a view when it is one already): the
    kernel is compiled once, for the read-only arrays a :class:`FitProblem` holds, and every
    call passes that type (a writable array would compile a second specialisation)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.flags.writeable:
        a = a.view()
        a.setflags(write=False)
    return a


_NO_PSF = _readonly(np.zeros((2, 2)))
# the second moments of the last PSF seen, by identity (a batch shares one PSF among its
# cutouts; PSF models are immutable): ``(weak reference, moments)``, replaced in one
# assignment (threads). Not a WeakKeyDictionary: Mixture hashes and compares by value, which
# costs as much as the moments themselves (12-14 us)
_PSF_LAST = [(None, None)]


def _smooth(data):
    """``ndimage.gaussian_filter(data, 1.5)`` (mode 'reflect'), bit for bit, compiled."""
    return _k._smooth(np.ascontiguousarray(data, dtype=np.float64), _SMOOTH_WEIGHTS)


def _psf_moments(psf):
    """``psf.second_moments()`` (2x2, pixels^2), computed once for consecutive calls with the
    same PSF object."""
    ref, m = _PSF_LAST[0]
    if ref is not None and ref() is psf:
        return m
    m = _readonly(psf.second_moments())
    try:
        _PSF_LAST[0] = (weakref.ref(psf), m)
    except TypeError:           # not weak-referenceable: computed each time
        pass
    return m


def nothing_to_fit(problem):
    """Why ``problem`` has nothing to fit, or None: no usable pixel, or every usable pixel of
    one value (an all-zero image, say). The messages are :func:`initial_guess`'s, so a caller
    with its own start (the app) refuses what the command line refuses."""
    good = problem.weights > 0
    if not good.any():
        return _NO_PIXELS
    v = problem.image[good]
    lo = float(v.min())
    if lo == float(v.max()):
        return _no_signal(lo * problem.scale)
    return None


_NO_PIXELS = "no usable pixels (all masked, NaN or zero weight)"


def _no_signal(value):
    return f"the image holds no signal: every usable pixel equals {value:g}"


def initial_guess(problem, *, centre=None):
    """Start parameters from image moments in a central aperture.

    1. Sky: median of the unmasked pixels of the outer 10 % border (0 if the sky is not free).
    2. Target: the sky-subtracted image is smoothed (Gaussian sigma 1.5 px) and thresholded at
       3 sigma of its noise (1.48 MAD of the border); the connected segment that contains the
       stamp centre (or ``centre``, 0-based pixels, if given) -- or else the one that comes
       nearest to it -- is the target, and its brightest smoothed pixel the start centre. Other
       segments (neighbours, stars) are left out of the moments below, so a bright neighbour,
       even one brighter than the target, does not capture the start.
    3. Ellipse: flux-weighted second moments of positive pixels in an elliptical aperture about
       that centre, iterated three times (aperture = 3 x the current moment ellipse); ``q`` and
       the angle from the moment eigenvectors (PSF second moments subtracted when possible).
    4. ``re``: semi-major axis of the moment-shaped ellipse holding half the aperture flux;
       ``flux``: the aperture sum minus sky.

    The steps run in one compiled call (:func:`start_kernels._start_kernel`); a centre on sky
    calls it twice, with the nearest detected pixel by scipy's distance transform between.

    Parameters
    ----------
    problem : FitProblem
    centre : (float, float), optional
        ``(x, y)`` in 0-based pixels (pixel centres at integers) to take the target at.

    Returns
    -------
    GalaxyParams
        In the caller's image units; the angle in degrees CCW from +x, in [0, 180).

    Raises
    ------
    FitError
        No usable pixel, or every usable pixel equal.
    """
    img, w = _readonly(problem.image), _readonly(problem.weights)
    ny, nx = img.shape
    given = centre is not None
    cx, cy = ((nx - 1) / 2, (ny - 1) / 2) if centre is None else map(float, centre)
    has_psf = problem.psf is not None
    psf_m = _psf_moments(problem.psf) if has_psf else _NO_PSF
    out = np.zeros(_k.N_OUT)
    args = (img, w, "sky" in problem.free, cx, cy, given)
    status, det = _k._start_kernel(*args, -1, -1, _SMOOTH_WEIGHTS, psf_m, has_psf, out)
    if status == _k.NEEDS_SEED:
        # the centre is on sky: the segment that comes nearest to it (the nearest detected
        # pixel by scipy's exact distance transform, as before; rare, so not compiled)
        iy, ix = ndimage.distance_transform_edt(~det, return_indices=True)[1]
        icx = int(min(max(round(cx), 0), nx - 1))
        icy = int(min(max(round(cy), 0), ny - 1))
        status, _ = _k._start_kernel(*args, int(iy[icy, icx]), int(ix[icy, icx]),
                                     _SMOOTH_WEIGHTS, psf_m, has_psf, out)
    if status == _k.NO_PIXELS:
        raise FitError(_NO_PIXELS)
    if status == _k.NO_SIGNAL:
        raise FitError(_no_signal(out[_k.FIRST_GOOD]))
    flux, xc, yc, re, q, angle, sky = (float(v) for v in out[:_k.FIRST_GOOD])
    if problem.profile2 is not None:
        # composite: a compact, rounder first component (bulge) holding 40 % of the light and
        # an extended second one (disk) with the moment ellipse
        return problem.to_physical(GalaxyParams(
            flux=0.4 * flux, x=xc, y=yc, re=0.5 * re, q=min(1.0, q + 0.2), angle=angle, sky=sky,
            flux2=0.6 * flux, re2=1.2 * re, q2=q, angle2=angle,
            n=problem.n if problem.uses_family else 1.0))
    # the caller's image units (a problem of extreme data works divided by problem.scale)
    return problem.to_physical(GalaxyParams(flux=flux, x=xc, y=yc, re=re, q=q, angle=angle,
                                            sky=sky, n=problem.n if problem.uses_family else 1.0))


def _warm_start():
    """Compile (or load from numba's cache) :func:`start_kernels._start_kernel` on a tiny
    stamp; registered with :func:`mogviewer.render.warmup` (end of this module)."""
    img = np.zeros((8, 8))
    img[3:5, 3:5] = 1.0
    _k._start_kernel(_readonly(img), _readonly(np.ones((8, 8))), True, 3.5, 3.5, False, -1, -1,
                     _SMOOTH_WEIGHTS, _NO_PSF, False, np.zeros(_k.N_OUT))


# render.warmup() compiles the start's kernel too, and compile_status() reports it
_register_warm("initial guess", _warm_start, lambda: _k._start_kernel)
