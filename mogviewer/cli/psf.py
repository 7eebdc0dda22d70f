"""``mogviewer psf fit``: fit a mixture to a PSF file, write it, draw it.
"""

from __future__ import annotations

import sys
import warnings

from ..errors import PsfError, PsfWarning, UserError
from ..export.files import same_file_as_any
from ..psf import read_psf, write_psf
from . import options as opt
from .options import atomic_output_or_user_error, check_input, check_output
from .plots import plot_psf_model


def _cli_fit(args):
    check_input(args.psf, "PSFFILE")
    outputs = [(o, n) for o, n in ((args.output, "-o"), (args.plot, "--plot")) if o]
    for out, name in outputs:
        check_output(out, name, inputs=[args.psf])
    if args.output and args.plot and same_file_as_any(args.output, [args.plot]):
        raise UserError(f"-o and --plot name the same file {args.output}")
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PsfWarning)
            model = read_psf(args.psf, hdu=args.hdu, plane=args.plane,
                             position=tuple(args.position) if args.position else None,
                             n_components=args.K, allow_negative=args.allow_negative,
                             centre=args.centre)
    except (PsfError, OSError) as exc:
        raise UserError(f"PSFFILE {_one_line(exc)}" if str(args.psf) not in str(exc)
                        else _one_line(exc)) from None
    except RecursionError:
        raise UserError(f"PSFFILE {args.psf}: not a readable PSF file (JSON nested too "
                        "deeply)") from None
    except UnicodeDecodeError:
        raise UserError(f"PSFFILE {args.psf}: not a readable PSF file (a JSON file must be "
                        "UTF-8 text)") from None
    except (MemoryError, ZeroDivisionError, OverflowError) as exc:
        raise UserError(f"PSFFILE {args.psf}: the PSF it describes cannot be built "
                        f"({type(exc).__name__}); check its header") from None
    if args.plot and model.stamp is None:
        raise UserError(f"{args.psf} holds a mixture, not an image: nothing to plot")
    for w in caught:
        if issubclass(w.category, PsfWarning):
            print(f"mogviewer: warning: {_one_line(w.message)}", file=sys.stderr)
    if args.output:
        with atomic_output_or_user_error(args.output, "-o", [args.psf]) as tmp:
            write_psf(tmp, model)
    print(f"{args.psf}: {model.source}, K = {model.n_components}")
    if model.quality is not None:
        print("  " + model.quality.summary())
    for n in model.notes:
        print(f"  - {n}")
    if args.output:
        print(f"wrote {args.output}")
    if args.plot:
        with atomic_output_or_user_error(args.plot, "--plot", [args.psf]) as tmp:
            plot_psf_model(model, tmp)
        print(f"wrote {args.plot}")
    if not (args.output or args.plot):   # a look at the quality figures (new-user review)
        print("nothing written: -o OUTPUT (.json or .fits) saves the mixture, --plot PNG draws "
              "it")
    return 0


def _one_line(exc):
    return " ".join(str(exc).split())


def register_cli(sub):
    """Add ``mogviewer psf fit PSFFILE [-K K] -o OUT [--plot PNG]`` to the subparsers."""
    p = sub.add_parser("psf", help="PSF tools: fit a mixture of Gaussians to a PSF",
                       description="PSF tools.")
    psub = p.add_subparsers(dest="psf_command", metavar="ACTION")
    f = psub.add_parser(
        "fit", help="fit a mixture of Gaussians to a PSF image or PSFEx file",
        description="Read a PSF (FITS image in any HDU, .npy array, PSFEx file or Tractor "
                    "mixture), fit K Gaussians and write the mixture (Tractor table + header "
                    "form FITS, or JSON if OUTPUT ends in .json).")
    f.add_argument("psf", metavar="PSFFILE")
    f.add_argument("-K", type=opt.int_range(1, opt.MAX_PSF_COMPONENTS), default=None,
                   help="number of Gaussians (default: smallest K <= 6 with max|res|/peak < 1%%)")
    f.add_argument("-o", "--output", default=None, type=opt.nonempty_name,
                   help="output mixture file (.fits or .json); -o and/or --plot")
    f.add_argument("--plot", default=None, type=opt.plot_file,
                   help="write stamp / model / residual to this PNG")
    f.add_argument("--hdu", type=opt.hdu, default=None, help="FITS HDU index or name")
    f.add_argument("--plane", type=opt.int_range(0, 100000), default=None,
                   help="plane of a 3-D cube")
    f.add_argument("--position", type=opt.finite_float, nargs=2, metavar=("X", "Y"), default=None,
                   help="PSFEx: cutout centre on the original image (PSFEx X_IMAGE, Y_IMAGE)")
    f.add_argument("--allow-negative", action="store_true", help="allow negative amplitudes")
    f.add_argument("--centre", choices=("centroid", "peak", "geometric"), default="centroid",
                   help="which point of the PSF becomes (0, 0) (default: centroid)")
    f.set_defaults(func=_cli_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
