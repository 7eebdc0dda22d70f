"""The four image panels (data, model, residual, chi) with linked pan/zoom and colour bars.

Display conventions: ``image[y, x]`` row-major, y up, aspect locked, pixel ``(i, j)`` centred on
the view coordinates ``(x=j, y=i)`` (so view coordinates are 0-based pixel coordinates and the
ellipse needs no offset). Data and model share one set of display levels and one stretch;
residual and chi use symmetric ranges (``+- n sigma``) and a diverging colour map. Masked pixels
are painted over with a flat colour.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from astropy.visualization import AsinhStretch, LinearStretch, LogStretch, SqrtStretch
from PyQt5 import QtCore, QtGui, QtWidgets

from .ellipse_handle import ComponentsOverlay, EllipseHandle
from .state import COLORMAPS, LIMITS, STRETCHES

STRETCH_CLASSES = {"linear": LinearStretch, "sqrt": SqrtStretch, "log": LogStretch,
                   "asinh": AsinhStretch}
assert set(STRETCH_CLASSES) == set(STRETCHES)
DIVERGING = "CET-D1A"
MASK_RGBA = (70, 90, 120, 215)
#: Width (px) of every panel's left axis, so that all panels have image areas of one width.
AXIS_WIDTH = 38
#: Height (px) of a row of panels that is not image: title, bottom axis, colour bar and label.
ROW_OVERHEAD = 110


def colormap(name):
    if name == "gray":
        return pg.ColorMap([0.0, 1.0], [(0, 0, 0), (255, 255, 255)])
    try:
        return pg.colormap.get(name)
    except (FileNotFoundError, KeyError, ValueError):
        return pg.colormap.get("inferno")


def _shrinkable(label):
    """Let a pyqtgraph LabelItem be narrower than its text: pyqtgraph makes the text's width
    its minimum and preferred width (``LabelItem.updateMin``, called on every resize), so a
    long title would widen its panel's column. Here only the height is kept, so that the four
    image areas get one width."""
    def update_min(self=label):
        h = self.itemRect().height()
        self.setMinimumWidth(0)
        self.setMinimumHeight(h)
        self._sizeHint = {QtCore.Qt.MinimumSize: (0, h), QtCore.Qt.PreferredSize: (0, h),
                          QtCore.Qt.MaximumSize: (-1, -1), QtCore.Qt.MinimumDescent: (0, 0)}
        self.updateGeometry()

    label.updateMin = update_min     # LabelItem calls self.updateMin() from Python
    update_min()


def _g(v):
    return format(float(v), ".4g") if math.isfinite(v) else "\u2013"


class ImagePanels(QtWidgets.QWidget):
    """Four linked image panels drawing the session state's images (a thin view).

    What is shown (stretch, limits, colours, the view rectangle) lives in the state
    (:class:`~mogviewer.gui.state.DisplayState`, ``state.view``); a pan or zoom with the mouse is
    sent back with :meth:`~mogviewer.gui.state.SessionState.set_view`.

    Signals
    -------
    hovered(object) : ``(ix, iy)`` integer pixel under the cursor, or None when outside.
    """

    hovered = QtCore.pyqtSignal(object)
    TITLES = ("data", "model", "residual = data \u2212 model", "chi = residual / \u03c3")
    SHORT_TITLES = ("data", "model", "residual", "chi")

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.n_model_updates = 0
        self._cmap_name = None
        self._applying_view = False
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground((25, 25, 30))
        self.view.ci.layout.setSpacing(4)
        self.view.ci.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.view)

        self.plots, self.images, self.mask_items = [], [], []
        for i, title in enumerate(self.TITLES):
            p = pg.PlotItem()
            p.setTitle(title, size="10pt", color="#dddddd")
            _shrinkable(p.titleLabel)
            p.setAspectLocked(True)
            p.hideButtons()
            p.setMenuEnabled(False)
            for ax in ("left", "bottom"):
                p.getAxis(ax).setPen(pg.mkPen("#888888"))
                p.getAxis(ax).setTextPen(pg.mkPen("#aaaaaa"))
            # one fixed axis width: the four image areas get the same width
            p.getAxis("left").setWidth(AXIS_WIDTH)
            img = pg.ImageItem(axisOrder="row-major")
            m = pg.ImageItem(axisOrder="row-major")
            m.setZValue(5)
            for it in (img, m):   # pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]
                it.setTransform(QtGui.QTransform.fromTranslate(-0.5, -0.5))
                p.addItem(it)
            if i:
                p.setXLink(self.plots[0])
                p.setYLink(self.plots[0])
            self.plots.append(p)
            self.images.append(img)
            self.mask_items.append(m)
        self.data_plot, self.model_plot, self.resid_plot, self.chi_plot = self.plots
        self.data_item, self.model_item, self.resid_item, self.chi_item = self.images

        def bar(values, cmap):
            cb = pg.ColorBarItem(values=values, colorMap=colormap(cmap), interactive=False,
                                 orientation="horizontal", width=12, colorMapMenu=False)
            cb.axis.setTextPen(pg.mkPen("#aaaaaa"))
            cb.axis.setPen(pg.mkPen("#888888"))
            # the ticks and the caption give the values in the image's unit: no "(x0.001)"
            # that pyqtgraph would append to the caption for small values
            cb.axis.enableAutoSIPrefix(False)
            cb.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Preferred)
            return cb

        self.cbar_data = bar((0, 1), "inferno")
        self.cbar_resid = bar((-1, 1), DIVERGING)
        self.cbar_chi = bar((-5, 5), DIVERGING)
        self.arrangement = None
        self.arrange("row")

        self.ellipse = EllipseHandle()
        self.ellipse.setVisible(False)           # until there is an image to put it on
        self.data_plot.addItem(self.ellipse)
        self.components = ComponentsOverlay()
        self.data_plot.addItem(self.components)
        self.components.setVisible(False)
        self.model_ellipse = pg.PlotCurveItem(pen=pg.mkPen((80, 255, 120, 150), width=1,
                                                           style=QtCore.Qt.DashLine))
        self.resid_plot.addItem(self.model_ellipse)
        self._apply_cmaps()

        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.data_plot.getViewBox().sigRangeChangedManually.connect(self._on_user_view)
        # whenever the image area changes size, show the state's view again (the whole image,
        # or the user's zoom) instead of whatever the view box made of the old range
        self.data_plot.getViewBox().sigResized.connect(self._apply_view)
        state.image_changed.connect(self._on_image_changed)
        state.mask_changed.connect(self._on_mask_changed)
        state.model_changed.connect(self._on_model_changed)
        state.display_changed.connect(self._on_display_changed)
        state.view_changed.connect(self._on_view_changed)

    @property
    def settings(self):
        return self.state.display

    @property
    def levels(self):
        return self.state.levels

    # ------------------------------------------------------------------ layout
    def arrange(self, mode):
        """``'row'``: the four panels side by side; ``'grid'``: data | model over
        residual | chi. Colour bars sit under the panels they belong to."""
        if mode == self.arrangement:
            return
        ci = self.view.ci
        for it in self.plots + [self.cbar_data, self.cbar_resid, self.cbar_chi]:
            if it in ci.items:
                ci.removeItem(it)
        lay = ci.layout
        for r in range(lay.rowCount()):
            lay.setRowStretchFactor(r, 0)
        if mode == "row":
            for i, p in enumerate(self.plots):
                ci.addItem(p, row=0, col=i)
            ci.addItem(self.cbar_data, row=1, col=0, colspan=2)
            ci.addItem(self.cbar_resid, row=1, col=2)
            ci.addItem(self.cbar_chi, row=1, col=3)
            lay.setRowStretchFactor(0, 20)
            lay.setRowStretchFactor(1, 1)
        else:
            ci.addItem(self.plots[0], row=0, col=0)
            ci.addItem(self.plots[1], row=0, col=1)
            ci.addItem(self.cbar_data, row=1, col=0, colspan=2)
            ci.addItem(self.plots[2], row=2, col=0)
            ci.addItem(self.plots[3], row=2, col=1)
            ci.addItem(self.cbar_resid, row=3, col=0)
            ci.addItem(self.cbar_chi, row=3, col=1)
            for r, f in ((0, 20), (1, 1), (2, 20), (3, 1)):
                lay.setRowStretchFactor(r, f)
        for c in range(lay.columnCount()):
            lay.setColumnStretchFactor(c, 1)
        self.arrangement = mode
        self._refit_later()

    def showEvent(self, ev):
        super().showEvent(ev)
        self._refit_later()

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        w, h = max(1, self.width()), max(1, self.height())
        # the layout that gives each (square) image the larger side; each row of panels also
        # holds a title, an axis and a colour bar with its label, each panel a left axis
        row_side = min(w / 4.0 - AXIS_WIDTH, h - ROW_OVERHEAD)
        grid_side = min(w / 2.0 - AXIS_WIDTH, h / 2.0 - ROW_OVERHEAD)
        self.arrange("row" if row_side >= grid_side else "grid")
        # titles with their formulas when there is room for them
        side = max(row_side, grid_side)
        titles = self.TITLES if side >= 190 else self.SHORT_TITLES
        for p, t in zip(self.plots, titles):
            if p.titleLabel.text != t:
                p.setTitle(t, size="10pt", color="#dddddd")
        self._refit_later()

    def _refit_later(self):
        # once the layout has its new geometry: the whole image again (unless the user zoomed)
        QtCore.QTimer.singleShot(0, self._apply_view)

    # ------------------------------------------------------------------ view
    def reset_zoom(self):
        """Show the whole image (and keep showing it when the panels resize)."""
        self.state.set_view(None, origin="reset")
        self._apply_view()

    def _apply_view(self):
        data = self.state.data
        if data is None:
            return
        view = self.state.view
        if view is None:
            ny, nx = data.shape
            view = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
        self._applying_view = True
        try:
            self.data_plot.getViewBox().setRange(xRange=view[0], yRange=view[1], padding=0.0)
        finally:
            self._applying_view = False

    def _on_view_changed(self, view, origin):
        if origin != "panels":
            self._apply_view()

    def _on_user_view(self, *_):
        if self._applying_view:
            return
        (x0, x1), (y0, y1) = self.data_plot.getViewBox().viewRange()
        self.state.set_view(((x0, x1), (y0, y1)), origin="panels")

    # ------------------------------------------------------------------ display
    def _on_display_changed(self, display):
        self._apply_cmaps()
        self.refresh()

    def _apply_cmaps(self):
        name = self.state.display.cmap
        if name == self._cmap_name:
            return
        self._cmap_name = name
        cm = colormap(name)
        lut = cm.getLookupTable(0.0, 1.0, 256)
        self.data_item.setLookupTable(lut)
        self.model_item.setLookupTable(lut)
        self.cbar_data.setColorMap(cm)
        dv = colormap(DIVERGING).getLookupTable(0.0, 1.0, 256)
        self.resid_item.setLookupTable(dv)
        self.chi_item.setLookupTable(dv)

    def _stretched(self, a):
        lo, hi = self.state.levels
        t = (np.asarray(a, float) - lo) / (hi - lo if hi > lo else 1.0)
        t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)
        return STRETCH_CLASSES[self.state.display.stretch]()(t, clip=True)

    # ------------------------------------------------------------------ images
    def _on_image_changed(self):
        data = self.state.data
        ny, nx = data.shape
        rgba = np.zeros((ny, nx, 4), np.ubyte)
        rgba[self.state.full_mask] = MASK_RGBA
        for m in self.mask_items:
            m.setImage(rgba, autoLevels=False, levels=(0, 255))
        for it in self.images[1:]:
            it.clear()
        self.refresh()

    def _on_mask_changed(self):
        """The user's mask changed: repaint the masked pixels (image's and user's)."""
        data = self.state.data
        if data is None:
            return
        rgba = np.zeros(data.shape + (4,), np.ubyte)
        rgba[self.state.full_mask] = MASK_RGBA
        for m in self.mask_items:
            m.setImage(rgba, autoLevels=False, levels=(0, 255))

    def refresh(self):
        """Redraw everything (image or display state changed)."""
        data = self.state.data
        if data is None:
            return
        self.data_item.setImage(self._stretched(data.image), autoLevels=False, levels=(0, 1))
        for m in self.mask_items:
            m.setVisible(self.state.display.show_mask)
        self._update_colorbars()
        self._on_model_changed()

    def unit(self):
        """The image unit for labels (``BUNIT``, or 'image units' without one)."""
        d = self.state.data
        return (d.bunit or "").strip() if d is not None and d.bunit else "image units"

    def colorbar_labels(self):
        """``{panel: text}`` under each colour bar: the end values and their unit."""
        lo, hi = self.state.levels
        r, n = self.state.resid_range, self.state.display.resid_nsigma
        u = self.unit()
        # short enough for a narrow panel; stretch, preset and n sigma are in the toolbar
        return {"data": f"{_g(lo)} \u2026 {_g(hi)} {u}",
                "residual": f"{_g(-r)} \u2026 {_g(r)} {u}",
                "chi": f"{_g(-n)} \u2026 {_g(n)} \u03c3"}

    def _update_colorbars(self):
        lo, hi = self.state.levels
        inv = STRETCH_CLASSES[self.state.display.stretch]().inverse
        ticks = []
        for s in (0.0, 0.25, 0.5, 0.75, 1.0):
            v = lo + (hi - lo) * float(inv(np.array([s]))[0])
            ticks.append((s, _g(v)))
        self.cbar_data.setLevels((0.0, 1.0))
        self.cbar_data.axis.setTicks([ticks, []])
        r, n = self.state.resid_range, self.state.display.resid_nsigma
        self.cbar_resid.setLevels((-r, r))
        self.cbar_resid.axis.setTicks([[(-r, _g(-r)), (0.0, "0"), (r, _g(r))], []])
        self.cbar_chi.setLevels((-n, n))
        self.cbar_chi.axis.setTicks([[(-n, _g(-n)), (0.0, "0"), (n, _g(n))], []])
        labels = self.colorbar_labels()
        for cb, key in ((self.cbar_data, "data"), (self.cbar_resid, "residual"),
                        (self.cbar_chi, "chi")):
            cb.axis.setLabel(labels[key], color="#aaaaaa")

    def _on_model_changed(self):
        im = self.state.images
        data = self.state.data
        if im is None or data is None or im.model.shape != data.shape:
            return
        self.model_item.setImage(self._stretched(im.model), autoLevels=False, levels=(0, 1))
        r = self.state.resid_range
        self.resid_item.setImage(np.nan_to_num(im.residual, nan=0.0), autoLevels=False,
                                 levels=(-r, r))
        n = self.state.display.resid_nsigma
        self.chi_item.setImage(np.nan_to_num(im.chi, nan=0.0), autoLevels=False,
                               levels=(-n, n))
        self.n_model_updates += 1

    # ------------------------------------------------------------------ overlays
    def set_model_outline(self, xs, ys):
        self.model_ellipse.setData(xs, ys)

    # ------------------------------------------------------------------ mouse
    def _on_mouse_moved(self, scene_pos):
        for p in self.plots:
            vb = p.getViewBox()
            if vb.sceneBoundingRect().contains(scene_pos):
                pt = vb.mapSceneToView(scene_pos)
                self.hovered.emit(self.pixel_at(pt.x(), pt.y()))
                return
        self.hovered.emit(None)

    def pixel_at(self, x, y):
        """Integer pixel ``(ix, iy)`` containing view point ``(x, y)``, or None outside."""
        data = self.state.data
        if data is None:
            return None
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        ny, nx = data.shape
        if 0 <= ix < nx and 0 <= iy < ny:
            return ix, iy
        return None

    # ------------------------------------------------------------------ export
    def panel_rgba(self):
        """``{title: (ny, nx, 4) uint8 RGBA}`` of the four panels as the display state maps
        them (stretch, limits, colours, mask), row 0 at the bottom as in the image array."""
        data, im = self.state.data, self.state.images
        if data is None or im is None or im.model.shape != data.shape:
            return {}
        lut = colormap(self.state.display.cmap).getLookupTable(0.0, 1.0, 256, alpha=True)
        dv = colormap(DIVERGING).getLookupTable(0.0, 1.0, 256, alpha=True)
        r, n = self.state.resid_range, self.state.display.resid_nsigma

        def mapped(a, table, lo, hi):
            t = np.clip((np.nan_to_num(np.asarray(a, float), nan=0.0) - lo) / (hi - lo), 0, 1)
            out = np.array(table[np.round(t * (len(table) - 1)).astype(int)], np.uint8)
            if out.shape[-1] == 3:
                out = np.concatenate([out, np.full(out.shape[:-1] + (1,), 255, np.uint8)], -1)
            mask = self.state.full_mask
            if self.state.display.show_mask and mask.any():
                a_m = MASK_RGBA[3] / 255.0
                blend = (1 - a_m) * out[mask, :3] + a_m * np.array(MASK_RGBA[:3])
                out[mask, :3] = np.round(blend).astype(np.uint8)
            return out

        return {
            "data": mapped(self._stretched(data.image), lut, 0.0, 1.0),
            "model": mapped(self._stretched(im.model), lut, 0.0, 1.0),
            "residual": mapped(im.residual, dv, -r, r),
            "chi": mapped(im.chi, dv, -n, n),
        }

    def render_png(self, path, *, min_panel_px=320):
        """Write the four panels to a PNG from the arrays themselves (no screen grab, no
        ellipse or handles): each panel at an integer zoom of at least ``min_panel_px`` px,
        nearest-neighbour, under its title and over a colour bar with end values and unit.
        Returns True on success."""
        panels = self.panel_rgba()
        if not panels:
            return False
        ny, nx = self.state.data.shape
        zoom = max(1, int(math.ceil(min_panel_px / max(nx, ny))))
        w, h = nx * zoom, ny * zoom
        gap, title_h, bar_h, label_h = 12, 24, 12, 20
        W = 4 * w + 5 * gap
        H = title_h + h + gap // 2 + bar_h + label_h + gap
        canvas = QtGui.QImage(W, H, QtGui.QImage.Format_RGB32)
        canvas.fill(QtGui.QColor(25, 25, 30))
        p = QtGui.QPainter(canvas)
        try:
            p.setRenderHint(QtGui.QPainter.SmoothPixmapTransform, False)
            font = p.font()
            font.setPixelSize(13)
            p.setFont(font)
            p.setPen(QtGui.QColor("#dddddd"))
            labels = self.colorbar_labels()
            bars = {"data": (self.state.display.cmap, labels["data"]),
                    "model": (self.state.display.cmap, labels["data"]),
                    "residual": (DIVERGING, labels["residual"]), "chi": (DIVERGING, labels["chi"])}
            for i, (name, rgba) in enumerate(panels.items()):
                x0 = gap + i * (w + gap)
                # image rows run bottom-up on screen (y up): flip for the top-down QImage
                arr = np.ascontiguousarray(rgba[::-1])
                qimg = QtGui.QImage(arr.data, nx, ny, 4 * nx, QtGui.QImage.Format_RGBA8888)
                p.drawImage(QtCore.QRect(x0, title_h, w, h), qimg.copy())
                p.setPen(QtGui.QColor("#dddddd"))
                p.drawText(QtCore.QRect(x0, 0, w, title_h), QtCore.Qt.AlignCenter, name)
                cmap, text = bars[name]
                lut = colormap(cmap).getLookupTable(0.0, 1.0, w)
                strip = np.ascontiguousarray(np.repeat(
                    np.concatenate([lut[:, :3], np.full((w, 1), 255, np.ubyte)], 1)[None],
                    bar_h, 0).astype(np.uint8))
                qbar = QtGui.QImage(strip.data, w, bar_h, 4 * w, QtGui.QImage.Format_RGBA8888)
                yb = title_h + h + gap // 2
                p.drawImage(QtCore.QRect(x0, yb, w, bar_h), qbar.copy())
                p.setPen(QtGui.QColor("#aaaaaa"))
                small = QtGui.QFont(font)
                small.setPixelSize(11)
                p.setFont(small)
                p.drawText(QtCore.QRect(x0, yb + bar_h, w, label_h),
                           QtCore.Qt.AlignCenter | QtCore.Qt.TextWordWrap, text)
                p.setFont(font)
        finally:
            p.end()
        return bool(canvas.save(str(path), "PNG"))


def ellipse_outline(x, y, re, q, angle, n=96):
    """Points of the ellipse (for the faint outline on the residual panel)."""
    t = np.linspace(0, 2 * np.pi, n)
    a, b = re, q * re
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = a * np.cos(t), b * np.sin(t)
    return x + c * u - s * v, y + s * u + c * v


__all__ = ["ImagePanels", "STRETCHES", "LIMITS", "COLORMAPS", "ellipse_outline", "colormap",
           "DIVERGING"]
