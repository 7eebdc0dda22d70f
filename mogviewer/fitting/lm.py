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

Second-order term (``second_order``, as NL2SOL: Dennis, Gay & Welsch 1981): Gauss-Newton's
``A = J^T W J`` leaves out ``S = -sum_i w_i r_i Hess(m_i)``, which is not small when the model
does not fit (a profile that is not the galaxy's: chi^2/nu of 2-6 on the real cutouts of
``bench_fit_peers.py``), and the steps then converge only linearly (on IC 3478 256 px with an
exponential, chi^2's excess fell by a constant 7x per step: 11 evaluations). ``S`` is
estimated from the gradients: after an accepted step ``s``, ``(A_new + S) s`` should equal
``g_old - g_new`` (the change of the gradient of chi^2 / 2), so ``S`` gets the symmetric
rank-two (Powell-symmetric-Broyden) correction that makes ``S s = y# = g_old - g_new - A_new s``
in the scaled variables, after shrinking it by ``min(1, |s.y#| / |s.S.s|)`` (NL2SOL's sizing).
Each step uses ``A + S`` when that model predicted the last accepted step's actual decrease
of chi^2 better than Gauss-Newton's and Gauss-Newton's missed it by more than
:data:`_GN_MISS`, ``A`` alone otherwise (and whenever ``A + S`` is not positive definite): a
fit that Gauss-Newton does well keeps its steps, one that it does slowly gets the better
model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from ._fast import _cholesky_solve, _fast_eval, _fast_start

#: relative size below which a scaled direction counts as singular
_RCOND = 1e-13
#: Gauss-Newton's prediction of an accepted step's decrease of chi^2 must miss by more than
#: this fraction before the second-order model may take over (``second_order``): on the
#: misfit real cutouts of ``bench_fit_peers.py`` it missed by 12-125 % while converging
#: linearly, on well-fitting problems by 0.1-1 % (where the secant term is mostly noise)
_GN_MISS = 0.05


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


def _damped_step_py(A, g, Ds, free, lam, z, lo, hi, step, trial, work):
    """The trial step, compiled: ``(A_s + lam I) d_s = g_s`` over the ``free`` parameters in
    variables scaled by ``Ds``, by Cholesky; the step is projected into ``[lo, hi]``. Returns
    ``(ok, pred)`` and fills ``step`` and ``trial`` (``z + step``, exactly inside the box);
    ``ok`` false when the damped matrix is not numerically positive definite
    (the caller then uses :func:`_solve_free`), ``pred = 2 d.g - d.A.d``, the predicted decrease of
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
    M = work
    y = work[:, n]
    for a in range(m):
        i = idx[a]
        for b in range(a + 1):
            j = idx[b]
            M[a, b] = A[i, j] / (Ds[i] * Ds[j])
        M[a, a] += lam
        y[a] = g[i] / Ds[i]
    if not _cholesky_solve(M, y, m):
        return False, 0.0
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


def _secant_py(S, s, g_old, g_new, A_new, D, actual, A_old, tmp):
    """After an accepted step ``s`` (``A_old``, ``g_old`` at its start, ``A_new``, ``g_new`` at
    its end, ``actual`` the decrease of chi^2 it gave): update ``S`` in place (module
    docstring) and return whether the next step should use it: it predicted ``actual``
    better than Gauss-Newton's model (both from the start of the step), which missed by more
    than :data:`_GN_MISS`. ``D`` scales the variables; ``tmp``
    is (3, n) scratch. A non-finite update resets ``S`` to zero."""
    n = s.shape[0]
    Ss = tmp[0]
    y = tmp[1]
    pg = 0.0
    sSs = 0.0
    for i in range(n):
        v = 0.0
        a = 0.0
        for j in range(n):
            v += S[i, j] * s[j]
            a += A_old[i, j] * s[j]
        Ss[i] = v
        pg += 2.0 * s[i] * g_old[i] - s[i] * a
        sSs += s[i] * v
    pa = pg - sSs
    # the model with S only when Gauss-Newton's missed by more than 5 % (where it predicts to
    # within ~1 %, as on well-fitting problems, which model wins is decided by the noise of
    # the last digits: single-precision FFT planes of the exact PSF mode, chi^2's rounding)
    aug = abs(actual - pa) < abs(actual - pg) and abs(actual - pg) > _GN_MISS * abs(actual)
    sy = 0.0
    for i in range(n):
        v = 0.0
        for j in range(n):
            v += A_new[i, j] * s[j]
        y[i] = g_old[i] - g_new[i] - v
        sy += s[i] * y[i]
    if sSs != 0.0:
        tau = min(1.0, abs(sy) / abs(sSs))
        for i in range(n):
            Ss[i] *= tau
            for j in range(n):
                S[i, j] *= tau
    # Powell-symmetric-Broyden in the scaled variables zs = D z: ss = D s, v = (y - S s) / D
    ss = tmp[2]
    den = 0.0
    vs = 0.0
    for i in range(n):
        d = D[i] if D[i] > 0.0 else 1.0
        ss[i] = s[i] * d
        den += ss[i] * ss[i]
    if not den > 0.0:
        return aug
    for i in range(n):
        d = D[i] if D[i] > 0.0 else 1.0
        y[i] = (y[i] - Ss[i]) / d           # v, in place
        vs += y[i] * ss[i]
    ok = True
    for i in range(n):
        di = D[i] if D[i] > 0.0 else 1.0
        for j in range(n):
            dj = D[j] if D[j] > 0.0 else 1.0
            u = (y[i] * ss[j] + ss[i] * y[j]) / den - vs * ss[i] * ss[j] / (den * den)
            S[i, j] += u * di * dj
            if not math.isfinite(S[i, j]):
                ok = False
    if not ok:
        for i in range(n):
            for j in range(n):
                S[i, j] = 0.0
        return False
    return aug


_finite = numba.njit(cache=True, nogil=True)(_finite_py)
_secant = numba.njit(cache=True, nogil=True)(_secant_py)
_prepare = numba.njit(cache=True, nogil=True)(_prepare_py)
_small = numba.njit(cache=True, nogil=True)(_small_py)


#: the loop's end, as a code (the compiled loop returns no strings): status, message
_ENDS = (
    ("converged", "gtol: the gradient vanishes"),
    ("max_evaluations", None),
    ("converged", "ftol: the Gauss-Newton step predicts a decrease of chi^2 below ftol "
                  "(taken unevaluated)"),
    ("cancelled", "cancelled"),
    ("converged", "no step lowers chi^2 any further"),
    ("converged", "ftol: chi^2 changes by less than ftol"),
    ("converged", "xtol: the parameters change by less than xtol"),
    ("failed", "the model or its derivatives are not finite at the start"),
)
#: the index in :data:`_ENDS` of a start where the model cannot be evaluated
_END_NOT_FINITE = 7


def _solve_free_py(A, g, Ds, f, lam):
    """The step over the ``f`` (free) parameters when the damped system is not numerically
    positive definite: ``(A_s + lam I)^-1 g_s`` in the variables scaled by ``Ds``, by an
    eigen-decomposition that drops directions below :data:`_RCOND` of the largest."""
    n = g.shape[0]
    idx = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if f[i]:
            idx[m] = i
            m += 1
    step = np.zeros(n)
    if m == 0:
        return step
    M = np.empty((m, m))
    gs = np.empty(m)
    for a in range(m):
        i = idx[a]
        gs[a] = g[i] / Ds[i]
        for b in range(m):
            j = idx[b]
            M[a, b] = A[i, j] / (Ds[i] * Ds[j])
        M[a, a] += lam
    w, V = np.linalg.eigh(M)
    top = max(np.abs(w).max(), 1e-300)
    for k in range(m):
        if w[k] > _RCOND * top:
            c = 0.0
            for a in range(m):
                c += V[a, k] * gs[a]
            c /= w[k]
            for a in range(m):
                step[idx[a]] += V[a, k] * c
    for a in range(m):
        step[idx[a]] /= Ds[idx[a]]
    return step


_solve_free = numba.njit(cache=True, nogil=True)(_solve_free_py)


def _lm_loop_py(evaluate, ctx, z, chi2, A, g, aux, lo, hi, max_nfev, xtol, ftol, gtol,
                ftol_predicted, second_order, callback):
    """The iterations of :func:`levenberg_marquardt` from an evaluated start: run as Python
    (any ``evaluate``, a ``callback``) or compiled as :func:`_lm_loop` (no callback), the same
    code either way. ``evaluate(z, ctx)`` returns ``(chi2, A, g, aux)``; ``None`` (compiled
    only) means :func:`mogviewer.fitting._fast._fast_eval`, called by name so that numba's
    cache finds the compiled loop again (a function passed as an argument is part of the
    loop's type, new in every process). Returns ``(z, chi2, A, g, aux, nit, nfev, end)``,
    ``end`` an index into :data:`_ENDS`."""
    n = z.shape[0]
    nfev = 1
    D = np.zeros(n)
    Ds = np.ones(n)
    f = np.ones(n, dtype=np.bool_)
    lam = 1e-3
    nu = 2.0
    step = np.zeros(n)
    trial = np.zeros(n)
    work = np.zeros((n, n + 1))
    nit = 0
    step0 = np.zeros(n)
    trial0 = np.zeros(n)
    good_model = False      # the last accepted step's actual/predicted ratio was above 0.25
    S = np.zeros((n, n))    # secant second-order term (second_order)
    H = np.empty((n, n))
    aug = False             # the steps use A + S (it predicted the last step better)
    tmp = np.empty((3, n))
    end = -1
    while end < 0:
        # gtol: cosine between the weighted residual and each column
        if _prepare(A, g, z, lo, hi, D, Ds, f, chi2, gtol):
            end = 0
            break
        if aug:
            for i in range(n):
                for j in range(n):
                    H[i, j] = A[i, j] + S[i, j]
        use_h = aug     # once A + S fails to factor, A for the rest of this step's search
        while True:   # inner loop: grow lambda until a step is accepted
            if nfev >= max_nfev:
                end = 1
                break
            trial = np.empty(n)
            if use_h:
                ok, pred = _damped_step(H, g, Ds, f, lam, z, lo, hi, step, trial, work)
                if not ok:      # A + S not positive definite: Gauss-Newton's model
                    use_h = False
                    ok, pred = _damped_step(A, g, Ds, f, lam, z, lo, hi, step, trial, work)
            else:
                ok, pred = _damped_step(A, g, Ds, f, lam, z, lo, hi, step, trial, work)
            if not ok:      # not numerically positive definite: drop null directions
                d = _solve_free(A, g, Ds, f, lam)
                pred = 0.0
                for i in range(n):
                    trial[i] = min(max(z[i] + d[i], lo[i]), hi[i])
                    step[i] = trial[i] - z[i]
                for i in range(n):
                    pred += 2.0 * step[i] * g[i]
                    for j in range(n):
                        pred -= step[i] * A[i, j] * step[j]
            if ftol_predicted and good_model:
                # The undamped (Gauss-Newton) step's predicted decrease of chi^2 (not the
                # damped one's: smaller along weak directions). Below ftol of chi^2, after a
                # step whose actual decrease matched its prediction, the quadratic model is
                # trusted: the step is taken without the evaluation that would only confirm
                # it, and chi^2 is the model's, chi2 - pred (its error is of the order of
                # pred times the model's relative error: below ftol^2 chi^2 in the tests).
                if use_h:
                    ok0, pred0 = _damped_step(H, g, Ds, f, 0.0, z, lo, hi, step0, trial0, work)
                else:
                    ok0, pred0 = _damped_step(A, g, Ds, f, 0.0, z, lo, hi, step0, trial0, work)
                if ok0 and 0.0 <= pred0 < ftol * chi2:
                    z = trial0.copy()
                    chi2 = chi2 - pred0
                    nit += 1
                    end = 2
                    if callback is not None:
                        if _cancelled(callback, z, chi2, nit, nfev):
                            end = 3
                    break
                good_model = False      # tested once per accepted step
            # (a step of zeros predicts no decrease: pred = 0 fails the test below)
            if not (pred > 1e-15 * max(chi2, 1e-300)):
                if lam > 1e16 or not step.any():
                    end = 4
                    break
                lam *= nu
                nu *= 2.0
                continue
            if evaluate is None:        # compiled: the usual fit's evaluation, by name
                c2, A2, g2, aux2 = _fast_eval(trial, ctx)
            else:
                c2, A2, g2, aux2 = evaluate(trial, ctx)
            nfev += 1
            ok = _finite(c2, A2, g2)
            actual = chi2 - c2 if ok else -np.inf
            rho = actual / pred
            if rho > 1e-4:
                # the cube as products: ``** 3`` is pow() in Python and products when
                # compiled, which round differently, and the two loops must agree bit for bit
                t = 2.0 * rho - 1.0
                lam *= max(1.0 / 3.0, 1.0 - t * t * t)
                nu = 2.0
                small_x = _small(step, z, xtol)
                small_f = actual < ftol * chi2 and rho > 0.25
                good_model = rho > 0.25
                if second_order:
                    aug = _secant(S, step, g, g2, A2, D, actual, A, tmp)
                z, chi2, A, g, aux = trial, c2, A2, g2, aux2
                nit += 1
                if callback is not None:
                    if _cancelled(callback, z, chi2, nit, nfev):
                        end = 3
                        break
                if small_f:
                    end = 5
                elif small_x:
                    end = 6
                break
            lam *= nu
            nu *= 2.0
            if _small(step, z, xtol):
                end = 6
                break
    return z, chi2, A, g, aux, nit, nfev, end


_lm_loop = numba.njit(cache=True, nogil=True)(_lm_loop_py)


@numba.njit(cache=True, nogil=True)
def _lm_fast(ctx, z, lin_z, lin_b, lo, hi, max_nfev, xtol, ftol, gtol, ftol_predicted,
             second_order):
    """The usual fit in one compiled call: the first evaluation with the linear parameters at
    their optimum (:func:`mogviewer.fitting._fast._fast_start`), put inside ``[lo, hi]``, then
    :func:`_lm_loop`: what :func:`levenberg_marquardt` does in Python with ``first`` from
    :meth:`~mogviewer.fitting.normal_eval._NormalEvaluator.start`, step for step. Returns what
    :func:`_lm_loop` does; ``end`` is :data:`_END_NOT_FINITE` when the model is not finite at
    the start."""
    z, chi2, A, g, aux = _fast_start(z, ctx, lin_z, lin_b, lo, hi)
    for i in range(z.shape[0]):
        z[i] = min(max(z[i], lo[i]), hi[i])
    if not _finite(chi2, A, g):
        return z, chi2, A, g, aux, 0, 1, _END_NOT_FINITE
    return _lm_loop(None, ctx, z, chi2, A, g, aux, lo, hi, max_nfev, xtol, ftol, gtol,
                    ftol_predicted, second_order, None)


def _python_evaluate(z, evaluate):
    return evaluate(z)


def levenberg_marquardt(evaluate, z0, lo, hi, *, max_nfev=200, xtol=1e-8, ftol=1e-9,
                        gtol=1e-10, callback=None, ftol_predicted=False, second_order=False,
                        first=None, compiled=None):
    """Minimise chi^2 from ``z0`` within ``[lo, hi]`` (see the module docstring).

    ``evaluate(z)`` returns ``(chi2, A, g, aux)``; a non-finite chi^2 marks a point the model
    cannot be evaluated at (rejected like a bad step). ``callback(z, chi2, nit, nfev)`` is
    called after every accepted step; raising ``StopIteration`` in it ends the fit with status
    ``'cancelled'`` at that point.

    ``first``, if given, is ``(z, chi2, A, g, aux)`` of an evaluation the caller made at the
    start (it may have moved ``z0``: :meth:`~mogviewer.fitting.normal_eval._NormalEvaluator.start`
    puts the linear parameters at their optimum); it counts as the first evaluation.

    ``compiled``, if given, is ``(ctx, lin_z, lin_b)``: the ``ctx`` with which
    :func:`mogviewer.fitting._fast._fast_eval` returns what ``evaluate`` does, and the (z index,
    basis plane) arrays of the linear parameters. With no ``callback`` the whole fit then runs
    in one compiled call (:func:`_lm_fast`): the first evaluation with the linear parameters
    at their optimum (what :meth:`~mogviewer.fitting.normal_eval._NormalEvaluator.start` gives
    as ``first``; ``first`` and ``evaluate`` are not used), then the loop, the same code as in
    Python (:func:`_lm_loop`). A 64 px fit spent ~45 us per evaluation in the Python loop and
    the evaluator's Python, a sixth of the evaluation.

    With ``ftol_predicted``, after an accepted step whose actual decrease was above 0.25 of
    its prediction, the undamped (Gauss-Newton) step is taken *without evaluating it* when it
    predicts a decrease below ``ftol`` of chi^2: the result's ``z`` is that step's end,
    ``chi2`` the quadratic model's value there (``chi2 - pred``), and ``A``, ``g``, ``aux``
    those of the last evaluated point, a step away that moves chi^2 by less than ``ftol`` of
    it. This saves the evaluation that the ftol test would only confirm (one in 5-12 on the
    fits of ``bench_fit_peers.py``), reaching the same optimum: 1e-6 relative of scipy's at
    ftol = xtol = 1e-12 (``tests/test_solver.py``); at the defaults, within 0.0022 sigma of a
    fit to 1e-13 on the bench's cases, as without it.

    With ``second_order``, the steps use the secant estimate of the second-order term when it
    predicts better (module docstring): the same optimum in fewer evaluations when the model
    does not fit the data well (11 -> 6 on IC 3478 256 px with an exponential), Gauss-Newton's
    steps while it does.
    """
    lo = np.ascontiguousarray(lo, dtype=np.float64)
    hi = np.ascontiguousarray(hi, dtype=np.float64)
    if compiled is not None and callback is None:
        ctx, lin_z, lin_b = compiled
        z, chi2, A, g, aux, nit, nfev, end = _lm_fast(
            ctx, np.array(z0, dtype=np.float64), lin_z, lin_b, lo, hi, int(max_nfev),
            float(xtol), float(ftol), float(gtol), bool(ftol_predicted), bool(second_order))
        return _lm_result(z, chi2, A, g, aux, nit, nfev, end, lo, hi)
    if first is None:
        z = np.minimum(np.maximum(np.array(z0, dtype=float), lo), hi)
        chi2, A, g, aux = evaluate(z)
    else:
        z, chi2, A, g, aux = first
        z = np.minimum(np.maximum(np.array(z, dtype=float), lo), hi)
    if not _finite(chi2, A, g):
        return _lm_result(z, chi2, A, g, aux, 0, 1, _END_NOT_FINITE, lo, hi)
    args = (z, float(chi2), A, g, aux, lo, hi, int(max_nfev), float(xtol), float(ftol),
            float(gtol), bool(ftol_predicted), bool(second_order))
    z, chi2, A, g, aux, nit, nfev, end = _lm_loop_py(_python_evaluate, evaluate, *args,
                                                     callback)
    return _lm_result(z, chi2, A, g, aux, nit, nfev, end, lo, hi)


def _lm_result(z, chi2, A, g, aux, nit, nfev, end, lo, hi):
    """The :class:`LMResult` of a loop that ended with ``end`` (an index into :data:`_ENDS`)."""
    status, message = _ENDS[end]
    if message is None:
        message = f"{nfev} evaluations: the limit"
    if end == _END_NOT_FINITE:
        active = np.zeros(z.size, bool)
    else:
        active = (z <= lo) | (z >= hi)
    return LMResult(z, float(chi2), A, g, aux, nit, nfev, status, message, active)


def _cancelled(callback, z, chi2, nit, nfev):
    """Call ``callback`` after an accepted step; True if it asked to stop (StopIteration)."""
    if callback is None:
        return False
    try:
        callback(z, chi2, nit, nfev)
    except StopIteration:
        return True
    return False
