"""The pool's fork server is started before the command line's own imports (issue 19: its
imports and kernel loading then overlap the parent's); a command that ends before its pool
stops it, instead of leaving it to finish its imports (or a first run's compiling) alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data" / "real" / "imfit-sdss"

_SCRIPT = """
import json, sys
from multiprocessing import forkserver
from mogviewer.cli import main
rc = main(sys.argv[1:])
print(json.dumps(dict(rc=rc, server=getattr(forkserver._forkserver, "_forkserver_pid", None))))
"""


def _run(args):
    env = dict(os.environ, MOGVIEWER_START_METHOD="forkserver")
    p = subprocess.run([sys.executable, "-c", _SCRIPT, *args], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_a_command_refused_before_its_pool_stops_the_early_fork_server(tmp_path):
    out, err = _run(["fit", str(tmp_path / "none.fits"), "--workers", "2",
                     "--csv", str(tmp_path / "out.csv")])
    assert out["rc"] == 2 and "none.fits" in err
    assert out["server"] is None            # started by the command line, then stopped


def test_a_pool_run_keeps_the_server_it_used(tmp_path):
    img = str(DATA / "ic3478rss_64x64.fits")
    out, err = _run(["fit", img, img, "--workers", "2", "--csv", str(tmp_path / "out.csv"),
                     "--quiet"])
    assert out["rc"] == 0, err
    assert out["server"] is not None        # it served the pool: kept for the next one
    lines = [ln for ln in (tmp_path / "out.csv").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert len(lines) == 3                  # the header and two rows


def test_dask_options_and_their_abbreviations_start_no_pool_server(monkeypatch):
    """`--dask` / `--scheduler` (or `--da`, `--sched`: argparse takes abbreviations) use Dask,
    not the local pool: no fork server for it; `--workers 2` alone, or with `--scale-errors`,
    starts one."""
    import mogviewer.batch.executors as ex
    import mogviewer.cli as cli

    started = []
    monkeypatch.setattr(ex, "prestart", lambda: started.append(True))
    cases = ((["--dask"], False), (["--da"], False), (["--sched", "tcp://h:1"], False),
             (["--scheduler=tcp://h:1"], False), ([], True), (["--scale-errors"], True))
    for args, expected in cases:
        started.clear()
        cli._prestart_pool(["fit", "a.fits", "--workers", "2", *args])
        assert bool(started) is expected, args
    started.clear()
    cli._prestart_pool(["fit", "a.fits", "--workers=1"])
    assert not started
