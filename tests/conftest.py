"""Suite-wide rule: once a process holds Qt objects, Python's cyclic garbage collector runs
only in the main thread, between tests.

Why: the collector runs in whichever thread happens to allocate when a threshold is crossed. In
an xdist worker that is often execnet's receiver thread (or a fit's worker thread), and a cycle
holding a Qt graphics item then deletes that item outside the GUI thread while its scene is in
use. The scene keeps a dangling pointer and the process aborts later ("pure virtual method
called" in ``QGraphicsScene::itemsBoundingRect``; seen as a worker crash in
``test_settings_persist`` in 4 of 4 runs of ``pytest -n 1 tests/test_psf.py
tests/gui/test_app.py`` and 0 of 2 with this hook). The app does the same with pyqtgraph's
``GarbageCollector`` (:func:`mogviewer.gui.app.create_app`).

Also: the app's PSF models kept between sessions (:mod:`mogviewer.gui.psf_cache`) go to a
directory of this test process, never to (or from) the user's cache.
"""

import gc
import os
import sys
import tempfile

import pytest

os.environ["MOGVIEWER_CACHE_DIR"] = tempfile.mkdtemp(prefix="mogviewer-test-cache-")

_FULL_EVERY = 25            # a full collection at least every 25 tests (a full pass costs ~50 ms)
_count = {"n": 0}


def _qt_app_exists():
    widgets = sys.modules.get("PyQt5.QtWidgets")
    return widgets is not None and widgets.QApplication.instance() is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _qt_app_exists():
        yield
        if _qt_app_exists():            # this test made the QApplication: from now on, by hand
            gc.disable()
            gc.collect()
        return
    gc.disable()
    yield
    _count["n"] += 1
    if "qtbot" in getattr(item, "fixturenames", ()) or _count["n"] % _FULL_EVERY == 0:
        gc.collect()
    else:
        gc.collect(1)
