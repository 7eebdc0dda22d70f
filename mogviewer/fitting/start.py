"""The starting point of a fit from the image itself (moments of the target's segment).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from scipy import ndimage

from ..ellipse import wrap_angle
from ..errors import FitError
from .params import GalaxyParams

# ---------------------------------------------------------------------------------------------
# initial guess
# ---------------------------------------------------------------------------------------------

_CROSS = ndimage.generate_binary_structure(2, 1)     # 4-connectivity, built once
_DIAMOND2 = ndimage.iterate_structure(_CROSS, 2)     # the pixels within 2 steps of 4-conn.
_SMOOTH = 1.5                                         # sigma (px) of the detection smoothing
# the weights ndimage.gaussian_filter(x, 1.5) correlates each axis with (truncate 4: 13 taps),
# taken once from the filter itself (the response to a unit impulse): two correlate1d calls
# with them give gaussian_filter's result bit for bit without its per-call set-up
_SMOOTH_WEIGHTS = ndimage.gaussian_filter1d(
    np.eye(1, 2 * int(4.0 * _SMOOTH + 0.5) + 1, int(4.0 * _SMOOTH + 0.5)).ravel(), _SMOOTH,
    mode="constant")
# the second moments of each PSF seen, by object (a batch shares one PSF among its cutouts;
# PSF models are immutable)
_PSF_MOMENTS = weakref.WeakKeyDictionary()


def _dot(a, b):
    """``a . b`` of two 1-D arrays without BLAS (whose threads make it slow on a busy machine)."""
    return float(np.einsum("i,i->", a, b))

def _median(a):
    """np.median of a 1-D array without its generic-axis machinery (a small cutout's medians
    cost more in numpy's wrappers than in the selection)."""
    n = a.size
    k = n // 2
    part = np.partition(a, (k - 1, k) if n % 2 == 0 and n > 1 else k)
    return float(part[k]) if n % 2 else float(0.5 * (part[k - 1] + part[k]))


def _smooth(data):
    """``ndimage.gaussian_filter(data, 1.5)`` (mode 'reflect'), bit for bit."""
    out = ndimage.correlate1d(data, _SMOOTH_WEIGHTS, axis=0, mode="reflect")
    return ndimage.correlate1d(out, _SMOOTH_WEIGHTS, axis=1, mode="reflect", output=out)


def _psf_moments(psf):
    """``psf.second_moments()``, computed once per PSF object."""
    try:
        return _PSF_MOMENTS[psf]
    except (KeyError, TypeError):
        pass
    m = np.asarray(psf.second_moments(), float)
    try:
        _PSF_MOMENTS[psf] = m
    except TypeError:           # not weak-referenceable: computed each time
        pass
    return m


def _target_segment(data, good, ref, centre):
    """Start centre and a mask of the *other* sources, or None when there are none (see
    :func:`initial_guess`, step 2); ``ref``: the pixels whose MAD sets the noise."""
    ny, nx = data.shape
    cx, cy = ((nx - 1) / 2, (ny - 1) / 2) if centre is None else map(float, centre)
    sm = _smooth(data)
    sigma = 1.4826 * _median(np.abs(ref - _median(ref)))
    # a Gaussian filter of sigma s scales white noise by 1 / (2 sqrt(pi) s)
    thresh = 3.0 * sigma / (2.0 * math.sqrt(math.pi) * _SMOOTH)
    # masked pixels join a segment when their smoothed neighbourhood is above the threshold
    # (they take no part in the moments): a mask of every other row cut a galaxy into one
    # segment per row, and the start was one row of it (new-user review, 2026-12-04)
    det = (sm > thresh) if sigma > 0 else np.zeros(data.shape, bool)
    lab, nlab = ndimage.label(det, structure=_CROSS)
    icx = int(min(max(round(cx), 0), nx - 1))
    icy = int(min(max(round(cy), 0), ny - 1))
    if nlab == 0:
        if centre is not None:
            return float(cx), float(cy), None
        box = sm[ny // 4:ny - ny // 4, nx // 4:nx - nx // 4]
        iy, ix = np.unravel_index(np.argmax(box), box.shape)
        return float(ix + nx // 4), float(iy + ny // 4), None
    target = lab[icy, icx]
    if target == 0:  # the centre is on sky: the segment that comes nearest to it
        dist = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
        target = lab[dist[0][icy, icx], dist[1][icy, icx]]
    seg = lab == target
    if centre is None:
        iy, ix = np.unravel_index(np.argmax(np.where(seg, sm, -np.inf)), sm.shape)
    others = None
    if nlab > 1:
        # other segments: them and two pixels around them (a lone target: none). The maximum
        # filter over the radius-2 diamond is binary_dilation(structure=_CROSS, iterations=2)
        # in one pass (the same pixels: outside the image counts as empty in both)
        others = ndimage.maximum_filter((lab > 0) & ~seg, footprint=_DIAMOND2,
                                        mode="constant", cval=0) & ~seg
    if centre is not None:
        return float(cx), float(cy), others
    return float(ix), float(iy), others


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

    Returns
    -------
    GalaxyParams
    """
    img, w = problem.image, problem.weights
    good = w > 0
    values = img[good]
    if values.size == 0:
        raise FitError("no usable pixels (all masked, NaN or zero weight)")
    if np.ptp(values) == 0:
        raise FitError(f"the image holds no signal: every usable pixel equals {values[0]:g}")
    ny, nx = img.shape
    border = np.zeros(img.shape, bool)
    b = max(1, int(0.1 * min(ny, nx)))
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    sel = border & good
    n_border = np.count_nonzero(sel)
    sky = 0.0
    if "sky" in problem.free:  # a fixed sky starts at 0 (the image is taken as sky-subtracted)
        sky = _median(img[sel]) if n_border > 10 else _median(values)
    data = np.where(good, img - sky, 0.0)
    xc, yc, others = _target_segment(data, good, data[sel] if n_border > 10 else data[good],
                                     centre)
    if others is not None:
        good = good & ~others
        data = np.where(good, data, 0.0)
    # the usable pixels as flat arrays, once (a cutout is small: the cost is numpy's per-call
    # overhead, so each step below works on these 1-D arrays, not on the whole grid)
    gy, gx = np.nonzero(good)
    xs, ys = gx.astype(float), gy.astype(float)
    fs = data[gy, gx]
    pos = fs > 0
    xp, yp, fp = xs[pos], ys[pos], fs[pos]
    # iterate moments in an elliptical aperture; the 2x2 moment matrix as three floats
    c00 = c11 = (min(ny, nx) / 8.0) ** 2
    c01 = 0.0
    for _ in range(4):
        dx, dy = xp - xc, yp - yc
        det = c00 * c11 - c01 * c01
        r2 = (c11 * dx * dx - 2 * c01 * dx * dy + c00 * dy * dy) / det
        ap = r2 <= 9.0
        f = fp[ap]
        tot = f.sum()
        if tot <= 0 or f.size < 5:
            break
        xa, ya = xp[ap], yp[ap]
        # einsum, not ``@``: OpenBLAS's threaded dot of long vectors costs ms on a busy
        # machine (3.6 ms vs 12 us for 65k pixels, 2 threads on 2 loaded cores)
        xc = float(_dot(f, xa) / tot)
        yc = float(_dot(f, ya) / tot)
        ddx, ddy = xa - xc, ya - yc
        fx, fy = f * ddx, f * ddy
        sxy = _dot(fx, ddy)
        n00, n01, n11 = float(_dot(fx, ddx) / tot), float(sxy / tot), float(_dot(fy, ddy) / tot)
        if not (math.isfinite(n00) and math.isfinite(n01) and math.isfinite(n11)) or \
                n00 * n11 - n01 * n01 <= 0:
            break
        c00, c01, c11 = n00, n01, n11
    C = np.array([[c00, c01], [c01, c11]])
    evals = evecs = None
    if problem.psf is not None:
        # the PSF's second moments subtracted when the difference stays well resolved
        evals, evecs = np.linalg.eigh(C - _psf_moments(problem.psf))
        if not np.all(evals > 0.25):
            evals = evecs = None
    if evals is None:
        evals, evecs = np.linalg.eigh(C)
    e0, e1 = float(evals[0]), float(evals[1])
    q = min(max(math.sqrt(max(e0, 1e-6) / max(e1, 1e-6)), 0.1), 1.0)
    angle = wrap_angle(math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])))
    # half-light semi-major axis in the moment-shaped ellipse (q, angle)
    t = math.radians(angle)
    dx, dy = xs - xc, ys - yc
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    a = np.sqrt(u * u + (v / q) ** 2)
    amax = 3.0 * math.sqrt(e1) * 2.0
    sel = a <= amax
    a_sel = a[sel]
    order = np.argsort(a_sel)
    cum = np.cumsum(fs[sel][order])
    flux = float(cum[-1]) if cum.size else float(fs.sum())
    if cum.size and flux > 0:
        re = float(a_sel[order][np.searchsorted(cum, 0.5 * flux)])
    else:
        re = math.sqrt(e1)
        flux = max(float(fs.sum()), 1e-3)
    re = float(min(max(re, 0.5), 0.5 * max(ny, nx)))
    xc = float(min(max(xc, 0), nx - 1))
    yc = float(min(max(yc, 0), ny - 1))
    flux = max(flux, 1e-3 * abs(flux) + 1e-12)
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
