"""The scene's and the posterior's verbs, mixed into :class:`~mogviewer.gui.actions.Actions`.

Scene: add, delete, change and move the other sources, draw or import the user's mask, detect
the sources (each one undo step, :class:`~mogviewer.gui.undo.SetSceneCommand`). Posterior:
sample around the fit in the worker thread (:class:`~mogviewer.gui.worker.SampleWorker`).
They use the attributes and signals :class:`Actions` defines (``state``, ``undo_stack``,
``tasks``, ``sampler``, ``show_error``, ...); like it they never touch a view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt5 import QtWidgets

from . import engine, masks
from .undo import SetSceneCommand


class SceneActions:
    """Other sources and the user's mask (see the module docstring)."""

    def _push_scene(self, text, *, neighbours=None, mask=None, new_result=None,
                    new_params=None):
        """One undoable change of the other sources and/or the user's mask (``mask=False``
        clears it)."""
        s = self.state
        old_nb = s.neighbours if neighbours is not None else None
        old_mask = None
        if mask is not None:
            old_mask = False if s.user_mask is None else s.user_mask
        self._edits_since_load += 1
        self.undo_stack.push(SetSceneCommand(
            s, (old_nb, old_mask), (None if neighbours is None else tuple(neighbours), mask),
            text, old_result=s.result, new_result=new_result,
            old_params=s.params if new_params is not None else None, new_params=new_params))

    def add_source(self, kind, x, y):
        """Add a source of ``kind`` ('point' or a galaxy profile) at pixel ``(x, y)``."""
        s = self.state
        if s.data is None or s.busy or kind not in engine.SOURCE_KINDS:
            return False
        ny, nx = s.data.shape
        if not (-0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5):
            return False
        sky = s.params.sky if s.params is not None and s.sky_on else 0.0
        src = engine.new_source(kind, x, y, s.data, sky=sky)
        self._push_scene(f"Add {kind} source", neighbours=s.neighbours + (src,))
        s.select(len(s.neighbours))
        what = "point source" if kind == "point" else f"{kind} galaxy"
        s.log(f"Added a {what} at ({x:.1f}, {y:.1f}), flux {src.flux:.4g}")
        return True

    def delete_source(self, index=None):
        """Delete neighbour source ``index`` (1-based in the list: 0 is the target, which
        stays)."""
        s = self.state
        index = s.selected if index is None else index
        if s.busy or not index or index > len(s.neighbours):
            return False
        nb = list(s.neighbours)
        del nb[index - 1]
        self._push_scene("Delete source", neighbours=nb)
        s.select(0)
        return True

    def set_source_kind(self, index, kind):
        s = self.state
        if s.busy or not index or index > len(s.neighbours) or kind not in engine.SOURCE_KINDS:
            return False
        nb = list(s.neighbours)
        if engine.source_kind(nb[index - 1]) == kind:
            return False
        nb[index - 1] = engine.with_kind(nb[index - 1], kind)
        self._push_scene(f"Source {index}: {kind}", neighbours=nb)
        return True

    def source_drag_started(self, index):
        if not self.state.busy:
            self._src_drag = (index, self.state.neighbours, self.state.result)

    def source_dragged(self, index, ell):
        s = self.state
        if s.busy or not index or index > len(s.neighbours):
            return
        nb = list(s.neighbours)
        try:
            nb[index - 1] = engine.moved_source(nb[index - 1], **ell)
        except (ValueError, engine.FitError):
            return
        s.set_neighbours(nb, origin="drag")

    def source_drag_finished(self, index):
        s = self.state
        start, self._src_drag = getattr(self, "_src_drag", None), None
        s.sources_changed.emit("drag_end")
        s.request_render(immediate=True)
        if start is None or start[1] == s.neighbours:
            return
        self._edits_since_load += 1
        self.undo_stack.push(SetSceneCommand(s, (start[1], None), (s.neighbours, None),
                                             f"Move source {index}", old_result=start[2],
                                             new_result=None))

    def draw_mask(self, shape, x0, y0, x1, y1):
        """Add (``shape`` 'box' or 'ellipse') or erase ('erase': a box) user-mask pixels in
        the box with corners ``(x0, y0)``, ``(x1, y1)`` (pixel coordinates)."""
        s = self.state
        if s.data is None or s.busy:
            return False
        region = (masks.ellipse_mask if shape == "ellipse" else masks.box_mask)(
            s.data.shape, x0, y0, x1, y1)
        cur = np.zeros(s.data.shape, bool) if s.user_mask is None else np.array(s.user_mask)
        new = (cur & ~region) if shape == "erase" else (cur | region)
        if np.array_equal(new, cur):
            return False
        self._push_scene({"box": "Mask box", "ellipse": "Mask ellipse",
                          "erase": "Erase mask"}[shape], mask=new if new.any() else False)
        return True

    def clear_mask(self):
        if self.state.user_mask is None or self.state.busy:
            return False
        self._push_scene("Clear mask", mask=False)
        return True

    def import_mask_regions(self, path):
        """Mask the pixels inside the regions of a DS9 file (added to the user's mask; one
        undo step)."""
        s = self.state
        if s.data is None or s.busy:
            return False
        try:
            region = masks.read_mask_regions(path, s.data.shape,
                                              wcs=getattr(s.data, "wcs", None))
        except engine.export_error_types() as exc:
            self.show_error("Cannot read regions", str(exc))
            return False
        cur = np.zeros(s.data.shape, bool) if s.user_mask is None else np.array(s.user_mask)
        new = cur | region
        s.log(f"Mask regions from {path}: {int(region.sum())} pixels")
        if not np.array_equal(new, cur):
            self._push_scene(f"Mask regions {Path(str(path)).name}", mask=new)
        return True

    def export_mask_regions(self, path):
        s = self.state
        if s.user_mask is None:
            self.show_error("Nothing to export", "Draw or detect a mask first.")
            return False
        ok = self._export("mask regions", lambda: masks.write_mask_regions(
            path, s.user_mask, inputs=s.input_files()))
        if ok:
            s.log(f"Wrote mask regions {path} ({int(s.user_mask.sum())} pixels)")
        return ok

    def ask_import_mask_regions(self):
        start = self.setting("dirs/regions", "", str) or self.setting("dirs/last", "", str)
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self.window, "Mask regions (DS9)", start, "DS9 regions (*.reg);;All files (*)")
        if path:
            self.settings.setValue("dirs/regions", str(Path(path).parent))
            self.import_mask_regions(path)

    def detect_sources(self):
        """Detect the sources (photutils, in the background): the other sources become the
        scene's neighbours, artefacts and the faint rest are masked (one undo step)."""
        s = self.state
        if s.data is None or s.busy or s.params is None:
            return False
        data, psf, user = s.data, s.psf_model, s.user_mask
        target = (s.params.x, s.params.y)
        prof, M, n = s.profile, s.M, s.params.n
        self._status("Detecting sources\u2026", 60000)

        def job():
            return engine.detect_scene(data, psf, target=target, profile=prof, M=M, n=n,
                                       extra_mask=user)

        def done(out):
            self._status("", 1)
            if s.data is not data:
                return                        # another image meanwhile
            nb, seg_mask, ndet = out
            mask = seg_mask if user is None else (seg_mask | user)
            self._push_scene(f"Detect sources ({len(nb)} modelled)", neighbours=nb,
                             mask=mask if mask.any() else False)
            s.log(f"Detected {ndet} sources: the target, {len(nb)} modelled neighbours, "
                  f"{int(seg_mask.sum())} pixels of the others masked")
            self.detect_finished.emit(len(nb))

        def failed(exc):
            self._status("", 1)
            self.show_error("Cannot detect sources", str(exc))
            self.detect_finished.emit(-1)

        self.tasks.run(job, done, failed)
        return True



class PosteriorActions:
    """Posterior sampling around the fit (see the module docstring)."""

    def set_sample_steps(self, n):
        lo, hi = engine.SAMPLE_STEPS[1:]
        self.sample_steps = int(min(max(int(n), lo), hi))

    def can_sample(self):
        s = self.state
        return (s.result is not None and not s.busy and s.params == s.result.params
                and s.result.status != "failed" and len(s.result.free) > 0)

    def start_sample(self, n_steps=None):
        """Sample the posterior around the current fit in the worker thread (emcee, as
        ``mogviewer fit --sample STEPS``); progress every 50 steps, Cancel stops after the
        current step and keeps the samples so far. Returns True when it started."""
        s = self.state
        if s.busy or self.runner.running or self.sampler.running:
            return False
        if s.result is None or s.params != s.result.params:
            self._status("Fit first: the posterior is sampled around a fit result.")
            return False
        if n_steps is not None and not isinstance(n_steps, bool):
            self.set_sample_steps(n_steps)
        try:
            problem = s.problem()
        except (engine.FitError, ValueError) as exc:
            self.show_error("Cannot sample", str(exc))
            return False
        zp = None if s.data is None else s.data.zeropoint
        s.set_busy(True, task="sample")
        s.log(f"Sampling the posterior: {self.sample_steps} steps per walker (emcee), "
              f"free: {', '.join(problem.free)}")
        from .worker import SampleWorker
        self._sample_for = s.result
        self.sampler.start(problem, None, worker=SampleWorker(
            problem, s.result, n_steps=self.sample_steps, zeropoint=zp))
        return True

    def _on_sample_progress(self, prog):
        if self.state.busy:
            self.sample_progressed.emit(prog)

    def _on_sample_finished(self, post):
        s = self.state
        s.set_busy(False)
        if s.result is not getattr(self, "_sample_for", None):
            return                     # the result changed meanwhile: these samples are stale
        s.set_posterior(post)
        taus = [t for t in post.tau.values() if t == t]
        ess = [e for e in post.ess.values() if e == e]
        lines = [f"Posterior: {post.n_walkers} walkers x {post.n_steps} steps (burn-in "
                 f"{post.burn}) in {post.elapsed:.1f} s, acceptance {post.acceptance:.2f}, "
                 f"{'converged' if post.converged else 'NOT converged'}"
                 + (f" (longest tau {max(taus):.0f} steps, smallest ESS {min(ess):.0f})"
                    if taus and ess else "")]
        lines.append(f"  prior: {post.prior_text()} (within the bounds)")
        for name, lo, mid, hi in engine.posterior_rows(post):
            lines.append(f"  {name} = {mid:.6g} -{mid - lo:.3g} +{hi - mid:.3g} (16/50/84 %)")
        s.log("\n".join(lines))
        self._status("Posterior sampled" + ("" if post.converged else
                                             ": not converged, sample longer"))
        self.sample_finished.emit(post)

    def _on_sample_failed(self, msg):
        self.state.set_busy(False)
        self.show_error("Sampling failed", msg.split("\n\n")[0], details=msg)
        self.sample_finished.emit(None)
