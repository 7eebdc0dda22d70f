""":func:`run_batch`: many jobs on one executor, rows appended to the CSV as they finish.

A *job* is a :class:`~mogviewer.batch.FitTask` (one file, one row) or a
:class:`~mogviewer.batch.cutouts.CutoutJob` (the catalogue sources of one cell of a large image,
one row each); :func:`run_job` turns either into its rows and never raises for bad data, so any
executor of :mod:`mogviewer.batch.executors` can map it.

Every row carries an ``object_id``: the manifest's or catalogue's id, or for plain files the
file name as given (with ``[hdu=N]``, ``[band=B]``, ``[plane=N]`` when those were chosen; a
file listed twice gets ``#2``). ``resume=True`` reads the ids already in the CSV and runs only
the others, so an interrupted run continues where it stopped and no object gets two rows.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections import Counter

from .. import export
from ..export.files import InputSet
from .cutouts import close_fields
from .executors import chunk_size, make_executor
from .outputs import plan_outputs
from .tasks import FitTask, run_task


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    """Counts and time of a batch: ``fitted`` (converged, no flags), ``flagged`` (fitted with
    flags, a non-converged status or an output problem), ``failed``, ``elapsed`` seconds;
    ``skipped``: objects already in the CSV (``resume``); ``flag_counts``: ``(name, count)``
    of every flag and status seen, most frequent first."""

    total: int
    fitted: int
    flagged: int
    failed: int
    elapsed: float
    interrupted: bool = False
    rows: tuple = ()
    skipped: int = 0
    flag_counts: tuple = ()
    unit: str = "files"

    def line(self):
        """One line for people."""
        done = self.fitted + self.flagged + self.failed
        s = (f"{done}/{self.total} {self.unit}: {self.fitted} fitted without flags, "
             f"{self.flagged} flagged, {self.failed} failed in {self.elapsed:.1f} s")
        if self.skipped:
            s += f" ({self.skipped} already in the CSV, not refitted)"
        return s + (" (interrupted)" if self.interrupted else "")

    def flag_lines(self):
        """The flags and statuses of the rows, one ``name: count`` per line."""
        return [f"{name}: {n}" for name, n in self.flag_counts]


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_batch`, raised after the finished rows were written;
    :attr:`summary` describes what was done."""

    def __init__(self, summary):
        super().__init__(summary.line())
        self.summary = summary


# ---------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------

def job_ids(job):
    """The object ids a job writes rows for."""
    if isinstance(job, FitTask):
        return (job.object_id,)
    return job.ids()


def run_job(job):
    """The rows of one job (a list of dicts, each with its ``object_id``); never raises for
    anything the data can do wrong (see :func:`~mogviewer.batch.run_task`). A FitTask gives
    one row, or with ``neighbours='fit'`` one per fitted source, the target's first (all
    carrying the task's ``object_id``)."""
    if isinstance(job, FitTask):
        result = run_task(job)
        rows = result if isinstance(result, list) else [result]
        for row in rows:
            row["object_id"] = job.object_id
        return rows
    return job.run()


def _targets(job, rows):
    """The rows that count as objects (progress, summary): a FitTask's first (its target),
    every row of a catalogue job."""
    return rows[:1] if isinstance(job, FitTask) else rows


def failed_rows(job, reason):
    """Failed rows for every object of a job (its worker died too often)."""
    if isinstance(job, FitTask):
        row = export.failed_row(reason, file=job.image)
        row["object_id"] = job.object_id
        return [row]
    return job.failed_rows(reason)


def default_object_id(task):
    """The id of a plain file's row: the file as given, plus the HDU/band/plane chosen."""
    return object_id_of(task.image, hdu=task.hdu, band=task.band, plane=task.plane)


def object_id_of(image, *, hdu=None, band=None, plane=None):
    """``image`` (as given) plus ``[hdu=..]``, ``[band=..]``, ``[plane=..]`` for those set."""
    oid = str(image)
    for name, v in (("hdu", hdu), ("band", band), ("plane", plane)):
        if v is not None:
            oid += f"[{name}={v}]"
    return oid


def _with_ids(jobs):
    """Give every FitTask without an ``object_id`` its default one, unique within the batch."""
    out, seen = [], Counter()
    for job in jobs:
        if isinstance(job, FitTask) and job.object_id is None:
            oid = default_object_id(job)
            seen[oid] += 1
            if seen[oid] > 1:
                oid = f"{oid}#{seen[oid]}"
            job = dataclasses.replace(job, object_id=oid)
        out.append(job)
    return out


def done_ids(csv_path):
    """The ``object_id`` values of the rows already in a CSV (empty set if it does not exist
    or has no rows). Read line by line: a million-row CSV costs seconds, not memory."""
    try:
        f = open(csv_path, newline="", encoding="utf-8")
    except FileNotFoundError:
        return set()
    with f:
        reader = csv.reader(line for line in f if not line.startswith("#"))
        header = next(reader, None)
        if header is None:
            return set()
        if "object_id" not in header:
            raise export.ExportError(f"cannot resume from {csv_path}: it has no object_id "
                                     "column (written by an older mogviewer); write to a new "
                                     "file instead")
        k = header.index("object_id")
        return {r[k] for r in reader if len(r) > k}


def _skip_done(jobs, done):
    """Jobs with the objects in ``done`` left out (a job left empty is dropped)."""
    out, skipped = [], 0
    for job in jobs:
        if isinstance(job, FitTask):
            if job.object_id in done:
                skipped += 1
                continue
            out.append(job)
        else:
            kept = job.without(done)
            skipped += job.n_objects - (kept.n_objects if kept is not None else 0)
            if kept is not None:
                out.append(kept)
    return out, skipped


def _classify(row):
    if row.get("status") == "failed":
        return "failed"
    if row.get("status") != "converged" or int(row.get("flags") or 0) or row.get("reason"):
        return "flagged"
    return "fitted"


# ---------------------------------------------------------------------------------------------
# many jobs
# ---------------------------------------------------------------------------------------------

def run_batch(tasks, csv_path=None, *, workers=1, executor="processes", scheduler=None,
              append=False, resume=False, progress=None, flush_interval=1.0, unit="files",
              columns=None, chunk=None):
    """Run :func:`run_job` over ``tasks`` and append the rows to ``csv_path`` as they finish.

    Parameters
    ----------
    tasks : sequence of FitTask or CutoutJob
    csv_path : str or Path, optional
        CSV to write (None: rows are only returned). Without ``append``/``resume`` it is
        (re)created with the header before the first fit, so an unwritable path fails before
        any work.
    workers : int
        Processes: 1 = in this process (unless Dask); more = a local process pool.
    executor : {'processes', 'serial', 'dask'}
        Where the jobs run (:mod:`mogviewer.batch.executors`); ``'dask'`` starts a
        ``LocalCluster`` of ``workers`` processes unless ``scheduler`` names a running one.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    append : bool
        Append to an existing CSV with the same columns (refused otherwise, before any fit).
    resume : bool
        Append, and skip every object whose ``object_id`` is already in the CSV.
    progress : callable, optional
        ``progress(done, total, row)`` after each finished row (in completion order). An
        exception it raises stops the batch like Ctrl-C does (the CSV keeps the rows so far).
    flush_interval : float
        Seconds between CSV appends (rows are also written at the end and on interruption).
        Each append adds only the new rows (under a lock, in place), so a batch's writing cost
        grows linearly with its rows.
    unit : str
        What the summary line counts (``files``, ``objects``).
    columns : sequence of str, optional
        The CSV's columns (default :data:`mogviewer.export.COLUMN_NAMES`; a multi-band run adds
        its band columns).
    chunk : int, optional
        Jobs per submit to the pool or cluster (one pickled message and one future each).
        Default: one-file jobs in chunks of :func:`~mogviewer.batch.executors.chunk_size`
        (about 8 chunks per worker, at most 32 files each); catalogue jobs, which hold up to
        a PSF cell of sources each, one at a time.

    Returns
    -------
    BatchSummary
        With ``rows`` in job order (rows not run are absent).

    Output names follow :func:`mogviewer.batch.plan_outputs` (unique, never an input); the CSV
    is appended to under a lock, so two runs appending to one file at once lose no rows.

    Raises
    ------
    mogviewer.export.ExportError
        The CSV cannot be written (before any fit) or appended to, or an output would be an
        input (before any fit).
    BatchInterrupted
        (a ``KeyboardInterrupt``) on Ctrl-C or a KeyboardInterrupt from ``progress``, after the
        rows finished so far were written.
    """
    t0 = time.perf_counter()
    cols = {} if columns is None else {"columns": tuple(columns)}
    jobs = _with_ids(tasks)
    files = [j for j in jobs if isinstance(j, FitTask)]
    planned, _ = plan_outputs(files, csv_path)  # unique output names, none of them an input
    planned = iter(planned)
    jobs = [next(planned) if isinstance(j, FitTask) else j for j in jobs]
    inputs = InputSet(p for j in jobs for p in j.input_files())
    total = sum(1 if isinstance(j, FitTask) else j.n_objects for j in jobs)
    skipped = 0
    if csv_path is not None and resume:
        jobs, skipped = _skip_done(jobs, done_ids(csv_path))
    use_dask = executor == "dask" or scheduler is not None
    # no more local workers than jobs (a LocalCluster's too: each costs a process start-up;
    # `--dask --workers 8` on two objects took 44 s); a remote cluster has its own
    n_workers = workers if scheduler is not None else min(workers, max(len(jobs), 1))
    # the executor first: a scheduler that cannot be reached leaves the CSV as it was
    ex = None
    if jobs:
        if chunk is None:
            chunk = (chunk_size(len(jobs), n_workers)
                     if all(isinstance(j, FitTask) for j in jobs) else 1)
        ex = make_executor("dask" if use_dask else executor, run_job, workers=n_workers,
                           scheduler=scheduler, failed=failed_rows, chunk=chunk)
    if csv_path is not None:
        try:
            # header, or check an appended file
            export.write_csv(csv_path, [], append=append or resume, inputs=inputs, **cols)
        except BaseException:
            if ex is not None:
                ex.close(abort=True)
            raise
    results = {}
    written = set()
    seen_ids = set()
    n_rows = [0]
    next_i = 0  # rows are written in job order: up to the first job still running
    last_flush = time.perf_counter()
    interrupted = False

    def flush(force=False):
        nonlocal last_flush, next_i
        if csv_path is None:
            return
        if not force and time.perf_counter() - last_flush < flush_interval:
            return
        while next_i in results:
            next_i += 1
        # in order up to the first unfinished job; at the end (or on Ctrl-C) everything done
        order = [i for i in sorted(results) if i not in written and (force or i < next_i)]
        if order:
            rows = [r for i in order for r in results[i]]
            export.write_csv(csv_path, rows, append=True, inputs=inputs, **cols)
            written.update(order)
        last_flush = time.perf_counter()

    def done(i, rows):
        # a row is written once: a job's result is taken once (the executors yield each job
        # once), and an object already written by another job is dropped
        if i in results:
            return
        if isinstance(jobs[i], FitTask):
            # a scene task's rows (one per fitted source) share the task's id
            rows = [] if jobs[i].object_id in seen_ids else rows
        else:
            rows = [r for r in rows if r.get("object_id") not in seen_ids]
        seen_ids.update(r.get("object_id") for r in rows)
        results[i] = rows
        flush()
        for row in _targets(jobs[i], rows):
            n_rows[0] += 1
            if progress is not None:
                progress(n_rows[0] + skipped, total, row)

    completed = False
    try:
        if ex is not None:
            for i, rows in ex.map(jobs):
                done(i, rows)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if ex is not None:
            ex.close(abort=not completed)
        close_fields()      # the memory-mapped fields of jobs run in this process
        if csv_path is not None:
            flush(force=True)
    summary = _summary(jobs, total, results, t0, interrupted, skipped, unit)
    if interrupted:
        raise BatchInterrupted(summary)
    return summary


def _summary(jobs, total, results, t0, interrupted, skipped, unit):
    # counts are per object (a scene task's target row); ``rows`` holds every row
    rows = tuple(r for i in sorted(results) for r in results[i])
    targets = [r for i in sorted(results) for r in _targets(jobs[i], results[i])]
    kinds = Counter(_classify(r) for r in targets)
    flags = Counter()
    for r in targets:
        if r.get("status") != "converged":
            flags[f"status {r.get('status')}"] += 1
        for name in (r.get("flag_names") or "").split("|"):
            if name:
                flags[name] += 1
    return BatchSummary(total=total, fitted=kinds["fitted"], flagged=kinds["flagged"],
                        failed=kinds["failed"], elapsed=time.perf_counter() - t0,
                        interrupted=interrupted, rows=rows, skipped=skipped,
                        flag_counts=tuple(flags.most_common()), unit=unit)
