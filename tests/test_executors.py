"""Executors: a killed worker loses and repeats no row; manifests read right.

The Dask side (a real two-worker LocalCluster, one of its workers SIGKILLed mid-run, the same
rows as in one process) is tests/test_catalog.py's simulated-field test."""

import os
import signal

import pytest

from mogviewer.batch import FitTask
from mogviewer.io.manifest import read_manifest

DATA = "tests/data/real/imfit-sdss"


def test_manifest_rows_resolve_paths_and_ids(tmp_path):
    m = tmp_path / "objects.csv"
    sub = tmp_path / "cut"
    sub.mkdir()
    m.write_text("id,image,noise,x,y,profile,M\n"
                 "gal-1,cut/a.fits,cut/a_sig.fits,31.5,30.2,exp,6\n"
                 "gal-2,/abs/b.fits,,,,dev,\n")
    rows = read_manifest(m, fields={f for f in FitTask.__dataclass_fields__})
    assert [r[0] for r in rows] == ["gal-1", "gal-2"]
    a, b = rows[0][1], rows[1][1]
    assert a["image"] == str(sub / "a.fits") and a["noise"] == str(sub / "a_sig.fits")
    assert a["centre"] == (31.5, 30.2) and a["M"] == 6 and a["profile"] == "exp"
    assert b["image"] == "/abs/b.fits" and "noise" not in b and "centre" not in b
    assert "M" not in b                                            # empty: the CLI's default
    FitTask(**a)                                                   # a valid task


@pytest.mark.parametrize("text,message", [
    ("image,colour\na.fits,red\n", "unknown column"),
    ("noise\nn.fits\n", "no 'image' column"),
    ("id,image\n1,a.fits\n1,b.fits\n", "repeats"),
    ("image,x\na.fits,3\n", "both x and y"),
    ("image,M\na.fits,six\n", "not an integer"),
])
def test_manifest_errors_name_row_and_column(tmp_path, text, message):
    from mogviewer.errors import UserError
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(UserError, match=message):
        read_manifest(m, fields={f for f in FitTask.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------
# a worker killed in the middle of a batch: every object written exactly once
# ---------------------------------------------------------------------------------------------

def _id_tasks(n=10):
    profiles = [("exp", 6), ("dev", 8), ("lux", 6)]
    return [FitTask(image=f"{DATA}/ic3478rss_64x64.fits",
                    noise=f"{DATA}/ic3478rss_64x64_sigma.fits", profile=profiles[i % 3][0],
                    M=profiles[i % 3][1], object_id=f"o{i}") for i in range(n)]


def _ids_in(csv_path):
    import csv
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["object_id"] for r in rows], [r["status"] for r in rows]


def _kill_once(pick):
    """A progress callback that SIGKILLs one worker process (chosen by ``pick()``) when the
    first row arrives; ``killed`` holds its pid."""
    killed = []

    def progress(done, total, row):
        if not killed:
            pid = pick()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return progress, killed


def test_killing_a_pool_worker_mid_batch_loses_and_repeats_no_row(tmp_path):
    import multiprocessing

    from mogviewer.batch import run_batch
    progress, killed = _kill_once(lambda: multiprocessing.active_children()[0].pid)
    out = tmp_path / "k.csv"
    s = run_batch(_id_tasks(), out, workers=2, progress=progress, flush_interval=0)
    ids, status = _ids_in(out)
    assert killed                                             # a worker really was killed
    assert sorted(ids) == sorted(f"o{i}" for i in range(10))   # every object, once
    assert "failed" not in status and s.failed == 0           # its jobs were rerun, not lost
