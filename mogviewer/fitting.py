"""Fit one galaxy: flux, centre, ellipse and sky by least squares with exact derivatives.

Conventions (as everywhere in mogviewer)
----------------------------------------
* ``image[y, x]``; ``x, y`` are 0-based pixel centres (add 1 for FITS/GALFIT/imfit coordinates).
* ``re``: semi-major half-light radius of the *target* profile (pixels); ``q = b/a`` in (0, 1];
  ``angle``: degrees counter-clockwise from +x, in [0, 180) (GALFIT/imfit PA = angle - 90).
* ``flux``: total flux of the model mixture in image units; :attr:`FitResult.flux_target` is the
  target (untruncated) profile's total, ``flux / flux_fraction``.
* ``sky``: constant background per pixel; with ``sky='plane'`` also ``sky_dx``, ``sky_dy``, its
  gradient per pixel about the image centre.

The model is ``render_galaxy(...) + sky`` (see :mod:`mogviewer.render`), compared to the data
through per-pixel weights ``w = 1/sigma^2`` (zero for masked, NaN or infinite pixels):
``chi^2 = sum w (data - model)^2``. The optimiser (``scipy.optimize.least_squares``, method
``trf``) works in an unconstrained vector (``ln r_circ, eta1, eta2`` for the ellipse, see
:mod:`mogviewer.ellipse`), so it cannot leave the valid region; physical values are reported.

Errors policy
-------------
Problems with the *input* (shapes, no usable pixels, invalid start) raise :class:`FitError`
(a ``ValueError``) before any fitting; what happens *during* a fit (hit a bound, singular
covariance, no convergence, cancelled) never raises: it is reported in :attr:`FitResult.flags`
and :attr:`FitResult.status`.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage, optimize

from .ellipse import (
    eta_to_physical,
    physical_to_eta,
    shape_jacobian_eta,
    shape_jacobian_physical,
    shape_matrix,
    wrap_angle,
)
from .mixture import Mixture
from .profiles import get_mixture
from .render import render_galaxy, render_galaxy_dn

__all__ = ["GalaxyParams", "FitProblem", "FitProgress", "FitResult", "FitFlags", "FitError",
           "initial_guess", "fit", "model_image", "PARAM_UNITS"]

#: Units of each parameter, for labels and exports.
PARAM_UNITS = {"flux": "image units", "x": "pix", "y": "pix", "re": "pix", "q": "",
               "angle": "deg", "sky": "image units/pix", "sky_dx": "image units/pix^2",
               "sky_dy": "image units/pix^2", "n": "", "flux2": "image units", "re2": "pix",
               "q2": "", "angle2": "deg"}


class FitError(ValueError):
    """Input that cannot be fitted (raised before fitting starts)."""


class FitFlags(enum.IntFlag):
    """Named bit flags of a fit (0 = nothing to report)."""

    AT_BOUND = 1              #: a free parameter ended at (within 1e-6 of) a bound
    COV_NONFINITE = 2         #: J^T W J singular: some uncertainties are undefined
    NOT_CONVERGED = 4         #: stopped by the evaluation limit
    TOO_FEW_PIXELS = 8        #: fewer usable pixels than free parameters (+1)
    CANCELLED = 16            #: stopped by the user
    NEGATIVE_FLUX = 32        #: best flux <= 0
    CENTRE_OUTSIDE = 64       #: best centre outside the image
    RE_SUBPIXEL = 128         #: r_e < 0.5 px: the fit is dominated by the PSF
    RE_BEYOND_STAMP = 256     #: r_e larger than the stamp: size, flux and sky are degenerate


@dataclass(frozen=True)
class GalaxyParams:
    """Parameters for people (see the module conventions). Immutable; ``replace`` to change.

    ``flux2, re2, q2, angle2`` describe the second component of a composite (bulge + disk)
    model, which shares the centre ``x, y``; they are ignored by single-component problems.
    ``n`` is the Sérsic index of a ``'ser'`` profile (ignored by the other profiles).
    """

    flux: float
    x: float
    y: float
    re: float
    q: float
    angle: float
    sky: float = 0.0
    sky_dx: float = 0.0
    sky_dy: float = 0.0
    flux2: float = 0.0
    re2: float = 1.0
    q2: float = 1.0
    angle2: float = 0.0
    n: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            v = float(getattr(self, f.name))
            if not math.isfinite(v):
                raise FitError(f"parameter {f.name} is not finite ({v!r})")
            object.__setattr__(self, f.name, v)
        if not self.n > 0:
            raise FitError(f"the Sérsic index n must be positive, got {self.n!r}")
        for sfx in ("", "2"):
            if not getattr(self, "re" + sfx) > 0:
                raise FitError(f"r_e{sfx} must be positive, got {getattr(self, 're' + sfx)!r} px")
            if not 0 < getattr(self, "q" + sfx) <= 1:
                raise FitError(f"q{sfx} = b/a must be in (0, 1], got {getattr(self, 'q' + sfx)!r}")
            object.__setattr__(self, "angle" + sfx, wrap_angle(getattr(self, "angle" + sfx)))

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def names(cls):
        return tuple(f.name for f in fields(cls))


SHAPE = ("re", "q", "angle")


def _family():
    """The Sérsic family module, or None where it is not available."""
    try:
        from . import sersic
    except ImportError:
        return None
    return sersic


class _FamilyProfile:
    """Amplitudes, variances and their n-derivatives of the Sérsic family at one n (cached)."""

    def __init__(self):
        self.n = None

    def at(self, n):
        if n != self.n:
            self.amps, self.variances, self.damps, self.dvariances = \
                _family().sersic_mixture(n)
            self.n = n
        return self
# Physical guard rails for the optimiser's trial points (a pure-noise image can send it far):
# radii 1e-3 .. 1e6 px and q >= exp(-20). Values outside never describe a galaxy in a cutout.
# q >= 1e-4 (eta <= ln 1e4): thinner components make the covariance determinant lose all its
# digits to cancellation (the renderer forms it as Cxx Cyy - Cxy^2).
_LN_R_MIN, _LN_R_MAX, _ETA_MAX = math.log(1e-3), math.log(1e6), math.log(1e4)
_Q_MIN = 1e-4


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
    psf : Mixture or None
        Pixel-convolved PSF mixture (normalised to unit total here); ``None`` = no PSF.
    profile, M, n :
        Profile name, number of components, Sérsic index (``'ser'`` only).
    free : tuple of str
        Free parameters, in a fixed order.
    bounds : dict
        ``name -> (lo, hi)`` in physical units; ``None`` entries or absent names are unbounded.
    sky : {'none', 'constant', 'plane'}
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

    @classmethod
    def from_arrays(cls, image, *, ivar=None, variance=None, sigma=None, weight=None, mask=None,
                    psf=None, profile="exp", M=None, n=None, free=None, fixed=(), bounds=None,
                    sky="constant", profile2=None, M2=None):
        """Build a problem from arrays (copied). One of ``ivar/variance/sigma/weight``, or none
        for unit weights; ``mask`` nonzero = excluded. ``free`` defaults to every parameter of
        the sky model; ``fixed`` removes names from it."""
        img = np.array(image, dtype=float, copy=True)
        if img.ndim != 2:
            raise FitError(f"the image must be 2-D, got shape {img.shape}")
        if min(img.shape) < 3:
            raise FitError(f"the image is too small to fit ({img.shape})")
        w = _weights_from(img, ivar, variance, sigma, weight, mask)
        img[~np.isfinite(img)] = 0.0
        if profile not in ("exp", "dev", "lux", "luv", "ser"):
            raise FitError(f"unknown profile {profile!r}; choose exp, dev, lux, luv or ser")
        fam = _family() if profile == "ser" else None
        if fam is not None:
            # Sérsic: the smooth family of mogviewer.sersic, any n in its range, n fittable
            if M is not None and int(M) != fam.M_FAMILY:
                raise FitError(f"the Sérsic family has M = {fam.M_FAMILY} components; M cannot "
                               f"be chosen for profile 'ser'")
            M = fam.M_FAMILY
            n = 2.5 if n is None else float(n)
            if not fam.N_MIN <= n <= fam.N_MAX:
                raise FitError(f"Sérsic index n = {n:g} is outside the family's range "
                               f"{fam.N_MIN:g} <= n <= {fam.N_MAX:g}")
        else:
            if M is None:
                M = {"exp": 6, "dev": 8, "lux": 6, "luv": 8, "ser": 8}.get(profile, 6)
            if profile != "ser":
                n = None
            try:
                get_mixture(profile, M, n=n)
            except ValueError as exc:
                raise FitError(str(exc)) from None
        if sky not in ("none", "constant", "plane"):
            raise FitError(f"sky must be 'none', 'constant' or 'plane', got {sky!r}")
        allp = ["flux", "x", "y", "re", "q", "angle"] + (["n"] if fam is not None else []) + {
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
        if psf is not None:
            psf = psf.normalized()
        bounds = {k: (None if v is None else tuple(v)) for k, v in dict(bounds or {}).items()}
        if fam is not None:
            # never beyond the family; and just above its lower end: within ~1e-3 of n = 0.5
            # its knots crowd (the mixture collapses to one Gaussian there) and d/dn of the tiny
            # inner components is erratic
            lo, hi = bounds.get("n") or (None, None)
            bounds["n"] = (max(fam.N_MIN + 0.01, lo if lo is not None else -np.inf),
                           min(fam.N_MAX, hi if hi is not None else np.inf))
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
                   None if M2 is None else int(M2))

    @classmethod
    def from_image_data(cls, data, **kwargs):
        """Build from a :class:`mogviewer.io_fits.ImageData` (image, ivar, mask)."""
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
        """True for ``'ser'`` with the smooth Sérsic family (n may be free)."""
        return self.profile == "ser" and "n" in self.bounds

    def profile_mixture(self, sfx="", n=None):
        """The profile's :class:`~mogviewer.profiles.ProfileMixture` (at Sérsic index ``n``, by
        default the problem's, for the family)."""
        if sfx == "2":
            return get_mixture(self.profile2, self.M2)
        if self.uses_family:
            return _family().sersic_profile_mixture(self.n if n is None else n)
        return get_mixture(self.profile, self.M, n=self.n)


def model_image(problem, params, *, out=None):
    """The model (galaxy + sky) for ``params`` on the problem's grid."""
    p = params
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


# ---------------------------------------------------------------------------------------------
# initial guess
# ---------------------------------------------------------------------------------------------

def _target_segment(data, good, border, centre):
    """Start centre and a mask of the *other* sources (see :func:`initial_guess`, step 2)."""
    ny, nx = data.shape
    cx, cy = ((nx - 1) / 2, (ny - 1) / 2) if centre is None else map(float, centre)
    sm = ndimage.gaussian_filter(data, 1.5)
    ref = data[border & good] if (border & good).sum() > 10 else data[good]
    sigma = 1.4826 * float(np.median(np.abs(ref - np.median(ref))))
    # a Gaussian filter of sigma s scales white noise by 1 / (2 sqrt(pi) s)
    thresh = 3.0 * sigma / (2.0 * math.sqrt(math.pi) * 1.5)
    det = (sm > thresh) & good if sigma > 0 else np.zeros(data.shape, bool)
    lab, nlab = ndimage.label(det)
    icx = int(np.clip(round(cx), 0, nx - 1))
    icy = int(np.clip(round(cy), 0, ny - 1))
    if nlab == 0:
        if centre is not None:
            return float(cx), float(cy), np.zeros(data.shape, bool)
        box = sm[ny // 4:ny - ny // 4, nx // 4:nx - nx // 4]
        iy, ix = np.unravel_index(np.argmax(box), box.shape)
        return float(ix + nx // 4), float(iy + ny // 4), np.zeros(data.shape, bool)
    target = lab[icy, icx]
    if target == 0:  # the centre is on sky: the segment that comes nearest to it
        dist = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
        target = lab[dist[0][icy, icx], dist[1][icy, icx]]
    seg = lab == target
    iy, ix = np.unravel_index(np.argmax(np.where(seg, sm, -np.inf)), sm.shape)
    others = ndimage.binary_dilation((lab > 0) & ~seg, iterations=2) & ~seg
    if centre is not None:
        return float(cx), float(cy), others
    return float(ix), float(iy), others


def initial_guess(problem, *, centre=None):
    """Start parameters from image moments in a central aperture.

    1. Sky: median of the unmasked pixels of the outer 10 % border (0 if the sky is not free).
    2. Target: the sky-subtracted image is smoothed (Gaussian sigma 1.5 px) and thresholded at
       3 sigma of its noise (1.48 MAD of the border); the connected segment that contains the
       stamp centre (or ``centre``, 0-based pixels, if given) -- or else the one that comes
       nearest to it -- is the target, and its brightest smoothed pixel the start centre. Other
       segments (neighbours, stars) are left out of the moments below, so a bright neighbour,
       even one brighter than the target, does not capture the start.
    3. Ellipse: flux-weighted second moments of positive pixels in an elliptical aperture about
       that centre, iterated three times (aperture = 3 x the current moment ellipse); ``q`` and
       the angle from the moment eigenvectors (PSF second moments subtracted when possible).
    4. ``re``: semi-major axis of the moment-shaped ellipse holding half the aperture flux;
       ``flux``: the aperture sum minus sky.

    Returns
    -------
    GalaxyParams
    """
    img, w = problem.image, problem.weights
    good = w > 0
    if not good.any():
        raise FitError("no usable pixels (all masked, NaN or zero weight)")
    if np.ptp(img[good]) == 0:
        raise FitError(f"the image holds no signal: every usable pixel equals {img[good][0]:g}")
    ny, nx = img.shape
    border = np.zeros(img.shape, bool)
    b = max(1, int(0.1 * min(ny, nx)))
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    sky = 0.0
    if "sky" in problem.free:  # a fixed sky starts at 0 (the image is taken as sky-subtracted)
        sel = border & good
        sky = float(np.median(img[sel])) if sel.sum() > 10 else float(np.median(img[good]))
    data = np.where(good, img - sky, 0.0)
    xc, yc, others = _target_segment(data, good, border, centre)
    good = good & ~others
    data = np.where(good, data, 0.0)
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    # iterate moments in an elliptical aperture
    C = np.eye(2) * (min(ny, nx) / 8.0) ** 2
    for _ in range(4):
        dx, dy = xx - xc, yy - yc
        P = np.linalg.inv(C)
        r2 = P[0, 0] * dx * dx + 2 * P[0, 1] * dx * dy + P[1, 1] * dy * dy
        ap = (r2 <= 9.0) & good & (data > 0)
        f = data[ap]
        if f.sum() <= 0 or ap.sum() < 5:
            break
        tot = f.sum()
        xc = float((f * xx[ap]).sum() / tot)
        yc = float((f * yy[ap]).sum() / tot)
        ddx, ddy = xx[ap] - xc, yy[ap] - yc
        Cn = np.array([[(f * ddx * ddx).sum(), (f * ddx * ddy).sum()],
                       [(f * ddx * ddy).sum(), (f * ddy * ddy).sum()]]) / tot
        if not np.all(np.isfinite(Cn)) or np.linalg.det(Cn) <= 0:
            break
        C = Cn
    Cg = C.copy()
    if problem.psf is not None:
        Cd = C - problem.psf.second_moments()
        if np.all(np.linalg.eigvalsh(Cd) > 0.25):
            Cg = Cd
    evals, evecs = np.linalg.eigh(Cg)
    q = float(np.clip(math.sqrt(max(evals[0], 1e-6) / max(evals[1], 1e-6)), 0.1, 1.0))
    angle = wrap_angle(math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])))
    # half-light semi-major axis in the moment-shaped ellipse (q, angle)
    t = math.radians(angle)
    dx, dy = xx - xc, yy - yc
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    a = np.sqrt(u * u + (v / q) ** 2)
    amax = 3.0 * math.sqrt(evals[1]) * 2.0
    sel = good & (a <= amax)
    order = np.argsort(a[sel])
    cum = np.cumsum(data[sel][order])
    flux = float(cum[-1]) if cum.size else float(data.sum())
    if cum.size and flux > 0:
        re = float(a[sel][order][np.searchsorted(cum, 0.5 * flux)])
    else:
        re = math.sqrt(evals[1])
        flux = max(float(data[good].sum()), 1e-3)
    re = float(np.clip(re, 0.5, 0.5 * max(ny, nx)))
    xc = float(np.clip(xc, 0, nx - 1))
    yc = float(np.clip(yc, 0, ny - 1))
    flux = max(flux, 1e-3 * abs(flux) + 1e-12)
    if problem.profile2 is not None:
        # composite: a compact, rounder first component (bulge) holding 40 % of the light and
        # an extended second one (disk) with the moment ellipse
        return GalaxyParams(flux=0.4 * flux, x=xc, y=yc, re=0.5 * re, q=min(1.0, q + 0.2),
                            angle=angle, sky=sky, flux2=0.6 * flux, re2=1.2 * re, q2=q,
                            angle2=angle, n=problem.n if problem.uses_family else 1.0)
    return GalaxyParams(flux=flux, x=xc, y=yc, re=re, q=q, angle=angle, sky=sky,
                        n=problem.n if problem.uses_family else 1.0)


# ---------------------------------------------------------------------------------------------
# parametrisation
# ---------------------------------------------------------------------------------------------

def _clip_eta(u):
    u = np.array(u, float)
    u[0] = min(max(u[0], _LN_R_MIN), _LN_R_MAX)
    eta = math.hypot(u[1], u[2])
    if eta > _ETA_MAX:
        u[1:] *= _ETA_MAX / eta
    return u


class _Param:
    """Maps between GalaxyParams and the optimiser's free vector ``z``.

    For each galaxy component (suffix ``''``, and ``'2'`` for the second component of a
    bulge + disk model) the shape is in ``eta`` mode ``(ln r_circ, eta1, eta2)`` when its re, q
    and angle are all free and unbounded; otherwise each free shape parameter is mapped on its
    own: ``ln re``, ``logit q``, ``angle``.
    """

    def __init__(self, problem, start):
        self.problem = problem
        self.start = start
        self.free = problem.free
        self.suffixes = problem.suffixes
        self.eta_mode = {}
        for sfx in self.suffixes:
            shape = [p + sfx for p in SHAPE]
            self.eta_mode[sfx] = (all(p in self.free for p in shape)
                                  and not any(problem.bounds.get(p) for p in shape))
        names = []
        for p in self.free:
            base, sfx = _split(p)
            if base in SHAPE:
                if self.eta_mode[sfx]:
                    if base == "re":
                        names += ["ln_rcirc" + sfx, "eta1" + sfx, "eta2" + sfx]
                else:
                    names.append({"re": "ln_re", "q": "q", "angle": "angle"}[base] + sfx)
            else:
                names.append(p)
        self.znames = names

    def to_z(self, p):
        z = []
        for name in self.znames:
            base, sfx = _split(name)
            if base == "ln_rcirc":
                z.extend(physical_to_eta(getattr(p, "re" + sfx), getattr(p, "q" + sfx),
                                         getattr(p, "angle" + sfx)))
            elif base in ("eta1", "eta2"):
                continue
            elif base == "ln_re":
                z.append(math.log(getattr(p, "re" + sfx)))
            else:
                z.append(getattr(p, name))
        return np.array(z, float)

    def from_z(self, z):
        d = self.start.as_dict()
        it = iter(range(len(z)))
        for i in it:
            base, sfx = _split(self.znames[i])
            if base == "ln_rcirc":
                d["re" + sfx], d["q" + sfx], d["angle" + sfx] = eta_to_physical(
                    _clip_eta(z[i:i + 3]))
                next(it)
                next(it)
            elif base == "ln_re":
                d["re" + sfx] = math.exp(min(max(z[i], _LN_R_MIN), _LN_R_MAX))
            else:
                d[self.znames[i]] = float(z[i])
        for sfx in self.suffixes:
            d["q" + sfx] = min(max(d["q" + sfx], _Q_MIN), 1.0)
        return GalaxyParams(**d)

    def bounds(self):
        lo = np.full(len(self.znames), -np.inf)
        hi = np.full(len(self.znames), np.inf)
        for i, name in enumerate(self.znames):
            base, sfx = _split(name)
            phys = {"ln_re": "re"}.get(base, base) + sfx
            l, h = self.problem.bounds.get(phys) or (None, None)
            if base == "q":  # q is optimised directly, always inside [1e-4, 1]
                l = _Q_MIN if l is None else max(l, _Q_MIN)
                h = 1.0 if h is None else min(h, 1.0)
            if base == "ln_re":
                l = math.log(l) if l and l > 0 else None
                h = math.log(h) if h and h > 0 else None
            if l is not None:
                lo[i] = l
            if h is not None:
                hi[i] = h
        return lo, hi

    def shape_S_and_dz(self, z, p, sfx=""):
        """S (2x2) of component ``sfx`` and d(Sxx, Sxy, Syy)/dz as ``{z index: 3-vector}``."""
        out = {}
        re, q, angle = (getattr(p, n + sfx) for n in SHAPE)
        if self.eta_mode[sfx]:
            i = self.znames.index("ln_rcirc" + sfx)
            S3, J = shape_jacobian_eta(_clip_eta(z[i:i + 3]))
            for c in range(3):
                out[i + c] = J[:, c]
            return np.array([[S3[0], S3[1]], [S3[1], S3[2]]]), out
        Jp = shape_jacobian_physical(re, q, angle)
        for i, name in enumerate(self.znames):
            base, s2 = _split(name)
            if s2 != sfx:
                continue
            if base == "ln_re":
                out[i] = Jp[:, 0] * re
            elif base == "q":
                out[i] = Jp[:, 1]
            elif base == "angle":
                out[i] = Jp[:, 2]
        return shape_matrix(re, q, angle), out


def _split(name):
    """``'re2' -> ('re', '2')``; ``'sky_dx' -> ('sky_dx', '')``."""
    if name.endswith("2") and not name.startswith("eta") or name in ("eta12", "eta22"):
        return name[:-1], "2"
    return name, ""


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitProgress:
    """Immutable snapshot sent to the progress callback each iteration."""

    params: GalaxyParams
    chi2: float
    iteration: int
    nfev: int
    elapsed: float


@dataclass(frozen=True, eq=False)
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    params : GalaxyParams
        Best parameters (the start's values for fixed ones).
    start : GalaxyParams
    free : tuple of str
        Names of the free parameters (order of ``covariance``).
    covariance : ndarray (n_free, n_free)
        Formal covariance ``(J^T W J)^-1`` in physical units (angle in degrees), *not* scaled by
        chi^2/nu; NaN where undefined.
    chi2, nu, chi2_nu : float, int, float
        ``sum w (data - model)^2``, usable pixels minus free parameters, and their ratio.
    nit, nfev : int
        Iterations and residual evaluations.
    status : str
        ``'converged'``, ``'max_evaluations'``, ``'cancelled'`` or ``'failed'``.
    flags : FitFlags
    message : str
    profile, M, n, flux_fraction : profile facts (``flux_fraction`` of the mixture).
    profile2, M2 : the second component of a composite model, or None.
    elapsed : float, seconds
    """

    params: GalaxyParams
    start: GalaxyParams
    free: tuple
    covariance: np.ndarray
    chi2: float
    nu: int
    nit: int
    nfev: int
    status: str
    flags: FitFlags
    message: str
    profile: str
    M: int
    n: float | None
    flux_fraction: float
    elapsed: float
    profile2: str | None = None
    M2: int | None = None

    @property
    def chi2_nu(self):
        return self.chi2 / self.nu if self.nu > 0 else float("nan")

    def errors(self, *, scaled=False):
        """1-sigma errors ``{name: sigma}`` for free parameters (0 for fixed ones).

        ``scaled=True`` multiplies by ``sqrt(chi2/nu)`` (as GALFIT and imfit do when the noise
        map is not trusted).
        """
        d = np.sqrt(np.where(np.diag(self.covariance) >= 0, np.diag(self.covariance), np.nan))
        if scaled:
            d = d * math.sqrt(self.chi2_nu)
        out = {k: 0.0 for k in GalaxyParams.names()}
        out.update({k: float(v) for k, v in zip(self.free, d)})
        return out

    # derived quantities -------------------------------------------------------------
    @property
    def flux_target(self):
        """Total flux of the target (untruncated) profile: ``flux / flux_fraction``."""
        return self.params.flux / self.flux_fraction

    def magnitude(self, zeropoint, *, target=False):
        """``zeropoint - 2.5 log10(flux)`` of the model flux, or with ``target=True`` of the
        target profile's total (``flux_target``, comparable with GALFIT/imfit totals); NaN if
        the flux is not positive."""
        f = self.flux_target if target else self.params.flux
        return zeropoint - 2.5 * math.log10(f) if f > 0 else float("nan")

    @property
    def ell(self):
        """``1 - q`` (imfit's ellipticity)."""
        return 1.0 - self.params.q

    @property
    def e1e2(self):
        """``((1-q)/(1+q)) (cos 2 angle, sin 2 angle)`` (Tractor's EllipseE magnitude, image
        axes)."""
        e = (1 - self.params.q) / (1 + self.params.q)
        t = 2 * math.radians(self.params.angle)
        return e * math.cos(t), e * math.sin(t)

    @property
    def re_circ(self):
        """Circularised half-light radius ``re sqrt(q)`` (pixels)."""
        return self.params.re * math.sqrt(self.params.q)

    @property
    def ok(self):
        return self.status == "converged" and not (self.flags & (
            FitFlags.COV_NONFINITE | FitFlags.TOO_FEW_PIXELS | FitFlags.NEGATIVE_FLUX))


# ---------------------------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------------------------

class _Evaluator:
    """Residuals and Jacobian of one problem, with reusable render buffers."""

    def __init__(self, problem, par):
        self.problem = problem
        self.par = par
        self.sel = np.flatnonzero(problem.weights.ravel() > 0)
        self.sw = np.sqrt(problem.weights.ravel()[self.sel])
        self.data = problem.image.ravel()[self.sel]
        self.profs = {sfx: problem.profile_mixture(sfx) for sfx in problem.suffixes}
        self.family = _FamilyProfile() if problem.uses_family else None
        ny, nx = problem.shape
        self.bufs = {sfx: np.zeros((6, ny, nx)) for sfx in problem.suffixes}
        yy, xx = np.mgrid[:ny, :nx]
        self.gx = (xx - (nx - 1) / 2).ravel()[self.sel]
        self.gy = (yy - (ny - 1) / 2).ravel()[self.sel]
        self.nfev = 0

    def _sky(self, p):
        if self.problem.sky == "none":
            return 0.0
        s = p.sky
        if self.problem.sky == "plane":
            s = s + p.sky_dx * self.gx + p.sky_dy * self.gy
        return s

    def _prof(self, p, sfx):
        if sfx == "" and self.family is not None:
            return self.family.at(p.n)
        return self.profs[sfx]

    def _render(self, p, sfx, S, derivs):
        return render_galaxy(getattr(p, "flux" + sfx), p.x, p.y, S, self._prof(p, sfx), None,
                             self.problem.psf, self.problem.shape, derivs=derivs,
                             out=self.bufs[sfx])

    def residuals(self, z):
        self.nfev += 1
        p = self.par.from_z(z)
        model = self._sky(p)
        for sfx in self.problem.suffixes:
            S, _ = self.par.shape_S_and_dz(z, p, sfx)
            model = model + self._render(p, sfx, S, False).ravel()[self.sel]
        return self.sw * (self.data - model)

    def _columns(self, p, z=None):
        """{name: d model / d name} over the selected pixels; shape entries by z index when
        ``z`` is given (optimiser), by physical name otherwise."""
        cols = {"x": 0.0, "y": 0.0}
        for sfx in self.problem.suffixes:
            if z is not None:
                S, dS = self.par.shape_S_and_dz(z, p, sfx)
            else:
                re, q, angle = (getattr(p, n + sfx) for n in SHAPE)
                S = shape_matrix(re, q, angle)
                Jp = shape_jacobian_physical(re, q, angle)
                dS = {n + sfx: Jp[:, k] for k, n in enumerate(SHAPE)}
            img, d = self._render(p, sfx, S, True)
            flat = d.reshape(5, -1)[:, self.sel]
            flux = getattr(p, "flux" + sfx)
            if flux != 0:
                cols["flux" + sfx] = img.ravel()[self.sel] / flux
            else:
                cols["flux" + sfx] = render_galaxy(
                    1.0, p.x, p.y, S, self._prof(p, sfx), None, self.problem.psf,
                    self.problem.shape).ravel()[self.sel]
            if sfx == "" and self.family is not None and "n" in self.problem.free:
                fp = self.family.at(p.n)
                cols["n"] = render_galaxy_dn(p.flux, p.x, p.y, S, fp, fp.damps, fp.dvariances,
                                             self.problem.psf,
                                             self.problem.shape).ravel()[self.sel]
            cols["x"] = cols["x"] + flat[0]
            cols["y"] = cols["y"] + flat[1]
            for key, vec in dS.items():
                cols[key] = vec @ flat[2:]
        n = self.sel.size
        cols.update(sky=np.ones(n), sky_dx=self.gx, sky_dy=self.gy)
        return cols

    def jacobian(self, z):
        p = self.par.from_z(z)
        cols = self._columns(p, z)
        J = np.empty((self.sel.size, len(z)))
        for i, name in enumerate(self.par.znames):
            J[:, i] = -self.sw * cols[i if i in cols else name]
        return J

    def physical_jacobian(self, p):
        """d(residual)/d(free physical parameters) at ``p`` (angles in degrees)."""
        cols = self._columns(p)
        return np.column_stack([-self.sw * cols[name] for name in self.problem.free])


def _covariance(J):
    """``(J^T J)^-1`` with a check of conditioning; returns (cov, ok)."""
    A = J.T @ J
    try:
        scale = np.sqrt(np.diag(A))
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise np.linalg.LinAlgError
        An = A / np.outer(scale, scale)
        if np.linalg.cond(An) > 1e12:
            raise np.linalg.LinAlgError
        cov = np.linalg.inv(An) / np.outer(scale, scale)
        return cov, bool(np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0))
    except np.linalg.LinAlgError:
        return np.full(A.shape, np.nan), False


def fit(problem, start=None, *, callback: Callable[[FitProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None, max_nfev=200, xtol=1e-8, ftol=1e-9,
        jacobian="analytic"):
    """Fit ``problem`` from ``start`` (default :func:`initial_guess`).

    Parameters
    ----------
    problem : FitProblem
    start : GalaxyParams, optional
    callback : callable, optional
        Called once per iteration with an immutable :class:`FitProgress`.
    should_stop : callable, optional
        Polled every iteration; when it returns true the fit stops cleanly with status
        ``'cancelled'`` and the best parameters so far.
    max_nfev : int
        Evaluation limit (status ``'max_evaluations'`` and flag ``NOT_CONVERGED`` when hit).
    jacobian : {'analytic', '2-point', '3-point'}
        The renderer's exact derivatives (default), or finite differences (for comparison).

    Never raises for bad data: no usable pixels, a numerical failure or a non-finite start give
    a result with status ``'failed'`` and flags; only wrong argument types raise ``TypeError``.

    Returns
    -------
    FitResult
    """
    t0 = time.perf_counter()
    if not isinstance(problem, FitProblem):
        raise TypeError(f"problem must be a FitProblem, got {type(problem).__name__}")
    if start is not None and not isinstance(start, GalaxyParams):
        raise TypeError(f"start must be GalaxyParams, got {type(start).__name__}")
    prof = problem.profile_mixture()
    n_free = len(problem.free)
    nu = problem.n_good - n_free

    def failed(params, flags, message, nfev=0):
        ny, nx = problem.shape
        if not (-0.5 <= params.x <= nx - 0.5 and -0.5 <= params.y <= ny - 0.5):
            flags |= FitFlags.CENTRE_OUTSIDE
        return FitResult(params=params, start=params, free=problem.free,
                         covariance=np.full((n_free, n_free), np.nan), chi2=float("nan"), nu=nu,
                         nit=0, nfev=nfev, status="failed", flags=flags, message=message,
                         profile=problem.profile, M=problem.M, n=problem.n,
                         flux_fraction=prof.flux_fraction, elapsed=time.perf_counter() - t0,
                         profile2=problem.profile2, M2=problem.M2)

    if nu <= 0:
        ny, nx = problem.shape
        placeholder = start or GalaxyParams(flux=0.0, x=(nx - 1) / 2, y=(ny - 1) / 2, re=1.0,
                                            q=1.0, angle=0.0)
        return failed(placeholder, FitFlags.TOO_FEW_PIXELS,
                      f"{problem.n_good} usable pixels for {n_free} free parameters: "
                      "nothing to fit (is everything masked or of zero weight?)")
    if start is None:
        try:
            start = initial_guess(problem)
        except FitError as exc:
            ny, nx = problem.shape
            return failed(GalaxyParams(flux=0.0, x=(nx - 1) / 2, y=(ny - 1) / 2, re=1.0, q=1.0,
                                       angle=0.0), FitFlags.NOT_CONVERGED,
                          f"no initial guess from the image moments: {exc}")
    if problem.uses_family and "n" not in problem.free and start.n != problem.n:
        start = start.replace(n=problem.n)  # a fixed index is the problem's, not the start's
    common = dict(start=start, free=problem.free, profile=problem.profile, M=problem.M,
                  n=problem.n, flux_fraction=prof.flux_fraction, profile2=problem.profile2,
                  M2=problem.M2)
    par = _Param(problem, start)
    ev = _Evaluator(problem, par)
    z0 = par.to_z(start)
    lo, hi = par.bounds()
    # a start on or beyond a bound is moved just inside it (TRF needs a strictly feasible start)
    for i in range(z0.size):
        if np.isfinite(lo[i]):
            z0[i] = max(z0[i], lo[i] + 1e-9 * max(1.0, abs(lo[i])))
        if np.isfinite(hi[i]):
            z0[i] = min(z0[i], hi[i] - 1e-9 * max(1.0, abs(hi[i])))

    def cb(intermediate_result):
        z = intermediate_result.x
        if callback is not None:
            callback(FitProgress(params=par.from_z(z), chi2=2.0 * float(intermediate_result.cost),
                                 iteration=int(intermediate_result.nit),
                                 nfev=int(intermediate_result.nfev),
                                 elapsed=time.perf_counter() - t0))
        if should_stop is not None and should_stop():
            raise StopIteration

    if n_free == 0:
        r = ev.residuals(z0)
        return FitResult(params=start, covariance=np.zeros((0, 0)), chi2=float(r @ r), nu=nu,
                         nit=0, nfev=1, status="converged", flags=FitFlags(0),
                         message="no free parameters", elapsed=time.perf_counter() - t0,
                         **common)
    jac = ev.jacobian if jacobian == "analytic" else jacobian
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            res = optimize.least_squares(ev.residuals, z0, jac=jac, method="trf",
                                         bounds=(lo, hi), x_scale="jac", max_nfev=max_nfev,
                                         xtol=xtol, ftol=ftol, gtol=1e-10, callback=cb)
    except (np.linalg.LinAlgError, ArithmeticError) as exc:  # incl. ZeroDivision, Overflow
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"numerical failure ({type(exc).__name__}: {exc})", ev.nfev)
    except ValueError as exc:
        if "not finite" not in str(exc):
            raise
        return failed(start, FitFlags.NOT_CONVERGED,
                      f"the model is not finite at the start ({exc}); check the start values",
                      ev.nfev)
    flags = FitFlags(0)
    if res.status == -2:
        status = "cancelled"
        flags |= FitFlags.CANCELLED
    elif res.status == 0:
        status = "max_evaluations"
        flags |= FitFlags.NOT_CONVERGED
    elif res.status > 0:
        status = "converged"
    else:
        status = "failed"
    p = par.from_z(res.x)
    r = ev.residuals(res.x)
    chi2 = float(r @ r)
    Jphys = ev.physical_jacobian(p)
    cov, cov_ok = _covariance(Jphys)
    if not cov_ok:
        flags |= FitFlags.COV_NONFINITE
    if np.any(res.active_mask != 0):
        flags |= FitFlags.AT_BOUND
    if p.flux <= 0 or (problem.profile2 is not None and p.flux2 <= 0):
        flags |= FitFlags.NEGATIVE_FLUX
    ny, nx = problem.shape
    if not (-0.5 <= p.x <= nx - 0.5 and -0.5 <= p.y <= ny - 0.5):
        flags |= FitFlags.CENTRE_OUTSIDE
    if min(p.re, p.re2 if problem.profile2 else np.inf) < 0.5:
        flags |= FitFlags.RE_SUBPIXEL
    if max(p.re, p.re2 if problem.profile2 else 0.0) > max(ny, nx):
        flags |= FitFlags.RE_BEYOND_STAMP
    if problem.uses_family:
        common.update(n=p.n, flux_fraction=problem.profile_mixture(n=p.n).flux_fraction)
    return FitResult(params=p, covariance=cov, chi2=chi2, nu=nu, nit=int(getattr(res, "nit", 0)
                     or res.njev or 0), nfev=int(res.nfev), status=status, flags=flags,
                     message=str(res.message), elapsed=time.perf_counter() - t0, **common)
