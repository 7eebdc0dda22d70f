"""Executors: serial, process pool and a real Dask LocalCluster give the same rows, once each."""

import os
import signal

import pytest

from mogviewer.batch import FitTask, run_task
from mogviewer.batch.executors import PoolExecutor, SerialExecutor
from mogviewer.io.manifest import read_manifest

DATA = "tests/data/real/imfit-sdss"


def _key(row):
    return (row["file"], row["profile"], row["status"],
            None if row["re_pix"] is None else round(row["re_pix"], 9))


def _suicide(task):
    # a worker that dies on its first attempt at the 'dev' task (a marker file says it did)
    marker = f"{task.image}.died"
    if task.profile == "dev" and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)


def test_a_dead_pool_worker_loses_no_row(tmp_path):
    import shutil
    img = tmp_path / "g.fits"
    shutil.copy(f"{DATA}/ic3478rss_64x64.fits", img)
    tasks = [FitTask(image=str(img), profile=p, M=m) for p, m in (("exp", 6), ("dev", 8))]
    rows = dict(PoolExecutor(_suicide, workers=2).map(tasks))
    assert sorted(rows) == [0, 1]
    assert rows[1]["status"] != "failed" and rows[1]["profile"] == "dev"
    assert (tmp_path / "g.fits.died").exists()                       # it really died once


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


def test_killing_a_dask_worker_mid_batch_loses_and_repeats_no_row(tmp_path):
    import psutil

    from mogviewer.batch import run_batch

    def a_dask_worker():
        # LocalCluster(processes=True): the nannies live in this process, each worker is a
        # spawned child (multiprocessing's resource tracker is a child too: not that one)
        workers = [p for p in psutil.Process().children()
                   if "spawn_main" in " ".join(p.cmdline())]
        return workers[0].pid

    progress, killed = _kill_once(a_dask_worker)
    out = tmp_path / "k.csv"
    tasks = _id_tasks() + [FitTask(image="tests/data/bad/does-not-exist.fits", object_id="bad")]
    s = run_batch(tasks, out, workers=2, executor="dask", progress=progress, flush_interval=0)
    ids, status = _ids_in(out)
    assert killed
    assert sorted(ids) == sorted([f"o{i}" for i in range(10)] + ["bad"])
    # bad data is its own failed row; the killed worker's objects were rerun, not failed
    assert [i for i, st in zip(ids, status) if st == "failed"] == ["bad"] and s.failed == 1
    # the same rows as in this process (Dask pickles tasks and rows both ways)
    serial = dict(SerialExecutor(run_task).map(tasks[:3]))
    by_id = {r["object_id"]: r for r in s.rows}
    for i in range(3):
        assert _key(by_id[f"o{i}"]) == _key(serial[i])
