"""The usual fit's evaluation, compiled: chi^2, ``J^T W J`` and ``J^T W r`` from the optimiser's
``z`` for one galaxy component in eta mode with a mixture PSF (:func:`_fast_eval`), and the
small pieces the evaluator in :mod:`mogviewer.fitting.normal_eval` uses in every mode (the shape and
its Jacobian, the assembly of ``A`` and ``g``).

Apart from the evaluator so that the LM loop (:mod:`mogviewer.fitting.lm`) can call
:func:`_fast_eval` by name: a compiled function passed as an argument is part of the caller's
type, which numba's cache does not find again in a new process (the loop recompiled in every
process, 6.4 s).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..render.exact import PIXEL_WIDE_VAR
from ..render.normal import _galaxy_normal_kernel, _pairs_normal_kernel
from .problem import _ETA_MAX, _LN_R_MAX, _LN_R_MIN


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
    the assembly of ``A`` and ``g``. As an
    argument of the compiled LM loop (:func:`mogviewer.fitting.lm._lm_loop`) it keeps a
    whole fit out of Python."""
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
