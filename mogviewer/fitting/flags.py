"""Named bit flags of a fit (ngmix's habit): what went wrong, or deserves a look, in one integer.
"""

from __future__ import annotations

import enum
import math

#: ``ERRORS_UNDERESTIMATED`` is set when ``chi2/nu > 1 + max(CHI2NU_NSIGMA sqrt(2/nu),
#: CHI2NU_FLOOR)``. With the right noise map and model, chi2 follows the chi-squared
#: distribution with nu degrees of freedom, so chi2/nu has mean 1 and standard deviation
#: sqrt(2/nu) (0.022 for a 64x64 stamp, 0.0055 for 256x256); 5 of them is a false alarm in
#: fewer than one fit in a million. The floor: every real galaxy differs from a smooth profile,
#: so on a large stamp chi2/nu exceeds 1 + 5 sqrt(2/nu) for a few per cent of structure; below
#: 1.2 the formal errors are too small by at most sqrt(1.2) = 1.095, less than the ~10 %
#: to which the errors of an error are usually known, and the flag stays quiet.
CHI2NU_NSIGMA = 5.0
CHI2NU_FLOOR = 0.2


#: Below this size (px) a galaxy's r_e, or its minor axis q r_e, is unresolved
SUBPIXEL = 0.5


def is_needle(re, q):
    """True when r_e is resolved but the minor axis is not: ``r_e >= SUBPIXEL`` and
    ``q r_e < SUBPIXEL`` (:attr:`FitFlags.Q_SUBPIXEL`)."""
    return re >= SUBPIXEL and q * re < SUBPIXEL


def chi2nu_threshold(nu):
    """The ``chi2/nu`` above which ``ERRORS_UNDERESTIMATED`` is set (see :data:`CHI2NU_FLOOR`)."""
    return 1.0 + max(CHI2NU_NSIGMA * math.sqrt(2.0 / nu), CHI2NU_FLOOR) if nu > 0 else math.inf


class FitFlags(enum.IntFlag):
    """Named bit flags of a fit (0 = nothing to report)."""

    AT_BOUND = 1              #: a free parameter ended at (within 1e-6 of) a bound
    COV_NONFINITE = 2         #: J^T W J singular: some uncertainties are undefined
    NOT_CONVERGED = 4         #: stopped by the evaluation limit
    TOO_FEW_PIXELS = 8        #: fewer usable pixels than free parameters (+1)
    CANCELLED = 16            #: stopped by the user
    NEGATIVE_FLUX = 32        #: best flux <= 0
    CENTRE_OUTSIDE = 64       #: best centre outside the image
    RE_SUBPIXEL = 128         #: r_e < 0.5 px: the fit is dominated by the PSF
    RE_BEYOND_STAMP = 256     #: r_e larger than the stamp: size, flux and sky are degenerate
    PSF_APPROX = 512          #: mixture-only PSF that misses the stamp's size or flux by > 0.1 %
    UNDERSAMPLED = 1024       #: > 1 % of the flux in Gaussians narrower than 0.5 px (minor sigma)
    #: chi2/nu above :func:`chi2nu_threshold` (5 sigma of the chi-squared distribution, at least
    #: 1.2): the noise map or the model is wrong and the formal errors are too small; use the
    #: ``_err_scaled`` columns (``err sqrt(chi2/nu)``) or the posterior of a corrected noise map
    ERRORS_UNDERESTIMATED = 2048
    #: r_e >= 0.5 px but the minor axis q r_e < 0.5 px: the width is unresolved, a needle (a
    #: star fitted as a galaxy ends so, q near its floor; a point source is the better model)
    Q_SUBPIXEL = 4096
