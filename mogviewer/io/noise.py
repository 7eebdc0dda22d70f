"""Noise maps to inverse variance (once, here), and a robust background estimate.
"""

from __future__ import annotations

import numpy as np

from ..errors import ImageReadError

# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------

#: Pixel values (and noise sigmas) must lie within this range of magnitudes: beyond it inverse
#: variances overflow or underflow double precision (1/(1e200)^2 is 0). Within it data of any
#: scale are fitted (FitProblem divides them by a power of two near their magnitude: issue 15).
SCALE_LIMITS = (1e-150, 1e150)


def _check_scale(values, what, *, kind="values"):
    """Refuse an array whose typical magnitude lies outside :data:`SCALE_LIMITS`."""
    mags = np.abs(values[values != 0])
    if mags.size == 0:
        return
    lo_lim, hi_lim = SCALE_LIMITS
    hi = float(mags.max())
    # the median is below lo_lim only if at least half the values are: count them first (a
    # cutout's values are all far above it, and a median costs 5-10x a comparison)
    if hi <= hi_lim and np.count_nonzero(mags < lo_lim) < mags.size // 2:
        return
    typical = float(np.median(mags))
    if hi > hi_lim or typical < lo_lim:
        shown = hi if hi > hi_lim else typical
        raise ImageReadError(
            f"{what}: {kind} of order {shown:.1e} are outside the range mogviewer can fit "
            f"({lo_lim:.0e} to {hi_lim:.0e} in the file's units; squares and inverse variances "
            f"would overflow or underflow); rescale the data (e.g. multiply by {1 / shown:.0e})")



def _noise_to_ivar(arr, kind, src, notes):
    """Convert a noise map to inverse variance once; unusable values -> 0 (and noted)."""
    finite = np.isfinite(arr)
    good_vals = arr[finite & (arr > 0)]
    if good_vals.size:  # in sigma's scale (ivar's square root is 1/sigma: the limits are
        # symmetric in the exponent, so it is checked the same way)
        _check_scale(good_vals if kind == "sigma" else np.sqrt(good_vals),
                     f"noise map ({src}, read as {kind})", kind="noise levels")
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
