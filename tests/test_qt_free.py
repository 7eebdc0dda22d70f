"""The core runs without Qt: every module outside mogviewer/gui imports with PyQt5 and
pyqtgraph made unimportable (napari's import-contract habit)."""

import pkgutil
import subprocess
import sys

import mogviewer

CORE = sorted(m.name for m in pkgutil.iter_modules(mogviewer.__path__, "mogviewer.")
              if not m.name.startswith("mogviewer.gui") and m.name != "mogviewer.__main__")

SCRIPT = r"""
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'pyqtgraph', 'qtpy'):
            raise ImportError(f'Qt is blocked in this test: {name}')
        return None
sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
bad = [m for m in sys.modules if m.split('.')[0] in ('PyQt5', 'pyqtgraph')]
assert not bad, bad
print('ok', len(sys.argv) - 1)
"""


def test_core_modules_import_without_qt():
    assert "mogviewer.render" in CORE and "mogviewer.profiles" in CORE and len(CORE) >= 6
    res = subprocess.run([sys.executable, "-c", SCRIPT, *CORE], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"ok {len(CORE)}"


def test_the_blocker_really_blocks():
    # guard against a test that cannot fail: importing pyqtgraph under the blocker must fail
    res = subprocess.run([sys.executable, "-c", SCRIPT, "pyqtgraph"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode != 0 and "Qt is blocked" in res.stderr
