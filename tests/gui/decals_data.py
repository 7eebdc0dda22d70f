"""The DECaLS DR9 cutout of tests/data/real/pysersic-decals-dr9 (g, r, z images with their ivar,
and its three-band PSF file), cut to small boxes for the app's tests, and a window opened on
one. Shared by test_joint_bands.py and test_scene_exact_psf.py."""

from pathlib import Path

from astropy.io import fits

from mogviewer.gui.main_window import MainWindow

REAL = Path(__file__).parents[1] / "data" / "real" / "pysersic-decals-dr9"
DECALS = REAL / "cutout_59.1067_-30.4848.fits"          # g, r, z with their ivar
DECALS_PSF = REAL / "copsf_59.1067_-30.4848.fits"       # one PSF HDU per band
FIT_TIMEOUT_MS = 120000
PSF_TIMEOUT_MS = 60000


def write_box(out, hdus, x0, y0, side):
    """The file's HDUs ``hdus`` cut to ``[y0:y0+side, x0:x0+side]`` (headers kept, the WCS
    reference pixel shifted) after an empty primary HDU, written to ``out``."""
    with fits.open(DECALS) as h:
        cut = [fits.PrimaryHDU()]
        for k in hdus:
            hdr = h[k].header.copy()
            hdr["CRPIX1"] -= x0
            hdr["CRPIX2"] -= y0
            cut.append(fits.ImageHDU(h[k].data[y0:y0 + side, x0:x0 + side], header=hdr))
        fits.HDUList(cut).writeto(out)
    return out


def open_window(qtbot, settings, image, psf):
    """A main window with ``image`` open and ``psf`` loaded (waited for)."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    assert w.commands.open_image(image)
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        w.commands.open_psf(psf)
    return w
