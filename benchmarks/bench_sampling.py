"""Time per posterior (issue 20): emcee around the fit, until ESS >= 1000 for every parameter.

Simulated galaxies at S/N ~ 100 (rendered with mogviewer's own renderer, so the model is exact)
with the 3-component PSF mixture of tests/recovery.py: exponential (7 free parameters) and
Sersic (8) on 64x64 and 256x256; and the 64x64 exponential with the HSC gal2 PSF stamp used
exactly (mixture + FFT residual, the default for an image PSF). For each: the fit, then
:func:`mogviewer.sampling.sample` in its adaptive mode (``min_ess=1000``: the run grows until
every parameter's effective sample size is >= 1000 and the kept chain is longer than 50
autocorrelation times). Printed: the steps of 32 walkers, the autocorrelation times, the
smallest ESS, the acceptance, the seconds per posterior and their ratio to the 5 s goal; beside
it, for the 64 px cases, the same run with differential-evolution moves only (the sampler before
the Laplace independence proposals) and the ratio of the two.

Also printed per case: the cost of one likelihood evaluation (median of 200 calls near the best
fit, alone) and the share of the sampling run's time spent inside the likelihood (timed in the
run): the rest is emcee's and the moves' own work. ``--profile`` adds, per case, the
functions that dominate the likelihood (cProfile over 200 calls, top 6 by own time). The load
average is printed before and after (the machine may be shared: compare ratios, not seconds).

One process, one core: numba's kernels are single-threaded, BLAS is held to one thread here.

    python benchmarks/bench_sampling.py [--profile] [--no-compare] [--cases exp64,ser256,...]
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import recovery  # noqa: E402

from mogviewer import sampling  # noqa: E402
from mogviewer.fitting import FitProblem, fit  # noqa: E402
from mogviewer.psf import read_psf  # noqa: E402
from mogviewer.render import render_model  # noqa: E402

GOAL_S = 5.0


def problem(profile, size, psf=None):
    """A simulated galaxy (S/N 100, r_e = size/12, q 0.6) and its FitProblem."""
    psf = recovery.PSF if psf is None else psf
    truth = dict(flux=3000.0 * (size / 64) ** 2, x=size / 2 - 0.4, y=size / 2 + 0.3,
                 re=size / 12, q=0.6, angle=70.0, sky=1.0)
    mix = psf if not hasattr(psf, "mixture") else psf.mixture
    img = render_model(truth, profile, 6 if profile == "exp" else None, mix, (size, size),
                       n=1.5 if profile == "ser" else None)
    sigma = float(np.sqrt((img ** 2).sum()) / 100.0)
    img = img + np.random.default_rng(1).normal(0, sigma, img.shape)
    return FitProblem.from_arrays(img, sigma=np.full(img.shape, sigma), psf=psf,
                                  profile=profile, M=6 if profile == "exp" else None,
                                  n=2.0 if profile == "ser" else None)


def run(prob, res, laplace=True):
    """The adaptive run, and the seconds spent inside the likelihood during it."""
    import time

    saved, call = sampling.LAPLACE_WEIGHT, sampling._LogProb.__call__
    spent = [0.0]

    def timed(self, theta):
        t = time.perf_counter()
        try:
            return call(self, theta)
        finally:
            spent[0] += time.perf_counter() - t

    sampling.LAPLACE_WEIGHT = saved if laplace else 0.0
    sampling._LogProb.__call__ = timed
    try:
        return sampling.sample(prob, res, min_ess=1000), spent[0]
    finally:
        sampling.LAPLACE_WEIGHT, sampling._LogProb.__call__ = saved, call


def likelihood_cost(prob, res, n=200, profile=False):
    """Median seconds of one ``ln p`` call near the fit, and (``profile``) cProfile's top lines."""
    import cProfile
    import io
    import pstats
    import time

    lp = sampling._LogProb(prob, res.params, None, ("flux", "re"))
    x0 = np.array([getattr(res.params, k) for k in prob.free])
    err = np.array([res.errors()[k] for k in prob.free])
    rng = np.random.default_rng(0)
    pts = x0 + 0.5 * err * rng.standard_normal((n, len(x0)))
    times = []
    for p in pts:
        t = time.perf_counter()
        lp(p)
        times.append(time.perf_counter() - t)
    text = ""
    if profile:
        pr = cProfile.Profile()
        pr.enable()
        for p in pts:
            lp(p)
        pr.disable()
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(6)
        text = "\n".join(ln for ln in buf.getvalue().splitlines()
                         if ln.strip() and not ln.startswith(("   Ordered", "         ")))
    return float(np.median(times)), text


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", action="store_true", help="cProfile the likelihood per case")
    ap.add_argument("--no-compare", action="store_true", help="skip the DE-only runs")
    ap.add_argument("--cases", default="exp64,ser64,exp64exact,exp256,ser256,exp256exact")
    args = ap.parse_args(argv)
    stamp = read_psf(ROOT / "sample_data/hsc_gal2/gal2_psf.npy")
    cases = [("exp64", "exp", 64, None, True), ("ser64", "ser", 64, None, True),
             ("exp64exact", "exp", 64, stamp, True), ("exp256", "exp", 256, None, False),
             ("ser256", "ser", 256, None, False), ("exp256exact", "exp", 256, stamp, False)]
    want = args.cases.split(",")
    cases = [c for c in cases if c[0] in want]
    print("load average before:", open("/proc/loadavg").read().split()[:3])
    print(f"{'case':>13} {'steps':>6} {'tau min-max':>12} {'ESS min':>8} {'accept':>7} "
          f"{'s/posterior':>11} {'/ 5 s':>6} {'ms/lnL':>7} {'lnL share':>9} | "
          f"{'DE only: steps':>14} {'s':>6} {'ratio':>6}")
    profiles = []
    for name, profile, size, psf, compare in cases:
        prob = problem(profile, size, psf)
        res = fit(prob)
        sampling.sample(prob, res, n_steps=20, burn=5)          # compile outside the timing
        post, spent = run(prob, res)
        cost, prof = likelihood_cost(prob, res, profile=args.profile)
        share = spent / post.elapsed
        taus = list(post.tau.values())
        line = (f"{name:>13} {post.n_steps:>6} {min(taus):>5.1f}-{max(taus):<6.1f} "
                f"{min(post.ess.values()):>8.0f} {post.acceptance:>7.2f} {post.elapsed:>11.2f} "
                f"{post.elapsed / GOAL_S:>6.2f} {1e3 * cost:>7.3f} {share:>9.2f}")
        if prof:
            profiles.append((name, prof))
        if compare and not args.no_compare:
            old, _ = run(prob, res, laplace=False)
            line += (f" | {old.n_steps:>14} {old.elapsed:>6.2f} "
                     f"{old.elapsed / post.elapsed:>5.1f}x")
        print(line, flush=True)
    print("ratio = DE-only seconds / these seconds; both until ESS >= 1000 and 50 tau")
    print("load average after:", open("/proc/loadavg").read().split()[:3])
    for name, prof in profiles:
        print(f"\n--- {name}: likelihood profile (200 calls, by own time)\n{prof}")


if __name__ == "__main__":
    main()
