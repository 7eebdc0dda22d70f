"""Issue 18 in the app: the "joint (all bands)" switch fits every band of a DECaLS g/r/z file
at once (as ``mogviewer fit --bands``) in the worker thread; the band selector then shows each
band's model and residuals; the parameters panel shows the shared shape, each band's flux and
the colours; the CSV export writes the command line's multi-band row (pytest-qt, offscreen).

The data: a 64x64 cutout of the three bands of tests/data/real/pysersic-decals-dr9 (images,
ivar and their BAND keywords kept) about the target, and the three-band PSF file itself.
"""

import csv

import numpy as np
import pytest
from astropy.io import fits
from decals_data import DECALS_PSF, FIT_TIMEOUT_MS, PSF_TIMEOUT_MS, open_window, write_box

from mogviewer.gui import bands as gbands
from mogviewer.gui import engine
from mogviewer.gui.main_window import MainWindow

#: the target of the r band is at pixel (126.5, 130.5) (mogviewer fit --band r): 64x64 about it
X0, Y0, SIDE = 94, 98, 64


@pytest.fixture(scope="module")
def cutout(tmp_path_factory):
    """The g, r, z images and ivar of the file about the target (headers kept, WCS
    shifted)."""
    out = tmp_path_factory.mktemp("decals3") / "decals_grz_64.fits"
    return write_box(out, range(1, 7), X0, Y0, SIDE)


def open_joint(qtbot, settings, path):
    return open_window(qtbot, settings, path, DECALS_PSF)


def test_joint_switch_fits_all_bands_and_shows_each(qtbot, settings, errors, cutout, tmp_path):
    w = open_joint(qtbot, settings, cutout)
    c, s, p = w.commands, w.state, w.params
    assert p.joint_box.isEnabled() and not p.joint_box.isChecked()
    p.joint_box.setChecked(True)
    assert s.joint
    with qtbot.waitSignal(c.fit_finished, timeout=FIT_TIMEOUT_MS) as blk:
        assert c.start_fit()
        assert s.busy and not p.joint_box.isEnabled()     # the window is not frozen: a worker
    jf = blk.args[0]
    assert isinstance(jf, gbands.JointFit) and not errors
    res = jf.result
    assert res.bands == ("g", "r", "z") and res.status == "converged"
    # one shared shape, a flux per band: the scenes differ only in flux and sky
    t = [sc.sources[sc.target] for sc in res.scenes]
    assert len({(a.x, a.y, a.re, a.q, a.angle) for a in t}) == 1
    assert len({a.flux for a in t}) == 3
    # the panels show the shown band (g, the file's first) with its fitted flux
    assert s.data.band == "g" and s.params.flux == t[0].flux and s.params.re == t[0].re
    chi_g = np.array(s.images.chi)
    # the parameters panel: the ties, each band's flux with its error, the colours
    text = p.joint_label.text()
    assert (not p.joint_label.isHidden()) and "shared:" in text
    for b, a in zip(res.bands, t):
        assert f"{b}: flux = {a.flux / a.mixture().flux_fraction:.5g}" in text
    c1, e1 = res.colour(0, "g", "r")
    assert f"colour g-r = {c1:.3f} \u00b1 {e1:.3f}" in text
    log = w.log_view.toPlainText()
    assert "ties used: " + res.ties in log
    # the summary's 13 lines sit in the scrolled part, not in the fixed Fit group: at
    # 1280x720 the parameters' viewport kept a 130 px strip when they were in the Fit group
    w.resize(1280, 720)
    w.show()
    qtbot.wait(100)
    assert p.joint_group.isVisible() and not p.fit_group.isAncestorOf(p.joint_label)
    assert w.params_scroll.viewport().height() >= 250, w.params_scroll.viewport().height()
    # another band: its data, its PSF, its flux; its own residuals (per-band chi)
    with qtbot.waitSignal(c.psf_loaded, timeout=PSF_TIMEOUT_MS):
        p.hdu_combo.setCurrentIndex(2)
    qtbot.wait(50)
    assert s.data.band == "z" and s.psf_hdu == 2 and s.joint_fit is jf and not errors
    assert s.params.flux == t[2].flux and s.params.re == t[2].re
    ivar_z = engine.read_image(cutout, hdu=5).ivar
    model_z = np.array(s.images.model)
    expect = np.where(s.full_mask, np.nan, (s.data.image - model_z) * np.sqrt(ivar_z))
    np.testing.assert_allclose(s.images.chi, expect, rtol=1e-9, equal_nan=True)
    assert not np.allclose(np.nan_to_num(s.images.chi), np.nan_to_num(chi_g))
    # and its chi2 is the joint fit's chi2 of that band (same model, PSF and pixels)
    assert s.images.chi2 == pytest.approx(res.chi2_band[2], rel=1e-6)
    assert "\u25b6 z:" in p.joint_label.text()
    # the CSV: the command line's multi-band row (enabled; the one-band image block is not)
    assert c.export_actions["csv"].isEnabled() and not c.export_actions["imgblock"].isEnabled()
    out = tmp_path / "joint.csv"
    assert c.export_csv(out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    for b, a in zip(res.bands, t):
        assert float(row[f"flux_{b}"]) == pytest.approx(a.flux / a.mixture().flux_fraction,
                                                       rel=1e-12)
    assert float(row["g_r"]) == pytest.approx(c1, rel=1e-12)
    assert row["ties"] == res.ties and row["band"] == "g|r|z"
    from mogviewer.batch.band_task import band_columns
    with open(out, newline="") as f:
        assert tuple(next(csv.reader(f))) == tuple(band_columns(res.bands))
    # editing the target afterwards: the joint fit no longer describes it, and its status
    # and progress go with it (new-user review: "joint: converged" stayed after another image
    # was opened)
    assert p.progress.format().startswith("joint:")
    c.edit_param("re", s.params.re * 1.2)
    assert s.joint_fit is None and not (not p.joint_label.isHidden())
    assert p.progress.format() == "not fitted" and "joint" not in p.status_label.text()
    w.commands.shutdown()


def test_joint_fit_can_be_cancelled(qtbot, settings, errors, cutout):
    w = open_joint(qtbot, settings, cutout)
    c, s = w.commands, w.state
    s.set_joint(True)
    with qtbot.waitSignal(c.fit_finished, timeout=FIT_TIMEOUT_MS) as blk:
        assert c.start_fit()
        c.cancel_fit()
    jf = blk.args[0]
    # cancelled while the bands were read (None) or while fitting (status 'cancelled')
    assert jf is None or jf.result.status == "cancelled"
    assert not s.busy and not errors
    if jf is None:
        assert "Joint fit cancelled while the bands were read" in w.log_view.toPlainText()
        assert s.joint_fit is None
    w.commands.shutdown()


def test_joint_fit_refuses_a_psf_without_the_bands(qtbot, settings, errors, cutout, tmp_path):
    """A one-band PSF file: a joint fit needs each band's PSF; a clear message, no fit."""
    single = tmp_path / "psf_r.fits"
    with fits.open(DECALS_PSF) as h:
        fits.PrimaryHDU(h[1].data).writeto(single)
    w = open_window(qtbot, settings, cutout, single)
    c, s = w.commands, w.state
    s.set_joint(True)
    with qtbot.waitSignal(c.runner.failed, timeout=FIT_TIMEOUT_MS):
        assert c.start_fit()
    assert errors and "band g has no PSF" in errors[-1][1]
    assert not s.busy and s.joint_fit is None
    w.commands.shutdown()


def test_joint_switch_disabled_for_one_band(window):
    """The bundled sample has one image: no joint fit to offer."""
    assert not window.params.joint_box.isEnabled()


def test_joint_fit_without_psf_and_magnitudes(qtbot, settings, errors, cutout, tmp_path):
    """No PSF at all: as a one-band fit with no PSF, every band is integrated over the pixel
    (the log says so); with a zeropoint each band has its magnitude, in the panel and the CSV
    (DECaLS DR9 fluxes are nanomaggies: zeropoint 22.5)."""
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    c, p = w.commands, w.params
    assert c.open_image(cutout)
    assert c.set_zeropoint(22.5)
    p.joint_box.setChecked(True)
    jf_start = [w.state.params]
    with qtbot.waitSignal(c.fit_finished, timeout=FIT_TIMEOUT_MS) as blk:
        assert c.start_fit()
    jf = blk.args[0]
    assert jf.result.status == "converged" and not errors
    assert all(o.psf is None for o in jf.observations.values())
    assert "each band integrated over the pixel" in w.log_view.toPlainText()
    out = tmp_path / "joint.csv"
    assert c.export_csv(out)
    with open(out, newline="") as f:
        row = next(csv.DictReader(f))
    t = jf.result.scenes[0].sources[0]
    flux_g = float(row["flux_g"])
    assert float(row["mag_g"]) == pytest.approx(22.5 - 2.5 * np.log10(flux_g), abs=1e-9)
    assert f"mag = {float(row['mag_g']):.3f}" in p.joint_label.text()
    assert row["psf_mode"] == "" or row["psf_mode"] in ("pixel", "none")
    assert flux_g == pytest.approx(t.flux / t.mixture().flux_fraction, rel=1e-12)
    # one undo step goes back to the start and drops the joint fit
    start = jf_start[0]
    assert w.state.params != start
    c.undo_stack.undo()
    assert w.state.params == start and w.state.joint_fit is None
    assert p.joint_label.isHidden()
    w.commands.shutdown()
