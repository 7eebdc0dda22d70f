"""A profile's mixture of Gaussians as a value object, with what it means for r_e and the flux.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ProfileMixture:
    """A profile's mixture, normalised to unit flux.

    Attributes
    ----------
    profile, M, n :
        What it approximates (``n`` only for Sérsic).
    amps : ndarray (M,)
        Amplitudes normalised to ``sum = 1`` (unit total flux).
    variances : ndarray (M,)
        Variances in units of ``r_e^2``.
    raw_amps : ndarray (M,)
        The table's amplitudes, in units of ``I(r_e) r_e^2``.
    ie_factor : float
        ``1 / sum(raw_amps)``: a galaxy of total flux F, semi-major r_e and axis ratio q has
        ``I(r_e) = F * ie_factor / (q r_e^2)`` (flux per pixel, r_e in pixels).
    badness : float
        The paper's badness of this table (recomputed with :func:`badness`).
    flux_fraction : float
        ``sum(raw_amps)`` over the total of the *untruncated* target (exp for lux, dev for luv):
        the fraction of the target profile's flux the mixture holds.
    half_light_ratio : float
        The mixture's own half-light radius in units of the target's r_e.
    source : str
        Provenance.
    """

    profile: str
    M: int
    n: float | None
    amps: np.ndarray
    variances: np.ndarray
    raw_amps: np.ndarray
    ie_factor: float
    badness: float
    flux_fraction: float
    half_light_ratio: float
    source: str

    def _key(self):
        # the arrays by value (``+ 0.0``: -0.0 and 0.0 compare equal, so they must hash alike)
        return (self.profile, self.M, self.n,
                *((np.asarray(a, float) + 0.0).tobytes()
                  for a in (self.amps, self.variances, self.raw_amps)))

    def __eq__(self, other):
        if not isinstance(other, ProfileMixture):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


#: The untruncated law whose r_e a truncated profile keeps (the target of a fit).
_PARENT = {"lux": "exp", "luv": "dev"}


def _half_light_ratio(amps, variances):
    w = np.asarray(amps) / np.sum(amps)

    def enclosed(r):
        return float(np.sum(w * (1.0 - np.exp(-r * r / (2 * np.asarray(variances))))) - 0.5)

    from scipy import optimize  # on use: 0.4-0.6 s of start-up
    return float(optimize.brentq(enclosed, 1e-6, 100.0, xtol=1e-14))
