"""Compile the kernels ahead of use (or load them from numba's on-disk cache).

Apart from :mod:`mogviewer.render.kernels` because it compiles the fit's normal-equation kernel
(:mod:`mogviewer.render.normal`) too, which builds on the kernels.
"""

from __future__ import annotations

import threading

import numpy as np

from .exact import _warm_exact
from .kernels import _DELTA_PACKED, _galaxy_kernel, _mixture_kernel, _scratch
from .normal import _warm_normal

__all__ = ["warmup", "register"]

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


def warmup(*, background=False):
    """Compile (or load from numba's on-disk cache) the kernels, those of a fit's normal
    equations too (:mod:`mogviewer.render.normal`); :func:`mogviewer.render.compile_status`
    says beforehand whether this will compile.

    With ``background=True`` this runs in a daemon thread and returns the thread at once, so an
    app can start while the kernels compile; the first render waits for it if needed.
    """
    def _go():
        with _warm_lock:
            if _warm["done"]:
                return
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
            for warm, _ in list(_REGISTERED.values()):   # the fit driver's small kernels
                warm()
            _warm["done"] = True

    if background:
        th = threading.Thread(target=_go, name="mogviewer-numba-warmup", daemon=True)
        th.start()
        return th
    _go()
    return None
