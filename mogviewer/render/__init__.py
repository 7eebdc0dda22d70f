"""Evaluate mixtures of Gaussians at pixel centres; model images with analytic derivatives.

Conventions
-----------
* Output images are ``image[y, x]``; pixel ``(x, y)`` has its centre at integer 0-based coordinates.
* The PSF is the *pixel-convolved* PSF (Hogg & Lang 2013, section 2), so the model image is the
  galaxy convolved with it **evaluated** at pixel centres: no further pixel integration. ``psf``
  is a :class:`~mogviewer.mixture.Mixture` (used as it is), an
  :class:`~mogviewer.render.exact.ExactPsf` (a stamp used exactly: its mixture's Gaussians plus
  the residual by FFT with the galaxy's analytic transform, every derivative included), or
  ``None``: no PSF, and then the pixel is the PSF, so the model is integrated over the pixel
  (flux conserved at any sub-pixel centre; see :mod:`mogviewer.render.exact`).
* Each Gaussian is cut where it drops below ``exp(-36)`` (chi^2 > 72) of its peak, i.e. beyond
  8.5 sigma; the omitted flux is below 2.3e-16 of the component's peak per pixel.

Two backends give identical results (to ~1e-13 of the peak): ``backend="numba"`` (default), the
compiled kernels of :mod:`mogviewer.render.kernels`, and ``backend="numpy"``, the plain reference
of :mod:`mogviewer.render.reference` that specifies them.

Derivatives
-----------
:func:`render_galaxy` returns, in the same pass as the image, derivatives with respect to the
galaxy centre ``(x, y)`` and the three entries ``(Sxx, Sxy, Syy)`` of the shape matrix ``S``
(see :mod:`mogviewer.ellipse`). For a component ``G = a N(p | mu, Sigma)`` with
``Sigma = v S + V_psf`` and ``u = Sigma^{-1} (p - mu)``:

* ``dG/dmu = G u``,
* ``dG/dS_xx = v G (u_x^2 - P_xx) / 2``, ``dG/dS_yy = v G (u_y^2 - P_yy) / 2``,
  ``dG/dS_xy = v G (u_x u_y - P_xy)`` (``S_xy`` is the shared off-diagonal entry),

with ``P = Sigma^{-1}``. :func:`render_model` chains these to the people's parameters.
"""

from .api import (
    DERIV_NAMES,
    PARAM_NAMES,
    galaxy_mixture,
    render,
    render_galaxy,
    render_galaxy_dn,
    render_model,
)
from .reference import CUT_EXPONENT
from .status import compile_status, kernels_ready
from .warm import warmup

__all__ = ["render", "render_galaxy", "render_galaxy_dn", "render_model", "galaxy_mixture",
           "warmup", "compile_status", "kernels_ready", "CUT_EXPONENT", "PARAM_NAMES",
           "DERIV_NAMES"]
