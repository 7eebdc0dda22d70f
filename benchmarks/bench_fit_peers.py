#!/usr/bin/env python
"""Fit speed against imfit (issue 16): the same pixels, noise model, PSF image and start, one
thread each, measured side by side in one run.

    python benchmarks/bench_fit_peers.py [-n 7] [--clock cpu]

Cases (PROVENANCE.md s2 in tests/data/real):

1. IC 3478 256x256 + mask, exponential, no PSF, no sky term (imfit's data-based noise: gain
   4.725, read noise 4.3, original sky 130.14);
2. the same, Sérsic, Moffat PSF (psf_moffat_51.fits: imfit convolves with the image by FFT,
   mogviewer with its Gaussian-mixture fit);
3. IC 3478 64x64 + sigma map, exponential, Moffat PSF.

Columns, each timed in turns (mogviewer with scipy's least_squares and astropy-modeling, both
with BLAS limited to one thread; imfit; mogviewer LM once; mogviewer LM back to back, the same
with BLAS limited to one thread; then the kernels at the optimum, so a burst of load from the
machine's neighbours falls on all alike): medians over ``n`` rounds and [min-max]. One thread
each: with BLAS at its default, OpenBLAS's idle threads spin for ~0.1 s after a call and, on a
2-core machine, the fits timed next took up to twice as long (imfit's too). Every engine
starts from the same point (mogviewer's moments-based guess, converted; the guess itself, ~10
ms at 256 px, is not timed).

mogviewer LM is timed two ways. *Back to back*: the mean of as many fits in a row as take
~20 ms, as in a batch of many cutouts or a fit repeated while a handle is dragged; this is the
fit's cost, and the goals of issue 16 are read from it. *First fit after imfit*: one fit right
after imfit's, with the fit's Python code and data out of the caches (imfit's ~0.3-1.5 s run
evicts them). Measured on 2026-12-04 at 64 px: the Python set-up and wrap-up of a fit (~0.15 ms
back to back) take ~0.6 ms then, the kernels' first evaluation ~2x its time, the compiled loop
about the same; a 1 s imfit fit is not measurably slower when cold.

The kernel, the denominator of ``LM / (evals x kernel)``: one render with the derivatives of
every free parameter, in a loop. That is ``render+derivs`` (the image and its five shape and
position planes), plus for a free Sérsic index the ``d/dn plane`` as the fit draws it (the
central difference of :class:`mogviewer.render.normal.DnPlane`); the flux and sky columns cost
nothing to draw. ``accumulating eval`` is one evaluation of the fit's kernel (the planes drawn
and their normal equations summed). The BLAS column repeats the back-to-back fits with BLAS
limited to one thread (threadpoolctl; skipped if absent): equal times mean the fit does not
depend on BLAS threads. pyimfit (``pip install pyimfit``, the ``bench`` extra) is optional: its
column is skipped if absent. imfit is told ``maxThreads=1``.

astropy-modeling (a core dependency, so always there) where it applies: the case without PSF,
as ``Sersic2D`` (n fixed at 1 for the exponential) fitted by ``TRFLSQFitter`` to the unmasked
pixels with weights ``1/sigma``. It evaluates the profile at the pixel centres (mogviewer and
imfit integrate over the pixel; at r_e ~ 34 px the difference is small) and takes its
Jacobian by finite differences. With a PSF it does not apply: astropy.modeling convolves
nothing (GalSim draws but does not fit; it is among the renderers of ``bench_render.py``).

A second table times problems with no PSF (the pixel integrated, issue 14) and with a PSF
stamp used exactly, on scipy's render path (``solver="scipy"``: least_squares on the
materialised Jacobian) against the default driver on the accumulating kernel
(:func:`mogviewer.render.normal.normal_psf`), with the largest parameter difference between
the two in sigma (``--no-wired`` skips the table, ``--only-wired`` prints only it).
"""

import argparse
import math
import statistics
import time
import warnings

import numpy as np
from astropy.io import fits

import mogviewer.render as render
from mogviewer import io as io_fits
from mogviewer.ellipse import shape_matrix
from mogviewer.fitting import FitProblem, fit, initial_guess
from mogviewer.fitting.parametrisation import _Param
from mogviewer.fitting.solver import _NormalEvaluator
from mogviewer.profiles import sersic
from mogviewer.psf import read_psf

try:
    import pyimfit
except ImportError:  # optional peer
    pyimfit = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

#: the clock of every timing: wall time (default), or this process's CPU time (``--clock
#: cpu``: all its threads, imfit's and BLAS's included), which a neighbour's load on a shared
#: machine stretches far less (at load 4.5 on 2 cores, wall-clock fits took up to 2.5x their
#: quiet time and imfit's 3x, unevenly between columns timed seconds apart)
_clock = time.perf_counter

D = "tests/data/real/imfit-sdss"
GAIN, RN, SKY = 4.725, 4.3, 130.14


def _b_n(n):
    from scipy.special import gammaincinv
    return gammaincinv(2 * n, 0.5)


def _sersic_total(n, re, q):
    """Total flux of a Sérsic profile of unit I_e (the imfit normalisation)."""
    from scipy.special import gamma
    b = _b_n(n)
    return 2 * math.pi * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n) * re * re * q


def _one_blas_thread():
    import contextlib

    return threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext()


def _timed(f):
    t0 = _clock()
    f()
    return _clock() - t0


def cases():
    import warnings

    from mogviewer.psf import PsfWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)
        moffat = read_psf(f"{D}/psf_moffat_51.fits").mixture
    psf_img = fits.getdata(f"{D}/psf_moffat_51.fits").astype(float)
    big = io_fits.read_image(f"{D}/ic3478rss_256.fits", mask=f"{D}/ic3478rss_256_mask.fits",
                             gain=GAIN, read_noise=RN, sky_level=SKY)
    img64 = fits.getdata(f"{D}/ic3478rss_64x64.fits").astype(float)
    sig64 = fits.getdata(f"{D}/ic3478rss_64x64_sigma.fits").astype(float)
    mask256 = fits.getdata(f"{D}/ic3478rss_256_mask.fits") != 0
    imfit_data = dict(image=big.image, mask=mask256.astype(float), gain=GAIN, read_noise=RN,
                      original_sky=SKY)
    return [
        ("IC 3478 256 + mask, exp, no PSF, no sky",
         FitProblem.from_image_data(big, psf=None, profile="exp", M=8, sky="none"), None,
         imfit_data),
        ("IC 3478 256 + mask, Sérsic, Moffat PSF",
         FitProblem.from_image_data(big, psf=moffat, profile="ser", n=2.0, sky="none"),
         psf_img, imfit_data),
        ("IC 3478 64x64 + sigma, exp, Moffat PSF",
         FitProblem.from_arrays(img64, sigma=sig64, psf=moffat, profile="exp", M=8, sky="none"),
         psf_img, dict(image=img64, error=sig64, error_type="sigma")),
    ]


def wired_cases():
    import warnings

    from mogviewer.psf import PsfWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)
        moffat = read_psf(f"{D}/psf_moffat_51.fits")          # the stamp: exact mode
    big = io_fits.read_image(f"{D}/ic3478rss_256.fits", mask=f"{D}/ic3478rss_256_mask.fits",
                             gain=GAIN, read_noise=RN, sky_level=SKY)
    img64 = fits.getdata(f"{D}/ic3478rss_64x64.fits").astype(float)
    sig64 = fits.getdata(f"{D}/ic3478rss_64x64_sigma.fits").astype(float)
    return [
        ("IC 3478 256 + mask, exp, no PSF (pixel), no sky",
         FitProblem.from_image_data(big, psf=None, profile="exp", M=8, sky="none")),
        ("IC 3478 256 + mask, Sérsic, Moffat stamp (exact)",
         FitProblem.from_image_data(big, psf=moffat, profile="ser", n=2.0, sky="none")),
        ("IC 3478 64x64 + sigma, exp, Moffat stamp (exact)",
         FitProblem.from_arrays(img64, sigma=sig64, psf=moffat, profile="exp", M=8,
                                sky="none")),
    ]


def wired_table(n_rounds):
    """Render path against the accumulating kernel, timed in turns, for every wired case."""
    print()
    print("issue 16: no-PSF and exact-PSF problems, the render path (solver='scipy': "
          "least_squares on the materialised Jacobian) against the accumulating kernel "
          "(LM on the accumulated normal equations, the default); medians [min-max] over "
          f"{n_rounds} rounds, ms")
    print("| case | mode | render path | accumulated | gain | evaluations (render, "
          "accumulated) | render+derivs | accumulated / (evals x render+derivs) | "
          "largest parameter difference / sigma |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, prob in wired_cases():
        start = initial_guess(prob)
        a = fit(prob, start, solver="scipy")
        b = fit(prob, start)
        p = b.params
        S = shape_matrix(p.re, p.q, p.angle)
        prof = (sersic.sersic_profile_mixture(p.n) if prob.uses_family
                else prob.profile_mixture())
        buf = np.zeros((6,) + prob.shape)
        t = {"render": [], "acc": [], "derivs": []}
        for _ in range(n_rounds):
            t0 = _clock()
            fit(prob, start, solver="scipy")
            t["render"].append(_clock() - t0)
            t0 = _clock()
            fit(prob, start)
            t["acc"].append(_clock() - t0)
            reps = 20 if prob.shape[0] <= 64 else 5
            t0 = _clock()
            for _ in range(reps):
                render.render_galaxy(1.0, p.x, p.y, S, prof, None, prob.psf, prob.shape,
                                     derivs=True, out=buf)
            t["derivs"].append((_clock() - t0) / reps)
        err = a.errors()
        diff = max(abs(getattr(a.params, k) - getattr(b.params, k)) / err[k]
                   for k in prob.free if err.get(k))

        def ms(v):
            return f"{statistics.median(v) * 1e3:.2f} [{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}]"
        r, acc, der = (statistics.median(t[k]) for k in ("render", "acc", "derivs"))
        print(f"| {label} | {prob.psf_mode} | {ms(t['render'])} | {ms(t['acc'])} | "
              f"{r / acc:.1f}x | {a.nfev}, {b.nfev} | {ms(t['derivs'])} | "
              f"{acc / (b.nfev * der):.2f} | {diff:.1e} |", flush=True)


def imfit_model(prob, start):
    """imfit's description of the problem's model at mogviewer's start (1-based centre, PA
    from +y, h = r_e / 1.67835 for the exponential, I_0 or I_e from the flux)."""
    desc = pyimfit.SimpleModelDescription()
    desc.x0.setValue(start.x + 1)
    desc.y0.setValue(start.y + 1)
    pa = (start.angle - 90.0) % 180.0
    ell = 1.0 - start.q
    if prob.profile == "ser":
        f = pyimfit.make_imfit_function("Sersic")
        n = start.n
        f.n.setValue(n, [0.5, 8.0])
        f.r_e.setValue(start.re)
        f.I_e.setValue(start.flux / _sersic_total(n, start.re, start.q))
    else:
        f = pyimfit.make_imfit_function("Exponential")
        h = start.re / 1.67835
        f.h.setValue(h)
        f.I_0.setValue(start.flux / (2 * math.pi * h * h * start.q))
    f.PA.setValue(pa)
    f.ell.setValue(ell, [0.0, 0.95])
    desc.addFunction(f)
    return desc


def imfit_values(fitter, prob):
    """x, y (0-based), r_e, q, angle (CCW from +x), n from imfit's best fit."""
    p = fitter.getRawParameters()
    x0, y0, pa, ell = p[0] - 1, p[1] - 1, p[2], p[3]
    if prob.profile == "ser":
        n, re = p[4], p[6]
    else:
        n, re = 1.0, p[5] * 1.67835
    return dict(x=x0, y=y0, re=re, q=1 - ell, angle=(pa + 90.0) % 180.0, n=n)


def astropy_model(prob, start):
    """astropy-modeling's ``Sersic2D`` at mogviewer's start (no PSF only: astropy.modeling
    convolves nothing), n fixed at 1 for the exponential: amplitude I_e from the flux,
    ``ellip = 1 - q``, ``theta`` in radians CCW from +x, the centre 0-based as given."""
    from astropy.modeling.models import Sersic2D

    n = start.n if prob.profile == "ser" else 1.0
    m = Sersic2D(amplitude=start.flux / _sersic_total(n, start.re, start.q), r_eff=start.re,
                 n=n, x_0=start.x, y_0=start.y, ellip=1.0 - start.q,
                 theta=math.radians(start.angle))
    m.n.fixed = prob.profile != "ser"
    m.ellip.bounds = (0.0, 0.95)
    return m


def astropy_data(prob):
    """The unmasked pixels as astropy's fitters take them: x, y (0-based), data, and weights
    ``1/sigma`` (the fitters multiply the residuals by them)."""
    good = prob.weights > 0
    yy, xx = np.nonzero(good)
    return (xx.astype(float), yy.astype(float), prob.image[good],
            np.sqrt(prob.weights[good]))


def astropy_fit(model, data):
    from astropy.modeling import fitting

    fitter = fitting.TRFLSQFitter()
    x, y, z, w = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # "the fit may be unsuccessful" on the maxiter
        fitted = fitter(model, x, y, z, weights=w, maxiter=200)
    return fitted, fitter.fit_info


def astropy_values(m, data):
    x, y, z, w = data
    chi2 = float((((z - m(x, y)) * w) ** 2).sum())
    return dict(x=m.x_0.value, y=m.y_0.value, re=m.r_eff.value, q=1 - m.ellip.value,
                angle=math.degrees(m.theta.value) % 180.0, n=m.n.value, chi2=chi2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=7, help="rounds (each engine once per round)")
    ap.add_argument("--no-wired", action="store_true",
                    help="skip the table of no-PSF / exact-PSF problems on the accumulating "
                         "kernel")
    ap.add_argument("--only-wired", action="store_true", help="only that table")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or this process's CPU time (less stretched by the load "
                         "of a shared machine)")
    args = ap.parse_args(argv)
    global _clock
    _clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"clock: {args.clock}")
    if args.only_wired:
        render.warmup()
        wired_table(args.n)
        return 0
    render.warmup()
    rows = []
    for label, prob, psf_img, imfit_data in cases():
        start = initial_guess(prob)
        par = _Param(prob, start)
        # warm-up and the fitted values
        res_lm = fit(prob, start)
        with _one_blas_thread():
            res_sp = fit(prob, start, solver="scipy")
        p = res_lm.params
        ev = _NormalEvaluator(prob, par)
        z = par.to_z(p)
        S = shape_matrix(p.re, p.q, p.angle)
        prof = (sersic.sersic_profile_mixture(p.n) if prob.uses_family
                else prob.profile_mixture())
        buf = np.zeros((6,) + prob.shape)
        fitter = None
        if pyimfit is not None:
            fitter = pyimfit.Imfit(imfit_model(prob, start), psf=psf_img, maxThreads=1)
            fitter.loadData(**imfit_data)
            fitter.doFit()
        dn = ev.dn
        fam = ev.family.at(p.n) if dn is not None else None
        S3 = (S[0, 0], S[0, 1], S[1, 1])
        plane = np.zeros(prob.shape)
        apy = apy_fit = apy_info = None
        if prob.psf is None:      # astropy.modeling convolves with no PSF: the no-PSF case
            apy = astropy_data(prob)
            with _one_blas_thread():
                apy_fit, apy_info = astropy_fit(astropy_model(prob, start), apy)
        t = {k: [] for k in ("lm", "lm_run", "lm_blas1", "scipy", "imfit", "astropy", "eval",
                             "derivs", "dn")}
        nfev_imfit = None
        # fits back to back: as many as take ~20 ms (at least 3), the mean per fit
        burst = max(3, math.ceil(0.02 / max(_timed(lambda: fit(prob, start)), 1e-5)))
        for _ in range(args.n):
            # one thread each: scipy's least_squares and astropy's fitter with BLAS limited to
            # one thread (with more, OpenBLAS's idle threads spin ~0.1 s after the call and,
            # on this 2-core machine, doubled the next fits' times)
            with _one_blas_thread():
                t0 = _clock()
                fit(prob, start, solver="scipy")
                t["scipy"].append(_clock() - t0)
                if apy is not None:
                    model = astropy_model(prob, start)
                    t0 = _clock()
                    astropy_fit(model, apy)
                    t["astropy"].append(_clock() - t0)
            if fitter is not None:
                fitter = pyimfit.Imfit(imfit_model(prob, start), psf=psf_img, maxThreads=1)
                fitter.loadData(**imfit_data)
                t0 = _clock()
                fitter.doFit()
                t["imfit"].append(_clock() - t0)
                nfev_imfit = fitter.nFuncEvals
            # the first fit right after the other engines: its code and data out of the caches
            t0 = _clock()
            fit(prob, start)
            t["lm"].append(_clock() - t0)
            t0 = _clock()
            for _ in range(burst):
                fit(prob, start)
            t["lm_run"].append((_clock() - t0) / burst)
            if threadpool_limits is not None:
                with threadpool_limits(limits=1):
                    t0 = _clock()
                    for _ in range(burst):
                        fit(prob, start)
                    t["lm_blas1"].append((_clock() - t0) / burst)
            reps = 20 if prob.shape[0] <= 64 else 5
            t0 = _clock()
            for _ in range(reps):
                ev(z)
            t["eval"].append((_clock() - t0) / reps)
            t0 = _clock()
            for _ in range(reps):
                render.render_galaxy(1.0, p.x, p.y, S, prof, None, prob.psf, prob.shape,
                                     derivs=True, out=buf)
            t["derivs"].append((_clock() - t0) / reps)
            if dn is not None:
                t0 = _clock()
                for _ in range(reps):
                    dn(plane, p.x, p.y, S3, fam, ev.psf)
                t["dn"].append((_clock() - t0) / reps)
        rows.append((label, prob, res_lm, res_sp, fitter, nfev_imfit, t,
                     (apy_fit, apy_info, apy)))

    def ms(v):
        return (f"{statistics.median(v) * 1e3:.2f} [{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}]"
                if v else "-")

    print(f"medians [min-max] over {args.n} rounds, ms; one thread each")
    print("| case | mogviewer LM, back to back | first fit after imfit | BLAS 1 thread | "
          "mogviewer (scipy) | imfit | astropy-modeling (TRF) | evaluations (LM, scipy, imfit, "
          "astropy) | render+derivs | d/dn plane | accumulating eval | LM / (evals x kernel): "
          "back to back, first | scipy / LM | imfit / LM: back to back, first | astropy / LM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, _prob, a, b, _fitter, nfi, t, (_af, ainfo, _ad) in rows:
        run, first = statistics.median(t["lm_run"]), statistics.median(t["lm"])
        kernel = statistics.median(t["derivs"]) + (statistics.median(t["dn"]) if t["dn"]
                                                   else 0.0)
        imfit_ratio = (f"{statistics.median(t['imfit']) / run:.1f}x, "
                       f"{statistics.median(t['imfit']) / first:.1f}x" if t["imfit"] else "-")
        apy_ratio = f"{statistics.median(t['astropy']) / run:.1f}x" if t["astropy"] else "-"
        nfa = ainfo["nfev"] if ainfo is not None else "-"
        print(f"| {label} | {ms(t['lm_run'])} | {ms(t['lm'])} | {ms(t['lm_blas1'])} | "
              f"{ms(t['scipy'])} | {ms(t['imfit'])} | {ms(t['astropy'])} | "
              f"{a.nfev}, {b.nfev}, {nfi if nfi is not None else '-'}, {nfa} | "
              f"{ms(t['derivs'])} | {ms(t['dn'])} | {ms(t['eval'])} | "
              f"{run / (a.nfev * kernel):.2f}, {first / (a.nfev * kernel):.2f} | "
              f"{statistics.median(t['scipy']) / run:.1f}x | {imfit_ratio} | {apy_ratio} |")
    print()
    print("fitted values (x, y 1-based; r_e px; q; PA = angle - 90 (imfit/GALFIT); n)")
    print("| case | engine | x | y | r_e | q | PA | n | chi^2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, prob, a, b, fitter, _nfi, _t, (afit, _ai, adata) in rows:
        for name, r in (("mogviewer LM", a), ("mogviewer scipy", b)):
            p = r.params
            print(f"| {label} | {name} | {p.x + 1:.4f} | {p.y + 1:.4f} | {p.re:.4f} | "
                  f"{p.q:.5f} | {(p.angle - 90) % 180:.3f} | {p.n:.4f} | {r.chi2:.3f} |")
        if fitter is not None:
            v = imfit_values(fitter, prob)
            print(f"| {label} | imfit | {v['x'] + 1:.4f} | {v['y'] + 1:.4f} | {v['re']:.4f} | "
                  f"{v['q']:.5f} | {(v['angle'] - 90) % 180:.3f} | {v['n']:.4f} | "
                  f"{fitter.fitStatistic:.3f} |")
        if afit is not None:
            v = astropy_values(afit, adata)
            print(f"| {label} | astropy-modeling | {v['x'] + 1:.4f} | {v['y'] + 1:.4f} | "
                  f"{v['re']:.4f} | {v['q']:.5f} | {(v['angle'] - 90) % 180:.3f} | "
                  f"{v['n']:.4f} | {v['chi2']:.3f} |")
    if not args.no_wired:
        wired_table(args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
