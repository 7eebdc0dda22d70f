"""Small dialogs: questions the actions ask, the quick start, conventions and about.

Each question is one module-level function returning a plain answer, so that tests replace it
(``monkeypatch.setattr(dialogs, "ask_psf_for_new_image", ...)``) instead of clicking a modal box.
"""

from __future__ import annotations

import html

from PyQt5 import QtCore, QtWidgets

#: Answers of :func:`ask_psf_for_new_image`.
KEEP, REMOVE, REPLACE = "keep", "remove", "replace"

QUICK_START = """
<h3>Quick start</h3>
<ol>
<li><b>Open</b> a cutout: <i>File &#9656; Open Image</i> (Ctrl+O) or drop a FITS / .npy file on
the window (a mask, PSF or model JSON dropped with it is recognised by its content). A
multi-band file: choose the band under <i>Image and PSF</i>; type a <b>zeropoint</b> there if the
header has none.</li>
<li><b>PSF</b>: <i>File &#9656; Open PSF</i> (Ctrl+P): an image, a PSFEx file (give the cutout
centre's position on the original image) or a mixture. <i>View &#9656; PSF</i> shows its Gaussian
mixture and residual. A PSF image is used exactly (the stamp itself); <i>PSF mode</i> under
<i>Image and PSF</i> switches to its mixture alone and shows its quality figures. Without a PSF
the model is integrated over each pixel.</li>
<li><b>Start</b>: the green ellipse starts from the image moments; drag its centre, axis ends or
rotation handle, or type values in the parameter panel. Pick the profile and M (badness and flux
fraction of the mixture are shown); tick <i>fixed</i> to keep a parameter.</li>
<li><b>Fit</b>: press <b>F</b> (or the Fit button). The panels follow each iteration;
<b>Esc</b> cancels, <b>Ctrl+Z</b> / <b>Ctrl+Shift+Z</b> undo and redo.</li>
<li><b>Other sources and the mask</b> (<i>Sources and mask</i>): <b>Detect sources</b>, or
<b>Add by click</b> and click on the data panel; each source has its own cyan handles. <b>Mask
box / ellipse / Erase</b> draw on the data panel; DS9 region files in and out. Fit then fits
them all together.</li>
<li><b>Posterior</b>: after a fit, <b>Sample posterior</b> (<b>S</b>) runs emcee in the
background: the 16/84 % beside each parameter and a corner plot.</li>
<li><b>Judge</b> the residual and chi panels (&#177;5&#963; by default); the status bar reads
pixel values, RA/Dec in degrees and sexagesimal.</li>
<li><b>Export</b>: <i>File &#9656; Export</i>: the CSV row (append several fits to one file),
a GALFIT-style image block, a DS9 region, the model JSON, or the panels as a PNG.</li>
</ol>
<p>Conventions: pixels 0-based, centres at integers (FITS = +1); angles counter-clockwise from +x
(GALFIT PA = angle &#8722; 90); r<sub>e</sub> is the target profile's semi-major half-light
radius. <i>Help &#9656; Conventions</i> has the details.</p>
"""

CONVENTIONS = (
    "<p><b>Pixels</b>: image[y, x]; x, y are 0-based pixel centres (the status bar also "
    "shows 1-based FITS coordinates).</p>"
    "<p><b>r\u2091</b>: semi-major half-light radius of the target profile, pixels. "
    "<b>q</b> = b/a. <b>angle</b>: degrees counter-clockwise from +x; GALFIT/imfit PA "
    "= angle \u2212 90.</p>"
    "<p><b>flux</b>: total flux of the mixture, image units; the magnitude shown is that of the "
    "target profile's total. Errors are formal 1-\u03c3 from (J\u1d40WJ)\u207b\u00b9, not scaled "
    "by \u03c7\u00b2/\u03bd.</p>"
    "<p><b>residual</b> = data \u2212 model; <b>chi</b> = residual / \u03c3.</p>")


def ask_psf_for_new_image(parent, psf_name, image_name):
    """A new image was opened while the PSF of another image is in use: keep it, remove it or
    open another? Returns :data:`KEEP`, :data:`REMOVE` or :data:`REPLACE`."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Question)
    box.setWindowTitle("PSF of the previous image")
    box.setText(f"The PSF {psf_name} was chosen for the previous image.")
    box.setInformativeText(f"Is it also the PSF of {image_name}? A PSF from another band, "
                           "exposure or survey biases every size and shape.")
    keep = box.addButton("Keep it", QtWidgets.QMessageBox.AcceptRole)
    remove = box.addButton("Remove it", QtWidgets.QMessageBox.DestructiveRole)
    other = box.addButton("Open another PSF\u2026", QtWidgets.QMessageBox.ActionRole)
    box.setDefaultButton(other)
    box.exec_()
    clicked = box.clickedButton()
    return {id(keep): KEEP, id(remove): REMOVE, id(other): REPLACE}.get(id(clicked), KEEP)


def ask_psfex_position(parent, path_name, axes, default):
    """Where to evaluate a varying PSFEx model: ``(x, y)`` or None (cancelled)."""
    dlg = QtWidgets.QDialog(parent)
    dlg.setWindowTitle("PSFEx position")
    lay = QtWidgets.QFormLayout(dlg)
    text = QtWidgets.QLabel(
        f"{html.escape(path_name)} varies across the original image. Give the position of "
        f"this cutout's centre on that image, in {html.escape(axes[0])}, "
        f"{html.escape(axes[1])} (SExtractor's 1-based pixel coordinates, usually).")
    text.setWordWrap(True)
    lay.addRow(text)
    spins = []
    for name, v in zip(axes, default):
        sp = QtWidgets.QDoubleSpinBox()
        sp.setRange(-1e6, 1e6)
        sp.setDecimals(1)
        sp.setValue(v)
        lay.addRow(name, sp)
        spins.append(sp)
    bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok
                                    | QtWidgets.QDialogButtonBox.Cancel)
    bb.accepted.connect(dlg.accept)
    bb.rejected.connect(dlg.reject)
    lay.addRow(bb)
    if dlg.exec_() != QtWidgets.QDialog.Accepted:
        return None
    return spins[0].value(), spins[1].value()


def ask_csv_append(parent, name):
    """The CSV exists: 'append', 'replace' or None (cancel)."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Question)
    box.setWindowTitle("File exists")
    box.setText(f"{name} exists.")
    box.setInformativeText("Append this fit as a new row, or replace the file?")
    b_app = box.addButton("Append row", QtWidgets.QMessageBox.AcceptRole)
    b_rep = box.addButton("Replace", QtWidgets.QMessageBox.DestructiveRole)
    box.addButton(QtWidgets.QMessageBox.Cancel)
    box.setDefaultButton(b_app)
    box.exec_()
    if box.clickedButton() is b_app:
        return "append"
    if box.clickedButton() is b_rep:
        return "replace"
    return None


class QuickStartDialog(QtWidgets.QDialog):
    """Help > Quick Start: the six steps from a file to a CSV row (non-modal)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("mogviewer quick start")
        lay = QtWidgets.QVBoxLayout(self)
        self.browser = QtWidgets.QTextBrowser()
        self.browser.setHtml(QUICK_START)
        self.browser.setOpenExternalLinks(True)
        lay.addWidget(self.browser)
        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Close)
        bb.rejected.connect(self.close)
        lay.addWidget(bb)
        self.resize(560, 520)

    def text(self):
        return self.browser.toPlainText()


def show_conventions(parent):
    QtWidgets.QMessageBox.information(parent, "Conventions", CONVENTIONS)


def show_about(parent):
    from .. import __version__
    QtWidgets.QMessageBox.about(
        parent, "About mogviewer",
        f"<p><b>mogviewer {html.escape(str(__version__))}</b></p>"
        "<p>Fit galaxy images with mixtures of Gaussians (Hogg &amp; Lang 2013, "
        "PASP 125, 719).</p>")


__all__ = ["ask_psf_for_new_image", "ask_psfex_position", "ask_csv_append", "QuickStartDialog",
           "show_conventions", "show_about", "KEEP", "REMOVE", "REPLACE", "QtCore"]
