"""The reference renderer: a mixture of Gaussians evaluated at pixel centres with plain numpy.

This is the specification the compiled kernels (:mod:`mogviewer.render.kernels`) are tested
against, one component at a time with no cleverness: for a component ``G = a N(p | mu, Sigma)``
with ``P = Sigma^-1`` and ``u = P (p - mu)``, plane 0 receives ``G``, planes 1-2 ``G u`` (the
derivatives with respect to the mean) and planes 3-5 ``v G (u u^T - P) / 2`` with the off-diagonal
entry doubled (the derivatives with respect to ``S_xx, S_xy, S_yy`` when ``Sigma = v S + V``).
Each Gaussian is cut where its exponent drops below ``-CUT_EXPONENT``.
"""

from __future__ import annotations

import math

import numpy as np

#: Components are evaluated where their exponent exceeds -CUT_EXPONENT (chi^2 < 72).
CUT_EXPONENT = 36.0

def _component_arrays(amps, means, covs):
    amps = np.ascontiguousarray(amps, dtype=np.float64)
    means = np.ascontiguousarray(means, dtype=np.float64)
    covs = np.ascontiguousarray(covs, dtype=np.float64)
    return (amps, means[:, 0].copy(), means[:, 1].copy(), covs[:, 0, 0].copy(),
            covs[:, 0, 1].copy(), covs[:, 1, 1].copy())


def _render_numpy(amp, mx, my, cxx, cxy, cyy, vfac, out, derivs):
    H, W = out.shape[1:]
    xx = np.arange(W, dtype=np.float64)[None, :]
    yy = np.arange(H, dtype=np.float64)[:, None]
    for k in range(amp.shape[0]):
        det = cxx[k] * cyy[k] - cxy[k] ** 2
        p00, p01, p11 = cyy[k] / det, -cxy[k] / det, cxx[k] / det
        dx = xx - mx[k]
        dy = yy - my[k]
        e = -0.5 * (p00 * dx * dx + 2 * p01 * dx * dy + p11 * dy * dy)
        g = np.where(e >= -CUT_EXPONENT, amp[k] / (2 * np.pi * math.sqrt(det)) * np.exp(e), 0.0)
        out[0] += g
        if derivs:
            ux = p00 * dx + p01 * dy
            uy = p01 * dx + p11 * dy
            v = vfac[k]
            out[1] += g * ux
            out[2] += g * uy
            out[3] += 0.5 * v * g * (ux * ux - p00)
            out[4] += v * g * (ux * uy - p01)
            out[5] += 0.5 * v * g * (uy * uy - p11)
