"""Issue 20: errors that say when they are wrong. ``ERRORS_UNDERESTIMATED`` when chi2/nu is far
above 1, and every error also scaled by sqrt(chi2/nu) in its own ``_err_scaled`` column."""

import math

import numpy as np
import pytest
from test_fitting import PSF3

from mogviewer import export
from mogviewer.fitting import FitFlags, FitProblem, fit
from mogviewer.fitting.flags import CHI2NU_FLOOR, chi2nu_threshold
from mogviewer.render import render_model

TRUTH = dict(flux=3000.0, x=15.6, y=16.3, re=4.0, q=0.6, angle=70.0, sky=1.0)


def _fit(true_sigma, declared_sigma, seed, shape=(32, 32)):
    img = render_model(TRUTH, "exp", 6, PSF3, shape)
    img = img + np.random.default_rng(seed).normal(0.0, true_sigma, shape)
    prob = FitProblem.from_arrays(img, sigma=np.full(shape, declared_sigma), psf=PSF3,
                                  profile="exp", M=6)
    return prob, fit(prob)


def test_threshold_is_five_sigma_of_chi2_with_a_floor():
    # sqrt(2/nu) is the standard deviation of chi2/nu for nu degrees of freedom
    assert chi2nu_threshold(100) == pytest.approx(1 + 5 * math.sqrt(2 / 100))     # 1.707
    assert chi2nu_threshold(4089) == pytest.approx(1 + CHI2NU_FLOOR)             # 64x64
    assert chi2nu_threshold(0) == math.inf


@pytest.mark.parametrize("ratio, flagged", [(1.0, False), (1.1, False), (1.6, True),
                                            (4.0, True)])
def test_flag_follows_chi2_nu(ratio, flagged):
    # noise sigma sqrt(ratio) times the declared one: chi2/nu ~ ratio (32x32: nu = 1017,
    # 5 sqrt(2/nu) = 0.22 -> threshold 1.22); 1.1 stays quiet, 1.6 and 4 are flagged
    prob, res = _fit(math.sqrt(ratio), 1.0, seed=1)
    assert res.chi2_nu == pytest.approx(ratio, rel=0.1)
    assert bool(res.flags & FitFlags.ERRORS_UNDERESTIMATED) is flagged
    assert res.status == "converged"


def test_scaled_errors_match_the_scatter_when_the_noise_map_is_wrong():
    # the noise is twice the declared sigma: the formal errors are half the scatter of the
    # best fits over realisations, the scaled ones (x sqrt(chi2/nu) ~ 2) equal it. 60
    # realisations measure a standard deviation to ~9 % (1/sqrt(2 x 59)), so 25 % tells the
    # two apart (a factor 2) with room for the scatter.
    fits = [_fit(2.0, 1.0, seed=s)[1] for s in range(60)]
    for name in ("re", "q", "flux", "x"):
        scatter = np.std([getattr(r.params, name) for r in fits], ddof=1)
        formal = np.median([r.errors()[name] for r in fits])
        scaled = np.median([r.errors(scaled=True)[name] for r in fits])
        assert scaled / scatter == pytest.approx(1.0, abs=0.25), name
        assert formal / scatter == pytest.approx(0.5, abs=0.15), name
    assert all(r.flags & FitFlags.ERRORS_UNDERESTIMATED for r in fits)


@pytest.mark.parametrize("scale_errors", [False, True])
def test_err_scaled_columns_are_err_times_sqrt_chi2_nu(scale_errors):
    prob, res = _fit(2.0, 1.0, seed=3)
    row = export.result_to_row(res, problem=prob, scale_errors=scale_errors, zeropoint=25.0)
    k = math.sqrt(res.chi2_nu)
    unscaled = res.errors()
    assert row["re_pix_err_scaled"] == pytest.approx(unscaled["re"] * k, rel=1e-12)
    assert row["flux_mog_err_scaled"] == pytest.approx(unscaled["flux"] * k, rel=1e-12)
    # every _err column has its scaled twin: the same number with scale_errors, else x k
    n = 0
    for name, v in row.items():
        if name.endswith("_err") and v is not None and np.isfinite(v):
            want = v if scale_errors else v * k
            assert row[name + "_scaled"] == pytest.approx(want, rel=1e-12), name
            n += 1
    assert n >= 15            # x, y, x_fits, ..., sky: 17 for this model (no WCS)
    assert "ERRORS_UNDERESTIMATED" in row["flag_names"]
