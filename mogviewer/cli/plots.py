"""Figures drawn for the command line (matplotlib, Agg backend: no display needed).
"""

from __future__ import annotations

import math

import numpy as np

from .. import profiles
from ..profiles.derivation import _mog_radial
from ..profiles.sersic import M_FAMILY, N_MAX, N_MIN, family_badness, family_knots, raw_mixture


def plot_psf_model(model, path):
    """Save stamp / model / residual side by side (PNG via matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import SymLogNorm
    from matplotlib.figure import Figure

    stamp = model.stamp
    mod = model.model_image()
    res = stamp - mod
    peak = np.nanmax(stamp)
    fig = Figure(figsize=(12, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    norm = SymLogNorm(linthresh=1e-3 * peak, vmin=-0.01 * peak, vmax=peak)
    q = model.quality
    # the residual's colour range is its own largest value (a fixed +-2 % left a 0.07 %
    # residual blank), in per cent of the peak so that the colour bar's labels stay short
    rel = 100 * res / peak
    lim = float(np.nanmax(np.abs(rel))) if np.any(np.isfinite(rel)) else 1.0
    lim = lim if lim > 0 else 1.0
    for ax, img, title, kw in (
            (axes[0], stamp, "stamp (normalised)", dict(norm=norm, cmap="viridis")),
            (axes[1], mod, f"mixture, K = {model.n_components}", dict(norm=norm, cmap="viridis")),
            (axes[2], rel, "(stamp - mixture) / peak, %",
             dict(cmap="RdBu_r", vmin=-lim, vmax=lim))):
        im = ax.imshow(img, origin="lower", interpolation="nearest", **kw)
        ax.set_title(title)
        if "norm" in kw:     # decades, and no labels at +-linthresh (they overlapped)
            ticks = [-0.01 * peak, 0.0] + [peak * 10.0 ** k for k in (-3, -2, -1, 0)]
            fig.colorbar(im, ax=ax, shrink=0.8, ticks=ticks, format="%.0e")
        else:
            fig.colorbar(im, ax=ax, shrink=0.8)
    size = (f"size ratio (mixture/stamp, 2nd moments) {q.fwhm_ratio:.4f}" if q.size_defined
            else "size ratio undefined (negative wings)")
    fig.suptitle(f"{size}; max |residual| {lim:.2g} % of the peak; |residual| flux "
                 f"{100 * q.residual_flux_fraction:.2g} % of the stamp's")
    fig.savefig(path, dpi=90)


def plot_figure1(path, profile, amps, variances, *, n=None):
    """The paper's Figure 1 panels for one mixture, written to ``path`` (PNG/PDF)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xi, target, _ = profiles.badness_grid(profile, n=n)
    mog = _mog_radial(xi, amps, variances)
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    ax[0].semilogy(xi, target, "k-", lw=2, label=f"{profile} (exact)")
    ax[0].semilogy(xi, mog, "r--", lw=1.2, label=f"MoG, M={len(amps)}")
    for a, v in zip(amps, variances):
        ax[0].semilogy(xi, a / (2 * np.pi * v) * np.exp(-xi ** 2 / (2 * v)), color="0.6", lw=0.6)
    ax[0].set_ylim(max(target[target > 0].min(), 1e-6), target.max() * 2)
    ax[0].set(xlabel="radius / r_e", ylabel="intensity / I(r_e)", title="profile and mixture")
    ax[0].legend(fontsize=8)
    ax[1].plot(xi, mog - target, "k-", lw=1)
    ax[1].axhline(0, color="0.5", lw=0.5)
    ax[1].set(xlabel="radius / r_e", ylabel="MoG - exact", title="residual")
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(target > 0, (mog - target) / target, np.nan)
    ax[2].plot(xi, frac, "k-", lw=1)
    ax[2].axhline(0, color="0.5", lw=0.5)
    ax[2].set_ylim(-0.2, 0.2)
    ax[2].set(xlabel="radius / r_e", ylabel="(MoG - exact) / exact", title="fractional residual")
    bad = profiles.badness(profile, amps, variances, n=n)
    fig.suptitle(f"{profile} M={len(amps)}: badness {bad:.3g}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
