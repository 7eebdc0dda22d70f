"""Issue 15: Ctrl-C while the `mogviewer` console script is still importing prints one line and
exits 130, no traceback; a library user's Ctrl-C keeps Python's KeyboardInterrupt."""

import subprocess
import sys

import pytest

# the signal arrives while the script is between importing mogviewer.cli and calling main()
# (where a KeyboardInterrupt would have no handler yet): deterministic, no timing
_SCRIPT = """
import os, signal, sys, time
sys.argv = [{argv0!r}, "fit", "x.fits"]
import mogviewer.cli
os.kill(os.getpid(), signal.SIGINT)
time.sleep(5)
print("not interrupted")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_interrupt_while_the_console_script_imports_is_one_line_and_130():
    p = subprocess.run([sys.executable, "-c", _SCRIPT.format(argv0="/usr/bin/mogviewer")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 130
    assert p.stderr == "mogviewer: interrupted\n" and p.stdout == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_library_import_keeps_pythons_keyboard_interrupt():
    p = subprocess.run([sys.executable, "-c", _SCRIPT.format(argv0="myscript.py")],
                       capture_output=True, text=True, timeout=60)
    # Python 3.11 ends an unhandled KeyboardInterrupt by the signal itself (-2) after its traceback
    assert p.returncode in (1, -2) and "KeyboardInterrupt" in p.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_spawned_worker_exits_130_silently():
    # a spawn worker re-imports the script with the parent's sys.argv: it must not print a
    # second line (its parent says it)
    code = ("import multiprocessing as mp, os, signal, sys\n"
            "sys.argv = ['/usr/bin/mogviewer']\n"
            "mp.parent_process = lambda: object()\n"       # what a worker sees
            "import mogviewer.cli\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "import time; time.sleep(5)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 130 and p.stderr == "" and p.stdout == ""


def test_an_import_failed_by_ctrl_c_is_an_interrupt(monkeypatch, capsys):
    # A Ctrl-C while a C extension initialises surfaces as "ImportError: initialization
    # failed" with the KeyboardInterrupt as its context (seen once in test_reliability's
    # start-up test, inside scipy.optimize's HiGHS module): one line and 130, like any Ctrl-C;
    # an ImportError of its own stays an error
    from mogviewer import cli

    def interrupted_import(argv):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    def failed_import(argv):
        raise ImportError("no module named nothing")

    monkeypatch.setattr(cli, "_main", interrupted_import)
    assert cli.main(["fit"]) == 130
    assert capsys.readouterr().err.strip() == "mogviewer: interrupted"
    monkeypatch.setattr(cli, "_main", failed_import)
    with pytest.raises(ImportError, match="no module named nothing"):
        cli.main(["fit"])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_ctrl_c_lost_inside_a_c_extension_is_still_an_interrupt(monkeypatch, capsys):
    # CI, 2026-12-04: a Ctrl-C 0.05 s into start-up landed while numpy initialised and came out
    # as "ImportError: PyCapsule_Import could not import module 'datetime'" with no
    # KeyboardInterrupt anywhere in its chain (the C code replaced it). The signal's own record
    # tells: one line and 130. Without a signal, the same ImportError stays an error.
    import os
    import signal
    import time

    from mogviewer import cli

    def signal_swallowed_by_c(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise ImportError("PyCapsule_Import could not import module \"datetime\"")

    def plain_failure(argv):
        raise ImportError("PyCapsule_Import could not import module \"datetime\"")

    monkeypatch.setattr(cli, "_main", signal_swallowed_by_c)
    assert cli.main(["fit"]) == 130
    assert capsys.readouterr().err.strip() == "mogviewer: interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored
    monkeypatch.setattr(cli, "_main", plain_failure)
    with pytest.raises(ImportError, match="datetime"):
        cli.main(["fit"])


@pytest.mark.filterwarnings("default")      # shown, as outside pytest (its config raises them)
def test_a_warning_is_one_line_without_python_source(tmp_path, capsys):
    # New-user review, 2026-12-04: a PSF warning reached the terminal as Python prints it,
    # "/.../psf/formats.py:399: PsfWarning: ..." plus the source line of the call; the command
    # line now says "mogviewer: warning: ..." in one line (other categories keep their name),
    # and restores Python's own display when it returns.
    import warnings

    import numpy as np

    from mogviewer import cli
    cli._subcommand_modules()       # imported first: astropy installs its own showwarning then
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:15, :15]
    psf = np.exp(-((xx - 7) ** 2 + (yy - 7) ** 2) / (2 * 1.5 ** 2))
    psf[0, 0] = np.nan
    np.save(tmp_path / "psf.npy", psf)
    img = 100 * np.exp(-((np.mgrid[:32, :32][1] - 15.6) ** 2
                         + (np.mgrid[:32, :32][0] - 16.2) ** 2) / 18.0)
    np.save(tmp_path / "img.npy", img + rng.normal(0, 1.0, img.shape))
    before = warnings.showwarning
    status = cli.main(["fit", str(tmp_path / "img.npy"), "--psf", str(tmp_path / "psf.npy"),
                       "--csv", str(tmp_path / "o.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert status in (0, 1), err
    lines = [ln for ln in err.splitlines() if "NaN" in ln]
    assert lines and all(ln.startswith("mogviewer: warning: ") for ln in lines), err
    assert ".py:" not in err and "return _model_from_stamp" not in err
    assert warnings.showwarning is before


def test_the_command_ends_at_once_after_an_interrupt(monkeypatch):
    """`console_main` (the console script and `python -m mogviewer`): after 130 or 143 the
    process ends by os._exit (the interpreter's exit handlers once kept an interrupted pool
    batch alive for more than 30 s, joining the pool's manager thread); other statuses are
    returned for sys.exit as usual."""
    import mogviewer.cli as cli

    exits = []

    class Exited(Exception):
        pass

    def fake_exit(status):
        exits.append(status)
        raise Exited

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    for status in (130, 143):
        monkeypatch.setattr(cli, "main", lambda argv=None, s=status: s)
        with pytest.raises(Exited):
            cli.console_main([])
    assert exits == [130, 143]
    for status in (0, 1, 2):
        monkeypatch.setattr(cli, "main", lambda argv=None, s=status: s)
        assert cli.console_main([]) == status
    assert exits == [130, 143]
