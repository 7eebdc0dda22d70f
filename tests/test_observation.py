"""Observation: the PSF forms it accepts (issue 18's exact-PSF mode per band) and wavelength."""

import warnings

import numpy as np
import pytest
from realdata import DATA
from test_fitting import PSF3

from mogviewer.errors import ImageReadError
from mogviewer.mixture import Mixture
from mogviewer.observation import Observation
from mogviewer.psf import PsfWarning, read_psf
from mogviewer.render.exact import ExactPsf


def test_psf_forms_and_modes():
    # a PsfModel from an image is used exactly by default (as the one-galaxy fit does), or as
    # its mixture on request; a mixture cannot be made exact; an ExactPsf passes through
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)
        model = read_psf(f"{DATA}/pysersic-decals-dr9/copsf_59.1067_-30.4848.fits", hdu=0,
                         n_components=3)
    img = np.zeros((20, 24))
    exact = Observation.from_arrays(img, psf=model)
    assert isinstance(exact.psf, ExactPsf) and exact.psf_mixture is exact.psf.mixture
    mix = Observation.from_arrays(img, psf=model, psf_mode="mixture")
    assert isinstance(mix.psf, Mixture) and mix.psf.total == pytest.approx(1.0, rel=1e-12)
    assert Observation.from_arrays(img, psf=exact.psf).psf is exact.psf
    assert Observation.from_arrays(img, psf=PSF3).psf_mixture.total == pytest.approx(1.0)
    assert Observation.from_arrays(img).psf is None
    with pytest.raises(ValueError, match="needs a PSF image"):
        Observation.from_arrays(img, psf=PSF3, psf_mode="exact")
    with pytest.raises(ValueError, match="psf_mode must be"):
        Observation.from_arrays(img, psf=PSF3, psf_mode="fast")
    with pytest.raises(TypeError, match="psf must be"):
        Observation.from_arrays(img, psf=np.ones((5, 5)))


def test_wavelength_is_a_positive_number():
    img = np.zeros((8, 8))
    assert Observation.from_arrays(img, wavelength=641.5).wavelength == 641.5
    assert Observation.from_arrays(img).wavelength is None
    for bad in (-1.0, 0.0, float("nan")):
        with pytest.raises(ImageReadError, match="wavelength must be a positive number"):
            Observation.from_arrays(img, wavelength=bad)
