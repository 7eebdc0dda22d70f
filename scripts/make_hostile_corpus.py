#!/usr/bin/env python
"""Write the hostile corpus of issue 15: inputs built to break the command line, and the cases
that use them, each with its expected outcome.

    python scripts/make_hostile_corpus.py OUTDIR     (writes OUTDIR/in/ and OUTDIR/cases.json)

``tests/test_hostile_corpus.py`` calls :func:`make_corpus` into a temporary directory and runs
every case through ``mogviewer.cli.main`` as a user would, checking: the exit status; a fragment
of the message (on stderr, or in the CSV's ``reason``); that every input file is unchanged (same
bytes, a FIFO still a FIFO); the files the case must create; and that no temporary file or
directory is left anywhere. The classes (``cls``) follow issue 15:

outputs     an output naming an input (image, mask, noise, segmap, PSF, --start JSON), by any
            spelling (symbolic link, hard link, ``dir/../``)
nonregular  FIFOs, devices, sockets and directories as outputs *and* as inputs, /dev/zero
bounded     files whose headers promise more than mogviewer reads
names       per-file outputs that would collide; a 250-byte file name; non-ASCII names
append      appends to files that are not this version's CSV
options     every option value out of range, refused before any file is read (the FILE
            arguments of these cases do not exist: the message must be about the option)
values      extreme pixel and noise values; truncated extensions; tiny images
psf         broken PSFEx headers, deeply nested / Latin-1 JSON, missing HDUs
start       broken or far-off --start models

Deterministic (fixed seed); the files are small (the whole directory is < 2 MB; the one large
file is sparse).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

N = 32  # cutouts are 32x32: big enough to fit, small enough that the corpus runs in seconds


def _galaxy(rng, flux=800.0, scale=1.0):
    y, x = np.mgrid[:N, :N]
    r = np.hypot((x - 15.6) / 1.0, (y - 16.3) / 0.7)
    img = flux / (2 * np.pi * 3.0 ** 2) * np.exp(-r / 3.0 * 1.68) * 3 + rng.normal(0, 1.0, (N, N))
    return (img * scale).astype(np.float64)


def _write_inputs(d, rng):
    """Every input file of the corpus; returns names of the special (non-regular) ones."""
    d.mkdir(parents=True, exist_ok=True)
    img = _galaxy(rng)
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=16.0, CRPIX2=16.0, CRVAL1=150.0,
               CRVAL2=2.0, CD1_1=-1e-4, CD1_2=0.0, CD2_1=0.0, CD2_2=1e-4)
    fits.writeto(d / "g.fits", img.astype(np.float32), hdr)
    fits.writeto(d / "mask.fits", np.zeros((N, N), np.int16))
    fits.writeto(d / "sigma.fits", np.ones((N, N), np.float32))
    seg = np.zeros((N, N), np.int32)
    seg[8:24, 8:24] = 1
    fits.writeto(d / "seg.fits", seg)
    y, x = np.mgrid[:15, :15]
    psf = np.exp(-((x - 7) ** 2 + (y - 7) ** 2) / (2 * 1.3 ** 2))
    fits.writeto(d / "psf.fits", psf / psf.sum())
    np.save(d / "g.npy", img)
    # same stem in two directories, and an input named like an output of g.fits
    for sub in ("A", "B"):
        (d / sub).mkdir()
        fits.writeto(d / sub / "cut.fits", img.astype(np.float32))
    (d / "blk").mkdir()
    fits.writeto(d / "blk" / "g_imgblock.fits", img.astype(np.float32))
    fits.writeto(d / "Cut.fits", img.astype(np.float32))
    fits.writeto(d / "cut.fits", img.astype(np.float32))
    fits.writeto(d / "gälaxy é.fits", img.astype(np.float32))
    fits.writeto(d / "g;rm -rf x $(id).fits", img.astype(np.float32))
    # extreme values
    for tag, s in (("1e300", 1e300), ("1e-300", 1e-300), ("1e200", 1e200), ("1e-200", 1e-200),
                   ("1e90", 1e90), ("1e-90", 1e-90), ("1e120", 1e120), ("1e-120", 1e-120)):
        fits.writeto(d / f"scaled_{tag}.fits", img * s)
        fits.writeto(d / f"sigma_{tag}.fits", np.full((N, N), s))
    fits.writeto(d / "tiny_2x2.fits", np.ones((2, 2)))
    fits.writeto(d / "all_zero.fits", np.zeros((N, N)))
    # an image whose error extension is cut short: the primary is fine
    hdul = fits.HDUList([fits.PrimaryHDU(img.astype(np.float32)),
                         fits.ImageHDU(np.ones((N, N), np.float32), name="ERR")])
    hdul.writeto(d / "trunc_err.fits")
    raw = (d / "trunc_err.fits").read_bytes()
    (d / "trunc_err.fits").write_bytes(raw[: len(raw) - 2880])
    # a header that promises 1e10 pixels in a 6 kB file
    small = fits.PrimaryHDU(np.zeros((4, 4), np.float32))
    small.writeto(d / "huge_header.fits")
    raw = bytearray((d / "huge_header.fits").read_bytes())
    head = raw[:2880].decode("ascii")
    head = head.replace("NAXIS1  =                    4", "NAXIS1  =               100000")
    head = head.replace("NAXIS2  =                    4", "NAXIS2  =               100000")
    raw[:2880] = head.encode("ascii")
    (d / "huge_header.fits").write_bytes(bytes(raw))
    # a .npy header that promises 1e10 values (the data are absent)
    with open(d / "huge.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)})
        fh.write(b"\0" * 64)
    (d / "not_fits.fits").write_text("this is not a FITS file\n")
    # PSFs
    _psfex(d / "psfex_polscal0.fits", degree=1, POLSCAL1=0.0)
    _psfex(d / "psfex_deg1.fits", degree=1)
    _psfex(d / "psfex_samp_huge.fits", PSF_SAMP=1e9)
    _psfex(d / "psfex_ok.fits")
    (d / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (d / "latin1.json").write_bytes('{"format": "mogviewer-model", "profile": "exp", '
                                    '"note": "caf\xe9"}'.encode("latin-1"))
    (d / "psf_latin1.json").write_bytes('{"amps": [1.0], "note": "caf\xe9"}'.encode("latin-1"))
    (d / "empty.json").write_text("")
    # --start models
    good = {"format": "mogviewer-model", "version": 1, "profile": "exp", "M": 6, "n": None,
            "sky": "constant", "params": {"flux": 800.0, "x": 15.6, "y": 16.3, "re": 3.0,
                                          "q": 0.7, "angle": 0.0, "sky": 0.0}}
    (d / "start.json").write_text(json.dumps(good))
    for name, change in (("start_M1000.json", {"M": 1000}),
                         ("start_rainbow.json", {"sky": "rainbow"}),
                         ("start_profile.json", {"profile": "gauss"}),
                         ("start_far.json", {"params": dict(good["params"], flux=1.0)}),
                         ("start_params_list.json", {"params": [1, 2, 3]})):
        (d / name).write_text(json.dumps(dict(good, **change)))
    (d / "start_nan.json").write_text(json.dumps(good).replace('"flux": 800.0', '"flux": NaN'))
    # CSVs to append to
    (d / "other_columns.csv").write_text("a,b\n1,2\n")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    # a large sparse model file (bounded read): 40 MB that take no disk space
    with open(d / "start_huge.json", "wb") as fh:
        fh.truncate(40 * 2 ** 20)
    (d / "afile").write_text("a regular file, used as a directory in paths\n")
    # special files: a FIFO, a socket and (as root) a character device like /dev/null
    os.mkfifo(d / "fifo")
    os.mkfifo(d / "fifo.fits")
    os.mkfifo(d / "fifo.json")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(d / "sock"))
    finally:
        sock.close()
    try:
        os.mknod(d / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):  # not root: a second FIFO plays the device
        os.mkfifo(d / "null")


def _psfex(path, degree=0, **override):
    """A minimal PSFEx file: a Gaussian stamp in PSF_MASK, constant (degree 0) or with a
    degree-1 polynomial whose higher terms are zero."""
    y, x = np.mgrid[:25, :25]
    stamp = np.exp(-((x - 12) ** 2 + (y - 12) ** 2) / (2 * 2.0 ** 2)).astype(np.float32)
    nterms = (degree + 1) * (degree + 2) // 2
    planes = np.zeros((nterms, 25, 25), np.float32)
    planes[0] = stamp
    col = fits.Column(name="PSF_MASK", format=f"{nterms * 25 * 25}E",
                      dim=f"(25, 25, {nterms})", array=planes[None])
    hdu = fits.BinTableHDU.from_columns([col], name="PSF_DATA")
    h = hdu.header
    for k, v in dict(POLNAXIS=0 if degree == 0 else 2, POLNGRP=1, POLNAME1="X_IMAGE",
                     POLNAME2="Y_IMAGE", POLZERO1=1000.0, POLSCAL1=2000.0, POLZERO2=1000.0,
                     POLSCAL2=2000.0, POLDEG1=degree, PSF_SAMP=1.0, PSFNAXIS=3, PSFAXIS1=25,
                     PSFAXIS2=25, PSFAXIS3=nterms).items():
        h[k] = v
    for k, v in override.items():
        h[k] = v
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def _cases():
    """Each case: id, cls, argv ({in}: input dir, {out}: this case's output dir), status,
    msg (a fragment of stderr, or of the CSV's reason when ``reason`` is given), creates
    (paths under {out} that must exist afterwards)."""
    C = []

    def case(cls, id_, argv, status, msg=None, creates=(), reason=None, setup=()):
        C.append(dict(id=id_, cls=cls, argv=argv, status=status, msg=msg,
                      creates=list(creates), reason=reason, setup=[list(s) for s in setup]))

    fit = ["fit", "{in}/g.fits", "--quiet"]
    # ---- outputs over inputs -------------------------------------------------------------
    over = "it is the input file"
    case("outputs", "csv_is_image", fit + ["--csv", "{in}/g.fits"], 2, over)
    case("outputs", "csv_is_mask", fit + ["--mask", "{in}/mask.fits", "--csv", "{in}/mask.fits"],
         2, over)
    case("outputs", "csv_is_noise", fit + ["--noise", "{in}/sigma.fits", "--csv",
                                           "{in}/sigma.fits"], 2, over)
    case("outputs", "csv_is_segmap", fit + ["--segmap", "{in}/seg.fits", "--csv",
                                            "{in}/seg.fits"], 2, over)
    case("outputs", "csv_is_psf", fit + ["--psf", "{in}/psf.fits", "--csv", "{in}/psf.fits"], 2,
         over)
    case("outputs", "csv_is_start", fit + ["--start", "{in}/start.json", "--csv",
                                           "{in}/start.json"], 2, over)
    case("outputs", "csv_is_image_dotdot", fit + ["--csv", "{in}/A/../g.fits"], 2, over)
    case("outputs", "csv_is_symlink_to_image", fit + ["--csv", "{out}/link.csv"], 2, over,
         setup=[("symlink", "{in}/g.fits", "{out}/link.csv")])
    case("outputs", "csv_is_hardlink_to_image", fit + ["--csv", "{out}/hard.csv"], 2, over,
         setup=[("hardlink", "{in}/g.fits", "{out}/hard.csv")])
    case("outputs", "csv_is_second_image", ["fit", "{in}/g.fits", "{in}/cut.fits", "--quiet",
                                            "--csv", "{in}/cut.fits"], 2, over)
    case("outputs", "imgblock_is_input", ["fit", "{in}/g.fits", "{in}/blk/g_imgblock.fits",
                                          "--quiet", "--csv", "{out}/o.csv", "--imgblock",
                                          "{in}/blk"], 2, over)
    case("outputs", "model_json_is_start", fit + ["--start", "{out}/js/g_model.json",
                                                  "--model-json", "{out}/js", "--csv",
                                                  "{out}/o.csv"], 2, over,
         setup=[("copy", "{in}/start.json", "{out}/js/g_model.json")])
    case("outputs", "imgblock_dir_is_image", fit + ["--csv", "{out}/o.csv", "--imgblock",
                                                    "{in}/g.fits"], 2, "not a directory")
    case("outputs", "psf_o_is_input", ["psf", "fit", "{in}/psf.fits", "-o", "{in}/psf.fits"], 2,
         over)
    case("outputs", "psf_plot_is_input", ["psf", "fit", "{in}/psf.fits", "--plot",
                                          "{out}/p.png", "-o", "{out}/p.png"], 2,
         "name the same file")
    # ---- non-regular outputs and inputs --------------------------------------------------
    nonreg = "not a regular file"
    case("nonregular", "csv_fifo", fit + ["--csv", "{in}/fifo"], 2, "FIFO")
    case("nonregular", "csv_device", fit + ["--csv", "{in}/null"], 2, nonreg)
    case("nonregular", "csv_socket", fit + ["--csv", "{in}/sock"], 2, "socket")
    case("nonregular", "csv_directory", fit + ["--csv", "{in}/A"], 2, "is a directory")
    case("nonregular", "csv_missing_dir", fit + ["--csv", "{out}/no/such/o.csv"], 2,
         "does not exist")
    case("nonregular", "csv_under_a_file", fit + ["--csv", "{in}/afile/o.csv"], 2,
         "not a directory")
    case("nonregular", "csv_append_fifo", fit + ["--csv", "{in}/fifo", "--append"], 2, "FIFO")
    case("nonregular", "psf_o_fifo", ["psf", "fit", "{in}/psf.fits", "-o", "{in}/fifo"], 2,
         "FIFO")
    case("nonregular", "psf_plot_fifo", ["psf", "fit", "{in}/psf.fits", "--plot",
                                         "{out}/x.png"], 2, "FIFO",
         setup=[("fifo", None, "{out}/x.png")])
    case("nonregular", "sersic_plot_fifo", ["sersic", "plot", "-o", "{out}/f.png"], 2, "FIFO",
         setup=[("fifo", None, "{out}/f.png")])
    case("nonregular", "profiles_plot_fifo", ["profiles", "show", "--profile", "exp", "-M", "6",
                                              "--plot", "{out}/f.png"], 2, "FIFO",
         setup=[("fifo", None, "{out}/f.png")])
    case("nonregular", "region_target_fifo", fit + ["--csv", "{out}/o.csv", "--region",
                                                    "{out}/r"], 2, "FIFO",
         setup=[("fifo", None, "{out}/r/g.reg")])
    case("nonregular", "plot_name_is_device", ["psf", "fit", "{in}/psf.fits", "--plot",
                                               "{in}/null"], 2, "must end in")
    case("nonregular", "image_fifo", ["fit", "{in}/fifo.fits", "--quiet", "--csv",
                                      "{out}/o.csv"], 2, "FIFO")
    case("nonregular", "image_dev_zero", ["fit", "/dev/zero", "--quiet", "--csv",
                                          "{out}/o.csv"], 2, "character device")
    case("nonregular", "image_dev_urandom", ["fit", "/dev/urandom", "--quiet", "--csv",
                                             "{out}/o.csv"], 2, nonreg)
    case("nonregular", "image_directory", ["fit", "{in}/A", "--quiet", "--csv", "{out}/o.csv"],
         2, "directory")
    case("nonregular", "image_socket", ["fit", "{in}/sock", "--quiet", "--csv", "{out}/o.csv"],
         2, "socket")
    case("nonregular", "noise_fifo", fit + ["--noise", "{in}/fifo", "--csv", "{out}/o.csv"], 2,
         "--noise")
    case("nonregular", "mask_dev_zero", fit + ["--mask", "/dev/zero", "--csv", "{out}/o.csv"], 2,
         "--mask")
    case("nonregular", "segmap_fifo", fit + ["--segmap", "{in}/fifo", "--csv", "{out}/o.csv"], 2,
         "--segmap")
    case("nonregular", "psf_fifo", fit + ["--psf", "{in}/fifo", "--csv", "{out}/o.csv"], 2,
         "--psf")
    case("nonregular", "start_fifo", fit + ["--start", "{in}/fifo.json", "--csv",
                                            "{out}/o.csv"], 2, "--start")
    case("nonregular", "start_dev_zero", fit + ["--start", "/dev/zero", "--csv", "{out}/o.csv"],
         2, "character device")
    case("nonregular", "psffit_fifo", ["psf", "fit", "{in}/fifo", "-o", "{out}/p.json"], 2,
         "FIFO")
    case("nonregular", "psffit_dev_zero", ["psf", "fit", "/dev/zero", "-o", "{out}/p.json"], 2,
         nonreg)
    case("nonregular", "info_fifo", ["info", "{in}/fifo.fits"], 2, nonreg)
    case("nonregular", "info_dev_zero", ["info", "/dev/zero"], 2, nonreg)
    case("nonregular", "info_noise_fifo", ["info", "{in}/g.fits", "--noise", "{in}/fifo"], 2,
         nonreg)
    # ---- bounded reads ---------------------------------------------------------------------
    case("bounded", "fits_header_1e10_px", ["fit", "{in}/huge_header.fits", "--quiet", "--csv",
                                            "{out}/o.csv"], 1, reason="cut out the galaxy")
    case("bounded", "npy_header_1e10_values", ["fit", "{in}/huge.npy", "--quiet", "--csv",
                                               "{out}/o.csv"], 1, reason="more than the")
    case("bounded", "info_fits_header_1e10_px", ["info", "{in}/huge_header.fits"], 2,
         "cut out the galaxy")
    case("bounded", "start_40MB", fit + ["--start", "{in}/start_huge.json", "--csv",
                                         "{out}/o.csv"], 2, "far too large")
    case("bounded", "psf_K_1000", ["psf", "fit", "{in}/psf.fits", "-K", "1000", "-o",
                                   "{out}/p.json"], 2, "from 1 to 10")
    case("bounded", "fit_psf_components_40", fit + ["--psf", "{in}/psf.fits",
                                                    "--psf-components", "40", "--csv",
                                                    "{out}/o.csv"], 2, "from 1 to 10")
    case("bounded", "derive_M_11", ["profiles", "derive", "--profile", "exp", "-M", "11"], 2,
         "goes up to M = 10")
    case("bounded", "derive_M_20", ["profiles", "derive", "--profile", "exp", "-M", "20"], 2,
         "goes up to M = 10")
    case("bounded", "workers_1000", fit + ["--workers", "1000", "--csv", "{out}/o.csv"], 2,
         "from 1 to 256")
    # ---- names -----------------------------------------------------------------------------
    case("names", "same_stem_two_dirs", ["fit", "{in}/A/cut.fits", "{in}/B/cut.fits", "--quiet",
                                         "--csv", "{out}/o.csv", "--imgblock", "{out}/blk"], 0,
         "A__cut", creates=["blk/A__cut_imgblock.fits", "blk/B__cut_imgblock.fits"])
    case("names", "same_file_twice", ["fit", "{in}/g.fits", "{in}/g.fits", "--quiet", "--csv",
                                      "{out}/o.csv", "--region", "{out}/reg"], 0, "g_2",
         creates=["reg/g.reg", "reg/g_2.reg"])
    case("names", "fits_and_npy", ["fit", "{in}/g.fits", "{in}/g.npy", "--quiet", "--csv",
                                   "{out}/o.csv", "--model-json", "{out}/js"], 0, None,
         creates=["js/g_model.json", "js/g_2_model.json"])
    case("names", "case_differs", ["fit", "{in}/Cut.fits", "{in}/cut.fits", "--quiet", "--csv",
                                   "{out}/o.csv", "--region", "{out}/reg"], 0, None,
         creates=["reg/Cut.reg", "reg/cut_2.reg"])
    case("names", "csv_name_250_bytes", fit + ["--csv", "{out}/" + "c" * 246 + ".csv"], 0, None,
         creates=["c" * 246 + ".csv"])
    case("names", "psf_o_250_bytes", ["psf", "fit", "{in}/psf.fits", "-K", "1", "-o",
                                      "{out}/" + "p" * 245 + ".json"], 0, None,
         creates=["p" * 245 + ".json"])
    case("names", "non_ascii_imgblock", ["fit", "{in}/gälaxy é.fits", "--quiet", "--csv",
                                         "{out}/o.csv", "--imgblock", "{out}/blk"], 0, None,
         creates=["blk/gälaxy é_imgblock.fits"])
    case("names", "shell_metacharacters", ["fit", "{in}/g;rm -rf x $(id).fits", "--quiet",
                                           "--csv", "{out}/o.csv", "--region", "{out}/r"], 0,
         None, creates=["r/g;rm -rf x $(id).reg"])
    case("names", "plot_without_suffix", ["psf", "fit", "{in}/psf.fits", "--plot",
                                          "{out}/psfplot"], 2, "must end in .png")
    case("names", "fig4_without_suffix", ["sersic", "plot", "-o", "{out}/fig4"], 2,
         "must end in .png")
    # ---- append ----------------------------------------------------------------------------
    case("append", "append_other_columns", fit + ["--csv", "{in}/other_columns.csv",
                                                  "--append"], 2, "columns differ")
    case("append", "append_binary", fit + ["--csv", "{in}/binary.csv", "--append"], 2,
         "not a text CSV")
    case("append", "append_new_file", fit + ["--csv", "{out}/new.csv", "--append"], 0, None,
         creates=["new.csv", "new.csv.columns.txt"])
    # ---- options: refused before any file is read (the FILE does not exist) ------------------
    nofile = ["fit", "{in}/does_not_exist.fits", "--quiet", "--csv", "{out}/o.csv"]
    for opts, msg in (
            (["-M", "0"], "argument -M: must be an integer from 1 to 20, got 0"),
            (["-M", "-2"], "argument -M"), (["-M", "21"], "argument -M"),
            (["-M", "abc"], "argument -M"),
            (["--profile", "exp", "-M", "7"], "no exp mixture with M = 7"),
            (["--psf-components", "0"], "argument --psf-components"),
            (["--psf-components", "-3"], "argument --psf-components"),
            (["--workers", "0"], "argument --workers"),
            (["--max-nfev", "0"], "argument --max-nfev"),
            (["--centre", "nan", "1"], "argument --centre: must be a finite number"),
            (["--centre", "inf", "1"], "argument --centre"),
            (["--centre", "1e999", "1"], "argument --centre"),
            (["--psf-position", "nan", "0"], "argument --psf-position"),
            (["--gain", "0"], "argument --gain: must be a positive number"),
            (["--gain", "-1"], "argument --gain"), (["--gain", "nan"], "argument --gain"),
            (["--read-noise", "-1"], "argument --read-noise"),
            (["--sky-level", "nan"], "argument --sky-level"),
            (["--pixel-scale", "0"], "argument --pixel-scale"),
            (["--zeropoint", "inf"], "argument --zeropoint"),
            (["--profile", "ser", "-n", "0.1"], "argument -n/--sersic-n"),
            (["-n", "nan"], "argument -n/--sersic-n"),
            (["--hdu", "-1"], "argument --hdu"), (["--plane", "-1"], "argument --plane"),
            (["--mask-hdu", "-5"], "argument --mask-hdu"),
            (["--M2", "6"], "--M2 needs --profile2"),
            (["--profile2", "exp", "--M2", "5"], "no exp mixture with M = 5"),
            (["--fix-n", "--profile", "exp"], "--fix-n applies to --profile ser"),
            (["--invert-mask"], "--invert-mask needs --mask"),
            (["--csv", ""], "argument --csv"),
    ):
        tag = "_".join(o.strip("-") for o in opts)[:40] or "empty"
        case("options", f"fit_{tag}", nofile + opts, 2, msg)
    psf = ["psf", "fit", "{in}/does_not_exist.fits", "-o", "{out}/p.json"]
    for opts, msg in ((["-K", "0"], "argument -K"), (["-K", "-2"], "argument -K"),
                      (["--position", "nan", "1"], "argument --position"),
                      (["--plane", "-1"], "argument --plane"), (["--hdu", ""], "argument --hdu"),
                      (["--plot", "nodir/p"], "must end in")):
        case("options", f"psf_{'_'.join(o.strip('-') for o in opts)[:30]}", psf + opts, 2, msg)
    case("options", "psf_only_a_look", ["psf", "fit", "{in}/psf.fits"], 0)   # a report
    case("options", "psf_hdu_5_of_1", ["psf", "fit", "{in}/psf.fits", "--hdu", "5", "-o",
                                       "{out}/p.json"], 2, "there is no HDU 5")
    der = ["profiles", "derive", "--profile", "exp"]
    for opts, msg in ((["-M", "0"], "argument -M"), (["-M", "6", "--starts", "0"],
                                                    "argument --starts"),
                      (["-M", "6", "--n", "nan"], "argument --n"),
                      (["-M", "6", "--n", "100"], "argument --n"),
                      (["-M", "6", "--plot", "{out}/nodir/p.png"], "does not exist"),
                      (["-M", "6", "--plot", "{out}/p"], "must end in")):
        case("options", f"derive_{'_'.join(o.strip('-') for o in opts)[:30]}", der + opts, 2,
             msg)
    case("options", "derive_bad_profile", ["profiles", "derive", "--profile", "gauss", "-M", "6"],
         2, "invalid choice")
    case("options", "show_M_7", ["profiles", "show", "--profile", "exp", "-M", "7"], 2,
         "no exp mixture with M = 7")
    case("options", "sersic_show_nan", ["sersic", "show", "--n", "nan"], 2, "argument --n")
    case("options", "sersic_show_9", ["sersic", "show", "--n", "9"], 2, "0.5 <= n <= 8")
    case("options", "sersic_plot_nodir", ["sersic", "plot", "-o", "{out}/nodir/f.png"], 2,
         "does not exist")
    case("options", "info_hdu_5", ["info", "{in}/g.fits", "--hdu", "5"], 2, "has no HDU 5")
    case("options", "info_plane_on_2d", ["info", "{in}/g.fits", "--plane", "2"], 2,
         "is 2-D, not a cube")
    case("options", "info_segment_without_segmap", ["info", "{in}/g.fits", "--segment-id", "3"],
         2, "without a segmentation map")
    # ---- values ----------------------------------------------------------------------------
    for tag in ("1e300", "1e-300", "1e200", "1e-200"):
        case("values", f"image_{tag}", ["fit", f"{{in}}/scaled_{tag}.fits", "--quiet", "--csv",
                                        "{out}/o.csv"], 1, reason="outside the range")
        case("values", f"sigma_{tag}", fit + ["--noise", f"{{in}}/sigma_{tag}.fits", "--csv",
                                              "{out}/o.csv"], 1, reason="outside the range")
    case("values", "info_image_1e300", ["info", "{in}/scaled_1e300.fits"], 2,
         "outside the range")
    case("values", "image_1e90_fits", ["fit", "{in}/scaled_1e90.fits", "--quiet", "--csv",
                                       "{out}/o.csv"], 0, None)
    case("values", "image_1e-90_fits", ["fit", "{in}/scaled_1e-90.fits", "--quiet", "--csv",
                                        "{out}/o.csv"], 0, None)
    # scale-free inputs (issue 15): fitted in internal units, results in the file's units
    for tag in ("1e120", "1e-120"):
        case("values", f"image_{tag}_fits", ["fit", f"{{in}}/scaled_{tag}.fits", "--quiet",
                                             "--csv", "{out}/o.csv"], 0, None)
        case("values", f"image_and_sigma_{tag}", ["fit", f"{{in}}/scaled_{tag}.fits", "--noise",
                                                  f"{{in}}/sigma_{tag}.fits", "--quiet",
                                                  "--csv", "{out}/o.csv"], 0, None)
    case("values", "info_truncated_error_hdu", ["info", "{in}/trunc_err.fits"], 2,
         "cannot be read")
    case("values", "tiny_2x2", ["fit", "{in}/tiny_2x2.fits", "--quiet", "--csv", "{out}/o.csv"],
         1, reason="too small to fit")
    case("values", "all_zero", ["fit", "{in}/all_zero.fits", "--quiet", "--csv",
                                "{out}/o.csv"], 1, reason="holds no signal")
    case("values", "not_fits", ["fit", "{in}/not_fits.fits", "--quiet", "--csv",
                                "{out}/o.csv"], 1, reason="neither a FITS file")
    # ---- PSFs --------------------------------------------------------------------------------
    case("psf", "psfex_polscal_0", ["psf", "fit", "{in}/psfex_polscal0.fits", "--position",
                                    "100", "100", "-o", "{out}/p.json"], 2, "POLSCAL")
    case("psf", "psfex_samp_huge", ["psf", "fit", "{in}/psfex_samp_huge.fits", "-o",
                                    "{out}/p.json"], 2, "PSF_SAMP")
    case("psf", "psfex_ok", ["psf", "fit", "{in}/psfex_ok.fits", "-K", "1", "-o",
                             "{out}/p.json"], 0, None, creates=["p.json"])
    case("psf", "psf_deep_json", ["psf", "fit", "{in}/deep.json", "-o", "{out}/p.json"], 2,
         "not a FITS file, a NumPy .npy file or a mogviewer mixture JSON")
    case("psf", "psfex_position_far", ["psf", "fit", "{in}/psfex_deg1.fits", "--position",
                                       "1e6", "1e6", "-o", "{out}/p.json"], 2,
         "far outside the range PSFEx fitted")
    case("psf", "psfex_position_missing", ["psf", "fit", "{in}/psfex_deg1.fits", "-o",
                                           "{out}/p.json"], 2, "give the position")
    case("psf", "psfex_deg1_ok", ["psf", "fit", "{in}/psfex_deg1.fits", "--position", "900",
                                  "1100", "-K", "1", "-o", "{out}/p.json"], 0, None,
         creates=["p.json"])
    case("psf", "psf_latin1_json", ["psf", "fit", "{in}/psf_latin1.json", "-o", "{out}/p.json"],
         2, "not UTF-8")
    case("psf", "psf_empty_json", ["psf", "fit", "{in}/empty.json", "-o", "{out}/p.json"], 2,
         "empty")
    case("psf", "fit_psf_deep_json", fit + ["--psf", "{in}/deep.json", "--csv", "{out}/o.csv"],
         2, "--psf")
    case("psf", "fit_psf_hdu_5", fit + ["--psf", "{in}/psf.fits", "--psf-hdu", "5", "--csv",
                                        "{out}/o.csv"], 2, "there is no HDU 5")
    case("psf", "psf_plot_missing_dir", ["psf", "fit", "{in}/psf.fits", "--plot",
                                         "{out}/nodir/p.png"], 2, "does not exist")
    # ---- --start models ------------------------------------------------------------------------
    for name, msg in (("deep.json", "nested too deeply"), ("latin1.json", "not UTF-8"),
                      ("start_M1000.json", "M = 1000 has no exp table"),
                      ("start_rainbow.json", "sky 'rainbow'"),
                      ("start_profile.json", "unknown profile 'gauss'"),
                      ("start_nan.json", "not a finite number"),
                      ("start_params_list.json", "invalid model file"),
                      ("empty.json", "not a readable JSON model"),
                      ("not_fits.fits", "not a readable JSON model")):
        case("start", f"start_{Path(name).stem}", fit + ["--start", f"{{in}}/{name}", "--csv",
                                                         "{out}/o.csv"], 2, msg)
    case("start", "start_far_from_data", fit + ["--start", "{in}/start_far.json", "--csv",
                                                "{out}/o.csv"], 0, None,
         reason="start model far from the data")
    case("start", "start_good", fit + ["--start", "{in}/start.json", "--csv", "{out}/o.csv"], 0,
         None)
    return C


def make_corpus(outdir):
    """Write the inputs to ``outdir/in`` and return the list of cases (dicts)."""
    outdir = Path(outdir)
    rng = np.random.default_rng(2013)
    _write_inputs(outdir / "in", rng)
    return _cases()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = Path(argv[0])
    if (out / "in").exists():
        print(f"{out / 'in'} exists; give a new directory", file=sys.stderr)
        return 2
    cases = make_corpus(out)
    (out / "cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases and their inputs to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
