"""Every command-line value is checked here, before any file is read.

Each option of every subcommand takes one of the argparse ``type=`` checkers below, so a value
out of range is refused by argparse itself with the option's name, the allowed range and the
value given (``mogviewer fit: error: argument -K: must be an integer from 1 to 12, got 0``),
exit status 2, before anything is opened. Checks that involve two options or the file system
(an input that is a FIFO, an output that is an input) are in :func:`check_inputs` and
:func:`check_outputs`, which the subcommands call first thing.

The bounds, and why:

* ``-K`` / ``--psf-components`` <= :data:`MAX_PSF_COMPONENTS`: the PSF fit tries K = 1, 2, ...
  in turn; on the bundled 51x51 Moffat stamp K = 8, 10, 12 took 18, 30 and 60 s (2026-12-03,
  shared 2-core machine), and a PSF never needs more than ~6 (the automatic choice's limit).
* ``profiles derive -M`` <= :data:`MAX_DERIVE_M`, the largest published table: the cost grows
  steeply with M (exp M = 10 and M = 12 were both still running after 300 s on the shared
  2-core machine, 2026-12-03); the command says that Ctrl-C stops it, and Ctrl-C or SIGTERM end
  it with one line.
* ``--max-nfev`` <= 100000, ``--workers`` <= :data:`MAX_WORKERS`, ``--starts`` <= 64: larger
  values only hang a run.
* Every float must be finite; scales (gain, pixel scale) must be positive.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import stat
from pathlib import Path

from ..errors import UserError

#: Largest number of Gaussians fitted to a PSF image (``-K``, ``--psf-components``).
MAX_PSF_COMPONENTS = 10
#: Largest M that ``profiles derive`` re-derives.
MAX_DERIVE_M = 10
#: Largest mixture size accepted by ``-M`` / ``--M2`` (the shipped tables stop at 10).
MAX_M = 20
#: Largest ``--max-neighbours``: a joint fit of more sources belongs to a catalogue-driven run.
MAX_NEIGHBOURS = 100
#: Largest number of worker processes.
MAX_WORKERS = 256
#: Suffixes matplotlib writes that ``--plot`` / ``-o`` of the plotting commands accept.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff")


def int_range(lo, hi, *, what="an integer"):
    """argparse type: an integer in ``[lo, hi]``."""

    def check(text):
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} from {lo} to {hi}, "
                                             f"got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {what} from {lo} to {hi}, got {value}")
        return value

    check.__name__ = "integer"
    return check


def finite_float(text):
    """argparse type: a finite number (no nan, no inf)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


finite_float.__name__ = "number"


def positive_float(text):
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def nonnegative_float(text):
    """argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text!r}")
    return value


def float_range(lo, hi):
    """argparse type: a finite number in ``[lo, hi]``."""

    def check(text):
        value = finite_float(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be from {lo:g} to {hi:g}, got {text!r}")
        return value

    check.__name__ = "number"
    return check


def hdu(text):
    """argparse type: an HDU number (>= 0) or an EXTNAME."""
    text = str(text).strip()
    if not text:
        raise argparse.ArgumentTypeError("must be an HDU number (0, 1, ...) or an EXTNAME")
    if text.lstrip("+-").isdigit():
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be an HDU number >= 0 or an EXTNAME, got "
                                             f"{text!r}")
        return value
    return text


def plot_file(text):
    """argparse type: a figure file name whose suffix tells matplotlib the format."""
    text = str(text)
    if Path(text).suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"the file name must end in {', '.join(PLOT_SUFFIXES[:3])} (or another format "
            f"matplotlib writes), got {text!r}")
    return text


def band_spec(text):
    """argparse type: ``BAND`` or ``BAND=FILE`` -> ``(band, file or None)``; a band name is
    letters, digits, ``_`` or ``-`` (it becomes part of CSV column names)."""
    text = str(text).strip()
    band, sep, path = text.partition("=")
    band = band.strip()
    if not band or not all(c.isalnum() or c in "_-" for c in band):
        raise argparse.ArgumentTypeError(f"must be a band name (letters, digits, _ or -), "
                                         f"optionally =FILE, got {text!r}")
    if sep and not path.strip():
        raise argparse.ArgumentTypeError(f"{band}=: the file name is empty")
    return band, (path if sep else None)


def nonempty_name(text):
    """argparse type: a non-empty file name."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("must be a file name, got an empty string")
    return str(text)


# ---------------------------------------------------------------------------------------------
# file-system checks (before any file is read)
# ---------------------------------------------------------------------------------------------


def _kind(mode):
    from ..export.files import _kind_of_mode

    return _kind_of_mode(mode)


def check_input(path, option):
    """Refuse a missing input, a directory, a FIFO or a device before anything reads it: a FIFO
    would block for ever and ``/dev/zero`` would be read until memory runs out."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{option}: file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"{option}: {path} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{option}: {path} is {_kind(st.st_mode)}, not a regular file; "
                        "mogviewer reads only regular files")
    if not os.access(path, os.R_OK):
        raise UserError(f"{option}: {path} cannot be read (permission denied)")


def check_inputs(pairs):
    """:func:`check_input` on each ``(option, path)`` pair whose path is not None."""
    for option, path in pairs:
        if path is not None:
            check_input(path, option)


def check_output(path, option, inputs=()):
    """The output-path policy (:func:`mogviewer.export.files.check_output_path`) as a
    :class:`UserError` naming the option."""
    from ..errors import ExportError
    from ..export.files import check_output_path

    try:
        return check_output_path(path, option, inputs=inputs)
    except ExportError as exc:
        raise UserError(str(exc)) from None


@contextlib.contextmanager
def atomic_output_or_user_error(path, option, inputs=()):
    """:func:`mogviewer.export.files.atomic_output` with its errors as a :class:`UserError`
    naming the option: yields a temporary path to write; renamed over ``path`` on success, removed
    on any failure (a full disk, a missing directory, Ctrl-C)."""
    from ..errors import ExportError
    from ..export.files import atomic_output

    try:
        with atomic_output(path, option, inputs=inputs) as tmp:
            yield tmp
    except ExportError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # a writer's own OSError (matplotlib, astropy)
        raise UserError(f"cannot write {path} ({option}): {exc.strerror or exc}") from None
