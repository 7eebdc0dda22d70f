"""The session state (mogviewer/gui/state.py) works without Qt: its checks (state_checks.py) run
in a subprocess where PyQt5, PyQt6, PySide and pyqtgraph cannot be imported."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

BLOCKED = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'pyqtgraph', 'qtpy'):
            raise ImportError(f'Qt is blocked in this test: {name}')
        return None
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
exec(sys.argv[2])
"""


def run_blocked(code):
    return subprocess.run([sys.executable, "-c", BLOCKED, str(HERE), code],
                          capture_output=True, text=True, timeout=300)


def test_state_works_without_qt():
    # state_checks.main() ends by checking that no PyQt5 / pyqtgraph module was imported
    res = run_blocked("import state_checks; state_checks.main()")
    assert res.returncode == 0, res.stderr
    assert "state checks ok" in res.stdout


def test_the_blocker_blocks_the_views():
    # guard against a test that cannot fail: the views need Qt, so under the blocker they fail
    res = run_blocked("import mogviewer.gui.panels")
    assert res.returncode != 0 and "Qt is blocked" in res.stderr
