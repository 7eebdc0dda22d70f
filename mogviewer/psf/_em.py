"""The EM iterations of a PSF fit's start, compiled (numba).

:func:`em_steps` does what :func:`mogviewer.psf.fit._em_numpy` does with numpy arrays, in one
pass over the pixels per step (the M step's sums taken beside the E step's). A PSF cell of a
survey fits K = 1, 2, ... from EM starts, and EM was 6-8 % of all CPU of a catalogue run
(``bench_survey.py``, py-spy, 2026-12-04). Compiled, EM takes 0.4-0.6 of numpy's time on the
HSC stamp (K = 2-5): the exponentials, one per pixel and component, are most of it. The sums
run pixel by pixel instead of numpy's pairwise summation, so the two differ by rounding only
(``tests/test_psf.py`` compares them).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..render.warm import register as _register_warm

_LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def em_steps(w, x, y, amps, means, covs, n_iter, tol, var_floor):  # pragma: no cover - compiled
    """EM on pixels as weighted points, in place on ``amps`` (K), ``means`` (K, 2) and ``covs``
    (K, 2, 2); returns the number of steps taken.

    ``w``: the pixel values clipped at zero (N); ``x``, ``y``: the pixel centres (N, pixels).
    Each step: responsibilities ``r_ki = w_i p_k N_k(x_i) / sum_j p_j N_j(x_i)``, then
    ``p_k = sum_i r_ki``, the means and covariances their r-weighted moments (about the new
    means), ``var_floor`` (pixels^2) added to each variance. A component whose responsibility
    sum is below ``1e-12 sum(w)`` keeps its mean and covariance and its amplitude is multiplied
    by 1e-3. Stops after the step at which the weighted mean log-likelihood changed by less
    than ``tol``, or after ``n_iter`` steps.
    """
    K = amps.size
    N = w.size
    W = 0.0
    for i in range(N):
        W += w[i]
    la = np.empty(K)
    ia = np.empty(K)
    ib = np.empty(K)
    ic = np.empty(K)
    p = np.empty(K)
    dxs = np.empty(K)
    dys = np.empty(K)
    # per component: sum r, sum r dx, sum r dy, sum r dx dx, sum r dy dy, sum r dx dy, with
    # dx, dy about the step's old mean (the new moments follow without a second pass, and
    # without the cancellation of raw moments about the origin)
    acc = np.empty((K, 6))
    last = -np.inf
    steps = 0
    for _ in range(n_iter):
        steps += 1
        for k in range(K):
            c00, c01, c11 = covs[k, 0, 0], covs[k, 0, 1], covs[k, 1, 1]
            det = c00 * c11 - c01 * c01
            la[k] = math.log(max(amps[k], 1e-300)) - math.log(2.0 * math.pi * math.sqrt(det))
            ia[k], ib[k], ic[k] = c11 / det, c01 / det, c00 / det
        acc[:] = 0.0
        ll = 0.0
        for i in range(N):
            mx = -np.inf
            for k in range(K):
                dx = x[i] - means[k, 0]
                dy = y[i] - means[k, 1]
                dxs[k], dys[k] = dx, dy
                lp = la[k] - 0.5 * (ia[k] * dx * dx - 2.0 * ib[k] * dx * dy + ic[k] * dy * dy)
                p[k] = lp
                if lp > mx:
                    mx = lp
            tot = 0.0
            for k in range(K):
                e = math.exp(p[k] - mx)
                p[k] = e
                tot += e
            wi = w[i]
            ll += wi * (math.log(tot) + mx)
            for k in range(K):
                rk = p[k] / tot * wi
                dx, dy = dxs[k], dys[k]
                acc[k, 0] += rk
                acc[k, 1] += rk * dx
                acc[k, 2] += rk * dy
                acc[k, 3] += rk * dx * dx
                acc[k, 4] += rk * dy * dy
                acc[k, 5] += rk * dx * dy
        ll /= W
        for k in range(K):
            rk = acc[k, 0]
            if not rk > 1e-12 * W:
                amps[k] *= 1e-3
                continue
            ux = acc[k, 1] / rk
            uy = acc[k, 2] / rk
            means[k, 0] += ux
            means[k, 1] += uy
            covs[k, 0, 0] = acc[k, 3] / rk - ux * ux + var_floor
            covs[k, 1, 1] = acc[k, 4] / rk - uy * uy + var_floor
            covs[k, 0, 1] = covs[k, 1, 0] = acc[k, 5] / rk - ux * uy
            amps[k] = rk
        if abs(ll - last) < tol:
            break
        last = ll
    return steps


def _warm_em():
    """Compile (or load from numba's cache) :func:`em_steps`; registered with
    :func:`mogviewer.render.warmup`."""
    one = np.ones(4)
    em_steps(one, np.arange(4.0), np.arange(4.0), np.ones(1), np.zeros((1, 2)),
             np.eye(2)[None].copy(), 1, 1e-7, 0.02)


_register_warm("PSF fit (EM)", _warm_em, lambda: em_steps)
