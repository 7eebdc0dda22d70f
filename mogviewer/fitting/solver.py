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

import numba
import numpy as np

from ..ellipse import shape_jacobian_eta, shape_jacobian_physical, shape_matrix
from ..errors import FitError
from ..render import render_galaxy, render_galaxy_dn
from ..render.api import _profile_packed
from ..render.exact import ExactDn, ExactPsf
from ..render.kernels import _scratch
from ..render.normal import (
    DnPlane,
    NormalAccumulator,
    NormalPsf,
    _planes,
    normal_psf,
)
from ..render.warm import register as _register_warm
from ._fast import _assemble, _eta_shape, _fast_eval
from .flags import FitFlags, chi2nu_threshold
from .lm import _cholesky_solve, _lm_loop, levenberg_marquardt
from .parametrisation import _clip_eta, _Param
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
    cov = np.empty_like(A)
    try:
        ok = _covariance_kernel(A, cov)
    except np.linalg.LinAlgError:
        ok = -1
    if ok < 0:
        return np.full(A.shape, np.nan), False
    return cov, bool(ok)


@numba.njit(cache=True, nogil=True)
def _covariance_kernel(A, cov):
    """:func:`_covariance_from_normal` compiled: fills ``cov`` and returns 1 (usable), 0
    (computed, but not finite or with a diagonal entry <= 0) or -1 (refused: a diagonal
    entry of ``A`` not positive or not finite, an entry not finite, or the scaled matrix's
    condition number above 1e12)."""
    n = A.shape[0]
    As = np.empty((n, n))
    scale = np.empty(n)
    for i in range(n):
        d = A[i, i]
        if not (d > 0.0 and math.isfinite(d)):
            return -1
        scale[i] = math.sqrt(d)
    for i in range(n):
        for j in range(n):
            v = 0.5 * (A[i, j] + A[j, i])
            if not math.isfinite(v):
                return -1
            As[i, j] = v / (scale[i] * scale[j])
    w, V = np.linalg.eigh(As)
    amin = np.inf
    amax = 0.0
    for k in range(n):
        a = abs(w[k])
        amin = min(amin, a)
        amax = max(amax, a)
    if not amin * 1e12 >= amax:
        return -1
    ok = 1
    for i in range(n):
        for j in range(n):
            v = 0.0
            for k in range(n):
                v += V[i, k] * V[j, k] / w[k]
            v /= scale[i] * scale[j]
            cov[i, j] = v
            if not math.isfinite(v):
                ok = 0
        if not cov[i, i] > 0.0:
            ok = 0
    return ok


@numba.njit(cache=True, nogil=True)
def _linear_optimum(gram, rhs, zi, bi, z, lo, hi):
    """Move the linear parameters ``z[zi]`` (basis planes ``bi``) to their least-squares
    optimum given the sums ``gram``, ``rhs`` of one evaluation at ``z``: solve
    ``gram[bi, bi] d = rhs[bi]`` (Cholesky), ``z[zi] += d``, ``rhs -= gram[:, bi] d``, and
    return the decrease of chi^2 ``d . rhs[bi]``; -1 (``z`` and ``rhs`` untouched) when the
    subsystem is not positive definite, the step is not finite or leaves ``[lo, hi]``."""
    m = zi.shape[0]
    M = np.empty((m, m))
    d = np.empty(m)
    for a in range(m):
        for b in range(a + 1):
            M[a, b] = gram[bi[a], bi[b]]
        d[a] = rhs[bi[a]]
    if not _cholesky_solve(M, d, m):
        return -1.0
    drop = 0.0
    for a in range(m):
        t = z[zi[a]] + d[a]
        if not (math.isfinite(t) and lo[zi[a]] <= t <= hi[zi[a]]):
            return -1.0
        drop += d[a] * rhs[bi[a]]
    if not math.isfinite(drop):
        return -1.0
    for a in range(m):
        z[zi[a]] += d[a]
    for r in range(rhs.shape[0]):
        v = 0.0
        for a in range(m):
            v += gram[r, bi[a]] * d[a]
        rhs[r] -= v
    return drop


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


_SKY_TERMS = {"none": 0, "constant": 1, "plane": 3}
#: FitProblem fields the accumulating kernel knows; any other one that is set (a PSF with a
#: pixelised residual part, say) sends the fit to the materialised path
_KNOWN_FIELDS = {"image", "weights", "psf", "profile", "M", "n", "free", "bounds", "sky",
                 "profile2", "M2"}


def _accumulable(problem):
    # every PSF accumulates: a mixture in the kernel, the pixel (no PSF) as the pixel's
    # mixtures fused with the galaxy's components, the exact mode as the Gaussians in the kernel
    # plus the residual planes by FFT (render.normal.normal_psf)
    extra = [f.name for f in dataclasses.fields(problem)
             if f.name not in _KNOWN_FIELDS and f.name not in ("psf_mode", "psf_info", "scale")]
    return all(getattr(problem, name) is None or getattr(problem, name) is False
               for name in extra)


class _Values:
    """The direct parameters of one evaluation (flux, x, y, sky terms, n, flux2), from the
    start, then overwritten from ``z``."""

    __slots__ = ("flux", "x", "y", "sky", "sky_dx", "sky_dy", "flux2", "n")

    def __init__(self, start):
        for name in self.__slots__:
            setattr(self, name, getattr(start, name))


def _dn_plane(problem, keep):
    """The d/dn plane of a fit: :class:`~mogviewer.render.exact.ExactDn` for a PSF stamp used
    exactly (the drawn mixture's cheap central difference plus the residual's analytic
    plane), :class:`~mogviewer.render.normal.DnPlane` otherwise."""
    if type(problem.psf) is ExactPsf:
        return ExactDn(problem.psf, problem.shape, keep=keep)
    return DnPlane(problem.shape, keep=keep)


class _Layout:
    """Index tables of a :class:`_NormalEvaluator` that depend only on the parameter names and
    the basis (:func:`_layout`); shared between evaluators, never written to."""
    __slots__ = ("zT", "direct", "eta_at", "lin_z", "lin_b", "cols", "offs", "flux_ix")


_LAYOUTS = {}


def _layout(ev, znames, suffixes):
    """The :class:`_Layout` of evaluator ``ev`` (its ``NB``, ``i_n``, ``composite``, ``fast``
    and basis size set) for the parameter names ``znames``: built on first use per kind of
    problem, then looked up (building it took ~25 us of a 64 px fit's ~2 ms)."""
    key = (znames, suffixes, ev.composite, ev.NB, ev.i_n, ev.acc.B, ev.fast)
    lay = _LAYOUTS.get(key)
    if lay is not None:
        return lay
    lay = _Layout()
    lay.zT = ev._static_columns(list(znames))
    lay.direct = [(n, i) for i, n in enumerate(znames)
                  if n in ("flux", "x", "y", "sky", "sky_dx", "sky_dy", "flux2", "n")]
    lay.eta_at = {sfx: znames.index("ln_rcirc" + sfx) for sfx in suffixes
                  if ev.fast and "ln_rcirc" + sfx in znames}
    planes = {"flux": 0, "sky": ev.NB, "sky_dx": ev.NB + 1, "sky_dy": ev.NB + 2}
    lin = [(i, planes[n]) for n, i in lay.direct if n in planes and planes[n] < ev.acc.B]
    lay.lin_z = np.array([i for i, _ in lin], dtype=np.int64)
    lay.lin_b = np.array([b for _, b in lin], dtype=np.int64)
    lay.cols = np.array([lay.eta_at[x] for x in suffixes if x in lay.eta_at], dtype=np.int64)
    lay.offs = np.array([3 if x == "" else 9 for x in suffixes if x in lay.eta_at],
                        dtype=np.int64)
    lay.flux_ix = tuple(tuple(np.ascontiguousarray(a, dtype=np.int64) for a in ix)
                        for ix in lay.zT[1:])
    if len(_LAYOUTS) > 64:
        _LAYOUTS.clear()
    _LAYOUTS[key] = lay
    return lay


class _NormalEvaluator:
    """chi^2, ``J^T W J`` and ``J^T W r`` of one problem from one accumulating kernel call.

    The basis of :class:`~mogviewer.render.normal.NormalAccumulator` is the unit-flux galaxy and
    its five derivative planes; for a composite, the second component's six (drawn first);
    for a free Sérsic index, d(unit-flux galaxy)/dn; then the sky terms. :meth:`columns` gives
    the linear map ``T`` from the basis to Jacobian columns (``J = basis T``), in the
    optimiser's ``z`` or in the physical parameters.
    """

    def __init__(self, problem, par, *, keep=False):
        self.problem = problem
        self.par = par
        self.family = _FamilyProfile() if problem.uses_family else None
        self.composite = problem.profile2 is not None
        self.with_n = self.family is not None and "n" in problem.free
        n_ext = (6 if self.composite else 0) + (1 if self.with_n else 0)
        self.NB = 6 + n_ext
        self.i_n = self.NB - 1 if self.with_n else -1
        self.acc = NormalAccumulator(problem.image, problem.weights, n_ext=n_ext,
                                     n_sky=_SKY_TERMS[problem.sky], keep=keep)
        self.psf = normal_psf(problem.psf)
        self.dn = _dn_plane(problem, keep) if self.with_n else None
        self.profs = {sfx: problem.profile_mixture(sfx) for sfx in problem.suffixes}
        self.packed = None if self.family is not None else _profile_packed(self.profs[""])
        self.nfev = 0
        # what depends only on the parameter names and the basis (the same for every fit of
        # the same kind of problem), built once per kind (_layout)
        self.fast = all(par.eta_mode.values())
        lay = _layout(self, tuple(par.znames), tuple(problem.suffixes))
        # the z-space map T, split into its constant entries and those scaled by a flux
        # (all but the shape blocks, which :meth:`columns` fills per call)
        self._zT = lay.zT
        # fast path (every component's shape in eta mode, the usual case): the values the
        # kernel needs straight from z, without building GalaxyParams (which validates every
        # field: it cost as much as a 64 px accumulation)
        self._direct = lay.direct
        self._eta_at = lay.eta_at
        # the free linear parameters as (z index, basis plane): the flux, the sky terms
        self._lin_z, self._lin_b = lay.lin_z, lay.lin_b
        if self.fast:
            # compiled assembly of A and g (_eta_shape, _assemble): per-call arrays kept
            self._sfx = list(problem.suffixes)
            self._cols, self._offs = lay.cols, lay.offs
            (self._i1r, self._i1c), (self._i2r, self._i2c) = lay.flux_ix
            self._J = np.zeros((len(self._sfx), 3, 3))
            self._fl = np.zeros(len(self._sfx))
            self._T = np.zeros(self._zT[0].shape)
            self._vals = _Values(self.par.start)
        self.ctx = self._compiled_context()

    def _compiled_context(self):
        """The arguments of :func:`_fast_eval` when it can evaluate this problem (one
        component in eta mode, a mixture PSF, a fixed profile, the fused ring-of-rows
        accumulation), else None."""
        if not (self.fast and not self.composite and not self.with_n and self.packed is not None
                and type(self.psf) is not NormalPsf and NormalAccumulator.fused
                and NormalAccumulator.ring):
            return None
        acc = self.acc
        H, W = acc.shape
        self._coef = np.zeros(acc.B)
        self._acc_t = (acc.data, acc.weights, acc.ext, self._coef, acc._gram, acc._rhs,
                       acc._tot, acc._X, acc._rg)
        names = ("flux", "x", "y", "sky", "sky_dx", "sky_dy")
        at = dict(self._direct)
        zi = np.array([at.get(n, -1) for n in names], dtype=np.int64)
        base = np.array([getattr(self._vals, n) for n in names], dtype=np.float64)
        sc = _scratch.full(W, self.packed.shape[1] * self.psf.shape[1])
        return (self.packed, self.psf, acc._ring, sc, self._acc_t, self._zT[0], self._i1r,
                self._i1c, self._i2r, self._i2c, self._J, self._cols, self._offs, self._fl,
                self._T, zi, base, self.NB)

    def _prof(self, p, sfx):
        if sfx == "" and self.family is not None:
            return self.family.at(p.n)
        return self.profs[sfx]

    def __call__(self, z):
        """``(chi2, A, g, gram)`` at ``z`` in the optimiser's variables (``gram``: of the
        basis, for :meth:`physical_normal`)."""
        self.nfev += 1
        pb = self.problem
        if self.fast and not self.composite:
            return self._call_fast(z)
        if self.fast:
            p = _Values(self.par.start)
            for name, i in self._direct:
                setattr(p, name, float(z[i]))
            S = {}
            for sfx, i in self._eta_at.items():
                S3, J = shape_jacobian_eta(_clip_eta(z[i:i + 3]))
                S[sfx] = (np.array([[S3[0], S3[1]], [S3[1], S3[2]]]),
                          {i: J[:, 0], i + 1: J[:, 1], i + 2: J[:, 2]})
        else:
            p = self.par.from_z(z)
            S = {sfx: self.par.shape_S_and_dz(z, p, sfx) for sfx in pb.suffixes}
        ext = self.acc.ext
        if self.composite:
            render_galaxy(1.0, p.x, p.y, S["2"][0], self.profs["2"], None, pb.psf, pb.shape,
                          derivs=True, out=ext[:6])
        if self.with_n:
            S0 = S[""][0]
            self.dn(ext[self.i_n - 6], p.x, p.y, (S0[0, 0], S0[0, 1], S0[1, 1]),
                    self.family.at(p.n), self.psf)
        coef = self._coefficients(p)
        S0 = S[""][0]
        packed = self.packed if self.packed is not None else _profile_packed(
            self._prof(p, ""))
        gram, rhs, chi2 = self.acc(p.x, p.y, (S0[0, 0], S0[0, 1], S0[1, 1]), packed, self.psf,
                                   coef)
        T = self.columns(p, self.par.znames, {sfx: S[sfx][1] for sfx in S}, self._zT)
        return chi2, T.T @ gram @ T, T.T @ rhs, gram

    def _coefficients(self, p):
        """The linear coefficients of the basis planes: the flux (and the second component's),
        then the sky terms the problem fits."""
        coef = np.zeros(self.acc.B)
        coef[0] = p.flux
        if self.composite:
            coef[6] = p.flux2
        nsky = _SKY_TERMS[self.problem.sky]
        if nsky:
            coef[self.NB] = p.sky
        if nsky == 3:
            coef[self.NB + 1] = p.sky_dx
            coef[self.NB + 2] = p.sky_dy
        return coef

    def start(self, z, lo, hi):
        """The first evaluation of a fit, at the best linear parameters: ``(z', chi2, A, g,
        gram)``.

        The flux and the sky terms enter the model linearly, so from the sums of one
        evaluation at ``z`` their optimum for ``z``'s centre and shape follows exactly (the
        linear subsystem ``G_LL d = rhs_L`` of the basis Gram matrix; chi^2 falls by
        ``d . rhs_L``), with no second evaluation: ``z'`` is ``z`` with them moved there. The
        start's flux is a sum over the segment (0.5-7 % from this optimum on the cutouts of
        ``bench_fit_peers.py``, where chi^2 at the start falls by 0.03-8 %); on the 64 px
        exponential LM took 7 evaluations from it, 6 from the optimum. Only on the compiled path
        (one component in eta mode); unchanged where the subsystem is singular or the optimum
        falls outside the bounds."""
        z = np.array(z, dtype=np.float64)
        if not (self.fast and not self.composite):
            return (z,) + self(z)
        self.nfev += 1
        chi2, A, g, gram, rhs = self._call_fast(z, with_rhs=True)
        if self._lin_z.size == 0 or not math.isfinite(chi2):
            return z, chi2, A, g, gram
        z2 = z.copy()
        rhs2 = rhs.copy()
        drop = _linear_optimum(gram, rhs2, self._lin_z, self._lin_b, z2, lo, hi)
        if not 0.0 <= drop <= chi2:     # singular, non-finite, or outside the bounds
            return z, chi2, A, g, gram
        p = self._vals
        for name, i in self._direct:
            setattr(p, name, float(z2[i]))
        self._fl[0] = p.flux
        A, g = _assemble(self._zT[0], self._i1r, self._i1c, self._i2r, self._i2c, p.flux, 0.0,
                         self._J, self._cols, self._offs, self._fl, gram, rhs2, self._T)
        return z2, chi2 - drop, A, g, gram

    def _call_fast(self, z, with_rhs=False):
        """:meth:`__call__` for one component in eta mode (the usual case), with the shape,
        its Jacobian and the products ``T^T gram T``, ``T^T rhs`` compiled."""
        z = np.asarray(z, dtype=np.float64)
        if self.ctx is not None:
            chi2, A, g, gram = _fast_eval(z, self.ctx)
            if with_rhs:
                return chi2, A, g, gram, self._acc_t[5].copy()
            return chi2, A, g, gram
        p = self._vals
        for name, i in self._direct:
            setattr(p, name, float(z[i]))
        S3 = _eta_shape(z, self._cols[0], self._J[0])
        if self.with_n:
            self.dn(self.acc.ext[self.i_n - 6], p.x, p.y, S3, self.family.at(p.n), self.psf)
        coef = self._coefficients(p)
        packed = self.packed if self.packed is not None else _profile_packed(
            self._prof(p, ""))
        gram, rhs, chi2 = self.acc(p.x, p.y, S3, packed, self.psf, coef)
        self._fl[0] = p.flux
        A, g = _assemble(self._zT[0], self._i1r, self._i1c, self._i2r, self._i2c, p.flux, 0.0,
                         self._J, self._cols, self._offs, self._fl, gram, rhs, self._T)
        if with_rhs:
            return chi2, A, g, gram, rhs
        return chi2, A, g, gram

    def _static_columns(self, names):
        """``(T0, flux entries, flux2 entries)``: the constant part of ``T`` for ``names`` and
        the (row, column) index arrays of the entries equal to ``flux`` and to ``flux2``."""
        T0 = np.zeros((self.acc.B, len(names)))
        f1, f2 = [], []
        NB = self.NB
        for i, name in enumerate(names):
            if name == "flux":
                T0[0, i] = 1.0
            elif name == "flux2":
                T0[6, i] = 1.0
            elif name in ("x", "y"):
                k = 1 if name == "x" else 2
                f1.append((k, i))
                if self.composite:
                    f2.append((6 + k, i))
            elif name == "n":
                f1.append((self.i_n, i))
            elif name in ("sky", "sky_dx", "sky_dy"):
                T0[NB + ("sky", "sky_dx", "sky_dy").index(name), i] = 1.0
        idx = [tuple(np.array(v, dtype=np.intp).reshape(-1, 2).T) for v in (f1, f2)]
        return T0, idx[0], idx[1]

    def columns(self, p, names, dS, static=None):
        """``T`` (B, len(names)): Jacobian column ``i`` (d model / d names[i]) is
        ``basis @ T[:, i]``. ``dS[sfx]`` maps a column index to d(Sxx, Sxy, Syy)/d(that
        parameter); ``static`` is :meth:`_static_columns` of ``names`` if already known."""
        T0, i1, i2 = static if static is not None else self._static_columns(names)
        T = T0.copy()
        f2 = p.flux2 if self.composite else 0.0
        T[i1] = p.flux
        T[i2] = f2
        for sfx, d in dS.items():
            off, f = (3, p.flux) if sfx == "" else (9, f2)
            for i, vec in d.items():
                T[off:off + 3, i] = f * np.asarray(vec)
        return T

    def physical_normal(self, gram, p):
        """``J^T W J`` in the free physical parameters (angles in degrees) from the basis Gram
        matrix ``gram`` accumulated at ``p``."""
        names = list(self.problem.free)
        if self.fast and not self.composite:
            # one component whose re, q, angle are all free and in that order (the usual
            # case): the compiled assembly, with the physical shape Jacobian for the eta one
            lay = _layout(self, tuple(names), ("",))
            i = names.index("re") if "re" in names else -1
            if i >= 0 and names[i:i + 3] == ["re", "q", "angle"]:
                J = np.empty((1, 3, 3))
                J[0] = shape_jacobian_physical(p.re, p.q, p.angle)
                (i1r, i1c), (i2r, i2c) = lay.flux_ix
                A, _ = _assemble(lay.zT[0], i1r, i1c, i2r, i2c, p.flux, 0.0, J,
                                 np.array([i], dtype=np.int64), np.array([3], dtype=np.int64),
                                 np.array([p.flux]), gram, np.zeros(gram.shape[0]),
                                 np.zeros(lay.zT[0].shape))
                return A
        dS = {}
        for sfx in self.problem.suffixes:
            Jp = shape_jacobian_physical(*(getattr(p, n + sfx) for n in SHAPE))
            dS[sfx] = {names.index(n + sfx): Jp[:, k] for k, n in enumerate(SHAPE)
                       if n + sfx in names}
        T = self.columns(p, names, dS)
        return T.T @ gram @ T


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
    common = dict(start=start, free=problem.free, profile=problem.profile, M=problem.M,
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
        return FitResult(params=start, covariance=np.zeros((0, 0)), chi2=float(r @ r), nu=nu,
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
            res = levenberg_marquardt(ev, z0, lo, hi, first=ev.start(z0, lo, hi),
                                      compiled=ev.ctx,
                                      max_nfev=max_nfev, xtol=xtol,
                                      ftol=ftol, gtol=1e-10, ftol_predicted=True,
                                      second_order=True,
                                      callback=cb if callback is not None
                                      or should_stop is not None else None)
    except (np.linalg.LinAlgError, ArithmeticError) as exc:
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"numerical failure ({type(exc).__name__}: {exc})", ev.nfev)
    if res.status == "failed":
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"{res.message}; check the start values", ev.nfev)
    flags = FitFlags(0)
    if res.status == "cancelled":
        flags |= FitFlags.CANCELLED
    elif res.status == "max_evaluations":
        flags |= FitFlags.NOT_CONVERGED
    gram = res.aux
    p = par.from_z(res.z)
    cov, cov_ok = _covariance_from_normal(ev.physical_normal(gram, p))
    return _result(problem, p, float(res.chi2), cov, cov_ok, bool(res.active.any()), flags,
                   res.status, res.nit, res.nfev, res.message, t0, common)


def _result(problem, p, chi2, cov, cov_ok, at_bound, flags, status, nit, nfev, message, t0,
            common):
    """The :class:`FitResult` at ``p``, with the flags every driver sets the same way."""
    n_free = len(problem.free)
    nu = problem.n_good - n_free
    if not cov_ok:
        flags |= FitFlags.COV_NONFINITE
    if at_bound:
        flags |= FitFlags.AT_BOUND
    if p.flux <= 0 or (problem.profile2 is not None and p.flux2 <= 0):
        flags |= FitFlags.NEGATIVE_FLUX
    ny, nx = problem.shape
    if not (-0.5 <= p.x <= nx - 0.5 and -0.5 <= p.y <= ny - 0.5):
        flags |= FitFlags.CENTRE_OUTSIDE
    if min(p.re, p.re2 if problem.profile2 else np.inf) < 0.5:
        flags |= FitFlags.RE_SUBPIXEL
    if max(p.re, p.re2 if problem.profile2 else 0.0) > max(ny, nx):
        flags |= FitFlags.RE_BEYOND_STAMP
    flags |= psf_flags(problem, p)
    if nu > 0 and chi2 / nu > chi2nu_threshold(nu):
        flags |= FitFlags.ERRORS_UNDERESTIMATED
    if problem.uses_family:
        common = dict(common, n=p.n, flux_fraction=problem.profile_mixture(n=p.n).flux_fraction)
    return FitResult(params=p, covariance=cov, chi2=chi2, nu=nu, nit=nit, nfev=nfev,
                     status=status, flags=flags, message=message,
                     elapsed=time.perf_counter() - t0, **common)


def _warm_loop():
    """Compile (or load) the compiled LM loop with its evaluation (:func:`_fast_eval` in
    :func:`mogviewer.fitting.lm._lm_loop`): a fit of a small simulated galaxy takes that path
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
_register_warm("fit loop", _warm_loop, lambda: _lm_loop)
