"""Compiling the kernels ahead (`mogviewer compile`, :func:`mogviewer.render.warmup` with
``jobs``): the work split into tasks that fresh processes can run, and the command line's
report. The cold compile itself (about 45 s with two processes, 85 s with one) is measured by
`make test` on a fresh clone, which runs `mogviewer compile --jobs 2` first."""

import concurrent.futures as cf
import multiprocessing as mp
import threading
import time

import pytest

import mogviewer.fitting  # noqa: F401  (registers the fit driver's kernels)
import mogviewer.psf  # noqa: F401  (registers the PSF fit's kernels)
from mogviewer.cli import main
from mogviewer.render import compile_status, warm


def test_tasks_cover_the_renderer_and_every_registered_layer():
    names = [name for name, _ in warm.warm_tasks()]
    assert names[0] == warm.RENDERER
    assert sorted(names[1:]) == sorted(warm._REGISTERED)
    assert names[1] == "fit loop"           # the longest layer first, so it starts first
    # every task's module is where its warm function lives (what a fresh process imports)
    for name, module in warm.warm_tasks()[1:]:
        assert warm._REGISTERED[name][0].__module__ == module


def test_every_task_runs_in_a_fresh_process():
    """A spawned process has imported nothing: each task's module must register it there."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        done = [pool.submit(warm._run_task, name, module).result()
                for name, module in warm.warm_tasks()]
    assert done == [name for name, _ in warm.warm_tasks()]


def test_a_failing_task_fails_the_warmup(monkeypatch):
    monkeypatch.setattr(warm, "warm_tasks", lambda: [("no such layer", warm.__name__)])
    with pytest.raises(RuntimeError, match="failed in a worker process: KeyError: 'no such layer'"):
        warm._compile_in_processes(2)
    assert warm._PROCS == []


@pytest.mark.parametrize("ready", [False, True])
def test_processes_only_when_something_needs_compiling(monkeypatch, ready):
    from mogviewer.render import status
    calls = []
    monkeypatch.setattr(status, "kernels_ready", lambda: ready)
    monkeypatch.setattr(warm, "_compile_in_processes", lambda jobs: calls.append(jobs) or True)
    monkeypatch.setitem(warm._warm, "done", False)
    warm.warmup(jobs=3)
    assert calls == ([] if ready else [3])
    assert warm._warm["done"]
    calls.clear()
    monkeypatch.setitem(warm._warm, "done", False)
    warm.warmup()                            # one job: never a process
    assert calls == []


def test_compile_command_lists_every_kernel(capsys):
    assert main(["compile", "--jobs", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    states = compile_status()["kernels"]
    listed = {line.split("  ")[1].strip(): line.split()[-1] for line in out[:-1]}
    assert set(listed) == set(states)
    assert all(v in ("compiled", "cached") for v in listed.values())
    assert out[-1].startswith("kernels ")
    assert main(["compile", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_compile_command_rejects_a_bad_job_count(capsys):
    assert main(["compile", "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_shares_put_the_renderer_alone_and_deal_the_rest():
    t = [("r", "m"), ("a", "m"), ("b", "m"), ("c", "m")]
    assert warm._shares(t, 1) == [t]
    assert warm._shares(t, 2) == [t[:1], t[1:]]
    assert warm._shares(t, 3) == [t[:1], [t[1], t[3]], [t[2]]]
    assert warm._shares(t, 9) == [[x] for x in t]


def test_cancel_ends_the_compiling_processes(monkeypatch):
    """An app closed during its first start: its compiling processes end at once, and the
    warm-up returns without calling the kernels ready."""
    monkeypatch.setattr(warm, "warm_tasks", lambda: [("slow test layer", "_slow_warm")])
    monkeypatch.setattr(warm, "_CANCELLED", threading.Event())
    out = []
    th = threading.Thread(target=lambda: out.append(warm._compile_in_processes(2)), daemon=True)
    th.start()
    t0 = time.monotonic()
    while not warm._PROCS:
        assert time.monotonic() - t0 < 30, "no compiling process started"
        time.sleep(0.05)
    procs = list(warm._PROCS)
    time.sleep(1.0)                          # the task is running (a minute's sleep)
    assert all(p.poll() is None for p in procs)
    warm.cancel_compiling()
    th.join(10)
    assert not th.is_alive() and out == [False]
    assert warm._PROCS == [] and all(p.poll() is not None for p in procs)
