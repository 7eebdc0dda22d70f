"""``mogviewer info FILE``: the HDUs of a file and what :func:`~mogviewer.io.read_image` finds.
"""

from __future__ import annotations

from ..errors import ImageReadError, UserError
from ..io import NOISE_KINDS, describe, list_hdus, read_image
from . import options as opt


def _format_hdus(path):
    rows = list_hdus(path)
    lines = [f"{'HDU':>3}  {'name':<10} {'type':<13} {'shape (ny, nx)':<16} {'BAND':<5} kind"]
    for r in rows:
        shape = "-" if r["shape"] is None else "x".join(str(n) for n in r["shape"])
        lines.append(f"{r['index']:>3}  {r['name'] or '-':<10} {r['type']:<13} {shape:<16} "
                     f"{r['band'] or '-':<5} {r['kind']}")
    return "\n".join(lines)


def register_cli(sub):
    """Add the ``info`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "info", help="describe a cutout: HDUs, noise, mask, WCS, pixel scale, zeropoint",
        description="Print the HDUs of FILE and what read_image finds in it (exit status 0; "
                    "2 for unreadable input).")
    p.add_argument("file", metavar="FILE", help="FITS or .npy image")
    p.add_argument("--hdu", type=opt.hdu, help="image HDU number or EXTNAME")
    p.add_argument("--band", help="band (BAND keyword) of a multi-band file")
    p.add_argument("--plane", type=opt.int_range(0, 100000), help="plane of a 3-D cube (0-based)")
    p.add_argument("--noise", help="noise map file (FITS or .npy)")
    p.add_argument("--noise-kind", default="sigma", choices=NOISE_KINDS,
                   help="what the noise map holds (default sigma)")
    p.add_argument("--noise-hdu", type=opt.hdu,
                   help="HDU of the noise map (in --noise, or in FILE)")
    p.add_argument("--no-auto-noise", action="store_true",
                   help="do not pick up a noise HDU of FILE automatically")
    p.add_argument("--mask", help="mask file (nonzero = bad)")
    p.add_argument("--mask-hdu", type=opt.hdu, help="HDU of the mask (in --mask, or in FILE)")
    p.add_argument("--invert-mask", action="store_true", help="mask: zero = bad")
    p.add_argument("--segmap", help="segmentation map file (other segments are masked)")
    p.add_argument("--segment-id", type=opt.int_range(1, 2 ** 31 - 1),
                   help="target segment (default: id at the centre)")
    p.add_argument("--zeropoint", type=opt.finite_float, help="magnitude zeropoint for image units")
    p.add_argument("--gain", type=opt.positive_float, help="gain, e-/image unit")
    p.add_argument("--read-noise", type=opt.nonnegative_float,
                   help="read noise, e- (imfit noise model)")
    p.add_argument("--sky-level", type=opt.finite_float,
                   help="subtracted sky level, image units (imfit noise model)")
    p.add_argument("--pixel-scale", type=opt.positive_float, help="pixel scale, arcsec/px")
    p.add_argument("--poisson", action="store_true",
                   help="add Poisson noise (needs gain) to the background estimate")
    p.add_argument("--min-ivar-fraction", type=opt.float_range(0.0, 1.0),
                   help="zero ivar below this fraction of its median")
    p.set_defaults(func=_cli_info)


def _cli_info(args):
    opt.check_inputs([("FILE", args.file), ("--noise", args.noise), ("--mask", args.mask),
                      ("--segmap", args.segmap)])
    try:
        table = _format_hdus(args.file)
        data = read_image(
            args.file, hdu=args.hdu, band=args.band, plane=args.plane,
            noise=args.noise, noise_kind=args.noise_kind, noise_hdu=args.noise_hdu,
            auto_noise=not args.no_auto_noise, mask=args.mask, mask_hdu=args.mask_hdu,
            invert_mask=args.invert_mask, segmap=args.segmap, segment_id=args.segment_id,
            zeropoint=args.zeropoint, gain=args.gain, read_noise=args.read_noise,
            sky_level=args.sky_level, pixel_scale=args.pixel_scale, poisson=args.poisson,
            min_ivar_fraction=args.min_ivar_fraction)
    except ImageReadError as exc:
        msg = str(exc)
        raise UserError(msg if str(args.file) in msg else f"{args.file}: {msg}") from None
    print(f"{args.file}")
    print(table)
    print()
    print(describe(data))
    return 0
