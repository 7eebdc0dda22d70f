"""The covariance's Jacobian, d(residual)/d(physical parameter), against central differences.

The reported errors come from ``(J^T W J)^-1`` with J in the *physical* parameters (flux, x, y,
re, q, angle in degrees, sky, n, bulge + disk), built by ``_Evaluator.physical_jacobian`` from
the renderer's derivatives and ``ellipse.shape_jacobian_physical``: a different chain from the
optimiser's Jacobian (tested in test_fitting.py), so it gets its own check (issue 13).
"""

import numpy as np
import pytest
from test_fitting import PSF3

from mogviewer.fitting import FitProblem, GalaxyParams
from mogviewer.fitting.parametrisation import _Param
from mogviewer.fitting.solver import _Evaluator
from mogviewer.render import render_model


def _problem(profile, M, *, profile2=None, sky="constant", n=None):
    truth = dict(flux=3000.0, x=30.6, y=33.2, re=5.0, q=0.6, angle=70.0, sky=2.0)
    img = render_model(truth, profile, M, PSF3, (64, 64), n=n)
    img = img + np.random.default_rng(3).normal(0.0, 1.0, img.shape)
    prob = FitProblem.from_arrays(img, sigma=np.ones(img.shape), psf=PSF3, profile=profile,
                                  M=M, n=n, sky=sky, profile2=profile2)
    extra = {}
    if profile2 is not None:
        extra = dict(flux2=800.0, re2=9.0, q2=0.8, angle2=40.0)
    if profile == "ser":
        extra["n"] = 2.3
    p = GalaxyParams(**{**truth, "flux": 2800.0, "re": 5.3, "q": 0.55, "angle": 73.0,
                        "sky": 1.5, **extra})
    return prob, p


@pytest.mark.parametrize("profile,M,profile2,sky,n", [
    ("exp", 6, None, "constant", None),
    ("luv", 8, None, "plane", None),
    ("ser", None, None, "constant", 2.0),
    ("ser", None, "exp", "constant", 2.0),
])
def test_physical_jacobian_matches_central_differences(profile, M, profile2, sky, n):
    # Central differences of the same residual function with steps of 1e-5 of each value (1e-3
    # px for x, y; 1e-3 deg for angles): truncation ~1e-10 and rounding ~1e-11 of a column's
    # scale, so 1e-5 of the scale leaves room while a wrong chain-rule factor (degrees vs
    # radians: 57x; a missing term) fails by far more.
    prob, p = _problem(profile, M, profile2=profile2, sky=sky, n=n)
    ev = _Evaluator(prob, _Param(prob, p))
    J = ev.physical_jacobian(p)
    assert J.shape == (ev.sel.size, len(prob.free))

    def resid(q):
        return ev.residuals(ev.par.to_z(q))

    for i, name in enumerate(prob.free):
        v = getattr(p, name)
        h = 1e-3 if name in ("x", "y") or name.startswith("angle") else 1e-5 * max(abs(v), 1.0)
        num = (resid(p.replace(**{name: v + h})) - resid(p.replace(**{name: v - h}))) / (2 * h)
        scale = np.abs(num).max()
        assert scale > 0, name
        assert np.abs(J[:, i] - num).max() <= 1e-5 * scale, (name, profile, profile2)
