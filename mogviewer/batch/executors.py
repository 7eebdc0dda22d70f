"""Where jobs run: this process, a local process pool, or a Dask cluster, behind one interface.

An executor maps a function (:func:`mogviewer.batch.runner.run_job`: a pure function of a
picklable job that never raises for bad data and returns the job's rows) over jobs and yields
``(index, result)`` as each finishes, in completion order; the caller writes rows as they come.
All three honour the same contract:

* every job yields exactly one result (a job whose worker died is retried; after ``retries``
  failures it yields ``failed(job, reason)``), and a result is yielded once;
* ``close(abort=True)`` (Ctrl-C, an error in the caller) cancels what has not started and
  stops the workers that this executor started.

Jobs travel in *chunks* (``chunk`` consecutive jobs per submitted task, 1 by default; the
runner groups one-file jobs, see :func:`chunk_size`): one pickled message and one future per
chunk instead of per job. A chunk whose worker died is split and its jobs are retried one by
one, so a job that kills its worker takes no other job's row with it.

The pool's workers start from a *fork server* where the platform has one (Linux, macOS): a
clean process, started once per program with one BLAS thread and Ctrl-C ignored, that imports
mogviewer and loads numba's compiled kernels once (:mod:`mogviewer.batch.worker`); each worker
is a fork of it and starts in milliseconds, where a ``spawn`` worker paid about 2 CPU-seconds of
imports and kernel loading. The fork server never holds Qt or threads of the calling program
(a plain ``fork`` of the caller would copy them), and :func:`prestart` starts it early, so that
its imports overlap the caller's own planning.

``DaskExecutor`` uses dask.distributed: ``DaskExecutor()`` starts a ``LocalCluster`` on this
machine, ``DaskExecutor(scheduler="tcp://host:8786")`` joins a running cluster (for example
one started by dask-jobqueue on SLURM: see the README). Dask itself reschedules the tasks of a
worker that dies; a task that kills ``distributed.scheduler.allowed-failures`` + 1 workers
comes back as a failed result.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .. import _blas

__all__ = ["SerialExecutor", "PoolExecutor", "DaskExecutor", "make_executor",
           "default_workers", "prestart", "stop_unused_server", "start_method",
           "chunk_size"]

#: One BLAS/OpenMP/numba thread per worker process: with N workers on N cores the default
#: threaded BLAS oversubscribes and was measured 12x slower (bench_batch.py).
#: The BLAS/OpenMP variables are those :mod:`mogviewer._blas` sets for the parent.
_THREAD_VARS = _blas.THREAD_VARS + ("NUMBA_NUM_THREADS",)


class _single_threaded_children:
    """Context: the thread variables set to 1 (unless the user set them) while workers are
    started, then restored, so this process keeps its own settings."""

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        for k in _THREAD_VARS:
            os.environ.setdefault(k, "1")

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_init(parent_pid, alive=None):
    """Initializer of every pool worker: ignore Ctrl-C (the parent handles it) and end with
    the parent ``parent_pid`` (the process that runs the batch), however it ends (SIGTERM,
    SIGKILL, a crash). On Linux the kernel sends SIGKILL when the worker's own parent dies
    (``prctl(PR_SET_PDEATHSIG)``: the batch's process under ``spawn``, the fork server under
    ``forkserver``). Everywhere a watchdog thread waits on ``alive``, the read end of a pipe
    whose only write end the batch's process holds: it reads end-of-file the moment that
    process ends (even before it is reaped), and the worker exits. (A fork server outlives
    the batch's process while its workers live, so under it the pipe is what ends them.)
    Without ``alive`` the watchdog polls ``os.getppid()`` twice a second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    ppid = os.getppid()
    if ppid == 1 or (alive is None and ppid != parent_pid):  # the parent died already
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(ppid, alive), daemon=True,
                     name="mogviewer-parent-watchdog").start()


def _watch_parent(ppid, alive, interval=0.5):
    if alive is not None:
        from multiprocessing.connection import wait as wait_for

        wait_for([alive])       # nothing is ever sent: this returns at end-of-file
        os._exit(1)             # orphaned: no cleanup to do, the parent owns every output file
    while True:
        time.sleep(interval)
        if os.getppid() != ppid:
            os._exit(1)


# ---------------------------------------------------------------------------------------------
# how pool workers start
# ---------------------------------------------------------------------------------------------

#: What the fork server imports before forking workers: mogviewer's batch, fitting and I/O
#: modules, with numba's kernels loaded (:mod:`mogviewer.batch.worker`).
PRELOAD = ("mogviewer.batch.worker",)


def start_method():
    """``'forkserver'`` where the platform has it (Linux, macOS), else ``'spawn'``; the
    environment variable ``MOGVIEWER_START_METHOD`` (``spawn``, ``forkserver``) overrides it
    (for comparisons: ``benchmarks/bench_survey.py --start-method``)."""
    methods = multiprocessing.get_all_start_methods()
    wanted = os.environ.get("MOGVIEWER_START_METHOD", "").strip().lower()
    if wanted in ("spawn", "forkserver") and wanted in methods:
        return wanted
    return "forkserver" if "forkserver" in methods else "spawn"


class _quiet_children:
    """Context: thread variables set to 1 (:class:`_single_threaded_children`) and, in the
    main thread, Ctrl-C ignored, while child processes are started: the children inherit
    both (a Ctrl-C while they import gives no traceback from them)."""

    def __enter__(self):
        self.env = _single_threaded_children()
        self.env.__enter__()
        self.in_main = threading.current_thread() is threading.main_thread()
        self.saved = signal.signal(signal.SIGINT, signal.SIG_IGN) if self.in_main else None

    def __exit__(self, *exc):
        if self.in_main:
            signal.signal(signal.SIGINT, self.saved)
        self.env.__exit__(*exc)


def prestart():
    """Start the fork server now (if the pool will use one and it is not running), so that its
    imports and kernel loading (about 2 CPU-seconds) overlap the caller's own work, e.g.
    reading a catalogue and planning its jobs. Returns at once; harmless to call twice."""
    if start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    with _quiet_children():
        _set_preload()
        before = getattr(forkserver._forkserver, "_forkserver_pid", None)
        forkserver.ensure_running()
    pid = forkserver._forkserver._forkserver_pid
    if pid != before:       # started now (or restarted: the one before had ended)
        _UNUSED_SERVER[:] = [pid]


#: The fork server :func:`prestart` started, until a pool uses it
_UNUSED_SERVER = []


def stop_unused_server():
    """Stop the fork server :func:`prestart` started if no pool has used it: a command that
    ended before its pool (an option or file refused, a single job run in-process, Ctrl-C)
    would otherwise leave it finishing its imports, or a first run's compiling, alone. A
    server that a pool used stays (it ends with this process, or serves the next pool)."""
    if not _UNUSED_SERVER:
        return
    from multiprocessing import forkserver

    pid = _UNUSED_SERVER.pop()
    fs = forkserver._forkserver
    if getattr(fs, "_forkserver_pid", None) != pid:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    getattr(fs, "_stop", lambda: None)()     # closes its pipe and reaps it


def _set_preload():
    from multiprocessing import forkserver

    # the preload list is read when the server starts: set it unless a server runs already
    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:
        forkserver.set_forkserver_preload(list(PRELOAD))


def _run_chunk(func, jobs):
    """``[func(job) for job in jobs]``: one submitted task, the results of a chunk of jobs."""
    return [func(job) for job in jobs]


def chunk_size(n_jobs, workers, *, per_worker=8, most=32):
    """Jobs per submitted chunk: ``n_jobs / (per_worker * workers)`` (so that every worker gets
    about ``per_worker`` chunks and none waits long at the end), at least 1, at most ``most``."""
    return int(max(1, min(most, n_jobs // max(1, per_worker * workers))))


def _chunks(n, size):
    return deque(tuple(range(k, min(k + size, n))) for k in range(0, n, size))


class SerialExecutor:
    """In this process, one job after another."""

    name = "serial"

    def __init__(self, func, *, failed=None, chunk=1):
        self.func = func

    def map(self, jobs):
        for i, t in enumerate(jobs):
            yield i, self.func(t)

    def close(self, abort=False):
        pass


class PoolExecutor:
    """A local process pool of ``workers`` processes (forked from the fork server, or
    ``spawn`` where there is none: :func:`start_method`; one BLAS thread each, Ctrl-C ignored,
    ending with their parent).

    Jobs are submitted ``chunk`` at a time; at most ``window`` chunks (default
    ``2 * workers``) are in flight at once, so the parent holds few pickled jobs and a worker
    that dies (killed, out of memory) costs little: a dead worker breaks the pool, the chunks
    in flight are split into single jobs and resubmitted to a fresh pool. A job in flight
    during ``retries + 1`` breaks yields ``failed(job, reason)``.
    """

    name = "processes"

    def __init__(self, func, workers=2, *, failed=None, retries=3, window=None, chunk=1):
        self.func = func
        self.failed = failed
        self.workers = int(workers)
        self.retries = int(retries)
        self.window = int(window or 2 * self.workers)
        self.chunk = max(1, int(chunk))
        self.method = start_method()
        self.pool = None

    def _new_pool(self):
        if self.pool is not None:
            self._stop()
        ctx = multiprocessing.get_context(self.method)
        # the workers' lifeline: they get the read end; the write end stays here, unused,
        # until this pool ends (or this process does)
        alive_r, self._alive_w = ctx.Pipe(duplex=False)
        _UNUSED_SERVER.clear()      # the fork server (if any) serves this pool now
        with _quiet_children():
            if self.method == "forkserver":
                _set_preload()
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                            initializer=worker_init,
                                            initargs=(os.getpid(), alive_r))
            # start every worker now, while the environment and SIGINT are set for them
            for f in [self.pool.submit(os.getpid) for _ in range(self.workers)]:
                f.result()
        self._alive_r = alive_r     # kept: a worker the pool starts later gets it too

    def map(self, jobs):
        from concurrent.futures.process import BrokenProcessPool

        jobs = list(jobs)
        tries = [0] * len(jobs)
        todo = _chunks(len(jobs), self.chunk)
        self._new_pool()
        inflight = {}
        while todo or inflight:
            broken = False
            while todo and len(inflight) < self.window:
                part = todo.popleft()
                try:
                    f = self.pool.submit(_run_chunk, self.func, [jobs[i] for i in part])
                except BrokenProcessPool:
                    # a worker died after the last wait: the pool refuses new work before
                    # its futures fail (seen in 3 of 9 runs of the kill tests). Not run: no
                    # try counted; the chunks in flight are handled below
                    todo.appendleft(part)
                    broken = True
                    break
                inflight[f] = part
            done = () if broken else wait(set(inflight), return_when=FIRST_COMPLETED)[0]
            for f in done:
                part = inflight.pop(f)
                try:
                    results = f.result()
                except BrokenProcessPool:
                    broken = True
                    yield from self._retry(part, tries, todo, jobs)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be pickled
                    for i in part:
                        yield i, self.failed(jobs[i], f"worker: {type(exc).__name__}: {exc}")
                    continue
                yield from zip(part, results)
            if broken:
                # every future of a broken pool fails (those that finished first keep their
                # results): put the rest back, start a fresh pool
                for f, part in inflight.items():
                    if f.done() and not f.cancelled() and f.exception() is None:
                        yield from zip(part, f.result())
                    else:
                        yield from self._retry(part, tries, todo, jobs)
                inflight = {}
                self._new_pool()
        self.close()

    def _retry(self, part, tries, todo, jobs):
        """The jobs of a chunk whose worker died: back in the queue one by one (in front, in
        order), or failed after ``retries`` deaths."""
        again = []
        for i in part:
            tries[i] += 1
            if tries[i] > self.retries:
                yield i, self.failed(jobs[i], f"the worker process died {tries[i]} times "
                                              "while this was running")
            else:
                again.append((i,))
        todo.extendleft(reversed(again))

    def _stop(self):
        """Cancel queued jobs and terminate this pool's own worker processes (running jobs
        are abandoned: their rows are not written)."""
        pool, self.pool = self.pool, None
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
        self._alive_w.close()
        self._alive_r.close()

    def close(self, abort=False):
        if self.pool is None:
            return
        if abort:
            self._stop()
        else:
            self.pool.shutdown(wait=True)
            self.pool = None
            self._alive_w.close()
            self._alive_r.close()


class DaskExecutor:
    """dask.distributed: a ``LocalCluster`` of ``workers`` single-threaded processes, or the
    cluster at ``scheduler`` (``tcp://host:port``).

    Jobs are submitted ``chunk`` at a time (one Dask task per chunk), in a window
    (``4 * workers`` of the cluster at the start, at least 8) so that a large batch does not
    sit pickled in the scheduler. A worker that dies has its tasks rescheduled by Dask; an
    exception (which :func:`run_job` never raises for data) is retried ``retries`` times, then
    yields ``failed(job, reason)`` for the chunk's jobs. A ``LocalCluster``'s workers are
    forked from the fork server (see :func:`start_method`), which has imported
    ``distributed`` and mogviewer and loaded numba's kernels; a remote cluster's workers load
    them on their first task (``--preload mogviewer.batch.worker`` on ``dask worker`` does it
    at start-up).
    """

    name = "dask"

    def __init__(self, func, workers=2, *, scheduler=None, failed=None, retries=2,
                 window=None, chunk=1):
        import dask
        from dask.distributed import Client, LocalCluster

        self.func = func
        self.failed = failed
        self.retries = retries
        self.chunk = max(1, int(chunk))
        self.cluster = None
        if scheduler is None:
            method = start_method()
            with _quiet_children():
                if method == "forkserver":
                    from multiprocessing import forkserver

                    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:
                        forkserver.set_forkserver_preload([*PRELOAD, "distributed"])
                    forkserver.ensure_running()
                with dask.config.set({"distributed.worker.multiprocessing-method": method}):
                    self.cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                                processes=True, dashboard_address=None,
                                                silence_logs=40)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(scheduler, timeout=20)
            except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError...
                from ..errors import UserError
                raise UserError(f"cannot connect to the Dask scheduler at {scheduler}: "
                                f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]} "
                                "(is it running, and is the address tcp://host:port?)") \
                    from None
        n = max(1, len(self.client.scheduler_info().get("workers", {})) or int(workers))
        self.window = int(window or max(8, 4 * n))

    def map(self, jobs):
        from dask.distributed import as_completed

        jobs = list(jobs)
        todo = _chunks(len(jobs), self.chunk)
        index = {}
        seen = set()

        def submit():
            part = todo.popleft()
            f = self.client.submit(_run_chunk, self.func, [jobs[i] for i in part],
                                   retries=self.retries, pure=False)
            index[f.key] = part
            return f

        ac = as_completed([submit() for _ in range(min(self.window, len(todo)))])
        try:
            for f in ac:
                part = index.pop(f.key)
                if todo:
                    ac.add(submit())
                try:
                    results = f.result()
                except Exception as exc:   # noqa: BLE001 - the worker is gone: say so
                    reason = (f"the Dask worker failed: {type(exc).__name__}: "
                              f"{str(exc)[:200]}")
                    results = [self.failed(jobs[i], reason) for i in part]
                f.release()
                for i, result in zip(part, results):
                    if i in seen:          # a result is yielded once
                        continue
                    seen.add(i)
                    yield i, result
        finally:
            for f in list(ac.futures):
                f.cancel()

    def close(self, abort=False):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind, func, *, workers=1, scheduler=None, failed=None, chunk=1):
    """``'serial'``, ``'processes'`` or ``'dask'``; ``workers=1`` without Dask is serial.

    ``failed(job, reason)`` makes the result of a job whose worker died too often; ``chunk``
    jobs travel together (one submit, one future).
    """
    if kind == "dask" or scheduler is not None:
        return DaskExecutor(func, workers=max(workers, 1), scheduler=scheduler, failed=failed,
                            chunk=chunk)
    if kind == "processes" and workers > 1:
        return PoolExecutor(func, workers=workers, failed=failed, chunk=chunk)
    return SerialExecutor(func, failed=failed)


def default_workers():
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # pragma: no cover - not Linux
        return os.cpu_count() or 1
