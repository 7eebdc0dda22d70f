#!/usr/bin/env python
"""Derive the Sérsic mixture family (0.5 <= n <= 8) and write mogviewer/data/sersic_family.json.

    python scripts/derive_sersic_family.py -o mogviewer/data/sersic_family.json

Method (all with the paper's badness, xi_max = 8, the same log-parametrised Levenberg-Marquardt as
mogviewer.profiles.derive, so amplitudes are positive):

1. Anchor: the best M-component table at n = 1 from mogviewer.profiles.derive (grown and random
   starts, fixed seed).
2. Continuation: knots log-spaced in n (``--per-octave`` per factor 2) from n = 1 down to 0.5 and
   up to 8, each warm-started from a secant prediction (in ln a, ln v vs ln n) of its two
   neighbours towards n = 1. Components stay sorted by variance; a knot whose solution departs
   from the prediction by more than ``--jump`` in ln v (or twice that in ln a) -- a swap, a
   collapse or a branch change -- is rejected and the step halved, down to a minimum step.
   The end knot n = 0.5 is not fitted: there the profile is a single Gaussian, every table
   containing it has zero badness (the fit is degenerate and collapses components). Approaching
   it, the best tables are singular in n: inner amplitudes go to zero linearly in (n - 0.5), so
   ln a has no finite limit, and the two outermost components straddle the limiting Gaussian with
   a separation ~ sqrt(n - 0.5). That knot is the secant extrapolation (in ln a, ln v vs ln n) of
   the two knots before it, fitted knots being added halfway towards 0.5 until that
   extrapolation's badness is below ``--end-badness`` (1e-13, a tenth of BADNESS_FLOOR); so the
   knots are graded (geometric in n - 0.5) near 0.5, the usual remedy for a singular end.
3. Refinement: the interpolant (mogviewer.sersic.build_spline: not-a-knot cubic spline of ln a_m,
   ln v_m vs ln n) is checked at the log-midpoint of every pair of knots against a direct
   derivation there (unconstrained LM warm-started from the interpolant); where
   max(B_interp, floor) / max(B_direct, floor) exceeds ``--target`` a knot is added at the
   midpoint, until none does. The acceptance criterion is a factor 2; the default target 1.5
   leaves margin for points between midpoints.

Deterministic for given options and software versions (recorded in the file); no dates.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy

from mogviewer import __version__, profiles
from mogviewer.profiles import derivation
from mogviewer.profiles.sersic import BADNESS_FLOOR, build_spline, eval_spline

N_LO, N_HI = 0.5, 8.0
ACCEPTANCE_N = (0.73, 1.55, 2.5, 3.33, 6.1)


def grid(n):
    xi, target, w = profiles.badness_grid("ser", n=n)
    return xi, target, np.sqrt(w)


def bad(n, a, v):
    return profiles.badness("ser", a, v, n=n)


def polish(n, p_start):
    """The LM of profiles.derive (mogviewer.derivation._polish) from ``p_start = [ln a, ln v]``."""
    xi, target, sw = grid(n)
    M = len(p_start) // 2
    a, v, _ = derivation._polish(xi, target, sw, np.exp(p_start[:M]), np.exp(p_start[M:]))
    return np.concatenate([np.log(a), np.log(v)]), bad(n, a, v)


def split(p):
    M = len(p) // 2
    return np.exp(p[:M]), np.exp(p[M:])


class Family:
    def __init__(self, args):
        self.args = args
        self.knots = {}       # n -> (p, badness)
        self.extrapolated = set()

    def solve_knot(self, n, pred):
        p, b = polish(n, pred)
        dev = np.abs(p - pred)
        M = len(p) // 2
        jump = max(dev[M:].max() / self.args.jump, dev[:M].max() / (2 * self.args.jump))
        return p, b, jump

    def march(self, targets, start, extrapolate_last=False):
        """Continue from ``start`` (list of (n, p), nearest last) through ``targets``; the last
        target, if ``extrapolate_last``, gets the secant extrapolation of the two knots before
        it, with knots fitted halfway towards it until that extrapolation is good enough."""
        sols = list(start)
        queue = list(targets)
        while queue:
            n = queue[0]
            if len(sols) >= 2:
                (n1, p1), (n2, p2) = sols[-2], sols[-1]
                t = (math.log(n) - math.log(n2)) / (math.log(n2) - math.log(n1))
                pred = p2 + t * (p2 - p1)
            else:
                pred = sols[-1][1]
            if extrapolate_last and len(queue) == 1:
                b = bad(n, *split(pred))
                if b <= self.args.end_badness:
                    self.knots[n] = (pred, b)
                    self.extrapolated.add(n)
                    print(f"  knot n={n:.6g} (extrapolated): badness {b:.4g}", flush=True)
                    return
                if len(sols) > 60:
                    raise RuntimeError(f"cannot reach n = {n:g} by extrapolation")
                mid = n + 0.5 * (sols[-1][0] - n)
                print(f"  n={n:.6g}: extrapolation badness {b:.3g}; fitting n={mid:.7g}",
                      flush=True)
                queue.insert(0, mid)
                continue
            p, b, jump = self.solve_knot(n, pred)
            step = abs(math.log(n) - math.log(sols[-1][0]))
            if jump > 1.0:
                if step < self.args.min_step:
                    raise RuntimeError(f"discontinuity at n = {n:.6g} that step halving "
                                       f"cannot resolve (step {step:.2g} in ln n)")
                mid = math.sqrt(n * sols[-1][0])
                print(f"  n={n:.5g}: departs from the prediction ({jump:.2f} x tolerance); "
                      f"inserting n={mid:.5g}", flush=True)
                queue.insert(0, mid)
                continue
            queue.pop(0)
            self.knots[n] = (p, b)
            sols.append((n, p))
            print(f"  knot n={n:.7g}: badness {b:.4g}", flush=True)

    def arrays(self):
        ns = np.array(sorted(self.knots))
        P = np.array([self.knots[n][0] for n in ns])
        M = P.shape[1] // 2
        return ns, np.exp(P[:, :M]), np.exp(P[:, M:])

    def check(self, n, spline):
        a, v, _, _ = eval_spline(spline, n)
        bi = bad(n, a, v)
        if bi <= BADNESS_FLOOR:
            return a, v, bi, None, 1.0
        xi, target, sw = grid(n)
        _, _, bd = derivation._polish(xi, target, sw, a, v)
        return a, v, bi, bd, max(bi, BADNESS_FLOOR) / max(bd, BADNESS_FLOOR)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-M", type=int, default=10, help="components (default 10)")
    ap.add_argument("--per-octave", type=int, default=6, help="initial knots per factor 2 in n")
    ap.add_argument("--starts", type=int, default=2, help="random starts of the n = 1 anchor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--end-badness", type=float, default=0.1 * BADNESS_FLOOR,
                    help="max badness of the extrapolated n = 0.5 knot")
    ap.add_argument("--jump", type=float, default=0.35,
                    help="max departure from the prediction in ln v (2x this in ln a)")
    ap.add_argument("--min-step", type=float, default=0.002, help="smallest step in ln n")
    ap.add_argument("--target", type=float, default=1.5,
                    help="max interpolated/direct badness ratio at the midpoints")
    ap.add_argument("--max-rounds", type=int, default=8)
    ap.add_argument("-o", "--output", default="mogviewer/data/sersic_family.json")
    args = ap.parse_args(argv)
    t_start = time.time()
    fam = Family(args)

    # 1. anchor
    t0 = time.time()
    d = profiles.derive("ser", args.M, n=1.0, n_starts=args.starts, seed=args.seed)
    p1 = np.concatenate([np.log(d.amps), np.log(d.variances)])
    fam.knots[1.0] = (p1, d.badness)
    print(f"anchor n=1 M={args.M}: badness {d.badness:.4g} ({time.time() - t0:.0f} s)", flush=True)

    # 2. continuation from n = 1 in both directions
    t0 = time.time()
    k_lo = round(math.log2(N_LO) * args.per_octave)
    k_hi = round(math.log2(N_HI) * args.per_octave)
    up = [2.0 ** (k / args.per_octave) for k in range(1, k_hi + 1)]
    down = [2.0 ** (k / args.per_octave) for k in range(-1, k_lo - 1, -1)]
    up[-1], down[-1] = N_HI, N_LO
    print("continuation downwards", flush=True)
    fam.march(down, [(1.0, p1)], extrapolate_last=True)
    print("continuation upwards", flush=True)
    fam.march(up, [(1.0, p1)])
    t_cont = time.time() - t0

    # 3. refinement at midpoints
    t0 = time.time()
    for rnd in range(args.max_rounds):
        ns, A, V = fam.arrays()
        spline = build_spline(ns, A, V)
        checks, added = [], 0
        for n_a, n_b in zip(ns[:-1], ns[1:]):
            nm = float(math.sqrt(n_a * n_b))
            a, v, bi, bd, ratio = fam.check(nm, spline)
            checks.append({"n": nm, "badness_interpolated": bi, "badness_direct": bd,
                           "ratio": ratio})
            if ratio > args.target:
                pi = np.concatenate([np.log(a), np.log(v)])
                p, b, jump = fam.solve_knot(nm, pi)
                if jump > 1.0:
                    raise RuntimeError(f"refinement knot n = {nm:.6g} departs from the "
                                       "interpolant: the family is not continuous there")
                fam.knots[nm] = (p, b)
                added += 1
                print(f"  round {rnd + 1}: n={nm:.5g} interpolated/direct {ratio:.3f}: "
                      f"knot added (badness {b:.4g})", flush=True)
        worst = max(checks, key=lambda c: c["ratio"])
        print(f"round {rnd + 1}: {len(ns)} knots, worst midpoint ratio {worst['ratio']:.3f} at "
              f"n={worst['n']:.4g}; {added} knots added", flush=True)
        if not added:
            break
    else:
        raise RuntimeError(f"refinement did not converge in {args.max_rounds} rounds")
    t_ref = time.time() - t0

    ns, A, V = fam.arrays()
    spline = build_spline(ns, A, V)
    accept = []
    for n in ACCEPTANCE_N:
        _, _, bi, bd, ratio = fam.check(n, spline)
        accept.append({"n": n, "badness_interpolated": bi, "badness_direct": bd, "ratio": ratio})
        print(f"off-grid n={n}: interpolated {bi:.4g}, direct {bd:.4g}, ratio {ratio:.3f}")
    for n, (p, M) in ((1.0, ("exp", args.M)), (4.0, ("dev", args.M))):
        pub = profiles.PUBLISHED.get((p, M))
        b = fam.knots[n][1]
        print(f"knot n={n:g}: badness {b:.4g}" + (f"; paper's {p} M={M}: {pub[2]:.3g} "
                                                   f"(ratio {b / pub[2]:.3f})" if pub else ""))

    command = "python scripts/derive_sersic_family.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    doc = {
        "description": (
            f"Sérsic mixture-of-Gaussians family, M = {args.M} non-negative components, "
            f"{N_LO} <= n <= {N_HI}: knots of the paper's badness (Hogg & Lang 2013, xi_max = 8) "
            "for mogviewer.sersic, which interpolates ln a_m and ln v_m with a not-a-knot cubic "
            "spline in ln n."),
        "units": "amps in I(r_e) r_e^2 (not normalised); variances in r_e^2; radius in r_e",
        "provenance": (
            "Anchor at n = 1 by mogviewer.profiles.derive; knots by log-parametrised Levenberg-"
            "Marquardt continued from n = 1 in both directions, each warm-started from the secant "
            "prediction of its neighbours; the n = 0.5 end knot extrapolated from knots graded "
            "towards it; knots added at "
            "midpoints until interpolated/direct badness <= target there (ratios "
            "taken on max(badness, badness_floor)). See the script's docstring."),
        "command": command,
        "software": {"mogviewer": __version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "python": sys.version.split()[0]},
        "M": args.M, "n_min": N_LO, "n_max": N_HI,
        "interpolation": "scipy CubicSpline(bc_type='not-a-knot') of [ln a_m, ln v_m] vs ln n",
        "options": {"per_octave": args.per_octave, "starts": args.starts, "seed": args.seed,
                    "end_badness": args.end_badness,
                    "jump": args.jump, "min_step": args.min_step, "target": args.target},
        "badness_floor": BADNESS_FLOOR,
        "worst_midpoint_ratio": max(c["ratio"] for c in checks),
    }
    knots = [{"n": float(n), "badness": float(fam.knots[n][1]),
              "how": "extrapolated" if n in fam.extrapolated else
                     ("anchor" if n == 1.0 else "fitted"),
              "amps": [float(x) for x in split(fam.knots[n][0])[0]],
              "variances": [float(x) for x in split(fam.knots[n][0])[1]]} for n in ns]
    head = json.dumps(doc, indent=1, ensure_ascii=False)[:-2]
    text = (head + ',\n "knots": [\n' + ",\n".join("  " + json.dumps(k) for k in knots)
            + '\n ],\n "midpoint_checks": [\n'
            + ",\n".join("  " + json.dumps(c) for c in checks)
            + '\n ],\n "offgrid_checks": [\n'
            + ",\n".join("  " + json.dumps(c) for c in accept) + "\n ]\n}\n")
    json.loads(text)
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {len(ns)} knots; anchor+continuation {t_cont:.0f} s, "
          f"refinement {t_ref:.0f} s, total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
