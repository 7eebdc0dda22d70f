"""What is in a file (its HDUs) and what :func:`read_image` found (for ``mogviewer info``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from astropy.utils.exceptions import AstropyWarning

from .. import _warnings
from ..errors import ImageReadError
from .hdus import _hdu_kind, _hdu_shape, _is_image_hdu, _is_npy, _load_npy, _open_fits

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
    with _warnings.catch():
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
