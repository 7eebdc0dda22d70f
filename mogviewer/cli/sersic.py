"""``mogviewer sersic show|plot``: the Sérsic family at one n, and the paper's Figure 4 for it.
"""

from __future__ import annotations

import math

from ..errors import UserError
from ..profiles.laws import exact_total
from ..profiles.sersic import (
    M_FAMILY,
    N_MAX,
    N_MIN,
    SOURCE,
    _check_n,
    direct_derivation,
    family_badness,
    raw_mixture,
    sersic_mixture,
)
from . import options as opt
from .options import atomic_output_or_user_error
from .plots import plot_figure4


def _table_text(n, check=None):
    raw, v = raw_mixture(n)
    w, _, dw, dv = sersic_mixture(n)
    lines = [f"ser(n={n:g}) M={M_FAMILY}: interpolated badness {family_badness(n):.4g}"]
    lines.append(f"{'m':>3} {'a_m':>12} {'a_m/sum':>12} {'sqrt(v_m)':>12} {'da_m/dn':>12} "
                 f"{'dv_m/dn':>12}")
    for i in range(M_FAMILY):
        lines.append(f"{i + 1:>3} {raw[i]:12.6f} {w[i]:12.6e} {math.sqrt(v[i]):12.6f} "
                     f"{dw[i]:12.4e} {dv[i]:12.4e}")
    lines.append(f"sum a = {raw.sum():.5f} (units of I(r_e) r_e^2); ie_factor {1 / raw.sum():.6g}; "
                 f"flux fraction {raw.sum() / exact_total('ser', n=n):.5f}")
    if check is not None:
        bi, bd = family_badness(n), check[2]
        lines.append(f"direct derivation (warm-started LM at n={n:g}): badness {bd:.4g}; "
                     f"interpolated / direct = {bi / bd if bd > 0 else math.inf:.3f}")
    return "\n".join(lines)


def _cmd_show(args):
    try:
        n = _check_n(args.n)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check = direct_derivation(n) if args.check else None
    print(_table_text(n, check))
    print(f"source: {SOURCE}")
    return 0


def _cmd_plot(args):
    with atomic_output_or_user_error(args.output, "-o") as tmp:
        plot_figure4(tmp)
    print(f"wrote {args.output}")
    return 0


def register_cli(sub):
    p = sub.add_parser("sersic", help=f"the Sérsic mixture family ({N_MIN:g} <= n <= {N_MAX:g})")
    ps = p.add_subparsers(dest="sersic_command", metavar="ACTION", required=True)
    q = ps.add_parser("show", help="print the interpolated mixture at one n")
    q.add_argument("--n", type=opt.finite_float, required=True,
                   help=f"Sérsic index ({N_MIN:g} to {N_MAX:g})")
    q.add_argument("--check", action="store_true",
                   help="compare with a direct (warm-started) derivation at this n")
    q.set_defaults(func=_cmd_show)
    q = ps.add_parser("plot", help="draw the paper's Figure 4 (amplitudes, root-variances vs n)")
    q.add_argument("-o", "--output", default="fig4.png", metavar="FILE", type=opt.plot_file)
    q.set_defaults(func=_cmd_plot)
