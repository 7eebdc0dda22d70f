"""The exports' verbs, mixed into :class:`~mogviewer.gui.actions.Actions`: the CSV row (or a
joint fit's rows), the GALFIT-style image block, the DS9 region, the model JSON and the panels'
PNG, each through :mod:`.engine`'s output-path policy (never over an input, a file complete or
absent; a CSV that exists is appended to only when the user says so). A refused path is a
dialog and a log line, never a crash. They use what :class:`Actions` defines (``state``,
``settings``, ``window``, ``show_error``, ``setting``).
"""

from __future__ import annotations

from pathlib import Path

from PyQt5 import QtWidgets

from . import bands as gbands
from . import dialogs, engine
from .state import count


class ExportActions:
    """Exports of the fit and the scene (see the module docstring)."""

    def _ask_save(self, title, filt, suffix, key):
        s = self.state
        base = Path(s.image_path).stem if s.image_path else "mogviewer"
        d = self.setting(f"dirs/export_{key}", "", str) or self.setting("dirs/export", "", str)
        start = str(Path(d) / f"{base}{suffix}") if d else f"{base}{suffix}"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self.window, title, start, filt,
            options=QtWidgets.QFileDialog.DontConfirmOverwrite if key == "csv"
            else QtWidgets.QFileDialog.Options())
        if path:
            self.settings.setValue(f"dirs/export_{key}", str(Path(path).parent))
            self.settings.setValue("dirs/export", str(Path(path).parent))
        return path

    def ask_export_csv(self):
        path = self._ask_save("Export parameters (CSV)", "CSV (*.csv);;All files (*)",
                              "_mog.csv", "csv")
        if not path:
            return
        try:     # refused at once (an input, a device, ...): no question about appending
            engine.check_output_path(path, "CSV", inputs=self.state.input_files())
        except engine.export_error_types() as exc:
            self.show_error("Cannot export CSV", str(exc))
            return
        append = False
        if Path(path).exists() and Path(path).stat().st_size > 0:
            answer = dialogs.ask_csv_append(self.window, Path(path).name)
            if answer is None:
                return
            append = answer == "append"
        self.export_csv(path, append=append)

    def ask_export(self, kind):
        title, filt, suffix = {
            "imgblock": ("Export image block", "FITS (*.fits);;All files (*)", "_imgblock.fits"),
            "region": ("Export DS9 region", "DS9 region (*.reg);;All files (*)", "_mog.reg"),
            "json": ("Export model", "JSON (*.json);;All files (*)", "_mog.json"),
            "png": ("Export panels", "PNG (*.png)", "_panels.png"),
            "mask": ("Export mask regions", "DS9 region (*.reg);;All files (*)",
                     "_mask.reg"),
        }[kind]
        path = self._ask_save(title, filt, suffix, kind)
        if path:
            {"imgblock": self.export_imgblock, "region": self.export_region,
             "json": self.export_model_json, "png": self.export_png,
             "mask": self.export_mask_regions}[kind](path)

    def _export(self, what, fn):
        try:
            fn()
        except engine.export_error_types() as exc:
            self.show_error(f"Cannot export {what}", f"{exc}")
            return False
        return True

    def _psf_text(self):
        return engine.psf_source(self.state.psf_model, self.state.psf_path)

    def export_csv(self, path, *, append=False):
        s = self.state
        if s.joint_fit is not None:
            return self._export_joint_csv(path, append=append)
        if s.result is None:
            self.show_error("Nothing to export", "Fit first: the CSV row holds a fit result.")
            return False

        def go():
            row = engine.result_row(s.result, data=s.data, problem=s.problem(),
                                    psf_text=self._psf_text(), posterior=s.posterior,
                                    object_id=engine.object_id(s.image_path,
                                                               s.image_options))
            engine.write_csv(path, [row], append=append, inputs=s.input_files())

        ok = self._export("CSV", go)
        if ok:
            s.log(f"{'Appended a row to' if append else 'Wrote'} {path}")
        return ok

    def _export_joint_csv(self, path, *, append=False):
        """The joint fit's rows, as ``mogviewer fit --bands`` writes them (one per source;
        ``flux_<b>``, ``mag_<b>``, colours, ``ties``)."""
        s = self.state

        def go():
            rows, columns = gbands.joint_rows(s.joint_fit)
            engine.write_csv(path, rows, append=append, inputs=s.input_files(),
                             columns=columns)

        ok = self._export("CSV", go)
        if ok:
            s.log(f"{'Appended the joint fit rows to' if append else 'Wrote'} {path} "
                  f"(bands {' '.join(s.joint_fit.result.bands)})")
        return ok

    def export_imgblock(self, path):
        s = self.state
        if s.result is None:
            self.show_error("Nothing to export", "Fit first: the image block holds a fit.")
            return False
        ok = self._export("image block", lambda: engine.write_imgblock(
            path, problem=s.problem(), result=s.result, data=s.data, psf_text=self._psf_text(),
            inputs=s.input_files()))
        if ok:
            s.log(f"Wrote image block {path}")
        return ok

    def export_region(self, path):
        s = self.state
        res = s.result if s.result is not None and s.result.params == s.params else None
        ok = self._export("region", lambda: engine.write_region(
            path, params=s.params, profile=s.profile, M=s.M, result=res, data=s.data,
            inputs=s.input_files(), neighbours=s.neighbours))
        if ok:
            s.log(f"Wrote DS9 region {path} (the target and "
                  f"{count(len(s.neighbours), 'other source')})")
        return ok

    def export_model_json(self, path):
        s = self.state
        ok = self._export("model", lambda: engine.write_model_json(
            path, params=s.params, problem=s.problem(), result=s.result,
            source=s.image_path, inputs=s.input_files(), neighbours=s.neighbours))
        if ok:
            s.log(f"Wrote model {path} (the target and "
                  f"{count(len(s.neighbours), 'other source')})")
        return ok

    def export_png(self, path):
        def go():
            # through the output-path policy: never over an input, complete or absent
            with engine.atomic_output(path, "PNG", inputs=self.state.input_files()) as tmp:
                if not self.window.panels.render_png(tmp):
                    raise OSError(f"{path} could not be written")

        if not self._export("PNG", go):
            return False
        self.state.log(f"Wrote panels {path}")
        return True
