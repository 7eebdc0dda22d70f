"""The parameter panel: profile and M, parameters with errors and fixed/free, sky, fit controls.

A thin view of the session state: it shows ``state.params`` / ``state.result`` and the image's
HDU/band, zeropoint and PSF, and sends edits out as signals (the actions turn them into undoable
commands or file reads). Programmatic updates block the widgets' signals, so showing a value never
echoes back as an edit. The Fit group (:attr:`ParamsPanel.fit_group`) is a separate widget the
window keeps above the scrolling part, so the Fit button is visible however short the window.
"""

from __future__ import annotations

import math

from PyQt5 import QtCore, QtGui, QtWidgets

from . import bands as gbands
from . import engine
from .state import PARAM_NAMES, count

LABELS = {"flux": "flux", "x": "x", "y": "y", "re": "r\u2091", "q": "q = b/a",
          "angle": "angle", "n": "S\u00e9rsic n", "sky": "sky"}
TOOLTIPS = {
    "flux": "Total flux of the model mixture (image units). The target profile's total, the "
            "CSV's flux column, is this divided by the mixture's flux fraction (shown under the "
            "fit's status; e.g. 0.896 for dev M=8, 0.932 for luv M=8, 0.9986 for exp M=6).",
    "x": "Centre x, 0-based pixels (FITS / GALFIT x = this + 1).",
    "y": "Centre y, 0-based pixels (FITS / GALFIT y = this + 1).",
    "re": "Semi-major half-light radius of the target profile (pixels).",
    "q": "Axis ratio b/a, in (0, 1].",
    "angle": "Position angle of the major axis, degrees counter-clockwise from +x "
             "(GALFIT/imfit PA = angle - 90).",
    "sky": "Constant background per pixel (image units).",
    "n": "S\u00e9rsic index of profile 'ser' (the smooth family, 0.5 <= n <= 8); fixed or "
         "free like the others.",
}
UNITS = {"flux": "", "x": "px", "y": "px", "re": "px", "q": "", "angle": "\u00b0", "sky": "",
         "n": ""}
FORMATS = {"flux": ".7g", "x": ".3f", "y": ".3f", "re": ".3f", "q": ".4f", "angle": ".2f",
           "sky": ".5g", "n": ".3f"}
RANGES = {"flux": (-1e30, 1e30), "x": (-1e6, 1e6), "y": (-1e6, 1e6), "re": (0.01, 1e6),
          "q": (0.01, 1.0), "angle": (0.0, 180.0), "sky": (-1e30, 1e30),
          "n": engine.N_RANGE}
STEPS = {"flux": ("rel", 0.02), "x": ("abs", 0.5), "y": ("abs", 0.5), "re": ("rel", 0.05),
         "q": ("abs", 0.02), "angle": ("abs", 2.0), "sky": ("abs", 0.1), "n": ("abs", 0.1)}


def status_style(status, flags):
    """The fit status text's colour: red when the fit did not converge (failed, cancelled, at
    the evaluation limit), amber when it converged with flags (a converged fit with
    ERRORS_UNDERESTIMATED read as a failure in red), the default when clean."""
    if status != "converged":
        return "color: #a33;"
    return "color: #b36b00;" if flags else ""


class ParamSpin(QtWidgets.QDoubleSpinBox):
    """A spin box that shows ``format(value, fmt)`` and steps relatively or additively."""

    def __init__(self, name, parent=None):
        super().__init__(parent)
        self.name = name
        self.fmt = FORMATS[name]
        self.step_kind, self.step = STEPS[name]
        self.setDecimals(12)
        self.setRange(*RANGES[name])
        self.setKeyboardTracking(False)
        self.setAccelerated(True)
        self.setWrapping(name == "angle")
        self.setButtonSymbols(QtWidgets.QAbstractSpinBox.UpDownArrows)
        self.setAlignment(QtCore.Qt.AlignRight)
        self.setMinimumWidth(96)
        self.setSingleStep(self.step)
        self.setFocusPolicy(QtCore.Qt.StrongFocus)     # not focused by the wheel

    def textFromValue(self, v):
        return format(v, self.fmt)

    def wheelEvent(self, ev):
        # the wheel scrolls the dock unless this box has the focus: scrolling past the
        # parameters must not step them (a wheel over the flux box changed the flux)
        if not self.hasFocus():
            ev.ignore()
            return
        super().wheelEvent(ev)

    def event(self, ev):
        # F (no modifier) can never be part of a number: let it reach the window's Fit shortcut
        # instead of being swallowed as text (the typed value is committed before the fit)
        if (ev.type() == QtCore.QEvent.ShortcutOverride and ev.key() == QtCore.Qt.Key_F
                and not (ev.modifiers() & ~QtCore.Qt.KeypadModifier)):
            ev.ignore()
            return True
        return super().event(ev)

    def valueFromText(self, text):
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        t = text.strip()
        try:
            float(t)
            return QtGui.QValidator.Acceptable, text, pos
        except ValueError:
            pass
        if t in ("", "-", "+", ".", "-.", "+.") or t.lower().endswith(("e", "e-", "e+")):
            return QtGui.QValidator.Intermediate, text, pos
        return QtGui.QValidator.Invalid, text, pos

    def fixup(self, text):
        return self.textFromValue(self.value())

    def stepBy(self, steps):
        if self.step_kind == "rel":
            v = self.value()
            if v == 0:
                v = 1.0
            self.setValue(v * (1.0 + self.step) ** steps)
        else:
            super().stepBy(steps)


class ParamsPanel(QtWidgets.QWidget):
    """Controls of the model and the fit.

    Signals
    -------
    param_edited(str, float) : the user typed or stepped a parameter.
    fixed_toggled(str, bool) : fixed (True) / free.
    profile_chosen(str, int) : profile and M.
    sky_toggled(bool)
    reset_requested()
    components_toggled(bool)
    fit_requested()
    cancel_requested()
    hdu_chosen(int) : image HDU (of a multi-band / multi-HDU file).
    joint_toggled(bool) : the "joint (all bands)" switch.
    zeropoint_edited(object) : a zeropoint (float) or None (use the header's).
    psf_open_requested()
    psf_remove_requested()
    psf_position_edited(float, float) : where a varying PSFEx model is evaluated.
    psf_mode_chosen(str) : 'exact' (the PSF image itself) or 'mixture' (its mixture only).
    sample_requested(int) : sample the posterior with this many steps per walker.
    corner_requested() : show the corner plot of the posterior.
    """

    param_edited = QtCore.pyqtSignal(str, float)
    fixed_toggled = QtCore.pyqtSignal(str, bool)
    profile_chosen = QtCore.pyqtSignal(str, int)
    sky_toggled = QtCore.pyqtSignal(bool)
    reset_requested = QtCore.pyqtSignal()
    components_toggled = QtCore.pyqtSignal(bool)
    fit_requested = QtCore.pyqtSignal()
    cancel_requested = QtCore.pyqtSignal()
    hdu_chosen = QtCore.pyqtSignal(int)
    joint_toggled = QtCore.pyqtSignal(bool)
    zeropoint_edited = QtCore.pyqtSignal(object)
    psf_open_requested = QtCore.pyqtSignal()
    psf_remove_requested = QtCore.pyqtSignal()
    psf_position_edited = QtCore.pyqtSignal(float, float)
    psf_mode_chosen = QtCore.pyqtSignal(str)
    sample_requested = QtCore.pyqtSignal(int)
    corner_requested = QtCore.pyqtSignal()

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.n_param_updates = 0
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(4)
        # the Fit group is laid out by the window above the scrolling part of the dock, so it
        # stays in view however short the window and wherever the parameters are scrolled
        self.fit_group = self._build_fit_group()
        self.joint_group = self._build_joint_group()
        outer.addWidget(self.joint_group)

        # profile ---------------------------------------------------------------
        gp = QtWidgets.QGroupBox("Profile")
        fl = QtWidgets.QGridLayout(gp)
        self.profile_combo = QtWidgets.QComboBox()
        for p in engine.PROFILES:
            self.profile_combo.addItem(engine.PROFILE_LABELS[p], p)
        self.M_combo = QtWidgets.QComboBox()
        self.M_combo.setToolTip("Number of Gaussians M (only the tabulated mixtures)")
        # wide enough for two digits and the arrow whatever the dock's width (never clipped)
        self.M_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToContents)
        self.M_combo.setMinimumContentsLength(2)
        self.M_combo.setSizePolicy(QtWidgets.QSizePolicy.Minimum, QtWidgets.QSizePolicy.Fixed)
        self.profile_combo.setMinimumContentsLength(8)
        self.profile_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.quality_label = QtWidgets.QLabel()
        self.quality_label.setToolTip(
            "Approximation quality of the chosen mixture (Hogg & Lang 2013): the badness of "
            "the fit to the profile, and the fraction of the target profile's flux it holds.")
        self.quality_label.setWordWrap(True)
        fl.addWidget(QtWidgets.QLabel("profile"), 0, 0)
        fl.addWidget(self.profile_combo, 0, 1)
        fl.addWidget(QtWidgets.QLabel("M"), 0, 2)
        fl.addWidget(self.M_combo, 0, 3)
        fl.addWidget(self.quality_label, 1, 0, 1, 4)
        fl.setColumnStretch(1, 1)
        outer.addWidget(gp)

        # parameters ---------------------------------------------------------------
        gpar = QtWidgets.QGroupBox("Parameters")
        grid = QtWidgets.QGridLayout(gpar)
        grid.setHorizontalSpacing(6)
        grid.addWidget(self._small("fixed"), 0, 4)
        self.post_header = self._small("posterior")
        self.post_header.setToolTip(
            "The posterior's 16th and 84th percentiles as distances from its median "
            "(Sample posterior; flat priors within the bounds); the tooltip of each value and "
            "the corner plot's table give all three")
        grid.addWidget(self.post_header, 0, 5)
        self.spins, self.err_labels, self.fix_boxes, self.param_rows = {}, {}, {}, {}
        self.post_labels = {}
        for r, name in enumerate(PARAM_NAMES, start=1):
            lab = QtWidgets.QLabel(LABELS[name])
            lab.setToolTip(TOOLTIPS[name])
            sp = ParamSpin(name)
            sp.setToolTip(TOOLTIPS[name])
            sp.valueChanged.connect(lambda v, n=name: self._on_spin(n, v))
            err = QtWidgets.QLabel("")
            # room for the widest error text ("± 9.9e+99"), whatever else the row holds
            err.setMinimumWidth(max(58, err.fontMetrics().horizontalAdvance("\u00b1 9.9e+99")
                                    + 6))
            err.setStyleSheet("color: #6a6a6a;")
            err.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
            unit = self._small(UNITS[name])
            fix = QtWidgets.QCheckBox()
            fix.setToolTip(f"Keep {name} fixed in the fit")
            fix.toggled.connect(lambda on, n=name: self.fixed_toggled.emit(n, on))
            grid.addWidget(lab, r, 0)
            grid.addWidget(sp, r, 1)
            grid.addWidget(unit, r, 2)
            grid.addWidget(err, r, 3)
            grid.addWidget(fix, r, 4, alignment=QtCore.Qt.AlignCenter)
            post = QtWidgets.QLabel("")
            post.setStyleSheet("color: #2a4a8a;")
            post.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
            grid.addWidget(post, r, 5)
            self.post_labels[name] = post
            self.spins[name], self.err_labels[name], self.fix_boxes[name] = sp, err, fix
            self.param_rows[name] = (lab, sp, unit, err, fix)
        grid.setColumnStretch(1, 1)
        r = len(PARAM_NAMES) + 1
        self.sky_box = QtWidgets.QCheckBox("fit a constant sky")
        self.sky_box.setChecked(True)
        self.sky_box.toggled.connect(self.sky_toggled.emit)
        grid.addWidget(self.sky_box, r, 0, 1, 6)
        row2 = QtWidgets.QHBoxLayout()
        self.reset_button = QtWidgets.QPushButton("Start from moments")
        self.reset_button.setToolTip("Reset the start to the image moments (initial guess)")
        self.reset_button.clicked.connect(self.reset_requested.emit)
        self.components_box = QtWidgets.QCheckBox("show Gaussians")
        self.components_box.setToolTip("Overlay the 1-sigma ellipses of the galaxy mixture's "
                                       "Gaussians (before PSF convolution)")
        self.components_box.toggled.connect(self.components_toggled.emit)
        row2.addWidget(self.reset_button)
        row2.addWidget(self.components_box)
        grid.addLayout(row2, r + 1, 0, 1, 6)
        self.posterior_label = QtWidgets.QLabel("")
        self.posterior_label.setWordWrap(True)
        self.posterior_label.setSizePolicy(QtWidgets.QSizePolicy.Ignored,
                                           QtWidgets.QSizePolicy.Preferred)
        self.posterior_label.setMinimumWidth(60)
        self.posterior_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.corner_button = QtWidgets.QPushButton("Corner plot\u2026")
        self.corner_button.setToolTip("The posterior's corner plot (corner package)")
        self.corner_button.clicked.connect(self.corner_requested.emit)
        grid.addWidget(self.posterior_label, r + 2, 0, 1, 6)
        grid.addWidget(self.corner_button, r + 3, 0, 1, 3)
        outer.addWidget(gpar)

        outer.addWidget(self._build_image_group())
        outer.addStretch(1)

        self.profile_combo.currentIndexChanged.connect(self._on_profile_combo)
        self.M_combo.currentIndexChanged.connect(self._on_M_combo)
        state.params_changed.connect(self.show_params)
        state.result_changed.connect(self.show_result)
        state.config_changed.connect(self.show_config)
        state.model_changed.connect(self._on_model)
        state.busy_changed.connect(self.set_busy)
        state.posterior_changed.connect(self.show_posterior)
        state.result_changed.connect(self._update_sample_button)
        state.params_changed.connect(self._update_sample_button)
        self.show_config()
        self.show_posterior(None)

    def _build_fit_group(self):
        gfit = QtWidgets.QGroupBox("Fit")
        v = QtWidgets.QVBoxLayout(gfit)
        hb = QtWidgets.QHBoxLayout()
        self.fit_button = QtWidgets.QPushButton("Fit  (F)")
        self.fit_button.setDefault(True)
        self.fit_button.setMinimumHeight(30)
        f = self.fit_button.font()
        f.setBold(True)
        self.fit_button.setFont(f)
        self.fit_button.clicked.connect(self.fit_requested.emit)
        self.cancel_button = QtWidgets.QPushButton("Cancel  (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        hb.addWidget(self.fit_button, 2)
        hb.addWidget(self.cancel_button, 1)
        v.addLayout(hb)
        hs = QtWidgets.QHBoxLayout()
        self.sample_button = QtWidgets.QPushButton("Sample posterior  (S)")
        self.sample_button.setToolTip(
            "Sample the posterior around the fit with emcee (in the background; Cancel keeps "
            "the samples so far): 16/50/84 % intervals beside the parameters and a corner "
            "plot. The CSV export then has the same columns as mogviewer fit --sample.")
        self.sample_button.setEnabled(False)
        self.sample_button.clicked.connect(
            lambda: self.sample_requested.emit(self.steps_spin.value()))
        self.steps_spin = QtWidgets.QSpinBox()
        self.steps_spin.setRange(*engine.SAMPLE_STEPS[1:])
        self.steps_spin.setValue(engine.SAMPLE_STEPS[0])
        self.steps_spin.setSingleStep(500)
        self.steps_spin.setSuffix(" steps")
        self.steps_spin.setToolTip("Steps per walker (burn-in, the first quarter, included); "
                                   "the chains count as converged beyond "
                                   f"{engine.converged_after()} autocorrelation times")
        hs.addWidget(self.sample_button, 2)
        hs.addWidget(self.steps_spin, 1)
        v.addLayout(hs)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("not fitted")
        v.addWidget(self.progress)
        self.chi2_label = QtWidgets.QLabel("\u03c7\u00b2/\u03bd = \u2013")
        f2 = self.chi2_label.font()
        f2.setPointSizeF(f2.pointSizeF() * 1.15)
        self.chi2_label.setFont(f2)
        self.chi2_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.chi2_label.setWordWrap(True)
        v.addWidget(self.chi2_label)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        v.addWidget(self.status_label)
        return gfit

    def _build_joint_group(self):
        """The joint fit of every band (shared shape, each band's flux / mag, colours): the
        first group of the scrolled part, not in the Fit group, whose height is taken from the
        dock at every size (its 13 lines left a 130 px strip for the parameters at 1280x720)."""
        g = QtWidgets.QGroupBox("Joint fit (all bands)")
        v = QtWidgets.QVBoxLayout(g)
        self.joint_label = QtWidgets.QLabel("")
        self.joint_label.setWordWrap(True)
        self.joint_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.joint_label.setSizePolicy(QtWidgets.QSizePolicy.Ignored,
                                       QtWidgets.QSizePolicy.Preferred)
        self.joint_label.setVisible(False)
        v.addWidget(self.joint_label)
        g.setVisible(False)
        return g

    def _build_image_group(self):
        g = QtWidgets.QGroupBox("Image and PSF")
        grid = QtWidgets.QGridLayout(g)
        grid.setHorizontalSpacing(6)
        self.hdu_combo = QtWidgets.QComboBox()
        self.hdu_combo.setToolTip("Image HDU / band of a multi-extension file (BAND keyword)")
        self.hdu_combo.currentIndexChanged.connect(self._on_hdu_combo)
        self.joint_box = QtWidgets.QCheckBox("joint (all bands)")
        self.joint_box.setToolTip(
            "Fit fits every band of the file at once (as mogviewer fit --bands): centre, "
            "shape and S\u00e9rsic n shared, a flux and a sky per band, each band with its own "
            "noise, mask and PSF (the PSF file's HDU of that band). The band selector then "
            "chooses which band's model and residuals are shown.")
        self.joint_box.setEnabled(False)
        self.joint_box.toggled.connect(self.joint_toggled.emit)
        self.zp_edit = QtWidgets.QLineEdit()
        self.zp_edit.setToolTip("Magnitude zeropoint: mag = zp \u2212 2.5 log10(flux in image "
                                "units). Empty: the header's (MAGZERO, MAGZP, ZP, ...).")
        self.zp_edit.setValidator(QtGui.QDoubleValidator(-100.0, 100.0, 6))
        self.zp_edit.editingFinished.connect(self._on_zp_edit)
        self.psf_label = QtWidgets.QLabel("none")
        self.psf_label.setWordWrap(True)
        # a long file name must not widen the panel past its dock (it wraps instead)
        self.psf_label.setSizePolicy(QtWidgets.QSizePolicy.Ignored,
                                     QtWidgets.QSizePolicy.Preferred)
        self.psf_label.setMinimumWidth(60)
        self.hdu_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.hdu_combo.setMinimumContentsLength(10)
        self.psf_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.psf_open_button = QtWidgets.QPushButton("Open PSF\u2026")
        self.psf_open_button.clicked.connect(self.psf_open_requested.emit)
        self.psf_remove_button = QtWidgets.QPushButton("Remove")
        self.psf_remove_button.setToolTip("Fit without a PSF (the model is integrated over "
                                          "each pixel: the pixel is the PSF)")
        self.psf_remove_button.clicked.connect(self.psf_remove_requested.emit)
        self.pos_x, self.pos_y = QtWidgets.QDoubleSpinBox(), QtWidgets.QDoubleSpinBox()
        for sp in (self.pos_x, self.pos_y):
            sp.setMinimumWidth(60)
            sp.setRange(-1e6, 1e6)
            sp.setDecimals(1)
            sp.setKeyboardTracking(False)
            sp.setToolTip("Where a varying PSFEx model is evaluated: the cutout centre on the "
                          "original image, in the PSFEx file's coordinates (POLNAME1/2, usually "
                          "1-based X_IMAGE, Y_IMAGE)")
        self.pos_button = QtWidgets.QPushButton("Evaluate")
        self.pos_button.setToolTip("Evaluate the PSFEx model at this position")
        self.pos_button.clicked.connect(
            lambda: self.psf_position_edited.emit(self.pos_x.value(), self.pos_y.value()))
        grid.addWidget(QtWidgets.QLabel("HDU / band"), 0, 0)
        grid.addWidget(self.hdu_combo, 0, 1, 1, 3)
        grid.addWidget(self.joint_box, 1, 1, 1, 3)
        grid.addWidget(QtWidgets.QLabel("zeropoint"), 2, 0)
        grid.addWidget(self.zp_edit, 2, 1, 1, 2)
        grid.addWidget(self._small("mag"), 2, 3)
        grid.addWidget(QtWidgets.QLabel("PSF"), 3, 0)
        grid.addWidget(self.psf_label, 3, 1, 1, 3)
        grid.addWidget(self.psf_open_button, 4, 1)
        grid.addWidget(self.psf_remove_button, 4, 2, 1, 2)
        self.pos_label = QtWidgets.QLabel("PSFEx x, y")
        grid.addWidget(self.pos_label, 5, 0)
        grid.addWidget(self.pos_x, 5, 1)
        grid.addWidget(self.pos_y, 5, 2)
        grid.addWidget(self.pos_button, 5, 3)
        self.psf_mode_combo = QtWidgets.QComboBox()
        self.psf_mode_combo.addItem("exact (the PSF image)", "exact")
        self.psf_mode_combo.addItem("mixture only", "mixture")
        self.psf_mode_combo.setToolTip(
            "exact: the model is the galaxy convolved with the PSF stamp itself (its Gaussian "
            "mixture plus the residual, applied by FFT), as the command line does by default.\n"
            "mixture only: the Gaussian mixture alone (Hogg & Lang's model; faster; a mixture "
            "whose size or total differs from the stamp's by > 0.1 % biases sizes and sets "
            "the PSF_APPROX flag).\nA mixture file (Tractor, JSON) is always used as it is.")
        self.psf_mode_combo.currentIndexChanged.connect(self._on_psf_mode_combo)
        self.psf_quality_label = QtWidgets.QLabel("")
        self.psf_quality_label.setWordWrap(True)
        self.psf_quality_label.setSizePolicy(QtWidgets.QSizePolicy.Ignored,
                                             QtWidgets.QSizePolicy.Preferred)
        self.psf_quality_label.setMinimumWidth(60)
        self.psf_quality_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.psf_quality_label.setToolTip(
            "K: Gaussians in the PSF mixture; size ratio: the mixture's second-moment size over "
            "the stamp's; residual flux: sum(stamp - mixture) (stamp summing to 1); residual "
            "peak: max|stamp - mixture| / max(stamp). The same figures are the CSV's psf_k, "
            "psf_size_ratio, psf_res_flux, psf_res_peak.")
        self.psf_mode_label = QtWidgets.QLabel("PSF mode")
        grid.addWidget(self.psf_mode_label, 6, 0)
        grid.addWidget(self.psf_mode_combo, 6, 1, 1, 3)
        grid.addWidget(self.psf_quality_label, 7, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        self.state.image_changed.connect(self.show_image)
        self.state.psf_changed.connect(self.show_psf)
        self.state.joint_changed.connect(self.show_joint)
        self.show_image()
        self.show_psf()
        return g

    # ------------------------------------------------------------------ image and PSF
    def show_image(self):
        s = self.state
        hdus = s.source.hdus
        self.hdu_combo.blockSignals(True)
        try:
            self.hdu_combo.clear()
            for idx, label in hdus:
                self.hdu_combo.addItem(label, idx)
            cur = None if s.data is None else s.data.hdu
            if hdus:
                self.hdu_combo.setCurrentIndex(max(0, self.hdu_combo.findData(cur)))
            elif s.data is not None:
                self.hdu_combo.addItem("(one image)" if cur is None else f"HDU {cur}", cur)
        finally:
            self.hdu_combo.blockSignals(False)
        self.hdu_combo.setEnabled(len(hdus) > 1)
        self.show_joint()
        zp = None if s.data is None else s.data.zeropoint
        self.zp_edit.setText("" if zp is None else f"{zp:g}")
        self.zp_edit.setPlaceholderText("unknown: type one")
        self.show_psf()

    def show_psf(self):
        s = self.state
        m = s.psf_model
        if m is None:
            self.psf_label.setText("none: the model is integrated over each pixel")
            self.psf_label.setStyleSheet("")
        else:
            from pathlib import Path
            name = Path(s.psf_path or "").name
            # zero-width spaces after - _ . let a long file name wrap
            for ch in "-_.":
                name = name.replace(ch, ch + "\u200b")
            text = f"{name} (K = {m.n_components})"
            self.psf_label.setToolTip(s.psf_path or "")
            if s.psf_from_other_image:
                text += "\nchosen for another image: keep it only if it is this image's PSF"
                self.psf_label.setStyleSheet("color: #b36b00;")
            else:
                self.psf_label.setStyleSheet("")
            self.psf_label.setText(text)
        self.psf_remove_button.setEnabled(m is not None)
        self.psf_mode_combo.blockSignals(True)
        self.psf_mode_combo.setCurrentIndex(max(0, self.psf_mode_combo.findData(s.psf_mode)))
        self.psf_mode_combo.blockSignals(False)
        stamp = engine.psf_has_stamp(m)
        self.psf_mode_combo.setEnabled(stamp and not s.busy)
        info = s.psf_info
        text = engine.psf_info_text(info)
        if m is not None and not stamp:
            text += "\n(a mixture file: used as it is)"
        self.psf_quality_label.setText(text)
        approx = bool(info) and info.get("psf_mode") == "mixture" and \
            engine.psf_mixture_poor(info)
        self.psf_quality_label.setStyleSheet("color: #b36b00;" if approx else "color: #555;")
        varying = bool(s.psf_path) and engine.psfex_needs_position(s.psf_path) is not None
        for w in (self.pos_label, self.pos_x, self.pos_y, self.pos_button):
            w.setVisible(varying)
        if varying and s.psf_position is not None:
            for sp, v in zip((self.pos_x, self.pos_y), s.psf_position):
                sp.blockSignals(True)
                sp.setValue(v)
                sp.blockSignals(False)

    def _on_psf_mode_combo(self, _i):
        mode = self.psf_mode_combo.currentData()
        if mode is not None:
            self.psf_mode_chosen.emit(str(mode))

    def _joint_possible(self):
        s = self.state
        return s.data is not None and len(gbands.image_bands(s.image_path)) >= 2

    def show_joint(self):
        """The joint switch (enabled for a file with two or more bands) and the joint fit's
        summary, the shown band marked."""
        s = self.state
        possible = self._joint_possible()
        self.joint_box.blockSignals(True)
        self.joint_box.setChecked(s.joint and possible)
        self.joint_box.blockSignals(False)
        self.joint_box.setEnabled(possible and not s.busy)
        jf = s.joint_fit
        if jf is None:
            shown = self.joint_label.isVisibleTo(self)
            self.joint_label.setText("")
            self.joint_label.setVisible(False)
            self.joint_group.setVisible(False)
            if shown:   # the joint fit's status and progress go with it (another image)
                self.show_result(s.result)
            return
        band = None if s.data is None else s.data.band
        self.joint_label.setText("\n".join(gbands.joint_summary(jf, shown=band)))
        self.joint_label.setVisible(True)
        self.joint_group.setVisible(True)
        if not s.busy:
            res = jf.result
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress.setFormat(f"joint: {res.status.replace('_', ' ')}")
            flags = sorted({f.name for fl in (res.flags or ()) for f in engine.FitFlags
                            if f.value and f in fl})
            self.status_label.setText(
                f"joint fit {res.status}, {count(res.nfev, 'evaluation')}, "
                f"{res.elapsed:.2f} s"
                + ("" if not flags else "\nflags: " + ", ".join(flags)))
            self.status_label.setStyleSheet(status_style(res.status, flags))
            for lab in self.err_labels.values():     # the errors are in the joint summary
                lab.setText("")
            self._on_model()

    def _on_hdu_combo(self, _i):
        idx = self.hdu_combo.currentData()
        if idx is not None:
            self.hdu_chosen.emit(int(idx))

    def _on_zp_edit(self):
        text = self.zp_edit.text().strip()
        cur = None if self.state.data is None else self.state.data.zeropoint
        try:
            zp = float(text) if text else None
        except ValueError:
            return
        if zp != cur:
            self.zeropoint_edited.emit(zp)

    @staticmethod
    def _small(text):
        lab = QtWidgets.QLabel(text)
        f = lab.font()
        f.setPointSizeF(f.pointSizeF() * 0.85)
        lab.setFont(f)
        lab.setStyleSheet("color: #777;")
        return lab

    # ------------------------------------------------------------------ session -> widgets
    def show_config(self):
        s = self.state
        for w in (self.profile_combo, self.M_combo, self.sky_box, *self.fix_boxes.values()):
            w.blockSignals(True)
        try:
            self.profile_combo.setCurrentIndex(max(0, self.profile_combo.findData(s.profile)))
            self.M_combo.clear()
            for m in engine.available_M(s.profile):
                self.M_combo.addItem(str(m), m)
            self.M_combo.setCurrentIndex(max(0, self.M_combo.findData(s.M)))
            self.sky_box.setChecked(s.sky_on)
            for n, b in self.fix_boxes.items():
                b.setChecked(n in s.fixed)
        finally:
            for w in (self.profile_combo, self.M_combo, self.sky_box, *self.fix_boxes.values()):
                w.blockSignals(False)
        sky_used = s.sky_on
        self.spins["sky"].setEnabled(sky_used and not s.busy)
        self.fix_boxes["sky"].setEnabled(sky_used and not s.busy)
        ser = s.profile == "ser"
        self.spins["n"].setEnabled(ser and not s.busy)
        self.fix_boxes["n"].setEnabled(ser and not s.busy)
        for w in self.param_rows["n"]:  # the Sérsic index row only for profile 'ser'
            w.setVisible(ser)
        b, ff = engine.profile_quality(s.profile, s.M, s.params.n if s.params else None)
        self.quality_label.setText(f"badness {b:.2g}   \u00b7   flux fraction {ff:.4f}")

    def show_params(self, params, origin=""):
        if params is None:
            return
        for n, sp in self.spins.items():
            sp.blockSignals(True)
            sp.setValue(getattr(params, n))
            sp.blockSignals(False)
        self.n_param_updates += 1

    def show_result(self, result):
        if result is None:
            for lab in self.err_labels.values():
                lab.setText("")
            self.status_label.setText("")
            if not self.state.busy:
                self.progress.setRange(0, 1)
                self.progress.setValue(0)
                self.progress.setFormat("not fitted")
            return
        if not self.state.busy:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress.setFormat(result.status.replace("_", " "))
        errs = result.errors()
        converged = result.status == "converged"
        for n, lab in self.err_labels.items():
            e = errs.get(n, 0.0)
            if n in result.free:
                # green only for a converged fit; a cancelled or unconverged fit's errors are
                # those of an intermediate point (amber), undefined ones red
                lab.setText("\u00b1 " + (format(e, ".2g") if math.isfinite(e) else "nan"))
                lab.setStyleSheet("color: #a33;" if not math.isfinite(e) else
                                  "color: #2a6a2a;" if converged else "color: #b36b00;")
                lab.setToolTip("" if converged else
                               f"fit {result.status.replace('_', ' ')}: not a converged error")
            else:
                used = ((n != "sky" or self.state.sky_on)
                        and (n != "n" or self.state.profile == "ser"))
                lab.setText("fixed" if used else "")
                lab.setStyleSheet("color: #777;")
        flags = [f.name for f in engine.FitFlags if f in result.flags and f.value]
        text = (f"{result.status}, {count(result.nfev, 'evaluation')}, {result.elapsed:.2f} s"
                + ("" if not flags else "\nflags: " + ", ".join(flags)))
        ft = result.flux_target
        if math.isfinite(ft) and ft != result.params.flux:
            text += (f"\n{result.profile} flux {ft:.7g} (the CSV's; the flux box holds the "
                     f"{result.M}-Gaussian mixture's)")
        zp = None if self.state.data is None else self.state.data.zeropoint
        if zp is not None and result.params.flux > 0:
            mag = result.magnitude(zp, target=True)
            text += f"\nmag = {mag:.3f} (target profile's total, zeropoint {zp:g})"
        self.status_label.setText(text)
        self.status_label.setStyleSheet(status_style(result.status, flags))
        self.chi2_label.setText(f"\u03c7\u00b2/\u03bd = {result.chi2_nu:.4f}  "
                                f"(\u03bd = {result.nu})")

    def _on_model(self):
        im = self.state.images
        if im is None:
            return
        jf = self.state.joint_fit
        if jf is not None and not self.state.busy and self.state.data is not None:
            # this band's chi2 (its model and residuals are what the panels show) and the
            # joint fit's over every band
            self.chi2_label.setText(
                f"\u03c7\u00b2/\u03bd = {im.chi2_nu:.4f} band {self.state.data.band}, "
                f"{jf.result.chi2_nu:.4f} all bands")
        elif self.state.result is None or self.state.busy:
            self.chi2_label.setText(f"\u03c7\u00b2/\u03bd = {im.chi2_nu:.4f}  (\u03bd = {im.nu})")

    def set_busy(self, busy):
        self.fit_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        for w in (*self.spins.values(), *self.fix_boxes.values(), self.profile_combo,
                  self.M_combo, self.sky_box, self.reset_button, self.hdu_combo, self.zp_edit,
                  self.psf_open_button, self.psf_remove_button, self.pos_button,
                  self.psf_mode_combo):
            w.setEnabled(not busy)
        self.joint_box.setEnabled(not busy and self._joint_possible())
        for w in (self.sample_button, self.steps_spin, self.corner_button):
            w.setEnabled(not busy)
        if busy:
            what = "sampling" if self.state.task == "sample" else "fitting"
            self.progress.setRange(0, 0)
            self.progress.setFormat(f"{what}\u2026")
            self.status_label.setText(f"{what}\u2026")
            self.status_label.setStyleSheet("")
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress.setFormat("fitted" if self.state.result is not None else "stopped")
            self.show_config()
            if self.state.result is not None:
                self.show_result(self.state.result)     # the fit's status, not the progress
            self.show_posterior(self.state.posterior)
            self._update_sample_button()

    def show_progress(self, snap):
        self.progress.setFormat(f"iteration {snap.iteration}, {snap.nfev} evaluations")
        self.status_label.setText(f"fitting\u2026 {snap.elapsed:.1f} s")

    def show_sample_progress(self, prog):
        done, total, elapsed = prog
        self.progress.setRange(0, int(total))
        self.progress.setValue(int(done))
        self.progress.setFormat("sampling: step %v of %m")
        left = elapsed * (total - done) / done if done else float("nan")
        self.status_label.setText(f"sampling\u2026 {elapsed:.1f} s"
                                  + (f", about {left:.0f} s left" if math.isfinite(left)
                                     else ""))

    def _update_sample_button(self, *_):
        s = self.state
        ok = (s.result is not None and not s.busy and s.params == s.result.params
              and s.result.status != "failed")
        self.sample_button.setEnabled(ok)

    def show_posterior(self, post):
        """The posterior's 16/50/84 % beside each sampled parameter, its diagnostics below."""
        for w in (self.post_header, *self.post_labels.values()):
            w.setVisible(post is not None)
        self.posterior_label.setVisible(post is not None)
        self.corner_button.setVisible(post is not None)
        self._update_sample_button()
        if post is None:
            for lab in self.post_labels.values():
                lab.setText("")
            self.posterior_label.setText("")
            return
        rows = {name: (lo, mid, hi) for name, lo, mid, hi in engine.posterior_rows(post)}
        for name, lab in self.post_labels.items():
            if name in post.names and name in rows:
                lo, mid, hi = rows[name]
                fmt = FORMATS[name]
                lab.setText(f"\u2212{mid - lo:.2g} +{hi - mid:.2g}")
                lab.setToolTip(f"posterior median {format(mid, fmt)}\n"
                               f"16 %: {lo:.6g}   50 %: {mid:.6g}   84 %: {hi:.6g}\n"
                               f"tau {post.tau.get(name, float('nan')):.0f} steps, ESS "
                               f"{post.ess.get(name, float('nan')):.0f}")
            else:
                lab.setText("")
        taus = [t for t in post.tau.values() if math.isfinite(t)]
        ess = [e for e in post.ess.values() if math.isfinite(e)]
        text = (f"posterior: {post.n_walkers} walkers \u00d7 {post.n_steps} steps, "
                f"acceptance {post.acceptance:.2f}, "
                + ("converged" if post.converged else
                   f"NOT converged (shorter than {engine.converged_after()} tau): sample "
                   "longer")
                + (f"; longest tau {max(taus):.0f} steps, smallest ESS {min(ess):.0f}"
                   if taus and ess else ""))
        derived = [(k, rows[k]) for k in ("flux_target", "mag", "re_circ", "e1", "e2")
                   if k in rows]
        if derived:
            text += "\n" + "; ".join(f"{k} {mid:.5g} \u2212{mid - lo:.2g} +{hi - mid:.2g}"
                                     for k, (lo, mid, hi) in derived)
        self.posterior_label.setText(text)
        self.posterior_label.setStyleSheet("" if post.converged else "color: #b36b00;")

    # ------------------------------------------------------------------ widgets -> out
    def _on_spin(self, name, value):
        self.param_edited.emit(name, float(value))

    def _on_profile_combo(self, _i):
        prof = self.profile_combo.currentData()
        valid = engine.available_M(prof)
        M = self.state.M if self.state.M in valid else engine.DEFAULT_M.get(prof, valid[-1])
        self.profile_chosen.emit(prof, int(M))

    def _on_M_combo(self, _i):
        M = self.M_combo.currentData()
        if M is not None:
            self.profile_chosen.emit(self.state.profile, int(M))
