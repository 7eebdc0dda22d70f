#!/usr/bin/env python
"""Survey throughput (issue 19): a simulated field fitted end to end in catalogue mode.

    python benchmarks/bench_survey.py [--size 4096] [-n 5000] [--workers 2] [--profile-serial 200]
                                      [--keep DIR]

The field (simulated once into a temporary directory by :func:`make_field`): ``size`` x ``size``
float32 pixels with a TAN WCS, 80 % exponential galaxies (r_e 1.5-6 px, q 0.4-1, any angle, S/N
about 20-300) and 20 % stars, Gaussian noise with an inverse-variance weight map, and a
PSFEx-like varying PSF: a degree-1 PSFEx file whose PSF is ``(1 - w) G(1.2 px) + w G(2.0 px)``
with ``w = 0.5 + 0.6 u + 0.4 v`` across the field (FWHM 2.8 to 4.7 px). Every source is drawn
with the PSF of its own position (exactly the PSFEx model there). The catalogue is a FITS table
with ra/dec (through the WCS), flux_radius and an id.

Each backend runs ``run_batch`` on the same cutout jobs (the PSF fitted once per 512 px cell)
in a fresh process, timed from the start of that process (imports and worker start-up
included, as a user sees them); peak memory is the largest resident set over that process and
all its descendants (``wait4``'s ``ru_maxrss``; file-backed pages of the memory-mapped field
count there too), and the CPU time is theirs too: objects per CPU-second is the per-core rate
on a machine shared with other jobs, where wall-clock rates are not. Rows are compared
between backends by id, every column except the elapsed time. ``--profile-serial N`` adds a
cProfile of N objects in one process: where the time goes.
"""

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAMP = 25            # PSFEx stamp side (pixels)
S0, S1 = 1.2, 2.0     # the two Gaussians of the PSF (sigma, pixels)


def _gauss_stamp(sigma, dx=0.0, dy=0.0, half=STAMP // 2):
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(float)
    return np.exp(-((x - dx) ** 2 + (y - dy) ** 2) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)


def psf_weight(x, y, size):
    """w of the PSF at 0-based field pixel (x, y): PSFEx's u, v from 1-based X_IMAGE."""
    u = (x + 1 - (size + 1) / 2) / size
    v = (y + 1 - (size + 1) / 2) / size
    return 0.5 + 0.6 * u + 0.4 * v


def write_psfex(path, size):
    """A degree-1 PSFEx file: PSF_MASK = [P0, P_u, P_v] with P(u, v) = P0 + u P_u + v P_v."""
    from astropy.io import fits

    g0, g1 = _gauss_stamp(S0), _gauss_stamp(S1)
    mask = np.array([0.5 * g0 + 0.5 * g1, 0.6 * (g1 - g0), 0.4 * (g1 - g0)], np.float32)
    col = fits.Column(name="PSF_MASK", format=f"{mask.size}E", dim=f"({STAMP}, {STAMP}, 3)",
                      array=mask[None])
    hdu = fits.BinTableHDU.from_columns([col], name="PSF_DATA")
    h = hdu.header
    h["POLNAXIS"], h["POLGRP1"], h["POLGRP2"] = 2, 1, 1
    h["POLNAME1"], h["POLNAME2"] = "X_IMAGE", "Y_IMAGE"
    h["POLZERO1"], h["POLZERO2"] = (size + 1) / 2, (size + 1) / 2
    h["POLSCAL1"], h["POLSCAL2"] = float(size), float(size)
    h["POLNGRP"], h["POLDEG1"], h["PSF_SAMP"] = 1, 1, 1.0
    h["PSFNAXIS"], h["PSFAXIS1"], h["PSFAXIS2"], h["PSFAXIS3"] = 3, STAMP, STAMP, 3
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def make_field(d, size=4096, n=5000, seed=19, sigma=1.0):
    """Write ``field.fits``, ``weight.fits``, ``field.psfex`` and ``sources.fits`` into ``d``;
    return the truth as a list of dicts (id, kind, x, y, flux, re, q, angle)."""
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    from mogviewer.mixture import Mixture
    from mogviewer.render import render_model

    rng = np.random.default_rng(seed)
    d = Path(d)
    field = rng.normal(0.0, sigma, (size, size)).astype(np.float32)
    truth = []
    margin = 20
    for i in range(n):
        x, y = rng.uniform(margin, size - 1 - margin, 2)
        w = float(np.clip(psf_weight(x, y, size), 0.0, 1.0))
        psf = Mixture.isotropic([1.0 - w, w], [S0 ** 2, S1 ** 2])
        ix, iy = int(round(x)), int(round(y))
        if rng.uniform() < 0.8:
            re = float(rng.uniform(1.5, 6.0))
            flux = float(10 ** rng.uniform(math.log10(300), math.log10(5000)))
            q, angle = float(rng.uniform(0.4, 1.0)), float(rng.uniform(0, 180))
            half = int(min(max(6 * re + 8, 16), 48))
            p = dict(flux=flux, x=x - ix + half, y=y - iy + half, re=re, q=q, angle=angle)
            stamp = render_model(p, "exp", 6, psf, (2 * half + 1, 2 * half + 1))
            kind = "galaxy"
        else:
            flux, re, q, angle = float(10 ** rng.uniform(2.5, 3.7)), 0.0, 1.0, 0.0
            half = 16
            stamp = (1 - w) * _gauss_stamp(S0, x - ix, y - iy, half) + \
                w * _gauss_stamp(S1, x - ix, y - iy, half)
            stamp = flux * stamp
            kind = "star"
        y0, x0 = iy - half, ix - half
        ys = slice(max(y0, 0), min(y0 + stamp.shape[0], size))
        xs = slice(max(x0, 0), min(x0 + stamp.shape[1], size))
        field[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        truth.append(dict(id=f"S{i:05d}", kind=kind, x=x, y=y, flux=flux, re=re, q=q,
                          angle=angle))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    wcs.wcs.cd = [[-0.2 / 3600, 0.0], [0.0, 0.2 / 3600]]
    hdr = wcs.to_header()
    hdr["MAGZERO"] = 30.0
    fits.PrimaryHDU(field, header=hdr).writeto(d / "field.fits", overwrite=True)
    fits.PrimaryHDU(np.full((size, size), 1.0 / sigma ** 2, np.float32),
                    header=hdr).writeto(d / "weight.fits", overwrite=True)
    write_psfex(d / "field.psfex", size)
    ra, dec = wcs.all_pix2world([t["x"] for t in truth], [t["y"] for t in truth], 0)
    fr = [max(t["re"], 1.5) for t in truth]
    Table(dict(id=[t["id"] for t in truth], ra=ra, dec=dec, flux_radius=fr)).write(
        d / "sources.fits", overwrite=True)
    return truth


def plan(d, *, psf_cell=512, psf_mode="auto", max_per_job=None):
    """The cutout jobs of the simulated field (what ``mogviewer fit --image ... --catalog``
    plans)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from mogviewer.batch import FitTask
    from mogviewer.batch.cutouts import plan_cutout_jobs
    from mogviewer.io.catalog import read_catalog

    d = Path(d)
    wcs = WCS(fits.getheader(d / "field.fits")).celestial
    src = read_catalog(d / "sources.fits", wcs=wcs, size_column="flux_radius")
    template = FitTask(image=str(d / "field.fits"), psf=str(d / "field.psfex"), profile="exp",
                       M=6, psf_mode=psf_mode)
    kw = {} if max_per_job is None else dict(max_per_job=max_per_job)
    return plan_cutout_jobs(d / "field.fits", src, template, weight=str(d / "weight.fits"),
                            psf_cell=psf_cell, size_factor=8.0, min_size=24, max_size=64, **kw)


_CHILD = """
import resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {bench_dir!r})
if {executor!r} == "processes" and {workers} > 1:
    # as the CLI does: the fork server starts before this process's own imports and plan
    from mogviewer.batch.executors import prestart
    prestart()
from mogviewer.render import kernels_ready, warmup
import bench_survey
from mogviewer.batch import run_batch
if not kernels_ready() and not ({executor!r} == "processes" and {workers} > 1):
    warmup()            # as the CLI does: a pool's fork server compiles for its workers
jobs = bench_survey.plan({d!r}, psf_mode={psf_mode!r}{plan_kw})
t_plan = time.perf_counter() - t0
cpu_plan = resource.getrusage(resource.RUSAGE_SELF)
marks = []
def progress(done, total, row):
    if not marks:
        marks.append(time.perf_counter() - t0)
s = run_batch(jobs, {csv!r}, workers={workers}, executor={executor!r}, unit="objects",
              progress=progress)
t_end = time.perf_counter() - t0
me = resource.getrusage(resource.RUSAGE_SELF)
# stop and reap the fork server (it would end with this process, unreaped): its CPU, and that of
# the workers it forked and reaped, then counts in this process's children, as wait4 reports
import multiprocessing.forkserver as fs
getattr(fs._forkserver, "_stop", lambda: None)()
print("RESULT", t_end, s.fitted, s.flagged, s.failed, t_plan, marks[0] if marks else -1,
      cpu_plan.ru_utime + cpu_plan.ru_stime, me.ru_utime + me.ru_stime, flush=True)
"""


_STARTUP = """
import multiprocessing.forkserver as fs, os, resource, time
t0 = time.perf_counter()
from mogviewer.batch.executors import PoolExecutor
from mogviewer.batch.runner import run_job
from mogviewer.render import warmup
warmup()
t1 = time.perf_counter()
c1 = resource.getrusage(resource.RUSAGE_SELF)
from mogviewer.batch import FitTask
task = FitTask(image={image!r}, profile="exp", M=6)
ex = PoolExecutor(run_job, workers={workers}, failed=None)
assert all(r[0]["status"] == "converged" for _, r in ex.map([task] * {workers}))
t2 = time.perf_counter()
getattr(fs._forkserver, "_stop", lambda: None)()
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("STARTUP", t2 - t1, me.ru_utime + me.ru_stime - c1.ru_utime - c1.ru_stime,
      kids.ru_utime + kids.ru_stime)
"""


def startup(workers, method):
    """Wall and CPU seconds of starting a pool of ``workers`` (``spawn`` or ``forkserver``)
    and running one small fit per worker (a 64 x 64 cutout: the job's imports and kernels
    loaded, ~10 ms of fitting), after the parent's own imports and warm-up."""
    env = dict(os.environ, MOGVIEWER_START_METHOD=method, OPENBLAS_NUM_THREADS="1")
    image = Path(__file__).parents[1] / "tests/data/real/imfit-sdss/ic3478rss_64x64.fits"
    out = subprocess.run([sys.executable, "-c", _STARTUP.format(workers=workers,
                                                                image=str(image))],
                         capture_output=True, text=True, env=env, check=True).stdout
    _, wall, parent, kids = [ln for ln in out.splitlines() if ln.startswith("STARTUP")][0].split()
    return float(wall), float(parent), float(kids)


def run_backend(d, backend, workers, csv_path, psf_mode, max_per_job=None):
    """Run one backend in a fresh process: ``serial``, ``processes``, ``dask``, and
    ``processes-spawn`` / ``dask-spawn`` (workers started by ``spawn`` instead of the fork
    server, for comparison); ``/N`` after the name plans with ``max_per_job=N``."""
    backend, _, own = backend.partition("/")
    max_per_job = int(own) if own else max_per_job
    executor, _, method = backend.partition("-")
    plan_kw = "" if max_per_job is None else f", max_per_job={max_per_job}"
    code = _CHILD.format(bench_dir=str(Path(__file__).parent), d=str(d), psf_mode=psf_mode,
                         csv=str(csv_path), workers=workers, executor=executor,
                         plan_kw=plan_kw)
    t0 = time.perf_counter()
    # one BLAS thread in every process, the serial one too (the pool's workers get it anyway)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if method:
        env["MOGVIEWER_START_METHOD"] = method
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"{backend} run failed ({p.returncode}): {out[-2000:]}")
    _, inner, fitted, flagged, failed, t_plan, t_first, cpu_plan, cpu_parent = line[0].split()
    return dict(wall=wall, inner=float(inner), fitted=int(fitted), flagged=int(flagged),
                failed=int(failed), maxrss_mb=ru.ru_maxrss / 1024,
                cpu=ru.ru_utime + ru.ru_stime, t_plan=float(t_plan), t_first=float(t_first),
                cpu_plan=float(cpu_plan), cpu_parent=float(cpu_parent))


def read_rows(path):
    with open(path, newline="") as f:
        return {r["object_id"]: r for r in csv.DictReader(f)}


def compare(a, b):
    """Number of rows whose columns (all but elapsed_s) differ, and the ids missing."""
    differ = [k for k in a if k in b and {c: v for c, v in a[k].items() if c != "elapsed_s"}
              != {c: v for c, v in b[k].items() if c != "elapsed_s"}]
    return len(differ), sorted(set(a) ^ set(b))


def accuracy(rows, truth):
    """Median |r_e| relative error and flux ratio of converged galaxies with S/N-ish flux."""
    rel_re, ratio = [], []
    for t in truth:
        r = rows.get(t["id"])
        if t["kind"] != "galaxy" or r is None or r["status"] != "converged":
            continue
        rel_re.append(float(r["re_pix"]) / t["re"] - 1)
        ratio.append(float(r["flux_mog"]) / t["flux"])
    return (float(np.median(np.abs(rel_re))) if rel_re else math.nan,
            float(np.median(ratio)) if ratio else math.nan, len(rel_re))


def profile_serial(d, n, psf_mode):
    import cProfile
    import pstats

    from mogviewer.batch.runner import run_job
    from mogviewer.render import warmup

    warmup()
    jobs = plan(d, psf_mode=psf_mode)
    picked, k = [], 0
    for j in jobs:
        if k >= n:
            break
        picked.append(j)
        k += j.n_objects
    for j in picked[:1]:
        run_job(j)               # field opened, PSF of one cell fitted: not in the profile
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    m = sum(len(run_job(j)) for j in picked[1:])
    pr.disable()
    dt = time.perf_counter() - t0
    print(f"\ncProfile of {m} objects in one process ({m / dt:.0f} objects/s with the "
          "profiler's overhead); cumulative time:")
    pstats.Stats(pr).sort_stats("cumulative").print_stats(40)
    pstats.Stats(pr).sort_stats("tottime").print_stats(15)


def _field(d, size, n):
    """Simulate the field into ``d``, or reuse the one a previous ``--keep`` run left there
    (same size, count and seed: ``truth.json`` says which)."""
    import json

    stamp = d / "truth.json"
    if stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved.get("size") == size and saved.get("n") == n:
            return saved["truth"], "reused"
    t0 = time.perf_counter()
    truth = make_field(d, size, n)
    stamp.write_text(json.dumps(dict(size=size, n=n, truth=truth)))
    return truth, f"simulated in {time.perf_counter() - t0:.0f} s"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--psf-mode", default="auto", choices=("auto", "mixture"))
    ap.add_argument("--backends", default="serial,processes,dask",
                    help="comma-separated: serial, processes, dask, and processes-spawn, "
                         "dask-spawn (workers started by spawn, not the fork server); /N after "
                         "a name: jobs of at most N sources (e.g. processes/64); a backend "
                         "named twice runs twice")
    ap.add_argument("--max-per-job", type=int, default=None, metavar="N",
                    help="plan_cutout_jobs's max_per_job (default: its own)")
    ap.add_argument("--profile-serial", type=int, default=0, metavar="N")
    ap.add_argument("--keep", metavar="DIR",
                    help="simulate the field into DIR and keep it (a later run with the same "
                         "--size and -n reuses it); default: a temporary directory")
    ap.add_argument("--startup", type=int, default=0, metavar="R",
                    help="only measure the pool's start-up (spawn vs fork server), R times "
                         "each, alternating")
    args = ap.parse_args(argv)
    if args.startup:
        print(f"pool start-up, {args.workers} workers, one 64x64 fit each (after the "
              f"parent's imports); load {open('/proc/loadavg').read().split()[:3]}")
        print("| start method | wall (s) | parent CPU (s) | workers + server CPU (s) |")
        print("|---|---|---|---|")
        for _ in range(args.startup):
            for method in ("spawn", "forkserver"):
                wall, parent, kids = startup(args.workers, method)
                print(f"| {method} | {wall:.2f} | {parent:.2f} | {kids:.2f} |", flush=True)
        print(f"load after: {open('/proc/loadavg').read().split()[:3]}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        truth, how = _field(d, args.size, args.n)
        field_mb = (d / "field.fits").stat().st_size / 2 ** 20
        print(f"field {args.size}x{args.size} ({field_mb:.0f} MB + weight), {args.n} sources "
              f"({sum(t['kind'] == 'star' for t in truth)} stars), {how}; "
              f"{len(plan(d))} jobs (512 px PSF cells); psf-mode {args.psf_mode}; "
              f"load {open('/proc/loadavg').read().split()[:3]}")
        print("| backend | workers | wall (s) | objects/s | objects/s per worker | CPU (s) | "
              "objects per CPU-s | peak RSS (MB) | converged+flagged/failed | median abs r_e "
              "err | median flux ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        results, parts = {}, {}
        for k, backend in enumerate(args.backends.split(",")):
            workers = 1 if backend == "serial" else args.workers
            label = backend if backend not in parts else f"{backend} ({k + 1})"
            out = d / f"{backend.replace('/', '_')}-{k}.csv"
            r = run_backend(d, backend, workers, out, args.psf_mode, args.max_per_job)
            parts[label] = r
            rows = read_rows(out)
            results[label] = rows
            err, ratio, ng = accuracy(rows, truth)
            rate = args.n / r["wall"]
            print(f"| {label} | {workers} | {r['wall']:.1f} | {rate:.0f} | "
                  f"{rate / workers:.0f} | {r['cpu']:.1f} | {args.n / r['cpu']:.0f} | "
                  f"{r['maxrss_mb']:.0f} | "
                  f"{r['fitted'] + r['flagged']}/{r['failed']} | {err:.4f} ({ng} galaxies) | "
                  f"{ratio:.4f} |", flush=True)
        print("\nWhere the time goes (seconds from the start of the backend's process): the "
              "parent's imports + warm-up + plan (wall, CPU), the first row, the end; CPU of "
              "the parent in all and of its workers (the rest of the total)")
        print("| backend | plan wall | plan CPU | first row | end | parent CPU | workers CPU |")
        print("|---|---|---|---|---|---|---|")
        for backend, r in parts.items():
            print(f"| {backend} | {r['t_plan']:.1f} | {r['cpu_plan']:.1f} | "
                  f"{r['t_first']:.1f} | {r['inner']:.1f} | {r['cpu_parent']:.1f} | "
                  f"{r['cpu'] - r['cpu_parent']:.1f} |")
        names = list(results)
        for other in names[1:]:
            n_diff, missing = compare(results[names[0]], results[other])
            print(f"rows {names[0]} vs {other}: {n_diff} differ (all columns but elapsed_s), "
                  f"{len(missing)} ids in one only")
        print(f"load after: {open('/proc/loadavg').read().split()[:3]}")
        if args.profile_serial:
            profile_serial(d, args.profile_serial, args.psf_mode)


if __name__ == "__main__":
    main()
