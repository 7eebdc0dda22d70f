"""Catalogue mode: positions through the WCS, in-memory cutouts of a memory-mapped field."""

import numpy as np
import pytest
from astropy.io import fits

from mogviewer.errors import UserError
from mogviewer.io.catalog import make_cutouts, read_catalog

DR3 = "tests/data/real/tractor-decals-dr3"


def _wcs():
    from astropy.wcs import WCS
    with fits.open(f"{DR3}/decam-520206-S16-image-sub.fits") as h:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")    # the TPV header's astropy warnings
            return WCS(h[1].header).celestial


def test_dr3_catalogue_positions_through_the_wcs():
    # PROVENANCE.md s1: the DR3 catalogue's DEV source at (29.27, 49.12) and SIMP at
    # (37.89, 16.73), 0-based pixels of this sub-image from its header WCS (TPV)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = read_catalog(f"{DR3}/tractor-1816p325-sub.fits", wcs=_wcs())
    assert [s.id for s in src] == ["667", "668"]
    assert (src[0].x, src[0].y) == pytest.approx((29.27, 49.12), abs=0.01)
    assert (src[1].x, src[1].y) == pytest.approx((37.89, 16.73), abs=0.01)
    with pytest.raises(UserError, match="need an image with a celestial WCS"):
        read_catalog(f"{DR3}/tractor-1816p325-sub.fits")


def test_cutouts_are_the_field_pixels_and_know_their_neighbours(tmp_path):
    # a 600 x 500 field written to disk; cutouts must equal the field's pixels at their origin
    rng = np.random.default_rng(0)
    field = rng.normal(size=(500, 600)).astype(np.float32)
    weight = np.full(field.shape, 4.0, np.float32)
    weight[100, 100] = np.nan
    fits.PrimaryHDU(field).writeto(tmp_path / "f.fits")
    fits.PrimaryHDU(weight).writeto(tmp_path / "w.fits")
    cat = tmp_path / "c.csv"
    cat.write_text("id,x_image,y_image,r\n1,101,101,3\n2,111,105,2\n3,590,10,40\n")
    src = read_catalog(cat, size_column="r")
    assert (src[0].x, src[0].y) == (100.0, 100.0)            # SExtractor's 1-based -> 0-based
    cuts = list(make_cutouts(tmp_path / "f.fits", src, weight_path=tmp_path / "w.fits",
                             size_factor=10, min_size=32, max_size=64))
    a, b, c = cuts
    assert a.image.shape == (32, 32)                           # 10 x 3 px -> at least 32
    x0, y0 = a.origin
    expected = field[y0:y0 + 32, x0:x0 + 32].astype(float)
    expected[100 - y0, 100 - x0] = 0.0                         # its weight is NaN: no use
    np.testing.assert_array_equal(a.image, expected)
    assert a.centre == pytest.approx((100 - x0, 100 - y0))
    assert a.ivar[100 - y0, 100 - x0] == 0.0 and a.ivar[0, 0] == 4.0     # NaN weight -> 0
    assert [n.id for n in a.neighbours] == ["2"] and [n.id for n in b.neighbours] == ["1"]
    assert c.image.shape[0] <= 64 and c.image.shape[1] < 64   # trimmed at the field's edge
    assert c.neighbours == ()
