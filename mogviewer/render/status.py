"""Whether the renderer's numba kernels still need compiling (the first fit after an install
spends 15-45 s there).

:func:`compile_status` looks, for each entry kernel, at what this process has compiled and at
numba's on-disk cache (``__pycache__`` beside the modules, one index per kernel): a kernel is
``'cached'`` when the index holds an entry for this machine and the current source, so loading
it takes a fraction of a second. A front end calls it before the first fit and says that it is
compiling when ``ready`` is false (the CLI prints one line on stderr; an app shows a status
message), then calls :func:`mogviewer.render.warmup`, which compiles everything a render and a
fit need.
"""

from __future__ import annotations


def _entry_kernels():
    from . import exact, kernels, normal, warm
    own = {"render": kernels._galaxy_kernel, "mixture": kernels._mixture_kernel,
           "fit": normal._galaxy_normal_kernel, "fit (no PSF)": normal._pairs_normal_kernel,
           "exact PSF": exact._residual_planes}
    # the layers above that registered theirs (the fit driver, once mogviewer.fitting is in)
    return {**own, **{name: entry() for name, (_, entry) in warm._REGISTERED.items()}}


def _state(disp):
    if disp.signatures:
        return "compiled"
    cache = getattr(disp, "_cache", None)
    try:
        index = cache._cache_file._load_index()
        codegen = disp.targetctx.codegen()
        if any(key == cache._index_key(key[0], codegen) for key in index):
            return "cached"
    except Exception:   # another numba's internals, no cache, unreadable index: unknown
        pass
    return "not compiled"


def compile_status():
    """``{'ready': bool, 'kernels': {name: 'compiled' | 'cached' | 'not compiled'}}``.

    ``ready`` is true when no entry kernel needs compiling (each is compiled in this process or
    found in numba's on-disk cache for this machine and source). Cheap (reads a few small index
    files); never raises.
    """
    kernels = {name: _state(d) for name, d in _entry_kernels().items()}
    return {"ready": all(v != "not compiled" for v in kernels.values()), "kernels": kernels}


def kernels_ready():
    """``compile_status()['ready']``: false means the next render or fit compiles first."""
    return compile_status()["ready"]
