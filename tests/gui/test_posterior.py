"""Issue 20 in the app: Sample posterior in the worker thread with live progress and Cancel,
the intervals beside the parameters, a corner plot, and the CLI's sample columns in the CSV."""

import csv
import time

import numpy as np
import pytest
from PyQt5 import QtWidgets

from mogviewer.export.columns import COLUMN_NAMES
from mogviewer.gui import engine

FIT_TIMEOUT_MS = 60000
SAMPLE_TIMEOUT_MS = 180000


def fit_now(qtbot, w):
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS) as blocker:
        assert w.commands.start_fit()
    return blocker.args[0]


@pytest.fixture
def fitted(window, qtbot):
    """The sample, fitted in mixture-only mode (a 256x256 render in ~0.3 ms instead of
    ~4 ms: the sampling tests then take seconds; the sampler does not care which)."""
    window.state.set_psf_mode("mixture")
    fit_now(qtbot, window)
    return window


def sample_now(qtbot, w, steps=100):
    with qtbot.waitSignal(w.commands.sample_finished, timeout=SAMPLE_TIMEOUT_MS) as blocker:
        assert w.commands.start_sample(steps)
    return blocker.args[0]


def test_sample_needs_a_fit(window):
    w = window
    assert not w.params.sample_button.isEnabled()
    assert w.commands.start_sample(100) is False
    assert not w.state.busy


def test_sample_intervals_corner_plot_and_csv(fitted, qtbot, tmp_path):
    w, s, p = fitted, fitted.state, fitted.params
    assert p.sample_button.isEnabled()
    res = s.result
    post = sample_now(qtbot, w)
    assert post is s.posterior and post.n_steps == 100
    assert set(post.names) == set(res.free)
    for name in post.names:
        lo, mid, hi = post.percentiles[name]
        text = p.post_labels[name].text()
        assert p.post_labels[name].isVisible() and text, name
        assert text == f"\u2212{mid - lo:.2g} +{hi - mid:.2g}"
        assert f"50 %: {mid:.6g}" in p.post_labels[name].toolTip()
        # the chains explore the fit's neighbourhood: the median within 5 formal errors of
        # the best fit (a wrong parameter mapping would put x's samples on y, etc.)
        err = res.errors()[name]
        best = getattr(res.params, name)
        d = (mid - best + 90) % 180 - 90 if name == "angle" else mid - best
        assert abs(d) < 5 * err, (name, mid, best, err)
    # the column is not cut at the dock's right edge (the dock widens for it)
    qtbot.wait(50)
    for lab in p.post_labels.values():
        if lab.text():
            right = lab.mapTo(w.params_scroll.viewport(), lab.rect().topRight()).x()
            assert right <= w.params_scroll.viewport().width(), lab.text()
    assert "sampling" not in p.status_label.text()       # the fit's status is back
    assert "converged" in p.status_label.text()
    assert "walkers" in p.posterior_label.text() and "flux_target" in p.posterior_label.text()
    # the log says which prior the intervals rest on (the library's default, ln flux and r_e)
    assert "prior: flat in ln(flux), ln(re)" in w.log_view.toPlainText()
    # the corner plot opens by itself and is drawn in the background
    dlg = w._posterior_dialog
    assert dlg is not None and dlg.isVisible()
    qtbot.waitUntil(lambda: dlg.corner_image is not None, timeout=60000)
    img = dlg.corner_image
    k = len(post.names)
    assert img.ndim == 3 and img.shape[2] == 4 and img.shape[:2] == (540, 540)
    assert k == 7                             # flux x y re q angle sky
    assert np.std(img[..., :3]) > 10          # something is drawn, not a blank canvas
    assert dlg.table.rowCount() == len(post.percentiles)
    # the dialog states the prior the samples were drawn under (it said "flat" whatever it was)
    assert "Priors: flat in ln(flux), ln(re)" in dlg.summary.text()

    # the CSV has the columns ``mogviewer fit --sample`` adds (mogviewer/export/table.py),
    # filled with this posterior's percentiles
    out = tmp_path / "fit.csv"
    assert w.commands.export_csv(str(out))
    with open(out, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        values = next(reader)
    row = {h.split(" ")[0].split("[")[0]: v for h, v in zip(header, values)}
    sample_cols = [c for c in COLUMN_NAMES if c.endswith(("_p16", "_p50", "_p84"))
                   or c.startswith("sample_")]
    assert sample_cols and all(c in row for c in sample_cols)
    assert float(row["re_pix_p50"]) == pytest.approx(post.percentiles["re"][1], rel=1e-9)
    assert float(row["q_p16"]) == pytest.approx(post.percentiles["q"][0], rel=1e-9)
    assert float(row["flux_p84"]) == pytest.approx(post.percentiles["flux_target"][2],
                                                   rel=1e-9)
    assert float(row["sample_acceptance"]) == pytest.approx(post.acceptance)

    # an edit makes the posterior stale: cleared with the result, the column hidden
    w.commands.edit_param("re", s.params.re * 1.1)
    assert s.posterior is None and not p.post_labels["re"].isVisible()
    assert not p.sample_button.isEnabled()


def test_sample_progress_live_and_cancel(fitted, qtbot):
    """The window answers while sampling (progress arrives, the event loop runs), and Cancel
    stops early keeping the samples so far, marked not converged."""
    w, s, p = fitted, fitted.state, fitted.params
    seen = []
    w.commands.sample_progressed.connect(seen.append)
    assert w.commands.start_sample(100000)
    assert s.busy and s.task == "sample"
    assert p.cancel_button.isEnabled() and not p.fit_button.isEnabled()
    assert not p.sample_button.isEnabled()
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=SAMPLE_TIMEOUT_MS)
    # the GUI thread is free: a timer fires within a fraction of a second
    t0 = time.perf_counter()
    qtbot.wait(50)
    assert time.perf_counter() - t0 < 1.0
    assert p.progress.maximum() == 100000 and p.progress.value() == seen[-1][0]
    with qtbot.waitSignal(w.commands.sample_finished, timeout=SAMPLE_TIMEOUT_MS) as blocker:
        p.cancel_button.click()
    post = blocker.args[0]
    assert post is not None and 100 <= post.n_steps < 100000 and not post.converged
    assert not s.busy and s.posterior is post
    assert "NOT converged" in p.posterior_label.text()
    # the corner plot of the stopped run is drawn too (its dialog opened by itself)
    dlg = w._posterior_dialog
    qtbot.waitUntil(lambda: dlg.corner_image is not None, timeout=120000)
    assert dlg.posterior is post


def test_sample_action_in_the_fit_menu(window):
    acts = [a.text() for m in window.menuBar().findChildren(QtWidgets.QMenu)
            for a in m.actions()]
    assert "&Sample Posterior" in acts
    assert engine.SAMPLE_STEPS[1] == 100      # the CLI's --sample lower bound


def test_the_sample_shortcut_uses_the_steps_box(fitted, qtbot):
    # New-user review, 2026-12-04: S (Fit > Sample Posterior) ran 100 steps while the box said
    # 1000: triggered(bool) handed start_sample a False, clamped to the minimum, 100.
    w, p = fitted, fitted.params
    p.steps_spin.setValue(1500)
    with qtbot.waitSignal(w.commands.sample_finished, timeout=SAMPLE_TIMEOUT_MS) as blocker:
        w.commands.q["sample"].trigger()
        qtbot.waitUntil(lambda: w.state.busy, timeout=5000)
        assert w.commands.sample_steps == 1500
        w.commands.cancel_fit()
    assert "Sampling the posterior: 1500 steps per walker" in w.log_view.toPlainText()
    assert blocker.args[0] is w.state.posterior


@pytest.mark.parametrize("names", [["flux", "x", "y", "re", "q", "angle", "sky"],
                                   ["flux", "x", "y", "re", "q", "angle", "n", "sky"]])
def test_corner_plot_labels_clear_of_the_tick_labels(names):
    # new-user trial: the axis labels ("x [px]", "angle [deg]") ran into the 45-degree tick
    # labels (e.g. "127.925"). Every outer panel's axis label is now clear of its tick labels
    # and inside the figure, for the 7 parameters of an exponential and the 8 of a Sérsic
    import types

    rng = np.random.default_rng(0)
    mu = dict(flux=2.097e6, x=127.925, y=128.092, re=175.8, q=0.7784, angle=109.23, n=2.65,
              sky=-3.986)
    sd = dict(flux=1.2e4, x=0.013, y=0.013, re=0.9, q=0.0018, angle=0.25, n=0.02, sky=0.05)
    m, s = (np.array([d[k] for k in names]) for d in (mu, sd))
    post = types.SimpleNamespace(names=names, samples=m + s * rng.normal(size=(1000, len(m))))
    fig = engine.corner_figure(post, truths=list(m))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    whole = fig.bbox
    k = len(names)
    axes = np.array(fig.axes).reshape(k, k)
    checked = 0
    for i in range(k):
        for ax, axis in ((axes[k - 1, i], axes[k - 1, i].xaxis), (axes[i, 0], axes[i, 0].yaxis)):
            if ax is axes[0, 0] and axis is ax.yaxis:
                continue        # the first histogram has no y label
            label = axis.label.get_window_extent(r)
            assert whole.x0 <= label.x0 and label.x1 <= whole.x1 and whole.y0 <= label.y0
            for t in axis.get_ticklabels():
                if t.get_text():
                    assert not label.overlaps(t.get_window_extent(r)), (names[i], t.get_text())
                    checked += 1
    assert checked >= 2 * k     # the tick labels were there to check
