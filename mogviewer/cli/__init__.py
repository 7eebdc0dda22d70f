"""Command line: ``mogviewer [FILE]`` opens the app; ``mogviewer SUBCOMMAND ...`` runs headless.

Each subcommand lives in a module of this package (:data:`SUBCOMMAND_MODULES`) that defines
``register_cli(subparsers)``, adding its parsers with ``set_defaults(func=...)``, where
``func(args) -> int`` is the exit status. This package is the only place that formats for a
terminal. Any :class:`~mogviewer.errors.MogviewerError` that reaches :func:`main` is printed as one
line (``mogviewer: error: ...``) with exit status 2, never a traceback. The GUI is imported only
when no subcommand is given, so batch use never needs a display or Qt.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import MogviewerError
from . import fit, info, profiles, psf, sersic

#: Modules that contribute subcommands (in help order).
SUBCOMMAND_MODULES = (fit, info, psf, profiles, sersic)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mogviewer",
        description="Fit galaxy images with mixtures of Gaussians (Hogg & Lang 2013). "
                    "With no subcommand, opens the desktop app (on FILE, or the bundled sample).")
    parser.add_argument("--version", action="version", version=f"mogviewer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for mod in SUBCOMMAND_MODULES:
        mod.register_cli(sub)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()
    if not argv or (argv[0] not in known and not argv[0].startswith("-")) or argv[0] == "gui":
        return _run_gui(argv[1:] if argv and argv[0] == "gui" else argv)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MogviewerError as exc:
        print(f"mogviewer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mogviewer: interrupted", file=sys.stderr)
        return 130


def _run_gui(argv):
    try:
        from ..gui.app import main as gui_main
    except ImportError as exc:  # e.g. PyQt5 missing or no display libraries on a server
        print(f"mogviewer: the desktop app cannot start ({exc}). The headless commands still "
              f"work: see 'mogviewer --help'.", file=sys.stderr)
        return 1
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
