"""Detection in crowded fields (capped, brightest first, with a message) and what it accepts."""

import warnings

import numpy as np
import pytest
from realdata import DATA

from mogviewer.detect import detect_sources, scene_from_detections
from mogviewer.errors import MogviewerError
from mogviewer.mixture import Mixture
from mogviewer.observation import Observation
from mogviewer.psf import PsfWarning, read_psf
from mogviewer.scene import PointSource, Scene

PSF = Mixture([1.0], [[0.0, 0.0]], [np.eye(2) * 1.2 ** 2])


def _field(n, size, seed=2):
    rng = np.random.default_rng(seed)
    flux = 10 ** rng.uniform(1.5, 3.5, n)
    xy = rng.uniform(3, size - 4, (n, 2))
    stars = [PointSource(float(f), float(x), float(y)) for f, (x, y) in zip(flux, xy)]
    img = Scene(tuple(stars)).render(Observation.from_arrays(np.zeros((size, size)), psf=PSF))
    return img + rng.normal(0, 1, (size, size)), stars


def test_crowded_field_is_capped_brightest_first_with_a_message():
    # 150 stars on 160 px (far more than 30 segments): with max_sources =
    # 30 the 30 brightest are kept, the rest dropped with a message and masked by
    # scene_from_detections (never a crash, never an exception). The three brightest stars
    # (fluxes 3000+, isolated enough to be their own segments) must be among those kept.
    img, stars = _field(150, 160)
    det = detect_sources(img, ivar=np.ones(img.shape), psf=PSF, max_sources=30)
    assert len(det) == 30 and det.dropped
    assert any("30 brightest kept" in m for m in det.messages)
    fluxes = [d.flux for d in det.sources]
    assert fluxes == sorted(fluxes, reverse=True)
    for s in sorted(stars, key=lambda s: -s.flux)[:3]:
        assert min(np.hypot(d.x - s.x, d.y - s.y) for d in det.sources) < 1.0
    scene, mask, ids = scene_from_detections(det, psf=PSF, max_fitted=5)
    assert len(scene) == 6
    dropped = np.isin(det.segmap, det.dropped)
    assert dropped.any() and mask[dropped].all()
    # the kept ones other than the scene's are masked too; the scene's own are not
    assert not mask[np.isin(det.segmap, ids)].any()
    with pytest.raises(MogviewerError, match="max_sources must be"):
        detect_sources(img, max_sources=0)
    with pytest.raises(MogviewerError, match="2-D image"):
        detect_sources(img[0])


def test_psf_model_and_exact_psf_detect_as_their_mixture():
    # a PsfModel (read_psf) or the ExactPsf an Observation makes of it is accepted wherever a
    # mixture is, and detection only uses the mixture: the same detections
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)
        model = read_psf(f"{DATA}/pysersic-decals-dr9/copsf_59.1067_-30.4848.fits", hdu=1,
                         n_components=3)
    img, _ = _field(30, 96, seed=5)
    obs = Observation.from_arrays(img, psf=model)
    assert type(obs.psf).__name__ == "ExactPsf" and obs.psf_mixture is not None
    a = detect_sources(img, psf=model.mixture)
    for psf in (model, obs.psf):
        b = detect_sources(img, psf=psf)
        # the same sources and kinds; positions to rounding (the ExactPsf's mixture is the
        # model's, normalised again: its amplitudes can differ in the last bit)
        assert [d.kind for d in a.sources] == [d.kind for d in b.sources]
        np.testing.assert_allclose([(d.x, d.y) for d in b.sources],
                                   [(d.x, d.y) for d in a.sources], rtol=0, atol=1e-9)
    sa, _, _ = scene_from_detections(a, psf=model.mixture)
    sb, _, _ = scene_from_detections(a, psf=model)
    assert sa == sb
