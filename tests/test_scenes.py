"""Scenes: detection (photutils), neighbours fitted jointly, on real and simulated cutouts."""

import warnings

import numpy as np
import pytest
from realdata import DATA, quiet_psf
from test_fitting import PSF3

from mogviewer import io
from mogviewer.detect import classify, detect_sources, scene_from_detections
from mogviewer.errors import FitError, MogviewerError
from mogviewer.fitting import FitFlags
from mogviewer.fitting.scene_fit import fit_scene
from mogviewer.observation import Observation
from mogviewer.scene import Galaxy, PointSource, Scene

DR3 = f"{DATA}/tractor-decals-dr3"


def _dr3():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the TPV header's astropy warnings
        d = io.read_image(f"{DR3}/decam-520206-S16-image-sub.fits",
                          noise=f"{DR3}/decam-520206-S16-invvar-sub.fits", noise_kind="ivar")
    psf = quiet_psf(f"{DR3}/decam-520206-S16-psfex.fits", position=(70.0, 1500.0))
    return d, psf


def test_dr3_three_sources_detected_and_fitted():
    # PROVENANCE.md s1: the DR3 catalogue has the DEV galaxy at (29.27, 49.12) and a compact
    # SIMP source at (37.89, 16.73); a third compact source near (45, 35) is missing from it
    # (the Tractor example exists to add it). Detection must find all three (and label the
    # one- or two-pixel-wide edge and hot-pixel segments artefacts), and the joint fit must
    # model them to chi2/nu ~ 1 (measured 1.02) with the target at no bound.
    d, psf = _dr3()
    det = detect_sources(d.image, ivar=d.ivar, mask=d.mask, psf=psf)
    real = [s for s in det.sources if s.kind != "artefact"]
    assert len(real) == 3
    for x, y in [(29.27, 49.12), (37.89, 16.73), (45.0, 35.0)]:
        assert min(np.hypot(s.x - x, s.y - y) for s in real) < 1.5
    scene, mask, ids = scene_from_detections(det, target=(29.3, 49.1), profile="dev", M=8,
                                             psf=psf)
    assert len(scene) == 3 and scene.target == 0 and len(ids) == 3
    res = fit_scene(Observation.from_arrays(d.image, ivar=d.ivar, mask=d.mask | mask, psf=psf),
                    scene)
    assert res.status == "converged"
    assert 0.8 < res.chi2_nu < 1.3
    assert res.flags[0] == FitFlags(0)
    g = res.scene.sources[0]
    assert np.hypot(g.x - 29.27, g.y - 49.12) < 0.5
    assert all(np.isfinite(v) and v > 0 for v in res.errors[0].values())
    # the fit improves significantly on the sources held at their detection values (only the
    # sky fitted): 12 more parameters; a chi2 drop above 60 is beyond 5 sigma for them
    # (measured 4792 -> 4615)
    held = fit_scene(Observation.from_arrays(d.image, ivar=d.ivar, mask=d.mask | mask, psf=psf),
                     scene, fitted=[False, False, False])
    assert held.chi2 > res.chi2 + 60 and held.names == ((-1, "sky"),)


def _pair(sep_re, ratio, seed, *, shape=(72, 72)):
    """Target exp galaxy (r_e 4 px) and a neighbour exp galaxy ``sep_re`` r_e away, fainter by
    ``ratio``; rendered by our renderer with PSF3, Gaussian noise at S/N ~ 200 for the target."""
    tgt = Galaxy(profile="exp", M=6, flux=5000.0, x=33.3, y=35.6, re=4.0, q=0.7, angle=30.0)
    nb = Galaxy(profile="exp", M=6, flux=5000.0 / ratio, x=33.3 + sep_re * 4.0, y=36.4, re=3.0,
                q=0.6, angle=120.0)
    truth = Scene((tgt, nb), sky=0.0)
    obs0 = Observation.from_arrays(np.zeros(shape), psf=PSF3)
    img = truth.render(obs0)
    sigma = np.sqrt((tgt.render_into(obs0) ** 2).sum()) / 200.0
    img = img + np.random.default_rng(seed).normal(0.0, sigma, shape)
    return Observation.from_arrays(img, sigma=np.full(shape, sigma), psf=PSF3), truth


@pytest.mark.parametrize("sep,ratio", [(2.0, 1.0), (3.0, 3.0)])
def test_blended_pair_fitted_jointly_is_unbiased(sep, ratio):
    # The neighbour fitted: target flux and r_e within 1 % (the bound; S/N 200 gives
    # ~0.3 % statistical scatter); ignored, the neighbour's light biases them by far more.
    obs, truth = _pair(sep, ratio, seed=4)
    det = detect_sources(obs.image, ivar=obs.ivar, psf=PSF3)
    scene, mask, _ = scene_from_detections(det, target=(33.3, 35.6), profile="exp", M=6,
                                           neighbour_profile="exp", psf=PSF3)
    res = fit_scene(obs.replace(mask=obs.mask | mask), scene, sky="none")
    g, t = res.scene.sources[0], truth.sources[0]
    assert len(res.scene) >= 2
    assert abs(g.flux / t.flux - 1) < 0.01 and abs(g.re / t.re - 1) < 0.01
    scene1, _, _ = scene_from_detections(det, target=(33.3, 35.6), profile="exp", M=6,
                                         psf=PSF3, neighbours="ignore")
    alone = fit_scene(obs, scene1, sky="none").scene.sources[0]
    assert abs(alone.flux / t.flux - 1) > 0.03 or abs(alone.re / t.re - 1) > 0.03


@pytest.mark.parametrize("sep,ratio", [(1.5, 1.0), (1.5, 10.0), (2.0, 10.0), (3.0, 10.0)])
def test_undeblended_neighbour_split_off_the_target(sep, ratio):
    # Pairs photutils cannot deblend (no saddle between them: the detection is one segment)
    # biased the target by +4 to +114 % in flux and r_e (measured at seed 4: 1.5 r_e ratio 1
    # +114 % / +38 %; 2 r_e ratio 10 +10 % / +14 %; 3 r_e ratio 10 +4.3 % / +6.0 %). The blend
    # search finds the neighbour in the target's residual, keeps it on the chi2 test, and the
    # target comes back within the 1 % (measured <= 0.5 % at seed 4; the reported
    # 1-sigma errors are 0.9-1.8 %, so the bound is also a check that the target is the right
    # one of the two, at its true position).
    obs, truth = _pair(sep, ratio, seed=4)
    det = detect_sources(obs.image, ivar=obs.ivar, psf=PSF3)
    assert sum(d.kind == "galaxy" for d in det.sources) == 1      # the deblender's blind spot
    scene, mask, _ = scene_from_detections(det, target=(33.3, 35.6), profile="exp", M=6,
                                           psf=PSF3)
    assert len(scene) == 1
    obs = obs.replace(mask=obs.mask | mask)
    res = fit_scene(obs, scene, sky="none", split_blends=True, target_at=(33.3, 35.6))
    g, t, n = res.scene.sources[0], truth.sources[0], truth.sources[1]
    assert res.added == (1,) and len(res.scene) == 2 and res.scene.target == 0
    assert abs(g.flux / t.flux - 1) < 0.01 and abs(g.re / t.re - 1) < 0.01
    assert np.hypot(g.x - t.x, g.y - t.y) < 0.3
    nb = res.scene.sources[1]
    assert np.hypot(nb.x - n.x, nb.y - n.y) < 0.5      # the neighbour where it is
    assert "split off the target" in res.notes[1][0]
    assert res.flags == (FitFlags(0), FitFlags(0))
    plain = fit_scene(obs, scene, sky="none").scene.sources[0]
    assert abs(plain.flux / t.flux - 1) > 0.04


def brute_pair():
    """A 72x72 pair from the independent renderer (tests/brute.py): the target exp r_e 4 px,
    flux 5000 at (33.3, 35.6), and an exp neighbour 1.5 r_e away (39.3, 36.4) with a third of
    its flux; PSF3; Gaussian noise (seed 2) at S/N 200 for the target. Returns (image, sigma)."""
    from brute import exact_galaxy_image
    shape = (72, 72)
    tgt = exact_galaxy_image("exp", 1.0, 33.3, 35.6, 4.0, 0.7, 30.0, shape, PSF3)
    tgt *= 5000.0 / tgt.sum()
    nb = exact_galaxy_image("exp", 1.0, 39.3, 36.4, 3.0, 0.6, 120.0, shape, PSF3)
    nb *= 5000.0 / 3.0 / nb.sum()
    sigma = np.sqrt((tgt ** 2).sum()) / 200.0
    return tgt + nb + np.random.default_rng(2).normal(0.0, sigma, shape), sigma


def test_blend_search_on_a_brute_rendered_pair():
    # The independent renderer (tests/brute.py: exact exponentials, supersampled, FFT-convolved)
    # at 1.5 r_e, ratio 3, noise seed 2: fitted one source after the other, the split-off
    # source collapsed to a q -> 0 needle between the pair (at the size bound, so not kept: the
    # target stayed at +42 % flux); fitted jointly from the start it is kept and the target
    # comes back to +1.8 % / +0.6 % (measured), within 2 of its reported 1-sigma errors
    # (1.8 % / 1.8 %: the overlapping pair trades flux); fluxes normalised on this stamp.
    img, sigma = brute_pair()
    obs = Observation.from_arrays(img, sigma=np.full(img.shape, sigma), psf=PSF3)
    det = detect_sources(img, ivar=obs.ivar, psf=PSF3)
    scene, mask, _ = scene_from_detections(det, target=(33.3, 35.6), profile="exp", M=6,
                                           psf=PSF3)
    assert len(scene) == 1                                 # not deblended
    res = fit_scene(obs.replace(mask=obs.mask | mask), scene, sky="none", split_blends=True,
                    target_at=(33.3, 35.6))
    g, e = res.scene.sources[0], res.errors[0]
    assert res.added == (1,)
    assert abs(g.flux - 5000.0) < 2 * e["flux"] and abs(g.re - 4.0) < 2 * e["re"]
    assert abs(g.flux / 5000.0 - 1) < 0.03


def test_blend_search_keeps_a_lone_galaxy_whole():
    # One galaxy and noise: the residual has no significant peak, or one that fails the chi2
    # (BIC) test, so nothing is split off and the result is the plain fit's.
    obs0 = Observation.from_arrays(np.zeros((64, 64)), psf=PSF3)
    truth = Scene((Galaxy(profile="exp", M=6, flux=5000.0, x=31.4, y=30.8, re=4.0, q=0.7,
                          angle=30.0),), sky=0.0)
    img = truth.render(obs0)
    sigma = np.sqrt((img ** 2).sum()) / 200.0
    img = img + np.random.default_rng(11).normal(0.0, sigma, img.shape)
    obs = Observation.from_arrays(img, sigma=np.full(img.shape, sigma), psf=PSF3)
    start = Scene((Galaxy(profile="exp", M=6, flux=4000.0, x=31.0, y=31.0, re=3.0, q=0.8,
                          angle=0.0),), sky=0.0)
    res = fit_scene(obs, start, sky="none", split_blends=True)
    plain = fit_scene(obs, start, sky="none")
    assert res.added == () and len(res.scene) == 1
    assert res.scene.sources[0].flux == pytest.approx(plain.scene.sources[0].flux, rel=1e-9)


def test_noise_peaks_not_modelled():
    # At seed 4 the 2-sigma detection on the smoothed image finds two noise peaks beside the
    # pair (segment S/N 2.3-2.9, measured); with 'fit' they used to be modelled as point
    # sources. Below MIN_SNR = 5 they are masked (their segments only), not modelled;
    # min_snr=0 models them again.
    from mogviewer.detect import MIN_SNR
    obs, _ = _pair(4.0, 1.0, seed=4)
    det = detect_sources(obs.image, ivar=obs.ivar, psf=PSF3)
    faint = [d for d in det.sources if d.snr < MIN_SNR]
    assert len(faint) == 2 and all(2.0 < d.snr < 3.5 for d in faint)
    assert all(d.snr > 50 for d in det.sources if d.kind == "galaxy")
    scene, mask, ids = scene_from_detections(det, target=(33.3, 35.6), profile="exp", M=6,
                                             psf=PSF3)
    assert len(scene) == 2
    assert np.array_equal(mask, np.isin(det.segmap, [d.label for d in faint]))
    assert not set(ids) & {d.label for d in faint}
    every, _, _ = scene_from_detections(det, target=(33.3, 35.6), profile="exp", M=6,
                                        psf=PSF3, min_snr=0.0)
    assert len(every) == 4


def test_point_source_fit_recovers_flux_and_position():
    obs0 = Observation.from_arrays(np.zeros((40, 40)), psf=PSF3)
    truth = Scene((PointSource(800.0, 18.3, 21.7),), sky=3.0)
    img = truth.render(obs0) + np.random.default_rng(1).normal(0, 0.5, (40, 40))
    obs = Observation.from_arrays(img, sigma=np.full((40, 40), 0.5), psf=PSF3)
    res = fit_scene(obs, Scene((PointSource(500.0, 19.0, 21.0),), sky=0.0))
    p, e = res.scene.sources[0], res.errors[0]
    # pulls within 4 sigma (a wrong derivative or error would be off by far more)
    assert abs(p.flux - 800.0) < 4 * e["flux"] and abs(p.x - 18.3) < 4 * e["x"]
    assert abs(p.y - 21.7) < 4 * e["y"] and abs(res.scene.sky - 3.0) < 4 * res.sky_errors["sky"]
    assert 0.8 < res.chi2_nu < 1.2


def test_classification_and_bad_input():
    assert classify(0.05, 2.0, 0.05, 2.0) == "point"
    assert classify(0.01, 4.0, 0.05, 2.0) == "galaxy"
    assert classify(0.3, 0.3, 0.05, 2.0) == "artefact"
    img = np.zeros((30, 30))
    det = detect_sources(img, ivar=np.ones(img.shape), psf=PSF3)    # a blank image
    with pytest.raises(MogviewerError, match="no source detected"):
        scene_from_detections(det, psf=PSF3)
    with pytest.raises(MogviewerError, match="no usable pixels"):
        detect_sources(img, mask=np.ones(img.shape, bool))
    obs = Observation.from_arrays(img, psf=PSF3)
    with pytest.raises(FitError, match="no sources"):
        fit_scene(obs, Scene(()))
    with pytest.raises(FitError, match="sky must be"):
        fit_scene(obs, Scene((PointSource(1.0, 3.0, 3.0),)), sky="rainbow")


@pytest.mark.slow
def test_decals_dr9_r_neighbours_fitted():
    # Issue 17 acceptance on the full 256 px DECaLS DR9 r cutout (PROVENANCE.md s6): with the
    # 20 brightest neighbours fitted (the rest masked) chi2/nu < 1.5 (measured 1.086; the
    # target alone with nothing masked: 17.4), and the target's r_e, q and PA within 3 %,
    # 0.02 and 2 deg of the fit with every other segment masked (measured 0.03 %, 0.0005,
    # 0.035 deg). With the residual pass (two sources added, one a compact source 2 r_e from
    # the target's centre along its minor axis) the same bounds hold (measured chi2/nu 0.933;
    # 0.08 %, 0.019, 1.15 deg).
    d = io.read_image(f"{DATA}/pysersic-decals-dr9/cutout_59.1067_-30.4848.fits", band="r")
    psf = quiet_psf(f"{DATA}/pysersic-decals-dr9/copsf_59.1067_-30.4848.fits", hdu=1,
                    n_components=4)
    det = detect_sources(d.image, ivar=d.ivar, mask=d.mask, psf=psf)
    out = {}
    for mode in ("mask", "fit"):
        scene, mask, _ = scene_from_detections(det, target=(126.4, 130.3), profile="ser",
                                               psf=psf, neighbours=mode, max_fitted=20)
        obs = Observation.from_arrays(d.image, ivar=d.ivar, mask=d.mask | mask, psf=psf)
        out[mode] = fit_scene(obs, scene)
        if mode == "fit":
            out["residual"] = fit_scene(obs, scene, residual_pass=True)
            out["split"] = fit_scene(obs, scene, split_blends=True, target_at=(126.4, 130.3))
    assert out["residual"].added and out["residual"].scene.target == 0
    # the blend search tries the target's arm-like residual (119.7, 122.5) and rejects it as a
    # streak (q 0.139 +- 0.030, below blends.SPLIT_MIN_Q = 0.25 by more than two errors): without
    # that guard it split off two streaks and moved the target's r_e by 3.1 % and q by 0.041
    # (measured)
    assert out["split"].added == () and "streak" in out["split"].notes[0][0]
    b = out["mask"].scene.sources[0]
    for mode in ("fit", "residual", "split"):
        assert out[mode].chi2_nu < 1.5
        a = out[mode].scene.sources[0]
        assert out[mode].flags[0] == FitFlags(0)
        assert abs(a.re / b.re - 1) < 0.03 and abs(a.q - b.q) < 0.02
        assert abs((a.angle - b.angle + 90) % 180 - 90) < 2.0
