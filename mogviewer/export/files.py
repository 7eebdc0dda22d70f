"""The output-path policy: every file mogviewer writes goes through this module.

What is promised, for every output (CSV, its column notes, image blocks, regions, model JSON,
PSF mixtures, plots):

* **Complete or absent.** The content goes to a temporary file inside a private temporary
  directory next to the target (``.mogviewer-XXXXXXXX``, a short name, so a target whose name
  has the full NAME_MAX of 255 bytes still works) and is renamed over the target only when
  complete and flushed to disk. On any error, Ctrl-C or SIGTERM the temporary directory is removed
  with whatever a writer left in it, and the old target, if any, is untouched.
* **Never over an input.** A target that is the same file as one of the ``inputs`` of the run
  (same device and inode, or the same resolved path) is refused before anything is written.
* **Regular files only.** A target that exists and is not a regular file (a FIFO, a device such
  as ``/dev/null``, a socket, a directory) is refused: an atomic rename would replace it.
  A symbolic link to a regular file is followed: the file it points to is replaced, the link
  stays.
* **Appends are locked.** :func:`append_locked` adds text to the end of a file in place under an
  exclusive ``fcntl.flock`` lock, so two runs appending to one CSV at once lose no rows; a failed
  append is cut back to the previous length.

Every failure is an :class:`~mogviewer.errors.ExportError` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ..errors import ExportError

# ---------------------------------------------------------------------------------------------
# messages and identities
# ---------------------------------------------------------------------------------------------


def _describe_oserror(exc):
    if exc.errno == errno.ENOENT and exc.filename:
        parent = Path(os.fsdecode(exc.filename)).parent
        if parent.is_dir():    # /proc, /sys: the directory is there, a file cannot be made
            return (f"nothing can be created in {parent} (a virtual file system such as "
                    "/proc or /sys, or the directory was removed meanwhile)")
    return {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENOENT: "the directory does not exist", errno.EISDIR: "it is a directory",
            errno.ENOTDIR: "a parent of the path is not a directory",
            errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
            errno.EDQUOT: "disk quota exceeded", errno.ENAMETOOLONG: "the file name is too long",
            }.get(exc.errno, exc.strerror or str(exc))


def _kind_of_mode(mode):
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def file_identity(path):
    """``(st_dev, st_ino)`` of an existing file (symbolic links followed), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _resolved(path):
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


class InputSet:
    """The input files of a run, for the check "is this output one of the inputs?": by device
    and inode (hard links, different spellings) and by resolved path (files not yet created).
    Built once, so checking thousands of outputs against thousands of inputs stays cheap."""

    def __init__(self, paths=()):
        self._by_id = {}
        self._by_path = {}
        for p in paths:
            self.add(p)

    def add(self, path):
        if path is None or not isinstance(path, (str, os.PathLike)):
            return
        ident = file_identity(path)
        if ident is not None:
            self._by_id.setdefault(ident, os.fspath(path))
        self._by_path.setdefault(_resolved(path), os.fspath(path))

    def find(self, path):
        """The input that ``path`` would overwrite, or None."""
        ident = file_identity(path)
        if ident is not None and ident in self._by_id:
            return self._by_id[ident]
        return self._by_path.get(_resolved(path))

    def __bool__(self):
        return bool(self._by_path)


def same_file_as_any(path, inputs):
    """The first of ``inputs`` (paths or an :class:`InputSet`) that is the same file as
    ``path``, or None."""
    if not isinstance(inputs, InputSet):
        inputs = InputSet(inputs or ())
    return inputs.find(path)


# ---------------------------------------------------------------------------------------------
# the target check
# ---------------------------------------------------------------------------------------------


def check_output_path(path, what, *, inputs=()):
    """Apply the output-path policy to ``path`` before anything is computed or written.

    Returns the path to write (symbolic links to a regular file resolved). Raises
    :class:`ExportError` naming ``what`` and ``path`` when the target is a directory, a FIFO,
    a device or another non-regular file, one of ``inputs``, or in a directory that does not
    exist.
    """
    path = Path(path)
    if not str(path) or str(path) in (".", ".."):
        raise ExportError(f"cannot write {what} {str(path)!r}: not a file name")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            parent = path.parent
            raise ExportError(f"cannot write {what} {path}: {parent} is not a directory") from None
        raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ExportError(f"cannot write {what} {path}: it is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ExportError(f"refusing to write {path} ({what}): it is "
                              f"{_kind_of_mode(st.st_mode)}, not a regular file; give the name "
                              "of a regular file")
        if path.is_symlink():
            path = Path(os.path.realpath(path))
    clash = same_file_as_any(path, inputs)
    if clash is not None:
        raise ExportError(f"refusing to write {path} ({what}): it is the input file {clash}; "
                          "choose another output name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ExportError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ExportError(f"cannot write {what} {path}: {parent} is not a directory")
    return path


# kept for callers of the earlier name
def _check_target(path, what, inputs=()):
    return check_output_path(path, what, inputs=inputs)


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(path, what, *, inputs=()):
    """Context manager yielding a temporary path to write ``path``'s content to.

    The temporary path lies in a private directory next to ``path`` and keeps its suffix (so
    writers that choose a format by suffix, such as matplotlib and :func:`mogviewer.psf.write_psf`,
    see ``.png`` or ``.json``). On normal exit the temporary file is renamed over ``path`` (after
    the policy of :func:`check_output_path`); on any exception, including KeyboardInterrupt, the
    private directory is removed with all it holds and ``path`` is untouched. OSErrors become
    :class:`ExportError`.
    """
    path = check_output_path(path, what, inputs=inputs)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmpdir = tempfile.mkdtemp(dir=parent, prefix=".mogviewer-")
    except OSError as exc:
        raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
    tmp = os.path.join(tmpdir, "out" + "".join(path.suffixes[-2:])[:32])
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise ExportError(f"cannot write {what} {path}: nothing was written")
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        # the target may have become a FIFO/device/input since the check: check again
        check_output_path(path, what, inputs=inputs)
        os.replace(tmp, path)
    except ExportError:
        raise
    except OSError as exc:
        raise ExportError(f"cannot write {what} {path}: {_describe_oserror(exc)}") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _atomic_write(path, write, *, what, binary=False, inputs=()):
    """Call ``write(fileobj)`` on a temporary file and rename it over ``path`` (see
    :func:`atomic_output`). OSErrors become :class:`ExportError`; other exceptions propagate
    unchanged; in every case no temporary file is left."""
    target = check_output_path(path, what, inputs=inputs)
    with atomic_output(target, what, inputs=inputs) as tmp:
        kwargs = {} if binary else {"newline": "", "encoding": "utf-8"}
        with open(tmp, "wb" if binary else "w", **kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    return target


# ---------------------------------------------------------------------------------------------
# locked appends
# ---------------------------------------------------------------------------------------------


def _lock(fd, path, what):
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        raise ExportError(f"cannot append to {what} {path}: it cannot be locked against "
                          f"other runs ({_describe_oserror(exc)}); write to a new file "
                          "instead") from None


def append_locked(path, make_text, *, what, inputs=()):
    """Append to ``path`` in place under an exclusive lock, creating it if absent.

    ``make_text(head, size)`` is called with the lock held, the file's first 64 kB as text
    (``''`` for a new or empty file) and its size in bytes; it returns the text to append, or
    raises to refuse (e.g. the columns differ). The text is written, flushed and fsynced; on
    failure the file is truncated back to its previous length, so the file is never left with a
    partial line. A file replaced by another process while waiting for the lock is reopened.
    """
    path = check_output_path(path, what, inputs=inputs)
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise ExportError(f"cannot append to {what} {path}: {_describe_oserror(exc)}") \
                from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced by a FIFO/device since the check
                raise ExportError(f"refusing to write {path} ({what}): it is "
                                  f"{_kind_of_mode(st.st_mode)}, not a regular file")
            _lock(fd, path, what)
            if file_identity(path) != (st.st_dev, st.st_ino):
                continue  # replaced while we waited: lock the file that is there now
            size = os.fstat(fd).st_size
            os.lseek(fd, 0, os.SEEK_SET)
            head = os.read(fd, 65536)
            try:
                head_text = head.decode("utf-8")
            except UnicodeDecodeError:
                if len(head) < 65536:
                    raise ExportError(f"cannot append to {path}: it is not a text {what} "
                                      "file") from None
                head_text = head.decode("utf-8", errors="ignore")
            text = make_text(head_text, size)
            if not text:
                return path
            if size:
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    text = "\n" + text  # complete a last line that lacks its newline
            data = text.encode("utf-8")
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                if isinstance(exc, OSError):
                    raise ExportError(f"cannot append to {what} {path}: "
                                      f"{_describe_oserror(exc)}") from None
                raise
            return path
        finally:
            os.close(fd)  # also releases the lock
    raise ExportError(f"cannot append to {what} {path}: it keeps being replaced by another "
                      "program")
