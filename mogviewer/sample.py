"""The sample data shipped with mogviewer (``sample_data/`` in the repository).

The directory sits at the top of the repository and is installed as the package
``mogviewer.sample_data`` (see ``pyproject.toml``), so an editable install, a wheel and a plain
checkout on ``sys.path`` all find it. ``$MOGVIEWER_SAMPLE_DATA`` points elsewhere if set.
Provenance and credits: ``sample_data/README.md``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["sample_root", "sample_dir", "resource", "SAMPLES"]

#: The samples: name -> (image, mask, PSF) file names in the sample's directory (None: absent).
SAMPLES = {
    "ic3478": ("ic3478rss_256.fits", "ic3478rss_256_mask.fits", "psf_moffat_51.fits"),
    "hsc_gal2": ("gal2_im.npy", "gal2_mask.npy", "gal2_psf.npy"),
}


def _installed_or_repo(package, repo_dir):
    """Where a top-level data directory is: inside the installed package (a wheel) or beside
    the package in the repository (a checkout or an editable install)."""
    try:   # a data directory has no __init__.py: a namespace package with search locations
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:   # not installed as a package: a checkout or editable install
        spec = None
    out = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    out.append(Path(__file__).resolve().parents[1] / repo_dir)
    return out


def sample_root():
    """The directory holding the samples, or None where none is installed."""
    env = os.environ.get("MOGVIEWER_SAMPLE_DATA")
    candidates = ([Path(env)] if env else []) + _installed_or_repo("mogviewer.sample_data",
                                                                   "sample_data")
    for c in candidates:
        if (c / "README.md").is_file():
            return c
    return None


def resource(name):
    """The path of file ``name`` of ``resources/`` (icons, style sheet), or None."""
    for c in _installed_or_repo("mogviewer.resources", "resources"):
        if (c / name).is_file():
            return c / name
    return None


def sample_dir(name="ic3478"):
    """The directory of sample ``name`` if its image is there, else None."""
    root = sample_root()
    if root is None:
        return None
    d = root / name
    return d if (d / SAMPLES[name][0]).is_file() else None
