"""The evaluator of a fit on accumulated sums: chi^2, ``J^T W J`` and ``J^T W r`` at the
optimiser's ``z`` from one accumulating kernel call (:class:`_NormalEvaluator`), its first
evaluation at the linear parameters' optimum (:meth:`_NormalEvaluator.start`), and the tables it
shares between fits of the same kind (:func:`_layout`). The driver is
:func:`mogviewer.fitting.solver.fit`; the compiled evaluation of the usual case is
:func:`mogviewer.fitting._fast._fast_eval`.
"""

from __future__ import annotations

import math

import numpy as np

from ..ellipse import shape_jacobian_eta, shape_jacobian_physical
from ..render import render_galaxy
from ..render.api import _profile_packed, _psf_packed
from ..render.exact import PIXEL_COMB, PIXEL_ONE, ExactDn, ExactPsf
from ..render.kernels import _scratch
from ..render.normal import DnPlane, NormalAccumulator, NormalPsf, normal_psf
from ._fast import (
    _assemble,
    _eta_shape,
    _fast_eval,
    _fast_start,
    _linear_optimum,
    _physical_normal_kernel,
)
from .parametrisation import _clip_eta
from .params import SHAPE
from .problem import _FamilyProfile

_SKY_TERMS = {"none": 0, "constant": 1, "plane": 3}
#: the pixel as the PSF (no PSF), packed (6, K) for the compiled evaluation: one Gaussian,
#: and the mixture for narrow components (:mod:`mogviewer.render.exact`)
_PIXEL_PACKED = (_psf_packed(PIXEL_ONE), _psf_packed(PIXEL_COMB))


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
        pixel = type(self.psf) is NormalPsf
        if not (self.fast and not self.composite and not self.with_n and self.packed is not None
                and (not pixel or self.psf.psf is None) and NormalAccumulator.fused
                and NormalAccumulator.ring):
            return None
        acc = self.acc
        H, W = acc.shape
        self._acc_t = acc.sums(np.zeros(acc.B))
        names = ("flux", "x", "y", "sky", "sky_dx", "sky_dy")
        at = dict(self._direct)
        zi = np.array([at.get(n, -1) for n in names], dtype=np.int64)
        base = np.array([getattr(self._vals, n) for n in names], dtype=np.float64)
        one, comb = _PIXEL_PACKED
        # no PSF: as many pairs as every column narrow (the pixel mixture's K each) at most
        psf = one if pixel else self.psf
        sc = _scratch.full(W, self.packed.shape[1] * (comb if pixel else psf).shape[1])
        return (self.packed, psf, acc._ring, sc, self._acc_t, self._zT[0], self._i1r,
                self._i1c, self._i2r, self._i2c, self._J, self._cols, self._offs, self._fl,
                self._T, zi, base, self.NB, pixel, one, comb)

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
        exponential LM took 7 evaluations from it, 6 from the optimum. Only for one component
        in eta mode (:meth:`_call_fast`); unchanged where the subsystem is singular or the
        optimum falls outside the bounds."""
        z = np.array(z, dtype=np.float64)
        if not (self.fast and not self.composite):
            return (z,) + self(z)
        self.nfev += 1
        if self.ctx is not None:    # the same steps compiled (the usual case)
            return _fast_start(z, self.ctx, self._lin_z, self._lin_b, lo, hi)
        chi2, A, g, gram, rhs = self._call_fast(z, with_rhs=True)
        if self._lin_z.size == 0 or not math.isfinite(chi2):
            return z, chi2, A, g, gram
        z2 = z.copy()
        rhs2 = rhs.copy()
        drop = _linear_optimum(gram, rhs2, self._lin_z, self._lin_b, z2, lo, hi)
        if not 0.0 <= drop <= chi2:     # singular, non-finite, or outside the bounds
            return z, chi2, A, g, gram
        A, g = self._assembled(z2, gram, rhs2)
        return z2, chi2 - drop, A, g, gram

    def _assembled(self, z, gram, rhs):
        """``A = T^T gram T`` and ``g = T^T rhs`` at ``z`` (the shape Jacobian ``_J`` of the
        last evaluation, the flux from ``z``), compiled (:func:`_assemble`)."""
        p = self._vals
        for name, i in self._direct:
            setattr(p, name, float(z[i]))
        self._fl[0] = p.flux
        return _assemble(self._zT[0], self._i1r, self._i1c, self._i2r, self._i2c, p.flux, 0.0,
                         self._J, self._cols, self._offs, self._fl, gram, rhs, self._T)

    def _call_fast(self, z, with_rhs=False):
        """:meth:`__call__` for one component in eta mode (the usual case), with the shape,
        its Jacobian and the products ``T^T gram T``, ``T^T rhs`` compiled (all of it in
        :func:`_fast_eval` when there is a compiled context; :meth:`start` then takes
        :func:`_fast_start` and never asks for ``rhs``)."""
        z = np.asarray(z, dtype=np.float64)
        if self.ctx is not None:
            return _fast_eval(z, self.ctx)
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
        A, g = self._assembled(z, gram, rhs)
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

    def physical_layout(self):
        """``(T0, i1r, i1c, i2r, i2c, col)`` of the usual fit's physical parameters (one
        component in eta mode whose re, q, angle are free and in that order, at column
        ``col``): the constant part of ``T`` and its flux entries (:func:`_layout`) for the
        compiled assembly; None otherwise."""
        if not (self.fast and not self.composite):
            return None
        names = self.problem.free
        i = names.index("re") if "re" in names else -1
        if i < 0 or tuple(names[i:i + 3]) != ("re", "q", "angle"):
            return None
        lay = _layout(self, tuple(names), ("",))
        (i1r, i1c), (i2r, i2c) = lay.flux_ix
        return lay.zT[0], i1r, i1c, i2r, i2c, i

    def physical_normal(self, gram, p):
        """``J^T W J`` in the free physical parameters (angles in degrees) from the basis Gram
        matrix ``gram`` accumulated at ``p``."""
        names = list(self.problem.free)
        fast = self.physical_layout()
        if fast is not None:    # the usual case, compiled
            return _physical_normal_kernel(*fast, p.flux, p.re, p.q, p.angle, gram)
        dS = {}
        for sfx in self.problem.suffixes:
            Jp = shape_jacobian_physical(*(getattr(p, n + sfx) for n in SHAPE))
            dS[sfx] = {names.index(n + sfx): Jp[:, k] for k, n in enumerate(SHAPE)
                       if n + sfx in names}
        T = self.columns(p, names, dS)
        return T.T @ gram @ T
