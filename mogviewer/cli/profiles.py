"""``mogviewer profiles ...``: show or re-derive a mixture table, and draw the paper's Figure 1.

    mogviewer profiles show --profile luv -M 8
    mogviewer profiles derive --profile luv -M 8 [--starts 4] [--plot fig.png]

``derive`` prints the table (amplitudes in units of I(r_e) r_e^2, root-variances in units of r_e),
its badness and the published badness when there is one; ``--plot`` draws the four panels of
Hogg & Lang (2013) Figure 1: profile and mixture (log intensity vs radius), the residual, and the
fractional residual. Qt-free (matplotlib with the Agg backend).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .. import profiles
from ..errors import UserError
from ..profiles.sersic import N_MAX, N_MIN
from . import options as opt
from .options import atomic_output_or_user_error, check_output
from .plots import plot_figure1


def _table_text(profile, M, amps, variances, bad, n=None):
    lines = [f"{profile}{'' if n is None else f'(n={n:g})'} M={M}: badness {bad:.4g}"]
    pub = profiles.PUBLISHED.get((profile, M)) if profile != "ser" else None
    if pub is not None:
        lines[0] += f" (published {pub[2]:.3g}; ratio {bad / pub[2]:.4f})"
    lines.append(f"{'m':>3} {'a_m':>12} {'sqrt(v_m)':>12}")
    for i, (a, v) in enumerate(zip(amps, variances)):
        lines.append(f"{i + 1:>3} {a:12.5f} {np.sqrt(v):12.5f}")
    lines.append(f"sum a = {np.sum(amps):.4f} (units of I(r_e) r_e^2)")
    return "\n".join(lines)




def _cmd_show(args):
    if args.plot:
        check_output(args.plot, "--plot")
    try:
        mix = profiles.get_mixture(args.profile, args.M, n=args.n)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(_table_text(args.profile, args.M, mix.raw_amps, mix.variances, mix.badness, n=args.n))
    print(f"flux fraction of the target profile {mix.flux_fraction:.4f}; "
          f"mixture half-light radius {mix.half_light_ratio:.4f} r_e; source: {mix.source}")
    if args.plot:
        with atomic_output_or_user_error(args.plot, "--plot") as tmp:
            plot_figure1(tmp, args.profile, mix.raw_amps, mix.variances, n=args.n)
        print(f"wrote {args.plot}")
    return 0


def _cmd_derive(args):
    if args.profile not in profiles.PROFILES:
        raise UserError(f"unknown profile {args.profile!r}; choose one of "
                        f"{', '.join(profiles.PROFILES)}")
    if args.profile == "ser" and args.n is None:
        raise UserError("--profile ser needs --n (the Sérsic index)")
    if args.M > opt.MAX_DERIVE_M:
        raise UserError(f"-M {args.M}: profiles derive goes up to M = {opt.MAX_DERIVE_M}, the "
                        "largest published table (the cost grows steeply with M: M = 10 "
                        "already takes minutes)")
    if args.plot:
        check_output(args.plot, "--plot")
    print(f"deriving {args.profile} M={args.M} from {args.starts} start(s) per M (a large M "
          "takes minutes); Ctrl-C stops it", file=sys.stderr)
    t0 = time.time()
    try:
        d = profiles.derive(args.profile, args.M, n=args.n, n_starts=args.starts,
                            seed=args.seed)
    except ValueError as exc:
        raise UserError(" ".join(str(exc).split())) from None
    print(_table_text(args.profile, args.M, d.amps, d.variances, d.badness, n=args.n))
    print(f"derived in {time.time() - t0:.1f} s")
    if args.plot:
        with atomic_output_or_user_error(args.plot, "--plot") as tmp:
            plot_figure1(tmp, args.profile, d.amps, d.variances, n=args.n)
        print(f"wrote {args.plot}")
    return 0


def register_cli(sub):
    p = sub.add_parser("profiles", help="show or re-derive the MoG profile tables")
    ps = p.add_subparsers(dest="profiles_command", metavar="ACTION", required=True)
    for name, func, helptext in (("show", _cmd_show, "print a shipped table"),
                                 ("derive", _cmd_derive, "re-derive a table from the badness")):
        q = ps.add_parser(name, help=helptext)
        q.add_argument("--profile", required=True, choices=profiles.PROFILES,
                       help="exp, dev, lux, luv or ser")
        q.add_argument("-M", type=opt.int_range(1, opt.MAX_M), required=True,
                       help="number of Gaussian components")
        q.add_argument("--n", type=opt.float_range(N_MIN, N_MAX), default=None,
                       help=f"Sérsic index (profile ser, {N_MIN:g} to {N_MAX:g})")
        q.add_argument("--plot", metavar="FILE", type=opt.plot_file,
                       help="draw the paper's Figure 1 panels")
        if name == "derive":
            q.add_argument("--starts", type=opt.int_range(1, 64), default=4,
                           help="random starts per M")
            q.add_argument("--seed", type=opt.int_range(0, 2 ** 32 - 1), default=0)
        q.set_defaults(func=func)
