"""Where tasks run: this process, a local process pool, or a Dask cluster, behind one interface.

An executor maps :func:`~mogviewer.batch.run_task` (a pure function of a picklable task that
never raises for bad data) over tasks and yields ``(index, row)`` as each finishes, in
completion order; the caller writes rows as they come. All three honour the same contract:

* every task yields exactly one row (a task whose worker died is retried; after
  ``retries`` failures it yields a failed row saying so), and a row is yielded once;
* closing the generator (Ctrl-C, an error in the caller) cancels what has not started.

``DaskExecutor`` uses dask.distributed: ``DaskExecutor()`` starts a ``LocalCluster`` on this
machine, ``DaskExecutor(scheduler="tcp://host:8786")`` joins a running cluster (for example
one started by dask-jobqueue on SLURM: see the README).
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

__all__ = ["SerialExecutor", "PoolExecutor", "DaskExecutor", "make_executor"]


def _failed(task, reason):
    from .. import export
    return export.failed_row(reason, file=getattr(task, "image", None))


class SerialExecutor:
    """In this process, one task after another."""

    name = "serial"

    def __init__(self, func):
        self.func = func

    def map(self, tasks):
        for i, t in enumerate(tasks):
            yield i, self.func(t)

    def close(self):
        pass


class PoolExecutor:
    """A local process pool (``workers`` processes). A worker that dies (killed, out of
    memory) breaks the pool: its unfinished tasks are resubmitted to a fresh pool."""

    name = "processes"

    def __init__(self, func, workers=2, *, initializer=None, retries=2):
        self.func = func
        self.workers = int(workers)
        self.initializer = initializer
        self.retries = retries
        self.pool = None

    def _new_pool(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=self.initializer)

    def map(self, tasks):
        from concurrent.futures.process import BrokenProcessPool

        tasks = list(tasks)
        tries = [0] * len(tasks)
        todo = list(range(len(tasks)))
        self._new_pool()
        try:
            while todo:
                futures = {self.pool.submit(self.func, tasks[i]): i for i in todo}
                todo = []
                pending = set(futures)
                broken = False
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        i = futures[f]
                        try:
                            row = f.result()
                        except BrokenProcessPool:
                            broken = True
                            tries[i] += 1
                            if tries[i] > self.retries:
                                yield i, _failed(tasks[i], f"the worker process died "
                                                           f"{tries[i]} times on this file")
                            else:
                                todo.append(i)
                            continue
                        yield i, row
                if broken:
                    self._new_pool()
        finally:
            self.close()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


class DaskExecutor:
    """dask.distributed: a ``LocalCluster`` of ``workers`` single-threaded processes, or the
    cluster at ``scheduler``. Lost workers' tasks are retried by Dask (``retries``)."""

    name = "dask"

    def __init__(self, func, workers=2, *, scheduler=None, retries=2):
        from dask.distributed import Client, LocalCluster

        self.func = func
        self.retries = retries
        self.cluster = None
        if scheduler is None:
            self.cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                        processes=True, dashboard_address=None,
                                        silence_logs=40)
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler)

    def map(self, tasks):
        from dask.distributed import as_completed

        tasks = list(tasks)
        futures = self.client.map(self.func, tasks, retries=self.retries, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        seen = set()
        try:
            for f in as_completed(futures):
                i = index[f.key]
                if i in seen:              # a row is yielded once
                    continue
                seen.add(i)
                try:
                    row = f.result()
                except Exception as exc:   # noqa: BLE001 - the worker is gone: say so
                    row = _failed(tasks[i], f"the Dask worker failed: {type(exc).__name__}: "
                                            f"{str(exc)[:200]}")
                yield i, row
        finally:
            for f in futures:
                f.cancel()

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind, func, *, workers=1, scheduler=None, initializer=None):
    """``'serial'``, ``'processes'`` or ``'dask'``; ``workers=1`` without Dask is serial."""
    if kind == "dask" or scheduler is not None:
        return DaskExecutor(func, workers=max(workers, 1), scheduler=scheduler)
    if kind == "processes" and workers > 1:
        return PoolExecutor(func, workers=workers, initializer=initializer)
    return SerialExecutor(func)


def default_workers():
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # pragma: no cover - not Linux
        return os.cpu_count() or 1
