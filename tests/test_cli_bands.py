"""``mogviewer fit --bands``: several bands of one object fitted jointly from the command line
(issue 18): per-band flux, magnitude and colour columns, bands in one file or in files of their
own, and bad input."""

import math

import numpy as np
import pytest
from astropy.io import fits
from test_batch import read_csv
from test_fitting import PSF3

from mogviewer import cli
from mogviewer.export.table import columns_doc_path
from mogviewer.observation import Observation
from mogviewer.psf import write_psf
from mogviewer.scene import Galaxy

TRUTH = Galaxy(profile="exp", M=6, flux=1000.0, x=24.3, y=23.8, re=3.5, q=0.6, angle=40.0)
FLUX = {"g": 1.0, "r": 2.0, "z": 3.0}       # flux ratios of the bands
SNR = 100.0


def _band_hdus(b, rng):
    """Image and inverse-variance HDUs of one band, Legacy-Surveys style (BAND, IMAGETYP)."""
    obs0 = Observation.from_arrays(np.zeros((48, 48)), psf=PSF3)
    clean = TRUTH.render_into(obs0) * FLUX[b]
    sigma = np.sqrt((clean ** 2).sum()) / SNR
    img = clean + rng.normal(0.0, sigma, clean.shape)
    hi = fits.ImageHDU(img.astype(np.float64))
    hi.header.update(BAND=b, IMAGETYP="image")
    hv = fits.ImageHDU(np.full(img.shape, sigma ** -2))
    hv.header.update(BAND=b, IMAGETYP="invvar")
    return hi, hv


@pytest.fixture(scope="module")
def grz(tmp_path_factory):
    """One multi-band file (g, r, z: image and invvar HDUs each, fluxes 1 : 2 : 3, S/N 100 per
    band, our renderer with PSF3), the same bands as three files of their own, and PSF3 as a
    JSON mixture (so the model is exactly the simulation's)."""
    d = tmp_path_factory.mktemp("grz")
    rng = np.random.default_rng(11)
    hdus = {b: _band_hdus(b, rng) for b in "grz"}
    fits.HDUList([fits.PrimaryHDU()] + [h for b in "grz" for h in hdus[b]]).writeto(
        d / "obj.fits")
    for b in "grz":
        fits.HDUList([fits.PrimaryHDU(), *hdus[b]]).writeto(d / f"obj_{b}.fits")
    write_psf(d / "psf.json", PSF3)
    return d


def _run(d, tmp_path, *args, name="o.csv", psf_bands="grz"):
    out = tmp_path / name
    psfs = [a for b in psf_bands for a in ("--band-psf", f"{b}={d / 'psf.json'}")]
    rc = cli.main(["fit", *args, *psfs, "--profile", "exp", "-M", "6", "--sky", "none",
                   "--zeropoint", "22.5", "--csv", str(out), "--quiet"])
    return rc, out


def test_joint_fit_of_three_bands_recovers_fluxes_and_colours(grz, tmp_path):
    rc, out = _run(grz, tmp_path, str(grz / "obj.fits"), "--bands", "g", "r", "z")
    assert rc == 0
    t = read_csv(out)
    assert len(t) == 1
    r = t[0]
    assert r["bands"] == "g|r|z" and "shared" in r["ties"]
    # one noise realisation: every recovered quantity within 4 sigma of its formal error (the
    # colour pulls of 300 realisations are tested in test_multiband: std 0.9-1.1)
    for b, k in FLUX.items():
        truth = TRUTH.flux_target * k
        assert abs(r[f"flux_{b}"] - truth) < 4 * r[f"flux_{b}_err"], b
        assert r[f"mag_{b}"] == pytest.approx(22.5 - 2.5 * math.log10(r[f"flux_{b}"]))
        assert 0.85 < r[f"chi2_nu_{b}"] < 1.15
    for b1, b2 in (("g", "r"), ("r", "z")):
        c = -2.5 * math.log10(FLUX[b1] / FLUX[b2])
        assert abs(r[f"{b1}_{b2}"] - c) < 4 * r[f"{b1}_{b2}_err"]
        # the colour error includes the (positive, through the shared shape) flux covariance:
        # it is below the errors of the two magnitudes added in quadrature
        assert r[f"{b1}_{b2}_err"] < math.hypot(r[f"mag_{b1}_err"], r[f"mag_{b2}_err"])
    assert abs(r["re_pix"] - TRUTH.re) < 4 * r["re_pix_err"]
    # the shared shape is better determined than in one band alone
    rc, one = _run(grz, tmp_path, str(grz / "obj.fits"), "--bands", "g", name="g.csv",
                   psf_bands="g")
    assert rc == 0 and read_csv(one)["re_pix_err"][0] > 1.3 * r["re_pix_err"]
    # the sidecar documents the band columns
    doc = columns_doc_path(out).read_text()
    assert "flux_z" in doc and "colour mag_g - mag_r" in doc


def test_bands_in_files_of_their_own_give_the_same_row(grz, tmp_path):
    rc, a = _run(grz, tmp_path, str(grz / "obj.fits"), "--bands", "g", "r", "z", name="a.csv")
    rc2, b = _run(grz, tmp_path, "--bands", *[f"{x}={grz / f'obj_{x}.fits'}" for x in "grz"],
                  name="b.csv")
    assert rc == rc2 == 0
    ra, rb = read_csv(a)[0], read_csv(b)[0]
    for c in ("flux_g", "flux_r", "flux_z", "re_pix", "q", "g_r", "r_z_err"):
        assert ra[c] == pytest.approx(rb[c], rel=1e-9), c


def test_a_band_all_masked_is_reported_and_the_others_fitted(grz, tmp_path):
    with fits.open(grz / "obj.fits") as h:
        h[6].data[:] = 0.0            # the z band's inverse variance: nothing usable
        h.writeto(tmp_path / "noz.fits")
    rc, out = _run(grz, tmp_path, str(tmp_path / "noz.fits"), "--bands", "g", "r", "z")
    r = read_csv(out)[0]
    assert r["status"] == "converged" and r["bands"] == "g|r"
    assert "band z not fitted" in r["reason"] and "no positive finite values" in r["reason"]
    assert np.ma.is_masked(r["flux_z"]) and r["flux_g"] > 0 and rc == 0


@pytest.mark.parametrize("args, message", [
    (["--bands", "g", "g"], "a band is given twice"),
    (["--bands", "g", "r", "--band", "g"], "--band picks one band"),
    (["--bands", "g", "r", "--band-psf", "i=x.json"], "i is not one of --bands"),
    (["--bands", "g", "r", "--sample", "200"], "--sample with --bands"),
    (["--bands", "g/r"], "must be a band name"),
])
def test_bad_band_options_are_one_line(grz, tmp_path, capsys, args, message):
    rc = cli.main(["fit", str(grz / "obj.fits"), *args, "--csv", str(tmp_path / "x.csv")])
    assert rc == 2
    assert message in capsys.readouterr().err.splitlines()[0]
    assert not (tmp_path / "x.csv").exists()


def test_a_band_without_psf_is_refused_before_fitting(grz, tmp_path, capsys):
    # --psf is a single-band mixture file: the bands cannot each find their PSF in it
    rc = cli.main(["fit", str(grz / "obj.fits"), "--bands", "g", "r", "--psf",
                   str(grz / "psf.json"), "--csv", str(tmp_path / "x.csv")])
    assert rc == 2 and "no HDU for band g" in capsys.readouterr().err
    rc = cli.main(["fit", str(grz / "obj.fits"), "--bands", "g", "r", "--band-psf",
                   f"g={grz / 'psf.json'}", "--csv", str(tmp_path / "x.csv")])
    assert rc == 2 and "band r has no PSF" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_bands_of_different_shapes_without_wcs_fit_the_reference_and_say_why(grz, tmp_path):
    with fits.open(grz / "obj_z.fits") as h:
        small = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(x.data[:40, :40], x.header)
                                                     for x in h[1:]])
        small.writeto(tmp_path / "z40.fits")
    rc, out = _run(grz, tmp_path, "--bands", f"g={grz / 'obj_g.fits'}",
                   f"z={tmp_path / 'z40.fits'}", psf_bands="gz")
    # every band is at S/N 100, the crop leaves z less: g is the reference band (most signal);
    # z cannot be related to its grid: left out with the reason, g fitted
    r = read_csv(out)[0]
    assert rc == 0 and r["status"] == "converged" and r["bands"] == "g" and r["ref_band"] == "g"
    assert "band z not fitted" in r["reason"] and "no WCS" in r["reason"]
    assert np.ma.is_masked(r["flux_z"]) and r["flux_g"] > 0


def test_a_poor_psf_mixture_in_any_band_flags_psf_approx(grz, tmp_path):
    # A stamp of PSF3 (three Gaussians) fitted with one Gaussian (--psf-components 1): the
    # mixture's size misses the stamp's by far more than 0.1 %, and the joint fit uses the
    # mixtures only, so the row says PSF_APPROX (the one-band rule of FitProblem)
    from mogviewer.mixture import Mixture
    from mogviewer.render import render

    centred = Mixture(PSF3.amps, PSF3.means + 15.0, PSF3.covs)
    fits.writeto(tmp_path / "stamp.fits", np.asarray(render(centred, (31, 31))).reshape(31, 31))
    args = ["fit", str(grz / "obj.fits"), "--bands", "g", "r", "--band-psf",
            f"g={grz / 'psf.json'}", "--band-psf", f"r={tmp_path / 'stamp.fits'}",
            "--psf-components", "1", "--profile", "exp", "--quiet"]
    rc = cli.main(args + ["--psf-mode", "mixture", "--csv", str(tmp_path / "o.csv")])
    r = read_csv(tmp_path / "o.csv")[0]
    assert rc == 0 and "PSF_APPROX" in r["flag_names"] and r["psf_k"] == 1
    assert r["psf_mode"] == "mixture" and abs(r["psf_size_ratio"] - 1) > 1e-3
    # by default the stamp itself is used (exact-PSF mode): no approximation to flag, and the
    # r flux is as good as with the exact mixture in g
    rc = cli.main(args + ["--csv", str(tmp_path / "e.csv")])
    e = read_csv(tmp_path / "e.csv")[0]
    assert rc == 0 and e["psf_mode"] == "exact" and "PSF_APPROX" not in str(e["flag_names"])
    assert abs(e["flux_r"] - 2 * TRUTH.flux_target) < 4 * e["flux_r_err"]


def test_wavelength_ties_and_their_options(grz, tmp_path, capsys):
    # r_e and n tied to wavelength (degree 1): the simulation has one r_e in all bands, so the
    # per-band r_e agree with it within 4 sigma and the ties column says what was tied
    rc, out = _run(grz, tmp_path, str(grz / "obj.fits"), "--bands", "g", "r", "z",
                   "--wavelength", "g=475", "--wavelength", "r=622", "--wavelength", "z=913",
                   "--tie", "re=1")
    r = read_csv(out)[0]
    assert rc == 0 and "wavelength" in r["ties"]
    for b in "grz":
        assert abs(r[f"re_{b}_pix"] - TRUTH.re) < 4 * r[f"re_{b}_pix_err"], b
    assert len({round(r[f"re_{b}_pix"], 9) for b in "grz"}) == 3      # not one shared value
    for extra, message in [(["--tie", "re=1"], "--tie needs --wavelength for every band"),
                           (["--tie", "re=3", "--wavelength", "g=1", "--wavelength", "r=2"],
                            "the degree must be below the number of bands"),
                           (["--tie", "q=1"], "must be re=DEGREE"),
                           (["--wavelength", "i=800"], "i is not one of --bands")]:
        rc = cli.main(["fit", str(grz / "obj.fits"), "--bands", "g", "r", *extra, "--csv",
                       str(tmp_path / "x.csv")])
        assert rc == 2 and message in capsys.readouterr().err, extra


def test_bands_on_different_grids_through_their_wcs(tmp_path):
    # g on a 48x48 grid, r on a 40x44 grid shifted by (-5.3, +3.1) px, both with a TAN WCS of
    # 0.262"/px: the r image is rendered at the galaxy's position on its own grid; the joint fit
    # relates the two through the WCSs and recovers the fluxes and the position in g's pixels
    from astropy.wcs import WCS

    def wcs(crpix):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150.0, 2.0]
        w.wcs.crpix = crpix
        w.wcs.cd = np.array([[-0.262, 0.0], [0.0, 0.262]]) / 3600
        return w

    rng = np.random.default_rng(3)
    for b, shape, crpix, dx, dy in (("g", (48, 48), [25.0, 25.0], 0.0, 0.0),
                                    ("r", (44, 40), [25.0 - 5.3, 25.0 + 3.1], -5.3, 3.1)):
        gal = Galaxy(profile="exp", M=6, flux=1000.0 * FLUX[b], x=TRUTH.x + dx,
                     y=TRUTH.y + dy, re=TRUTH.re, q=TRUTH.q, angle=TRUTH.angle)
        clean = gal.render_into(Observation.from_arrays(np.zeros(shape), psf=PSF3))
        sigma = np.sqrt((clean ** 2).sum()) / SNR
        h = fits.ImageHDU(clean + rng.normal(0.0, sigma, shape), header=wcs(crpix).to_header())
        h.header.update(BAND=b, IMAGETYP="image")
        v = fits.ImageHDU(np.full(shape, sigma ** -2), header=wcs(crpix).to_header())
        v.header.update(BAND=b, IMAGETYP="invvar")
        fits.HDUList([fits.PrimaryHDU(), h, v]).writeto(tmp_path / f"{b}.fits")
    rc, out = _run(tmp_path.parent, tmp_path, "--bands", f"g={tmp_path / 'g.fits'}",
                   f"r={tmp_path / 'r.fits'}", psf_bands="")
    assert rc == 2          # no PSF given for the bands: refused before fitting
    write_psf(tmp_path / "psf.json", PSF3)
    rc, out = _run(tmp_path, tmp_path, "--bands", f"g={tmp_path / 'g.fits'}",
                   f"r={tmp_path / 'r.fits'}", psf_bands="gr")
    r = read_csv(out)[0]
    assert rc == 0 and r["bands"] == "g|r" and r["ref_band"] == "g"   # S/N 100 each, g first
    for b in "gr":
        assert abs(r[f"flux_{b}"] - TRUTH.flux_target * FLUX[b]) < 4 * r[f"flux_{b}_err"], b
    # positions are in the reference band's (g's) pixels
    assert abs(r["x"] - TRUTH.x) < 4 * r["x_err"] and abs(r["y"] - TRUTH.y) < 4 * r["y_err"]
    assert r["x_err"] < 0.05
    # r's model sits on r's galaxy: its chi2 is noise (a model misplaced by the 5.3 px shift
    # would leave chi2/nu in the hundreds at S/N 100)
    assert 0.85 < r["chi2_nu_r"] < 1.15


def test_one_band_takes_the_psf_hdu_of_that_band(grz, tmp_path):
    # New-user review, 2026-12-04: `--band r --psf copsf.fits` (a Legacy Surveys PSF file,
    # one HDU per band) used HDU 0, the g PSF, with a warning naming the image's --hdu; now the
    # HDU whose BAND is r is taken, as --bands and the app take it: the row equals the one
    # with --psf-hdu given by hand, and differs from the g PSF's.
    yy, xx = np.mgrid[:25, :25]
    hdus = [fits.PrimaryHDU()]
    for b, s in (("g", 2.6), ("r", 1.3), ("z", 1.9)):
        h = fits.ImageHDU(np.exp(-((xx - 12) ** 2 + (yy - 12) ** 2) / (2 * s * s)))
        h.header["BAND"] = b
        hdus.append(h)
    fits.HDUList(hdus).writeto(tmp_path / "psfs.fits")
    rows = {}
    for name, extra in (("auto", []), ("r", ["--psf-hdu", "2"]), ("g", ["--psf-hdu", "1"])):
        out = tmp_path / f"{name}.csv"
        rc = cli.main(["fit", str(grz / "obj.fits"), "--band", "r", "--psf",
                       str(tmp_path / "psfs.fits"), *extra, "--profile", "exp", "-M", "6",
                       "--sky", "none", "--csv", str(out), "--quiet"])
        assert rc == 0
        rows[name] = read_csv(out)[0]
    assert float(rows["auto"]["re_pix"]) == float(rows["r"]["re_pix"])
    assert float(rows["auto"]["re_pix"]) != pytest.approx(float(rows["g"]["re_pix"]), rel=1e-3)


@pytest.mark.parametrize("args, message", [
    (["-M", "7"], "no exp mixture with M = 7 (the default profile is exp)"),
    (["--profile", "ser", "-M", "8"], "-M cannot be chosen for --profile ser"),
    (["--profile", "dev", "-M", "7"], "no dev mixture with M = 7")])
def test_mixture_size_refused_before_any_file_is_read(grz, tmp_path, capsys, args, message):
    # New-user review, 2026-12-04: -M 7 with the default profile, and -M 8 with ser, were
    # failed rows (exit 1) after reading each file; the README says options are checked first
    rc = cli.main(["fit", str(grz / "obj.fits"), *args, "--csv", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.csv").exists()


def test_one_band_takes_its_own_hdu_of_a_per_band_psf_file(tmp_path, capsys):
    # new-user report: `--bands r --psf FILE` with a Legacy Surveys PSF file (one HDU per band,
    # BAND = g, r, z) used HDU 0, the g PSF, with only a warning ("3 HDUs hold images ... using
    # HDU 0"); `--band r --psf FILE` (one band, single-band mode) took the r HDU. Now both take
    # the r HDU: the same r_e and q (to 1e-5: the joint-band driver and the single fit stop
    # within 2e-7 of each other here); --psf-hdu still overrides (the g PSF gives an r_e
    # further off than that, so the check can fail)
    from pathlib import Path

    d = Path(__file__).parent / "data" / "real" / "pysersic-decals-dr9"
    img, psf = d / "cutout_59.1067_-30.4848.fits", d / "copsf_59.1067_-30.4848.fits"
    common = ["--psf", str(psf), "--profile", "exp", "-M", "6", "--quiet"]
    rows = {}
    for name, extra in (("bands", ["--bands", "r"]), ("band", ["--band", "r"]),
                        ("hdu0", ["--bands", "r", "--psf-hdu", "0"])):
        out = tmp_path / f"{name}.csv"
        assert cli.main(["fit", str(img), *extra, *common, "--csv", str(out)]) == 0
        rows[name] = read_csv(out)[0]
    capsys.readouterr()
    assert rows["bands"]["re_pix"] == pytest.approx(rows["band"]["re_pix"], rel=1e-5)
    assert rows["bands"]["q"] == pytest.approx(rows["band"]["q"], rel=1e-5)
    assert abs(rows["hdu0"]["re_pix"] / rows["band"]["re_pix"] - 1) > 1e-3, (
        rows["hdu0"]["re_pix"], rows["band"]["re_pix"])
