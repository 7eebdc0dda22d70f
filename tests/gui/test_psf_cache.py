"""The app's PSF models kept on disk between sessions (mogviewer.gui.psf_cache): a reopened
file (or a copy of it) is not fitted again, a changed file or option is, and a cache that
cannot be used costs a refit, never an error."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mogviewer.gui import engine, psf_cache

PSF = Path(__file__).parents[2] / "sample_data" / "ic3478" / "psf_moffat_51.fits"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("MOGVIEWER_CACHE_DIR", str(d))
    monkeypatch.setattr(engine, "_psf_cache", {})      # the process's memo: empty
    return d / "psf"


def fits_counted(monkeypatch):
    calls = []
    real = engine.mpsf.read_psf

    def counted(*a, **k):
        calls.append(a)
        return real(*a, **k)
    monkeypatch.setattr(engine.mpsf, "read_psf", counted)
    return calls


def test_a_copy_of_the_file_is_not_fitted_again(cache, tmp_path, monkeypatch):
    calls = fits_counted(monkeypatch)
    a = engine.read_psf(PSF, n_components=2)
    assert len(calls) == 1 and len(list(cache.glob("*.pickle"))) == 1
    monkeypatch.setattr(engine, "_psf_cache", {})      # a new session
    copy = tmp_path / "elsewhere.fits"
    shutil.copyfile(PSF, copy)
    b = engine.read_psf(copy, n_components=2)
    assert len(calls) == 1                               # from the disk, not fitted
    np.testing.assert_array_equal(b.mixture.amps, a.mixture.amps)
    np.testing.assert_array_equal(b.stamp, a.stamp)
    # another K is another entry
    engine.read_psf(copy, n_components=1)
    assert len(calls) == 2


def test_a_changed_file_is_fitted_again(cache, tmp_path, monkeypatch):
    calls = fits_counted(monkeypatch)
    f = tmp_path / "psf.fits"
    shutil.copyfile(PSF, f)
    a = engine.read_psf(f, n_components=1)
    from astropy.io import fits
    with fits.open(f, mode="update") as h:
        h[0].data = h[0].data ** 1.2                    # the same size, a narrower PSF
    monkeypatch.setattr(engine, "_psf_cache", {})
    b = engine.read_psf(f, n_components=1)
    assert len(calls) == 2
    # the model is the new stamp's, not the first file's: a narrower Gaussian
    assert np.asarray(b.mixture.covs)[0, 0, 0] < 0.95 * np.asarray(a.mixture.covs)[0, 0, 0]


def test_an_unwritable_or_damaged_cache_costs_a_refit_not_an_error(cache, monkeypatch):
    calls = fits_counted(monkeypatch)
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the directory should be")
    m = engine.read_psf(PSF, n_components=1)            # cannot store: fitted, no error
    assert m.n_components == 1 and len(calls) == 1
    cache.unlink()
    monkeypatch.setattr(engine, "_psf_cache", {})
    engine.read_psf(PSF, n_components=1)                # stored this time
    (entry,) = cache.glob("*.pickle")
    entry.write_bytes(b"\x80\x04 not a pickle")
    monkeypatch.setattr(engine, "_psf_cache", {})
    m = engine.read_psf(PSF, n_components=1)
    assert m.n_components == 1 and len(calls) == 3
    assert not [f for f in os.listdir(cache) if f.startswith(".tmp-")]


def test_entries_beyond_the_limit_are_removed_oldest_first(cache, monkeypatch):
    monkeypatch.setattr(psf_cache, "MAX_ENTRIES", 2)
    model = engine.read_psf(PSF, n_components=1)
    for f in cache.glob("*.pickle"):
        f.unlink()
    for i, k in enumerate(["a", "b", "c"]):
        assert psf_cache.store(k, model)
        os.utime(cache / f"{k}.pickle", (1e9 + i, 1e9 + i))
    psf_cache.store("d", model)
    assert sorted(f.stem for f in cache.glob("*.pickle")) == ["c", "d"]
