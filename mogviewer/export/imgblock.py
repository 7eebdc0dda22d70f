"""GALFIT-style image blocks: data, model, residual, chi and mask in one FITS file.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import __version__, _warnings
from ..fitting import model_image
from .columns import _NAN
from .files import _atomic_write
from .table import _propagate, result_to_row

# ---------------------------------------------------------------------------------------------
# image block
# ---------------------------------------------------------------------------------------------

#: Extensions of an image block, in order.
IMGBLOCK_EXTENSIONS = ("DATA", "MODEL", "RESIDUAL", "CHI", "MASK")

_GALFIT_N = {"exp": 1.0, "dev": 4.0, "lux": 1.0, "luv": 4.0}


def _pm(value, err, fixed=False):
    """GALFIT header string ``'value +/- err'`` (``'[value]'`` for a fixed parameter)."""
    if fixed:
        return f"[{value:.4f}]"
    return f"{value:.4f} +/- {err:.4f}"


def _ascii(text):
    """``text`` as printable ASCII: other characters as Python escapes (``gälaxy`` ->
    ``g\\xe4laxy``), so the card is valid and the name still recognisable."""
    text = str(text)
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if c.isascii() and c.isprintable() else
                   c.encode("unicode_escape").decode("ascii") for c in text)


def _set(header, key, value, comment=""):
    """Set a card, shortening the comment so that it fits in 80 characters (no warning).

    FITS has no NaN literal: a non-finite float is written as the string ``'nan'``/``'inf'``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    if isinstance(value, str):  # FITS cards are printable ASCII: escape a non-ASCII file name
        value = _ascii(value)
    comment = _ascii(comment)
    if isinstance(value, str):
        vlen = max(20, len(value) + value.count("'") + 2)
    else:
        vlen = 20
    room = 80 - 10 - vlen - 3
    header[key] = (value, comment[:room] if room > 0 else "")


def _wcs_header(image_data):
    wcs = getattr(image_data, "wcs", None) if image_data is not None else None
    if wcs is None:
        return None
    from astropy.utils.exceptions import AstropyWarning

    with _warnings.catch():
        warnings.simplefilter("ignore", AstropyWarning)
        return wcs.to_header(relax=True)


def write_imgblock(path, problem, result, image_data=None, *, zeropoint=None,
                   scale_errors=False, psf_source="none", model=None):
    """Write a GALFIT-style image block FITS file.

    HDU 0 is an empty primary with a summary; then the image extensions
    :data:`IMGBLOCK_EXTENSIONS`: ``DATA`` (the fitted pixels, non-finite set to 0), ``MODEL``
    (galaxy + sky), ``RESIDUAL`` (data - model), ``CHI`` (residual x sqrt(weight), 0 where masked)
    and ``MASK`` (uint8, 1 = pixel not used). The celestial WCS of ``image_data`` is copied into
    every extension. The MODEL header holds GALFIT-like cards ``1_XC``, ``1_YC`` (1-based),
    ``1_MAG`` (``mag``, the target profile's), ``1_RE`` (half-light semi-major, px), ``1_N``,
    ``1_AR`` (q), ``1_PA`` (GALFIT PA) as ``'value +/- err'`` strings (``'[value]'`` when fixed),
    ``2_SKY`` etc., and numeric ``MOG_*`` keywords with 0-based coordinates and image angles.

    ``model``, when given, is the MODEL image instead of the one-galaxy model of ``result``:
    a scene fit's full model (every source and the sky), whose target ``result`` describes.

    Raises
    ------
    ExportError
        The file cannot be written (nothing is left half-written).
    """
    from astropy.io import fits

    row = result_to_row(result, image_data, problem=problem, zeropoint=zeropoint,
                        scale_errors=scale_errors, psf_source=psf_source)
    p = result.params
    data = np.asarray(problem.image, float)
    model = np.asarray(model_image(problem, p) if model is None else model, float)
    if model.ndim == 0:
        model = np.full(data.shape, float(model))
    resid = data - model
    chi = resid * np.sqrt(problem.weights)
    mask = (problem.weights <= 0).astype(np.uint8)
    wcs_hdr = _wcs_header(image_data)

    def ext(name, arr, comment):
        h = fits.ImageHDU(arr, name=name)
        if wcs_hdr is not None:
            h.header.extend(wcs_hdr, update=True)
        h.header["COMMENT"] = _ascii(comment)
        return h

    prim = fits.PrimaryHDU()
    ph = prim.header
    _set(ph, "ORIGIN", f"mogviewer {__version__}", "GALFIT-style image block")
    _set(ph, "OBJECT", str(row["file"] or "")[-68:], "input image")
    ph["COMMENT"] = "Extensions: DATA, MODEL, RESIDUAL, CHI, MASK (1 = pixel not used)."
    ph["COMMENT"] = "Fitted parameters are in the MODEL header (1_* GALFIT-like, MOG_* numeric)."

    hm = ext("MODEL", model, "model = galaxy mixture (x PSF) + sky, image units")
    h = hm.header
    free = set(result.free)
    zp = row["zeropoint"]
    zp_used = 0.0 if zp is None else float(zp)
    mag_t = (zp_used - 2.5 * math.log10(result.flux_target)) if result.flux_target > 0 else _NAN
    mag_err = row["mag_err"] if zp is not None else (
        _propagate(result, {"flux": -2.5 / (math.log(10) * p.flux)},
                   math.sqrt(result.chi2_nu) if scale_errors else 1.0) if p.flux > 0 else _NAN)
    comp = "sersic"
    n_val = result.n if result.profile == "ser" else _GALFIT_N.get(result.profile, _NAN)
    _set(h, "OBJECT", str(row["file"] or "")[-68:], "input image")
    _set(h, "COMP_1", comp, f"mogviewer profile {result.profile} M={result.M}")
    _set(h, "1_XC", _pm(p.x + 1, row["x_err"], "x" not in free), "x centre, 1-based [pix]")
    _set(h, "1_YC", _pm(p.y + 1, row["y_err"], "y" not in free), "y centre, 1-based [pix]")
    _set(h, "1_MAG", _pm(mag_t, mag_err, "flux" not in free), "total mag of target profile")
    _set(h, "1_RE", _pm(p.re, row["re_pix_err"], "re" not in free),
         "half-light semi-major [pix]")
    if "n" in free:
        _set(h, "1_N", _pm(result.n, row["n_err"], False), "Sersic index (fitted)")
    else:
        _set(h, "1_N", f"[{n_val:.4f}]", "Sersic index (fixed)")
    _set(h, "1_AR", _pm(p.q, row["q_err"], "q" not in free), "axis ratio b/a")
    _set(h, "1_PA", _pm(row["pa_galfit_deg"], row["pa_img_deg_err"], "angle" not in free),
                 "PA [deg] CCW from +y (GALFIT)")
    if problem.sky != "none":
        _set(h, "COMP_2", "sky", "sky background")
        _set(h, "2_SKY", _pm(p.sky, row["sky_err"], "sky" not in free), "sky [image units]")
        if problem.sky == "plane":
            _set(h, "2_DSDX", _pm(p.sky_dx, row["sky_dx_err"], "sky_dx" not in free),
                 "dsky/dx")
            _set(h, "2_DSDY", _pm(p.sky_dy, row["sky_dy_err"], "sky_dy" not in free),
                 "dsky/dy")
    _set(h, "MAGZPT", zp_used, "zeropoint used for 1_MAG" + ("" if zp is not None
                                                          else " (none known: 0)"))
    _set(h, "CHISQ", float(result.chi2), "chi^2")
    _set(h, "NDOF", int(result.nu), "degrees of freedom")
    _set(h, "NFREE", len(result.free), "free parameters")
    _set(h, "CHI2NU", float(result.chi2_nu), "reduced chi^2")

    def num(v):
        return _NAN if v is None else float(v)

    cards = [
        ("MOG_VER", __version__, "mogviewer version"),
        ("MOG_PROF", result.profile, "target profile"),
        ("MOG_M", int(result.M), "Gaussians in the profile mixture"),
        ("MOG_X", p.x, "x centre, 0-based [pix]"), ("MOG_XERR", row["x_err"], "[pix]"),
        ("MOG_Y", p.y, "y centre, 0-based [pix]"), ("MOG_YERR", row["y_err"], "[pix]"),
        ("MOG_RE", p.re, "half-light semi-major [pix]"), ("MOG_REER", row["re_pix_err"], "[pix]"),
        ("MOG_Q", p.q, "axis ratio b/a"), ("MOG_QERR", row["q_err"], ""),
        ("MOG_ANG", p.angle, "[deg] CCW from +x, [0,180)"),
        ("MOG_ANGE", row["pa_img_deg_err"], "[deg]"),
        ("MOG_PAGF", row["pa_galfit_deg"], "[deg] GALFIT PA, CCW from +y"),
        ("MOG_PAEN", num(row["pa_eofn_deg"]), "[deg] east of north (NaN: no WCS)"),
        ("MOG_FLUX", p.flux, "mixture total [image units]"),
        ("MOG_FLXE", row["flux_mog_err"], "[image units]"),
        ("MOG_FTGT", result.flux_target, "target profile total [image units]"),
        ("MOG_FTGE", row["flux_err"], "[image units]"),
        ("MOG_MAG", num(row["mag_mog"]), "mag of MOG_FLUX (NaN: no zeropoint)"),
        ("MOG_MAGE", num(row["mag_mog_err"]), "[mag]"),
        ("MOG_SKY", p.sky, "sky [image units/pix]"), ("MOG_SKYE", num(row["sky_err"]), ""),
        ("MOG_SKYM", problem.sky, "sky model"),
        ("MOG_CHI2", float(result.chi2), "chi^2"), ("MOG_NU", int(result.nu), "dof"),
        ("MOG_STAT", result.status, "fit status"),
        ("MOG_FLAG", int(result.flags), row["flag_names"][:40] or "no flags"),
        ("MOG_ESCL", bool(scale_errors), "errors scaled by sqrt(chi2_nu)"),
    ]
    for key, value, comment in cards:
        _set(h, key, value, comment)

    hdul = fits.HDUList([
        prim,
        ext("DATA", data, "data as fitted (non-finite pixels set to 0), image units"),
        hm,
        ext("RESIDUAL", resid, "data - model, image units"),
        ext("CHI", chi, "(data - model) sqrt(weight); 0 where masked"),
        ext("MASK", mask, "1 = pixel not used in the fit (masked, NaN or zero weight)"),
    ])

    def write(f):
        hdul.writeto(f)

    return _atomic_write(path, write, what="image block", binary=True)
