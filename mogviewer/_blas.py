"""One BLAS thread in the command line's and the app's processes.

mogviewer's heavy work is in its own compiled kernels (numba, one thread each); what it asks of
BLAS is small: dot products of an image's pixels, Gram matrices of a few Jacobian columns.
With BLAS's default of one thread per core those calls get slower, not faster: OpenBLAS's
threads spin and wait for busy cores. On the 2-core test machine under load, ``r @ r`` of a
256 x 256 image took 3.6 ms with two threads and 12 us with one. The batch's worker processes
already start with one BLAS thread (:mod:`mogviewer.batch.executors`); :func:`limit` does the
same for the process that runs ``mogviewer`` (command line or app), through threadpoolctl,
whatever numpy was linked against. A library user's process is left as it is (the library's
own hot paths avoid BLAS on long vectors instead).
"""

from __future__ import annotations

#: The variables BLAS and OpenMP libraries read when they load.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_limiter = []


def limit():
    """Limit BLAS to one thread in this process (once; later calls do nothing). Returns the
    number of BLAS libraries found, 0 if threadpoolctl cannot see any."""
    if _limiter:
        return len(_limiter[0].get_original_num_threads() or {})
    import os
    for var in THREAD_VARS:      # the BLAS libraries loaded later (scipy's own OpenBLAS) too
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits
    _limiter.append(threadpool_limits(limits=1, user_api="blas"))
    return len(_limiter[0].get_original_num_threads() or {})
