"""Posteriors around a fit: emcee's ensemble sampler, started at the best fit.

The likelihood is the fit's own: ``ln L = -chi^2 / 2`` with ``chi^2 = sum w (data - model)^2``
over the used pixels, the model rendered exactly as :func:`mogviewer.fitting.model_image` does.
The prior, by default, is flat in ``ln flux``, ``ln re`` and ``ln n`` (``p(x) dx = dx / x``;
Jeffreys' prior for the scale parameters flux and r_e, the log10 n of ProFit's fits for the
Sersic index; :data:`LN_PRIOR`, ``ln_prior=``) and flat in the other physical free parameters
(x, y, q, angle in degrees, sky, ...), all within the problem's bounds, ``re > 0`` and
``0 < q <= 1``; ``ln_prior=()`` makes it flat in every parameter. ``priors=`` multiplies it by
Gaussian priors ``{name: (mean, sigma)}``, which a model JSON file can carry
(:func:`priors_from_model`). Why not flat: at low S/N a galaxy's likelihood has a ridge in
(flux, r_e, n) that hardly falls towards large, high-n solutions, and a prior flat in r_e and n
(n up to 8) gives that volume the weight of its size: on simulated Sersic galaxies (S/N 20-500)
the 16-84 % intervals of flux and r_e then held the truth 59.5 and 58.5 % of the time instead of
68 % (README, "Posteriors"). The angle is sampled unwrapped and reported modulo 180 about the
best fit, so a chain does not jump at 0/180 degrees.

Moves: 70 % of the steps propose, for every walker, an independent draw from a Student-t
(5 degrees of freedom, scale 1.2 x) about the best fit with the fit's formal covariance (the
Laplace approximation; an :class:`emcee.moves.MHMove` with the exact Metropolis-Hastings
factor, so the chain's target is the posterior whatever the approximation's quality); 30 % are
differential-evolution moves (ter Braak 2006; emcee's ``DEMove``). Where the posterior is close
to Gaussian, as at the S/N of most fits, the autocorrelation time is 2.5-5 steps instead of DE
alone's 20-30; where it is not, the acceptance of the independence proposals falls and the DE
moves carry the chain, which the autocorrelation time then shows. Without a usable covariance
(``COV_NONFINITE``) only DE moves (80 %) and DE snooker moves (20 %) are used.

Walkers start as draws from the Laplace approximation (or, without it, a small ball of 0.1 of
the errors). A run has a fixed length (``n_steps``, the first ``burn`` steps dropped) or, by
default, grows until every parameter's effective sample size reaches ``min_ess`` and the kept
chain is longer than 50 autocorrelation times. Convergence is judged by emcee's integrated
autocorrelation time tau (Goodman & Weare 2010; emcee's ``integrated_time``): the run counts
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
from .fitting.problem import FLUX_LIKE, _FamilyProfile
from .render import render_galaxy

__all__ = ["Posterior", "sample", "priors_from_model", "CONVERGENCE_TAUS", "LN_PRIOR"]

#: The parameters whose prior is, by default, flat in their logarithm (see :func:`sample`'s
#: ``ln_prior``): the scale parameters flux and r_e (and a second component's), and the Sersic
#: index n.
LN_PRIOR = ("flux", "flux2", "re", "re2", "n")
#: A chain is converged when it is longer than this many autocorrelation times (emcee docs).
CONVERGENCE_TAUS = 50
#: An adaptive run checks its autocorrelation times every this many steps ...
CHECK_EVERY = 50
#: ... and drops at least this many steps as burn-in.
MIN_BURN = 20
#: Share of the steps that are independence proposals from the fit's Laplace approximation
#: (the rest are differential-evolution moves); see :class:`_LaplaceProposal`.
LAPLACE_WEIGHT = 0.7
#: An adaptive run whose autocorrelation time is still above ADAPT_TAU steps after ADAPT_AFTER
#: steps reshapes the independence proposal on its samples, at most MAX_ADAPT times.
ADAPT_TAU, ADAPT_AFTER, MAX_ADAPT = 8.0, 100, 4


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
    prior : dict
        ``name -> 'ln'`` (flat in the logarithm), ``'flat'`` or ``'flat x gauss(mean, sigma)'``
        for every sampled parameter: the prior the samples were drawn under.
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
    prior: dict = dataclasses.field(default_factory=dict)

    def prior_text(self):
        """The prior in one line, e.g. ``'flat in ln(flux), ln(re); flat in x, y, q, angle,
        n'`` (for logs and the CSV)."""
        ln = [n for n, v in self.prior.items() if v.startswith("ln")]
        flat = [n for n, v in self.prior.items() if not v.startswith("ln")]
        parts = []
        if ln:
            parts.append("flat in " + ", ".join(f"ln({n})" for n in ln))
        if flat:
            parts.append("flat in " + ", ".join(flat))
        text = "; ".join(parts)
        gauss = [f"{n} {v.split(' x ', 1)[1]}" for n, v in self.prior.items() if " x " in v]
        return text + (" (x " + ", ".join(gauss) + ")" if gauss else "")

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
                      ACCEPT=self.acceptance, CONVERGD=self.converged,
                      PRIOR=self.prior_text()[:68])
        t.write(path, format="fits", overwrite=True)
        return path


class _LogProb:
    """``ln p(theta | data)`` for the problem's free parameters (picklable).

    The model is rendered as :func:`mogviewer.fitting.model_image` does (same renderer, PSF,
    profile and sky terms), without building a :class:`GalaxyParams` per call: the checks here
    are the prior's support.
    """

    def __init__(self, problem, best, priors, log_params=()):
        self.problem = problem
        self.best = best
        self.names = tuple(problem.free)
        w = np.asarray(problem.weights, float).ravel()
        self.sw = np.sqrt(w)
        self.data = np.asarray(problem.image, float).ravel() * (w > 0)
        lo, hi = [], []
        for n in self.names:
            b = problem.bounds.get(n) or (None, None)
            lo.append(-np.inf if b[0] is None else b[0])
            hi.append(np.inf if b[1] is None else b[1])
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.lo_list, self.hi_list = self.lo.tolist(), self.hi.tolist()
        self.priors = [(self.names.index(k), float(m), float(s))
                       for k, (m, s) in (priors or {}).items() if k in self.names]
        self.base = best.as_dict()
        self.index = {n: i for i, n in enumerate(self.names)}
        # support of the flat prior besides the bounds: re > 0, 0 < q <= 1 (and n in the
        # Sérsic family's range, which the problem's bounds on n already hold)
        self.re_i = [self.index[k] for k in ("re", "re2") if k in self.index]
        self.q_i = [self.index[k] for k in ("q", "q2") if k in self.index]
        # scale parameters with a prior flat in their logarithm (see sample's ln_prior)
        self.log_i = [self.index[k] for k in log_params]
        self.family = _FamilyProfile() if problem.uses_family else None
        self.prof = None if self.family is not None else problem.profile_mixture()
        self.prof2 = problem.profile_mixture("2") if problem.profile2 is not None else None
        ny, nx = problem.shape
        self.buf = np.zeros((1, ny, nx))
        yy, xx = np.mgrid[:ny, :nx]
        self.gx = (xx - (nx - 1) / 2).ravel()
        self.gy = (yy - (ny - 1) / 2).ravel()

    def params(self, theta):
        return self.best.replace(**dict(zip(self.names, (float(v) for v in theta))))

    def model(self, theta):
        """The model image (flattened) at ``theta``."""
        v = dict(self.base)
        v.update(zip(self.names, (float(t) for t in theta)))
        pb = self.problem
        prof = self.family.at(v["n"]) if self.family is not None else self.prof
        img = render_galaxy(v["flux"], v["x"], v["y"], _s3(v["re"], v["q"], v["angle"]), prof,
                            None, pb.psf, pb.shape, out=self.buf).ravel()
        if self.prof2 is not None:
            img = img + render_galaxy(v["flux2"], v["x"], v["y"],
                                      _s3(v["re2"], v["q2"], v["angle2"]), self.prof2, None,
                                      pb.psf, pb.shape).ravel()
        if pb.sky == "constant":
            img = img + v["sky"]
        elif pb.sky == "plane":
            img = img + (v["sky"] + v["sky_dx"] * self.gx + v["sky_dy"] * self.gy)
        return img

    def __call__(self, theta):
        t = theta.tolist()            # plain floats: seven comparisons cost less than np.all
        for v, a, b in zip(t, self.lo_list, self.hi_list):
            if not (a <= v <= b and -math.inf < v < math.inf):     # NaN fails too
                return -np.inf
        for i in self.re_i:
            if not t[i] > 0.0:
                return -np.inf
        for i in self.q_i:
            if not 0.0 < t[i] <= 1.0:
                return -np.inf
        lp = 0.0
        for i in self.log_i:          # p(x) dx = dx / x: flat in ln x
            if not t[i] > 0.0:
                return -np.inf
            lp -= math.log(t[i])
        try:
            r = self.data - self.model(t)
        except (ValueError, ArithmeticError):
            return -np.inf
        r *= self.sw
        # einsum, not ``r @ r``: BLAS's threaded dot costs 3.8 ms instead of 0.13 ms on a
        # 256x256 image on a busy 2-core machine (its threads spin), as in the app's worker
        lp -= 0.5 * float(np.einsum("i,i->", r, r))
        for i, m, s in self.priors:
            lp -= 0.5 * ((t[i] - m) / s) ** 2
        return lp if math.isfinite(lp) else -np.inf


def _s3(re, q, angle_deg):
    """``(Sxx, Sxy, Syy)`` of :func:`mogviewer.ellipse.shape_matrix`, without the matrices."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    a2, b2 = re * re, (q * re) ** 2
    return (a2 * c * c + b2 * s * s, (a2 - b2) * c * s, a2 * s * s + b2 * c * c)


class _LaplaceProposal:
    """Independence proposals from a Student-t about the best fit (an :class:`emcee.moves.MHMove`
    proposal function).

    ``x' = best + sqrt(INFLATE^2 df / chi2_df) L z`` with ``L L^T`` the formal covariance and
    ``z`` standard normal: a multivariate t with ``df`` degrees of freedom and scale matrix
    ``INFLATE^2 C``. It does not depend on the walker's position, so the Metropolis-Hastings
    factor is ``ln q(x) - ln q(x')`` with ``ln q = -(df + d)/2 ln(1 + m^2/df)``, ``m^2`` the
    Mahalanobis distance in that scale. When the posterior is close to the Laplace (Gaussian)
    approximation most proposals are accepted and successive samples are nearly independent;
    the t's heavier tails and the wider scale keep ``p/q`` bounded where it is not, and the
    differential-evolution moves it is mixed with explore what it misses.
    """

    DF = 5.0
    INFLATE = 1.2

    def __init__(self, centre, cov):
        self.centre = np.asarray(centre, float)
        self.L = np.linalg.cholesky(cov) * self.INFLATE
        self.Linv = np.linalg.inv(self.L)
        self.d = len(self.centre)

    def adapt(self, samples):
        """Re-centre and reshape on ``samples`` (their mean and covariance); False (and no
        change) when their covariance is not positive definite."""
        cov = np.cov(samples.T)
        try:
            L = np.linalg.cholesky(cov) * self.INFLATE
        except np.linalg.LinAlgError:
            return False
        self.centre, self.L, self.Linv = samples.mean(axis=0), L, np.linalg.inv(L)
        return True

    def logq(self, x):
        u = (x - self.centre) @ self.Linv.T
        m2 = np.sum(u * u, axis=-1)
        return -0.5 * (self.DF + self.d) * np.log1p(m2 / self.DF)

    def __call__(self, coords, random):
        k = coords.shape[0]
        z = random.standard_normal((k, self.d))
        g = random.chisquare(self.DF, size=k)
        new = self.centre + np.sqrt(self.DF / g)[:, None] * (z @ self.L.T)
        return new, self.logq(coords) - self.logq(new)


def _laplace_covariance(result, ndim):
    """The fit's formal covariance if it can shape a proposal (finite, positive definite), else
    None."""
    cov = result.covariance
    if cov is None or np.shape(cov) != (ndim, ndim) or not np.all(np.isfinite(cov)):
        return None
    cov = 0.5 * (np.asarray(cov, float) + np.asarray(cov, float).T)
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    return cov


def _integrated_time(chain):
    import emcee

    # quiet: a short chain is reported through `converged` (and the CSV's flag), not by a
    # message from emcee's logger on the terminal
    elog = logging.getLogger("emcee")
    level = elog.level
    elog.setLevel(logging.ERROR)
    try:
        # a walker that has not moved within the window has a zero autocovariance: its tau is
        # undefined (NaN), which here means "not yet converged" (inf), not an error
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = emcee.autocorr.integrated_time(chain, quiet=True)
    finally:
        elog.setLevel(level)
    return np.where(np.isfinite(tau), tau, np.inf)


def sample(problem, result, *, n_walkers=None, n_steps=None, burn=None, min_ess=1000,
           max_steps=20000, priors=None, ln_prior=LN_PRIOR, zeropoint=None, seed=0,
           progress=None, should_stop=None):
    """Sample the posterior of ``problem`` around its fit ``result``.

    Parameters
    ----------
    problem : FitProblem
    result : FitResult
        The best fit (start) and its formal covariance (the independence proposal's shape and
        the start ball).
    n_walkers : int, optional
        Default ``max(32, 4 x free parameters)``.
    n_steps : int, optional
        Steps per walker (burn-in included) for a run of fixed length. Without it the run is
        adaptive: it grows by :data:`CHECK_EVERY` steps until the effective sample size of
        every parameter is at least ``min_ess`` *and* the kept chain is longer than
        :data:`CONVERGENCE_TAUS` autocorrelation times (or ``max_steps`` is reached).
    burn : int, optional
        Steps dropped per walker; default ``n_steps // 4`` for a fixed run, and for an
        adaptive one ``max(MIN_BURN, 5 tau_max)`` as tau is measured.
    min_ess, max_steps : int
        The adaptive run's goal and limit.
    priors : dict, optional
        ``{name: (mean, sigma)}`` Gaussian priors on physical parameters (multiplying the flat
        prior; see :func:`priors_from_model`).
    ln_prior : sequence of str
        The parameters whose prior is flat in their logarithm, ``p(x) dx = dx / x`` for
        ``x > 0`` (within the bounds), instead of flat in ``x``. Default :data:`LN_PRIOR`:
        flux and r_e are scale parameters, for which this is Jeffreys' prior (the result does
        not depend on the units, and a factor 2 up weighs as much as a factor 2 down); for
        the Sersic index it is the convention of fitting ``log10 n`` (ProFit), and it does not
        give the range 4-8, where at low S/N the likelihood of a small galaxy hardly changes,
        more weight than 0.5-1 (a flat prior gives it 4/7.5 of its mass). ``()`` makes every
        prior flat. A parameter whose best fit is not positive (a negative flux) keeps the flat
        prior. The others (x, y, q, angle, sky) have flat priors within the bounds.
        ``Posterior.prior`` records what was used.
    zeropoint : float, optional
        For ``mag`` among the derived quantities.
    seed : int
        The run is reproducible for a seed.
    progress : callable, optional
        ``progress(step, n_steps)`` every 50 steps (live display; ``n_steps`` is ``max_steps``
        for an adaptive run).
    should_stop : callable, optional
        Polled after every step; True ends the run early (the samples so far are summarised,
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
    adaptive = n_steps is None
    if adaptive:
        if int(min_ess) < 1 or int(max_steps) <= MIN_BURN:
            raise FitError(f"min_ess must be >= 1 and max_steps > {MIN_BURN}")
        limit = int(max_steps)
    else:
        n_steps = int(n_steps)
        burn = int(n_steps // 4 if burn is None else burn)
        if not 0 <= burn < n_steps:
            raise FitError(f"burn must be in [0, n_steps), got {burn} of {n_steps}")
        limit = n_steps
    # the chains run in the problem's internal units (data divided by problem.scale, 1 for
    # ordinary data); samples of image-unit parameters are scaled back at the end
    scale = getattr(problem, "scale", 1.0)
    user_priors = priors
    unit = np.array([scale if n in FLUX_LIKE else 1.0 for n in names])
    best = problem.to_internal(result.params) if scale != 1.0 else result.params
    if priors and scale != 1.0:
        priors = {k: (m / scale, sd / scale) if k in FLUX_LIKE else (m, sd)
                  for k, (m, sd) in priors.items()}
    ln_prior = (ln_prior,) if isinstance(ln_prior, str) else tuple(ln_prior or ())
    unknown = [n for n in ln_prior if n not in LN_PRIOR]
    if unknown:
        raise FitError(f"ln_prior: {', '.join(map(str, unknown))} cannot have a prior flat in "
                       f"its logarithm (choose among {', '.join(LN_PRIOR)})")
    log_params = tuple(n for n in names if n in ln_prior and getattr(best, n) > 0)
    prior_used = {n: "ln" if n in log_params else "flat" for n in names}
    for n, (m, sd) in (user_priors or {}).items():
        if n in prior_used:
            prior_used[n] += f" x gauss({m:.6g}, {sd:.6g})"
    lp = _LogProb(problem, best, priors, log_params)
    x0 = np.array([getattr(best, n) for n in names], float)
    cov = _laplace_covariance(result, ndim)
    if cov is not None:
        cov = cov / np.outer(unit, unit)
    rng = np.random.default_rng(seed)
    if cov is not None:
        # walkers start as draws from the Laplace approximation: nearly the stationary
        # distribution already, so little burn-in is needed
        draw = np.linalg.cholesky(cov)
        scale = 1.0
    else:
        err = np.sqrt(np.clip(np.diag(result.covariance), 0, None)) \
            if result.covariance is not None else np.zeros(ndim)
        err = err / unit
        err = np.where(np.isfinite(err) & (err > 0), err, 1e-3 * np.maximum(np.abs(x0), 1.0))
        draw = np.diag(err)
        scale = 0.1
    start = []
    tries = 0
    while len(start) < n_walkers:       # a ball inside the prior's support
        tries += 1
        if tries > 1000 * n_walkers:
            scale *= 0.1                 # the fit sits on a bound: shrink towards it
            tries = 0
        p = x0 + scale * (draw @ rng.standard_normal(ndim))
        if np.isfinite(lp(p)):
            start.append(p)
    # differential-evolution moves (on these near-Gaussian posteriors their autocorrelation
    # time is a fraction of the default stretch move's) mixed with independence proposals from
    # the fit's Laplace approximation, which decorrelate in one or two steps where it holds
    # (measured in benchmarks/bench_sampling.py)
    moves = [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]
    proposal = None
    if cov is not None:
        proposal = _LaplaceProposal(x0, cov)
        moves = [(emcee.moves.MHMove(proposal), LAPLACE_WEIGHT),
                 (emcee.moves.DEMove(), 1.0 - LAPLACE_WEIGHT)]
    sampler = emcee.EnsembleSampler(n_walkers, ndim, lp, moves=moves)
    sampler._random = np.random.mtrand.RandomState(seed)   # emcee's own stream, reproducible
    done = adapted_at = n_adapt = 0
    tau_arr = np.full(ndim, np.inf)
    position = np.array(start)
    while done < limit:
        chunk = min(CHECK_EVERY if adaptive else limit, limit - done)
        stopped = False
        for step in sampler.sample(position, iterations=chunk):
            position = step
            done += 1
            if done % 50 == 0 and progress is not None:
                progress(done, limit)
            if should_stop is not None and should_stop():
                stopped = True      # polled every step: Cancel answers within one step
                break
        if stopped or not adaptive:
            break
        burn = max(adapted_at, _adaptive_burn(tau_arr, done))
        tau_arr = _integrated_time(sampler.get_chain(discard=burn))
        burn = max(adapted_at, _adaptive_burn(tau_arr, done))
        kept = done - burn
        if np.all(np.isfinite(tau_arr)) and kept > CONVERGENCE_TAUS * np.max(tau_arr) \
                and n_walkers * kept / np.max(tau_arr) >= min_ess:
            break
        if (proposal is not None and n_adapt < MAX_ADAPT and done - adapted_at >= ADAPT_AFTER
                and not np.max(tau_arr) < ADAPT_TAU):
            # the posterior is not the Laplace approximation (a small galaxy's n-r_e banana,
            # a low S/N): reshape the proposal to the samples' own mean and covariance, and
            # count the chain only from here (an adaptation, then a fixed kernel: the kept
            # chain is an ordinary Markov chain)
            flat = sampler.get_chain(discard=adapted_at + (done - adapted_at) // 2)
            if proposal.adapt(flat.reshape(-1, ndim)):
                n_adapt += 1
                adapted_at = done
    if adaptive:
        burn = max(adapted_at, _adaptive_burn(tau_arr, done))
    elif done < n_steps:        # a fixed run stopped early: drop the same fraction of it
        burn = min(burn, done * burn // n_steps)
    burn = min(burn, done - 1)
    kept = max(done - burn, 1)
    chain = sampler.get_chain(discard=burn)         # (steps, walkers, ndim)
    logp = sampler.get_log_prob(discard=burn).reshape(-1)
    tau_arr = _integrated_time(chain)
    flat = chain.reshape(-1, ndim) * unit
    tau = {n: float(t) for n, t in zip(names, tau_arr)}
    ess = {n: float(n_walkers * kept / t) if t > 0 else math.nan for n, t in tau.items()}
    converged = bool(np.all(np.isfinite(tau_arr)) and np.all(kept > CONVERGENCE_TAUS * tau_arr))
    derived = _derived(flat, names, result.params, problem, result, zeropoint)
    pct = {}
    for i, n in enumerate(names):
        pct[n] = tuple(float(v) for v in np.percentile(flat[:, i], [16, 50, 84]))
    for k, v in derived.items():
        pct[k] = tuple(float(x) for x in np.nanpercentile(v, [16, 50, 84]))
    return Posterior(names=names, samples=flat, derived=derived, percentiles=pct, tau=tau,
                     ess=ess, acceptance=float(np.mean(sampler.acceptance_fraction)),
                     converged=converged, n_walkers=n_walkers, n_steps=done, burn=burn,
                     elapsed=time.perf_counter() - t0, log_prob=logp, prior=prior_used)


def priors_from_model(model):
    """Gaussian priors from a model JSON file's ``"priors"`` entry.

    The entry maps parameter names to ``[mean, sigma]`` (or ``{"mean": ..., "sigma": ...}``) in
    the physical units of :class:`~mogviewer.fitting.GalaxyParams` (pixels, degrees, image
    units), for example ``"priors": {"n": [2.0, 0.5], "q": [0.7, 0.1]}``. Without the entry
    the prior is flat within the problem's bounds (and ``re > 0``, ``0 < q <= 1``).

    Parameters
    ----------
    model : SavedModel or dict
        What :func:`mogviewer.export.read_model_json` returns, or the file's parsed JSON.

    Returns
    -------
    dict or None
        ``{name: (mean, sigma)}`` for :func:`sample`, None when there is no entry.

    Raises
    ------
    ModelFileError
        An unknown parameter name, or a mean or sigma that is not a finite number (sigma > 0).
    """
    from .errors import ModelFileError
    from .fitting import GalaxyParams

    meta = model if isinstance(model, dict) else getattr(model, "meta", {}) or {}
    raw = meta.get("priors")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ModelFileError("model file: 'priors' must map parameter names to [mean, sigma]")
    out = {}
    for name, val in raw.items():
        if name not in GalaxyParams.names():
            raise ModelFileError(f"model file: prior on unknown parameter {name!r} (parameters: "
                                 f"{', '.join(GalaxyParams.names())})")
        if isinstance(val, dict):
            val = (val.get("mean"), val.get("sigma"))
        ok = isinstance(val, (list, tuple)) and len(val) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in val)
        if not ok or not val[1] > 0:
            raise ModelFileError(f"model file: prior on {name} must be [mean, sigma] with finite "
                                 f"numbers and sigma > 0, got {val!r}")
        out[name] = (float(val[0]), float(val[1]))
    return out


def _adaptive_burn(tau_arr, done):
    """Burn-in of an adaptive run: ``max(MIN_BURN, 5 tau_max)``, at most half the run."""
    t = float(np.max(tau_arr)) if np.all(np.isfinite(tau_arr)) else 0.0
    return int(min(max(MIN_BURN, math.ceil(5 * t)), done // 2))


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
