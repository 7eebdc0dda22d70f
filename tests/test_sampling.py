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
