"""PSF mixtures: read every PSF a user brings and turn it into a mixture of Gaussians.

The Hogg & Lang (2013) method needs the **pixel-convolved** PSF as a mixture of Gaussians
(:class:`mogviewer.mixture.Mixture`). Users bring a PSF image, a PSFEx file or a Tractor mixture;
:func:`read_psf` accepts all of them (dispatching on the file's *content*, never on its name) and
returns a :class:`PsfModel`: the mixture, the stamp it was fitted to, a quality report and the
notes of what was assumed.

Conventions
-----------
* Images are ``image[y, x]``; pixel centres sit at integer, 0-based coordinates ``(x, y)``.
* A PSF image is the pixel-convolved PSF sampled at pixel centres, so a mixture is compared with
  it by *evaluating* the Gaussians at pixel centres (no further pixel integration).
* A mixture returned by :func:`read_psf` is centred (its reference centre, by default the
  flux-weighted centroid, is at ``(0, 0)``) and normalised to unit total: ``sum(amps) = 1``;
  the same for every reader (image, .npy, PSFEx, Tractor table or header, JSON). For an image
  the centroid is the stamp's own (it does not move with K), and the stamp is kept for the
  exact-PSF mode (:class:`mogviewer.render.exact.ExactPsf`, which normalises it to unit sum,
  negative wings included, with the same origin).
* The automatic K matches the stamp's total, centroid and second-moment size (0.1 %, 0.01 px,
  0.1 %), not only its peak residual (:meth:`PsfQuality.badness`).
  Means are offsets ``(x, y)`` in pixels, covariances ``[[xx, xy], [xy, yy]]`` in pixels^2.
* :func:`fit_psf` works in the stamp's own pixel coordinates and on the stamp's own flux units; it
  neither centres nor normalises.

Error policy
------------
A file or array that cannot be a PSF raises :class:`~mogviewer.errors.PsfError` (a ``ValueError``)
whose message names the file and says what is wrong and what to do. A missing file raises the usual
``FileNotFoundError``. Something that works but deserves attention (an off-centre or even-sized
stamp, masked NaNs, a PSFEx position outside the fitted range, several candidate HDUs) emits a
:class:`~mogviewer.errors.PsfWarning` and is also recorded in :attr:`PsfModel.notes`.

Modules: :mod:`~mogviewer.psf.formats` (reading and writing every format),
:mod:`~mogviewer.psf.fit` (mixture fitted to a stamp), :mod:`~mogviewer.psf.quality` (how well
it fits), :mod:`~mogviewer.psf.model` (the :class:`PsfModel` a reader returns).
"""

from ..errors import PsfError, PsfWarning
from .fit import fit_psf, fit_psf_auto, fit_psf_sequence, prepare_stamp
from .formats import psfex_stamp, read_psf, write_psf
from .model import DEFAULT_TARGET, MAX_COMPONENTS, PsfFit, PsfModel
from .quality import PsfQuality, quality_report

__all__ = ["PsfError", "PsfWarning", "PsfQuality", "PsfFit", "PsfModel", "fit_psf",
           "fit_psf_auto", "fit_psf_sequence", "quality_report", "read_psf", "write_psf",
           "psfex_stamp", "prepare_stamp", "DEFAULT_TARGET", "MAX_COMPONENTS"]
