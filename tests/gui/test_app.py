"""The desktop app, driven as a user would (pytest-qt, offscreen)."""

import csv
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PyQt5 import QtCore, QtGui, QtWidgets

from mogviewer import fitting, profiles
from mogviewer.gui import app as gui_app
from mogviewer.gui import engine
from mogviewer.gui.ellipse_handle import ellipse_from_roi, roi_state_for
from mogviewer.gui.main_window import MainWindow

FIT_TIMEOUT_MS = 60000


# ------------------------------------------------------------------------------ helpers
def send_mouse(widget, kind, pos, button, buttons):
    ev = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), button, buttons, QtCore.Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, ev)


def mouse_drag(qtbot, view, scene_from, scene_to, steps=8):
    """Press, move and release the left button with real QMouseEvents on a GraphicsView."""
    vp = view.viewport()
    p0 = view.mapFromScene(scene_from)
    p1 = view.mapFromScene(scene_to)
    L = QtCore.Qt.LeftButton
    send_mouse(vp, QtCore.QEvent.MouseMove, p0, QtCore.Qt.NoButton, QtCore.Qt.NoButton)
    send_mouse(vp, QtCore.QEvent.MouseButtonPress, p0, L, L)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        p = QtCore.QPointF(p0) + (QtCore.QPointF(p1) - QtCore.QPointF(p0)) * float(t)
        qtbot.wait(15)      # pyqtgraph drops moves closer than 1/mouseRateLimit (10 ms)
        send_mouse(vp, QtCore.QEvent.MouseMove, p, QtCore.Qt.NoButton, L)
    qtbot.wait(5)
    send_mouse(vp, QtCore.QEvent.MouseButtonRelease, p1, L, QtCore.Qt.NoButton)
    qtbot.wait(10)


def wait_fit(qtbot, w, start):
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS) as blocker:
        start()
    return blocker.args[0]


# ------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("q", [1.0, 0.7, 0.2])
@pytest.mark.parametrize("angle", [0.0, 30.0, 95.0, 179.0])
def test_roi_geometry_round_trip(q, angle):
    pos, size, ang = roi_state_for(10.0, -3.0, 7.0, q, angle)
    e = ellipse_from_roi(pos, size, ang)
    assert e["x"] == pytest.approx(10.0) and e["y"] == pytest.approx(-3.0)
    assert e["re"] == pytest.approx(7.0) and e["q"] == pytest.approx(q)
    if q < 1:
        assert (e["angle"] - angle + 90) % 180 - 90 == pytest.approx(0.0, abs=1e-9)


def test_roi_swaps_axes_when_minor_exceeds_major():
    e = ellipse_from_roi((0.0, 0.0), (4.0, 10.0), 10.0)
    assert e["re"] == pytest.approx(5.0) and e["q"] == pytest.approx(0.4)
    assert e["angle"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------ opening
def test_sample_opens_with_psf_model_and_ellipse(window):
    w = window
    s = w.state
    assert s.data.shape == (256, 256)
    assert s.data.mask.sum() > 0
    assert s.psf_model.n_components >= 1
    assert s.images is not None and np.isfinite(s.images.chi2)
    assert "ic3478rss_256.fits" in w.windowTitle()
    e = w.panels.ellipse.ellipse()
    p = s.params
    assert e["x"] == pytest.approx(p.x, abs=1e-6) and e["y"] == pytest.approx(p.y, abs=1e-6)
    assert e["re"] == pytest.approx(p.re, rel=1e-6) and e["q"] == pytest.approx(p.q, rel=1e-6)
    # the ellipse sits on the galaxy: near the centre of the cutout
    assert abs(p.x - 128) < 5 and abs(p.y - 128) < 5
    # the panels show images of the right shape; masked pixels are painted
    assert w.panels.data_item.image.shape == (256, 256)
    assert w.panels.model_item.image.shape == (256, 256)
    mask_rgba = w.panels.mask_items[0].image
    assert mask_rgba[s.data.mask][:, 3].min() > 0 and mask_rgba[~s.data.mask][:, 3].max() == 0
    # PSF quality in the status bar, the load in the log
    assert "K =" in w.psf_status.text()
    assert "Loaded image" in w.log_view.toPlainText()


def test_sample_found_from_another_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    files = engine.sample_files()
    assert files is not None and all(f.is_file() for f in files)


def test_build_window_from_args(qtbot, settings, errors, sample_files):
    img, mask, psf = sample_files
    args = gui_app.parse_args([str(img), "--mask", str(mask)])
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    assert w.commands.open_image(args.file, options={"mask": args.mask})
    assert w.state.data.mask.sum() > 0
    assert w.state.psf_model is None and w.state.images is not None
    assert not errors


# ------------------------------------------------------------------------------ ellipse
def test_drag_major_axis_handle_with_mouse(window, qtbot):
    w, s = window, window.state
    # zoom on the galaxy so the handles are far apart on screen
    w.state.set_view(((60, 196), (60, 196)))          # as a zoom with the mouse does
    qtbot.wait(30)
    p0 = s.params
    renders0 = s.render_count
    model0 = np.array(s.images.model)
    h = w.panels.ellipse.major_handle
    start = h.scenePos()
    # drag the end of the major axis outwards along the axis by ~12 px of image
    t = math.radians(p0.angle)
    vb = w.panels.data_plot.getViewBox()
    tip = vb.mapSceneToView(start)
    target = vb.mapViewToScene(QtCore.QPointF(tip.x() + 12 * math.cos(t),
                                              tip.y() + 12 * math.sin(t)))
    mouse_drag(qtbot, w.panels.view, start, target)
    qtbot.waitUntil(lambda: s.params.re > p0.re + 3, timeout=3000)
    p1 = s.params
    assert p1.re == pytest.approx(p0.re + 12, abs=1.0)  # the handle follows the mouse
    assert p1.x == pytest.approx(p0.x, abs=0.5) and p1.y == pytest.approx(p0.y, abs=0.5)
    assert float(w.params.spins["re"].text()) == pytest.approx(p1.re, abs=1e-3)
    assert s.render_count > renders0
    assert not np.allclose(s.images.model, model0)
    stack = w.commands.undo_stack
    assert stack.count() >= 1 and "Drag" in stack.text(stack.index() - 1)
    stack.undo()
    assert s.params == p0
    assert w.panels.ellipse.ellipse()["re"] == pytest.approx(p0.re, rel=1e-6)


def test_handles_shrink_on_a_small_ellipse_and_grow_back_when_zoomed(window, qtbot):
    """Four 9 px handles covered a galaxy of r_e ~ 15 screen px and hid its centre: on screen
    a handle is now at most a third of the semi-minor axis (3.5-9 px)."""
    w, s = window, window.state
    roi = w.panels.ellipse
    vb = w.panels.data_plot.getViewBox()

    def minor_px():
        return min(abs(roi.size()[0]), abs(roi.size()[1])) / 2 / max(vb.viewPixelSize())

    s.set_params(s.params.replace(re=6.0, q=0.6))       # small on screen, whole image shown
    qtbot.wait(30)
    radii = {h["item"].radius for h in roi.handles}
    assert minor_px() < 27 and len(radii) == 1
    assert radii.pop() == pytest.approx(max(roi.HANDLE_MIN, minor_px() / 3), abs=0.3)
    w.state.set_view(((s.params.x - 12, s.params.x + 12), (s.params.y - 12, s.params.y + 12)))
    qtbot.wait(30)                                       # zoomed: the ellipse is large
    assert minor_px() > 27
    assert all(h["item"].radius == roi.HANDLE_MAX for h in roi.handles)


def test_drag_body_with_mouse_moves_centre(window, qtbot):
    w, s = window, window.state
    w.state.set_view(((60, 196), (60, 196)))          # as a zoom with the mouse does
    qtbot.wait(30)
    p0 = s.params
    vb = w.panels.data_plot.getViewBox()
    # grab the centre handle and move it by (+10, -5) pixels
    start = w.panels.ellipse.centre_handle.scenePos()
    c = vb.mapSceneToView(start)
    target = vb.mapViewToScene(QtCore.QPointF(c.x() + 10, c.y() - 5))
    mouse_drag(qtbot, w.panels.view, start, target)
    qtbot.waitUntil(lambda: abs(s.params.x - p0.x - 10) < 0.5, timeout=3000)
    assert s.params.y == pytest.approx(p0.y - 5, abs=0.5)
    assert s.params.re == pytest.approx(p0.re, rel=1e-6)


def test_programmatic_roi_moves_update_params_and_model(window, qtbot):
    w, s = window, window.state
    roi = w.panels.ellipse
    n0, r0 = w.params.n_param_updates, s.render_count
    model0 = np.array(s.images.model)
    pos, size, ang = roi_state_for(120.0, 130.0, 20.0, 0.5, 45.0)
    roi.setAngle(ang)
    roi.setSize(size)
    roi.setPos(pos)           # each emits sigRegionChanged like a drag
    qtbot.wait(80)            # the throttle lets the last request through
    p = s.params
    assert (p.x, p.y) == pytest.approx((120.0, 130.0), abs=1e-6)
    assert p.re == pytest.approx(20.0) and p.q == pytest.approx(0.5)
    assert p.angle == pytest.approx(45.0)
    assert w.params.spins["angle"].value() == pytest.approx(45.0)
    assert w.params.n_param_updates > n0
    assert s.render_count > r0 and s.images.params == p
    assert not np.allclose(s.images.model, model0)


def test_edit_parameter_moves_ellipse_without_feedback(window, qtbot):
    w, s = window, window.state
    roi = w.panels.ellipse
    syncs0, renders0 = roi.n_sync, s.render_count
    dragged = []
    roi.dragged.connect(dragged.append)
    sp = w.params.spins["x"]
    sp.lineEdit().selectAll()
    qtbot.keyClicks(sp.lineEdit(), "100.5")
    qtbot.keyClick(sp.lineEdit(), QtCore.Qt.Key_Return)
    qtbot.wait(60)
    assert s.params.x == pytest.approx(100.5)
    assert roi.ellipse()["x"] == pytest.approx(100.5, abs=1e-6)
    assert roi.n_sync == syncs0 + 1                     # moved once ...
    assert not dragged                                  # ... without echoing as a drag
    assert 1 <= s.render_count - renders0 <= 2          # one (throttled) re-render
    # angle and q edits rotate / squash the ellipse
    w.params.spins["angle"].setValue(12.0)
    w.params.spins["q"].setValue(0.4)
    e = roi.ellipse()
    assert e["angle"] == pytest.approx(12.0) and e["q"] == pytest.approx(0.4)
    assert not dragged
    # consecutive edits of one parameter merge into one undo step; undo goes back step by step
    q_before = w.commands.undo_stack.command(w.commands.undo_stack.count() - 1).old.q
    w.params.spins["q"].setValue(0.45)
    w.params.spins["q"].setValue(0.5)
    n = w.commands.undo_stack.count()
    w.commands.undo_stack.undo()
    assert s.params.q == pytest.approx(q_before) and s.params.angle == pytest.approx(12.0)
    assert roi.ellipse()["q"] == pytest.approx(q_before)
    w.commands.undo_stack.undo()
    assert s.params.angle != pytest.approx(12.0)
    assert w.commands.undo_stack.count() == n


def test_invalid_edit_is_refused_quietly(window):
    w, s = window, window.state
    p0 = s.params
    w.commands.edit_param("q", 1.5)        # q must be <= 1
    assert s.params == p0
    assert w.params.spins["q"].value() == pytest.approx(p0.q)


def test_profile_and_M_controls(window):
    w, s = window, window.state
    pp = w.params
    i = pp.profile_combo.findData("dev")
    r0 = s.render_count
    pp.profile_combo.setCurrentIndex(i)
    assert s.profile == "dev"
    items = [pp.M_combo.itemData(k) for k in range(pp.M_combo.count())]
    assert items == profiles.available("dev")
    assert s.M in items
    m = profiles.get_mixture("dev", s.M)
    assert f"{m.badness:.2g}" in pp.quality_label.text()
    assert f"{m.flux_fraction:.4f}" in pp.quality_label.text()
    assert s.render_count > r0
    pp.M_combo.setCurrentIndex(0)
    assert s.M == items[0]


def test_app_opens_a_band_of_a_multiband_file(qtbot, settings, errors):
    # new-user report: the app could only open the first band of the DECaLS DR9 cutout
    from mogviewer.gui.app import build_window, parse_args
    f = "tests/data/real/pysersic-decals-dr9/cutout_59.1067_-30.4848.fits"
    w = build_window(parse_args([f, "--band", "z"]), settings=settings)
    qtbot.addWidget(w)
    assert w.state.data.band == "z" and w.state.data.hdu == 5 and not errors
    w.commands.runner.shutdown()


def test_profile_change_is_undoable(window):
    w, s = window, window.state
    pp = w.params
    start = (s.profile, s.M)
    pp.profile_combo.setCurrentIndex(pp.profile_combo.findData("dev"))
    changed = (s.profile, s.M)
    assert changed[0] == "dev" and changed != start
    count = w.commands.undo_stack.count()
    w.commands.undo_stack.undo()
    assert w.commands.undo_stack.count() == count  # syncing the panel pushed nothing new
    assert (s.profile, s.M) == start
    assert pp.profile_combo.currentData() == start[0]  # the panel follows
    w.commands.undo_stack.redo()
    assert (s.profile, s.M) == changed


def test_sersic_profile_with_n_spin(window, qtbot):
    # issue 7: profile 'ser' in the app, with a spin box for n (fixed or free)
    w, s = window, window.state
    pp = w.params
    assert not pp.spins["n"].isEnabled()  # exp: n is not a parameter
    pp.profile_combo.setCurrentIndex(pp.profile_combo.findData("ser"))
    assert s.profile == "ser" and pp.spins["n"].isEnabled() and "n" in s.free
    assert [pp.M_combo.itemData(k) for k in range(pp.M_combo.count())] == [10]
    r0 = s.render_count
    pp.spins["n"].setValue(3.0)
    qtbot.waitUntil(lambda: s.render_count > r0, timeout=2000)
    assert s.params.n == pytest.approx(3.0)
    # fixing n keeps it at 3 through a fit; freeing it lets the fit move it (IC 3478: ~2.4)
    pp.fix_boxes["n"].setChecked(True)
    res = wait_fit(qtbot, w, w.commands.start_fit)
    assert res.params.n == pytest.approx(3.0) and "n" not in res.free
    # edit n while it is fixed: the fit keeps the edited value
    pp.spins["n"].setValue(2.0)
    res = wait_fit(qtbot, w, w.commands.start_fit)
    assert res.params.n == pytest.approx(2.0)
    pp.fix_boxes["n"].setChecked(False)
    res = wait_fit(qtbot, w, w.commands.start_fit)
    assert "n" in res.free and 1.8 < res.params.n < 3.0
    assert res.errors()["n"] > 0 and pp.err_labels["n"].text().startswith("\u00b1")


def test_fixed_free_and_sky(window):
    w, s = window, window.state
    w.params.fix_boxes["q"].setChecked(True)
    assert "q" not in s.problem().free
    w.params.sky_box.setChecked(False)
    assert s.problem().sky == "none" and "sky" not in s.problem().free
    assert not w.params.spins["sky"].isEnabled()
    w.params.sky_box.setChecked(True)
    assert "sky" in s.problem().free


def test_components_overlay(window):
    w, s = window, window.state
    w.params.components_box.setChecked(True)
    ov = w.panels.components
    assert ov.isVisible()
    xs, ys = ov.getData()
    assert np.isfinite(xs).sum() == s.M * ov.N_POINTS


def test_reset_start_from_moments(window):
    w, s = window, window.state
    start = s.params
    w.params.spins["re"].setValue(5.0)
    assert s.params.re == pytest.approx(5.0)
    w.params.reset_button.click()
    assert s.params == start


# ------------------------------------------------------------------------------ fit
def test_fit_matches_direct_call_then_undo(window, qtbot):
    w, s = window, window.state
    start = s.params
    problem = s.problem()
    progress = []
    w.commands.fit_progressed.connect(progress.append)
    result = wait_fit(qtbot, w, lambda: qtbot.mouseClick(w.params.fit_button,
                                                         QtCore.Qt.LeftButton))
    assert len(progress) > 1
    assert result.status == "converged"
    direct = fitting.fit(problem, start)
    for name in ("flux", "x", "y", "re", "q", "angle", "sky"):
        assert getattr(result.params, name) == pytest.approx(getattr(direct.params, name),
                                                             rel=1e-7, abs=1e-9)
    assert result.chi2 == pytest.approx(direct.chi2, rel=1e-9)
    assert s.params == result.params and s.result is result
    # panel: values, errors, chi2/nu
    errs = result.errors()
    assert w.params.err_labels["x"].text() == "\u00b1 " + format(errs["x"], ".2g")
    assert f"{result.chi2_nu:.4f}" in w.params.chi2_label.text()
    assert "converged" in w.params.status_label.text()
    # a converged fit is not red: amber with flags (this one, chi^2/nu > threshold), plain
    # without; red is for the statuses that did not converge
    from mogviewer.gui.params_panel import status_style
    assert result.status == "converged"
    assert w.params.status_label.styleSheet() == status_style("converged", bool(result.flags))
    assert status_style("converged", ["ERRORS_UNDERESTIMATED"]) == "color: #b36b00;"
    assert status_style("converged", []) == ""
    assert {status_style(st, []) for st in ("failed", "cancelled", "max_evaluations")} == {
        "color: #a33;"}
    assert w.params.spins["re"].value() == pytest.approx(result.params.re)
    assert w.panels.ellipse.ellipse()["re"] == pytest.approx(result.params.re, rel=1e-6)
    assert s.images.params == result.params
    assert s.images.chi2 == pytest.approx(result.chi2, rel=1e-6)
    assert "Fit converged" in w.log_view.toPlainText()
    # Ctrl+Z restores the start
    w.activateWindow()
    qtbot.keyClick(w, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    qtbot.waitUntil(lambda: s.params == start, timeout=2000)
    assert s.result is None and w.params.err_labels["x"].text() == ""
    w.commands.undo_stack.redo()
    assert s.params == result.params and s.result is result


def test_fit_with_F_key(window, qtbot):
    w = window
    w.activateWindow()
    w.panels.view.setFocus()
    result = wait_fit(qtbot, w, lambda: qtbot.keyClick(w.panels.view, QtCore.Qt.Key_F))
    assert result.status == "converged"


def test_cancel_mid_fit(window, qtbot, monkeypatch):
    w, s = window, window.state
    real = engine.run_fit

    def slow_fit(problem, start, *, callback, should_stop):
        def cb(snap):
            callback(snap)
            time.sleep(0.15)       # give the test time to press Esc mid-fit
        return real(problem, start, callback=cb, should_stop=should_stop)

    monkeypatch.setattr(engine, "run_fit", slow_fit)
    # start far from the optimum so the fit needs many iterations
    s.set_params(s.params.replace(re=s.params.re * 0.3, q=0.95), origin="edit")
    with qtbot.waitSignal(w.commands.fit_progressed, timeout=FIT_TIMEOUT_MS):
        assert w.commands.start_fit()
    assert s.busy and w.params.cancel_button.isEnabled()
    assert not w.params.fit_button.isEnabled()
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS) as blocker:
        qtbot.keyClick(w, QtCore.Qt.Key_Escape)
    result = blocker.args[0]
    assert result.status == "cancelled"
    assert result.flags & engine.FitFlags.CANCELLED
    assert all(math.isfinite(v) for v in s.params.as_dict().values())
    # the window still responds
    assert not s.busy and w.params.fit_button.isEnabled()
    w.params.spins["x"].setValue(110.0)
    assert s.params.x == pytest.approx(110.0)


def test_window_responds_during_fit(window, qtbot, monkeypatch):
    w = window
    real = engine.run_fit

    def slow_fit(problem, start, *, callback, should_stop):
        def cb(snap):
            callback(snap)
            time.sleep(0.1)
        return real(problem, start, callback=cb, should_stop=should_stop)

    monkeypatch.setattr(engine, "run_fit", slow_fit)
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS):
        w.commands.start_fit()
        t0 = time.perf_counter()
        qtbot.wait(50)                     # the event loop turns while the fit runs
        assert time.perf_counter() - t0 < 1.0
        assert w.readout_text((5, 5)).startswith("x=5")
        w.commands.start_fit()                      # a second Fit while one runs is ignored
    assert not w.commands.runner.running


# ------------------------------------------------------------------------------ errors
def test_corrupt_file_shows_dialog_and_keeps_image(window, tmp_path, errors):
    w, s = window, window.state
    data0, img0 = s.data, np.array(w.panels.data_item.image)
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b"\0garbage" * 50)
    assert not w.commands.open_file(bad, kind="image")
    assert errors and "Cannot open" in errors[-1][0] and "broken.fits" in errors[-1][1]
    assert s.data is data0
    assert np.array_equal(w.panels.data_item.image, img0)
    # the same through drag and drop (routing by content), and a missing file
    n = len(errors)
    w.commands.open_dropped([str(bad)])
    w.commands.open_file(tmp_path / "missing.fits", kind="image")
    assert len(errors) == n + 2 and s.data is data0
    assert "ERROR" in w.log_view.toPlainText()


def test_corrupt_psf_keeps_psf(window, qtbot, tmp_path, errors):
    w, s = window, window.state
    psf0 = s.psf_model
    bad = tmp_path / "psf.json"
    bad.write_text("{not json")
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=10000):
        w.commands.open_psf(bad)
    assert errors and "PSF" in errors[-1][0]
    assert s.psf_model is psf0


def test_excepthook_shows_dialog(window, errors):
    prev = gui_app.install_excepthook(window)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.excepthook = prev
    assert errors and "boom" in errors[-1][1]
    assert "Traceback" in window.log_view.toPlainText()


# ------------------------------------------------------------------------------ readout
def test_status_bar_readout_at_known_pixel(window, qtbot):
    w, s = window, window.state
    ix, iy = 140, 100
    text = w.readout_text((ix, iy))
    im = s.images
    assert f"x={ix} y={iy}" in text and f"(FITS {ix + 1},{iy + 1})" in text
    assert f"data={s.data.image[iy, ix]:.5g}" in text
    assert f"model={im.model[iy, ix]:.5g}" in text
    assert f"resid={im.residual[iy, ix]:.5g}" in text
    assert f"chi={im.chi[iy, ix]:.3f}" in text
    ra, dec = s.data.wcs.all_pix2world([[ix, iy]], 0)[0]
    assert f"RA={ra:.6f}" in text and f"Dec={dec:+.6f}" in text
    # a masked pixel says so
    my, mx = np.argwhere(s.data.mask)[0]
    assert "[masked]" in w.readout_text((int(mx), int(my)))
    # hovering the data panel with the mouse fills the status bar
    vb = w.panels.data_plot.getViewBox()
    scene = vb.mapViewToScene(QtCore.QPointF(ix, iy))
    vp = w.panels.view.viewport()
    send_mouse(vp, QtCore.QEvent.MouseMove, w.panels.view.mapFromScene(scene),
               QtCore.Qt.NoButton, QtCore.Qt.NoButton)
    qtbot.waitUntil(lambda: f"x={ix} y={iy}" in w.readout.text(), timeout=2000)


# ------------------------------------------------------------------------------ export
def test_exports(window, qtbot, tmp_path):
    w, s = window, window.state
    assert not w.export_actions["csv"].isEnabled()          # nothing fitted yet
    # region and JSON of the unfitted ellipse
    assert w.commands.export_region(tmp_path / "start.reg")
    assert "ellipse(" in (tmp_path / "start.reg").read_text()
    result = wait_fit(qtbot, w, w.commands.start_fit)
    assert w.export_actions["csv"].isEnabled()
    out = tmp_path / "fits.csv"
    assert w.commands.export_csv(out)
    assert w.commands.export_csv(out, append=True)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert len(rows) == 2
    assert float(rows[0]["x"]) == pytest.approx(result.params.x)
    assert float(rows[1]["re_pix"]) == pytest.approx(result.params.re)
    # the identity columns as `mogviewer fit` fills them for a file's target (they were empty)
    assert rows[0]["object_id"] == str(s.image_path) and s.image_path
    assert (rows[0]["source_id"], rows[0]["is_target"], rows[0]["kind"]) == ("0", "True",
                                                                             "galaxy")
    reg = tmp_path / "fit.reg"
    assert w.commands.export_region(reg)
    txt = reg.read_text()
    assert f"{result.params.x + 1:.6f}" in txt and "fk5" in txt
    js = tmp_path / "fit.json"
    assert w.commands.export_model_json(js)
    saved = engine.read_model_json(js)
    assert saved.params == result.params and saved.profile == s.profile and saved.M == s.M
    blk = tmp_path / "blk.fits"
    assert w.commands.export_imgblock(blk)
    from astropy.io import fits
    with fits.open(blk) as hdul:
        names = [h.name for h in hdul]
        assert {"DATA", "MODEL", "RESIDUAL", "CHI"} <= set(names)
    png = tmp_path / "panels.png"
    assert w.commands.export_png(png)
    assert png.stat().st_size > 1000
    # load the model back after moving away from it
    w.params.spins["x"].setValue(100.0)
    assert w.commands.open_file(js)                       # routed by content: a model
    assert s.params == result.params


def test_export_failure_is_a_dialog(window, tmp_path, errors):
    w = window
    target = tmp_path / "no" / "such" / "dir" / "x.reg"
    assert not w.commands.export_region(target)
    assert errors and "export" in errors[-1][0].lower()


# ------------------------------------------------------------------------------ PSF dialog
def test_psf_dialog_shows_and_refits(window, qtbot):
    w, s = window, window.state
    dlg = w.show_psf_dialog()
    qtbot.waitExposed(dlg)
    assert dlg.items[0].image is not None and dlg.items[2].image is not None
    labels = [dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())]
    assert "max |residual| / peak" in labels
    assert "second-moment FWHM ratio (mixture/stamp)" in labels
    dlg.K_combo.setCurrentIndex(dlg.K_combo.findData(1))
    qtbot.waitUntil(lambda: dlg.refit_button.isEnabled(), timeout=2000)
    dlg.refit()
    qtbot.waitUntil(lambda: dlg.preview is not None and dlg.preview.n_components == 1,
                    timeout=60000)
    assert dlg.use_button.isEnabled()
    r0 = s.render_count
    dlg.use_button.click()
    assert s.psf_model.n_components == 1 and s.render_count > r0
    dlg.close()


# ------------------------------------------------------------------------------ routing
def test_files_are_routed_by_content(sample_files, tmp_path):
    img, mask, psf = sample_files
    assert engine.classify_file(img) == "image"
    assert engine.classify_file(psf, current_shape=(256, 256)) == "psf"
    assert engine.classify_file(mask, current_shape=(256, 256)) == "mask"
    js = tmp_path / "m.json"
    js.write_text('{"format": "mogviewer-model", "params": {}}')
    assert engine.classify_file(js) == "model"
    mix = tmp_path / "p.json"
    mix.write_text('{"format": "mogviewer-psf-mixture", "amps": [1]}')
    assert engine.classify_file(mix) == "psf"


def test_drop_mask_file_routes_to_mask(window, sample_files):
    w, s = window, window.state
    img, mask, psf = sample_files
    s0 = s.data
    w.commands.open_dropped([str(mask)])
    assert s.data is not s0 and s.data.mask.sum() == s0.mask.sum()
    assert "recognised as mask" in w.log_view.toPlainText()


# ------------------------------------------------------------------------------ settings
def test_settings_persist(qtbot, settings, errors, tmp_path, sample_files):
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.stretch_combo.setCurrentText("log")
    w.cmap_combo.setCurrentText("viridis")
    w.params.profile_combo.setCurrentIndex(w.params.profile_combo.findData("lux"))
    w.commands.add_recent("image", sample_files[0])
    w.close()
    w2 = MainWindow(settings=settings)
    qtbot.addWidget(w2)
    assert w2.panels.settings.stretch == "log" and w2.panels.settings.cmap == "viridis"
    assert w2.state.profile == "lux"
    assert w2.commands.recent_files()[0] == ("image", str(sample_files[0].resolve()))
    texts = [a.text() for a in w2.recent_menu.actions()]
    assert any("ic3478rss_256.fits" in t for t in texts)


def test_display_controls(window):
    w = window
    pan = w.panels
    for stretch in ("linear", "sqrt", "log", "asinh"):
        w.stretch_combo.setCurrentText(stretch)
        assert pan.settings.stretch == stretch
        img = pan.data_item.image
        assert np.all((img >= 0) & (img <= 1))
    levels = {}
    for lim in ("min/max", "zscale", "99.5%"):
        w.limits_combo.setCurrentText(lim)
        levels[lim] = pan.levels
    d = w.state.data.image[~w.state.data.mask]
    assert levels["min/max"] == pytest.approx((d.min(), d.max()))
    assert levels["99.5%"][1] < levels["min/max"][1]
    w.limits_combo.setCurrentText("manual")
    assert w.lo_spin.isEnabled()
    w.hi_spin.setValue(50.0)
    w.lo_spin.setValue(-5.0)
    assert pan.levels == (-5.0, 50.0)
    w.nsig_spin.setValue(3.0)
    assert pan.chi_item.levels[1] == pytest.approx(3.0)
    w.mask_box.setChecked(False)
    assert not pan.mask_items[0].isVisible()


def test_drop_event_routes_files(window, qtbot, sample_files):
    w, s = window, window.state
    img, mask, psf = sample_files
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(mask))])
    pos = QtCore.QPointF(200, 200)
    enter = QtGui.QDragEnterEvent(pos.toPoint(), QtCore.Qt.CopyAction, mime,
                                  QtCore.Qt.LeftButton, QtCore.Qt.NoModifier)
    w.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(pos, QtCore.Qt.CopyAction, mime, QtCore.Qt.LeftButton,
                            QtCore.Qt.NoModifier)
    d0 = s.data
    w.dropEvent(drop)
    assert s.data is not d0 and "recognised as mask" in w.log_view.toPlainText()


def test_build_window_without_args_opens_sample(qtbot, settings, errors):
    w = None
    w = gui_app.build_window(gui_app.parse_args([]), settings=settings)
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.state.psf_model is not None, timeout=60000)
    assert w.state.data.shape == (256, 256) and not errors
    assert gui_app.engine_icon() is not None


def test_throwaway_settings_never_touch_a_device(qtbot):
    # newuser review, 2026-12-04: sample_window (screenshots, the GUI bench) used
    # QSettings(os.devnull); Qt saves by renaming a temporary file over the path, which turned
    # /dev/null into a regular file on a machine where the scripts ran as root
    import stat

    from mogviewer.gui.app import throwaway_settings
    st = throwaway_settings()
    st.setValue("dirs/last", "/somewhere")
    st.sync()
    path = Path(st.fileName())
    assert path.is_file() and "mogviewer-settings-" in str(path.parent)
    assert path.parent != Path(os.devnull).parent
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
