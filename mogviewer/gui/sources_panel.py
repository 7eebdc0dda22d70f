"""The scene: the source list, the other sources' handles on the data panel, and the tools that
add sources and draw the mask with the mouse.

:class:`SourcesPanel` is a view of ``state.neighbours`` / ``state.user_mask`` / ``state.selected``
(the target is row 0, the green ellipse; the other sources follow) and sends edits to the
actions (undoable). :class:`SceneOverlay` puts one handle per other source on the data panel (a
cyan ellipse per galaxy, a cross per point source) and turns clicks and drags on the data panel
into "add a source here" or "mask / erase this box or ellipse" while a tool is chosen.
"""

from __future__ import annotations

import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from . import engine
from .ellipse_handle import EllipseHandle

NEIGHBOUR_PEN = pg.mkPen((90, 220, 255), width=1.5)
SELECTED_PEN = pg.mkPen((255, 230, 80), width=2)
TOOLS = ("none", "add", "box", "ellipse", "erase")


def describe(i, src):
    kind = engine.source_kind(src)
    extra = "" if kind == "point" else f", r\u2091 {src.re:.2f}, q {src.q:.2f}"
    return f"{i}  {kind}  ({src.x:.1f}, {src.y:.1f})  flux {src.flux:.4g}{extra}"


class SourcesPanel(QtWidgets.QGroupBox):
    """Source list and tools (see the module docstring).

    Signals
    -------
    tool_chosen(str) : 'none', 'add', 'box', 'ellipse' or 'erase'.
    """

    tool_chosen = QtCore.pyqtSignal(str)

    def __init__(self, state, actions, parent=None):
        super().__init__("Sources and mask", parent)
        self.state, self.actions = state, actions
        self.tool = "none"
        lay = QtWidgets.QGridLayout(self)
        self.list = QtWidgets.QListWidget()
        self.list.setMinimumHeight(70)
        self.list.setMaximumHeight(120)
        self.list.currentRowChanged.connect(self._on_row)
        self.list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.list.setTextElideMode(QtCore.Qt.ElideRight)
        self.list.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Preferred)
        lay.addWidget(self.list, 0, 0, 1, 3)
        self.add_button = QtWidgets.QPushButton("Add by click")
        self.add_button.setCheckable(True)
        self.add_button.setToolTip("Then click on the data panel: a source of the chosen kind "
                                   "is added at the cursor")
        self.kind_combo = QtWidgets.QComboBox()
        for k in engine.SOURCE_KINDS:
            self.kind_combo.addItem(k, k)
        self.kind_combo.setCurrentIndex(self.kind_combo.findData("exp"))
        self.kind_combo.setToolTip("Kind of the selected source (point: the PSF itself; or a "
                                   "galaxy profile), and of the sources added by click")
        self.kind_combo.currentIndexChanged.connect(self._on_kind)
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected source (the target stays)")
        self.delete_button.clicked.connect(lambda: actions.delete_source())
        self.detect_button = QtWidgets.QPushButton("Detect sources")
        self.detect_button.setToolTip(
            "Find the sources in the image (photutils: segmentation at 2 sigma, deblending); "
            "the 10 brightest others are modelled, artefacts and the rest are masked")
        self.detect_button.clicked.connect(actions.detect_sources)
        lay.addWidget(self.add_button, 1, 0)
        lay.addWidget(self.kind_combo, 1, 1)
        lay.addWidget(self.delete_button, 1, 2)
        lay.addWidget(self.detect_button, 3, 2)
        self.tool_buttons = {}
        for col, (tool, text, tip) in enumerate((
                ("box", "Mask box", "Drag on the data panel: mask the pixels in the box"),
                ("ellipse", "Mask ellipse", "Drag on the data panel: mask the pixels in the "
                 "ellipse inscribed in the box"),
                ("erase", "Erase", "Drag on the data panel: unmask the box (your mask only)"))):
            b = QtWidgets.QPushButton(text)
            b.setCheckable(True)
            b.setToolTip(tip)
            b.toggled.connect(lambda on, t=tool: self._on_tool(t, on))
            lay.addWidget(b, 2, col)
            self.tool_buttons[tool] = b
        self.add_button.toggled.connect(lambda on: self._on_tool("add", on))
        self.tool_buttons["add"] = self.add_button
        self.clear_mask_button = QtWidgets.QPushButton("Clear mask")
        self.clear_mask_button.clicked.connect(actions.clear_mask)
        lay.addWidget(self.clear_mask_button, 3, 1)
        self.mask_label = QtWidgets.QLabel("")
        self.mask_label.setStyleSheet("color: #555;")
        lay.addWidget(self.mask_label, 4, 0, 1, 3)
        self.import_button = QtWidgets.QPushButton("Regions\u2026")
        self.import_button.setToolTip("Mask the pixels inside the regions of a DS9 file")
        self.import_button.clicked.connect(actions.ask_import_mask_regions)
        self.export_button = QtWidgets.QPushButton("Save mask\u2026")
        self.export_button.setToolTip("Your mask as a DS9 region file (exact: one box per run "
                                      "of masked pixels)")
        self.export_button.clicked.connect(lambda: actions.ask_export("mask"))
        lay.addWidget(self.import_button, 5, 0)
        lay.addWidget(self.export_button, 5, 1)
        for c in range(3):
            lay.setColumnStretch(c, 1)
        state.sources_changed.connect(self.show_sources)
        state.params_changed.connect(lambda *_: self.show_sources())
        state.selection_changed.connect(self._show_selection)
        state.mask_changed.connect(self.show_mask)
        state.busy_changed.connect(self._on_busy)
        self.show_sources()
        self.show_mask()

    # ------------------------------------------------------------------ state -> widgets
    def show_sources(self, *_):
        s = self.state
        self.list.blockSignals(True)
        try:
            self.list.clear()
            if s.params is not None:
                p = s.params
                self.list.addItem(f"0  target {s.profile}  ({p.x:.1f}, {p.y:.1f})  flux "
                                  f"{p.flux:.4g}, r\u2091 {p.re:.2f}, q {p.q:.2f}")
            for i, src in enumerate(s.neighbours, start=1):
                self.list.addItem(describe(i, src))
            sel = s.selected if s.selected is not None else 0
            if sel < self.list.count():
                self.list.setCurrentRow(sel)
        finally:
            self.list.blockSignals(False)
        self._show_selection(s.selected)

    def _show_selection(self, index):
        s = self.state
        self.list.blockSignals(True)
        if index is not None and index < self.list.count():
            self.list.setCurrentRow(index)
        self.list.blockSignals(False)
        self.delete_button.setEnabled(bool(index) and not s.busy)
        if index and index <= len(s.neighbours):
            self.kind_combo.blockSignals(True)
            self.kind_combo.setCurrentIndex(
                self.kind_combo.findData(engine.source_kind(s.neighbours[index - 1])))
            self.kind_combo.blockSignals(False)

    def show_mask(self):
        m = self.state.user_mask
        self.mask_label.setText("your mask: none" if m is None
                                else f"your mask: {int(m.sum())} pixels")
        self.clear_mask_button.setEnabled(m is not None and not self.state.busy)
        self.export_button.setEnabled(m is not None and not self.state.busy)

    def _on_busy(self, busy):
        for w in (self.list, self.add_button, self.kind_combo, self.delete_button,
                  self.detect_button, self.clear_mask_button, self.import_button,
                  self.export_button, *self.tool_buttons.values()):
            w.setEnabled(not busy)
        if busy:
            self.set_tool("none")
        else:
            self._show_selection(self.state.selected)
            self.show_mask()

    # ------------------------------------------------------------------ widgets -> out
    def _on_row(self, row):
        self.state.select(row if row >= 0 else None)

    def _on_kind(self, _i):
        kind = self.kind_combo.currentData()
        sel = self.state.selected
        if sel:
            self.actions.set_source_kind(sel, kind)

    def _on_tool(self, tool, on):
        if on:
            self.set_tool(tool)
        elif self.tool == tool:
            self.set_tool("none")

    def set_tool(self, tool):
        """Choose the mouse tool of the data panel (one at a time)."""
        self.tool = tool
        for t, b in self.tool_buttons.items():
            b.blockSignals(True)
            b.setChecked(t == tool)
            b.blockSignals(False)
        self.tool_chosen.emit(tool)

    @property
    def add_kind(self):
        return self.kind_combo.currentData()


class SceneOverlay(QtCore.QObject):
    """Handles of the other sources on the data panel, and the mouse tools."""

    def __init__(self, state, actions, plot, panel):
        super().__init__(plot)
        self.state, self.actions, self.plot, self.panel = state, actions, plot, panel
        self.handles = []
        self.rubber = pg.PlotCurveItem(pen=pg.mkPen((255, 120, 120), width=1,
                                                    style=QtCore.Qt.DashLine))
        self.rubber.setZValue(30)
        plot.addItem(self.rubber)
        vb = plot.getViewBox()
        self._orig_click, self._orig_drag = vb.mouseClickEvent, vb.mouseDragEvent
        vb.mouseClickEvent = self._click
        vb.mouseDragEvent = self._drag
        self._drag_from = None
        state.sources_changed.connect(self._on_sources)
        state.selection_changed.connect(lambda *_: self._restyle())
        state.busy_changed.connect(self._on_busy)

    # ------------------------------------------------------------------ handles
    def _on_sources(self, origin):
        if origin == "drag":            # the handle moved itself
            return
        self.rebuild()

    def rebuild(self):
        for h in self.handles:
            self.plot.removeItem(h)
        self.handles = []
        for i, src in enumerate(self.state.neighbours, start=1):
            if engine.source_kind(src) == "point":
                h = pg.TargetItem(pos=(src.x, src.y), size=12, pen=NEIGHBOUR_PEN,
                                  movable=True)
                h.sigPositionChanged.connect(lambda it, i=i: self._point_moved(i, it))
                h.sigPositionChangeFinished.connect(
                    lambda it, i=i: self.actions.source_drag_finished(i))
            else:
                h = EllipseHandle()
                h.setPen(NEIGHBOUR_PEN)
                for hh in h.getHandles():     # cyan handles: not the target's green ones
                    hh.pen = hh.currentPen = NEIGHBOUR_PEN
                    hh.update()
                h.set_ellipse(src.x, src.y, src.re, src.q, src.angle)
                h.drag_started.connect(lambda i=i: self._started(i))
                h.dragged.connect(lambda ell, i=i: self.actions.source_dragged(i, ell))
                h.drag_finished.connect(lambda i=i: self.actions.source_drag_finished(i))
            h.source_index = i
            self.plot.addItem(h)
            self.handles.append(h)
        self._restyle()
        self._on_busy(self.state.busy)

    def _started(self, i):
        self.state.select(i)
        self.actions.source_drag_started(i)

    def _point_moved(self, i, item):
        if getattr(self, "_syncing", False):
            return
        if getattr(self.actions, "_src_drag", None) is None:
            self._started(i)
        p = item.pos()
        self.actions.source_dragged(i, {"x": p.x(), "y": p.y()})

    def _restyle(self):
        sel = self.state.selected
        for h in self.handles:
            pen = SELECTED_PEN if h.source_index == sel else NEIGHBOUR_PEN
            h.setPen(pen)

    def _on_busy(self, busy):
        for h in self.handles:
            if isinstance(h, EllipseHandle):
                h.translatable = not busy
                for hh in h.getHandles():
                    hh.setVisible(not busy)
            else:
                h.movable = not busy

    # ------------------------------------------------------------------ mouse tools
    def _point(self, ev_pos):
        vb = self.plot.getViewBox()
        p = vb.mapToView(ev_pos)
        return p.x(), p.y()

    def _click(self, ev, *a, **k):
        tool = self.panel.tool
        if tool == "add" and ev.button() == QtCore.Qt.LeftButton:
            ev.accept()
            x, y = self._point(ev.pos())
            self.actions.add_source(self.panel.add_kind, x, y)
            return
        return self._orig_click(ev, *a, **k)

    def _drag(self, ev, axis=None):
        tool = self.panel.tool
        if tool not in ("box", "ellipse", "erase") or ev.button() != QtCore.Qt.LeftButton:
            return self._orig_drag(ev, axis)
        ev.accept()
        x0, y0 = self._point(ev.buttonDownPos())
        x1, y1 = self._point(ev.pos())
        if ev.isFinish():
            self.rubber.setData([], [])
            self.actions.draw_mask(tool, x0, y0, x1, y1)
            return
        if tool == "ellipse":
            import numpy as np
            t = np.linspace(0, 2 * np.pi, 64)
            cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
            self.rubber.setData(cx + a * np.cos(t), cy + b * np.sin(t))
        else:
            self.rubber.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])


__all__ = ["SourcesPanel", "SceneOverlay", "TOOLS"]
