"""``warnings.catch_warnings`` for library code that may run in several threads at once.

``warnings.catch_warnings`` saves and restores the *process-wide* filter list: two threads
inside it at once (the app reads an image while its PSF worker reads a PSF) restore each
other's filters and lose or duplicate warnings. mogviewer's own uses go through
:func:`catch`, which holds one lock for the duration, so they never interleave.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

__all__ = ["catch"]

_LOCK = threading.RLock()


@contextlib.contextmanager
def catch(*, record=False):
    """``warnings.catch_warnings(record=record)`` under mogviewer's warnings lock."""
    with _LOCK, warnings.catch_warnings(record=record) as caught:
        yield caught
