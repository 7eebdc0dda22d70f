"""The session: the one state object every view renders and edits through setters.

It holds the image (:class:`~mogviewer.io.ImageData`), the PSF, the profile and M, the sky
switch, the fixed parameters, the current :class:`~mogviewer.fitting.GalaxyParams`, the last
:class:`~mogviewer.fitting.FitResult` and the model/residual/chi images, and says when any of
them changed. Views never talk to each other, only to the session.

Re-rendering is throttled: :meth:`Session.set_params` updates the parameters (and emits
``params_changed``) at once, but the model is recomputed at most once per
:attr:`Session.render_interval_ms`; the last request always wins, so the final state is always
rendered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PyQt5 import QtCore

from . import engine

PARAM_NAMES = ("flux", "x", "y", "re", "q", "angle", "n", "sky")


@dataclass(frozen=True)
class ModelImages:
    """Immutable snapshot of what the panels show (arrays are read-only)."""

    model: np.ndarray
    residual: np.ndarray
    chi: np.ndarray
    params: object
    chi2: float
    nu: int

    @property
    def chi2_nu(self):
        return self.chi2 / self.nu if self.nu > 0 else float("nan")


def _ro(a):
    a = np.asarray(a)
    a.setflags(write=False)
    return a


class Session(QtCore.QObject):
    """State of one fitting session (see the module docstring).

    Signals
    -------
    image_changed() : a new image (and mask/noise) was loaded.
    psf_changed() : the PSF changed (or was removed).
    config_changed() : profile, M, sky switch or fixed parameters changed.
    params_changed(params, origin) : the parameters changed; ``origin`` names who changed them
        (``'drag'``, ``'edit'``, ``'fit'``, ``'undo'``, ``'reset'``, ``'load'``), so a view can
        ignore its own echo.
    model_changed() : model, residual and chi were re-rendered (:attr:`images`).
    result_changed(result) : a fit result was set or cleared (None).
    busy_changed(bool) : a fit started / ended.
    logged(str) : a line for the log.
    """

    image_changed = QtCore.pyqtSignal()
    psf_changed = QtCore.pyqtSignal()
    config_changed = QtCore.pyqtSignal()
    params_changed = QtCore.pyqtSignal(object, str)
    model_changed = QtCore.pyqtSignal()
    result_changed = QtCore.pyqtSignal(object)
    busy_changed = QtCore.pyqtSignal(bool)
    logged = QtCore.pyqtSignal(str)

    def __init__(self, parent=None, *, render_interval_ms=30):
        super().__init__(parent)
        self.data = None             # ImageData
        self.image_path = None
        self.image_options = {}      # read_image keyword arguments used for the current image
        self.psf_model = None        # PsfModel (or None = no PSF)
        self.psf_path = None
        self.profile = "exp"
        self.M = engine.DEFAULT_M["exp"]
        self.sky_on = True
        self.fixed = frozenset()
        self.params = None           # GalaxyParams
        self.result = None           # FitResult
        self.images = None           # ModelImages
        self.busy = False
        self.render_count = 0
        self.last_render_ms = 0.0
        self._problem = None
        self.render_interval_ms = render_interval_ms
        self._render_timer = QtCore.QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._render_now)
        self._last_render_t = 0.0

    # ------------------------------------------------------------------ logging
    def log(self, text):
        self.logged.emit(str(text))

    # ------------------------------------------------------------------ image / psf
    def set_image(self, data, *, path=None, options=None, keep_params=False):
        """Use ``data`` (ImageData). Starts from image moments unless ``keep_params`` and the
        current parameters fit in the new image."""
        self.data = data
        self.image_path = None if path is None else str(path)
        self.image_options = dict(options or {})
        self._problem = None
        self.result = None
        self.log(f"Loaded image {data!r}")
        for note in data.notes:
            self.log(f"  {note}")
        self.image_changed.emit()
        self.result_changed.emit(None)
        ny, nx = data.shape
        if keep_params and self.params is not None and 0 <= self.params.x < nx \
                and 0 <= self.params.y < ny:
            self.request_render(immediate=True)
        else:
            self.reset_start(origin="load")

    def set_psf(self, model, *, path=None):
        """Use a ``PsfModel`` (or None for no PSF)."""
        self.psf_model = model
        self.psf_path = None if path is None else str(path)
        self._problem = None
        if model is None:
            self.log("No PSF: the model is not convolved (psf = None).")
        else:
            self.log(f"PSF from {path}: {model.n_components} Gaussian(s), source "
                     f"{model.source}")
            for note in getattr(model, "notes", ()):
                self.log(f"  {note}")
            q = getattr(model, "quality", None)
            if q is not None:
                self.log(f"  quality: {q.summary()}")
        self.psf_changed.emit()
        self.request_render(immediate=True)

    @property
    def psf_mixture(self):
        return engine.psf_mixture(self.psf_model)

    # ------------------------------------------------------------------ configuration
    def set_profile(self, profile, M=None):
        valid = engine.available_M(profile)
        if M is None or int(M) not in valid:
            M = engine.DEFAULT_M.get(profile, valid[-1])
            if M not in valid:
                M = valid[-1]
        if (profile, int(M)) == (self.profile, self.M):
            return
        self.profile, self.M = profile, int(M)
        self._problem = None
        b, ff = engine.profile_quality(self.profile, self.M,
                                       self.params.n if self.params is not None else None)
        self.log(f"Profile {profile}, M = {self.M} (badness {b:.3g}, flux fraction {ff:.4f})")
        self.config_changed.emit()
        self.request_render(immediate=True)

    def set_sky(self, on):
        on = bool(on)
        if on == self.sky_on:
            return
        self.sky_on = on
        self._problem = None
        self.log("Sky: fitted as a constant" if on else "Sky: off (model has no background)")
        self.config_changed.emit()
        self.request_render(immediate=True)

    def set_fixed(self, name, fixed):
        new = set(self.fixed)
        (new.add if fixed else new.discard)(name)
        new = frozenset(new)
        if new == self.fixed:
            return
        self.fixed = new
        self._problem = None
        self.config_changed.emit()

    @property
    def free(self):
        names = [p for p in PARAM_NAMES if p not in self.fixed]
        return tuple(p for p in names if (p != "sky" or self.sky_on)
                     and (p != "n" or self.profile == "ser"))

    def problem(self):
        """The FitProblem of the current state (cached until something changes)."""
        if self.data is None:
            return None
        if (self._problem is not None and self.profile == "ser" and self.params is not None
                and self._problem.n != self.params.n):
            self._problem = None  # a fixed Sérsic index is taken from the problem
        if self._problem is None:
            self._problem = engine.make_problem(
                self.data, psf=self.psf_mixture, profile=self.profile, M=self.M,
                free=self.free, sky=self.sky_on,
                n=self.params.n if self.params is not None else None)
        return self._problem

    # ------------------------------------------------------------------ parameters
    def set_params(self, params, *, origin="edit", clear_result=True):
        """Set the parameters; the model follows (throttled)."""
        if params is None or params == self.params:
            return
        self.params = params
        if clear_result and self.result is not None and origin in ("drag", "edit", "reset"):
            self.result = None
            self.result_changed.emit(None)
        self.params_changed.emit(params, origin)
        self.request_render()

    def update_param(self, name, value, *, origin="edit"):
        """Change one parameter (raises FitError for an invalid value)."""
        self.set_params(self.params.replace(**{name: float(value)}), origin=origin)

    def reset_start(self, *, origin="reset"):
        """Start parameters from image moments (:func:`mogviewer.fitting.initial_guess`)."""
        pr = self.problem()
        if pr is None:
            return
        try:
            start = engine.initial_guess(pr)
        except engine.FitError as exc:
            self.log(f"Cannot start from moments: {exc}")
            return
        self.log("Start from image moments: " + format_params(start))
        self.set_params(start, origin=origin)
        self.request_render(immediate=True)

    def set_result(self, result, *, params=None, origin="fit"):
        self.result = result
        self.result_changed.emit(result)
        if params is not None:
            self.set_params(params, origin=origin, clear_result=False)

    # ------------------------------------------------------------------ rendering
    def request_render(self, *, immediate=False):
        """Schedule a re-render: now if the last one is older than the interval, else when the
        interval has passed (coalescing every request in between)."""
        if self.data is None or self.params is None:
            return
        if immediate:
            self._render_timer.stop()
            self._render_now()
            return
        if self._render_timer.isActive():
            return
        since = (time.perf_counter() - self._last_render_t) * 1e3
        if since >= self.render_interval_ms:
            self._render_now()
        else:
            self._render_timer.start(max(1, int(self.render_interval_ms - since)))

    def _render_now(self):
        pr = self.problem()
        p = self.params
        if pr is None or p is None:
            return
        t0 = time.perf_counter()
        model = engine.model_image(pr, p)
        data = self.data
        resid = data.image - model
        good = pr.weights > 0
        chi = np.where(good, resid * np.sqrt(pr.weights), np.nan)
        resid = np.where(good, resid, np.nan)
        chi2 = float(np.nansum(chi * chi))
        nu = int(pr.n_good - len(pr.free))
        self.images = ModelImages(_ro(model), _ro(resid), _ro(chi), p, chi2, nu)
        self.render_count += 1
        self._last_render_t = time.perf_counter()
        self.last_render_ms = (self._last_render_t - t0) * 1e3
        self.model_changed.emit()

    # ------------------------------------------------------------------ busy
    def set_busy(self, busy):
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(busy)


def format_params(p):
    return (f"flux={p.flux:.6g}, x={p.x:.3f}, y={p.y:.3f}, re={p.re:.3f} px, q={p.q:.4f}, "
            f"angle={p.angle:.2f} deg, n={p.n:.3f}, sky={p.sky:.4g}")
