#!/usr/bin/env python
"""Derive Sérsic mixture tables with the paper's badness and write mogviewer/data/ser_tables.json.

Reproducible: the derivation (mogviewer.profiles.derive) is deterministic for a given seed and
number of starts. The command that produced the shipped file is recorded in it.

    python scripts/derive_ser_tables.py --n 2 3 5 --M 6 8 10 -o mogviewer/data/ser_tables.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mogviewer import __version__
from mogviewer.profiles import derive


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, nargs="+", default=[2.0, 3.0, 5.0])
    ap.add_argument("--M", type=int, nargs="+", default=[6, 8, 10])
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default="mogviewer/data/ser_tables.json")
    args = ap.parse_args(argv)
    rows = []
    for n in args.n:
        for M in args.M:
            t0 = time.time()
            d = derive("ser", M, n=n, n_starts=args.starts, seed=args.seed)
            rows.append({"n": n, "M": M, "amps": [float(a) for a in d.amps],
                         "sqrt_var": [float(np.sqrt(v)) for v in d.variances],
                         "badness": d.badness})
            print(f"ser n={n:g} M={M}: badness {d.badness:.4g} ({time.time() - t0:.0f} s)",
                  flush=True)
    doc = {
        "provenance": (
            "Derived by mogviewer.profiles.derive (the paper's badness, xi_max = 8, log-"
            "parametrised Levenberg-Marquardt from grown and random starts) with mogviewer "
            f"{__version__}. Amplitudes in units of I(r_e) r_e^2, root-variances in units of r_e."),
        "command": "python scripts/derive_ser_tables.py " + " ".join(sys.argv[1:] if argv is None
                                                                    else argv),
        "tables": rows,
    }
    Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
