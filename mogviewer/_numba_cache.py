"""Where numba keeps the compiled kernels: a writable place on every install.

numba caches compiled functions (``cache=True``) beside the source (``__pycache__``) or, when that
is read-only, in the user's cache directory (``~/.cache/numba``). On a shared install (the package
directory read-only) with an unwritable HOME neither works and numba refuses to compile at all
("cannot cache function ...: no locator available"). :func:`configure` runs before numba is
imported (from ``mogviewer/__init__.py``) and, only in that case, points ``NUMBA_CACHE_DIR`` at a
private directory of this user under the system's temporary directory. A ``NUMBA_CACHE_DIR`` the
user set is always kept.
"""

from __future__ import annotations

import os
import stat

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
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if _writable_dir(os.path.join(base, "numba")):
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
