"""Compile the kernels ahead of use (or load them from numba's on-disk cache).

Apart from :mod:`mogviewer.render.kernels` because it compiles the fit's normal-equation kernel
(:mod:`mogviewer.render.normal`) too, which builds on the kernels.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

from .exact import _warm_exact
from .kernels import _DELTA_PACKED, _galaxy_kernel, _mixture_kernel, _scratch
from .normal import _warm_normal

__all__ = ["warmup", "register", "warm_tasks", "cancel_compiling", "default_jobs",
           "CompileFailed"]

_warm_lock = threading.Lock()
_warm = {"done": False}
#: Kernels of the layers above the renderer, by name: ``(warm function, entry kernel getter)``
_REGISTERED = {}


def register(name, warm, entry):
    """Have :func:`warmup` compile a layer's own kernels too, and
    :func:`mogviewer.render.compile_status` report them as ``name``: ``warm()`` compiles them,
    ``entry()`` returns the dispatcher whose cache says whether they are compiled. The fit
    driver (:mod:`mogviewer.fitting.solver`) registers itself when it is imported, so the
    renderer needs no import of the layer above it."""
    _REGISTERED[name] = (warm, entry)
    _warm["done"] = False


#: The renderer's own kernels, as one task of :func:`warmup` with ``jobs``
RENDERER = "renderer"


def _warm_renderer():
    out = np.zeros((6, 4, 4))
    one = np.ones(1)
    prof = np.ones((3, 1))
    for derivs in (False, True):
        _mixture_kernel(one, one * 1.5, one * 1.5, one, one * 0.1, one, one, out,
                        derivs, _scratch.full(4, 1))
        _galaxy_kernel(1.0, 1.5, 1.5, 1.0, 0.1, 1.0, prof, _DELTA_PACKED, out, derivs,
                       _scratch.full(4, 1), True)
    _warm_normal()
    _warm_exact()


def warm_tasks():
    """The compile work of :func:`warmup` as independent tasks, ``[(name, module), ...]``: the
    renderer's kernels, then each registered layer's (``module`` is where its warm function
    lives, imported by a process that runs the task so that the layer registers itself). The
    first tasks are the longest (about 45 s and 25 s cold, of 85 s in all, on the development
    machine)."""
    tasks = [(RENDERER, __name__)]
    layers = sorted(_REGISTERED.items(), key=lambda kv: kv[0] != "fit loop")  # longest first
    return tasks + [(name, warm.__module__) for name, (warm, _) in layers]


def _run_task(name, module):
    """Compile one task of :func:`warm_tasks` into numba's on-disk cache (in a worker process
    of :func:`warmup` with ``jobs``); returns its name."""
    importlib.import_module(module)
    if name == RENDERER:
        _warm_renderer()
    else:
        _REGISTERED[name][0]()
    return name


#: compiling processes of this process (``subprocess.Popen``), and whether
#: :func:`cancel_compiling` was called
_PROCS = []
_CANCELLED = threading.Event()
_THREAD_NAME = "mogviewer-numba-warmup"

# what a compiling process runs: its share of warm_tasks(), given as JSON; it ends itself
# when its parent (argv[2]) is gone (killed, or ended by os._exit before it could end them:
# the processes run in a session of their own, where no terminal's hang-up reaches them)
_CHILD = ("import json, os, sys, threading, time\n"
          "def _watch(parent=int(sys.argv[2])):\n"
          "    while os.getppid() == parent:\n"
          "        time.sleep(0.5)\n"
          "    os._exit(1)\n"
          "threading.Thread(target=_watch, daemon=True).start()\n"
          "from mogviewer.render.warm import _run_task\n"
          "for name, module in json.loads(sys.argv[1]):\n"
          "    _run_task(name, module)\n")


class CompileFailed(RuntimeError):
    """A compiling process of :func:`warmup` with ``jobs`` failed (or could not start):
    :func:`warmup` then compiles in its own process, as with one job."""


def _shares(tasks, jobs):
    """``tasks`` dealt to ``jobs`` processes: the first (the renderer's, the longest) alone,
    the rest in turn to the others (two processes: 42 s and 44 s on the development
    machine)."""
    if jobs <= 1 or len(tasks) <= 1:
        return [tasks]
    shares = [[tasks[0]]] + [[] for _ in range(min(jobs, len(tasks)) - 1)]
    for i, t in enumerate(tasks[1:]):
        shares[1 + i % (len(shares) - 1)].append(t)
    return shares


def _child_env():
    """The environment of a compiling process: this process's ``sys.path`` (absolute, the
    directory holding this mogviewer first) as PYTHONPATH, so that the child imports the same
    mogviewer and modules; with ``-P`` (below) the child's working directory is not on it."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [here]
    for p in sys.path:
        if p and os.pathsep not in p:
            p = os.path.abspath(p)
            if p not in path:
                path.append(p)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def _compile_in_processes(jobs):
    """Run :func:`warm_tasks` in ``jobs`` fresh Python processes (:func:`_shares`), which
    write numba's on-disk cache; this process then loads from it. numba compiles in one
    thread, so a cold start with two processes takes about half the time of one (45 s against
    85 s on two cores). Callees shared by two tasks may be compiled by both; the cache files
    are replaced atomically, so the only cost is that time.

    Plain processes (``python -P -c``), not a multiprocessing pool: nothing to report as
    leaked when the caller ends with ``os._exit``, and each in its own session, so a Ctrl-C in
    the terminal reaches only this process, which ends them (and each ends itself if this
    process is gone). Returns True when all succeeded, False when :func:`cancel_compiling`
    ended them first; raises :class:`CompileFailed` (the others ended at once) with a failed
    process's last line of stderr."""
    if _CANCELLED.is_set():
        return False
    env = _child_env()
    procs = []
    try:
        for share in _shares(warm_tasks(), jobs):
            # stderr to a file: a pipe nobody reads while waiting could fill and block it
            err = tempfile.TemporaryFile()
            try:
                p = subprocess.Popen(
                    [sys.executable, "-P", "-c", _CHILD, json.dumps(share), str(os.getpid())],
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                    start_new_session=True)
            except OSError as exc:
                err.close()
                raise CompileFailed(f"cannot start {sys.executable}: {exc}") from None
            p.err = err
            procs.append(p)
            _PROCS.append(p)
        while not _CANCELLED.is_set():
            codes = [p.poll() for p in procs]
            failed = [p for p, c in zip(procs, codes) if c not in (None, 0)]
            if failed:
                p = failed[0]
                p.err.seek(0)
                text = p.err.read().decode(errors="replace").strip()
                last = text.splitlines()[-1] if text else f"exit status {p.returncode}"
                raise CompileFailed(f"compiling the kernels failed in a worker process: {last}")
            if all(c == 0 for c in codes):
                return True
            time.sleep(0.1)
        return False                        # (it may have ended them all since the test)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.err.close()
            _PROCS.remove(p)


def cancel_compiling():
    """End the processes of a :func:`warmup` with ``jobs`` that are still compiling (an app
    that quits during its first start would otherwise leave them running for up to a
    minute); that warm-up then returns without marking the kernels ready. Cache files are
    written whole or not at all, so what was compiled stays. A later :func:`warmup` starts
    afresh."""
    _CANCELLED.set()
    for p in list(_PROCS):
        if p.poll() is None:
            p.kill()


def default_jobs(limit=2):
    """Compiling processes for :func:`warmup`: the CPUs this process may use, at most
    ``limit``; 1 for a frozen executable (no Python to start)."""
    if getattr(sys, "frozen", False):
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(limit, n))


@contextlib.contextmanager
def _machine_lock():
    """Held while a warm-up compiles: one process of this user and install at a time, the
    others wait and then load what it compiled (a batch's workers, two app windows, the
    suite's processes on a cold cache each compiled the same kernels side by side: with
    ``jobs`` that was two compiling processes each). An exclusive ``flock`` on a file in the
    temporary directory, released when the holder ends however it ends; no lock where there
    is no ``fcntl`` (Windows) or no writable temporary directory."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    key = hashlib.sha1(os.path.dirname(os.path.abspath(__file__)).encode()).hexdigest()[:12]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"mogviewer-compile-{uid}-{key}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def warmup(*, background=False, jobs=1):
    """Compile (or load from numba's on-disk cache) the kernels, those of a fit's normal
    equations too (:mod:`mogviewer.render.normal`); :func:`mogviewer.render.compile_status`
    says beforehand whether this will compile.

    With ``background=True`` this runs in a daemon thread and returns the thread at once, so an
    app can start while the kernels compile; the first render waits for it if needed.

    With ``jobs`` > 1 and kernels to compile, the compiling is shared among that many fresh
    processes (:func:`warm_tasks`), then this process loads the result from the cache: a cold
    start takes about half the time on two cores (:func:`default_jobs`). A command line's
    first run, the app's first start and ``make test`` use it. If a compiling process fails
    (:class:`CompileFailed`), a RuntimeWarning says so and this process compiles itself.
    """
    _CANCELLED.clear()          # a cancel from now on counts (an earlier one is history)

    def _load():
        _warm_renderer()
        for warm, _ in list(_REGISTERED.values()):   # the fit driver's small kernels
            warm()
        _warm["done"] = True

    def _go():
        from .status import kernels_ready
        with _warm_lock:
            if _warm["done"]:
                return
            if kernels_ready():                 # in numba's cache: loaded in a second or two
                _load()
                return
            with _machine_lock():               # one process compiles, the others wait
                if jobs > 1 and not kernels_ready():    # (or another process did it)
                    try:
                        if not _compile_in_processes(jobs):
                            return              # cancelled: the process is ending
                    except CompileFailed as exc:
                        warnings.warn(f"{exc}; compiling in this process instead",
                                      RuntimeWarning, stacklevel=2)
                _load()

    if background:
        th = threading.Thread(target=_go, name=_THREAD_NAME, daemon=True)
        th.start()
        return th
    _go()
    return None
