"""What the user can do: open, fit, cancel, edit, undo (exports in :mod:`.export_actions`, the
scene and the posterior in :mod:`.scene_actions`, mixed in). The window only lays them out.

:class:`Actions` owns the undo stack, the fit runner, the background tasks (PSF fits) and the
``QAction`` objects of the menus; it reads files through :mod:`.engine`, changes the
:class:`~mogviewer.gui.state.SessionState` through its setters (edits as undoable commands) and
never touches a view: views follow the state's signals. Questions to the user go through
:mod:`.dialogs` (replaceable in tests); errors are a dialog and a log line, never a crash.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets

from . import bands as gbands
from . import dialogs, engine
from .export_actions import ExportActions
from .scene_actions import PosteriorActions, SceneActions
from .state import count, format_params
from .undo import SetParamsCommand, SetProfileCommand, SetSceneCommand
from .worker import FitRunner, Tasks

MAX_RECENT = 10

#: What the worker of a joint fit returns when it was cancelled before fitting.
_JOINT_CANCELLED = object()

FILE_FILTERS = {
    "image": "Images (*.fits *.fit *.fts *.fits.gz *.fz *.npy);;All files (*)",
    "psf": "PSF (*.fits *.fit *.fits.gz *.npy *.json *.psf);;All files (*)",
    "noise": "Noise maps (*.fits *.fit *.fits.gz *.npy);;All files (*)",
    "mask": "Masks (*.fits *.fit *.fits.gz *.npy);;All files (*)",
    "model": "Model JSON (*.json);;All files (*)",
}

#: Options of ``read_image`` that belong to one HDU of a file (dropped when another is chosen).
_HDU_OPTIONS = ("hdu", "band")


def _redo_shortcuts():
    """Ctrl+Shift+Z and Ctrl+Y plus the platform's Redo keys, each once: a key sequence given
    twice to one action is ambiguous in Qt and then does nothing."""
    seqs = list(QtGui.QKeySequence.keyBindings(QtGui.QKeySequence.Redo))
    for extra in ("Ctrl+Shift+Z", "Ctrl+Y"):
        seqs.append(QtGui.QKeySequence(extra))
    out, seen = [], set()
    for s in seqs:
        key = s.toString(QtGui.QKeySequence.PortableText)
        if key and key not in seen:
            seen.add(key)
            out.append(s)
    return out


class Actions(SceneActions, PosteriorActions, ExportActions, QtCore.QObject):
    """The app's verbs (see the module docstring).

    Signals
    -------
    fit_finished(object) : a fit ended (after the state was updated): its FitResult, or the
        :class:`.bands.JointFit` of a joint fit of all bands (None: a joint fit cancelled
        before it started fitting).
    fit_progressed(FitProgress) : one per optimiser iteration.
    sample_finished(Posterior) : a posterior sampling ended (complete or cancelled), or None
        when it failed.
    sample_progressed(tuple) : ``(step, n_steps, elapsed_s)`` every 50 steps.
    detect_finished(int) : source detection ended (neighbours modelled, -1 on failure).
    psf_loaded(object) : a PSF finished loading (PsfModel) or failed / was declined (None).
    status_message(str, int) : a transient message for the status bar (text, milliseconds).
    recent_changed() : the recent-files list changed.
    """

    fit_finished = QtCore.pyqtSignal(object)
    fit_progressed = QtCore.pyqtSignal(object)
    sample_finished = QtCore.pyqtSignal(object)
    detect_finished = QtCore.pyqtSignal(int)
    sample_progressed = QtCore.pyqtSignal(object)
    psf_loaded = QtCore.pyqtSignal(object)
    status_message = QtCore.pyqtSignal(str, int)
    recent_changed = QtCore.pyqtSignal()

    def __init__(self, window, state, settings):
        super().__init__(window)
        self.window = window
        self.state = state
        self.settings = settings
        self.tasks = Tasks(self)
        self.runner = FitRunner(self)
        self.sampler = FitRunner(self)       # posterior sampling: its own thread, same rules
        self.sample_steps = engine.SAMPLE_STEPS[0]
        self.undo_stack = QtWidgets.QUndoStack(self)
        self.n_errors = 0
        self.last_error = None
        self._drag_start = None
        self._fit_start = None
        self._edits_since_load = 0
        self.q = {}
        self._build_qactions()
        self.runner.progressed.connect(self._on_fit_progress)
        self.runner.finished.connect(self._on_fit_finished)
        self.runner.failed.connect(self._on_fit_failed)
        self.sampler.progressed.connect(self._on_sample_progress)
        self.sampler.finished.connect(self._on_sample_finished)
        self.sampler.failed.connect(self._on_sample_failed)
        self.undo_stack.indexChanged.connect(self.update_enabled)
        state.result_changed.connect(self.update_enabled)
        state.params_changed.connect(self.update_enabled)
        state.mask_changed.connect(self.update_enabled)
        state.joint_changed.connect(self.update_enabled)
        state.image_changed.connect(self._on_image_changed)
        state.busy_changed.connect(self._on_busy)

    # ================================================================== QActions
    def _make(self, key, text, slot, shortcut=None, tip=None, checkable=False):
        a = QtWidgets.QAction(text, self.window)
        if isinstance(shortcut, (list, tuple)):
            a.setShortcuts([QtGui.QKeySequence(s) for s in shortcut])
        elif shortcut is not None:
            a.setShortcut(QtGui.QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        self.q[key] = a
        return a

    def _build_qactions(self):
        m = self._make
        m("open_image", "Open &Image\u2026", lambda: self.ask_open("image"),
          QtGui.QKeySequence.Open, "Open a galaxy cutout (FITS or .npy)")
        m("open_psf", "Open &PSF\u2026", lambda: self.ask_open("psf"), "Ctrl+P",
          "Open a PSF image, PSFEx file or mixture")
        m("remove_psf", "&Remove PSF", self.remove_psf, None,
          "Fit without a PSF (the model is integrated over each pixel: the pixel is the PSF)")
        m("open_noise", "Open &Noise Map\u2026", lambda: self.ask_open("noise"), None,
          "Open a 1-sigma noise map for the current image")
        m("open_mask", "Open &Mask\u2026", lambda: self.ask_open("mask"), None,
          "Open a mask (nonzero = bad) for the current image")
        m("open_model", "Open Model (&JSON)\u2026", lambda: self.ask_open("model"), None,
          "Load parameters saved with Export > Model JSON")
        m("open_sample", "Open &Sample Galaxy", lambda: self.open_sample(), None,
          engine.SAMPLE_DESCRIPTION)
        m("export_csv", "Parameters (&CSV)\u2026", self.ask_export_csv, "Ctrl+E",
          "Write the fit as one CSV row (append to a file on request)")
        m("export_imgblock", "&Image Block (FITS)\u2026", lambda: self.ask_export("imgblock"),
          None, "Data, model, residual, chi and mask as FITS extensions")
        m("export_region", "DS9 &Region\u2026", lambda: self.ask_export("region"), None,
          "The ellipse as a DS9 region file")
        m("export_json", "Model &JSON\u2026", lambda: self.ask_export("json"), None,
          "Parameters, profile and PSF, re-loadable")
        m("export_png", "Panels as &PNG\u2026", lambda: self.ask_export("png"), None,
          "The four panels rendered from the arrays, with colour bars (no handles)")
        m("export_mask", "&Mask Regions (DS9)\u2026", lambda: self.ask_export("mask"), None,
          "Your mask (drawn, imported or detected) as DS9 boxes, exactly")
        m("open_mask_regions", "Open Mask &Regions (DS9)\u2026", self.ask_import_mask_regions,
          None, "Mask the pixels inside the regions of a DS9 file")
        m("quit", "&Quit", self.window.close, QtGui.QKeySequence.Quit)
        undo = self.undo_stack.createUndoAction(self.window, "&Undo")
        undo.setShortcut(QtGui.QKeySequence.Undo)
        redo = self.undo_stack.createRedoAction(self.window, "&Redo")
        redo.setShortcuts(_redo_shortcuts())
        self.q["undo"], self.q["redo"] = undo, redo
        m("fit", "&Fit", self.start_fit, ["F", "Ctrl+Return"],
          "Fit the model (in the background)")
        # a lambda: triggered(bool) would hand start_sample a False for its step count
        m("sample", "&Sample Posterior", lambda: self.start_sample(), "S",
          "Sample the posterior around the fit (emcee, in the background): intervals and a "
          "corner plot")
        m("cancel", "&Cancel Fit", self.cancel_fit, "Esc",
          "Stop the running fit or sampling (keeps what was done)")
        self.q["cancel"].setEnabled(False)
        m("reset", "&Start from Moments", self.reset_start, "Ctrl+R",
          "Reset the start parameters to the image moments")
        self.export_actions = {k[7:]: a for k, a in self.q.items() if k.startswith("export_")}

    # ================================================================== errors
    def show_error(self, title, text, *, details=None):
        """A modal error dialog (and a log line); the app carries on with what it had."""
        self.n_errors += 1
        self.last_error = (title, text)
        self.state.log(f"ERROR {title}: {text}")
        if details:
            self.state.log(details)
        QtWidgets.QMessageBox.critical(self.window, title, text)

    def report_exception(self, exc_type, exc, tb):
        """Show an exception that reached the event loop (installed as excepthook): a
        mogviewer error (:class:`~mogviewer.errors.MogviewerError`) as its plain message, with
        no traceback; anything else as "Unexpected error", its traceback in the log."""
        if engine.is_user_error(exc):
            self.show_error("Cannot do that", str(exc))
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        self.show_error("Unexpected error",
                        f"{exc_type.__name__}: {exc}\n\nThe app keeps running; details are in "
                        "the log.", details=text)

    def _status(self, text, ms=8000):
        self.status_message.emit(text, ms)

    # ================================================================== settings helpers
    def setting(self, key, default, kind):
        v = self.settings.value(key, default)
        if v is None:
            return default
        try:
            if kind is bool:
                return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            return kind(v)
        except (TypeError, ValueError):
            return default

    # ================================================================== recent files
    def recent_files(self):
        v = self.settings.value("recent", [])
        if isinstance(v, str):
            v = [v]
        out = []
        for item in v or []:
            kind, _, path = str(item).partition("\t")
            if path:
                out.append((kind, path))
        return out

    def add_recent(self, kind, path):
        path = str(Path(path).resolve())
        items = [(k, p) for k, p in self.recent_files() if p != path]
        items.insert(0, (kind, path))
        self.settings.setValue("recent", [f"{k}\t{p}" for k, p in items[:MAX_RECENT]])
        self.recent_changed.emit()

    def clear_recent(self):
        self.settings.setValue("recent", [])
        self.recent_changed.emit()

    # ================================================================== opening files
    def ask_open(self, kind):
        start = self.setting(f"dirs/{kind}", "", str) or self.setting("dirs/last", "", str)
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self.window, {"image": "Open image", "psf": "Open PSF", "noise": "Open noise map",
                          "mask": "Open mask", "model": "Open model"}[kind], start,
            FILE_FILTERS[kind])
        if path:
            self.settings.setValue(f"dirs/{kind}", str(Path(path).parent))
            self.settings.setValue("dirs/last", str(Path(path).parent))
            self.open_file(path, kind=kind)

    def open_file(self, path, *, kind=None):
        """Open ``path`` as ``kind`` ('image', 'psf', 'noise', 'mask', 'model'), or route it by
        its content when ``kind`` is None. Returns True on success (False after a dialog)."""
        if kind is None:
            cur = None if self.state.data is None else self.state.data.shape
            kind = engine.classify_file(path, current_shape=cur)
            self.state.log(f"{Path(path).name}: recognised as {kind}")
        if kind in ("noise", "mask") and self.state.data is None:
            self.show_error(f"Cannot open {kind}", f"Open an image before its {kind}.")
            return False
        return {"image": self.open_image, "psf": self.open_psf, "noise": self.open_noise,
                "mask": self.open_mask, "model": self.open_model}[kind](path)

    def open_image(self, path, *, options=None, keep_params=False, kind_label="image",
                   ask_psf=True):
        """Read an image; a new file (not the same file with another HDU, mask, noise or
        zeropoint) with a PSF in use asks whether that PSF is also the new image's."""
        options = dict(options or {})
        keep = ("The current image is unchanged." if self.state.data is not None
                else "No image is open: use File > Open Image or File > Open Sample Galaxy.")
        try:
            data = engine.read_image(path, **options)
        except engine.READ_ERRORS as exc:
            self.show_error(f"Cannot open {kind_label}",
                            f"{Path(str(path)).name} could not be read:\n\n{exc}\n\n{keep}")
            return False
        s = self.state
        try:   # an image that cannot be fitted at all (too small, nothing usable) is refused
            engine.make_problem(data, psf=None, profile=s.profile, M=s.M, free=s.free,
                                sky=s.sky_on, n=None if s.params is None else s.params.n)
        except (engine.FitError, ValueError) as exc:
            self.show_error(f"Cannot open {kind_label}",
                            f"{Path(str(path)).name} cannot be fitted:\n\n{exc}\n\n{keep}")
            return False
        same_file = self.state.image_path is not None and path is not None and \
            str(path) == self.state.image_path
        self._edits_since_load = 0
        self.state.set_image(data, path=path, options=options, keep_params=keep_params,
                             hdus=engine.image_hdus(path))
        if isinstance(path, (str, Path)):         # not an in-memory array
            self.add_recent("image", path)
        if ask_psf and not same_file and self.state.psf_model is not None:
            self._ask_about_old_psf()
        return True

    def _ask_about_old_psf(self):
        s = self.state
        psf_name = Path(s.psf_path or "").name or "in use"
        img_name = Path(s.image_path or "").name or "this image"
        self.state.log(f"The PSF {psf_name} was chosen for another image; it is still in use "
                       f"for {img_name} until you remove or replace it.")
        answer = dialogs.ask_psf_for_new_image(self.window, psf_name, img_name)
        if answer == dialogs.REMOVE:
            self.remove_psf()
        elif answer == dialogs.REPLACE:
            self.ask_open("psf")
        else:
            s.adopt_psf()          # kept on purpose: it is now this image's PSF

    def reopen_image(self, **changes):
        """The current file again with changed read options (``hdu=``, ``zeropoint=``, ...;
        None removes an option); the parameters are kept when they fit the image."""
        s = self.state
        if s.image_path is None:
            return False
        opts = dict(s.image_options)
        if "hdu" in changes:
            for k in _HDU_OPTIONS:
                opts.pop(k, None)
        for k, v in changes.items():
            if v is None:
                opts.pop(k, None)
            else:
                opts[k] = v
        return self.open_image(s.image_path, options=opts, keep_params=True,
                               kind_label="image")

    def choose_hdu(self, index):
        s = self.state
        if s.data is None or s.data.hdu == index:
            return False
        ok = self.reopen_image(hdu=int(index))
        if ok and self._show_joint_band():
            self._edits_since_load += 1      # the band's fitted model: not a start to redo
        if ok and s.psf_path is not None:
            # a multi-band PSF file: follow the band
            hdu = engine.psf_hdu_for_band(s.psf_path, s.data.band)
            if hdu is not None:
                self.open_psf(s.psf_path, hdu=hdu)
        return ok

    # ------------------------------------------------------------------ several bands
    def set_joint(self, on):
        """The "joint (all bands)" switch (see :meth:`_start_joint_fit`)."""
        self.state.set_joint(on)

    def _show_joint_band(self):
        """After a joint fit, show the shown band's fitted model: its target (shared shape,
        its flux and sky) and its other sources, so that the panels hold this band's model,
        residual and chi. False when there is no joint fit of this band."""
        s = self.state
        jf = s.joint_fit
        if jf is None or s.data is None or s.params is None or s.data.band not in \
                jf.result.bands:
            return False
        b = s.data.band
        s.set_neighbours(jf.neighbours(b), origin="fit")
        s.set_params(jf.params(b, s.params), origin="fit", clear_result=False)
        s.joint_changed.emit()
        return True

    def _start_joint_fit(self):
        """Every band of the file at once in the worker thread (:func:`.bands.run_joint_fit`,
        as ``mogviewer fit --bands``): the shown band's target and other sources are the
        start, its grid the reference; Cancel stops it."""
        from .worker import SceneFitWorker
        s = self.state
        path, opts, start, nb = s.image_path, s.image_options, s.params, s.neighbours
        prof, M, sky, mode, user = s.profile, s.M, s.sky_on, s.psf_mode, s.user_mask
        psf_path = s.psf_path
        band = s.data.band
        bands = [b for _i, b in gbands.image_bands(path)]
        s.log(f"Joint fit of the bands {' '.join(bands)} (reference grid: {band}): centre, "
              f"shape{' and n' if prof == 'ser' else ''} shared, a flux and a sky per band; "
              f"{len(nb)} other sources; PSF "
              + ("none (each band integrated over the pixel)" if psf_path is None else
                 f"{Path(psf_path).name}, the HDU of each band, {mode}"))

        def job(should_stop):
            jf = gbands.run_joint_fit(path, opts, start, profile=prof, M=M, sky=sky,
                                      psf_path=psf_path, psf_mode=mode, reference_band=band,
                                      neighbours=nb, extra_mask=user, should_stop=should_stop)
            return _JOINT_CANCELLED if jf is None else jf

        self.runner.start(None, None, worker=SceneFitWorker(job))

    def _on_joint_finished(self, jf):
        s = self.state
        self._fit_start = None
        s.set_busy(False)
        if jf is _JOINT_CANCELLED:
            s.log("Joint fit cancelled while the bands were read: nothing changed.")
            self._status("Joint fit cancelled")
            self.update_enabled()
            self.fit_finished.emit(None)
            return
        self._edits_since_load += 1
        res = jf.result
        b = s.data.band
        if b in res.bands and s.params is not None:
            # the shown band's fitted target and other sources, as one undo step (undo goes
            # back to the start and drops the joint fit)
            new_nb, new_p = jf.neighbours(b), jf.params(b, s.params)
            self.undo_stack.beginMacro(f"Joint fit ({res.status})")
            if new_nb != s.neighbours:
                self.undo_stack.push(SetSceneCommand(s, (s.neighbours, None), (new_nb, None),
                                                     "Fit the other sources",
                                                     old_result=s.result, new_result=None))
            self.undo_stack.push(SetParamsCommand(s, s.params, new_p,
                                                  f"Joint fit ({res.status})",
                                                  old_result=s.result, new_result=None))
            self.undo_stack.endMacro()
        s.set_joint_fit(jf)
        s.request_render(immediate=True)
        lines = [f"Joint fit {res.status} in {res.elapsed:.2f} s, {res.nfev} evaluations: "
                 f"chi2/nu = {res.chi2_nu:.4f} (nu = {res.nu}) over {' '.join(res.bands)}",
                 f"  ties used: {res.ties}"]
        lines += [f"  {ln}" for ln in gbands.joint_summary(jf, shown=s.data.band)[2:]]
        lines += [f"  {m}" for m in res.messages]
        s.log("\n".join(lines))
        self._status(f"Joint fit {res.status}: chi2/nu = {res.chi2_nu:.4f} over "
                     f"{len(res.bands)} bands")
        self.update_enabled()
        self.fit_finished.emit(jf)

    def set_zeropoint(self, zp):
        if self.state.data is None:
            return False
        return self.reopen_image(zeropoint=None if zp is None else float(zp))

    def open_noise(self, path):
        opts = {k: v for k, v in self.state.image_options.items()
                if k not in ("read_noise", "sky_level")}
        opts["noise"] = str(path)
        ok = self.open_image(self.state.image_path, options=opts, keep_params=True,
                             kind_label="noise map")
        if ok:
            self.state.log(f"Noise map {path} in use.")
        return ok

    def open_mask(self, path):
        opts = dict(self.state.image_options, mask=str(path))
        ok = self.open_image(self.state.image_path, options=opts, keep_params=True,
                             kind_label="mask")
        if ok:
            self.state.log(f"Mask {path} in use.")
        return ok

    def open_psf(self, path, *, n_components=None, hdu=None, position=None):
        """Read (and fit) a PSF in the background; the panels follow when it is ready. A
        varying PSFEx model asks where to evaluate it; a multi-band PSF file takes the HDU of
        the image's band."""
        if not Path(path).exists():
            self.show_error("Cannot open PSF", f"{path}: no such file.")
            return False
        s = self.state
        axes = engine.psfex_needs_position(path)
        if axes is not None and position is None:
            if s.psf_position is not None and s.psf_path == str(path):
                default = s.psf_position
            elif s.data is not None:   # the cutout's centre, 1-based: right for a full image
                ny, nx = s.data.shape
                default = ((nx + 1) / 2.0, (ny + 1) / 2.0)
            else:
                default = (0.0, 0.0)
            position = dialogs.ask_psfex_position(self.window, Path(path).name, axes, default)
            if position is None:
                self.state.log(f"PSF {path}: no position given, not loaded.")
                self.psf_loaded.emit(None)
                return False
        if hdu is None and s.data is not None:
            hdu = engine.psf_hdu_for_band(path, s.data.band)
        self._status("Fitting a Gaussian mixture to the PSF\u2026", 0)
        self.state.log(f"Reading PSF {path}" + ("" if hdu is None else f" [HDU {hdu}]")
                       + " (fitting a mixture)\u2026")
        self.tasks.run(lambda: engine.read_psf(path, n_components=n_components, hdu=hdu,
                                               position=position),
                       lambda model: self._psf_done(path, model, position, hdu),
                       lambda exc: self._psf_failed(path, exc))
        return True

    def _psf_done(self, path, model, position, hdu):
        self._status("", 1)
        self.state.set_psf(model, path=path, position=position, hdu=hdu)
        self.add_recent("psf", path)
        if self._edits_since_load == 0 and not self.state.busy:
            self.state.reset_start(origin="load")   # moments minus the PSF's second moments
        self.psf_loaded.emit(model)

    def _psf_failed(self, path, exc):
        self._status("", 1)
        self.state.psf_changed.emit()
        self.show_error("Cannot open PSF", f"{Path(str(path)).name} is not a usable PSF:\n\n"
                        f"{exc}\n\nThe current PSF is unchanged.")
        self.psf_loaded.emit(None)

    def remove_psf(self):
        if self.state.psf_model is not None and not self.state.busy:
            self.state.set_psf(None)

    def set_psf_position(self, x, y):
        """Evaluate the current PSFEx model at another position, with the same K (a K chosen
        in the PSF dialog stays chosen)."""
        s = self.state
        if s.psf_path is None:
            return False
        k = None if s.psf_model is None else s.psf_model.n_components
        return self.open_psf(s.psf_path, position=(float(x), float(y)), n_components=k,
                             hdu=s.psf_hdu)

    def open_model(self, path):
        try:
            saved = engine.read_model_json(path)
        except engine.export_error_types() + engine.READ_ERRORS + (RecursionError,) as exc:
            self.show_error("Cannot open model", engine.message_about(exc, Path(str(path)).name))
            return False
        if self.state.data is None:
            self.show_error("Cannot open model", "Open an image before a model.")
            return False
        try:      # the other sources of the scene (files written by the app since issue 17)
            nb = engine.saved_neighbours(saved, name=Path(str(path)).name)
        except engine.export_error_types() as exc:
            self.show_error("Cannot open model", str(exc))
            return False
        has_scene = engine.SCENE_KEY in (saved.meta or {})
        if saved.profile in engine.PROFILES:
            self.state.set_profile(saved.profile, saved.M)
        self.state.set_sky(saved.sky != "none")
        self.state.model_path = str(path)
        self.undo_stack.beginMacro(f"Load model {Path(path).name}")
        if has_scene and tuple(nb) != self.state.neighbours:
            self._push_scene(f"Sources of {Path(path).name}", neighbours=nb)
        self.push_params(saved.params, f"Load model {Path(path).name}")
        self.undo_stack.endMacro()
        self.state.log(f"Model from {path}: {format_params(saved.params)}"
                       + (f"; {count(len(nb), 'other source')}" if has_scene else ""))
        self.add_recent("model", path)
        return True

    def open_sample(self, *, psf=True):
        files = engine.sample_files()
        if files is None:
            self.show_error("Sample not found",
                            "The bundled sample_data/ic3478 directory was not found. "
                            "Set MOGVIEWER_SAMPLE_DATA or open an image.")
            return False
        img, mask, psf_path = files
        self.state.log(f"Sample: {engine.SAMPLE_DESCRIPTION}")
        ok = self.open_image(img, options=dict(engine.SAMPLE_OPTIONS, mask=str(mask)),
                             ask_psf=not psf)
        if ok and psf:
            self.open_psf(psf_path)
        return ok

    def open_dropped(self, paths):
        """Route dropped files by content: images first, then masks, PSFs and models."""
        cur = None if self.state.data is None else self.state.data.shape
        kinds = [(engine.classify_file(p, current_shape=cur), p) for p in paths]
        order = {"image": 0, "mask": 1, "noise": 2, "psf": 3, "model": 4}
        has_psf = any(k == "psf" for k, _ in kinds)
        for kind, p in sorted(kinds, key=lambda kp: order.get(kp[0], 9)):
            self.state.log(f"Dropped {Path(p).name}: recognised as {kind}")
            if kind == "image":
                self.open_image(p, ask_psf=not has_psf)   # a PSF dropped with it replaces it
            else:
                self.open_file(p, kind=kind)

    def _on_image_changed(self):
        self.undo_stack.clear()
        self.update_enabled()

    # ================================================================== edits
    def push_params(self, new, text, *, merge_name=None):
        s = self.state
        if new == s.params:
            return
        self._edits_since_load += 1
        self.undo_stack.push(SetParamsCommand(s, s.params, new, text, old_result=s.result,
                                              new_result=None, merge_name=merge_name))

    def edit_param(self, name, value):
        s = self.state
        if s.params is None or s.busy:
            return
        try:
            new = s.params.replace(**{name: value})
        except (engine.FitError, ValueError) as exc:
            self._status(str(exc), 5000)
            s.params_changed.emit(s.params, "refused")   # the panel shows the valid value
            return
        self.push_params(new, f"Edit {name}", merge_name=name)

    def choose_profile(self, profile, M):
        s = self.state
        old, old_result = (s.profile, s.M), s.result
        s.set_profile(profile, M)  # validates M (falls back to the profile's default)
        new = (s.profile, s.M)
        if new != old:
            # already applied: redo() sets the same state again, which changes nothing
            self.undo_stack.push(SetProfileCommand(s, old, new, old_result=old_result))

    def reset_start(self):
        s = self.state
        if s.data is None or s.busy:
            return
        try:
            start = engine.initial_guess(s.problem())
        except engine.FitError as exc:
            self.show_error("Cannot start from moments", str(exc))
            return
        self.push_params(start, "Start from moments")
        self.state.log("Start from image moments: " + format_params(start))

    def drag_started(self):
        s = self.state
        if not s.busy:
            self._drag_start = (s.params, s.result)

    def dragged(self, ell):
        s = self.state
        if s.params is None or s.busy:
            return
        try:
            new = s.params.replace(**ell)
        except (engine.FitError, ValueError):
            return
        s.set_params(new, origin="drag")

    def drag_finished(self):
        s = self.state
        start, self._drag_start = self._drag_start, None
        if s.params is None:
            return
        p = s.params
        # canonical ellipse (q <= 1): the handle re-syncs now that the user let go
        s.params_changed.emit(p, "drag_end")
        s.request_render(immediate=True)
        if start is None or start[0] == p or s.busy:
            return
        self._edits_since_load += 1
        self.undo_stack.push(SetParamsCommand(s, start[0], p, "Drag ellipse",
                                              old_result=start[1], new_result=None))

    # ================================================================== fit
    def start_fit(self):
        s = self.state
        if s.data is None:
            self._status("Nothing to fit: open an image first (File > Open Image, or File > "
                         "Open Sample Galaxy).")
            return False
        if s.busy or self.runner.running:
            return False
        # a value typed into a field but not yet committed (F pressed in the field) counts
        focus = QtWidgets.QApplication.focusWidget()
        if isinstance(focus, QtWidgets.QAbstractSpinBox):
            focus.interpretText()
        try:
            problem = s.problem()
        except (engine.FitError, ValueError) as exc:
            self.show_error("Cannot fit", str(exc))
            return False
        if s.params is None:
            return False
        why = engine.nothing_to_fit(problem)
        if why is not None:       # a blank image "converged" at flux 0 with errors of 1e33
            self.show_error("Cannot fit", f"Nothing to fit: {why}.")
            return False
        self._fit_start = (s.params, s.result)
        s.set_busy(True)
        free = ", ".join(problem.free) or "nothing"
        s.log(f"Fit {s.profile} M={s.M}, sky {'on' if s.sky_on else 'off'}, "
              f"PSF {engine.psf_info_text(problem.psf_info) if s.psf_model else 'none'}"
              f"; free: {free}; start: {format_params(s.params)}")
        if s.joint and len(gbands.image_bands(s.image_path)) >= 2:
            self._start_joint_fit()
        elif s.neighbours:
            self._start_scene_fit()
        else:
            self.runner.start(problem, s.params)
        return True

    def _start_scene_fit(self):
        """The target and the other sources together (fit_scene, the PSF used as the session's
        mode says: the stamp itself in exact mode), then the target on the data minus them
        with the session's problem (the same PSF mode)."""
        from .worker import SceneFitWorker
        s = self.state
        data, psf, mode, prof, M, free, sky, user = (s.data, s.psf_model, s.psf_mode,
                                                     s.profile, s.M, s.free, s.sky_on,
                                                     s.user_mask)
        n = s.params.n
        start, nb = s.params, s.neighbours
        s.log(f"Scene fit: the target and {len(nb)} other sources, PSF "
              f"{'none' if psf is None else mode}")

        def problem_for(neighbours):
            image = data.image - engine.neighbours_image(data, psf, neighbours, psf_mode=mode)
            return engine.make_problem(data, psf=psf, psf_mode=mode, profile=prof, M=M,
                                       free=free, sky=sky, n=n, image=image, extra_mask=user)

        def job(should_stop):
            return engine.run_scene_fit(data, psf, problem_for, start, prof, M, nb, sky=sky,
                                        extra_mask=user, should_stop=should_stop,
                                        psf_mode=mode)

        self.runner.start(None, None, worker=SceneFitWorker(job))

    def cancel_fit(self):
        if self.runner.running:
            self.state.log("Cancel requested.")
            self._status("Cancelling the fit\u2026", 3000)
            self.runner.cancel()
        if self.sampler.running:
            self.state.log("Cancel requested: the samples so far are kept.")
            self._status("Stopping the sampling after its current step\u2026", 3000)
            self.sampler.cancel()

    def _on_fit_progress(self, snap):
        s = self.state
        if not s.busy:
            return
        s.set_params(snap.params, origin="fit", clear_result=False)
        self.fit_progressed.emit(snap)

    def _on_fit_finished(self, result):
        if isinstance(result, gbands.JointFit) or result is _JOINT_CANCELLED:
            self._on_joint_finished(result)
            return
        s = self.state
        old_p, old_r = self._fit_start or (s.params, s.result)
        self._fit_start = None
        s.set_busy(False)
        self._edits_since_load += 1
        scene = None
        if isinstance(result, tuple):          # a scene fit: (FitResult, neighbours, scene)
            result, nb, scene = result
            self.undo_stack.beginMacro(f"Fit scene ({result.status})")
            self.undo_stack.push(SetSceneCommand(s, (s.neighbours, None), (nb, None),
                                                 "Fit the other sources", old_result=old_r,
                                                 new_result=None))
        self.undo_stack.push(SetParamsCommand(s, old_p, result.params,
                                              f"Fit ({result.status})", old_result=old_r,
                                              new_result=result))
        if scene is not None:
            self.undo_stack.endMacro()
            # with the fit's notes on the sources (a neighbour at a bound, a needle): they
            # were only in the joint fit's log
            s.log("\n".join([f"Scene fit {scene.status}: chi2/nu = {scene.chi2_nu:.4f} with "
                             f"{len(scene.scene.sources)} sources, {scene.nfev} evaluations, "
                             f"{scene.elapsed:.2f} s"] + [f"  {m}" for m in scene.messages]))
        errs = result.errors()
        lines = [f"Fit {result.status} in {result.elapsed:.2f} s, {result.nfev} evaluations: "
                 f"chi2/nu = {result.chi2_nu:.4f} (nu = {result.nu})"]
        for n in result.free:
            lines.append(f"  {n} = {getattr(result.params, n):.6g} +- {errs[n]:.3g}")
        flags = [f.name for f in engine.FitFlags if f.value and f in result.flags]
        if flags:
            lines.append("  flags: " + ", ".join(flags))
        s.log("\n".join(lines))
        self._status(f"Fit {result.status}: chi2/nu = {result.chi2_nu:.4f}")
        self.fit_finished.emit(result)

    def _on_fit_failed(self, msg):
        self._fit_start = None
        self.state.set_busy(False)
        self.show_error("Fit failed", msg.split("\n\n")[0], details=msg)

    def _on_busy(self, busy):
        self.q["cancel"].setEnabled(busy)
        self.update_enabled()

    def update_enabled(self, *_):
        has_img = self.state.data is not None
        has_res = self.state.result is not None
        has_joint = self.state.joint_fit is not None     # a CSV of every band, no image block
        busy = self.state.busy
        for k, a in self.export_actions.items():
            need_res = k in ("csv", "imgblock")
            a.setEnabled(has_img and (has_res or not need_res or (k == "csv" and has_joint))
                         and not busy and (k != "mask" or self.state.user_mask is not None))
        self.q["open_mask_regions"].setEnabled(has_img and not busy)
        self.q["fit"].setEnabled(has_img and not busy)
        self.q["sample"].setEnabled(self.can_sample())
        self.q["remove_psf"].setEnabled(self.state.psf_model is not None and not busy)
        self.q["undo"].setEnabled(not busy and self.undo_stack.canUndo())
        self.q["redo"].setEnabled(not busy and self.undo_stack.canRedo())

    # ================================================================== shutdown
    def shutdown(self):
        try:
            self.undo_stack.indexChanged.disconnect()
        except TypeError:
            pass
        self.runner.shutdown()
        self.sampler.shutdown()
        self.tasks.shutdown()


__all__ = ["Actions", "FILE_FILTERS", "MAX_RECENT"]
