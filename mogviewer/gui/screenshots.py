"""Render the README screenshots: the main window before and after a fit, the PSF dialog, the
posterior dialog and the other sources of the scene.

    python -m mogviewer.gui.screenshots [OUTDIR]      (default docs/screenshots)

Runs offscreen unless DISPLAY is set (e.g. under ``xvfb-run``). Opens the bundled sample, waits
for its PSF, grabs the window at the moments-based start, fits, grabs again, grabs the PSF
dialog, samples the posterior (mixture-only PSF, 1200 steps) and grabs its dialog, then detects
the other sources, draws a mask ellipse and grabs the window. The PNGs are reduced to 256-colour
palettes (Pillow) to stay small.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5 import QtCore  # noqa: E402

from . import app as gui_app  # noqa: E402


def _save(widget, path, width=None):
    pix = widget.grab()
    if width and pix.width() > width:
        pix = pix.scaledToWidth(width, QtCore.Qt.SmoothTransformation)
    pix.save(str(path), "PNG")
    try:
        from PIL import Image
        im = Image.open(path).convert("RGB")
        pal = im.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        im.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    except ImportError:
        pass
    return path


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Path(argv[0] if argv else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    app, w = gui_app.sample_window(1500, 900)
    gui_app.settle(app)
    paths = [_save(w, out / "main_start.png", 1280)]
    done = []
    w.commands.fit_finished.connect(done.append)
    w.commands.start_fit()
    gui_app.wait_until(app, lambda: done, 120)
    w.components_action.setChecked(True)
    gui_app.settle(app)
    paths.append(_save(w, out / "main_fitted.png", 1280))
    dlg = w.show_psf_dialog()
    dlg.resize(900, 640)
    gui_app.settle(app)
    paths.append(_save(dlg, out / "psf_dialog.png", 900))
    dlg.close()
    w.components_action.setChecked(False)
    # the posterior: 1200 steps per walker with the PSF's mixture (a render 10x faster)
    w.state.set_psf_mode("mixture")
    done.clear()
    w.commands.start_fit()
    gui_app.wait_until(app, lambda: done, 120)
    post = []
    w.commands.sample_finished.connect(post.append)
    w.commands.start_sample(1200)
    gui_app.wait_until(app, lambda: post, 600)
    pd = w._posterior_dialog
    gui_app.wait_until(app, lambda: pd.corner_image is not None, 120)
    gui_app.settle(app)
    paths.append(_save(pd, out / "posterior.png", 1100))
    pd.close()
    # the other sources: detected, their handles on the data panel, the mask drawn
    det = []
    w.commands.detect_finished.connect(det.append)
    w.commands.detect_sources()
    gui_app.wait_until(app, lambda: det, 300)
    w.commands.draw_mask("ellipse", 20.0, 200.0, 60.0, 240.0)
    w.params_scroll.verticalScrollBar().setValue(w.params_scroll.verticalScrollBar().maximum())
    gui_app.settle(app)
    paths.append(_save(w, out / "scene.png", 1280))
    w.state.set_psf_mode("exact")
    w.close()
    for p in paths:
        print(f"{p}  {p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
