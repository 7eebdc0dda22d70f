#!/usr/bin/env python
"""Simulated recovery table for the fitter (issue 4 acceptance).

200 galaxies per profile, simulated with an independent brute-force renderer of the exact profile
(tests/brute.py: supersampled, FFT-convolved with a 3-component elliptical PSF), r_e 1.5-15 px
(log-uniform), q 0.2-1, any angle, matched-filter S/N 20-500 (log-uniform), Gaussian noise from a
fixed seed; fitted from the moments-based initial guess. Prints bias and pull statistics.

    python benchmarks/recovery.py [--profiles exp:6 lux:6 dev:8 luv:8] [-n 200]
                                  [--solver lm scipy]

With several ``--solver`` values each profile's galaxies are simulated once and fitted by each
driver in turn (issue 16: the recovery statistics of the default driver against scipy's).
"""

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import recovery  # noqa: E402

from mogviewer.fitting import fit  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["exp:6", "lux:6", "dev:8", "luv:8"])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--solver", nargs="+", default=["lm"], choices=["lm", "scipy"])
    ap.add_argument("--cache-dir", default=None, help="keep the simulated images here")
    args = ap.parse_args(argv)
    for spec, solver in ((s, v) for s in args.profiles for v in args.solver):
        prof, M = spec.split(":")
        recovery.fit = functools.partial(fit, solver=solver)
        t0 = time.time()
        recs = recovery.run(prof, int(M), n_gal=args.n, seed=args.seed,
                            cache_dir=args.cache_dir)
        n_exc, n_nc = recovery.failures(recs)
        nfev = sorted(r["result"].nfev for r in recs if r["error"] is None)
        print(f"\n{prof} M={M}, solver {solver}: {args.n} galaxies in {time.time() - t0:.1f} s "
              f"(simulation included); exceptions {n_exc}, not converged {n_nc}; median "
              f"evaluations {nfev[len(nfev) // 2] if nfev else '-'}")
        for cut in (0, 100):
            rows, n = recovery.summarise(recs, snr_min=cut)
            print(f"S/N >= {cut} ({n} galaxies)")
            print("| param | n | bias (median; relative for flux, re) | mean | pull mean | "
                  "pull std | pull 1.48 MAD |")
            print("|---|---|---|---|---|---|---|")
            for p, r in rows.items():
                print(f"| {p} | {r['n']} | {r['bias']:+.4f} | {r['mean']:+.4f} | "
                      f"{r['pull_mean']:+.3f} | {r['pull_std']:.3f} | {r['pull_mad']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
