"""The blend search of a scene fit: a neighbour that detection left inside the target's
segment (no saddle between them) is split off the target when the data ask for it.

Photutils' deblending cannot separate two sources with no saddle between them (closer than
about 2 r_e, or a much fainter neighbour within 3 r_e). After the first fit such a neighbour
shows as a positive residual near the target; :func:`split_target` tries the brightest one as a
galaxy, fits everything jointly, and keeps it only if the chi2 drop beats the Bayesian
information criterion and the new source is a plausible galaxy (see the constants below).
"""

from __future__ import annotations

import dataclasses
import math

from ..scene import Galaxy
from .flags import FitFlags

#: A blended neighbour is looked for within this many half-light ellipses of the target.
SPLIT_RADIUS = 5.0
#: S/N (residual segment flux over its noise) a residual peak needs to be tried as a blend.
SPLIT_SNR = 5.0
#: A source split off the target that ends flatter than this is the target's own structure (an
#: arm, a bar, a disk the profile misses), not a neighbour: on the DECaLS DR9 r cutout the
#: search otherwise splits off streaks of q 0.12 and 0.01 (chi2 drops 464 and 85) and moves the
#: target's r_e by 3 % and q by 0.04; the simulated blended neighbours end at q 0.5-0.7.
SPLIT_MIN_Q = 0.25


def split_target(observation, res, at, fit_once, said, nfev, *, max_splits,
                 neighbour_profile):
    """The blend search of :func:`~mogviewer.fitting.scene_fit.fit_scene` (its
    ``split_blends``): ``(result, notes by source, nfev)``.

    ``fit_once(scene, fitted)`` fits a scene jointly from its start (no sequential pass) and
    returns a :class:`~mogviewer.fitting.scene_fit.SceneFitResult`; ``said`` maps source
    indices to notes, extended here; ``at`` is where the target is (x, y, 0-based pixels).
    """
    from ..detect import _within, detect_missed

    for _ in range(max_splits):
        scene = res.scene
        k = scene.target
        tgt = scene.sources[k]
        if getattr(tgt, "kind", None) != "galaxy":
            break
        missed = detect_missed(observation, scene, nsigma=2.0, min_snr=SPLIT_SNR,
                               relative_snr=0.0, inside=0.0, max_new=50)
        cands = [d for d in missed.sources if _within(d, tgt, SPLIT_RADIUS)]
        if not cands:
            break
        d = cands[0]                       # brightest residual near the target
        new = Galaxy(profile=neighbour_profile, flux=max(d.flux, 1e-30), x=d.x, y=d.y,
                     re=max(1.0, 0.5 * tgt.re), q=0.8, angle=0.0)
        trial = scene.add(new)
        j = len(trial) - 1
        r2 = fit_once(trial, tuple(res.fitted) + (True,))
        nfev += r2.nfev
        npar = 6 if neighbour_profile != "ser" else 7
        need = npar * math.log(max(r2.nu + r2.covariance.shape[0], 2))
        gain = res.chi2 - r2.chi2
        why = ("cancelled" if r2.status == "cancelled" else
               f"chi2 drop {gain:.1f} <= {need:.1f}" if gain <= need else
               "held (outside the image or on the target's pixel)" if not r2.fitted[j] else
               "it ended at a bound or with no flux" if r2.flags[j] & (
                   FitFlags.AT_BOUND | FitFlags.NEGATIVE_FLUX) else
               f"it ended as a streak (q {r2.scene.sources[j].q:.2f} < {SPLIT_MIN_Q}): the "
               "target's own structure" if r2.scene.sources[j].q < SPLIT_MIN_Q else "")
        if why:
            said.setdefault(k, []).append(
                f"blend search: a source tried at ({d.x:.1f}, {d.y:.1f}) was not kept ({why})")
            break
        a, b = r2.scene.sources[k], r2.scene.sources[j]
        if math.hypot(b.x - at[0], b.y - at[1]) < math.hypot(a.x - at[0], a.y - at[1]):
            # the split-off source is where the target is: swap their places and refit, so
            # that source ``target`` stays the target
            def moved(s, o):
                return dataclasses.replace(s, flux=o.flux, x=o.x, y=o.y, re=o.re, q=o.q,
                                           angle=o.angle)
            trial = r2.scene.replace_source(k, moved(a, b)).replace_source(j, moved(b, a))
            r2 = fit_once(trial, r2.fitted)
            nfev += r2.nfev
        said[j] = [f"split off the target by the blend search (residual at "
                   f"({d.x:.1f}, {d.y:.1f}), flux {d.flux:.4g}; chi2 drop {gain:.1f} > "
                   f"{need:.1f})"]
        res = r2
        if res.status == "cancelled":
            break
    return res, said, nfev
