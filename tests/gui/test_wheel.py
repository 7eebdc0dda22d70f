"""Scrolling the dock over a combo box scrolls the dock; it does not change the box."""

from PyQt5 import QtCore, QtGui

from mogviewer.gui.main_window import MainWindow


def _wheel(widget, steps):
    pos = QtCore.QPointF(widget.rect().center())
    ev = QtGui.QWheelEvent(pos, QtCore.QPointF(widget.mapToGlobal(pos.toPoint())),
                           QtCore.QPoint(0, 0), QtCore.QPoint(0, -120 * steps),
                           QtCore.Qt.NoButton, QtCore.Qt.NoModifier, QtCore.Qt.NoScrollPhase,
                           False)
    QtCore.QCoreApplication.sendEvent(widget, ev)


def test_wheel_over_an_unfocused_combo_scrolls_the_dock(qtbot, settings, errors):
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.resize(1280, 500)                  # a dock shorter than its content: it scrolls
    w.show()
    qtbot.waitExposed(w)
    combo = w.params.profile_combo
    bar = w.params_scroll.verticalScrollBar()
    assert bar.maximum() > 0
    before, top = combo.currentIndex(), bar.value()
    _wheel(combo, 3)                     # the pointer over the box, the box not focused
    assert combo.currentIndex() == before          # the profile did not change
    assert bar.value() > top                       # the dock scrolled instead
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus)
    _wheel(combo, 1)                     # focused (clicked or tabbed into): the wheel is its
    assert combo.currentIndex() != before
