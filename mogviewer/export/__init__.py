"""Write fit results: CSV rows, GALFIT-style image blocks, DS9 regions and JSON model files.

Conventions carried by every export (and stated in each file)
-------------------------------------------------------------
* Arrays are ``image[y, x]``. ``x, y`` are 0-based pixel centres (the first pixel spans
  [-0.5, 0.5]); ``x_fits = x + 1``, ``y_fits = y + 1`` are the 1-based FITS/GALFIT/imfit/DS9
  coordinates of the same point.
* ``pa_img_deg``: major-axis angle in degrees counter-clockwise from +x, in [0, 180) (the DS9
  image-region angle). ``pa_galfit_deg``: GALFIT/imfit PA, counter-clockwise from +y,
  ``pa_img_deg - 90`` wrapped to (-90, 90]. ``pa_eofn_deg``: position angle east of north on the
  sky, in [0, 180), from the local Jacobian of the WCS at the galaxy centre (north is *not* assumed
  to be up; a flipped or rotated WCS is handled). For a WCS with north up and east left
  (``CD = [[-s, 0], [0, s]]``) ``pa_eofn_deg = pa_img_deg - 90`` (mod 180), i.e. the GALFIT PA.
* ``q = b/a`` in (0, 1]; ``ell = 1 - q``; ``e1, e2 = (1-q)/(1+q) (cos 2 pa_img, sin 2 pa_img)``
  in *image* axes.
* ``re_pix``: semi-major half-light radius of the *target* profile (pixels); ``re_circ_pix =
  re_pix sqrt(q)``; ``re_arcsec`` from the local WCS scale along the major axis (or the pixel
  scale when there is no WCS).
* ``flux``: total flux of the *target* profile (the untruncated law, as GALFIT and imfit report
  it), ``mag = zeropoint - 2.5 log10(flux)``; ``flux_mog``, ``mag_mog``: the fitted mixture's own
  total (``flux = flux_mog / flux_fraction``).
* ``<name>_err``: formal 1-sigma error in the unit of ``<name>`` from the covariance
  ``(J^T W J)^-1`` (scaled by ``sqrt(chi2_nu)`` when ``err_scaled`` is true); errors of derived
  quantities by linear propagation with the full covariance (correlations included), e.g.
  ``mag_err = 1.0857 flux_err / flux``. 0 for fixed parameters, NaN when undefined.

Error policy
------------
Every failure to write a file raises :class:`~mogviewer.errors.ExportError` (an ``OSError``) whose
message names the file and the problem. Writes are atomic: the content goes to a temporary file in
the target directory that is renamed over the target (``os.replace``) only when complete, so an
existing file is never truncated or half-written by a failure.

Modules: :mod:`~mogviewer.export.table` (rows and the CSV), :mod:`~mogviewer.export.columns`
(their names, units and descriptions), :mod:`~mogviewer.export.conventions` (angles, flags),
:mod:`~mogviewer.export.imgblock`, :mod:`~mogviewer.export.regions`,
:mod:`~mogviewer.export.model_json`, :mod:`~mogviewer.export.files` (atomic writes).
"""

from ..errors import ExportError, ModelFileError
from .columns import COLUMN_NAMES, COLUMNS, CONVENTIONS, Column
from .conventions import flag_names, local_jacobian, pa_east_of_north, pa_galfit
from .imgblock import IMGBLOCK_EXTENSIONS, write_imgblock
from .model_json import MODEL_FORMAT, SavedModel, read_model_json, write_model_json
from .regions import write_region
from .table import (
    columns_doc,
    columns_doc_path,
    failed_row,
    read_csv_columns,
    result_to_row,
    rows_to_text,
    write_csv,
)

__all__ = ["COLUMNS", "COLUMN_NAMES", "CONVENTIONS", "ExportError", "SavedModel",
           "result_to_row", "failed_row", "write_csv", "read_csv_columns", "write_imgblock",
           "write_region", "write_model_json", "read_model_json", "pa_galfit", "pa_east_of_north",
           "local_jacobian", "flag_names", "IMGBLOCK_EXTENSIONS", "MODEL_FORMAT",
           "ModelFileError", "rows_to_text", "Column", "columns_doc", "columns_doc_path"]
