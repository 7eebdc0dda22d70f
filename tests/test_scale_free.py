"""Issue 15: scale-free inputs. An image (and its noise) multiplied by 1e-120 or 1e+120, or by
1e-300 / 1e+300, is fitted in internal units and gives the same shape and a flux and sky scaled
by the same factor; ordinary data are not scaled at all (bit for bit)."""

import numpy as np
import pytest
from test_fitting import PSF3

from mogviewer.fitting import FitProblem, fit, initial_guess, model_image
from mogviewer.render import render_model
from mogviewer.sampling import sample

TRUTH = dict(flux=3000.0, x=15.6, y=16.3, re=4.0, q=0.6, angle=70.0, sky=1.0)


def _data(shape=(32, 32)):
    img = render_model(TRUTH, "exp", 6, PSF3, shape)
    return img + np.random.default_rng(7).normal(0.0, 1.0, shape), np.ones(shape)


def _problem(factor, kind="sigma", **kw):
    img, sig = _data()
    noise = {"sigma": lambda: sig * factor, "variance": lambda: (sig * factor) ** 2,
             "ivar": lambda: 1.0 / (sig * factor) ** 2}[kind]()
    return FitProblem.from_arrays(img * factor, psf=PSF3, profile="exp", M=6,
                                  **{kind: noise}, **kw)


def test_ordinary_data_are_not_scaled():
    assert _problem(1.0).scale == 1.0 and _problem(1e20).scale == 1.0


# every factor with a sigma map; as an inverse variance only 1e+-120, because 1/sigma^2 of a
# sigma of 1e+-300 is not a double (such data cannot come as ivar at all)
@pytest.mark.parametrize("factor, kind", [(f, "sigma") for f in (1e-120, 1e120, 1e-300, 1e300)]
                         + [(f, "ivar") for f in (1e-120, 1e120)])
def test_scaled_data_give_the_same_shape_and_a_scaled_flux(factor, kind):
    ref = fit(_problem(1.0))
    prob = _problem(factor, kind)
    assert prob.scale != 1.0 and np.all(np.isfinite(prob.weights)) and prob.n_good == 32 * 32
    res = fit(prob)
    assert res.status == "converged" and res.flags == ref.flags
    # shape, centre and chi2 are scale-free: the same to 1e-8 (the LM path's tolerance, not a
    # model difference: the internal data are the ordinary data times a power of two / 10^k)
    for n in ("x", "y", "re", "q", "angle"):
        assert getattr(res.params, n) == pytest.approx(getattr(ref.params, n), rel=1e-7), n
    assert res.chi2 == pytest.approx(ref.chi2, rel=1e-8)
    # flux, sky and their errors are in the caller's units: scaled by the same factor
    assert res.params.flux == pytest.approx(ref.params.flux * factor, rel=1e-7)
    assert res.params.sky == pytest.approx(ref.params.sky * factor, rel=1e-6)
    if 1e-150 < factor < 1e150:       # beyond, a flux's variance is not a double (1e300^2)
        assert res.errors()["flux"] == pytest.approx(ref.errors()["flux"] * factor, rel=1e-6)
    assert res.errors()["re"] == pytest.approx(ref.errors()["re"], rel=1e-6)
    # start and model_image speak the caller's units too
    assert initial_guess(prob).flux == pytest.approx(initial_guess(_problem(1.0)).flux * factor,
                                                     rel=1e-9)
    model = model_image(prob, res.params)
    assert np.sum(prob.weights * (prob.image - model) ** 2) == pytest.approx(res.chi2, rel=1e-9)


def test_bounds_and_start_in_caller_units_and_posterior_scaled_back():
    factor = 1e-120
    ref_prob = _problem(1.0)
    ref = fit(ref_prob)
    prob = _problem(factor, bounds={"flux": (0.0, 1e4 * factor)})
    res = fit(prob, ref.params.replace(flux=ref.params.flux * factor, sky=ref.params.sky * factor))
    assert res.params.flux == pytest.approx(ref.params.flux * factor, rel=1e-7)
    post = sample(prob, res, n_steps=200, burn=50)
    ref_post = sample(ref_prob, ref, n_steps=200, burn=50)
    lo, mid, hi = post.interval("flux")
    rlo, rmid, rhi = ref_post.interval("flux")
    assert mid == pytest.approx(rmid * factor, rel=1e-3)
    assert hi - lo == pytest.approx((rhi - rlo) * factor, rel=0.05)
    assert post.interval("re")[1] == pytest.approx(ref_post.interval("re")[1], rel=1e-3)


@pytest.mark.parametrize("factor", [1e-120, 1e120])
def test_command_line_fits_a_file_in_units_of_1e120(tmp_path, factor):
    # the same galaxy in ordinary units and times 1e+-120 (image and sigma map): the same
    # shape, and flux, sky and their errors times the factor in the CSV
    from astropy.io import fits
    from astropy.table import Table

    from mogviewer.cli import main

    img, sig = _data()
    rows = []
    for k, f in (("ref", 1.0), ("scaled", factor)):
        fits.writeto(tmp_path / f"{k}.fits", img * f)
        fits.writeto(tmp_path / f"{k}_sig.fits", sig * f)
        out = tmp_path / f"{k}.csv"
        assert main(["fit", str(tmp_path / f"{k}.fits"), "--noise", str(tmp_path / f"{k}_sig.fits"),
                     "--csv", str(out), "--quiet"]) == 0
        rows.append(Table.read(out, format="ascii.csv", comment="#")[0])
    ref, row = rows
    assert row["status"] == "converged" and row["flags"] == ref["flags"]
    for c in ("x", "y", "re_pix", "q", "pa_img_deg", "chi2_nu", "re_pix_err"):
        assert row[c] == pytest.approx(ref[c], rel=1e-6), c
    for c in ("flux", "flux_err", "sky", "flux_err_scaled"):
        assert row[c] == pytest.approx(ref[c] * factor, rel=1e-6), c


def _data_scale_by_median(image, noise):
    """The scale as it was computed before the extremes' shortcut: always from the median."""
    import math

    from mogviewer.fitting.problem import SCALE_FREE_RANGE, _median
    typical = None
    if noise is not None:
        kind, arr = noise
        with np.errstate(all="ignore"):
            a = np.asarray(arr, dtype=float)
            a = a[np.isfinite(a) & (a > 0)]
            if a.size:
                med = _median(a)
                typical = {"sigma": med, "variance": math.sqrt(med)}.get(kind, None)
                if typical is None:
                    typical = 1.0 / math.sqrt(med) if med > 0 else None
    if typical is None or not (math.isfinite(typical) and typical > 0):
        a = np.abs(image[np.isfinite(image) & (image != 0)])
        typical = _median(a) if a.size else 1.0
    lo, hi = SCALE_FREE_RANGE
    if lo <= typical <= hi or not (math.isfinite(typical) and typical > 0):
        return 1.0
    return 2.0 ** round(math.log2(typical))


def test_the_extremes_shortcut_decides_as_the_median():
    """_data_scale skips the median when the extremes' typical values are in range: it must
    return what the median gives, for every kind of noise map and for the image alone, with
    values inside, across and beyond the range's ends."""
    from mogviewer.fitting.problem import _data_scale
    rng = np.random.default_rng(11)
    exps = [-300, -160, -60, -31, -30, -29, -15, 0, 15, 29, 30, 31, 60, 160, 300]
    n_checked = 0
    for _ in range(400):
        lo_e, hi_e = sorted(rng.choice(exps, 2))
        vals = 10.0 ** rng.uniform(lo_e, hi_e, 64)
        vals[rng.random(64) < 0.1] = rng.choice([0.0, -1.0, np.nan, np.inf])
        img = vals.reshape(8, 8) * rng.choice([-1.0, 1.0], (8, 8))
        for noise in (None, ("sigma", vals), ("variance", vals), ("ivar", vals),
                      ("weight", vals)):
            want = _data_scale_by_median(img, noise)
            assert _data_scale(img, noise) == want, (lo_e, hi_e, noise and noise[0])
            n_checked += 1
    assert n_checked == 2000
