"""Atomic writes: a result file is complete or absent, never truncated or half written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import ExportError

# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------

def _describe_oserror(exc):
    import errno

    return {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENOENT: "the directory does not exist", errno.EISDIR: "it is a directory",
            errno.ENOTDIR: "a parent of the path is not a directory",
            errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
            }.get(exc.errno, exc.strerror or str(exc))


def _check_target(path, what):
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"cannot write {what} {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ExportError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ExportError(f"cannot write {what} {path}: {parent} is not a directory")
    return path


def _atomic_write(path, write, *, what, binary=False):
    """Call ``write(fileobj)`` on a temporary file next to ``path`` and rename it over ``path``.

    The temporary file is removed on any failure; ``path`` is untouched unless everything
    succeeded. OSErrors become :class:`ExportError`; other exceptions propagate unchanged.
    """
    path = _check_target(path, what)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                                   prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                      {"newline": "", "encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, ExportError):
            raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
        raise
    return path
