"""The usual fit's evaluation, compiled: chi^2, ``J^T W J`` and ``J^T W r`` from the optimiser's
``z`` for one galaxy component in eta mode with a mixture PSF (:func:`_fast_eval`), and the
small pieces the evaluator in :mod:`mogviewer.fitting.normal_eval` uses in every mode (the shape and
its Jacobian, the assembly of ``A`` and ``g``, the linear parameters' optimum and its Cholesky
solve); and the first evaluation of a fit, at that optimum (:func:`_fast_start`).

Apart from the evaluator so that the LM loop (:mod:`mogviewer.fitting.lm`) can call
:func:`_fast_eval` by name: a compiled function passed as an argument is part of the caller's
type, which numba's cache does not find again in a new process (the loop recompiled in every
process, 6.4 s).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..ellipse import _shape_jacobian_physical_into
from ..render.exact import PIXEL_WIDE_VAR
from ..render.normal import _galaxy_normal_kernel, _pairs_normal_kernel
from .problem import _ETA_MAX, _LN_R_MAX, _LN_R_MIN


@numba.njit(cache=True, nogil=True)
def _cholesky_solve(M, y, m):
    """Solve ``M[:m, :m] x = y[:m]`` for a symmetric positive definite ``M`` by Cholesky, in
    place: the lower triangle of ``M`` (the only part read) becomes the factor and ``y`` the
    solution. Returns False (``M`` and ``y`` partly overwritten) when ``M`` is not numerically
    positive definite."""
    for a in range(m):
        for b in range(a + 1):
            v = M[a, b]
            for c in range(b):
                v -= M[a, c] * M[b, c]
            if a == b:
                if not v > 0.0:
                    return False
                M[a, a] = math.sqrt(v)
            else:
                M[a, b] = v / M[b, b]
    for a in range(m):
        v = y[a]
        for c in range(a):
            v -= M[a, c] * y[c]
        y[a] = v / M[a, a]
    for a in range(m - 1, -1, -1):
        v = y[a]
        for c in range(a + 1, m):
            v -= M[c, a] * y[c]
        y[a] = v / M[a, a]
    return True


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


@numba.njit(cache=True, nogil=True)
def _covariance_kernel(A, cov):
    """:func:`mogviewer.fitting.solver._covariance_from_normal` compiled: fills ``cov`` and
    returns 1 (usable), 0 (computed, but not finite or with a diagonal entry <= 0) or -1
    (refused: a diagonal entry of ``A`` not positive or not finite, an entry not finite, or
    the scaled matrix's condition number above 1e12)."""
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
def _eta_shape(z, i, J):
    """``(Sxx, Sxy, Syy)`` at ``u = z[i:i+3] = (ln r_circ, eta1, eta2)``, clipped as
    :func:`~mogviewer.fitting.parametrisation._clip_eta` does, and ``J`` (3, 3) filled with
    ``d(Sxx, Sxy, Syy)/du``: :func:`mogviewer.ellipse.shape_jacobian_eta`'s formulas, compiled
    (in Python they took ~30 us of a 64 px evaluation's ~0.5 ms)."""
    lnrc = min(max(z[i], _LN_R_MIN), _LN_R_MAX)
    e1 = z[i + 1]
    e2 = z[i + 2]
    eta = math.hypot(e1, e2)
    if eta > _ETA_MAX:
        f = _ETA_MAX / eta
        e1 *= f
        e2 *= f
        eta = math.hypot(e1, e2)
    r2 = math.exp(2 * lnrc)
    ch = math.cosh(eta)
    if abs(eta) < 1e-4:
        sc = 1.0 + eta * eta / 6.0 + eta ** 4 / 120.0
    else:
        sc = math.sinh(eta) / eta
    if abs(eta) < 1e-3:
        dsc = 1.0 / 3.0 + eta * eta / 30.0 + eta ** 4 / 840.0
    else:
        dsc = (eta * math.cosh(eta) - math.sinh(eta)) / eta ** 3
    sxx = r2 * (ch + sc * e1)
    sxy = r2 * (sc * e2)
    syy = r2 * (ch - sc * e1)
    J[0, 0] = 2 * sxx
    J[1, 0] = 2 * sxy
    J[2, 0] = 2 * syy
    # d/de1: dN = (1, 0, -1); d/de2: dN = (0, 1, 0)
    J[0, 1] = r2 * (sc * e1 + dsc * e1 * e1 + sc)
    J[1, 1] = r2 * (dsc * e1 * e2)
    J[2, 1] = r2 * (sc * e1 - dsc * e1 * e1 - sc)
    J[0, 2] = r2 * (sc * e2 + dsc * e2 * e1)
    J[1, 2] = r2 * (dsc * e2 * e2 + sc)
    J[2, 2] = r2 * (sc * e2 - dsc * e2 * e1)
    return sxx, sxy, syy


@numba.njit(cache=True, nogil=True)
def _assemble(T0, i1r, i1c, i2r, i2c, flux, flux2, Js, cols, offs, fl, gram, rhs, T):
    """``A = T^T gram T`` and ``g = T^T rhs`` with ``T`` (B, n) built in place: ``T0``, the
    entries ``(i1r, i1c)`` set to ``flux`` and ``(i2r, i2c)`` to ``flux2``, and for each
    shape block ``k`` the rows ``offs[k] .. offs[k] + 2``, columns ``cols[k] .. cols[k] + 2``
    set to ``fl[k] Js[k]`` (:meth:`_NormalEvaluator.columns`, compiled: the numpy version
    and its two small matrix products cost ~40 us per evaluation)."""
    B, n = T0.shape
    for a in range(B):
        for b in range(n):
            T[a, b] = T0[a, b]
    for k in range(i1r.shape[0]):
        T[i1r[k], i1c[k]] = flux
    for k in range(i2r.shape[0]):
        T[i2r[k], i2c[k]] = flux2
    for k in range(cols.shape[0]):
        for a in range(3):
            for b in range(3):
                T[offs[k] + a, cols[k] + b] = fl[k] * Js[k, a, b]
    GT = gram @ T
    A = np.empty((n, n))
    g = np.empty(n)
    for i in range(n):
        v = 0.0
        for a in range(B):
            v += T[a, i] * rhs[a]
        g[i] = v
        for j in range(n):
            v = 0.0
            for a in range(B):
                v += T[a, i] * GT[a, j]
            A[i, j] = v
    return A, g


@numba.njit(cache=True, nogil=True)
def _pixel_pairs(prof, one, comb, sxx, sxy, syy):
    """No PSF: the profile's columns paired with the pixel as
    :meth:`mogviewer.render.normal.NormalPsf.pairs` pairs them, compiled: the wide columns
    (minor-axis variance ``v_m lambda_min(S) >= PIXEL_WIDE_VAR``) each with the one-Gaussian
    pixel ``one`` (6, 1), then each narrow column with every Gaussian of the pixel mixture
    ``comb`` (6, K), in that order (:func:`mogviewer.render.api._parts`). Returns ``(pp (3, C),
    qq (6, C))``."""
    d = sxx - syy           # as render.api._parts writes it, to the last bit
    lam = 0.5 * (sxx + syy) - math.sqrt(0.25 * (d * d) + sxy * sxy)
    M = prof.shape[1]
    K = comb.shape[1]
    narrow = np.empty(M, dtype=np.bool_)
    for m in range(M):
        narrow[m] = prof[1, m] * lam < PIXEL_WIDE_VAR
    n_narrow = int(narrow.sum())
    C = M - n_narrow + n_narrow * K
    pp = np.empty((3, C))
    qq = np.empty((6, C))
    c = 0
    for m in range(M):
        if not narrow[m]:
            for a in range(3):
                pp[a, c] = prof[a, m]
            for a in range(6):
                qq[a, c] = one[a, 0]
            c += 1
    for m in range(M):
        if narrow[m]:
            for k in range(K):
                for a in range(3):
                    pp[a, c] = prof[a, m]
                for a in range(6):
                    qq[a, c] = comb[a, k]
                c += 1
    return pp, qq


@numba.njit(cache=True, nogil=True)
def _fast_eval(z, ctx):
    """``(chi2, A, g, gram)`` at ``z``, compiled, for :meth:`_NormalEvaluator._call_fast`'s
    usual case (:meth:`_NormalEvaluator._compiled_context`): the values from ``z`` (or the
    start's, for fixed ones), the shape and its Jacobian (:func:`_eta_shape`), the basis'
    coefficients, one accumulating kernel call (the pixel's pairs when ``pixel``: no PSF) and
    the assembly of ``A`` and ``g``. Called by name from the compiled LM loop
    (:func:`mogviewer.fitting.lm._lm_loop`) and the first evaluation (:func:`_fast_start`),
    it keeps a whole fit out of Python."""
    (prof, psf, ring, sc, acc, T0, i1r, i1c, i2r, i2c, J, cols, offs, fl, T, zi, base,
     NB, pixel, one, comb) = ctx
    v = base.copy()         # flux, x, y, sky, sky_dx, sky_dy
    for k in range(6):
        if zi[k] >= 0:
            v[k] = z[zi[k]]
    sxx, sxy, syy = _eta_shape(z, cols[0], J[0])
    coef = acc[3]
    for b in range(coef.shape[0]):
        coef[b] = 0.0
    coef[0] = v[0]
    for k in range(coef.shape[0] - NB):
        coef[NB + k] = v[3 + k]
    if pixel:               # no PSF: the pixel, paired with the profile's columns
        pp, qq = _pixel_pairs(prof, one, comb, sxx, sxy, syy)
        _pairs_normal_kernel(v[1], v[2], sxx, sxy, syy, pp, qq, ring, sc, acc)
    else:
        _galaxy_normal_kernel(v[1], v[2], sxx, sxy, syy, prof, psf, ring, sc, acc)
    gram = acc[4].copy()
    rhs = acc[5].copy()
    fl[0] = v[0]
    A, g = _assemble(T0, i1r, i1c, i2r, i2c, v[0], 0.0, J, cols, offs, fl, gram, rhs, T)
    return acc[6][0], A, g, gram


@numba.njit(cache=True, nogil=True)
def _fast_start(z, ctx, lin_z, lin_b, lo, hi):
    """:meth:`~mogviewer.fitting.normal_eval._NormalEvaluator.start` compiled, for the usual
    case of :func:`_fast_eval`: ``(z', chi2, A, g, gram)`` of one evaluation at ``z`` with the
    linear parameters ``z[lin_z]`` (basis planes ``lin_b``) moved to their optimum
    (:func:`_linear_optimum`) and ``A``, ``g`` assembled there; ``z`` itself (a copy) with the
    evaluation's values where that optimum is singular, not finite or out of ``[lo, hi]``.
    The same operations in the same order as the Python method (the tests compare them bit for
    bit); in one compiled call with the loop, a fit crosses from Python into compiled code
    once (:func:`mogviewer.fitting.lm._lm_fast`)."""
    z = z.copy()
    chi2, A, g, gram = _fast_eval(z, ctx)
    if lin_z.shape[0] == 0 or not math.isfinite(chi2):
        return z, chi2, A, g, gram
    acc = ctx[4]
    z2 = z.copy()
    rhs = acc[5].copy()
    drop = _linear_optimum(gram, rhs, lin_z, lin_b, z2, lo, hi)
    if not (0.0 <= drop <= chi2):     # singular, non-finite, or outside the bounds
        return z, chi2, A, g, gram
    T0, i1r, i1c, i2r, i2c, J, cols, offs, fl, T, zi, base = ctx[5:17]
    flux = z2[zi[0]] if zi[0] >= 0 else base[0]
    fl[0] = flux
    A, g = _assemble(T0, i1r, i1c, i2r, i2c, flux, 0.0, J, cols, offs, fl, gram, rhs, T)
    return z2, chi2 - drop, A, g, gram


_shape_jacobian_physical = numba.njit(cache=True, nogil=True)(_shape_jacobian_physical_into)


@numba.njit(cache=True, nogil=True)
def _physical_normal_kernel(T0, i1r, i1c, i2r, i2c, col, flux, re, q, angle, gram):
    """``J^T W J`` of the usual fit's free physical parameters (one component, ``re, q,
    angle`` free and in that order at column ``col``) from the basis Gram matrix ``gram``:
    ``T^T gram T`` with ``T``'s constant part ``T0``, its flux entries ``(i1r, i1c)`` and, in
    rows 3-5, the flux times the physical shape Jacobian at ``re, q, angle``
    (:func:`mogviewer.ellipse.shape_jacobian_physical`); see
    :meth:`~mogviewer.fitting.normal_eval._NormalEvaluator.physical_normal`."""
    J = np.empty((1, 3, 3))
    _shape_jacobian_physical(re, q, angle, J[0])
    cols = np.empty(1, dtype=np.int64)
    cols[0] = col
    offs = np.empty(1, dtype=np.int64)
    offs[0] = 3
    fl = np.empty(1)
    fl[0] = flux
    A, _ = _assemble(T0, i1r, i1c, i2r, i2c, flux, 0.0, J, cols, offs, fl, gram,
                     np.zeros(gram.shape[0]), np.zeros(T0.shape))
    return A


@numba.njit(cache=True, nogil=True)
def _physical_covariance_kernel(T0, i1r, i1c, i2r, i2c, col, flux, re, q, angle, gram, cov):
    """:func:`_physical_normal_kernel` then :func:`_covariance_kernel` (its return codes; the
    inverse into ``cov``): a fit's wrap-up in one compiled call."""
    return _covariance_kernel(
        _physical_normal_kernel(T0, i1r, i1c, i2r, i2c, col, flux, re, q, angle, gram), cov)
