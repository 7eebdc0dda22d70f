"""The desktop app (PyQt5 + pyqtgraph). The only package of mogviewer that imports Qt.

Modules: :mod:`.app` (entry point), :mod:`.state` (the one state object, evented with psygnal,
no Qt), :mod:`.main_window` (layout), :mod:`.actions` (open, export, fit, undo), :mod:`.panels`
(data/model/residual/chi), :mod:`.ellipse_handle`, :mod:`.params_panel`, :mod:`.psf_dialog`,
:mod:`.dialogs`, :mod:`.worker` (fit thread), :mod:`.undo`, :mod:`.engine` (the adapter to the
Qt-free engine, no Qt either).
"""
