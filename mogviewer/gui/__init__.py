"""The desktop app (PyQt5 + pyqtgraph). The only package of mogviewer that imports Qt.

Modules: :mod:`.app` (entry point), :mod:`.session` (the one state object), :mod:`.main_window`,
:mod:`.panels` (data/model/residual/chi), :mod:`.ellipse_handle`, :mod:`.params_panel`,
:mod:`.psf_dialog`, :mod:`.worker` (fit thread), :mod:`.undo`, :mod:`.engine` (the adapter to the
Qt-free engine).
"""
