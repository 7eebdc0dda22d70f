"""``mogviewer compile``: compile the numba kernels ahead of the first fit (after ``pip
install``, in a container image's build, on a cluster's shared install), or say that they are
ready.

The first fit after an install otherwise spends 45-85 s compiling (:func:`mogviewer.render.
compile_status`); with ``--jobs 2`` the work is shared by two processes
(:func:`mogviewer.render.warmup`). numba keeps the result in ``__pycache__`` beside the
package's modules, or, where that is read-only, in a per-user cache
(:mod:`mogviewer._numba_cache`): run it as the users who will fit, or as the install's owner.
"""

from __future__ import annotations

import sys
import time

from . import options as opt


def register_cli(sub):
    """Add the ``compile`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "compile", help="compile the kernels now, ahead of the first fit (once per install)",
        description="Compile the renderer's and the fitter's kernels into numba's on-disk cache "
                    "(or load them if they are there) and list their state. Exit status 0 when "
                    "every kernel is ready.")
    p.add_argument("--jobs", type=opt.int_range(1, 64), default=None,
                   help="processes that share the compiling (default: the CPUs, at most 4)")
    p.add_argument("--quiet", action="store_true", help="print nothing when all goes well")
    p.set_defaults(func=_cli_compile)


def _cli_compile(args):
    import mogviewer.fitting  # noqa: F401  (registers the fit driver's kernels)
    import mogviewer.psf  # noqa: F401  (registers the PSF fit's kernels)

    from ..render import compile_status, warmup
    from ..render.warm import default_jobs

    jobs = args.jobs or default_jobs(4)
    before = compile_status()
    t0 = time.perf_counter()
    if not before["ready"] and not args.quiet:
        print(f"compiling the kernels with {jobs} process{'es' if jobs > 1 else ''} "
              "(once per install)...", file=sys.stderr, flush=True)
    warmup(jobs=jobs)
    after = compile_status()
    if not args.quiet:
        for name, state in after["kernels"].items():
            print(f"  {name:<16} {state}")
        verb = "loaded" if before["ready"] else "compiled"
        print(f"kernels {verb} in {time.perf_counter() - t0:.1f} s")
    return 0 if after["ready"] else 1
