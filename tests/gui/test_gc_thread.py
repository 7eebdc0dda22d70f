"""The app collects cyclic garbage in the GUI thread only (see tests/conftest.py for the crash
this prevents)."""

import subprocess
import sys

CODE = r"""
import gc, os, time, weakref
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import mogviewer.gui.app as gui_app
app = gui_app.create_app()
assert not gc.isenabled(), "the automatic collector still runs in every thread"

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a            # a cycle: only the cyclic collector frees it
alive = weakref.ref(a)
del a, b
keep = [Node() for _ in range(5000)]   # > the 700-object threshold of an automatic pass
assert alive() is not None, "collected outside the timer"
t0 = time.time()
while alive() is not None and time.time() - t0 < 10:
    app.processEvents()
    time.sleep(0.02)
assert alive() is None, "the GUI-thread collector never ran"
print("ok")
"""


def test_create_app_moves_garbage_collection_to_the_gui_thread():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
