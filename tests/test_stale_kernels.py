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


def test_a_cache_directory_that_does_not_exist_yet_is_marked_when_created(tmp_path):
    # The first process of a fresh clone (no __pycache__ yet) or with a new NUMBA_CACHE_DIR
    # compiles its kernels into directories that did not exist when it was imported. They are
    # created then, with the fingerprint, so the next process keeps what this one compiled
    # (before: it found them unmarked and deleted them: a first single-process run compiled
    # everything twice, ~85 s each)
    for nc_dir in (None, tmp_path / "numba-cache"):
        root = tmp_path / ("pkg-nc" if nc_dir else "pkg")
        for sub in C.KERNEL_DIRS:
            (root / sub).mkdir(parents=True)
            (root / sub / "k.py").write_text("import numba\n@numba.njit(cache=True)\n"
                                             "def f(x):\n    return x\n")
        env = {"HOME": str(tmp_path / "home")}
        if nc_dir:
            env["NUMBA_CACHE_DIR"] = str(nc_dir)
        assert C.drop_stale(root, env) == 0
        dirs = C._dirs_numba_will_use(os.fspath(root), env)
        assert len(dirs) == len(C.KERNEL_DIRS)
        if nc_dir:
            assert all(d.startswith(str(nc_dir)) for d in dirs)
            assert not (root / "render" / "__pycache__").exists()
        for d in dirs:          # this process compiles into them...
            with open(os.path.join(d, C.MARKER)) as fh:
                assert fh.read().strip() == C.kernel_fingerprint(root)
            open(os.path.join(d, "k.f-3.py311.nbi"), "w").close()
        assert C.drop_stale(root, env) == 0     # ...and the next one keeps them
        assert all(os.path.exists(os.path.join(d, "k.f-3.py311.nbi")) for d in dirs)


def test_every_compiled_functions_source_is_in_the_fingerprint():
    # a kernel compiled from a function of a module outside the fingerprint (as
    # fitting._fast compiles ellipse._shape_jacobian_physical_into) would keep the old code
    # after that module changed, silently: numba checks a cached kernel against its own
    # file only. Every dispatcher of the kernel modules has its source among kernel_sources()
    import importlib
    import inspect

    import numba.core.registry

    import mogviewer

    pkg = os.path.dirname(mogviewer.__file__)
    covered = {os.path.realpath(p) for _, p in C.kernel_sources(pkg)}
    seen = 0
    for name, _ in C.kernel_sources(pkg):
        if "/" not in name:
            continue
        mod = importlib.import_module("mogviewer." + name[:-3].replace("/", "."))
        for obj in vars(mod).values():
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                seen += 1
                src = os.path.realpath(inspect.getsourcefile(obj.py_func))
                assert src in covered, (obj, src)
    assert seen > 50        # the kernels were found
    # and a change of ellipse.py changes the fingerprint
    assert "ellipse.py" in C.KERNEL_MODULES


def test_a_read_only_install_marks_the_user_wide_cache(tmp_path, monkeypatch):
    # the package's __pycache__ not writable (a system-wide install): numba falls back to the
    # user-wide cache, so that is where a new directory gets the fingerprint. The test runs as
    # any user, so "not writable" is os.access saying so
    root = tmp_path / "pkg"
    for sub in C.KERNEL_DIRS:
        (root / sub / "__pycache__").mkdir(parents=True)
        (root / sub / "k.py").write_text("import numba\n@numba.njit(cache=True)\n"
                                         "def f(x):\n    return x\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    real = os.access
    monkeypatch.setattr(C.os, "access", lambda p, mode: False if str(p).endswith(
        "__pycache__") else real(p, mode))
    C.drop_stale(root, env)
    dirs = C._dirs_numba_will_use(os.fspath(root), env)
    assert len(dirs) == len(C.KERNEL_DIRS)
    assert all(d.startswith(str(tmp_path / "xdg" / "numba")) for d in dirs)
    for d in dirs:
        with open(os.path.join(d, C.MARKER)) as fh:
            assert fh.read().strip() == C.kernel_fingerprint(root)
