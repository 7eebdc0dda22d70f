"""The user's mask in the app: the pixels of a drawn box or ellipse, and DS9 region files
written from it and read into it (astropy ``regions``), apart from :mod:`.engine`, through
which its files are written. Nothing here imports Qt; the commands that use it are
:mod:`mogviewer.gui.scene_actions`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import engine


def box_mask(shape, x0, y0, x1, y1):
    """Pixels whose centres lie in the box with corners ``(x0, y0)``, ``(x1, y1)``."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    return (xx >= xa) & (xx <= xb) & (yy >= ya) & (yy <= yb)


def ellipse_mask(shape, x0, y0, x1, y1):
    """Pixels whose centres lie in the axis-aligned ellipse inscribed in the box."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a, b = max(abs(x1 - x0) / 2, 0.5), max(abs(y1 - y0) / 2, 0.5)
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0


def mask_regions(mask):
    """The masked pixels as DS9 regions (astropy ``regions``): one 1-pixel-high box per run of
    masked pixels in a row, so any mask (drawn or from detection) is written exactly and
    reads back to the same pixels."""
    from regions import PixCoord, RectanglePixelRegion, Regions
    out = []
    m = np.asarray(mask, bool)
    for y in np.flatnonzero(m.any(axis=1)):
        row = np.concatenate([[0], m[y].astype(np.int8), [0]])
        d = np.diff(row)
        for x0, x1 in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            # pixels x0 .. x1 - 1: centre (x0 + x1 - 1) / 2, width x1 - x0 (0-based centres)
            out.append(RectanglePixelRegion(PixCoord((x0 + x1 - 1) / 2.0, float(y)),
                                            width=float(x1 - x0), height=1.0))
    return Regions(out)


def write_mask_regions(path, mask, *, inputs=()):
    """Write the user's mask as a DS9 region file (image coordinates, 1-based as DS9 counts),
    atomically and never over an input."""
    text = mask_regions(mask).serialize(format="ds9")
    with engine.atomic_output(path, "mask regions", inputs=inputs) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def read_mask_regions(path, shape, *, wcs=None):
    """Pixels inside the regions of a DS9 region file (astropy ``regions``: box, circle,
    ellipse, polygon, ...; sky regions through the image's WCS), as a bool array of
    ``shape``; regions marked exclude (``-box(...)``) unmask. A pixel belongs to a region
    when its centre does. Raises ``ExportError`` (a file that is not a region file)."""
    from regions import Regions
    try:
        regs = Regions.read(str(path), format="ds9")
    except Exception as exc:  # noqa: BLE001 - any parse failure is "not a region file"
        raise engine.ExportError(f"{Path(str(path)).name}: not a readable DS9 region file "
                                  f"({exc})") from None
    out = np.zeros(shape, bool)
    used = 0
    for r in regs:
        if not hasattr(r, "to_mask"):
            continue
        if hasattr(r, "to_pixel") and not hasattr(r, "to_sky"):     # a sky region
            if wcs is None:
                continue
            r = r.to_pixel(wcs)
        try:
            m = r.to_mask(mode="center").to_image(shape)
        except Exception:  # noqa: BLE001 - a region outside the image or of no area
            continue
        if m is None:
            continue
        inside = m > 0
        include = r.meta.get("include", True) if getattr(r, "meta", None) else True
        if include:
            out |= inside
        else:
            out &= ~inside
        used += 1
    if used == 0:
        raise engine.ExportError(f"{Path(str(path)).name}: no region of the file lies on "
                                  "the image (image or sky regions with a WCS)")
    return out
