"""The fitting engine: Jacobians, simulated recovery, published real-data fits, bad input."""

import math

import numpy as np
import pytest
import recovery
from realdata import dr9_crop, quiet_psf

from mogviewer import io as io_fits
from mogviewer.fitting import (
    FitError,
    FitFlags,
    FitProblem,
    GalaxyParams,
    fit,
    initial_guess,
    model_image,
)
from mogviewer.fitting.parametrisation import _Param
from mogviewer.fitting.solver import _Evaluator
from mogviewer.mixture import Mixture
from mogviewer.profiles import PUBLISHED
from mogviewer.render import render_model

DATA = "tests/data/real"
PSF3 = recovery.PSF


def simulated_problem(profile="exp", M=6, *, free=None, sky="constant", seed=0, **truth_kw):
    truth = dict(flux=3000.0, x=30.6, y=33.2, re=5.0, q=0.6, angle=70.0, sky=2.0)
    truth.update(truth_kw)
    img = render_model(truth, profile, M, PSF3, (64, 64))
    rng = np.random.default_rng(seed)
    sigma = 1.0
    prob = FitProblem.from_arrays(img + rng.normal(0, sigma, img.shape),
                                  sigma=np.full(img.shape, sigma), psf=PSF3, profile=profile, M=M,
                                  free=free, sky=sky)
    return prob, GalaxyParams(**truth)


def numeric_jacobian(ev, z, h=1e-6):
    cols = []
    for i in range(len(z)):
        step = h * max(1.0, abs(z[i]))
        zp, zm = z.copy(), z.copy()
        zp[i] += step
        zm[i] -= step
        cols.append((ev.residuals(zp) - ev.residuals(zm)) / (2 * step))
    return np.column_stack(cols)


@pytest.mark.parametrize("profile,M", sorted(PUBLISHED))
@pytest.mark.parametrize("mode", ["eta", "fixed_q", "plane"])
def test_jacobian_matches_central_differences(profile, M, mode):
    # The optimiser's Jacobian (renderer's analytic derivatives chained through the
    # parametrisation) against central differences of the *same* residual function, at the
    # optimum and at a perturbed point. Step 1e-6 relative: truncation ~1e-12 and rounding
    # ~1e-16 * |r| / 1e-6 ~ 1e-8 of the column scale, so 2e-6 of each column's largest entry
    # is safe, while a wrong sign, factor or chain-rule term fails by >= 1e-2.
    free = None
    sky = "constant"
    if mode == "fixed_q":
        free = ["flux", "x", "y", "re", "angle", "sky"]
    if mode == "plane":
        sky = "plane"
    prob, truth = simulated_problem(profile, M, free=free, sky=sky)
    res = fit(prob, truth)
    par = _Param(prob, res.params)
    ev = _Evaluator(prob, par)
    z_opt = par.to_z(res.params)
    z_pert = z_opt + np.random.default_rng(1).normal(0, 0.05, z_opt.size) * np.maximum(
        1.0, np.abs(z_opt)) * np.array([0.01 if n in ("flux",) else 1.0 for n in par.znames])
    for z in (z_opt, z_pert):
        J = ev.jacobian(z)
        Jn = numeric_jacobian(ev, z)
        for i, name in enumerate(par.znames):
            scale = np.abs(Jn[:, i]).max()
            assert scale > 0, name
            assert np.abs(J[:, i] - Jn[:, i]).max() <= 2e-6 * scale, (name, profile, M, mode)


def _cache_dir(request):
    cache = getattr(request.config, "cache", None)   # absent under -p no:cacheprovider
    return None if cache is None else cache.mkdir("recovery")


@pytest.fixture(scope="module", params=[
    pytest.param(("exp", 80), id="exp-80"), pytest.param(("lux", 80), id="lux-80"),
    pytest.param(("exp", 200), id="exp-200", marks=pytest.mark.slow),
    pytest.param(("lux", 200), id="lux-200", marks=pytest.mark.slow)])
def recovery_records(request):
    profile, n_gal = request.param
    return recovery.run(profile, 6, n_gal=n_gal, cache_dir=_cache_dir(request))


def test_simulated_recovery(recovery_records):
    # Issue 4 acceptance: galaxies simulated with the independent brute-force renderer
    # (tests/brute.py), r_e 1.5-15 px, q 0.2-1, any angle, S/N 20-500, 3-component elliptical
    # PSF, fixed seed. No exception, non-convergence < 1 %; at S/N >= 100 the median r_e and
    # flux biases below 1 % and each pull standard deviation within 0.8-1.25.
    # (The flux truth is the exact profile's total, so the mixture's own flux deficit --
    # 0.14 % for exp M=6, +0.5 % for lux M=6 relative to the truncated lux total -- is inside
    # the bias and must still stay under 1 %.) The default suite fits the first 80 galaxies of
    # the seed (their images cached between runs); `make test-all` the full 200.
    recs = recovery_records
    n_exc, n_nc = recovery.failures(recs)
    assert n_exc == 0, [r["error"] for r in recs if r["error"]][:3]
    assert n_nc < 0.01 * len(recs)
    rows, n = recovery.summarise(recs, snr_min=100)
    assert n >= 0.25 * len(recs)  # about 45 % of a log-uniform 20-500 draw lies above 100
    for p in ("re", "flux"):
        assert abs(rows[p]["bias"]) < 0.01, (p, rows[p])
    for p, r in rows.items():
        # the std of N unit pulls scatters by 1/sqrt(2N): 0.8-1.25 is about +-3 of those at the
        # full run's N ~ 90 (angle ~ 80); the 80-galaxy run (N ~ 35-40) gets the same 3 sigma
        lo, hi = (0.8, 1.25) if len(recs) >= 200 else (1 - 3 / math.sqrt(2 * r["n"]),
                                                        1 + 3 / math.sqrt(2 * r["n"]))
        assert lo <= r["pull_std"] <= hi, (p, r, lo, hi)


def ic3478(**kw):
    return io_fits.read_image(f"{DATA}/imfit-sdss/ic3478rss_256.fits",
                              mask=f"{DATA}/imfit-sdss/ic3478rss_256_mask.fits", gain=4.725,
                              read_noise=4.3, sky_level=130.14, **kw)


@pytest.mark.parametrize("M", [6, 8])
def test_ic3478_exponential_against_imfit(M):
    # PROVENANCE.md s2 (imfit tutorial, IC 3478 256x256 + mask, no PSF, imfit's data-based noise
    # with gain 4.725, RN 4.3, sky 130.14): exponential X0 128.8793, Y0 129.0589 (1-based),
    # PA 18.7492 (CCW from +y), ell 0.220646, h 20.0684 px. Issue 4 tolerances: r_e = 1.67835 h
    # within 3 %, ell within 0.01, PA within 1 degree (after converting conventions); we also
    # hold the centre to 0.05 px. Measured when written (M=8): r_e 33.681 vs 33.682,
    # ell 0.22064, PA 18.749, centre within 0.001 px.
    prob = FitProblem.from_image_data(ic3478(), psf=None, profile="exp", M=M, sky="none")
    res = fit(prob)
    p = res.params
    # chi2/nu > 1.2 on this real galaxy: the formal errors are flagged as too small (issue 20)
    assert res.status == "converged" and res.flags == FitFlags.ERRORS_UNDERESTIMATED
    assert res.chi2_nu > 1.2
    assert p.re / (1.67835 * 20.0684) == pytest.approx(1.0, abs=0.03)
    assert 1 - p.q == pytest.approx(0.220646, abs=0.01)
    pa_galfit = (p.angle - 90.0 + 90.0) % 180.0 - 90.0
    assert pa_galfit == pytest.approx(18.7492, abs=1.0)
    assert p.x + 1 == pytest.approx(128.8793, abs=0.05)
    assert p.y + 1 == pytest.approx(129.0589, abs=0.05)
    # imfit's reduced chi^2 1.964467 with the same noise model: ours must be as good (the MoG is
    # a 1e-4 approximation of the exponential, so within 0.5 %)
    assert res.chi2_nu == pytest.approx(1.964467, rel=0.005)


def test_errors_scale_and_derived_quantities():
    prob, truth = simulated_problem()
    res = fit(prob, truth)
    e = res.errors()
    es = res.errors(scaled=True)
    assert es["re"] == pytest.approx(e["re"] * math.sqrt(res.chi2_nu))
    assert res.magnitude(25.0) == pytest.approx(25.0 - 2.5 * math.log10(res.params.flux))
    e1, e2 = res.e1e2
    assert math.hypot(e1, e2) == pytest.approx((1 - res.params.q) / (1 + res.params.q))
    assert res.re_circ == pytest.approx(res.params.re * math.sqrt(res.params.q))
    assert res.flux_target == pytest.approx(res.params.flux / 0.99865, rel=1e-3)
    assert res.nu == prob.n_good - 7
    np.testing.assert_allclose(res.covariance, res.covariance.T, rtol=1e-10, atol=0)


def test_callback_snapshots_and_cancel():
    prob, truth = simulated_problem()
    start = truth.replace(re=9.0, q=0.9, x=31.5, flux=2000.0)
    seen = []
    full = fit(prob, start, callback=seen.append)
    assert full.status == "converged" and len(seen) >= 2
    assert all(b.chi2 <= a.chi2 for a, b in zip(seen, seen[1:]))  # TRF accepts only decreases
    with pytest.raises(AttributeError):
        seen[0].chi2 = 0.0  # snapshots are immutable
    calls = []
    res = fit(prob, start, callback=calls.append, should_stop=lambda: len(calls) >= 1)
    assert res.status == "cancelled" and res.flags & FitFlags.CANCELLED
    assert len(calls) == 1
    # the cancelled result holds the best parameters so far (the first accepted step)
    assert res.params == calls[0].params


def test_fixed_parameters_stay_fixed_and_bounds_flagged():
    prob, truth = simulated_problem(free=["flux", "x", "y", "re", "sky"])
    start = truth.replace(q=0.5, angle=60.0)
    res = fit(prob, start)
    assert res.params.q == 0.5 and res.params.angle == 60.0
    assert res.free == ("flux", "x", "y", "re", "sky")
    assert res.errors()["q"] == 0.0
    prob2 = FitProblem.from_arrays(prob.image, weight=prob.weights, psf=PSF3, profile="exp", M=6,
                                   bounds={"re": (1.0, 4.0)})
    res2 = fit(prob2, truth.replace(re=3.0))
    assert res2.params.re == pytest.approx(4.0, rel=1e-5)
    assert res2.flags & FitFlags.AT_BOUND


def test_initial_guess_picks_the_central_target_not_a_brighter_star():
    # new-user report: on the DECaLS DR9 cutout (PROVENANCE.md s6) a bright star 70 px below the
    # target captured the start; the target segment at the stamp centre must win. The target is
    # at (126.45, 130.40) in the full cutout (pysersic autoprior); the start must be within 5 px.
    d = io_fits.read_image(f"{DATA}/pysersic-decals-dr9/cutout_59.1067_-30.4848.fits", band="r")
    g = initial_guess(FitProblem.from_image_data(d, profile="exp", M=6))
    assert math.hypot(g.x - 126.45, g.y - 130.40) < 5.0
    # and an explicit centre selects another object
    g2 = initial_guess(FitProblem.from_image_data(d, profile="exp", M=6), centre=(121.9, 58.3))
    assert math.hypot(g2.x - 121.9, g2.y - 58.3) < 1.0


def test_size_beyond_the_stamp_is_flagged():
    # new-user report: IC 3478's 64x64 cutout is all galaxy (imfit: r_e 60.8 px); a dev fit with a
    # free sky runs off to r_e ~ 690 px. That must carry RE_BEYOND_STAMP, not look clean.
    d = io_fits.read_image(f"{DATA}/imfit-sdss/ic3478rss_64x64.fits")
    res = fit(FitProblem.from_image_data(d, profile="dev", M=8))
    assert res.params.re > 64 and res.flags & FitFlags.RE_BEYOND_STAMP


def test_initial_guess_is_robust_to_a_bright_neighbour():
    prob, truth = simulated_problem()
    img = np.array(prob.image)
    img += render_model(dict(flux=30000.0, x=4.0, y=60.0, re=2.0, q=1.0, angle=0.0), "exp", 6,
                        PSF3, img.shape)
    p2 = FitProblem.from_arrays(img, weight=prob.weights, psf=PSF3, profile="exp", M=6)
    g = initial_guess(p2)
    assert abs(g.x - truth.x) < 1.5 and abs(g.y - truth.y) < 1.5
    assert 0.5 < g.re / truth.re < 2.0


def test_bad_input_is_flagged_not_raised():
    prob, truth = simulated_problem()
    img = np.array(prob.image)
    # all pixels masked
    allmask = FitProblem.from_arrays(img, mask=np.ones(img.shape), psf=PSF3)
    res = fit(allmask)
    assert res.status == "failed" and res.flags & FitFlags.TOO_FEW_PIXELS
    assert "usable pixels" in res.message
    # zero weights
    zero = FitProblem.from_arrays(img, ivar=np.zeros(img.shape), psf=PSF3)
    assert fit(zero).flags & FitFlags.TOO_FEW_PIXELS
    # an all-zero image: no signal, a failed result that says so
    flat = fit(FitProblem.from_arrays(np.zeros((40, 40)), sigma=np.ones((40, 40)), psf=PSF3))
    assert flat.status == "failed" and "no signal" in flat.message
    # pure noise: a result, with or without flags, never an exception
    noise = FitProblem.from_arrays(np.random.default_rng(5).normal(0, 1, (48, 48)),
                                   sigma=np.ones((48, 48)), psf=PSF3)
    rn = fit(noise)
    assert rn.status in ("converged", "max_evaluations", "failed")
    assert np.isfinite(rn.params.re)
    # galaxy at the stamp edge and a start outside the image
    edge, etruth = simulated_problem(x=1.0, y=62.0)
    re_ = fit(edge)
    assert re_.status in ("converged", "max_evaluations")
    out = fit(prob, truth.replace(x=-40.0, y=90.0))
    assert out.status in ("converged", "max_evaluations", "failed")
    assert out.flags & FitFlags.CENTRE_OUTSIDE or (abs(out.params.x - truth.x) < 1)
    # NaN pixels get zero weight; the user's arrays are not modified
    nanimg = img.copy()
    nanimg[10:20, 10:20] = np.nan
    keep = nanimg.copy()
    p = FitProblem.from_arrays(nanimg, sigma=np.ones(img.shape), psf=PSF3)
    assert np.count_nonzero(p.weights == 0) == 100
    np.testing.assert_array_equal(np.isnan(nanimg), np.isnan(keep))
    # programming errors do raise
    with pytest.raises(TypeError):
        fit(img)
    with pytest.raises(FitError, match="q = b/a"):
        GalaxyParams(flux=1, x=1, y=1, re=1, q=1.5, angle=0)
    with pytest.raises(FitError, match="no exp mixture with M = 5"):
        FitProblem.from_arrays(img, profile="exp", M=5)
    with pytest.raises(FitError, match="shape"):
        FitProblem.from_arrays(img, sigma=np.ones((3, 3)))


def test_model_image_matches_render():
    prob, truth = simulated_problem()
    m = model_image(prob, truth)
    assert np.allclose(m, render_model(truth.as_dict(), "exp", 6, PSF3, (64, 64)))
    assert isinstance(prob.psf, Mixture)


def composite_problem(seed=3):
    truth = GalaxyParams(flux=2000.0, x=40.3, y=39.6, re=2.5, q=0.85, angle=40.0, sky=0.5,
                         flux2=6000.0, re2=9.0, q2=0.45, angle2=55.0)
    img = (render_model(dict(flux=truth.flux, x=truth.x, y=truth.y, re=truth.re, q=truth.q,
                             angle=truth.angle, sky=truth.sky), "dev", 8, PSF3, (80, 80))
           + render_model(dict(flux=truth.flux2, x=truth.x, y=truth.y, re=truth.re2, q=truth.q2,
                               angle=truth.angle2), "exp", 6, PSF3, (80, 80)))
    rng = np.random.default_rng(seed)
    prob = FitProblem.from_arrays(img + rng.normal(0, 0.5, img.shape),
                                  sigma=np.full(img.shape, 0.5), psf=PSF3, profile="dev", M=8,
                                  profile2="exp", M2=6)
    return prob, truth


def test_composite_bulge_disk_jacobian_and_recovery():
    prob, truth = composite_problem()
    assert prob.free == ("flux", "x", "y", "re", "q", "angle", "sky", "flux2", "re2", "q2",
                         "angle2")
    res = fit(prob)  # from the moments-based guess
    assert res.status == "converged", res.message
    p = res.params
    # S/N ~ 1000 for this bulge + disk: recovered to a few per cent / degrees
    assert p.flux / (p.flux + p.flux2) == pytest.approx(0.25, abs=0.02)
    assert p.re == pytest.approx(truth.re, rel=0.05) and p.re2 == pytest.approx(truth.re2, rel=0.03)
    assert p.q2 == pytest.approx(truth.q2, abs=0.02) and p.angle2 == pytest.approx(55.0, abs=2.0)
    assert res.chi2_nu == pytest.approx(1.0, abs=0.1)
    # Jacobian of the composite (two eta blocks, shared centre), as in the single-profile test
    par = _Param(prob, res.params)
    ev = _Evaluator(prob, par)
    z = par.to_z(res.params)
    J, Jn = ev.jacobian(z), numeric_jacobian(ev, z)
    for i, name in enumerate(par.znames):
        assert np.abs(J[:, i] - Jn[:, i]).max() <= 2e-6 * np.abs(Jn[:, i]).max(), name
    np.testing.assert_allclose(model_image(prob, truth).sum(), 8000.0 + 0.5 * 80 * 80, rtol=0.02)


def test_decals_dr3_dev_against_the_tractor_catalogue():
    # PROVENANCE.md s1: DECaLS DR3 z-band CCD cutout (sky NOT subtracted), invvar (< 0.1 median
    # set to 0, as the Tractor example does), PSFEx evaluated at full-CCD (70, 1500); catalogue
    # DEV source: flux_z 62.73 nmgy (1 nmgy = 1361.7 counts), r_e 6.394", b/a 0.298,
    # PA 46.4 deg E of N, at (29.27, 49.12). The compact source the catalogue misses (45, 35) and
    # the catalogue's SIMP source (37.89, 16.73) are masked.
    from mogviewer.export import local_jacobian, pa_east_of_north
    D = f"{DATA}/tractor-decals-dr3"
    d = io_fits.read_image(f"{D}/decam-520206-S16-image-sub.fits", hdu=1,
                           noise=f"{D}/decam-520206-S16-invvar-sub.fits", noise_kind="ivar",
                           noise_hdu=1, min_ivar_fraction=0.1)
    psf = quiet_psf(f"{D}/decam-520206-S16-psfex.fits", position=(70, 1500), n_components=4)
    yy, xx = np.mgrid[:70, :70]
    mask = d.mask | ((xx - 45) ** 2 + (yy - 35) ** 2 < 36) | (
        (xx - 37.89) ** 2 + (yy - 16.73) ** 2 < 25)
    scale = d.pixel_scale_arcsec
    J, _, _ = local_jacobian(d.wcs, 29.27, 49.12)
    angles = np.linspace(0, 180, 18001)
    pa = np.array([pa_east_of_north(J, a)[0] for a in angles])
    cat_angle = float(angles[np.argmin(np.abs((pa - 46.4 + 90) % 180 - 90))])

    def problem(free=None):
        return FitProblem.from_arrays(d.image, ivar=d.ivar, mask=mask, psf=psf, profile="dev",
                                      M=8, free=free)
    frac = problem().profile_mixture().flux_fraction
    cat = GalaxyParams(flux=62.73 * 1361.7 * frac, x=29.27, y=49.12, re=6.394 / scale, q=0.298,
                       angle=cat_angle, sky=8239.0)
    # (1) the catalogue model on these pixels, sky fitted: chi^2/pix 1.13 in the PROVENANCE
    # cross-check with the same mask; we hold it to 0.02
    r_sky = fit(problem(["sky"]), cat)
    assert r_sky.chi2_nu == pytest.approx(1.13, abs=0.02)
    # (2) with the catalogue's shape, our flux agrees with the catalogue's (measured +2.1 %;
    # tolerance 5 %: one z exposure at airmass 2.1 against the DR3 multi-epoch fit)
    r_flux = fit(problem(["flux", "x", "y", "sky"]), cat)
    assert r_flux.flux_target / 1361.7 == pytest.approx(62.73, rel=0.05)
    # (3) all free: this single exposure prefers a smaller, rounder galaxy than the catalogue's
    # joint g/r/z multi-epoch fit (measured r_e 2.7", b/a 0.49, PA 76 deg, chi^2/nu 1.090): the
    # stamp spans only +-1.4 catalogue r_e, so the de Vaucouleurs wings trade against the sky.
    # We assert that the free fit is at least as good as the catalogue model on these pixels,
    # lands on the same centre (0.5 px), and is elongated in the same quadrant (PA 30-90).
    r_free = fit(problem(), cat)
    p = r_free.params
    assert r_free.status == "converged"
    assert r_free.chi2 <= r_flux.chi2
    assert math.hypot(p.x - 29.27, p.y - 49.12) < 0.5
    pa_fit = pa_east_of_north(local_jacobian(d.wcs, p.x, p.y)[0], p.angle)[0]
    assert 30 < pa_fit < 90 and p.q < 0.7
    assert 1.5 < p.re * scale < 6.4


def test_decals_dr9_r_band_disk_against_pysersic():
    # PROVENANCE.md s6: DECaLS DR9 r band (HDU 3 image + HDU 4 invvar, nanomaggies), crop
    # [68:188, 68:188], other sources masked, flat sky, coadd PSF (HDU 1 of copsf) -> 4-component
    # mixture. Published (pysersic joint fit): r_eff 6.666 px, n 0.796, ellip 0.285; the single-band
    # cross-check: r_eff 6.91, n 0.83, ellip 0.290, flux 25.40 nmgy, major axis -0.15 rad from +x,
    # centre (58.44, 62.41). We fit exp (n = 1; Sérsic n comes with issue 7), so r_e is expected
    # a little larger than the n ~ 0.8 value (measured 7.25 px, +8.8 %): tolerance 12 %.
    # Ellipticity within 0.015, angle within 2 deg, centre within 0.2 px, flux within 5 %.
    img, ivar, mask, psf = dr9_crop("r")
    res = fit(FitProblem.from_arrays(img, ivar=ivar, mask=mask, psf=psf, profile="exp", M=8))
    p = res.params
    assert res.status == "converged" and res.flags == FitFlags(0)
    assert p.re == pytest.approx(6.666, rel=0.12)
    assert 1 - p.q == pytest.approx(0.285, abs=0.015)
    assert (p.angle - math.degrees(-0.15) + 90) % 180 - 90 == pytest.approx(0.0, abs=2.0)
    assert math.hypot(p.x - 58.44, p.y - 62.41) < 0.2
    assert p.flux == pytest.approx(25.40, rel=0.05)
    assert res.chi2_nu == pytest.approx(1.0, abs=0.05)


# ------------------------------------------------------------------ code-review regressions
def _small_galaxy(psf):
    truth = dict(flux=100.0, x=15.0, y=15.0, re=4.0, q=0.5, angle=30.0)
    img = render_model(truth, "exp", 6, psf, (31, 31)) + np.random.default_rng(0).normal(
        0, 0.1, (31, 31))
    return img, np.full(img.shape, 0.1)


@pytest.mark.parametrize("with_psf", [False, True])
@pytest.mark.parametrize("kw", [dict(fixed=("angle",)), dict(bounds={"re": (0.5, 20)}),
                                dict(bounds={"q": (0.05, 1)})])
@pytest.mark.parametrize("q0", [1.0, 0.999, 0.9])
def test_round_start_with_fixed_or_bounded_shape(with_psf, kw, q0):
    # review: with a shape parameter fixed or bounded, a start at q = 1 used to stay there
    # (logistic map, zero derivative) or run to q ~ 1e-9 and raise ZeroDivisionError; the
    # galaxy has q = 0.5 (angle 30, so fixing the angle at the truth is harmless)
    psf = Mixture.isotropic([1.0], [2.0]) if with_psf else None
    img, sig = _small_galaxy(psf)
    res = fit(FitProblem.from_arrays(img, sigma=sig, psf=psf, **kw),
              GalaxyParams(flux=80, x=15, y=15, re=3, q=q0, angle=30))
    assert res.status == "converged", res.message
    assert res.params.q == pytest.approx(0.5, abs=0.05) and res.chi2_nu < 1.3


def test_degenerate_images_never_raise():
    # review: thin trial shapes (q ~ 1e-9) made the kernel divide by a zero determinant; any
    # numerical failure is a flagged result now (a 3x3 image, negative-only data, 1e200 scale)
    rng = np.random.default_rng(1)
    for img in (rng.normal(0, 1, (3, 3)), -np.abs(rng.normal(0, 1, (20, 20))) - 5,
                rng.normal(0, 1, (20, 20)) * 1e200):
        res = fit(FitProblem.from_arrays(img, sigma=np.ones(img.shape)))
        assert res.status in ("converged", "max_evaluations", "failed")
        assert res.params.q >= 1e-4


def test_bounds_are_validated_and_composite_names_accepted():
    img, sig = _small_galaxy(None)
    with pytest.raises(FitError, match="low < high"):
        FitProblem.from_arrays(img, sigma=sig, bounds={"re": (3.0, 3.0)})
    prob = FitProblem.from_arrays(img, sigma=sig, profile="dev", profile2="exp", fixed=("q2",))
    assert "q2" not in prob.free and "re2" in prob.free


def test_fixed_sky_starts_at_zero_and_negative_second_flux_is_flagged():
    img, sig = _small_galaxy(Mixture.isotropic([1.0], [2.0]))
    prob = FitProblem.from_arrays(img + 0.0, sigma=sig, fixed=("sky",),
                                  psf=Mixture.isotropic([1.0], [2.0]))
    assert initial_guess(prob).sky == 0.0
    psf = Mixture.isotropic([1.0], [2.0])
    ring = (render_model(dict(flux=1000, x=20, y=20, re=3, q=0.8, angle=30), "dev", 8, psf,
                         (41, 41))
            - render_model(dict(flux=150, x=20, y=20, re=8, q=0.6, angle=100), "exp", 6, psf,
                           (41, 41)) + np.random.default_rng(0).normal(0, 0.05, (41, 41)))
    res = fit(FitProblem.from_arrays(ring, sigma=np.full(ring.shape, 0.05), psf=psf,
                                     profile="dev", profile2="exp"),
              GalaxyParams(flux=1000, x=20, y=20, re=3, q=0.8, angle=30, flux2=50, re2=8, q2=0.6,
                           angle2=100))
    assert res.params.flux2 < 0 and res.flags & FitFlags.NEGATIVE_FLUX and not res.ok


def test_undersampled_flag_equals_the_eigenvalue_count_over_every_pair():
    """psf_flags skips the per-pair eigenvalues when Weyl's bound clears the threshold: the
    flag must equal the direct count (numpy's eigvalsh of every v_m S + C_k) on both sides of
    the threshold, with and without a PSF."""
    from mogviewer.ellipse import shape_matrix
    from mogviewer.fitting.flags import FitFlags
    from mogviewer.fitting.params import GalaxyParams
    from mogviewer.fitting.problem import UNDERSAMPLED_FRACTION, UNDERSAMPLED_SIGMA, psf_flags
    from mogviewer.render.exact import PIXEL_VAR

    rng = np.random.default_rng(3)
    img = np.zeros((16, 16))
    psfs = [None, Mixture.isotropic([0.7, 0.3], [0.05, 0.6])]
    seen = set()
    for psf in psfs:
        prob = FitProblem.from_arrays(img, sigma=np.ones_like(img), psf=psf, profile="exp", M=6)
        covs = (np.eye(2)[None] * PIXEL_VAR if psf is None else psf.covs)
        pa = np.ones(1) if psf is None else psf.amps / psf.amps.sum()
        prof = prob.profile_mixture()
        a = np.asarray(prof.amps) / np.sum(prof.amps)
        for _ in range(60):
            p = GalaxyParams(flux=1.0, x=7.5, y=7.5, re=float(np.exp(rng.uniform(-2.5, 2.5))),
                             q=float(rng.uniform(0.05, 1.0)), angle=float(rng.uniform(0, 180)))
            S = shape_matrix(p.re, p.q, p.angle)
            frac = sum(a[m] * pa[k] for m in range(len(a)) for k in range(len(pa))
                       if np.linalg.eigvalsh(prof.variances[m] * S + covs[k])[0]
                       < UNDERSAMPLED_SIGMA ** 2)
            want = frac > UNDERSAMPLED_FRACTION
            got = bool(psf_flags(prob, p) & FitFlags.UNDERSAMPLED)
            assert got == want, (psf, p)
            seen.add(want)
    assert seen == {True, False}     # both sides of the threshold were reached


def test_compiled_covariance_equals_numpy_inverse_and_refuses_the_same_matrices():
    """_covariance_from_normal (compiled) against numpy's inverse on well-conditioned normal
    matrices (to 1e-10 relative: a 7x7 inverse of condition <= 1e6 loses < 1e-10), and NaN
    with ok=False for a singular, a non-finite and a negative-diagonal matrix."""
    from mogviewer.fitting.solver import _covariance_from_normal

    rng = np.random.default_rng(8)
    for _ in range(20):
        J = rng.normal(size=(50, 7)) * np.exp(rng.uniform(-3, 3, 7))
        A = J.T @ J
        cov, ok = _covariance_from_normal(A)
        assert ok
        np.testing.assert_allclose(cov, np.linalg.inv(A), rtol=1e-10,
                                   atol=1e-10 * np.abs(np.linalg.inv(A)).max())
    bad = [np.ones((3, 3)), np.diag([1.0, np.inf, 1.0]), np.diag([1.0, -1.0, 1.0])]
    for A in bad:
        cov, ok = _covariance_from_normal(A)
        assert not ok and np.isnan(cov).all()



def test_a_fit_counts_the_usable_pixels_once(monkeypatch):
    # nu (usable pixels - free parameters) is counted once per fit and carried to the result
    # (counting 65k weights costs 30 us); the count stays a plain property, never cached on
    # the problem (a cache went stale when an API user changed the weights in place)
    import mogviewer.fitting.problem as problem_mod

    img = np.ones((16, 16))
    img[6:10, 6:10] += 50.0
    p = FitProblem.from_arrays(img, sigma=np.ones((16, 16)), profile="exp", M=4)
    counts = []
    real = np.count_nonzero
    monkeypatch.setattr(problem_mod.np, "count_nonzero",
                        lambda a, *k, **kw: counts.append(a.shape) or real(a, *k, **kw))
    r = fit(p)
    assert counts.count((16, 16)) == 1 and r.nu == 256 - len(p.free)
    w = np.ones((16, 16))
    q = FitProblem(img, w, None, "exp", 4)
    w[0] = 0.0                                         # a problem built by hand on its array
    assert q.n_good == 240


def test_a_needle_is_flagged_q_subpixel_and_a_round_galaxy_is_not():
    # r_e >= 0.5 px with the minor axis q r_e below 0.5 px: the width is unresolved (a thin
    # edge-on disk, or a star fitted as a galaxy); RE_SUBPIXEL stays for r_e < 0.5 px
    from mogviewer.render import render_model

    rng = np.random.default_rng(4)
    for q, want in ((0.06, True), (0.6, False)):
        truth = dict(flux=3000.0, x=20.3, y=19.6, re=5.0, q=q, angle=30.0, sky=0.0)
        img = render_model(truth, "exp", 6, PSF3, (40, 40)) + rng.normal(0, 1.0, (40, 40))
        res = fit(FitProblem.from_arrays(img, sigma=np.ones((40, 40)), psf=PSF3, profile="exp",
                                         M=6))
        assert res.status == "converged"
        assert res.params.re >= 0.5 and (res.params.q * res.params.re < 0.5) == want
        assert bool(res.flags & FitFlags.Q_SUBPIXEL) == want
        assert not res.flags & FitFlags.RE_SUBPIXEL
