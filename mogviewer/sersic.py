"""A Sérsic mixture-of-Gaussians family for any index 0.5 <= n <= 8, smooth in n.

Hogg & Lang (2013, PASP 125, 719; Figure 4) show that the best mixtures' amplitudes and variances
vary smoothly with the Sérsic index and call expressions for them as a function of n "a valuable
follow-up". This module serves such a family: ``M_FAMILY = 10`` non-negative components whose
log-amplitudes and log-variances are cubic splines in ``ln n`` through knots derived, with the
paper's badness, by ``scripts/derive_sersic_family.py`` (stored, with its generating command and
per-knot badness, in ``mogviewer/data/sersic_family.json``).

Units as in :mod:`mogviewer.profiles`: radius in units of the half-light radius r_e, the profile
normalised to ``Q(1) = 1``, raw amplitudes in units of ``I(r_e) r_e^2`` and variances in units of
``r_e^2``.

Why M = 10
----------
Render cost is linear in M. Badness of the best (globally searched, grown-start) mixture at
fixed n (the paper's discrete badness, ``xi_max = 8``)::

    n      M=4      M=6      M=8      M=10     M=12
    0.5    0 (the profile is a single Gaussian)
    1      4.35e-6  1.59e-7  8.90e-9  6.64e-10 6.1e-11
    2      3.38e-4  3.05e-5  3.42e-6  4.37e-7  6.03e-8
    4      1.21e-2  2.01e-3  3.16e-4  3.90e-5  4.22e-6
    6      9.56e-2  1.23e-2  1.60e-3  2.01e-4  2.18e-5
    8      2.58e-1  2.95e-2  3.75e-3  4.83e-4  5.29e-5

Two more components buy a factor ~8 everywhere. With M = 10 the worst case over the whole range
(n = 8, 4.8e-4) is as good as the paper's de Vaucouleurs M = 8 table (3.16e-4), the size The
Tractor and many fits use for n = 4; with M = 8 the high-n end would be 5-12x worse than that
(worse than dev M = 6). M = 10 is also ngmix's dev size and matches the published dev M = 10 table
at n = 4 (3.90e-5); M = 12 costs 20 % more rendering for accuracy far below pixel noise.

Interpolation
-------------
Not-a-knot cubic splines (:class:`scipy.interpolate.CubicSpline`, C2) of ``ln a_m`` and ``ln v_m``
against ``ln n``; the derivatives d/dn are the spline's own analytic derivatives. Amplitudes stay
positive by construction. Interpolation between knots loses at most a factor 1.45 in badness at
every midpoint against a direct derivation there (stored in the data file; ratios taken on
``max(badness, BADNESS_FLOOR)``).

The end n = 0.5 is singular: the profile becomes a single Gaussian; approaching it, the best
tables keep their variances but all amplitudes except the outermost go to zero linearly in
(n - 0.5), so ln a has no finite limit. The knots are therefore graded (geometric in n - 0.5,
down to ~1e-7) and the n = 0.5 knot is extrapolated; the badness there is below 1e-12 and the
amplitude derivatives d a_m/dn stay finite, but the spline's ln-space curvature is huge within
~1e-3 of n = 0.5 and d v_m/dn of the (negligible, < 1e-5 of the flux) inner components wobbles
there. For n >= 0.6 the family is regular (1/6-octave knots, refined where needed).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import interpolate

from . import profiles

__all__ = ["N_MIN", "N_MAX", "M_FAMILY", "BADNESS_FLOOR", "sersic_mixture", "raw_mixture",
           "ie_factor", "family_badness", "sersic_profile_mixture", "family_knots",
           "direct_derivation", "plot_figure4", "register_cli"]

#: Valid range of the Sérsic index.
N_MIN = 0.5
N_MAX = 8.0
#: Number of Gaussian components of every member of the family.
M_FAMILY = 10
#: Badness below which interpolation accuracy is not judged by ratio (rms residual 1e-6 I(r_e)):
#: only 0.5 <= n <~ 0.6 comes below it.
BADNESS_FLOOR = 1e-12

DATA_PATH = "data/sersic_family.json"
SOURCE = ("mogviewer Sérsic family (mogviewer/data/sersic_family.json; "
          "cubic spline in ln a, ln v vs ln n)")


# --------------------------------------------------------------------------------------------
# Spline construction (shared with scripts/derive_sersic_family.py, so that the derivation checks
# exactly the interpolant served here)
# --------------------------------------------------------------------------------------------

def build_spline(n_knots, amps, variances):
    """The C2 interpolant: a not-a-knot cubic spline of ``[ln a_m, ln v_m]`` against ``ln n``.

    ``amps`` and ``variances`` are (K, M) arrays at the K increasing knots ``n_knots``.
    """
    x = np.log(np.asarray(n_knots, float))
    y = np.hstack([np.log(np.asarray(amps, float)), np.log(np.asarray(variances, float))])
    return interpolate.CubicSpline(x, y, axis=0, bc_type="not-a-knot")


def eval_spline(spline, n):
    """Raw amplitudes, variances and their d/dn from a spline made by :func:`build_spline`."""
    x = math.log(n)
    y = spline(x)
    dy = spline(x, 1) / n                       # d ln(.)/dn
    M = y.shape[0] // 2
    a, v = np.exp(y[:M]), np.exp(y[M:])
    return a, v, a * dy[:M], v * dy[M:]


@lru_cache(maxsize=1)
def _family():
    with resources.files("mogviewer").joinpath(DATA_PATH).open() as fh:
        doc = json.load(fh)
    if int(doc["M"]) != M_FAMILY:
        raise RuntimeError(f"{DATA_PATH} holds M = {doc['M']}, the code expects {M_FAMILY}")
    knots = doc["knots"]
    n = np.array([k["n"] for k in knots], float)
    a = np.array([k["amps"] for k in knots], float)
    v = np.array([k["variances"] for k in knots], float)
    b = np.array([k["badness"] for k in knots], float)
    for arr in (n, a, v, b):
        arr.setflags(write=False)
    if not (n[0] == N_MIN and n[-1] == N_MAX and np.all(np.diff(n) > 0)):
        raise RuntimeError(f"{DATA_PATH}: knots must increase from {N_MIN} to {N_MAX}")
    return {"n": n, "amps": a, "variances": v, "badness": b, "doc": doc,
            "spline": build_spline(n, a, v)}


def family_knots():
    """``(n, raw_amps, variances, badness)`` of the stored knots (read-only arrays)."""
    f = _family()
    return f["n"], f["amps"], f["variances"], f["badness"]


def _check_n(n):
    try:
        n = float(n)
    except (TypeError, ValueError):
        raise ValueError(f"Sérsic index n must be a number, got {n!r}") from None
    if not (N_MIN <= n <= N_MAX):        # also rejects NaN
        raise ValueError(f"Sérsic index n = {n:g} is outside the valid range "
                         f"{N_MIN:g} <= n <= {N_MAX:g}")
    return n


def sersic_mixture(n):
    """The family at index ``n``, normalised to unit flux, with its exact derivatives in n.

    Returns
    -------
    amps : ndarray (M_FAMILY,)
        Amplitudes normalised to ``sum = 1``.
    variances : ndarray (M_FAMILY,)
        Variances in units of r_e^2 (increasing).
    damps_dn, dvariances_dn : ndarray (M_FAMILY,)
        d/dn of the two, from the spline's analytic derivative (``damps_dn`` includes the
        normalisation, so it sums to zero).

    Raises
    ------
    ValueError
        If ``n`` is outside ``[N_MIN, N_MAX]``.
    """
    n = _check_n(n)
    a, v, da, dv = eval_spline(_family()["spline"], n)
    dla = da / a                                # d ln a_m / dn
    w = a / a.sum()
    dw = w * (dla - np.dot(w, dla))
    return w, v, dw, dv


def raw_mixture(n):
    """``(raw_amps, variances)`` at ``n``: amplitudes in units of ``I(r_e) r_e^2`` (not
    normalised; their sum is the mixture's flux for ``I(r_e) = 1``), variances in r_e^2."""
    n = _check_n(n)
    a, v, _, _ = eval_spline(_family()["spline"], n)
    return a, v


def ie_factor(n):
    """``1 / sum(raw_amps)``: a galaxy of flux F, semi-major r_e and axis ratio q has
    ``I(r_e) = F * ie_factor(n) / (q r_e^2)``."""
    return float(1.0 / raw_mixture(n)[0].sum())


@lru_cache(maxsize=1)
def _xi_weights():
    # the paper's badness radii, exactly as profiles.badness_grid (xi_max = 8), computed here
    # once so that badness at many n does not fill that function's per-n cache
    xi = (np.arange(int(round(8.0 / 0.001))) + 0.5) * 0.001
    xi = xi[xi < 8.0]
    return xi, xi / xi.sum()


def _badness(n, amps, variances):
    xi, w = _xi_weights()
    r = profiles._mog_radial(xi, amps, variances) - profiles.profile_value("ser", xi, n=n)
    return float(np.sum(w * r * r))


def family_badness(n):
    """The paper's badness of the interpolated family at ``n`` (as :func:`profiles.badness`)."""
    a, v = raw_mixture(n)
    return _badness(float(n), a, v)


@lru_cache(maxsize=256)
def _profile_mixture(n):
    a, v = raw_mixture(n)
    w = a / a.sum()
    for arr in (a, v, w):
        arr.setflags(write=False)
    return profiles.ProfileMixture(
        profile="ser", M=M_FAMILY, n=n, amps=w, variances=v, raw_amps=a,
        ie_factor=float(1.0 / a.sum()), badness=_badness(n, a, v),
        flux_fraction=float(a.sum() / profiles.exact_total("ser", n=n)),
        half_light_ratio=profiles._half_light_ratio(a, v), source=SOURCE)


def sersic_profile_mixture(n):
    """The family at ``n`` as a :class:`mogviewer.profiles.ProfileMixture` (profile ``'ser'``),
    usable wherever a table from :func:`profiles.get_mixture` is (e.g. ``render_galaxy``)."""
    return _profile_mixture(_check_n(n))


def direct_derivation(n, start=None):
    """A direct derivation at ``n``: the paper's badness minimised by the same log-parametrised
    Levenberg-Marquardt as :func:`profiles.derive`, warm-started from the interpolated family
    (or ``start = (raw_amps, variances)``), so it stays on the family's branch.

    Returns ``(raw_amps, variances, badness)``.
    """
    n = _check_n(n)
    a0, v0 = raw_mixture(n) if start is None else start
    xi, target, w = profiles.badness_grid("ser", n=n)
    a, v, _ = profiles._polish(xi, target, np.sqrt(w), np.asarray(a0, float),
                               np.asarray(v0, float))
    return a, v, _badness(n, a, v)


# --------------------------------------------------------------------------------------------
# Figure 4 and the command line
# --------------------------------------------------------------------------------------------

def plot_figure4(path, *, n_fine=400):
    """The paper's Figure 4 for the family: amplitudes (units of I(r_e) r_e^2) and root-variances
    (units of r_e) of every component vs n, log axes, knots marked; plus the badness vs n."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kn, ka, kv, kb = family_knots()
    ns = np.exp(np.linspace(math.log(N_MIN), math.log(N_MAX), n_fine))
    ns[0], ns[-1] = N_MIN, N_MAX
    A = np.array([raw_mixture(x)[0] for x in ns])
    V = np.array([raw_mixture(x)[1] for x in ns])
    B = np.array([family_badness(x) for x in ns])
    fig, ax = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, M_FAMILY))
    for m in range(M_FAMILY):
        ax[0].loglog(ns, A[:, m], color=colors[m], lw=1.2)
        ax[0].loglog(kn, ka[:, m], ".", color=colors[m], ms=3)
        ax[1].loglog(ns, np.sqrt(V[:, m]), color=colors[m], lw=1.2)
        ax[1].loglog(kn, np.sqrt(kv[:, m]), ".", color=colors[m], ms=3)
    ax[0].set(xlabel="Sérsic index n", ylabel="amplitude a_m / (I(r_e) r_e^2)",
              title=f"amplitudes (M = {M_FAMILY})")
    ax[1].set(xlabel="Sérsic index n", ylabel="sqrt(v_m) / r_e", title="root-variances")
    ax[2].loglog(ns, np.maximum(B, 1e-20), "k-", lw=1.2, label="interpolated family")
    ax[2].loglog(kn, np.maximum(kb, 1e-20), "r.", ms=4, label="knots")
    for (p, M), (_, _, pb, _) in profiles.PUBLISHED.items():
        if p in ("exp", "dev") and M == M_FAMILY:
            ax[2].loglog({"exp": 1.0, "dev": 4.0}[p], pb, "bs", ms=5, label=f"paper {p} M={M}")
    ax[2].set_ylim(1e-16, None)
    ax[2].set(xlabel="Sérsic index n", ylabel="badness", title="badness")
    ax[2].legend(fontsize=8)
    for a in ax:
        a.grid(True, which="major", alpha=0.3)
        a.set_xticks([0.5, 1, 2, 4, 8], ["0.5", "1", "2", "4", "8"])
        a.minorticks_off()
    fig.suptitle("Sérsic mixture family vs n (cf. Hogg & Lang 2013 Figure 4); dots: knots")
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
                 f"flux fraction {raw.sum() / profiles.exact_total('ser', n=n):.5f}")
    if check is not None:
        bi, bd = family_badness(n), check[2]
        lines.append(f"direct derivation (warm-started LM at n={n:g}): badness {bd:.4g}; "
                     f"interpolated / direct = {bi / bd if bd > 0 else math.inf:.3f}")
    return "\n".join(lines)


def _cmd_show(args):
    from .cli import UserError
    try:
        n = _check_n(args.n)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check = direct_derivation(n) if args.check else None
    print(_table_text(n, check))
    print(f"source: {SOURCE}")
    return 0


def _cmd_plot(args):
    from .cli import UserError
    try:
        plot_figure4(args.output)
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}")
    return 0


def register_cli(sub):
    p = sub.add_parser("sersic", help=f"the Sérsic mixture family ({N_MIN:g} <= n <= {N_MAX:g})")
    ps = p.add_subparsers(dest="sersic_command", metavar="ACTION", required=True)
    q = ps.add_parser("show", help="print the interpolated mixture at one n")
    q.add_argument("--n", type=float, required=True, help="Sérsic index")
    q.add_argument("--check", action="store_true",
                   help="compare with a direct (warm-started) derivation at this n")
    q.set_defaults(func=_cmd_show)
    q = ps.add_parser("plot", help="draw the paper's Figure 4 (amplitudes, root-variances vs n)")
    q.add_argument("-o", "--output", default="fig4.png", metavar="FILE")
    q.set_defaults(func=_cmd_plot)
