"""Model JSON files: a fit's parameters and settings, to restart from (``--start``) or share.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .. import __version__
from ..errors import ModelFileError
from ..fitting import FitResult, GalaxyParams
from ..mixture import Mixture
from ..render.exact import ExactPsf
from .columns import CONVENTIONS
from .conventions import flag_names, pa_galfit
from .files import _atomic_write

# ---------------------------------------------------------------------------------------------
# JSON model
# ---------------------------------------------------------------------------------------------

#: The ``format`` entry of a model JSON file.
MODEL_FORMAT = "mogviewer-model"


@dataclasses.dataclass(frozen=True, eq=False)
class SavedModel:
    """What :func:`read_model_json` returns.

    Attributes
    ----------
    params : GalaxyParams
    profile : str
    M : int
    n : float or None
    sky : {'none', 'constant', 'plane'}
    psf : Mixture, ExactPsf or None
        The PSF used: its mixture (pixel-convolved, pixels), or, when the file holds the stamp
        (a model fitted in exact-PSF mode), the stamp used exactly
        (:class:`~mogviewer.render.exact.ExactPsf`, the same mixture and residual as the fit's),
        or None.
    psf_mode : {'exact', 'mixture', 'pixel'} or None
        How the fit used the PSF (None in files written before it was recorded): the stamp
        itself, its mixture only, or no PSF (the pixel).
    free : tuple of str or None
    errors : dict or None
        ``{name: 1-sigma}`` when the file came from a fit (None = undefined).
    meta : dict
        Everything else in the file (fit statistics, conventions, source file...).
    """

    params: GalaxyParams
    profile: str
    M: int
    n: float | None = None
    sky: str = "constant"
    psf: Mixture | ExactPsf | None = None
    free: tuple | None = None
    errors: dict | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    psf_mode: str | None = None


#: Largest PSF stamp a model file may hold (pixels per side): a PSF stamp is tens of pixels.
MAX_STAMP_SIDE = 512


def _psf_mode(psf, problem):
    if problem is not None and getattr(problem, "psf", None) is psf:
        return problem.psf_mode
    if psf is None:
        return "pixel"
    return "exact" if isinstance(psf, ExactPsf) else "mixture"


def _stamp_doc(psf):
    """The stamp of an :class:`ExactPsf` as JSON: rows of its unit-sum pixels (``null`` where
    masked) and the PSF origin in stamp pixels (0-based ``x, y``)."""
    rows = [[float(v) if ok else None for v, ok in zip(r, g)]
            for r, g in zip(psf.stamp, psf.valid)]
    return {"pixels": rows, "centre": [float(psf.centre[0]), float(psf.centre[1])],
            "normalisation": "unit sum (masked pixels null)",
            "origin": "centre: the PSF origin (0, 0) in 0-based stamp pixels (x, y)"}


def _read_stamp(doc, mix):
    """An :class:`ExactPsf` from :func:`_stamp_doc`'s entry and the file's mixture."""
    import numpy as np

    if mix is None:
        raise ValueError("'psf_stamp' needs the 'psf' mixture beside it")
    if not isinstance(doc, dict):
        raise TypeError("'psf_stamp' must be an object with 'pixels' and 'centre'")
    rows = doc.get("pixels")
    if (not isinstance(rows, list) or not rows or len(rows) > MAX_STAMP_SIDE
            or not all(isinstance(r, list) for r in rows)
            or len({len(r) for r in rows}) != 1 or not 0 < len(rows[0]) <= MAX_STAMP_SIDE):
        raise ValueError(f"'psf_stamp' pixels must be a rectangular list of rows of at most "
                         f"{MAX_STAMP_SIDE} x {MAX_STAMP_SIDE} numbers")
    for r in rows:
        for v in r:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v)):
                raise ValueError(f"'psf_stamp' pixel {v!r} is not a finite number or null")
    stamp = np.array([[np.nan if v is None else float(v) for v in r] for r in rows])
    centre = doc.get("centre")
    if (not isinstance(centre, list) or len(centre) != 2
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                       and math.isfinite(c) for c in centre)):
        raise ValueError("'psf_stamp' centre must be two finite numbers (x, y)")
    return ExactPsf(mix, stamp, (float(centre[0]), float(centre[1])))


def _jnum(v):
    v = float(v)
    return v if math.isfinite(v) else None


def write_model_json(path, model, *, problem=None, profile=None, M=None, n=None, psf=None,
                     sky=None, source=None, scale_errors=False):
    """Write a re-loadable JSON model file (atomic).

    Parameters
    ----------
    path : str or Path
    model : FitResult or GalaxyParams
        A fit result (parameters, errors and fit statistics are saved) or bare parameters (the
        GUI's current ellipse); with bare parameters ``profile`` and ``M`` are required.
    problem : FitProblem, optional
        Supplies the PSF (and how it was used) and the sky model.
    profile, M, n, psf, sky : optional
        Override what ``model``/``problem`` say.
    source : str, optional
        The image file the model belongs to (informative).

    The file holds ``format`` (:data:`MODEL_FORMAT`), ``version``, ``profile``, ``M``, ``n``,
    ``sky``, ``params`` (0-based x, y; ``angle`` CCW from +x, degrees; ``re`` pixels),
    ``derived`` (``x_fits``, ``y_fits``, ``pa_galfit_deg``), ``errors``, ``free``, ``fit``,
    ``psf`` (``amps``, ``means`` [pix], ``covs`` [pix^2]), ``psf_mode`` (``exact``, ``mixture``
    or ``pixel``: how the fit used the PSF), in exact mode ``psf_stamp`` (the stamp itself,
    unit sum, and its origin: a model restarts in exact mode with no PSF file) and
    ``conventions``. Floats are written with ``repr`` precision, so :func:`read_model_json`
    restores them exactly.
    """

    result = model if isinstance(model, FitResult) else None
    params = result.params if result is not None else model
    if not isinstance(params, GalaxyParams):
        raise TypeError(f"model must be a FitResult or GalaxyParams, not {type(model).__name__}")
    profile = profile or (result.profile if result else problem.profile if problem else None)
    M = M or (result.M if result else problem.M if problem else None)
    if n is None:
        n = result.n if result else (problem.n if problem else None)
    if psf is None and problem is not None:
        psf = problem.psf
    psf_mode = _psf_mode(psf, problem)
    if sky is None:
        sky = problem.sky if problem is not None else "constant"
    if profile is None or M is None:
        raise ValueError("profile and M are required when saving bare parameters")
    doc = {
        "format": MODEL_FORMAT, "version": 1, "mogviewer_version": __version__,
        "source": None if source is None else str(source),
        "profile": profile, "M": int(M), "n": None if n is None else float(n), "sky": sky,
        "params": params.as_dict(),
        "derived": {"x_fits": params.x + 1, "y_fits": params.y + 1,
                    "pa_galfit_deg": pa_galfit(params.angle)},
        "psf": None if psf is None else {
            "amps": [float(a) for a in psf.amps],
            "means": [[float(v) for v in m] for m in psf.means],
            "covs": [[[float(v) for v in r] for r in c] for c in psf.covs]},
        "psf_mode": psf_mode,
        "conventions": CONVENTIONS,
    }
    if psf_mode == "exact" and isinstance(psf, ExactPsf):
        doc["psf_stamp"] = _stamp_doc(psf)
    if result is not None:
        doc["free"] = list(result.free)
        doc["errors"] = {k: _jnum(v) for k, v in result.errors(scaled=scale_errors).items()}
        doc["errors_scaled"] = bool(scale_errors)
        doc["fit"] = {"status": result.status, "flags": int(result.flags),
                      "flag_names": flag_names(result.flags), "chi2": _jnum(result.chi2),
                      "nu": int(result.nu), "chi2_nu": _jnum(result.chi2_nu),
                      "flux_fraction": float(result.flux_fraction)}
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    return _atomic_write(path, lambda f: f.write(text), what="model file")


#: Largest model file read (bytes): a model is a few kB; this bounds what a wrong file costs.
MAX_MODEL_BYTES = 16 * 2 ** 20


def read_model_json(path):
    """Read a file written by :func:`write_model_json`.

    Returns
    -------
    SavedModel

    Raises
    ------
    ModelFileError
        Not a regular file, larger than :data:`MAX_MODEL_BYTES`, not UTF-8 JSON, nested too
        deeply, not a mogviewer model file, or invalid contents: an unknown profile, an M with no
        table, an unknown sky model, non-finite parameters (the message names the file).
    FileNotFoundError
    """
    import os
    import stat

    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path}: not a regular file (a directory, FIFO or device); a "
                             "model file is a JSON file")
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelFileError(f"{path}: {st.st_size / 2 ** 20:.0f} MB is far too large for a "
                             "model JSON file (a few kB); is it the right file?")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_MODEL_BYTES + 1)
        doc = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise ModelFileError(f"{path}: not a readable JSON model file (not UTF-8 text)") \
            from None
    except RecursionError:
        raise ModelFileError(f"{path}: not a mogviewer model file (JSON nested too deeply)") \
            from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable JSON model file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a mogviewer model file (format must be "
                             f"{MODEL_FORMAT!r})")
    from ..profiles import PROFILES, available

    profile = doc.get("profile")
    if profile not in PROFILES:
        raise ModelFileError(f"{path}: unknown profile {profile!r}; a model file's profile is "
                             f"one of {', '.join(PROFILES)}")
    M = doc.get("M")
    if isinstance(M, bool) or not isinstance(M, int) or M not in available(profile):
        raise ModelFileError(f"{path}: M = {M!r} has no {profile} table; valid M: "
                             f"{', '.join(map(str, available(profile)))}")
    sky = doc.get("sky", "constant")
    if sky not in ("none", "constant", "plane"):
        raise ModelFileError(f"{path}: sky {sky!r} is not a sky model; use none, constant or "
                             "plane")
    n = doc.get("n")
    if profile == "ser" and not (isinstance(n, (int, float)) and not isinstance(n, bool)
                                 and math.isfinite(n)):
        raise ModelFileError(f"{path}: profile 'ser' needs a finite Sérsic index n, got {n!r}")
    try:
        if not isinstance(doc.get("params"), dict):
            raise TypeError("'params' must be an object of parameter values")
        for k, v in doc["params"].items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"parameter {k} = {v!r} is not a finite number")
        params = GalaxyParams(**doc["params"])
        psf = doc.get("psf")
        mix = None if psf is None else Mixture(psf["amps"], psf["means"], psf["covs"])
        mode = doc.get("psf_mode")
        if mode not in (None, "exact", "mixture", "pixel"):
            raise ValueError(f"psf_mode {mode!r} is not exact, mixture or pixel")
        if mode == "exact":
            if doc.get("psf_stamp") is None:
                raise ValueError("psf_mode is exact but the file holds no 'psf_stamp'")
            mix = _read_stamp(doc["psf_stamp"], mix)
        meta = {k: v for k, v in doc.items()
                if k not in ("params", "psf", "profile", "M", "n", "sky", "free", "errors",
                             "psf_mode", "psf_stamp")}
        return SavedModel(params=params, profile=str(profile), M=int(M),
                          n=None if n is None else float(n), sky=sky, psf=mix,
                          free=None if doc.get("free") is None else tuple(doc["free"]),
                          errors=doc.get("errors"), meta=meta, psf_mode=mode)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model file ({exc})") from None
