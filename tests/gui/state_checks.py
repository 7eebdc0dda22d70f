"""Checks of the Qt-free session state, run by test_state.py in a subprocess where PyQt5 and
pyqtgraph cannot be imported (so this file must import no Qt, and pytest does not collect it)."""

import sys
from types import SimpleNamespace

import numpy as np

from mogviewer.gui import engine
from mogviewer.gui.state import LIMITS, PERCENTILES, DisplayState, SessionState


class Recorder:
    def __init__(self, state):
        self.events = []
        for name in ("image_changed", "psf_changed", "config_changed", "params_changed",
                     "model_changed", "result_changed", "display_changed", "view_changed",
                     "busy_changed"):
            getattr(state, name).connect(lambda *a, n=name: self.events.append((n, a)))

    def names(self):
        return [n for n, _ in self.events]

    def clear(self):
        self.events.clear()


def sample_data():
    img, mask, _ = engine.sample_files()
    return img, engine.read_image(img, mask=str(mask), **engine.SAMPLE_OPTIONS)


def check_image_and_model():
    path, data = sample_data()
    s = SessionState()
    rec = Recorder(s)
    s.set_image(data, path=path, options={"mask": "m.fits"}, hdus=((1, "HDU 1"),))
    names = rec.names()
    assert names[0] == "image_changed", names
    assert ("view_changed", (None, "image")) in rec.events
    assert "params_changed" in names and "model_changed" in names, names
    assert s.images.model.shape == data.shape and np.isfinite(s.images.chi2)
    assert not s.images.model.flags.writeable          # an immutable snapshot
    assert s.source.hdus == ((1, "HDU 1"),) and s.image_options == {"mask": "m.fits"}
    assert abs(s.params.x - 128) < 5 and abs(s.params.y - 128) < 5
    return s


def check_display(s):
    rec = Recorder(s)
    good = s.data.image[~s.data.mask]
    seen = {}
    assert len(PERCENTILES) >= 4 and all(f"{p:g}%" in LIMITS for p in PERCENTILES)
    for lim in LIMITS[:-1]:
        s.set_display(s.display.replace(limits=lim))
        seen[lim] = s.levels
    assert seen["min/max"] == (good.min(), good.max()), seen["min/max"]
    his = [seen[f"{p:g}%"][1] for p in PERCENTILES]           # decreasing percentiles ...
    assert all(a > b for a, b in zip(his, his[1:])), his       # ... strictly lower tops
    # a p% preset clips (100 - p)/2 % at each end of the unmasked pixels (DS9's scale limits);
    # the same numpy percentile, so only rounding separates them
    lo, hi = np.percentile(good, [0.5, 99.5])
    assert np.allclose(seen["99%"], (lo, hi), rtol=1e-12, atol=0), (seen["99%"], lo, hi)
    assert rec.names().count("display_changed") == len(LIMITS) - 1   # each one a change
    # manual limits start from what is shown
    shown = s.levels
    s.set_display(s.display.replace(limits="manual"))
    assert s.display.manual_lo == shown[0] and s.display.manual_hi == shown[1]
    s.set_display(s.display.replace(manual_lo=-5.0, manual_hi=50.0))
    assert s.levels == (-5.0, 50.0)
    # unknown names (an old settings file) fall back to the defaults
    s.set_display(DisplayState(stretch="cubic", limits="42%", cmap="nope"))
    d = DisplayState()
    assert (s.display.stretch, s.display.limits, s.display.cmap) == (d.stretch, d.limits,
                                                                      d.cmap)
    s.set_display(s.display.replace(resid_nsigma=3.0))
    med = np.median(s.data.sigma[~s.data.mask])
    assert abs(s.resid_range - 3.0 * med) < 1e-9 * s.resid_range


def check_view(s):
    rec = Recorder(s)
    s.set_view(((10, 20), (30, 40)), origin="panels")
    assert s.view == ((10.0, 20.0), (30.0, 40.0))
    s.set_view(((10, 20), (30, 40)), origin="panels")         # no change: no signal
    s.set_view(None, origin="reset")
    assert rec.events == [("view_changed", (((10.0, 20.0), (30.0, 40.0)), "panels")),
                          ("view_changed", (None, "reset"))], rec.events


def check_stale_result_cleared(s):
    fake = SimpleNamespace(params=s.params, status="converged")
    for change in (lambda: s.set_profile("dev"), lambda: s.set_sky(not s.sky_on),
                   lambda: s.set_psf(None), lambda: s.set_params(s.params.replace(x=100.0))):
        s.set_result(fake)
        assert s.result is fake
        rec = Recorder(s)
        change()
        assert s.result is None and ("result_changed", (None,)) in rec.events, rec.events
    # undo of a profile change brings back the result that went with it
    s.set_profile("exp", result=fake)
    assert s.profile == "exp" and s.result is fake


def check_psf_from_other_image(s):
    from mogviewer.mixture import Mixture
    # a mixture file's PsfModel (no stamp): the problem uses the mixture as it is
    model = SimpleNamespace(mixture=Mixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]]),
                            stamp=None, n_components=1, source="mixture", notes=(),
                            quality=None)
    s.set_psf(model, path="psf.fits")
    assert not s.psf_from_other_image
    assert s.problem().psf_mode == "mixture" and s.psf_info["psf_k"] == 1
    s.set_image(s.data, path="other.fits")
    assert s.psf_from_other_image and s.psf_model is model
    s.set_psf(None)
    assert not s.psf_from_other_image


def check_throttle():
    path, data = sample_data()
    calls = []
    s = SessionState(schedule=lambda ms, fn: calls.append((ms, fn)), render_interval_ms=1e6)
    s.set_image(data, path=path)
    n0 = s.render_count
    p = s.params
    for dx in (1.0, 2.0, 3.0):                  # a drag: three moves within the interval
        s.set_params(p.replace(x=p.x + dx), origin="drag")
    assert s.render_count == n0, "the throttle rendered inside the interval"
    assert len(calls) == 1, calls                # one deferred render for all three
    calls[0][1]()
    assert s.render_count == n0 + 1 and s.images.params.x == p.x + 3.0   # the last one won
    calls[0][1]()                                # a stale timer renders nothing more
    assert s.render_count == n0 + 1
    s.set_params(p, origin="drag")
    s.request_render(immediate=True)             # immediate: now, and the timer is void
    assert s.render_count == n0 + 2 and s.images.params == p
    calls[-1][1]()
    assert s.render_count == n0 + 2


def check_first_render_at_once():
    import mogviewer.gui.state as st

    path, data = sample_data()
    calls = []
    real = st.time
    st.time = SimpleNamespace(perf_counter=lambda: 1.0)   # a clock 1 s after its origin
    try:                                                   # (a machine just booted)
        s = SessionState(schedule=lambda ms, fn: calls.append((ms, fn)), render_interval_ms=1e6)
        s.set_image(data, path=path)
    finally:
        st.time = real
    assert s.render_count > 0 and not calls, (s.render_count, calls)   # rendered, none deferred


def main():
    s = check_image_and_model()
    check_display(s)
    check_view(s)
    check_stale_result_cleared(s)
    check_psf_from_other_image(s)
    check_throttle()
    check_first_render_at_once()
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("PyQt5", "pyqtgraph"))
    assert not bad, bad
    print("state checks ok")


if __name__ == "__main__":
    main()
