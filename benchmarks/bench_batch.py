#!/usr/bin/env python
"""Batch throughput (issue 5): 64x64 cutouts fitted per second with 1 and 2 workers, end to end
(read FITS + sigma map, PSF mixture from a JSON file, fit exp M=6 with sky, write the CSV row).

    python benchmarks/bench_batch.py [-n 60]

The cutouts are simulated once into a temporary directory (exp galaxies, random r_e 2-8 px,
q 0.3-1, any angle, Gaussian PSF sigma 1.3 px, noise sigma 1). One worker runs in this process;
two are forks of the fork server (:mod:`mogviewer.batch.executors`), whose start-up (imports,
numba cache load) is included in the wall time, as a user sees it.

CPU seconds are this process's and all its descendants' (the fork server, stopped and reaped
after the two-worker run, and the workers it reaped): cutouts per CPU-second is the per-core
rate on a machine shared with other jobs, where wall-clock rates are not. The load average is
printed before and after.
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from mogviewer import batch
from mogviewer.export import write_model_json  # noqa: F401  (documents the JSON format)
from mogviewer.mixture import Mixture
from mogviewer.psf import write_psf
from mogviewer.render import render_model


def make_cutouts(d, n, rng):
    psf = Mixture.isotropic([1.0], [1.3 ** 2])
    write_psf(d / "psf.json", psf)
    files = []
    for i in range(n):
        p = dict(flux=float(rng.uniform(500, 5000)), x=31.5 + rng.uniform(-2, 2),
                 y=31.5 + rng.uniform(-2, 2), re=float(rng.uniform(2, 8)),
                 q=float(rng.uniform(0.3, 1)), angle=float(rng.uniform(0, 180)), sky=1.0)
        img = render_model(p, "exp", 6, psf, (64, 64)) + rng.normal(0, 1.0, (64, 64))
        f = d / f"cut{i:04d}.fits"
        fits.HDUList([fits.PrimaryHDU(img.astype(np.float32)),
                      fits.ImageHDU(np.ones((64, 64), np.float32), name="SIGMA")]).writeto(f)
        files.append(f)
    return files, d / "psf.json"


def _cpu():
    """CPU seconds of this process and its reaped descendants."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _stop_fork_server():
    import multiprocessing.forkserver as fs

    getattr(fs._forkserver, "_stop", lambda: None)()


def _load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=400, help="number of cutouts")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files, psf = make_cutouts(d, args.n, rng)
        tasks = [batch.FitTask(image=str(f), hdu=0, noise_hdu="SIGMA", noise_kind="sigma",
                               psf=str(psf), profile="exp", M=6) for f in files]
        print(f"{args.n} cutouts of 64x64, exp M=6 + sky, Gaussian PSF; end to end; load "
              f"{_load()}")
        print("| workers | wall time (s) | cutouts per second | first row after (s) | "
              "per second after the first row | CPU (s) | cutouts per CPU-s | converged |")
        print("|---|---|---|---|---|---|---|---|")
        rates = {}
        for workers in (1, 2):
            stamps = []
            c0 = _cpu()
            t0 = time.perf_counter()
            summary = batch.run_batch(tasks, d / f"out{workers}.csv", workers=workers,
                                      progress=lambda done, total, row: stamps.append(
                                          time.perf_counter()))
            dt = time.perf_counter() - t0
            if workers > 1:
                _stop_fork_server()     # its CPU and its workers' counts once it is reaped
            cpu = _cpu() - c0
            ok = sum(r["status"] == "converged" for r in summary.rows)
            rates[workers] = args.n / dt
            steady = (len(stamps) - 1) / (stamps[-1] - stamps[0])
            print(f"| {workers} | {dt:.2f} | {rates[workers]:.1f} | {stamps[0] - t0:.2f} | "
                  f"{steady:.1f} | {cpu:.2f} | {args.n / cpu:.0f} | {ok}/{args.n} |",
                  flush=True)
        print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x; load after {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
