"""Issue 16, render side: problems with no PSF (the pixel) and with a stamp used exactly
(issue 14) accumulate their normal equations like mixture-PSF problems.

References: the materialised basis (``render_galaxy`` with derivatives, the render path the fit
takes today) summed with numpy, as in ``test_solver.py``; and, through the fitter, the optimum of
the scipy path (``solver="scipy"``-equivalent: the materialised Jacobian), which issue 16 asks the
accumulated path to match to 1e-6.
"""

import math

import numpy as np
import pytest

from mogviewer.ellipse import shape_matrix
from mogviewer.fitting import FitProblem, fit, normal_eval
from mogviewer.mixture import Mixture
from mogviewer.profiles import get_mixture
from mogviewer.psf import read_psf
from mogviewer.render import render_galaxy, render_galaxy_dn
from mogviewer.render.api import _profile_packed
from mogviewer.render.exact import ExactPsf
from mogviewer.render.normal import DnPlane, NormalAccumulator, NormalPsf, normal_psf

REAL = __import__("pathlib").Path(__file__).parent / "data" / "real"
HSC_PSF = REAL / "pysersic-hsc" / "gal2_psf.npy"
MOFFAT = REAL / "imfit-sdss" / "psf_moffat_51.fits"
_exact = {}


def exact(K=3, path=HSC_PSF, *, double=False):
    key = (K, str(path), double)
    if key not in _exact:
        _exact[key] = ExactPsf.from_model(read_psf(path, n_components=K), double=double)
    return _exact[key]


def _cases():
    # re 1.5 px: luv's inner components are narrower than a pixel, the outer ones wider (the
    # pixel enters as the 36-Gaussian mixture and as one Gaussian in one pass); re 12: all wide
    yield "pixel, split", None, "luv", 1.5
    yield "pixel, wide", None, "exp", 12.0
    yield "exact", "exact", "dev", 2.5


@pytest.mark.parametrize("label,psf,profile,re", list(_cases()), ids=[c[0] for c in _cases()])
@pytest.mark.parametrize("n_sky", [0, 1, 3])
def test_accumulated_sums_match_the_render_path(label, psf, profile, re, n_sky):
    # sums over the same planes in another order: rounding ~ sqrt(N) 1e-16 of the scale
    # sqrt(G_aa G_bb), so 1e-12 of it holds, while a missing plane, pixel or weight fails by
    # far more (the residual planes alone are ~3 % of the image)
    rng = np.random.default_rng(n_sky)
    H, W = 48, 53
    psf = exact() if psf == "exact" else None
    prof = get_mixture(profile, 8 if profile != "exp" else 6)
    S = shape_matrix(re, 0.6, 70.0)
    data = render_galaxy(1000.0, 25.3, 22.1, S, prof, None, psf, (H, W)) + rng.normal(
        0, 0.5, (H, W))
    w = rng.uniform(0.5, 2, (H, W))
    w[rng.uniform(size=(H, W)) < 0.1] = 0
    acc = NormalAccumulator(data, w, n_ext=1, n_sky=n_sky)
    acc.ring = False        # the whole planes drawn too, to compare them
    acc.ext[:] = rng.normal(size=acc.ext.shape)
    coef = rng.normal(size=acc.B)
    coef[0] = 900.0
    npsf = normal_psf(psf)
    assert type(npsf) is NormalPsf
    for _ in range(2):          # the second call reuses the buffers (and the pixel's pairs)
        G, g, chi2 = acc(25.0, 22.4, (S[0, 0], S[0, 1], S[1, 1]), _profile_packed(prof), npsf,
                         coef)
    img, d = render_galaxy(1.0, 25.0, 22.4, S, prof, None, psf, (H, W), derivs=True)
    planes = np.concatenate([img[None], d])
    scale = np.abs(planes).max(axis=(1, 2))
    assert np.all(np.abs(acc.out - planes).max(axis=(1, 2)) <= 1e-13 * scale)
    yy, xx = np.mgrid[:H, :W]
    basis = [img, *d, *acc.ext] + [np.ones((H, W)), xx - (W - 1) / 2, yy - (H - 1) / 2][:n_sky]
    Bm = np.array([b.ravel() for b in basis]).T
    res = data.ravel() - Bm @ coef
    G0 = Bm.T @ (w.ravel()[:, None] * Bm)
    g0 = Bm.T @ (w.ravel() * res)
    c0 = (w.ravel() * res) @ res
    sc = np.sqrt(np.diag(G0))
    np.testing.assert_array_less(np.abs(G - G0), 1e-12 * np.outer(sc, sc))
    np.testing.assert_array_less(np.abs(g - g0), 1e-12 * sc * math.sqrt(c0))
    assert chi2 == pytest.approx(c0, rel=1e-12)


@pytest.mark.parametrize("psf", [None, "exact"])
def test_dn_plane_takes_every_psf(psf):
    from mogviewer.fitting.problem import _FamilyProfile

    psf = exact() if psf == "exact" else None
    fp = _FamilyProfile().at(2.7)
    S = shape_matrix(4.0, 0.5, 10.0)
    ref = render_galaxy_dn(1.0, 30.2, 31.7, S, fp, fp.damps, fp.dvariances, psf, (64, 70))
    out = np.full((64, 70), np.nan)
    DnPlane((64, 70))(out, 30.2, 31.7, (S[0, 0], S[0, 1], S[1, 1]), fp, normal_psf(psf))
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("n, re", [(0.7, 1.5), (2.7, 4.0), (5.5, 30.0)])
def test_dn_plane_with_a_mixture_psf_is_the_analytic_plane(n, re):
    # DnPlane takes d/dn as a central difference of one image render (DN_STEP); the analytic
    # plane (render_galaxy_dn: an image render plus a derivative render, combined) is the
    # reference. Measured: 1.4e-9-1.9e-9 of the peak at h = 1e-5 on these cases (9e-9 with
    # the Moffat stamp's mixture, n = 2.7, r_e 1.5 px); a wrong sign
    # or a missing da/dn or dv/dn term is O(1) of it. 3e-8: three times the worst seen.
    from mogviewer.fitting.problem import _FamilyProfile

    # a three-component PSF mixture written out (a fitted one costs 2-5 s to make)
    psf = Mixture([0.65, 0.27, 0.08], [[0.0, 0.0], [0.12, -0.08], [-0.3, 0.2]],
                  [shape_matrix(1.3, 0.85, 20.0), shape_matrix(2.2, 0.7, 75.0), 16.0 * np.eye(2)])
    fp = _FamilyProfile().at(n)
    S = shape_matrix(re, 0.5, 10.0)
    ref = render_galaxy_dn(1.0, 48.2, 47.7, S, fp, fp.damps, fp.dvariances, psf, (96, 100))
    out = np.full((96, 100), np.nan)
    DnPlane((96, 100))(out, 48.2, 47.7, (S[0, 0], S[0, 1], S[1, 1]), fp, normal_psf(psf))
    assert np.abs(out - ref).max() < 3e-8 * np.abs(ref).max()


def test_normal_psf_of_a_mixture_is_the_kernels_packed_array():
    from mogviewer.render.api import _psf_packed

    m = exact().mixture
    assert normal_psf(m) is _psf_packed(m)
    with pytest.raises(TypeError):
        NormalPsf(m)


def _spied(monkeypatch):
    """Records the PSFs the fitter hands to :func:`normal_psf` (the accumulating path)."""
    calls = []

    def spy(psf):
        calls.append(psf)
        return normal_psf(psf)
    monkeypatch.setattr(normal_eval, "normal_psf", spy)
    return calls


def _ic64():
    from mogviewer.io import read_image

    IC = REAL / "imfit-sdss"
    return read_image(IC / "ic3478rss_64x64.fits", noise=IC / "ic3478rss_64x64_sigma.fits")


@pytest.mark.parametrize("mode", ["pixel", "exact", "exact ser"])
def test_fits_on_accumulated_sums_reach_the_render_paths_optimum(mode, monkeypatch):
    # the same optimum as the materialised path (scipy's trf on render_galaxy's Jacobian) to
    # 1e-6 relative (issue 16's criterion); a wrong plane or sum moves it by > 1e-3. The FFT
    # term's image plane is in double precision, its derivative planes in single (the
    # default): with the image plane in single too, its rounding (~1e-7 of a term that is a few
    # per cent of the model) made chi2 noisy at ~1e-8 of itself on this 64 px image, and the
    # two drivers stopped 6e-6 apart in flux (1e-3 sigma); derivatives in single precision
    # only steer the steps, so the optimum holds to 1e-6 with them.
    # IC 3478 (64 px, imfit-sdss) for exp; a simulated Sersic n = 2.5 for the free index
    # (on the 64 px crop of IC 3478 a free n runs off to r_e ~ 250 px: no optimum to compare)
    if mode == "exact ser":
        rng = np.random.default_rng(11)
        img = render_galaxy(2000.0, 24.3, 23.6, shape_matrix(4.0, 0.7, 40.0), "ser", None,
                            exact(None, MOFFAT), (48, 48), n=2.5)
        sig = np.full(img.shape, 0.02 * img.max())
        prob = FitProblem.from_arrays(img + rng.normal(0, 1, img.shape) * sig, sigma=sig,
                                      psf=exact(None, MOFFAT), profile="ser",
                                      sky="constant")
    else:
        kw = dict(psf=exact(None, MOFFAT)) if mode == "exact" else {}
        prob = FitProblem.from_image_data(_ic64(), profile="exp", sky="constant", **kw)
    assert prob.psf_mode == ("pixel" if mode == "pixel" else "exact")
    ref = fit(prob, solver="scipy")        # the reference: trf on render_galaxy's Jacobian
    calls = _spied(monkeypatch)
    new = fit(prob)                        # LM on the accumulated normal equations
    assert calls and calls[0] is prob.psf        # the accumulating path was taken
    assert ref.status == new.status == "converged"
    for name in prob.free:
        a, b = getattr(ref.params, name), getattr(new.params, name)
        err = ref.errors()[name]
        assert abs(a - b) <= 1e-6 * max(abs(a), 1.0) or abs(a - b) < 1e-3 * err, name
    # each driver stops when a step changes chi2 by < ftol = 1e-9 of it
    assert new.chi2 == pytest.approx(ref.chi2, rel=1e-8)
    # errors to 1e-3: LM's covariance comes from the sums of its last evaluated point, one
    # Gauss-Newton step (taken unevaluated, ftol_predicted) from the point it reports; on the
    # Sersic case that step moves r_e by ~2e-3 sigma and the errors by up to 2.3e-4 of
    # themselves (LM at ftol = xtol = 1e-13 against the reference: 4e-7). A wrong sum or
    # plane moves them by percents.
    for name in prob.free:
        assert new.errors()[name] == pytest.approx(ref.errors()[name], rel=1e-3)
