"""Fit many cutouts headlessly: one row per file, a failing file is a row, never a crash.

The unit of work is a :class:`FitTask`: a frozen, picklable description of one fit (input
paths and reading options, PSF, profile, sky model, start model, output directories).
:func:`run_task` turns it into a CSV row (see :data:`mogviewer.export.COLUMNS`) and **never
raises** for anything the data can do wrong: an unreadable file, an all-NaN image, a bad PSF, a
failing fit or an unwritable output give a row with ``status='failed'`` (or the fit's status) and
the ``reason``. Because :func:`run_task` is a pure function of the task, any executor can map it:
:func:`run_batch` uses a :class:`concurrent.futures.ProcessPoolExecutor` for ``workers > 1``.

Output policy of :func:`run_batch`: the CSV is written atomically (temporary file + rename) with a
header at the start, then completed rows are appended atomically as they finish (at most every
``flush_interval`` seconds, and always at the end or on interruption), so the file on disk is a
valid CSV at every moment; Ctrl-C (KeyboardInterrupt) writes the rows finished so far and
re-raises.

CLI (``mogviewer fit``) exit status: 0 when every file was fitted (flags may be set), 1 when at
least one file failed, 2 for bad command-line input (one line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from . import export

__all__ = ["FitTask", "BatchSummary", "BatchInterrupted", "run_task", "run_batch", "load_psf",
           "register_cli", "output_stem", "TextProgress"]


@dataclasses.dataclass(frozen=True)
class FitTask:
    """Everything needed to fit one cutout (immutable, hashable and picklable).

    Attributes
    ----------
    image : str
        Image file (FITS or ``.npy``).
    hdu, band, plane :
        Which image HDU / band / cube plane (see :func:`mogviewer.io_fits.read_image`).
    noise, noise_kind, noise_hdu :
        Noise map file, what it holds (``sigma``, ``variance``, ``ivar``, ``weight``) and its HDU.
    mask, mask_hdu, invert_mask :
        Mask file (nonzero = bad unless inverted) and its HDU.
    segmap, segment_id :
        Segmentation map (other segments masked) and the target id.
    zeropoint, gain, read_noise, sky_level, pixel_scale :
        Header overrides / noise model (mag, e-/unit, e-, image units, arcsec/px).
    psf, psf_hdu, psf_components :
        PSF file (any format :func:`mogviewer.psf.read_psf` reads), its HDU, and the number of
        Gaussians to fit to a PSF image (None = automatic). No PSF: ``psf=None`` (unless the
        ``start`` model file carries a PSF mixture, which is then used).
    psf_centre : {'centroid', 'peak', 'geometric'}
        Which point of a PSF image becomes the PSF's origin (see :func:`mogviewer.psf.read_psf`).
    psf_position : (x, y) or None
        Where to evaluate a position-dependent (PSFEx) PSF: the cutout centre's pixel position
        on the original image, as :func:`mogviewer.psf.read_psf` takes it.
    centre : (x, y) or None
        Where the target is, 0-based pixels of this cutout (the CLI's ``--centre`` takes 1-based
        FITS/DS9 coordinates): the initial guess uses the source there instead of the one at the
        stamp centre.
    profile, M, n :
        Target profile (``exp``, ``dev``, ``lux``, ``luv``, ``ser``), its number of Gaussians and
        Sersic index. ``None`` = from the start model, else ``exp`` and the profile's default M.
    profile2, M2 : str or None, int or None
        A second component sharing the centre (composite bulge + disk, e.g. ``profile='dev'``
        or ``'ser'`` with ``profile2='exp'``).
    sky : {'none', 'constant', 'plane'} or None
        Sky model (None = from the start model, else ``constant``).
    start : str or None
        A JSON model file (:func:`mogviewer.export.write_model_json`) used as the starting point.
    imgblock_dir, region_dir, model_json_dir : str or None
        Directories for the image block FITS, the DS9 region and the JSON model of this fit.
    scale_errors : bool
        Scale the errors by ``sqrt(chi2_nu)``.
    max_nfev : int
        Evaluation limit of the fit.
    """

    image: str
    hdu: int | str | None = None
    band: str | None = None
    plane: int | None = None
    noise: str | None = None
    noise_kind: str = "sigma"
    noise_hdu: int | str | None = None
    mask: str | None = None
    mask_hdu: int | str | None = None
    invert_mask: bool = False
    segmap: str | None = None
    segment_id: int | None = None
    zeropoint: float | None = None
    gain: float | None = None
    read_noise: float | None = None
    sky_level: float | None = None
    pixel_scale: float | None = None
    psf: str | None = None
    psf_hdu: int | str | None = None
    psf_components: int | None = None
    psf_position: tuple | None = None
    psf_centre: str = "centroid"
    centre: tuple | None = None
    profile: str | None = None
    M: int | None = None
    n: float | None = None
    profile2: str | None = None
    M2: int | None = None
    fix_n: bool = False
    sky: str | None = None
    start: str | None = None
    imgblock_dir: str | None = None
    region_dir: str | None = None
    model_json_dir: str | None = None
    scale_errors: bool = False
    max_nfev: int = 200


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    """Counts and time of a batch: ``fitted`` (converged, no flags), ``flagged`` (fitted with
    flags, a non-converged status or an output problem), ``failed``, ``elapsed`` seconds."""

    total: int
    fitted: int
    flagged: int
    failed: int
    elapsed: float
    interrupted: bool = False
    rows: tuple = ()

    def line(self):
        """One line for people."""
        done = self.fitted + self.flagged + self.failed
        s = (f"{done}/{self.total} files: {self.fitted} fitted, {self.flagged} flagged, "
             f"{self.failed} failed in {self.elapsed:.1f} s")
        return s + (" (interrupted)" if self.interrupted else "")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_batch`, raised after the finished rows were written;
    :attr:`summary` describes what was done."""

    def __init__(self, summary):
        super().__init__(summary.line())
        self.summary = summary


# ---------------------------------------------------------------------------------------------
# PSF adapter: the one place that knows mogviewer.psf's API
# ---------------------------------------------------------------------------------------------

_PSF_CACHE = {}


def load_psf(path, *, hdu=None, n_components=None, position=None, centre="centroid"):
    """Read a PSF file as a pixel-convolved mixture: returns ``(Mixture, description)``.

    Adapter over :func:`mogviewer.psf.read_psf` (cached per process by path, HDU, K and file
    modification time, so a batch fits a PSF image once per worker).
    """
    p = Path(path)
    position = None if position is None else tuple(float(v) for v in position)
    key = (str(p.resolve()), hdu, n_components, position, centre, p.stat().st_mtime_ns)
    if key not in _PSF_CACHE:
        from .psf import read_psf

        model = read_psf(p, hdu=hdu, n_components=n_components, position=position,
                         centre=centre)
        desc = f"{p.name} ({model.source}, K={model.n_components})"
        if len(_PSF_CACHE) > 16:
            _PSF_CACHE.clear()
        _PSF_CACHE[key] = (model.mixture, desc)
    return _PSF_CACHE[key]


# ---------------------------------------------------------------------------------------------
# one task
# ---------------------------------------------------------------------------------------------

def output_stem(task):
    """File-name stem of a task's outputs: the image name without extension, plus the band or
    HDU when given (``cutout_r``, ``cutout_hdu3``)."""
    name = Path(task.image).name
    for ext in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts", ".npy"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if task.band is not None:
        name += f"_{task.band}"
    elif task.hdu is not None:
        name += f"_hdu{task.hdu}"
    if task.plane is not None:
        name += f"_plane{task.plane}"
    return name


def _short(exc):
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_task(task):
    """Fit one cutout and return its CSV row (a dict with every column); never raises.

    Steps: read the start model (if any), read the image with its noise and mask, read the
    PSF, build the :class:`mogviewer.fitting.FitProblem`, fit, write the requested outputs. Any
    exception in a step becomes a row with ``status='failed'`` and ``reason`` naming the step
    and the problem; an output that cannot be written keeps the fit's values and says so in
    ``reason``. Warnings raised on the way are recorded in the ``warnings`` column (they are
    not errors). ``KeyboardInterrupt`` and ``SystemExit`` propagate.
    """
    caught = []
    step = ["start"]
    base = dict(file=str(task.image), hdu=task.hdu if isinstance(task.hdu, int) else None,
                band=task.band, profile=task.profile, M=task.M, n=task.n,
                sky_model=task.sky, psf_source=task.psf or "none")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return _run_task(task, base, caught, step)
    except Exception as exc:  # noqa: BLE001 - the batch policy: every failure is a row
        return export.failed_row(f"{step[0]}: {_short(exc)}",
                                 warnings_text=_warnings_text(caught), **base)


def _warnings_text(caught):
    seen = []
    for w in caught or ():
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())}"
        if text not in seen:
            seen.append(text)
    return " | ".join(seen)


def _run_task(task, base, caught, step):
    from .fitting import FitProblem, fit
    from .io_fits import read_image

    def set_step(text):
        step[0] = text

    saved = None
    if task.start:
        set_step("reading the start model")
        saved = export.read_model_json(task.start)
    profile = task.profile or (saved.profile if saved else "exp")
    M = task.M or (saved.M if saved and saved.profile == profile else None)
    n = task.n if task.n is not None else (saved.n if saved and profile == "ser" else None)
    sky = task.sky or (saved.sky if saved else "constant")
    base.update(profile=profile, M=M, n=n, sky_model=sky)

    set_step("reading the image")
    data = read_image(task.image, hdu=task.hdu, band=task.band, plane=task.plane,
                      noise=task.noise, noise_kind=task.noise_kind, noise_hdu=task.noise_hdu,
                      mask=task.mask, mask_hdu=task.mask_hdu, invert_mask=task.invert_mask,
                      segmap=task.segmap, segment_id=task.segment_id, zeropoint=task.zeropoint,
                      gain=task.gain, read_noise=task.read_noise, sky_level=task.sky_level,
                      pixel_scale=task.pixel_scale)
    base.update(hdu=data.hdu, band=data.band)

    set_step("reading the PSF")
    if task.psf:
        psf, psf_source = load_psf(task.psf, hdu=task.psf_hdu, n_components=task.psf_components,
                                   position=task.psf_position, centre=task.psf_centre)
    elif saved is not None and saved.psf is not None:
        psf, psf_source = saved.psf, f"{Path(task.start).name} (mixture, K={len(saved.psf)})"
    else:
        psf, psf_source = None, "none"
    base["psf_source"] = psf_source

    set_step("setting up the fit")
    problem = FitProblem.from_image_data(data, psf=psf, profile=profile, M=M, n=n, sky=sky,
                                         profile2=task.profile2, M2=task.M2,
                                         fixed=("n",) if task.fix_n and profile == "ser" else ())
    base.update(M=problem.M, n=problem.n)
    start = None
    if saved is not None:
        d = saved.params.as_dict()
        if sky == "none":
            d.update(sky=0.0, sky_dx=0.0, sky_dy=0.0)
        elif sky == "constant":
            d.update(sky_dx=0.0, sky_dy=0.0)
        start = saved.params.replace(**d)

    if start is None and task.centre is not None:
        from .fitting import initial_guess
        set_step("finding the target at --centre")
        start = initial_guess(problem, centre=task.centre)

    set_step("fitting")
    result = fit(problem, start, max_nfev=task.max_nfev)

    set_step("writing outputs")
    problems = []
    if result.status == "failed":
        problems.append(f"fit failed: {result.message}")
    stem = output_stem(task)
    outputs = [(task.imgblock_dir, "_imgblock.fits", "image block",
                lambda p: export.write_imgblock(p, problem, result, data, psf_source=psf_source,
                                                scale_errors=task.scale_errors)),
               (task.region_dir, ".reg", "region",
                lambda p: export.write_region(p, result, data.wcs)),
               (task.model_json_dir, "_model.json", "model JSON",
                lambda p: export.write_model_json(p, result, problem=problem, source=task.image,
                                                  scale_errors=task.scale_errors))]
    for directory, suffix, what, writer in outputs:
        if not directory:
            continue
        try:
            writer(Path(directory) / f"{stem}{suffix}")
        except Exception as exc:  # noqa: BLE001 - an output problem is reported in the row
            problems.append(f"{what} not written: {_short(exc)}")
    return export.result_to_row(result, data, problem=problem, psf_source=psf_source,
                                file=str(task.image), scale_errors=task.scale_errors,
                                reason="; ".join(problems), warnings_text=_warnings_text(caught))


# ---------------------------------------------------------------------------------------------
# many tasks
# ---------------------------------------------------------------------------------------------

def _classify(row):
    if row.get("status") == "failed":
        return "failed"
    if row.get("status") != "converged" or int(row.get("flags") or 0) or row.get("reason"):
        return "flagged"
    return "fitted"


_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS")


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def run_batch(tasks, csv_path=None, *, workers=1, append=False, progress=None,
              flush_interval=1.0):
    """Run :func:`run_task` over ``tasks`` and write the rows to ``csv_path`` as they finish.

    Parameters
    ----------
    tasks : sequence of FitTask
    csv_path : str or Path, optional
        CSV to write (None: rows are only returned). Without ``append`` it is (re)created with
        the header before the first fit, so an unwritable path fails before any work.
    workers : int
        1 = in this process; more = a process pool (``spawn`` start method) of that size.
    append : bool
        Append to an existing CSV with the same columns (refused otherwise, before any fit).
    progress : callable, optional
        ``progress(done, total, row)`` after each finished task (in completion order). An
        exception it raises stops the batch like Ctrl-C does (the CSV keeps the rows so far).
    flush_interval : float
        Seconds between CSV writes (rows are also written at the end and on interruption).

    Returns
    -------
    BatchSummary
        With ``rows`` in task order (tasks not run are absent).

    Raises
    ------
    mogviewer.export.ExportError
        The CSV cannot be written (before any fit) or appended to.
    BatchInterrupted
        (a ``KeyboardInterrupt``) on Ctrl-C or a KeyboardInterrupt from ``progress``, after the
        rows finished so far were written.
    """
    tasks = list(tasks)
    t0 = time.perf_counter()
    if csv_path is not None:
        export.write_csv(csv_path, [], append=append)  # header, or check an appended file
    results = {}
    written = set()
    next_i = 0  # rows are written in task order: up to the first task still running
    last_flush = time.perf_counter()
    interrupted = False

    def flush(force=False):
        nonlocal last_flush, next_i
        if csv_path is None:
            return
        if not force and time.perf_counter() - last_flush < flush_interval:
            return
        while next_i in results:
            next_i += 1
        # in order up to the first unfinished task; at the end (or on Ctrl-C) everything done
        order = [i for i in sorted(results) if i not in written and (force or i < next_i)]
        if order:
            export.write_csv(csv_path, [results[i] for i in order], append=True)
            written.update(order)
        last_flush = time.perf_counter()

    def done(i, row):
        results[i] = row
        flush()
        if progress is not None:
            progress(len(results), len(tasks), row)

    pool = None
    completed = False
    try:
        if workers <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                done(i, run_task(task))
        else:
            ctx = multiprocessing.get_context("spawn")
            # one BLAS/OpenMP thread per worker: with N worker processes on N cores, the
            # default threaded BLAS oversubscribes and was measured 12x slower (bench_batch.py)
            saved_env = {k: os.environ.get(k) for k in _THREAD_VARS}
            for k in _THREAD_VARS:
                os.environ.setdefault(k, "1")
            try:
                pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                           initializer=_worker_init)
                futures = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
            finally:
                for k, v in saved_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = futures[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a dead worker is one failed row
                        row = export.failed_row(f"worker: {_short(exc)}", file=tasks[i].image)
                    done(i, row)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            if completed:
                pool.shutdown(wait=True)
            else:
                _stop_pool(pool)
        if csv_path is not None:
            flush(force=True)
    if interrupted:
        raise BatchInterrupted(_summary(tasks, results, t0, True))
    return _summary(tasks, results, t0, False)


def _stop_pool(pool):
    """Cancel queued tasks and terminate this pool's own worker processes (running fits are
    abandoned: their rows are not written)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)


def _summary(tasks, results, t0, interrupted):
    rows = tuple(results[i] for i in sorted(results))
    kinds = [_classify(r) for r in rows]
    return BatchSummary(total=len(tasks), fitted=kinds.count("fitted"),
                        flagged=kinds.count("flagged"), failed=kinds.count("failed"),
                        elapsed=time.perf_counter() - t0, interrupted=interrupted, rows=rows)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

class TextProgress:
    """A plain-text progress bar on a stream (stderr): redraws one line on a terminal, prints
    one line per file otherwise."""

    def __init__(self, stream=None, width=30):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done, total, row):
        frac = done / total if total else 1.0
        bar = "#" * int(round(frac * self.width))
        status = row.get("status", "?")
        if row.get("reason") and status != "failed":
            status += " (see reason)"
        name = Path(str(row.get("file") or "?")).name
        el = time.perf_counter() - self.t0
        line = f"[{bar:<{self.width}}] {done}/{total} {el:6.1f}s {name}: {status}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if done == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _hdu_arg(v):
    if v is None:
        return None
    return int(v) if str(v).strip().lstrip("-").isdigit() else v


def register_cli(sub):
    """Add ``mogviewer fit FILES... --csv OUT [options]`` to an argparse subparsers object."""
    p = sub.add_parser(
        "fit", help="fit many cutouts and write a CSV (batch mode, no display needed)",
        description="Fit one galaxy per file and write one CSV row per file (units and "
                    "conventions in the CSV's comment lines). A file that cannot be fitted "
                    "gives a row with status 'failed' and the reason; the other files are "
                    "still fitted. Exit status: 0 all fitted (flags may be set), 1 some files "
                    "failed, 2 bad command-line input, 130 interrupted (the CSV keeps the rows "
                    "done so far).")
    p.add_argument("files", nargs="+", metavar="FILE", help="image files (FITS or .npy)")
    p.add_argument("--csv", required=True, help="output CSV")
    p.add_argument("--append", action="store_true",
                   help="append to an existing CSV with the same columns")
    p.add_argument("--psf", help="PSF file (image, .npy, PSFEx, Tractor mixture, JSON)")
    p.add_argument("--psf-hdu", help="HDU of the PSF (number or EXTNAME)")
    p.add_argument("--psf-components", type=int, help="Gaussians fitted to a PSF image "
                   "(default: automatic)")
    p.add_argument("--psf-position", type=float, nargs=2, metavar=("X", "Y"),
                   help="for a PSFEx file: the cutout centre's pixel position on the original "
                        "image, where the PSF model is evaluated")
    p.add_argument("--psf-centre", choices=("centroid", "peak", "geometric"),
                   default="centroid",
                   help="which point of a PSF image is its centre (default: flux centroid)")
    p.add_argument("--centre", type=float, nargs=2, metavar=("X", "Y"),
                   help="where the target is, 1-based FITS/DS9 pixel coordinates of the cutout "
                        "(default: the source at the stamp centre)")
    p.add_argument("--profile", choices=("exp", "dev", "lux", "luv", "ser"),
                   help="target profile (default exp, or the --start model's)")
    p.add_argument("-M", type=int, help="Gaussians in the profile mixture (default: the "
                   "profile's)")
    p.add_argument("-n", "--sersic-n", type=float,
                   help="Sersic index of profile ser: the start, free unless --fix-n "
                        "(0.5 <= n <= 8, the smooth family)")
    p.add_argument("--fix-n", action="store_true", help="keep the Sersic index fixed")
    p.add_argument("--profile2", choices=("exp", "dev", "lux", "luv"),
                   help="add a second component sharing the centre (bulge + disk)")
    p.add_argument("--M2", type=int, help="Gaussians of the second component")
    p.add_argument("--sky", choices=("none", "constant", "plane"),
                   help="sky model (default constant, or the --start model's)")
    p.add_argument("--hdu", help="image HDU number or EXTNAME")
    p.add_argument("--band", help="band of a multi-band file (BAND keyword)")
    p.add_argument("--plane", type=int, help="plane of a 3-D cube (0-based)")
    p.add_argument("--noise", help="noise map file (one for all FILEs)")
    p.add_argument("--noise-kind", default="sigma", choices=("sigma", "variance", "ivar",
                                                             "weight"),
                   help="what the noise map holds (default sigma)")
    p.add_argument("--noise-hdu", help="HDU of the noise map (in --noise, or in FILE)")
    p.add_argument("--mask", help="mask file, nonzero = bad (one for all FILEs)")
    p.add_argument("--mask-hdu", help="HDU of the mask (in --mask, or in FILE)")
    p.add_argument("--invert-mask", action="store_true", help="mask: zero = bad")
    p.add_argument("--segmap", help="segmentation map (other segments masked)")
    p.add_argument("--zeropoint", type=float, help="magnitude zeropoint for image units")
    p.add_argument("--gain", type=float, help="gain, e-/image unit")
    p.add_argument("--read-noise", type=float, help="read noise, e- (imfit noise model)")
    p.add_argument("--sky-level", type=float, help="subtracted sky level (imfit noise model)")
    p.add_argument("--pixel-scale", type=float, help="pixel scale, arcsec/px")
    p.add_argument("--start", help="JSON model file to start from (written by --model-json)")
    p.add_argument("--imgblock", metavar="DIR", help="write a GALFIT-style image block per file")
    p.add_argument("--region", metavar="DIR", help="write a DS9 region file per file")
    p.add_argument("--model-json", metavar="DIR", help="write a JSON model file per file")
    p.add_argument("--scale-errors", action="store_true",
                   help="scale errors by sqrt(chi2/nu)")
    p.add_argument("--max-nfev", type=int, default=200, help="evaluation limit per fit")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_fit)


def _cli_fit(args):
    from .cli import UserError  # lazy: cli imports this module

    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.M is not None and args.M < 1:
        raise UserError(f"-M must be >= 1, got {args.M}")
    for opt in ("noise", "mask", "segmap", "start", "psf"):
        val = getattr(args, opt)
        if val is not None and not os.path.isfile(val):
            raise UserError(f"--{opt.replace('_', '-')} file not found: {val}")
    if args.start:
        try:
            export.read_model_json(args.start)
        except (export.ModelFileError, OSError) as exc:
            raise UserError(str(exc)) from None
    if args.psf:
        try:
            load_psf(args.psf, hdu=_hdu_arg(args.psf_hdu), n_components=args.psf_components,
                     position=args.psf_position, centre=args.psf_centre)
        except Exception as exc:  # noqa: BLE001 - a PSF that cannot be read stops the batch
            raise UserError(f"PSF {args.psf}: {_short(exc)}") from None
    for opt in ("imgblock", "region", "model_json"):
        d = getattr(args, opt)
        if d is None:
            continue
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--{opt.replace('_', '-')} directory {d} cannot be created: "
                            f"{exc.strerror or exc}") from None
        if not os.access(d, os.W_OK):
            raise UserError(f"--{opt.replace('_', '-')} directory {d} is not writable")
    common = dict(hdu=_hdu_arg(args.hdu), band=args.band, plane=args.plane, noise=args.noise,
                  noise_kind=args.noise_kind, noise_hdu=_hdu_arg(args.noise_hdu),
                  mask=args.mask, mask_hdu=_hdu_arg(args.mask_hdu),
                  invert_mask=args.invert_mask, segmap=args.segmap, zeropoint=args.zeropoint,
                  gain=args.gain, read_noise=args.read_noise, sky_level=args.sky_level,
                  pixel_scale=args.pixel_scale, psf=args.psf, psf_hdu=_hdu_arg(args.psf_hdu),
                  psf_components=args.psf_components,
                  psf_position=None if args.psf_position is None else tuple(args.psf_position),
                  psf_centre=args.psf_centre,
                  centre=None if args.centre is None else (args.centre[0] - 1.0,
                                                           args.centre[1] - 1.0),
                  profile=args.profile, M=args.M,
                  n=args.sersic_n, sky=args.sky, start=args.start,
                  profile2=args.profile2, M2=args.M2, fix_n=args.fix_n,
                  imgblock_dir=args.imgblock, region_dir=args.region,
                  model_json_dir=args.model_json, scale_errors=args.scale_errors,
                  max_nfev=args.max_nfev)
    tasks = [FitTask(image=f, **common) for f in args.files]
    progress = None if args.quiet else TextProgress(sys.stderr)
    try:
        summary = run_batch(tasks, args.csv, workers=args.workers, append=args.append,
                            progress=progress)
    except export.ExportError as exc:
        raise UserError(str(exc)) from None
    except BatchInterrupted as exc:
        print(f"\nmogviewer fit: {exc.summary.line()}; rows done so far are in {args.csv}",
              file=sys.stderr)
        raise
    print(f"mogviewer fit: {summary.line()}; wrote {args.csv}", file=sys.stderr)
    for row in summary.rows:
        if row.get("status") == "failed":
            print(f"  failed: {row['file']}: {row['reason']}", file=sys.stderr)
    return 1 if summary.failed else 0
