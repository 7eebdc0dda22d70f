"""Facts from a FITS header: the celestial WCS, pixel scale, band and zeropoint.
"""

from __future__ import annotations

import numpy as np

from ..errors import ImageReadError
from .hdus import _first_line
from .image_data import ZEROPOINT_KEYS

# --------------------------------------------------------------------------------------------
# header facts
# --------------------------------------------------------------------------------------------

def _header_value(header, primary, key):
    """``(value, where)`` of ``key`` in ``header``, else in the primary header, else (None, None).

    ``where`` is "" or " (primary header)", for the notes.
    """
    if header is not None and key in header and header[key] not in (None, ""):
        return header[key], ""
    if primary is not None and key in primary and primary[key] not in (None, ""):
        return primary[key], " (primary header)"
    return None, None


def _as_float(value):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _celestial_wcs(header, notes):
    if header is None:
        return None
    if not any(f"CTYPE{i}" in header for i in (1, 2)):
        # no celestial axis types: astropy would build a linear WCS (about 1.5 ms per file,
        # a fifth of a small cutout's read in batch mode) only to find no celestial part
        notes.append("No celestial WCS in the header: RA/Dec and the pixel scale are unknown.")
        return None
    from astropy.wcs import WCS
    try:
        w = WCS(header)
        if not w.has_celestial:
            notes.append("No celestial WCS in the header: RA/Dec and the pixel scale are unknown.")
            return None
        cel = w.celestial
        if cel.naxis != 2:
            return None
        if not _wcs_scale_defined(header):
            notes.append("The header WCS has no usable pixel scale (CD matrix singular or "
                         "missing, CDELT missing or not a number); no WCS used.")
            return None
        return cel
    except Exception as exc:  # noqa: BLE001 - a broken WCS is a note, not a failure
        notes.append(f"The header WCS could not be interpreted ({_first_line(exc)}); "
                     "no WCS used.")
        return None


def _wcs_scale_defined(header):
    """True when axes 1, 2 have a numeric, non-singular CD matrix or non-zero CDELTs.

    Without this check astropy's fixers silently turn a zero CD matrix or a missing CDELT into
    1 degree per pixel.
    """
    cd = np.array([[_as_float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)] for i in (1, 2)],
                  dtype=float)
    has_cd = any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2))
    if has_cd:
        return bool(np.all(np.isfinite(cd)) and abs(np.linalg.det(cd)) > 0)
    cdelt = [_as_float(header.get(f"CDELT{i}")) for i in (1, 2)]
    return all(c is not None and c != 0 for c in cdelt)


def _pixel_scale(wcs, notes):
    from astropy.wcs.utils import proj_plane_pixel_scales
    try:
        scales = proj_plane_pixel_scales(wcs) * 3600.0  # degrees -> arcsec
    except Exception as exc:  # noqa: BLE001
        notes.append(f"Pixel scale could not be computed from the WCS ({_first_line(exc)}).")
        return None
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        notes.append("The WCS gives a non-positive pixel scale; pixel scale unknown.")
        return None
    scale = float(np.mean(scales))
    msg = f"Pixel scale {scale:.5g} arcsec/px from the WCS"
    if abs(scales[0] - scales[1]) > 0.01 * scale:
        msg += f" (mean of x {scales[0]:.5g} and y {scales[1]:.5g}: pixels not square)"
    notes.append(msg + ".")
    return scale


def _band_from_header(header, primary):
    for key in ("BAND", "FILTER", "FILTER1", "FILTER2", "FILTNAM1"):
        val, where = _header_value(header, primary, key)
        if val is None:
            continue
        text = str(val).strip()
        if not text or text.upper().startswith("CLEAR"):
            continue
        return text.split()[0], f"{key}{where}"
    return None, None



def _keyword_float(header, primary, key, label, unit, notes, quiet=False):
    val, where = _header_value(header, primary, key)
    if val is None:
        if not quiet and header is not None:
            notes.append(f"No {key} in the header: {label} unknown.")
        return None
    out = _as_float(val)
    if out is None:
        notes.append(f"{key} = {val!r}{where} is not a number; {label} unknown.")
        return None
    if not quiet:
        extra = " (a string in the header, parsed)" if isinstance(val, str) else ""
        notes.append(f"{label.capitalize()} {out:g} {unit} from {key}{where}{extra}.")
    return out


def _zeropoint(header, primary, given, notes):
    found = None
    for key in ZEROPOINT_KEYS:
        val, where = _header_value(header, primary, key)
        if val is not None and _as_float(val) is not None:
            found = (key + where, _as_float(val))
            break
    if given is not None:
        zp = _as_float(given)
        if zp is None:
            raise ImageReadError(f"zeropoint must be a number, not {given!r}")
        notes.append(f"Zeropoint {zp:g} given" + (
            f" (header {found[0]} = {found[1]:g} not used)." if found else "."))
        return zp
    if found:
        notes.append(f"Zeropoint {found[1]:g} from {found[0]} (mag of 1 image unit).")
        return found[1]
    notes.append(f"No zeropoint ({', '.join(ZEROPOINT_KEYS)} not in the header): magnitudes "
                 "unknown; pass zeropoint= (CLI: --zeropoint).")
    return None
