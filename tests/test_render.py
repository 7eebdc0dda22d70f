"""Renderer: numba vs numpy reference, flux, derivatives, and an independent brute force."""

import importlib

import numpy as np
import pytest
from brute import exact_galaxy_image

from mogviewer.ellipse import shape_matrix
from mogviewer.mixture import Mixture
from mogviewer.profiles import PUBLISHED, get_mixture
from mogviewer.render import kernels as RK
from mogviewer.render import reference as RR

# the package, not the function of the same name: ``from mogviewer import render`` returns the
# function when mogviewer's lazy top-level API (PEP 562) was asked for ``render`` first
R = importlib.import_module("mogviewer.render")

PSF3 = Mixture([0.6, 0.3, 0.1], [[0.0, 0.0], [0.15, -0.1], [-0.2, 0.1]],
               [1.2 * np.eye(2), shape_matrix(2.0, 0.8, 30.0), 9.0 * np.eye(2)])


def random_mixture(rng, shape):
    K = int(rng.integers(1, 6))
    covs = [shape_matrix(rng.uniform(0.3, 25), 0.05 if k == 0 else rng.uniform(0.05, 1),
                         rng.uniform(0, 180)) for k in range(K)]
    means = np.column_stack([rng.uniform(-10, shape[1] + 10, K),
                             rng.uniform(-10, shape[0] + 10, K)])
    return Mixture(rng.uniform(0.1, 2, K), means, covs), rng.uniform(0.1, 2, K)


def test_numba_matches_numpy_for_100_random_mixtures():
    # Issue 2: numba vs numpy to 1e-12 of peak for 100 random mixtures including q = 0.05 (every
    # mixture has one q = 0.05 component at a random angle, widths 0.3-25 px, centres also
    # outside the stamp). Both evaluate the same formula in float64; the recurrences in the
    # kernel accumulate ~1e-14 relative error, so 1e-12 has a 10x margin and any algebra
    # slip is O(1). "Peak" is the mixture's peak (its value at the brightest component centre,
    # which may lie off the stamp): the image kernel evaluates whole blocks, so it also adds
    # pixels just beyond the exp(-36) cut that the reference leaves at 0 -- each below 2.3e-16
    # of its component's peak, but 1e-9 of a stamp that holds only a far tail. The derivative
    # kernel's passes are likewise padded to whole vectors with values beyond the cut, so each
    # plane is compared with its own peak over the whole plane (``plane_peaks``).
    rng = np.random.default_rng(20131210)
    shape = (64, 80)
    worst = 0.0
    for _ in range(100):
        m, vfac = random_mixture(rng, shape)
        a = R.render(m, shape)
        b = R.render(m, shape, backend="numpy")
        assert np.isfinite(a).all()
        peak = max(np.abs(b).max(), m.evaluate(m.means[:, 0], m.means[:, 1]).max())
        worst = max(worst, np.abs(a - b).max() / peak)
        arr = RR._component_arrays(m.amps, m.means, m.covs)
        o1 = np.zeros((6,) + shape)
        o2 = np.zeros((6,) + shape)
        RK._mixture_kernel(*arr, vfac, o1, True, RK._scratch.full(shape[1], len(arr[0])))
        RR._render_numpy(*arr, vfac, o2, True)
        peaks = plane_peaks(arr, vfac, shape)
        for p in range(6):
            worst = max(worst, np.abs(o1[p] - o2[p]).max() / peaks[p])
    assert worst < 1e-12


def plane_peaks(arr, vfac, shape, pad=80):
    """Each of the six planes' largest magnitude over the whole plane: the numpy reference on a
    stamp grown by ``pad`` px on every side (components are centred at most 10 px off the
    stamp, and a plane's extremum lies within ~2 sigma <= 50 px of its centre)."""
    amp, mx, my, cxx, cxy, cyy = arr
    big = np.zeros((6, shape[0] + 2 * pad, shape[1] + 2 * pad))
    RR._render_numpy(amp, mx + pad, my + pad, cxx, cxy, cyy, vfac, big, True)
    return np.abs(big).reshape(6, -1).max(axis=1)


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 90.0, 133.0, 179.0])
def test_extremely_elongated_component_any_angle(angle):
    # q = 0.05 with sigma_major 30 px: the separate factors of exp(A dx^2 + B dx dy + C dy^2)
    # would overflow; the blocked, completed-square kernel must stay finite and exact.
    m = Mixture([1.0], [[260.3, 259.7]], [shape_matrix(30.0, 0.05, angle)])
    a = R.render(m, (521, 521))
    b = R.render(m, (521, 521), backend="numpy")
    assert np.isfinite(a).all()
    assert np.abs(a - b).max() <= 1e-12 * b.max()
    # minor sigma 1.5 px (aliasing of the pixel-centre sum < 1e-15) and the 8.5-sigma box fits:
    # the sum is the integral
    assert a.sum() == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("profile,M", [("exp", 6), ("dev", 8), ("lux", 6), ("luv", 8)])
def test_rendered_flux_equals_requested_flux(profile, M):
    # Issue 2: flux of a rendered model equals the requested flux to 1e-6 for a galaxy well
    # inside the stamp. r_e = 3 px, q = 0.6, with PSF3 (narrowest component sigma ~1.1 px, so
    # pixel-centre sampling of every convolved Gaussian aliases < 1e-8); the widest luv
    # component (2.9 r_e, ~9 px) cut at 8.5 sigma fits in 192 px.
    flux = 1234.5
    img = R.render_model(dict(flux=flux, x=95.3, y=96.8, re=3.0, q=0.6, angle=40.0),
                         profile, M, PSF3, (192, 192))
    assert img.sum() == pytest.approx(flux, rel=1e-6)


PARAMS = dict(flux=500.0, x=31.4, y=29.2, re=5.0, q=0.55, angle=62.0, sky=3.0)


@pytest.mark.parametrize("profile,M", sorted(PUBLISHED))
@pytest.mark.parametrize("point", ["base", "elongated"])
def test_analytic_derivatives_match_central_differences(profile, M, point):
    # Analytic d(model)/d(flux, x, y, re, q, angle, sky) against central differences of the same
    # image. Steps are ~1e-5 of each parameter's scale: truncation error ~(h/scale)^2 ~ 1e-10
    # and rounding ~1e-16/1e-5 = 1e-11 relative to the peak derivative, so 1e-6 of each plane's
    # peak is a safe bound while a wrong factor or sign fails by orders of magnitude.
    p = dict(PARAMS)
    if point == "elongated":
        p.update(q=0.12, angle=147.0, re=9.0, x=33.9)
    img, jac = R.render_model(p, profile, M, PSF3, (64, 64), jacobian=True)
    steps = dict(flux=1e-3, x=1e-5, y=1e-5, re=1e-5, q=1e-6, angle=1e-4, sky=1e-3)
    for name, h in steps.items():
        hi = dict(p, **{name: p[name] + h})
        lo = dict(p, **{name: p[name] - h})
        num = (R.render_model(hi, profile, M, PSF3, (64, 64))
               - R.render_model(lo, profile, M, PSF3, (64, 64))) / (2 * h)
        scale = np.abs(num).max()
        assert scale > 0
        assert np.abs(jac[name] - num).max() <= 1e-6 * scale, name


def test_derivatives_without_psf_and_shape_planes():
    S = shape_matrix(4.0, 0.5, 20.0)
    img, d = R.render_galaxy(100.0, 20.2, 19.7, S, "exp", 6, None, (40, 40), derivs=True)
    img_np, d_np = R.render_galaxy(100.0, 20.2, 19.7, S, "exp", 6, None, (40, 40), derivs=True,
                                   backend="numpy")
    np.testing.assert_allclose(d, d_np, atol=1e-12 * np.abs(d_np).max())
    h = 1e-6
    for i, (a, b) in enumerate([(0, 0), (0, 1), (1, 1)]):
        Sp = S.copy()
        Sm = S.copy()
        Sp[a, b] += h
        Sm[a, b] -= h
        if a != b:
            Sp[b, a] += h
            Sm[b, a] -= h
        num = (R.render_galaxy(100.0, 20.2, 19.7, Sp, "exp", 6, None, (40, 40))
               - R.render_galaxy(100.0, 20.2, 19.7, Sm, "exp", 6, None, (40, 40))) / (2 * h)
        assert np.abs(d[2 + i] - num).max() <= 1e-6 * np.abs(num).max()


def test_luv8_against_brute_force_exact_profile():
    # Issue 2: the luv M=8 galaxy convolved with a Gaussian PSF against an independent brute
    # force (exact luv profile point-sampled 9x finer, FFT-convolved, read at pixel centres;
    # tests/brute.py). Measured when written: max |difference| = 2.85e-4 of the peak (rms
    # 1.26e-4), unchanged from 5x to 15x supersampling, so it is the mixture's approximation
    # error (badness 8.4e-6), not the brute force's. Bound: 5e-4 of peak.
    prof = get_mixture("luv", 8)
    flux, re, q, angle, sigma = 1000.0, 6.0, 0.7, 30.0, 1.5
    shape, x0, y0 = (96, 96), 47.3, 48.6
    mog = R.render_model(dict(flux=flux, x=x0, y=y0, re=re, q=q, angle=angle), "luv", 8,
                         Mixture.isotropic([1.0], [sigma ** 2]), shape)
    ie = flux * prof.ie_factor / (q * re * re)
    exact = exact_galaxy_image("luv", ie, x0, y0, re, q, angle, shape, sigma, s=9)
    frac = np.abs(mog - exact).max() / exact.max()
    assert frac < 5e-4
    # and the brute force is not trivially equal: a wrong angle convention would be far off
    wrong = exact_galaxy_image("luv", ie, x0, y0, re, q, angle + 90, shape, sigma, s=5)
    assert np.abs(mog - wrong).max() / exact.max() > 1e-2


def test_out_buffer_reuse_and_bad_shapes():
    buf = np.full((6, 32, 32), 7.0)
    img = R.render_galaxy(10.0, 16, 16, shape_matrix(3, 0.5, 10), "exp", 4, PSF3, (32, 32),
                          out=buf)
    fresh = R.render_galaxy(10.0, 16, 16, shape_matrix(3, 0.5, 10), "exp", 4, PSF3, (32, 32))
    np.testing.assert_array_equal(img, fresh)
    with pytest.raises(ValueError, match="out must be"):
        R.render_galaxy(10.0, 16, 16, np.eye(2), "exp", 4, PSF3, (32, 31), out=buf)
    with pytest.raises(ValueError, match="shape must be positive"):
        R.render(PSF3, (0, 10))
    with pytest.raises(ValueError, match="unknown backend"):
        R.render(PSF3, (10, 10), backend="gpu")


def test_galaxy_outside_the_stamp_renders_zero_or_tail():
    img = R.render_model(dict(flux=1.0, x=-500.0, y=20.0, re=2.0, q=0.5, angle=0.0), "exp", 6,
                         PSF3, (40, 40))
    assert np.all(img == 0.0)


def test_galaxy_mixture_matches_render():
    p = dict(flux=50.0, x=20.0, y=21.0, re=4.0, q=0.5, angle=33.0)
    mix = R.galaxy_mixture(p, "dev", 8, PSF3)
    assert len(mix) == 24 and mix.total == pytest.approx(50.0)
    np.testing.assert_allclose(R.render(mix, (40, 40)), R.render_model(p, "dev", 8, PSF3, (40, 40)),
                               atol=1e-12 * 50)


def test_derivative_with_respect_to_a_profile_parameter():
    # render_galaxy_dn: d image / d n for a family whose amplitudes (unit sum) and variances
    # depend on n, against central differences of render_galaxy. A synthetic smooth family is
    # used (the Sérsic family plugs in the same way): a_m(n) ~ a0_m exp(c_m n),
    # v_m = v0_m exp(d_m n).
    from types import SimpleNamespace
    base = get_mixture("dev", 8)
    c = np.linspace(-0.5, 0.5, 8)
    dd = np.linspace(0.3, -0.2, 8)

    def fam(n):
        raw = base.amps * np.exp(c * n)
        a = raw / raw.sum()
        da = a * (c - (a * c).sum())
        v = base.variances * np.exp(dd * n)
        return SimpleNamespace(amps=a, variances=v), da, v * dd

    n0, h = 0.7, 1e-5
    S = shape_matrix(5.0, 0.6, 35.0)
    prof, da, dv = fam(n0)
    for backend in ("numba", "numpy"):
        ana = R.render_galaxy_dn(300.0, 30.3, 31.8, S, prof, da, dv, PSF3, (64, 64),
                                 backend=backend)
        num = (R.render_galaxy(300.0, 30.3, 31.8, S, fam(n0 + h)[0], None, PSF3, (64, 64))
               - R.render_galaxy(300.0, 30.3, 31.8, S, fam(n0 - h)[0], None, PSF3, (64, 64))
               ) / (2 * h)
        # central differences: truncation ~h^2 ~ 1e-10, rounding ~1e-16/1e-5 relative to the
        # image: 1e-6 of the derivative's peak is safe; dropping either term fails by > 1e-2
        assert np.abs(ana - num).max() <= 1e-6 * np.abs(num).max(), backend


def test_image_kernel_adds_below_the_cut_only_at_the_cut_level():
    # The image kernel evaluates whole blocks (four rows per pass), so beside the exp(-36)
    # ellipse it may add pixels the numpy reference leaves at 0. Each must be below exp(-36) of
    # its component's peak (plus rounding): here a component centred 20 px off the stamp, whose
    # visible tail is ~1e-10 of its peak, is the worst case for a comparison scaled to the stamp.
    m = Mixture([0.18], [[-4.65, 50.7]], [[[0.968, 9.598], [9.598, 215.1]]])
    a = R.render(m, (64, 80))
    b = R.render(m, (64, 80), backend="numpy")
    peak = m.evaluate(-4.65, 50.7)
    assert np.isfinite(a).all()
    assert b.max() > 1e-11 * peak          # the stamp holds a real (if faint) tail
    assert np.abs(a - b).max() <= np.exp(-36.0) * peak
    inside = b > 0
    assert np.abs(a - b)[inside].max() <= 1e-12 * b.max()


def test_derivative_planes_add_below_the_cut_only_at_the_cut_level():
    # The derivative kernel pads each pass to whole 8-wide vectors (at least two), so pixels
    # just outside a component's exp(-36) ellipse may receive its (true, below-cut) values where
    # the numpy reference has 0. The worst case for a stamp-scaled comparison is a component
    # whose stamp holds only a faint tail: the same one as for the image kernel, and a small
    # one whose whole ellipse is narrower than one padded pass.
    for mean, cov in (([-4.65, 50.7], [[0.968, 9.598], [9.598, 215.1]]),
                      ([40.2, 30.7], [[0.09, 0.02], [0.02, 0.05]])):
        arr = RR._component_arrays([0.18], [mean], [cov])
        vfac = np.array([1.3])
        o1 = np.zeros((6, 64, 80))
        o2 = np.zeros((6, 64, 80))
        RK._mixture_kernel(*arr, vfac, o1, True, RK._scratch.full(80, 1))
        RR._render_numpy(*arr, vfac, o2, True)
        peaks = plane_peaks(arr, vfac, (64, 80))
        assert np.isfinite(o1).all()
        for p in range(6):
            # below the cut a plane is at most exp(-36) x its component's peak value times its
            # factor (|u| ~ 8.5 sigma^-1, u^2 ~ 72 sigma^-2), i.e. < 1e-13 of the plane's peak
            assert np.abs(o1[p] - o2[p]).max() <= 1e-13 * peaks[p], p
            inside = o2[p] != 0
            assert np.abs(o1[p] - o2[p])[inside].max() <= 1e-12 * np.abs(o2[p]).max(), p


def test_out_must_be_writeable_and_contiguous_every_call():
    # A read-only buffer is refused with the same message as any unusable one (numba would
    # otherwise fail to compile for it), and so is a buffer whose layout changed after a call.
    S = shape_matrix(5, 0.5, 30)
    ro = np.zeros((6, 20, 30))
    ro.setflags(write=False)
    for derivs in (False, True):
        with pytest.raises(ValueError, match="writeable C-contiguous"):
            R.render_galaxy(1.0, 10.3, 8.7, S, "exp", 6, None, (20, 30), derivs=derivs, out=ro)
    buf = np.zeros((6, 20, 30))
    R.render_galaxy(1.0, 10.3, 8.7, S, "exp", 6, None, (20, 30), derivs=True, out=buf)
    buf.setflags(write=False)
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        R.render_galaxy(1.0, 10.3, 8.7, S, "exp", 6, None, (20, 30), derivs=True, out=buf)


def test_tall_stamp_with_nearly_aligned_large_component_keeps_1e12():
    # Within a block of rows the column x cross vector is advanced by one multiplication per
    # row; before blocks were capped at RESTART_ROWS rows its rounding error grew over 3000 rows
    # to 7e-12 of the peak for this case (found in review, against a long-double reference).
    import dataclasses
    one = dataclasses.replace(get_mixture("exp", 6), amps=np.ones(1), variances=np.ones(1))
    S = shape_matrix(1000.0, 0.9, 0.01)
    a, da = R.render_galaxy(1.0, 150.3, 1500.7, S, one, None, None, (3001, 300), derivs=True)
    b, db = R.render_galaxy(1.0, 150.3, 1500.7, S, one, None, None, (3001, 300), derivs=True,
                            backend="numpy")
    assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()
    for p in range(5):
        assert np.abs(da[p] - db[p]).max() <= 1e-12 * np.abs(db[p]).max()


def test_profile_given_as_object_is_never_packed_from_a_stale_cache():
    # The packed profile is cached only for arrays that own their data and are read-only; a
    # read-only *view* of arrays that are then changed must be repacked (found in review).
    import dataclasses
    S = shape_matrix(5, 0.5, 30)
    base = get_mixture("exp", 6)
    a, v = np.array(base.amps), np.array(base.variances)
    av, vv = a.view(), v.view()
    av.flags.writeable = vv.flags.writeable = False
    prof = dataclasses.replace(base, amps=av, variances=vv)
    R.render_galaxy(1.0, 10.3, 8.7, S, prof, None, None, (20, 30))
    v *= 4.0
    got = R.render_galaxy(1.0, 10.3, 8.7, S, prof, None, None, (20, 30))
    ref = R.render_galaxy(1.0, 10.3, 8.7, S, prof, None, None, (20, 30), backend="numpy")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.max())
    # a numpy scalar n names the same Sérsic mixture as the float
    np.testing.assert_array_equal(
        R.render_galaxy(1.0, 10.3, 8.7, S, "ser", 10, None, (20, 30), n=np.array(2.0)),
        R.render_galaxy(1.0, 10.3, 8.7, S, "ser", 10, None, (20, 30), n=2.0))


def test_noalias_helper_marks_array_arguments_noalias():
    """The derivative kernel's group pass relies on ``_njit_noalias`` to drop LLVM's run-time
    overlap checks (0.88-0.96 of the derivative time, see render.py); if a numba release
    changed the compiler hook it uses, the kernel would stay correct but silently slower.
    Compile a two-array function with it and look for the attribute on the arrays' data
    pointers in the LLVM IR; a plain ``numba.njit`` must not have it (else this test would
    prove nothing)."""
    import re

    import numba  # a hard dependency (pyproject.toml)

    def copy(a, b):
        for i in range(a.shape[0]):
            b[i] = a[i]

    def data_pointers_noalias(f):
        x, y = np.arange(4.0), np.zeros(4)
        f(x, y)
        np.testing.assert_array_equal(y, x)
        ir = f.inspect_llvm(f.signatures[0])
        define = next(ln for ln in ir.splitlines() if ln.startswith("define") and "copy" in ln)
        args = define[define.index("("):]
        # an array argument is (meminfo, parent, nitems, itemsize, data, shape, strides)
        return [bool(re.search(rf"ptr noalias[^%,]*%arg\.{v}\.4\b", args)) for v in "ab"]

    assert data_pointers_noalias(RK._njit_noalias()(copy)) == [True, True]
    assert data_pointers_noalias(numba.njit(copy)) == [False, False]
