"""The session state: the one object every view renders and edits through setters. No Qt.

It holds what is being fitted (the image and its HDU/band/zeropoint options, the PSF, the profile,
M and n, the sky switch, the fixed parameters, the current
:class:`~mogviewer.fitting.GalaxyParams`, the last :class:`~mogviewer.fitting.FitResult`, the
model/residual/chi images) and how it is shown (:class:`DisplayState`: stretch, limits preset,
colour map, residual range, mask; the view rectangle), and says when any of them changed through
`psygnal <https://psygnal.readthedocs.io>`_ signals named ``*_changed``. Views never talk to each
other, only to the state (glue's viewer ``state.py``, napari's ``Dims``/``QtDims``).

Everything here runs without a display: ``tests/gui/test_state.py`` drives it with PyQt5 and
pyqtgraph made unimportable.

Re-rendering is throttled: :meth:`SessionState.set_params` updates the parameters (and emits
``params_changed``) at once, but the model is recomputed at most once per
:attr:`SessionState.render_interval_ms` when a scheduler is given (the app passes a Qt timer);
the last request always wins, so the final state is always rendered. Without a scheduler every
request renders at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from psygnal import Signal

from . import engine

PARAM_NAMES = ("flux", "x", "y", "re", "q", "angle", "n", "sky")

#: Display stretches of data and model (astropy.visualization names).
STRETCHES = ("linear", "sqrt", "log", "asinh")
#: Display-limit presets of data and model: DS9's scale limits (min/max, zscale and percentiles
#: of the unmasked pixels) and manual.
PERCENTILES = (99.9, 99.5, 99.0, 98.0, 95.0, 90.0)
LIMITS = ("min/max", "zscale", *(f"{p:g}%" for p in PERCENTILES), "manual")
#: The PSF modes a user chooses between (:meth:`SessionState.set_psf_mode`).
PSF_MODES = ("exact", "mixture")
COLORMAPS = ("inferno", "viridis", "magma", "cividis", "gray", "CET-L1", "turbo")


@dataclass(frozen=True)
class DisplayState:
    """How data and model are shown (residual and chi: symmetric ``+- resid_nsigma``)."""

    stretch: str = "asinh"
    limits: str = "99.5%"
    cmap: str = "inferno"
    manual_lo: float = 0.0
    manual_hi: float = 1.0
    resid_nsigma: float = 5.0
    show_mask: bool = True

    def replace(self, **kw):
        return replace(self, **kw)

    def valid(self):
        """This state with unknown names replaced by the defaults (old settings files)."""
        d, dflt = self, DisplayState()
        if d.stretch not in STRETCHES:
            d = d.replace(stretch=dflt.stretch)
        if d.limits not in LIMITS:
            d = d.replace(limits=dflt.limits)
        if d.cmap not in COLORMAPS:
            d = d.replace(cmap=dflt.cmap)
        if not (np.isfinite(d.resid_nsigma) and d.resid_nsigma > 0):
            d = d.replace(resid_nsigma=dflt.resid_nsigma)
        return d


def display_levels(values, display):
    """``(lo, hi)`` display limits of ``values`` (1-D, the unmasked pixels) for ``display``."""
    from astropy.visualization import (
        ManualInterval,
        MinMaxInterval,
        PercentileInterval,
        ZScaleInterval,
    )
    lim = display.limits
    if lim == "min/max":
        interval = MinMaxInterval()
    elif lim == "zscale":
        interval = ZScaleInterval()
    elif lim == "manual":
        interval = ManualInterval(display.manual_lo, display.manual_hi)
    else:
        interval = PercentileInterval(float(lim.rstrip("%")))
    try:
        lo, hi = interval.get_limits(values)
    except Exception:  # noqa: BLE001 - degenerate data: fall back to min/max
        lo, hi = float(np.min(values)), float(np.max(values))
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


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


@dataclass(frozen=True)
class ImageSource:
    """Where the current image came from: the file, the read options (``hdu``, ``band``,
    ``zeropoint``, ``mask``, ``noise``, ...) and the file's image HDUs (``[(index, label)]``)
    a user can choose between."""

    path: str | None = None
    options: dict = field(default_factory=dict)
    hdus: tuple = ()


def _ro(a):
    a = np.asarray(a)
    a.setflags(write=False)
    return a


class SessionState:
    """State of one fitting session (see the module docstring).

    Signals
    -------
    image_changed() : a new image (or the same file with other HDU, mask, noise, zeropoint).
    psf_changed() : the PSF or its mode (exact / mixture) changed (or it was removed).
    config_changed() : profile, M, sky switch or fixed parameters changed.
    params_changed(params, origin) : the parameters changed; ``origin`` names who changed them
        (``'drag'``, ``'edit'``, ``'fit'``, ``'undo'``, ``'reset'``, ``'load'``), so a view can
        ignore its own echo.
    model_changed() : model, residual and chi were re-rendered (:attr:`images`).
    result_changed(result) : a fit result was set or cleared (None).
    display_changed(DisplayState) : stretch, limits, colours, residual range or mask changed
        (:attr:`levels` and :attr:`resid_range` are up to date when it is emitted).
    view_changed(view, origin) : the shown rectangle ``((x0, x1), (y0, y1))`` in pixel
        coordinates, or None for "the whole image, refitted whenever the panels resize".
    busy_changed(bool) : a fit or a posterior sampling started / ended (:attr:`task` says which).
    posterior_changed(posterior) : samples of the current result's posterior were set, or
        cleared (None) with the result they belong to.
    sources_changed(origin) : the other sources of the scene (:attr:`neighbours`) changed.
    mask_changed() : the user's mask (:attr:`user_mask`, drawn or from detection) changed.
    selection_changed(index) : the selected source (0 = the target, i >= 1 = neighbour i - 1,
        None).
    joint_changed() : the "joint (all bands)" switch (:attr:`joint`) or the joint fit of the
        file's bands (:attr:`joint_fit`) changed.
    logged(str) : a line for the log.
    """

    image_changed = Signal()
    psf_changed = Signal()
    config_changed = Signal()
    params_changed = Signal(object, str)
    model_changed = Signal()
    result_changed = Signal(object)
    display_changed = Signal(object)
    view_changed = Signal(object, str)
    busy_changed = Signal(bool)
    posterior_changed = Signal(object)
    sources_changed = Signal(str)
    mask_changed = Signal()
    selection_changed = Signal(object)
    joint_changed = Signal()
    logged = Signal(str)

    def __init__(self, *, schedule=None, render_interval_ms=30):
        """``schedule(delay_ms, fn)`` calls ``fn`` later (the app passes a Qt timer); None
        renders every request at once."""
        self.data = None             # ImageData
        self.source = ImageSource()
        self.psf_model = None        # PsfModel (or None = no PSF)
        self.psf_path = None
        self.psf_image_path = None   # the image that was open when the PSF was chosen
        self.psf_position = None     # (x, y) a varying PSFEx model was evaluated at
        self.psf_hdu = None          # the HDU of the PSF file (a multi-band file's band)
        self.model_path = None       # the model JSON last opened (an input: never overwritten)
        self.psf_mode = "exact"      # 'exact' (the stamp itself when there is one) / 'mixture'
        self.profile = "exp"
        self.M = engine.DEFAULT_M["exp"]
        self.sky_on = True
        self.fixed = frozenset()
        self.params = None           # GalaxyParams
        self.result = None           # FitResult
        self.posterior = None        # Posterior around self.result (sampling.sample)
        self.task = None             # what runs while busy: 'fit' or 'sample'
        self.neighbours = ()         # the other sources of the scene (PointSource / Galaxy)
        self.user_mask = None        # bool array: pixels the user masked (drawn, detected)
        self.selected = 0            # the selected source: 0 target, i neighbour i - 1
        self.joint = False           # Fit fits every band of the file jointly
        self.joint_fit = None        # bands.JointFit of the file's bands (or None)
        self._nb_image = None        # (key, image) of the neighbours' model
        self.images = None           # ModelImages
        self.display = DisplayState()
        self.levels = (0.0, 1.0)     # data/model display limits (image units)
        self.resid_range = 1.0       # residual panel: +- resid_nsigma x median sigma
        self.view = None
        self.busy = False
        self.render_count = 0
        self.last_render_ms = 0.0
        self.render_interval_ms = render_interval_ms
        self._schedule = schedule
        self._pending = False
        # perf_counter counts from an unspecified origin (the boot on Linux): with 0.0 here a
        # machine up for less than the interval deferred the first render
        self._last_render_t = -math.inf
        self._problem = None

    # ------------------------------------------------------------------ convenience
    @property
    def image_path(self):
        return self.source.path

    @property
    def image_options(self):
        return dict(self.source.options)

    def input_files(self):
        """Every file the session has read and still depends on (image, its mask, noise map
        and segmentation map, the PSF, the opened model JSON): an export must never overwrite
        one of them (:func:`mogviewer.export.files.check_output_path`'s ``inputs``)."""
        out = [self.source.path, self.psf_path, self.model_path]
        for key in ("mask", "noise", "segmap"):
            out.append(self.source.options.get(key))
        return tuple(str(p) for p in out if isinstance(p, (str, bytes)) or hasattr(
            p, "__fspath__"))

    @property
    def psf_mixture(self):
        return engine.psf_mixture(self.psf_model)

    @property
    def psf_from_other_image(self):
        """True when the PSF was chosen for another image than the one shown."""
        return (self.psf_model is not None and self.data is not None
                and self.psf_image_path != self.source.path)

    def log(self, text):
        self.logged.emit(str(text))

    # ------------------------------------------------------------------ image / psf
    def set_image(self, data, *, path=None, options=None, hdus=(), keep_params=False):
        """Use ``data`` (ImageData). Starts from image moments unless ``keep_params`` and the
        current parameters fit in the new image. Clears the result (it belongs to the old
        image) and shows the whole new image."""
        same_shape = self.data is not None and self.data.shape == data.shape
        if self.joint_fit is not None and (path is None or str(path) != self.joint_fit.path
                                           or not keep_params):
            self.set_joint_fit(None)     # another file: the joint fit is not about it
        self.data = data
        self.source = ImageSource(None if path is None else str(path), dict(options or {}),
                                  tuple(hdus))
        if not (keep_params and same_shape):
            # another image: its sources and mask are not this one's
            self.neighbours, self.user_mask, self.selected = (), None, 0
            self.sources_changed.emit("load")
            self.mask_changed.emit()
        self._nb_image = None
        self._problem = None
        self.images = None
        self.log(f"Loaded image {data!r}")
        for note in data.notes:
            self.log(f"  {note}")
        self._update_levels()
        self.view = None
        self.image_changed.emit()
        self.view_changed.emit(None, "image")
        self.clear_result()
        ny, nx = data.shape
        if keep_params and self.params is not None and 0 <= self.params.x < nx \
                and 0 <= self.params.y < ny:
            self.request_render(immediate=True)
        else:
            if self.params is not None and self.profile == "ser" and "n" not in self.fixed:
                # a free index starts on another image where the command line starts it, not
                # at the last image's fit (n = 8, at the bound, after a fit to noise); a fixed
                # one is the user's choice and stays
                self.set_params(self.params.replace(n=engine.SERSIC_N_START), origin="load")
            self.reset_start(origin="load")

    def set_psf(self, model, *, path=None, position=None, hdu=None):
        """Use a ``PsfModel`` (or None for no PSF). The fit result no longer matches the model
        and is cleared."""
        self.psf_model = model
        self.psf_path = None if model is None or path is None else str(path)
        self.psf_image_path = None if model is None else self.source.path
        self.psf_position = None if model is None else position
        self.psf_hdu = None if model is None else hdu
        self._problem = None
        if model is None:
            self.log("No PSF: the model is integrated over each pixel (psf = None).")
        else:
            at = "" if position is None else f" at ({position[0]:g}, {position[1]:g})"
            self.log(f"PSF from {path}{at}: {model.n_components} Gaussian(s), source "
                     f"{model.source}")
            for note in getattr(model, "notes", ()):
                self.log(f"  {note}")
            q = getattr(model, "quality", None)
            if q is not None:
                self.log(f"  quality: {q.summary()}")
        self.psf_changed.emit()
        self.clear_result()
        self.request_render(immediate=True)

    # ------------------------------------------------------------------ scene
    def set_neighbours(self, neighbours, *, origin="edit"):
        """The other sources of the scene (a tuple of PointSource / Galaxy). They are
        modelled with the target: the target is fitted to the data minus their model, and
        Fit fits them all together (:func:`.engine.run_scene_fit`)."""
        neighbours = tuple(neighbours)
        if neighbours == self.neighbours:
            return
        self.neighbours = neighbours
        self._problem = None
        if self.selected is not None and self.selected > len(neighbours):
            self.selected = 0
            self.selection_changed.emit(0)
        self.sources_changed.emit(origin)
        if origin != "fit":
            self.clear_result()
        self.request_render(immediate=origin != "drag")

    def set_joint(self, on):
        """The "joint (all bands)" switch: Fit fits every band of the file at once."""
        on = bool(on)
        if on != self.joint:
            self.joint = on
            self.log("Joint fit of all bands: on (shared centre, shape and n; a flux and a "
                     "sky per band)" if on else "Joint fit of all bands: off")
            self.joint_changed.emit()

    def set_joint_fit(self, joint_fit):
        """The joint fit of the file's bands (:class:`.bands.JointFit`), or None."""
        if joint_fit is None and self.joint_fit is None:
            return
        self.joint_fit = joint_fit
        self.joint_changed.emit()

    def select(self, index):
        if index != self.selected:
            self.selected = index
            self.selection_changed.emit(index)

    def set_user_mask(self, mask):
        """Pixels the user excludes from the fit (bool array of the image's shape, or None),
        on top of the image's own mask."""
        if mask is not None:
            mask = np.asarray(mask, bool)
            if self.data is None or mask.shape != self.data.shape:
                raise ValueError("the mask must have the image's shape")
            if not mask.any():
                mask = None
        old = self.user_mask
        if (old is None and mask is None) or (old is not None and mask is not None
                                              and np.array_equal(old, mask)):
            return
        self.user_mask = None if mask is None else _ro(mask.copy())
        self._problem = None
        n = 0 if mask is None else int(mask.sum())
        self.log(f"User mask: {n} pixels")
        self.mask_changed.emit()
        self.clear_result()
        self.request_render(immediate=True)

    @property
    def full_mask(self):
        """The image's mask and the user's together."""
        if self.data is None:
            return None
        return self.data.mask if self.user_mask is None else (self.data.mask | self.user_mask)

    def neighbours_image(self, neighbours=None):
        """The model of the other sources (cached per sources, PSF and PSF mode)."""
        nb = self.neighbours if neighbours is None else tuple(neighbours)
        key = (nb, id(self.psf_model), self.psf_mode, id(self.data))
        if self._nb_image is not None and self._nb_image[0] == key:
            return self._nb_image[1]
        img = _ro(engine.neighbours_image(self.data, self.psf_model, nb,
                                          psf_mode=self.psf_mode))
        if neighbours is None:
            self._nb_image = (key, img)
        return img

    def problem_for(self, neighbours):
        """The session's FitProblem with ``neighbours`` subtracted from the data (for the
        worker: builds a new problem, touches no state)."""
        return self._make_problem(tuple(neighbours))

    def _make_problem(self, neighbours):
        image = None
        if neighbours:
            nb_img = (self.neighbours_image() if neighbours == self.neighbours
                      else engine.neighbours_image(self.data, self.psf_model, neighbours,
                                                   psf_mode=self.psf_mode))
            image = self.data.image - nb_img
        return engine.make_problem(
            self.data, psf=self.psf_model, psf_mode=self.psf_mode,
            profile=self.profile, M=self.M, free=self.free, sky=self.sky_on,
            n=self.params.n if self.params is not None else None,
            image=image, extra_mask=self.user_mask)

    def set_psf_mode(self, mode):
        """``'exact'``: a PSF image is used exactly (the model is the galaxy convolved with the
        stamp itself: its mixture plus the residual by FFT), as the command line does by
        default; ``'mixture'``: its Gaussian mixture only (Hogg & Lang's model; faster, and a
        poor mixture sets PSF_APPROX). A mixture file (Tractor, JSON) is always used as it is.
        The fit result no longer matches the model and is cleared."""
        if mode not in PSF_MODES:
            raise ValueError(f"psf mode must be one of {PSF_MODES}, not {mode!r}")
        if mode == self.psf_mode:
            return
        self.psf_mode = mode
        self._problem = None
        self.log("PSF mode: " + ("exact (the PSF image itself)" if mode == "exact"
                                 else "mixture only (the PSF's Gaussian mixture)"))
        self.psf_changed.emit()
        self.clear_result()
        self.request_render(immediate=True)

    @property
    def psf_info(self):
        """The PSF's figures of the current problem (:func:`mogviewer.fitting.problem.
        psf_quality_columns`: ``psf_k``, ``psf_mode`` ('exact', 'mixture' or 'pixel'),
        ``psf_size_ratio``, ``psf_res_flux``, ``psf_res_peak``), or None without an image."""
        try:
            pr = self.problem()
        except (engine.FitError, ValueError):
            return None
        return None if pr is None else dict(pr.psf_info)

    def adopt_psf(self):
        """The user says the PSF in use is also the current image's (no longer "from another
        image")."""
        if self.psf_model is not None and self.psf_image_path != self.source.path:
            self.psf_image_path = self.source.path
            self.psf_changed.emit()

    # ------------------------------------------------------------------ configuration
    def set_profile(self, profile, M=None, *, result=None):
        """Profile and M (M falls back to the profile's default). A changed model clears the
        result unless ``result`` is given (undo restores the result that went with it)."""
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
        self.set_joint_fit(None)
        self.config_changed.emit()
        if result is not None:
            self.set_result(result)
        else:
            self.clear_result()
        self.request_render(immediate=True)

    def set_sky(self, on):
        on = bool(on)
        if on == self.sky_on:
            return
        self.sky_on = on
        self._problem = None
        self.log("Sky: fitted as a constant" if on else "Sky: off (model has no background)")
        self.set_joint_fit(None)
        self.config_changed.emit()
        self.clear_result()
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
            self._problem = self._make_problem(self.neighbours)
        return self._problem

    # ------------------------------------------------------------------ parameters
    def set_params(self, params, *, origin="edit", clear_result=True):
        """Set the parameters; the model follows (throttled)."""
        if params is None or params == self.params:
            return
        self.params = params
        if clear_result and origin in ("drag", "edit", "reset"):
            self.clear_result()
        if origin != "fit":
            self.set_joint_fit(None)   # the joint fit of the bands no longer describes them
        self.params_changed.emit(params, origin)
        self.request_render()

    def reset_start(self, *, origin="reset"):
        """Start parameters from image moments (:func:`mogviewer.fitting.initial_guess`)."""
        pr = self.problem()
        if pr is None:
            return
        try:
            start = engine.initial_guess(pr)
        except engine.FitError as exc:
            self.log(f"Cannot start from moments: {exc}")
            ny, nx = pr.shape
            p = self.params
            if p is None or not (-0.5 <= p.x <= nx - 0.5 and -0.5 <= p.y <= ny - 0.5):
                # not the previous image's start (off this image, its chi^2 still shown):
                # a neutral one at the centre, drawn on this image
                p = engine.GalaxyParams(flux=0.0, x=(nx - 1) / 2, y=(ny - 1) / 2,
                                        re=max(1.0, min(nx, ny) / 8), q=1.0, angle=0.0,
                                        n=pr.n if pr.n is not None else 1.0)
                self.log("Start placed at the image centre with flux 0: " + format_params(p))
                self.set_params(p, origin=origin)
            self.request_render(immediate=True)
            return
        self.log("Start from image moments: " + format_params(start))
        self.set_params(start, origin=origin)
        self.request_render(immediate=True)

    def set_result(self, result, *, params=None, origin="fit"):
        if result is not self.result:
            self.set_posterior(None)      # it described the previous result
            self.result = result
            self.result_changed.emit(result)
        if params is not None:
            self.set_params(params, origin=origin, clear_result=False)

    def set_posterior(self, posterior):
        """Samples of the posterior around the current result (None clears them)."""
        if posterior is None and self.posterior is None:
            return
        self.posterior = posterior
        self.posterior_changed.emit(posterior)

    def clear_result(self):
        self.set_posterior(None)
        if self.result is not None:
            self.result = None
            self.result_changed.emit(None)

    # ------------------------------------------------------------------ display
    def set_display(self, display):
        """Stretch, limits, colours, residual range, mask (a :class:`DisplayState`)."""
        display = display.valid()
        if display == self.display:
            return
        if display.limits == "manual" and self.display.limits != "manual" \
                and (display.manual_lo, display.manual_hi) == (self.display.manual_lo,
                                                               self.display.manual_hi):
            # manual limits start from what is shown
            display = display.replace(manual_lo=self.levels[0], manual_hi=self.levels[1])
        self.display = display
        self._update_levels()
        self.display_changed.emit(display)

    def _update_levels(self):
        data = self.data
        if data is None:
            return
        good = ~data.mask
        vals = data.image[good] if good.any() else data.image.ravel()
        self.levels = display_levels(vals, self.display)
        sig = data.sigma[good & np.isfinite(data.sigma)]
        med = float(np.median(sig)) if sig.size else 1.0
        self.resid_range = max(self.display.resid_nsigma * med, 1e-30)

    def set_view(self, view, *, origin="edit"):
        """The shown rectangle ``((x0, x1), (y0, y1))``, or None for the whole image."""
        if view is not None:
            (x0, x1), (y0, y1) = view
            view = ((float(x0), float(x1)), (float(y0), float(y1)))
        if view == self.view:
            return
        self.view = view
        self.view_changed.emit(view, origin)

    # ------------------------------------------------------------------ rendering
    def request_render(self, *, immediate=False):
        """Schedule a re-render: now if the last one is older than the interval, else when the
        interval has passed (coalescing every request in between)."""
        if self.data is None or self.params is None:
            return
        if immediate or self._schedule is None or self.render_interval_ms <= 0:
            self._pending = False
            self._render_now()
            return
        if self._pending:
            return
        since = (time.perf_counter() - self._last_render_t) * 1e3
        if since >= self.render_interval_ms:
            self._render_now()
        else:
            self._pending = True
            self._schedule(max(1, int(self.render_interval_ms - since)), self._render_later)

    def _render_later(self):
        if self._pending:
            self._pending = False
            self._render_now()

    def _render_now(self):
        pr = self.problem()
        p = self.params
        if pr is None or p is None:
            return
        t0 = time.perf_counter()
        model = engine.model_image(pr, p)
        if self.neighbours:
            model = model + self.neighbours_image()
        resid = self.data.image - model
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
    def set_busy(self, busy, task="fit"):
        self.task = task if busy else None
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(busy)


def count(n, noun):
    """``'1 evaluation'``, ``'5 evaluations'``: a count for the log and the labels."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_params(p):
    return (f"flux={p.flux:.6g}, x={p.x:.3f}, y={p.y:.3f}, re={p.re:.3f} px, q={p.q:.4f}, "
            f"angle={p.angle:.2f} deg, n={p.n:.3f}, sky={p.sky:.4g}")
