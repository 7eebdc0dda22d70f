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

Modules: :mod:`~mogviewer.io.read` (:func:`read_image`), :mod:`~mogviewer.io.image_data` (what it
returns), :mod:`~mogviewer.io.hdus` (FITS HDUs and ``.npy`` arrays), :mod:`~mogviewer.io.header`
(WCS, pixel scale, band, zeropoint), :mod:`~mogviewer.io.noise` (noise maps to inverse variance),
:mod:`~mogviewer.io.summary` (what ``mogviewer info FILE`` prints).

Error policy: every problem with the user's input raises :class:`~mogviewer.errors.ImageReadError`
(a ``ValueError``) whose message names the file and the problem in words a user understands.
"""

from ..errors import ImageReadError
from .image_data import NOISE_KINDS, ImageData
from .noise import robust_background
from .read import read_image
from .summary import describe, list_hdus

__all__ = ["ImageData", "ImageReadError", "read_image", "describe", "list_hdus", "NOISE_KINDS",
           "robust_background"]
