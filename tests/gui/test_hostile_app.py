"""Issue 15 in the app: no export over an input, mogviewer errors as plain messages, the Fit
button in view after a fit (pytest-qt, offscreen)."""

import hashlib
import json
import sys

import numpy as np
import pytest
from astropy.io import fits
from PyQt5 import QtCore

from mogviewer.errors import FitError, ModelFileError
from mogviewer.gui import engine

FIT_TIMEOUT_MS = 60000


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fit_now(qtbot, w):
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS) as blocker:
        assert w.commands.start_fit()
    return blocker.args[0]


@pytest.fixture
def fitted(window, qtbot):
    fit_now(qtbot, window)
    return window


# ------------------------------------------------------------------------------ exports
def test_session_inputs_are_every_opened_file(window, sample_files):
    img, mask, psf = sample_files
    got = {str(p) for p in window.state.input_files()}
    assert {str(img), str(mask), str(psf)} <= got


@pytest.mark.parametrize("kind,which", [("csv", 0), ("imgblock", 2), ("region", 1),
                                        ("json", 0), ("png", 2)])
def test_no_export_overwrites_an_input(fitted, errors, sample_files, kind, which):
    """Each export aimed at the image, its mask or the PSF is refused with a dialog naming the
    input, and the input keeps every byte."""
    w = fitted
    target = sample_files[which]
    before = digest(target)
    export = {"csv": w.commands.export_csv, "imgblock": w.commands.export_imgblock,
              "region": w.commands.export_region, "json": w.commands.export_model_json,
              "png": w.commands.export_png}[kind]
    assert export(str(target)) is False
    assert digest(target) == before
    title, text = errors[-1]
    assert title.startswith("Cannot export")
    assert "input file" in text and "Traceback" not in text


def test_no_export_overwrites_an_input_by_another_spelling(fitted, errors, sample_files,
                                                            tmp_path):
    """A symbolic link to the image and a ``dir/../`` path are the same file."""
    img = sample_files[0]
    before = digest(img)
    link = tmp_path / "link.fits"
    link.symlink_to(img)
    detour = img.parent / ".." / img.parent.name / img.name
    for path in (link, detour):
        assert fitted.commands.export_imgblock(str(path)) is False
        assert "input file" in errors[-1][1]
    assert digest(img) == before


def test_opened_model_json_is_an_input(window, errors, tmp_path):
    w = window
    model = tmp_path / "start.json"
    assert w.commands.export_model_json(str(model))
    assert w.commands.open_model(str(model))
    before = digest(model)
    assert w.commands.export_model_json(str(model)) is False
    assert "input file" in errors[-1][1]
    assert digest(model) == before


def test_csv_question_not_asked_for_an_input(fitted, errors, sample_files, monkeypatch):
    """Export CSV over the image: refused before the "append or replace?" question."""
    from PyQt5 import QtWidgets

    from mogviewer.gui import dialogs
    asked = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(sample_files[0]), "")))
    monkeypatch.setattr(dialogs, "ask_csv_append", lambda *a: asked.append(a) or "replace")
    fitted.commands.ask_export_csv()
    assert asked == [] and "input file" in errors[-1][1]


def test_exports_still_write_elsewhere(fitted, tmp_path):
    w = fitted
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    for name, fn in (("a.csv", w.commands.export_csv), ("b.fits", w.commands.export_imgblock),
                     ("c.reg", w.commands.export_region),
                     ("d.json", w.commands.export_model_json),
                     ("e.png", w.commands.export_png)):
        assert fn(str(tmp_path / name)), name
        assert (tmp_path / name).stat().st_size > 0
    # nothing left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.csv.columns.txt",
                                                           "b.fits", "c.reg", "d.json",
                                                           "e.png"]


# ------------------------------------------------------------------------------ messages
@pytest.mark.parametrize("content,expect", [
    ("{not json", "not a readable JSON model file"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    (json.dumps({"format": "mogviewer-model", "profile": "exp", "M": 1000, "sky": "constant",
                 "params": {"flux": 1, "x": 1, "y": 1, "re": 1, "q": 1, "angle": 0}}),
     "M = 1000"),
])
def test_malformed_model_is_a_plain_dialog(window, errors, tmp_path, content, expect):
    """The reader's ModelFileError message, once, without a traceback; the session keeps its
    profile, M and parameters."""
    w, s = window, window.state
    path = tmp_path / "bad_model.json"
    path.write_text(content)
    before = (s.profile, s.M, s.params)
    assert w.commands.open_model(str(path)) is False
    title, text = errors[-1]
    assert title == "Cannot open model"
    assert expect in text and "Traceback" not in text and "ModelFileError" not in text
    assert text.count("bad_model.json") == 1
    assert (s.profile, s.M, s.params) == before


def test_mogviewer_error_reaching_the_event_loop_is_plain(window, errors):
    w = window
    try:
        raise ModelFileError("m.json: not a mogviewer model file")
    except ModelFileError:
        w.report_exception(*sys.exc_info())
    title, text = errors[-1]
    assert text == "m.json: not a mogviewer model file"
    assert "Traceback" not in text and "Unexpected" not in title


def test_unexpected_error_keeps_its_details_in_the_log(window, errors):
    w = window
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        w.report_exception(*sys.exc_info())
    title, text = errors[-1]
    assert title == "Unexpected error" and "ZeroDivisionError: boom" in text
    assert "Traceback" in w.log_view.toPlainText()


def test_fit_raising_a_mogviewer_error_is_plain(window, errors, qtbot, monkeypatch):
    w = window

    def fail(*a, **k):
        raise FitError("no usable pixels: every pixel is masked")

    monkeypatch.setattr(engine, "run_fit", fail)
    assert w.commands.start_fit()
    qtbot.waitUntil(lambda: not w.state.busy, timeout=FIT_TIMEOUT_MS)
    title, text = errors[-1]
    assert title == "Fit failed" and text == "no usable pixels: every pixel is masked"


@pytest.mark.parametrize("name,make,expect", [
    ("tiny.fits", lambda: np.ones((2, 2)), "too small"),
    ("huge.fits", lambda: np.random.default_rng(0).normal(1e300, 1e299, (32, 32)),
     "rescale"),
])
def test_unfittable_image_is_refused_with_a_dialog(window, errors, tmp_path, name, make,
                                                   expect):
    """A 2x2 image used to raise FitError out of the open action ("Unexpected error")."""
    w, s = window, window.state
    path = tmp_path / name
    fits.writeto(path, make())
    shape = s.data.shape
    assert w.commands.open_image(str(path)) is False
    title, text = errors[-1]
    assert title == "Cannot open image" and expect in text and "Traceback" not in text
    assert s.data.shape == shape


# ------------------------------------------------------------------------------ layout
def visible_in(widget, ancestor):
    r = QtCore.QRect(widget.mapTo(ancestor, QtCore.QPoint(0, 0)), widget.size())
    return widget.isVisible() and ancestor.rect().contains(r)


def test_fit_button_in_view_after_a_fit_at_1280x720(window, qtbot):
    """After a fit the dock scrolled down to the parameters and the Fit button left the
    view; now the Fit group sits above the scrolling part."""
    w = window
    w.resize(1280, 720)
    qtbot.wait(150)
    assert visible_in(w.params.fit_button, w)
    fit_now(qtbot, w)
    qtbot.wait(150)
    assert visible_in(w.params.fit_button, w.params_dock)
    assert visible_in(w.params.fit_button, w)
    assert w.params.fit_button.isEnabled()


def test_wheel_over_a_parameter_scrolls_instead_of_stepping_it(window, qtbot):
    """Scrolling the dock with the wheel over the flux box stepped the flux (2 % a notch)."""
    from PyQt5 import QtGui, QtWidgets
    w = window
    sp = w.params.spins["flux"]
    w.params.fit_button.setFocus()
    before = w.state.params.flux
    pos = QtCore.QPointF(sp.rect().center())
    ev = QtGui.QWheelEvent(pos, QtCore.QPointF(sp.mapToGlobal(pos.toPoint())),
                           QtCore.QPoint(0, 0), QtCore.QPoint(0, -120), QtCore.Qt.NoButton,
                           QtCore.Qt.NoModifier, QtCore.Qt.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(sp, ev)
    qtbot.wait(20)
    assert w.state.params.flux == before
    sp.setFocus()
    QtWidgets.QApplication.sendEvent(sp, ev)
    qtbot.wait(20)
    assert w.state.params.flux == pytest.approx(before / 1.02)   # a focused box still steps


def test_blank_image_is_not_fitted_and_its_start_is_its_own(window, errors, tmp_path, qtbot):
    """A new user's all-zero 64x64 image: the parameters kept the previous image's start
    (x = 127.9, off this image) and its chi^2/nu, and Fit reported "converged" at flux 7e-25
    with errors of 2.3e33 (the command line fails the file). Now the start is placed on the
    new image and Fit refuses with the command line's reason."""
    w, s = window, window.state
    path = tmp_path / "zero.fits"
    fits.writeto(path, np.zeros((64, 64), np.float32))
    s.set_psf(None)
    w.commands.open_image(str(path))
    assert s.data.shape == (64, 64)
    p = s.params
    assert (p.x, p.y, p.flux) == (31.5, 31.5, 0.0)
    assert s.images is not None and s.images.params == p          # drawn on this image
    n_err = len(errors)
    assert w.commands.start_fit() is False and not s.busy
    title, text = errors[-1]
    assert len(errors) == n_err + 1 and title == "Cannot fit"
    assert text == "Nothing to fit: the image holds no signal: every usable pixel equals 0."


def test_a_free_sersic_index_starts_afresh_on_a_new_image(window, tmp_path):
    """New-user report: a Sérsic fit of a noise image ended at n = 8 (the bound); the next
    image opened started from n = 8 ("Start from image moments: ... n=8.000", chi^2/nu 2234 at
    the start), where the command line starts at 2.5. A free index now starts there on a new
    image; a fixed one is the user's choice and stays."""
    w, s = window, window.state
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:64, :64]
    img = 200 * np.exp(-np.hypot(xx - 31.0, (yy - 33.0) / 0.7) / 4.0) + rng.normal(size=(64, 64))
    path = tmp_path / "gal.fits"
    fits.writeto(path, img.astype(np.float32))
    s.set_profile("ser")
    s.set_params(s.params.replace(n=8.0))
    assert s.params.n == 8.0 and "n" in s.free
    w.commands.open_image(str(path))
    assert s.data.shape == (64, 64)
    assert s.params.n == engine.SERSIC_N_START == 2.5
    assert s.problem().n == 2.5
    # fixed: kept on the next image
    s.set_params(s.params.replace(n=4.0))
    s.set_fixed("n", True)
    w.commands.open_image(str(path))
    assert s.params.n == 4.0 and "n" not in s.free
