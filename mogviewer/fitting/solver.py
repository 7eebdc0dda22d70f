""":func:`fit`: least squares on the unconstrained vector with the analytic Jacobian.

Two drivers share the parametrisation, convergence tests, callback and result:

* ``solver="lm"`` (default): Levenberg-Marquardt (:mod:`mogviewer.fitting.lm`) on the normal
  equations, which the derivative kernel accumulates while it renders
  (:mod:`mogviewer.render.normal`): one kernel call per evaluation, no Jacobian array, no BLAS
  call on anything larger than the few-by-few system;
* ``solver="scipy"``: ``scipy.optimize.least_squares`` (``trf``) on the residual vector and the
  materialised Jacobian -- the reference the tests hold the default to, and the path for finite
  differences (``jacobian="2-point"``) and for problems the kernel cannot accumulate (a PSF with
  a pixelised residual part).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

from ..ellipse import shape_jacobian_physical, shape_matrix
from ..errors import FitError
from ..render import render_galaxy, render_galaxy_dn
from ..render.normal import _planes
from ..render.warm import register as _register_warm
from ._fast import (
    _assemble,
    _covariance_kernel,
    _eta_shape,
    _linear_optimum,
    _physical_covariance_kernel,
)
from .flags import SUBPIXEL, FitFlags, chi2nu_threshold, is_needle
from .lm import _lm_fast, levenberg_marquardt
from .normal_eval import _NormalEvaluator
from .parametrisation import _Param
from .params import SHAPE, GalaxyParams
from .problem import FitProblem, _FamilyProfile, psf_flags
from .result import FitProgress, FitResult
from .start import initial_guess

# ---------------------------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------------------------

class _Evaluator:
    """Residuals and Jacobian of one problem, with reusable render buffers."""

    def __init__(self, problem, par):
        self.problem = problem
        self.par = par
        self.sel = np.flatnonzero(problem.weights.ravel() > 0)
        self.sw = np.sqrt(problem.weights.ravel()[self.sel])
        self.data = problem.image.ravel()[self.sel]
        self.profs = {sfx: problem.profile_mixture(sfx) for sfx in problem.suffixes}
        self.family = _FamilyProfile() if problem.uses_family else None
        ny, nx = problem.shape
        self.bufs = {sfx: np.zeros((6, ny, nx)) for sfx in problem.suffixes}
        yy, xx = np.mgrid[:ny, :nx]
        self.gx = (xx - (nx - 1) / 2).ravel()[self.sel]
        self.gy = (yy - (ny - 1) / 2).ravel()[self.sel]
        self.nfev = 0

    def _sky(self, p):
        if self.problem.sky == "none":
            return 0.0
        s = p.sky
        if self.problem.sky == "plane":
            s = s + p.sky_dx * self.gx + p.sky_dy * self.gy
        return s

    def _prof(self, p, sfx):
        if sfx == "" and self.family is not None:
            return self.family.at(p.n)
        return self.profs[sfx]

    def _render(self, p, sfx, S, derivs):
        return render_galaxy(getattr(p, "flux" + sfx), p.x, p.y, S, self._prof(p, sfx), None,
                             self.problem.psf, self.problem.shape, derivs=derivs,
                             out=self.bufs[sfx])

    def residuals(self, z):
        self.nfev += 1
        p = self.par.from_z(z)
        model = self._sky(p)
        for sfx in self.problem.suffixes:
            S, _ = self.par.shape_S_and_dz(z, p, sfx)
            model = model + self._render(p, sfx, S, False).ravel()[self.sel]
        return self.sw * (self.data - model)

    def _columns(self, p, z=None):
        """{name: d model / d name} over the selected pixels; shape entries by z index when
        ``z`` is given (optimiser), by physical name otherwise."""
        cols = {"x": 0.0, "y": 0.0}
        for sfx in self.problem.suffixes:
            if z is not None:
                S, dS = self.par.shape_S_and_dz(z, p, sfx)
            else:
                re, q, angle = (getattr(p, n + sfx) for n in SHAPE)
                S = shape_matrix(re, q, angle)
                Jp = shape_jacobian_physical(re, q, angle)
                dS = {n + sfx: Jp[:, k] for k, n in enumerate(SHAPE)}
            img, d = self._render(p, sfx, S, True)
            flat = d.reshape(5, -1)[:, self.sel]
            flux = getattr(p, "flux" + sfx)
            if flux != 0:
                cols["flux" + sfx] = img.ravel()[self.sel] / flux
            else:
                cols["flux" + sfx] = render_galaxy(
                    1.0, p.x, p.y, S, self._prof(p, sfx), None, self.problem.psf,
                    self.problem.shape).ravel()[self.sel]
            if sfx == "" and self.family is not None and "n" in self.problem.free:
                fp = self.family.at(p.n)
                cols["n"] = render_galaxy_dn(p.flux, p.x, p.y, S, fp, fp.damps, fp.dvariances,
                                             self.problem.psf,
                                             self.problem.shape).ravel()[self.sel]
            cols["x"] = cols["x"] + flat[0]
            cols["y"] = cols["y"] + flat[1]
            for key, vec in dS.items():
                cols[key] = vec @ flat[2:]
        n = self.sel.size
        cols.update(sky=np.ones(n), sky_dx=self.gx, sky_dy=self.gy)
        return cols

    def jacobian(self, z):
        p = self.par.from_z(z)
        cols = self._columns(p, z)
        J = np.empty((self.sel.size, len(z)))
        for i, name in enumerate(self.par.znames):
            J[:, i] = -self.sw * cols[i if i in cols else name]
        return J

    def physical_jacobian(self, p):
        """d(residual)/d(free physical parameters) at ``p`` (angles in degrees)."""
        cols = self._columns(p)
        return np.column_stack([-self.sw * cols[name] for name in self.problem.free])


def _covariance(J):
    """``(J^T J)^-1`` with a check of conditioning; returns (cov, ok)."""
    return _covariance_from_normal(J.T @ J)


def _covariance_from_normal(A):
    """``A^-1`` for the normal matrix ``A = J^T W J``, computed in the variables scaled to unit
    diagonal, refused (NaN) when that scaled matrix has a condition number above 1e12;
    returns (cov, ok).

    One symmetric eigen-decomposition ``A_n = V diag(w) V^T`` gives both the condition number
    ``max|w| / min|w|`` (what ``np.linalg.cond`` computes by SVD for a symmetric matrix) and
    the inverse ``V diag(1/w) V^T``, compiled (:func:`_covariance_kernel`): the numpy version's
    dozen calls on a 7x7 matrix took ~45 us of a 64 px fit's ~1 ms.
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    if A.shape[0] == 0:
        return np.zeros((0, 0)), True
    return _covariance_of(A.shape[0], _covariance_kernel, A)


def _covariance_of(n, kernel, *args):
    """``(cov, ok)`` of ``n`` parameters from ``kernel(*args, cov)`` (the codes of
    :func:`_covariance_kernel`; a ``LinAlgError`` is a refusal too): the covariance, or NaN
    where it is refused."""
    cov = np.empty((n, n))
    try:
        ok = kernel(*args, cov)
    except np.linalg.LinAlgError:
        ok = -1
    if ok < 0:
        return np.full((n, n), np.nan), False
    return cov, bool(ok)


def _physical_covariance(ev, gram, p):
    """``(cov, ok)`` of the free physical parameters at ``p`` from the basis Gram matrix
    ``gram`` of evaluator ``ev``: :func:`_covariance_from_normal` of
    :meth:`~mogviewer.fitting.normal_eval._NormalEvaluator.physical_normal`, in one compiled
    call for the usual fit (:func:`mogviewer.fitting._fast._physical_covariance_kernel`)."""
    lay = ev.physical_layout()
    if lay is None:
        return _covariance_from_normal(ev.physical_normal(gram, p))
    return _covariance_of(len(ev.problem.free), _physical_covariance_kernel, *lay, p.flux,
                          p.re, p.q, p.angle, gram)


def _warm_solver():
    """Compile (or load) the LM driver's small kernels (:func:`_eta_shape`, :func:`_assemble`
    and those of :mod:`mogviewer.fitting.lm`), so the first fit does not compile them
    silently; registered with :func:`mogviewer.render.warmup` (end of this module)."""
    from . import lm

    J = np.zeros((1, 3, 3))
    _eta_shape(np.zeros(3), 0, J[0])
    ix = np.zeros(1, dtype=np.int64)
    _assemble(np.zeros((3, 3)), ix, ix, ix[:0], ix[:0], 1.0, 0.0, J, ix, ix, np.ones(1),
              np.eye(3), np.ones(3), np.zeros((3, 3)))
    _linear_optimum(np.eye(3), np.ones(3), ix, ix, np.zeros(3), np.full(3, -1.0), np.ones(3))
    n = 2
    A, g, z = np.eye(n), np.ones(n), np.zeros(n)
    lo, hi = np.full(n, -1.0), np.ones(n)
    free = np.ones(n, dtype=np.bool_)
    lm._damped_step(A, g, np.ones(n), free, 1e-3, z, lo, hi, np.zeros(n), np.zeros(n),
                    np.zeros((n, n + 1)))
    lm._prepare(A, g, z, lo, hi, np.zeros(n), np.ones(n), free, 1.0, 1e-10)
    lm._small(g, z, 1e-8)
    lm._finite(1.0, A, g)
    lm._secant(np.zeros((n, n)), g, g, z, A, np.ones(n), 1.0, A, np.zeros((3, n)))
    _covariance_kernel(np.eye(n), np.zeros((n, n)))


#: FitProblem fields the accumulating kernel knows; any other one that is set (a PSF with a
#: pixelised residual part, say) sends the fit to the materialised path
_KNOWN_FIELDS = {"image", "weights", "psf", "profile", "M", "n", "free", "bounds", "sky",
                 "profile2", "M2"}


#: the fields of each problem class that :data:`_KNOWN_FIELDS` does not name, by class (listing
#: the dataclass fields took ~15 us of a single 64 px fit)
_EXTRA_FIELDS = {}


def _accumulable(problem):
    # every PSF accumulates: a mixture in the kernel, the pixel (no PSF) as the pixel's
    # mixtures fused with the galaxy's components, the exact mode as the Gaussians in the kernel
    # plus the residual planes by FFT (render.normal.normal_psf)
    extra = _EXTRA_FIELDS.get(type(problem))
    if extra is None:
        extra = _EXTRA_FIELDS[type(problem)] = tuple(
            f.name for f in dataclasses.fields(problem)
            if f.name not in _KNOWN_FIELDS and f.name not in ("psf_mode", "psf_info", "scale"))
    return all(getattr(problem, name) is None or getattr(problem, name) is False
               for name in extra)


def fit(problem, start=None, *, callback: Callable[[FitProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None, max_nfev=200, xtol=1e-8, ftol=1e-9,
        jacobian="analytic", solver="lm"):
    """Fit ``problem`` from ``start`` (default :func:`initial_guess`); see :func:`_fit`.

    Parameters and results are in the caller's image units. A problem holding data of extreme
    magnitude (``problem.scale != 1``: values of 1e-120 or 1e120, say) is fitted in its internal
    units and the result scaled back: flux and sky terms (and their covariance) times
    ``problem.scale``; chi^2, shape, centre and n are unchanged by the scale.
    """
    if not isinstance(problem, FitProblem):
        raise TypeError(f"problem must be a FitProblem, got {type(problem).__name__}")
    if start is not None and not isinstance(start, GalaxyParams):
        raise TypeError(f"start must be GalaxyParams, got {type(start).__name__}")
    scale = getattr(problem, "scale", 1.0)
    kw = dict(should_stop=should_stop, max_nfev=max_nfev, xtol=xtol, ftol=ftol,
              jacobian=jacobian, solver=solver)
    if scale == 1.0:
        return _fit(problem, start, callback=callback, **kw)
    cb = None
    if callback is not None:
        def cb(progress):
            callback(dataclasses.replace(progress, params=problem.to_physical(progress.params)))
    res = _fit(problem, None if start is None else problem.to_internal(start), callback=cb,
               **kw)
    return dataclasses.replace(res, params=problem.to_physical(res.params),
                               start=problem.to_physical(res.start),
                               covariance=problem.covariance_to_physical(res.covariance,
                                                                         res.free))


def _fit(problem, start=None, *, callback: Callable[[FitProgress], None] | None = None,
         should_stop: Callable[[], bool] | None = None, max_nfev=200, xtol=1e-8, ftol=1e-9,
         jacobian="analytic", solver="lm"):
    """Fit ``problem`` from ``start`` (default :func:`initial_guess`).

    Parameters
    ----------
    problem : FitProblem
    start : GalaxyParams, optional
    callback : callable, optional
        Called once per iteration with an immutable :class:`FitProgress`.
    should_stop : callable, optional
        Polled every iteration; when it returns true the fit stops cleanly with status
        ``'cancelled'`` and the best parameters so far.
    max_nfev : int
        Evaluation limit (status ``'max_evaluations'`` and flag ``NOT_CONVERGED`` when hit).
    jacobian : {'analytic', '2-point', '3-point'}
        The renderer's exact derivatives (default), or finite differences (for comparison;
        these use the scipy driver).
    solver : {'lm', 'scipy'}
        Levenberg-Marquardt on the normal equations the kernel accumulates (default), or
        ``scipy.optimize.least_squares`` on the materialised Jacobian (the reference; also
        used whenever the problem carries something the accumulating kernel does not model).

    Never raises for bad data: no usable pixels, a numerical failure or a non-finite start give
    a result with status ``'failed'`` and flags; only wrong argument types raise ``TypeError``.

    Returns
    -------
    FitResult
    """
    t0 = time.perf_counter()
    if not isinstance(problem, FitProblem):
        raise TypeError(f"problem must be a FitProblem, got {type(problem).__name__}")
    if start is not None and not isinstance(start, GalaxyParams):
        raise TypeError(f"start must be GalaxyParams, got {type(start).__name__}")
    if solver not in ("lm", "scipy"):
        raise ValueError(f"solver must be 'lm' or 'scipy', got {solver!r}")
    prof = problem.profile_mixture()
    n_free = len(problem.free)
    nu = problem.n_good - n_free

    def failed(params, flags, message, nfev=0):
        ny, nx = problem.shape
        if not (-0.5 <= params.x <= nx - 0.5 and -0.5 <= params.y <= ny - 0.5):
            flags |= FitFlags.CENTRE_OUTSIDE
        return FitResult(params=params, start=params, free=problem.free,
                         covariance=np.full((n_free, n_free), np.nan), chi2=float("nan"), nu=nu,
                         nit=0, nfev=nfev, status="failed", flags=flags, message=message,
                         profile=problem.profile, M=problem.M, n=problem.n,
                         flux_fraction=prof.flux_fraction, elapsed=time.perf_counter() - t0,
                         profile2=problem.profile2, M2=problem.M2)

    if nu <= 0:
        ny, nx = problem.shape
        placeholder = start or GalaxyParams(flux=0.0, x=(nx - 1) / 2, y=(ny - 1) / 2, re=1.0,
                                            q=1.0, angle=0.0)
        return failed(placeholder, FitFlags.TOO_FEW_PIXELS,
                      f"{problem.n_good} usable pixels for {n_free} free parameters: "
                      "nothing to fit (is everything masked or of zero weight?)")
    if start is None:
        try:
            start = problem.to_internal(initial_guess(problem))
        except FitError as exc:
            ny, nx = problem.shape
            return failed(GalaxyParams(flux=0.0, x=(nx - 1) / 2, y=(ny - 1) / 2, re=1.0, q=1.0,
                                       angle=0.0), FitFlags.NOT_CONVERGED,
                          f"no initial guess from the image moments: {exc}")
    if problem.uses_family and "n" not in problem.free and start.n != problem.n:
        start = start.replace(n=problem.n)  # a fixed index is the problem's, not the start's
    # nu once per fit (counting the weights costs 30 us at 256x256)
    common = dict(nu=nu, start=start, free=problem.free, profile=problem.profile, M=problem.M,
                  n=problem.n, flux_fraction=prof.flux_fraction, profile2=problem.profile2,
                  M2=problem.M2)
    par = _Param(problem, start)
    z0 = par.to_z(start)
    lo, hi = par.bounds()
    # a start on or beyond a bound is moved just inside it (TRF needs a strictly feasible start)
    for i, (lo_i, hi_i) in enumerate(zip(lo.tolist(), hi.tolist())):
        if math.isfinite(lo_i):
            z0[i] = max(z0[i], lo_i + 1e-9 * max(1.0, abs(lo_i)))
        if math.isfinite(hi_i):
            z0[i] = min(z0[i], hi_i - 1e-9 * max(1.0, abs(hi_i)))

    def cb(intermediate_result):
        z = intermediate_result.x
        if callback is not None:
            callback(FitProgress(params=par.from_z(z), chi2=2.0 * float(intermediate_result.cost),
                                 iteration=int(intermediate_result.nit),
                                 nfev=int(intermediate_result.nfev),
                                 elapsed=time.perf_counter() - t0))
        if should_stop is not None and should_stop():
            raise StopIteration

    if n_free == 0:
        r = _Evaluator(problem, par).residuals(z0)
        return FitResult(params=start, covariance=np.zeros((0, 0)), chi2=float(r @ r),
                         nit=0, nfev=1, status="converged", flags=FitFlags(0),
                         message="no free parameters", elapsed=time.perf_counter() - t0,
                         **common)
    if solver == "lm" and jacobian == "analytic" and _accumulable(problem):
        return _fit_lm(problem, par, z0, lo, hi, start, callback, should_stop, max_nfev, xtol,
                       ftol, t0, common, failed)
    ev = _Evaluator(problem, par)
    jac = ev.jacobian if jacobian == "analytic" else jacobian
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            from scipy import optimize  # on use: 0.4-0.6 s of start-up
            res = optimize.least_squares(ev.residuals, z0, jac=jac, method="trf",
                                         bounds=(lo, hi), x_scale="jac", max_nfev=max_nfev,
                                         xtol=xtol, ftol=ftol, gtol=1e-10, callback=cb)
    except (np.linalg.LinAlgError, ArithmeticError) as exc:  # incl. ZeroDivision, Overflow
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"numerical failure ({type(exc).__name__}: {exc})", ev.nfev)
    except ValueError as exc:
        if "not finite" not in str(exc):
            raise
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"the model is not finite at the start ({exc}); check the start values",
                      ev.nfev)
    flags = FitFlags(0)
    if res.status == -2:
        status = "cancelled"
        flags |= FitFlags.CANCELLED
    elif res.status == 0:
        status = "max_evaluations"
        flags |= FitFlags.NOT_CONVERGED
    elif res.status > 0:
        status = "converged"
    else:
        status = "failed"
    p = par.from_z(res.x)
    r = ev.residuals(res.x)
    chi2 = float(r @ r)
    Jphys = ev.physical_jacobian(p)
    cov, cov_ok = _covariance(Jphys)
    return _result(problem, p, chi2, cov, cov_ok, bool(np.any(res.active_mask != 0)), flags,
                   status, int(getattr(res, "nit", 0) or res.njev or 0), int(res.nfev),
                   str(res.message), t0, common)


def _fit_lm(problem, par, z0, lo, hi, start, callback, should_stop, max_nfev, xtol, ftol, t0,
            common, failed):
    keep = _planes.claim()      # this thread's kept buffers, unless a fit already has them
    try:
        return _fit_lm_with(problem, par, z0, lo, hi, start, callback, should_stop, max_nfev,
                            xtol, ftol, t0, common, failed, keep)
    finally:
        if keep:
            _planes.release()


def _fit_lm_with(problem, par, z0, lo, hi, start, callback, should_stop, max_nfev, xtol, ftol,
                 t0, common, failed, keep):
    ev = _NormalEvaluator(problem, par, keep=keep)
    caller_err = np.geterr()

    def cb(z, chi2, nit, nfev):
        # the caller's floating-point error state inside its callback, not the fit's
        with np.errstate(**caller_err):
            if callback is not None:
                callback(FitProgress(params=par.from_z(z), chi2=float(chi2),
                                     iteration=int(nit), nfev=int(nfev),
                                     elapsed=time.perf_counter() - t0))
            if should_stop is not None and should_stop():
                raise StopIteration

    try:
        # one error-state context for the whole fit, not one per evaluation (~3 us each)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            kw = dict(max_nfev=max_nfev, xtol=xtol, ftol=ftol, gtol=1e-10,
                      ftol_predicted=True, second_order=True)
            if ev.ctx is not None and callback is None and should_stop is None:
                # the usual fit: its first evaluation and loop in one compiled call
                res = levenberg_marquardt(None, z0, lo, hi,
                                          compiled=(ev.ctx, ev._lin_z, ev._lin_b), **kw)
            else:
                res = levenberg_marquardt(ev, z0, lo, hi, first=ev.start(z0, lo, hi),
                                          callback=cb if callback is not None
                                          or should_stop is not None else None, **kw)
    except (np.linalg.LinAlgError, ArithmeticError) as exc:
        # (the compiled fit counts its evaluations inside: at least the first was made)
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"numerical failure ({type(exc).__name__}: {exc})", max(ev.nfev, 1))
    if res.status == "failed":
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"{res.message}; check the start values", res.nfev)
    flags = FitFlags(0)
    if res.status == "cancelled":
        flags |= FitFlags.CANCELLED
    elif res.status == "max_evaluations":
        flags |= FitFlags.NOT_CONVERGED
    gram = res.aux
    p = par.from_z(res.z)
    cov, cov_ok = _physical_covariance(ev, gram, p)
    return _result(problem, p, float(res.chi2), cov, cov_ok, bool(res.active.any()), flags,
                   res.status, res.nit, res.nfev, res.message, t0, common)


def _result(problem, p, chi2, cov, cov_ok, at_bound, flags, status, nit, nfev, message, t0,
            common):
    """The :class:`FitResult` at ``p``, with the flags every driver sets the same way."""
    nu = common["nu"]
    if not cov_ok:
        flags |= FitFlags.COV_NONFINITE
    if at_bound:
        flags |= FitFlags.AT_BOUND
    if p.flux <= 0 or (problem.profile2 is not None and p.flux2 <= 0):
        flags |= FitFlags.NEGATIVE_FLUX
    ny, nx = problem.shape
    if not (-0.5 <= p.x <= nx - 0.5 and -0.5 <= p.y <= ny - 0.5):
        flags |= FitFlags.CENTRE_OUTSIDE
    shapes = [(p.re, p.q)] + ([(p.re2, p.q2)] if problem.profile2 else [])
    if min(re for re, _ in shapes) < SUBPIXEL:
        flags |= FitFlags.RE_SUBPIXEL
    elif any(is_needle(re, q) for re, q in shapes):
        flags |= FitFlags.Q_SUBPIXEL
    if max(p.re, p.re2 if problem.profile2 else 0.0) > max(ny, nx):
        flags |= FitFlags.RE_BEYOND_STAMP
    flags |= psf_flags(problem, p)
    if nu > 0 and chi2 / nu > chi2nu_threshold(nu):
        flags |= FitFlags.ERRORS_UNDERESTIMATED
    if problem.uses_family:
        common = dict(common, n=p.n, flux_fraction=problem.profile_mixture(n=p.n).flux_fraction)
    return FitResult(params=p, covariance=cov, chi2=chi2, nit=nit, nfev=nfev,
                     status=status, flags=flags, message=message,
                     elapsed=time.perf_counter() - t0, **common)


def _warm_loop():
    """Compile (or load) the compiled fit (:func:`mogviewer.fitting.lm._lm_fast`: the first
    evaluation and the LM loop with :func:`~mogviewer.fitting._fast._fast_eval`) and its wrap-up
    (:func:`_physical_covariance_kernel`): a fit of a small simulated galaxy takes that path
    (the argument types are those of every fit with a mixture PSF)."""
    from ..mixture import Mixture

    yy, xx = np.mgrid[:12, :12]
    img = 100.0 * np.exp(-0.5 * ((xx - 5.6) ** 2 + (yy - 6.2) ** 2 / 0.5) / 4.0) + 1.0
    prob = FitProblem.from_arrays(img, sigma=np.ones(img.shape),
                                  psf=Mixture.isotropic([1.0], [1.0]), profile="exp", M=4,
                                  sky="constant")
    fit(prob, GalaxyParams(flux=800.0, x=5.5, y=6.0, re=2.0, q=0.8, angle=10.0, sky=1.0),
        max_nfev=3)


# render.warmup() compiles the driver's kernels too, and compile_status() reports them
_register_warm("fit driver", _warm_solver, lambda: _assemble)
_register_warm("fit loop", _warm_loop, lambda: _lm_fast)
