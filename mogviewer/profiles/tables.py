"""The published mixture tables (Hogg & Lang 2013, Table 1) and :func:`get_mixture`, the one
place that serves a profile's mixture: a published table for exp, dev, lux and luv, the Sérsic
family (:mod:`mogviewer.profiles.sersic`) for ``ser``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ProfileError
from . import sersic
from .derivation import badness
from .laws import PROFILES, exact_total
from .profile_mixture import _PARENT, ProfileMixture, _half_light_ratio

# --------------------------------------------------------------------------------------------
# The 12 published tables. Provenance: Hogg & Lang (2013, PASP 125, 719), arXiv:1210.6563 v1,
# Table 1 (amplitudes a_m and root-variances sqrt(v_m) in units of r_e) and the badness values,
# as transcribed in the project's design reference (REFERENCE.md section 1). The final journal
# text differs from these by at most 2e-5 relative.
# --------------------------------------------------------------------------------------------
PUBLISHED = {
    ("exp", 4): ([0.09733, 1.12804, 4.99846, 5.63632],
                 [0.12068, 0.32730, 0.68542, 1.28089], 4.35e-6, 11.860),
    ("exp", 6): ([0.00735, 0.09481, 0.63572, 2.60077, 5.42848, 3.16445],
                 [0.05072, 0.13756, 0.28781, 0.53195, 0.91209, 1.50157], 1.59e-7, 11.932),
    ("exp", 8): ([0.00077, 0.01017, 0.07313, 0.37184, 1.39736, 3.56100, 4.74338, 1.78684],
                 [0.02394, 0.06492, 0.13581, 0.25095, 0.42942, 0.69675, 1.08885, 1.67302],
                 8.90e-9, 11.944),
    ("dev", 6): ([0.01308, 0.12425, 0.63551, 2.22560, 5.63989, 9.81523],
                 [0.00263, 0.01202, 0.04031, 0.12128, 0.36229, 1.23604], 2.01e-3, 18.454),
    ("dev", 8): ([0.00262, 0.02500, 0.13413, 0.51326, 1.52005, 3.56204, 6.44845, 8.10105],
                 [0.00113, 0.00475, 0.01462, 0.03930, 0.09926, 0.24699, 0.63883, 1.92560],
                 3.16e-4, 20.307),
    ("dev", 10): ([0.00139, 0.00941, 0.04441, 0.16162, 0.48121, 1.20357, 2.54182, 4.46441,
                   6.22820, 6.15393],
                  [0.00087, 0.00296, 0.00792, 0.01902, 0.04289, 0.09351, 0.20168, 0.44126,
                   1.01833, 2.74555], 3.90e-5, 21.290),
    ("lux", 4): ([0.07275, 0.86763, 4.33214, 6.48325],
                 [0.10938, 0.29694, 0.62601, 1.19571], 1.37e-5, 11.756),
    ("lux", 6): ([0.00235, 0.03080, 0.22336, 1.17949, 4.33874, 5.99821],
                 [0.03465, 0.09405, 0.19785, 0.37413, 0.67894, 1.22540], 4.64e-6, 11.773),
    ("lux", 8): ([0.00007, 0.00098, 0.00736, 0.04404, 0.24005, 1.18175, 4.31918, 5.97985],
                 [0.01092, 0.02966, 0.06241, 0.11794, 0.21345, 0.38155, 0.68169, 1.22635],
                 4.55e-6, 11.773),
    ("luv", 6): ([0.11960, 0.61327, 1.75843, 3.84242, 6.48187, 7.59437],
                 [0.01988, 0.05008, 0.12067, 0.28955, 0.72628, 2.12717], 1.40e-4, 20.410),
    ("luv", 8): ([0.04263, 0.24013, 0.68591, 1.51937, 2.83627, 4.46467, 5.72441, 5.60990],
                 [0.01496, 0.03166, 0.06471, 0.13017, 0.26170, 0.53592, 1.15464, 2.89864],
                 8.42e-6, 21.123),
    ("luv", 10): ([0.01468, 0.09627, 0.28454, 0.63005, 1.19909, 2.03195, 3.07255, 4.10682,
                   4.83948, 4.94943],
                  [0.01190, 0.02210, 0.03995, 0.07117, 0.12586, 0.22240, 0.39593, 0.71922,
                   1.37549, 3.13117], 1.44e-6, 21.225),
}


def available(profile, *, n=None):
    """The valid mixture sizes M for ``profile``: the published ones, or the Sérsic family's
    :data:`~mogviewer.profiles.sersic.M_FAMILY` for ``'ser'`` (any n in its range)."""
    if profile in ("exp", "dev", "lux", "luv"):
        return sorted(M for (p, M) in PUBLISHED if p == profile)
    if profile == "ser":
        return [sersic.M_FAMILY]
    raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


def get_mixture(profile, M=None, *, n=None):
    """The mixture for ``profile`` with ``M`` components, normalised to unit flux.

    ``'ser'`` is served by the Sérsic family at ``n`` (:func:`mogviewer.profiles.sersic.
    sersic_profile_mixture`, M = 10, N_MIN <= n <= N_MAX); ``M`` may then be omitted.

    Raises
    ------
    ProfileError
        For an unknown profile, or an M (or Sérsic n) for which no mixture exists; the message
        lists what exists.
    """
    if profile == "ser":
        if n is None:
            raise ProfileError("profile 'ser' needs a Sérsic index n")
        if M is not None and int(M) != sersic.M_FAMILY:
            raise ProfileError(f"the Sérsic family has M = {sersic.M_FAMILY} components; "
                               f"got M = {M}")
        return sersic.sersic_profile_mixture(n)
    return _published(profile, None if M is None else int(M))


@lru_cache(maxsize=None)
def _published(profile, M):
    valid = available(profile)
    if (profile, M) not in PUBLISHED:
        raise ProfileError(f"no {profile} mixture with M = {M}; available M: {valid}")
    amps, sv, _, _ = PUBLISHED[(profile, M)]
    raw = np.array(amps, float)
    var = np.array(sv, float) ** 2
    for arr in (raw, var):
        arr.setflags(write=False)
    norm = raw / raw.sum()
    norm.setflags(write=False)
    return ProfileMixture(
        profile=profile, M=M, n=None, amps=norm, variances=var,
        raw_amps=raw, ie_factor=float(1.0 / raw.sum()),
        badness=badness(profile, raw, var),
        flux_fraction=float(raw.sum() / exact_total(_PARENT.get(profile, profile))),
        half_light_ratio=_half_light_ratio(raw, var),
        source="Hogg & Lang 2013 (arXiv:1210.6563v1) Table 1")
