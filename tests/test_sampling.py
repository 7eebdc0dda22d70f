"""Posterior sampling (emcee) around a fit: widths, centres, diagnostics, chains, bad input."""

import numpy as np
import pytest
from astropy.table import Table
from test_fitting import PSF3

from mogviewer.errors import FitError
from mogviewer.fitting import FitProblem, fit
from mogviewer.render import render_model
from mogviewer.sampling import sample


def _problem(profile="exp", shape=(40, 40), seed=2, **kw):
    truth = dict(flux=2000.0, x=19.4, y=20.3, re=4.0, q=0.6, angle=70.0, sky=1.0)
    img = render_model(truth, profile, 6 if profile != "ser" else None, PSF3, shape,
                       n=kw.get("n"))
    img = img + np.random.default_rng(seed).normal(0.0, 1.0, shape)
    return FitProblem.from_arrays(img, sigma=np.ones(shape), psf=PSF3, profile=profile,
                                  M=6 if profile != "ser" else None, **kw)


def test_posterior_of_a_gaussian_problem_matches_the_formal_errors():
    # At S/N ~ 100 the likelihood is close to Gaussian in these parameters, so the posterior's
    # 16-84 % half-width must equal the formal error and its median the best fit. 40 walkers x
    # 600 kept steps give ESS ~ 1000 per parameter: the half-width is then known to ~3 %, so
    # 15 % is a wrong-likelihood detector (a factor 2 in chi2 gives 41 %), not noise.
    prob = _problem()
    res = fit(prob)
    post = sample(prob, res, n_walkers=40, n_steps=800, burn=200, zeropoint=25.0)
    e = res.errors()
    assert post.names == prob.free and post.samples.shape == (40 * 600, len(prob.free))
    for n in prob.free:
        p16, p50, p84 = post.interval(n)
        assert (p84 - p16) / 2 == pytest.approx(e[n], rel=0.15), n
        assert abs(p50 - getattr(res.params, n)) < 0.3 * e[n], n
    assert 0.15 < post.acceptance < 0.6
    assert all(200 < v for v in post.ess.values())
    # derived quantities from the samples
    ft = post.interval("flux_target")[1]
    assert ft == pytest.approx(res.flux_target, rel=3 * e["flux"] / res.params.flux)
    assert post.interval("mag")[1] == pytest.approx(25.0 - 2.5 * np.log10(ft), abs=1e-3)
    assert post.interval("re_circ")[1] == pytest.approx(res.re_circ, rel=0.02)


def test_short_chain_is_not_converged_and_the_run_is_reproducible(tmp_path):
    prob = _problem()
    res = fit(prob)
    a = sample(prob, res, n_steps=60, burn=10, seed=3)
    b = sample(prob, res, n_steps=60, burn=10, seed=3)
    assert not a.converged                     # 50 steps cannot exceed 50 tau (tau >= 1)
    np.testing.assert_array_equal(a.samples, b.samples)
    path = a.write_chains(tmp_path / "chains.fits")
    t = Table.read(path)
    assert len(t) == a.samples.shape[0] and "log_prob" in t.colnames and "re_circ" in t.colnames
    assert t.meta["WALKERS"] == a.n_walkers and bool(t.meta["CONVERGD"]) is False


def test_sersic_index_is_sampled_with_its_flux_fraction():
    prob = _problem("ser", n=2.0)
    res = fit(prob)
    post = sample(prob, res, n_steps=300, burn=100)
    assert "n" in post.names
    f = post.derived["flux_target"] / post.samples[:, post.names.index("flux")]
    assert np.ptp(f) > 0                       # the flux fraction follows each sample's n


def test_bad_input():
    prob = _problem()
    res = fit(prob)
    with pytest.raises(FitError, match="walkers"):
        sample(prob, res, n_walkers=4)
    with pytest.raises(FitError, match="burn"):
        sample(prob, res, n_steps=10, burn=10)


def test_cli_sample_adds_percentile_columns(tmp_path, capsys):
    # `mogviewer fit --sample STEPS`: the row gets 16/50/84 % columns bracketing the fit and the
    # chain diagnostics; without --sample the columns are empty (IC 3478 64x64 with its sigma
    # map, PROVENANCE.md s2)
    from astropy.table import Table

    from mogviewer.cli import main
    data = "tests/data/real/imfit-sdss"
    out = tmp_path / "s.csv"
    assert main(["fit", f"{data}/ic3478rss_64x64.fits", "--noise",
                 f"{data}/ic3478rss_64x64_sigma.fits", "--profile", "exp", "-M", "6",
                 "--zeropoint", "25", "--sample", "400", "--csv", str(out), "--quiet"]) == 0
    row = Table.read(out, format="ascii.csv", comment="#")[0]
    for col in ("flux", "re_pix", "q", "mag", "re_circ_pix"):
        lo, mid, hi = (row[f"{col}_p{q}"] for q in (16, 50, 84))
        assert lo < mid < hi, col
        assert lo - 3 * (hi - lo) < row[col] < hi + 3 * (hi - lo), col   # near the fit
    # the posterior half-width of r_e is the formal error within 30 % (ESS of a few hundred)
    assert (row["re_pix_p84"] - row["re_pix_p16"]) / 2 == pytest.approx(row["re_pix_err"],
                                                                         rel=0.3)
    assert 0.15 < row["sample_acceptance"] < 0.6 and row["sample_tau_max"] > 1
    assert row["sample_ess_min"] > 0 and str(row["sample_converged"]) in ("True", "False")
    out2 = tmp_path / "n.csv"
    assert main(["fit", f"{data}/ic3478rss_64x64.fits", "--csv", str(out2), "--quiet"]) == 0
    row2 = Table.read(out2, format="ascii.csv", comment="#")[0]
    assert hasattr(row2["re_pix_p50"], "mask") and row2["re_pix_p50"].mask   # empty cell
    assert main(["fit", f"{data}/ic3478rss_64x64.fits", "--csv", str(out2), "--sample", "5"]) == 2
    assert "--sample" in capsys.readouterr().err


@pytest.mark.parametrize("kw", [dict(profile="exp", sky="plane"),
                                 dict(profile="ser", n=2.5, sky="constant"),
                                 dict(profile="dev", profile2="exp", sky="none")])
def test_sampler_likelihood_renders_what_model_image_renders(kw):
    # the sampler's own model path (no GalaxyParams per call) must be the fit's model: the same
    # image as model_image at a point away from the fit, to rounding (1e-10 of the peak), and
    # ln L = -chi2/2 with chi2 over the weighted pixels only
    from mogviewer.fitting import model_image
    from mogviewer.sampling import _LogProb

    shape = (30, 34)
    rng = np.random.default_rng(5)
    mask = rng.random(shape) < 0.1
    prob = FitProblem.from_arrays(rng.normal(0, 1, shape) + 5, sigma=np.full(shape, 0.5),
                                  mask=mask, psf=PSF3, **kw)
    from mogviewer.fitting import initial_guess
    best = initial_guess(prob).replace(flux2=300.0, re2=6.0, q2=0.5, angle2=30.0, sky=0.2,
                                       sky_dx=0.01, sky_dy=-0.02, n=kw.get("n", 1.0))
    lp = _LogProb(prob, best, None)
    theta = np.array([getattr(best, n) for n in prob.free]) * 1.03
    params = lp.params(theta)
    want = model_image(prob, params)
    assert np.max(np.abs(lp.model(theta).reshape(shape) - want)) < 1e-10 * np.abs(want).max()
    chi2 = float(np.sum(prob.weights * (prob.image - want) ** 2))
    assert lp(theta) == pytest.approx(-0.5 * chi2, rel=1e-12)
    bad = theta.copy()
    bad[prob.free.index("q")] = 1.2                      # outside the prior's support
    assert lp(bad) == -np.inf


def test_adaptive_run_stops_at_the_goal_and_matches_the_formal_errors():
    # without n_steps the run grows until ESS >= min_ess and 50 tau: both must hold at the end,
    # and on this S/N ~ 100 problem the Laplace proposals keep tau to a few steps (measured
    # 2.5-3.5; 10 would mean the independence move is not working), and the half-widths are the
    # formal errors (ESS >= 1000: known to ~3 %, 10 % allowed)
    prob = _problem()
    res = fit(prob)
    post = sample(prob, res, min_ess=1000, seed=4)
    assert post.converged and min(post.ess.values()) >= 1000
    assert max(post.tau.values()) < 10 and post.n_steps <= 600
    e = res.errors()
    for n in prob.free:
        p16, _, p84 = post.interval(n)
        assert (p84 - p16) / 2 == pytest.approx(e[n], rel=0.1), n


def test_laplace_proposal_factor_is_the_t_density_ratio():
    # the Metropolis-Hastings factor of an independence proposal is ln q(x) - ln q(x'); check
    # ln q against the multivariate t density (scipy) up to its constant
    from scipy import stats

    from mogviewer.sampling import _LaplaceProposal

    cov = np.array([[2.0, 0.3], [0.3, 0.5]])
    prop = _LaplaceProposal([1.0, -1.0], cov)
    ref = stats.multivariate_t(loc=[1.0, -1.0], shape=cov * prop.INFLATE ** 2, df=prop.DF)
    x = np.array([[0.0, 0.0], [3.0, -2.0], [1.0, -1.0]])
    new, factor = prop(x, np.random.RandomState(1))
    want = (ref.logpdf(x) - ref.logpdf(new))
    np.testing.assert_allclose(factor, want, rtol=1e-10, atol=1e-10)
    # and its draws have the t's covariance, df/(df-2) scale^2 (4000 draws: 10 %)
    draws, _ = prop(np.zeros((4000, 2)), np.random.RandomState(2))
    np.testing.assert_allclose(np.cov(draws.T), cov * prop.INFLATE ** 2 * 5 / 3, rtol=0.1)


def test_priors_from_the_model_json_narrow_the_posterior():
    # a Gaussian prior on r_e with sigma = the formal error / 2 multiplies the likelihood:
    # the posterior half-width becomes e / sqrt(1 + 4) = 0.447 e (10 % for ESS ~ 1000)
    from mogviewer.errors import ModelFileError
    from mogviewer.sampling import priors_from_model

    prob = _problem()
    res = fit(prob)
    e = res.errors()["re"]
    pri = priors_from_model({"priors": {"re": [res.params.re, e / 2], "q": {"mean": 0.6,
                                                                             "sigma": 1.0}}})
    assert pri == {"re": (res.params.re, e / 2), "q": (0.6, 1.0)}
    assert priors_from_model({}) is None
    post = sample(prob, res, priors=pri, seed=1)
    p16, _, p84 = post.interval("re")
    assert (p84 - p16) / 2 == pytest.approx(e / 5 ** 0.5, rel=0.1)
    for bad in ({"priors": {"rad": [1, 1]}}, {"priors": {"re": [1, 0]}},
                {"priors": {"re": [1, float("nan")]}}, {"priors": [1, 2]}):
        with pytest.raises(ModelFileError):
            priors_from_model(bad)


def test_ln_prior_is_flat_in_ln_flux_and_ln_re():
    # the default prior of the scale parameters is p(x) dx = dx / x: ln p = -chi2/2 - ln flux -
    # ln re (+ a constant) at any point; flux <= 0 is outside its support; without them in
    # ln_prior the term is dropped
    from mogviewer.fitting import initial_guess
    from mogviewer.sampling import _LogProb

    prob = _problem()
    best = initial_guess(prob)
    theta = np.array([getattr(best, n) for n in prob.free]) * 1.02
    flat = _LogProb(prob, best, None)(theta)
    ln = _LogProb(prob, best, None, ("flux", "re"))
    i_f, i_r = prob.free.index("flux"), prob.free.index("re")
    assert ln(theta) == pytest.approx(flat - np.log(theta[i_f]) - np.log(theta[i_r]),
                                      rel=1e-12)
    neg = theta.copy()
    neg[i_f] = -1.0
    assert ln(neg) == -np.inf
    with pytest.raises(FitError, match="ln_prior: q cannot"):
        sample(prob, fit(prob), ln_prior=("re", "q"))


def test_ln_prior_posterior_is_the_flat_one_reweighted_by_1_over_flux_re():
    # a faint galaxy (S/N ~ 15: r_e known to ~15 %, where the prior matters): the ln prior's
    # posterior must equal the flat prior's samples weighted by 1/(flux re) (importance
    # sampling; the two runs are independent chains of ESS ~ 1000, so their medians agree to
    # ~0.05 sigma; 0.15 sigma allowed), and lie below the flat one (the 1/re prior pulls down)
    truth = dict(flux=300.0, x=19.4, y=20.3, re=4.0, q=0.6, angle=70.0)
    shape = (40, 40)
    img = render_model(truth, "exp", 6, PSF3, shape) + np.random.default_rng(8).normal(
        0.0, 1.0, shape)
    prob = FitProblem.from_arrays(img, sigma=np.ones(shape), psf=PSF3, profile="exp", M=6,
                                  sky="none")
    res = fit(prob)
    a = sample(prob, res, ln_prior=(), seed=1)
    b = sample(prob, res, seed=2)                   # default: flux, re (and n, not free here)
    assert a.prior["re"] == "flat" and b.prior == {n: "ln" if n in ("flux", "re") else "flat"
                                                    for n in prob.free}
    assert b.prior_text() == "flat in ln(flux), ln(re); flat in x, y, q, angle"
    i_f, i_r = a.names.index("flux"), a.names.index("re")
    w = 1.0 / (a.samples[:, i_f] * a.samples[:, i_r])
    sig = (a.interval("re")[2] - a.interval("re")[0]) / 2
    order = np.argsort(a.samples[:, i_r])
    cw = np.cumsum(w[order]) / w.sum()
    reweighted = np.interp(0.5, cw, a.samples[order, i_r])
    assert abs(b.interval("re")[1] - reweighted) < 0.15 * sig
    assert b.interval("re")[1] < a.interval("re")[1]


def test_cli_bare_sample_runs_until_the_goal(tmp_path):
    # `--sample` without STEPS is the library's adaptive run: ESS >= 1000 for every parameter
    # and converged (50 tau); the prior is in the row. A FILE right after a bare --sample is a
    # FILE, not STEPS (IC 3478 64x64, PROVENANCE.md s2)
    from astropy.table import Table

    from mogviewer.cli import main
    data = "tests/data/real/imfit-sdss"
    out = tmp_path / "a.csv"
    assert main(["fit", "--csv", str(out), "--noise", f"{data}/ic3478rss_64x64_sigma.fits",
                 "--profile", "exp", "-M", "6", "--quiet", "--sample",
                 f"{data}/ic3478rss_64x64.fits"]) == 0
    row = Table.read(out, format="ascii.csv", comment="#")[0]
    assert row["status"] == "converged"
    assert row["sample_ess_min"] >= 1000 and str(row["sample_converged"]) == "True"
    assert row["sample_steps"] % 50 == 0               # grown in chunks of CHECK_EVERY steps
    assert row["sample_prior"].startswith("flat in ln(flux), ln(re); flat in")
    assert row["re_pix_p16"] < row["re_pix"] < row["re_pix_p84"]


def test_cli_sample_argument_forms():
    # --sample [STEPS]: an integer is STEPS (100-100000, else a one-line error), 'auto' the
    # adaptive run, anything else a FILE that followed a bare --sample
    import argparse

    from mogviewer.cli.fit import _FileAfterSample, _sample_steps

    assert _sample_steps("400") == 400 and _sample_steps(" AUTO ") == "auto"
    got = _sample_steps("a.fits")
    assert isinstance(got, _FileAfterSample) and got == "a.fits"
    for bad in ("5", "-300", "100001"):
        with pytest.raises(argparse.ArgumentTypeError, match="from 100 to 100000"):
            _sample_steps(bad)


@pytest.mark.parametrize("stop_after", [1, 7])
def test_stop_is_answered_within_one_step(stop_after):
    # New-user review, 2026-12-04: Esc during sampling was polled every 50 steps only (the app
    # ran on for ~10 s after "Cancel requested"); now every step. Stopping after 1 or 7 steps
    # ends the run there and still returns a summary of the samples so far.
    prob = _problem()
    res = fit(prob)
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) >= stop_after

    post = sample(prob, res, n_walkers=16, n_steps=200, burn=50, should_stop=should_stop)
    assert len(calls) == stop_after
    assert not post.converged
    assert post.samples.shape[1] == len(prob.free) and post.samples.shape[0] >= 16
    assert np.all(np.isfinite(post.samples))
