"""Named bit flags of a fit (ngmix's habit): what went wrong, or deserves a look, in one integer.
"""

from __future__ import annotations

import enum


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
