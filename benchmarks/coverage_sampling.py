"""Coverage of the 68 % intervals: posterior (emcee) and formal errors, on simulated galaxies.

The experiment is tests/sampling_coverage.py's (exp: brute-force simulations; ser: mogviewer's
renderer at the true n; r_e 1.5-15 px, q 0.2-1, S/N 20-500, 3-component PSF, fixed seed); each
galaxy is fitted, then sampled to ESS >= 1000. For flux, r_e, q and n (Sersic fits) the script
prints the fraction of galaxies whose 16-84 % posterior interval, and whose best fit +- formal
error, contain the truth (issue 20: 68 +- 5 %).

    python benchmarks/coverage_sampling.py --n 200 --profile ser
"""

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import sampling_coverage  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--profile", default="exp", choices=("exp", "ser"))
    ap.add_argument("--max-steps", type=int, default=3000)
    ap.add_argument("--min-ess", type=int, default=1000)
    ap.add_argument("--ln-prior", default="flux,flux2,re,re2,n",
                    help="parameters with a prior flat in their logarithm (comma-separated; "
                         "'' for flat priors everywhere; default flux, r_e and n)")
    ap.add_argument("--start", type=int, default=0, help="skip the first galaxies")
    ap.add_argument("--progress", action="store_true", help="a line per galaxy")
    args = ap.parse_args(argv)

    def report(used, hits, post, truth, snr, res):
        iv = " ".join(f"{p}={truth[p]:.4g}[{lo:.4g},{hi:.4g}]" for p, (lo, hi) in
                      ((p, post.interval("flux_target" if p == "flux" else p)[::2])
                       for p in hits["posterior"]))
        print(f"{used:4d} " + " ".join(f"{k[0]}{p}={v}" for k in hits for p, v in hits[k].items())
              + f" steps={post.n_steps} conv={post.converged} snr={snr:.0f} {iv}", flush=True)

    ln_prior = tuple(p for p in args.ln_prior.split(",") if p)
    hits, used, n_conv, dt = sampling_coverage.run(args.profile, args.n, min_ess=args.min_ess,
                                                   max_steps=args.max_steps, ln_prior=ln_prior,
                                                   start=args.start,
                                                   report=report if args.progress else None)
    print(f"{used} galaxies fitted and sampled ({args.profile}, prior flat in ln of "
          f"{', '.join(ln_prior) or 'nothing'}, from galaxy {args.start}), {n_conv} chains "
          f"converged, {dt:.0f} s")
    print(f"{'param':>6} {'posterior 16-84 %':>18} {'formal +-1 sigma':>17}")
    for p in hits["posterior"]:
        print(f"{p:>6} {100 * hits['posterior'][p] / used:>17.1f}% "
              f"{100 * hits['formal'][p] / used:>16.1f}%")
    se = 100 * math.sqrt(0.68 * 0.32 / max(used, 1))
    print(f"(binomial standard error at 68 %: {se:.1f} points)")


if __name__ == "__main__":
    main()
