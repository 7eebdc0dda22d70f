"""The galaxy ellipse drawn on the data panel, with handles, and the components overlay.

Geometry (REFERENCE.md section 4): a pyqtgraph ROI's ``pos()`` is the corner of its bounding box
in the ROI's own (rotated) frame, ``size()`` the full box and ``angle()`` degrees counter-clockwise
from +x with y up; the ellipse is inscribed in the box. For a galaxy with centre ``(x, y)``,
semi-major ``re``, axis ratio ``q`` and angle ``angle`` (degrees CCW from +x, 0-based pixel
coordinates, the view's coordinates here since pixel centres sit at integers):

    size  = (2 re, 2 q re)
    angle = angle
    pos   = (x, y) - Rot(angle) (re, q re)

Handles: the centre (move), the end of the major axis (stretch r_e), the end of the minor axis
(stretch q r_e), the other end of the major axis (rotate). Dragging the body also moves it. When
the user stretches the minor axis beyond the major one, the parameters swap the axes (q <= 1,
angle + 90); the ellipse itself is re-normalised when the drag ends, never during it.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui

ELLIPSE_PEN = pg.mkPen((80, 255, 120), width=2)
ELLIPSE_HOVER_PEN = pg.mkPen((255, 255, 80), width=2.5)
HANDLE_PEN = pg.mkPen((80, 255, 120), width=2)
HANDLE_HOVER_PEN = pg.mkPen((255, 255, 80), width=2)


def roi_state_for(x, y, re, q, angle):
    """``(pos, size, angle)`` of the ROI for a galaxy ellipse (see the module docstring)."""
    a, b = re, q * re
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    pos = (x - (c * a - s * b), y - (s * a + c * b))
    return pos, (2 * a, 2 * b), angle


def ellipse_from_roi(pos, size, angle):
    """``dict(x, y, re, q, angle)`` from an ROI state; axes swapped so that q <= 1."""
    w, h = abs(float(size[0])), abs(float(size[1]))
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    x = pos[0] + c * w / 2 - s * h / 2
    y = pos[1] + s * w / 2 + c * h / 2
    w, h = max(w, 1e-3), max(h, 1e-3)
    if w >= h:
        re, q, ang = w / 2, h / w, angle
    else:
        re, q, ang = h / 2, w / h, angle + 90.0
    return dict(x=float(x), y=float(y), re=float(re), q=float(min(q, 1.0)),
                angle=float(ang % 180.0))


class EllipseHandle(pg.EllipseROI):
    """Editable galaxy ellipse.

    Signals
    -------
    drag_started() : the user grabbed the ellipse or a handle.
    dragged(dict) : the user moved it; ``dict(x, y, re, q, angle)`` (q <= 1).
    drag_finished() : the user let go.

    :meth:`set_ellipse` moves it programmatically and emits none of these (no feedback loop).
    """

    drag_started = QtCore.pyqtSignal()
    dragged = QtCore.pyqtSignal(object)
    drag_finished = QtCore.pyqtSignal()

    def __init__(self):
        self._syncing = False
        super().__init__((0, 0), (1, 1), pen=ELLIPSE_PEN, hoverPen=ELLIPSE_HOVER_PEN,
                         handlePen=HANDLE_PEN, handleHoverPen=HANDLE_HOVER_PEN,
                         movable=True, rotatable=True, resizable=True)
        self.setZValue(20)
        self.sigRegionChangeStarted.connect(self._on_started)
        self.sigRegionChanged.connect(self._on_changed)
        self.sigRegionChangeFinished.connect(self._on_finished)
        self.n_sync = 0

    #: handle radius in screen pixels: at most this, less on an ellipse small on screen
    HANDLE_MAX = 9.0
    HANDLE_MIN = 3.5

    def _addHandles(self):
        self.handleSize = self.HANDLE_MAX
        self.centre_handle = self.addTranslateHandle([0.5, 0.5])
        self.major_handle = self.addScaleHandle([1.0, 0.5], [0.5, 0.5])
        self.minor_handle = self.addScaleHandle([0.5, 1.0], [0.5, 0.5])
        self.rotate_handle = self.addRotateHandle([0.0, 0.5], [0.5, 0.5])

    # ------------------------------------------------------------------ geometry
    def ellipse(self):
        """Current ``dict(x, y, re, q, angle)``."""
        return ellipse_from_roi(self.pos(), self.size(), self.angle())

    def set_ellipse(self, x, y, re, q, angle):
        """Move to these parameters without emitting the drag signals."""
        pos, size, ang = roi_state_for(x, y, re, q, angle)
        self._syncing = True
        try:
            self.setAngle(ang, update=False)
            self.setSize(size, update=False)
            self.setPos(pos, update=True, finish=False)
        finally:
            self._syncing = False
        self.n_sync += 1
        self.fit_handles()

    def fit_handles(self):
        """Handles no larger than a third of the ellipse's semi-minor axis on screen (between
        :data:`HANDLE_MIN` and :data:`HANDLE_MAX` px): four 9 px handles covered a galaxy of
        r_e ~ 15 screen px (a 256 px cutout in a 170 px panel) and hid its centre."""
        vb = self.getViewBox()
        try:
            px = vb.viewPixelSize() if vb is not None else None
        except Exception:  # noqa: BLE001 - a view not laid out yet: keep the size
            px = None
        if not px or not max(px) > 0:
            return
        minor = min(abs(float(self.size()[0])), abs(float(self.size()[1]))) / 2 / max(px)
        r = float(min(self.HANDLE_MAX, max(self.HANDLE_MIN, minor / 3)))
        for h in self.handles:
            item = h["item"]
            if abs(item.radius - r) > 0.25:
                item.prepareGeometryChange()
                item.radius = r
                item.buildPath()
                item._shape = None
                item.update()

    def viewTransformChanged(self):
        super().viewTransformChanged()
        self.fit_handles()              # a zoom or a resize changes the ellipse on screen

    def paint(self, p, opt, widget):
        p.save()
        super().paint(p, opt, widget)   # (it scales the painter: keep ours clean)
        p.restore()
        # the major axis from the centre to the stretch handle, so the angle is visible
        r = self.boundingRect()
        pen = QtGui.QPen(self.currentPen)
        pen.setStyle(QtCore.Qt.DashLine)
        pen.setCosmetic(True)
        p.setPen(pen)
        p.drawLine(QtCore.QPointF(r.center().x(), r.center().y()),
                   QtCore.QPointF(r.right(), r.center().y()))

    # ------------------------------------------------------------------ user drags
    def _on_started(self):
        if not self._syncing:
            self.drag_started.emit()

    def _on_changed(self):
        if not self._syncing:
            self.fit_handles()
            self.dragged.emit(self.ellipse())

    def _on_finished(self):
        if not self._syncing:
            self.drag_finished.emit()


class ComponentsOverlay(pg.PlotCurveItem):
    """The 1-sigma ellipses of the galaxy mixture's Gaussians (one curve, NaN-separated)."""

    N_POINTS = 64

    def __init__(self):
        super().__init__(pen=pg.mkPen((120, 200, 255, 200), width=1, style=QtCore.Qt.DotLine),
                         connect="finite")
        self.setZValue(15)
        t = np.linspace(0, 2 * np.pi, self.N_POINTS)
        self._circle = np.stack([np.cos(t), np.sin(t)])     # (2, N)

    def set_components(self, means, covs):
        """Draw ``x = mean + L u`` for unit ``u``, with ``L L^T = cov`` (1-sigma contour)."""
        xs, ys = [], []
        for m, C in zip(means, covs):
            w, V = np.linalg.eigh(np.asarray(C, float))
            L = V * np.sqrt(np.clip(w, 0, None))
            pts = L @ self._circle
            xs.append(np.append(pts[0] + m[0], np.nan))
            ys.append(np.append(pts[1] + m[1], np.nan))
        if xs:
            self.setData(np.concatenate(xs), np.concatenate(ys))
        else:
            self.setData([], [])
