"""The main window: layout only. Panels, parameter dock, log dock, display bar, menus, readout.

Data flow (STYLE.md): files -> :mod:`.actions` -> :class:`~mogviewer.gui.state.SessionState` ->
views; views send edits to the actions (undoable commands) or to the state's setters; the fit
runs in a worker thread and sends immutable snapshots. No widget edits another widget.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets

from . import dialogs, engine
from .actions import Actions
from .panels import ImagePanels, ellipse_outline
from .params_panel import ParamsPanel
from .psf_dialog import PsfDialog
from .sources_panel import SceneOverlay, SourcesPanel
from .state import COLORMAPS, LIMITS, PSF_MODES, STRETCHES, DisplayState, SessionState

ORG, APP = "mogviewer", "mogviewer"
HOVER_HINT = "Point at an image for pixel values; drag the green ellipse or its handles."
#: The window's preferred size, and the smallest it may be made (both at most the screen).
PREFERRED_SIZE = (1560, 940)
MINIMUM_SIZE = (760, 520)
#: version of the saved dock layout: 1 since the log moved under the image panels (a layout
#: saved before, with the log beside the parameters, is not restored: the new default is used)
_LAYOUT_VERSION = 1


def make_settings():
    """The application's QSettings (INI format, so tests can redirect it with ``setPath``)."""
    return QtCore.QSettings(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, ORG, APP)


def fit_size(wanted, available):
    """``(w, h)``: ``wanted`` shrunk to 96 % x 92 % of the ``available`` screen area (room for
    the frame and the panel of the desktop)."""
    return (int(min(wanted[0], 0.96 * available[0])), int(min(wanted[1], 0.92 * available[1])))


class _QtScheduler:
    """``schedule(delay_ms, fn)`` for the state's render throttle: one single-shot timer owned
    by the window, so nothing fires after the window is gone."""

    def __init__(self, parent):
        self._fn = None
        self.timer = QtCore.QTimer(parent)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._fire)

    def __call__(self, delay_ms, fn):
        self._fn = fn
        self.timer.start(int(delay_ms))

    def _fire(self):
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class ReadoutLabel(QtWidgets.QLabel):
    """The pixel readout: word-wrapped in a fixed height of two lines (a readout that grew
    while the mouse moves would resize the panels under it); the full text is also its
    tooltip."""

    def __init__(self, text, font):
        super().__init__(text)
        self.setFont(font)
        self.setWordWrap(True)
        self.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Fixed)
        self.setStyleSheet("padding: 1px 4px;")
        self._h = 2 * QtGui.QFontMetrics(font).lineSpacing() + 4
        self.setFixedHeight(self._h)

    # the toolbar gives it the window's width; its text never asks for more
    def sizeHint(self):
        return QtCore.QSize(200, self._h)

    def minimumSizeHint(self):
        return QtCore.QSize(50, self._h)

    def setText(self, text):
        super().setText(text)
        self.setToolTip(text)


class DisplayBar(QtWidgets.QToolBar):
    """Stretch, limits, colours, residual range, mask, whole image: a view of
    ``state.display`` that sends edits back through ``state.set_display``."""

    def __init__(self, state, panels, parent=None):
        super().__init__("Display", parent)
        self.state = state
        self.setObjectName("display_toolbar")
        self.setMovable(False)

        def combo(items, tip):
            c = QtWidgets.QComboBox()
            c.addItems(items)
            c.setToolTip(tip)
            return c

        self.stretch_combo = combo(list(STRETCHES), "Display stretch of data and model")
        self.limits_combo = combo(list(LIMITS), "Display limits of data and model (shared): "
                                  "min/max, zscale, a percentile of the unmasked pixels, or "
                                  "manual")
        self.cmap_combo = combo(list(COLORMAPS), "Colour map of data and model")
        self.lo_spin = QtWidgets.QDoubleSpinBox()
        self.hi_spin = QtWidgets.QDoubleSpinBox()
        for sp in (self.lo_spin, self.hi_spin):
            sp.setRange(-1e30, 1e30)
            sp.setDecimals(4)
            sp.setKeyboardTracking(False)
            sp.setMinimumWidth(90)
            sp.setToolTip("Manual display limits (image units)")
        self.nsig_spin = QtWidgets.QDoubleSpinBox()
        self.nsig_spin.setRange(0.5, 100)
        self.nsig_spin.setSingleStep(0.5)
        self.nsig_spin.setDecimals(1)
        self.nsig_spin.setPrefix("\u00b1")
        self.nsig_spin.setSuffix(" \u03c3")
        self.nsig_spin.setToolTip("Symmetric range of the residual (n x median sigma) and chi "
                                  "(n) panels")
        self.mask_box = QtWidgets.QCheckBox("mask")
        self.mask_box.setToolTip("Paint masked pixels (excluded from the fit) in slate blue")
        zoom = QtWidgets.QToolButton()
        zoom.setText("Whole image")
        zoom.setToolTip("Show the whole image (Home)")
        zoom.clicked.connect(panels.reset_zoom)
        for label, w in (("stretch", self.stretch_combo), ("limits", self.limits_combo),
                         ("min", self.lo_spin), ("max", self.hi_spin),
                         ("colours", self.cmap_combo), ("resid/chi", self.nsig_spin)):
            lab = QtWidgets.QLabel(f" {label} ")
            lab.setStyleSheet("color: #666;")
            self.addWidget(lab)
            self.addWidget(w)
        self.addSeparator()
        self.addWidget(self.mask_box)
        self.addWidget(zoom)
        self._widgets = (self.stretch_combo, self.limits_combo, self.cmap_combo, self.lo_spin,
                         self.hi_spin, self.nsig_spin, self.mask_box)
        for c in (self.stretch_combo, self.limits_combo, self.cmap_combo):
            c.currentIndexChanged.connect(self._edited)
        for sp in (self.lo_spin, self.hi_spin, self.nsig_spin):
            sp.valueChanged.connect(self._edited)
        self.mask_box.toggled.connect(self._edited)
        state.display_changed.connect(self.show_display)
        state.image_changed.connect(self.show_display)
        self.show_display()

    def show_display(self, *_):
        d, (lo, hi) = self.state.display, self.state.levels
        for w in self._widgets:
            w.blockSignals(True)
        try:
            self.stretch_combo.setCurrentText(d.stretch)
            self.limits_combo.setCurrentText(d.limits)
            self.cmap_combo.setCurrentText(d.cmap)
            self.nsig_spin.setValue(d.resid_nsigma)
            self.mask_box.setChecked(d.show_mask)
            manual = d.limits == "manual"
            self.lo_spin.setValue(d.manual_lo if manual else lo)
            self.hi_spin.setValue(d.manual_hi if manual else hi)
            self.lo_spin.setEnabled(manual)
            self.hi_spin.setEnabled(manual)
        finally:
            for w in self._widgets:
                w.blockSignals(False)

    def _edited(self, *_):
        d = self.state.display
        limits = self.limits_combo.currentText()
        # the spin boxes hold manual limits only in manual mode (else they show the levels;
        # the state starts manual limits from those)
        lo, hi = ((self.lo_spin.value(), self.hi_spin.value()) if d.limits == "manual"
                  else (d.manual_lo, d.manual_hi))
        self.state.set_display(d.replace(
            stretch=self.stretch_combo.currentText(), limits=limits,
            cmap=self.cmap_combo.currentText(), manual_lo=lo, manual_hi=hi,
            resid_nsigma=self.nsig_spin.value(), show_mask=self.mask_box.isChecked()))


class WheelScrollsPanel(QtCore.QObject):
    """A wheel turned over a combo box or spin box of the scrolling dock scrolls the dock
    unless that box has the keyboard focus (clicked or tabbed into). Without it, scrolling
    the dock past the profile, M or band box silently changed the model or the band.

    Parameters
    ----------
    scroll : QScrollArea
        The dock's scroll area; every combo and spin box inside its widget is covered.
    """

    def __init__(self, scroll):
        super().__init__(scroll)
        self.scroll = scroll
        for box in scroll.widget().findChildren((QtWidgets.QComboBox,
                                                 QtWidgets.QAbstractSpinBox)):
            box.setFocusPolicy(QtCore.Qt.StrongFocus)     # no focus by the wheel alone
            box.installEventFilter(self)

    def eventFilter(self, obj, ev):  # noqa: N802 - Qt's name
        if ev.type() == QtCore.QEvent.Wheel and not obj.hasFocus():
            QtWidgets.QApplication.sendEvent(self.scroll.verticalScrollBar(), ev)
            return True
        return False


class MainWindow(QtWidgets.QMainWindow):
    """mogviewer's main window: layout only; the verbs are :attr:`commands` (an
    :class:`~mogviewer.gui.actions.Actions`; not ``actions``, which would hide
    ``QWidget.actions()``)."""

    def __init__(self, *, settings=None):
        super().__init__()
        engine.install_warning_filters()
        self.settings = settings if settings is not None else make_settings()
        self._scheduler = _QtScheduler(self)
        self.state = SessionState(schedule=self._scheduler)
        self.commands = Actions(self, self.state, self.settings)
        self._psf_dialog = None
        self._posterior_dialog = None
        self._colour_dialog = None
        self._quick_start = None
        self._hover = None
        self.setWindowTitle("mogviewer")
        self.setAcceptDrops(True)

        self.panels = ImagePanels(self.state)
        f = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.FixedFont)
        f.setPointSizeF(max(7.0, f.pointSizeF() * 0.9))
        # the readout has its own full-width row above the status bar: never under a status
        # message, never wider than the window (it wraps, and grows a line when it must)
        self.readout = ReadoutLabel(HOVER_HINT, f)
        readout_bar = QtWidgets.QToolBar("Readout", self)
        readout_bar.setObjectName("readout_bar")
        readout_bar.setMovable(False)
        readout_bar.setFloatable(False)
        readout_bar.toggleViewAction().setEnabled(False)
        readout_bar.addWidget(self.readout)
        self.addToolBar(QtCore.Qt.BottomToolBarArea, readout_bar)
        self.readout_bar = readout_bar
        central = QtWidgets.QWidget()
        cl = QtWidgets.QVBoxLayout(central)
        cl.setContentsMargins(4, 2, 4, 0)
        cl.setSpacing(0)
        cl.addWidget(self.panels, 1)
        self.setCentralWidget(central)
        self.display_bar = DisplayBar(self.state, self.panels, self)
        self.addToolBar(QtCore.Qt.TopToolBarArea, self.display_bar)
        for name in ("stretch_combo", "limits_combo", "cmap_combo", "lo_spin", "hi_spin",
                     "nsig_spin", "mask_box"):
            setattr(self, name, getattr(self.display_bar, name))

        self.params = ParamsPanel(self.state)
        self.sources = SourcesPanel(self.state, self.commands)
        body = QtWidgets.QWidget()
        bl = QtWidgets.QVBoxLayout(body)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.setSpacing(0)
        bl.addWidget(self.params)
        src_wrap = QtWidgets.QWidget()
        sl = QtWidgets.QVBoxLayout(src_wrap)
        sl.setContentsMargins(6, 0, 6, 6)
        sl.addWidget(self.sources)
        bl.addWidget(src_wrap)
        bl.addStretch(1)
        self.scene_overlay = SceneOverlay(self.state, self.commands, self.panels.data_plot,
                                          self.sources)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.params_scroll = scroll
        self._wheel_scrolls = WheelScrollsPanel(scroll)
        self._fit_params_width()
        self.params_dock = QtWidgets.QDockWidget("Model and fit", self)
        self.params_dock.setObjectName("params_dock")
        dock_body = QtWidgets.QWidget()
        dl = QtWidgets.QVBoxLayout(dock_body)
        dl.setContentsMargins(6, 6, 6, 0)
        dl.setSpacing(2)
        dl.addWidget(self.params.fit_group)     # never scrolled out of view (issue 15)
        dl.addWidget(scroll, 1)
        self.params_dock.setWidget(dock_body)
        self.params_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetMovable
                                     | QtWidgets.QDockWidget.DockWidgetFloatable)
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.params_dock)

        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.WidgetWidth)
        self.log_view.setFont(f)
        self.log_dock = QtWidgets.QDockWidget("Log", self)
        self.log_dock.setObjectName("log_dock")
        self.log_dock.setWidget(self.log_view)
        self.log_view.setMinimumHeight(36)
        # the log under the image panels, the parameters keeping the whole right column: at
        # 1280x720 the log shared that column with the parameters and showed one line
        self.setCorner(QtCore.Qt.BottomRightCorner, QtCore.Qt.RightDockWidgetArea)
        self.addDockWidget(QtCore.Qt.BottomDockWidgetArea, self.log_dock)

        self.psf_status = QtWidgets.QLabel("PSF: none")
        self.statusBar().addPermanentWidget(self.psf_status)
        self.startup_progress = QtWidgets.QProgressBar()
        self.startup_progress.setRange(0, 0)
        self.startup_progress.setMaximumWidth(160)
        self.startup_progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.startup_progress)

        self._build_menus()
        self._connect()
        self._apply_initial_size()
        self._restore_settings()

    # ================================================================== construction
    def _apply_initial_size(self):
        avail = self._available()
        self.setMinimumSize(*fit_size(MINIMUM_SIZE, avail))
        self.resize(*fit_size(PREFERRED_SIZE, avail))

    def _available(self):
        screen = self.screen() if hasattr(self, "screen") else None
        screen = screen or QtWidgets.QApplication.primaryScreen()
        g = screen.availableGeometry()
        return (g.width(), g.height())

    def _build_menus(self):
        q = self.commands.q
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        for k in ("open_image", "open_psf", "remove_psf", "open_noise", "open_mask",
                  "open_mask_regions", "open_model"):
            fm.addAction(q[k])
        self.recent_menu = fm.addMenu("Open &Recent")
        fm.addAction(q["open_sample"])
        fm.addSeparator()
        em = fm.addMenu("&Export")
        for k in ("csv", "imgblock", "region", "json", "png", "mask"):
            em.addAction(q[f"export_{k}"])
        fm.addSeparator()
        fm.addAction(q["quit"])

        edm = mb.addMenu("&Edit")
        edm.addAction(q["undo"])
        edm.addAction(q["redo"])
        self.undo_action, self.redo_action = q["undo"], q["redo"]

        fitm = mb.addMenu("F&it")
        for k in ("fit", "sample", "cancel", "reset"):
            fitm.addAction(q[k])
        self.fit_action, self.cancel_action = q["fit"], q["cancel"]

        vm = mb.addMenu("&View")
        a = vm.addAction("&PSF\u2026", self.show_psf_dialog)
        a.setShortcut(QtGui.QKeySequence("Ctrl+Shift+P"))
        self.colour_action = vm.addAction("&Colour Image\u2026", self.show_colour_dialog)
        self.colour_action.setStatusTip("The three reddest bands of a multi-band file as R, G, "
                                        "B (astropy make_lupton_rgb)")
        a = vm.addAction("&Whole Image", self.panels.reset_zoom)
        a.setShortcut(QtGui.QKeySequence("Home"))
        self.components_action = vm.addAction("Show &Gaussians")
        self.components_action.setCheckable(True)
        self.components_action.setShortcut(QtGui.QKeySequence("G"))
        self.components_action.setStatusTip("1-sigma ellipses of the galaxy's Gaussians")
        self.components_action.toggled.connect(self._set_components)
        vm.addSeparator()
        vm.addAction(self.params_dock.toggleViewAction())
        vm.addAction(self.log_dock.toggleViewAction())

        hm = mb.addMenu("&Help")
        self.quick_start_action = hm.addAction("&Quick Start", self.show_quick_start)
        self.quick_start_action.setShortcut(QtGui.QKeySequence.HelpContents)
        hm.addAction("&Conventions", lambda: dialogs.show_conventions(self))
        hm.addAction("&About mogviewer", lambda: dialogs.show_about(self))
        self.export_actions = self.commands.export_actions

    def _connect(self):
        s, a = self.state, self.commands
        s.logged.connect(self.append_log)
        s.params_changed.connect(self._on_params_changed)
        s.image_changed.connect(self._on_image_changed)
        s.psf_changed.connect(self._on_psf_changed)
        s.psf_changed.connect(self._fit_params_width_later)
        s.image_changed.connect(self._fit_params_width_later)
        s.posterior_changed.connect(self._fit_params_width_later)   # its column comes and goes
        s.sources_changed.connect(self._fit_params_width_later)
        s.mask_changed.connect(self._fit_params_width_later)
        s.config_changed.connect(self._update_components)
        s.model_changed.connect(self._refresh_readout)
        s.busy_changed.connect(self._on_busy)
        a.status_message.connect(self._show_status)
        a.recent_changed.connect(self._rebuild_recent_menu)
        e = self.panels.ellipse
        e.drag_started.connect(a.drag_started)
        e.dragged.connect(a.dragged)
        e.drag_finished.connect(a.drag_finished)
        self.panels.hovered.connect(self._on_hover)
        p = self.params
        p.param_edited.connect(a.edit_param)
        p.fixed_toggled.connect(s.set_fixed)
        p.profile_chosen.connect(a.choose_profile)
        p.sky_toggled.connect(s.set_sky)
        p.reset_requested.connect(a.reset_start)
        p.components_toggled.connect(self.components_action.setChecked)
        p.fit_requested.connect(a.start_fit)
        p.cancel_requested.connect(a.cancel_fit)
        p.hdu_chosen.connect(a.choose_hdu)
        p.joint_toggled.connect(a.set_joint)
        p.zeropoint_edited.connect(a.set_zeropoint)
        p.psf_open_requested.connect(lambda: a.ask_open("psf"))
        p.psf_remove_requested.connect(a.remove_psf)
        p.psf_position_edited.connect(a.set_psf_position)
        p.psf_mode_chosen.connect(s.set_psf_mode)
        p.sample_requested.connect(a.start_sample)
        # the box's step count is the one Fit > Sample Posterior (S) uses too
        p.steps_spin.valueChanged.connect(a.set_sample_steps)
        a.set_sample_steps(p.steps_spin.value())
        p.corner_requested.connect(self.show_posterior_dialog)
        a.sample_progressed.connect(p.show_sample_progress)
        a.sample_finished.connect(self._on_sample_finished)

    def _fit_params_width(self):
        """The parameter dock as wide as the panel needs (its rows change with the PSF: a
        PSFEx position row), plus the vertical scroll bar: nothing is cut at the right."""
        sb = self.params_scroll.verticalScrollBar().sizeHint().width()
        self.params_scroll.setMinimumWidth(self.params_scroll.widget().minimumSizeHint().width()
                                           + sb + 2)

    def _fit_params_width_later(self):
        # after the panel has shown the new rows; a bound method of the window, so the timer
        # is dropped with the window
        QtCore.QTimer.singleShot(0, self._fit_params_width)

    def showEvent(self, event):
        super().showEvent(event)
        if not getattr(self, "_docks_sized", False):
            # first show: the window has its final size now; the parameter panel gets its
            # full height when there is room, the log the rest
            self._docks_sized = True
            if not getattr(self, "_dock_layout_restored", False):
                lines = 5 if self.height() >= 800 else 4
                self.resizeDocks([self.log_dock],
                                 [lines * self.log_view.fontMetrics().lineSpacing() + 36],
                                 QtCore.Qt.Vertical)

    # ================================================================== startup
    def wait_for_warmup(self, thread, then=None, *, poll_ms=100):
        """Say that the renderer is being compiled while ``thread`` (from
        :func:`mogviewer.render.warmup`) runs, then call ``then()``. The first start after an
        install compiles the numba kernels (45-85 s); later starts load them from numba's cache
        in a second or two."""
        if thread is None or not thread.is_alive():
            if then is not None:
                then()
            return
        self.startup_progress.setVisible(True)
        self.startup_message = ("Preparing the renderer (numba compiles it on the first start "
                                "after installation: about a minute)\u2026")
        self.statusBar().showMessage(self.startup_message)
        self.append_log(self.startup_message)
        t0 = time.monotonic()
        timer = QtCore.QTimer(self)
        self._warmup_timer = timer

        def poll():
            if thread.is_alive():
                return
            timer.stop()
            self.startup_progress.setVisible(False)
            self.statusBar().showMessage(
                f"Renderer ready ({time.monotonic() - t0:.0f} s).", 5000)
            self.append_log("Renderer ready.")
            if then is not None:
                then()

        timer.timeout.connect(poll)
        timer.start(poll_ms)

    # ================================================================== settings
    def _restore_settings(self):
        st = self.settings
        geom = st.value("window/geometry")
        if isinstance(geom, QtCore.QByteArray) and not geom.isEmpty():
            self.restoreGeometry(geom)
            # a geometry saved on a larger screen (or another scale factor) must still fit
            avail = self._available()
            w, h = fit_size((self.width(), self.height()), avail)
            if (w, h) != (self.width(), self.height()):
                self.resize(w, h)
        state = st.value("window/state")
        self._dock_layout_restored = False
        if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
            self._dock_layout_restored = bool(self.restoreState(state, _LAYOUT_VERSION))
        a = self.commands
        d = DisplayState()
        d = d.replace(stretch=a.setting("display/stretch", d.stretch, str),
                      limits=a.setting("display/limits", d.limits, str),
                      cmap=a.setting("display/cmap", d.cmap, str),
                      resid_nsigma=a.setting("display/resid_nsigma", d.resid_nsigma, float),
                      show_mask=a.setting("display/show_mask", d.show_mask, bool))
        if d.limits == "manual":
            d = d.replace(limits=DisplayState().limits)
        self.state.set_display(d)
        prof = a.setting("fit/profile", "exp", str)
        if prof in engine.PROFILES:
            self.state.set_profile(prof, a.setting("fit/M", None, int))
        self.state.set_sky(a.setting("fit/sky", True, bool))
        mode = a.setting("fit/psf_mode", "exact", str)
        if mode in PSF_MODES:
            self.state.set_psf_mode(mode)
        self._rebuild_recent_menu()

    def save_settings(self):
        st = self.settings
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState(_LAYOUT_VERSION))
        d = self.state.display
        st.setValue("display/stretch", d.stretch)
        st.setValue("display/limits", d.limits)
        st.setValue("display/cmap", d.cmap)
        st.setValue("display/resid_nsigma", d.resid_nsigma)
        st.setValue("display/show_mask", d.show_mask)
        st.setValue("fit/profile", self.state.profile)
        st.setValue("fit/M", self.state.M)
        st.setValue("fit/sky", self.state.sky_on)
        st.setValue("fit/psf_mode", self.state.psf_mode)
        st.sync()

    def closeEvent(self, ev):
        engine.stop_compiling()         # a first start: a fit waiting for the kernels ends
        self.commands.shutdown()
        if self._psf_dialog is not None:
            self._psf_dialog.close()
        if self._posterior_dialog is not None:
            self._posterior_dialog.close()
        if self._colour_dialog is not None:
            self._colour_dialog.close()
        self.save_settings()
        super().closeEvent(ev)

    def _rebuild_recent_menu(self):
        m = self.recent_menu
        m.clear()
        items = self.commands.recent_files()
        for kind, path in items:
            act = m.addAction(f"{kind}: {Path(path).name}")
            act.setToolTip(path)
            act.setStatusTip(path)
            act.triggered.connect(
                lambda _c=False, k=kind, p=path: self.commands.open_file(p, kind=k))
        if not items:
            act = m.addAction("(none)")
            act.setEnabled(False)
        else:
            m.addSeparator()
            m.addAction("Clear List", self.commands.clear_recent)

    # ================================================================== log and status
    def append_log(self, text):
        stamp = time.strftime("%H:%M:%S")
        for i, line in enumerate(str(text).splitlines() or [""]):
            self.log_view.appendPlainText(f"{stamp}  {line}" if i == 0 else f"          {line}")
        sb = self.log_view.verticalScrollBar()
        sb.setValue(sb.maximum())

    def _show_status(self, text, ms):
        if text:
            self.statusBar().showMessage(text, ms)
        else:
            self.statusBar().clearMessage()

    def report_exception(self, exc_type, exc, tb):
        self.commands.report_exception(exc_type, exc, tb)

    # ---------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev):
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        ev.acceptProposedAction()
        self.commands.open_dropped(paths)

    # ================================================================== dialogs
    def show_psf_dialog(self):
        if self._psf_dialog is None:
            self._psf_dialog = PsfDialog(self.state, self.commands.tasks, self)
            self._psf_dialog.psf_chosen.connect(
                lambda m: self.state.set_psf(m, path=self.state.psf_path,
                                             position=self.state.psf_position,
                                             hdu=self.state.psf_hdu))
        self._psf_dialog.show()
        self._psf_dialog.raise_()
        return self._psf_dialog

    def show_posterior_dialog(self):
        """The corner plot and intervals of the current posterior (None without one)."""
        post = self.state.posterior
        if post is None:
            return None
        from .posterior_dialog import PosteriorDialog
        if self._posterior_dialog is None:
            self._posterior_dialog = PosteriorDialog(self.commands.tasks, self)
        self._posterior_dialog.show_posterior(post, self.state.result)
        self._posterior_dialog.show()
        self._posterior_dialog.raise_()
        return self._posterior_dialog

    def _on_sample_finished(self, post):
        if post is not None and post is self.state.posterior:
            self.show_posterior_dialog()

    def show_colour_dialog(self):
        """The colour image of the current multi-band file (or the reason there is none)."""
        from .colour_dialog import ColourDialog
        s = self.state
        if self._colour_dialog is None:
            self._colour_dialog = ColourDialog(self.commands.tasks, self)
        self._colour_dialog.show_file(s.image_path, s.source.hdus)
        self._colour_dialog.show()
        self._colour_dialog.raise_()
        return self._colour_dialog

    def show_quick_start(self):
        if self._quick_start is None:
            self._quick_start = dialogs.QuickStartDialog(self)
        self._quick_start.show()
        self._quick_start.raise_()
        return self._quick_start

    # ================================================================== state -> views
    def _on_image_changed(self):
        s = self.state
        name = Path(s.image_path).name if s.image_path else "(array)"
        band = f" [{s.data.band}]" if s.data is not None and s.data.band else ""
        # ends with the application's display name (app.py), so that Qt does not append it a
        # second time (X11 and Windows add " \u2014 mogviewer" to a title that lacks it: the
        # title read "mogviewer \u2014 file [r] \u2014 mogviewer")
        self.setWindowTitle(f"{name}{band} \u2014 mogviewer")
        self._hover = None      # the pixel under the mouse belonged to the previous image
        self._refresh_readout()
        self._on_psf_changed()

    def _on_psf_changed(self):
        s = self.state
        m = s.psf_model
        if m is None:
            self.psf_status.setText("PSF: none (the pixel only)")
            self.psf_status.setStyleSheet("")
        else:
            info = s.psf_info or {}
            mode = {"exact": "exact", "mixture": "mixture only"}.get(info.get("psf_mode"), "")
            extra = "" if info.get("psf_res_peak") is None else \
                f", max|res|/peak {100 * info['psf_res_peak']:.2g} %"
            text = f"PSF: {Path(s.psf_path or '').name} ({mode}, K = {m.n_components}{extra})"
            if s.psf_from_other_image:
                text += " \u2014 chosen for another image"
                self.psf_status.setStyleSheet("color: #d08000;")
            else:
                self.psf_status.setStyleSheet("")
            self.psf_status.setText(text)
        self.commands.update_enabled()

    def _on_params_changed(self, params, origin):
        self.panels.ellipse.setVisible(True)
        if origin != "drag":
            self.panels.ellipse.set_ellipse(params.x, params.y, params.re, params.q,
                                            params.angle)
        self.panels.set_model_outline(*ellipse_outline(params.x, params.y, params.re, params.q,
                                                       params.angle))
        self._update_components()

    def _update_components(self):
        on = self.components_action.isChecked()
        self.panels.components.setVisible(on)
        p = self.state.params
        if on and p is not None:
            self.panels.components.set_components(
                *engine.galaxy_components(p, self.state.profile, self.state.M))

    def _set_components(self, on):
        self.params.components_box.blockSignals(True)
        self.params.components_box.setChecked(on)
        self.params.components_box.blockSignals(False)
        self._update_components()

    def _on_busy(self, busy):
        self.panels.ellipse.translatable = not busy
        for h in self.panels.ellipse.getHandles():
            h.setVisible(not busy)

    # ---------------------------------------------------------------- readout
    def _on_hover(self, pix):
        self._hover = pix
        self._refresh_readout()

    def _refresh_readout(self):
        text = self.readout_text(self._hover) if self._hover else ""
        self.readout.setText(text or HOVER_HINT)

    def readout_text(self, pix):
        """Readout for integer pixel ``(ix, iy)`` (0-based); "" outside the current image."""
        s = self.state
        if pix is None or s.data is None:
            return ""
        ix, iy = pix
        d = s.data
        ny, nx = d.shape
        if not (0 <= ix < nx and 0 <= iy < ny):
            return ""
        parts = [f"x={ix} y={iy} (FITS {ix + 1},{iy + 1})", f"data={d.image[iy, ix]:.5g}"]
        im = s.images
        if im is not None and im.model.shape == d.shape:
            parts += [f"model={im.model[iy, ix]:.5g}",
                      "resid=" + _fmt(im.residual[iy, ix]),
                      "chi=" + _fmt(im.chi[iy, ix], ".3f")]
        if d.mask[iy, ix]:
            parts.append("[masked]")
        w = engine.pixel_to_world(d, ix, iy)
        if w is not None:
            ra, dec = w
            hms, dms = engine.sexagesimal(ra, dec)
            parts.append(f"RA={ra:.6f}\u00b0 Dec={dec:+.6f}\u00b0 ({hms} {dms})")
        return "  ".join(parts)


def _fmt(v, spec=".5g"):
    v = float(v)
    return format(v, spec) if math.isfinite(v) else "\u2013"


__all__ = ["MainWindow", "make_settings", "fit_size", "ORG", "APP"]
