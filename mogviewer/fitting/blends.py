"""The blend search of a scene fit: a neighbour that detection left inside the target's
segment (no saddle between them) is split off the target when the data ask for it.

Photutils' deblending cannot separate two sources with no saddle between them (closer than
about 2 r_e, or a much fainter neighbour within 3 r_e). After the first fit such a neighbour
is absorbed by the target: the target's centre is pulled toward it, its r_e and flux grow, and
what is left is a weak positive residual on the neighbour's side (often with a second one on
the far side, where the stretched model falls short). :func:`split_target` starts a galaxy at
each of two places, fits everything jointly from each, and keeps the start with the lower chi2
(the fits are local: one start is not enough):

* ``peak``: the brightest positive residual segment near the target (photutils, on the
  residual), wherever it is relative to the target's centre;
* ``score``: the maximum of :func:`score_map`, the chi2 drop of a linearised fit that adds a
  neighbour-sized galaxy at each pixel while the target may move, stretch and brighten: a
  matched filter of the residual that finds a neighbour the residual shows no peak for (a
  10x fainter neighbour 1 r_e away leaves none at S/N 200).

The better trial is kept only if its chi2 drop beats the Bayesian information criterion and the
new source is a plausible neighbour (see the constants below).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.signal import fftconvolve

from ..scene import Galaxy
from .flags import FitFlags

#: A blended neighbour is looked for within this many half-light ellipses of the target.
SPLIT_RADIUS = 5.0
#: S/N (residual segment flux over its noise) a residual peak needs to be tried as a blend.
SPLIT_SNR = 5.0
#: A source split off the target that ends flatter than this, beyond two of its errors in q,
#: is the target's own structure (an arm, a bar, a disk the profile misses), not a neighbour: on
#: the DECaLS DR9 r cutout the search otherwise splits off streaks of q 0.139 +- 0.030 and
#: 0.27 +- 0.12 (chi2 drops 464 and 102) and moves the target's r_e by 3 % and q by 0.04; the
#: simulated blended neighbours (true q 0.6) end at q 0.3-0.7, and at 1 r_e, 10x fainter, one
#: in 50 at 0.20 +- 0.30 (kept: not significantly flat).
SPLIT_MIN_Q = 0.25
#: A source split off the target that ends closer than this many PSF sigmas to the target's
#: centre is a concentric component of the target (a core or bulge its profile misses), not a
#: neighbour; the simulated pairs 1 r_e apart end 2.3 PSF sigmas apart.
SPLIT_MIN_SEPARATION = 1.0
#: The ``score`` start is tried when its linearised chi2 drop reaches this fraction of the
#: BIC's ``k ln N``: the nonlinear fit gains more than the linearised step (the neighbour's
#: shape and position adjust), so a start a little short of the bound can still pass it
#: (measured on six 1 r_e, ratio 10 pairs: linearised 44-77, fitted 55-104 for a bound of 51),
#: while on the residual of a pair fitted as two, where only noise is left, the map's maximum
#: is 3-15 (12 realisations).
SCORE_FRACTION = 0.5


def score_map(observation, scene, k, sky, template):
    """Chi2 drop of a one-step (linearised) fit that adds ``template`` at each pixel.

    At the optimum of ``scene`` the weighted residual ``r = sqrt(w) (data - model)`` is
    orthogonal to the columns ``J`` of the weighted Jacobian of the target (source ``k``) and
    the sky. A new source ``f t(x - p)`` (weighted: ``T_p = sqrt(w) t(. - p)``), fitted with
    the target's parameters and the sky linearised about the optimum, lowers chi2 by

        drop(p) = (r . T_p)^2 / (T_p . T_p - b_p^T G^+ b_p),   b_p = J^T T_p,  G = J^T J

    (one Gauss-Newton step; the score test of a source at ``p``): the residual's matched
    filter for the template, over the part of the template the target cannot absorb by moving,
    stretching or brightening. The correlations over ``p`` are FFT convolutions (scipy).

    Parameters
    ----------
    observation : Observation
    scene : Scene
        The fitted scene (its sources other than ``k`` held).
    k : int
        The target's index.
    sky : {'none', 'constant', 'plane'}
        The sky terms fitted with it.
    template : ndarray
        The new source of unit flux, centred on the middle pixel of an odd-sized stamp.

    Returns
    -------
    drop, flux : ndarray
        On the observation's grid (pixel ``[y, x]`` is the new source at ``(x, y)``); ``flux``
        is the linearised fit's flux of the template, ``r . T_p / den``. NaN where the target
        absorbs more than 90 % of the template's norm (the step is ill-conditioned there).
    """
    from .scene_model import _Model

    m = _Model(observation, scene, tuple(i == k for i in range(len(scene))), sky)
    r, J = m.dense(m.to_z(scene))
    J = -J                                            # d(weighted model)/dz
    sw = np.sqrt(m.w)
    w = np.where(m.used, m.w, 0.0)

    def image(v):
        out = np.zeros(m.shape)
        out[m.used] = v
        return out

    def corr(a, t=template):
        return fftconvolve(a, t[::-1, ::-1], mode="same")

    num = corr(sw * image(r))
    tt = corr(w, template ** 2)
    B = np.stack([corr(sw * image(J[:, c])) for c in range(J.shape[1])], axis=-1)
    absorbed = np.einsum("yxi,ij,yxj->yx", B, np.linalg.pinv(J.T @ J), B)
    den = tt - absorbed
    ok = (tt > 0) & (den > 0.1 * tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.where(ok, num * num / den, np.nan), np.where(ok, num / den, np.nan))


def _score_start(observation, scene, k, sky, neighbour_profile, free, need):
    """The best place for a neighbour by :func:`score_map` (a round ``neighbour_profile``
    galaxy of half the target's r_e), ``(x, y, flux, drop)``, if its linearised chi2 drop
    reaches :data:`SCORE_FRACTION` of ``need``; else None. ``free(x, y)``: a place not taken
    by another source."""
    from ..detect import _mixture_of, _psf_sigma
    from ..observation import Observation

    tgt = scene.sources[k]
    re = max(1.0, 0.5 * tgt.re)
    h = int(math.ceil(5.0 * re + 4.0 * _psf_sigma(_mixture_of(observation.psf))))
    h = max(1, min(h, (min(observation.shape) - 1) // 2))
    stamp = Observation.from_arrays(np.zeros((2 * h + 1, 2 * h + 1)), psf=observation.psf)
    template = Galaxy(profile=neighbour_profile, flux=1.0, x=float(h), y=float(h), re=re,
                      q=1.0, angle=0.0).render_into(stamp)
    drop, flux = score_map(observation, scene, k, sky, template)
    yy, xx = np.mgrid[:drop.shape[0], :drop.shape[1]]
    t = math.radians(tgt.angle)
    dx, dy = xx - tgt.x, yy - tgt.y
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    near = (u / tgt.re) ** 2 + (v / (tgt.q * tgt.re)) ** 2 < SPLIT_RADIUS ** 2
    drop = np.where(near & np.isfinite(drop) & (flux > 0), drop, -np.inf)
    for idx in np.argsort(drop, axis=None)[::-1][:100]:
        y, x = np.unravel_index(idx, drop.shape)
        if drop[y, x] < SCORE_FRACTION * need:
            return None
        if free(float(x), float(y)):
            return float(x), float(y), float(flux[y, x]), float(drop[y, x])
    return None


def split_target(observation, res, at, fit_once, said, nfev, *, max_splits,
                 neighbour_profile, sky="constant"):
    """The blend search of :func:`~mogviewer.fitting.scene_fit.fit_scene` (its
    ``split_blends``): ``(result, notes by source, nfev)``.

    ``fit_once(scene, fitted)`` fits a scene jointly from its start (no sequential pass) and
    returns a :class:`~mogviewer.fitting.scene_fit.SceneFitResult`; ``said`` maps source
    indices to notes, extended here; ``at`` is where the target is (x, y, 0-based pixels);
    ``sky`` the sky terms of the fit.
    """
    from ..detect import _mixture_of, _psf_sigma, _within, detect_missed

    psf_sigma = _psf_sigma(_mixture_of(observation.psf))
    sep = 2.0 * psf_sigma + 1.0
    npar = 6 if neighbour_profile != "ser" else 7
    for _ in range(max_splits):
        scene = res.scene
        k = scene.target
        tgt = scene.sources[k]
        if getattr(tgt, "kind", None) != "galaxy":
            break

        def free(x, y, scene=scene, k=k):
            # not the residual of another source's imperfect model (the target's own
            # neighbourhood is allowed: the neighbour it absorbed pulled its centre)
            return all(math.hypot(x - s.x, y - s.y) > sep
                       for i, s in enumerate(scene.sources) if i != k)

        need = npar * math.log(max(res.nu + res.covariance.shape[0], 2))
        missed = detect_missed(observation, scene, nsigma=2.0, min_snr=SPLIT_SNR,
                               relative_snr=0.0, inside=0.0, max_new=50, min_separation=0.0)
        starts = [(f"the brightest residual, S/N {d.snr:.1f}", d.x, d.y, d.flux)
                  for d in missed.sources if _within(d, tgt, SPLIT_RADIUS) and free(d.x, d.y)][:1]
        sc = _score_start(observation, scene, k, sky, neighbour_profile, free, need)
        if sc is not None and not any(math.hypot(sc[0] - x, sc[1] - y) < sep
                                      for _, x, y, _ in starts):
            starts.append((f"the score map's maximum, linearised chi2 drop {sc[3]:.1f}",
                           *sc[:3]))
        if not starts:
            break
        trials = []
        for how, x, y, flux in starts:
            new = Galaxy(profile=neighbour_profile, flux=max(flux, 1e-30), x=x, y=y,
                         re=max(1.0, 0.5 * tgt.re), q=0.8, angle=0.0)
            r = fit_once(scene.add(new), tuple(res.fitted) + (True,))
            nfev += r.nfev
            trials.append((r.chi2, how, x, y, flux, r))
            if r.status == "cancelled":
                break
        _, how, x0, y0, flux0, r2 = min(trials, key=lambda t: t[0])
        j = len(r2.scene) - 1
        gain = res.chi2 - r2.chi2
        a, b = r2.scene.sources[k], r2.scene.sources[j]
        apart = math.hypot(a.x - b.x, a.y - b.y)
        dq = r2.errors[j].get("q", math.nan)
        dq = dq if math.isfinite(dq) else 0.0
        why = ("cancelled" if r2.status == "cancelled" else
               f"chi2 drop {gain:.1f} <= {need:.1f}" if gain <= need else
               "held: " + (r2.notes[j][0] if r2.notes[j] else "outside the image or on the "
                           "target's pixel") if not r2.fitted[j] else
               "it ended at a bound or with no flux" if r2.flags[j] & (
                   FitFlags.AT_BOUND | FitFlags.NEGATIVE_FLUX) else
               f"it ended as a streak (q {b.q:.2f} +- {dq:.2f}, below {SPLIT_MIN_Q} by more "
               "than two errors): the target's own structure" if b.q + 2 * dq < SPLIT_MIN_Q else
               f"it ended on the target's centre ({apart:.2f} px < {SPLIT_MIN_SEPARATION:g} "
               "PSF sigma): the target's own core" if apart < SPLIT_MIN_SEPARATION * psf_sigma
               else "")
        tried = "; ".join(f"from {h} at ({x:.1f}, {y:.1f}) chi2 {c:.1f}"
                          for c, h, x, y, _, _ in trials)
        if why:
            said.setdefault(k, []).append(
                f"blend search: a source tried at ({x0:.1f}, {y0:.1f}) was not kept ({why}; "
                f"tried {tried})")
            break
        if math.hypot(b.x - at[0], b.y - at[1]) < math.hypot(a.x - at[0], a.y - at[1]):
            # the split-off source is where the target is: swap their places and refit, so
            # that source ``target`` stays the target
            def moved(s, o):
                return dataclasses.replace(s, flux=o.flux, x=o.x, y=o.y, re=o.re, q=o.q,
                                           angle=o.angle)
            trial = r2.scene.replace_source(k, moved(a, b)).replace_source(j, moved(b, a))
            r2 = fit_once(trial, r2.fitted)
            nfev += r2.nfev
        said[j] = [f"split off the target by the blend search (started at ({x0:.1f}, "
                   f"{y0:.1f}), {how}, flux {flux0:.4g}; chi2 drop {gain:.1f} > {need:.1f}; "
                   f"tried {tried})"]
        res = r2
        if res.status == "cancelled":
            break
    return res, said, nfev
