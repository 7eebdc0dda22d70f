"""Catalogue mode: sources from a table, cutouts made in memory from a large image.

``mogviewer fit --image field.fits --weight weight.fits --psf field.psfex --catalog
sources.fits``: each catalogue row becomes a cutout of the field (no temporary files), centred
on the source, with the field's weights and the PSF evaluated at the source's position; the
other catalogue sources inside the cutout are its neighbours.

* Positions: ``ra``/``dec`` columns (degrees; any case, or ``alpha_j2000``/``delta_j2000``)
  through the image's WCS, or ``x``/``y`` columns (0-based pixels; ``x_image``/``y_image``,
  SExtractor's 1-based, are converted).
* Cutout size: ``size`` (pixels) if given, else from a size column (``size_column``, e.g. a
  half-light radius in pixels times ``size_factor``), clipped to ``[min_size, max_size]``.
* The image is opened memory-mapped: a cutout reads only its own rows, so an image larger than
  memory is fine (astropy's ``Cutout2D`` on the memory-mapped array copies just the cutout).

Conventions: ``image[y, x]``, 0-based pixel centres; a cutout's ``origin`` is the full image's
pixel ``(x0, y0)`` of the cutout's pixel (0, 0): ``x_full = x_cutout + x0``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, UserError

__all__ = ["CatalogSource", "Cutout", "read_catalog", "make_cutouts"]

_RA = ("ra", "alpha_j2000", "ra_deg", "raj2000")
_DEC = ("dec", "delta_j2000", "dec_deg", "dej2000")
_X0 = ("x",)
_Y0 = ("y",)
_X1 = ("x_image", "xwin_image")     # SExtractor: 1-based
_Y1 = ("y_image", "ywin_image")
_ID = ("id", "objid", "number", "object_id", "source_id")


@dataclasses.dataclass(frozen=True)
class CatalogSource:
    """One catalogue row: its id, its 0-based pixel position in the field, its size (pixels)."""

    id: str
    x: float
    y: float
    size: float | None


@dataclasses.dataclass(frozen=True, eq=False)
class Cutout:
    """A cutout made in memory: arrays, where it lies in the field, the sources inside."""

    source: CatalogSource
    image: np.ndarray
    ivar: np.ndarray
    origin: tuple
    wcs: object | None
    neighbours: tuple

    @property
    def centre(self):
        """The source's position in the cutout's own pixels."""
        return self.source.x - self.origin[0], self.source.y - self.origin[1]


def _column(table, names):
    low = {c.lower(): c for c in table.colnames}
    for n in names:
        if n in low:
            return low[n]
    return None


def read_catalog(path, *, wcs=None, size_column=None):
    """The sources of a catalogue table as :class:`CatalogSource` (0-based field pixels).

    RA/Dec columns need ``wcs`` (the field's celestial WCS); x/y columns do not. A row
    without a finite position is returned with NaN ``x``, ``y`` (the caller leaves it out and
    names it); a table with no rows is refused.
    """
    from astropy.table import Table

    path = Path(path)
    try:
        table = Table.read(path)
    except Exception as exc:   # noqa: BLE001 - astropy raises many kinds for a bad table
        raise UserError(f"--catalog {path}: cannot be read as a table ({exc})") from None
    if len(table) == 0:
        raise UserError(f"--catalog {path}: the table has no rows: nothing to fit")
    ra, dec = _column(table, _RA), _column(table, _DEC)
    x0, y0 = _column(table, _X0), _column(table, _Y0)
    x1, y1 = _column(table, _X1), _column(table, _Y1)
    if ra and dec:
        if wcs is None:
            raise UserError(f"--catalog {path}: RA/Dec columns need an image with a celestial "
                            "WCS; this image has none (give x/y columns instead)")
        xs, ys = wcs.all_world2pix(np.asarray(table[ra], float), np.asarray(table[dec], float),
                                   0)
    elif x0 and y0:
        xs, ys = np.asarray(table[x0], float), np.asarray(table[y0], float)
    elif x1 and y1:
        xs, ys = np.asarray(table[x1], float) - 1.0, np.asarray(table[y1], float) - 1.0
    else:
        raise UserError(f"--catalog {path}: no position columns (ra/dec, x/y or "
                        f"x_image/y_image); columns: {', '.join(table.colnames)}")
    idc = _column(table, _ID)
    sizes = None
    if size_column is not None:
        sc = _column(table, (size_column.lower(),))
        if sc is None:
            names = list(table.colnames)
            listed = ", ".join(names[:40]) + (f", ... ({len(names)} in all)"
                                              if len(names) > 40 else "")
            raise UserError(f"--catalog {path}: no size column {size_column!r}; its columns: "
                            f"{listed}")
        sizes = np.asarray(table[sc], float)
    out = []
    for i in range(len(table)):
        # a row without a finite position is kept with it (NaN): the caller leaves it out,
        # with the other sources that do not lie on the image, and says which (one bad row
        # stopped the whole run)
        out.append(CatalogSource(id=str(table[idc][i]) if idc else str(i + 1), x=float(xs[i]),
                                 y=float(ys[i]),
                                 size=None if sizes is None else float(sizes[i])))
    return out


def make_cutouts(image_path, sources, *, weight_path=None, hdu=None, weight_hdu=None, size=None,
                 size_factor=10.0, min_size=32, max_size=512):
    """Yield a :class:`Cutout` per source, reading the field memory-mapped.

    The cutout is ``size`` pixels square (or ``size_factor`` times the source's size, clipped
    to ``[min_size, max_size]``), centred on the source's pixel, trimmed at the field's edges.
    ``ivar`` is the weight map's cutout (inverse variance), or unit weights without one;
    non-finite pixels get zero weight.
    """
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    def _open(path, h, what):
        try:
            hdul = fits.open(path, memmap=True)
        except (OSError, ValueError) as exc:
            raise ImageReadError(f"{what} {path}: cannot be read as FITS ({exc})") from None
        idx = h if h is not None else next(
            (i for i, x in enumerate(hdul) if x.is_image and x.data is not None
             and x.data.ndim == 2), None)
        if idx is None:
            raise ImageReadError(f"{what} {path}: no 2-D image HDU")
        return hdul, hdul[idx]

    hdul, im = _open(image_path, hdu, "--image")
    whdul = wim = None
    if weight_path is not None:
        whdul, wim = _open(weight_path, weight_hdu, "--weight")
        if wim.data.shape != im.data.shape:
            raise ImageReadError(f"--weight {weight_path}: shape {wim.data.shape} differs from "
                                 f"the image's {im.data.shape}")
    try:
        wcs = WCS(im.header).celestial if im.header.get("CTYPE1") else None
    except Exception:   # noqa: BLE001 - a broken WCS: positions must then be pixels
        wcs = None
    pos = np.array([(s.x, s.y) for s in sources]) if sources else np.zeros((0, 2))
    try:
        for s in sources:
            n = size if size is not None else (size_factor * s.size if s.size else min_size)
            n = int(min(max(n, min_size), max_size))
            c = Cutout2D(im.data, (s.x, s.y), (n, n), wcs=wcs, mode="trim", copy=True)
            img = np.asarray(c.data, dtype=np.float64)
            if wim is not None:
                w = np.asarray(Cutout2D(wim.data, (s.x, s.y), (n, n), mode="trim",
                                        copy=True).data, dtype=np.float64)
            else:
                w = np.ones(img.shape)
            bad = ~np.isfinite(img) | ~np.isfinite(w) | (w < 0)
            img[bad] = 0.0
            w[bad] = 0.0
            x0, y0 = c.origin_original
            inside = ((pos[:, 0] >= x0 - 0.5) & (pos[:, 0] < x0 + img.shape[1] - 0.5)
                      & (pos[:, 1] >= y0 - 0.5) & (pos[:, 1] < y0 + img.shape[0] - 0.5))
            nb = tuple(o for o, k in zip(sources, inside) if k and o is not s)
            yield Cutout(source=s, image=img, ivar=w, origin=(int(x0), int(y0)),
                         wcs=c.wcs if wcs is not None else None, neighbours=nb)
    finally:
        hdul.close()
        if whdul is not None:
            whdul.close()
