""":func:`run_batch`: many tasks, in this process or a process pool, rows written as they finish.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .. import export
from ..export.files import InputSet
from .outputs import plan_outputs
from .tasks import _short, run_task


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    """Counts and time of a batch: ``fitted`` (converged, no flags), ``flagged`` (fitted with
    flags, a non-converged status or an output problem), ``failed``, ``elapsed`` seconds."""

    total: int
    fitted: int
    flagged: int
    failed: int
    elapsed: float
    interrupted: bool = False
    rows: tuple = ()

    def line(self):
        """One line for people."""
        done = self.fitted + self.flagged + self.failed
        s = (f"{done}/{self.total} files: {self.fitted} fitted, {self.flagged} flagged, "
             f"{self.failed} failed in {self.elapsed:.1f} s")
        return s + (" (interrupted)" if self.interrupted else "")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_batch`, raised after the finished rows were written;
    :attr:`summary` describes what was done."""

    def __init__(self, summary):
        super().__init__(summary.line())
        self.summary = summary



# ---------------------------------------------------------------------------------------------
# many tasks
# ---------------------------------------------------------------------------------------------

def _classify(row):
    if row.get("status") == "failed":
        return "failed"
    if row.get("status") != "converged" or int(row.get("flags") or 0) or row.get("reason"):
        return "flagged"
    return "fitted"


_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS")


def _worker_init(parent_pid):
    """Initializer of every worker process: ignore Ctrl-C (the parent handles it) and end with
    the parent, however the parent ends (SIGTERM, SIGKILL, a crash): on Linux the kernel sends
    SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a watchdog thread
    polls ``os.getppid()`` twice a second and exits when the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="mogviewer-parent-watchdog").start()


def _watch_parent(parent_pid, interval=0.5):
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)  # orphaned: no cleanup to do, the parent owns every output file


def run_batch(tasks, csv_path=None, *, workers=1, append=False, progress=None,
              flush_interval=1.0, columns=None):
    """Run :func:`run_task` over ``tasks`` and write the rows to ``csv_path`` as they finish.

    Parameters
    ----------
    tasks : sequence of FitTask
    csv_path : str or Path, optional
        CSV to write (None: rows are only returned). Without ``append`` it is (re)created with
        the header before the first fit, so an unwritable path fails before any work.
    workers : int
        1 = in this process; more = a process pool (``spawn`` start method) of that size.
    append : bool
        Append to an existing CSV with the same columns (refused otherwise, before any fit).
    progress : callable, optional
        ``progress(done, total, row)`` after each finished task (in completion order). An
        exception it raises stops the batch like Ctrl-C does (the CSV keeps the rows so far).
    flush_interval : float
        Seconds between CSV writes (rows are also written at the end and on interruption).
    columns : sequence of str, optional
        The CSV's columns (default :data:`mogviewer.export.COLUMN_NAMES`; a multi-band run adds
        its band columns).

    Returns
    -------
    BatchSummary
        With ``rows`` in task order (tasks not run are absent).

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
    tasks, _ = plan_outputs(tasks, csv_path)  # unique output names, none of them an input
    inputs = InputSet(p for t in tasks for p in t.input_files())
    if csv_path is not None:
        # header, or check an appended file
        export.write_csv(csv_path, [], append=append, inputs=inputs, **cols)
    results = {}
    written = set()
    next_i = 0  # rows are written in task order: up to the first task still running
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
        # in order up to the first unfinished task; at the end (or on Ctrl-C) everything done
        order = [i for i in sorted(results) if i not in written and (force or i < next_i)]
        if order:
            export.write_csv(csv_path, _flat(results[i] for i in order), append=True,
                             inputs=inputs, **cols)
            written.update(order)
        last_flush = time.perf_counter()

    def done(i, row):
        results[i] = row
        flush()
        if progress is not None:
            progress(len(results), len(tasks), _target(row))

    pool = None
    completed = False
    try:
        if workers <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                done(i, run_task(task))
        else:
            ctx = multiprocessing.get_context("spawn")
            # one BLAS/OpenMP thread per worker: with N worker processes on N cores, the
            # default threaded BLAS oversubscribes and was measured 12x slower (bench_batch.py)
            saved_env = {k: os.environ.get(k) for k in _THREAD_VARS}
            for k in _THREAD_VARS:
                os.environ.setdefault(k, "1")
            # the workers are started by the submits below with Ctrl-C ignored, which they
            # inherit: a Ctrl-C while they import gives no traceback from them
            in_main = threading.current_thread() is threading.main_thread()
            saved_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
            try:
                pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                           initializer=_worker_init, initargs=(os.getpid(),))
                futures = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
            finally:
                if in_main:
                    signal.signal(signal.SIGINT, saved_int)
                for k, v in saved_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = futures[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a dead worker is one failed row
                        row = export.failed_row(f"worker: {_short(exc)}", file=tasks[i].image)
                    done(i, row)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            if completed:
                pool.shutdown(wait=True)
            else:
                _stop_pool(pool)
        if csv_path is not None:
            flush(force=True)
    if interrupted:
        raise BatchInterrupted(_summary(tasks, results, t0, True))
    return _summary(tasks, results, t0, False)


def _stop_pool(pool):
    """Cancel queued tasks and terminate this pool's own worker processes (running fits are
    abandoned: their rows are not written)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)


def _flat(results):
    """Rows of task results in order: a scene fit's task gives a list (target first)."""
    out = []
    for r in results:
        out.extend(r if isinstance(r, list) else [r])
    return out


def _target(result):
    return result[0] if isinstance(result, list) else result


def _summary(tasks, results, t0, interrupted):
    # counts are per task (the target's row); ``rows`` holds every row, a scene's sources too
    ordered = [results[i] for i in sorted(results)]
    kinds = [_classify(_target(r)) for r in ordered]
    rows = tuple(_flat(ordered))
    return BatchSummary(total=len(tasks), fitted=kinds.count("fitted"),
                        flagged=kinds.count("flagged"), failed=kinds.count("failed"),
                        elapsed=time.perf_counter() - t0, interrupted=interrupted, rows=rows)
