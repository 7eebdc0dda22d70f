"""The starting point of a fit from the image itself (moments of the target's segment).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..ellipse import wrap_angle
from ..errors import FitError
from .params import GalaxyParams

# ---------------------------------------------------------------------------------------------
# initial guess
# ---------------------------------------------------------------------------------------------

_CROSS = ndimage.generate_binary_structure(2, 1)     # 4-connectivity, built once



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


def _target_segment(data, good, border, centre):
    """Start centre and a mask of the *other* sources (see :func:`initial_guess`, step 2)."""
    ny, nx = data.shape
    cx, cy = ((nx - 1) / 2, (ny - 1) / 2) if centre is None else map(float, centre)
    sm = ndimage.gaussian_filter(data, 1.5)
    ref = data[border & good] if (border & good).sum() > 10 else data[good]
    sigma = 1.4826 * _median(np.abs(ref - _median(ref)))
    # a Gaussian filter of sigma s scales white noise by 1 / (2 sqrt(pi) s)
    thresh = 3.0 * sigma / (2.0 * math.sqrt(math.pi) * 1.5)
    det = (sm > thresh) & good if sigma > 0 else np.zeros(data.shape, bool)
    lab, nlab = ndimage.label(det, structure=_CROSS)
    icx = int(np.clip(round(cx), 0, nx - 1))
    icy = int(np.clip(round(cy), 0, ny - 1))
    if nlab == 0:
        if centre is not None:
            return float(cx), float(cy), np.zeros(data.shape, bool)
        box = sm[ny // 4:ny - ny // 4, nx // 4:nx - nx // 4]
        iy, ix = np.unravel_index(np.argmax(box), box.shape)
        return float(ix + nx // 4), float(iy + ny // 4), np.zeros(data.shape, bool)
    target = lab[icy, icx]
    if target == 0:  # the centre is on sky: the segment that comes nearest to it
        dist = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
        target = lab[dist[0][icy, icx], dist[1][icy, icx]]
    seg = lab == target
    iy, ix = np.unravel_index(np.argmax(np.where(seg, sm, -np.inf)), sm.shape)
    others = ndimage.binary_dilation((lab > 0) & ~seg, structure=_CROSS, iterations=2) & ~seg
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
    if not good.any():
        raise FitError("no usable pixels (all masked, NaN or zero weight)")
    if np.ptp(img[good]) == 0:
        raise FitError(f"the image holds no signal: every usable pixel equals {img[good][0]:g}")
    ny, nx = img.shape
    border = np.zeros(img.shape, bool)
    b = max(1, int(0.1 * min(ny, nx)))
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    sky = 0.0
    if "sky" in problem.free:  # a fixed sky starts at 0 (the image is taken as sky-subtracted)
        sel = border & good
        sky = _median(img[sel]) if sel.sum() > 10 else _median(img[good])
    data = np.where(good, img - sky, 0.0)
    xc, yc, others = _target_segment(data, good, border, centre)
    good = good & ~others
    data = np.where(good, data, 0.0)
    # the usable pixels as flat arrays, once (a cutout is small: the cost is numpy's per-call
    # overhead, so each step below works on these 1-D arrays, not on the whole grid)
    gy, gx = np.nonzero(good)
    xs, ys = gx.astype(float), gy.astype(float)
    fs = data[gy, gx]
    pos = fs > 0
    xp, yp, fp = xs[pos], ys[pos], fs[pos]
    # iterate moments in an elliptical aperture
    C = np.eye(2) * (min(ny, nx) / 8.0) ** 2
    for _ in range(4):
        dx, dy = xp - xc, yp - yc
        det = C[0, 0] * C[1, 1] - C[0, 1] * C[0, 1]
        r2 = (C[1, 1] * dx * dx - 2 * C[0, 1] * dx * dy + C[0, 0] * dy * dy) / det
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
        Cn = np.array([[_dot(fx, ddx), sxy], [sxy, _dot(fy, ddy)]]) / tot
        if not np.all(np.isfinite(Cn)) or Cn[0, 0] * Cn[1, 1] - Cn[0, 1] ** 2 <= 0:
            break
        C = Cn
    Cg = C.copy()
    if problem.psf is not None:
        Cd = C - problem.psf.second_moments()
        if np.all(np.linalg.eigvalsh(Cd) > 0.25):
            Cg = Cd
    evals, evecs = np.linalg.eigh(Cg)
    q = float(np.clip(math.sqrt(max(evals[0], 1e-6) / max(evals[1], 1e-6)), 0.1, 1.0))
    angle = wrap_angle(math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])))
    # half-light semi-major axis in the moment-shaped ellipse (q, angle)
    t = math.radians(angle)
    dx, dy = xs - xc, ys - yc
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    a = np.sqrt(u * u + (v / q) ** 2)
    amax = 3.0 * math.sqrt(evals[1]) * 2.0
    sel = a <= amax
    a_sel = a[sel]
    order = np.argsort(a_sel)
    cum = np.cumsum(fs[sel][order])
    flux = float(cum[-1]) if cum.size else float(fs.sum())
    if cum.size and flux > 0:
        re = float(a_sel[order][np.searchsorted(cum, 0.5 * flux)])
    else:
        re = math.sqrt(evals[1])
        flux = max(float(fs.sum()), 1e-3)
    re = float(np.clip(re, 0.5, 0.5 * max(ny, nx)))
    xc = float(np.clip(xc, 0, nx - 1))
    yc = float(np.clip(yc, 0, ny - 1))
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
