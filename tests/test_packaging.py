"""Packaging: the package list in pyproject.toml, sample data in the package, the public API."""

import subprocess
import sys
import tomllib
from pathlib import Path

import mogviewer
from mogviewer import sample

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    # pyproject lists packages explicitly (sample_data/ and resources/ are mapped into the
    # package); a new subpackage missing from the list would be absent from a wheel
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "mogviewer").rglob("__init__.py")}
    assert found <= listed, found - listed
    assert conf["package-dir"] == {"mogviewer.sample_data": "sample_data",
                                   "mogviewer.resources": "resources"}


def test_sample_data_is_found_through_the_package():
    d = sample.sample_dir("ic3478")
    assert d is not None and (d / "ic3478rss_256.fits").is_file()
    assert sample.sample_dir("hsc_gal2") is not None
    assert (sample.sample_root() / "README.md").read_text().count("Credit") >= 1


def test_public_api_is_lazy_and_complete():
    # every name in mogviewer.__all__ resolves; importing mogviewer alone loads no numerics
    for name in mogviewer.__all__:
        assert getattr(mogviewer, name) is not None, name
    code = ("import sys, mogviewer; assert mogviewer.__version__; "
            "print(sorted(m for m in ('numba', 'scipy', 'astropy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert mogviewer.fit is mogviewer.fitting.fit
    # no API name shadows a subpackage or module: in a fresh process, before anything imported
    # them, 'from mogviewer import X' must give the module X (PEP 562's __getattr__ runs first)
    modules = sorted(p.stem if p.is_file() else p.name
                     for p in (ROOT / "mogviewer").iterdir()
                     if (p.suffix == ".py" or (p / "__init__.py").is_file())
                     and not p.name.startswith("_"))
    assert not set(modules) & set(mogviewer.__all__)
    code = ("import types, mogviewer\n"
            f"for m in {modules!r}:\n"
            "    exec(f'from mogviewer import {m} as x')\n"
            "    assert isinstance(x, types.ModuleType), m\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ,
                                                                  "QT_QPA_PLATFORM": "offscreen"})
