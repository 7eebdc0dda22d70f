"""What a batch worker needs before its first job, imported once where workers are made.

Importing this module imports the modules a job runs (:mod:`mogviewer.batch.runner` with the
fitting, I/O, export and PSF code, astropy's FITS, WCS and cutout slicing) and loads numba's
compiled kernels (:func:`mogviewer.render.warmup`, from numba's on-disk cache). The local pool's
fork server imports it (:data:`mogviewer.batch.executors.PRELOAD`), so every worker, a fork of
the server, starts with all of that done: about 2 CPU-seconds saved per worker against a
``spawn`` worker that imports it all itself. A Dask worker can do the same at start-up:
``dask worker tcp://host:8786 --preload mogviewer.batch.worker``.

Nothing here may stop an import: a kernel that fails to load is loaded (and its error
reported) by the job that needs it.
"""

import astropy.io.fits  # noqa: F401 - the field, weight map and PSFEx files
import astropy.nddata.utils  # noqa: F401 - overlap_slices
import astropy.wcs  # noqa: F401

from . import cutouts, runner  # noqa: F401 - the jobs

try:
    from ..render import warmup

    warmup()
except Exception:  # noqa: BLE001 - the worker's first job loads the kernels and says why not
    pass

try:
    # the default profile's mixture (its half-light ratio takes a root search: 0.05-0.1 s in
    # each worker on its first fit otherwise); the others are computed where used
    from ..profiles import get_mixture

    get_mixture("exp", 6)
except Exception:  # noqa: BLE001 - a fit that needs one computes it and says what went wrong
    pass
