"""Galaxy profiles and their mixture-of-Gaussians approximations (Hogg & Lang 2013).

* :mod:`~mogviewer.profiles.laws`: the exact profiles ``Q(xi)`` (exp, dev, lux, luv, Sérsic) and
  their totals;
* :mod:`~mogviewer.profiles.tables`: the paper's 12 published tables and :func:`get_mixture`,
  the one place every other module gets a profile's mixture from;
* :mod:`~mogviewer.profiles.sersic`: the Sérsic family for any 0.5 <= n <= 8 (M = 10, smooth
  in n, with d/dn), which serves ``'ser'``;
* :mod:`~mogviewer.profiles.derivation`: the paper's badness and the derivation of tables from it.

Radius ``xi`` is in units of the half-light radius ``r_e``; every profile is normalised to
``Q(1) = 1``. A mixture approximates ``Q(xi) ~ sum_m a_m N(xi | 0, v_m I)``, so ``sum(a_m)`` is
its total flux in units of ``I(r_e) r_e^2`` and ``v_m`` are variances in units of ``r_e^2``.
"""

from .derivation import DerivedTable, badness, badness_grid, derive
from .laws import PROFILES, exact_total, profile_value, sersic_b
from .profile_mixture import ProfileMixture
from .tables import PUBLISHED, available, get_mixture

__all__ = [
    "PROFILES", "profile_value", "sersic_b", "available", "get_mixture", "ProfileMixture",
    "badness", "badness_grid", "derive", "DerivedTable", "exact_total", "PUBLISHED",
]
