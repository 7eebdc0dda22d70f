"""Compile the kernels ahead of use (or load them from numba's on-disk cache).

Apart from :mod:`mogviewer.render.kernels` because it compiles the fit's normal-equation kernel
(:mod:`mogviewer.render.normal`) too, which builds on the kernels.
"""

from __future__ import annotations

import importlib
import threading

import numpy as np

from .exact import _warm_exact
from .kernels import _DELTA_PACKED, _galaxy_kernel, _mixture_kernel, _scratch
from .normal import _warm_normal

__all__ = ["warmup", "register", "warm_tasks"]

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


def _compile_in_processes(jobs):
    """Run :func:`warm_tasks` in ``jobs`` fresh processes, which write numba's on-disk cache;
    this process then loads from it. numba compiles in one thread, so a cold start with two
    processes takes about half the time of one (45 s against 85 s on two cores). Callees
    shared by two tasks may be compiled by both; the cache files are replaced atomically, so
    the only cost is that time."""
    import concurrent.futures as cf
    import multiprocessing as mp

    tasks = warm_tasks()
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(tasks)),
                                mp_context=mp.get_context("spawn")) as pool:
        for f in [pool.submit(_run_task, name, module) for name, module in tasks]:
            f.result()


def warmup(*, background=False, jobs=1):
    """Compile (or load from numba's on-disk cache) the kernels, those of a fit's normal
    equations too (:mod:`mogviewer.render.normal`); :func:`mogviewer.render.compile_status`
    says beforehand whether this will compile.

    With ``background=True`` this runs in a daemon thread and returns the thread at once, so an
    app can start while the kernels compile; the first render waits for it if needed.

    With ``jobs`` > 1 and kernels to compile, the compiling is shared among that many fresh
    processes (:func:`warm_tasks`), then this process loads the result from the cache: a cold
    start takes about half the time on two cores. A command line's first run and ``make test``
    use it; a worker process fails loudly (its exception is raised here).
    """
    def _go():
        with _warm_lock:
            if _warm["done"]:
                return
            if jobs > 1:
                from .status import kernels_ready
                if not kernels_ready():
                    _compile_in_processes(jobs)
            _warm_renderer()
            for warm, _ in list(_REGISTERED.values()):   # the fit driver's small kernels
                warm()
            _warm["done"] = True

    if background:
        th = threading.Thread(target=_go, name="mogviewer-numba-warmup", daemon=True)
        th.start()
        return th
    _go()
    return None
