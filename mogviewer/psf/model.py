"""What a PSF becomes in mogviewer: its mixture, the stamp it came from, the fit and its quality.

Conventions are those of :mod:`mogviewer.psf`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..mixture import Mixture
from .quality import PsfQuality, _render

#: Target of the automatic choice of K: max |residual| / peak below this (1 %).
DEFAULT_TARGET = 0.01
#: Largest K tried by the automatic choice.
MAX_COMPONENTS = 6
#: Default largest fraction of non-finite pixels that is masked rather than refused.
MAX_BAD_FRACTION = 0.05
#: An off-centre warning is emitted when the stamp centroid is further than this (pixels) from
#: the geometric centre along x or y.
OFFCENTRE_TOLERANCE = 0.5
#: Lower bound (pixels) on the diagonal of each covariance's Cholesky factor in the fit: a
#: Gaussian narrower than this, sampled at pixel centres, only fits single-pixel noise.
MIN_SIGMA = 0.2
_JSON_FORMAT = "mogviewer-psf-mixture"

# ----------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class PsfFit:
    """Result of :func:`fit_psf`.

    Attributes
    ----------
    mixture : Mixture
        The fitted mixture in the stamp's pixel coordinates and flux units.
    quality : PsfQuality
        Residuals and summary figures.
    n_components : int
        K.
    converged : bool
        Whether the least-squares polish reported convergence.
    message : str
        The optimiser's message.
    """

    mixture: Mixture
    quality: PsfQuality
    n_components: int
    converged: bool
    message: str


@dataclass(frozen=True, eq=False)
class PsfModel:
    """A PSF ready for use: what :func:`read_psf` returns.

    Attributes
    ----------
    mixture : Mixture
        Centred on the reference centre and normalised to unit total (when it came from a stamp),
        or exactly as stored (when the file held a mixture).
    source : str
        What the file was: ``"image"``, ``"npy"``, ``"psfex"``, ``"tractor-header"``,
        ``"tractor-table"`` or ``"json"``.
    stamp : ndarray or None
        The stamp the mixture was fitted to, NaN where masked, on the mixture's flux scale: the
        stamp normalised to unit sum, then divided by the fitted mixture's total (a factor near
        1, stated in ``notes``), or None for a mixture file.
    centre : tuple of float or None
        Reference centre ``(x, y)`` of the stamp in its pixel coordinates; ``mixture`` is the
        fitted mixture shifted by ``-centre``.
    quality : PsfQuality or None
        Quality report of the mixture on the stamp (computed after normalisation).
    notes : tuple of str
        What was assumed or chosen (HDU, plane, centre, normalisation, K, ...), in order.
    trials : dict
        ``{K: max|res|/peak}`` of every K tried by the automatic choice (empty when K was given).
    """

    mixture: Mixture
    source: str
    stamp: np.ndarray | None = None
    centre: tuple | None = None
    quality: PsfQuality | None = None
    notes: tuple = ()
    trials: dict = field(default_factory=dict)

    @property
    def n_components(self):
        """Number of Gaussians K."""
        return len(self.mixture)

    def model_image(self):
        """The mixture evaluated on the stamp's pixel grid (None without a stamp)."""
        if self.stamp is None:
            return None
        return _render(self.mixture.shifted(*self.centre), self.stamp.shape)
