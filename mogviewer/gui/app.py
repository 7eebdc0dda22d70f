"""Entry point of the desktop app: ``mogviewer [FILE] [--psf PSF] [--mask MASK] [--noise NOISE]``.

With no FILE the bundled sample galaxy (IC 3478, SDSS r) opens with its mask and PSF.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PyQt5")

import pyqtgraph as pg  # noqa: E402
from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: E402

# the engine (numpy, scipy, astropy, numba) is imported inside the functions that need it, so
# that ``main`` shows a splash screen before those seconds of imports

_CONFIGURED = False


def configure_pyqtgraph():
    """Global pyqtgraph options; must run before any pyqtgraph item is created."""
    global _CONFIGURED
    if not _CONFIGURED:
        # mouseRateLimit=0: pyqtgraph would otherwise drop mouse moves closer than 10 ms, and a
        # dropped last move before the release leaves the ellipse short of where the user let
        # go; the model re-render has its own throttle (Session.render_interval_ms)
        pg.setConfigOptions(imageAxisOrder="row-major", antialias=True,
                            background=(25, 25, 30), foreground="#cccccc", mouseRateLimit=0)
        _CONFIGURED = True


configure_pyqtgraph()


def wait_until(app, cond, timeout=60.0, *, poll=0.005):
    """Process Qt events until ``cond()`` is true or ``timeout`` seconds passed (scripts only:
    benchmarks and screenshots; tests use pytest-qt's waitUntil)."""
    t0 = time.time()
    while not cond() and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(poll)


def settle(app, seconds=0.4):
    """Process Qt events for ``seconds`` (let repaints and deferred layouts finish)."""
    wait_until(app, lambda: False, seconds, poll=0.01)


def throwaway_settings():
    """QSettings in a fresh temporary directory (removed when the process exits), for scripts
    that must not read or change the user's settings. Never ``QSettings(os.devnull)``: Qt saves
    a settings file by writing a temporary file and renaming it over the path, which replaces
    ``/dev/null`` itself with a regular file when the process runs as root."""
    import atexit
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="mogviewer-settings-")
    atexit.register(shutil.rmtree, d, True)
    return QtCore.QSettings(os.path.join(d, "mogviewer.ini"), QtCore.QSettings.IniFormat)


def sample_window(width, height, *, timeout=120.0):
    """Scripts only (benchmarks, screenshots): the app, compiled kernels, and a shown main
    window of ``width`` x ``height`` with throwaway settings, on the bundled sample with its PSF
    loaded. Returns ``(app, window)``."""
    from . import engine
    from .main_window import MainWindow
    app = create_app()
    engine.warmup()
    w = MainWindow(settings=throwaway_settings())
    w.resize(width, height)
    w.show()
    loaded = []
    w.commands.psf_loaded.connect(loaded.append)
    w.commands.open_sample()
    wait_until(app, lambda: loaded, timeout)
    return app, w


def _splash(text):
    """A small splash screen shown at once, while the engine's modules are imported."""
    pix = QtGui.QPixmap(420, 120)
    pix.fill(QtGui.QColor(25, 25, 30))
    p = QtGui.QPainter(pix)
    try:
        f = p.font()
        f.setPointSizeF(f.pointSizeF() * 1.6)
        f.setBold(True)
        p.setFont(f)
        p.setPen(QtGui.QColor("#dddddd"))
        p.drawText(pix.rect().adjusted(0, 0, 0, -40), QtCore.Qt.AlignCenter, "mogviewer")
    finally:
        p.end()
    splash = QtWidgets.QSplashScreen(pix)
    splash.showMessage(text, QtCore.Qt.AlignBottom | QtCore.Qt.AlignHCenter,
                       QtGui.QColor("#dddddd"))
    splash.show()
    QtWidgets.QApplication.processEvents()
    return splash


def parse_args(argv):
    p = argparse.ArgumentParser(prog="mogviewer", description="mogviewer desktop app")
    p.add_argument("file", nargs="?", help="image to open (FITS or .npy); default: the sample")
    p.add_argument("--psf", help="PSF file (image, PSFEx or mixture)")
    p.add_argument("--mask", help="mask file (nonzero = bad)")
    p.add_argument("--noise", help="noise map (1-sigma unless --noise-kind says otherwise)")
    p.add_argument("--noise-kind", choices=("sigma", "variance", "ivar", "weight"),
                   default="sigma", help="what the noise map holds (default sigma)")
    p.add_argument("--hdu", help="image HDU number or EXTNAME")
    p.add_argument("--band", help="band of a multi-band file (BAND keyword), e.g. r")
    return p.parse_args(argv)


def install_excepthook(window):
    """Route uncaught exceptions to an error dialog and the log instead of crashing."""
    previous = sys.excepthook
    state = {"last": 0.0}

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            return previous(exc_type, exc, tb)
        sys.__stderr__.write("mogviewer: unexpected error (the app keeps running)\n")
        import traceback
        traceback.print_exception(exc_type, exc, tb, file=sys.__stderr__)
        now = time.monotonic()
        try:
            if now - state["last"] > 1.0:     # one dialog per burst, every one in the log
                state["last"] = now
                window.report_exception(exc_type, exc, tb)
            else:
                window.append_log(f"ERROR (repeated) {exc_type.__name__}: {exc}")
        except Exception:  # noqa: BLE001 - never let the hook itself crash
            pass

    sys.excepthook = hook
    return previous


def create_app(argv=None):
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(list(argv or ["mogviewer"]))
    from .. import _blas
    _blas.limit()       # one BLAS thread (see mogviewer._blas): the fit's worker thread and
    #                     the GUI thread share the cores with BLAS's spinning threads otherwise
    if not hasattr(app, "_mogviewer_gc"):
        # Python's cyclic collector runs in whichever thread allocates; a collection in the fit's
        # worker thread can delete a Qt graphics item under its scene and abort the process.
        # pyqtgraph's collector disables it and collects on a timer in the GUI thread.
        from pyqtgraph.util.garbage_collector import GarbageCollector
        app._mogviewer_gc = GarbageCollector(interval=1.0)
    app.setOrganizationName("mogviewer")
    app.setApplicationName("mogviewer")
    app.setApplicationDisplayName("mogviewer")
    icon = engine_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    return app


def engine_icon():
    """The app icon from ``resources/`` (installed as ``mogviewer.resources``), or None."""
    from ..sample import resource
    path = resource("mogviewer.svg")
    return None if path is None else QtGui.QIcon(str(path))


def build_window(args, *, settings=None):
    """The main window with the files of ``args`` (or the sample) opening."""
    from .main_window import MainWindow
    w = MainWindow(settings=settings)
    open_args(w, args)
    return w


def open_args(w, args):
    """Open the files of the command line ``args`` (or the sample) in window ``w``."""
    c = w.commands
    if args.file:
        opts = {}
        if args.mask:
            opts["mask"] = args.mask
        if args.noise:
            opts["noise"] = args.noise
            opts["noise_kind"] = args.noise_kind
        if args.band:
            opts["band"] = args.band
        if args.hdu is not None:
            opts["hdu"] = int(args.hdu) if str(args.hdu).isdigit() else args.hdu
        c.open_image(args.file, options=opts, ask_psf=False)
        if args.psf:
            c.open_psf(args.psf)
        else:
            w.state.log("No PSF given (--psf): the model is integrated over each pixel only. "
                        "File > Open PSF to add one.")
    else:
        c.open_sample(psf=not args.psf)
        if args.psf:
            c.open_psf(args.psf)


#: exit status after a signal, as the command line's (128 + the signal's number)
_SIGNAL_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def install_signal_handlers(app, window):
    """SIGTERM (a logout, ``kill``, a batch system) and Ctrl-C in the launching terminal close
    the app as closing its window does: the fit is stopped, the settings are saved; then
    ``app.exec_()`` returns 143 or 130 and one line goes to stderr. Python runs a signal
    handler only between bytecodes, never inside Qt's event loop, so the app ignored SIGTERM
    (the pyqtgraph collector's timer then raised the command line's handler's exception in a
    slot: a traceback on stderr, and the window stayed). A socket pair (``set_wakeup_fd``)
    wakes the loop at once, and the handler schedules the close on it.

    A second signal while the window closes (a close that hangs) ends the process at once
    with the same status. Returns a callable that restores the previous handlers and wake-up
    fd."""
    fired = []

    def close(signum):
        status = _SIGNAL_STATUS.get(signum, 128 + int(signum))
        if fired:                       # a second signal while closing: out at once
            os._exit(status)
        fired.append(signum)
        name = "interrupted" if signum == signal.SIGINT else \
            f"terminated ({signal.Signals(signum).name})"
        try:
            app.closeAllWindows()       # each window's closeEvent: compiling and fits stopped,
            #                             settings saved
            window.close()
            print(f"mogviewer: {name}; the window was closed and its settings saved",
                  file=sys.stderr, flush=True)
        finally:
            app.exit(status)

    def on_signal(signum, frame):
        QtCore.QTimer.singleShot(0, lambda: close(signum))

    previous = {sig: signal.signal(sig, on_signal) for sig in _SIGNAL_STATUS}
    rsock, wsock = socket.socketpair()
    for sk in (rsock, wsock):
        sk.setblocking(False)
    old_fd = signal.set_wakeup_fd(wsock.fileno())
    notifier = QtCore.QSocketNotifier(rsock.fileno(), QtCore.QSocketNotifier.Read, app)

    def drain():
        try:
            while rsock.recv(64):
                pass
        except OSError:                 # nothing more to read
            pass

    notifier.activated.connect(drain)   # a Python slot: the handler runs before it

    def restore():
        notifier.setEnabled(False)
        notifier.setParent(None)
        signal.set_wakeup_fd(old_fd)
        for sig, h in previous.items():
            signal.signal(sig, h)
        rsock.close()
        wsock.close()

    return restore


def main(argv=None) -> int:
    """Run the app; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    app = create_app([sys.argv[0] if sys.argv else "mogviewer"])
    splash = _splash("Starting mogviewer\u2026")
    from . import engine
    engine.install_warning_filters()
    # compile the renderer in the background while the window opens; the files open when it is
    # ready (the first render would wait for it anyway, with the window frozen and blank)
    warm = engine.warmup()
    try:        # from here a Ctrl-C or SIGTERM (the window not up yet) ends the compiling too
        splash.showMessage("Starting mogviewer\u2026 (loading the engine)",
                           QtCore.Qt.AlignBottom | QtCore.Qt.AlignHCenter,
                           QtGui.QColor("#dddddd"))
        app.processEvents()
        from .main_window import MainWindow
        w = MainWindow()
        install_excepthook(w)
        w.show()
        splash.finish(w)
        QtCore.QTimer.singleShot(0, w.raise_)
        w.wait_for_warmup(warm, then=lambda: open_args(w, args))
        restore = install_signal_handlers(app, w)
        try:
            return int(app.exec_())
        finally:
            restore()
    finally:
        engine.stop_compiling()         # a first start closed while the kernels compile


if __name__ == "__main__":
    sys.exit(main())
