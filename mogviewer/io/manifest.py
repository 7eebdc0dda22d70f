"""Manifests: one row per object, each with its own image, noise, mask, PSF and options.

A manifest is any table astropy reads (CSV, ECSV, FITS): ``mogviewer fit --manifest
objects.csv``. Its columns are :class:`~mogviewer.batch.FitTask` fields (``image``, ``noise``,
``noise_kind``, ``mask``, ``segmap``, ``psf``, ``profile``, ``M``, ``n``, ``band``, ``hdu``,
``zeropoint``, ...), plus:

* ``id`` (or ``object_id``): carried into the output row as ``object_id``; default the row
  number (1-based, as a spreadsheet shows it);
* ``x``, ``y``: the target's centre, 0-based pixels (``x_fits``, ``y_fits``: 1-based);

Relative paths are resolved against the manifest's directory, so a manifest travels with its
files. Empty cells (or masked values) mean "use the command line's value". A column that is
not a field of a task, a missing ``image`` column, or an unreadable value raises
:class:`~mogviewer.errors.UserError` naming the row and column.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["read_manifest", "PATH_COLUMNS"]

#: Columns holding file names (resolved against the manifest's directory).
PATH_COLUMNS = ("image", "noise", "mask", "segmap", "psf", "start")
_ID_COLUMNS = ("id", "object_id")
_CENTRE = {"x": 0, "y": 1, "x_fits": 0, "y_fits": 1}


def _empty(v):
    if v is None or v is np.ma.masked:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    try:
        return isinstance(v, float | np.floating) and math.isnan(v)
    except TypeError:
        return False


def _value(v):
    """A table cell as a plain Python value."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    return v


def read_manifest(path, *, fields):
    """The rows of a manifest as options: ``[(object_id, {option: value}), ...]``.

    Parameters
    ----------
    path : str or Path
        The table (format from its extension; ``.csv`` as CSV, ``.ecsv`` and ``.fits`` as
        astropy reads them).
    fields : collection of str
        The option names a cell may set (:class:`~mogviewer.batch.FitTask`'s fields);
        ``centre`` is set from ``x``/``y``. Empty cells are left out, so the caller's defaults
        apply.
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--manifest {path}: no such file")
    try:
        table = Table.read(path, format="ascii.csv" if path.suffix.lower() == ".csv" else None)
    except Exception as exc:   # noqa: BLE001 - astropy raises many kinds for a bad table
        raise UserError(f"--manifest {path}: cannot be read as a table ({exc})") from None
    fields = set(fields)
    cols = list(table.colnames)
    if "image" not in cols:
        raise UserError(f"--manifest {path}: no 'image' column (columns: {', '.join(cols)})")
    unknown = [c for c in cols if c not in fields and c not in _ID_COLUMNS and c not in _CENTRE]
    if unknown:
        raise UserError(f"--manifest {path}: unknown column(s) {', '.join(unknown)}; a column "
                        f"is a fit option ({', '.join(sorted(fields))}), id, x or y")
    base = path.resolve().parent
    out = []
    ids = set()
    for r, row in enumerate(table, start=1):
        where = f"--manifest {path.name} row {r}"
        kw = {}
        centre = [None, None]
        one_based = False
        object_id = str(r)
        for c in cols:
            v = row[c]
            if _empty(v):
                continue
            v = _value(v)
            if c in _ID_COLUMNS:
                object_id = str(v)
            elif c in _CENTRE:
                try:
                    centre[_CENTRE[c]] = float(v)
                except (TypeError, ValueError):
                    raise UserError(f"{where}: {c} = {v!r} is not a number") from None
                one_based = one_based or c.endswith("_fits")
            elif c in PATH_COLUMNS:
                p = Path(str(v)).expanduser()
                kw[c] = str(p if p.is_absolute() else base / p)
            else:
                kw[c] = v
        if object_id in ids:
            raise UserError(f"{where}: id {object_id!r} repeats an earlier row's")
        ids.add(object_id)
        if "image" not in kw:
            raise UserError(f"{where}: the image cell is empty")
        if (centre[0] is None) != (centre[1] is None):
            raise UserError(f"{where}: give both x and y (or neither)")
        if centre[0] is not None:
            if not all(math.isfinite(c) for c in centre):
                raise UserError(f"{where}: the centre must be finite, got {tuple(centre)}")
            kw["centre"] = tuple(c - 1.0 if one_based else c for c in centre)
        for k in ("M", "segment_id", "psf_components", "max_nfev"):
            if k in kw:
                try:
                    kw[k] = int(kw[k])
                except (TypeError, ValueError):
                    raise UserError(f"{where}: {k} = {kw[k]!r} is not an integer") from None
        out.append((object_id, kw))
    if not out:
        raise UserError(f"--manifest {path}: the table has no rows")
    return out
