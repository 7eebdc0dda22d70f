"""Coverage of the 68 % intervals: posterior (emcee) and formal errors, on simulated galaxies.

Galaxies from tests/recovery.py's simulation (the independent brute-force renderer, r_e 1.5-15
px, q 0.2-1, S/N 20-500, 3-component PSF, fixed seed); each is fitted, then sampled. For flux,
r_e, q and n (Sersic fits) the script prints the fraction of galaxies whose 16-84 % posterior
interval, and whose best fit +- formal error, contain the truth (issue 20: 68 +- 5 %).

    python benchmarks/coverage_sampling.py --n 200 --profile exp
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import recovery  # noqa: E402

from mogviewer.fitting import FitProblem, fit, initial_guess  # noqa: E402
from mogviewer.sampling import sample  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--profile", default="exp")
    ap.add_argument("--steps", type=int, default=1200)
    args = ap.parse_args(argv)
    M = 6 if args.profile != "ser" else None
    n_index = 1.0 if args.profile == "ser" else None
    sims = recovery.simulations("exp", args.n, seed=777, n=None)
    params = ["flux", "re", "q"] + (["n"] if args.profile == "ser" else [])
    hit_post = {p: 0 for p in params}
    hit_formal = {p: 0 for p in params}
    used, t0, n_conv = 0, time.perf_counter(), 0
    for data, sigma, truth, _snr in sims:
        truth = dict(truth, n=1.0)
        prob = FitProblem.from_arrays(data, sigma=np.full(data.shape, sigma), psf=recovery.PSF,
                                      profile=args.profile, M=M, n=n_index, sky="none")
        res = fit(prob, initial_guess(prob))
        if res.status != "converged":
            continue
        post = sample(prob, res, n_steps=args.steps)
        used += 1
        n_conv += post.converged
        err = res.errors()
        for p in params:
            # the truth of flux is the exact profile's total: compare the target flux
            t = truth[p]
            if p == "flux":
                lo, mid, hi = post.interval("flux_target")
                f, e = res.flux_target, err["flux"] / res.flux_fraction
            else:
                lo, mid, hi = post.interval(p)
                f, e = getattr(res.params, p), err[p]
            hit_post[p] += lo <= t <= hi
            hit_formal[p] += abs(f - t) <= e
    dt = time.perf_counter() - t0
    print(f"{used} galaxies fitted and sampled ({args.profile}), {n_conv} chains converged, "
          f"{dt:.0f} s")
    print(f"{'param':>6} {'posterior 16-84 %':>18} {'formal +-1 sigma':>17}")
    for p in params:
        print(f"{p:>6} {100 * hit_post[p] / used:>17.1f}% {100 * hit_formal[p] / used:>16.1f}%")
    se = 100 * math.sqrt(0.68 * 0.32 / max(used, 1))
    print(f"(binomial standard error at 68 %: {se:.1f} points)")


if __name__ == "__main__":
    main()
