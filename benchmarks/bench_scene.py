"""Joint scene fit time against the number of sources (issue 17), before and after.

"Before" is scipy's ``trf`` on the dense Jacobian (an SVD of pixels x parameters every step),
the scene solver up to issue 17, kept as ``fit_scene(..., solver='scipy')``; "after" is the
default Levenberg-Marquardt on normal equations assembled from each source's own box.

1. 128x128, 1, 2, 5, 10, 20 sources on a grid (half galaxies exp M=6, half point sources), PSF a
   3-Gaussian mixture, noise sigma 1 (S/N ~ 100-300 per source); the fit starts 5 % off in
   flux and 0.5 px off in x. One warm-up fit (numba compiled) outside the timing, then one
   timed fit per solver; the table prints both times, their ratio, and the largest relative
   parameter difference between the two optima.
2. The DECaLS DR9 r cutout (256 px, tests/data/real, PROVENANCE.md s6): detection, the target
   (Sérsic) with its 20 brightest neighbours, sequential then joint fit, both solvers.

``--no-reference`` skips the scipy column (it takes minutes at 20 sources and on DR9).
Run with ``.venv/bin/python benchmarks/bench_scene.py``; note the machine's load (``uptime``).
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

from mogviewer.ellipse import shape_matrix
from mogviewer.fitting.scene_fit import fit_scene
from mogviewer.mixture import Mixture
from mogviewer.observation import Observation
from mogviewer.scene import Galaxy, PointSource, Scene

PSF = Mixture([0.65, 0.27, 0.08], [[0.0, 0.0], [0.12, -0.08], [-0.3, 0.2]],
              [shape_matrix(1.3, 0.85, 20.0), shape_matrix(2.2, 0.7, 75.0), 16.0 * np.eye(2)])


def scene_of(n, rng, shift=0.0):
    pos = [(16 + 24 * (i % 5) + rng.uniform(-2, 2), 16 + 24 * (i // 5) + rng.uniform(-2, 2))
           for i in range(n)]
    out = []
    for i, (x, y) in enumerate(pos):
        f = 1000.0 * (1 + i % 3)
        if i % 2 == 0:
            out.append(Galaxy(profile="exp", M=6, flux=f * (1 + 0.05 * shift), x=x + shift * 0.5,
                              y=y, re=3.0, q=0.7, angle=30.0 * i % 180))
        else:
            out.append(PointSource(f * (1 + 0.05 * shift), x + shift * 0.5, y))
    return Scene(tuple(out), sky=1.0)


def _maxrel(a, b):
    """Largest relative difference of the sources' parameters (positions: absolute, px)."""
    worst = 0.0
    for sa, sb in zip(a.scene.sources, b.scene.sources):
        for p in ("flux", "re", "q", "n"):
            va, vb = getattr(sa, p, None), getattr(sb, p, None)
            if va is not None:
                worst = max(worst, abs(va - vb) / max(abs(vb), 1e-300))
        for p in ("x", "y"):
            worst = max(worst, abs(getattr(sa, p) - getattr(sb, p)))
    return worst


def _timed(obs, start, solver):
    t = time.perf_counter()
    res = fit_scene(obs, start, solver=solver)
    return time.perf_counter() - t, res


def grid_table(reference):
    rng = np.random.default_rng(1)
    print("128x128, sources on a grid (exp galaxies and point sources), sequential + joint fit")
    print(f"{'sources':>8} {'LM (s)':>8} {'scipy trf (s)':>14} {'trf / LM':>9} "
          f"{'LM per source (ms)':>19} {'chi2/nu':>8} {'nfev':>5} {'max diff':>9}")
    for n in (1, 2, 5, 10, 20):
        truth = scene_of(n, np.random.default_rng(n))
        obs0 = Observation.from_arrays(np.zeros((128, 128)), psf=PSF)
        img = truth.render(obs0) + rng.normal(0, 1.0, (128, 128))
        obs = Observation.from_arrays(img, sigma=np.ones((128, 128)), psf=PSF)
        start = scene_of(n, np.random.default_rng(n), shift=1.0)
        fit_scene(obs, start, max_nfev=2)        # compile and warm up outside the timing
        t_lm, lm = _timed(obs, start, "lm")
        if reference:
            t_sp, sp = _timed(obs, start, "scipy")
            ref = f"{t_sp:>14.3f} {t_sp / t_lm:>9.1f}"
            diff = f"{_maxrel(lm, sp):>9.1e}"
        else:
            ref, diff = f"{'-':>14} {'-':>9}", f"{'-':>9}"
        print(f"{n:>8} {t_lm:>8.3f} {ref} {1000 * t_lm / n:>19.1f} {lm.chi2_nu:>8.3f} "
              f"{lm.nfev:>5} {diff}", flush=True)


def dr9(reference):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from realdata import DATA, quiet_psf

    from mogviewer import io
    from mogviewer.detect import detect_sources, scene_from_detections
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = io.read_image(f"{DATA}/pysersic-decals-dr9/cutout_59.1067_-30.4848.fits", band="r")
        psf = quiet_psf(f"{DATA}/pysersic-decals-dr9/copsf_59.1067_-30.4848.fits", hdu=1,
                        n_components=4)
    det = detect_sources(d.image, ivar=d.ivar, mask=d.mask, psf=psf)
    scene, mask, _ = scene_from_detections(det, target=(126.4, 130.3), profile="ser", psf=psf,
                                           neighbours="fit", max_fitted=20)
    obs = Observation.from_arrays(d.image, ivar=d.ivar, mask=d.mask | mask, psf=psf)
    print(f"\nDECaLS DR9 r, 256 px, {len(scene)} sources ({len(det)} detections)")
    print(f"{'solver':>10} {'time (s)':>9} {'chi2/nu':>8} {'nfev':>5} {'target r_e':>11} "
          f"{'q':>7} {'angle':>8} {'n':>6}")
    out = {}
    for solver in ("lm", "scipy") if reference else ("lm",):
        t, res = _timed(obs, scene, solver)
        g = res.scene.sources[0]
        out[solver] = res
        print(f"{solver:>10} {t:>9.2f} {res.chi2_nu:>8.4f} {res.nfev:>5} {g.re:>11.5f} "
              f"{g.q:>7.4f} {g.angle:>8.3f} {g.n:>6.3f}", flush=True)
    if reference:
        print(f"largest parameter difference between the optima: "
              f"{_maxrel(out['lm'], out['scipy']):.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the scipy trf column (minutes at 20 sources and on DR9)")
    ap.add_argument("--no-dr9", action="store_true", help="skip the DECaLS DR9 r fit")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    grid_table(not args.no_reference)
    if not args.no_dr9:
        dr9(not args.no_reference)


if __name__ == "__main__":
    main()
