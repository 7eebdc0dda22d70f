"""Shared set-ups of the real cutouts in tests/data/real (see PROVENANCE.md there)."""

import warnings

import numpy as np
from scipy import ndimage

from mogviewer import io as io_fits
from mogviewer.psf import PsfWarning, read_psf

DATA = "tests/data/real"


def quiet_psf(path, **kw):
    """A PSF mixture, with mogviewer's deliberate PsfWarnings (e.g. "multi-HDU file, first HDU
    used", asserted in test_psf.py) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)
        return read_psf(path, **kw).mixture


def dr9_crop(band="r"):
    """The pysersic DECaLS DR9 set-up (PROVENANCE.md s6): crop [68:188, 68:188] of the band's
    image and invvar, the other sources masked (3-sigma segments of the 1.5 px-smoothed crop
    other than the one at the target (58, 62), dilated by 3 px), and the band's coadd PSF as a
    4-component mixture. Returns ``(image, ivar, mask, psf)``."""
    d = io_fits.read_image(f"{DATA}/pysersic-decals-dr9/cutout_59.1067_-30.4848.fits", band=band)
    img, ivar, bad = (a[68:188, 68:188] for a in (d.image, d.ivar, d.mask))
    sig = 1 / np.sqrt(np.median(ivar))
    smooth = ndimage.gaussian_filter(img, 1.5)
    lab, _ = ndimage.label(smooth > 3 * sig / (2 * np.sqrt(np.pi) * 1.5))
    others = ndimage.binary_dilation((lab > 0) & (lab != lab[62, 58]), iterations=3)
    psf = quiet_psf(f"{DATA}/pysersic-decals-dr9/copsf_59.1067_-30.4848.fits",
                    hdu={"g": 0, "r": 1, "z": 2}[band], n_components=4)
    return img, ivar, bad | others, psf
