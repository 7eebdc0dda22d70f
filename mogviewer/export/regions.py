"""DS9 region files of a fitted ellipse.
"""

from __future__ import annotations

import math

import numpy as np

from .. import __version__
from .conventions import local_jacobian, pa_east_of_north
from .files import _atomic_write

# ---------------------------------------------------------------------------------------------
# DS9 regions
# ---------------------------------------------------------------------------------------------

def write_region(path, result, wcs=None, *, text=None, color="green", others=()):
    """Write the fitted half-light ellipse as a DS9 region file (atomic).

    Image section: ``image; ellipse(x_fits, y_fits, a, b, angle)`` with 1-based centre, semi-axes
    ``a = re``, ``b = q re`` in pixels and ``angle = pa_img_deg`` (DS9: CCW from +x). With a
    ``wcs``: ``fk5; ellipse(ra, dec, a", b", angle)`` with semi-axes in arcsec from the local WCS
    scale along each axis and ``angle = pa_eofn_deg + 90`` (DS9 sky angles are measured CCW from
    the west-east axis, so 90 = north), in [0, 180).

    ``others``: the other sources of a scene fit (:class:`~mogviewer.scene.Galaxy` and
    :class:`~mogviewer.scene.PointSource` values, 0-based), added in the image section in yellow:
    an ellipse per galaxy, a ``point`` (x) per point source.
    """
    p = result.params
    label = text if text is not None else f"mogviewer {result.profile}{result.M}"
    lines = ["# Region file format: DS9 version 4.1",
             f"# mogviewer {__version__}: fitted half-light ellipse (semi-axes re, q re).",
             "# image: 1-based pixel centres, angle CCW from +x. fk5: degrees, semi-axes in "
             "arcsec, angle = PA east of north + 90.",
             f'global color={color} width=1 font="helvetica 10 normal roman"',
             "image",
             f"ellipse({p.x + 1:.6f},{p.y + 1:.6f},{p.re:.6f},{p.q * p.re:.6f},"
             f"{p.angle:.6f}) # text={{{label}}}"]
    for k, s in enumerate(others, start=1):
        if getattr(s, "kind", "") == "point":
            lines.append(f"point({s.x + 1:.6f},{s.y + 1:.6f}) # point=x color=yellow "
                         f"text={{neighbour {k} (point)}}")
        else:
            lines.append(f"ellipse({s.x + 1:.6f},{s.y + 1:.6f},{s.re:.6f},{s.q * s.re:.6f},"
                         f"{s.angle:.6f}) # color=yellow text={{neighbour {k} ({s.profile})}}")
    if wcs is not None:
        J, lon, lat = local_jacobian(wcs, p.x, p.y)
        t = math.radians(p.angle)
        sa = float(np.hypot(*(J @ np.array([math.cos(t), math.sin(t)])))) * 3600.0
        sb = float(np.hypot(*(J @ np.array([-math.sin(t), math.cos(t)])))) * 3600.0
        pa, _ = pa_east_of_north(J, p.angle)
        ang = (pa + 90.0) % 180.0
        lines += ["fk5",
                  f'ellipse({lon:.8f},{lat:.8f},{p.re * sa:.5f}",{p.q * p.re * sb:.5f}",'
                  f"{ang:.6f}) # color=cyan dash=1 text={{{label} (fk5)}}"]
    body = "\n".join(lines) + "\n"
    return _atomic_write(path, lambda f: f.write(body), what="region file")
