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
realisations and its standard error, flux / r_e, in percent.

Run with ``.venv/bin/python benchmarks/bench_blends.py [--seeds 6]`` (about 2 min on 2 cores).
"""

import argparse
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


def pair(sep, ratio, seed):
    tgt = _galaxy(5000.0, TX, TY, 4.0, 0.7, 30.0)
    nb = _galaxy(5000.0 / ratio, TX + 4.0 * sep, 36.4, 3.0, 0.6, 120.0)
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
    return g.flux / 5000.0 - 1.0, g.re / 4.0 - 1.0, len(res.scene)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    print(f"load average {open('/proc/loadavg').read().split()[:3]}, {args.seeds} seeds")
    print("| separation (r_e) | flux ratio | alone | neighbours fitted | masked | ignored |")
    print("|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for sep in (4.0, 3.0, 2.0, 1.5, 1.0):
        for ratio in (1.0, 3.0, 10.0):
            out = {m: [] for m in ("alone", "fit", "mask", "ignore")}
            nsrc = []
            for seed in range(args.seeds):
                img, alone, sigma = pair(sep, ratio, seed)
                out["alone"].append(fit_target(alone, sigma, "ignore")[:2])
                for m in ("fit", "mask", "ignore"):
                    r = fit_target(img, sigma, m)
                    out[m].append(r[:2])
                    if m == "fit":
                        nsrc.append(r[2])

            def cell(v):
                v = 100.0 * np.asarray(v)
                mu, se = v.mean(0), v.std(0, ddof=1) / np.sqrt(len(v))
                return f"{mu[0]:+.1f}±{se[0]:.1f} / {mu[1]:+.1f}±{se[1]:.1f}"
            print(f"| {sep:g} | {ratio:g} | {cell(out['alone'])} | {cell(out['fit'])} "
                  f"(n={min(nsrc)}-{max(nsrc)}) | {cell(out['mask'])} | "
                  f"{cell(out['ignore'])} |", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s; load average "
          f"{open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
