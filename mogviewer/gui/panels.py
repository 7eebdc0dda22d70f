"""The four image panels (data, model, residual, chi) with linked pan/zoom and colour bars.

Display conventions: ``image[y, x]`` row-major, y up, aspect locked, pixel ``(i, j)`` centred on
the view coordinates ``(x=j, y=i)`` (so view coordinates are 0-based pixel coordinates and the
ellipse needs no offset). Data and model share one set of display levels and one stretch;
residual and chi use symmetric ranges (``+- n sigma``) and a diverging colour map. Masked pixels
are painted over with a flat colour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyqtgraph as pg
from astropy.visualization import (
    AsinhStretch,
    LinearStretch,
    LogStretch,
    ManualInterval,
    MinMaxInterval,
    PercentileInterval,
    SqrtStretch,
    ZScaleInterval,
)
from PyQt5 import QtCore, QtGui, QtWidgets

from .ellipse_handle import ComponentsOverlay, EllipseHandle

STRETCHES = {"linear": LinearStretch, "sqrt": SqrtStretch, "log": LogStretch,
             "asinh": AsinhStretch}
LIMITS = ("min/max", "zscale", "99.5%", "manual")
COLORMAPS = ("inferno", "viridis", "magma", "cividis", "gray", "CET-L1", "turbo")
DIVERGING = "CET-D1A"
MASK_RGBA = (70, 90, 120, 215)


@dataclass(frozen=True)
class DisplaySettings:
    stretch: str = "asinh"
    limits: str = "99.5%"
    cmap: str = "inferno"
    manual_lo: float = 0.0
    manual_hi: float = 1.0
    resid_nsigma: float = 5.0
    show_mask: bool = True

    def replace(self, **kw):
        return replace(self, **kw)


def colormap(name):
    if name == "gray":
        return pg.ColorMap([0.0, 1.0], [(0, 0, 0), (255, 255, 255)])
    try:
        return pg.colormap.get(name)
    except (FileNotFoundError, KeyError, ValueError):
        return pg.colormap.get("inferno")


def interval_for(settings):
    if settings.limits == "min/max":
        return MinMaxInterval()
    if settings.limits == "zscale":
        return ZScaleInterval()
    if settings.limits == "manual":
        return ManualInterval(settings.manual_lo, settings.manual_hi)
    return PercentileInterval(99.5)


class ImagePanels(QtWidgets.QWidget):
    """Four linked image panels drawing the session's images.

    Signals
    -------
    hovered(object) : ``(ix, iy)`` integer pixel under the cursor, or None when outside.
    """

    hovered = QtCore.pyqtSignal(object)
    TITLES = ("data", "model", "residual  (data \u2212 model)",
              "chi  ((data \u2212 model) / \u03c3)")

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.settings = DisplaySettings()
        self.levels = (0.0, 1.0)
        self.resid_range = 1.0
        self.n_model_updates = 0
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
            p.setAspectLocked(True)
            p.hideButtons()
            p.setMenuEnabled(False)
            for ax in ("left", "bottom"):
                p.getAxis(ax).setPen(pg.mkPen("#888888"))
                p.getAxis(ax).setTextPen(pg.mkPen("#aaaaaa"))
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

        self.cbar_data = pg.ColorBarItem(values=(0, 1), colorMap=colormap(self.settings.cmap),
                                         interactive=False, orientation="horizontal", width=12,
                                         colorMapMenu=False)
        self.cbar_resid = pg.ColorBarItem(values=(-1, 1), colorMap=colormap(DIVERGING),
                                          interactive=False, orientation="horizontal", width=12,
                                          colorMapMenu=False)
        self.cbar_chi = pg.ColorBarItem(values=(-5, 5), colorMap=colormap(DIVERGING),
                                        interactive=False, orientation="horizontal", width=12,
                                        colorMapMenu=False)
        for cb in (self.cbar_data, self.cbar_resid, self.cbar_chi):
            cb.axis.setTextPen(pg.mkPen("#aaaaaa"))
            cb.axis.setPen(pg.mkPen("#888888"))
        self.arrangement = None
        self.arrange("row")

        self.ellipse = EllipseHandle()
        self.data_plot.addItem(self.ellipse)
        self.components = ComponentsOverlay()
        self.data_plot.addItem(self.components)
        self.components.setVisible(False)
        self.model_ellipse = pg.PlotCurveItem(pen=pg.mkPen((80, 255, 120, 150), width=1,
                                                           style=QtCore.Qt.DashLine))
        self.resid_plot.addItem(self.model_ellipse)
        self._apply_cmaps()

        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        session.image_changed.connect(self._on_image_changed)
        session.model_changed.connect(self._on_model_changed)

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
        for i, p in enumerate(self.plots):
            left = i == 0 or (mode == "grid" and i == 2)
            p.getAxis("left").setStyle(showValues=left)
            p.getAxis("left").setWidth(None if left else 6)
        self.arrangement = mode
        QtCore.QTimer.singleShot(0, self.reset_zoom)   # once the layout has its new geometry

    def showEvent(self, ev):
        super().showEvent(ev)
        QtCore.QTimer.singleShot(0, self.reset_zoom)

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        w, h = max(1, self.width()), max(1, self.height())
        # the layout that gives each (square) panel the larger side
        row_side = min(w / 4.0, h * 0.92)
        grid_side = min(w / 2.0, h * 0.46)
        self.arrange("row" if row_side >= grid_side else "grid")

    # ------------------------------------------------------------------ settings
    def set_settings(self, settings):
        if settings == self.settings:
            return
        old = self.settings
        self.settings = settings
        if settings.cmap != old.cmap:
            self._apply_cmaps()
        self.refresh()

    def _apply_cmaps(self):
        cm = colormap(self.settings.cmap)
        lut = cm.getLookupTable(0.0, 1.0, 256)
        self.data_item.setLookupTable(lut)
        self.model_item.setLookupTable(lut)
        self.cbar_data.setColorMap(cm)
        dv = colormap(DIVERGING).getLookupTable(0.0, 1.0, 256)
        self.resid_item.setLookupTable(dv)
        self.chi_item.setLookupTable(dv)

    # ------------------------------------------------------------------ images
    def _stretched(self, a):
        lo, hi = self.levels
        t = (np.asarray(a, float) - lo) / (hi - lo if hi > lo else 1.0)
        t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)
        return STRETCHES[self.settings.stretch]()(t, clip=True)

    def _on_image_changed(self):
        data = self.session.data
        ny, nx = data.shape
        rgba = np.zeros((ny, nx, 4), np.ubyte)
        rgba[data.mask] = MASK_RGBA
        for m in self.mask_items:
            m.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.refresh()
        self.reset_zoom()

    def reset_zoom(self):
        if self.session.data is None:
            return
        ny, nx = self.session.data.shape
        self.data_plot.getViewBox().setRange(xRange=(-0.5, nx - 0.5), yRange=(-0.5, ny - 0.5),
                                             padding=0.0)

    def refresh(self):
        """Recompute levels and redraw everything (image or display settings changed)."""
        data = self.session.data
        if data is None:
            return
        good = ~data.mask
        vals = data.image[good] if good.any() else data.image.ravel()
        try:
            lo, hi = interval_for(self.settings).get_limits(vals)
        except Exception:  # noqa: BLE001 - degenerate data: fall back to min/max
            lo, hi = float(np.min(vals)), float(np.max(vals))
        if not hi > lo:
            hi = lo + 1.0
        self.levels = (float(lo), float(hi))
        sig = data.sigma[good & np.isfinite(data.sigma)]
        med = float(np.median(sig)) if sig.size else 1.0
        self.resid_range = max(self.settings.resid_nsigma * med, 1e-30)
        self.data_item.setImage(self._stretched(data.image), autoLevels=False, levels=(0, 1))
        for m in self.mask_items:
            m.setVisible(self.settings.show_mask)
        self._update_colorbars()
        self._on_model_changed()

    def _update_colorbars(self):
        lo, hi = self.levels
        st = STRETCHES[self.settings.stretch]()
        inv = st.inverse
        ticks = []
        for s in (0.0, 0.25, 0.5, 0.75, 1.0):
            v = lo + (hi - lo) * float(inv(np.array([s]))[0])
            ticks.append((s, f"{v:.3g}"))
        self.cbar_data.setLevels((0.0, 1.0))
        self.cbar_data.axis.setTicks([ticks, []])
        r = self.resid_range
        self.cbar_resid.setLevels((-r, r))
        n = self.settings.resid_nsigma
        self.cbar_chi.setLevels((-n, n))
        self.cbar_chi.axis.setTicks(None)

    def _on_model_changed(self):
        im = self.session.images
        if im is None:
            return
        self.model_item.setImage(self._stretched(im.model), autoLevels=False, levels=(0, 1))
        r = self.resid_range
        self.resid_item.setImage(np.nan_to_num(im.residual, nan=0.0), autoLevels=False,
                                 levels=(-r, r))
        n = self.settings.resid_nsigma
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
        data = self.session.data
        if data is None:
            return None
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        ny, nx = data.shape
        if 0 <= ix < nx and 0 <= iy < ny:
            return ix, iy
        return None

    def grab_png(self, path):
        """Save the panels (as shown) to a PNG; returns True on success."""
        return bool(self.view.grab().save(str(path), "PNG"))


def ellipse_outline(x, y, re, q, angle, n=96):
    """Points of the ellipse (for the faint outline on the residual panel)."""
    t = np.linspace(0, 2 * np.pi, n)
    a, b = re, q * re
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = a * np.cos(t), b * np.sin(t)
    return x + c * u - s * v, y + s * u + c * v


__all__ = ["ImagePanels", "DisplaySettings", "STRETCHES", "LIMITS", "COLORMAPS",
           "ellipse_outline"]
