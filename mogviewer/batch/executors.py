"""Where jobs run: this process, a local process pool, or a Dask cluster, behind one interface.

An executor maps a function (:func:`mogviewer.batch.runner.run_job`: a pure function of a
picklable job that never raises for bad data and returns the job's rows) over jobs and yields
``(index, result)`` as each finishes, in completion order; the caller writes rows as they come.
All three honour the same contract:

* every job yields exactly one result (a job whose worker died is retried; after ``retries``
  failures it yields ``failed(job, reason)``), and a result is yielded once;
* ``close(abort=True)`` (Ctrl-C, an error in the caller) cancels what has not started and
  stops the workers that this executor started.

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

__all__ = ["SerialExecutor", "PoolExecutor", "DaskExecutor", "make_executor",
           "default_workers"]

#: One BLAS/OpenMP/numba thread per worker process: with N workers on N cores the default
#: threaded BLAS oversubscribes and was measured 12x slower (bench_batch.py).
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS")


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


def worker_init(parent_pid):
    """Initializer of every pool worker: ignore Ctrl-C (the parent handles it) and end with
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


class SerialExecutor:
    """In this process, one job after another."""

    name = "serial"

    def __init__(self, func, *, failed=None):
        self.func = func

    def map(self, jobs):
        for i, t in enumerate(jobs):
            yield i, self.func(t)

    def close(self, abort=False):
        pass


class PoolExecutor:
    """A local process pool of ``workers`` processes (``spawn``, one BLAS thread each, Ctrl-C
    ignored, ending with their parent).

    At most ``window`` jobs (default ``2 * workers``) are in flight at once, so the parent
    holds few pickled jobs and a worker that dies (killed, out of memory) costs little: a dead
    worker breaks the pool, and the unfinished jobs in flight are resubmitted to a fresh pool.
    A job in flight during ``retries + 1`` breaks yields ``failed(job, reason)``.
    """

    name = "processes"

    def __init__(self, func, workers=2, *, failed=None, retries=3, window=None):
        self.func = func
        self.failed = failed
        self.workers = int(workers)
        self.retries = int(retries)
        self.window = int(window or 2 * self.workers)
        self.pool = None

    def _new_pool(self):
        if self.pool is not None:
            self._stop()
        ctx = multiprocessing.get_context("spawn")
        # the workers start on the first submits with Ctrl-C ignored, which they inherit: a
        # Ctrl-C while they import gives no traceback from them
        in_main = threading.current_thread() is threading.main_thread()
        saved_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            with _single_threaded_children():
                self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                                initializer=worker_init,
                                                initargs=(os.getpid(),))
                # start every worker now, while the environment and SIGINT are set for them
                for f in [self.pool.submit(os.getpid) for _ in range(self.workers)]:
                    f.result()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, saved_int)

    def map(self, jobs):
        from concurrent.futures.process import BrokenProcessPool

        jobs = list(jobs)
        tries = [0] * len(jobs)
        todo = deque(range(len(jobs)))
        self._new_pool()
        inflight = {}
        while todo or inflight:
            while todo and len(inflight) < self.window:
                i = todo.popleft()
                inflight[self.pool.submit(self.func, jobs[i])] = i
            done, _ = wait(set(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for f in done:
                i = inflight.pop(f)
                try:
                    result = f.result()
                except BrokenProcessPool:
                    broken = True
                    tries[i] += 1
                    if tries[i] > self.retries:
                        yield i, self.failed(jobs[i], f"the worker process died {tries[i]} "
                                                      "times while this was running")
                    else:
                        todo.appendleft(i)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be pickled
                    yield i, self.failed(jobs[i], f"worker: {type(exc).__name__}: {exc}")
                    continue
                yield i, result
            if broken:
                # every future of a broken pool fails: put the rest back, start a fresh pool
                for i in inflight.values():
                    tries[i] += 1
                    todo.appendleft(i)
                inflight = {}
                self._new_pool()
        self.close()

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

    def close(self, abort=False):
        if self.pool is None:
            return
        if abort:
            self._stop()
        else:
            self.pool.shutdown(wait=True)
            self.pool = None


class DaskExecutor:
    """dask.distributed: a ``LocalCluster`` of ``workers`` single-threaded processes, or the
    cluster at ``scheduler`` (``tcp://host:port``).

    Jobs are submitted in a window (``4 * workers`` of the cluster at the start, at least 8)
    so that a large batch does not sit pickled in the scheduler. A worker that dies has its
    jobs rescheduled by Dask; an exception (which :func:`run_job` never raises for data) is
    retried ``retries`` times, then yields ``failed(job, reason)``.
    """

    name = "dask"

    def __init__(self, func, workers=2, *, scheduler=None, failed=None, retries=2,
                 window=None):
        from dask.distributed import Client, LocalCluster

        self.func = func
        self.failed = failed
        self.retries = retries
        self.cluster = None
        if scheduler is None:
            with _single_threaded_children():
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
        todo = deque(range(len(jobs)))
        index = {}
        seen = set()

        def submit():
            i = todo.popleft()
            f = self.client.submit(self.func, jobs[i], retries=self.retries, pure=False)
            index[f.key] = i
            return f

        ac = as_completed([submit() for _ in range(min(self.window, len(todo)))])
        try:
            for f in ac:
                i = index.pop(f.key)
                if todo:
                    ac.add(submit())
                if i in seen:              # a result is yielded once
                    continue
                seen.add(i)
                try:
                    result = f.result()
                except Exception as exc:   # noqa: BLE001 - the worker is gone: say so
                    result = self.failed(jobs[i], f"the Dask worker failed: "
                                                  f"{type(exc).__name__}: {str(exc)[:200]}")
                f.release()
                yield i, result
        finally:
            for f in list(ac.futures):
                f.cancel()

    def close(self, abort=False):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind, func, *, workers=1, scheduler=None, failed=None):
    """``'serial'``, ``'processes'`` or ``'dask'``; ``workers=1`` without Dask is serial.

    ``failed(job, reason)`` makes the result of a job whose worker died too often.
    """
    if kind == "dask" or scheduler is not None:
        return DaskExecutor(func, workers=max(workers, 1), scheduler=scheduler, failed=failed)
    if kind == "processes" and workers > 1:
        return PoolExecutor(func, workers=workers, failed=failed)
    return SerialExecutor(func, failed=failed)


def default_workers():
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # pragma: no cover - not Linux
        return os.cpu_count() or 1
