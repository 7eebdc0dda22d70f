"""Noise maps to inverse variance (once, here), and a robust background estimate.
"""

from __future__ import annotations

import numpy as np

from ..errors import ImageReadError

# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------

def _noise_to_ivar(arr, kind, src, notes):
    """Convert a noise map to inverse variance once; unusable values -> 0 (and noted)."""
    finite = np.isfinite(arr)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "sigma":
            good = finite & (arr > 0)
            ivar = np.where(good, 1.0 / np.where(good, arr, 1.0) ** 2, 0.0)
        elif kind == "variance":
            good = finite & (arr > 0)
            ivar = np.where(good, 1.0 / np.where(good, arr, 1.0), 0.0)
        else:  # ivar, weight
            good = finite & (arr > 0)
            ivar = np.where(good, arr, 0.0)
    good &= np.isfinite(ivar) & (ivar > 0)
    ivar = np.where(good, ivar, 0.0)
    if not good.any():
        raise ImageReadError(f"noise map ({src}, read as {kind}) has no positive finite values")
    nbad = int((~good).sum())
    if nbad:
        parts = []
        nneg = int((finite & (arr < 0)).sum())
        nzero = int((finite & (arr == 0)).sum())
        nnan = int((~finite).sum())
        if nneg:
            parts.append(f"{nneg} negative")
        if nzero:
            parts.append(f"{nzero} zero")
        if nnan:
            parts.append(f"{nnan} non-finite")
        rest = nbad - nneg - nzero - nnan
        if rest:
            parts.append(f"{rest} out of range")
        notes.append(f"Noise map: {', '.join(parts)} {kind} values -> ivar 0, pixels masked.")
    return ivar


def robust_background(image, mask, *, nsigma=3.0, maxiter=10):
    """Sigma-clipped median and MAD-based standard deviation of the unmasked pixels.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Pixel values.
    mask : ndarray of bool, shape (ny, nx)
        True = exclude.
    nsigma : float, optional
        Clip pixels further than ``nsigma`` standard deviations from the median, iterating until
        nothing more is clipped (at most ``maxiter`` times).
    maxiter : int, optional
        Maximum clipping iterations.

    Returns
    -------
    median : float
        Sigma-clipped median, image units.
    sigma : float
        ``1.4826 * MAD`` of the clipped pixels (the standard deviation for Gaussian noise),
        image units.
    """
    vals = np.asarray(image, dtype=np.float64)[~np.asarray(mask, dtype=bool)]
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    for _ in range(maxiter):
        med = np.median(vals)
        sig = 1.4826 * np.median(np.abs(vals - med))
        if sig <= 0:
            break
        keep = np.abs(vals - med) <= nsigma * sig
        if keep.all():
            break
        vals = vals[keep]
    med = float(np.median(vals))
    return med, float(1.4826 * np.median(np.abs(vals - med)))
