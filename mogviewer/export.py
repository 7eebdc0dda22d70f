"""Write fit results: CSV rows, GALFIT-style image blocks, DS9 regions and JSON model files.

Conventions carried by every export (and stated in each file)
-------------------------------------------------------------
* Arrays are ``image[y, x]``. ``x, y`` are 0-based pixel centres (the first pixel spans
  [-0.5, 0.5]); ``x_fits = x + 1``, ``y_fits = y + 1`` are the 1-based FITS/GALFIT/imfit/DS9
  coordinates of the same point.
* ``pa_img_deg``: major-axis angle in degrees counter-clockwise from +x, in [0, 180) (the DS9
  image-region angle). ``pa_galfit_deg``: GALFIT/imfit PA, counter-clockwise from +y,
  ``pa_img_deg - 90`` wrapped to (-90, 90]. ``pa_eofn_deg``: position angle east of north on the
  sky, in [0, 180), from the local Jacobian of the WCS at the galaxy centre (north is *not* assumed
  to be up; a flipped or rotated WCS is handled). For a WCS with north up and east left
  (``CD = [[-s, 0], [0, s]]``) ``pa_eofn_deg = pa_img_deg - 90`` (mod 180), i.e. the GALFIT PA.
* ``q = b/a`` in (0, 1]; ``ell = 1 - q``; ``e1, e2 = (1-q)/(1+q) (cos 2 pa_img, sin 2 pa_img)``
  in *image* axes.
* ``re_pix``: semi-major half-light radius of the *target* profile (pixels); ``re_circ_pix =
  re_pix sqrt(q)``; ``re_arcsec`` from the local WCS scale along the major axis (or the pixel
  scale when there is no WCS).
* ``flux``: total of the fitted mixture (image units); ``flux_target = flux / flux_fraction``: the
  target (untruncated) profile's total. ``mag = zeropoint - 2.5 log10(flux)``, ``mag_target``
  the same for ``flux_target`` (comparable with GALFIT/imfit total magnitudes).
* ``<name>_err``: formal 1-sigma error in the unit of ``<name>`` from the covariance
  ``(J^T W J)^-1`` (scaled by ``sqrt(chi2_nu)`` when ``err_scaled`` is true); errors of derived
  quantities by linear propagation with the full covariance (correlations included), e.g.
  ``mag_err = 1.0857 flux_err / flux``. 0 for fixed parameters, NaN when undefined.

Error policy
------------
Every failure to write a file raises :class:`ExportError` (an ``OSError``) whose message names the
file and the problem. Writes are atomic: the content goes to a temporary file in the target
directory that is renamed over the target (``os.replace``) only when complete, so an existing file
is never truncated or half-written by a failure.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .fitting import FitFlags, GalaxyParams, model_image
from .mixture import Mixture

__all__ = ["COLUMNS", "COLUMN_NAMES", "CONVENTIONS", "ExportError", "SavedModel",
           "result_to_row", "failed_row", "write_csv", "read_csv_columns", "write_imgblock",
           "write_region", "write_model_json", "read_model_json", "pa_galfit", "pa_east_of_north",
           "local_jacobian", "flag_names", "IMGBLOCK_EXTENSIONS", "MODEL_FORMAT",
           "ModelFileError", "rows_to_text", "Column"]

#: One sentence per convention; written into the CSV comment lines and the JSON model file.
CONVENTIONS = {
    "array_order": "arrays are image[y, x]",
    "pixel_origin": "x, y are 0-based pixel centres; x_fits = x + 1, y_fits = y + 1 (FITS, "
                    "GALFIT, imfit, DS9)",
    "pa_img_deg": "major axis, degrees counter-clockwise from +x, in [0, 180)",
    "pa_galfit_deg": "GALFIT/imfit PA, counter-clockwise from +y = pa_img_deg - 90 wrapped to "
                     "(-90, 90]",
    "pa_eofn_deg": "position angle east of north from the local WCS Jacobian, in [0, 180)",
    "q": "axis ratio b/a <= 1; ell = 1 - q",
    "re": "semi-major half-light radius of the target profile",
    "errors": "formal 1-sigma errors from (J^T W J)^-1, scaled by sqrt(chi2_nu) iff "
              "err_scaled; derived quantities by linear propagation",
}

_NAN = float("nan")

# (name, unit, description); value columns with an error are followed by "<name>_err".
_C = [
    ("file", "", "input image file"),
    ("hdu", "", "HDU index of the image (empty for .npy)"),
    ("band", "", "photometric band (argument or BAND/FILTER keyword)"),
    ("status", "", "converged, max_evaluations, cancelled or failed"),
    ("flags", "", "FitFlags bit mask (0 = nothing to report)"),
    ("flag_names", "", "names of the set FitFlags bits, joined by |"),
    ("reason", "", "why the fit failed or what went wrong after it (empty if nothing)"),
    ("profile", "", "target profile: exp, dev, lux, luv or ser"),
    ("M", "", "number of Gaussians in the profile mixture"),
    ("n", "", "Sersic index (profile ser only; fitted or fixed)", True),
    ("sky_model", "", "none, constant or plane"),
    ("psf_source", "", "PSF file and what it held (none = no PSF)"),
    ("x", "pix", "centre x, 0-based pixel centres", True),
    ("y", "pix", "centre y, 0-based pixel centres", True),
    ("x_fits", "pix", "centre x, 1-based (FITS/GALFIT/DS9) = x + 1", True),
    ("y_fits", "pix", "centre y, 1-based (FITS/GALFIT/DS9) = y + 1", True),
    ("ra_deg", "deg", "world longitude of the centre (RA for an equatorial WCS); "
                      "error in RA itself, not RA cos(Dec)", True),
    ("dec_deg", "deg", "world latitude of the centre (Dec)", True),
    ("re_pix", "pix", "semi-major half-light radius of the target profile", True),
    ("re_arcsec", "arcsec", "re_pix times the local WCS scale along the major axis", True),
    ("re_circ_pix", "pix", "circularised half-light radius re_pix sqrt(q)", True),
    ("q", "", "axis ratio b/a <= 1", True),
    ("ell", "", "ellipticity 1 - q (imfit ell)", True),
    ("e1", "", "(1-q)/(1+q) cos(2 pa_img), image axes", True),
    ("e2", "", "(1-q)/(1+q) sin(2 pa_img), image axes", True),
    ("pa_img_deg", "deg", "major axis CCW from +x, [0, 180) (DS9 image angle)", True),
    ("pa_galfit_deg", "deg", "GALFIT/imfit PA CCW from +y = pa_img_deg - 90 in (-90, 90]",
     True),
    ("pa_eofn_deg", "deg", "PA east of north from the local WCS Jacobian, [0, 180)", True),
    ("flux", "image units", "total flux of the fitted mixture", True),
    ("flux_target", "image units", "total flux of the target profile = flux / flux_fraction",
     True),
    ("mag", "mag", "zeropoint - 2.5 log10(flux)", True),
    ("mag_target", "mag", "zeropoint - 2.5 log10(flux_target) (GALFIT/imfit-like total)", True),
    ("profile2", "", "second component of a composite (bulge + disk) model, sharing x, y"),
    ("M2", "", "number of Gaussians of the second component"),
    ("flux2", "image units", "total flux of the second component's mixture", True),
    ("re2_pix", "pix", "semi-major half-light radius of the second component", True),
    ("q2", "", "axis ratio b/a of the second component", True),
    ("pa2_img_deg", "deg", "second component's major axis CCW from +x, [0, 180)", True),
    ("bt", "", "flux / (flux + flux2): the first component's fraction of the model flux"),
    ("zeropoint", "mag", "magnitude of 1 image unit (given or from the header)"),
    ("sky", "image units/pix", "constant sky level (at the image centre for a plane)", True),
    ("sky_dx", "image units/pix^2", "sky gradient along x (sky plane)", True),
    ("sky_dy", "image units/pix^2", "sky gradient along y (sky plane)", True),
    ("err_scaled", "", "True if the _err columns are scaled by sqrt(chi2_nu)"),
    ("chi2", "", "sum of w (data - model)^2 over usable pixels"),
    ("nu", "", "degrees of freedom: usable pixels - free parameters"),
    ("chi2_nu", "", "chi2 / nu"),
    ("nfev", "", "residual evaluations"),
    ("free", "", "free parameters, joined by |"),
    ("pixel_scale_arcsec", "arcsec/pix", "mean pixel scale"),
    ("noise_source", "", "where the inverse variance came from"),
    ("noise_estimated", "", "True if the noise is an estimate, not a supplied map"),
    ("warnings", "", "warnings raised while reading or fitting, joined by |"),
    ("elapsed_s", "s", "wall time of the fit"),
    ("mogviewer_version", "", "mogviewer version that wrote the row"),
]


@dataclasses.dataclass(frozen=True)
class Column:
    """One CSV column: ``name``, ``unit`` ('' = dimensionless or text) and ``description``."""

    name: str
    unit: str
    description: str


def _build_columns():
    cols = []
    for entry in _C:
        name, unit, desc = entry[:3]
        cols.append(Column(name, unit, desc))
        if len(entry) > 3 and entry[3]:
            cols.append(Column(f"{name}_err", unit, f"1-sigma error of {name}"))
    return tuple(cols)


#: The CSV columns, in order (data, not code: the GUI and docs read this).
COLUMNS = _build_columns()
#: Column names, in order.
COLUMN_NAMES = tuple(c.name for c in COLUMNS)

#: Extensions of the image block written by :func:`write_imgblock`, in order (after PRIMARY).
IMGBLOCK_EXTENSIONS = ("DATA", "MODEL", "RESIDUAL", "CHI", "MASK")
#: ``format`` value of the JSON model file.
MODEL_FORMAT = "mogviewer-model"


class ExportError(OSError):
    """A result file cannot be written (or appended to); the message names file and problem."""


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
    return "|".join(m.name for m in FitFlags if f & int(m))


# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------

def _empty_row():
    return {name: None for name in COLUMN_NAMES}


def failed_row(reason, *, file=None, hdu=None, band=None, profile=None, M=None, n=None,
               sky_model=None, psf_source=None, status="failed", warnings_text=""):
    """A row with every column, ``status='failed'`` and the ``reason``; numbers empty."""
    row = _empty_row()
    row.update(file=file, hdu=hdu, band=band, profile=profile, M=M, n=n, sky_model=sky_model,
               psf_source=psf_source, status=status, reason=str(reason), flags=0,
               flag_names="", warnings=warnings_text, mogviewer_version=__version__)
    return row


def _propagate(result, grads, scale):
    """``sqrt(g^T C g)`` over the free parameters (derivatives by name); NaN if undefined."""
    free = list(result.free)
    g = np.array([grads.get(name, 0.0) for name in free], float)
    if not np.any(g):
        return 0.0
    idx = np.flatnonzero(g)
    C = np.asarray(result.covariance, float)[np.ix_(idx, idx)]
    var = float(g[idx] @ C @ g[idx])
    if not math.isfinite(var) or var < 0:
        return _NAN
    return math.sqrt(var) * scale


def _dlnf_dn(result, h=1e-3):
    """d ln(flux_fraction) / dn of a Sérsic-family fit (0 for the tables)."""
    if result.profile != "ser":
        return 0.0
    from .sersic import N_MAX, N_MIN, sersic_profile_mixture
    n = result.params.n
    lo, hi = max(N_MIN, n - h), min(N_MAX, n + h)
    if hi <= lo:
        return 0.0
    flo = sersic_profile_mixture(lo).flux_fraction
    fhi = sersic_profile_mixture(hi).flux_fraction
    return (math.log(fhi) - math.log(flo)) / (hi - lo)


def result_to_row(result, image_data=None, *, problem=None, zeropoint=None, psf_source="none",
                  file=None, hdu=None, band=None, scale_errors=False, reason="",
                  warnings_text=""):
    """One CSV row (a dict with every column of :data:`COLUMNS`) for a :class:`FitResult`.

    Parameters
    ----------
    result : mogviewer.fitting.FitResult
    image_data : mogviewer.io_fits.ImageData, optional
        Source of the WCS (RA/Dec, ``pa_eofn_deg``, ``re_arcsec``), pixel scale, zeropoint,
        file, HDU, band and noise description.
    problem : mogviewer.fitting.FitProblem, optional
        Source of the sky model (``sky_model``); without it, guessed from ``result.free``.
    zeropoint : float, optional
        Magnitude zeropoint (mag of 1 image unit); overrides ``image_data.zeropoint``. Without
        any, the magnitudes are NaN.
    psf_source : str
        Description of the PSF used (``'none'`` without PSF).
    file, hdu, band : optional
        Override what ``image_data`` says.
    scale_errors : bool
        Scale every error by ``sqrt(chi2_nu)`` (as GALFIT does); recorded in ``err_scaled``.
    reason, warnings_text : str
        Text for the ``reason`` and ``warnings`` columns.

    Returns
    -------
    dict
        ``{column name: value}`` in :data:`COLUMN_NAMES` order; ``None`` = not applicable (no
        WCS, no zeropoint), NaN = undefined (e.g. a singular covariance).
    """
    p = result.params
    err = result.errors(scaled=False)
    scale = math.sqrt(result.chi2_nu) if scale_errors else 1.0
    if scale_errors and not math.isfinite(scale):
        scale = _NAN
    err = {k: v * scale for k, v in err.items()}
    d = image_data
    row = _empty_row()

    def prop(**grads):
        return _propagate(result, grads, scale)

    if problem is not None:
        sky_model = problem.sky
    else:
        sky_model = ("plane" if "sky_dx" in result.free else
                     "constant" if "sky" in result.free else "none")
    if zeropoint is None and d is not None:
        zeropoint = d.zeropoint
    row.update(
        file=file if file is not None else (d.path if d is not None else None),
        hdu=hdu if hdu is not None else (d.hdu if d is not None else None),
        band=band if band is not None else (d.band if d is not None else None),
        status=result.status, flags=int(result.flags), flag_names=flag_names(result.flags),
        reason=reason, profile=result.profile, M=int(result.M),
        n=result.n, sky_model=sky_model, psf_source=psf_source,
        x=p.x, x_err=err["x"], y=p.y, y_err=err["y"],
        x_fits=p.x + 1.0, x_fits_err=err["x"], y_fits=p.y + 1.0, y_fits_err=err["y"],
        re_pix=p.re, re_pix_err=err["re"], q=p.q, q_err=err["q"],
        pa_img_deg=p.angle, pa_img_deg_err=err["angle"],
        pa_galfit_deg=pa_galfit(p.angle), pa_galfit_deg_err=err["angle"],
        flux=p.flux, flux_err=err["flux"],
        flux_target=result.flux_target, flux_target_err=err["flux"] / result.flux_fraction,
        err_scaled=bool(scale_errors), chi2=result.chi2, nu=int(result.nu),
        chi2_nu=result.chi2_nu, nfev=int(result.nfev), free="|".join(result.free),
        elapsed_s=result.elapsed, warnings=warnings_text, mogviewer_version=__version__,
        zeropoint=zeropoint,
    )
    sq = math.sqrt(p.q)
    row["re_circ_pix"] = result.re_circ
    row["re_circ_pix_err"] = prop(re=sq, q=p.re / (2 * sq))
    row["ell"], row["ell_err"] = result.ell, err["q"]
    e = (1 - p.q) / (1 + p.q)
    de_dq = -2.0 / (1 + p.q) ** 2
    t2 = 2 * math.radians(p.angle)
    row["e1"], row["e2"] = result.e1e2
    row["e1_err"] = prop(q=de_dq * math.cos(t2), angle=-2 * e * math.sin(t2) * math.pi / 180)
    row["e2_err"] = prop(q=de_dq * math.sin(t2), angle=2 * e * math.cos(t2) * math.pi / 180)
    if result.profile == "ser":
        row["n_err"] = err.get("n", 0.0)
    if getattr(result, "profile2", None):
        row.update(profile2=result.profile2, M2=result.M2, flux2=p.flux2,
                   flux2_err=err["flux2"], re2_pix=p.re2, re2_pix_err=err["re2"], q2=p.q2,
                   q2_err=err["q2"], pa2_img_deg=p.angle2, pa2_img_deg_err=err["angle2"])
        tot = p.flux + p.flux2
        row["bt"] = p.flux / tot if tot != 0 else _NAN
    if sky_model != "none":
        row["sky"], row["sky_err"] = p.sky, err["sky"]
    if sky_model == "plane":
        row.update(sky_dx=p.sky_dx, sky_dx_err=err["sky_dx"], sky_dy=p.sky_dy,
                   sky_dy_err=err["sky_dy"])
    # flux_target = flux / f(n): with a free Sérsic index the flux fraction f varies too
    dlnf_dn = _dlnf_dn(result) if "n" in result.free else 0.0
    if dlnf_dn:
        f = result.flux_fraction
        row["flux_target_err"] = prop(flux=1.0 / f, n=-p.flux * dlnf_dn / f)
    if zeropoint is not None:
        zp = float(zeropoint)
        k = 2.5 / math.log(10)
        dmag = prop(flux=-k / p.flux) if p.flux > 0 else _NAN
        row["mag"], row["mag_err"] = result.magnitude(zp), dmag
        ft = result.flux_target
        row["mag_target"] = zp - 2.5 * math.log10(ft) if ft > 0 else _NAN
        row["mag_target_err"] = (prop(flux=-k / p.flux, n=k * dlnf_dn) if p.flux > 0 and dlnf_dn
                                 else dmag)
    wcs = getattr(d, "wcs", None) if d is not None else None
    pixscale = getattr(d, "pixel_scale_arcsec", None) if d is not None else None
    row["pixel_scale_arcsec"] = pixscale
    if d is not None:
        row["noise_source"] = d.noise_source
        row["noise_estimated"] = bool(d.noise_is_estimate)
    if wcs is not None:
        J, lon, lat = local_jacobian(wcs, p.x, p.y)
        coslat = math.cos(math.radians(lat))
        row["ra_deg"], row["dec_deg"] = lon, lat
        row["ra_deg_err"] = prop(x=J[0, 0] / coslat, y=J[0, 1] / coslat) if coslat > 0 else _NAN
        row["dec_deg_err"] = prop(x=J[1, 0], y=J[1, 1])
        pa, dpa = pa_east_of_north(J, p.angle)
        row["pa_eofn_deg"], row["pa_eofn_deg_err"] = pa, abs(dpa) * err["angle"]
        t = math.radians(p.angle)
        s_major = float(np.hypot(*(J @ np.array([math.cos(t), math.sin(t)])))) * 3600.0
        row["re_arcsec"], row["re_arcsec_err"] = p.re * s_major, err["re"] * s_major
    elif pixscale is not None:
        row["re_arcsec"], row["re_arcsec_err"] = p.re * pixscale, err["re"] * pixscale
    return row


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------

def _describe_oserror(exc):
    import errno

    return {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENOENT: "the directory does not exist", errno.EISDIR: "it is a directory",
            errno.ENOTDIR: "a parent of the path is not a directory",
            errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
            }.get(exc.errno, exc.strerror or str(exc))


def _check_target(path, what):
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"cannot write {what} {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ExportError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ExportError(f"cannot write {what} {path}: {parent} is not a directory")
    return path


def _atomic_write(path, write, *, what, binary=False):
    """Call ``write(fileobj)`` on a temporary file next to ``path`` and rename it over ``path``.

    The temporary file is removed on any failure; ``path`` is untouched unless everything
    succeeded. OSErrors become :class:`ExportError`; other exceptions propagate unchanged.
    """
    path = _check_target(path, what)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                                   prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                      {"newline": "", "encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, ExportError):
            raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
        raise
    return path


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return str(v)


def columns_doc_path(path):
    """The sidecar file documenting a CSV's columns: ``fits.csv -> fits.csv.columns.txt``."""
    path = Path(path)
    return path.with_name(path.name + ".columns.txt")


def columns_doc(columns=COLUMN_NAMES):
    """Text documenting every column (name, unit, description) and the conventions."""
    lines = [f"Columns of a mogviewer {__version__} fit-results CSV (one row per fit).",
             "Read it with astropy.table.Table.read(path, format='csv') or pandas.read_csv.",
             "Units are also in the column names (re_pix, pa_img_deg, ...); '_err' columns hold",
             "the 1-sigma error of the column before them.", "", "Conventions:"]
    lines += [f"  {k}: {v}" for k, v in CONVENTIONS.items()]
    lines += ["", f"{'column':<22} {'unit':<16} description"]
    for c in COLUMNS:
        if c.name in columns:
            lines.append(f"{c.name:<22} {c.unit or '-':<16} {c.description}")
    return "\n".join(lines) + "\n"


def read_csv_columns(path):
    """Column names of an existing CSV (first line that is not a ``#`` comment, so files of
    earlier versions, which began with comment lines, are read too); None if empty."""
    with open(path, newline="", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            return tuple(next(csv.reader([line])))
    return None


def write_csv(path, rows, *, append=False, columns=COLUMN_NAMES):
    """Write ``rows`` (dicts) as CSV, atomically.

    A plain CSV that ``astropy.table.Table.read(path, format="csv")`` reads as it is: the
    header row (units in the column names), then one line per row. Floats are written with full
    precision (``repr``), ``None`` as an empty field and NaN as ``nan``. Every column's unit and
    description and the conventions go to a sidecar text file beside it
    (:func:`columns_doc_path`), written when the CSV is created.

    Parameters
    ----------
    path : str or Path
    rows : iterable of dict
        Keys must be within ``columns``; missing keys are written empty.
    append : bool
        Add ``rows`` to an existing file without repeating its header (an absent or empty file is
        created). The existing file's columns must equal ``columns``, else :class:`ExportError`.
        The whole file is rewritten to a temporary file and renamed, so a failure leaves the old
        file intact.
    columns : sequence of str
        Column order (default :data:`COLUMN_NAMES`).

    Raises
    ------
    ExportError
        Unwritable path, target is a directory, or append to a file with other columns.
    """
    path = _check_target(path, "CSV")
    rows = list(rows)
    columns = tuple(columns)
    for r in rows:
        extra = set(r) - set(columns)
        if extra:
            raise ValueError(f"row has unknown columns: {', '.join(sorted(extra))}")
    old = None
    if append and path.exists():
        try:
            old = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ExportError(f"cannot append to CSV {path}: {_describe_oserror(exc)}") from None
        except UnicodeDecodeError:
            raise ExportError(f"cannot append to {path}: it is not a text CSV file") from None
        have = read_csv_columns(path) if old.strip() else None
        if have is None:
            old = None
        elif have != columns:
            missing = [c for c in columns if c not in have]
            extra = [c for c in have if c not in columns]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5
                                                                     else ""))
            if extra:
                detail.append(f"unexpected {', '.join(extra[:5])}" + (" ..." if len(extra) > 5
                                                                      else ""))
            if not detail:
                detail.append("same names in another order")
            raise ExportError(f"cannot append to {path}: its columns differ from this version's "
                              f"({'; '.join(detail)}); write to a new file instead")
        if old is not None and not old.endswith("\n"):
            old += "\n"

    def write(f):
        if old is not None:
            f.write(old)
        w = csv.writer(f, lineterminator="\n")
        if old is None:
            w.writerow(columns)
        for r in rows:
            w.writerow([_fmt(r.get(c)) for c in columns])

    out = _atomic_write(path, write, what="CSV")
    if old is None:
        doc = columns_doc(columns)
        try:
            _atomic_write(columns_doc_path(path), lambda f: f.write(doc), what="CSV column notes")
        except ExportError:
            pass  # the CSV itself is complete; its notes are a convenience
    return out


# ---------------------------------------------------------------------------------------------
# image block
# ---------------------------------------------------------------------------------------------

_GALFIT_N = {"exp": 1.0, "dev": 4.0, "lux": 1.0, "luv": 4.0}


def _pm(value, err, fixed=False):
    """GALFIT header string ``'value +/- err'`` (``'[value]'`` for a fixed parameter)."""
    if fixed:
        return f"[{value:.4f}]"
    return f"{value:.4f} +/- {err:.4f}"


def _set(header, key, value, comment=""):
    """Set a card, shortening the comment so that it fits in 80 characters (no warning).

    FITS has no NaN literal: a non-finite float is written as the string ``'nan'``/``'inf'``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
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

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return wcs.to_header(relax=True)


def write_imgblock(path, problem, result, image_data=None, *, zeropoint=None,
                   scale_errors=False, psf_source="none"):
    """Write a GALFIT-style image block FITS file.

    HDU 0 is an empty primary with a summary; then the image extensions
    :data:`IMGBLOCK_EXTENSIONS`: ``DATA`` (the fitted pixels, non-finite set to 0), ``MODEL``
    (galaxy + sky), ``RESIDUAL`` (data - model), ``CHI`` (residual x sqrt(weight), 0 where
    masked) and ``MASK`` (uint8, 1 = pixel not used). The celestial WCS of ``image_data`` is copied
    into every extension. The MODEL header holds GALFIT-like cards ``1_XC``, ``1_YC`` (1-based),
    ``1_MAG`` (``mag_target``), ``1_RE`` (half-light semi-major, px), ``1_N``, ``1_AR`` (q),
    ``1_PA`` (GALFIT PA) as ``'value +/- err'`` strings (``'[value]'`` when fixed), ``2_SKY``
    etc., and numeric ``MOG_*`` keywords with 0-based coordinates and image angles.

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
    model = np.asarray(model_image(problem, p), float)
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
        h.header["COMMENT"] = comment
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
    mag_err = row["mag_target_err"] if zp is not None else (
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
        ("MOG_FLXE", row["flux_err"], "[image units]"),
        ("MOG_FTGT", result.flux_target, "target profile total [image units]"),
        ("MOG_MAG", num(row["mag"]), "mag of MOG_FLUX (NaN: no zeropoint)"),
        ("MOG_MAGE", num(row["mag_err"]), "[mag]"),
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


# ---------------------------------------------------------------------------------------------
# DS9 regions
# ---------------------------------------------------------------------------------------------

def write_region(path, result, wcs=None, *, text=None, color="green"):
    """Write the fitted half-light ellipse as a DS9 region file (atomic).

    Image section: ``image; ellipse(x_fits, y_fits, a, b, angle)`` with 1-based centre, semi-axes
    ``a = re``, ``b = q re`` in pixels and ``angle = pa_img_deg`` (DS9: CCW from +x). With a
    ``wcs``: ``fk5; ellipse(ra, dec, a", b", angle)`` with semi-axes in arcsec from the local WCS
    scale along each axis and ``angle = pa_eofn_deg + 90`` (DS9 sky angles are measured CCW from
    the west-east axis, so 90 = north), in [0, 180).
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


# ---------------------------------------------------------------------------------------------
# JSON model
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class SavedModel:
    """What :func:`read_model_json` returns.

    Attributes
    ----------
    params : GalaxyParams
    profile : str
    M : int
    n : float or None
    sky : {'none', 'constant', 'plane'}
    psf : Mixture or None
        The PSF mixture used (pixel-convolved, pixels), or None.
    free : tuple of str or None
    errors : dict or None
        ``{name: 1-sigma}`` when the file came from a fit (None = undefined).
    meta : dict
        Everything else in the file (fit statistics, conventions, source file...).
    """

    params: GalaxyParams
    profile: str
    M: int
    n: float | None = None
    sky: str = "constant"
    psf: Mixture | None = None
    free: tuple | None = None
    errors: dict | None = None
    meta: dict = dataclasses.field(default_factory=dict)


def _jnum(v):
    v = float(v)
    return v if math.isfinite(v) else None


def write_model_json(path, model, *, problem=None, profile=None, M=None, n=None, psf=None,
                     sky=None, source=None, scale_errors=False):
    """Write a re-loadable JSON model file (atomic).

    Parameters
    ----------
    path : str or Path
    model : FitResult or GalaxyParams
        A fit result (parameters, errors and fit statistics are saved) or bare parameters (the
        GUI's current ellipse); with bare parameters ``profile`` and ``M`` are required.
    problem : FitProblem, optional
        Supplies the PSF mixture and sky model.
    profile, M, n, psf, sky : optional
        Override what ``model``/``problem`` say.
    source : str, optional
        The image file the model belongs to (informative).

    The file holds ``format`` (:data:`MODEL_FORMAT`), ``version``, ``profile``, ``M``, ``n``,
    ``sky``, ``params`` (0-based x, y; ``angle`` CCW from +x, degrees; ``re`` pixels),
    ``derived`` (``x_fits``, ``y_fits``, ``pa_galfit_deg``), ``errors``, ``free``, ``fit``,
    ``psf`` (``amps``, ``means`` [pix], ``covs`` [pix^2]) and ``conventions``. Floats are
    written with ``repr`` precision, so :func:`read_model_json` restores them exactly.
    """
    from .fitting import FitResult

    result = model if isinstance(model, FitResult) else None
    params = result.params if result is not None else model
    if not isinstance(params, GalaxyParams):
        raise TypeError(f"model must be a FitResult or GalaxyParams, not {type(model).__name__}")
    profile = profile or (result.profile if result else problem.profile if problem else None)
    M = M or (result.M if result else problem.M if problem else None)
    if n is None:
        n = result.n if result else (problem.n if problem else None)
    if psf is None and problem is not None:
        psf = problem.psf
    if sky is None:
        sky = problem.sky if problem is not None else "constant"
    if profile is None or M is None:
        raise ValueError("profile and M are required when saving bare parameters")
    doc = {
        "format": MODEL_FORMAT, "version": 1, "mogviewer_version": __version__,
        "source": None if source is None else str(source),
        "profile": profile, "M": int(M), "n": None if n is None else float(n), "sky": sky,
        "params": params.as_dict(),
        "derived": {"x_fits": params.x + 1, "y_fits": params.y + 1,
                    "pa_galfit_deg": pa_galfit(params.angle)},
        "psf": None if psf is None else {
            "amps": [float(a) for a in psf.amps],
            "means": [[float(v) for v in m] for m in psf.means],
            "covs": [[[float(v) for v in r] for r in c] for c in psf.covs]},
        "conventions": CONVENTIONS,
    }
    if result is not None:
        doc["free"] = list(result.free)
        doc["errors"] = {k: _jnum(v) for k, v in result.errors(scaled=scale_errors).items()}
        doc["errors_scaled"] = bool(scale_errors)
        doc["fit"] = {"status": result.status, "flags": int(result.flags),
                      "flag_names": flag_names(result.flags), "chi2": _jnum(result.chi2),
                      "nu": int(result.nu), "chi2_nu": _jnum(result.chi2_nu),
                      "flux_fraction": float(result.flux_fraction)}
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    return _atomic_write(path, lambda f: f.write(text), what="model file")


class ModelFileError(ValueError):
    """A JSON model file that cannot be read; the message names the file."""


def read_model_json(path):
    """Read a file written by :func:`write_model_json`.

    Returns
    -------
    SavedModel

    Raises
    ------
    ModelFileError
        Not JSON, not a mogviewer model file, or invalid parameters (message names the file).
    FileNotFoundError
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable JSON model file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a mogviewer model file (format must be "
                             f"{MODEL_FORMAT!r})")
    try:
        params = GalaxyParams(**doc["params"])
        psf = doc.get("psf")
        mix = None if psf is None else Mixture(psf["amps"], psf["means"], psf["covs"])
        meta = {k: v for k, v in doc.items()
                if k not in ("params", "psf", "profile", "M", "n", "sky", "free", "errors")}
        return SavedModel(params=params, profile=str(doc["profile"]), M=int(doc["M"]),
                          n=doc.get("n"), sky=doc.get("sky", "constant"), psf=mix,
                          free=None if doc.get("free") is None else tuple(doc["free"]),
                          errors=doc.get("errors"), meta=meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model file ({exc})") from None


def rows_to_text(rows, columns=COLUMN_NAMES):
    """The CSV text :func:`write_csv` would write for ``rows`` (for previews and tests)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c)) for c in columns])
    return buf.getvalue()
