"""Where numba keeps the compiled kernels: a writable place on every install.

numba caches compiled functions (``cache=True``) beside the source (``__pycache__``) or, when that
is read-only, in the user's cache directory (``~/.cache/numba``). On a shared install (the package
directory read-only) with an unwritable HOME neither works and numba refuses to compile at all
("cannot cache function ...: no locator available"). :func:`configure` runs before numba is
imported (from ``mogviewer/__init__.py``) and, only in that case, points ``NUMBA_CACHE_DIR`` at a
private directory of this user under the system's temporary directory. A ``NUMBA_CACHE_DIR`` the
user set is always kept.

:func:`drop_stale` then deals with what numba's cache does not check: a cached kernel is
checked against its own source file only, so a kernel that calls (inlines) one of another
module keeps the old callee after that module changes, silently, until its own file changes. That
happens to a developer who edits a kernel, and to a user who upgrades mogviewer (pip leaves the
``.nbi``/``.nbc`` files it did not install). A fingerprint of every kernel source is kept beside
the cached kernels; when it differs, they are all deleted, and numba compiles them again.
"""

from __future__ import annotations

import os
import stat
import sys

# only os and stat at import: this runs first in every process (the command line's start-up
# included, where a Ctrl-C must find mogviewer's own handler as soon as possible)


def _writable_dir(path):
    path = os.fspath(path)
    probe = os.path.join(path, f".mogviewer-probe-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _private_tmp_dir():
    """``$TMPDIR/mogviewer-numba-UID``, created mode 0700; None if it is not ours (another user
    could have planted it or a link there)."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"mogviewer-numba-{uid}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid):
        return None
    return path if _writable_dir(path) else None


def choose_cache_dir(package_dir=None, environ=None):
    """The directory to put in ``NUMBA_CACHE_DIR``, or None when numba's own choice works."""
    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    package_dir = os.fspath(package_dir or os.path.dirname(os.path.abspath(__file__)))
    if _writable_dir(os.path.join(package_dir, "render", "__pycache__")):
        return None
    user_wide = _user_wide_root(environ)
    if user_wide is not None and _writable_dir(user_wide):
        return None
    path = _private_tmp_dir()
    return None if path is None else str(path)


def configure():
    """Set ``NUMBA_CACHE_DIR`` when numba would find no writable cache (see the module)."""
    try:
        path = choose_cache_dir()
    except Exception:  # noqa: BLE001 - never stop an import over a cache directory
        return
    if path is None:
        return
    os.environ["NUMBA_CACHE_DIR"] = path
    import sys

    config = getattr(sys.modules.get("numba.core.config"), "__dict__", None)
    if config is not None:  # numba already imported: its configuration was read then
        sys.modules["numba.core.config"].CACHE_DIR = path


#: the subpackages whose modules hold numba kernels (``cache=True``)
KERNEL_DIRS = ("render", "fitting", "psf")
#: modules of the package itself whose plain Python functions kernels compile (inline):
#: ``ellipse._shape_jacobian_physical_into`` in ``fitting._fast``. A test checks that every
#: compiled function's source is covered (``tests/test_stale_kernels.py``)
KERNEL_MODULES = ("ellipse.py",)
#: the fingerprint's file, in each directory of cached kernels
MARKER = "mogviewer-kernel-sources.sha256"


def _kernel_texts(package_dir):
    """``(name, path, bytes)`` of the kernel sources (:func:`kernel_sources`), each read once."""
    out = []
    for sub in KERNEL_DIRS:
        d = os.path.join(package_dir, sub)
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".py"))
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                with open(path, "rb") as fh:
                    text = fh.read()
            except OSError:
                continue
            if b"njit" in text:
                out.append((f"{sub}/{name}", path, text))
    for name in KERNEL_MODULES:
        path = os.path.join(package_dir, name)
        try:
            with open(path, "rb") as fh:
                out.append((name, path, fh.read()))
        except OSError:
            continue
    return out


def kernel_sources(package_dir=None):
    """The files :func:`kernel_fingerprint` covers, as ``(name, path)``: every module of
    :data:`KERNEL_DIRS` that contains ``njit``, and :data:`KERNEL_MODULES`."""
    package_dir = os.fspath(package_dir or os.path.dirname(os.path.abspath(__file__)))
    return [(name, path) for name, path, _ in _kernel_texts(package_dir)]


def kernel_fingerprint(package_dir=None):
    """SHA-256 (hex) of the kernel sources (:func:`kernel_sources`), by name and content."""
    import hashlib

    package_dir = os.fspath(package_dir or os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for name, _, text in _kernel_texts(package_dir):
        h.update(f"{name}\0{len(text)}\0".encode())
        h.update(text)
    return h.hexdigest()


def _numba_subpath(source_dir):
    """numba's directory name for the cached kernels of ``source_dir`` under a cache root
    (``numba.core.caching._CacheLocator.get_suitable_cache_subpath``; a test checks it)."""
    import hashlib

    source_dir = os.path.abspath(source_dir)
    return "_".join([os.path.basename(source_dir), hashlib.sha1(source_dir.encode()).hexdigest()])


def _user_wide_root(environ):
    """numba's user-wide cache root (``~/.cache/numba`` on Linux), or None where unknown."""
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches", "numba")
    if sys.platform.startswith("win"):
        return None
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "numba")


def cache_dirs(package_dir=None, environ=None):
    """Where numba may keep mogviewer's cached kernels: each kernel directory's
    ``__pycache__``, and its directory under ``NUMBA_CACHE_DIR`` and under numba's user-wide
    cache (used when the install is read-only)."""
    environ = os.environ if environ is None else environ
    package_dir = os.fspath(package_dir or os.path.dirname(os.path.abspath(__file__)))
    roots = [r for r in (environ.get("NUMBA_CACHE_DIR"), _user_wide_root(environ)) if r]
    out = []
    for sub in KERNEL_DIRS:
        d = os.path.join(package_dir, sub)
        out.append(os.path.join(d, "__pycache__"))
        out.extend(os.path.join(r, _numba_subpath(d)) for r in roots)
    return out


def _dirs_numba_will_use(package_dir, environ):
    """The directories numba will write this package's cached kernels to: under
    ``NUMBA_CACHE_DIR`` when it is set, else each kernel directory's ``__pycache__`` (numba's
    in-tree choice; when that cannot be created, the user-wide cache, as numba falls back)."""
    source_dirs = [os.path.join(package_dir, sub) for sub in KERNEL_DIRS]
    root = environ.get("NUMBA_CACHE_DIR")
    if root:
        return [os.path.join(root, _numba_subpath(d)) for d in source_dirs]
    out = []
    for d in source_dirs:
        in_tree = os.path.join(d, "__pycache__")
        try:
            os.makedirs(in_tree, exist_ok=True)
        except OSError:
            pass
        if os.access(in_tree, os.W_OK):
            out.append(in_tree)
            continue
        user_wide = _user_wide_root(environ)     # a read-only install
        if user_wide:
            out.append(os.path.join(user_wide, _numba_subpath(d)))
    return out


def _write_marker(d, fp):
    try:
        marker = os.path.join(d, MARKER)
        tmp = f"{marker}.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(fp + "\n")
        os.replace(tmp, marker)
    except OSError:
        pass


def drop_stale(package_dir=None, environ=None):
    """Delete the cached kernels of every directory of :func:`cache_dirs` whose fingerprint
    file differs from :func:`kernel_fingerprint` (or is missing), and record the new one.
    Returns the number of files deleted. Never raises: a directory that cannot be read or
    written is left to numba (which then recompiles what it cannot trust no worse than
    before). Two processes starting at once may both delete; that costs a compile, never a
    stale kernel.

    A directory numba will write to that does not exist yet (a fresh clone's ``__pycache__``,
    a new ``NUMBA_CACHE_DIR``) is created with the fingerprint: the kernels this process
    compiles into it are of these sources. Without it, the next process found them unmarked
    and deleted them, and a first single-process run (``mogviewer fit`` after
    ``pip install -e .``) compiled everything twice.
    """
    try:
        environ = os.environ if environ is None else environ
        package_dir = os.fspath(package_dir or os.path.dirname(os.path.abspath(__file__)))
        cached = [d for d in cache_dirs(package_dir, environ) if os.path.isdir(d)]
        # (those that did not exist a moment ago; the in-tree ones are created by now)
        new = [d for d in _dirs_numba_will_use(package_dir, environ) if d not in cached]
        fp = kernel_fingerprint(package_dir)
        dropped = 0
        for d in cached:
            marker = os.path.join(d, MARKER)
            try:
                with open(marker) as fh:
                    if fh.read().strip() == fp:
                        continue
            except OSError:
                pass
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if name.endswith((".nbi", ".nbc")):
                    try:
                        os.unlink(os.path.join(d, name))
                        dropped += 1
                    except OSError:     # gone already, or open elsewhere (Windows)
                        pass
            _write_marker(d, fp)
        for d in new:
            try:
                os.makedirs(d, exist_ok=True)
            except OSError:
                continue
            _write_marker(d, fp)
        return dropped
    except Exception:  # noqa: BLE001 - never stop an import over a cache
        return 0
