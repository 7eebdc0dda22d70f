#!/usr/bin/env python
"""Fit speed (issues 4, 16): a full fit of a 64x64 luv M=8 galaxy with a K=3 PSF: the default
driver (LM on the accumulated normal equations), scipy's least_squares with the analytic
Jacobian, and with finite differences, measured side by side in one run.

    python benchmarks/bench_fit.py [-n 20]

Prints the median wall time, evaluations and iterations over ``n`` noise realisations (fixed
seed), each fitted from the moments-based initial guess.
"""

import argparse
import statistics
import sys
import time

import numpy as np

from mogviewer import render
from mogviewer.ellipse import shape_matrix
from mogviewer.fitting import FitProblem, fit, initial_guess
from mogviewer.mixture import Mixture
from mogviewer.render import render_model

PSF = Mixture([0.65, 0.27, 0.08], [[0.0, 0.0], [0.12, -0.08], [-0.3, 0.2]],
              [shape_matrix(1.3, 0.85, 20.0), shape_matrix(2.2, 0.7, 75.0), 16.0 * np.eye(2)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args(argv)
    render.warmup()
    truth = dict(flux=5000.0, x=31.7, y=32.2, re=6.0, q=0.55, angle=35.0, sky=1.0)
    clean = render_model(truth, "luv", 8, PSF, (64, 64))
    rng = np.random.default_rng(7)
    modes = {"lm": {}, "scipy": dict(solver="scipy"), "2-point": dict(jacobian="2-point")}
    stats = {m: [] for m in modes}
    for _ in range(args.n):
        data = clean + rng.normal(0, 1.0, clean.shape)
        prob = FitProblem.from_arrays(data, sigma=np.ones(clean.shape), psf=PSF, profile="luv",
                                      M=8)
        start = initial_guess(prob)
        for mode in stats:
            t0 = time.perf_counter()
            res = fit(prob, start, **modes[mode])
            dt = time.perf_counter() - t0
            stats[mode].append((dt, res.nfev, res.nit, res.status, res.params.re))
    print("64x64 luv M=8, K=3 PSF, 7 free parameters (flux, x, y, re, q, angle, sky); "
          f"{args.n} noise realisations")
    print("| driver | median time (ms) | median evaluations | median iterations | converged |")
    print("|---|---|---|---|---|")
    med = {}
    for mode, rows in stats.items():
        med[mode] = statistics.median(r[0] for r in rows)
        print(f"| {mode} | {med[mode] * 1e3:.1f} | {statistics.median(r[1] for r in rows):.0f} | "
              f"{statistics.median(r[2] for r in rows):.0f} | "
              f"{sum(r[3] == 'converged' for r in rows)}/{len(rows)} |")
    print(f"scipy / LM: {med['scipy'] / med['lm']:.1f}x; finite differences (scipy) / LM: "
          f"{med['2-point'] / med['lm']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
