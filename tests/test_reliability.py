"""Reliability promises of issue 15 that need processes, signals or the library: concurrent
appends lose no rows, worker processes end with their parent, SIGTERM and Ctrl-C leave a valid
CSV and no traceback, the app says what to do without a display, numba finds a writable cache on
a read-only install, and library calls with wrong input raise the documented errors.

The process tests start the command line in subprocesses (about 1-2 s of start-up each)."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import mogviewer
from mogviewer import cli, export
from mogviewer.errors import ExportError, ImageReadError, ModelFileError
from mogviewer.export.files import _atomic_write, check_output_path

BAD = Path(__file__).parent / "data" / "bad"
GOOD = BAD / "good.fits"


def _env(**extra):
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _mogviewer(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "mogviewer", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _children(pid):
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat_line = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(d.name))
    return out


def _alive(pid):
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------- concurrent appends

_APPENDER = r"""
import sys
from mogviewer import export
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    export.write_csv(path, [{"file": f"{tag}{i}", "status": "converged"}], append=True)
"""


def test_concurrent_appends_lose_no_rows(tmp_path):
    # two processes append 150 rows each, one row per call, as fast as they can: the old
    # read-rewrite-rename append kept 77 of 81 rows in issue 15's trial
    out = tmp_path / "shared.csv"
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(out), tag, "150"],
                              env=_env()) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rows = _rows(out)
    assert len(rows) == 300
    assert sorted(r["file"] for r in rows) == sorted(f"{t}{i}" for t in "ab" for i in range(150))
    assert out.read_text().count("file,hdu,") == 1  # one header


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_fit_append_runs_at_once_keep_every_row(tmp_path):
    files = [GOOD] * 40
    out = tmp_path / "fits.csv"
    procs = [_mogviewer("fit", *files, "--csv", out, "--append", "--quiet", env=_env())
             for _ in range(2)]
    results = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    rows = _rows(out)
    assert len(rows) == 80 and all(r["status"] == "converged" for r in rows)


def test_append_refuses_a_file_replaced_by_a_fifo(tmp_path):
    fifo = tmp_path / "x.csv"
    os.mkfifo(fifo)
    with pytest.raises(ExportError, match="FIFO"):
        export.write_csv(fifo, [], append=True)
    assert fifo.is_fifo()


# ----------------------------------------------------------------------------- worker lifetime

def _start_long_batch(tmp_path, workers):
    # 600 fits of a 48x48 cutout: tens of seconds, long enough to kill the batch in the middle
    files = [GOOD] * 600
    return _mogviewer("fit", *files, "--csv", tmp_path / "long.csv", "--quiet", "--workers",
                      workers, env=_env())


def _wait_for_workers(proc, n, timeout=90):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        # the pool's workers (and the resource tracker, also a child, also to end)
        kids = [k for k in _children(proc.pid) if _alive(k)]
        if len(kids) >= n and tmp_path_rows(proc):
            return kids
        time.sleep(0.2)
    raise AssertionError("the workers did not start")


def tmp_path_rows(proc):
    out = Path(proc.args[proc.args.index("--csv") + 1])
    try:
        return len(_rows(out))
    except (OSError, csv.Error):
        return 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_parent(tmp_path, sig):
    proc = _start_long_batch(tmp_path, 2)
    try:
        kids = _wait_for_workers(proc, 2)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
        # the workers poll their parent twice a second (and get SIGKILL from the kernel on
        # Linux): 10 s is ample on a loaded machine
        t0 = time.monotonic()
        while any(_alive(k) for k in kids) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)], "worker processes outlived their parent"
        if sig == signal.SIGTERM:
            assert proc.returncode == 143 and "Traceback" not in err, err
            rows = _rows(tmp_path / "long.csv")  # a valid CSV with the rows done so far
            assert 0 < len(rows) < 600
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mogviewer-")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for k in _children(proc.pid):
            os.kill(k, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_of_a_one_process_batch_keeps_rows_and_leaves_no_temporaries(tmp_path):
    proc = _start_long_batch(tmp_path, 1)
    try:
        t0 = time.monotonic()
        while tmp_path_rows(proc) == 0 and time.monotonic() - t0 < 90:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143 and "Traceback" not in err, err
        assert "terminated" in err
        assert 0 < len(_rows(tmp_path / "long.csv")) < 600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["long.csv",
                                                              "long.csv.columns.txt"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


_STARTUP = ("import sys; sys.stderr.write('ready\\n'); sys.stderr.flush(); "
            "from mogviewer.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("delay", [0.05, 0.3, 1.2])
def test_ctrl_c_during_start_up_prints_no_traceback(tmp_path, delay):
    # Ctrl-C reaches the whole foreground process group: parent and (spawned) workers. The
    # delays count from the moment the interpreter has started ("ready"): before that it is
    # Python's own start-up, which no program can handle, and so is the millisecond in which
    # `from mogviewer.cli import main` runs (two small modules: no handler can exist before
    # them). After it come mogviewer's imports (numba: seconds), argparse, the workers' spawn
    # and imports, the fits: all covered.
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARTUP, "fit", GOOD, GOOD, GOOD, "--csv", tmp_path / "o.csv",
         "--quiet", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env=_env())
    assert proc.stderr.readline() == "ready\n"
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if proc.returncode == -signal.SIGINT:
        # the batch was done and main() had returned (its handler restored Python's own)
        # when the signal came: the process ends by the signal, which a shell reports as
        # 130 too; the run is complete (on a fast machine the three fits take < 1.2 s)
        assert "3/3 files" in err and len(_rows(tmp_path / "o.csv")) == 3, err
    else:
        assert proc.returncode in (0, 130), err  # 0: the batch was already done


# ------------------------------------------------------------------------------------ display

@pytest.mark.skipif(sys.platform.startswith(("win", "darwin")),
                    reason="a display is always there on Windows and macOS")
def test_app_without_a_display_says_what_to_do():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    res = subprocess.run([sys.executable, "-c", "import sys; from mogviewer.cli import main; "
                          "rc = main([]); assert 'PyQt5' not in sys.modules; sys.exit(rc)"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("\n") == 1 and "needs a display" in res.stderr
    assert "xvfb-run" in res.stderr


def test_display_check_only_refuses_the_certain_case():
    from mogviewer.cli import _display_problem

    assert _display_problem({}, "linux") is not None
    assert _display_problem({"DISPLAY": ":0"}, "linux") is None
    assert _display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert _display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert _display_problem({}, "darwin") is None and _display_problem({}, "win32") is None


# ------------------------------------------------------------------------------- numba cache

def test_numba_cache_falls_back_to_a_private_directory(tmp_path):
    # a copy of the package whose render/__pycache__ is a file (so numba cannot cache beside the
    # source, as on a read-only install, even for root) and whose HOME/XDG cache is unusable
    pkg = tmp_path / "site"
    shutil.copytree(Path(mogviewer.__file__).parent, pkg / "mogviewer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (pkg / "mogviewer" / "render" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # -S and cwd: neither the editable install's .pth hook nor the checkout in the current
    # directory can win over the copy
    purelib = sysconfig.get_paths()["purelib"]
    env.update(PYTHONPATH=os.pathsep.join([str(pkg), purelib]), HOME=str(blocker / "home"),
               XDG_CACHE_HOME=str(blocker / "cache"), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code = ("import os, mogviewer; assert mogviewer.__file__.startswith(%r), mogviewer.__file__; "
            "import mogviewer.render.kernels as k; print(os.environ['NUMBA_CACHE_DIR']); "
            "print(k._geometry._cache._cache_path)") % str(pkg)
    res = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True,
                         cwd=tmp_path, text=True, timeout=300)
    assert res.returncode == 0, res.stderr  # numba said "no locator available" here before
    cache_dir, cache_path = res.stdout.split()
    assert cache_dir == str(tmp_path / "tmp" / f"mogviewer-numba-{os.getuid()}")
    assert cache_path.startswith(cache_dir)
    assert (os.stat(cache_dir).st_mode & 0o777) == 0o700


def test_numba_cache_keeps_a_users_choice(tmp_path):
    from mogviewer._numba_cache import choose_cache_dir

    assert choose_cache_dir(tmp_path / "nowhere", {"NUMBA_CACHE_DIR": "/x"}) is None
    pkg = tmp_path / "pkg"
    (pkg / "render").mkdir(parents=True)
    assert choose_cache_dir(pkg, {}) is None  # writable beside the source: numba's own choice


# ------------------------------------------------------------------------------ library input

def test_library_refuses_wrong_inputs_with_the_documented_errors(tmp_path):
    from mogviewer.fitting import FitProblem
    from mogviewer.io import read_image

    img = fits.getdata(GOOD).astype(float)
    with pytest.raises(TypeError, match="not bytes"):
        read_image(GOOD.read_bytes())
    with pytest.raises(ImageReadError, match="is 2-D, not a cube"):
        read_image(GOOD, plane=2)
    with pytest.raises(TypeError, match="segment_id must be an integer"):
        read_image(GOOD, segmap=GOOD, segment_id="abc")
    with pytest.raises(ImageReadError, match="without a segmentation map"):
        read_image(GOOD, segment_id=3)
    with pytest.raises(TypeError, match="real numeric array"):
        FitProblem.from_arrays(img + 1j)
    with pytest.raises(TypeError, match="psf must be a mogviewer Mixture"):
        FitProblem.from_arrays(img, psf="gauss")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ModelFileError, match="nested too deeply"):
        export.read_model_json(deep)
    os.mkfifo(tmp_path / "fifo.fits")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(tmp_path / "fifo.fits")
    big = np.full((8, 8), 1e300)
    with pytest.raises(ImageReadError, match="outside the range"):
        read_image(big)


# ------------------------------------------------------------------------------- atomic writes

class _Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [_Boom, KeyboardInterrupt, OSError])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, exc):
    target = tmp_path / "t.txt"
    target.write_text("old")

    def write(f):
        f.write("half")
        raise exc("simulated")

    with pytest.raises(ExportError if exc is OSError else exc):
        _atomic_write(target, write, what="test file")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_a_name_of_255_bytes_can_be_written(tmp_path):
    name = "é" * 60 + "x" * (255 - 120 - 4) + ".csv"  # 255 bytes in UTF-8
    assert len(os.fsencode(name)) == 255
    out = export.write_csv(tmp_path / name, [{"file": "a"}])
    assert out.name == name and len(_rows(out)) == 1
    assert export.write_csv(tmp_path / name, [{"file": "b"}], append=True) == out
    assert [r["file"] for r in _rows(out)] == ["a", "b"]


def test_outputs_through_a_symlink_replace_the_file_and_keep_the_link(tmp_path):
    real = tmp_path / "real.csv"
    link = tmp_path / "link.csv"
    export.write_csv(real, [{"file": "a"}])
    link.symlink_to(real)
    export.write_csv(link, [{"file": "b"}])
    assert link.is_symlink() and [r["file"] for r in _rows(real)] == ["b"]


def test_output_check_names_the_input(tmp_path):
    img = tmp_path / "img.fits"
    shutil.copy(GOOD, img)
    with pytest.raises(ExportError, match="it is the input file"):
        check_output_path(tmp_path / "sub" / ".." / "img.fits", "CSV", inputs=[img])


def test_cli_ctrl_c_and_errors_return_statuses(capsys):
    assert cli.main(["fit", "--help"]) == 0
    assert cli.main(["fit"]) == 2  # missing arguments: argparse's message, status 2
    assert "error" in capsys.readouterr().err


# ------------------------------------------------------------------------------ output names

def test_output_names_follow_the_stated_rule(tmp_path):
    from mogviewer.batch import FitTask, plan_outputs

    for rel in ("a/cut.fits", "a/b/cut.fits", "c/d/cut.fits", "x/g.fits", "x/g.npy",
                "x/g_2.fits", "y/other.fits"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(GOOD, tmp_path / rel)
    images = ["a/cut.fits", "a/b/cut.fits", "c/d/cut.fits", "x/g.fits", "x/g.npy", "x/g_2.fits",
              "y/other.fits", "y/other.fits"]
    tasks = [FitTask(image=str(tmp_path / i), region_dir=str(tmp_path / "reg")) for i in images]
    (tmp_path / "reg").mkdir()
    planned, renamed = plan_outputs(tasks, tmp_path / "o.csv")
    # rule 2: from the first directory where the paths differ; rule 3: _2, _3 in order,
    # skipping a name another input already has (x/g_2.fits is itself "g_2")
    assert [t.output_name for t in planned] == [
        "a__cut", "a__b__cut", "c__d__cut", "g", "g_3", "g_2", "other", "other_2"]
    assert {Path(i).name for i, _ in renamed} == {"cut.fits", "g.npy", "other.fits"}
    paths = [p for t in planned for p, _ in t.output_files()]
    assert len(set(paths)) == len(paths)
    # rule 4: an output that is an input stops the batch, naming both
    shutil.copy(GOOD, tmp_path / "reg" / "g.reg")
    with pytest.raises(ExportError, match="it is the input file"):
        plan_outputs(tasks + [FitTask(image=str(tmp_path / "reg" / "g.reg"))], None)


def test_read_psf_refuses_a_fifo_and_broken_json(tmp_path):
    from mogviewer.errors import PsfError
    from mogviewer.psf import read_psf

    os.mkfifo(tmp_path / "psf.fits")
    with pytest.raises(PsfError, match="not a regular file"):
        read_psf(tmp_path / "psf.fits")
    (tmp_path / "l1.json").write_bytes(b'{"amps": [1.0], "note": "caf\xe9"}')
    with pytest.raises(PsfError, match="not UTF-8"):
        read_psf(tmp_path / "l1.json")
