"""One image of the sky as a fit sees it: pixels, noise, mask, PSF, band, zeropoint, WCS.

A :class:`Scene` (:mod:`mogviewer.scene`) is rendered *into* an observation: the observation
supplies the pixel grid, the PSF that every source is convolved with and the weights its
residuals are compared with. Several observations of one scene (bands, exposures) each carry
their own; a one-galaxy fit has one.

Conventions
-----------
* Arrays are ``image[y, x]``; pixel centres sit at integer 0-based coordinates ``(x, y)``.
* ``ivar`` is the inverse variance in (image unit)^-2; ``mask`` is True where a pixel is
  excluded; :attr:`Observation.weights` is ``ivar`` with masked and non-finite pixels set to 0.
* ``psf`` is a unit-total, centred mixture of the *pixel-convolved* PSF
  (:class:`~mogviewer.mixture.Mixture`; means are offsets from the star's centre), a stamp used
  exactly (:class:`~mogviewer.render.exact.ExactPsf`: mixture plus residual by FFT), or None for
  no PSF (the pixel). A :class:`~mogviewer.psf.PsfModel` read from an image becomes an
  ``ExactPsf`` (``psf_mode='auto'`` or ``'exact'``) or its mixture (``'mixture'``), as in the
  one-galaxy fit.
* ``zeropoint``: ``mag = zeropoint - 2.5 log10(flux)`` for a flux in image units.
* ``wcs``: the celestial WCS of the pixel grid (astropy), or None; it relates the pixel grids of
  observations of one scene.
* ``wavelength``: the band's effective wavelength (any one unit for all observations, e.g. nm),
  or None; used by the wavelength ties of :func:`mogviewer.fitting.multiband.fit_multiband`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import ImageReadError
from .mixture import Mixture
from .render.exact import ExactPsf

__all__ = ["Observation"]


def _as_psf(psf, mode):
    """A Mixture (normalised), an ExactPsf or None from what the caller gave."""
    if mode not in ("auto", "exact", "mixture"):
        raise ValueError(f"psf_mode must be 'auto', 'exact' or 'mixture', got {mode!r}")
    if psf is None:
        if mode == "exact":
            raise ValueError("psf_mode='exact' needs a PSF image; no PSF was given")
        return None
    if isinstance(psf, ExactPsf):
        return psf.mixture.normalized() if mode == "mixture" else psf
    if isinstance(psf, Mixture):
        if mode == "exact":
            raise ValueError("psf_mode='exact' needs a PSF image (stamp, .npy, PSFEx); this PSF "
                             "is a mixture")
        return psf.normalized()
    if hasattr(psf, "mixture") and hasattr(psf, "stamp"):       # a PsfModel
        if psf.stamp is None or mode == "mixture":
            if mode == "exact":
                raise ValueError(f"psf_mode='exact' needs a PSF image; this {psf.source} PSF "
                                 "is a mixture with no stamp")
            return psf.mixture.normalized()
        return ExactPsf.from_model(psf)
    raise TypeError(f"psf must be a Mixture, an ExactPsf, a PsfModel or None, got "
                    f"{type(psf).__name__}")


def _frozen(a, dtype):
    a = np.array(a, dtype=dtype, copy=True)
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class Observation:
    """One image: pixels, inverse variance, mask, PSF mixture, band, zeropoint and WCS.

    Immutable: the arrays are private read-only copies. Build one with :meth:`from_arrays` or
    :meth:`from_image_data` (from :func:`mogviewer.io.read_image`).

    Attributes
    ----------
    image : ndarray of float64, shape (ny, nx)
        Pixel values (image units); non-finite pixels are set to 0 and carry no weight.
    ivar : ndarray of float64, shape (ny, nx)
        Inverse variance, (image unit)^-2.
    mask : ndarray of bool, shape (ny, nx)
        True = excluded.
    psf : Mixture, ExactPsf or None
        The pixel-convolved PSF, normalised to unit total (None: no PSF).
    band : str or None
    zeropoint : float or None
        Magnitude of 1 image unit.
    wcs : astropy.wcs.WCS or None
    name : str
        What the observation is (file and HDU or band), for messages and tables.
    wavelength : float or None
        Effective wavelength of the band (for wavelength ties).
    """

    image: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    psf: Mixture | None = None
    band: str | None = None
    zeropoint: float | None = None
    wcs: object | None = None
    name: str = "image"
    wavelength: float | None = None

    def __post_init__(self):
        image = np.array(self.image, dtype=np.float64, copy=True)
        ivar = np.array(self.ivar, dtype=np.float64, copy=True)
        mask = np.array(self.mask, dtype=bool, copy=True)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ImageReadError(f"{self.name}: an observation needs a 2-D image, got shape "
                                 f"{image.shape}")
        for what, arr in (("ivar", ivar), ("mask", mask)):
            if arr.shape != image.shape:
                raise ImageReadError(f"{self.name}: {what} has shape {arr.shape}, the image "
                                     f"{image.shape}")
        bad = ~np.isfinite(image)
        image[bad] = 0.0
        mask |= bad | ~np.isfinite(ivar) | (ivar <= 0)
        ivar = np.where(mask, 0.0, ivar)
        psf = _as_psf(self.psf, "auto")
        if self.wavelength is not None:
            wl = float(self.wavelength)
            if not (math.isfinite(wl) and wl > 0):
                raise ImageReadError(f"{self.name}: the wavelength must be a positive number, "
                                     f"got {self.wavelength!r}")
            object.__setattr__(self, "wavelength", wl)
        object.__setattr__(self, "image", _frozen(image, np.float64))
        object.__setattr__(self, "ivar", _frozen(ivar, np.float64))
        object.__setattr__(self, "mask", _frozen(mask, bool))
        object.__setattr__(self, "psf", psf)
        if self.zeropoint is not None:
            object.__setattr__(self, "zeropoint", float(self.zeropoint))

    @classmethod
    def from_arrays(cls, image, *, ivar=None, sigma=None, mask=None, psf=None, band=None,
                    zeropoint=None, wcs=None, name="image", wavelength=None, psf_mode="auto"):
        """From arrays: ``ivar`` or ``sigma`` (neither: unit weights), an optional mask;
        ``psf`` a Mixture, an ExactPsf, a PsfModel (its stamp used exactly unless
        ``psf_mode='mixture'``) or None."""
        image = np.asarray(image, dtype=np.float64)
        if ivar is not None and sigma is not None:
            raise ValueError("give ivar or sigma, not both")
        if sigma is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                ivar = 1.0 / np.square(np.asarray(sigma, dtype=np.float64))
        if ivar is None:
            ivar = np.ones(image.shape)
        if mask is None:
            mask = np.zeros(image.shape, bool)
        return cls(image, ivar, mask, psf=_as_psf(psf, psf_mode), band=band,
                   zeropoint=zeropoint, wcs=wcs, name=name, wavelength=wavelength)

    @classmethod
    def from_image_data(cls, data, *, psf=None, band=None, name=None, wavelength=None,
                        psf_mode="auto"):
        """From a :class:`mogviewer.io.ImageData`, with the PSF that belongs to it."""
        label = name or (f"{data.path}[{data.hdu_name or data.hdu}]" if data.path else "image")
        return cls(data.image, data.ivar, data.mask, psf=_as_psf(psf, psf_mode),
                   band=band or data.band, zeropoint=data.zeropoint, wcs=data.wcs, name=label,
                   wavelength=wavelength)

    @property
    def psf_mixture(self):
        """The PSF's Gaussian mixture (of an exact PSF too), or None."""
        return self.psf.mixture if isinstance(self.psf, ExactPsf) else self.psf

    @property
    def shape(self):
        """``(ny, nx)``."""
        return self.image.shape

    @property
    def weights(self):
        """``ivar`` where a pixel is used, 0 elsewhere (the chi^2 weights)."""
        return self.ivar

    @property
    def n_good(self):
        """Number of pixels with positive weight."""
        return int(np.count_nonzero(self.ivar))

    def chi2(self, model):
        """``sum w (image - model)^2`` over the used pixels."""
        r = self.image - np.asarray(model, dtype=np.float64)
        return float(np.sum(self.ivar * r * r))

    def replace(self, **changes):
        """A copy with some attributes changed (e.g. another PSF)."""
        return dataclasses.replace(self, **changes)
