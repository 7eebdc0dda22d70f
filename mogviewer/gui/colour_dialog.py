"""View > Colour Image: the three reddest bands of a multi-band file as an RGB image
(:func:`.bands.colour_image`, astropy's ``make_lupton_rgb``), drawn in the background."""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from . import bands as gbands


class ColourDialog(QtWidgets.QDialog):
    """Non-modal colour image of the current file (see the module docstring).

    Signals
    -------
    ready() : the image (or the reason there is none) is shown.
    """

    ready = QtCore.pyqtSignal()

    def __init__(self, tasks, parent=None):
        super().__init__(parent)
        self.tasks = tasks
        self.rgb = None
        self.bands = []
        self._generation = 0
        self.setWindowTitle("Colour image")
        lay = QtWidgets.QVBoxLayout(self)
        self.label = QtWidgets.QLabel("")
        self.label.setAlignment(QtCore.Qt.AlignCenter)
        self.label.setMinimumSize(300, 300)
        lay.addWidget(self.label, 1)
        self.caption = QtWidgets.QLabel("")
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.resize(560, 600)

    def show_file(self, path, hdus):
        self._generation += 1
        gen = self._generation
        self.rgb = None
        self.label.setPixmap(QtGui.QPixmap())
        self.label.setText("drawing\u2026")
        self.tasks.run(lambda: gbands.colour_image(path, hdus),
                       lambda out: self._done(gen, out), lambda exc: self._failed(gen, exc))

    def _done(self, gen, out):
        if gen != self._generation:
            return
        rgb, bands = out
        self.rgb, self.bands = rgb, bands
        flipped = np.ascontiguousarray(rgb[::-1])          # row 0 at the bottom, as the panels
        h, w = flipped.shape[:2]
        self._buf = flipped
        img = QtGui.QImage(flipped.data, w, h, 3 * w, QtGui.QImage.Format_RGB888).copy()
        zoom = max(1, 512 // max(w, h))
        self.label.setText("")
        self.label.setPixmap(QtGui.QPixmap.fromImage(img).scaled(
            w * zoom, h * zoom, QtCore.Qt.KeepAspectRatio, QtCore.Qt.FastTransformation))
        self.caption.setText(f"R, G, B = {', '.join(bands)}: each band over its 99.5th "
                             "percentile, then astropy's make_lupton_rgb (asinh, Q = 8)")
        self.ready.emit()

    def _failed(self, gen, exc):
        if gen != self._generation:
            return
        self.label.setText(str(exc))
        self.caption.setText("")
        self.ready.emit()


__all__ = ["ColourDialog"]
