"""The target's bias in simulated blended pairs: neighbours fitted, masked or ignored (issue 17).

Pairs as in ``tests/test_scenes.py`` (``_pair``), but rendered by the independent brute-force
renderer (``tests/brute.py``: exact exponential profiles, supersampled 9x, FFT-convolved with
the 3-Gaussian PSF of ``tests/recovery.py``): target exp r_e 4 px, q 0.7, angle 30 deg, flux
5000 at (33.3, 35.6); neighbour exp r_e 3 px, q 0.6, angle 120 deg, flux 5000 / ratio, at
``sep`` target r_e along +x (and 0.8 px up); 72x72 px, Gaussian noise with the target's S/N
200. Each mode detects with :func:`mogviewer.detect.detect_sources`, builds the scene with
:func:`~mogviewer.detect.scene_from_detections` and fits with
:func:`~mogviewer.fitting.scene_fit.fit_scene` (``sky='none'``; ``fit`` with
``split_blends=True, target_at`` the target's position). "alone" fits the same noise with no
neighbour: the reference, so that model mismatch (the M=6 mixture against the exact profile)
is not counted as blending bias. The table prints mean bias over ``--seeds`` noise
realisations and its standard error, flux / r_e, in percent; for the fitted neighbours also the
scatter (standard deviation over the realisations) of the target's flux and the mean 1-sigma
flux error the fit reports, to compare with the scatter, and the number of sources the fits
ended with. The noiseless pair is rendered once per separation and ratio (the brute-force
renderer is most of the time); the realisations differ in the noise only.

Run with ``.venv/bin/python benchmarks/bench_blends.py [--seeds 6] [--seps 1] [--ratios 3 10]
[--modes fit]``.
"""

import argparse
import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from brute import exact_galaxy_image  # noqa: E402
from recovery import PSF  # noqa: E402

from mogviewer.detect import detect_sources, scene_from_detections  # noqa: E402
from mogviewer.fitting.scene_fit import fit_scene  # noqa: E402
from mogviewer.observation import Observation  # noqa: E402

SHAPE = (72, 72)
TX, TY = 33.3, 35.6


def _galaxy(flux, x, y, re, q, angle):
    """Exact exponential of total ``flux`` (normalised on a 4x larger grid around it)."""
    img = exact_galaxy_image("exp", 1.0, x, y, re, q, angle, SHAPE, PSF)
    big = exact_galaxy_image("exp", 1.0, x + 108, y + 108, re, q, angle, (288, 288), PSF)
    return img * (flux / big.sum())


@functools.lru_cache(maxsize=None)
def _noiseless(sep, ratio):
    return (_galaxy(5000.0, TX, TY, 4.0, 0.7, 30.0),
            _galaxy(5000.0 / ratio, TX + 4.0 * sep, 36.4, 3.0, 0.6, 120.0))


def pair(sep, ratio, seed):
    tgt, nb = _noiseless(sep, ratio)
    sigma = np.sqrt((tgt ** 2).sum()) / 200.0
    noise = np.random.default_rng(seed).normal(0.0, sigma, SHAPE)
    return tgt + nb + noise, tgt + noise, sigma


def fit_target(img, sigma, mode):
    obs = Observation.from_arrays(img, sigma=np.full(SHAPE, sigma), psf=PSF)
    det = detect_sources(img, ivar=obs.ivar, psf=PSF)
    scene, mask, _ = scene_from_detections(det, target=(TX, TY), profile="exp", M=6, psf=PSF,
                                           neighbours=mode)
    res = fit_scene(obs.replace(mask=obs.mask | mask), scene, sky="none",
                    split_blends=mode == "fit", target_at=(TX, TY))
    g = res.scene.sources[0]
    return (g.flux / 5000.0 - 1.0, g.re / 4.0 - 1.0, len(res.scene),
            res.errors[0].get("flux", np.nan) / 5000.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--seps", type=float, nargs="+", default=[4.0, 3.0, 2.0, 1.5, 1.0],
                    help="separations in target r_e")
    ap.add_argument("--ratios", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    ap.add_argument("--modes", nargs="+", default=["fit", "mask", "ignore"],
                    choices=["fit", "mask", "ignore"])
    args = ap.parse_args()
    modes = ["alone"] + args.modes
    print(f"load average {open('/proc/loadavg').read().split()[:3]}, {args.seeds} seeds")
    head = {"alone": "alone", "fit": "neighbours fitted", "mask": "masked",
            "ignore": "ignored"}
    extra = ["fitted: flux scatter / reported error (%)"] if "fit" in modes else []
    cols = ["separation (r_e)", "flux ratio"] + [head[m] for m in modes] + extra
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    t0 = time.perf_counter()
    for sep in args.seps:
        for ratio in args.ratios:
            out = {m: [] for m in modes}
            nsrc, err = [], []
            for seed in range(args.seeds):
                img, alone, sigma = pair(sep, ratio, seed)
                for m in modes:
                    r = fit_target(alone if m == "alone" else img, sigma,
                                   "ignore" if m == "alone" else m)
                    out[m].append(r[:2])
                    if m == "fit":
                        nsrc.append(r[2])
                        err.append(r[3])

            def cell(v):
                v = 100.0 * np.asarray(v)
                mu, se = v.mean(0), v.std(0, ddof=1) / np.sqrt(len(v))
                return f"{mu[0]:+.1f}±{se[0]:.1f} / {mu[1]:+.1f}±{se[1]:.1f}"
            cells = [cell(out[m]) + (f" (n={min(nsrc)}-{max(nsrc)})" if m == "fit" else "")
                     for m in modes]
            if "fit" in modes:
                f = 100.0 * np.asarray(out["fit"])[:, 0]
                cells.append(f"{f.std(ddof=1):.1f} / {100.0 * np.nanmean(err):.1f}")
            print(f"| {sep:g} | {ratio:g} | " + " | ".join(cells) + " |", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s; load average "
          f"{open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
