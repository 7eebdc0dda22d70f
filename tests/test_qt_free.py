"""The core runs without Qt: every module outside mogviewer/gui imports with PyQt5 and
pyqtgraph made unimportable (napari's import-contract habit)."""

import subprocess
import sys
from pathlib import Path

import mogviewer

_ROOT = Path(mogviewer.__file__).parent
#: Every module of the package outside mogviewer/gui, subpackages included (from the files, so a
#: new module cannot be missed).
CORE = sorted(
    ".".join(("mogviewer", *p.relative_to(_ROOT).with_suffix("").parts)).removesuffix(".__init__")
    for p in _ROOT.rglob("*.py")
    if p.relative_to(_ROOT).parts[0] != "gui" and p.name != "__main__.py")

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
    assert {"mogviewer.render.kernels", "mogviewer.profiles.sersic", "mogviewer.cli.fit",
            "mogviewer.errors", "mogviewer"} <= set(CORE) and len(CORE) >= 40
    res = subprocess.run([sys.executable, "-c", SCRIPT, *CORE], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"ok {len(CORE)}"


def test_the_blocker_really_blocks():
    # guard against a test that cannot fail: importing pyqtgraph under the blocker must fail
    res = subprocess.run([sys.executable, "-c", SCRIPT, "pyqtgraph"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode != 0 and "Qt is blocked" in res.stderr
