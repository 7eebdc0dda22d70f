"""Executors: a killed worker loses and repeats no row; manifests read right.

The Dask side (a real two-worker LocalCluster, one of its workers SIGKILLed mid-run, the same
rows as in one process) is tests/test_catalog.py's simulated-field test."""

import os
import signal

import numpy as np
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


# ---------------------------------------------------------------------------------------------
# chunks: several jobs per submit, each result yielded once, a dead worker's chunk retried
# ---------------------------------------------------------------------------------------------

def _square_or_die(job):
    """A job function for the pool: job 7 kills its worker process every time it runs."""
    if job == 7:
        os._exit(3)
    return job * job


@pytest.mark.parametrize("chunk", [1, 3, 32])
def test_pool_chunks_yield_every_job_once(chunk):
    from mogviewer.batch.executors import PoolExecutor
    ex = PoolExecutor(abs, workers=2, chunk=chunk, failed=lambda job, why: None)
    got = list(ex.map(range(-20, 0)))
    assert sorted(i for i, _ in got) == list(range(20))                 # each index, once
    assert all(r == 20 - i for i, r in got)                              # with its own result


def test_a_job_that_kills_its_worker_fails_alone_not_its_chunk():
    # chunks of 4: job 7 shares its chunk with 4, 5, 6. After the first death the chunk is
    # split and its jobs retried one by one: 4-6 succeed, 7 fails after retries + 1 deaths.
    # One chunk in flight at a time (window=1): a death breaks the whole pool, and every job
    # in flight then counts it, so with more in flight an innocent job could be blamed too
    from mogviewer.batch.executors import PoolExecutor
    ex = PoolExecutor(_square_or_die, workers=2, chunk=4, retries=1, window=1,
                      failed=lambda job, why: ("failed", job, why))
    got = dict(ex.map(range(12)))
    assert sorted(got) == list(range(12))
    assert got[7][0] == "failed" and "died 2 times" in got[7][2]
    assert all(got[i] == i * i for i in range(12) if i != 7)


def test_dask_chunks_yield_every_job_once():
    # an in-process cluster (threads: starts in a second) reached by its address, as
    # --scheduler does; chunks of 3 with a window of 2 chunks
    pytest.importorskip("dask.distributed", reason="the cluster extra is not installed")
    from dask.distributed import LocalCluster

    from mogviewer.batch.executors import DaskExecutor
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        ex = DaskExecutor(abs, scheduler=cluster.scheduler_address, chunk=3, window=2,
                          failed=lambda job, why: None)
        try:
            got = list(ex.map(range(-10, 0)))
        finally:
            ex.close()
    assert sorted(i for i, _ in got) == list(range(10))
    assert all(r == 10 - i for i, r in got)


def test_chunk_size_gives_every_worker_several_chunks():
    from mogviewer.batch.executors import chunk_size
    assert chunk_size(10, 2) == 1            # few jobs: one per submit
    assert chunk_size(1000, 2) == 32         # capped
    assert chunk_size(160, 2) == 10          # 8 chunks per worker
    assert chunk_size(0, 2) == 1             # nothing to do: still a valid size


@pytest.mark.parametrize("chunk", [3, None])
def test_killing_a_worker_with_chunked_jobs_loses_and_repeats_no_row(tmp_path, chunk):
    # one-file jobs in chunks of 3 (None: the runner's own choice, here 1 per submit): the
    # killed worker's chunk is retried and every object is written exactly once
    import multiprocessing

    from mogviewer.batch import run_batch
    progress, killed = _kill_once(lambda: multiprocessing.active_children()[0].pid)
    out = tmp_path / "k.csv"
    s = run_batch(_id_tasks(12), out, workers=2, progress=progress, flush_interval=0,
                  chunk=chunk)
    ids, status = _ids_in(out)
    assert killed
    assert sorted(ids) == sorted(f"o{i}" for i in range(12))
    assert "failed" not in status and s.failed == 0


def test_cells_are_split_in_equal_jobs_that_hold_every_source_once():
    from mogviewer.batch import FitTask, plan_cutout_jobs
    from mogviewer.io.catalog import CatalogSource
    rng = np.random.default_rng(1)
    src = [CatalogSource(id=f"s{i}", x=float(x), y=float(y), size=None)
           for i, (x, y) in enumerate(rng.uniform(0, 500, (600, 2)))]
    src += [CatalogSource(id="far", x=700.0, y=20.0, size=None)]
    jobs = plan_cutout_jobs("f.fits", src, FitTask(image="f.fits"), psf_cell=512,
                            max_per_job=256)
    assert [j.n_objects for j in jobs] == [200, 200, 200, 1]   # 600 = 3 x 200, not 256+256+88
    ids = [i for j in jobs for i in j.ids()]
    assert sorted(ids) == sorted(s.id for s in src)            # every source, once
    assert len({j.psf_position for j in jobs[:3]}) == 1        # one cell, one PSF position


@pytest.mark.slow   # a fresh interpreter, its fork server and workers: 5-15 s on 2 cores
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="psutil process tree")
def test_forked_workers_end_with_the_batch_process(tmp_path):
    # the workers are forks of the fork server, not children of the batch's process: when
    # that process is SIGKILLed, its whole tree (fork server, workers) must end
    import subprocess
    import sys
    import time

    import psutil
    code = ("import sys; sys.path.insert(0, 'tests'); import test_executors as t; "
            "from mogviewer.batch import run_batch; "
            f"run_batch(t._id_tasks(400), {str(tmp_path / 'o.csv')!r}, workers=2)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        me = psutil.Process(proc.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            tree = me.children(recursive=True)
            if sum(p.ppid() != proc.pid for p in tree) >= 2:      # two forked workers
                break
            time.sleep(0.2)
        assert sum(p.ppid() != proc.pid for p in tree) >= 2, "the workers did not start"
        proc.kill()
        proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, f"outlived the batch: {[p.cmdline()[:3] for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("kw,expected", [
    (dict(executor="dask"), 2),                            # a LocalCluster: one per job at most
    (dict(executor="processes"), 2),
    (dict(executor="dask", scheduler="tcp://127.0.0.1:1"), 8),   # a cluster of its own: as asked
])
def test_no_more_local_workers_than_jobs(monkeypatch, tmp_path, kw, expected):
    """`--dask --workers 8` on two objects started eight LocalCluster processes (44 s on two
    cores, new-user review 2026-12-04): local workers are capped at the number of jobs."""
    from mogviewer.batch import runner

    asked = {}

    class Stop(Exception):
        pass

    def fake(kind, func, *, workers, **_):
        asked["workers"] = workers
        raise Stop

    monkeypatch.setattr(runner, "make_executor", fake)
    tasks = [FitTask(image=f"{DATA}/ic3478rss_64x64.fits") for _ in range(2)]
    with pytest.raises(Stop):
        runner.run_batch(tasks, str(tmp_path / "out.csv"), workers=8, **kw)
    assert asked["workers"] == expected
