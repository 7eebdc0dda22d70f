"""mogviewer: fit galaxy images with mixtures of Gaussians (Hogg & Lang 2013, PASP 125, 719).

The Qt-free public API, importable from the top level::

    import mogviewer as mv
    data = mv.read_image("cutout.fits", noise="sigma.fits")
    psf = mv.read_psf("psf.fits").mixture
    result = mv.fit(mv.FitProblem.from_image_data(data, psf=psf, profile="ser"))
    row = mv.result_to_row(result, data)

The names are loaded on first use (PEP 562), so ``import mogviewer`` stays cheap and a batch
worker or the command line pays only for what it uses. The desktop app is
:mod:`mogviewer.gui` (needs the ``gui`` extra); nothing here imports Qt.

Conventions (stated once, used everywhere): arrays are ``image[y, x]``; pixel centres sit at
integer 0-based coordinates (exports add 1-based FITS coordinates); angles are degrees
counter-clockwise from +x (exports add GALFIT's and east-of-north); ``q = b/a <= 1``; ``re`` is
the semi-major half-light radius of the *target* profile.
"""

from __future__ import annotations

import importlib

from ._numba_cache import configure as _configure_numba_cache
from ._numba_cache import drop_stale as _drop_stale_kernels

__version__ = "0.1.0"
_configure_numba_cache()  # a writable numba cache even on a read-only shared install
_drop_stale_kernels()     # cached kernels compiled from other kernel sources than these

#: Public name -> module that defines it.
_API = {
    "Mixture": "mixture",
    "read_image": "io", "ImageData": "io", "describe": "io", "list_hdus": "io",
    "read_psf": "psf", "write_psf": "psf", "fit_psf": "psf", "PsfModel": "psf",
    "get_mixture": "profiles", "available": "profiles", "ProfileMixture": "profiles",
    "render_galaxy": "render", "render_model": "render", "galaxy_mixture": "render",
    "FitProblem": "fitting", "FitResult": "fitting", "FitFlags": "fitting",
    "GalaxyParams": "fitting", "fit": "fitting", "initial_guess": "fitting",
    "model_image": "fitting",
    "result_to_row": "export", "write_csv": "export", "write_imgblock": "export",
    "write_region": "export", "write_model_json": "export", "read_model_json": "export",
    "FitTask": "batch", "run_task": "batch", "run_batch": "batch",
    "MogviewerError": "errors", "UserError": "errors", "ImageReadError": "errors",
    "PsfError": "errors", "FitError": "errors", "ExportError": "errors",
    "ModelFileError": "errors", "ProfileError": "errors", "MogviewerWarning": "errors",
    "PsfWarning": "errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name):
    # a name of the API never equals a subpackage's (``from mogviewer import render`` must give
    # the subpackage; tests/test_packaging.py checks)
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mogviewer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
