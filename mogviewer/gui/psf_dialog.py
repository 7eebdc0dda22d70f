"""The PSF dialog: the PSF stamp, its fitted mixture and the residual, K and quality figures."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from . import engine
from .panels import DIVERGING, _shrinkable, colormap


class PsfDialog(QtWidgets.QDialog):
    """Shows the session's PSF; refits it with a chosen K (in a worker thread) and applies it.

    Signals
    -------
    psf_chosen(object) : a PsfModel the user chose to use for the fit.
    """

    psf_chosen = QtCore.pyqtSignal(object)

    def __init__(self, state, tasks, parent=None):
        super().__init__(parent)
        self.setWindowTitle("PSF")
        self.state = state
        self.tasks = tasks
        self.preview = None
        self.resize(900, 640)
        lay = QtWidgets.QVBoxLayout(self)
        self.path_label = QtWidgets.QLabel()
        self.path_label.setWordWrap(True)
        self.path_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        lay.addWidget(self.path_label)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground((25, 25, 30))
        self.view.setMinimumHeight(250)
        self.items, self._plots = [], []
        for i, title in enumerate(("PSF image", "mixture", "residual (image \u2212 mixture)")):
            p = self.view.addPlot(row=0, col=i)
            p.setTitle(title, size="9pt", color="#dddddd")
            _shrinkable(p.titleLabel)         # three panels of one width
            p.setAspectLocked(True)
            p.hideButtons()
            p.setMenuEnabled(False)
            p.getAxis("left").setStyle(showValues=False)
            p.getAxis("bottom").setStyle(showValues=False)
            it = pg.ImageItem(axisOrder="row-major")
            p.addItem(it)
            if i:
                p.setXLink(self._plots[0])
                p.setYLink(self._plots[0])
            self._plots.append(p)
            self.items.append(it)
        lay.addWidget(self.view, 3)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Gaussians K:"))
        self.K_combo = QtWidgets.QComboBox()
        self.K_combo.addItem("auto (smallest K with max|res|/peak < 1 %)", None)
        for k in range(1, engine.MAX_PSF_COMPONENTS + 1):
            self.K_combo.addItem(str(k), k)
        row.addWidget(self.K_combo)
        self.refit_button = QtWidgets.QPushButton("Refit")
        self.refit_button.clicked.connect(self.refit)
        row.addWidget(self.refit_button)
        self.busy_label = QtWidgets.QLabel("")
        row.addWidget(self.busy_label, 1)
        lay.addLayout(row)
        self.table = QtWidgets.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["quality figure", "value"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(150)
        lay.addWidget(self.table, 2)
        buttons = QtWidgets.QDialogButtonBox()
        self.use_button = buttons.addButton("Use this PSF for the fit",
                                            QtWidgets.QDialogButtonBox.AcceptRole)
        self.use_button.clicked.connect(self.use_preview)
        close = buttons.addButton(QtWidgets.QDialogButtonBox.Close)
        close.clicked.connect(self.close)
        lay.addWidget(buttons)
        state.psf_changed.connect(self.show_session_psf)
        self.show_session_psf()

    def show_session_psf(self):
        self.show_model(self.state.psf_model, self.state.psf_path)

    def show_model(self, model, path):
        self.preview = model
        self.use_button.setEnabled(model is not None and model is not self.state.psf_model)
        self.refit_button.setEnabled(model is not None and path is not None
                                     and getattr(model, "stamp", None) is not None)
        if model is None:
            self.path_label.setText("No PSF loaded: the model is integrated over each pixel. "
                                    "Use File \u25b8 Open PSF\u2026")
            for it in self.items:
                it.clear()
            self.table.setRowCount(0)
            return
        self.path_label.setText(f"{path}")
        stamp, mod, res = engine.psf_images(model)
        cm = colormap("inferno").getLookupTable(0.0, 1.0, 256)
        peak = float(np.nanmax(stamp if stamp is not None else mod))
        for it, a in zip(self.items[:2], (stamp, mod)):
            if a is None:
                it.clear()
                continue
            disp = np.arcsinh(np.nan_to_num(a) / (1e-3 * peak))  # display stretch only
            it.setLookupTable(cm)
            it.setImage(disp, autoLevels=False, levels=(0, np.arcsinh(1000.0)))
        if res is not None:
            r = float(np.nanmax(np.abs(res))) or 1.0
            self.items[2].setLookupTable(colormap(DIVERGING).getLookupTable(0.0, 1.0, 256))
            self.items[2].setImage(np.nan_to_num(res), autoLevels=False, levels=(-r, r))
        else:
            self.items[2].clear()
        shape = (stamp if stamp is not None else mod).shape
        self._plots[0].getViewBox().setRange(xRange=(0, shape[1]), yRange=(0, shape[0]),
                                             padding=0.02)
        rows = engine.psf_quality_rows(model)
        if res is not None:
            rows.append(("residual colour range", f"\u00b1 {100 * r / peak:.2g} % of the peak"))
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QtWidgets.QTableWidgetItem(k))
            self.table.setItem(i, 1, QtWidgets.QTableWidgetItem(v))
        self.table.resizeColumnToContents(0)
        k = model.n_components
        idx = self.K_combo.findData(k)
        if idx >= 0 and model is self.state.psf_model:
            self.K_combo.blockSignals(True)
            self.K_combo.setCurrentIndex(idx)
            self.K_combo.blockSignals(False)

    def refit(self):
        s = self.state
        path, hdu, pos = s.psf_path, s.psf_hdu, s.psf_position
        if path is None:
            return
        K = self.K_combo.currentData()
        self.refit_button.setEnabled(False)
        self.busy_label.setText(f"fitting K = {K or 'auto'}\u2026")
        self.tasks.run(lambda: engine.read_psf(path, n_components=K, hdu=hdu, position=pos),
                       self._refit_done, self._refit_failed)

    def _refit_done(self, model):
        self.busy_label.setText("")
        self.show_model(model, self.state.psf_path)

    def _refit_failed(self, exc):
        self.busy_label.setText("")
        self.refit_button.setEnabled(True)
        QtWidgets.QMessageBox.critical(self, "PSF fit failed", f"{exc}")

    def use_preview(self):
        if self.preview is not None and self.preview is not self.state.psf_model:
            self.psf_chosen.emit(self.preview)
