"""The main window: panels, parameter dock, log dock, menus, files, fit control, undo, export.

Data flow (STYLE.md): files -> engine readers -> :class:`~mogviewer.gui.session.Session` -> views;
views send edits back as undoable commands; the fit runs in a worker thread and sends immutable
snapshots. No widget ever edits another widget directly.
"""

from __future__ import annotations

import html
import math
import time
import traceback
from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets

from . import engine
from .panels import COLORMAPS, LIMITS, STRETCHES, DisplaySettings, ImagePanels, ellipse_outline
from .params_panel import ParamsPanel
from .psf_dialog import PsfDialog
from .session import Session, format_params
from .undo import SetParamsCommand, SetProfileCommand
from .worker import FitRunner, Tasks

ORG, APP = "mogviewer", "mogviewer"
MAX_RECENT = 10
HOVER_HINT = "Point at an image for pixel values; drag the green ellipse or its handles."

FILE_FILTERS = {
    "image": "Images (*.fits *.fit *.fts *.fits.gz *.fz *.npy);;All files (*)",
    "psf": "PSF (*.fits *.fit *.fits.gz *.npy *.json *.psf);;All files (*)",
    "noise": "Noise maps (*.fits *.fit *.fits.gz *.npy);;All files (*)",
    "mask": "Masks (*.fits *.fit *.fits.gz *.npy);;All files (*)",
    "model": "Model JSON (*.json);;All files (*)",
}


def make_settings():
    """The application's QSettings (INI format, so tests can redirect it with ``setPath``)."""
    return QtCore.QSettings(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, ORG, APP)


class MainWindow(QtWidgets.QMainWindow):
    """mogviewer's main window.

    Signals
    -------
    fit_finished(FitResult) : a fit ended (after the panels were updated).
    fit_progressed(FitProgress) : one per optimiser iteration.
    psf_loaded(object) : a PSF finished loading (PsfModel) or failed (None).
    """

    fit_finished = QtCore.pyqtSignal(object)
    fit_progressed = QtCore.pyqtSignal(object)
    psf_loaded = QtCore.pyqtSignal(object)

    def __init__(self, *, settings=None):
        super().__init__()
        self.settings = settings if settings is not None else make_settings()
        self.session = Session(self)
        self.tasks = Tasks(self)
        self.runner = FitRunner(self)
        self.undo_stack = QtWidgets.QUndoStack(self)
        self.n_errors = 0
        self.last_error = None
        self._drag_start = None
        self._fit_start = None
        self._edits_since_load = 0
        self._psf_dialog = None
        self._hover = None
        self.setWindowTitle("mogviewer")
        self.setAcceptDrops(True)
        self.resize(1560, 940)

        self.panels = ImagePanels(self.session)
        central = QtWidgets.QWidget()
        cl = QtWidgets.QVBoxLayout(central)
        cl.setContentsMargins(4, 2, 4, 2)
        cl.setSpacing(2)
        cl.addWidget(self.panels, 1)
        self.addToolBar(QtCore.Qt.TopToolBarArea, self._build_display_bar())
        self.setCentralWidget(central)

        self.params = ParamsPanel(self.session)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(self.params)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.params_dock = QtWidgets.QDockWidget("Model and fit", self)
        self.params_dock.setObjectName("params_dock")
        self.params_dock.setWidget(scroll)
        self.params_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetMovable
                                     | QtWidgets.QDockWidget.DockWidgetFloatable)
        scroll.setMinimumWidth(self.params.sizeHint().width() + 20)
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.params_dock)

        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.WidgetWidth)
        f = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.FixedFont)
        f.setPointSizeF(max(7.0, f.pointSizeF() * 0.9))
        self.log_view.setFont(f)
        self.log_dock = QtWidgets.QDockWidget("Log", self)
        self.log_dock.setObjectName("log_dock")
        self.log_dock.setWidget(self.log_view)
        # the log sits under the parameters, so the panels get the full height
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.log_dock)
        self.splitDockWidget(self.params_dock, self.log_dock, QtCore.Qt.Vertical)
        self.resizeDocks([self.params_dock, self.log_dock],
                         [self.params.sizeHint().height() + 10, 160], QtCore.Qt.Vertical)

        self.readout = QtWidgets.QLabel(HOVER_HINT)
        self.readout.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.readout.setFont(f)
        self.statusBar().addPermanentWidget(self.readout, 1)
        self.psf_status = QtWidgets.QLabel("PSF: none")
        self.statusBar().addPermanentWidget(self.psf_status)

        self._build_menus()
        self._connect()
        self._restore_settings()

    # ================================================================== construction
    def _build_display_bar(self):
        bar = QtWidgets.QToolBar("Display")
        bar.setObjectName("display_toolbar")
        bar.setMovable(False)

        def combo(items, tip):
            c = QtWidgets.QComboBox()
            c.addItems(items)
            c.setToolTip(tip)
            return c

        self.stretch_combo = combo(list(STRETCHES), "Display stretch of data and model")
        self.limits_combo = combo(list(LIMITS), "Display limits of data and model (shared)")
        self.cmap_combo = combo(list(COLORMAPS), "Colour map of data and model")
        self.lo_spin = QtWidgets.QDoubleSpinBox()
        self.hi_spin = QtWidgets.QDoubleSpinBox()
        for sp in (self.lo_spin, self.hi_spin):
            sp.setRange(-1e30, 1e30)
            sp.setDecimals(4)
            sp.setKeyboardTracking(False)
            sp.setMinimumWidth(105)
            sp.setToolTip("Manual display limits (image units)")
        self.nsig_spin = QtWidgets.QDoubleSpinBox()
        self.nsig_spin.setRange(0.5, 100)
        self.nsig_spin.setSingleStep(0.5)
        self.nsig_spin.setDecimals(1)
        self.nsig_spin.setPrefix("\u00b1")
        self.nsig_spin.setSuffix(" \u03c3")
        self.nsig_spin.setToolTip("Symmetric range of the residual (n x median sigma) and chi "
                                  "(n) panels")
        self.mask_box = QtWidgets.QCheckBox("show mask")
        self.mask_box.setToolTip("Paint masked pixels (excluded from the fit) in slate blue")
        zoom = QtWidgets.QToolButton()
        zoom.setText("Fit view")
        zoom.setToolTip("Show the whole image (Home)")
        zoom.clicked.connect(self.panels.reset_zoom)
        for label, w in (("stretch", self.stretch_combo), ("limits", self.limits_combo),
                         ("min", self.lo_spin), ("max", self.hi_spin),
                         ("colours", self.cmap_combo), ("resid/chi", self.nsig_spin)):
            lab = QtWidgets.QLabel(f" {label} ")
            lab.setStyleSheet("color: #666;")
            bar.addWidget(lab)
            bar.addWidget(w)
        bar.addSeparator()
        bar.addWidget(self.mask_box)
        bar.addWidget(zoom)
        self.display_bar = bar
        return bar

    def _action(self, menu, text, slot, shortcut=None, tip=None, checkable=False):
        a = QtWidgets.QAction(text, self)
        if shortcut:
            a.setShortcut(QtGui.QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        menu.addAction(a)
        return a

    def _build_menus(self):
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self._action(fm, "Open &Image\u2026", lambda: self._ask_open("image"),
                     QtGui.QKeySequence.Open, "Open a galaxy cutout (FITS or .npy)")
        self._action(fm, "Open &PSF\u2026", lambda: self._ask_open("psf"), "Ctrl+P",
                     "Open a PSF image, PSFEx file or mixture")
        self._action(fm, "Open &Noise Map\u2026", lambda: self._ask_open("noise"), None,
                     "Open a 1-sigma noise map for the current image")
        self._action(fm, "Open &Mask\u2026", lambda: self._ask_open("mask"), None,
                     "Open a mask (nonzero = bad) for the current image")
        self._action(fm, "Open Model (&JSON)\u2026", lambda: self._ask_open("model"), None,
                     "Load parameters saved with Export > Model JSON")
        self.recent_menu = fm.addMenu("Open &Recent")
        self._action(fm, "Open &Sample Galaxy", lambda: self.open_sample(), None,
                     engine.SAMPLE_DESCRIPTION)
        fm.addSeparator()
        em = fm.addMenu("&Export")
        self.export_actions = {
            "csv": self._action(em, "Parameters (&CSV)\u2026", self._ask_export_csv, "Ctrl+E",
                                "Write the fit as one CSV row (append to a file on request)"),
            "imgblock": self._action(em, "&Image Block (FITS)\u2026",
                                     lambda: self._ask_export("imgblock"), None,
                                     "Data, model, residual, chi and mask as FITS extensions"),
            "region": self._action(em, "DS9 &Region\u2026", lambda: self._ask_export("region"),
                                   None, "The ellipse as a DS9 region file"),
            "json": self._action(em, "Model &JSON\u2026", lambda: self._ask_export("json"), None,
                                 "Parameters, profile and PSF, re-loadable"),
            "png": self._action(em, "Panels as &PNG\u2026", lambda: self._ask_export("png"),
                                None, "The four panels as shown"),
        }
        fm.addSeparator()
        self._action(fm, "&Quit", self.close, QtGui.QKeySequence.Quit)

        edm = mb.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QtGui.QKeySequence.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QtGui.QKeySequence.Redo, QtGui.QKeySequence("Ctrl+Shift+Z")])
        edm.addAction(undo)
        edm.addAction(redo)
        self.undo_action, self.redo_action = undo, redo

        fitm = mb.addMenu("F&it")
        self.fit_action = self._action(fitm, "&Fit", self.start_fit, "F",
                                       "Fit the model (in the background)")
        self.cancel_action = self._action(fitm, "&Cancel Fit", self.cancel_fit, "Esc",
                                          "Stop the running fit (keeps the best so far)")
        self.cancel_action.setEnabled(False)
        self._action(fitm, "&Start from Moments", self._reset_start, "Ctrl+R",
                     "Reset the start parameters to the image moments")

        vm = mb.addMenu("&View")
        self._action(vm, "&PSF\u2026", self.show_psf_dialog, "Ctrl+Shift+P",
                     "PSF image, fitted mixture, residual and quality")
        self._action(vm, "&Whole Image", self.panels.reset_zoom, "Home")
        self.components_action = self._action(vm, "Show &Gaussians", self._set_components,
                                              "G", "1-sigma ellipses of the galaxy's Gaussians",
                                              checkable=True)
        vm.addSeparator()
        vm.addAction(self.params_dock.toggleViewAction())
        vm.addAction(self.log_dock.toggleViewAction())

        hm = mb.addMenu("&Help")
        self._action(hm, "&Conventions", self._show_conventions)
        self._action(hm, "&About mogviewer", self._show_about)

    def _connect(self):
        s = self.session
        s.logged.connect(self.append_log)
        s.params_changed.connect(self._on_params_changed)
        s.image_changed.connect(self._on_image_changed)
        s.psf_changed.connect(self._on_psf_changed)
        s.result_changed.connect(self._update_actions)
        s.busy_changed.connect(self._on_busy)
        s.config_changed.connect(self._on_config_changed)
        s.model_changed.connect(self._refresh_readout)
        e = self.panels.ellipse
        e.drag_started.connect(self._on_drag_started)
        e.dragged.connect(self._on_dragged)
        e.drag_finished.connect(self._on_drag_finished)
        self.panels.hovered.connect(self._on_hover)
        p = self.params
        p.param_edited.connect(self._on_param_edited)
        p.fixed_toggled.connect(self.session.set_fixed)
        p.profile_chosen.connect(self._on_profile_chosen)
        p.sky_toggled.connect(self.session.set_sky)
        p.reset_requested.connect(self._reset_start)
        p.components_toggled.connect(self.components_action.setChecked)
        p.fit_requested.connect(self.start_fit)
        p.cancel_requested.connect(self.cancel_fit)
        self.runner.progressed.connect(self._on_fit_progress)
        self.runner.finished.connect(self._on_fit_finished)
        self.runner.failed.connect(self._on_fit_failed)
        for c in (self.stretch_combo, self.limits_combo, self.cmap_combo):
            c.currentIndexChanged.connect(self._on_display_changed)
        for sp in (self.lo_spin, self.hi_spin, self.nsig_spin):
            sp.valueChanged.connect(self._on_display_changed)
        self.mask_box.toggled.connect(self._on_display_changed)
        self.undo_stack.indexChanged.connect(self._update_actions)

    def showEvent(self, event):
        super().showEvent(event)
        if not getattr(self, "_docks_sized", False):
            # first show: the window has its final size now, so give the parameter panel its
            # full height and the log the rest (unless the user's saved layout was restored)
            self._docks_sized = True
            if not getattr(self, "_dock_layout_restored", False):
                self.resizeDocks([self.params_dock, self.log_dock],
                                 [self.params.sizeHint().height() + 10, 120],
                                 QtCore.Qt.Vertical)

    # ================================================================== settings
    def _restore_settings(self):
        st = self.settings
        geom = st.value("window/geometry")
        if isinstance(geom, QtCore.QByteArray) and not geom.isEmpty():
            self.restoreGeometry(geom)
        state = st.value("window/state")
        self._dock_layout_restored = False
        if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
            self._dock_layout_restored = bool(self.restoreState(state))
        d = DisplaySettings()
        d = d.replace(stretch=self._setting("display/stretch", d.stretch, str),
                      limits=self._setting("display/limits", d.limits, str),
                      cmap=self._setting("display/cmap", d.cmap, str),
                      resid_nsigma=self._setting("display/resid_nsigma", d.resid_nsigma, float),
                      show_mask=self._setting("display/show_mask", d.show_mask, bool))
        if d.stretch not in STRETCHES:
            d = d.replace(stretch="asinh")
        if d.limits not in LIMITS or d.limits == "manual":
            d = d.replace(limits="99.5%")
        if d.cmap not in COLORMAPS:
            d = d.replace(cmap="inferno")
        self._show_display_settings(d)
        self.panels.set_settings(d)
        prof = self._setting("fit/profile", "exp", str)
        if prof in engine.PROFILES:
            self.session.set_profile(prof, self._setting("fit/M", None, int))
        self.session.set_sky(self._setting("fit/sky", True, bool))
        self._rebuild_recent_menu()

    def _setting(self, key, default, kind):
        v = self.settings.value(key, default)
        if v is None:
            return default
        try:
            if kind is bool:
                return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            return kind(v)
        except (TypeError, ValueError):
            return default

    def save_settings(self):
        st = self.settings
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState())
        d = self.panels.settings
        st.setValue("display/stretch", d.stretch)
        st.setValue("display/limits", d.limits)
        st.setValue("display/cmap", d.cmap)
        st.setValue("display/resid_nsigma", d.resid_nsigma)
        st.setValue("display/show_mask", d.show_mask)
        st.setValue("fit/profile", self.session.profile)
        st.setValue("fit/M", self.session.M)
        st.setValue("fit/sky", self.session.sky_on)
        st.sync()

    def closeEvent(self, ev):
        # the undo stack emits while it is destroyed with the window: stop listening first
        try:
            self.undo_stack.indexChanged.disconnect()
        except TypeError:
            pass
        self.runner.shutdown()
        self.tasks.shutdown()
        if self._psf_dialog is not None:
            self._psf_dialog.close()
        self.save_settings()
        super().closeEvent(ev)

    # ================================================================== recent files
    def recent_files(self):
        v = self.settings.value("recent", [])
        if isinstance(v, str):
            v = [v]
        out = []
        for item in v or []:
            kind, _, path = str(item).partition("\t")
            if path:
                out.append((kind, path))
        return out

    def _add_recent(self, kind, path):
        path = str(Path(path).resolve())
        items = [(k, p) for k, p in self.recent_files() if p != path]
        items.insert(0, (kind, path))
        self.settings.setValue("recent", [f"{k}\t{p}" for k, p in items[:MAX_RECENT]])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self):
        m = self.recent_menu
        m.clear()
        items = self.recent_files()
        for kind, path in items:
            a = m.addAction(f"{kind}: {Path(path).name}")
            a.setToolTip(path)
            a.setStatusTip(path)
            a.triggered.connect(lambda _c=False, k=kind, p=path: self.open_file(p, kind=k))
        if not items:
            a = m.addAction("(none)")
            a.setEnabled(False)
        else:
            m.addSeparator()
            m.addAction("Clear List", lambda: (self.settings.setValue("recent", []),
                                               self._rebuild_recent_menu()))

    # ================================================================== errors and log
    def append_log(self, text):
        stamp = time.strftime("%H:%M:%S")
        for i, line in enumerate(str(text).splitlines() or [""]):
            self.log_view.appendPlainText(f"{stamp}  {line}" if i == 0 else f"          {line}")
        sb = self.log_view.verticalScrollBar()
        sb.setValue(sb.maximum())

    def show_error(self, title, text, *, details=None):
        """A modal error dialog (and a log line); the app carries on with what it had."""
        self.n_errors += 1
        self.last_error = (title, text)
        self.append_log(f"ERROR {title}: {text}")
        if details:
            self.append_log(details)
        QtWidgets.QMessageBox.critical(self, title, text)

    # ================================================================== opening files
    def _ask_open(self, kind):
        start = self._setting(f"dirs/{kind}", "", str) or self._setting("dirs/last", "", str)
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, {"image": "Open image", "psf": "Open PSF", "noise": "Open noise map",
                   "mask": "Open mask", "model": "Open model"}[kind], start, FILE_FILTERS[kind])
        if path:
            self.settings.setValue(f"dirs/{kind}", str(Path(path).parent))
            self.settings.setValue("dirs/last", str(Path(path).parent))
            self.open_file(path, kind=kind)

    def open_file(self, path, *, kind=None):
        """Open ``path`` as ``kind`` ('image', 'psf', 'noise', 'mask', 'model'), or route it by
        its content when ``kind`` is None. Returns True on success (False after a dialog)."""
        if kind is None:
            cur = None if self.session.data is None else self.session.data.shape
            kind = engine.classify_file(path, current_shape=cur)
            self.append_log(f"{Path(path).name}: recognised as {kind}")
        if kind in ("noise", "mask") and self.session.data is None:
            self.show_error(f"Cannot open {kind}", f"Open an image before its {kind}.")
            return False
        return {"image": self.open_image, "psf": self.open_psf, "noise": self.open_noise,
                "mask": self.open_mask, "model": self.open_model}[kind](path)

    def open_image(self, path, *, options=None, keep_params=False, kind_label="image"):
        options = dict(options or {})
        try:
            data = engine.read_image(path, **options)
        except engine.READ_ERRORS as exc:
            keep = ("The current image is unchanged." if self.session.data is not None
                    else "No image is open: use File > Open Image or File > Open Sample Galaxy.")
            self.show_error(f"Cannot open {kind_label}",
                            f"{Path(str(path)).name} could not be read:\n\n{exc}\n\n{keep}")
            return False
        self._edits_since_load = 0
        self.session.set_image(data, path=path, options=options, keep_params=keep_params)
        self._add_recent("image", path)
        return True

    def open_noise(self, path):
        opts = {k: v for k, v in self.session.image_options.items()
                if k not in ("read_noise", "sky_level")}
        opts["noise"] = str(path)
        ok = self.open_image(self.session.image_path, options=opts, keep_params=True,
                             kind_label="noise map")
        if ok:
            self.append_log(f"Noise map {path} in use.")
        return ok

    def open_mask(self, path):
        opts = dict(self.session.image_options, mask=str(path))
        ok = self.open_image(self.session.image_path, options=opts, keep_params=True,
                             kind_label="mask")
        if ok:
            self.append_log(f"Mask {path} in use.")
        return ok

    def open_psf(self, path, *, n_components=None):
        """Read (and fit) a PSF in the background; the panels follow when it is ready."""
        if not engine.psf_available():
            self.show_error("Cannot open PSF", "PSF support is not available in this version.")
            return False
        if not Path(path).exists():
            self.show_error("Cannot open PSF", f"{path}: no such file.")
            return False
        self.psf_status.setText("PSF: fitting\u2026")
        self.append_log(f"Reading PSF {path} (fitting a mixture)\u2026")
        self.tasks.run(lambda: engine.read_psf(path, n_components=n_components),
                       lambda out: self._psf_done(path, out),
                       lambda exc: self._psf_failed(path, exc))
        return True

    def _psf_done(self, path, out):
        model, warns = out
        for w in warns:
            self.append_log(f"PSF warning: {w}")
        self.session.set_psf(model, path=path)
        self._add_recent("psf", path)
        if self._edits_since_load == 0 and not self.session.busy:
            self.session.reset_start(origin="load")   # moments minus the PSF's second moments
        self.psf_loaded.emit(model)

    def _psf_failed(self, path, exc):
        self._on_psf_changed()
        self.show_error("Cannot open PSF", f"{Path(str(path)).name} is not a usable PSF:\n\n"
                        f"{exc}\n\nThe current PSF is unchanged.")
        self.psf_loaded.emit(None)

    def open_model(self, path):
        try:
            saved = engine.read_model_json(path)
        except engine.export_error_types() + engine.READ_ERRORS as exc:
            self.show_error("Cannot open model", f"{Path(str(path)).name}:\n\n{exc}")
            return False
        if self.session.data is None:
            self.show_error("Cannot open model", "Open an image before a model.")
            return False
        if saved.profile in engine.PROFILES:
            self.session.set_profile(saved.profile, saved.M)
        self.session.set_sky(saved.sky != "none")
        self._push_params(saved.params, f"Load model {Path(path).name}")
        self.append_log(f"Model from {path}: {format_params(saved.params)}")
        self._add_recent("model", path)
        return True

    def open_sample(self, *, psf=True):
        files = engine.sample_files()
        if files is None:
            self.show_error("Sample not found",
                            "The bundled sample_data/ic3478 directory was not found. "
                            "Set MOGVIEWER_SAMPLE_DATA or open an image.")
            return False
        img, mask, psf_path = files
        self.append_log(f"Sample: {engine.SAMPLE_DESCRIPTION}")
        ok = self.open_image(img, options=dict(engine.SAMPLE_OPTIONS, mask=str(mask)))
        if ok and psf:
            self.open_psf(psf_path)
        return ok

    # ---------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev):
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        ev.acceptProposedAction()
        self.open_dropped(paths)

    def open_dropped(self, paths):
        """Route dropped files by content: images first, then masks, PSFs and models."""
        cur = None if self.session.data is None else self.session.data.shape
        kinds = []
        for p in paths:
            kinds.append((engine.classify_file(p, current_shape=cur), p))
        order = {"image": 0, "mask": 1, "noise": 2, "psf": 3, "model": 4}
        for kind, p in sorted(kinds, key=lambda kp: order.get(kp[0], 9)):
            self.append_log(f"Dropped {Path(p).name}: recognised as {kind}")
            self.open_file(p, kind=kind)

    # ================================================================== session -> views
    def _on_image_changed(self):
        s = self.session
        name = Path(s.image_path).name if s.image_path else "(array)"
        self.setWindowTitle(f"mogviewer \u2014 {name}")
        self.undo_stack.clear()
        self._sync_manual_limits()
        self._update_actions()

    def _on_psf_changed(self):
        m = self.session.psf_model
        if m is None:
            self.psf_status.setText("PSF: none (not convolved)")
        else:
            q = getattr(m, "quality", None)
            extra = "" if q is None else \
                f", max|res|/peak {100 * q.max_abs_residual_over_peak:.2g} %"
            self.psf_status.setText(f"PSF: {Path(self.session.psf_path or '').name} "
                                    f"(K = {m.n_components}{extra})")

    def _on_config_changed(self):
        self._update_components()

    def _on_params_changed(self, params, origin):
        if origin != "drag":
            self.panels.ellipse.set_ellipse(params.x, params.y, params.re, params.q,
                                            params.angle)
        self.panels.set_model_outline(*ellipse_outline(params.x, params.y, params.re, params.q,
                                                       params.angle))
        self._update_components()

    def _update_components(self):
        on = self.components_action.isChecked()
        self.panels.components.setVisible(on)
        p = self.session.params
        if on and p is not None:
            self.panels.components.set_components(
                *engine.galaxy_components(p, self.session.profile, self.session.M))

    def _set_components(self, on):
        self.params.components_box.blockSignals(True)
        self.params.components_box.setChecked(on)
        self.params.components_box.blockSignals(False)
        self._update_components()

    def _update_actions(self, *_):
        has_img = self.session.data is not None
        has_res = self.session.result is not None
        avail = engine.export_available()
        busy = self.session.busy
        for k, a in self.export_actions.items():
            need_res = k in ("csv", "imgblock")
            a.setEnabled(has_img and (k == "png" or avail) and (has_res or not need_res)
                         and not busy)
        self.fit_action.setEnabled(has_img and not busy)

    def _on_busy(self, busy):
        self.cancel_action.setEnabled(busy)
        self.panels.ellipse.translatable = not busy
        for h in self.panels.ellipse.getHandles():
            h.setVisible(not busy)
        self.undo_action.setEnabled(not busy and self.undo_stack.canUndo())
        self._update_actions()

    # ---------------------------------------------------------------- readout
    def _on_hover(self, pix):
        self._hover = pix
        self._refresh_readout()

    def _refresh_readout(self):
        self.readout.setText(self.readout_text(self._hover) if self._hover else HOVER_HINT)

    def readout_text(self, pix):
        """Status-bar text for integer pixel ``(ix, iy)`` (0-based)."""
        s = self.session
        if pix is None or s.data is None:
            return ""
        ix, iy = pix
        d = s.data
        parts = [f"x={ix} y={iy}  (FITS {ix + 1}, {iy + 1})", f"data={d.image[iy, ix]:.5g}"]
        im = s.images
        if im is not None:
            parts += [f"model={im.model[iy, ix]:.5g}",
                      "residual=" + _fmt(im.residual[iy, ix]),
                      "chi=" + _fmt(im.chi[iy, ix], ".3f")]
        if d.mask[iy, ix]:
            parts.append("[masked]")
        w = engine.pixel_to_world(d, ix, iy)
        if w is not None:
            ra, dec = w
            parts.append(f"RA={ra:.6f}\u00b0 Dec={dec:+.6f}\u00b0")
        return "   ".join(parts)

    # ---------------------------------------------------------------- display
    def _show_display_settings(self, d):
        ws = (self.stretch_combo, self.limits_combo, self.cmap_combo, self.lo_spin,
              self.hi_spin, self.nsig_spin, self.mask_box)
        for w in ws:
            w.blockSignals(True)
        self.stretch_combo.setCurrentText(d.stretch)
        self.limits_combo.setCurrentText(d.limits)
        self.cmap_combo.setCurrentText(d.cmap)
        self.nsig_spin.setValue(d.resid_nsigma)
        self.mask_box.setChecked(d.show_mask)
        self.lo_spin.setValue(d.manual_lo)
        self.hi_spin.setValue(d.manual_hi)
        manual = d.limits == "manual"
        self.lo_spin.setEnabled(manual)
        self.hi_spin.setEnabled(manual)
        for w in ws:
            w.blockSignals(False)

    def _sync_manual_limits(self):
        lo, hi = self.panels.levels
        d = self.panels.settings
        if d.limits != "manual":
            for sp, v in ((self.lo_spin, lo), (self.hi_spin, hi)):
                sp.blockSignals(True)
                sp.setValue(v)
                sp.blockSignals(False)

    def _on_display_changed(self, *_):
        d = self.panels.settings
        limits = self.limits_combo.currentText()
        lo, hi = self.lo_spin.value(), self.hi_spin.value()
        if limits == "manual" and d.limits != "manual":
            lo, hi = self.panels.levels      # start manual from what is shown
        d = d.replace(stretch=self.stretch_combo.currentText(), limits=limits,
                      cmap=self.cmap_combo.currentText(), manual_lo=lo, manual_hi=hi,
                      resid_nsigma=self.nsig_spin.value(), show_mask=self.mask_box.isChecked())
        self._show_display_settings(d)
        self.panels.set_settings(d)
        self._sync_manual_limits()

    # ================================================================== edits
    def _push_params(self, new, text, *, merge_name=None):
        s = self.session
        if new == s.params:
            return
        self._edits_since_load += 1
        self.undo_stack.push(SetParamsCommand(s, s.params, new, text, old_result=s.result,
                                              new_result=None, merge_name=merge_name))

    def _on_param_edited(self, name, value):
        s = self.session
        if s.params is None or s.busy:
            return
        try:
            new = s.params.replace(**{name: value})
        except (engine.FitError, ValueError) as exc:
            self.statusBar().showMessage(str(exc), 5000)
            self.params.show_params(s.params)
            return
        self._push_params(new, f"Edit {name}", merge_name=name)

    def _on_profile_chosen(self, profile, M):
        s = self.session
        old = (s.profile, s.M)
        s.set_profile(profile, M)  # validates M (falls back to the profile's default)
        new = (s.profile, s.M)
        if new != old:
            cmd = SetProfileCommand(s, old, new)
            # already applied: push without applying it twice (redo() is idempotent)
            self.undo_stack.push(cmd)

    def _reset_start(self):
        s = self.session
        if s.data is None or s.busy:
            return
        try:
            start = engine.initial_guess(s.problem())
        except engine.FitError as exc:
            self.show_error("Cannot start from moments", str(exc))
            return
        self._push_params(start, "Start from moments")
        self.append_log("Start from image moments: " + format_params(start))

    def _on_drag_started(self):
        s = self.session
        if s.busy:
            return
        self._drag_start = (s.params, s.result)

    def _on_dragged(self, ell):
        s = self.session
        if s.params is None or s.busy:
            return
        try:
            new = s.params.replace(**ell)
        except (engine.FitError, ValueError):
            return
        s.set_params(new, origin="drag")

    def _on_drag_finished(self):
        s = self.session
        start, self._drag_start = self._drag_start, None
        if s.params is None:
            return
        p = s.params
        # canonical ellipse (q <= 1): re-sync the handle now that the user let go
        self.panels.ellipse.set_ellipse(p.x, p.y, p.re, p.q, p.angle)
        s.request_render(immediate=True)
        if start is None or start[0] == p or s.busy:
            return
        self._edits_since_load += 1
        self.undo_stack.push(SetParamsCommand(s, start[0], p, "Drag ellipse",
                                              old_result=start[1], new_result=None))

    # ================================================================== fit
    def start_fit(self):
        s = self.session
        if s.data is None:
            self.statusBar().showMessage("Nothing to fit: open an image first (File > Open "
                                         "Image, or File > Open Sample Galaxy).", 8000)
            return False
        if s.busy or self.runner.running:
            return False
        try:
            problem = s.problem()
        except (engine.FitError, ValueError) as exc:
            self.show_error("Cannot fit", str(exc))
            return False
        if s.params is None:
            return False
        self._fit_start = (s.params, s.result)
        s.set_busy(True)
        free = ", ".join(problem.free) or "nothing"
        self.append_log(f"Fit {s.profile} M={s.M}, sky {'on' if s.sky_on else 'off'}, "
                        f"PSF {'K=' + str(s.psf_model.n_components) if s.psf_model else 'none'}"
                        f"; free: {free}; start: {format_params(s.params)}")
        self.runner.start(problem, s.params)
        return True

    def cancel_fit(self):
        if self.runner.running:
            self.append_log("Cancel requested.")
            self.params.progress.setFormat("cancelling\u2026")
            self.runner.cancel()

    def _on_fit_progress(self, snap):
        s = self.session
        if not s.busy:
            return
        s.set_params(snap.params, origin="fit", clear_result=False)
        self.params.show_progress(snap)
        if s.images is not None and s.images.nu > 0:
            self.params.chi2_label.setText(
                f"\u03c7\u00b2/\u03bd = {snap.chi2 / s.images.nu:.4f}  (iteration "
                f"{snap.iteration})")
        self.fit_progressed.emit(snap)

    def _on_fit_finished(self, result):
        s = self.session
        old_p, old_r = self._fit_start or (s.params, s.result)
        self._fit_start = None
        s.set_busy(False)
        self._edits_since_load += 1
        self.undo_stack.push(SetParamsCommand(s, old_p, result.params,
                                              f"Fit ({result.status})", old_result=old_r,
                                              new_result=result))
        errs = result.errors()
        lines = [f"Fit {result.status} in {result.elapsed:.2f} s, {result.nfev} evaluations: "
                 f"chi2/nu = {result.chi2_nu:.4f} (nu = {result.nu})"]
        for n in result.free:
            lines.append(f"  {n} = {getattr(result.params, n):.6g} +- {errs[n]:.3g}")
        flags = [f.name for f in engine.FitFlags if f.value and f in result.flags]
        if flags:
            lines.append("  flags: " + ", ".join(flags))
        self.append_log("\n".join(lines))
        self.statusBar().showMessage(f"Fit {result.status}: chi2/nu = {result.chi2_nu:.4f}",
                                     8000)
        self.fit_finished.emit(result)

    def _on_fit_failed(self, msg):
        self._fit_start = None
        self.session.set_busy(False)
        self.show_error("Fit failed", msg.split("\n\n")[0], details=msg)

    # ================================================================== export
    def _ask_save(self, title, filt, suffix, key):
        s = self.session
        base = Path(s.image_path).stem if s.image_path else "mogviewer"
        d = self._setting(f"dirs/export_{key}", "", str) or self._setting("dirs/export", "",
                                                                          str)
        start = str(Path(d) / f"{base}{suffix}") if d else f"{base}{suffix}"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, title, start, filt, options=QtWidgets.QFileDialog.DontConfirmOverwrite
            if key == "csv" else QtWidgets.QFileDialog.Options())
        if path:
            self.settings.setValue(f"dirs/export_{key}", str(Path(path).parent))
            self.settings.setValue("dirs/export", str(Path(path).parent))
        return path

    def _ask_export_csv(self):
        path = self._ask_save("Export parameters (CSV)", "CSV (*.csv);;All files (*)",
                              "_mog.csv", "csv")
        if not path:
            return
        append = False
        if Path(path).exists() and Path(path).stat().st_size > 0:
            box = QtWidgets.QMessageBox(self)
            box.setIcon(QtWidgets.QMessageBox.Question)
            box.setWindowTitle("File exists")
            box.setText(f"{Path(path).name} exists.")
            box.setInformativeText("Append this fit as a new row, or replace the file?")
            b_app = box.addButton("Append row", QtWidgets.QMessageBox.AcceptRole)
            b_rep = box.addButton("Replace", QtWidgets.QMessageBox.DestructiveRole)
            box.addButton(QtWidgets.QMessageBox.Cancel)
            box.setDefaultButton(b_app)
            box.exec_()
            if box.clickedButton() is b_app:
                append = True
            elif box.clickedButton() is not b_rep:
                return
        self.export_csv(path, append=append)

    def _ask_export(self, kind):
        title, filt, suffix = {
            "imgblock": ("Export image block", "FITS (*.fits);;All files (*)", "_imgblock.fits"),
            "region": ("Export DS9 region", "DS9 region (*.reg);;All files (*)", "_mog.reg"),
            "json": ("Export model", "JSON (*.json);;All files (*)", "_mog.json"),
            "png": ("Export panels", "PNG (*.png)", "_panels.png"),
        }[kind]
        path = self._ask_save(title, filt, suffix, kind)
        if path:
            {"imgblock": self.export_imgblock, "region": self.export_region,
             "json": self.export_model_json, "png": self.export_png}[kind](path)

    def _export(self, what, fn):
        try:
            fn()
        except RuntimeError as exc:
            self.show_error(f"Cannot export {what}", str(exc))
            return False
        except engine.export_error_types() as exc:
            self.show_error(f"Cannot export {what}", f"{exc}")
            return False
        return True

    def _psf_text(self):
        return engine.psf_source(self.session.psf_model, self.session.psf_path)

    def export_csv(self, path, *, append=False):
        s = self.session
        if s.result is None:
            self.show_error("Nothing to export", "Fit first: the CSV row holds a fit result.")
            return False

        def go():
            row = engine.result_row(s.result, data=s.data, problem=s.problem(),
                                    psf_text=self._psf_text())
            engine.write_csv(path, [row], append=append)

        ok = self._export("CSV", go)
        if ok:
            self.append_log(f"{'Appended a row to' if append else 'Wrote'} {path}")
        return ok

    def export_imgblock(self, path):
        s = self.session
        if s.result is None:
            self.show_error("Nothing to export", "Fit first: the image block holds a fit.")
            return False
        ok = self._export("image block", lambda: engine.write_imgblock(
            path, problem=s.problem(), result=s.result, data=s.data, psf_text=self._psf_text()))
        if ok:
            self.append_log(f"Wrote image block {path}")
        return ok

    def export_region(self, path):
        s = self.session
        res = s.result if s.result is not None and s.result.params == s.params else None
        ok = self._export("region", lambda: engine.write_region(
            path, params=s.params, profile=s.profile, M=s.M, result=res, data=s.data))
        if ok:
            self.append_log(f"Wrote DS9 region {path}")
        return ok

    def export_model_json(self, path):
        s = self.session
        ok = self._export("model", lambda: engine.write_model_json(
            path, params=s.params, problem=s.problem(), result=s.result,
            source=s.image_path))
        if ok:
            self.append_log(f"Wrote model {path}")
        return ok

    def export_png(self, path):
        if not self.panels.grab_png(path):
            self.show_error("Cannot export PNG", f"{path} could not be written.")
            return False
        self.append_log(f"Wrote panels {path}")
        return True

    # ================================================================== dialogs
    def show_psf_dialog(self):
        if self._psf_dialog is None:
            self._psf_dialog = PsfDialog(self.session, self.tasks, self)
            self._psf_dialog.psf_chosen.connect(
                lambda m: self.session.set_psf(m, path=self.session.psf_path))
        self._psf_dialog.show()
        self._psf_dialog.raise_()
        return self._psf_dialog

    def _show_conventions(self):
        QtWidgets.QMessageBox.information(
            self, "Conventions",
            "<p><b>Pixels</b>: image[y, x]; x, y are 0-based pixel centres (the status bar also "
            "shows 1-based FITS coordinates).</p>"
            "<p><b>r\u2091</b>: semi-major half-light radius of the target profile, pixels. "
            "<b>q</b> = b/a. <b>angle</b>: degrees counter-clockwise from +x; GALFIT/imfit PA "
            "= angle \u2212 90.</p>"
            "<p><b>flux</b>: total flux of the mixture, image units. Errors are formal "
            "1-\u03c3 from (J\u1d40WJ)\u207b\u00b9, not scaled by \u03c7\u00b2/\u03bd.</p>"
            "<p><b>residual</b> = data \u2212 model; <b>chi</b> = residual / \u03c3.</p>")

    def _show_about(self):
        from .. import __version__
        QtWidgets.QMessageBox.about(
            self, "About mogviewer",
            f"<p><b>mogviewer {html.escape(str(__version__))}</b></p>"
            "<p>Fit galaxy images with mixtures of Gaussians (Hogg &amp; Lang 2013, "
            "PASP 125, 719).</p>")

    # ================================================================== exceptions
    def report_exception(self, exc_type, exc, tb):
        """Show an unexpected exception in a dialog and the log (installed as excepthook)."""
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        self.show_error("Unexpected error",
                        f"{exc_type.__name__}: {exc}\n\nThe app keeps running; details are in "
                        "the log.", details=text)


def _fmt(v, spec=".5g"):
    v = float(v)
    return format(v, spec) if math.isfinite(v) else "\u2013"


__all__ = ["MainWindow", "make_settings", "ORG", "APP"]
