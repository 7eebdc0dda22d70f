#!/usr/bin/env python
"""Catalogue mode on a field larger than the machine's memory (issue 19): memory stays bounded.

    python benchmarks/bench_survey_huge.py [--side 90000] [-n 300] [--workers 1]

The field is a *sparse* FITS file: a header and ``side`` x ``side`` float32 pixels (90000 px:
32.4 GB, more than this machine's 24 GiB), plus a weight map of the same size, of which only
small patches around the sources are ever written (each a 96 x 96 exponential galaxy with
Gaussian noise and its inverse variance); everywhere else the image is 0 and the weight 0
(masked). The file system stores only the written blocks, so the files cost a few MB of disk
and are made in seconds, but every reader sees 32.4 GB images: a reader that loaded the field
(or one row band of it) into memory would need more than the machine has.

``mogviewer fit --image field.fits --weight weight.fits --catalog cat.fits`` then runs in a
fresh process (the local pool with ``--workers``), and the benchmark reports its wall time, the
rate, the peak resident set of the process and its workers (``wait4``'s ``ru_maxrss``:
anonymous memory plus the file pages actually touched) against the field's size, and checks
the fitted fluxes and sizes against the truth. Memory is sampled from ``/proc``: the private
(anonymous) memory of the process and its workers, which is what a field larger than memory
must keep bounded, and apart from it the file pages mapped (page cache: clean, shared, given
back under memory pressure).
"""

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATCH = 96          # side of the written patch around each source (pixels)
PSF_SIGMA = 1.5     # Gaussian PSF (pixels)


def _header_bytes(side, wcs=False):
    from astropy.io import fits

    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = -32
    h["NAXIS"] = 2
    h["NAXIS1"] = side
    h["NAXIS2"] = side
    h["MAGZERO"] = 30.0
    return h.tostring().encode("ascii")


def make_sparse_field(path, side):
    """A FITS file of side x side float32 zeros that occupies (almost) no disk: the header,
    then the data unit's length set by truncate (a hole the file system does not store)."""
    head = _header_bytes(side)
    nbytes = side * side * 4
    pad = (-nbytes) % 2880
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + nbytes + pad)
    return len(head)


def open_pixels(path, offset, side):
    """The sparse file's pixels, writable (only the pages written are ever stored)."""
    return np.memmap(path, dtype=">f4", mode="r+", offset=offset, shape=(side, side))


def galaxy(shape, x, y, flux, re, q, angle_deg):
    """An exponential galaxy convolved with the Gaussian PSF, by 5x5 sub-pixel sampling (the
    truth, independent of mogviewer's renderer)."""
    ny, nx = shape
    s = (np.arange(5) + 0.5) / 5 - 0.5
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    t = np.radians(angle_deg)
    img = np.zeros(shape)
    b = 1.678
    for dy in s:
        for dx in s:
            u = (xx + dx - x) * np.cos(t) + (yy + dy - y) * np.sin(t)
            v = -(xx + dx - x) * np.sin(t) + (yy + dy - y) * np.cos(t)
            r = np.sqrt(u * u + (v / q) ** 2)
            img += np.exp(-b * r / re)
    img /= img.sum()
    from scipy.ndimage import gaussian_filter
    return flux * gaussian_filter(img, PSF_SIGMA, mode="constant")


def _family(pid):
    """pid and its descendants (from /proc)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _rss(pid):
    """RssAnon and RssFile of a process, kB (0 once it has ended)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon", "RssFile")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=90000)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", help="directory to write into (default: a temporary one)")
    args = ap.parse_args(argv)
    from astropy.io import fits
    from astropy.table import Table

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mog-huge-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    img_p, w_p = tmp / "field.fits", tmp / "weight.fits"
    off = make_sparse_field(img_p, args.side)
    make_sparse_field(w_p, args.side)
    pix, wpix = open_pixels(img_p, off, args.side), open_pixels(w_p, off, args.side)
    rng = np.random.default_rng(19)
    sigma = 1.0
    rows = []
    margin = PATCH
    half = PATCH // 2
    for i in range(args.n):
        cx = int(rng.integers(margin, args.side - margin))
        cy = int(rng.integers(margin, args.side - margin))
        re = float(rng.uniform(2.0, 5.0))
        q = float(rng.uniform(0.4, 1.0))
        ang = float(rng.uniform(0, 180))
        flux = float(rng.uniform(2000, 8000))
        fx, fy = half + rng.uniform(-0.5, 0.5), half + rng.uniform(-0.5, 0.5)
        g = galaxy((PATCH, PATCH), fx, fy, flux, re, q, ang)
        g += rng.normal(0, sigma, g.shape)
        x0, y0 = cx - half, cy - half
        pix[y0:y0 + PATCH, x0:x0 + PATCH] = g
        wpix[y0:y0 + PATCH, x0:x0 + PATCH] = 1 / sigma ** 2
        rows.append((i, x0 + fx, y0 + fy, flux, re, q))
    pix.flush()
    wpix.flush()
    del pix, wpix
    cat = Table(rows=rows, names=("id", "x", "y", "flux_true", "re_true", "q_true"))
    cat.write(tmp / "cat.fits", overwrite=True)
    yy, xx = np.mgrid[-12:13, -12:13].astype(float)
    psf = np.exp(-(xx ** 2 + yy ** 2) / (2 * PSF_SIGMA ** 2))
    fits.PrimaryHDU((psf / psf.sum()).astype(np.float32)).writeto(tmp / "psf.fits",
                                                                  overwrite=True)
    t_make = time.perf_counter() - t0
    size_gb = args.side ** 2 * 4 / 1e9
    disk_mb = sum(os.stat(p).st_blocks * 512 for p in (img_p, w_p)) / 1e6
    with open("/proc/meminfo") as f:
        mem_gb = int(f.readline().split()[1]) * 1024 / 1e9
    print(f"field {args.side} x {args.side} float32: {size_gb:.1f} GB each for image and "
          f"weight (machine memory {mem_gb:.1f} GB); {disk_mb:.1f} MB on disk (sparse); "
          f"{args.n} galaxies written in {t_make:.1f} s")

    out = tmp / "fits.csv"
    if out.exists():
        out.unlink()
    cmd = [sys.executable, "-m", "mogviewer", "fit", "--image", str(img_p), "--weight",
           str(w_p), "--catalog", str(tmp / "cat.fits"), "--psf", str(tmp / "psf.fits"),
           "--cutout-size", "64", "--csv", str(out), "--workers", str(args.workers),
           "--quiet"]
    t1 = time.perf_counter()
    with open(tmp / "stderr.txt", "w") as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        peak = {"RssAnon": 0, "RssFile": 0}
        while proc.poll() is None:         # sample the process and its workers every 50 ms
            tot = dict.fromkeys(peak, 0)
            for pid in _family(proc.pid):
                for k, v in _rss(pid).items():
                    tot[k] += v
            for k in peak:
                peak[k] = max(peak[k], tot[k])
            time.sleep(0.05)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t1
    err = (tmp / "stderr.txt").read_text()
    cpu = ru.ru_utime + ru.ru_stime
    anon_mb, file_mb = peak["RssAnon"] / 1024, peak["RssFile"] / 1024
    if not out.exists():
        print("the run wrote no CSV:\n" + err[-2000:])
        return 1
    with open(out) as f:
        got = {int(r["object_id"]): r for r in csv.DictReader(f)}
    truth = {int(r[0]): r for r in rows}
    ok = [i for i, r in got.items() if r.get("status") == "converged"]
    fr = np.array([float(got[i]["flux"]) / truth[i][3] for i in ok])
    rr = np.array([float(got[i]["re_pix"]) / truth[i][4] for i in ok])
    print(f"`{' '.join(Path(c).name if '/' in c else c for c in cmd[1:])}`")
    print(f"{len(got)} rows ({len(ok)} converged) in {wall:.1f} s wall, {cpu:.1f} CPU-s "
          f"({len(got) / wall:.0f} objects/s)")
    print(f"peak memory of the run (the process and its workers, sampled every 50 ms): "
          f"{anon_mb:.0f} MB private (anonymous), {100 * anon_mb * 2 ** 20 / (size_gb * 1e9):.2f}"
          f" % of one image; plus {file_mb:.0f} MB of the files' pages mapped (page cache, "
          f"clean and reclaimable: the kernel maps 64 kB around each faulting row)")
    if len(ok):
        print(f"flux / truth: median {np.median(fr):.4f}, 16-84 % {np.percentile(fr, 16):.4f}"
              f"-{np.percentile(fr, 84):.4f}; r_e / truth: median {np.median(rr):.4f}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0 if len(got) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
