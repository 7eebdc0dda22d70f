""":func:`read_image`: a cutout (image, noise, mask, header facts) into an :class:`ImageData`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.utils.exceptions import AstropyWarning

from .. import _warnings
from ..errors import ImageReadError
from .hdus import (
    _check_pixels,
    _find_hdu,
    _first_image_hdu,
    _first_line,
    _hdu_kind,
    _hdu_label,
    _hdu_shape,
    _hdu_table,
    _is_npy,
    _load_npy,
    _open_fits,
    _read_companion,
    _to_2d,
    check_regular_file,
)
from .header import (
    _as_float,
    _band_from_header,
    _celestial_wcs,
    _header_value,
    _keyword_float,
    _pixel_scale,
    _zeropoint,
)
from .image_data import MIN_SIZE, NOISE_KINDS, ImageData
from .noise import _check_scale, _noise_to_ivar, robust_background

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
    if isinstance(path, (bytes, bytearray, memoryview)):
        raise TypeError("read_image: path must be a file path or a 2-D array, not "
                        f"{type(path).__name__} (to read FITS bytes, wrap them: "
                        "astropy.io.fits.open(io.BytesIO(data))[0].data)")
    if segment_id is not None and (isinstance(segment_id, bool) or
                                   not isinstance(segment_id, (int, np.integer))):
        raise TypeError(f"segment_id must be an integer, not {segment_id!r}")
    if segment_id is not None and segmap is None and segmap_hdu is None:
        raise ImageReadError("segment_id given without a segmentation map (segmap= / --segmap)")
    if plane is not None and (isinstance(plane, bool) or
                              not isinstance(plane, (int, np.integer))):
        raise TypeError(f"plane must be an integer, not {plane!r}")
    if noise_kind not in NOISE_KINDS:
        raise ImageReadError(f"noise_kind must be one of {', '.join(NOISE_KINDS)}, "
                             f"not {noise_kind!r}")
    with _warnings.catch(record=True) as caught:
        warnings.simplefilter("always", AstropyWarning)
        fields = _read_image(**kwargs)
    notes = fields.pop("notes")
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
    return ImageData(**fields, notes=tuple(notes))


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
            src_path = os.fsdecode(os.fspath(path))
            check_regular_file(src_path, "image")
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
            _check_pixels(h, _hdu_label(hdu_index, h), src_path, "image")
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
        if plane is not None and not any("plane" in n and "cube" in n for n in notes):
            raise ImageReadError(f"plane={plane} (--plane) given, but the image"
                                 f"{' ' + src_path if src_path else ''} is 2-D, not a cube")
        image = np.array(arr, dtype=np.float64)  # a copy: the caller's array is never touched
        ny, nx = image.shape
        if ny < MIN_SIZE or nx < MIN_SIZE:
            raise ImageReadError(f"image is only {nx}x{ny} pixels; at least "
                                 f"{MIN_SIZE}x{MIN_SIZE} are needed")
        notes.append(f"Image {nx}x{ny} px (x by y), read as image[y, x].")

        finite = np.isfinite(image)
        if not finite.any():
            raise ImageReadError("image has no finite pixel values (all NaN or inf)")
        _check_scale(image[finite], f"image {src_path or 'array'}")
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
            _check_pixels(h, _hdu_label(idx, h), src_path, "noise")
            try:
                ndata = h.data
            except Exception as exc:  # noqa: BLE001 - e.g. a truncated noise extension
                raise ImageReadError(f"noise HDU {_hdu_label(idx, h)} of {src_path} cannot be "
                                     f"read (truncated or corrupt? {_first_line(exc)})") from None
            n = np.array(_to_2d(ndata, f"noise HDU {idx}", plane, notes), dtype=np.float64)
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

        # the ImageData's fields: read_image adds the header warnings to the notes and builds
        # it once (its arrays are copied there)
        return dict(image=image, ivar=ivar, mask=bad, header=img_header, wcs=wcs,
                    pixel_scale_arcsec=pscale, zeropoint=zp, exptime=exptime,
                    gain=gain_val, bunit=bunit, path=src_path, hdu=hdu_index,
                    hdu_name=hdu_name, band=band_val, noise_source=noise_source,
                    noise_is_estimate=is_estimate, notes=notes)
    finally:
        if hdul is not None:
            hdul.close()


def _ignored_noise_options(notes, read_noise, sky_level, poisson):
    if read_noise is not None or sky_level is not None or poisson:
        notes.append("read_noise / sky_level / poisson ignored: a noise map is used.")




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
