"""The app's PSF models kept on disk between sessions, keyed by the file's content.

Fitting a mixture to a PSF stamp takes a second or more (the sample's 51x51 Moffat: 1.1 s on
the idle 2-core machine, up to 20 s when it is loaded), and the app opens the same PSF at every
start. The fitted :class:`~mogviewer.psf.model.PsfModel` is stored under

    ``$MOGVIEWER_CACHE_DIR/psf/`` (default ``$XDG_CACHE_HOME/mogviewer`` or ``~/.cache/mogviewer``)

in a file named by a SHA-256 of (the PSF file's bytes, the HDU, the position, K, the mogviewer
version and the source of the modules that fit PSFs, the LM driver included). A copy of the
file elsewhere is the same entry; a changed byte, another option or a change of the fitting
code is another entry, so a stale model is never returned. The cache is a convenience only:
a directory that cannot be written, a full disk or a damaged entry mean the PSF is fitted
again, never an error. Entries are pickles written by this module into the user's own cache
directory (atomically: a temporary file renamed); at most :data:`MAX_ENTRIES` are kept, the
least recently used removed first. Nothing here imports Qt.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

#: Entries kept (about 60 kB each for a 51x51 stamp).
MAX_ENTRIES = 200
#: Files larger than this are not cached (hashing them would cost what a fit costs).
MAX_FILE_BYTES = 256 * 2**20

_code_hash = None


def cache_dir():
    """The directory of the PSF entries (not created here)."""
    base = os.environ.get("MOGVIEWER_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = os.path.join(xdg or os.path.join(Path.home(), ".cache"), "mogviewer")
    return Path(base) / "psf"


def _code_digest():
    """SHA-256 of the mogviewer version and the source of the modules a PSF model comes from
    (``mogviewer/psf/*.py``, ``mixture.py``, ``fitting/lm.py``, the polish's driver): a change
    of the fitting code is a new key."""
    global _code_hash
    if _code_hash is None:
        from .. import __version__
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256(__version__.encode())
        for f in sorted((root / "psf").glob("*.py")) + [root / "mixture.py",
                                                        root / "fitting" / "lm.py"]:
            try:
                h.update(f.name.encode() + f.read_bytes())
            except OSError:
                h.update(f.name.encode())
        _code_hash = h.hexdigest()
    return _code_hash


def key(path, options):
    """The entry's name for the PSF file ``path`` read with ``options`` (a tuple of plain
    values), or None when the file is not cached (unreadable or larger than
    :data:`MAX_FILE_BYTES`)."""
    try:
        p = Path(path)
        if p.stat().st_size > MAX_FILE_BYTES:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    h = hashlib.sha256(data)
    h.update(repr(tuple(options)).encode())
    h.update(_code_digest().encode())
    return h.hexdigest()


def load(k):
    """The model stored under ``k``, or None (absent, unreadable or damaged)."""
    if k is None:
        return None
    f = cache_dir() / f"{k}.pickle"
    try:
        with open(f, "rb") as fh:
            model = pickle.load(fh)
        os.utime(f)                 # recently used: pruned last
    except Exception:  # noqa: BLE001 - any damage to an entry means: fit again
        return None
    from ..psf.model import PsfModel
    return model if isinstance(model, PsfModel) else None


def store(k, model):
    """Keep ``model`` under ``k``; True if written. Failures are silent (False)."""
    if k is None:
        return False
    d = cache_dir()
    tmp = None
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pickle", dir=d)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, d / f"{k}.pickle")
        tmp = None
        _prune(d)
        return True
    except Exception:  # noqa: BLE001 - a cache that cannot be written is no cache
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _prune(d):
    entries = sorted(d.glob("*.pickle"), key=lambda f: f.stat().st_mtime)
    for f in entries[:max(0, len(entries) - MAX_ENTRIES)]:
        try:
            f.unlink()
        except OSError:
            pass
