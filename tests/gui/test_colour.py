"""Issue 18 in the app (part): View > Colour Image of a multi-band file (make_lupton_rgb)."""

from pathlib import Path

import numpy as np

from mogviewer.gui import bands as gbands
from mogviewer.gui import engine
from mogviewer.gui.main_window import MainWindow

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
DECALS = REAL / "pysersic-decals-dr9" / "cutout_59.1067_-30.4848.fits"   # g, r, z


def test_colour_image_of_a_grz_cutout(qtbot, settings, errors):
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    assert w.commands.open_image(DECALS)
    hdus = w.state.source.hdus
    # z, r, g as R, G, B (reddest first)
    assert [b for _i, b in gbands.colour_bands(hdus)] == ["z", "r", "g"]
    dlg = w.show_colour_dialog()
    with qtbot.waitSignal(dlg.ready, timeout=60000):
        pass
    rgb = dlg.rgb
    assert dlg.bands == ["z", "r", "g"]
    assert rgb.shape == w.state.data.shape + (3,) and rgb.dtype == np.uint8
    # each channel is its band: the brightest pixel of the z image is bright in R
    z = engine.read_image(DECALS, hdu=gbands.colour_bands(hdus)[0][0]).image
    iy, ix = np.unravel_index(np.nanargmax(z), z.shape)
    assert rgb[iy, ix, 0] > 100 and rgb[iy, ix, 0] > 3 * max(np.median(rgb[..., 0]), 1)
    # the sky (the median pixel) is dark in every channel: the stretch starts at zero
    assert np.median(rgb) < 80
    assert not dlg.label.pixmap().isNull() and not errors
    w.commands.shutdown()


def test_colour_image_needs_three_bands(window, qtbot):
    dlg = window.show_colour_dialog()
    with qtbot.waitSignal(dlg.ready, timeout=60000):
        pass
    assert dlg.rgb is None and "three bands" in dlg.label.text()
