"""Issue 14 in the app: a PSF image is used exactly (as the command line does), the mode and the
PSF's quality figures are shown and can be switched, and exports carry them (pytest-qt)."""

import csv
import json

import numpy as np
import pytest

from mogviewer import FitProblem, read_image, read_psf
from mogviewer.fitting import model_image
from mogviewer.gui import engine

PSF_TIMEOUT_MS = 60000
FIT_TIMEOUT_MS = 60000


def fit_now(qtbot, w):
    with qtbot.waitSignal(w.commands.fit_finished, timeout=FIT_TIMEOUT_MS) as blocker:
        assert w.commands.start_fit()
    return blocker.args[0]


def test_psf_image_is_used_exactly_like_the_command_line(window, sample_files):
    """The session's problem is the one mogviewer/batch/tasks.py builds for ``mogviewer fit
    --psf`` (``FitProblem.from_image_data(data, psf=read_psf(path))``, psf_mode 'auto'): the
    same mode, figures and model image."""
    s = window.state
    img, mask, psf_path = sample_files
    pr = s.problem()
    assert pr.psf_mode == "exact"
    data = read_image(str(img), mask=str(mask), **engine.SAMPLE_OPTIONS)
    cli = FitProblem.from_image_data(data, psf=read_psf(psf_path), profile=s.profile, M=s.M)
    assert cli.psf_mode == "exact"
    assert dict(pr.psf_info) == pytest.approx(dict(cli.psf_info))
    # the same renderer on the same inputs: equal to rounding
    np.testing.assert_allclose(model_image(pr, s.params), model_image(cli, s.params),
                               rtol=1e-12, atol=1e-12 * float(np.max(s.images.model)))
    np.testing.assert_allclose(s.images.model, model_image(cli, s.params), rtol=1e-12,
                               atol=1e-12 * float(np.max(s.images.model)))


def test_mode_and_figures_are_shown_and_switchable(window, qtbot):
    w, s, p = window, window.state, window.params
    info = s.psf_info
    assert info["psf_mode"] == "exact" and info["psf_k"] == s.psf_model.n_components
    text = p.psf_quality_label.text()
    assert "exact" in text and f"K = {info['psf_k']}" in text
    assert f"{info['psf_size_ratio']:.4f}" in text
    assert "exact" in w.psf_status.text()
    assert p.psf_mode_combo.isEnabled() and p.psf_mode_combo.currentData() == "exact"
    exact_model = np.array(s.images.model)
    fit_now(qtbot, w)
    assert s.result is not None
    p.psf_mode_combo.setCurrentIndex(p.psf_mode_combo.findData("mixture"))
    assert s.psf_mode == "mixture" and s.problem().psf_mode == "mixture"
    assert s.result is None                       # the fit belonged to the other model
    assert "mixture only" in p.psf_quality_label.text()
    assert "mixture only" in w.psf_status.text()
    # the sample's K = 5 mixture misses 0.06 % of the stamp's flux: the two models differ,
    # by much less than the model's peak (a real difference, not a different galaxy)
    s.set_params(s.params.replace(re=10.0), origin="edit")
    s.request_render(immediate=True)
    mix_model = np.array(s.images.model)
    s.set_psf_mode("exact")
    exact_model = np.array(s.images.model)
    diff = np.max(np.abs(exact_model - mix_model))
    assert 0 < diff < 0.01 * np.max(exact_model)


def test_mixture_file_stays_a_mixture(window, qtbot, tmp_path):
    """A JSON mixture has no stamp: the mode box is disabled, the problem is mixture-only."""
    w, s = window, window.state
    mix = s.psf_model.mixture
    path = tmp_path / "psf_mix.json"
    path.write_text(json.dumps({"amps": mix.amps.tolist(), "means": mix.means.tolist(),
                                "covs": mix.covs.tolist()}))
    with qtbot.waitSignal(w.commands.psf_loaded, timeout=PSF_TIMEOUT_MS):
        assert w.commands.open_psf(str(path))
    assert s.psf_model.stamp is None
    assert s.psf_mode == "exact"                  # the user's choice is kept for images ...
    assert s.problem().psf_mode == "mixture"      # ... but a mixture is used as it is
    assert not w.params.psf_mode_combo.isEnabled()
    assert "used as it is" in w.params.psf_quality_label.text()


def test_no_psf_is_the_pixel(window):
    w, s = window, window.state
    w.commands.remove_psf()
    assert s.problem().psf_mode == "pixel"
    assert "integrated over each pixel" in w.params.psf_quality_label.text()


@pytest.mark.parametrize("mode", ["exact", "mixture"])
def test_csv_carries_the_psf_columns(window, qtbot, tmp_path, mode):
    """The CSV row has the command line's PSF columns with this session's values."""
    w, s = window, window.state
    s.set_psf_mode(mode)
    fit_now(qtbot, w)
    out = tmp_path / "fit.csv"
    assert w.commands.export_csv(str(out))
    with open(out, newline="") as f:
        row = next(csv.DictReader(f))
    info = s.problem().psf_info
    key = {k.split(" ")[0].split("[")[0]: k for k in row}
    assert row[key["psf_mode"]] == mode
    assert int(row[key["psf_k"]]) == info["psf_k"]
    assert float(row[key["psf_size_ratio"]]) == pytest.approx(info["psf_size_ratio"])
    assert float(row[key["psf_res_flux"]]) == pytest.approx(info["psf_res_flux"])


def test_psf_mode_is_remembered(window, settings):
    from mogviewer.gui.main_window import MainWindow
    window.state.set_psf_mode("mixture")
    window.save_settings()
    w2 = MainWindow(settings=settings)
    try:
        assert w2.state.psf_mode == "mixture"
        assert w2.params.psf_mode_combo.currentData() == "mixture"
    finally:
        w2.close()
