"""``mogviewer fit``: fit many cutouts from the command line, one CSV row per file.

Exit status: 0 when every file was fitted (flags may be set), 1 when at least one file failed, 2
for bad command-line input (one line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .. import export
from ..batch import BatchInterrupted, FitTask, load_psf, run_batch
from ..batch.tasks import _short
from ..errors import UserError


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
