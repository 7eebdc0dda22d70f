"""Tests of mogviewer.io: every real dataset opens with its documented noise and mask.

Reference values come from tests/data/real/PROVENANCE.md (the data's own documentation):
mask counts, pixel scales, noise conventions. Where a value is measured from the files
themselves (e.g. segment pixel counts), the comment says so.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mogviewer.io import ImageData, ImageReadError, describe, list_hdus, read_image

REAL = Path(__file__).parent / "data" / "real"
IMFIT = REAL / "imfit-sdss"
VCC = REAL / "pyimfit-sdss-vcc1512"
GAMA = REAL / "profit-gama"
HST = REAL / "galfit-example-hst"
DR9 = REAL / "pysersic-decals-dr9" / "cutout_59.1067_-30.4848.fits"
HSC = REAL / "pysersic-hsc"
DR3 = REAL / "tractor-decals-dr3"

# float32 relative rounding: maps stored as float32 agree with float64 formulas to about this.
F32 = float(np.finfo(np.float32).eps)


def _fits_data(path, hdu=0):
    return np.asarray(fits.getdata(path, hdu), dtype=np.float64)


def _has_note(d, *words):
    return any(all(w.lower() in n.lower() for w in words) for n in d.notes)


# ---------------------------------------------------------------------------------------------
# one case per dataset: (path, read_image kwargs, expectations)
# ---------------------------------------------------------------------------------------------

def _check_imfit64(d):
    # PROVENANCE: the sigma map equals sqrt((data+130.1)*4.725 + 4.3^2)/4.725, in ADU.
    sig = _fits_data(IMFIT / "ic3478rss_64x64_sigma.fits")
    np.testing.assert_allclose(d.ivar, 1.0 / sig ** 2, rtol=1e-12)
    assert not d.noise_is_estimate
    # The same formula built by read_image from gain/read noise/sky matches the stored float32
    # map to float32 rounding (a relative error of one float32 ulp).
    m = read_image(IMFIT / "ic3478rss_64x64.fits", gain=4.725, read_noise=4.3, sky_level=130.1)
    np.testing.assert_allclose(m.sigma, sig, rtol=F32, atol=0)
    assert m.noise_is_estimate and "imfit model" in m.noise_source
    assert _has_note(m, "Gain 4.725", "given")


def _check_imfit256(d):
    # No noise map: the imfit tutorial's model (gain 4.725, RN 4.3 e-, sky 130.14 ADU).
    img = _fits_data(IMFIT / "ic3478rss_256.fits")
    expect = np.sqrt(np.clip(img + 130.14, 0, None) * 4.725 + 4.3 ** 2) / 4.725
    good = ~d.mask
    np.testing.assert_allclose(d.sigma[good], expect[good], rtol=1e-12)
    assert d.noise_is_estimate
    assert "130.14" in d.noise_source and "4.3" in d.noise_source


def _check_sigma_file(sigma_path):
    def check(d):
        sig = _fits_data(sigma_path)
        good = ~d.mask
        np.testing.assert_allclose(d.ivar[good], 1.0 / sig[good] ** 2, rtol=1e-12)
        assert not d.noise_is_estimate
    return check


def _check_hst(d):
    # PROVENANCE: sky ~0.5 e-, background rms ~8.2 e- "measured here"; our clipped MAD is an
    # independent estimator, so allow 10 %. Poisson term: (data - background) / GAIN (GAIN = 1).
    assert d.noise_is_estimate and "Poisson" in d.noise_source
    bkg = np.median(d.sigma)
    assert 0.9 * 8.2 < bkg < 1.1 * 8.2
    peak = np.unravel_index(np.argmax(d.image), d.shape)
    assert d.sigma[peak] > 3 * bkg  # bright core dominated by Poisson noise
    assert d.exptime == 1040.0 and d.gain == 1.0 and d.bunit == "ELECTRONS"
    assert d.band == "F606W"
    assert _has_note(d, "header warning", "CD1_1")  # non-standard cards recorded, not raised


def _check_dr9_r(d):
    assert d.hdu == 3 and d.band == "r"
    np.testing.assert_array_equal(d.ivar, _fits_data(DR9, 4))  # HDU4 = r invvar, all > 0
    assert _has_note(d, "HDU 4", "invvar")
    assert "HDU 4" in d.noise_source


def _check_hsc(d):
    sig = np.load(HSC / "gal2_sig.npy").astype(np.float64)
    # sig > 0 everywhere, so the mask is exactly the 2496 px of gal2_mask.npy (PROVENANCE);
    # there ivar is zeroed, elsewhere it is 1/sig^2
    np.testing.assert_array_equal(d.mask, np.load(HSC / "gal2_mask.npy") != 0)
    np.testing.assert_allclose(d.sigma[~d.mask], sig[~d.mask], rtol=1e-12)


def _check_dr3(d):
    # PROVENANCE: invvar in ADU^-2, median 4.77e-4; fpack left some values negative (320 px,
    # counted from the file); the tractor example zeroes ivar < 0.1 * median (630 px in all).
    raw = _fits_data(DR3 / "decam-520206-S16-invvar-sub.fits", 1)
    assert int((raw < 0).sum()) == 320
    assert _has_note(d, "320 negative ivar")
    assert _has_note(d, "min_ivar_fraction")
    good = ~d.mask
    np.testing.assert_array_equal(d.ivar[good], raw[good])
    assert d.zeropoint == pytest.approx(30.27)
    assert _has_note(d, "MAGZERO", "primary header")
    assert d.exptime == 167.0


def _check_segmap(n_target_note):
    def check(d):
        assert _has_note(d, "target segment 1", "image centre", n_target_note)
        assert d.zeropoint == 0.0 and _has_note(d, "Zeropoint 0 given")
        assert d.pixel_scale_arcsec is None and d.wcs is None  # minimal headers
    return check


# Mask counts: imfit/pyimfit/HSC from PROVENANCE. GAMA counts are the pixels of the non-target
# segments, counted from the segim files (KiDS 265911: 86+23+52; 279148: 169+15+31; SDSS: none).
CASES = [
    pytest.param(IMFIT / "ic3478rss_64x64.fits",
                 dict(noise=IMFIT / "ic3478rss_64x64_sigma.fits", noise_kind="sigma"),
                 (64, 64), 0, 0.396, None, _check_imfit64, id="imfit-sdss-64x64-sigma"),
    pytest.param(IMFIT / "ic3478rss_256.fits",
                 dict(mask=IMFIT / "ic3478rss_256_mask.fits", gain=4.725, read_noise=4.3,
                      sky_level=130.14),
                 (256, 256), 2108, 0.396, None, _check_imfit256, id="imfit-sdss-256-mask"),
    pytest.param(IMFIT / "n3073rss_small.fits",
                 dict(mask=IMFIT / "n3073rss_small_mask.fits", gain=4.725, read_noise=4.3,
                      sky_level=154.33),
                 (200, 150), 1246, 0.396, None, None, id="imfit-sdss-n3073-mask"),
    pytest.param(VCC / "vcc1512rss_cutout.fits",
                 dict(mask=VCC / "vcc1512rss_mask_cutout.fits", gain=4.725, read_noise=4.3,
                      sky_level=120.020408),
                 (161, 121), 1394, 0.396, None, None, id="pyimfit-vcc1512-mask"),
    pytest.param(GAMA / "KiDS" / "G265911fitim.fits",
                 dict(noise=GAMA / "KiDS" / "G265911sigma.fits",
                      segmap=GAMA / "KiDS" / "G265911segim.fits", zeropoint=0.0),
                 (187, 169), 86 + 23 + 52, None, 0.0, _check_segmap("3 other"),
                 id="profit-kids-265911"),
    pytest.param(GAMA / "KiDS" / "G279148fitim.fits",
                 dict(noise=GAMA / "KiDS" / "G279148sigma.fits",
                      segmap=GAMA / "KiDS" / "G279148segim.fits", zeropoint=0.0),
                 (185, 101), 169 + 15 + 31, None, 0.0, _check_segmap("3 other"),
                 id="profit-kids-279148-float-segim"),
    pytest.param(GAMA / "SDSS" / "G265911fitim.fits",
                 dict(noise=GAMA / "SDSS" / "G265911sigma.fits",
                      segmap=GAMA / "SDSS" / "G265911segim.fits", zeropoint=0.0),
                 (101, 101), 0, None, 0.0, _check_segmap("0 other"), id="profit-sdss-265911"),
    pytest.param(HST / "gal.fits", dict(poisson=True),
                 (93, 93), 0, 0.05, None, _check_hst, id="galfit-example-hst"),
    pytest.param(DR9, dict(band="r"), (256, 256), 0, 0.262, None, _check_dr9_r,
                 id="pysersic-decals-dr9-r"),
    pytest.param(HSC / "gal2_im.npy",
                 dict(noise=HSC / "gal2_sig.npy", mask=HSC / "gal2_mask.npy"),
                 (121, 121), 2496, None, None, _check_hsc, id="pysersic-hsc-npy"),
    pytest.param(DR3 / "decam-520206-S16-image-sub.fits",
                 dict(noise=DR3 / "decam-520206-S16-invvar-sub.fits", noise_kind="ivar",
                      min_ivar_fraction=0.1),
                 (70, 70), 630, 0.263, 30.27, _check_dr3, id="tractor-decals-dr3"),
]


@pytest.mark.parametrize("path, kwargs, shape, n_masked, scale, zp, check", CASES)
def test_real_dataset(path, kwargs, shape, n_masked, scale, zp, check):
    d = read_image(path, **kwargs)
    assert isinstance(d, ImageData)
    assert d.shape == shape and d.ivar.shape == shape and d.mask.shape == shape
    assert d.image.dtype == np.float64 and d.mask.dtype == bool
    assert int(d.mask.sum()) == n_masked
    assert np.all(d.ivar[d.mask] == 0) and np.all(d.ivar[~d.mask] > 0)
    if scale is None:
        assert d.pixel_scale_arcsec is None
    else:
        # from the header WCS; SDSS pixels are 0.396", DECaLS 0.262/0.263", ACS 0.05"
        # (PROVENANCE); 0.5 % covers the slightly non-square SDSS and TPV pixels.
        assert d.wcs is not None
        assert d.pixel_scale_arcsec == pytest.approx(scale, rel=5e-3)
    if zp is None:
        assert d.zeropoint is None and _has_note(d, "No zeropoint")
    else:
        assert d.zeropoint == pytest.approx(zp)
    assert _has_note(d, f"{n_masked} of {shape[0] * shape[1]} px masked")
    if check is not None:
        check(d)
    text = describe(d)
    assert f"{shape[1]} x {shape[0]} px" in text and d.noise_source in text


# ---------------------------------------------------------------------------------------------
# HDU / band selection
# ---------------------------------------------------------------------------------------------

def test_dr9_default_band_and_hdu_pairing():
    d = read_image(DR9)
    assert d.hdu == 1 and d.band == "g"
    np.testing.assert_array_equal(d.ivar, _fits_data(DR9, 2))
    assert _has_note(d, "bands g, r, z")
    z = read_image(DR9, hdu=5)
    assert z.band == "z"
    np.testing.assert_array_equal(z.ivar, _fits_data(DR9, 6))
    explicit = read_image(DR9, hdu="3", noise_hdu=4, noise_kind="ivar")
    np.testing.assert_array_equal(explicit.ivar, _fits_data(DR9, 4))
    none = read_image(DR9, band="r", auto_noise=False)
    assert none.noise_is_estimate


def test_companion_in_the_image_file_is_read_from_the_open_file(tmp_path, monkeypatch):
    # noise= the image's own path (as batch tasks with noise_hdu pass it), or a link to it:
    # the HDU comes from the HDU list already open (the file is opened once), with the same
    # pixels and description as when it is opened again; another file is opened as before
    from mogviewer.io import hdus
    from mogviewer.io import read as read_mod
    opened = []
    real_open = hdus._open_fits
    for mod in (hdus, read_mod):
        monkeypatch.setattr(mod, "_open_fits", lambda p, w: opened.append(p) or real_open(p, w))
    link = tmp_path / "link.fits"
    link.symlink_to(Path(DR9).resolve())
    for noise in (DR9, str(link)):
        opened.clear()
        d = read_image(DR9, hdu="3", noise=noise, noise_hdu=4, noise_kind="ivar")
        assert len(opened) == 1
        np.testing.assert_array_equal(d.ivar, _fits_data(DR9, 4))
        assert _has_note(d, str(noise), "HDU")
    copy = tmp_path / "copy.fits"
    copy.write_bytes(Path(DR9).read_bytes())
    opened.clear()
    d = read_image(DR9, hdu="3", noise=copy, noise_hdu=4, noise_kind="ivar")
    assert [Path(p).name for p in opened] == [Path(DR9).name, "copy.fits"]
    np.testing.assert_array_equal(d.ivar, _fits_data(DR9, 4))


def test_list_hdus_dr9():
    rows = list_hdus(DR9)
    assert [r["band"] for r in rows] == [None, "g", "g", "r", "r", "z", "z"]
    assert [r["kind"] for r in rows] == ["empty", "image", "ivar"] * 1 + ["image", "ivar"] * 2
    assert rows[3]["shape"] == (256, 256)


def test_hdu_by_extname(tmp_path):
    img = np.arange(30.0).reshape(5, 6)
    msk = np.zeros((5, 6), dtype=np.int16)
    msk[0, :2] = 1
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(img, name="SCI"),
                         fits.ImageHDU(np.full((5, 6), 4.0), name="VAR"),
                         fits.ImageHDU(msk, name="MASK")])
    p = tmp_path / "mef.fits"
    hdul.writeto(p)
    d = read_image(p, hdu="sci", mask_hdu="MASK")
    assert d.hdu == 1 and d.hdu_name == "SCI"
    np.testing.assert_array_equal(d.image, img)
    np.testing.assert_allclose(d.ivar[~d.mask], 0.25)  # EXTNAME VAR taken as a variance map
    assert _has_note(d, "variance HDU 2") and d.mask.sum() == 2
    assert read_image(p).hdu == 1  # default: the first 2-D image HDU (the primary is empty)
    with pytest.raises(ImageReadError, match="select HDUs of a FITS file"):
        read_image(img, hdu=1)


# ---------------------------------------------------------------------------------------------
# noise kinds, masks, segmentation maps, arrays
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, value, ivar", [("sigma", 2.0, 0.25), ("variance", 4.0, 0.25),
                                               ("ivar", 0.25, 0.25), ("weight", 0.25, 0.25)])
def test_noise_kinds(kind, value, ivar):
    noise = np.full((4, 5), value)
    noise[0, 0] = 0.0
    noise[1, 1] = -1.0
    noise[2, 2] = np.nan
    d = read_image(np.ones((4, 5)), noise=noise, noise_kind=kind)
    assert d.ivar[3, 3] == ivar
    assert d.mask.sum() == 3 and d.ivar[0, 0] == d.ivar[1, 1] == d.ivar[2, 2] == 0


def test_mask_invert_and_nan_pixels():
    img = np.ones((6, 6))
    img[0, 0] = np.nan
    img[1, 1] = np.inf
    m = np.zeros((6, 6))
    m[5, :] = 3
    d = read_image(img, mask=m, noise=np.ones((6, 6)))
    assert d.mask.sum() == 8 and d.image[0, 0] == 0.0 and d.ivar[1, 1] == 0
    assert _has_note(d, "2 non-finite")
    inv = read_image(img, mask=m, invert_mask=True, noise=np.ones((6, 6)))
    assert inv.mask.sum() == 30  # zero = bad now (the two non-finite pixels are among them)
    assert not inv.mask[5].any()


def test_segmap_options():
    seg = np.zeros((9, 9), dtype=int)
    seg[3:6, 3:6] = 7
    seg[0, 0] = 2
    d = read_image(np.ones((9, 9)), noise=np.ones((9, 9)), segmap=seg)
    assert d.mask.sum() == 1 and _has_note(d, "target segment 7")
    only = read_image(np.ones((9, 9)), noise=np.ones((9, 9)), segmap=seg,
                      segmap_keep_sky=False)
    assert (~only.mask).sum() == 9
    other = read_image(np.ones((9, 9)), noise=np.ones((9, 9)), segmap=seg, segment_id=2)
    assert other.mask.sum() == 9 and _has_note(other, "target segment 2", "given")


def test_noise_estimate_from_background():
    rng = np.random.default_rng(1)
    img = rng.normal(10.0, 2.0, (80, 80))
    yy, xx = np.mgrid[:80, :80]
    img += 500 * np.exp(-((xx - 40) ** 2 + (yy - 40) ** 2) / 20)
    d = read_image(img)
    # 6400 px: the MAD of a Gaussian has ~1.7 % scatter; 5 % is 3 standard errors
    assert np.median(d.sigma) == pytest.approx(2.0, rel=0.05)
    assert d.noise_is_estimate and _has_note(d, "estimate")
    p = read_image(img, poisson=True, gain=2.0)
    assert p.sigma[40, 40] == pytest.approx(np.sqrt(p.sigma[0, 0] ** 2 + 500 / 2.0), rel=0.02)
    u = read_image(img, estimate_noise=False)
    assert np.all(u.ivar == 1) and u.noise_is_estimate


def test_header_with_array_and_given_overrides():
    hdr = fits.Header({"MAGZP": 25.0, "EXPTIME": "12.5", "GAIN": 3.0, "BUNIT": "adu"})
    d = read_image(np.ones((4, 4)) + np.eye(4), header=hdr, zeropoint=27.0, gain=2.0,
                   pixel_scale=0.2)
    assert d.zeropoint == 27.0 and _has_note(d, "Zeropoint 27 given", "MAGZP = 25")
    assert d.gain == 2.0 and _has_note(d, "header GAIN 3 not used")
    assert d.exptime == 12.5 and _has_note(d, "string in the header")
    assert d.pixel_scale_arcsec == 0.2 and d.bunit == "adu"
    h = read_image(np.ones((4, 4)) + np.eye(4), header=hdr)
    assert h.zeropoint == 25.0 and _has_note(h, "Zeropoint 25 from MAGZP")


def test_caller_arrays_never_modified():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(10, 12))
    img[2, 3] = np.nan
    noise = np.abs(rng.normal(size=(10, 12))) + 0.1
    noise[4, 4] = -1.0
    mask = (rng.random((10, 12)) > 0.8).astype(np.int16)
    seg = np.ones((10, 12), dtype=np.int32)
    seg[0, :] = 2
    originals = [a.copy() for a in (img, noise, mask, seg)]
    d = read_image(img, noise=noise, mask=mask, segmap=seg, min_ivar_fraction=0.5)
    for a, o in zip((img, noise, mask, seg), originals, strict=True):
        np.testing.assert_array_equal(a, o)
        assert a.flags.writeable
    # no aliasing either way: the result is read-only and independent of the inputs
    for arr in (d.image, d.ivar, d.mask):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0, 0] = 1
    img[5, 5] = 1e9
    assert d.image[5, 5] != 1e9


def test_imagedata_pickles_and_stays_read_only():
    d = read_image(HST / "gal.fits")
    e = pickle.loads(pickle.dumps(d))
    np.testing.assert_array_equal(e.ivar, d.ivar)
    assert e.notes == d.notes and e.pixel_scale_arcsec == d.pixel_scale_arcsec
    assert not e.image.flags.writeable


# ---------------------------------------------------------------------------------------------
# bad input: one clear ImageReadError each
# ---------------------------------------------------------------------------------------------

def test_error_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.fits")
    with pytest.raises(ImageReadError, match="noise map file not found"):
        read_image(HST / "gal.fits", noise=tmp_path / "nope.fits")


def test_error_not_fits(tmp_path):
    p = tmp_path / "notes.fits"
    p.write_text("this is not a FITS file\n" * 10)
    with pytest.raises(ImageReadError, match="neither a FITS file nor a .npy"):
        read_image(p)
    q = tmp_path / "bad.npy"
    q.write_text("garbage")
    with pytest.raises(ImageReadError, match="not a readable .npy"):
        read_image(q)


def test_error_truncated_fits(tmp_path):
    p = tmp_path / "trunc.fits"
    p.write_bytes((IMFIT / "ic3478rss_64x64.fits").read_bytes()[:8000])
    with pytest.raises(ImageReadError, match="starts like FITS but is truncated or corrupt"):
        read_image(p)


def test_error_no_image_hdu():
    with pytest.raises(ImageReadError, match=r"no 2-D image HDU.*PSF_DATA.*BinTableHDU"):
        read_image(DR3 / "decam-520206-S16-psfex.fits")


def test_error_empty_hdu_requested():
    with pytest.raises(ImageReadError, match=r"HDU 0 \(PRIMARY\).*no data.*256x256"):
        read_image(DR9, hdu=0)


def test_error_hdu_not_found():
    with pytest.raises(ImageReadError, match=r"no HDU named 'SCI'.*0 \(PRIMARY\), 1, 2"):
        read_image(DR9, hdu="SCI")
    with pytest.raises(ImageReadError, match="has no HDU 9; it has 7 HDUs"):
        read_image(DR9, hdu=9)
    with pytest.raises(ImageReadError, match=r"no image HDU of band 'i'.*g \(HDU 1\)"):
        read_image(DR9, band="i")
    with pytest.raises(ImageReadError, match="is band 'g', not 'r'"):
        read_image(DR9, hdu=1, band="r")


def test_error_shape_mismatch():
    img = np.ones((10, 12))
    with pytest.raises(ImageReadError, match=r"noise map .* is 11x10 px but the image is 12x10"):
        read_image(img, noise=np.ones((10, 11)))
    with pytest.raises(ImageReadError, match=r"mask .* is 12x9 px but the image is 12x10"):
        read_image(img, mask=np.zeros((9, 12)))
    with pytest.raises(ImageReadError, match="segmentation map .* must match"):
        read_image(img, segmap=np.ones((3, 3)))
    with pytest.raises(ImageReadError, match="noise map .* must match"):
        read_image(IMFIT / "ic3478rss_256.fits", noise=IMFIT / "ic3478rss_64x64_sigma.fits")


def test_error_all_nan_image():
    with pytest.raises(ImageReadError, match="no finite pixel values"):
        read_image(np.full((5, 5), np.nan))


def test_error_noise_without_positive_values():
    with pytest.raises(ImageReadError, match="no positive finite values"):
        read_image(np.ones((5, 5)), noise=-np.ones((5, 5)), noise_kind="variance")
    with pytest.raises(ImageReadError, match="no positive finite values"):
        read_image(np.ones((5, 5)), noise=np.zeros((5, 5)))


def test_error_cube_needs_plane(tmp_path):
    cube = np.stack([np.full((6, 7), float(k)) + np.eye(6, 7) for k in range(3)])
    p = tmp_path / "cube.fits"
    fits.writeto(p, cube)
    with pytest.raises(ImageReadError, match=r"3-D cube of shape \(3, 6, 7\).*plane=0\.\.2"):
        read_image(p)
    d = read_image(p, plane=2)
    assert d.shape == (6, 7) and d.image[0, 1] == 2.0 and _has_note(d, "plane 2")
    with pytest.raises(ImageReadError, match="out of range"):
        read_image(p, plane=3)
    squeezed = read_image(cube[:1])  # a length-1 leading axis is simply dropped
    assert squeezed.shape == (6, 7)


def test_error_tiny_image_and_bad_options():
    with pytest.raises(ImageReadError, match="only 1x1 pixels"):
        read_image(np.ones((1, 1)))
    with pytest.raises(ImageReadError, match="noise_kind must be one of"):
        read_image(np.ones((4, 4)), noise=np.ones((4, 4)), noise_kind="rms")
    with pytest.raises(ImageReadError, match="needs a gain"):
        read_image(np.ones((4, 4)), read_noise=4.0)
    with pytest.raises(ImageReadError, match="sky .0. at the image centre"):
        read_image(np.ones((5, 5)), segmap=np.diag([3, 0, 0, 0, 0]))
    with pytest.raises(ImageReadError, match="segment_id 4 is not in"):
        read_image(np.ones((5, 5)), segmap=np.ones((5, 5)), segment_id=4)


@pytest.mark.parametrize("cards, words", [
    # astropy's cdfix would silently turn a zero CD matrix into 1 degree per pixel
    ({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 5.0,
      "CD1_1": 0.0, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 0.0}, ("no usable pixel scale",)),
    ({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": "abc"}, ("no usable pixel scale",)),
    ({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"}, ("could not be interpreted",)),
], ids=["zero-cd", "cdelt-text", "unknown-projection"])
def test_broken_wcs_is_a_note_not_an_error(cards, words):
    d = read_image(np.ones((4, 4)) + np.eye(4), header=fits.Header(cards))
    assert d.wcs is None and d.pixel_scale_arcsec is None
    assert _has_note(d, *words) and _has_note(d, "no WCS used")


# ---------------------------------------------------------------------------------------------
# CLI and import contract
# ---------------------------------------------------------------------------------------------

def test_cli_info(capsys):
    from mogviewer.cli import main
    assert main(["info", str(DR9), "--band", "r"]) == 0
    out = capsys.readouterr().out
    assert "  4  -" in out and "ivar" in out  # the HDU table row of HDU 4
    assert "band:         r" in out
    assert "ivar map from HDU 4" in out
    assert "pixel scale:  0.262 arcsec/px" in out
    assert "WCS:          yes" in out


def test_cli_info_options_and_error(capsys, tmp_path):
    from mogviewer.cli import main
    rc = main(["info", str(IMFIT / "ic3478rss_256.fits"), "--mask",
               str(IMFIT / "ic3478rss_256_mask.fits"), "--gain", "4.725", "--read-noise", "4.3",
               "--sky-level", "130.14"])
    out = capsys.readouterr().out
    assert rc == 0 and "masked:       2108 px" in out and "[ESTIMATE]" in out
    assert main(["info", str(tmp_path / "missing.fits")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found" in err
    assert err.count("missing.fits") == 1  # the file is named once, not twice
    assert main(["info", str(DR9), "--hdu", "SCI"]) == 2
    assert "no HDU named 'SCI'" in capsys.readouterr().err


def test_io_fits_is_qt_free():
    code = ("import sys; sys.modules['PyQt5'] = None; sys.modules['pyqtgraph'] = None; "
            "import mogviewer.io")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_image_data_replace_shares_the_read_only_arrays():
    """ImageData.replace (catalogue mode: the cutout's WCS and file set per object, issue 19)
    changes header facts without copying the pixels again; new pixels are copied as before."""
    d = read_image(np.arange(20.0).reshape(4, 5), noise=np.ones((4, 5)))
    e = d.replace(path="field.fits", hdu=3, notes=["x"])
    assert (e.path, e.hdu, e.notes, e.band) == ("field.fits", 3, ("x",), d.band)
    assert e.image is d.image and e.ivar is d.ivar and e.mask is d.mask
    assert not e.image.flags.writeable and d.path is None       # d unchanged
    with pytest.raises(TypeError, match="no field"):
        d.replace(colour="red")
    mine = np.zeros((4, 5))
    f = d.replace(image=mine)
    assert f.image is not mine and not f.image.flags.writeable and f.ivar is not d.ivar
