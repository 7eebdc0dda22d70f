"""The posterior dialog: the corner plot and the 16/50/84 % table of a sampled posterior.

A view of one :class:`mogviewer.sampling.Posterior` (an immutable snapshot). The corner plot is
drawn by the ``corner`` package on matplotlib's Agg canvas in a background task
(:func:`.engine.corner_rgba`), so a large plot never freezes the window; the table is filled at
once from the posterior's percentiles, tau and effective sample sizes.
"""

from __future__ import annotations

import html
import math

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from . import engine


class PosteriorDialog(QtWidgets.QDialog):
    """Non-modal: corner plot (left) and intervals (right) of the last posterior.

    Signals
    -------
    corner_ready() : the corner plot of the current posterior is shown.
    """

    corner_ready = QtCore.pyqtSignal()

    def __init__(self, tasks, parent=None):
        super().__init__(parent)
        self.tasks = tasks
        self.posterior = None
        self.corner_image = None       # the RGBA array shown
        self._generation = 0
        self.setWindowTitle("Posterior")
        lay = QtWidgets.QHBoxLayout(self)
        self.plot_label = QtWidgets.QLabel("drawing the corner plot\u2026")
        self.plot_label.setAlignment(QtCore.Qt.AlignCenter)
        self.plot_label.setMinimumSize(540, 540)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(self.plot_label)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(560)
        lay.addWidget(scroll, 0)
        right = QtWidgets.QVBoxLayout()
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        right.addWidget(self.summary)
        self.table = QtWidgets.QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["quantity", "16 %", "50 %", "84 %", "tau",
                                              "ESS"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeToContents)
        right.addWidget(self.table, 1)
        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Close)
        bb.rejected.connect(self.close)
        right.addWidget(bb)
        lay.addLayout(right, 1)
        self.resize(1100, 600)

    def show_posterior(self, post, result=None):
        """Show ``post`` (a Posterior); the best fit of ``result`` is marked on the plot."""
        self.posterior = post
        self._generation += 1
        gen = self._generation
        rows = engine.posterior_rows(post)
        self.table.setRowCount(len(rows))
        for i, (name, lo, mid, hi) in enumerate(rows):
            tau, ess = post.tau.get(name), post.ess.get(name)
            cells = [name, f"{lo:.6g}", f"{mid:.6g}", f"{hi:.6g}",
                     "" if tau is None or not math.isfinite(tau) else f"{tau:.0f}",
                     "" if ess is None or not math.isfinite(ess) else f"{ess:.0f}"]
            for j, c in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(c)
                if j:
                    item.setTextAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
                self.table.setItem(i, j, item)
        self.summary.setText(
            f"emcee: {post.n_walkers} walkers \u00d7 {post.n_steps} steps, first {post.burn} "
            f"dropped, {post.elapsed:.1f} s; acceptance {post.acceptance:.2f}; "
            + ("converged (every chain longer than "
               f"{engine.converged_after()} autocorrelation times)" if post.converged else
               f"<b>not converged</b>: chains shorter than {engine.converged_after()} "
               "autocorrelation times, sample longer")
            + f". Priors: {html.escape(post.prior_text() or 'flat')}, within the bounds; derived "
              "quantities from the samples.")
        self.plot_label.setPixmap(QtGui.QPixmap())
        self.plot_label.setText("drawing the corner plot\u2026")
        truths = None
        if result is not None:
            truths = [float(getattr(result.params, n)) for n in post.names]
        self.tasks.run(lambda: engine.corner_rgba(post, truths=truths),
                       lambda img: self._corner_done(gen, img),
                       lambda exc: self._corner_failed(gen, exc))

    def _corner_done(self, gen, img):
        if gen != self._generation:
            return                       # a newer posterior is being drawn
        self.corner_image = np.ascontiguousarray(img)
        h, w = img.shape[:2]
        qimg = QtGui.QImage(self.corner_image.data, w, h, 4 * w,
                            QtGui.QImage.Format_RGBA8888).copy()
        self.plot_label.setText("")
        self.plot_label.setPixmap(QtGui.QPixmap.fromImage(qimg))
        self.corner_ready.emit()

    def _corner_failed(self, gen, exc):
        if gen != self._generation:
            return
        self.plot_label.setText(f"The corner plot could not be drawn:\n{exc}\n\n"
                                "The intervals on the right are complete.")


__all__ = ["PosteriorDialog"]
