"""Responsiveness benchmark: time from an ellipse drag event to the panels being redrawn.

    python -m mogviewer.gui.bench            (offscreen unless DISPLAY is set)

For 64x64 and 256x256 cutouts (the bundled sample and its central 64x64 crop, PSF loaded), moves
the ellipse with ``ROI.setPos`` (exactly what a handle drag does: ``sigRegionChanged`` -> session
-> model/residual/chi -> image items) with the render throttle off, then repaints the panels
synchronously, and prints the median latency and the redraws per second it allows.
"""

from __future__ import annotations

import os
import sys
import time

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PyQt5 import QtCore  # noqa: E402

from . import app as gui_app  # noqa: E402
from . import engine  # noqa: E402
from .ellipse_handle import roi_state_for  # noqa: E402


def measure(window, app, n=60):
    s, roi, view = window.state, window.panels.ellipse, window.panels.view
    s.render_interval_ms = 0
    p0 = s.params
    times = []
    for i in range(n):
        dx = 3.0 * np.sin(i / 5.0)
        pos, size, ang = roi_state_for(p0.x + dx, p0.y, p0.re, p0.q, p0.angle)
        t0 = time.perf_counter()
        roi.setPos(pos)                       # = one drag event
        app.processEvents()
        view.viewport().repaint()             # synchronous redraw of the four panels
        times.append(time.perf_counter() - t0)
    s.render_interval_ms = 30
    return np.array(times[5:]) * 1e3, s.last_render_ms


def main(argv=None):
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    app, w = gui_app.sample_window(1560, 940, timeout=60)
    img, mask, _ = engine.sample_files()
    full = w.state.data
    rows = []
    for size in (64, 256):
        if size == 64:
            c = 128 - 32
            crop = engine.read_image(np.array(full.image[c:c + 64, c:c + 64]),
                                     noise=np.array(full.sigma[c:c + 64, c:c + 64]),
                                     mask=np.array(full.mask[c:c + 64, c:c + 64]))
            w.state.set_image(crop, path=None)
        else:
            w.commands.open_sample(psf=False)
        for _ in range(20):
            app.processEvents()
        ms, render_ms = measure(w, app)
        med = float(np.median(ms))
        rows.append((size, med, float(np.percentile(ms, 90)), 1000.0 / med, render_ms))
    print("drag-to-redraw latency (ROI moved -> session -> model/residual/chi -> 4 panels "
          "repainted), PSF K = %d, %s %d" % (w.state.psf_model.n_components,
                                             w.state.profile, w.state.M))
    print(f"{'cutout':>8} {'median ms':>10} {'p90 ms':>8} {'redraws/s':>10} {'model ms':>9}")
    for size, med, p90, rate, rms in rows:
        print(f"{size:>5}x{size:<3}{med:>10.2f} {p90:>8.2f} {rate:>10.0f} {rms:>9.2f}")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
