"""Fit one galaxy: flux, centre, ellipse and sky by least squares with exact derivatives.

Conventions (as everywhere in mogviewer)
----------------------------------------
* ``image[y, x]``; ``x, y`` are 0-based pixel centres (add 1 for FITS/GALFIT/imfit coordinates).
* ``re``: semi-major half-light radius of the *target* profile (pixels); ``q = b/a`` in (0, 1];
  ``angle``: degrees counter-clockwise from +x, in [0, 180) (GALFIT/imfit PA = angle - 90).
* ``flux``: total flux of the model mixture in image units; :attr:`FitResult.flux_target` is the
  target (untruncated) profile's total, ``flux / flux_fraction``.
* ``sky``: constant background per pixel; with ``sky='plane'`` also ``sky_dx``, ``sky_dy``, its
  gradient per pixel about the image centre.

The model is ``render_galaxy(...) + sky`` (see :mod:`mogviewer.render`), compared to the data
through per-pixel weights ``w = 1/sigma^2`` (zero for masked, NaN or infinite pixels):
``chi^2 = sum w (data - model)^2``. The optimiser (Levenberg-Marquardt on the normal equations
the renderer accumulates, :mod:`~mogviewer.fitting.lm`; ``scipy.optimize.least_squares`` with
``solver="scipy"``) works in an unconstrained vector (``ln r_circ, eta1, eta2`` for the ellipse,
see :mod:`mogviewer.ellipse`), so it cannot leave the valid region; physical values are
reported.

Errors policy
-------------
Problems with the *input* (shapes, no usable pixels, invalid start) raise
:class:`~mogviewer.errors.FitError` (a ``ValueError``) before any fitting; what happens *during* a
fit (hit a bound, singular covariance, no convergence, cancelled) never raises: it is reported in
:attr:`FitResult.flags` and :attr:`FitResult.status`.

Modules
-------
* :mod:`~mogviewer.fitting.problem`: what is fitted (:class:`FitProblem`);
* :mod:`~mogviewer.fitting.params`: the people's parameters (:class:`GalaxyParams`);
* :mod:`~mogviewer.fitting.start`: the start from the image (:func:`initial_guess`);
* :mod:`~mogviewer.fitting.parametrisation`: the optimiser's unconstrained vector;
* :mod:`~mogviewer.fitting.solver`: :func:`fit`; :mod:`~mogviewer.fitting.lm`: its default
  driver; :mod:`~mogviewer.fitting.result`:
  :class:`FitResult`; :mod:`~mogviewer.fitting.flags`: :class:`FitFlags`.
"""

from ..errors import FitError
from .flags import FitFlags
from .params import PARAM_UNITS, GalaxyParams
from .problem import FitProblem, model_image
from .result import FitProgress, FitResult
from .solver import fit
from .start import initial_guess

__all__ = ["GalaxyParams", "FitProblem", "FitProgress", "FitResult", "FitFlags", "FitError",
           "initial_guess", "fit", "model_image", "PARAM_UNITS"]
