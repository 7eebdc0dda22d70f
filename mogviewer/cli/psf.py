"""``mogviewer psf fit``: fit a mixture to a PSF file, write it, draw it.
"""

from __future__ import annotations

import warnings

from ..errors import PsfError, PsfWarning, UserError
from ..psf import read_psf, write_psf
from .plots import plot_psf_model


def _cli_fit(args):

    if not args.output and not args.plot:
        raise UserError("nothing to write: give -o OUTPUT (.fits or .json) and/or --plot PNG")
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PsfWarning)
            model = read_psf(args.psf, hdu=args.hdu, plane=args.plane,
                             position=tuple(args.position) if args.position else None,
                             n_components=args.K, allow_negative=args.allow_negative,
                             centre=args.centre)
    except (PsfError, OSError) as exc:
        raise UserError(str(exc)) from None
    import sys

    for w in caught:
        print(f"mogviewer: warning: {w.message}", file=sys.stderr)
    if args.output:
        try:
            write_psf(args.output, model)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc}") from None
    print(f"{args.psf}: {model.source}, K = {model.n_components}")
    if model.quality is not None:
        print("  " + model.quality.summary())
    for n in model.notes:
        print(f"  - {n}")
    if args.output:
        print(f"wrote {args.output}")
    if args.plot:
        if model.stamp is None:
            raise UserError(f"{args.psf} holds a mixture, not an image: nothing to plot")
        plot_psf_model(model, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _hdu_arg(s):
    return int(s) if s.lstrip("-").isdigit() else s


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
    f.add_argument("-K", type=int, default=None,
                   help="number of Gaussians (default: smallest K <= 6 with max|res|/peak < 1%%)")
    f.add_argument("-o", "--output", default=None,
                   help="output mixture file (.fits or .json); -o and/or --plot")
    f.add_argument("--plot", default=None, help="write stamp / model / residual to this PNG")
    f.add_argument("--hdu", type=_hdu_arg, default=None, help="FITS HDU index or name")
    f.add_argument("--plane", type=int, default=None, help="plane of a 3-D cube")
    f.add_argument("--position", type=float, nargs=2, metavar=("X", "Y"), default=None,
                   help="PSFEx: cutout centre on the original image (PSFEx X_IMAGE, Y_IMAGE)")
    f.add_argument("--allow-negative", action="store_true", help="allow negative amplitudes")
    f.add_argument("--centre", choices=("centroid", "peak", "geometric"), default="centroid",
                   help="which point of the PSF becomes (0, 0) (default: centroid)")
    f.set_defaults(func=_cli_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
