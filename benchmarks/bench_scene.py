"""Joint scene fit time against the number of sources (issue 17), 128x128, one run.

Sources on a grid (half galaxies exp M=6, half point sources), PSF a 3-Gaussian mixture, noise
at S/N ~ 100 per source; the fit starts 5 % off in flux and 0.5 px off in position. Prints the
time per fit and per source, and its ratio to the one-source fit, measured in this run.
"""

import time

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


def main():
    rng = np.random.default_rng(1)
    base = None
    print(f"{'sources':>8} {'fit (s)':>9} {'per source (ms)':>16} {'vs 1 source':>12} "
          f"{'chi2/nu':>8} {'nfev':>5}")
    for n in (1, 2, 5, 10, 20):
        truth = scene_of(n, np.random.default_rng(n))
        obs0 = Observation.from_arrays(np.zeros((128, 128)), psf=PSF)
        img = truth.render(obs0) + rng.normal(0, 1.0, (128, 128))
        obs = Observation.from_arrays(img, sigma=np.ones((128, 128)), psf=PSF)
        start = scene_of(n, np.random.default_rng(n), shift=1.0)
        fit_scene(obs, start, max_nfev=2)        # compile and warm up outside the timing
        t = time.perf_counter()
        res = fit_scene(obs, start)
        dt = time.perf_counter() - t
        base = base or dt
        print(f"{n:>8} {dt:>9.3f} {1000 * dt / n:>16.1f} {dt / base:>12.1f} "
              f"{res.chi2_nu:>8.3f} {res.nfev:>5}")


if __name__ == "__main__":
    main()
