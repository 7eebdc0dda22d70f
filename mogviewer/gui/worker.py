"""Run the fit (and other slow engine calls) in a worker thread.

The fit is a plain function with a callback and a stop flag (:func:`mogviewer.fitting.fit`); the
:class:`FitWorker` only bridges it to Qt signals. It sends immutable snapshots
(:class:`~mogviewer.fitting.FitProgress`, :class:`~mogviewer.fitting.FitResult`) and never
touches a widget: only the GUI thread does.
"""

from __future__ import annotations

import threading
import time
import traceback

from PyQt5 import QtCore

from . import engine


class FitWorker(QtCore.QObject):
    """Runs one fit in its thread. Signals carry immutable snapshots.

    Signals
    -------
    progressed(FitProgress) : once per optimiser iteration.
    finished(FitResult) : the fit ended (converged, cancelled or not converged).
    failed(str) : the fit could not start or raised (message for people).
    """

    progressed = QtCore.pyqtSignal(object)
    finished = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, problem, start):
        super().__init__()
        self.problem = problem
        self.start = start
        self._stop = threading.Event()

    def request_stop(self):
        """Thread-safe: the fit stops at its next iteration (status 'cancelled')."""
        self._stop.set()

    @QtCore.pyqtSlot()
    def run(self):
        try:
            result = engine.run_fit(self.problem, self.start, callback=self.progressed.emit,
                                    should_stop=self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never a crash
            if engine.is_user_error(exc):      # written for people: no traceback
                self.failed.emit(str(exc))
            else:
                self.failed.emit(f"{type(exc).__name__}: {exc}\n\n"
                                 f"{traceback.format_exc(limit=4)}")
            return
        self.finished.emit(result)


class SampleWorker(QtCore.QObject):
    """Samples the posterior around a fit (:func:`mogviewer.sampling.sample`) in its thread.

    Signals
    -------
    progressed(tuple) : ``(step, n_steps, elapsed_s)`` every 50 steps.
    finished(Posterior) : the run ended (complete, or stopped early by Cancel).
    failed(str) : the run could not start or raised (message for people).
    """

    progressed = QtCore.pyqtSignal(object)
    finished = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, problem, result, *, n_steps, zeropoint=None):
        super().__init__()
        self.problem, self.result = problem, result
        self.n_steps, self.zeropoint = int(n_steps), zeropoint
        self._stop = threading.Event()

    def request_stop(self):
        """Thread-safe: the run stops after its current step."""
        self._stop.set()

    @QtCore.pyqtSlot()
    def run(self):
        t0 = time.perf_counter()
        try:
            post = engine.run_sample(
                self.problem, self.result, n_steps=self.n_steps, zeropoint=self.zeropoint,
                progress=lambda done, total: self.progressed.emit(
                    (int(done), int(total), time.perf_counter() - t0)),
                should_stop=self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never a crash
            if engine.is_user_error(exc):
                self.failed.emit(str(exc))
            else:
                self.failed.emit(f"{type(exc).__name__}: {exc}\n\n"
                                 f"{traceback.format_exc(limit=4)}")
            return
        self.finished.emit(post)


class SceneFitWorker(QtCore.QObject):
    """Fits the target with the other sources of the scene (:func:`.engine.run_scene_fit`).

    ``finished`` carries ``(FitResult, neighbours, SceneFitResult)``; ``progressed`` is not
    emitted (the scene fit has no per-iteration callback: the progress bar stays busy)."""

    progressed = QtCore.pyqtSignal(object)
    finished = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, job):
        super().__init__()
        self.job = job
        self._stop = threading.Event()

    def request_stop(self):
        self._stop.set()

    @QtCore.pyqtSlot()
    def run(self):
        try:
            out = self.job(self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never a crash
            if engine.is_user_error(exc):
                self.failed.emit(str(exc))
            else:
                self.failed.emit(f"{type(exc).__name__}: {exc}\n\n"
                                 f"{traceback.format_exc(limit=4)}")
            return
        self.finished.emit(out)


class FitRunner(QtCore.QObject):
    """Owns the thread of the current fit; at most one fit runs at a time.

    Signals mirror :class:`FitWorker`'s, re-emitted in the GUI thread, plus ``started()``.
    """

    started = QtCore.pyqtSignal()
    progressed = QtCore.pyqtSignal(object)
    finished = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = None
        self._worker = None
        self.n_progress = 0

    @property
    def running(self):
        return self._thread is not None

    def start(self, problem, start, *, worker=None):
        """Run a fit of ``problem`` from ``start``, or any ``worker`` with the signals and
        ``request_stop`` of :class:`FitWorker` (a :class:`SampleWorker`)."""
        if self.running:
            return False
        self.n_progress = 0
        th = QtCore.QThread()
        th.setObjectName("mogviewer-fit")
        w = worker if worker is not None else FitWorker(problem, start)
        w.moveToThread(th)
        th.started.connect(w.run)
        w.progressed.connect(self._on_progress, QtCore.Qt.QueuedConnection)
        w.finished.connect(self._on_finished, QtCore.Qt.QueuedConnection)
        w.failed.connect(self._on_failed, QtCore.Qt.QueuedConnection)
        self._thread, self._worker = th, w
        th.start()
        self.started.emit()
        return True

    def cancel(self):
        if self._worker is not None:
            self._worker.request_stop()

    def _cleanup(self):
        # the worker emitted its last signal and is returning from run(): wait for its thread
        # to end *before* the last references to the thread and the worker go (a QObject
        # deleted here while its thread still runs its last lines aborts the process:
        # "pure virtual method called", seen in full test runs on a loaded machine)
        th, w = self._thread, self._worker
        if th is not None:
            th.quit()
            th.wait()
        self._thread = self._worker = None
        del w

    def _on_progress(self, snap):
        if self._worker is None:
            return
        self.n_progress += 1
        self.progressed.emit(snap)

    def _on_finished(self, result):
        self._cleanup()
        self.finished.emit(result)

    def _on_failed(self, msg):
        self._cleanup()
        self.failed.emit(msg)

    def shutdown(self):
        """Stop and join (window closing)."""
        if self._worker is not None:
            self._worker.request_stop()
        th, w = self._thread, self._worker
        if th is not None:
            th.quit()
            th.wait()       # the stop flag ends the run; a QThread destroyed running aborts
        self._thread = self._worker = None
        del w


class TaskWorker(QtCore.QObject):
    """Run ``fn()`` in a thread; ``done(result)`` or ``failed(exception)`` in the GUI thread."""

    done = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(object)

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    @QtCore.pyqtSlot()
    def run(self):
        try:
            out = self.fn()
        except Exception as exc:  # noqa: BLE001 - delivered to the GUI thread
            self.failed.emit(exc)
            return
        self.done.emit(out)


class _Relay(QtCore.QObject):
    """Lives in the GUI thread: receives a task's queued signals and calls back there."""

    def __init__(self, owner, thread, on_done, on_error):
        super().__init__(owner)
        self.owner, self._th, self.on_done, self.on_error = owner, thread, on_done, on_error

    @QtCore.pyqtSlot(object)
    def done(self, value):
        self._finish(self.on_done, value)

    @QtCore.pyqtSlot(object)
    def error(self, exc):
        self._finish(self.on_error, exc)

    def _finish(self, cb, value):
        # the task emitted its last signal: wait for its thread to end before the thread and
        # the worker are released (released earlier, the worker is deleted under its running
        # thread and the process aborts)
        self._th.quit()
        self._th.wait()
        self.owner._live.pop(self, None)
        self.deleteLater()
        cb(value)


class Tasks(QtCore.QObject):
    """Keeps background tasks (PSF fits) alive until they finish."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._live = {}

    def run(self, fn, on_done, on_error):
        th = QtCore.QThread()
        w = TaskWorker(fn)
        w.moveToThread(th)
        relay = _Relay(self, th, on_done, on_error)
        self._live[relay] = (th, w)
        w.done.connect(relay.done, QtCore.Qt.QueuedConnection)
        w.failed.connect(relay.error, QtCore.Qt.QueuedConnection)
        th.started.connect(w.run)
        th.start()
        return relay

    @property
    def pending(self):
        return len(self._live)

    def shutdown(self):
        # wait for each task to end: a QThread destroyed while its task runs (a corner plot
        # drawn on a loaded machine took longer than any fixed timeout) aborts the process
        for th, _ in list(self._live.values()):
            th.quit()
            th.wait()
        self._live.clear()
