"""Read and write PSFs in every format a user brings (dispatch on content, never on the name).

File formats (REFERENCE.md section 3)
-------------------------------------
* PSF image: any 2-D image HDU of a FITS file, or a ``.npy`` array.
* PSFEx: BINTABLE with column ``PSF_MASK`` of shape ``(n_terms, h, w)`` and keywords ``POLZERO1/2``,
  ``POLSCAL1/2``, ``POLDEG1``, ``PSF_SAMP``.
* Tractor mixture, header form: ``PSF_P0 ... PSF_P{6K-1}`` = K amplitudes, K ``(x, y)`` means,
  K ``(xx, yy, xy)`` variances.
* Tractor mixture, table form: one BINTABLE row per component, columns ``amp`` (D), ``mean`` (2D),
  ``var`` (4D, TDIM ``(2,2)``).
* mogviewer JSON: ``{"format": "mogviewer-psf-mixture", "amps": [...], "means": [...],
  "covs": [...]}``.

:func:`write_psf` writes the table form *and* the header form into one FITS file (so the Tractor
can read ours either way), or JSON when the file name ends in ``.json``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .. import _warnings
from ..errors import PsfError, PsfWarning
from ..mixture import Mixture
from .fit import _model_from_stamp
from .model import _JSON_FORMAT, MAX_BAD_FRACTION, PsfModel

# ------------------------------------------------------------------------------- PSFEx
_PSFEX_REQUIRED = ("POLZERO1", "POLZERO2", "POLSCAL1", "POLSCAL2", "POLDEG1", "PSF_SAMP")


def psfex_stamp(hdu, position=None, *, what="PSFEx file"):
    """Evaluate a PSFEx model at a position and resample it to image pixels.

    The PSF is ``sum_t c_t(u, v) PSF_MASK[t]`` with the terms ``u^i v^j`` in the order
    ``j = 0..d, i = 0..d-j`` (1, u, u^2, ..., v, u v, ..., v^d) and
    ``u = (X - POLZERO1) / POLSCAL1``, ``v = (Y - POLZERO2) / POLSCAL2``, where ``(X, Y)`` is the
    position in the coordinates named by ``POLNAME1/2`` (usually SExtractor's ``X_IMAGE``,
    ``Y_IMAGE``, which are 1-based; a 1-pixel difference changes ``u`` by ``1 / POLSCAL``, about
    5e-4 for a DECam CCD). PSFEx fits the polynomial to stars with ``|u|, |v| <= 1/2``; outside that
    range the PSF is extrapolated and a :class:`PsfWarning` says so.

    When ``PSF_SAMP`` (image pixels per PSF pixel) is not 1, the stamp is resampled to image pixels
    with cubic splines, centred on the PSFEx centre pixel ``(w // 2, h // 2)``.

    Returns
    -------
    stamp : ndarray, shape (h', w')
        Not normalised.
    notes : list of str
    """
    hdr = hdu.header
    missing = [k for k in _PSFEX_REQUIRED if k not in hdr]
    naxis = int(hdr.get("POLNAXIS", 2))
    if naxis == 0:
        missing = [k for k in missing if k == "PSF_SAMP"]
    if missing:
        raise PsfError(f"{what}: missing header keyword(s) {', '.join(missing)} in HDU "
                       f"{hdu.name or '?'}; without them the PSFEx polynomial cannot be evaluated "
                       f"(is this a complete PSFEx .psf file?)")
    try:
        mask = np.asarray(hdu.data["PSF_MASK"][0], float)
    except Exception as exc:  # noqa: BLE001 - any astropy failure becomes a user message
        raise PsfError(f"{what}: cannot read column PSF_MASK ({exc})") from None
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise PsfError(f"{what}: PSF_MASK has shape {mask.shape}; expected (n_terms, h, w)")
    notes = []
    if naxis == 0:
        deg, nterms = 0, 1
    else:
        if naxis != 2 or int(hdr.get("POLNGRP", 1)) != 1:
            raise PsfError(f"{what}: POLNAXIS = {naxis}, POLNGRP = {hdr.get('POLNGRP')}; only a "
                           f"single polynomial in two position parameters is supported")
        deg = int(hdr["POLDEG1"])
        nterms = (deg + 1) * (deg + 2) // 2
    if mask.shape[0] != nterms:
        raise PsfError(f"{what}: PSF_MASK has {mask.shape[0]} planes but POLDEG1 = {deg} needs "
                       f"{nterms}")
    if nterms == 1:
        img = mask[0]
        notes.append("PSFEx: constant PSF (polynomial degree 0)")
    else:
        if position is None:
            raise PsfError(f"{what}: this PSFEx model varies across the image (degree {deg}); "
                           f"give the position (x, y) of the cutout centre on the original image, "
                           f"in {hdr.get('POLNAME1', 'X_IMAGE').strip()}, "
                           f"{hdr.get('POLNAME2', 'Y_IMAGE').strip()} coordinates")
        X, Y = (float(v) for v in position)
        z1, z2 = float(hdr["POLZERO1"]), float(hdr["POLZERO2"])
        s1, s2 = float(hdr["POLSCAL1"]), float(hdr["POLSCAL2"])
        if not (s1 > 0 and s2 > 0 and math.isfinite(s1 + s2 + z1 + z2)):
            raise PsfError(f"{what}: POLSCAL1, POLSCAL2 = {s1:g}, {s2:g} (POLZERO {z1:g}, "
                           f"{z2:g}); the scales must be positive and finite: the PSFEx header "
                           "is broken")
        u, v = (X - z1) / s1, (Y - z2) / s2
        if abs(u) > 1.5 or abs(v) > 1.5:  # a full fitted range beyond its edge
            raise PsfError(f"{what}: position ({X:g}, {Y:g}) is far outside the range PSFEx "
                           f"fitted (x {z1 - s1 / 2:.1f} .. {z1 + s1 / 2:.1f}, y "
                           f"{z2 - s2 / 2:.1f} .. {z2 + s2 / 2:.1f}); the PSF model cannot be "
                           "extrapolated that far. Give the cutout centre's pixel position on "
                           "the image PSFEx was run on")
        if abs(u) > 0.5 + 1e-9 or abs(v) > 0.5 + 1e-9:
            msg = (f"{what}: position ({X:g}, {Y:g}) is outside the range PSFEx fitted "
                   f"(x {z1 - s1 / 2:.1f} .. {z1 + s1 / 2:.1f}, y {z2 - s2 / 2:.1f} .. "
                   f"{z2 + s2 / 2:.1f}); the PSF polynomial is extrapolated there")
            warnings.warn(msg, PsfWarning, stacklevel=4)
            notes.append(msg)
        coef = [u ** i * v ** j for j in range(deg + 1) for i in range(deg + 1 - j)]
        img = np.tensordot(np.array(coef), mask, axes=1)
        notes.append(f"PSFEx: degree-{deg} polynomial evaluated at ({X:g}, {Y:g}) "
                     f"(u = {u:+.4f}, v = {v:+.4f})")
    samp = float(hdr["PSF_SAMP"])
    if not (samp > 0 and math.isfinite(samp)):
        raise PsfError(f"{what}: PSF_SAMP = {samp}; it must be positive")
    side = 2 * math.floor(min(img.shape) / 2 * samp) + 1
    if side > 1025:  # a resampled stamp of 54 PiB was asked for in issue 15
        raise PsfError(f"{what}: PSF_SAMP = {samp:g} would resample the {img.shape[1]}x"
                       f"{img.shape[0]} PSFEx stamp to about {side}x{side} image pixels; "
                       "PSF_SAMP (image pixels per PSF pixel) is usually 0.3 to 2: the header "
                       "is broken")
    if abs(samp - 1.0) > 1e-9:
        from scipy.ndimage import map_coordinates

        h, w = img.shape
        cy, cx = h // 2, w // 2
        hx = int(math.floor(min(cx, w - 1 - cx) * samp))
        hy = int(math.floor(min(cy, h - 1 - cy) * samp))
        oy, ox = np.mgrid[-hy:hy + 1, -hx:hx + 1].astype(float)
        img = map_coordinates(img, [cy + oy / samp, cx + ox / samp], order=3, mode="constant")
        notes.append(f"PSFEx: resampled from PSF_SAMP = {samp:g} image pixels per PSF pixel to "
                     f"image pixels ({img.shape[1]} x {img.shape[0]}) with cubic splines")
    return img, notes


# ------------------------------------------------------------------ mixture file forms
def _mixture_or_error(amps, means, covs, what):
    try:
        return Mixture(amps, means, covs)
    except ValueError as exc:
        raise PsfError(f"{what}: {exc}") from None


def _read_header_form(header, what):
    cls = str(header.get("PSF", "")).strip()
    if cls and "GaussianMixturePSF" not in cls:
        raise PsfError(f"{what}: PSF = '{cls}' is not supported; only "
                       f"'tractor.psf.GaussianMixturePSF' (amplitudes, means, variances) is")
    vals = []
    while f"PSF_P{len(vals)}" in header:
        vals.append(float(header[f"PSF_P{len(vals)}"]))
    n = len(vals)
    if n == 0 or n % 6:
        raise PsfError(f"{what}: found {n} PSF_P keywords; a Tractor mixture of K components "
                       f"needs 6K (K amplitudes, K (x, y) means, K (xx, yy, xy) variances)")
    K = n // 6
    p = np.array(vals)
    var = p[3 * K:].reshape(K, 3)
    covs = np.stack([np.stack([var[:, 0], var[:, 2]], -1), np.stack([var[:, 2], var[:, 1]], -1)],
                    -2)
    return _mixture_or_error(p[:K], p[K:3 * K].reshape(K, 2), covs, what)


def _read_table_form(hdu, what):
    names = {n.lower(): n for n in hdu.columns.names}
    try:
        amps = np.asarray(hdu.data[names["amp"]], float).reshape(-1)
        K = amps.size
        means = np.asarray(hdu.data[names["mean"]], float).reshape(K, 2)
        covs = np.asarray(hdu.data[names["var"]], float).reshape(K, 2, 2)
    except (ValueError, KeyError) as exc:
        raise PsfError(f"{what}: columns amp, mean, var do not have the shapes (K,), (K, 2), "
                       f"(K, 2, 2) of a Tractor mixture table ({exc})") from None
    return _mixture_or_error(amps, means, covs, what)


def _read_json(text, what):
    try:
        d = json.loads(text)
        amps, means, covs = d["amps"], d["means"], d["covs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PsfError(f"{what}: not a mogviewer PSF mixture JSON file (needs keys amps, means, "
                       f"covs): {exc}") from None
    try:
        return Mixture(amps, means, covs)
    except ValueError as exc:
        raise PsfError(f"{what}: {exc}") from None


# ------------------------------------------------------------------------------ reading
def _sniff(path):
    with open(path, "rb") as fh:
        head = fh.read(2880)
    if not head:
        raise PsfError(f"{path}: the file is empty")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"SIMPLE  =") or head.startswith(b"\x1f\x8b"):
        return "fits"
    if head.lstrip()[:1] == b"{":
        return "json"
    shown = head[:16].decode("ascii", "replace").encode("unicode_escape").decode()
    raise PsfError(f"{path}: not a FITS file, a NumPy .npy file or a mogviewer mixture JSON "
                   f"file (it starts with '{shown}'); mogviewer reads PSF images, PSFEx files and "
                   f"Tractor mixtures in FITS")


def _hdu_label(i, h):
    return f"HDU {i}" + (f" ({h.name})" if h.name and h.name != "PRIMARY" else "")


def _image_of(h):
    return h.is_image and h.data is not None and h.data.size > 0


def _pick_plane(data, plane, what):
    if data.ndim == 3:
        n = data.shape[0]
        if n == 1 and plane in (None, 0):
            return data[0], [f"{what}: the only plane of a 1 x {data.shape[1]} x {data.shape[2]} "
                             f"cube used"]
        if plane is None:
            raise PsfError(f"{what} is a cube of {n} planes (shape {data.shape}); choose one with "
                           f"plane=0..{n - 1} (command line: --plane)")
        if not 0 <= int(plane) < n:
            raise PsfError(f"{what}: plane {plane} does not exist; the cube has planes 0..{n - 1}")
        return data[int(plane)], [f"{what}: plane {int(plane)} of {n} used"]
    if plane not in (None, 0) and data.ndim == 2:
        raise PsfError(f"{what} is a 2-D image; plane={plane} does not apply")
    if data.ndim != 2:
        raise PsfError(f"{what} has shape {data.shape} ({data.ndim}-D); a PSF image must be a "
                       f"2-D array image[y, x] (or a cube with plane= chosen)")
    return data, []


def read_psf(path, *, hdu=None, plane=None, position=None, n_components=None,
             allow_negative=False, centre="centroid", max_bad_fraction=MAX_BAD_FRACTION):
    """Read any supported PSF file and return it as a mixture of Gaussians.

    The format is recognised from the content: ``.npy`` magic, FITS ``SIMPLE`` card (or gzip), or
    JSON. In a FITS file the first match in this order is used, over all HDUs or only ``hdu``:
    a Tractor mixture table (columns ``amp``, ``mean``, ``var``); a header with ``PSF_P0``
    (Tractor header form); a PSFEx table (column ``PSF_MASK``); an image HDU with data.

    Parameters
    ----------
    path : str or Path
    hdu : int or str, keyword-only, optional
        FITS HDU index or EXTNAME to read.
    plane : int, optional
        Plane of a 3-D image cube (required when the cube has more than one plane).
    position : (float, float), optional
        ``(x, y)`` of the cutout centre on the original image, in the PSFEx position coordinates
        (``POLNAME1/2``, usually 1-based ``X_IMAGE, Y_IMAGE``); required for a varying PSFEx
        model.
    n_components : int, optional
        K for fitting a stamp; default: the smallest K <= 6 with max|residual|/peak < 1 %.
    allow_negative : bool
        Allow negative amplitudes in the fit.
    centre : {'centroid', 'peak', 'geometric'}
        Reference centre put at (0, 0): the fitted mixture's flux-weighted centroid, its peak,
        or the stamp's geometric centre ``((w - 1) / 2, (h - 1) / 2)``. The same rule for
        every reader: a mixture file (Tractor, JSON) is normalised to unit total and centred
        on its centroid or peak too (``geometric`` keeps the file's origin). The stamp of an
        image PSF keeps the same origin for the exact-PSF mode
        (:class:`mogviewer.render.exact.ExactPsf`), which also normalises it to unit sum.
    max_bad_fraction : float
        Largest fraction of NaN pixels that is masked instead of refused.

    Returns
    -------
    PsfModel

    Raises
    ------
    PsfError
        The file is none of the supported formats, or is one but unusable (the message says why).
    FileNotFoundError
        No such file.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block, /dev/zero never end
        raise PsfError(f"{path}: not a regular file (a directory, FIFO or device); a PSF is "
                       "read from a regular file")
    kind = _sniff(path)
    what = str(path)
    if kind == "json":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PsfError(f"{what}: not a mogviewer PSF mixture JSON file (not UTF-8 "
                           "text)") from None
        try:
            mix = _read_json(text, what)
        except RecursionError:
            raise PsfError(f"{what}: not a mogviewer PSF mixture JSON file (nested too "
                           "deeply)") from None
        return _model_from_mixture(mix, "json", [f"read mogviewer JSON mixture "
                                                 f"({len(mix)} components)"], centre, what)
    opts = dict(n_components=n_components, allow_negative=allow_negative, centre=centre,
                max_bad_fraction=max_bad_fraction)
    if kind == "npy":
        if hdu is not None:
            raise PsfError(f"{what} is a NumPy file; hdu= applies to FITS files only")
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise PsfError(f"{what}: cannot read the NumPy array ({exc})") from None
        img, notes = _pick_plane(np.asarray(data), plane, what)
        return _model_from_stamp(img, "npy", [f"read {what} (NumPy array {data.shape})"] + notes,
                                 what=what, **opts)
    return _read_fits(path, hdu=hdu, plane=plane, position=position, what=what, **opts)


def _read_fits(path, *, hdu, plane, position, what, **opts):
    from astropy.io import fits

    try:
        with _warnings.catch():
            warnings.simplefilter("ignore")        # astropy's warnings about odd headers
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix+ignore")
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for a corrupt file
        raise PsfError(f"{what}: cannot be read as FITS ({type(exc).__name__}: {exc})") from None
    try:
        with hdul:
            return _dispatch_fits(hdul, hdu=hdu, plane=plane, position=position, what=what,
                                  **opts)
    except PsfError:
        raise
    except (ValueError, OSError, TypeError, KeyError, IndexError) as exc:
        raise PsfError(f"{what}: cannot be read as FITS, the file may be truncated or corrupt "
                       f"({type(exc).__name__}: {exc})") from None


def _dispatch_fits(hdul, *, hdu, plane, position, what, **opts):
    from astropy.io import fits

    if hdu is not None:
        try:
            idx = hdul.index_of(hdu)
            if not 0 <= idx < len(hdul):  # index_of passes any integer through
                raise IndexError(idx)
        except (KeyError, IndexError):
            avail = ", ".join(_hdu_label(i, h) for i, h in enumerate(hdul))
            raise PsfError(f"{what}: there is no HDU {hdu!r}; the file has {avail}") from None
        cands = [(idx, hdul[idx])]
    else:
        cands = list(enumerate(hdul))
    for i, h in cands:
        if isinstance(h, fits.BinTableHDU):
            cols = {c.lower() for c in h.columns.names}
            if {"amp", "mean", "var"} <= cols:
                w = f"{what} {_hdu_label(i, h)}"
                mix = _read_table_form(h, w)
                return _model_from_mixture(
                    mix, "tractor-table", [f"read Tractor mixture table form from "
                                           f"{_hdu_label(i, h)} ({len(mix)} components)"],
                    opts["centre"], w)
    for i, h in cands:
        if "PSF_P0" in h.header:
            mix = _read_header_form(h.header, f"{what} {_hdu_label(i, h)}")
            return _model_from_mixture(
                mix, "tractor-header", [f"read Tractor mixture header form (PSF_P*) from "
                                        f"{_hdu_label(i, h)} ({len(mix)} components)"],
                opts["centre"], f"{what} {_hdu_label(i, h)}")
    for i, h in cands:
        if isinstance(h, fits.BinTableHDU) and "PSF_MASK" in [c.upper()
                                                              for c in h.columns.names]:
            w = f"{what} {_hdu_label(i, h)}"
            img, notes = psfex_stamp(h, position, what=w)
            return _model_from_stamp(img, "psfex", [f"read PSFEx model from "
                                                    f"{_hdu_label(i, h)}"] + notes,
                                     what=w, **opts)
    images = [(i, h) for i, h in cands if _image_of(h)]
    if not images:
        avail = ", ".join(f"{_hdu_label(i, h)}: {type(h).__name__}" for i, h in cands)
        raise PsfError(f"{what}: no PSF found: no image data, PSFEx PSF_MASK table or Tractor "
                       f"mixture in {avail}")
    notes = []
    i, h = images[0]
    if len(images) > 1:
        msg = (f"{what}: {len(images)} HDUs hold images "
               f"({', '.join(_hdu_label(j, g) for j, g in images)}); using "
               f"{_hdu_label(i, h)}. Pass hdu= (command line: --psf-hdu) to choose another")
        warnings.warn(msg, PsfWarning, stacklevel=3)
        notes.append(msg)
    w = f"{what} {_hdu_label(i, h)}"
    img, more = _pick_plane(np.asarray(h.data), plane, w)
    notes = [f"read PSF image from {_hdu_label(i, h)} ({h.data.shape})"] + notes + more
    return _model_from_stamp(img, "image", notes, what=w, **opts)


def _model_from_mixture(mix, source, notes, centre, what):
    """A mixture file's PSF, normalised and centred as a stamp's is (one rule for every
    reader): unit total; the reference centre (``centroid`` of the mixture, its ``peak``, or
    ``geometric``: the file's own origin, kept) moved to (0, 0). Used as it is by the renderer:
    a mixture file has no stamp, so no exact-PSF mode."""
    from .fit import _mixture_peak

    notes = list(notes)
    tot = mix.total
    # a total within rounding of 1 (a mixture this package wrote) is kept as it is: dividing
    # by it would change the amplitudes' last bits, and a written model would not read back
    # identical
    if abs(tot - 1.0) > 8 * np.finfo(float).eps:
        notes.append(f"normalised: the mixture's total was {tot:.6g}, now 1")
        mix = mix.normalized()
    if centre == "centroid":
        c = mix.centroid()
        notes.append(f"centre = flux-weighted centroid of the mixture ({c[0]:.4g}, {c[1]:.4g}) "
                     f"in the file's coordinates")
    elif centre == "peak":
        c = _mixture_peak(mix)
        notes.append(f"centre = peak of the mixture ({c[0]:.4g}, {c[1]:.4g}) in the file's "
                     f"coordinates")
    elif centre == "geometric":
        c = np.zeros(2)
        notes.append("centre = the file's own origin (0, 0): a mixture has no stamp whose "
                     "middle could be taken")
    else:
        raise PsfError(f"centre must be 'centroid', 'peak' or 'geometric', got {centre!r}")
    if np.any(c != 0):
        mix = mix.shifted(-c[0], -c[1])
    notes.append("a mixture file is used as it is (mixture-only model; no stamp for the "
                 "exact-PSF mode)")
    return PsfModel(mixture=mix, source=source, notes=tuple(notes))


# ------------------------------------------------------------------------------ writing
def _table_hdu(mixture):
    from astropy.io import fits

    K = len(mixture)
    cols = [fits.Column(name="amp", format="D", array=np.asarray(mixture.amps)),
            fits.Column(name="mean", format="2D", array=np.asarray(mixture.means)),
            fits.Column(name="var", format="4D", dim="(2,2)",
                        array=np.asarray(mixture.covs).reshape(K, 2, 2))]
    t = fits.BinTableHDU.from_columns(cols, name="PSF_MOG")
    t.header["TUNIT2"] = "pixel"
    t.header["TUNIT3"] = "pixel**2"
    t.header.add_comment("Mixture of Gaussians PSF, one row per component:")
    t.header.add_comment("amp = integrated flux; mean = (x, y) offset; var = [[xx, xy], [xy, yy]]")
    return t


def _header_form(header, mixture):
    K = len(mixture)
    header["PSF"] = ("tractor.psf.GaussianMixturePSF", "Tractor PSF class")
    vals, names = [], []
    for k in range(K):
        vals.append(mixture.amps[k])
        names.append(f"amp{k}")
    for k in range(K):
        vals += list(mixture.means[k])
        names += [f"mean{k}.x", f"mean{k}.y"]
    for k in range(K):
        c = mixture.covs[k]
        vals += [c[0, 0], c[1, 1], c[0, 1]]
        names += [f"var{k}.xx", f"var{k}.yy", f"var{k}.xy"]
    for i, (v, n) in enumerate(zip(vals, names, strict=True)):
        header[f"PSF_P{i}"] = (float(v), n)


def write_psf(path, mixture, *, overwrite=True, notes=()):
    """Write a PSF mixture so that mogviewer and the Tractor can read it.

    A FITS file gets the Tractor header form (``PSF``, ``PSF_P0...``) in the primary header and
    the Tractor table form in extension 1 (``PSF_MOG``: columns ``amp``, ``mean``, ``var``); both
    hold the same mixture (the header to about 14 significant digits, the table exactly). A path
    ending in ``.json`` gets JSON with ``amps``, ``means``, ``covs`` (exact: floats are written
    with their shortest round-tripping repr).

    Parameters
    ----------
    path : str or Path
    mixture : Mixture or PsfModel
    overwrite : bool, keyword-only
    notes : sequence of str
        Written as HISTORY cards (FITS) or a ``notes`` list (JSON).
    """
    if isinstance(mixture, PsfModel):
        notes = tuple(notes) or mixture.notes
        mixture = mixture.mixture
    mixture = Mixture(mixture.amps, mixture.means, mixture.covs)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if path.suffix.lower() == ".json":
        d = {"format": _JSON_FORMAT, "version": 1,
             "conventions": "f(x) = sum_k amps[k] N(x | means[k], covs[k]); means (x, y) in "
                            "pixels, covs [[xx, xy], [xy, yy]] in pixels^2; 0-based pixel "
                            "centres at integers",
             "amps": mixture.amps.tolist(), "means": mixture.means.tolist(),
             "covs": mixture.covs.tolist(), "notes": list(notes)}
        tmp.write_text(json.dumps(d, indent=1) + "\n")
    else:
        from astropy.io import fits

        prim = fits.PrimaryHDU()
        _header_form(prim.header, mixture)
        prim.header["MOGNCOMP"] = (len(mixture), "number of Gaussian components")
        prim.header.add_comment("mogviewer PSF mixture: the same mixture is in PSF_P* (Tractor "
                                "header form) and in extension PSF_MOG (table form)")
        for n in notes:
            prim.header.add_history(str(n)[:1000])
        fits.HDUList([prim, _table_hdu(mixture)]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)
    return path
