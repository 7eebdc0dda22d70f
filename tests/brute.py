"""Independent brute-force rendering of exact profiles (supersampled, FFT-convolved).

Used only by tests and benchmarks as a reference that does not share code with the MoG path:
the exact profile Q(xi) is evaluated at point samples on a grid ``s`` times finer than the pixels
(s odd, so pixel centres are grid points), convolved with the pixel-convolved PSF sampled on the
same fine grid, and read off at the pixel centres (the PSF already contains the pixel, so no
pixel integration follows).
"""

import math

import numpy as np
from scipy.signal import fftconvolve

from mogviewer.profiles import profile_value


def exact_galaxy_image(profile, ie, x0, y0, re, q, angle_deg, shape, psf, *, n=None,
                       s=9, pad=None):
    """Pixel-centre samples of ``I_e Q(xi)`` convolved with a PSF.

    ``xi`` is the elliptical radius in units of ``re`` (semi-major), ``angle`` CCW from +x.
    ``psf`` is a round Gaussian's sigma in pixels, or a Mixture (evaluated on the fine grid with
    its own density formula; normalised to unit sum there).
    """
    psf_sigma = psf if np.isscalar(psf) else float(np.sqrt(np.max(psf.covs[:, [0, 1], [0, 1]])))
    if s % 2 == 0:
        raise ValueError("s must be odd so that pixel centres are grid points")
    ny, nx = shape
    pad = int(math.ceil(6 * psf_sigma)) + 2 if pad is None else pad
    h = 1.0 / s
    xs = np.arange(-pad * s, (nx + pad) * s) * h
    ys = np.arange(-pad * s, (ny + pad) * s) * h
    X, Y = np.meshgrid(xs - x0, ys - y0)
    t = math.radians(angle_deg)
    u = X * math.cos(t) + Y * math.sin(t)
    v = -X * math.sin(t) + Y * math.cos(t)
    xi = np.sqrt(u * u + (v / q) ** 2) / re
    fine = ie * profile_value(profile, xi, n=n)
    k = int(math.ceil(6 * psf_sigma * s))
    kx = np.arange(-k, k + 1) * h
    if np.isscalar(psf):
        g1 = np.exp(-0.5 * (kx / psf_sigma) ** 2)
        kern = np.outer(g1, g1)
    else:
        KX, KY = np.meshgrid(kx, kx)
        kern = psf.evaluate(KX, KY)
    kern = kern / kern.sum()
    conv = fftconvolve(fine, kern, mode="same")
    return conv[pad * s::s, pad * s::s][:ny, :nx]
