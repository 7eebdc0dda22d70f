"""The exceptions and warnings mogviewer raises, under one base class.

Raise policy
------------
Every error mogviewer raises on purpose is a :class:`MogviewerError`, so a caller can catch
them all with one clause (the command line does: it prints the message as one line and exits
with status 2; the app shows it in a dialog; batch mode writes it into the row's ``reason``).
Each subclass also derives from the built-in exception a Python user would expect (GalSim's
pattern: ``GalSimValueError(GalSimError, ValueError)``), so ``except ValueError`` keeps working.

* Input a user can fix (a file that is not an image, a noise map of the wrong shape, a PSF that
  is not a PSF, an option out of range): the module's own subclass of :class:`MogviewerError`
  whose message names the file or option, says what is wrong and what to do. Never a bare
  ``ValueError`` from deep inside numpy or astropy: such exceptions are caught at the edge and
  re-raised with the user's words (``raise ... from exc`` keeps the cause).
* A fit that cannot start or whose numbers break down: :class:`FitError`. A fit that runs but
  ends badly is not an error: it returns a result with flags (:class:`mogviewer.fitting.FitFlags`).
* A file that cannot be written: :class:`ExportError` (an ``OSError``); nothing is left half
  written (:mod:`mogviewer.export.files`).
* A missing input file stays the built-in ``FileNotFoundError``: every Python user knows it.
* Programming errors (a wrong type passed by library code) are ordinary ``TypeError`` /
  ``ValueError`` and are not caught anywhere: they are bugs to see, not messages to print.
* Something that works but deserves attention is a :class:`MogviewerWarning` subclass, also
  recorded in the notes of the object it concerns (``ImageData.notes``, ``PsfModel.notes``).
"""

from __future__ import annotations

__all__ = ["MogviewerError", "UserError", "ImageReadError", "PsfError", "FitError",
           "ExportError", "ModelFileError", "ProfileError", "MogviewerWarning", "PsfWarning"]


class MogviewerError(Exception):
    """Base class of every error mogviewer raises on purpose (see the module's raise policy)."""


class UserError(MogviewerError, ValueError):
    """A command-line option or input that cannot be used as given: one line, exit status 2."""


class ImageReadError(MogviewerError, ValueError):
    """An image, noise map or mask that cannot be read as asked; the message names the file."""


class PsfError(MogviewerError, ValueError):
    """A file or array that cannot be used as a PSF; the message names it and says what to do."""


class FitError(MogviewerError, ValueError):
    """A fit that cannot start (no usable pixels, bad start) or whose numbers broke down."""


class ExportError(MogviewerError, OSError):
    """A result file that cannot be written; the existing file, if any, is left untouched."""


class ModelFileError(MogviewerError, ValueError):
    """A model JSON file (``--start``, File > Open model) that cannot be read."""


class ProfileError(MogviewerError, ValueError):
    """An unknown profile, or a mixture size M (or Sérsic n) for which no table exists."""


class MogviewerWarning(UserWarning):
    """Base class of mogviewer's warnings: something worked but deserves attention."""


class PsfWarning(MogviewerWarning):
    """A PSF was used with an assumption the user should know about (recorded in its notes)."""
