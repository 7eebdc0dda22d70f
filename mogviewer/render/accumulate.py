"""Weighted normal equations accumulated row by row, while the derivative kernel draws.

The derivative kernel (:func:`mogviewer.render.kernels._derivs_kernel_py`) calls
:func:`_accumulate_rows` on each group of rows it has finished, while those rows of its six
planes are still in cache. The rows are read as a *basis*: the kernel's planes ``b_0 .. b_5``
(image and its derivatives in x, y, Sxx, Sxy, Syy), then ``E`` planes drawn beforehand
(``ext``: a second galaxy component, d/dn of a Sérsic index), then the sky terms: ``1``,
``gx = j - (W-1)/2``, ``gy = r - (H-1)/2`` (none, the first, or all three). With the model
``m = sum_b coef_b b_b`` and the residual ``res = data - m`` the accumulated sums are

* ``gram[a, b] += sum w b_a b_b`` (upper triangle, ``a <= b``),
* ``rhs[b] += sum w b_b res``,
* ``tot[0] += sum w res^2`` (chi^2),

over the rows given. Every column of the fit's Jacobian is a fixed linear combination of the
basis, so ``J^T W J = T^T gram T`` and ``J^T W res = T^T rhs`` (:mod:`mogviewer.render.normal`):
the Jacobian is never formed. Sky terms in ``1`` and ``gy`` need no pass of their own (sums
already formed, times a per-row constant).

All these sums are entries of one Gram matrix, of the vectors ``X = (basis without sky, res,
1, gx, gy)`` (as many of the last three as there are sky terms) over a group of rows, formed in
tiles of one vector of ``X`` times eight: ten loads per eight products, the sums in registers,
and LLVM vectorises them (reassociated: ``_FM``).

This module imports nothing from the kernels (they import it).
"""

from __future__ import annotations

import numba
import numpy as np

# reassoc: the sums below are reductions, which LLVM vectorises only if it may reorder them
_FM = {"reassoc", "contract"}


def _pad_py(k, NX, ZERO):
    return k if k < NX else ZERO


_pad = numba.njit(cache=True, nogil=True, forceinline=True)(_pad_py)


def _tile8_py(w, X, i, k0, k1, k2, k3, k4, k5, k6, k7, n, rg, k):
    """``rg[i, k + m] += sum_j w_j X[i, j] X[k_m, j]`` for m = 0..7 (rows of one 2-D buffer:
    views of separate planes cost a reference-count update each, more than the sums)."""
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
    for j in range(np.uint64(n)):
        v = w[j] * X[i, j]
        t0 += v * X[k0, j]
        t1 += v * X[k1, j]
        t2 += v * X[k2, j]
        t3 += v * X[k3, j]
        t4 += v * X[k4, j]
        t5 += v * X[k5, j]
        t6 += v * X[k6, j]
        t7 += v * X[k7, j]
    rg[i, k] += t0
    rg[i, k + 1] += t1
    rg[i, k + 2] += t2
    rg[i, k + 3] += t3
    rg[i, k + 4] += t4
    rg[i, k + 5] += t5
    rg[i, k + 6] += t6
    rg[i, k + 7] += t7


def _tile4_py(w, X, i, k0, k1, k2, k3, n, rg, k):
    """Four partners of :func:`_tile8_py`."""
    t0 = t1 = t2 = t3 = 0.0
    for j in range(np.uint64(n)):
        v = w[j] * X[i, j]
        t0 += v * X[k0, j]
        t1 += v * X[k1, j]
        t2 += v * X[k2, j]
        t3 += v * X[k3, j]
    rg[i, k] += t0
    rg[i, k + 1] += t1
    rg[i, k + 2] += t2
    rg[i, k + 3] += t3


def _tile24_py(w, X, i0, i1, k0, k1, k2, k3, n, rg):
    """``rg[i_a, k_m] += sum_j w_j X[i_a, j] X[k_m, j]`` for two rows ``i`` times four ``k``:
    seven loads per eight products (a row times eight partners, :func:`_tile8_py`: ten), the
    form that fewest passes over the rows also take."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
    for j in range(np.uint64(n)):
        ww = w[j]
        x0 = ww * X[i0, j]
        x1 = ww * X[i1, j]
        y0 = X[k0, j]
        y1 = X[k1, j]
        y2 = X[k2, j]
        y3 = X[k3, j]
        a00 += x0 * y0
        a01 += x0 * y1
        a02 += x0 * y2
        a03 += x0 * y3
        a10 += x1 * y0
        a11 += x1 * y1
        a12 += x1 * y2
        a13 += x1 * y3
    rg[i0, k0] += a00
    rg[i0, k1] += a01
    rg[i0, k2] += a02
    rg[i0, k3] += a03
    rg[i1, k0] += a10
    rg[i1, k1] += a11
    rg[i1, k2] += a12
    rg[i1, k3] += a13


_tile8 = numba.njit(cache=True, nogil=True, fastmath=_FM, forceinline=True)(_tile8_py)
_tile4 = numba.njit(cache=True, nogil=True, fastmath=_FM, forceinline=True)(_tile4_py)
_tile24 = numba.njit(cache=True, nogil=True, fastmath=_FM, forceinline=True)(_tile24_py)


def _accumulate_rows_py(acc, out, r0, nk, ro):
    """Add rows ``r0 .. r0 + nk - 1`` (``nk <= 4``) of the image, rows ``ro .. ro + nk - 1`` of
    the kernel's planes ``out`` (``ro = r0`` for whole planes, less for a ring of rows), to the
    sums of ``acc = (data, w, ext, coef, gram, rhs, tot, X, rg)`` (module docstring). The
    rows are taken as one vector of ``nk W`` pixels (fewer loop starts and reductions than row
    by row: they dominate at 64 px).
    ``X`` (NB + 6, 4 W) is work space: rows ``0 .. NB - 1`` the basis, then res, 1, gx, gy, 0
    and the weights; the caller fills 1 and gx (gx repeated four times); ``rg`` is a
    (NB + 12, NB + 12) work matrix."""
    data, w, ext, coef, gram, rhs, tot, X, rg = acc
    H = data.shape[0]
    W = out.shape[2]
    NB = 6 + ext.shape[0]
    nsky = coef.shape[0] - NB
    RES = NB
    ONE = NB + 1
    GX = NB + 2
    GY = NB + 3
    ZERO = NB + 4
    WT = NB + 5
    # rows of X in the Gram matrix: basis, res, then 1, gx, gy as the sky model needs
    NX = NB + 1 + nsky
    n = nk * W
    nu = np.uint64(n)
    Wu = np.uint64(W)
    cy = 0.5 * (H - 1)
    for k in range(nk):
        o = np.uint64(k * W)
        gy = r0 + k - cy
        for j in range(Wu):
            X[WT, o + j] = w[r0 + k, j]
            X[RES, o + j] = data[r0 + k, j]
            X[GY, o + j] = gy
    s0 = coef[NB] if nsky >= 1 else 0.0
    if nsky >= 1:
        for j in range(nu):
            X[RES, j] -= s0
    if nsky == 3:
        sdx = coef[NB + 1]
        sdy = coef[NB + 2]
        for j in range(nu):
            X[RES, j] -= sdx * X[GX, j] + sdy * X[GY, j]
    # the fused kernels' ring of rows is X's first six rows (NormalAccumulator): the planes
    # are in place already (copying them cost ~16 % of these sums at 256 px); the residual's
    # operations are the same, in the same order
    inplace = ro == 0 and out.ctypes.data == X.ctypes.data
    for i in range(NB):
        ci = coef[i]
        if inplace and i < 6:
            for j in range(nu):
                X[RES, j] -= ci * X[i, j]
            continue
        for k in range(nk):
            o = np.uint64(k * W)
            if i < 6:
                for j in range(Wu):
                    v = out[i, ro + k, j]
                    X[i, o + j] = v
                    X[RES, o + j] -= ci * v
            else:
                for j in range(Wu):
                    v = ext[i - 6, r0 + k, j]
                    X[i, o + j] = v
                    X[RES, o + j] -= ci * v
    for i in range(NX):
        for k in range(NX):
            rg[i, k] = 0.0
    wt = X[WT]
    # blocks of two rows by four (rows past NX read the zero row ZERO, their sums are zeros
    # added to rg's spare row and column): every upper entry once, some lower ones too (not
    # read). Against one row by eight (_tile8, _tile4): 0.62-0.88 of the time for NX = 7-10
    # at 64 and 256 px (benchmarks/NOTES.md)
    if NX == 7:
        # no sky term (six planes and res): five tiles with fixed rows, not the loop's six;
        # five upper entries come out as lower ones and are copied up (standalone, 0.70 of
        # the loop's time at 256 px)
        _tile24(wt, X, 0, 1, 0, 1, 2, 3, n, rg)
        _tile24(wt, X, 2, 3, 2, 3, 4, 5, n, rg)
        _tile24(wt, X, 4, 5, 4, 5, 6, 0, n, rg)
        _tile24(wt, X, 1, 6, 4, 5, 6, 0, n, rg)
        _tile24(wt, X, 6, ZERO, 2, 3, ZERO, ZERO, n, rg)
        rg[0, 4] = rg[4, 0]
        rg[0, 5] = rg[5, 0]
        rg[0, 6] = rg[6, 0]
        rg[2, 6] = rg[6, 2]
        rg[3, 6] = rg[6, 3]
    elif NX == 8:
        # a constant sky (or a d/dn plane): the loop's six tiles with fixed rows (0.72-0.95)
        _tile24(wt, X, 0, 1, 0, 1, 2, 3, n, rg)
        _tile24(wt, X, 0, 1, 4, 5, 6, 7, n, rg)
        _tile24(wt, X, 2, 3, 0, 1, 2, 3, n, rg)
        _tile24(wt, X, 2, 3, 4, 5, 6, 7, n, rg)
        _tile24(wt, X, 4, 5, 4, 5, 6, 7, n, rg)
        _tile24(wt, X, 6, 7, 4, 5, 6, 7, n, rg)
    else:
        nq = (NX + 3) // 4
        for ip in range((NX + 1) // 2):
            i0 = 2 * ip
            for kq in range(i0 // 4, nq):
                k0 = 4 * kq
                _tile24(wt, X, i0, _pad(i0 + 1, NX, ZERO), k0, _pad(k0 + 1, NX, ZERO),
                        _pad(k0 + 2, NX, ZERO), _pad(k0 + 3, NX, ZERO), n, rg)
    # X row -> basis index: the basis rows, then the sky terms (1, gx, gy) after res
    for i in range(NB):
        for k in range(i, NB):
            gram[i, k] += rg[i, k]
        rhs[i] += rg[i, RES]
        for s in range(nsky):
            gram[i, NB + s] += rg[i, ONE + s]
    tot[0] += rg[RES, RES]
    for s in range(nsky):
        rhs[NB + s] += rg[RES, ONE + s]
        for t in range(s, nsky):
            gram[NB + s, NB + t] += rg[ONE + s, ONE + t]


_accumulate_rows = numba.njit(cache=True, nogil=True, fastmath=_FM)(_accumulate_rows_py)
