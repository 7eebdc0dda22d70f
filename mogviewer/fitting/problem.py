""":class:`FitProblem`: the data, weights, PSF, profile and parameters a fit works on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..ellipse import shape_matrix
from ..errors import FitError
from ..mixture import Mixture
from ..profiles import get_mixture, sersic
from ..render import render_galaxy
from ..render.exact import PIXEL_VAR, ExactPsf
from .flags import FitFlags


class _FamilyProfile:
    """Amplitudes, variances and their n-derivatives of the Sérsic family at one n (cached)."""

    def __init__(self):
        self.n = None

    def at(self, n):
        if n != self.n:
            self.amps, self.variances, self.damps, self.dvariances = \
                sersic.sersic_mixture(n)
            self.n = n
        return self
# Physical guard rails for the optimiser's trial points (a pure-noise image can send it far):
# radii 1e-3 .. 1e6 px and q >= exp(-20). Values outside never describe a galaxy in a cutout.
# q >= 1e-4 (eta <= ln 1e4): thinner components make the covariance determinant lose all its
# digits to cancellation (the renderer forms it as Cxx Cyy - Cxy^2).
_LN_R_MIN, _LN_R_MAX, _ETA_MAX = math.log(1e-3), math.log(1e6), math.log(1e4)
_Q_MIN = 1e-4
#: the Sérsic index of a problem (and so of a free fit's start) when none is given
N_START = 2.5


#: Parameters in image units (scaled with the data); the rest are pixels, degrees or numbers.
FLUX_LIKE = ("flux", "flux2", "sky", "sky_dx", "sky_dy")
#: Data whose typical magnitude lies outside this range are fitted in internal units: divided
#: by a power of two near that magnitude (exact in floating point), so that squares and inverse
#: variances stay far from overflow and underflow (issue 15). Inside it nothing is scaled and
#: results are bit for bit those of unscaled data.
SCALE_FREE_RANGE = (1e-30, 1e30)


def _median(a):
    """``np.median`` of a 1-D array (the same value: the middle one, or the mean of the middle
    two) without its generic-axis machinery, which cost more than the selection on a cutout."""
    n = a.size
    k = n // 2
    part = np.partition(a, (k - 1, k) if n % 2 == 0 else k)
    return float(part[k]) if n % 2 else float(0.5 * (part[k - 1] + part[k]))


def _data_scale(image, noise):
    """The power of two by which ``image`` and its noise are divided inside a problem (1.0 for
    data of ordinary magnitude). ``noise``: ``(kind, array)`` or None. The typical magnitude is
    the median noise sigma when a noise array is given, else the median non-zero |pixel|."""
    typical = None
    lo, hi = SCALE_FREE_RANGE
    if noise is not None:
        kind, arr = noise
        with np.errstate(all="ignore"):
            a = np.asarray(arr, dtype=float)
            a = a[np.isfinite(a) & (a > 0)]
            if a.size:
                # the median lies between the extremes and the typical value is monotonic in
                # it: extremes whose typical values are in range decide without the median
                # (a cutout's usual case; the median was a third of building its problem)
                ends = [_typical(kind, float(v)) for v in (a.min(), a.max())]
                if None not in ends and all(lo <= t <= hi for t in ends):
                    return 1.0
                typical = _typical(kind, _median(a))
    if typical is None or not (math.isfinite(typical) and typical > 0):
        a = np.abs(image[np.isfinite(image) & (image != 0)])
        if a.size and lo <= float(a.min()) and float(a.max()) <= hi:
            return 1.0                      # (as above: the median is between them)
        typical = _median(a) if a.size else 1.0
    if lo <= typical <= hi or not (math.isfinite(typical) and typical > 0):
        return 1.0
    return 2.0 ** round(math.log2(typical))


def _typical(kind, med):
    """The typical noise sigma for the median ``med`` of a noise map of ``kind`` (None if
    undefined); monotonic in ``med``."""
    if kind == "sigma":
        return med
    if kind == "variance":
        return math.sqrt(med)
    return 1.0 / math.sqrt(med) if med > 0 else None          # ivar, weight


def _scaled_noise(noise, scale):
    """The noise array in internal units (data divided by ``scale``)."""
    kind, arr = noise
    arr = np.asarray(arr, dtype=float)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if kind == "sigma":
            return kind, arr / scale
        if kind == "variance":
            return kind, arr / scale / scale
        return kind, arr * scale * scale


def _weights_from(image, ivar, variance, sigma, weight, mask):
    given = [(n, a) for n, a in (("ivar", ivar), ("variance", variance), ("sigma", sigma),
                                 ("weight", weight)) if a is not None]
    if len(given) > 1:
        raise FitError("give only one of ivar, variance, sigma, weight "
                       f"(got {', '.join(n for n, _ in given)})")
    if not given:
        w = np.ones(image.shape)
    else:
        kind, arr = given[0]
        arr = np.asarray(arr, dtype=float)
        if arr.shape != image.shape:
            raise FitError(f"{kind} map shape {arr.shape} differs from the image's {image.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind in ("ivar", "weight"):
                w = arr.copy()
            elif kind == "variance":
                w = 1.0 / arr
            else:
                w = 1.0 / (arr * arr)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    w[~np.isfinite(image)] = 0.0
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise FitError(f"mask shape {mask.shape} differs from the image's {image.shape}")
        w[mask.astype(bool)] = 0.0
    return w


@dataclass(frozen=True, eq=False)
class FitProblem:
    """What to fit: data, weights, PSF, profile, free parameters and bounds.

    Build with :meth:`from_arrays` (or :meth:`from_image_data`); the caller's arrays are copied
    and never modified.

    Attributes
    ----------
    image : ndarray (ny, nx)
        Data with non-finite pixels set to 0 (they have zero weight).
    weights : ndarray (ny, nx)
        ``1/sigma^2``; 0 for masked, NaN or infinite pixels.
    psf : Mixture, ExactPsf or None
        What the renderer convolves with: a pixel-convolved PSF mixture (normalised to unit
        total here), an :class:`~mogviewer.render.exact.ExactPsf` (the stamp itself: mixture
        plus residual by FFT, unit stamp sum), or ``None``: no PSF, the model is integrated over
        the pixel (see :mod:`mogviewer.render`).
    profile, M, n :
        Profile name, number of components, Sérsic index (``'ser'`` only).
    free : tuple of str
        Free parameters, in a fixed order.
    bounds : dict
        ``name -> (lo, hi)`` in physical units; ``None`` entries or absent names are unbounded.
    sky : {'none', 'constant', 'plane'}
    scale : float
        Data of extreme magnitude (typical noise or pixel value outside
        :data:`SCALE_FREE_RANGE`, e.g. an image in units of 1e-120) are held divided by this
        power of two: :attr:`image` is ``data / scale``, :attr:`weights` are ``scale^2 /
        sigma^2``. :func:`~mogviewer.fitting.fit`, :func:`initial_guess` and
        :func:`model_image` take and return parameters in the caller's units (flux, sky x
        scale); :func:`model_image` renders in the internal units of :attr:`image`. 1.0 for
        ordinary data.
    profile2, M2 : str or None, int or None
        Second component sharing the centre (composite bulge + disk, e.g. ``profile='dev'`` with
        ``profile2='exp'``; mixtures of mixtures cost nothing extra). ``None``: one component.
    """

    image: np.ndarray
    weights: np.ndarray
    psf: Mixture | None
    profile: str
    M: int
    n: float | None = None
    free: tuple = ("flux", "x", "y", "re", "q", "angle", "sky")
    bounds: Mapping = field(default_factory=dict)
    sky: str = "constant"
    profile2: str | None = None
    M2: int | None = None
    psf_mode: str = "pixel"
    psf_info: Mapping = field(default_factory=dict)
    scale: float = 1.0

    def to_internal(self, params):
        """``params`` (the caller's image units) in the problem's internal units: image-unit
        parameters (:data:`FLUX_LIKE`) divided by :attr:`scale`."""
        if self.scale == 1.0:
            return params
        return params.replace(**{k: getattr(params, k) / self.scale for k in FLUX_LIKE})

    def to_physical(self, params):
        """Inverse of :meth:`to_internal`."""
        if self.scale == 1.0:
            return params
        return params.replace(**{k: getattr(params, k) * self.scale for k in FLUX_LIKE})

    def covariance_to_physical(self, cov, names):
        """A covariance over ``names`` in internal units, in the caller's units. Beyond about
        1e+-150 the variance of a flux is not a double (1e300 squared): it becomes inf or 0,
        while the errors of shape, centre and n stay exact."""
        if self.scale == 1.0:
            return cov
        d = np.array([self.scale if n in FLUX_LIKE else 1.0 for n in names])
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return cov * d[:, None] * d[None, :]

    @classmethod
    def from_arrays(cls, image, *, ivar=None, variance=None, sigma=None, weight=None, mask=None,
                    psf=None, profile="exp", M=None, n=None, free=None, fixed=(), bounds=None,
                    sky="constant", profile2=None, M2=None, psf_mode="auto"):
        """Build a problem from arrays (copied). One of ``ivar/variance/sigma/weight``, or none
        for unit weights; ``mask`` nonzero = excluded. ``free`` defaults to every parameter of
        the sky model; ``fixed`` removes names from it.

        ``psf`` is a :class:`~mogviewer.psf.PsfModel` (what :func:`~mogviewer.psf.read_psf`
        returns), a :class:`Mixture`, an :class:`~mogviewer.render.exact.ExactPsf` or None.
        ``psf_mode``: ``'auto'`` (default) uses the stamp itself whenever the PSF came from an
        image (stamp, .npy, PSFEx) and the mixture otherwise (Tractor/JSON mixtures, a bare
        Mixture); ``'exact'`` requires a stamp; ``'mixture'`` uses the mixture only (the
        Hogg & Lang model; a poor mixture then sets ``PSF_APPROX``)."""
        if np.asarray(image).dtype.kind not in "biuf":  # complex, strings, objects: a bug
            raise TypeError(f"image must be a real numeric array, not dtype "
                            f"{np.asarray(image).dtype}")
        if psf is not None and not (callable(getattr(psf, "normalized", None))
                                    or hasattr(psf, "mixture")):
            raise TypeError(f"psf must be a mogviewer Mixture, a PsfModel (read_psf(path), its "
                            f"stamp used exactly) or None, not {type(psf).__name__}")
        img = np.array(image, dtype=float, copy=True)
        if img.ndim != 2:
            raise FitError(f"the image must be 2-D, got shape {img.shape}")
        if min(img.shape) < 3:
            raise FitError(f"the image is too small to fit ({img.shape})")
        noise = [(k, a) for k, a in (("ivar", ivar), ("variance", variance), ("sigma", sigma),
                                     ("weight", weight)) if a is not None]
        scale = _data_scale(img, noise[0] if len(noise) == 1 else None)
        if scale != 1.0:
            img = img / scale
            if len(noise) == 1:
                k, a = _scaled_noise(noise[0], scale)
                ivar, variance, sigma, weight = (a if k == n else None
                                                 for n in ("ivar", "variance", "sigma", "weight"))
        w = _weights_from(img, ivar, variance, sigma, weight, mask)
        img[~np.isfinite(img)] = 0.0
        if profile not in ("exp", "dev", "lux", "luv", "ser"):
            raise FitError(f"unknown profile {profile!r}; choose exp, dev, lux, luv or ser")
        if profile == "ser":
            # Sérsic: the smooth family of mogviewer.profiles.sersic, any n in its range, fittable
            if M is not None and int(M) != sersic.M_FAMILY:
                raise FitError(f"the Sérsic family has M = {sersic.M_FAMILY} components; M "
                               f"cannot be chosen for profile 'ser'")
            M = sersic.M_FAMILY
            n = N_START if n is None else float(n)
            if not sersic.N_MIN <= n <= sersic.N_MAX:
                raise FitError(f"Sérsic index n = {n:g} is outside the family's range "
                               f"{sersic.N_MIN:g} <= n <= {sersic.N_MAX:g}")
        else:
            if M is None:
                M = {"exp": 6, "dev": 8, "lux": 6, "luv": 8}[profile]
            n = None
            try:
                get_mixture(profile, M, n=n)
            except ValueError as exc:
                raise FitError(str(exc)) from None
        if sky not in ("none", "constant", "plane"):
            raise FitError(f"sky must be 'none', 'constant' or 'plane', got {sky!r}")
        allp = ["flux", "x", "y", "re", "q", "angle"] + (["n"] if profile == "ser" else []) + {
            "none": [], "constant": ["sky"], "plane": ["sky", "sky_dx", "sky_dy"]}[sky]
        if profile2 is not None:
            if profile2 not in ("exp", "dev", "lux", "luv"):
                raise FitError(f"the second component's profile must be exp, dev, lux or luv, "
                               f"got {profile2!r}")
            if M2 is None:
                M2 = {"exp": 6, "dev": 8, "lux": 6, "luv": 8}[profile2]
            try:
                get_mixture(profile2, M2)
            except ValueError as exc:
                raise FitError(f"second component: {exc}") from None
            allp += ["flux2", "re2", "q2", "angle2"]
            if free is not None and not any(p.endswith("2") for p in free):
                free = list(free) + ["flux2", "re2", "q2", "angle2"]
        if free is None:
            free = list(allp)
        unknown = ((set(free) - set(allp))
                   | (set(fixed) - set(allp) - {"sky", "sky_dx", "sky_dy"}))
        if unknown:
            raise FitError(f"unknown or unavailable parameter(s): {', '.join(sorted(unknown))} "
                           f"(this model has {', '.join(allp)})")
        free = tuple(p for p in allp if p in set(free) and p not in set(fixed))
        psf, psf_mode, psf_info = _resolve_psf(psf, psf_mode)
        bounds = {k: (None if v is None else tuple(v)) for k, v in dict(bounds or {}).items()}
        if scale != 1.0:          # bounds on image-unit parameters are in the caller's units
            bounds = {k: (v if v is None or k not in FLUX_LIKE else
                          tuple(None if b is None else b / scale for b in v))
                      for k, v in bounds.items()}
        if profile == "ser":
            # never beyond the family; and just above its lower end: within ~1e-3 of n = 0.5
            # its knots crowd (the mixture collapses to one Gaussian there) and d/dn of the tiny
            # inner components is erratic
            lo, hi = bounds.get("n") or (None, None)
            bounds["n"] = (max(sersic.N_MIN + 0.01, lo if lo is not None else -np.inf),
                           min(sersic.N_MAX, hi if hi is not None else np.inf))
        for k, b in bounds.items():
            if b is None:
                continue
            if len(b) != 2:
                raise FitError(f"bounds for {k} must be (low, high), got {b!r}")
            lo, hi = b
            if lo is not None and hi is not None and not lo < hi:
                raise FitError(f"bounds for {k} must have low < high, got ({lo!r}, {hi!r}); "
                               f"to keep {k} at one value, fix it instead")
        for k in bounds:
            if k not in allp:
                raise FitError(f"bounds given for unknown parameter {k!r}")
        for a in (img, w):
            a.setflags(write=False)
        return cls(img, w, psf, profile, int(M), n, free, bounds, sky, profile2,
                   None if M2 is None else int(M2), psf_mode, psf_info, scale)

    @classmethod
    def from_image_data(cls, data, **kwargs):
        """Build from a :class:`mogviewer.io.ImageData` (image, ivar, mask)."""
        return cls.from_arrays(data.image, ivar=data.ivar, mask=data.mask, **kwargs)

    @property
    def shape(self):
        return self.image.shape

    @property
    def n_good(self):
        return int(np.count_nonzero(self.weights))

    @property
    def suffixes(self):
        """Parameter-name suffixes of the galaxy components: ``('',)`` or ``('', '2')``."""
        return ("",) if self.profile2 is None else ("", "2")

    @property
    def uses_family(self):
        """True for ``'ser'``: the smooth Sérsic family (n may be free)."""
        return self.profile == "ser"

    def profile_mixture(self, sfx="", n=None):
        """The profile's :class:`~mogviewer.profiles.ProfileMixture` (at Sérsic index ``n``, by
        default the problem's, for the family)."""
        if sfx == "2":
            return get_mixture(self.profile2, self.M2)
        if self.uses_family:
            return sersic.sersic_profile_mixture(self.n if n is None else n)
        return get_mixture(self.profile, self.M, n=self.n)


#: ``PSF_APPROX`` is set in mixture mode when the mixture's second-moment size differs from the
#: stamp's by more than this (relative; 0.1 %), when it misses more than this fraction of the
#: stamp's flux (|psf_res_flux|), or when the stamp's size is undefined (negative wings).
PSF_APPROX_TOL = 1e-3
#: ``UNDERSAMPLED``: Gaussians of the PSF-convolved model (the pixel counted) whose minor-axis
#: sigma is below this many pixels ...
UNDERSAMPLED_SIGMA = 0.5
#: ... hold more than this fraction of the galaxy's flux.
UNDERSAMPLED_FRACTION = 0.01


#: ``_resolve_psf``'s answers by PSF object (identity) and mode, the last few only: the PSF
#: objects are immutable, and a batch job or a survey cell gives one PSF to all its problems
#: (resolving it again cost 1 % of a catalogue run, and a new normalised mixture per problem
#: missed the renderer's caches). Keyed by ``id`` with the object kept beside its answer and
#: checked (an ``ExactPsf``'s answer holds the object itself, which a weak-keyed cache would
#: never free; a Mixture hashes by value, 5 us a lookup), bounded like ``_psf_terms_cache``.
_RESOLVED = {}


def _resolve_psf(psf, mode):
    """``(what the renderer takes, mode, quality figures)`` for a PSF given to a problem."""
    if mode not in ("auto", "exact", "mixture"):
        raise FitError(f"psf_mode must be 'auto', 'exact' or 'mixture', got {mode!r}")
    if psf is None:
        if mode == "exact":
            raise FitError("psf_mode='exact' needs a PSF image; no PSF was given")
        return None, "pixel", psf_quality_columns(None, "pixel")
    key = (id(psf), mode)
    hit = _RESOLVED.get(key)
    if hit is not None and hit[0] is psf:
        hit = hit[1]
    else:
        hit = _resolve_given_psf(psf, mode)
        if len(_RESOLVED) > 16:
            _RESOLVED.clear()
        _RESOLVED[key] = (psf, hit)
    target, kind, info = hit
    return target, kind, dict(info)


def _resolve_given_psf(psf, mode):
    if isinstance(psf, ExactPsf):
        exact = psf
    elif hasattr(psf, "stamp") and hasattr(psf, "mixture"):       # a PsfModel
        exact = ExactPsf.from_model(psf) if psf.stamp is not None else None
        if exact is None:
            psf = psf.mixture
    elif isinstance(psf, Mixture):
        exact = None
    else:
        raise FitError(f"psf must be a PsfModel, Mixture or ExactPsf, not {type(psf).__name__}")
    if exact is None:
        if mode == "exact":
            raise FitError("psf_mode='exact' needs a PSF image (stamp, .npy, PSFEx); this PSF "
                           "is a mixture, which is used as it is")
        mix = psf.normalized()
        return mix, "mixture", psf_quality_columns(None, "mixture", mixture=mix)
    if mode == "mixture":
        return (exact.mixture.normalized(), "mixture",
                psf_quality_columns(exact, "mixture"))
    return exact, "exact", psf_quality_columns(exact, "exact")


def psf_quality_columns(exact, mode, *, mixture=None):
    """The PSF's figures for a result row.

    ``psf_k``: Gaussians in the mixture (0 without PSF); ``psf_mode``: exact, mixture or pixel;
    ``psf_size_ratio``: second-moment size of the mixture over the stamp's,
    ``(det M_mix / det M_stamp)^(1/4)`` with unweighted moments about each one's centroid over
    the stamp's pixels (a convolution adds exactly these moments to a galaxy's), None when the
    stamp's moments are not positive definite (negative wings) or there is no stamp;
    ``psf_res_flux``: ``sum(stamp - mixture)`` with the stamp normalised to 1 (the flux the
    mixture-only model misplaces; negative when the mixture holds more than the stamp);
    ``psf_res_peak``: ``max|stamp - mixture| / max(stamp)``. The last three are None without a
    stamp, never NaN.
    """
    k = 0 if exact is None and mixture is None else len(exact.mixture if exact is not None
                                                      else mixture)
    info = dict(psf_k=k, psf_mode=mode, psf_size_ratio=None, psf_res_flux=None,
                psf_res_peak=None)
    if exact is not None:
        info.update(psf_size_ratio=exact.size_ratio, psf_res_flux=exact.res_flux,
                    psf_res_peak=exact.res_peak)
    return info


def _lam_min(cxx, cxy, cyy):
    """Smaller eigenvalue of the symmetric 2x2 matrices ``[[cxx, cxy], [cxy, cyy]]``."""
    tr = cxx + cyy
    det = cxx * cyy - cxy * cxy
    return 0.5 * tr - np.sqrt(np.maximum(0.25 * tr * tr - det, 0.0))


def _psf_terms(psf):
    """``(pxx, pxy, pyy, pa, lambda_min)`` of a PSF for :func:`psf_flags`: its mixture's
    covariances, normalised amplitudes and smallest eigenvalue (the pixel's for None), cached
    by identity (Mixtures are immutable; a batch fits many cutouts with one PSF: the numpy
    calls cost ~15 us, as much as the rest of the test)."""
    hit = _psf_terms_cache.get(id(psf))
    if hit is not None and hit[0] is psf:
        return hit[1]
    if psf is None:
        pxx = pyy = np.full(1, PIXEL_VAR)
        pxy = np.zeros(1)
        pa = np.ones(1)
    else:
        mix = psf.mixture if isinstance(psf, ExactPsf) else psf
        pc = mix.covs
        pxx, pxy, pyy = pc[:, 0, 0], pc[:, 0, 1], pc[:, 1, 1]
        pa = mix.amps / mix.amps.sum()
    for a in (pxx, pxy, pyy, pa):
        a.setflags(write=False)         # shared by every later call
    terms = (pxx, pxy, pyy, pa, float(_lam_min(pxx, pxy, pyy).min()))
    if len(_psf_terms_cache) > 16:
        _psf_terms_cache.clear()
    _psf_terms_cache[id(psf)] = (psf, terms)
    return terms


_psf_terms_cache = {}


def psf_flags(problem, params):
    """``PSF_APPROX`` and ``UNDERSAMPLED`` for ``params`` (see :class:`FitFlags`).

    ``UNDERSAMPLED``: the flux fraction of the model's Gaussians ``v_m S + C_k`` (profile
    variance ``v_m`` times the galaxy's shape ``S``, PSF covariance ``C_k``, the pixel's without
    PSF) whose smaller eigenvalue is below ``UNDERSAMPLED_SIGMA^2``. By Weyl's inequality that
    eigenvalue is at least ``v_m (q r_e)^2 + lambda_min(C_k)`` (``(q r_e)^2`` is the smaller
    eigenvalue of ``S``): when that bound clears the threshold for every pair no Gaussian is
    narrow and the per-pair eigenvalues are not computed (the usual case; the full computation
    took ~0.1 ms, a tenth of a 64 px fit).
    """
    flags = FitFlags(0)
    info = problem.psf_info
    if problem.psf_mode == "mixture" and info.get("psf_res_flux") is not None:
        ratio = info.get("psf_size_ratio")
        if (ratio is None or abs(ratio - 1.0) > PSF_APPROX_TOL
                or abs(info["psf_res_flux"]) > PSF_APPROX_TOL):
            flags |= FitFlags.PSF_APPROX
    pxx, pxy, pyy, pa, psf_min = _psf_terms(problem.psf)
    thr = UNDERSAMPLED_SIGMA ** 2
    narrow = 0.0
    for sfx in problem.suffixes:
        re, q, angle = (getattr(params, n + sfx) for n in ("re", "q", "angle"))
        prof = (sersic.sersic_profile_mixture(params.n) if sfx == "" and problem.uses_family
                else problem.profile_mixture(sfx))
        v = np.asarray(prof.variances, float)
        # a margin of 1e-9 relative: the bound must clear the threshold beyond rounding
        if float(v.min()) * (q * re) ** 2 + psf_min >= thr * (1.0 + 1e-9):
            continue
        a = np.asarray(prof.amps, float)
        a = a / a.sum()
        S = shape_matrix(re, q, angle)
        lam = _lam_min(v[:, None] * S[0, 0] + pxx[None], v[:, None] * S[0, 1] + pxy[None],
                       v[:, None] * S[1, 1] + pyy[None])                 # (M, K)
        w = np.outer(a, pa)
        narrow = max(narrow, float(w[lam < thr].sum()))
    if narrow > UNDERSAMPLED_FRACTION:
        flags |= FitFlags.UNDERSAMPLED
    return flags


def model_image(problem, params, *, out=None):
    """The model (galaxy + sky) for ``params`` (the caller's units) on the problem's grid, in
    the units of ``problem.image`` (divided by ``problem.scale``, 1 for ordinary data)."""
    p = problem.to_internal(params)
    prof = _FamilyProfile().at(p.n) if problem.uses_family else problem.profile_mixture()
    img = render_galaxy(p.flux, p.x, p.y, shape_matrix(p.re, p.q, p.angle), prof, None,
                        problem.psf, problem.shape, out=out)
    if problem.profile2 is not None:
        img = img + render_galaxy(p.flux2, p.x, p.y, shape_matrix(p.re2, p.q2, p.angle2),
                                  problem.profile_mixture("2"), None, problem.psf,
                                  problem.shape)
    return img + _sky_image(problem, p)


def _sky_image(problem, p):
    if problem.sky == "none":
        return 0.0
    if problem.sky == "constant":
        return p.sky
    ny, nx = problem.shape
    yy, xx = np.mgrid[:ny, :nx]
    return p.sky + p.sky_dx * (xx - (nx - 1) / 2) + p.sky_dy * (yy - (ny - 1) / 2)
