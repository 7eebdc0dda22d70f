"""pytest-qt fixtures for the desktop app (headless: offscreen platform, settings in tmp)."""

import os
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PyQt5")

import pytest  # noqa: E402
from PyQt5 import QtCore, QtWidgets  # noqa: E402

import mogviewer.gui.app as gui_app  # noqa: E402,F401  (sets pyqtgraph options before any item)
from mogviewer.gui import engine  # noqa: E402
from mogviewer.gui.main_window import MainWindow  # noqa: E402

PSF_TIMEOUT_MS = 60000


@pytest.fixture(scope="session", autouse=True)
def _settings_in_tmp(tmp_path_factory):
    """Never touch the user's settings: every QSettings of the tests lives under tmp."""
    root = tmp_path_factory.mktemp("qsettings")
    for fmt in (QtCore.QSettings.IniFormat, QtCore.QSettings.NativeFormat):
        for scope in (QtCore.QSettings.UserScope, QtCore.QSettings.SystemScope):
            QtCore.QSettings.setPath(fmt, scope, str(root))
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    yield root


@pytest.fixture
def settings(tmp_path):
    return QtCore.QSettings(str(tmp_path / "mogviewer.ini"), QtCore.QSettings.IniFormat)


@pytest.fixture
def errors(monkeypatch):
    """Record error dialogs instead of blocking on them."""
    seen = []

    def fake(parent, title, text, *a, **k):
        seen.append((title, text))
        return QtWidgets.QMessageBox.Ok

    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", staticmethod(fake))
    return seen


@pytest.fixture
def window(qtbot, settings, errors):
    """The main window on the bundled sample, PSF loaded, shown."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.resize(1400, 900)
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        assert w.commands.open_sample()
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(20)
    assert w.state.psf_model is not None
    yield w
    w.commands.runner.shutdown()
    w.commands.sampler.shutdown()
    w.commands.tasks.shutdown()


@pytest.fixture
def sample_files():
    files = engine.sample_files()
    assert files is not None, "sample_data/ic3478 not found"
    return files


@pytest.fixture(autouse=True)
def questions(monkeypatch):
    """Answer the app's questions (gui/dialogs.py) without modal boxes, and record them.

    ``questions.psf_answer`` answers "the PSF of the previous image: keep, remove or replace?"
    (default keep); ``questions.position`` answers "where to evaluate this PSFEx model?"
    (default: cancel); ``questions.asked`` lists ``(question, args)``.
    """
    from mogviewer.gui import dialogs

    q = SimpleNamespace(psf_answer=dialogs.KEEP, position=None, asked=[])

    def psf(parent, psf_name, image_name):
        q.asked.append(("psf", (psf_name, image_name)))
        return q.psf_answer

    def position(parent, name, axes, default):
        q.asked.append(("position", (name, tuple(axes), tuple(default))))
        return q.position

    monkeypatch.setattr(dialogs, "ask_psf_for_new_image", psf)
    monkeypatch.setattr(dialogs, "ask_psfex_position", position)
    return q
