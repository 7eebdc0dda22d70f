"""``mogviewer fit``: fit many cutouts from the command line, one CSV row per file.

Exit status: 0 when every file was fitted (flags may be set), 1 when at least one file failed, 2
for bad command-line input (one line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import os
import sys

from .. import export, profiles
from ..batch import BatchInterrupted, FitTask, load_psf, plan_outputs, run_batch
from ..batch.band_task import band_columns, psf_hdu_for_band
from ..batch.executors import prestart, start_method
from ..batch.tasks import _short
from ..errors import ImageReadError, MogviewerError, UserError
from ..export.files import _describe_oserror, same_file_as_any
from ..io.hdus import check_companion_file
from ..profiles.sersic import M_FAMILY, N_MAX, N_MIN
from ..render import kernels_ready, warmup
from ..render.warm import default_jobs
from . import options as opt
from . import survey
from .survey import TextProgress


def register_cli(sub):
    """Add ``mogviewer fit FILES... --csv OUT [options]`` to an argparse subparsers object."""
    p = sub.add_parser(
        "fit", help="fit many cutouts and write a CSV (batch mode, no display needed)",
        description="Fit one galaxy per file and write one CSV row per file (units and "
                    "conventions of every column in OUT.columns.txt beside the CSV). A file "
                    "that cannot be fitted "
                    "gives a row with status 'failed' and the reason; the other files are "
                    "still fitted. Exit status: 0 all fitted (flags may be set), 1 some files "
                    "failed, 2 bad command-line input, 130 interrupted (the CSV keeps the rows "
                    "done so far).")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="image files (FITS or .npy); or --manifest, or --image with --catalog; "
                        "none when every --bands entry names its file (BAND=FILE)")
    p.add_argument("--csv", required=True, type=opt.nonempty_name, help="output CSV")
    p.add_argument("--append", action="store_true",
                   help="append to an existing CSV with the same columns")
    p.add_argument("--psf", help="PSF file (image, .npy, PSFEx, Tractor mixture, JSON)")
    p.add_argument("--psf-hdu", type=opt.hdu, help="HDU of the PSF (number or EXTNAME)")
    p.add_argument("--psf-components", type=opt.int_range(1, opt.MAX_PSF_COMPONENTS),
                   help="Gaussians fitted to a PSF image "
                   "(default: automatic)")
    p.add_argument("--psf-position", type=opt.finite_float, nargs=2, metavar=("X", "Y"),
                   help="for a PSFEx file: the cutout centre's pixel position on the original "
                        "image, where the PSF model is evaluated")
    p.add_argument("--psf-mode", choices=("auto", "exact", "mixture"), default="auto",
                   help="how a PSF image enters the model: the stamp itself (exact: its "
                        "mixture plus the residual by FFT; the default for an image) or its "
                        "Gaussian mixture only (mixture); a mixture file is always mixture")
    p.add_argument("--psf-centre", choices=("centroid", "peak", "geometric"),
                   default="centroid",
                   help="which point of a PSF image is its centre (default: flux centroid)")
    p.add_argument("--centre", type=opt.finite_float, nargs=2, metavar=("X", "Y"),
                   help="where the target is, 1-based FITS/DS9 pixel coordinates of the cutout "
                        "(default: the source at the stamp centre)")
    p.add_argument("--profile", choices=("exp", "dev", "lux", "luv", "ser"),
                   help="target profile (default exp, or the --start model's)")
    p.add_argument("-M", type=opt.int_range(1, opt.MAX_M),
                   help="Gaussians in the profile mixture (default: the "
                   "profile's)")
    p.add_argument("-n", "--sersic-n", type=opt.float_range(N_MIN, N_MAX),
                   help="Sersic index of profile ser: the start, free unless --fix-n "
                        "(0.5 <= n <= 8, the smooth family)")
    p.add_argument("--fix-n", action="store_true", help="keep the Sersic index fixed")
    p.add_argument("--profile2", choices=("exp", "dev", "lux", "luv"),
                   help="add a second component sharing the centre (bulge + disk)")
    p.add_argument("--M2", type=opt.int_range(1, opt.MAX_M),
                   help="Gaussians of the second component")
    p.add_argument("--sky", choices=("none", "constant", "plane"),
                   help="sky model (default constant, or the --start model's)")
    p.add_argument("--hdu", type=opt.hdu, help="image HDU number or EXTNAME")
    p.add_argument("--band", help="band of a multi-band file (BAND keyword)")
    p.add_argument("--plane", type=opt.int_range(0, 100000), help="plane of a 3-D cube (0-based)")
    p.add_argument("--noise", help="noise map file (one for all FILEs)")
    p.add_argument("--noise-kind", default="sigma", choices=("sigma", "variance", "ivar",
                                                             "weight"),
                   help="what the noise map holds (default sigma)")
    p.add_argument("--noise-hdu", type=opt.hdu,
                   help="HDU of the noise map (in --noise, or in FILE)")
    p.add_argument("--mask", help="mask file, nonzero = bad (one for all FILEs)")
    p.add_argument("--mask-hdu", type=opt.hdu, help="HDU of the mask (in --mask, or in FILE)")
    p.add_argument("--invert-mask", action="store_true", help="mask: zero = bad")
    p.add_argument("--segmap", help="segmentation map (other segments masked)")
    p.add_argument("--zeropoint", type=opt.finite_float, help="magnitude zeropoint for image units")
    p.add_argument("--gain", type=opt.positive_float, help="gain, e-/image unit")
    p.add_argument("--read-noise", type=opt.nonnegative_float,
                   help="read noise, e- (imfit noise model)")
    p.add_argument("--sky-level", type=opt.finite_float,
                   help="subtracted sky level (imfit noise model)")
    p.add_argument("--pixel-scale", type=opt.positive_float, help="pixel scale, arcsec/px")
    p.add_argument("--start", help="JSON model file to start from (written by --model-json)")
    p.add_argument("--imgblock", metavar="DIR", help="write a GALFIT-style image block per file")
    p.add_argument("--region", metavar="DIR", help="write a DS9 region file per file")
    p.add_argument("--model-json", metavar="DIR", help="write a JSON model file per file")
    p.add_argument("--scale-errors", action="store_true",
                   help="scale errors by sqrt(chi2/nu)")
    p.add_argument("--max-nfev", type=opt.int_range(1, 100000), default=200,
                   help="evaluation limit per fit")
    p.add_argument("--sample", type=_sample_steps, nargs="?", const="auto", default=0,
                   metavar="STEPS",
                   help="also sample the posterior (emcee, 32+ walkers from the best fit): "
                        "16/50/84 %% columns and chain diagnostics. Alone (or auto), the run "
                        "grows until every parameter's effective sample size is >= 1000 and the "
                        "chain is longer than 50 autocorrelation times (at most 20000 steps); with "
                        "STEPS (100-100000) it has that fixed length, the first quarter "
                        "dropped. Prior: flat in ln(flux), ln(r_e) and ln(n), flat in the other "
                        "parameters within their bounds (times the --start model's 'priors')"),
    p.add_argument("--neighbours", choices=("ignore", "mask", "fit"), default="ignore",
                   help="the other sources in the cutout (detected with photutils): ignore "
                        "them (default), mask their segments, or fit them with the target "
                        "(one CSV row per fitted source)")
    p.add_argument("--max-neighbours", type=opt.int_range(0, opt.MAX_NEIGHBOURS), default=10,
                   help="with --neighbours fit: neighbours modelled, brightest first; the rest "
                        "are masked (default 10)")
    p.add_argument("--residual-pass", action="store_true",
                   help="with --neighbours fit: after the joint fit, detect on the residual "
                        "(S/N >= 10, away from the fitted sources), add what was missed and "
                        "fit again (up to 3 rounds)")
    p.add_argument("--targets-only", action="store_true",
                   help="with --neighbours fit: only the target's row (one row per file)")
    p.add_argument("--bands", nargs="+", type=opt.band_spec, metavar="BAND[=FILE]",
                   help="fit these bands jointly (shared centre, shape and n; a flux and sky "
                        "per band): the HDUs of each FILE with these BAND keywords, or "
                        "BAND=FILE for a band in a file of its own (then no FILE argument)")
    p.add_argument("--band-psf", action="append", type=opt.band_spec, default=[],
                   metavar="BAND=FILE",
                   help="the PSF file of one band (repeat per band; default: the HDU of --psf "
                        "whose BAND, FILTER or EXTNAME is the band)")
    p.add_argument("--wavelength", action="append", type=opt.band_value, default=[],
                   metavar="BAND=VALUE",
                   help="effective wavelength of a band (any one unit for all), for --tie")
    p.add_argument("--tie", action="append", type=opt.tie_spec, default=[],
                   metavar="PARAM=DEGREE",
                   help="with --bands: let re or n vary with wavelength as a Chebyshev "
                        "polynomial of this degree (GalfitM's approach), e.g. --tie re=1; "
                        "default: shared by all bands")
    p.add_argument("--workers", type=opt.int_range(1, opt.MAX_WORKERS), default=1,
                   help="parallel processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    survey.register(p)
    p.set_defaults(func=_cli_fit)


class _FileAfterSample(str):
    """A FILE argument that ``--sample`` (its STEPS optional) took as its value."""


def _sample_steps(text):
    """argparse type of ``--sample [STEPS]``: an integer is STEPS (100-100000); anything else
    is a FILE that followed a bare ``--sample`` (given back to the files in :func:`_cli_fit`);
    ``auto`` is the bare option's adaptive run."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        int(str(text).strip())
    except ValueError:
        return _FileAfterSample(text)
    return opt.int_range(100, 100000)(text)


def _cli_fit(args):
    """Check every option and path, then plan the outputs, then fit: nothing is read before
    the options are known to be usable, nothing is written before the outputs are."""
    if isinstance(args.sample, _FileAfterSample):     # `--sample a.fits`: adaptive, a.fits a FILE
        args.files = [*args.files, str(args.sample)]
        args.sample = "auto"
    # a joint fit of bands in files of their own (--bands g=a.fits r=b.fits) needs no FILE
    bands_only = (not args.files and args.bands and all(f is not None for _, f in args.bands)
                  and args.manifest is None and args.image is None and args.catalog is None)
    kind = "files" if bands_only else survey.mode(args)
    if kind == "catalog" and (args.bands or args.neighbours != "ignore"):
        raise UserError("--bands and --neighbours do not apply to catalogue mode (its "
                        "neighbours come from the catalogue and are masked); fit a --manifest "
                        "of cutouts for them")
    if args.M2 is not None and args.profile2 is None:
        raise UserError("--M2 needs --profile2 (the second component's profile)")
    # -M checked before any file is read, for the default profile too (exp, unless --start
    # names another: its model is checked by the fit); a failed row per file was the answer
    profile = args.profile or (None if args.start else "exp")
    if profile == "ser" and args.M is not None and args.M != M_FAMILY:
        raise UserError(f"-M {args.M}: the Sérsic family's mixtures have M = {M_FAMILY} "
                        "components; -M cannot be chosen for --profile ser")
    if profile is not None and args.M is not None and profile != "ser":
        valid = profiles.available(profile)
        if args.M not in valid:
            raise UserError(f"-M {args.M}: there is no {profile} mixture with M = {args.M}"
                            f"{'' if args.profile else ' (the default profile is exp)'};"
                            f" choose one of {', '.join(map(str, valid))}")
    if args.profile2 is not None and args.M2 is not None and args.M2 not in \
            profiles.available(args.profile2):
        raise UserError(f"--M2 {args.M2}: there is no {args.profile2} mixture with M = "
                        f"{args.M2}; choose one of "
                        f"{', '.join(map(str, profiles.available(args.profile2)))}")
    if args.fix_n and args.profile not in (None, "ser"):
        raise UserError("--fix-n applies to --profile ser only")
    if args.neighbours == "fit":
        for flag, given in (("--fix-n", args.fix_n), ("--sample", args.sample)):
            if given:
                raise UserError(f"{flag} is not available with --neighbours fit (a joint fit of "
                                "several sources); use --neighbours mask")
    elif args.targets_only or args.residual_pass:
        raise UserError(f"{'--targets-only' if args.targets_only else '--residual-pass'} "
                        "applies to --neighbours fit (the other modes give one row per file)")
    bands = tuple(b for b, _ in args.bands or ())
    band_files = tuple((b, f) for b, f in args.bands or () if f is not None)
    band_psfs = tuple(args.band_psf)
    if bands:
        if len(set(bands)) != len(bands):
            raise UserError(f"--bands: a band is given twice ({' '.join(bands)})")
        if args.band is not None:
            raise UserError("--band picks one band; --bands fits several: give one of them")
        if band_files and len(band_files) != len(bands) and not args.files:
            raise UserError("--bands: give FILE arguments for the bands without =FILE")
        if args.sample:
            raise UserError("--sample with --bands is not available yet")
        if args.residual_pass:
            raise UserError("--residual-pass with --bands is not available yet")
        for b, _ in band_psfs:
            if b not in bands:
                raise UserError(f"--band-psf {b}=...: {b} is not one of --bands {' '.join(bands)}")
        ties = tuple(args.tie)
        waves = tuple(args.wavelength)
        for b, _ in waves:
            if b not in bands:
                raise UserError(f"--wavelength {b}=...: {b} is not one of --bands "
                                f"{' '.join(bands)}")
        if ties:
            missing = [b for b in bands if b not in dict(waves)]
            if missing:
                raise UserError(f"--tie needs --wavelength for every band; missing: "
                                f"{' '.join(missing)}")
            for p_, deg in ties:
                if deg >= len(bands):
                    raise UserError(f"--tie {p_}={deg}: the degree must be below the number "
                                    f"of bands ({len(bands)})")
    elif band_psfs or args.tie or args.wavelength:
        raise UserError("--band-psf, --tie and --wavelength apply to --bands")
    if args.invert_mask and args.mask is None and args.mask_hdu is None:
        raise UserError("--invert-mask needs --mask or --mask-hdu")
    inputs = [("FILE", f) for f in args.files] + [
        (f"--bands {b}=", f) for b, f in band_files] + [
        (f"--band-psf {b}=", f) for b, f in band_psfs] + [
        (f"--{o.replace('_', '-')}", getattr(args, o))
        for o in ("noise", "mask", "segmap", "start", "psf")] + survey.input_options(args)
    opt.check_inputs(inputs)
    input_paths = [p for _, p in inputs if p is not None]
    opt.check_output(args.csv, "--csv", inputs=input_paths)
    if args.table is not None:
        opt.check_output(args.table, "--table", inputs=input_paths + [args.csv])
    for o in ("imgblock", "region", "model_json"):
        d = getattr(args, o)
        if d is None:
            continue
        name = f"--{o.replace('_', '-')}"
        if same_file_as_any(d, input_paths):
            raise UserError(f"{name} {d}: it is one of the input files, not a directory")
        try:
            os.makedirs(d, exist_ok=True)
        except FileExistsError:
            raise UserError(f"{name} {d}: it exists and is not a directory") from None
        except OSError as exc:
            raise UserError(f"{name} directory {d} cannot be created: "
                            f"{_describe_oserror(exc)}") from None
        if not os.access(d, os.W_OK | os.X_OK):
            raise UserError(f"{name} directory {d} is not writable")
    # a mask, noise map or segmentation map file serves every image: one that cannot be read
    # stops the run before it starts, as a bad --psf or --start does (it made every image a
    # failed row, and replaced the CSV with them); an HDU of the image file stays per image
    for option, path, hdu, what in (("--mask", args.mask, args.mask_hdu, "mask"),
                                    ("--noise", args.noise, args.noise_hdu, "noise map"),
                                    ("--segmap", args.segmap, None,
                                     "segmentation map")):
        if path is None or same_file_as_any(path, args.files):
            continue
        try:
            check_companion_file(path, what, hdu)
        except ImageReadError as exc:
            raise UserError(f"{option} {path}: {_one_line(exc)}") from None
    if args.start:
        try:
            export.read_model_json(args.start)
        except (export.ModelFileError, OSError) as exc:
            raise UserError(f"--start {args.start}: {_one_line(exc)}") from None
    pool_server = (args.workers > 1 and not (args.dask or args.scheduler)
                   and start_method() == "forkserver")
    if pool_server:
        # the pool's fork server imports mogviewer and loads the kernels (2 CPU-s; compiles
        # them on the first run) while this process reads the PSF, the catalogue or the
        # manifest (already running if the command line started it: harmless twice)
        prestart()
    if args.band is not None and args.psf and args.psf_hdu is None and not bands:
        # --band r with a PSF file of one HDU per band: the band's HDU, as --bands and the app
        # take it (without this the first HDU, the g PSF of a Legacy Surveys file, was used)
        args.psf_hdu = psf_hdu_for_band(args.psf, args.band)
    psf_checks = ([("--psf", args.psf, args.psf_hdu)]
                  if args.psf and not bands and kind != "catalog" else [])
    for b in bands:
        own = dict(band_psfs).get(b)
        if own is not None:
            psf_checks.append((f"--band-psf {b}=", own, None))
        elif args.psf:
            hdu = (args.psf_hdu if len(bands) == 1 and args.psf_hdu is not None
                   else psf_hdu_for_band(args.psf, b))
            if hdu is None and len(bands) > 1:
                raise UserError(f"--psf {args.psf}: no HDU for band {b} (BAND, FILTER or "
                                f"EXTNAME = {b}); give --band-psf {b}=FILE")
            psf_checks.append(("--psf", args.psf, hdu))
        else:
            raise UserError(f"band {b} has no PSF: give --psf (one HDU per band) or "
                            f"--band-psf {b}=FILE")
    for name, path, hdu in psf_checks:
        try:
            load_psf(path, hdu=hdu, n_components=args.psf_components,
                     position=args.psf_position, centre=args.psf_centre)
        except Exception as exc:  # noqa: BLE001 - a PSF that cannot be read stops the batch
            raise UserError(f"{name} {path}: {_psf_reason(exc, args)}") from None
    common = dict(hdu=args.hdu, band=args.band, plane=args.plane, noise=args.noise,
                  noise_kind=args.noise_kind, noise_hdu=args.noise_hdu,
                  mask=args.mask, mask_hdu=args.mask_hdu,
                  invert_mask=args.invert_mask, segmap=args.segmap, zeropoint=args.zeropoint,
                  gain=args.gain, read_noise=args.read_noise, sky_level=args.sky_level,
                  pixel_scale=args.pixel_scale, psf=args.psf, psf_hdu=args.psf_hdu,
                  psf_components=args.psf_components,
                  psf_position=None if args.psf_position is None else tuple(args.psf_position),
                  psf_centre=args.psf_centre, psf_mode=args.psf_mode,
                  centre=None if args.centre is None else (args.centre[0] - 1.0,
                                                           args.centre[1] - 1.0),
                  profile=args.profile, M=args.M,
                  n=args.sersic_n, sky=args.sky, start=args.start,
                  profile2=args.profile2, M2=args.M2, fix_n=args.fix_n,
                  imgblock_dir=args.imgblock, region_dir=args.region,
                  model_json_dir=args.model_json, scale_errors=args.scale_errors,
                  max_nfev=args.max_nfev, sample_steps=args.sample,
                  neighbours=args.neighbours, max_neighbours=args.max_neighbours,
                  targets_only=args.targets_only, bands=bands, band_files=band_files,
                  band_psfs=band_psfs, band_wavelengths=tuple(args.wavelength),
                  band_ties=tuple(args.tie), residual_pass=args.residual_pass)
    if kind == "files":
        files = args.files or [band_files[0][1]]
        tasks = [FitTask(image=f, **common) for f in files]
    elif kind == "manifest":
        tasks = survey.manifest_tasks(args, FitTask(image="", **common))
    else:
        tasks = survey.catalog_jobs(args, FitTask(image=args.image, **common))
    try:
        _, renamed = plan_outputs([t for t in tasks if isinstance(t, FitTask)], args.csv)
    except export.ExportError as exc:
        raise UserError(str(exc)) from None
    for image, stem in renamed[:20]:
        print(f"mogviewer fit: note: outputs of {image} are named {stem}* (another input has "
              "the same file name)", file=sys.stderr)
    if len(renamed) > 20:
        print(f"mogviewer fit: note: ... and {len(renamed) - 20} more renamed outputs",
              file=sys.stderr)
    # the kernels compile once per install (15-45 s); say so, and do it here, once, so that
    # worker processes load them from numba's cache instead of each compiling them
    if not kernels_ready():
        if not args.quiet:
            print("compiling the renderer (first run only)...", file=sys.stderr, flush=True)
        if not pool_server or len(tasks) < 2:
            # (a pool's fork server compiles them for its workers; a single job runs here,
            # the compiling shared by up to two processes: about half the time)
            warmup(jobs=default_jobs())
    unit = "files" if kind == "files" else "objects"
    progress = None if args.quiet else TextProgress(sys.stderr, unit=unit[:-1])
    try:
        summary = run_batch(tasks, args.csv, workers=args.workers, append=args.append,
                            resume=args.resume, progress=progress, unit=unit,
                            columns=band_columns(bands) if bands else None,
                            **survey.executor_options(args))
    except export.ExportError as exc:
        raise UserError(str(exc)) from None
    except BatchInterrupted as exc:
        if progress is not None:
            progress.close()
        print(f"\nmogviewer fit: {exc.summary.line()}; rows done so far are in {args.csv}"
              f"{' (--resume continues)' if kind != 'files' or len(tasks) > 1 else ''}",
              file=sys.stderr)
        raise
    finally:
        if progress is not None:
            progress.close()
    print(f"mogviewer fit: {summary.line()}; wrote {args.csv}", file=sys.stderr)
    if summary.flag_counts:
        print("  flags and statuses: " + ", ".join(summary.flag_lines()), file=sys.stderr)
    failed = [row for row in summary.rows if row.get("status") == "failed"]
    for row in failed[:20]:
        print(f"  failed: {row.get('object_id') or row['file']}: {row['reason']}",
              file=sys.stderr)
    if len(failed) > 20:
        print(f"  ... and {len(failed) - 20} more failed rows (status 'failed' in the CSV)",
              file=sys.stderr)
    if args.table is not None:
        n = survey.write_table(args.csv, args.table, inputs=input_paths)
        print(f"mogviewer fit: wrote {n} rows to {args.table}", file=sys.stderr)
    return 1 if summary.failed else 0


def _one_line(exc):
    return " ".join(str(exc).split())


def _psf_reason(exc, args):
    """A PSF problem in the user's words: the option, not the file, when an option is wrong."""
    text = _one_line(exc)
    if isinstance(exc, RecursionError):
        return "not a readable PSF file (JSON nested too deeply)"
    if isinstance(exc, (UnicodeDecodeError,)):
        return "not a readable PSF file (a JSON file must be UTF-8 text)"
    if isinstance(exc, MemoryError):
        return "the PSF it describes is too large to build"
    text = text if isinstance(exc, MogviewerError) else _short(exc)
    # the caller names the option and the file: the reader's own "path: " prefix would repeat it
    prefix = f"{args.psf}: "
    return text[len(prefix):] if args.psf and text.startswith(prefix) else text
