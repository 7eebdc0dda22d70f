"""Command line: ``mogviewer [FILE]`` opens the app; ``mogviewer SUBCOMMAND ...`` runs headless.

Each subcommand lives in a module of this package (:data:`SUBCOMMAND_NAMES`) that defines
``register_cli(subparsers)``, adding its parsers with ``set_defaults(func=...)``, where
``func(args) -> int`` is the exit status. This package is the only place that formats for a
terminal. Any :class:`~mogviewer.errors.MogviewerError` that reaches :func:`main` is printed as one
line (``mogviewer: error: ...``) with exit status 2, never a traceback. Option values are checked
by argparse with the checkers of :mod:`mogviewer.cli.options` before any file is read (also exit
status 2). Ctrl-C at any moment, start-up included, prints one line and exits with 130; SIGTERM
(``kill``, a batch system's time limit) is handled like Ctrl-C (rows done so far are written, no
temporary file is left) and exits with 143. The GUI is imported only when no subcommand is given,
so batch use never needs a display or Qt.
"""

from __future__ import annotations

import os
import signal
import sys


def _startup_interrupt(signum, frame):
    """Ctrl-C before :func:`main` runs (the console script still importing): one line and exit
    status 130, without unwinding (there is nothing to clean up yet). A worker process started
    by ``spawn`` re-imports the script too; it exits silently, its parent says it."""
    mp = sys.modules.get("multiprocessing")
    if mp is None or mp.parent_process() is None:
        os.write(2, b"mogviewer: interrupted\n")
    os._exit(130)


# Installed first, and only for the `mogviewer` console script (and its spawned workers, whose
# sys.argv is the parent's): a library user's or a test's Ctrl-C keeps Python's own handling.
if (os.path.basename(sys.argv[0]) if sys.argv else "") == "mogviewer" \
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _startup_interrupt)

import importlib  # noqa: E402

from .. import __version__  # noqa: E402

#: Modules that contribute subcommands (in help order), imported by :func:`main`.
SUBCOMMAND_NAMES = ("fit", "info", "psf", "profiles", "sersic", "compile")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that every ``finally`` runs (files are completed or
    removed) before the process exits."""


_TERMINATED = []
_INTERRUPTED = []


def _on_sigint(signum, frame):
    """Ctrl-C during :func:`main`: Python's own KeyboardInterrupt, remembered. A Ctrl-C that
    lands while a C extension initialises can come out as another exception with the
    KeyboardInterrupt lost (numpy's "PyCapsule_Import could not import module 'datetime'"):
    the record says it was still the user's Ctrl-C."""
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    _TERMINATED.append(signum)
    raise _Terminated()


def _subcommand_modules():
    return tuple(importlib.import_module(f"{__name__}.{name}") for name in SUBCOMMAND_NAMES)


def __getattr__(name):  # SUBCOMMAND_MODULES stays available, imported on first use
    if name == "SUBCOMMAND_MODULES":
        return _subcommand_modules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parser_class():
    import argparse

    class Parser(argparse.ArgumentParser):
        """Option errors as two short lines (the problem, where to look), not the whole usage."""

        def error(self, message):
            self.exit(2, f"{self.prog}: error: {message}\n"
                         f"  ('{self.prog} --help' lists the options)\n")

    return Parser


def build_parser():
    parser = _parser_class()(
        prog="mogviewer",
        description="Fit galaxy images with mixtures of Gaussians (Hogg & Lang 2013). "
                    "With no subcommand, opens the desktop app (on FILE, or the bundled sample).")
    parser.add_argument("--version", action="version", version=f"mogviewer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for mod in _subcommand_modules():
        mod.register_cli(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (Ctrl-C and SIGTERM included)."""
    in_main_thread = _in_main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    old_int = None
    _INTERRUPTED.clear()
    try:
        if in_main_thread and signal.getsignal(signal.SIGINT) in (
                _startup_interrupt, signal.default_int_handler):
            # from here a Ctrl-C is a KeyboardInterrupt that the except below turns into the
            # same line and status after the clean-up (files completed or removed)
            old_int = signal.signal(signal.SIGINT, _on_sigint)
        return _main(argv)
    except KeyboardInterrupt:
        if _TERMINATED:  # SIGTERM, possibly re-raised as BatchInterrupted after the clean-up
            _TERMINATED.clear()
            print("mogviewer: terminated (SIGTERM)", file=sys.stderr)
            return 143
        print("mogviewer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # a Ctrl-C that lands while a C extension initialises comes out as an ImportError:
        # scipy's HiGHS module says "initialization failed" with the KeyboardInterrupt as its
        # context, numpy's datetime capsule loses it altogether (then only the record of the
        # signal tells): it is still the user's Ctrl-C
        if not (_INTERRUPTED or _from_interrupt(exc)):
            raise
        print("mogviewer: interrupted", file=sys.stderr)
        return 130
    finally:
        ex = sys.modules.get("mogviewer.batch.executors")
        if ex is not None:      # a fork server started for a pool that never came
            ex.stop_unused_server()
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_term)
            if old_int is not None:
                signal.signal(signal.SIGINT, old_int)


def console_main(argv=None):
    """The ``mogviewer`` command (console script and ``python -m mogviewer``): :func:`main`,
    then the process's exit.

    After Ctrl-C or SIGTERM (status 130 or 143) the rows done are written and every output is
    complete by the time :func:`main` returns; the process then ends at once (``os._exit``,
    stdout and stderr flushed) rather than through the interpreter's exit handlers, where
    ``concurrent.futures`` joins a process pool's manager thread without a time limit. That
    join kept one batch alive for more than 30 s after SIGTERM in a full test run (its pool's
    workers had just been terminated, one perhaps while sending its results); its rows were
    already written."""
    status = main(argv)
    if status in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(status)
    return status


def _from_interrupt(exc):
    """True when a KeyboardInterrupt is in ``exc``'s chain of causes and contexts."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _in_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _main(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMAND_NAMES and not argv[0].startswith("-")) \
            or argv[0] == "gui":
        return _run_gui(argv[1:] if argv and argv[0] == "gui" else argv)
    from ..errors import MogviewerError

    if argv[0] == "fit":
        _prestart_pool(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an option refused (status 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    from .. import _blas
    _blas.limit()       # one BLAS thread: its threads only slow mogviewer's small BLAS calls
    import warnings
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except MogviewerError as exc:
        print(f"mogviewer: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = old_show


def _prestart_pool(argv):
    """``mogviewer fit --workers N`` (N > 1, the local pool): start the pool's fork server
    before this process imports anything else (about 1.5 s), so that the server's own imports
    and kernel loading (from numba's cache, or compiled there on the first run) run beside
    them on another core. The options are read as written (``--workers N`` or
    ``--workers=N``); anything else, an abbreviation included, leaves the start to
    :mod:`mogviewer.cli.fit` (later, same result)."""
    workers = None
    for i, a in enumerate(argv):
        # --dask, --scheduler and their abbreviations (argparse takes --da, --sched ...)
        name = a.split("=", 1)[0]
        if a in ("-h", "--help") or (len(name) > 3 and ("--dask".startswith(name)
                                                        or "--scheduler".startswith(name))):
            return
        if a == "--workers" and i + 1 < len(argv):
            workers = argv[i + 1]
        elif a.startswith("--workers="):
            workers = a.split("=", 1)[1]
    try:
        if workers is None or int(workers) <= 1:
            return
    except ValueError:          # argparse says what is wrong with it
        return
    from ..batch.executors import prestart
    prestart()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line on stderr, ``mogviewer: warning: ...`` (the category named unless
    it is mogviewer's own), not Python's two lines with the source file and its code."""
    from ..errors import MogviewerWarning
    text = _one_line(message)
    if not issubclass(category, MogviewerWarning):
        text = f"{category.__name__}: {text}"
    try:
        (file or sys.stderr).write(f"mogviewer: warning: {text}\n")
    except (OSError, ValueError):      # stderr closed: a warning is not worth a crash
        pass


def _one_line(exc):
    return " ".join(str(exc).split())


def _display_problem(environ=None, platform=None):
    """Why the app cannot open a window here, or None. Only the certain case is caught: Linux
    (or another X11 system) with neither DISPLAY nor WAYLAND_DISPLAY and no QT_QPA_PLATFORM
    chosen by the user (``offscreen`` and ``vnc`` need no display); Qt would abort there."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return None
    if environ.get("QT_QPA_PLATFORM"):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    return ("mogviewer: the desktop app needs a display, and there is none here (DISPLAY and "
            "WAYLAND_DISPLAY are unset). Log in with 'ssh -X', start it under 'xvfb-run "
            "mogviewer', or use the headless commands: 'mogviewer --help'.")


def _run_gui(argv):
    problem = _display_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    try:
        from ..gui.app import main as gui_main
    except ImportError as exc:  # e.g. PyQt5 missing or no display libraries on a server
        print(f"mogviewer: the desktop app cannot start ({exc}). The headless commands still "
              f"work: see 'mogviewer --help'.", file=sys.stderr)
        return 1
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
