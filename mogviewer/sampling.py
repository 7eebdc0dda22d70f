"""Posteriors around a fit: emcee's affine-invariant ensemble sampler, started at the best fit.

The likelihood is the fit's own: ``ln L = -chi^2 / 2`` with ``chi^2 = sum w (data - model)^2``
over the used pixels, the model rendered exactly as :func:`mogviewer.fitting.model_image` does.
The prior is flat in the *physical* free parameters (flux, x, y, re, q, angle in degrees, sky,
n, ...) within the problem's bounds, ``re > 0`` and ``0 < q <= 1``; ``priors=`` adds Gaussian
priors ``{name: (mean, sigma)}`` (e.g. from a model JSON file). The angle is sampled unwrapped
and reported modulo 180 about the best fit, so a chain does not jump at 0/180 degrees.

Walkers start in a small Gaussian ball (0.1 of the formal errors) about the best fit; the first
``burn`` steps of each walker are dropped. Convergence is judged by emcee's integrated
autocorrelation time tau (Goodman & Weare 2010; emcee's ``get_autocorr_time``): the run counts
as converged when it is longer than ``50 tau`` for every parameter (emcee's own rule of thumb),
and the effective sample size is ``walkers x kept steps / tau``.

Derived quantities get their percentiles from the samples, not by error propagation:
``flux_target`` (the target profile's total), ``mag`` (with a zeropoint), ``re_circ = re
sqrt(q)``, ``e1``, ``e2``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np

from .errors import FitError
from .fitting import model_image

__all__ = ["Posterior", "sample", "CONVERGENCE_TAUS"]

#: A chain is converged when it is longer than this many autocorrelation times (emcee docs).
CONVERGENCE_TAUS = 50


@dataclasses.dataclass(frozen=True, eq=False)
class Posterior:
    """Samples of the posterior and their summary.

    Attributes
    ----------
    names : tuple of str
        The sampled (free) parameters, in column order.
    samples : ndarray (n_samples, n_params)
        Flattened chains after burn-in (angles unwrapped about the best fit).
    derived : dict of ndarray
        ``flux_target``, ``re_circ``, ``e1``, ``e2`` and (with a zeropoint) ``mag`` per sample.
    percentiles : dict
        ``name -> (p16, p50, p84)`` for every sampled and derived quantity.
    tau : dict
        Integrated autocorrelation time of each parameter, in steps.
    ess : dict
        Effective sample size of each parameter: walkers x kept steps / tau.
    acceptance : float
        Mean acceptance fraction of the walkers.
    converged : bool
        Kept steps > ``CONVERGENCE_TAUS`` x tau for every parameter.
    n_walkers, n_steps, burn : int
    elapsed : float
        Seconds.
    log_prob : ndarray (n_samples,)
    """

    names: tuple
    samples: np.ndarray
    derived: dict
    percentiles: dict
    tau: dict
    ess: dict
    acceptance: float
    converged: bool
    n_walkers: int
    n_steps: int
    burn: int
    elapsed: float
    log_prob: np.ndarray

    def interval(self, name):
        """``(p16, p50, p84)`` of a sampled or derived quantity."""
        return self.percentiles[name]

    def write_chains(self, path):
        """Write the samples (and derived columns, ``log_prob``) as a FITS binary table."""
        from astropy.table import Table

        cols = {n: self.samples[:, i] for i, n in enumerate(self.names)}
        cols.update(self.derived)
        cols["log_prob"] = self.log_prob
        t = Table(cols)
        t.meta.update(WALKERS=self.n_walkers, STEPS=self.n_steps, BURN=self.burn,
                      ACCEPT=self.acceptance, CONVERGD=self.converged)
        t.write(path, format="fits", overwrite=True)
        return path


class _LogProb:
    """``ln p(theta | data)`` for the problem's free parameters (picklable)."""

    def __init__(self, problem, best, priors):
        self.problem = problem
        self.best = best
        self.names = tuple(problem.free)
        self.w = problem.weights
        self.good = self.w > 0
        self.data = problem.image
        lo, hi = [], []
        for n in self.names:
            b = problem.bounds.get(n) or (None, None)
            lo.append(-np.inf if b[0] is None else b[0])
            hi.append(np.inf if b[1] is None else b[1])
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.priors = [(self.names.index(k), float(m), float(s))
                       for k, (m, s) in (priors or {}).items() if k in self.names]

    def params(self, theta):
        return self.best.replace(**dict(zip(self.names, (float(v) for v in theta))))

    def __call__(self, theta):
        if np.any(theta < self.lo) or np.any(theta > self.hi) or not np.all(np.isfinite(theta)):
            return -np.inf
        v = dict(zip(self.names, theta))
        for sfx in ("", "2"):
            if ("q" + sfx) in v and not 0.0 < v["q" + sfx] <= 1.0:
                return -np.inf
            if ("re" + sfx) in v and not v["re" + sfx] > 0.0:
                return -np.inf
        try:
            model = model_image(self.problem, self.params(theta))
        except (ValueError, ArithmeticError):
            return -np.inf
        r = self.data - model
        lp = -0.5 * float(np.sum(self.w * r * r))
        for i, m, s in self.priors:
            lp -= 0.5 * ((theta[i] - m) / s) ** 2
        return lp if math.isfinite(lp) else -np.inf


def sample(problem, result, *, n_walkers=None, n_steps=1200, burn=None, priors=None,
           zeropoint=None, seed=0, progress=None, should_stop=None):
    """Sample the posterior of ``problem`` around its fit ``result``.

    Parameters
    ----------
    problem : FitProblem
    result : FitResult
        The best fit (start) and its formal covariance (size of the start ball).
    n_walkers : int, optional
        Default ``max(32, 4 x free parameters)``.
    n_steps : int
        Steps per walker (burn-in included).
    burn : int, optional
        Steps dropped per walker; default ``n_steps // 4`` (a run stopped early drops the
        same fraction of the steps it ran).
    priors : dict, optional
        ``{name: (mean, sigma)}`` Gaussian priors on physical parameters.
    zeropoint : float, optional
        For ``mag`` among the derived quantities.
    seed : int
        The run is reproducible for a seed.
    progress : callable, optional
        ``progress(step, n_steps)`` every 50 steps (live display).
    should_stop : callable, optional
        Polled every 50 steps; True ends the run early (the samples so far are summarised,
        ``converged`` is then False unless they suffice).

    Returns
    -------
    Posterior
    """
    import emcee

    t0 = time.perf_counter()
    names = tuple(problem.free)
    ndim = len(names)
    if ndim == 0:
        raise FitError("nothing to sample: every parameter is fixed")
    n_walkers = int(n_walkers or max(32, 4 * ndim))
    if n_walkers < 2 * ndim:
        raise FitError(f"emcee needs at least 2 x {ndim} walkers, got {n_walkers}")
    burn = int(n_steps // 4 if burn is None else burn)
    if not 0 <= burn < n_steps:
        raise FitError(f"burn must be in [0, n_steps), got {burn} of {n_steps}")
    best = result.params
    lp = _LogProb(problem, best, priors)
    x0 = np.array([getattr(best, n) for n in names], float)
    err = np.sqrt(np.clip(np.diag(result.covariance), 0, None)) if result.covariance is not None \
        else np.zeros(ndim)
    err = np.where(np.isfinite(err) & (err > 0), err, 1e-3 * np.maximum(np.abs(x0), 1.0))
    rng = np.random.default_rng(seed)
    start = []
    while len(start) < n_walkers:       # a ball inside the prior's support
        p = x0 + 0.1 * err * rng.standard_normal(ndim)
        if np.isfinite(lp(p)):
            start.append(p)
    # differential-evolution moves: on these near-Gaussian posteriors their autocorrelation
    # time is a fraction of the default stretch move's (measured in benchmarks/bench_sampling.py)
    moves = [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]
    sampler = emcee.EnsembleSampler(n_walkers, ndim, lp, moves=moves)
    sampler._random = np.random.mtrand.RandomState(seed)   # emcee's own stream, reproducible
    done = 0
    for _ in sampler.sample(np.array(start), iterations=n_steps):
        done += 1
        if done % 50 == 0:
            if progress is not None:
                progress(done, n_steps)
            if should_stop is not None and should_stop():
                break
    if done < n_steps:      # stopped early: drop the same fraction of what was run
        burn = min(burn, done * burn // n_steps)
    kept = max(done - burn, 1)
    chain = sampler.get_chain(discard=min(burn, done - 1))         # (steps, walkers, ndim)
    logp = sampler.get_log_prob(discard=min(burn, done - 1)).reshape(-1)
    # quiet: a short chain is reported through `converged` (and the CSV's flag), not by a
    # message from emcee's logger on the terminal
    elog = logging.getLogger("emcee")
    level = elog.level
    elog.setLevel(logging.ERROR)
    try:
        tau_arr = emcee.autocorr.integrated_time(chain, quiet=True)
    finally:
        elog.setLevel(level)
    flat = chain.reshape(-1, ndim)
    tau = {n: float(t) for n, t in zip(names, tau_arr)}
    ess = {n: float(n_walkers * kept / t) if t > 0 else math.nan for n, t in tau.items()}
    converged = bool(np.all(np.isfinite(tau_arr)) and np.all(kept > CONVERGENCE_TAUS * tau_arr))
    derived = _derived(flat, names, best, problem, result, zeropoint)
    pct = {}
    for i, n in enumerate(names):
        pct[n] = tuple(float(v) for v in np.percentile(flat[:, i], [16, 50, 84]))
    for k, v in derived.items():
        pct[k] = tuple(float(x) for x in np.nanpercentile(v, [16, 50, 84]))
    return Posterior(names=names, samples=flat, derived=derived, percentiles=pct, tau=tau,
                     ess=ess, acceptance=float(np.mean(sampler.acceptance_fraction)),
                     converged=converged, n_walkers=n_walkers, n_steps=done, burn=burn,
                     elapsed=time.perf_counter() - t0, log_prob=logp)


def _derived(flat, names, best, problem, result, zeropoint):
    """Per-sample derived quantities (the flux fraction follows n for a free Sérsic index)."""
    col = {n: flat[:, i] for i, n in enumerate(names)}
    flux = col.get("flux", np.full(len(flat), best.flux))
    re = col.get("re", np.full(len(flat), best.re))
    q = col.get("q", np.full(len(flat), best.q))
    ang = col.get("angle", np.full(len(flat), best.angle))
    if "n" in col:
        # the flux fraction of the Sérsic family at each sample's n, from a fine grid of n
        ns = col["n"]
        grid = np.linspace(ns.min(), ns.max(), 64) if ns.max() > ns.min() else ns[:1]
        ff = np.array([problem.profile_mixture(n=float(g)).flux_fraction for g in grid])
        fraction = np.interp(ns, grid, ff) if len(grid) > 1 else np.full(len(ns), ff[0])
    else:
        fraction = np.full(len(flat), result.flux_fraction)
    out = {"flux_target": flux / fraction, "re_circ": re * np.sqrt(q)}
    e = (1 - q) / (1 + q)
    t = 2 * np.radians(ang)
    out["e1"], out["e2"] = e * np.cos(t), e * np.sin(t)
    if zeropoint is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mag"] = np.where(out["flux_target"] > 0,
                                  zeropoint - 2.5 * np.log10(out["flux_target"]), np.nan)
    return out
