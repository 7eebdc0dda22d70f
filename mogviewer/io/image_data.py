"""The :class:`ImageData` a reader returns: pixels, inverse variance, mask and header facts.

Conventions are those of :mod:`mogviewer.io`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from astropy.io import fits

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

    def replace(self, **changes):
        """A copy with some header facts changed (``wcs``, ``path``, ``noise_source``, ...),
        sharing this one's pixel arrays (they are private and read-only; giving ``image``,
        ``ivar`` or ``mask`` makes new private copies, as :func:`dataclasses.replace` does)."""
        if {"image", "ivar", "mask"} & changes.keys():
            return dataclasses.replace(self, **changes)
        names = {f.name for f in dataclasses.fields(self)}
        unknown = changes.keys() - names
        if unknown:
            raise TypeError(f"ImageData has no field {', '.join(sorted(unknown))}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        if "notes" in changes:
            new.__dict__["notes"] = tuple(changes["notes"])
        return new

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
