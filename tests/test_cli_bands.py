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


def test_bands_of_different_shapes_fail_with_the_shapes(grz, tmp_path):
    with fits.open(grz / "obj_z.fits") as h:
        small = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(x.data[:40, :40], x.header)
                                                     for x in h[1:]])
        small.writeto(tmp_path / "z40.fits")
    rc, out = _run(grz, tmp_path, "--bands", f"g={grz / 'obj_g.fits'}",
                   f"z={tmp_path / 'z40.fits'}", psf_bands="gz")
    r = read_csv(out)[0]
    assert rc == 1 and r["status"] == "failed"
    assert "different shapes" in r["reason"] and "(40, 40)" in r["reason"]


def test_a_poor_psf_mixture_in_any_band_flags_psf_approx(grz, tmp_path):
    # A stamp of PSF3 (three Gaussians) fitted with one Gaussian (--psf-components 1): the
    # mixture's size misses the stamp's by far more than 0.1 %, and the joint fit uses the
    # mixtures only, so the row says PSF_APPROX (the one-band rule of FitProblem)
    from mogviewer.mixture import Mixture
    from mogviewer.render import render

    centred = Mixture(PSF3.amps, PSF3.means + 15.0, PSF3.covs)
    fits.writeto(tmp_path / "stamp.fits", np.asarray(render(centred, (31, 31))).reshape(31, 31))
    rc = cli.main(["fit", str(grz / "obj.fits"), "--bands", "g", "r", "--band-psf",
                   f"g={grz / 'psf.json'}", "--band-psf", f"r={tmp_path / 'stamp.fits'}",
                   "--psf-components", "1", "--profile", "exp", "--csv",
                   str(tmp_path / "o.csv"), "--quiet"])
    r = read_csv(tmp_path / "o.csv")[0]
    assert rc == 0 and "PSF_APPROX" in r["flag_names"] and r["psf_k"] == 1
    assert abs(r["psf_size_ratio"] - 1) > 1e-3
