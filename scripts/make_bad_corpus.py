#!/usr/bin/env python
"""Write the bad-input corpus of tests/data/bad/ (issue 5): small files that are broken in one
way each, plus one good cutout, so that tests can check that every problem gives one clear
message and that the rest of a batch is still fitted.

    python scripts/make_bad_corpus.py [OUTDIR]      (default tests/data/bad)

Deterministic (fixed seed); the files are tiny (< 20 kB each). Cases that need the file system at
test time (an unwritable output directory, a CSV target that is a directory) are made by the tests.
"""

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from mogviewer.mixture import Mixture
from mogviewer.render import render_model

README = """# Bad-input corpus (generated)

Made by `python scripts/make_bad_corpus.py` (deterministic); used by `tests/test_bad_corpus.py`.
Every file except `good.fits` is broken in one way:

| file | problem |
|---|---|
| good.fits | valid 48x48 cutout: exp galaxy (flux 2000, r_e 4 px, PSF sigma 1.5) + noise, WCS |
| truncated.fits | the first half of a valid FITS file |
| not_fits.fits | a text file with a .fits name |
| empty_hdu.fits | a primary HDU with a header and no data |
| cube.fits | a 3-D array (3 planes of 48x48) |
| tiny_1x1.fits | a 1x1 image |
| all_nan.fits | every pixel NaN |
| noise_wrong_shape.fits | a sigma map of 40x40 (the images are 48x48) |
| negative_variance.fits | a variance map whose values are all negative |
| mask_wrong_shape.fits | a mask of 30x48 |
| broken_wcs.fits | good pixels, a header whose WCS has a singular CD matrix |
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "tests/data/bad")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2013)
    psf = Mixture.isotropic([1.0], [1.5 ** 2])
    img = render_model(dict(flux=2000.0, x=23.4, y=24.1, re=4.0, q=0.6, angle=30.0), "exp", 6,
                       psf, (48, 48)) + rng.normal(0, 1.0, (48, 48))
    img = img.astype(np.float32)
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=24.0, CRPIX2=24.0, CRVAL1=150.0,
               CRVAL2=2.0, CD1_1=-1e-4, CD1_2=0.0, CD2_1=0.0, CD2_2=1e-4)
    fits.writeto(out / "good.fits", img, hdr, overwrite=True)
    raw = (out / "good.fits").read_bytes()
    (out / "truncated.fits").write_bytes(raw[:len(raw) // 2])
    (out / "not_fits.fits").write_text("this is not a FITS file\n")
    fits.PrimaryHDU(header=fits.Header({"OBJECT": "nothing here"})).writeto(
        out / "empty_hdu.fits", overwrite=True)
    fits.writeto(out / "cube.fits", np.stack([img] * 3), overwrite=True)
    fits.writeto(out / "tiny_1x1.fits", np.ones((1, 1), np.float32), overwrite=True)
    fits.writeto(out / "all_nan.fits", np.full((48, 48), np.nan, np.float32), overwrite=True)
    fits.writeto(out / "noise_wrong_shape.fits", np.ones((40, 40), np.float32), overwrite=True)
    fits.writeto(out / "negative_variance.fits", -np.ones((48, 48), np.float32), overwrite=True)
    fits.writeto(out / "mask_wrong_shape.fits", np.zeros((30, 48), np.int16), overwrite=True)
    bad = hdr.copy()
    bad.update(CD1_1=0.0, CD1_2=0.0, CD2_1=0.0, CD2_2=0.0)
    fits.writeto(out / "broken_wcs.fits", img, bad, overwrite=True)
    (out / "README.md").write_text(README)
    print(f"wrote the bad-input corpus to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
