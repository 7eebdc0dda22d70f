"""The scene/observation core: values, rendering, and the one-galaxy fit as its special case."""

import copy
import pickle

import numpy as np
import pytest
from test_fitting import PSF3

from mogviewer.errors import ImageReadError, ProfileError
from mogviewer.fitting import FitProblem, GalaxyParams, model_image
from mogviewer.mixture import Mixture
from mogviewer.observation import Observation
from mogviewer.scene import Galaxy, PointSource, Scene


def _obs(shape=(48, 56), psf=PSF3):
    return Observation.from_arrays(np.zeros(shape), sigma=np.ones(shape), psf=psf, band="r",
                                   zeropoint=27.0, name="sim")


@pytest.mark.parametrize("profile,M,profile2,sky", [
    ("exp", 6, None, "plane"), ("luv", 8, None, "constant"), ("ser", None, None, "constant"),
    ("dev", 8, "exp", "none")])
def test_one_galaxy_scene_renders_as_the_fit_model(profile, M, profile2, sky):
    # the one-galaxy fit is the special case: a scene made from a fit's parameters renders
    # the same image as fitting.model_image, to rounding (the same kernels add the same
    # Gaussians; only the order of the sky addition differs)
    p = GalaxyParams(flux=2500.0, x=27.3, y=22.8, re=4.2, q=0.55, angle=112.0, sky=1.5,
                     sky_dx=0.01 if sky == "plane" else 0.0,
                     sky_dy=-0.02 if sky == "plane" else 0.0, n=3.1,
                     flux2=900.0, re2=8.0, q2=0.8, angle2=100.0)
    if sky == "none":
        p = p.replace(sky=0.0)
    prob = FitProblem.from_arrays(np.zeros((48, 56)), psf=PSF3, profile=profile, M=M,
                                  n=3.1 if profile == "ser" else None, sky=sky,
                                  profile2=profile2)
    scene = Scene.from_params(p, profile, M, profile2=profile2)
    img = scene.render(_obs())
    ref = model_image(prob, p)
    assert np.abs(img - ref).max() <= 1e-12 * np.abs(ref).max()
    # the galaxy alone, without the sky
    gal = scene.render(_obs(), sources=[0])
    assert np.abs(img - gal - scene.sky_image(img.shape)).max() <= 1e-12 * np.abs(ref).max()


def test_point_source_is_the_psf_scaled_and_placed():
    obs = _obs((64, 64))
    img = Scene((PointSource(flux=500.0, x=30.3, y=33.7),)).render(obs)
    yy, xx = np.mgrid[:64, :64]
    tot = img.sum()
    # the PSF's widest component (sigma 4 px) is 7.5 sigma inside the stamp: all flux in
    assert tot == pytest.approx(500.0, rel=1e-9)
    # centroid: the source position plus the PSF's own mean offset (amplitude-weighted)
    mx, my = (PSF3.amps[:, None] * PSF3.means).sum(axis=0) / PSF3.amps.sum()
    assert (img * xx).sum() / tot == pytest.approx(30.3 + mx, abs=1e-9)
    assert (img * yy).sum() / tot == pytest.approx(33.7 + my, abs=1e-9)


def test_scene_of_several_sources_is_the_sum_of_its_sources():
    obs = _obs()
    gal = Galaxy(profile="exp", M=6, flux=1000.0, x=20.0, y=20.0, re=3.0, q=0.7, angle=30.0)
    star = PointSource(flux=300.0, x=40.5, y=30.2)
    scene = Scene((gal, star), sky=2.0, target=0)
    full = scene.render(obs)
    parts = gal.render_into(obs) + star.render_into(obs) + 2.0
    np.testing.assert_allclose(full, parts, rtol=0, atol=1e-12 * full.max())
    star_img = star.render_into(obs)     # less than 300: its wings leave the 48-row image
    assert scene.add(star).render(obs).sum() == pytest.approx(full.sum() + star_img.sum(),
                                                              rel=1e-12)
    assert scene.replace_source(1, PointSource(0.0, 40.5, 30.2)).render(obs).sum() == \
        pytest.approx(full.sum() - star_img.sum(), rel=1e-12)
    assert gal.flux_target == pytest.approx(1000.0 / gal.mixture().flux_fraction)


def test_values_are_immutable_comparable_and_picklable():
    # GalSim's habit: pickle, copy, equality and hash round-trip for every value object
    gal = Galaxy(profile="ser", flux=1.0, x=1.0, y=2.0, re=3.0, q=0.5, angle=10.0, n=2.5)
    scene = Scene((gal, PointSource(2.0, 3.0, 4.0)), sky=0.5)
    for v in (gal, scene, PointSource(2.0, 3.0, 4.0)):
        for w in (pickle.loads(pickle.dumps(v)), copy.deepcopy(v)):
            assert w == v and hash(w) == hash(v)
        with pytest.raises(AttributeError):
            v.sky = 3.0 if isinstance(v, Scene) else None
            v.flux = 3.0
    assert gal != gal.__class__(**{**gal.__dict__, "n": 2.6})


def test_bad_sources_are_refused_with_their_reason():
    with pytest.raises(ValueError, match="axis ratios"):
        Galaxy(profile="exp", flux=1.0, x=0.0, y=0.0, re=1.0, q=1.5, angle=0.0)
    with pytest.raises(ProfileError, match="available M"):
        Galaxy(profile="exp", M=5, flux=1.0, x=0.0, y=0.0, re=1.0, q=0.5, angle=0.0)
    with pytest.raises(ValueError, match="target"):
        Scene((PointSource(1.0, 1.0, 1.0),), target=3)
    with pytest.raises(TypeError, match="PointSource and Galaxy"):
        Scene(("not a source",))


def test_observation_masks_what_cannot_be_used_and_is_read_only():
    img = np.arange(12.0).reshape(3, 4)
    img[0, 1] = np.nan
    ivar = np.ones((3, 4))
    ivar[2, 3] = 0.0
    ivar[1, 1] = np.inf
    obs = Observation.from_arrays(img, ivar=ivar, psf=Mixture.isotropic([2.0], [1.0]))
    assert obs.mask[0, 1] and obs.mask[2, 3] and obs.mask[1, 1] and obs.mask.sum() == 3
    assert obs.weights[obs.mask].sum() == 0.0 and obs.n_good == 9
    assert obs.image[0, 1] == 0.0 and img[0, 1] != img[0, 1]   # the caller's array untouched
    assert obs.psf.amps.sum() == pytest.approx(1.0)              # normalised to unit total
    with pytest.raises(ValueError):
        obs.image[0, 0] = 1.0
    assert obs.chi2(obs.image) == 0.0
    with pytest.raises(ImageReadError, match="ivar has shape"):
        Observation.from_arrays(np.zeros((3, 4)), ivar=np.ones((4, 3)))
    with pytest.raises(TypeError, match="Mixture"):
        Observation.from_arrays(np.zeros((3, 4)), psf="gauss")
