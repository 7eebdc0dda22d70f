"""Low-level readers: FITS HDUs and ``.npy`` arrays as 2-D float arrays, with messages in words.
"""

from __future__ import annotations

import contextlib
import os
import stat

import numpy as np
from astropy.io import fits

from ..errors import ImageReadError
from .image_data import _MASK_NAMES, _NOISE_NAMES

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


#: Most pixels read from one HDU or array (2**27, 1 GiB as float64): a cutout is far smaller,
#: and a corrupt header claiming 1e10 pixels must not make the reader allocate them.
MAX_PIXELS = 1 << 27


def check_regular_file(path, what):
    """Refuse what is not a regular file before opening it: a FIFO would block for ever and a
    device such as /dev/zero would be read until memory runs out."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ImageReadError(f"{what} file {path} cannot be read "
                             f"({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"{what} path is a directory, not a file: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(f"{what} {path} is not a regular file (a FIFO, device or socket); "
                             "mogviewer reads only regular files")
    return st


def _check_pixels(h, label, path, what):
    """Refuse an HDU whose header promises more than :data:`MAX_PIXELS` pixels, or more bytes
    than the file holds, before its data are read."""
    shape = _hdu_shape(h)
    if not shape:
        return
    n = int(np.prod([int(v) for v in shape], dtype=np.float64))
    if n > MAX_PIXELS:
        raise ImageReadError(f"{what} file {path}: HDU {label} holds "
                             f"{'x'.join(str(v) for v in shape[::-1])} = {n:.3g} pixels, more "
                             f"than the {MAX_PIXELS:.3g} mogviewer reads; cut out the galaxy "
                             "first (astropy.nddata.Cutout2D)")


def _open_fits(path, what):
    """Open a FITS file or raise ImageReadError naming the file and the problem."""
    check_regular_file(path, what)
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


def check_companion_file(path, what, hdu=None):
    """Read the mask / noise map / segmentation map file ``path`` (HDU ``hdu``, or its first
    image HDU) as :func:`mogviewer.io.read_image` would, and raise the same
    :class:`ImageReadError` if it cannot be: a check before a batch, where one such file serves
    every image (its shape against each image stays a per-image check)."""
    _read_array(os.fspath(path), what=what, hdu=hdu, notes=[])


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_npy(path):
    return str(path).lower().endswith(".npy")


def _load_npy(path, what):
    path = os.fspath(path)
    check_regular_file(path, what)
    size = _npy_size(path)
    if size is not None and size > MAX_PIXELS:
        raise ImageReadError(f"{what} file {path} holds {size:.3g} values, more than the "
                             f"{MAX_PIXELS:.3g} mogviewer reads; cut out the galaxy first")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{what} file {path} is not a readable .npy array "
                             f"({_first_line(exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ImageReadError(f"{what} file {path} does not hold a numeric array")
    return arr


def _npy_size(path):
    """Number of values a .npy file's header promises (read without the data), or None."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                return None
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, _ = read(fh)
        return int(np.prod(shape, dtype=np.float64))
    except Exception:  # noqa: BLE001 - np.load reports a broken file in its own words
        return None


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


def _hdu_pixels(h, idx, path, what, where):
    """The data of image HDU ``h`` (number ``idx`` of ``path``), after checking that it has
    image data of a size that may be read; ``where`` names it in the unreadable-data message."""
    if _hdu_shape(h) in (None, ()):
        raise ImageReadError(f"{what} HDU {_hdu_label(idx, h)} of {path} has no image data")
    _check_pixels(h, _hdu_label(idx, h), path, what)
    try:
        return h.data
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{where} cannot be read "
                             f"(truncated or corrupt? {_first_line(exc)})") from None


def _read_array(source, *, what, hdu=None, plane=None, notes, same_file=None, kind=None):
    """Read an auxiliary 2-D array (noise, mask, segmap) from an array, .npy, FITS or an HDU.

    Returns ``(array, description, header_or_None)``; the array is a float64 copy.
    """
    if source is None:  # an HDU of the image file
        hdul, path = same_file
        idx = _find_hdu(hdul, hdu, path, what)
        h = hdul[idx]
        data = _hdu_pixels(h, idx, path, what, f"{what} HDU {_hdu_label(idx, h)} of {path}")
        arr = _to_2d(data, f"{what} HDU {_hdu_label(idx, h)}", plane, notes)
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
    # a file named again for a companion (``noise=`` the image's own path with ``noise_hdu``)
    # is read from the image's open HDU list, not opened and parsed again (that was half of
    # reading a 64x64 cutout with a sigma HDU named so)
    image_hdul, image_path = same_file if same_file is not None else (None, None)
    reuse = image_hdul is not None and _same_path(path, image_path)
    with contextlib.nullcontext(image_hdul) if reuse else _open_fits(path, what) as hdul:
        idx = (_find_hdu(hdul, hdu, path, what) if hdu is not None
               else _first_image_hdu(hdul, path, what))
        h = hdul[idx]
        data = _hdu_pixels(h, idx, path, what, f"{what} file {path}: HDU {idx} data")
        arr = _to_2d(data, f"{what} file {path} HDU {idx}", plane, notes)
        desc = f"{path}" + ("" if idx == 0 else f" HDU {_hdu_label(idx, h)}")
        return np.array(arr, dtype=np.float64), desc, h.header

def _same_path(a, b):
    """Whether paths ``a`` and ``b`` name the same file (False if either cannot be stat'ed)."""
    if b is None:
        return False
    if os.fspath(a) == os.fspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_shape(arr, image, what, desc):
    if arr.shape != image.shape:
        raise ImageReadError(
            f"{what} ({desc}) is {arr.shape[1]}x{arr.shape[0]} px but the image is "
            f"{image.shape[1]}x{image.shape[0]} px (x by y); they must match")
