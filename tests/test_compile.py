"""Compiling the kernels ahead (`mogviewer compile`, :func:`mogviewer.render.warmup` with
``jobs``): the work split into tasks that fresh processes can run, and the command line's
report. The cold compile itself (about 45 s with two processes, 85 s with one) is measured by
`make test` on a fresh clone, which runs `mogviewer compile --jobs 2` first."""

import concurrent.futures as cf
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import pytest

import mogviewer.fitting  # noqa: F401  (registers the fit driver's kernels)
import mogviewer.psf  # noqa: F401  (registers the PSF fit's kernels)
from mogviewer.cli import main
from mogviewer.render import compile_status, warm


@pytest.fixture(autouse=True)
def fresh_cancel_flag(monkeypatch):
    """Each test its own cancel flag: a window closed by an earlier test in this process
    (MainWindow.closeEvent cancels any compiling) leaves the module's flag set, and
    _compile_in_processes, called here directly, not through warmup(), would see it."""
    monkeypatch.setattr(warm, "_CANCELLED", threading.Event())


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


def _slow_task(monkeypatch, tmp_path):
    """warm_tasks() as one task that creates a marker file, then sleeps a minute."""
    marker = tmp_path / "slow-task-running"
    monkeypatch.setenv("MOGVIEWER_TEST_SLOW_MARKER", str(marker))
    monkeypatch.setattr(warm, "warm_tasks", lambda: [("slow test layer", "_slow_warm")])
    return marker


def _wait_for(path, what):
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < 60, what
        time.sleep(0.05)


def test_cancel_ends_the_compiling_processes(monkeypatch, tmp_path):
    """An app closed during its first start: its compiling processes end at once, and the
    warm-up returns without calling the kernels ready."""
    marker = _slow_task(monkeypatch, tmp_path)
    out = []
    th = threading.Thread(target=lambda: out.append(warm._compile_in_processes(2)), daemon=True)
    th.start()
    _wait_for(marker, "the compiling process never reached its task")
    procs = list(warm._PROCS)
    assert procs and all(p.poll() is None for p in procs)
    warm.cancel_compiling()
    th.join(10)
    assert not th.is_alive() and out == [False]
    assert warm._PROCS == [] and all(p.poll() is not None for p in procs)


def test_a_cancel_does_not_stop_a_later_warmup(monkeypatch):
    from mogviewer.render import status
    warm.cancel_compiling()                  # an earlier app's quit, say
    seen = []
    monkeypatch.setattr(status, "kernels_ready", lambda: False)
    monkeypatch.setattr(warm, "_compile_in_processes",
                        lambda jobs: seen.append(warm._CANCELLED.is_set()) or True)
    monkeypatch.setitem(warm._warm, "done", False)
    warm.warmup(jobs=2)
    assert seen == [False] and warm._warm["done"]


def test_a_failing_process_falls_back_to_compiling_here(monkeypatch):
    from mogviewer.render import status
    monkeypatch.setattr(status, "kernels_ready", lambda: False)
    monkeypatch.setattr(warm, "warm_tasks", lambda: [("no such layer", warm.__name__)])
    monkeypatch.setitem(warm._warm, "done", False)
    with pytest.warns(RuntimeWarning, match="KeyError.*compiling in this process instead"):
        warm.warmup(jobs=2)
    assert warm._warm["done"] and warm._PROCS == []


def test_the_child_ignores_a_mogviewer_in_the_working_directory(monkeypatch, tmp_path):
    """``python -c`` puts the working directory first on the path: a folder named mogviewer
    there was imported instead of this mogviewer (``-P`` leaves it out)."""
    fake = tmp_path / "mogviewer"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('the working directory copy')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warm, "warm_tasks", lambda: [("PSF fit (EM)", "mogviewer.psf._em")])
    assert warm._compile_in_processes(2) is True


_ORPHAN = """
import os, sys, threading, time
from mogviewer.render import warm
warm.warm_tasks = lambda: [("slow test layer", "_slow_warm")]
threading.Thread(target=warm._compile_in_processes, args=(1,), daemon=True).start()
while not os.path.exists(os.environ["MOGVIEWER_TEST_SLOW_MARKER"]):
    time.sleep(0.05)
print(warm._PROCS[0].pid, flush=True)
os._exit(0)
"""


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"     # a zombie has ended
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_a_compiling_process_ends_when_its_parent_is_gone(monkeypatch, tmp_path):
    """The processes run in a session of their own (a terminal's Ctrl-C is the parent's): when
    the parent ends without ending them (SIGKILL, os._exit), each ends itself."""
    marker = _slow_task(monkeypatch, tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path))
    p = subprocess.run([sys.executable, "-c", _ORPHAN], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert marker.exists()
    pid = int(p.stdout.split()[0])
    t0 = time.monotonic()
    while _running(pid):
        assert time.monotonic() - t0 < 10, "the orphaned compiling process still runs"
        time.sleep(0.1)


_RACER = """
import os, sys, time
from mogviewer.render import status, warm
marker, log = sys.argv[1], sys.argv[2]
status.kernels_ready = lambda: os.path.exists(marker)     # 'compiled' once one has compiled


def compile_(jobs):
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()} compiles\\n")
    time.sleep(1.5)
    open(marker, "w").close()
    return True


warm._compile_in_processes = compile_
warm._warm_renderer = lambda: None
warm._REGISTERED.clear()
warm.warmup(jobs=2)
print("done")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock (Windows: no lock, as documented)")
def test_two_processes_on_a_cold_cache_compile_once(tmp_path):
    """Two processes warming up at once (a batch's workers, the suite's, two app windows)
    each compiled the same kernels side by side; now the second waits for the first and then
    finds them compiled."""
    marker, log = tmp_path / "compiled", tmp_path / "log"
    env = dict(os.environ, TMPDIR=str(tmp_path))             # a lock file of this test's own
    ps = [subprocess.Popen([sys.executable, "-c", _RACER, str(marker), str(log)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in ps]
    assert all(p.returncode == 0 and o.strip() == "done" for p, (o, _) in zip(ps, outs)), outs
    assert len(log.read_text().splitlines()) == 1
