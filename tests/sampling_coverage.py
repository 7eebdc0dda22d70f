"""Coverage of the 68 % intervals (issue 20), shared by tests/test_sampling_coverage.py and
benchmarks/coverage_sampling.py.

Exponential galaxies come from tests/recovery.py's simulation (the *independent* brute-force
renderer of tests/brute.py: r_e 1.5-15 px, q 0.2-1, S/N 20-500, the 3-component PSF, fixed
seed 777). Sérsic galaxies are rendered with mogviewer's own renderer (the smooth Sérsic family
at the true n, so the model is exactly right and only the statistics are tested, as issue 20
asks), with the same distributions of r_e, q, angle, centre and S/N and n uniform in 0.6-5. Each
galaxy is fitted from its image moments, then sampled (adaptive run to ESS >= 1000 and 50
tau, at most 3000 steps: the few galaxies whose posterior is far from Gaussian stop there). For flux
(the target profile's total), r_e, q and n the fraction of galaxies whose 16-84 % posterior
interval, and whose best fit +- formal error, contain the truth is counted.
"""

import math

import numpy as np
import recovery

from mogviewer.fitting import FitProblem, fit, initial_guess
from mogviewer.profiles import sersic
from mogviewer.render import render_model
from mogviewer.sampling import LN_PRIOR, sample

SEED = 777


def simulate_sersic(rng, shape=(64, 64)):
    """One Sérsic galaxy rendered by mogviewer: (data, sigma, truth, S/N); ``truth['flux']``
    is the target profile's total."""
    re = float(np.exp(rng.uniform(math.log(1.5), math.log(15.0))))
    q = float(rng.uniform(0.2, 1.0))
    angle = float(rng.uniform(0.0, 180.0))
    x0 = (shape[1] - 1) / 2 + float(rng.uniform(-2, 2))
    y0 = (shape[0] - 1) / 2 + float(rng.uniform(-2, 2))
    snr = float(np.exp(rng.uniform(math.log(20.0), math.log(500.0))))
    n = float(rng.uniform(0.6, 5.0))
    flux_mog = 2000.0
    img = render_model(dict(flux=flux_mog, x=x0, y=y0, re=re, q=q, angle=angle), "ser", None,
                       recovery.PSF, shape, n=n)
    sigma = float(np.sqrt((img ** 2).sum()) / snr)
    data = img + rng.normal(0.0, sigma, shape)
    ff = sersic.sersic_profile_mixture(n).flux_fraction
    truth = dict(flux=flux_mog / ff, x=x0, y=y0, re=re, q=q, angle=angle, n=n)
    return data, sigma, truth, snr


def _dlnf_dn(n, h=1e-4):
    lo, hi = max(n - h, sersic.N_MIN), min(n + h, sersic.N_MAX)
    f = [math.log(sersic.sersic_profile_mixture(v).flux_fraction) for v in (lo, hi)]
    return (f[1] - f[0]) / (hi - lo)


def formal(res, name):
    """Best value and formal 1-sigma error of ``name`` (``flux``: the target's total, with
    the flux fraction's dependence on a free n propagated through the covariance)."""
    err = res.errors()
    if name != "flux":
        return getattr(res.params, name), err[name]
    f = res.flux_fraction
    grad = np.zeros(len(res.free))
    grad[res.free.index("flux")] = 1.0 / f
    if "n" in res.free:
        grad[res.free.index("n")] = -res.params.flux * _dlnf_dn(res.params.n) / f
    return res.flux_target, float(np.sqrt(grad @ res.covariance @ grad))


def run(profile, n_gal=200, *, min_ess=1000, max_steps=3000, ln_prior=LN_PRIOR, start=0,
        report=None):
    """``(hits, used, n_converged, seconds)``: ``hits[kind][param]`` counts the galaxies whose
    interval (``kind`` 'posterior' or 'formal') contains the truth. ``ln_prior`` is
    :func:`mogviewer.sampling.sample`'s; ``start`` skips the first galaxies of the sequence
    (the same galaxies whatever ``start``: a run can be split in parts)."""
    import time

    t0 = time.perf_counter()
    if profile == "exp":
        sims = recovery.simulations("exp", n_gal, seed=SEED)
        params = ["flux", "re", "q"]
    else:
        rng = np.random.default_rng(SEED)
        sims = [simulate_sersic(rng) for _ in range(n_gal)]
        params = ["flux", "re", "q", "n"]
    hits = {k: dict.fromkeys(params, 0) for k in ("posterior", "formal")}
    used = n_conv = 0
    for data, sigma, truth, _snr in sims[start:]:
        prob = FitProblem.from_arrays(data, sigma=np.full(data.shape, sigma), psf=recovery.PSF,
                                      profile=profile, M=6 if profile == "exp" else None,
                                      sky="none")
        res = fit(prob, initial_guess(prob))
        if res.status != "converged":
            continue
        post = sample(prob, res, min_ess=min_ess, max_steps=max_steps, ln_prior=ln_prior)
        used += 1
        n_conv += post.converged
        for p in params:
            t = truth[p]
            lo, _, hi = post.interval("flux_target" if p == "flux" else p)
            hits["posterior"][p] += lo <= t <= hi
            f, e = formal(res, p)
            hits["formal"][p] += abs(f - t) <= e
        if report is not None:
            report(used, hits, post, truth=truth, snr=_snr, res=res)
    return hits, used, n_conv, time.perf_counter() - t0
