"""The command line and the app run with one BLAS thread (mogviewer._blas): BLAS's threads
made ``r @ r`` of a 256x256 image 300x slower on a busy 2-core machine (3.6 ms against 12 us),
and a library user's process is left alone."""

import subprocess
import sys

PROBE = """
import numpy  # loads BLAS
from threadpoolctl import threadpool_info, threadpool_limits
threadpool_limits(limits=2, user_api="blas")          # as on a 2-core machine at least
before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
{action}
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(before, after)
"""


def probe(action):
    out = subprocess.run([sys.executable, "-c", PROBE.format(action=action)],
                         capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.strip().splitlines()[-1].split("] [")
    return before.strip("[]"), after.strip("[]")


def test_the_command_line_limits_blas_to_one_thread():
    before, after = probe("from mogviewer.cli import main\n"
                          "main(['profiles', 'show', '--profile', 'exp', '-M', '6'])")
    assert before and set(before.split(", ")) == {"2"}   # the probe's BLAS had two threads
    assert set(after.split(", ")) == {"1"}


def test_importing_the_library_leaves_blas_alone():
    before, after = probe("import mogviewer.fitting, mogviewer.sampling")
    assert set(after.split(", ")) == {"2"}        # numpy's and scipy's BLAS


def test_the_app_limits_blas_to_one_thread():
    before, after = probe("from mogviewer.gui.app import create_app\ncreate_app(['x'])")
    assert set(after.split(", ")) == {"1"}
