""":class:`FitResult` (what a fit returns) and :class:`FitProgress` (the snapshots it sends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .flags import FitFlags
from .params import GalaxyParams

# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitProgress:
    """Immutable snapshot sent to the progress callback each iteration."""

    params: GalaxyParams
    chi2: float
    iteration: int
    nfev: int
    elapsed: float


@dataclass(frozen=True, eq=False)
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    params : GalaxyParams
        Best parameters (the start's values for fixed ones).
    start : GalaxyParams
    free : tuple of str
        Names of the free parameters (order of ``covariance``).
    covariance : ndarray (n_free, n_free)
        Formal covariance ``(J^T W J)^-1`` in physical units (angle in degrees), *not* scaled by
        chi^2/nu; NaN where undefined.
    chi2, nu, chi2_nu : float, int, float
        ``sum w (data - model)^2``, usable pixels minus free parameters, and their ratio.
    nit, nfev : int
        Iterations and residual evaluations.
    status : str
        ``'converged'``, ``'max_evaluations'``, ``'cancelled'`` or ``'failed'``.
    flags : FitFlags
    message : str
    profile, M, n, flux_fraction : profile facts (``flux_fraction`` of the mixture).
    profile2, M2 : the second component of a composite model, or None.
    elapsed : float, seconds
    """

    params: GalaxyParams
    start: GalaxyParams
    free: tuple
    covariance: np.ndarray
    chi2: float
    nu: int
    nit: int
    nfev: int
    status: str
    flags: FitFlags
    message: str
    profile: str
    M: int
    n: float | None
    flux_fraction: float
    elapsed: float
    profile2: str | None = None
    M2: int | None = None

    @property
    def chi2_nu(self):
        return self.chi2 / self.nu if self.nu > 0 else float("nan")

    def errors(self, *, scaled=False):
        """1-sigma errors ``{name: sigma}`` for free parameters (0 for fixed ones).

        ``scaled=True`` multiplies by ``sqrt(chi2/nu)`` (as GALFIT and imfit do when the noise
        map is not trusted).
        """
        d = np.sqrt(np.where(np.diag(self.covariance) >= 0, np.diag(self.covariance), np.nan))
        if scaled:
            d = d * math.sqrt(self.chi2_nu)
        out = {k: 0.0 for k in GalaxyParams.names()}
        out.update({k: float(v) for k, v in zip(self.free, d)})
        return out

    # derived quantities -------------------------------------------------------------
    @property
    def flux_target(self):
        """Total flux of the target (untruncated) profile: ``flux / flux_fraction``."""
        return self.params.flux / self.flux_fraction

    def magnitude(self, zeropoint, *, target=False):
        """``zeropoint - 2.5 log10(flux)`` of the model flux, or with ``target=True`` of the
        target profile's total (``flux_target``, comparable with GALFIT/imfit totals); NaN if
        the flux is not positive."""
        f = self.flux_target if target else self.params.flux
        return zeropoint - 2.5 * math.log10(f) if f > 0 else float("nan")

    @property
    def ell(self):
        """``1 - q`` (imfit's ellipticity)."""
        return 1.0 - self.params.q

    @property
    def e1e2(self):
        """``((1-q)/(1+q)) (cos 2 angle, sin 2 angle)`` (Tractor's EllipseE magnitude, image
        axes)."""
        e = (1 - self.params.q) / (1 + self.params.q)
        t = 2 * math.radians(self.params.angle)
        return e * math.cos(t), e * math.sin(t)

    @property
    def re_circ(self):
        """Circularised half-light radius ``re sqrt(q)`` (pixels)."""
        return self.params.re * math.sqrt(self.params.q)

    @property
    def ok(self):
        return self.status == "converged" and not (self.flags & (
            FitFlags.COV_NONFINITE | FitFlags.TOO_FEW_PIXELS | FitFlags.NEGATIVE_FLUX))
