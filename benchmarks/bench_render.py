#!/usr/bin/env python
"""Render speed, measured side by side in one run (issue 2).

For a luv M=8 galaxy (r_e = N/8, q = 0.6, angle 30 deg) convolved with a 3-component PSF mixture
at N = 32, 64, 128, 256 pixels square, prints: our numba render, render + all derivatives,
ns per evaluated Gaussian-pixel (pixels inside each component's exp(-36) cut, summed over the
M x K = 24 components), and ratios against (i) the plain numpy renderer and (ii) an astropy-style
brute force (Sersic2D n=4 on a 5x oversampled grid + scipy fftconvolve with the PSF sampled on the
same grid, then 5x5 binning), plus GalSim when it is installed.

    python benchmarks/bench_render.py [--quick]

Timings are the median of repeated calls after a warm-up; ratios are between timings taken in
this same run, so they are comparable even on a busy machine. Output buffers are reused, as the
fitter does.
"""

import argparse
import math
import statistics
import sys
import time

import numpy as np
from scipy.signal import fftconvolve

from mogviewer import render as R
from mogviewer.ellipse import shape_matrix
from mogviewer.mixture import Mixture
from mogviewer.profiles import get_mixture

PSF = Mixture([0.6, 0.3, 0.1], [[0.0, 0.0], [0.15, -0.1], [-0.2, 0.1]],
              [1.2 * np.eye(2), shape_matrix(2.0, 0.8, 30.0), 9.0 * np.eye(2)])


def timeit(fn, *, min_time=0.3, max_reps=2000):
    fn()
    times = []
    t_end = time.perf_counter() + min_time
    while (time.perf_counter() < t_end or len(times) < 5) and len(times) < max_reps:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gaussian_pixels(params, N):
    prof = get_mixture("luv", 8)
    S = shape_matrix(params["re"], params["q"], params["angle"])
    yy, xx = np.mgrid[:N, :N]
    count = 0
    for v in prof.variances:
        for k in range(len(PSF)):
            C = v * S + PSF.covs[k]
            P = np.linalg.inv(C)
            dx = xx - params["x"] - PSF.means[k, 0]
            dy = yy - params["y"] - PSF.means[k, 1]
            e = -0.5 * (P[0, 0] * dx * dx + 2 * P[0, 1] * dx * dy + P[1, 1] * dy * dy)
            count += int((e >= -R.CUT_EXPONENT).sum())
    return count


def brute_force_astropy(params, N, over=5):
    from astropy.modeling.models import Sersic2D
    n_over = N * over
    sub = (np.arange(n_over) + 0.5) / over - 0.5  # sub-pixel centres in pixel coordinates
    X, Y = np.meshgrid(sub, sub)
    model = Sersic2D(amplitude=1.0, r_eff=params["re"], n=4, x_0=params["x"], y_0=params["y"],
                     ellip=1 - params["q"], theta=math.radians(params["angle"]))
    fine = model(X, Y)
    half = 6 * over * 3  # PSF stamp +-18 px at the oversampled scale
    k = (np.arange(-half, half + 1)) / over
    KX, KY = np.meshgrid(k, k)
    kern = PSF.evaluate(KX, KY)
    kern /= kern.sum()
    conv = fftconvolve(fine, kern, mode="same")
    return conv.reshape(N, over, N, over).mean(axis=(1, 3))


def galsim_render(params, N):
    import galsim
    gal = galsim.DeVaucouleurs(half_light_radius=params["re"] * math.sqrt(params["q"]))
    gal = gal.shear(q=params["q"], beta=params["angle"] * galsim.degrees).withFlux(1000.0)
    psf = galsim.Sum([galsim.Gaussian(sigma=math.sqrt(PSF.covs[k, 0, 0])).withFlux(a)
                      for k, a in enumerate(PSF.amps)])
    img = galsim.ImageD(N, N, scale=1.0)
    return galsim.Convolve(gal, psf).drawImage(image=img, method="auto").array


def main(argv=None):
    ap = argparse.ArgumentParser(description="mogviewer render benchmark")
    ap.add_argument("--quick", action="store_true", help="shorter timing loops (smoke test)")
    args = ap.parse_args(argv)
    min_time = 0.05 if args.quick else 0.5
    R.warmup()
    try:
        import galsim  # noqa: F401
        have_galsim = True
    except ImportError:
        have_galsim = False
    print("luv M=8 x 3-component PSF (24 Gaussians), r_e = N/8, q = 0.6, angle 30 deg")
    hdr = ("| N | render (us) | render+derivs (us) | derivs/render | ns per G-pixel | "
           "numpy (us) | numpy/ours | brute 5x (ms) | brute/ours |")
    if have_galsim:
        hdr += " GalSim (ms) | GalSim/ours |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for N in (32, 64, 128, 256):
        p = dict(flux=1000.0, x=N / 2 - 0.3, y=N / 2 + 0.2, re=N / 8, q=0.6, angle=30.0)
        S = shape_matrix(p["re"], p["q"], p["angle"])
        buf = np.zeros((6, N, N))
        t_r = timeit(lambda: R.render_galaxy(1000.0, p["x"], p["y"], S, "luv", 8, PSF, (N, N),
                                             out=buf), min_time=min_time)
        t_d = timeit(lambda: R.render_galaxy(1000.0, p["x"], p["y"], S, "luv", 8, PSF, (N, N),
                                             out=buf, derivs=True), min_time=min_time)
        t_np = timeit(lambda: R.render_galaxy(1000.0, p["x"], p["y"], S, "luv", 8, PSF, (N, N),
                                              out=buf, backend="numpy"), min_time=min_time,
                      max_reps=50)
        t_bf = timeit(lambda: brute_force_astropy(p, N), min_time=min_time, max_reps=20)
        gp = gaussian_pixels(p, N)
        row = (f"| {N} | {t_r * 1e6:.1f} | {t_d * 1e6:.1f} | {t_d / t_r:.2f} | "
               f"{t_r * 1e9 / gp:.2f} | {t_np * 1e6:.0f} | {t_np / t_r:.1f} | "
               f"{t_bf * 1e3:.1f} | {t_bf / t_r:.0f} |")
        if have_galsim:
            t_gs = timeit(lambda: galsim_render(p, N), min_time=min_time, max_reps=50)
            row += f" {t_gs * 1e3:.2f} | {t_gs / t_r:.0f} |"
        print(row, flush=True)
    if not have_galsim:
        print("(GalSim is not installed: `pip install galsim` adds its column.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
