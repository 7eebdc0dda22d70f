"""Angles and flags as exports state them: GALFIT's PA, the position angle east of north.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..fitting import FitFlags

# ---------------------------------------------------------------------------------------------
# conventions
# ---------------------------------------------------------------------------------------------

def pa_galfit(pa_img_deg):
    """GALFIT/imfit PA (degrees CCW from +y) in (-90, 90] from an angle CCW from +x."""
    return 90.0 - ((180.0 - float(pa_img_deg)) % 180.0)


def local_jacobian(wcs, x, y):
    """Local Jacobian of a celestial WCS at 0-based pixel ``(x, y)``.

    Returns ``(J, lon, lat)``: ``J`` (2x2, degrees per pixel) maps a pixel offset ``(dx, dy)``
    to the sky offset ``(east, north)`` (east = d lon cos(lat)), by central differences of
    ``all_pix2world`` over +-0.5 px (so SIP/TPV distortion is included); ``lon, lat`` in degrees.
    For a linear WCS, ``J`` equals the CD matrix with the east axis sign convention of FITS.
    """
    ilon, ilat = wcs.wcs.lng, wcs.wcs.lat
    h = 0.5
    px = np.array([x, x + h, x - h, x, x], float)
    py = np.array([y, y, y, y + h, y - h], float)
    world = np.asarray(wcs.all_pix2world(np.column_stack([px, py]), 0), float)
    lon, lat = world[:, ilon], world[:, ilat]
    coslat = math.cos(math.radians(lat[0]))

    def d(i, j):
        dlon = (lon[i] - lon[j] + 180.0) % 360.0 - 180.0
        return np.array([dlon * coslat, lat[i] - lat[j]]) / (2 * h)

    J = np.column_stack([d(1, 2), d(3, 4)])
    return J, float(lon[0]), float(lat[0])


def pa_east_of_north(J, pa_img_deg):
    """Position angle east of north (degrees, [0, 180)) of image direction ``pa_img_deg``.

    The image direction ``u = (cos t, sin t)`` is mapped to ``(east, north) = J u`` and
    ``PA = atan2(east, north)``. Returns ``(pa, dpa_dangle)`` with the derivative (deg/deg) for
    error propagation (1 for a conformal WCS).
    """
    t = math.radians(pa_img_deg)
    e, n = J @ np.array([math.cos(t), math.sin(t)])
    de, dn = J @ np.array([-math.sin(t), math.cos(t)])
    pa = math.degrees(math.atan2(e, n)) % 180.0
    if pa >= 180.0:
        pa -= 180.0
    deriv = (n * de - e * dn) / (e * e + n * n)
    return pa, float(deriv)


def flag_names(flags):
    """Names of the set bits of ``flags`` joined by ``|`` ('' for 0)."""
    f = int(flags)
    return _flag_names(f) if f else ""


@functools.lru_cache(maxsize=256)
def _flag_names(f):
    # iterating the enum costs tens of microseconds; a batch sees few distinct combinations
    return "|".join(m.name for m in FitFlags if f & int(m))
