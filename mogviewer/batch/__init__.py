"""Fit many cutouts headlessly: one row per file, a failing file is a row, never a crash.

The unit of work is a :class:`FitTask`: a frozen, picklable description of one fit (input
paths and reading options, PSF, profile, sky model, start model, output directories).
:func:`run_task` turns it into a CSV row (see :data:`mogviewer.export.COLUMNS`) and **never
raises** for anything the data can do wrong: an unreadable file, an all-NaN image, a bad PSF, a
failing fit or an unwritable output give a row with ``status='failed'`` (or the fit's status) and
the ``reason``. Because :func:`run_task` is a pure function of the task, any executor can map it.

Catalogue mode's unit of work is a :class:`~mogviewer.batch.cutouts.CutoutJob` (the sources of
one PSF cell of a large image, cut in memory). :func:`run_batch` runs either kind on an executor
of :mod:`~mogviewer.batch.executors` (this process, a local process pool, or Dask) and appends
the rows to the CSV as they finish: the CSV is created with its header before the first fit,
rows are appended in place under a lock (at most every ``flush_interval`` seconds, and always
at the end or on interruption), so the file on disk is a valid CSV at every moment; Ctrl-C
(KeyboardInterrupt) writes the rows finished so far and re-raises. Every row has an
``object_id``; ``resume=True`` skips those already in the CSV.

Modules: :mod:`~mogviewer.batch.tasks` (one fit), :mod:`~mogviewer.batch.cutouts` (catalogue
jobs), :mod:`~mogviewer.batch.executors` (where), :mod:`~mogviewer.batch.runner` (many). The
command line over them is :mod:`mogviewer.cli.fit` with :mod:`mogviewer.cli.survey`.
"""

import importlib

# where each public name lives: imported on first use (PEP 562), so that
# ``mogviewer.batch.executors`` (the fork server's early start) costs no fitting imports
_WHERE = {"FitTask": "tasks", "load_psf": "tasks", "output_stem": "tasks", "run_task": "tasks",
          "CutoutJob": "cutouts", "plan_cutout_jobs": "cutouts", "plan_outputs": "outputs",
          "BatchInterrupted": "runner", "BatchSummary": "runner", "run_batch": "runner"}

__all__ = ["FitTask", "CutoutJob", "plan_cutout_jobs", "BatchSummary", "BatchInterrupted",
           "run_task", "run_batch", "load_psf", "output_stem", "plan_outputs"]


#: the package's modules, also reachable as attributes (``batch.tasks``), as before the lazy
#: imports
_MODULES = ("band_task", "cutouts", "executors", "outputs", "runner", "scene_task", "tasks",
            "worker")


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
