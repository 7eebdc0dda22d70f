"""Catalogue mode as jobs: the sources of one cell of a large image, fitted from in-memory cutouts.

``mogviewer fit --image field.fits --weight weight.fits --psf field.psfex --catalog sources.fits``
is planned by :func:`plan_cutout_jobs`: the field is divided into square cells of ``psf_cell``
pixels; the sources in a cell make one :class:`CutoutJob` (split further when a cell holds more
than ``max_per_job`` sources, for load balance). A job is small and picklable (paths, positions,
options: no pixels), so any executor can run it, on this machine or a cluster sharing the files.

In the worker, :meth:`CutoutJob.run`

1. opens the field and weight memory-mapped (kept open per process for the next job), so a
   cutout reads only its own rows: an image larger than memory is fine;
2. evaluates the PSF once for the job, at the cell's sources' mean position (a PSFEx model;
   a PSF image is read once per process), and fits its Gaussian mixture once: the PSF is not
   refitted for every object (:func:`mogviewer.batch.load_psf` caches it per process);
3. for each source cuts ``image`` and ``weight`` as astropy's ``Cutout2D`` does (with its
   ``overlap_slices``; in memory, no temporary files), masks the other catalogue sources in
   the cutout (each pixel within ``neighbour_radius`` of a neighbour and nearer to it than to
   the target), fits the target from the catalogue position and writes its row.

Rows give positions in the **field's** pixels (``x``, ``y`` 0-based; ``x_fits``, ``y_fits``
1-based) and RA/Dec through the cutout's WCS; ``file`` is the field, ``object_id`` the
catalogue's id. A source whose cutout cannot be fitted is a failed row, never a crash.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .. import _warnings, export
from ..fitting import FitProblem, fit, initial_guess
from ..io import read_image
from ..io.image_data import ZEROPOINT_KEYS
from ..render.exact import ExactPsf
from .tasks import _short, _warnings_text, load_psf

__all__ = ["CutoutJob", "plan_cutout_jobs"]


#: pixels the fitted centre may move from the catalogue position, in x and in y (the
#: default of :class:`CutoutJob` and of ``mogviewer fit --centre-box``)
CENTRE_BOX = 3.0


@dataclasses.dataclass(frozen=True)
class CutoutJob:
    """The catalogue sources of one cell of a field, to be fitted from in-memory cutouts.

    Attributes
    ----------
    image, hdu : str, int or None
        The field (FITS) and its image HDU (None: the first 2-D image).
    weight, weight_hdu : str or None, int or None
        The inverse-variance weight map (same shape), or None to estimate the noise of each
        cutout from its background.
    sources : tuple of (id, x, y, size)
        Targets: id, 0-based field pixel position, size in pixels (or None).
    neighbours : tuple of (x, y, size)
        Every catalogue source that may fall in a target's cutout (the targets included).
    psf_position : (x, y) or None
        Where a PSFEx PSF is evaluated for every source of the job: the mean position of the
        cell's sources, 0-based field pixels.
    options : FitTask
        The fit options (profile, M, sky, PSF file and options, zeropoint, ...); its ``image``
        is the field.
    size, size_factor, min_size, max_size :
        Cutout side: ``size`` pixels, or ``size_factor`` times the source's size, clipped to
        ``[min_size, max_size]``.
    neighbour_radius : float
        Mask radius around a neighbour in pixels; with sizes, the larger of this and 1.5 times
        the neighbour's size.
    centre_box : float or None
        The fitted centre stays within this many pixels of the catalogue position in x and in
        y (bounds of the fit; a centre that ends on one is flagged ``AT_BOUND``); None leaves
        it free. A faint source beside a bright neighbour whose light reaches past the mask
        otherwise runs onto the neighbour and is fitted as a second copy of it (a DR9 point
        source moved 24 px onto the target, flagged only ERRORS_UNDERESTIMATED).
    """

    image: str
    sources: tuple
    neighbours: tuple
    options: object
    hdu: int | str | None = None
    weight: str | None = None
    weight_hdu: int | str | None = None
    psf_position: tuple | None = None
    size: int | None = None
    size_factor: float = 10.0
    min_size: int = 32
    max_size: int = 256
    neighbour_radius: float = 4.0
    centre_box: float | None = CENTRE_BOX

    @property
    def n_objects(self):
        return len(self.sources)

    def ids(self):
        return tuple(s[0] for s in self.sources)

    def without(self, done):
        """This job without the sources whose ids are in ``done`` (None if none is left)."""
        kept = tuple(s for s in self.sources if s[0] not in done)
        if not kept:
            return None
        return self if len(kept) == len(self.sources) else dataclasses.replace(self,
                                                                              sources=kept)

    def input_files(self):
        return tuple(p for p in (self.image, self.weight, self.options.psf) if p)

    def failed_rows(self, reason):
        return [self._failed(s, reason) for s in self.sources]

    def _failed(self, s, reason, caught=()):
        o = self.options
        row = export.failed_row(reason, file=str(self.image), profile=o.profile, M=o.M, n=o.n,
                                sky_model=o.sky, psf_source=o.psf or "none",
                                warnings_text=_warnings_text(caught))
        row.update(object_id=s[0], x=s[1], y=s[2], x_fits=s[1] + 1.0, y_fits=s[2] + 1.0)
        return row

    def cutout_size(self, s):
        n = self.size if self.size is not None else (
            self.size_factor * s[3] if s[3] else self.min_size)
        return int(min(max(n, self.min_size), self.max_size))

    # -----------------------------------------------------------------------------------------

    def run(self):
        """Every source's row, in order; never raises for bad data (failed rows instead)."""
        try:
            field = _open_field(self.image, self.hdu, "--image")
            weight = (None if self.weight is None else
                      _open_field(self.weight, self.weight_hdu, "--weight"))
            if weight is not None and weight.data.shape != field.data.shape:
                raise ValueError(f"--weight {self.weight}: shape {weight.data.shape} differs "
                                 f"from the image's {field.data.shape}")
        except Exception as exc:  # noqa: BLE001 - the batch policy: every failure is a row
            return self.failed_rows(f"reading the field: {_short(exc)}")
        o = self.options
        psf, psf_source = None, "none"
        psf_caught = []
        if o.psf:
            try:
                pos = None
                if self.psf_position is not None:
                    # PSFEx positions are SExtractor's 1-based X_IMAGE, Y_IMAGE
                    pos = (self.psf_position[0] + 1.0, self.psf_position[1] + 1.0)
                with _warnings.catch(record=True) as psf_caught:
                    warnings.simplefilter("always")
                    psf, psf_source = load_psf(o.psf, hdu=o.psf_hdu,
                                               n_components=o.psf_components,
                                               position=pos if _varies(o.psf) else None,
                                               centre=o.psf_centre)
                if pos is not None and _varies(o.psf):
                    psf_source += f" at ({pos[0]:.0f}, {pos[1]:.0f})"
                if psf.stamp is not None:
                    # the stamp's exact-PSF form and quality figures, once for the job (10 ms
                    # per problem otherwise); FitProblem takes it as it is
                    psf = ExactPsf.from_model(psf)
            except Exception as exc:  # noqa: BLE001
                return self.failed_rows(f"reading the PSF: {_short(exc)}")
        nb = np.array([(x, y, s if s else 0.0) for x, y, s in self.neighbours],
                      float).reshape(-1, 3)
        # the field's WCS, copied once for the job and moved to each cutout's origin
        job_wcs = (None if field.wcs is None else
                   (field.wcs.deepcopy(), np.array(field.wcs.wcs.crpix, float)))
        rows = []
        for s in self.sources:
            caught = []
            try:
                with _warnings.catch(record=True) as caught:
                    warnings.simplefilter("always")
                    rows.append(self._fit_one(s, field, weight, psf, psf_source, nb, job_wcs,
                                              caught))
            except Exception as exc:  # noqa: BLE001 - the batch policy: every failure is a row
                rows.append(self._failed(s, f"fitting: {_short(exc)}", caught))
        if psf_caught:   # the PSF's warnings (e.g. PSFEx extrapolated) belong to every row
            text = _warnings_text(psf_caught)
            for row in rows:
                row["warnings"] = " | ".join(t for t in (text, row.get("warnings")) if t)
        return rows

    def _fit_one(self, s, field, weight, psf, psf_source, nb, job_wcs, caught):
        from astropy.nddata.utils import overlap_slices

        o = self.options
        oid, x, y = s[0], s[1], s[2]
        n = self.cutout_size(s)
        # the pixels of astropy's Cutout2D(field, (x, y), (n, n), mode="trim"): its slices of
        # the field, without building the Cutout2D object (0.2-0.5 ms per source)
        sl, _ = overlap_slices(field.data.shape, (n, n), (y, x), mode="trim")
        img = np.asarray(field.data[sl], dtype=np.float64)
        y0, x0 = sl[0].start, sl[1].start
        ivar = None
        if weight is not None:
            ivar = np.asarray(weight.data[sl], dtype=np.float64)
        # the other sources: a pixel within reach of a neighbour and nearer to it than to the
        # target is masked
        cx, cy = x - x0, y - y0
        ny, nx = img.shape
        near = ((nb[:, 0] > x0 - self.max_size) & (nb[:, 0] < x0 + nx + self.max_size)
                & (nb[:, 1] > y0 - self.max_size) & (nb[:, 1] < y0 + ny + self.max_size)
                & ((nb[:, 0] - x) ** 2 + (nb[:, 1] - y) ** 2 > 0.25))
        mask = _neighbour_mask(img.shape, x0, y0, cx, cy, nb[near], self.neighbour_radius)
        data = read_image(img, noise=ivar, noise_kind="ivar", mask=mask,
                          zeropoint=o.zeropoint if o.zeropoint is not None else field.zeropoint,
                          gain=o.gain, pixel_scale=o.pixel_scale or field.pixel_scale)
        wcs = None
        if field.wcs is not None:
            # (a deepcopy per object cost 0.8 ms); used only while this row is made
            wcs, crpix = job_wcs
            wcs.wcs.crpix = crpix - np.array([x0, y0], float)
        # (the cutout's arrays shared, not copied a second time)
        data = data.replace(wcs=wcs, path=str(self.image), hdu=field.hdu,
                            noise_source=("weight map " + Path(self.weight).name
                                          if weight is not None else data.noise_source))
        profile = o.profile or "exp"
        sky = o.sky or "constant"
        b = self.centre_box
        problem = FitProblem.from_image_data(
            data, psf=psf, profile=profile, M=o.M, n=o.n, sky=sky, profile2=o.profile2,
            M2=o.M2, psf_mode=o.psf_mode,
            fixed=("n",) if o.fix_n and profile == "ser" else (),
            bounds=None if b is None else {"x": (cx - b, cx + b), "y": (cy - b, cy + b)})
        start = initial_guess(problem, centre=(cx, cy))
        result = fit(problem, start, max_nfev=o.max_nfev)
        reason = f"fit failed: {result.message}" if result.status == "failed" else ""
        row = export.result_to_row(result, data, problem=problem, psf_source=psf_source,
                                   file=str(self.image), scale_errors=o.scale_errors,
                                   reason=reason, warnings_text=_warnings_text(caught))
        # positions in the field's pixels
        for k, d in (("x", x0), ("y", y0), ("x_fits", x0), ("y_fits", y0)):
            if row.get(k) is not None:
                row[k] = row[k] + d
        row["object_id"] = oid
        return row


def _neighbour_mask(shape, x0, y0, cx, cy, close, radius, block=32):
    """The pixels of a cutout (origin ``x0, y0`` in the field, target at ``cx, cy`` in the
    cutout) within ``max(radius, 1.5 size)`` of a neighbour ``(x, y, size)`` of ``close``
    (field pixels) and nearer to it than to the target; neighbours taken ``block`` at a time
    along a third axis (the same arithmetic per pixel as one by one, in bounded memory)."""
    ny, nx = shape
    mask = np.zeros(shape, bool)
    if len(close) == 0:
        return mask
    yy, xx = np.ogrid[0:ny, 0:nx]       # broadcast: no full index grids
    d_t = (xx - cx) ** 2 + (yy - cy) ** 2
    for k in range(0, len(close), block):
        bx, by, bs = (c[:, None, None] for c in np.asarray(close[k:k + block], float).T)
        r = np.maximum(radius, 1.5 * bs)
        d_n = (xx - (bx - x0)) ** 2 + (yy - (by - y0)) ** 2
        mask |= ((d_n < r * r) & (d_n < d_t)).any(axis=0)
    return mask


_VARIES = {}


def _varies(psf_path):
    """True for a PSFEx file (evaluated per position); other PSFs are one stamp or mixture.
    Known per process by path, modification time and size (opening the file to look cost
    ~1.3 ms, twice per job)."""
    try:
        st = os.stat(psf_path)
        key = (os.path.realpath(psf_path), st.st_mtime_ns, st.st_size)
    except OSError:
        return _psfex_columns(psf_path)
    if key not in _VARIES:
        if len(_VARIES) > 16:
            _VARIES.clear()
        _VARIES[key] = _psfex_columns(psf_path)
    return _VARIES[key]


def _psfex_columns(psf_path):
    try:
        from astropy.io import fits
        with fits.open(psf_path, memmap=True) as h:
            return any(getattr(x, "columns", None) is not None and "PSF_MASK" in x.columns.names
                       for x in h[1:])
    except Exception:  # noqa: BLE001 - not FITS: .npy or JSON, never PSFEx
        return False


# ---------------------------------------------------------------------------------------------
# the field, opened once per process
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Field:
    data: object
    hdu: int
    wcs: object
    zeropoint: float | None
    pixel_scale: float | None
    hdul: object


_FIELDS = {}


def _open_field(path, hdu, what):
    """The field's memory-mapped pixels (and WCS, zeropoint, pixel scale), kept open for the
    next job of this process (keyed by path, HDU and modification time)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    st = os.stat(path)
    key = (os.path.realpath(path), hdu, st.st_mtime_ns, st.st_size)
    if key in _FIELDS:
        return _FIELDS[key]
    try:
        hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {path}: cannot be read as FITS ({exc})") from None
    if hdu is None:
        idx = next((i for i, x in enumerate(hdul) if x.is_image and x.header.get("NAXIS") == 2),
                   None)
    else:
        idx = hdu
    if idx is None:
        hdul.close()
        raise ValueError(f"{what} {path}: no 2-D image HDU")
    h = hdul[idx]
    wcs = None
    with _warnings.catch():
        warnings.simplefilter("ignore")
        try:
            if h.header.get("CTYPE1"):
                wcs = WCS(h.header).celestial
                if not wcs.has_celestial:
                    wcs = None
        except Exception:  # noqa: BLE001 - a broken WCS: no RA/Dec in the rows
            wcs = None
    scale = None
    if wcs is not None:
        from astropy.wcs.utils import proj_plane_pixel_scales
        scale = float(np.mean(proj_plane_pixel_scales(wcs))) * 3600.0
    zp = None
    # the image HDU's header, then the primary's (a DECam CCD image keeps MAGZERO in HDU 0:
    # the catalogue fit of the Tractor DR3 field wrote no magnitudes), with the keywords
    # read_image knows, in its order
    for hdr in (h.header, hdul[0].header) if h is not hdul[0] else (h.header,):
        for k in ZEROPOINT_KEYS + ("ZEROPOINT",):
            v = hdr.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                zp = float(v)
                break
        if zp is not None:
            break
    if len(_FIELDS) >= 4:
        close_fields()
    with _warnings.catch():
        # astropy falls back from a read-only shared map to a private one on some kernels and
        # says so on every worker; the pixels are read the same way either way
        warnings.filterwarnings("ignore", message="Could not memory map array")
        data = h.data
    field = _Field(data=data, hdu=idx if isinstance(idx, int) else None, wcs=wcs,
                   zeropoint=zp, pixel_scale=scale, hdul=hdul)
    _FIELDS[key] = field
    return field


def close_fields():
    """Close the fields this process keeps open (the end of a batch run in this process)."""
    for f in _FIELDS.values():
        f.hdul.close()
    _FIELDS.clear()


atexit.register(close_fields)   # a pool or Dask worker's fields, when it ends


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------

def plan_cutout_jobs(image, sources, options, *, hdu=None, weight=None, weight_hdu=None,
                     psf_cell=512, max_per_job=256, size=None, size_factor=10.0, min_size=32,
                     max_size=256, neighbour_radius=4.0, centre_box=CENTRE_BOX):
    """The :class:`CutoutJob` s of a catalogue: sources grouped by cells of ``psf_cell`` px
    (``size`` ... ``centre_box``: as :class:`CutoutJob` takes them).

    Parameters
    ----------
    image : str
        The field.
    sources : sequence of :class:`mogviewer.io.catalog.CatalogSource`
        0-based field pixel positions.
    options : FitTask
        Fit options shared by every source.
    psf_cell : int
        Side of the square cells (pixels): one PSF evaluation and mixture fit per cell.
    max_per_job : int
        A cell with more sources is split into equal jobs of at most this many (for load
        balance). Each job evaluates and fits the cell's PSF itself, unless its worker has
        already done it for the same cell: jobs of one cell run on different workers fit it
        once each (about 70 ms for a PSFEx stamp, the work of 10-15 objects), which is why
        cells are split only when large. Measured with 512 px cells of about 80 sources
        (bench_survey.py): splitting them at 64 cost the two-worker pool about 4 CPU-s more
        per 5000 objects than whole cells.

    Returns
    -------
    list of CutoutJob
        Cell by cell (row-major), sources in catalogue order within a cell.
    """
    if psf_cell < 1 or max_per_job < 1:
        raise ValueError("psf_cell and max_per_job must be positive")
    cells = {}
    for s in sources:
        key = (int(math.floor(s.y / psf_cell)), int(math.floor(s.x / psf_cell)))
        cells.setdefault(key, []).append(s)
    everyone = np.array([(s.x, s.y, s.size or 0.0) for s in sources], float).reshape(-1, 3)
    jobs = []
    for (cy, cx) in sorted(cells):
        members = cells[(cy, cx)]
        # neighbours that a cutout of this cell can reach
        lo_x, hi_x = cx * psf_cell - max_size, (cx + 1) * psf_cell + max_size
        lo_y, hi_y = cy * psf_cell - max_size, (cy + 1) * psf_cell + max_size
        sel = ((everyone[:, 0] >= lo_x) & (everyone[:, 0] < hi_x)
               & (everyone[:, 1] >= lo_y) & (everyone[:, 1] < hi_y))
        nbs = tuple((float(x), float(y), float(sz) if sz else None)
                    for x, y, sz in everyone[sel])
        # the PSF of the cell: at its sources' mean position (inside the field, unlike the
        # centre of a cell cut by the field's edge)
        centre = (float(np.mean([s.x for s in members])), float(np.mean([s.y for s in members])))
        parts = -(-len(members) // max_per_job)          # ceil: equal parts, none too big
        bounds = [round(k * len(members) / parts) for k in range(parts + 1)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            part = tuple((s.id, s.x, s.y, s.size) for s in members[a:b])
            jobs.append(CutoutJob(image=str(image), hdu=hdu, weight=weight,
                                  weight_hdu=weight_hdu, sources=part, neighbours=nbs,
                                  options=options, psf_position=centre, size=size,
                                  size_factor=size_factor, min_size=min_size,
                                  max_size=max_size, neighbour_radius=neighbour_radius,
                                  centre_box=centre_box))
    return jobs
