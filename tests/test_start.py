"""initial_guess: the same starts, to rounding, as the straightforward form of its algorithm.

``initial_guess`` was rewritten for speed twice (issue 16: 1.4 ms of a 64x64 cutout's ~5 ms),
last as one compiled numba call (:mod:`mogviewer.fitting.start_kernels`, issues 16 and 19).
:func:`_reference_guess` below is the function as it was before (mogviewer commit 1204f43,
``mogviewer/fitting/start.py``), written with the plain scipy/numpy calls; every start must
equal it to the tolerances of :func:`_assert_same_start`.

Why a tolerance and not ``==``: the compiled sums run sequentially, numpy's pairwise or in SIMD
lanes (``sum``, ``einsum``, ``cumsum``; tied radii in index order in both),
and the 2x2 eigen-decomposition is in closed form, not LAPACK's; each rounds differently, by a
few ulp of the sums (at most ~n eps ~ 1e-11 relative for the 65 536 pixels of a 256x256 stamp,
1e-16..1e-14 in practice). Everything else is the same: the medians select the same elements
and the smoothing is gaussian_filter's bit for bit (tests below), so sky and the detection are
identical, and the only way to differ by more than rounding would be a pixel whose aperture
radius lies within rounding of the aperture's edge -- none of the cutouts here has one.
"""

import dataclasses
import glob
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from mogviewer.ellipse import wrap_angle
from mogviewer.errors import FitError
from mogviewer.fitting import FitProblem, GalaxyParams, initial_guess
from mogviewer.io import read_image
from mogviewer.mixture import Mixture
from mogviewer.render import render_model

CROSS = ndimage.generate_binary_structure(2, 1)


def _median(a):
    return float(np.median(a))


def _reference_guess(problem, centre=None):
    """initial_guess as of commit 1204f43 (same steps; np.median for its partition median,
    which selects the same elements), with masked pixels joining segments."""
    img, w = problem.image, problem.weights
    good = w > 0
    if not good.any():
        raise FitError("no usable pixels")
    if np.ptp(img[good]) == 0:
        raise FitError("no signal")
    ny, nx = img.shape
    border = np.zeros(img.shape, bool)
    b = max(1, int(0.1 * min(ny, nx)))
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    sky = 0.0
    if "sky" in problem.free:
        sel = border & good
        sky = _median(img[sel]) if sel.sum() > 10 else _median(img[good])
    data = np.where(good, img - sky, 0.0)
    # the target's segment
    cx, cy = ((nx - 1) / 2, (ny - 1) / 2) if centre is None else map(float, centre)
    sm = ndimage.gaussian_filter(data, 1.5)
    ref = data[border & good] if (border & good).sum() > 10 else data[good]
    sigma = 1.4826 * _median(np.abs(ref - _median(ref)))
    # one deliberate change since 1204f43: masked pixels join a segment (no "& good": a mask
    # of every other row cut the galaxy into one segment per row; test below)
    det = (sm > 3.0 * sigma / (2.0 * math.sqrt(math.pi) * 1.5)) if sigma > 0 else \
        np.zeros(data.shape, bool)
    lab, nlab = ndimage.label(det, structure=CROSS)
    icx, icy = int(np.clip(round(cx), 0, nx - 1)), int(np.clip(round(cy), 0, ny - 1))
    others = np.zeros(data.shape, bool)
    if nlab == 0:
        if centre is None:
            box = sm[ny // 4:ny - ny // 4, nx // 4:nx - nx // 4]
            iy, ix = np.unravel_index(np.argmax(box), box.shape)
            cx, cy = float(ix + nx // 4), float(iy + ny // 4)
    else:
        target = lab[icy, icx]
        if target == 0:
            dist = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
            target = lab[dist[0][icy, icx], dist[1][icy, icx]]
        seg = lab == target
        iy, ix = np.unravel_index(np.argmax(np.where(seg, sm, -np.inf)), sm.shape)
        others = ndimage.binary_dilation((lab > 0) & ~seg, structure=CROSS,
                                         iterations=2) & ~seg
        if centre is None:
            cx, cy = float(ix), float(iy)
    xc, yc = float(cx), float(cy)
    good = good & ~others
    data = np.where(good, data, 0.0)
    gy, gx = np.nonzero(good)
    xs, ys = gx.astype(float), gy.astype(float)
    fs = data[gy, gx]
    pos = fs > 0
    xp, yp, fp = xs[pos], ys[pos], fs[pos]
    C = np.eye(2) * (min(ny, nx) / 8.0) ** 2
    for _ in range(4):
        dx, dy = xp - xc, yp - yc
        det = C[0, 0] * C[1, 1] - C[0, 1] * C[0, 1]
        r2 = (C[1, 1] * dx * dx - 2 * C[0, 1] * dx * dy + C[0, 0] * dy * dy) / det
        ap = r2 <= 9.0
        f = fp[ap]
        tot = f.sum()
        if tot <= 0 or f.size < 5:
            break
        xa, ya = xp[ap], yp[ap]
        xc = float(float(np.einsum("i,i->", f, xa)) / tot)
        yc = float(float(np.einsum("i,i->", f, ya)) / tot)
        ddx, ddy = xa - xc, ya - yc
        fx, fy = f * ddx, f * ddy
        sxy = float(np.einsum("i,i->", fx, ddy))
        Cn = np.array([[float(np.einsum("i,i->", fx, ddx)), sxy],
                       [sxy, float(np.einsum("i,i->", fy, ddy))]]) / tot
        if not np.all(np.isfinite(Cn)) or Cn[0, 0] * Cn[1, 1] - Cn[0, 1] ** 2 <= 0:
            break
        C = Cn
    Cg = C.copy()
    if problem.psf is not None:
        Cd = C - problem.psf.second_moments()
        if np.all(np.linalg.eigvalsh(Cd) > 0.25):
            Cg = Cd
    evals, evecs = np.linalg.eigh(Cg)
    q = float(np.clip(math.sqrt(max(evals[0], 1e-6) / max(evals[1], 1e-6)), 0.1, 1.0))
    angle = wrap_angle(math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])))
    t = math.radians(angle)
    dx, dy = xs - xc, ys - yc
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    a = np.sqrt(u * u + (v / q) ** 2)
    sel = a <= 3.0 * math.sqrt(evals[1]) * 2.0
    a_sel = a[sel]
    # ties in index order (a stable sort), as the compiled start orders them: np.argsort's
    # default order of tied radii is the implementation's, and with negative pixels the half-
    # light search over tied radii depends on it (a 14x8 integer stamp: 4.12 or 5.0)
    order = np.argsort(a_sel, kind="stable")
    cum = np.cumsum(fs[sel][order])
    flux = float(cum[-1]) if cum.size else float(fs.sum())
    if cum.size and flux > 0:
        re = float(a_sel[order][np.searchsorted(cum, 0.5 * flux)])
    else:
        re = math.sqrt(evals[1])
        flux = max(float(fs.sum()), 1e-3)
    re = float(np.clip(re, 0.5, 0.5 * max(ny, nx)))
    xc, yc = float(np.clip(xc, 0, nx - 1)), float(np.clip(yc, 0, ny - 1))
    flux = max(flux, 1e-3 * abs(flux) + 1e-12)
    if problem.profile2 is not None:
        return problem.to_physical(GalaxyParams(
            flux=0.4 * flux, x=xc, y=yc, re=0.5 * re, q=min(1.0, q + 0.2), angle=angle, sky=sky,
            flux2=0.6 * flux, re2=1.2 * re, q2=q, angle2=angle,
            n=problem.n if problem.uses_family else 1.0))
    return problem.to_physical(GalaxyParams(flux=flux, x=xc, y=yc, re=re, q=q, angle=angle,
                                            sky=sky, n=problem.n if problem.uses_family else 1.0))


def _real_problems():
    """Every FITS image in tests/data/real up to 300x300 px, as exp (constant sky) and Sérsic
    (sky plane) problems, the second with a --centre 3 px off the middle."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(glob.glob("tests/data/real/**/*.fits", recursive=True)):
            try:
                d = read_image(path)
            except Exception:  # noqa: BLE001 - PSF files, tables: not images to fit
                continue
            if d.image.size > 300 * 300:
                continue
            ny, nx = d.shape
            out.append((FitProblem.from_image_data(d, profile="exp", M=6), None))
            out.append((FitProblem.from_image_data(d, profile="ser", sky="plane"),
                        ((nx - 1) / 2 + 3.3, (ny - 1) / 2 - 2.1)))
    return out


def _crowded_problems(n=30, seed=3):
    """Simulated 90x80 stamps with 1-4 exponential galaxies anywhere (neighbours, targets off
    the centre), 30 masked pixels, a Gaussian PSF (or none, with a --centre)."""
    rng = np.random.default_rng(seed)
    psf = Mixture.isotropic([1.0], [1.5 ** 2])
    out = []
    for _ in range(n):
        img = rng.normal(0, 1, (80, 90))
        for _ in range(rng.integers(1, 5)):
            p = dict(flux=float(rng.uniform(100, 5000)), x=float(rng.uniform(5, 85)),
                     y=float(rng.uniform(5, 75)), re=float(rng.uniform(1, 6)),
                     q=float(rng.uniform(0.3, 1)), angle=float(rng.uniform(0, 180)))
            img += render_model(p, "exp", 6, psf, img.shape)
        mask = np.zeros(img.shape, bool)
        mask[rng.integers(0, 80, 30), rng.integers(0, 90, 30)] = True
        d = read_image(img, noise=np.ones_like(img), mask=mask)
        out.append((FitProblem.from_image_data(d, psf=psf, profile="exp", M=6), None))
        out.append((FitProblem.from_image_data(d, profile="dev", sky="none"),
                    (float(rng.uniform(10, 80)), float(rng.uniform(10, 70)))))
    return out


# relative tolerance of x, y, flux, re, q, sky (and the composite's flux2, re2, q2): rounding
# of sums of up to 65 536 terms in another order (module docstring), with a margin of 10x over
# the worst case n eps. The angle (degrees): 1e-8 deg, and more for a round moment ellipse,
# whose axis is ill-conditioned: a relative change e of the 2x2 moment matrix turns its
# eigenvectors by up to e / (1 - q^2) radians (perturbation of an eigenvector, gap
# e1 - e0 = e1 (1 - q^2)); with e = 1e-13 (the sums' rounding, with margin). A real PSF stamp
# in tests/data/real has moments round to 1e-16 (q = 1 - 1e-16): eigh says 90 deg, the closed
# form 179.5 deg, and any angle is the same ellipse.
REL, ANGLE_TOL = 1e-10, 1e-8


def _angle_tol(q):
    return max(ANGLE_TOL, math.degrees(1e-13 / max(1.0 - q * q, 1e-300)))


def _assert_same_start(new, ref, what=""):
    for f in dataclasses.fields(GalaxyParams):
        a, b = getattr(new, f.name), getattr(ref, f.name)
        if f.name.startswith("angle"):
            d = abs(a - b) % 180.0
            q = ref.q2 if f.name == "angle2" else ref.q
            assert min(d, 180.0 - d) <= _angle_tol(q), (what, f.name, a, b, q)
        else:
            assert abs(a - b) <= REL * max(abs(a), abs(b)), (what, f.name, a, b)


def test_starts_equal_the_reference_on_real_cutouts():
    problems = _real_problems()
    assert len(problems) >= 16          # 8+ real images in tests/data/real, two problems each
    for i, (problem, centre) in enumerate(problems):
        _assert_same_start(initial_guess(problem, centre=centre),
                           _reference_guess(problem, centre), i)


def test_starts_equal_the_reference_with_neighbours_masks_and_centres():
    for i, (problem, centre) in enumerate(_crowded_problems()):
        _assert_same_start(initial_guess(problem, centre=centre),
                           _reference_guess(problem, centre), i)


def _composite(problem):
    """A bulge + disk problem on the pixels of ``problem``."""
    return FitProblem.from_arrays(problem.image, ivar=problem.weights, psf=problem.psf,
                                  profile="dev", profile2="exp")


def test_composite_starts_equal_the_reference():
    for i, (problem, centre) in enumerate(_crowded_problems(5) + _real_problems()[:6]):
        comp = _composite(problem)
        _assert_same_start(initial_guess(comp, centre=centre), _reference_guess(comp, centre),
                           i)


def _odd_problems():
    """Stamps that take the rare branches: NaN pixels, masked rows, nothing detected (a
    noiseless galaxy on a sky of exact zeros: the border's MAD is 0), the centre on sky, a tiny
    stamp (the smoothing reflects more than once), a 256x256 stamp, a galaxy on a corner."""
    rng = np.random.default_rng(11)
    psf = Mixture.isotropic([1.0], [1.5 ** 2])
    gal = dict(flux=3000.0, x=30.2, y=27.7, re=4.0, q=0.5, angle=30.0)
    out = []
    img = rng.normal(0, 1, (60, 64)) + render_model(gal, "exp", 6, psf, (60, 64))
    nan = img.copy()
    nan[rng.integers(0, 60, 50), rng.integers(0, 64, 50)] = np.nan
    nan[25:28, 20:24] = np.nan                          # a NaN hole in the galaxy
    out.append(("NaN pixels", read_image(nan, noise=np.ones_like(img)), None, "exp"))
    rows = np.zeros(img.shape, bool)
    rows[::2] = True
    out.append(("every other row masked", read_image(img, noise=np.ones_like(img), mask=rows),
                None, "exp"))
    clean = render_model(gal, "exp", 6, psf, (60, 64))
    clean[:8], clean[-8:], clean[:, :8], clean[:, -8:] = 0.0, 0.0, 0.0, 0.0
    out.append(("nothing detected", read_image(clean, noise=np.ones_like(img)), None, "exp"))
    out.append(("nothing detected, centre", read_image(clean, noise=np.ones_like(img)),
                (20.0, 33.0), "exp"))
    out.append(("centre on sky", read_image(img, noise=np.ones_like(img)), (5.0, 50.0), "exp"))
    small = rng.normal(0, 1, (5, 7)) + render_model(dict(gal, x=3.0, y=2.0, re=1.0), "exp", 6,
                                                    psf, (5, 7))
    out.append(("5x7 stamp", read_image(small, noise=np.ones_like(small)), None, "exp"))
    big = rng.normal(0, 1, (256, 256)) + render_model(dict(gal, x=130.3, y=120.1, re=15.0,
                                                           flux=4e4), "exp", 6, psf, (256, 256))
    out.append(("256x256", read_image(big, noise=np.ones_like(big)), None, "ser"))
    corner = rng.normal(0, 1, (40, 40)) + render_model(dict(gal, x=3.0, y=36.0), "exp", 6,
                                                       psf, (40, 40))
    out.append(("on a corner", read_image(corner, noise=np.ones_like(corner)), (3.0, 36.0),
                "dev"))
    problems = []
    for what, d, centre, prof in out:
        m = None if prof == "ser" else 6
        problems.append((what, FitProblem.from_image_data(d, psf=psf, profile=prof, M=m),
                         centre))
        problems.append((what + ", no PSF, fixed sky",
                         FitProblem.from_image_data(d, profile=prof, M=m, sky="none"), centre))
    return problems


def test_starts_equal_the_reference_on_rare_branches():
    for what, problem, centre in _odd_problems():
        _assert_same_start(initial_guess(problem, centre=centre),
                           _reference_guess(problem, centre), what)


def test_the_centre_on_sky_takes_the_nearest_segment():
    # two sources; a centre on sky 3 px from the second and 20 px from the first: the start
    # is the second one (the distance transform's nearest detected pixel)
    rng = np.random.default_rng(4)
    img = rng.normal(0, 1, (64, 64))
    for x, y in ((15.0, 32.0), (45.0, 32.0)):
        img += render_model(dict(flux=2000.0, x=x, y=y, re=2.0, q=1.0, angle=0.0), "exp", 6,
                            None, img.shape)
    p = FitProblem.from_arrays(img, ivar=np.ones_like(img), profile="exp")
    g = initial_guess(p, centre=(45.0, 42.0))
    # the centre given is kept; the moments find the second source (brighter pixels nearby)
    assert abs(g.x - 45.0) < 1.0 and abs(g.y - 32.0) < 1.0, g


def test_the_smoothing_is_gaussian_filter_bit_for_bit():
    from mogviewer.fitting.start import _smooth

    rng = np.random.default_rng(0)
    # (5, 7) and (1, 3): lines shorter than the 13 taps, reflected more than once
    for shape in ((64, 64), (17, 40), (101, 33), (5, 7), (1, 3)):
        a = rng.normal(size=shape)
        assert np.array_equal(_smooth(a), ndimage.gaussian_filter(a, 1.5)), shape


def test_the_kernel_is_registered_for_warm_up():
    from mogviewer.render import compile_status, warmup

    warmup()
    st = compile_status()
    assert st["kernels"]["initial guess"] == "compiled" and st["ready"], st


def test_no_signal_and_no_pixels_still_raise():
    flat = FitProblem.from_arrays(np.full((20, 20), 3.0), profile="exp")
    with pytest.raises(FitError, match="no signal"):
        initial_guess(flat)
    masked = FitProblem.from_arrays(np.ones((20, 20)), profile="exp")
    object.__setattr__(masked, "weights", np.zeros((20, 20)))   # what no constructor allows
    with pytest.raises(FitError, match="no usable pixels"):
        initial_guess(masked)


def test_a_mask_of_every_other_row_does_not_cut_the_target_apart():
    # New-user review, 2026-12-04: IC 3478 with every other row masked started from one row of
    # the galaxy (flux 27972 against ~450 000, r_e 79 px) and the fit ran off the image
    # (flux -1.3e6, "converged"). Reference: the fit of the same image with every third row
    # masked (r_e 23.66 px, flux 449 948; the data are the same galaxy).
    d = read_image("sample_data/ic3478/ic3478rss_256.fits",
                   mask="sample_data/ic3478/ic3478rss_256_mask.fits")
    from mogviewer.fitting import fit
    res = {}
    for step in (2, 3):
        m = d.mask.copy()
        m[::step] = True
        p = FitProblem.from_arrays(d.image, ivar=np.where(m, 0.0, d.ivar), mask=m,
                                   profile="exp", M=6)
        g = initial_guess(p)
        assert abs(g.x - 127.9) < 2 and abs(g.y - 128.0) < 2 and 10 < g.re < 60, (step, g)
        res[step] = fit(p, g)
    a, b = res[2].params, res[3].params
    assert res[2].status == "converged" and a.flux > 0
    # two different halves of the pixels of one galaxy: the same galaxy to a few per cent
    assert a.re == pytest.approx(b.re, rel=0.03) and a.flux == pytest.approx(b.flux, rel=0.03)


def test_the_kernels_median_and_sorts_equal_numpys():
    # the compiled start's hand-written selection and sorts (numba's np.partition and
    # np.argsort cost seconds of compilation): the median equal to np.median bit for bit (a
    # selection picks the same elements), the sorts ordering like np.sort; arrays with ties,
    # sorted and reversed ones (the bad cases of a quickselect), odd and even sizes; the
    # integer-valued radii pile up in buckets of > 64 and take the heapsort fallback
    from mogviewer.fitting import start_kernels as k

    rng = np.random.default_rng(0)
    for n in list(range(1, 34)) + [1000, 1001, 4096]:
        # rising then falling: the order that made the middle-element pivot quadratic (a
        # 512 px start took 2 s, review of 2026-12-04); now it ends in the heapsort fallback
        rise_fall = 100.0 - np.abs(np.arange(n) - n / 2) + 1e-3 * (np.arange(n) % 7)
        for a in (rng.normal(size=n), rng.integers(0, 3, n).astype(float),
                  np.sort(rng.normal(size=n)), np.sort(rng.normal(size=n))[::-1].copy(),
                  rise_fall):
            assert k._median(a) == np.median(a), (n, a)
            assert np.array_equal(a[k._heap_argsort(a)], np.sort(a))
            r = np.abs(a)
            assert np.array_equal(r[k._argsort_radii(r)], np.sort(r))


def test_starts_equal_the_reference_on_small_random_stamps():
    """400 small stamps (3-19 px a side) with random masks, a fifth of them integer-valued
    (tied radii: the start then sits on a pixel, and the half-light search crosses the ties),
    centres given inside and outside the stamp, with and without a PSF: the same start, or the
    same refusal (review of 2026-12-04, whose fuzzing found a tie ordered differently)."""
    from mogviewer.mixture import Mixture

    rng = np.random.default_rng(7)
    compared = refused = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(400):
            ny, nx = rng.integers(3, 20, 2)
            img = rng.normal(size=(ny, nx))
            for _ in range(rng.integers(0, 4)):
                y, x = rng.integers(0, ny), rng.integers(0, nx)
                img[max(0, y - 1):y + 2, max(0, x - 1):x + 2] += rng.uniform(3, 50)
            iv = (rng.uniform(size=(ny, nx)) > rng.uniform(0, 0.9)).astype(float)
            if t % 5 == 0:
                img = np.round(img)
            centre = None if t % 2 else (float(rng.uniform(-3, nx + 3)),
                                         float(rng.uniform(-3, ny + 3)))
            psf = Mixture.isotropic([1.0], [rng.uniform(0.3, 3) ** 2]) if t % 3 else None
            try:
                problem = FitProblem.from_arrays(img, ivar=iv, profile="exp", psf=psf)
            except FitError:
                continue
            try:
                ref = _reference_guess(problem, centre)
            except FitError:
                with pytest.raises(FitError):
                    initial_guess(problem, centre=centre)
                refused += 1
                continue
            _assert_same_start(initial_guess(problem, centre=centre), ref, t)
            compared += 1
    assert compared > 300 and refused > 0


def test_nothing_to_fit_says_what_initial_guess_says():
    # the app's check before a fit from its own start gives initial_guess's reasons
    from mogviewer.fitting.start import nothing_to_fit

    blank = FitProblem.from_arrays(np.full((16, 16), 3.0), sigma=np.ones((16, 16)),
                                   profile="exp", M=4)
    why = nothing_to_fit(blank)
    assert why == "the image holds no signal: every usable pixel equals 3"
    with pytest.raises(FitError) as exc:
        initial_guess(blank)
    assert str(exc.value) == why
    img = np.full((16, 16), 3.0)
    img[8, 8] = 9.0
    mask = np.zeros((16, 16), bool)
    mask[8, 8] = True                  # the only different pixel masked: blank again
    assert nothing_to_fit(FitProblem.from_arrays(img, sigma=np.ones((16, 16)), mask=mask,
                                                 profile="exp", M=4)) == why
    assert nothing_to_fit(FitProblem.from_arrays(img, sigma=np.ones((16, 16)), profile="exp",
                                                 M=4)) is None
