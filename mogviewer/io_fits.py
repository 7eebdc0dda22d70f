"""Read a galaxy cutout (image, noise, mask, header facts) into an :class:`ImageData`.

Conventions
-----------
* Arrays are indexed ``image[y, x]`` (row, column), as numpy and astropy store FITS data.
* Pixel centres are at integer, 0-based coordinates: the first pixel spans [-0.5, 0.5].
* Noise is carried as inverse variance ``ivar`` in (image unit)^-2; ``ivar == 0`` means the pixel
  carries no information. Every noise map is converted to ``ivar`` exactly once, here.
* ``mask`` is boolean, True = bad / excluded. ``ivar`` is zero wherever ``mask`` is True, so a fit
  may use ``ivar`` alone.
* Pixel scale is in arcsec per pixel; the WCS is the celestial part of the header WCS.
* Nothing is silently defaulted: what was found in the header and what was assumed is listed,
  one sentence per item, in :attr:`ImageData.notes`.

This module is Qt-free. The ``mogviewer info FILE`` subcommand (:func:`register_cli`) prints what
:func:`read_image` found.

Error policy: every problem with the user's input raises :class:`ImageReadError` (a
``ValueError``) whose message names the file and the problem in words a user understands.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

__all__ = ["ImageData", "ImageReadError", "read_image", "describe", "list_hdus", "register_cli",
           "NOISE_KINDS"]

#: Accepted values of ``noise_kind``: what the noise map holds.
NOISE_KINDS = ("sigma", "variance", "ivar", "weight")

#: Header keywords searched, in this order, for a photometric zeropoint (mag of 1 image unit).
ZEROPOINT_KEYS = ("MAGZERO", "MAGZP", "ZP", "MAGZPT", "PHOTZP")

# EXTNAME / IMAGETYP values that mark an HDU as a noise map, and what it holds.
_NOISE_NAMES = {
    "INVVAR": "ivar", "IVAR": "ivar", "INVERSE_VARIANCE": "ivar",
    "WEIGHT": "weight", "WHT": "weight", "WGT": "weight",
    "SIGMA": "sigma", "ERR": "sigma", "ERROR": "sigma", "RMS": "sigma", "NOISE": "sigma",
    "STD": "sigma", "VAR": "variance", "VARIANCE": "variance",
}
_MASK_NAMES = {"MASK", "BPM", "DQ", "FLAGS", "SEGM", "SEGMAP", "SEG"}

#: Minimum image size (pixels along each axis) that read_image accepts.
MIN_SIZE = 2


class ImageReadError(ValueError):
    """The input cannot be read as a cutout; the message says why, in the user's terms."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    """A cutout ready to fit: pixels, inverse variance, mask and header facts.

    Instances are immutable: the arrays are private float64/bool copies with the write flag
    cleared, so neither the caller's arrays nor these can be changed through the other.
    Build them with :func:`read_image`, which also accepts in-memory arrays.

    Attributes
    ----------
    image : ndarray of float64, shape (ny, nx)
        Pixel values ``image[y, x]`` in the file's unit (:attr:`bunit`). Non-finite input pixels
        are set to 0 here and are masked.
    ivar : ndarray of float64, shape (ny, nx)
        Inverse variance, (image unit)^-2. Zero wherever :attr:`mask` is True.
    mask : ndarray of bool, shape (ny, nx)
        True = bad / excluded (user mask, non-target segments, non-finite pixels, ivar <= 0).
    header : astropy.io.fits.Header or None
        Header of the HDU the image came from (None for ``.npy`` and bare arrays).
    wcs : astropy.wcs.WCS or None
        Celestial WCS (2 pixel axes -> RA, Dec), or None when the header has none.
    pixel_scale_arcsec : float or None
        Mean of the two ``proj_plane_pixel_scales`` of :attr:`wcs` in arcsec/pixel (or given).
    zeropoint : float or None
        Magnitude of a source with a total of 1 image unit: ``mag = zeropoint - 2.5 log10(flux)``.
    exptime : float or None
        Exposure time in seconds (``EXPTIME``).
    gain : float or None
        Electrons per image unit (``GAIN``, or given).
    bunit : str or None
        The ``BUNIT`` header value, verbatim.
    path : str or None
        The file read (None for an in-memory array).
    hdu : int or None
        Index of the HDU the image came from (None for ``.npy`` / arrays).
    hdu_name : str or None
        ``EXTNAME`` of that HDU (``PRIMARY`` for HDU 0), if any.
    band : str or None
        Photometric band (``band=`` argument, ``BAND`` keyword, or ``FILTER`` keyword).
    noise_source : str
        Where :attr:`ivar` came from, in words (file and HDU, or the model used).
    noise_is_estimate : bool
        True when :attr:`ivar` is an estimate (background MAD, Poisson or gain/read-noise model,
        unit weights) rather than a noise map supplied with the data.
    notes : tuple of str
        What was found and what was assumed, one sentence each, in reading order.
    """

    image: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    header: fits.Header | None = None
    wcs: object | None = None
    pixel_scale_arcsec: float | None = None
    zeropoint: float | None = None
    exptime: float | None = None
    gain: float | None = None
    bunit: str | None = None
    path: str | None = None
    hdu: int | None = None
    hdu_name: str | None = None
    band: str | None = None
    noise_source: str = "unknown"
    noise_is_estimate: bool = False
    notes: tuple = ()

    def __post_init__(self):
        image = _frozen(np.array(self.image, dtype=np.float64, copy=True))
        ivar = _frozen(np.array(self.ivar, dtype=np.float64, copy=True))
        mask = _frozen(np.array(self.mask, dtype=bool, copy=True))
        if image.ndim != 2 or ivar.shape != image.shape or mask.shape != image.shape:
            raise ValueError(f"image, ivar and mask must be 2-D of one shape; got {image.shape}, "
                             f"{ivar.shape}, {mask.shape}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "ivar", ivar)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "notes", tuple(self.notes))

    def __setstate__(self, state):
        # unpickling bypasses __post_init__: restore the read-only flags
        self.__dict__.update(state)
        for name in ("image", "ivar", "mask"):
            self.__dict__[name].setflags(write=False)

    @property
    def shape(self):
        """``(ny, nx)``."""
        return self.image.shape

    @property
    def sigma(self):
        """1-sigma noise per pixel, image units; ``inf`` where ``ivar == 0``."""
        with np.errstate(divide="ignore"):
            return np.where(self.ivar > 0, 1.0 / np.sqrt(np.where(self.ivar > 0, self.ivar, 1.0)),
                            np.inf)

    @property
    def mask_fraction(self):
        """Fraction of pixels masked, in [0, 1]."""
        return float(self.mask.mean())

    def __repr__(self):
        ny, nx = self.shape
        src = self.path or "<array>"
        hdu = "" if self.hdu is None else f"[{self.hdu}]"
        return (f"ImageData({src}{hdu}, {nx}x{ny} px, band={self.band!r}, "
                f"noise={self.noise_source!r}, masked={self.mask_fraction:.2%})")


def _frozen(a):
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------------------------
# low-level readers
# --------------------------------------------------------------------------------------------

def _is_image_hdu(h):
    return isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def _hdu_label(i, h):
    name = h.name or ("PRIMARY" if i == 0 else "")
    return f"{i} ({name})" if name else str(i)


def _hdu_shape(h):
    if not _is_image_hdu(h):
        return None
    try:
        return tuple(h.shape)
    except Exception:  # noqa: BLE001 - a broken NAXISn only means "unknown shape" here
        return None


def _hdu_kind(h):
    """What an image HDU holds, from EXTNAME / IMAGETYP: 'image', a noise kind, or 'mask'."""
    for key in ("IMAGETYP", "EXTNAME"):
        val = str(h.header.get(key, "") or "").strip().upper()
        if val in _NOISE_NAMES:
            return _NOISE_NAMES[val]
        if val in _MASK_NAMES:
            return "mask"
    return "image"


def _open_fits(path, what):
    """Open a FITS file or raise ImageReadError naming the file and the problem."""
    try:
        return fits.open(path, memmap=False)
    except FileNotFoundError:
        raise ImageReadError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ImageReadError(f"{what} path is a directory, not a file: {path}") from None
    except PermissionError:
        raise ImageReadError(f"{what} file cannot be read (permission denied): {path}") from None
    except Exception as exc:  # noqa: BLE001 - astropy raises OSError, ValueError, TypeError...
        try:
            with open(path, "rb") as fh:
                looks_fits = fh.read(9) == b"SIMPLE  ="
        except OSError:
            looks_fits = False
        if looks_fits:
            raise ImageReadError(f"{what} file {path} starts like FITS but is truncated or "
                                 f"corrupt (astropy: {_first_line(exc)})") from None
        raise ImageReadError(
            f"{what} file {path} is neither a FITS file nor a .npy array: it does not start "
            f"with a FITS header (SIMPLE card) or the NumPy file signature") from None


def _read_companion(src, hdu, what, hdu_option, image, hdul, notes, same_file):
    """A mask / noise map / segmentation map from its own file or an HDU of the image file,
    checked against the image's shape; returns ``(array, description)``."""
    if src is None and hdul is None:
        raise ImageReadError(f"{hdu_option} given but the image is not a FITS file")
    arr, desc, _ = _read_array(src, what=what, hdu=hdu, notes=notes, same_file=same_file)
    _check_shape(arr, image, what, desc)
    return arr, desc


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_npy(path):
    return str(path).lower().endswith(".npy")


def _load_npy(path, what):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"{what} file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{what} file {path} is not a readable .npy array "
                             f"({_first_line(exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ImageReadError(f"{what} file {path} does not hold a numeric array")
    return arr


def _hdu_table(hdul):
    return ", ".join(_describe_hdu_short(i, h) for i, h in enumerate(hdul))


def _describe_hdu_short(i, h):
    shape = _hdu_shape(h)
    if _is_image_hdu(h):
        desc = "empty" if not shape else "x".join(str(n) for n in shape[::-1]) + " image"
    else:
        desc = type(h).__name__
    return f"{_hdu_label(i, h)}: {desc}"


def _find_hdu(hdul, hdu, path, what):
    """Index of the HDU named or numbered by ``hdu``; ImageReadError listing HDUs otherwise."""
    if isinstance(hdu, (int, np.integer)) and not isinstance(hdu, bool):
        if 0 <= int(hdu) < len(hdul):
            return int(hdu)
        raise ImageReadError(f"{what} file {path} has no HDU {hdu}; it has {len(hdul)} HDUs: "
                             f"{_hdu_table(hdul)}")
    if isinstance(hdu, str):
        if hdu.strip().lstrip("-").isdigit():
            return _find_hdu(hdul, int(hdu), path, what)
        want = hdu.strip().upper()
        for i, h in enumerate(hdul):
            if (h.name or "").upper() == want or (i == 0 and want == "PRIMARY"):
                return i
        names = [_hdu_label(i, h) for i, h in enumerate(hdul)]
        raise ImageReadError(f"{what} file {path} has no HDU named {hdu!r}; HDUs are: "
                             + ", ".join(names))
    raise ImageReadError(f"{what} HDU must be a number or an EXTNAME, not {hdu!r}")


def _first_image_hdu(hdul, path, what, kind=None):
    for i, h in enumerate(hdul):
        shape = _hdu_shape(h)
        if shape and len([n for n in shape if n > 1]) >= 2 and (kind is None or
                                                                _hdu_kind(h) == kind):
            return i
    raise ImageReadError(f"{what} file {path} has no 2-D image HDU; HDUs are: {_hdu_table(hdul)}")


def _to_2d(data, src, plane, notes):
    """Return a 2-D view of ``data``: squeeze length-1 axes, pick ``plane`` of a cube."""
    arr = np.asarray(data)
    if arr.ndim > 2:
        squeezed = arr.reshape([n for n in arr.shape[:-2] if n != 1] + list(arr.shape[-2:]))
        if squeezed.ndim < arr.ndim:
            notes.append(f"{src}: length-1 axes of the {arr.shape} array dropped.")
        arr = squeezed
    if arr.ndim == 3:
        if plane is None:
            raise ImageReadError(f"{src} is a 3-D cube of shape {arr.shape} (planes x ny x nx); "
                                 f"choose a plane with plane=0..{arr.shape[0] - 1} "
                                 f"(CLI: --plane N)")
        if not 0 <= plane < arr.shape[0]:
            raise ImageReadError(f"{src}: plane {plane} is out of range 0..{arr.shape[0] - 1}")
        notes.append(f"{src}: plane {plane} of a {arr.shape[0]}-plane cube used.")
        arr = arr[plane]
    elif arr.ndim > 3:
        raise ImageReadError(f"{src} has {arr.ndim} dimensions {arr.shape}; "
                             "only 2-D images (or one plane of a 3-D cube) can be read")
    elif arr.ndim < 2:
        raise ImageReadError(f"{src} is {arr.ndim}-D (shape {arr.shape}), not a 2-D image")
    if arr.dtype.kind not in "biuf":
        raise ImageReadError(f"{src} does not hold numbers (dtype {arr.dtype})")
    return arr


def _read_array(source, *, what, hdu=None, plane=None, notes, same_file=None, kind=None):
    """Read an auxiliary 2-D array (noise, mask, segmap) from an array, .npy, FITS or an HDU.

    Returns ``(array, description, header_or_None)``; the array is a float64 copy.
    """
    if source is None:  # an HDU of the image file
        hdul, path = same_file
        idx = _find_hdu(hdul, hdu, path, what)
        h = hdul[idx]
        if _hdu_shape(h) in (None, ()):
            raise ImageReadError(f"{what} HDU {_hdu_label(idx, h)} of {path} has no image data")
        arr = _to_2d(h.data, f"{what} HDU {_hdu_label(idx, h)}", plane, notes)
        return np.array(arr, dtype=np.float64), f"HDU {_hdu_label(idx, h)} of the image file", \
            h.header
    if isinstance(source, np.ndarray) or (not isinstance(source, (str, os.PathLike))):
        arr = _to_2d(np.asarray(source), f"{what} array", plane, notes)
        return np.array(arr, dtype=np.float64), "array given", None
    path = os.fspath(source)
    if _is_npy(path):
        if hdu is not None:
            notes.append(f"{what}: HDU {hdu!r} ignored for the NumPy file {path}.")
        arr = _to_2d(_load_npy(path, what), f"{what} file {path}", plane, notes)
        return np.array(arr, dtype=np.float64), f"{path}", None
    with _open_fits(path, what) as hdul:
        idx = (_find_hdu(hdul, hdu, path, what) if hdu is not None
               else _first_image_hdu(hdul, path, what))
        h = hdul[idx]
        if _hdu_shape(h) in (None, ()):
            raise ImageReadError(f"{what} HDU {_hdu_label(idx, h)} of {path} has no image data")
        try:
            data = h.data
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(f"{what} file {path}: HDU {idx} data cannot be read "
                                 f"(truncated or corrupt? {_first_line(exc)})") from None
        arr = _to_2d(data, f"{what} file {path} HDU {idx}", plane, notes)
        desc = f"{path}" + ("" if idx == 0 else f" HDU {_hdu_label(idx, h)}")
        return np.array(arr, dtype=np.float64), desc, h.header


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


# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------

def _noise_to_ivar(arr, kind, src, notes):
    """Convert a noise map to inverse variance once; unusable values -> 0 (and noted)."""
    finite = np.isfinite(arr)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "sigma":
            good = finite & (arr > 0)
            ivar = np.where(good, 1.0 / np.where(good, arr, 1.0) ** 2, 0.0)
        elif kind == "variance":
            good = finite & (arr > 0)
            ivar = np.where(good, 1.0 / np.where(good, arr, 1.0), 0.0)
        else:  # ivar, weight
            good = finite & (arr > 0)
            ivar = np.where(good, arr, 0.0)
    good &= np.isfinite(ivar) & (ivar > 0)
    ivar = np.where(good, ivar, 0.0)
    if not good.any():
        raise ImageReadError(f"noise map ({src}, read as {kind}) has no positive finite values")
    nbad = int((~good).sum())
    if nbad:
        parts = []
        nneg = int((finite & (arr < 0)).sum())
        nzero = int((finite & (arr == 0)).sum())
        nnan = int((~finite).sum())
        if nneg:
            parts.append(f"{nneg} negative")
        if nzero:
            parts.append(f"{nzero} zero")
        if nnan:
            parts.append(f"{nnan} non-finite")
        rest = nbad - nneg - nzero - nnan
        if rest:
            parts.append(f"{rest} out of range")
        notes.append(f"Noise map: {', '.join(parts)} {kind} values -> ivar 0, pixels masked.")
    return ivar


def robust_background(image, mask, *, nsigma=3.0, maxiter=10):
    """Sigma-clipped median and MAD-based standard deviation of the unmasked pixels.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Pixel values.
    mask : ndarray of bool, shape (ny, nx)
        True = exclude.
    nsigma : float, optional
        Clip pixels further than ``nsigma`` standard deviations from the median, iterating until
        nothing more is clipped (at most ``maxiter`` times).
    maxiter : int, optional
        Maximum clipping iterations.

    Returns
    -------
    median : float
        Sigma-clipped median, image units.
    sigma : float
        ``1.4826 * MAD`` of the clipped pixels (the standard deviation for Gaussian noise),
        image units.
    """
    vals = np.asarray(image, dtype=np.float64)[~np.asarray(mask, dtype=bool)]
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    for _ in range(maxiter):
        med = np.median(vals)
        sig = 1.4826 * np.median(np.abs(vals - med))
        if sig <= 0:
            break
        keep = np.abs(vals - med) <= nsigma * sig
        if keep.all():
            break
        vals = vals[keep]
    med = float(np.median(vals))
    return med, float(1.4826 * np.median(np.abs(vals - med)))


# --------------------------------------------------------------------------------------------
# read_image
# --------------------------------------------------------------------------------------------

def read_image(path, *, hdu=None, band=None, plane=None, header=None,
               noise=None, noise_kind="sigma", noise_hdu=None, auto_noise=True,
               mask=None, mask_hdu=None, invert_mask=False,
               segmap=None, segmap_hdu=None, segment_id=None, segmap_keep_sky=True,
               zeropoint=None, gain=None, read_noise=None, sky_level=None,
               pixel_scale=None, estimate_noise=True, poisson=False,
               min_ivar_fraction=None):
    """Read a cutout and its noise and mask into an :class:`ImageData`.

    Parameters
    ----------
    path : str, os.PathLike or ndarray
        A FITS file (any HDU), a ``.npy`` file, or a 2-D array ``image[y, x]`` already in memory.
    hdu : int or str, optional
        Image HDU by index (0 = primary) or ``EXTNAME``. Default: the HDU of ``band`` if given,
        else the first HDU with 2-D image data that is not itself a noise or mask HDU.
    band : str, optional
        In a multi-extension file whose HDUs carry a ``BAND`` keyword (Legacy Surveys cutouts),
        read the image HDU of this band. Also labels the result.
    plane : int, optional
        For a 3-D cube (planes, ny, nx): the 0-based plane to read. Required for cubes.
    header : astropy.io.fits.Header, optional
        Header to use with an in-memory array or ``.npy`` file (WCS and keywords come from it).
    noise : str, os.PathLike or ndarray, optional
        Noise map (separate FITS or ``.npy`` file, or array), interpreted as ``noise_kind``.
    noise_kind : {'sigma', 'variance', 'ivar', 'weight'}
        What ``noise`` / ``noise_hdu`` holds: 1-sigma error, variance, inverse variance, or a
        weight map, which is taken as inverse variance (the SWarp ``MAP_WEIGHT`` convention);
        all in image units. Converted once to ``ivar``; values <= 0 or non-finite give ivar 0.
    noise_hdu : int or str, optional
        The HDU of the noise map: in the ``noise`` file if one is given, else in the image file.
    auto_noise : bool
        With no ``noise``/``noise_hdu``: look in the image file for a noise HDU of the same shape
        (``IMAGETYP`` or ``EXTNAME`` such as ``invvar``, ``WHT``, ``ERR``; the same ``BAND`` as
        the image when BAND is present) and use it, saying so in the notes.
    mask : str, os.PathLike or ndarray, optional
        Mask map; nonzero (or non-finite) = bad. ``mask_hdu`` selects its HDU.
    mask_hdu : int or str, optional
        HDU of the mask in the ``mask`` file, or in the image file if ``mask`` is None.
    invert_mask : bool
        If True, nonzero = good and zero = bad.
    segmap : str, os.PathLike or ndarray, optional
        Segmentation map (integer ids, 0 = sky). Pixels of other segments are masked.
    segmap_hdu : int or str, optional
        HDU of the segmentation map (in the segmap file, or in the image file).
    segment_id : int, optional
        Id of the target segment. Default: the id at the central pixel
        ``(y, x) = ((ny - 1) // 2, (nx - 1) // 2)``; an error if that is sky (0).
    segmap_keep_sky : bool
        If True (default) sky pixels (id 0) stay unmasked; if False only the target segment is
        used (as ProFit fits it).
    zeropoint : float, optional
        Magnitude zeropoint for image units, overriding ``MAGZERO``/``MAGZP``/``ZP``/``MAGZPT``/
        ``PHOTZP`` in the header.
    gain : float, optional
        Electrons per image unit, overriding the header ``GAIN``.
    read_noise : float, optional
        Read noise in electrons. With ``read_noise`` or ``sky_level`` and no noise map, the
        imfit noise model is used: ``sigma = sqrt((data + sky_level) * gain + read_noise**2) /
        gain`` (``data + sky_level`` clipped at 0); needs ``gain``.
    sky_level : float, optional
        Sky level (image units) that was subtracted from the image, for the model above.
    pixel_scale : float, optional
        Pixel scale in arcsec/px, overriding the WCS.
    estimate_noise : bool
        With no noise map and no gain/read-noise model: estimate the background noise as the
        sigma-clipped MAD (``1.4826 * MAD``, 3-sigma clipping) of the unmasked pixels and use
        it everywhere (labelled an estimate). If False, unit weights (ivar = 1), also labelled.
    poisson : bool
        With the background estimate: add the source Poisson variance
        ``max(data - background, 0) / gain`` (needs ``gain``).
    min_ivar_fraction : float, optional
        Set ivar to 0 (and mask) where ``ivar < min_ivar_fraction * median(positive ivar)``, as
        the Tractor DECam example does with 0.1 for fpack-compressed weight maps.

    Returns
    -------
    ImageData

    Raises
    ------
    ImageReadError
        File missing; not FITS or ``.npy``; no 2-D image HDU; HDU or band not found; a cube
        without ``plane``; shape mismatch between image and noise/mask/segmap; all-NaN image;
        noise map with no positive value; image smaller than 2x2; options that contradict.

    Notes
    -----
    Astropy warnings about non-standard headers are caught and recorded in ``notes``.
    The caller's arrays are never modified.
    """
    kwargs = dict(locals())
    if noise_kind not in NOISE_KINDS:
        raise ImageReadError(f"noise_kind must be one of {', '.join(NOISE_KINDS)}, "
                             f"not {noise_kind!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyWarning)
        result = _read_image(**kwargs)
    notes = list(result.notes)
    seen = set()
    for w in caught:
        if not issubclass(w.category, AstropyWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        text = " ".join(str(w.message).split())
        if text.startswith("Note: astropy.io.fits uses zero-based") or \
                text == "Verification reported errors:":
            continue
        text = text if len(text) <= 160 else text[:157] + "..."
        if text not in seen:
            seen.add(text)
            notes.append(f"Header warning (astropy {w.category.__name__}): {text}")
    return dataclasses.replace(result, notes=tuple(notes))


def _read_image(*, path, hdu, band, plane, header, noise, noise_kind, noise_hdu, auto_noise,
                mask, mask_hdu, invert_mask, segmap, segmap_hdu, segment_id, segmap_keep_sky,
                zeropoint, gain, read_noise, sky_level, pixel_scale, estimate_noise, poisson,
                min_ivar_fraction):
    notes = []
    primary = None
    hdu_index = hdu_name = None
    src_path = None
    hdul = None
    auto_pair = None  # (index, kind) of a noise HDU found next to the image
    try:
        if isinstance(path, (str, os.PathLike)):
            src_path = os.fspath(path)
            if not os.path.exists(src_path):
                raise ImageReadError(f"image file not found: {src_path}")
            if os.path.isdir(src_path):
                raise ImageReadError(f"image path is a directory, not a file: {src_path}")
        if src_path is None:
            arr = _to_2d(np.asarray(path), "image array", plane, notes)
            img_header = header
            notes.append("Image from an in-memory array.")
        elif _is_npy(src_path):
            arr = _to_2d(_load_npy(src_path, "image"), f"image file {src_path}", plane, notes)
            img_header = header
            notes.append(f"Image from NumPy file {Path(src_path).name} "
                         f"({'header given' if header is not None else 'no header'}).")
        else:
            hdul = _open_fits(src_path, "image")
            primary = hdul[0].header
            hdu_index = _choose_image_hdu(hdul, src_path, hdu, band, notes)
            h = hdul[hdu_index]
            if _hdu_shape(h) in (None, ()):
                raise ImageReadError(
                    f"image HDU {_hdu_label(hdu_index, h)} of {src_path} has no data; "
                    f"HDUs are: {_hdu_table(hdul)}")
            try:
                data = h.data
            except Exception as exc:  # noqa: BLE001
                raise ImageReadError(f"image file {src_path}: HDU {hdu_index} data cannot be "
                                     f"read (truncated or corrupt? {_first_line(exc)})") from None
            if data is None:
                raise ImageReadError(f"image file {src_path}: HDU {hdu_index} has no data "
                                     "(truncated file?)")
            arr = _to_2d(data, f"image HDU {_hdu_label(hdu_index, h)}", plane, notes)
            img_header = header if header is not None else h.header
            hdu_name = h.name or ("PRIMARY" if hdu_index == 0 else None)
            if hdu_index == 0:
                primary = None  # no separate primary header to inherit from
            elif not img_header.get("INHERIT", True):
                primary = None
            if noise is None and noise_hdu is None and auto_noise:
                auto_pair = _find_noise_pair(hdul, hdu_index, arr.shape)

        if hdul is None and (hdu is not None or noise_hdu is not None and noise is None):
            raise ImageReadError("hdu= / noise_hdu= select HDUs of a FITS file; the image here "
                                 "is a .npy file or an array")
        image = np.array(arr, dtype=np.float64)  # a copy: the caller's array is never touched
        ny, nx = image.shape
        if ny < MIN_SIZE or nx < MIN_SIZE:
            raise ImageReadError(f"image is only {nx}x{ny} pixels; at least "
                                 f"{MIN_SIZE}x{MIN_SIZE} are needed")
        notes.append(f"Image {nx}x{ny} px (x by y), read as image[y, x].")

        finite = np.isfinite(image)
        if not finite.any():
            raise ImageReadError("image has no finite pixel values (all NaN or inf)")
        bad = ~finite
        if bad.any():
            notes.append(f"{int(bad.sum())} non-finite (NaN/inf) image pixels masked and set "
                         "to 0.")
            image[bad] = 0.0
        same_file = (hdul, src_path)

        # ---- mask ------------------------------------------------------------------------
        if mask is not None or mask_hdu is not None:
            m, mdesc = _read_companion(mask, mask_hdu, "mask", "mask_hdu", image, hdul,
                                       notes, same_file)
            mbad = ~np.isfinite(m) | (m != 0)
            if invert_mask:
                mbad = np.isfinite(m) & (m == 0)
            notes.append(f"Mask from {mdesc}: {int(mbad.sum())} px bad "
                         f"({'zero' if invert_mask else 'nonzero'} = bad"
                         f"{', inverted' if invert_mask else ''}).")
            bad |= mbad
        elif invert_mask:
            raise ImageReadError("invert_mask given without a mask")

        # ---- segmentation map ------------------------------------------------------------
        if segmap is not None or segmap_hdu is not None:
            s, sdesc = _read_companion(segmap, segmap_hdu, "segmentation map", "segmap_hdu",
                                       image, hdul, notes, same_file)
            s = np.where(np.isfinite(s), np.rint(s), -1).astype(np.int64)
            ids = np.unique(s[s > 0])
            if segment_id is None:
                cy, cx = (ny - 1) // 2, (nx - 1) // 2
                target = int(s[cy, cx])
                if target <= 0:
                    raise ImageReadError(
                        f"segmentation map ({sdesc}) is sky (0) at the image centre "
                        f"(x={cx}, y={cy}); pass segment_id= / --segment-id (ids present: "
                        f"{', '.join(str(i) for i in ids[:20])})")
                how = f"the id at the image centre (x={cx}, y={cy})"
            else:
                target = int(segment_id)
                if target not in ids:
                    raise ImageReadError(f"segment_id {target} is not in the segmentation map "
                                         f"({sdesc}); ids present: "
                                         f"{', '.join(str(i) for i in ids[:20])}")
                how = "given"
            sbad = s != target
            if segmap_keep_sky:
                sbad &= s != 0
            notes.append(
                f"Segmentation map from {sdesc}: target segment {target} ({how}); "
                f"{len(ids) - 1} other segment(s), {int(sbad.sum())} px, masked; sky (0) "
                + ("kept." if segmap_keep_sky else "masked too (segmap_keep_sky=False)."))
            bad |= sbad

        # ---- header facts ----------------------------------------------------------------
        if img_header is None:
            notes.append("No FITS header: no WCS, zeropoint, EXPTIME, GAIN or BUNIT from it.")
        wcs = _celestial_wcs(img_header, notes) if img_header is not None else None
        if pixel_scale is not None:
            pscale = float(pixel_scale)
            if not pscale > 0:
                raise ImageReadError(f"pixel_scale must be positive (arcsec/px), not "
                                     f"{pixel_scale!r}")
            notes.append(f"Pixel scale {pscale:g} arcsec/px given.")
        elif wcs is not None:
            pscale = _pixel_scale(wcs, notes)
        else:
            pscale = None
            notes.append("Pixel scale unknown (no WCS); sizes will be in pixels only.")

        zp = _zeropoint(img_header, primary, zeropoint, notes)
        exptime = _keyword_float(img_header, primary, "EXPTIME", "exposure time", "s", notes)
        header_gain = _keyword_float(img_header, primary, "GAIN", "gain", "e-/unit", notes,
                                     quiet=gain is not None)
        if gain is not None:
            gain_val = _as_float(gain)
            if gain_val is None or gain_val <= 0:
                raise ImageReadError(f"gain must be a positive number (e-/unit), not {gain!r}")
            notes.append(f"Gain {gain_val:g} e-/unit given" + (
                f" (header GAIN {header_gain:g} not used)." if header_gain is not None else "."))
        else:
            gain_val = header_gain
            if gain_val is not None and gain_val <= 0:
                notes.append(f"Header GAIN {gain_val:g} is not positive; ignored.")
                gain_val = None
        bunit_val, where = _header_value(img_header, primary, "BUNIT")
        bunit = str(bunit_val).strip() if bunit_val is not None else None
        notes.append(f"BUNIT = {bunit!r}{where}." if bunit else
                     "No BUNIT: the image unit is unknown.")
        band_val = band
        if band_val is None:
            band_val, key = _band_from_header(img_header, primary)
            if band_val is not None:
                notes.append(f"Band {band_val!r} from {key}.")

        # ---- noise -----------------------------------------------------------------------
        if noise is not None or noise_hdu is not None:
            n, ndesc = _read_companion(noise, noise_hdu, "noise map", "noise_hdu", image, hdul,
                                       notes, same_file)
            ivar = _noise_to_ivar(n, noise_kind, ndesc, notes)
            noise_source = f"{noise_kind} map from {ndesc}"
            is_estimate = False
            notes.append(f"Noise: {noise_source}, converted to inverse variance.")
            _ignored_noise_options(notes, read_noise, sky_level, poisson)
        elif auto_pair is not None:
            idx, kind = auto_pair
            h = hdul[idx]
            n = np.array(_to_2d(h.data, f"noise HDU {idx}", plane, notes), dtype=np.float64)
            ivar = _noise_to_ivar(n, kind, f"HDU {idx}", notes)
            tag = ", ".join(f"{k}={str(h.header[k]).strip()!r}" for k in
                            ("EXTNAME", "IMAGETYP", "BAND") if k in h.header)
            noise_source = f"{kind} map from HDU {_hdu_label(idx, h)} of the image file"
            is_estimate = False
            notes.append(f"Noise: found {kind} HDU {idx} ({tag}) matching image HDU "
                         f"{hdu_index}; used it (pass noise_hdu= / --noise-hdu to choose "
                         "another, or auto_noise=False).")
            _ignored_noise_options(notes, read_noise, sky_level, poisson)
        elif read_noise is not None or sky_level is not None:
            if gain_val is None:
                raise ImageReadError("the gain/read-noise noise model needs a gain "
                                     "(no GAIN in the header: pass gain= / --gain)")
            rn = 0.0 if read_noise is None else float(read_noise)
            sky = 0.0 if sky_level is None else float(sky_level)
            if read_noise is None:
                notes.append("Read noise not given: 0 e- assumed.")
            if sky_level is None:
                notes.append("Sky level not given: 0 assumed (image not sky-subtracted?).")
            counts = np.clip(image + sky, 0.0, None)
            var = (counts * gain_val + rn ** 2) / gain_val ** 2
            with np.errstate(divide="ignore"):
                ivar = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
            nclip = int(((image + sky) < 0)[~bad].sum())
            noise_source = (f"estimate: imfit model sigma = sqrt((data + {sky:g}) * {gain_val:g} "
                            f"+ {rn:g}^2) / {gain_val:g}")
            is_estimate = True
            notes.append(f"Noise: {noise_source} (gain e-/unit, read noise e-, sky in image "
                         "units)" + (f"; data + sky < 0 clipped to 0 at {nclip} px." if nclip
                                     else "."))
            if poisson:
                notes.append("poisson=True ignored: the gain/read-noise model already includes "
                             "Poisson noise.")
        elif estimate_noise:
            med, sig = robust_background(image, bad)
            if np.isfinite(sig) and sig > 0:
                noise_source = f"estimate: background sigma {sig:.4g} (3-sigma-clipped MAD)"
            else:  # e.g. a mask or a model image: more than half the pixels share one value
                sig = 1.0
                noise_source = "assumed: sigma 1 (background MAD is 0, no estimate possible)"
            var = np.full(image.shape, sig ** 2)
            if poisson:
                if gain_val is None:
                    raise ImageReadError("poisson=True needs a gain (no GAIN in the header: "
                                         "pass gain= / --gain)")
                var = var + np.clip(image - med, 0.0, None) / gain_val
                noise_source += f" + Poisson (data - {med:.4g}) / gain {gain_val:g}"
            ivar = 1.0 / var
            is_estimate = True
            notes.append(f"No noise map: {noise_source}; background median {med:.4g}. "
                         "This is an estimate.")
        else:
            ivar = np.ones(image.shape)
            noise_source = "none: unit weights (ivar = 1)"
            is_estimate = True
            notes.append("No noise map and estimate_noise=False: unit weights assumed; "
                         "chi-squared values are not meaningful.")

        if min_ivar_fraction is not None:
            pos = ivar[(ivar > 0) & ~bad]
            if pos.size:
                floor = float(min_ivar_fraction) * float(np.median(pos))
                low = (ivar > 0) & (ivar < floor)
                notes.append(f"{int(low.sum())} px with ivar < {min_ivar_fraction:g} x median "
                             f"({floor:.4g}) set to 0 (min_ivar_fraction).")
                ivar = np.where(low, 0.0, ivar)

        bad |= ivar <= 0
        ivar = np.where(bad, 0.0, ivar)
        if bad.all():
            raise ImageReadError("every pixel is masked (mask, segmentation map and noise map "
                                 "together leave nothing to fit)")
        notes.append(f"{int(bad.sum())} of {bad.size} px masked ({bad.mean():.2%}).")

        return ImageData(image=image, ivar=ivar, mask=bad, header=img_header, wcs=wcs,
                         pixel_scale_arcsec=pscale, zeropoint=zp, exptime=exptime,
                         gain=gain_val, bunit=bunit, path=src_path, hdu=hdu_index,
                         hdu_name=hdu_name, band=band_val, noise_source=noise_source,
                         noise_is_estimate=is_estimate, notes=tuple(notes))
    finally:
        if hdul is not None:
            hdul.close()


def _ignored_noise_options(notes, read_noise, sky_level, poisson):
    if read_noise is not None or sky_level is not None or poisson:
        notes.append("read_noise / sky_level / poisson ignored: a noise map is used.")


def _check_shape(arr, image, what, desc):
    if arr.shape != image.shape:
        raise ImageReadError(
            f"{what} ({desc}) is {arr.shape[1]}x{arr.shape[0]} px but the image is "
            f"{image.shape[1]}x{image.shape[0]} px (x by y); they must match")


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


def _choose_image_hdu(hdul, path, hdu, band, notes):
    """Index of the image HDU from ``hdu``/``band``, or the first 2-D non-noise image HDU."""
    if hdu is not None:
        idx = _find_hdu(hdul, hdu, path, "image")
        hb = str(hdul[idx].header.get("BAND", "") or "").strip()
        if band is not None and hb and hb.lower() != str(band).lower():
            raise ImageReadError(f"HDU {_hdu_label(idx, hdul[idx])} of {path} is band {hb!r}, "
                                 f"not {band!r}; give either hdu= or band= (CLI: --hdu or --band)")
        notes.append(f"Image from HDU {_hdu_label(idx, hdul[idx])} (asked for).")
        return idx
    bands = {}
    for i, h in enumerate(hdul):
        shape = _hdu_shape(h)
        b = str(h.header.get("BAND", "") or "").strip()
        if shape and len(shape) >= 2 and b and _hdu_kind(h) == "image":
            bands.setdefault(b.lower(), i)
    if band is not None:
        if str(band).lower() not in bands:
            have = ", ".join(f"{b} (HDU {i})" for b, i in bands.items()) or "none"
            raise ImageReadError(f"image file {path} has no image HDU of band {band!r}; "
                                 f"bands found (BAND keyword): {have}")
        idx = bands[str(band).lower()]
        notes.append(f"Image from HDU {idx}, the image HDU with BAND = {band!r}.")
        return idx
    for i, h in enumerate(hdul):
        shape = _hdu_shape(h)
        if shape and len([n for n in shape if n > 1]) >= 2 and _hdu_kind(h) == "image":
            msg = f"Image from HDU {_hdu_label(i, h)}, the first image HDU"
            if len(bands) > 1:
                msg += (f"; the file has bands {', '.join(bands)} (choose with band= / "
                        "--band)")
            notes.append(msg + ".")
            return i
    return _first_image_hdu(hdul, path, "image")  # only noise-like HDUs, or none: error


def _find_noise_pair(hdul, idx, shape):
    """``(index, kind)`` of a noise HDU matching image HDU ``idx`` (same shape and band)."""
    band = str(hdul[idx].header.get("BAND", "") or "").strip().lower()
    order = list(range(idx + 1, len(hdul))) + list(range(idx - 1, -1, -1))
    for i in order:
        h = hdul[i]
        kind = _hdu_kind(h)
        if kind not in NOISE_KINDS:
            continue
        hshape = _hdu_shape(h)
        if not hshape or tuple(n for n in hshape if n > 1) != tuple(n for n in shape if n > 1):
            continue
        hb = str(h.header.get("BAND", "") or "").strip().lower()
        if band and hb and hb != band:
            continue
        return i, kind
    return None


# --------------------------------------------------------------------------------------------
# description and CLI
# --------------------------------------------------------------------------------------------

def list_hdus(path):
    """Describe every HDU of a FITS file (or the array of a ``.npy`` file).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of dict
        One dict per HDU with keys ``index``, ``name``, ``type`` (astropy class name, or
        ``ndarray``), ``shape`` (numpy order, ny, nx; None if no data), ``band`` (``BAND``
        keyword or None) and ``kind`` (``image``, a noise kind, ``mask``, or ``table``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"file not found: {path}")
    if _is_npy(path):
        arr = _load_npy(path, "image")
        return [dict(index=0, name="", type="ndarray", shape=tuple(arr.shape), band=None,
                     kind="image")]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with _open_fits(path, "image") as hdul:
            for i, h in enumerate(hdul):
                shape = _hdu_shape(h)
                out.append(dict(
                    index=i, name=h.name or "", type=type(h).__name__,
                    shape=shape if shape else None,
                    band=(str(h.header["BAND"]).strip() if "BAND" in h.header else None),
                    kind=("table" if not _is_image_hdu(h) else
                          "empty" if not shape else _hdu_kind(h))))
    return out


def describe(image_data):
    """Multi-line, human-readable summary of an :class:`ImageData`.

    Parameters
    ----------
    image_data : ImageData

    Returns
    -------
    str
        Shape, source, noise, mask fraction, WCS, pixel scale, zeropoint, EXPTIME, GAIN, BUNIT,
        band, then the notes as a bulleted list.
    """
    d = image_data
    ny, nx = d.shape

    def fmt(value, unit=""):
        return "unknown" if value is None else f"{value:g}{unit}"

    src = d.path or "<in-memory array>"
    if d.hdu is not None:
        src += f" [HDU {d.hdu}" + (f" {d.hdu_name}" if d.hdu_name else "") + "]"
    good = ~d.mask
    sig = d.sigma[good]
    lines = [
        f"source:       {src}",
        f"shape:        {nx} x {ny} px (x by y; arrays are image[y, x], pixel centres at "
        "0-based integers)",
        f"band:         {d.band or 'unknown'}",
        f"noise:        {d.noise_source}" + (" [ESTIMATE]" if d.noise_is_estimate else ""),
        f"median sigma: {np.median(sig):.4g} (unmasked px, image units)" if sig.size else
        "median sigma: n/a",
        f"masked:       {int(d.mask.sum())} px ({d.mask_fraction:.2%})",
        f"WCS:          {'yes (celestial)' if d.wcs is not None else 'no'}",
        f"pixel scale:  {fmt(d.pixel_scale_arcsec, ' arcsec/px')}",
        f"zeropoint:    {fmt(d.zeropoint, ' mag')}",
        f"exptime:      {fmt(d.exptime, ' s')}",
        f"gain:         {fmt(d.gain, ' e-/unit')}",
        f"bunit:        {d.bunit or 'unknown'}",
        "notes:",
    ]
    lines += [f"  - {n}" for n in d.notes]
    return "\n".join(lines)


def _format_hdus(path):
    rows = list_hdus(path)
    lines = [f"{'HDU':>3}  {'name':<10} {'type':<13} {'shape (ny, nx)':<16} {'BAND':<5} kind"]
    for r in rows:
        shape = "-" if r["shape"] is None else "x".join(str(n) for n in r["shape"])
        lines.append(f"{r['index']:>3}  {r['name'] or '-':<10} {r['type']:<13} {shape:<16} "
                     f"{r['band'] or '-':<5} {r['kind']}")
    return "\n".join(lines)


def register_cli(sub):
    """Add the ``info`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "info", help="describe a cutout: HDUs, noise, mask, WCS, pixel scale, zeropoint",
        description="Print the HDUs of FILE and what read_image finds in it (exit status 0; "
                    "2 for unreadable input).")
    p.add_argument("file", metavar="FILE", help="FITS or .npy image")
    p.add_argument("--hdu", help="image HDU number or EXTNAME")
    p.add_argument("--band", help="band (BAND keyword) of a multi-band file")
    p.add_argument("--plane", type=int, help="plane of a 3-D cube (0-based)")
    p.add_argument("--noise", help="noise map file (FITS or .npy)")
    p.add_argument("--noise-kind", default="sigma", choices=NOISE_KINDS,
                   help="what the noise map holds (default sigma)")
    p.add_argument("--noise-hdu", help="HDU of the noise map (in --noise, or in FILE)")
    p.add_argument("--no-auto-noise", action="store_true",
                   help="do not pick up a noise HDU of FILE automatically")
    p.add_argument("--mask", help="mask file (nonzero = bad)")
    p.add_argument("--mask-hdu", help="HDU of the mask (in --mask, or in FILE)")
    p.add_argument("--invert-mask", action="store_true", help="mask: zero = bad")
    p.add_argument("--segmap", help="segmentation map file (other segments are masked)")
    p.add_argument("--segment-id", type=int, help="target segment (default: id at the centre)")
    p.add_argument("--zeropoint", type=float, help="magnitude zeropoint for image units")
    p.add_argument("--gain", type=float, help="gain, e-/image unit")
    p.add_argument("--read-noise", type=float, help="read noise, e- (imfit noise model)")
    p.add_argument("--sky-level", type=float,
                   help="subtracted sky level, image units (imfit noise model)")
    p.add_argument("--pixel-scale", type=float, help="pixel scale, arcsec/px")
    p.add_argument("--poisson", action="store_true",
                   help="add Poisson noise (needs gain) to the background estimate")
    p.add_argument("--min-ivar-fraction", type=float,
                   help="zero ivar below this fraction of its median")
    p.set_defaults(func=_cli_info)


def _cli_info(args):
    from mogviewer.cli import UserError  # lazy: cli imports this module

    def hdu_arg(v):
        return None if v is None else (int(v) if v.strip().lstrip("-").isdigit() else v)

    try:
        table = _format_hdus(args.file)
        data = read_image(
            args.file, hdu=hdu_arg(args.hdu), band=args.band, plane=args.plane,
            noise=args.noise, noise_kind=args.noise_kind, noise_hdu=hdu_arg(args.noise_hdu),
            auto_noise=not args.no_auto_noise, mask=args.mask, mask_hdu=hdu_arg(args.mask_hdu),
            invert_mask=args.invert_mask, segmap=args.segmap, segment_id=args.segment_id,
            zeropoint=args.zeropoint, gain=args.gain, read_noise=args.read_noise,
            sky_level=args.sky_level, pixel_scale=args.pixel_scale, poisson=args.poisson,
            min_ivar_fraction=args.min_ivar_fraction)
    except ImageReadError as exc:
        msg = str(exc)
        raise UserError(msg if str(args.file) in msg else f"{args.file}: {msg}") from None
    print(f"{args.file}")
    print(table)
    print()
    print(describe(data))
    return 0
