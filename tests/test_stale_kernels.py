"""Cached kernels compiled from other kernel sources are deleted at import
(:func:`mogviewer._numba_cache.drop_stale`): numba checks a cached kernel against its own file
only, so a kernel that inlines another module's kept the old callee after that module changed
(a developer's edit, or an upgrade: pip leaves the cache files it did not install)."""

import os

import numba.core.caching as nc

from mogviewer import _numba_cache as C


def _tree(root):
    """A package with kernel modules, their cached kernels and a module without kernels."""
    for sub in C.KERNEL_DIRS:
        (root / sub / "__pycache__").mkdir(parents=True)
        (root / sub / "k.py").write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n"
                                         "    return x\n")
        (root / sub / "plain.py").write_text("X = 1\n")
        for n in ("k.f-3.py311.nbi", "k.f-3.py311.1.nbc", "k.cpython-311.pyc"):
            (root / sub / "__pycache__" / n).write_bytes(b"x")
    return root


def _cached(root):
    return sorted(p.name for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_dropped_when_a_kernel_source_changes_and_kept_otherwise(tmp_path):
    env = {"HOME": str(tmp_path / "home")}           # no NUMBA_CACHE_DIR, empty user cache
    root = _tree(tmp_path / "pkg")
    # no fingerprint yet (caches from before, or an upgrade): not to be trusted
    assert C.drop_stale(root, env) == 6 and _cached(root) == []
    assert all((root / s / "__pycache__" / "k.cpython-311.pyc").exists() for s in C.KERNEL_DIRS)
    for s in C.KERNEL_DIRS:                                              # compiled again
        (root / s / "__pycache__" / "k.f-3.py311.nbi").write_bytes(b"x")
    assert C.drop_stale(root, env) == 0 and len(_cached(root)) == 3      # same sources: kept
    (root / "render" / "plain.py").write_text("X = 2\n")                 # no kernel in it
    assert C.drop_stale(root, env) == 0 and len(_cached(root)) == 3
    # a kernel module of one directory changes: every directory's kernels go (its callers
    # may live in another)
    (root / "render" / "k.py").write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n"
                                          "    return x + 1\n")
    assert C.drop_stale(root, env) == 3 and _cached(root) == []


def test_cache_directories_outside_the_package(tmp_path):
    root = _tree(tmp_path / "pkg")
    nc_dir = tmp_path / "numba-cache"
    env = {"NUMBA_CACHE_DIR": str(nc_dir), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "HOME": str(tmp_path / "home")}
    dirs = C.cache_dirs(root, env)
    outside = [d for d in dirs if not d.endswith("__pycache__")]
    assert any(d.startswith(str(nc_dir)) for d in outside)
    for d in outside:
        os.makedirs(d)
        open(os.path.join(d, "k.f-3.py311.nbi"), "w").close()
    C.drop_stale(root, env)
    assert _cached(root) == [] and not list(nc_dir.rglob("*.nbi"))


def test_the_subpath_is_numbas():
    """Where numba puts a module's cached kernels under a cache root: its own formula."""
    for sub in C.KERNEL_DIRS:
        d = os.path.join(os.path.dirname(C.__file__), sub)
        assert C._numba_subpath(d) == nc._CacheLocator.get_suitable_cache_subpath(
            os.path.join(d, "kernels.py"))


def test_fingerprint_of_the_real_package_covers_its_kernel_modules():
    fp = C.kernel_fingerprint()
    assert len(fp) == 64 and fp == C.kernel_fingerprint()
    # the marker is written where numba keeps the real caches (mogviewer was imported)
    marker = os.path.join(os.path.dirname(C.__file__), "render", "__pycache__", C.MARKER)
    with open(marker) as fh:
        assert fh.read().strip() == fp
