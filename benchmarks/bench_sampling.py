"""Time per posterior (issue 20): emcee around the fit, until ESS >= 1000 for every parameter.

Simulated galaxies with the 3-component PSF of tests/recovery.py at S/N ~ 100: exponential
(7 free parameters) and Sersic (8) on 64x64, and the exponential on 256x256. For each, the
fit, then chains of 32 walkers lengthened by 500 steps until the effective sample size of every
parameter is >= 1000; prints the steps, the autocorrelation times, the ESS, the acceptance
and the seconds (one process, one core's worth of work: numba renders single-threaded).

    python benchmarks/bench_sampling.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import recovery  # noqa: E402

from mogviewer.fitting import FitProblem, fit  # noqa: E402
from mogviewer.render import render_model  # noqa: E402
from mogviewer.sampling import sample  # noqa: E402


def problem(profile, size):
    truth = dict(flux=3000.0 * (size / 64) ** 2, x=size / 2 - 0.4, y=size / 2 + 0.3,
                 re=size / 12, q=0.6, angle=70.0, sky=1.0)
    img = render_model(truth, "exp", 6, recovery.PSF, (size, size))
    sigma = float(np.sqrt((img ** 2).sum()) / 100.0)
    img = img + np.random.default_rng(1).normal(0, sigma, img.shape)
    return FitProblem.from_arrays(img, sigma=np.full(img.shape, sigma), psf=recovery.PSF,
                                  profile=profile, M=6 if profile == "exp" else None,
                                  n=1.5 if profile == "ser" else None)


def main():
    print(f"{'case':>12} {'steps':>6} {'tau (min-max)':>14} {'ESS min':>8} {'accept':>7} "
          f"{'seconds':>8}")
    for profile, size in (("exp", 64), ("ser", 64), ("exp", 256)):
        prob = problem(profile, size)
        res = fit(prob)
        sample(prob, res, n_steps=20, burn=5)          # warm up outside the timing
        steps = 800
        t = time.perf_counter()
        while True:
            post = sample(prob, res, n_steps=steps, burn=steps // 4)
            if min(post.ess.values()) >= 1000 or steps >= 8000:
                break
            steps += 500
        dt = time.perf_counter() - t
        taus = list(post.tau.values())
        print(f"{profile + ' ' + str(size):>12} {steps:>6} {min(taus):>6.1f}-{max(taus):<7.1f} "
              f"{min(post.ess.values()):>8.0f} {post.acceptance:>7.2f} {dt:>8.1f}")
        print(f"{'':>12} (the last run alone: {post.elapsed:.1f} s)")


if __name__ == "__main__":
    main()
