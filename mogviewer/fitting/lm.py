"""Levenberg-Marquardt on the normal equations, with bounds, scaling and a cancel hook.

The driver sees the problem only through ``evaluate(z) -> (chi2, A, g, aux)`` with
``A = J^T W J`` and ``g = J^T W r`` (``r = data - model``, so ``z + A^-1 g`` is the Gauss-Newton
point): a few-by-few system whatever the image size, solved here with no BLAS call on anything
larger (:mod:`mogviewer.render.normal` accumulates it while the kernel renders).

Each step solves ``(A_s + lambda I) d_s = g_s`` in variables scaled by ``D_i = max over the
fit of sqrt(A_ii)`` (Moré 1978: invariant to the units of each parameter), by Cholesky, or by
an eigen-decomposition that drops directions below ``1e-13`` of the largest when the matrix is
not numerically positive definite. ``lambda`` follows Nielsen's rule (smooth decrease on a good
step, doubling growth on a bad one). Bounds: a parameter on a bound whose gradient points out
is held for the step (the system is solved without it), and the trial point is projected into
the box, so every evaluated point is feasible.

Termination (as in scipy's ``least_squares``): ``ftol`` -- an accepted step lowered chi^2 by
less than ``ftol`` of it with a ratio of actual to predicted reduction above 0.25 (or, with
``ftol_predicted``, the next Gauss-Newton step predicts less, and is taken unevaluated); ``xtol`` --
every component moved by less than ``xtol (xtol + |z_i|)``; ``gtol`` -- the largest cosine
between the weighted residual and a Jacobian column is below ``gtol``; or no step can lower
chi^2 any more (the predicted reduction is below rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

#: relative size below which a scaled direction counts as singular
_RCOND = 1e-13


@dataclass
class LMResult:
    z: np.ndarray
    chi2: float
    A: np.ndarray
    g: np.ndarray
    aux: object
    nit: int
    nfev: int
    status: str        # 'converged', 'max_evaluations', 'cancelled', 'failed'
    message: str
    active: np.ndarray  # bool per parameter: on a bound at the end


def _solve(As, gs, lam):
    """``(As + lam I)^-1 gs`` for symmetric ``As``; Cholesky, or eigen with a cut-off."""
    n = gs.size
    M = As + lam * np.eye(n)
    try:
        L = np.linalg.cholesky(M)
        d = np.linalg.solve(L.T, np.linalg.solve(L, gs))
        if np.all(np.isfinite(d)):
            return d
    except np.linalg.LinAlgError:
        pass
    w, V = np.linalg.eigh(M)
    top = max(float(np.abs(w).max()), 1e-300)
    keep = w > _RCOND * top
    return V[:, keep] @ ((V[:, keep].T @ gs) / w[keep])


def _damped_step_py(A, g, Ds, free, lam, z, lo, hi, step, trial, work):
    """The trial step, compiled: ``(A_s + lam I) d_s = g_s`` over the ``free`` parameters in
    variables scaled by ``Ds``, by Cholesky; the step is projected into ``[lo, hi]``. Returns
    ``(ok, pred)`` and fills ``step`` and ``trial`` (``z + step``, exactly inside the box);
    ``ok`` false when the damped matrix is not numerically positive definite
    (the caller then uses :func:`_solve`), ``pred = 2 d.g - d.A.d``, the predicted decrease of
    chi^2. ``work`` is (n, n + 1) scratch. (A handful of numpy calls on a 7x7 system cost more
    than the whole system: ~1 us each.)"""
    n = z.shape[0]
    idx = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        step[i] = 0.0
        trial[i] = z[i]
        if free[i]:
            idx[m] = i
            m += 1
    L = work
    for a in range(m):
        i = idx[a]
        for b in range(a + 1):
            j = idx[b]
            v = A[i, j] / (Ds[i] * Ds[j])
            if a == b:
                v += lam
            for c in range(b):
                v -= L[a, c] * L[b, c]
            if a == b:
                if not v > 0.0:
                    return False, 0.0
                L[a, a] = math.sqrt(v)
            else:
                L[a, b] = v / L[b, b]
    y = work[:, n]
    for a in range(m):
        v = g[idx[a]] / Ds[idx[a]]
        for c in range(a):
            v -= L[a, c] * y[c]
        y[a] = v / L[a, a]
    for a in range(m - 1, -1, -1):
        v = y[a]
        for c in range(a + 1, m):
            v -= L[c, a] * y[c]
        y[a] = v / L[a, a]
    for a in range(m):
        i = idx[a]
        d = y[a] / Ds[i]
        t = min(max(z[i] + d, lo[i]), hi[i])
        trial[i] = t
        step[i] = t - z[i]
    pred = 0.0
    for i in range(n):
        if step[i] != 0.0:
            pred += 2.0 * step[i] * g[i]
            for j in range(n):
                pred -= step[i] * A[i, j] * step[j]
    if not math.isfinite(pred):
        return False, 0.0
    return True, pred


_damped_step = numba.njit(cache=True, nogil=True)(_damped_step_py)


def _prepare_py(A, g, z, lo, hi, D, Ds, free, chi2, gtol):
    """Per iteration: ``D = max(D, sqrt(diag A))`` (Moré's scaling), ``Ds`` (D with zeros
    replaced by 1), the ``free`` mask (not held on a bound by an outward gradient, not without
    effect) and whether the gtol test passes."""
    n = z.shape[0]
    big = 0.0
    for i in range(n):
        d = math.sqrt(max(A[i, i], 0.0))
        if d > D[i]:
            D[i] = d
        Ds[i] = D[i] if D[i] > 0.0 else 1.0
        held = (z[i] <= lo[i] and g[i] < 0.0) or (z[i] >= hi[i] and g[i] > 0.0) or D[i] == 0.0
        free[i] = not held
        if chi2 > 0.0:
            big = max(big, abs(g[i]) / (Ds[i] * math.sqrt(chi2)))
    return chi2 > 0.0 and big < gtol


def _small_py(step, z, xtol):
    """Every ``|step_i| <= xtol (xtol + |z_i|)``."""
    for i in range(z.shape[0]):
        if abs(step[i]) > xtol * (xtol + abs(z[i])):
            return False
    return True


def _finite_py(chi2, A, g):
    """chi^2, A and g all finite (a sum would overflow, or warn on inf - inf)."""
    if not math.isfinite(chi2):
        return False
    for i in range(g.shape[0]):
        if not math.isfinite(g[i]):
            return False
        for j in range(A.shape[1]):
            if not math.isfinite(A[i, j]):
                return False
    return True


_finite = numba.njit(cache=True, nogil=True)(_finite_py)
_prepare = numba.njit(cache=True, nogil=True)(_prepare_py)
_small = numba.njit(cache=True, nogil=True)(_small_py)


def levenberg_marquardt(evaluate, z0, lo, hi, *, max_nfev=200, xtol=1e-8, ftol=1e-9,
                        gtol=1e-10, callback=None, ftol_predicted=False):
    """Minimise chi^2 from ``z0`` within ``[lo, hi]`` (see the module docstring).

    ``evaluate(z)`` returns ``(chi2, A, g, aux)``; a non-finite chi^2 marks a point the model
    cannot be evaluated at (rejected like a bad step). ``callback(z, chi2, nit, nfev)`` is
    called after every accepted step; raising ``StopIteration`` in it ends the fit with status
    ``'cancelled'`` at that point.

    With ``ftol_predicted``, after an accepted step whose actual decrease was above 0.25 of
    its prediction, the undamped (Gauss-Newton) step is taken *without evaluating it* when it
    predicts a decrease below ``ftol`` of chi^2: the result's ``z`` is that step's end,
    ``chi2`` the quadratic model's value there (``chi2 - pred``), and ``A``, ``g``, ``aux``
    those of the last evaluated point, a step away that moves chi^2 by less than ``ftol`` of
    it. This saves the evaluation that the ftol test would only confirm (one in 5-12 on the
    fits of ``bench_fit_peers.py``), reaching the same optimum: 1e-6 relative of scipy's at
    ftol = xtol = 1e-12 (``tests/test_solver.py``); at the defaults, within 0.0022 sigma of a
    fit to 1e-13 on the bench's cases, as without it.
    """
    z = np.clip(np.array(z0, dtype=float), lo, hi)
    n = z.size
    chi2, A, g, aux = evaluate(z)
    nfev = 1
    if not _finite(chi2, A, g):
        return LMResult(z, chi2, A, g, aux, 0, nfev, "failed",
                        "the model or its derivatives are not finite at the start",
                        np.zeros(n, bool))
    D = np.zeros(n)
    Ds = np.ones(n)
    f = np.ones(n, dtype=np.bool_)
    lam = 1e-3
    nu = 2.0
    step = np.zeros(n)
    work = np.zeros((n, n + 1))
    nit = 0
    step0 = np.zeros(n)
    trial0 = np.zeros(n)
    good_model = False      # the last accepted step's actual/predicted ratio was above 0.25
    status, message = None, ""
    while status is None:
        # gtol: cosine between the weighted residual and each column
        if _prepare(A, g, z, lo, hi, D, Ds, f, chi2, gtol):
            status, message = "converged", "gtol: the gradient vanishes"
            break
        while True:   # inner loop: grow lambda until a step is accepted
            if nfev >= max_nfev:
                status, message = "max_evaluations", f"{nfev} evaluations: the limit"
                break
            trial = np.empty(n)
            ok, pred = _damped_step(A, g, Ds, f, lam, z, lo, hi, step, trial, work)
            if not ok:      # not numerically positive definite: drop null directions
                step = np.zeros(n)
                if f.any():
                    As = A[np.ix_(f, f)] / np.outer(Ds[f], Ds[f])
                    step[f] = _solve(As, g[f] / Ds[f], lam) / Ds[f]
                trial = np.clip(z + step, lo, hi)
                step = trial - z
                pred = 2.0 * step @ g - step @ A @ step
            if ftol_predicted and good_model:
                # The undamped (Gauss-Newton) step's predicted decrease of chi^2 (not the
                # damped one's: smaller along weak directions). Below ftol of chi^2, after a
                # step whose actual decrease matched its prediction, the quadratic model is
                # trusted: the step is taken without the evaluation that would only confirm
                # it, and chi^2 is the model's, chi2 - pred (its error is of the order of
                # pred times the model's relative error: below ftol^2 chi^2 in the tests).
                ok0, pred0 = _damped_step(A, g, Ds, f, 0.0, z, lo, hi, step0, trial0, work)
                if ok0 and 0.0 <= pred0 < ftol * chi2:
                    z = trial0.copy()
                    chi2 = chi2 - pred0
                    nit += 1
                    status, message = ("converged", "ftol: the Gauss-Newton step predicts a "
                                       "decrease of chi^2 below ftol (taken unevaluated)")
                    if _cancelled(callback, z, chi2, nit, nfev):
                        status, message = "cancelled", "cancelled"
                    break
                good_model = False      # tested once per accepted step
            # (a step of zeros predicts no decrease: pred = 0 fails the test below)
            if not (pred > 1e-15 * max(chi2, 1e-300)):
                if lam > 1e16 or not step.any():
                    status, message = "converged", "no step lowers chi^2 any further"
                    break
                lam *= nu
                nu *= 2.0
                continue
            c2, A2, g2, aux2 = evaluate(trial)
            nfev += 1
            ok = _finite(c2, A2, g2)
            actual = chi2 - c2 if ok else -np.inf
            rho = actual / pred
            if rho > 1e-4:
                lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                nu = 2.0
                small_x = _small(step, z, xtol)
                small_f = actual < ftol * chi2 and rho > 0.25
                good_model = rho > 0.25
                z, chi2, A, g, aux = trial, c2, A2, g2, aux2
                nit += 1
                if _cancelled(callback, z, chi2, nit, nfev):
                    status, message = "cancelled", "cancelled"
                    break
                if small_f:
                    status, message = "converged", "ftol: chi^2 changes by less than ftol"
                elif small_x:
                    status, message = "converged", "xtol: the parameters change by less than xtol"
                break
            lam *= nu
            nu *= 2.0
            if _small(step, z, xtol):
                status, message = "converged", "xtol: the parameters change by less than xtol"
                break
    active = (z <= lo) | (z >= hi)
    return LMResult(z, chi2, A, g, aux, nit, nfev, status, message, active)


def _cancelled(callback, z, chi2, nit, nfev):
    """Call ``callback`` after an accepted step; True if it asked to stop (StopIteration)."""
    if callback is None:
        return False
    try:
        callback(z, chi2, nit, nfev)
    except StopIteration:
        return True
    return False
