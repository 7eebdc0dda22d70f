"""Issue 13, "the app on real data": each problem a new user met, driven as they met it.

Each test fails on the app before the fix (the line it guards is named in its docstring).
"""

import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PyQt5 import QtCore, QtGui, QtWidgets

from mogviewer.gui import dialogs, engine
from mogviewer.gui.main_window import MainWindow, fit_size
from mogviewer.gui.panels import DIVERGING, MASK_RGBA, colormap
from mogviewer.gui.state import LIMITS, PERCENTILES

REAL = Path(__file__).parents[1] / "data" / "real"
SMALL = REAL / "imfit-sdss" / "ic3478rss_64x64.fits"
DECALS = REAL / "pysersic-decals-dr9" / "cutout_59.1067_-30.4848.fits"
DECALS_PSF = REAL / "pysersic-decals-dr9" / "copsf_59.1067_-30.4848.fits"
DECAM = REAL / "tractor-decals-dr3" / "decam-520206-S16-image-sub.fits"
PSFEX = REAL / "tractor-decals-dr3" / "decam-520206-S16-psfex.fits"
# tests/data/real/PROVENANCE.md section 1: the Tractor example evaluates the PSFEx model of this
# cutout at full-CCD pixel (x0 + W/2, y0 + H/2) = (70, 1500)
PSFEX_POSITION = (70.0, 1500.0)
FIT_TIMEOUT_MS = 60000
PSF_TIMEOUT_MS = 60000


def wait_fit(qtbot, w):
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS) as blocker:
        assert w.commands.start_fit()
    return blocker.args[0]


def settle(qtbot, ms=60):
    qtbot.wait(ms)
    QtWidgets.QApplication.processEvents()


# ------------------------------------------------------------------------------ opening
def test_readout_after_opening_a_smaller_image(window, qtbot, errors):
    """The mouse was last over pixel (200, 200) of the 256 px sample; opening a 64 px image
    raised IndexError in readout_text at every re-render (main_window.py:642), and the
    following fit's status never updated."""
    w, s = window, window.state
    w._on_hover((200, 200))
    assert "x=200 y=200" in w.readout.text()
    assert w.commands.open_image(SMALL)
    assert s.data.shape == (64, 64) and not errors
    assert "x=200" not in w.readout.text()
    assert w.readout_text((200, 200)) == ""          # outside the image: nothing, no error
    w._on_hover((10, 12))
    assert "x=10 y=12" in w.readout.text()
    res = wait_fit(qtbot, w)
    assert res.status == "converged" and not errors
    assert "converged" in w.params.status_label.text()
    assert f"{res.chi2_nu:.4f}" in w.params.chi2_label.text()


@pytest.mark.parametrize("answer", [dialogs.KEEP, dialogs.REMOVE, dialogs.REPLACE])
def test_new_image_asks_about_the_previous_psf(window, qtbot, questions, monkeypatch, answer,
                                               sample_files):
    """A DECam z image opened after the sample silently kept the sample's PSF."""
    w, s = window, window.state
    old = s.psf_model
    questions.psf_answer = answer
    picked = []

    def pick(*a, **k):
        picked.append(a)
        return str(sample_files[2]), ""

    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", pick)
    if answer == dialogs.REPLACE:
        with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
            assert w.commands.open_image(DECAM)
    else:
        assert w.commands.open_image(DECAM)
    assert [q for q, _ in questions.asked] == ["psf"]
    assert questions.asked[0][1] == ("psf_moffat_51.fits", DECAM.name)
    assert "chosen for another image" in w.log_view.toPlainText()
    if answer == dialogs.KEEP:
        assert s.psf_model is old and not s.psf_from_other_image
    elif answer == dialogs.REMOVE:
        assert s.psf_model is None and w.psf_status.text().startswith("PSF: none")
    else:
        assert picked and s.psf_model is not None and not s.psf_from_other_image
    # the same file again with another mask or zeropoint is the same image: no question
    questions.asked.clear()
    assert w.commands.set_zeropoint(25.0)
    assert s.data.zeropoint == 25.0 and not questions.asked


def test_psf_from_another_image_is_shown_until_resolved(window):
    w, s = window, window.state
    s.set_image(s.data, path="other.fits")      # a new image without the question (scripts)
    assert s.psf_from_other_image
    assert "chosen for another image" in w.psf_status.text()
    assert "another image" in w.params.psf_label.text()
    w.params.psf_remove_button.click()
    assert s.psf_model is None and "none" in w.psf_status.text()


def test_multiband_file_band_selector(qtbot, settings, errors):
    """A DECaLS g/r/z cutout: there was no band or HDU selector in the app."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    assert w.commands.open_image(DECALS)
    s, combo = w.state, w.params.hdu_combo
    items = [combo.itemText(i) for i in range(combo.count())]
    assert combo.isEnabled() and len(items) == 3
    assert [t.split()[-1] for t in items] == ["g", "r", "z"]
    assert s.data.band == "g"
    p0 = s.params
    combo.setCurrentIndex(2)
    assert s.data.band == "z" and s.data.hdu == 5 and not errors
    assert s.params.x == pytest.approx(p0.x)           # the start is kept on another band
    assert "[z]" in w.windowTitle()
    # a multi-band PSF file follows the image's band
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        w.commands.open_psf(DECALS_PSF)
    assert s.psf_hdu == 2
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        combo.setCurrentIndex(1)
    assert s.data.band == "r" and s.psf_hdu == 1 and not errors
    w.commands.shutdown()


def test_zeropoint_field(qtbot, settings, errors):
    """The log asked for a zeropoint (no MAGZERO in the header) and there was no field."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    assert w.commands.open_image(SMALL)
    s, zp = w.state, w.params.zp_edit
    assert s.data.zeropoint is None and zp.text() == ""
    assert "No zeropoint" in w.log_view.toPlainText()
    zp.setText("26.5")
    zp.editingFinished.emit()
    assert s.data.zeropoint == 26.5 and s.image_options["zeropoint"] == 26.5
    res = wait_fit(qtbot, w)
    mag = 26.5 - 2.5 * math.log10(res.flux_target)
    assert f"mag = {mag:.3f}" in w.params.status_label.text()
    zp.setText("")                                    # back to the header's (none)
    zp.editingFinished.emit()
    assert s.data.zeropoint is None and "zeropoint" not in s.image_options
    w.commands.shutdown()


def test_psfex_position_entry(qtbot, settings, errors, questions):
    """A varying PSFEx model needs the cutout's position on the CCD; there was no place to
    enter it (the PSF failed with 'give the position')."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    assert w.commands.open_image(DECAM)
    s = w.state
    # cancelled: nothing loaded, nothing broken
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS) as blk:
        assert not w.commands.open_psf(PSFEX, n_components=2)
    assert blk.args == [None] and s.psf_model is None and not errors
    name, axes, default = questions.asked[-1][1]
    assert axes == ("X_IMAGE", "Y_IMAGE") and default == (35.5, 35.5)
    questions.position = PSFEX_POSITION
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        assert w.commands.open_psf(PSFEX, n_components=2)
    assert s.psf_model is not None and s.psf_position == PSFEX_POSITION and not errors
    pp = w.params
    assert pp.pos_x.isVisibleTo(pp) and pp.pos_x.value() == 70.0 and pp.pos_y.value() == 1500.0
    first = s.psf_model
    # another position from the panel: the model is evaluated there (far corner of the CCD)
    pp.pos_x.setValue(1500.0)
    pp.pos_y.setValue(70.0)
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        pp.pos_button.click()
    assert s.psf_position == (1500.0, 70.0) and s.psf_model is not first
    assert s.psf_model.n_components == 2                     # the K in use is kept
    assert not np.allclose(s.psf_model.stamp, first.stamp)
    # the long PSF file name and the position row fit the dock: nothing cut at the right
    shown(qtbot, w, 1280, 720)
    assert w.params.minimumSizeHint().width() <= w.params_scroll.viewport().width()
    assert w.params.width() <= w.params_scroll.viewport().width()
    w.commands.shutdown()


# ------------------------------------------------------------------------------ keys
def test_redo_shortcuts_work_and_no_shortcut_is_ambiguous(window, qtbot):
    """Redo had Ctrl+Shift+Z twice (QKeySequence.Redo already holds it on Linux): ambiguous,
    so Qt did nothing."""
    w, s = window, window.state
    x0 = s.params.x
    w.params.spins["x"].setValue(x0 + 7)
    x1 = s.params.x
    w.activateWindow()
    for redo in ((QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier),
                 (QtCore.Qt.Key_Y, QtCore.Qt.ControlModifier)):
        qtbot.keyClick(w, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
        assert s.params.x == pytest.approx(x0)
        qtbot.keyClick(w, *redo)
        assert s.params.x == pytest.approx(x1)
    seen = {}
    for a in w.findChildren(QtWidgets.QAction):
        keys = [k.toString() for k in a.shortcuts() if not k.isEmpty()]
        assert len(keys) == len(set(keys)), (a.text(), keys)
        for k in keys:
            assert k not in seen, f"{k} is both {seen[k]!r} and {a.text()!r}"
            seen[k] = a.text()


def test_F_fits_while_a_field_has_focus(window, qtbot):
    """F did nothing while a parameter field had the keyboard focus; the typed value counts."""
    w = window
    sp = w.params.spins["re"]
    w.activateWindow()
    sp.setFocus()
    qtbot.waitUntil(sp.hasFocus, timeout=2000)
    sp.lineEdit().selectAll()
    qtbot.keyClicks(sp.lineEdit(), "20")             # typed, not yet committed (no Enter)
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS):
        qtbot.keyClick(sp, QtCore.Qt.Key_F)
    stack = w.commands.undo_stack
    assert stack.text(stack.index() - 1).startswith("Fit")
    assert stack.text(stack.index() - 2) == "Edit re"
    assert stack.command(stack.index() - 1).old.re == pytest.approx(20.0)


def test_stale_fit_status_cleared_after_profile_or_psf_change(window, qtbot):
    """'converged' and the old errors stayed shown after the profile or the PSF changed."""
    w, s = window, window.state
    pp = w.params
    res = wait_fit(qtbot, w)
    assert pp.err_labels["x"].text().startswith("\u00b1") and "converged" in \
        pp.status_label.text()
    assert w.export_actions["csv"].isEnabled()
    pp.profile_combo.setCurrentIndex(pp.profile_combo.findData("dev"))
    assert s.result is None
    assert pp.err_labels["x"].text() == "" and pp.status_label.text() == ""
    assert pp.progress.format() == "not fitted" and not w.export_actions["csv"].isEnabled()
    w.commands.undo_stack.undo()                     # back to exp: its result comes back
    assert s.profile == "exp" and s.result is res and "converged" in pp.status_label.text()
    w.commands.remove_psf()
    assert s.result is None and pp.err_labels["x"].text() == ""
    res2 = wait_fit(qtbot, w)
    assert "converged" in pp.status_label.text() and res2.params != res.params
    dlg = w.show_psf_dialog()
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        w.commands.open_psf(engine.sample_files()[2])
    assert s.result is None and pp.status_label.text() == ""
    dlg.close()


# ------------------------------------------------------------------------------ layout
def shown(qtbot, w, width, height):
    w.resize(width, height)
    w.show()
    qtbot.waitExposed(w)
    settle(qtbot, 120)


def visible_in(widget, ancestor):
    """True when ``widget``'s whole rectangle is inside ``ancestor``'s (both shown)."""
    r = QtCore.QRect(widget.mapTo(ancestor, QtCore.QPoint(0, 0)), widget.size())
    return widget.isVisible() and ancestor.rect().contains(r)


def test_layout_at_1280x720(window, qtbot):
    """At 1280x720 the Fit button was below the fold, the M box clipped and the data and model
    panels of different widths."""
    w = window
    shown(qtbot, w, 1280, 720)
    assert visible_in(w.params.fit_button, w.params_dock)
    assert visible_in(w.params.fit_button, w)
    m = w.params.M_combo
    assert m.width() >= m.minimumSizeHint().width() and visible_in(m, w.params_scroll.viewport())
    widths = [p.getViewBox().width() for p in w.panels.plots]
    # 2 px: the grid layout hands out fractional remainders unevenly; before the fix the data
    # panel was narrower by its axis labels (~30 px)
    assert max(widths) - min(widths) <= 2.0, widths
    assert w.minimumWidth() > 0 and w.minimumHeight() > 0


def test_log_under_the_panels_at_1280x720(window, qtbot):
    """The log shared the right column with the parameters and showed one line at 1280x720;
    it now lies under the image panels with at least three lines, and the parameters keep the
    whole column (down past the log's top edge)."""
    w = window
    shown(qtbot, w, 1280, 720)
    assert w.dockWidgetArea(w.log_dock) == QtCore.Qt.BottomDockWidgetArea
    assert w.dockWidgetArea(w.params_dock) == QtCore.Qt.RightDockWidgetArea
    lines = w.log_view.viewport().height() / w.log_view.fontMetrics().lineSpacing()
    assert lines >= 3, lines
    log_top = w.log_dock.mapTo(w, QtCore.QPoint(0, 0)).y()
    params_bottom = w.params_dock.mapTo(w, QtCore.QPoint(0, w.params_dock.height())).y()
    panels_right = w.panels.mapTo(w, QtCore.QPoint(w.panels.width(), 0)).x()
    assert params_bottom > log_top + w.log_dock.height() // 2
    assert w.log_dock.mapTo(w, QtCore.QPoint(w.log_dock.width(), 0)).x() <= panels_right + 8


def test_views_refitted_after_resize(window, qtbot):
    """After a resize the image no longer filled the panels (the view was not refitted)."""
    w, s = window, window.state
    shown(qtbot, w, 1400, 900)
    ny, nx = s.data.shape
    for size in ((1000, 640), (1500, 800)):
        w.resize(*size)
        settle(qtbot, 120)
        (x0, x1), (y0, y1) = w.panels.data_plot.getViewBox().viewRange()
        # the whole image is shown, and it fills the panel along one axis (aspect locked);
        # 1 % for the view box's rounding to whole screen pixels
        assert x0 <= -0.5 + 0.01 * nx and x1 >= nx - 0.5 - 0.01 * nx
        assert y0 <= -0.5 + 0.01 * ny and y1 >= ny - 0.5 - 0.01 * ny
        assert min(abs((x1 - x0) / nx - 1), abs((y1 - y0) / ny - 1)) < 0.01
    # a zoom by the user is kept through a resize
    w.panels.data_plot.getViewBox().setRange(xRange=(100, 150), yRange=(100, 150), padding=0)
    w.panels._on_user_view()
    w.resize(1200, 760)
    settle(qtbot, 120)
    (x0, x1), (y0, y1) = w.panels.data_plot.getViewBox().viewRange()
    # still what the user saw (state.view, at least the square asked for): all of it shown,
    # filling the panel along one axis (1 %: rounding to whole screen pixels)
    (u0, u1), (v0, v1) = w.state.view
    assert u0 <= 100 and u1 >= 150 and v0 <= 100 and v1 >= 150
    tol = 0.01 * max(u1 - u0, v1 - v0)
    assert x0 <= u0 + tol and x1 >= u1 - tol and y0 <= v0 + tol and y1 >= v1 - tol
    assert min(abs((x1 - x0) - (u1 - u0)), abs((y1 - y0) - (v1 - v0))) <= tol
    assert x1 - x0 < 0.9 * nx or y1 - y0 < 0.9 * ny                # not the whole image


def test_readout_not_overwritten_at_800px(window, qtbot):
    """At 800 px the readout was overwritten by status messages and cut."""
    w = window
    shown(qtbot, w, 800, 600)
    w._on_hover((140, 100))
    w.statusBar().showMessage("Fit converged: chi2/nu = 1.2345 and a long status message", 0)
    settle(qtbot)
    r = w.readout
    assert r.isVisible() and r.text().startswith("x=140 y=100")
    rg = QtCore.QRect(r.mapTo(w, QtCore.QPoint(0, 0)), r.size())
    sb = w.statusBar()
    sbg = QtCore.QRect(sb.mapTo(w, QtCore.QPoint(0, 0)), sb.size())
    assert not rg.intersects(sbg) and w.rect().contains(rg)
    assert r.heightForWidth(r.width()) <= r.height()      # the whole text fits its lines


def test_window_fits_screen():
    assert fit_size((1560, 940), (1280, 720)) == (1228, 662)
    assert fit_size((1560, 940), (3840, 2160)) == (1560, 940)


SCALED = r"""
import json, sys
from PyQt5 import QtCore, QtWidgets
import mogviewer.gui.app as gui_app
from mogviewer.gui.main_window import MainWindow
app = gui_app.create_app()
w = MainWindow(settings=QtCore.QSettings(sys.argv[1], QtCore.QSettings.IniFormat))
w.show()
for _ in range(30):
    app.processEvents()
avail = w.screen().availableGeometry()
fb, vp = w.params.fit_button, w.params_dock
r = QtCore.QRect(fb.mapTo(vp, QtCore.QPoint(0, 0)), fb.size())
print(json.dumps(dict(
    scale=app.devicePixelRatio(), avail=[avail.width(), avail.height()],
    frame=[w.frameGeometry().width(), w.frameGeometry().height()],
    minimum=[w.minimumWidth(), w.minimumHeight()],
    fit_visible=bool(fb.isVisible() and vp.rect().contains(r)))))
"""


def test_window_not_larger_than_screen_at_150_percent(tmp_path):
    """With QT_SCALE_FACTOR=1.5 the window was larger than the screen and the Fit button out of
    sight. A fresh process (the scale factor is read when Qt starts), offscreen: its screen is
    800x600 device pixels, 533x400 at 150 %, smaller than a 1280x720 laptop at 150 % (853x480),
    so this is the harder case."""
    env = dict(os.environ, QT_SCALE_FACTOR="1.5", QT_QPA_PLATFORM="offscreen",
               PYQTGRAPH_QT_LIB="PyQt5")
    res = subprocess.run([sys.executable, "-c", SCALED, str(tmp_path / "s.ini")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["scale"] == 1.5
    aw, ah = out["avail"]
    assert out["frame"][0] <= aw and out["frame"][1] <= ah, out
    assert out["minimum"][0] <= aw and out["minimum"][1] <= ah, out
    assert out["fit_visible"], out


# ------------------------------------------------------------------------------ display
def test_colour_bars_show_end_values_and_units(window):
    w, s = window, window.state
    pan = w.panels
    lo, hi = s.levels
    lab = pan.cbar_data.axis.labelText
    assert f"{lo:.4g} \u2026 {hi:.4g} DNs" in lab          # the sample's BUNIT is DNs
    r = s.resid_range
    assert f"{-r:.4g} \u2026 {r:.4g} DNs" in pan.cbar_resid.axis.labelText
    assert pan.cbar_chi.axis.labelText == "-5 \u2026 5 \u03c3"
    ticks = [v for v, _ in pan.cbar_resid.axis._tickLevels[0]]
    assert ticks[0] == pytest.approx(-r) and ticks[-1] == pytest.approx(r)
    data_ticks = pan.cbar_data.axis._tickLevels[0]
    assert data_ticks[0][1] == f"{lo:.4g}" and data_ticks[-1][1] == f"{hi:.4g}"
    w.nsig_spin.setValue(3.0)
    assert pan.cbar_chi.axis.labelText == "-3 \u2026 3 \u03c3"
    assert f"{s.resid_range:.4g} DNs" in pan.cbar_resid.axis.labelText


def test_colour_bar_captions_have_no_scale_factor_on_small_values(window, tmp_path):
    # new-user report: on an image of values ~0.1 the residual bar's caption read
    # "-0.3724 ... 0.3724 image units (x0.001)": pyqtgraph appended its SI-prefix factor to a
    # caption that already gives the values in the image's unit
    w, s = window, window.state
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:48, :48]
    img = 0.3 * np.exp(-np.hypot(xx - 23.5, yy - 24.0) / 3.0) + 0.01 * rng.normal(size=(48, 48))
    path = tmp_path / "small.fits"
    fits.writeto(path, img.astype(np.float32))
    w.commands.open_image(str(path))
    assert s.data.shape == (48, 48) and s.resid_range < 0.5
    pan = w.panels
    for cb, unit in ((pan.cbar_data, "image units"), (pan.cbar_resid, "image units"),
                     (pan.cbar_chi, "\u03c3")):
        text = cb.axis.labelString()
        assert "(x" not in text, text
        assert unit in text, text


def test_percentile_presets(window):
    w, s = window, window.state
    pct = [w.limits_combo.itemText(i) for i in range(w.limits_combo.count())
           if w.limits_combo.itemText(i).endswith("%")]
    assert len(pct) >= 4 and tuple(LIMITS) == tuple(
        w.limits_combo.itemText(i) for i in range(w.limits_combo.count()))
    good = s.data.image[~s.data.mask]
    for p in PERCENTILES:
        w.limits_combo.setCurrentText(f"{p:g}%")
        lo, hi = np.percentile(good, [(100 - p) / 2, 100 - (100 - p) / 2])
        # the same numpy percentile as astropy's PercentileInterval: rounding only
        assert s.levels == pytest.approx((lo, hi), rel=1e-12)


def test_readout_ra_dec_sexagesimal(window):
    w, s = window, window.state
    text = w.readout_text((140, 100))
    ra, dec = s.data.wcs.all_pix2world([[140, 100]], 0)[0]
    hms, dms = engine.sexagesimal(ra, dec)
    assert f"RA={ra:.6f}" in text and f"({hms} {dms})" in text
    assert re.search(r"\d\d:\d\d:\d\d\.\d\d [+-]\d\d:\d\d:\d\d\.\d", text)
    # IC 3478: RA 12h32m44s, Dec +14d11m (NED); the cutout centre is within an arcminute
    assert hms.startswith("12:32:4") and dms.startswith("+14:11:")


def test_panels_png_rendered_from_arrays_without_handles(window, qtbot, tmp_path):
    """'Panels as PNG' was a screen grab of the panels, handles included."""
    w, s = window, window.state
    w.components_action.setChecked(True)          # overlays on screen must not be exported
    out = tmp_path / "panels.png"
    assert w.commands.export_png(out)
    img = QtGui.QImage(str(out))
    ny, nx = s.data.shape
    zoom = max(1, math.ceil(320 / max(nx, ny)))
    gap, title_h = 12, 24
    assert img.width() == 4 * nx * zoom + 5 * gap
    arr = np.frombuffer(img.convertToFormat(QtGui.QImage.Format_RGB888).constBits()
                        .asstring(img.width() * img.height() * 3), np.uint8)
    rgb = arr.reshape(img.height(), img.width(), 3)
    green = np.all(np.abs(rgb.astype(int) - (80, 255, 120)) <= 10, axis=-1)
    assert not green.any()                         # no ellipse, handles or outlines

    def png_pixel(panel, ix, iy):
        x = gap + panel * (nx * zoom + gap) + ix * zoom + zoom // 2
        y = title_h + (ny - 1 - iy) * zoom + zoom // 2    # image y up, PNG rows down
        return rgb[y, x]

    lut = colormap(s.display.cmap).getLookupTable(0.0, 1.0, 256)
    mask = s.data.mask
    iy, ix = np.argwhere(~mask)[len(np.argwhere(~mask)) // 3]
    t = float(w.panels._stretched(s.data.image[iy, ix:ix + 1])[0])
    assert np.array_equal(png_pixel(0, ix, iy), lut[int(round(t * 255))][:3])
    r = s.resid_range
    dv = colormap(DIVERGING).getLookupTable(0.0, 1.0, 256)
    tr = np.clip((s.images.residual[iy, ix] + r) / (2 * r), 0, 1)
    assert np.array_equal(png_pixel(2, ix, iy), dv[int(round(tr * 255))][:3])
    my, mx = np.argwhere(mask)[0]
    a = MASK_RGBA[3] / 255
    # a masked pixel: the colour map's value blended with slate blue at the mask's alpha
    tm = float(w.panels._stretched(s.data.image[my, mx:mx + 1])[0])
    want = (1 - a) * lut[int(round(tm * 255))][:3] + a * np.array(MASK_RGBA[:3])
    assert np.all(np.abs(png_pixel(0, mx, my) - want) <= 1.0)   # 1: rounding to 8 bits
    # the same file whatever the window's size: not a grab of the screen
    w.resize(900, 640)
    settle(qtbot)
    out2 = tmp_path / "panels2.png"
    assert w.commands.export_png(out2)
    assert out2.read_bytes() == out.read_bytes()


# ------------------------------------------------------------------------------ help, start
def test_quick_start_in_help(window, qtbot):
    w = window
    help_menu = [m for m in w.menuBar().findChildren(QtWidgets.QMenu)
                 if m.title() == "&Help"][0]
    assert w.quick_start_action in help_menu.actions()
    w.quick_start_action.trigger()
    dlg = w._quick_start
    qtbot.waitExposed(dlg)
    text = dlg.text()
    for word in ("Open", "PSF", "Fit", "Esc", "Export", "zeropoint"):
        assert word in text
    dlg.close()


def test_feedback_while_the_renderer_compiles(qtbot, settings, errors):
    """The first start after install showed nothing for ~30 s (numba compiling)."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    release = threading.Event()
    th = threading.Thread(target=release.wait, daemon=True)   # stands for render.warmup
    th.start()
    opened = []
    w.wait_for_warmup(th, then=lambda: opened.append(True), poll_ms=20)
    qtbot.wait(100)
    assert not opened                              # files wait for the renderer ...
    assert w.startup_progress.isVisible()          # ... and the user sees why
    assert "numba" in w.statusBar().currentMessage()
    assert "Preparing the renderer" in w.log_view.toPlainText()
    release.set()
    qtbot.waitUntil(lambda: bool(opened), timeout=5000)
    assert not w.startup_progress.isVisible()
    assert "Renderer ready" in w.statusBar().currentMessage()
    # a warm cache (the thread already done): the files open at once
    w.wait_for_warmup(th, then=lambda: opened.append(True))
    assert len(opened) == 2
