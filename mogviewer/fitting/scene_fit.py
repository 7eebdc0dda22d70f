"""Fit a :class:`~mogviewer.scene.Scene` (several sources and a sky) to one or several observations.

The parameter vector covers every fitted source: a point source contributes ``flux, x, y``; a
galaxy ``flux, x, y, ln r_circ, eta1, eta2`` (the unconstrained ellipse of
:mod:`mogviewer.ellipse`), ``n`` for the Sérsic family, and ``flux2, ln r_circ2, eta1_2,
eta2_2`` for a second component sharing its centre; then the sky (``sky``, and ``sky_dx,
sky_dy`` for a plane). A source's derivatives come from the renderer in the same pass as its
image, so the Jacobian is exact; sources not fitted are rendered once and held fixed.

The solver is Levenberg-Marquardt on the normal equations (:mod:`mogviewer.fitting.lm`) with
a *sparse* Jacobian: each source is rendered, with its derivatives, only over its own bounding
box (the union of its components' ``exp(-36)`` ellipses, the renderer's own cut, so the model is
the full-image render to rounding), and ``A = J^T W J`` is assembled block by block: a source's
own block over its box, a pair of sources over the overlap of their boxes, the sky columns as
box sums. The cost per step is the renders plus ``sum_i p_i^2 |box_i|`` multiplications, not
the ``N_pix p^2`` of a dense Jacobian (``p`` the free parameters). ``solver='scipy'`` keeps
scipy's ``trf`` on the dense Jacobian as the reference (same optimum; tested).

:func:`fit_scene` first fits each fitted source alone with the others held at their current
values (brightest first, the Tractor's order), then all of them jointly. Errors are the
square roots of the diagonal of ``(J^T W J)^-1`` in the *physical* parameters (flux, x, y,
re, q, angle in degrees, n, ...), from the joint fit's normal matrix; parameters that ended on
a bound are left out of the inversion (their error is NaN), so one neighbour at a bound does
not take the others' errors with it.

:func:`fit_multiband` fits one scene to several observations (bands): positions and shapes in
one *reference frame* (the first observation's pixels), each observation reached through its
WCS (:class:`Frame`: a shift, scale, rotation or flip between the grids; positions exactly
through the WCS, shapes through its local Jacobian), a flux and a sky per band, and optional
wavelength ties of ``ln r_e`` and ``n`` as Chebyshev polynomials in wavelength (GalfitM's
approach).

Conventions are those of :mod:`mogviewer.scene`; the one-galaxy :func:`mogviewer.fitting.fit`
is the special case with one galaxy (it has more options: bounds, fixed parameters, flags).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from scipy import optimize

from ..ellipse import (
    eta_to_physical,
    physical_to_eta,
    shape_jacobian_eta,
    shape_matrix,
    shape_to_physical,
)
from ..errors import FitError
from ..profiles import sersic
from ..render import render_galaxy, render_galaxy_dn
from ..render.exact import PIXEL_VAR, ExactPsf
from ..scene import POINT_PROFILE, Galaxy, PointSource, Scene
from .blends import split_target
from .flags import FitFlags
from .lm import levenberg_marquardt

__all__ = ["SceneFitResult", "fit_scene", "Frame", "scene_in_frame"]

_LN_RC = (math.log(0.05), math.log(1e4))      # circularised radius 0.05 px .. 1e4 px
_ETA = math.log(1e3)                          # q >= 1e-3
_N = (sersic.N_MIN + 0.01, sersic.N_MAX)      # as the one-galaxy fit's n bounds
#: The renderer cuts each component at exp(-36) of its peak: (dx^2 / C_xx) <= 72 along x.
_CUT = 72.0
#: Two fitted sources whose centres are closer than this (px) are "on the same pixel".
SAME_PIXEL = 0.5
#: Tolerances of both solvers (scipy's trf had the same three).
_TOL = dict(xtol=1e-10, ftol=1e-10, gtol=1e-10)


class _Family:
    def __init__(self, n):
        self.amps, self.variances, self.damps, self.dvariances = sersic.sersic_mixture(n)


@dataclasses.dataclass(frozen=True, eq=False)
class SceneFitResult:
    """What :func:`fit_scene` returns.

    Attributes
    ----------
    scene : Scene
        The best-fitting scene (sources in the input order).
    errors : tuple of dict
        Per source, ``{parameter: 1-sigma error}`` in physical units (empty for a source held
        fixed; NaN for a parameter that ended on a bound).
    sky_errors : dict
        Errors of ``sky`` (and ``sky_dx``, ``sky_dy``).
    flags : tuple of FitFlags
        Per source: ``AT_BOUND``, ``COV_NONFINITE``, ``CENTRE_OUTSIDE``, ``NEGATIVE_FLUX``,
        ``NOT_CONVERGED``, ``CANCELLED``.
    fitted : tuple of bool
        Which sources were free (a source given as free but starting outside the image, or on
        the same pixel as a brighter free source, is held: see :attr:`notes`).
    chi2, nu, chi2_nu : float, int, float
        Over the used pixels; ``nu`` = used pixels - free parameters.
    status : str
        ``'converged'``, ``'max_nfev'``, ``'cancelled'`` or ``'failed'``.
    nfev : int
    elapsed : float
        Seconds.
    covariance : ndarray
        Over :attr:`names`, physical parameters.
    names : tuple of (int, str)
        ``(source index, parameter)``; ``(-1, 'sky')`` etc. for the sky.
    notes : tuple of tuple of str
        Per source, what was decided about it and why (one sentence each).
    messages : tuple of str
        All notes, each prefixed with its source, for a log or a dialog.
    solver : str
        ``'lm'`` or ``'scipy'``.
    added : tuple of int
        Indices of the sources the residual pass added (``fit_scene(..., residual_pass=True)``).
    """

    scene: Scene
    errors: tuple
    sky_errors: dict
    flags: tuple
    fitted: tuple
    chi2: float
    nu: int
    chi2_nu: float
    status: str
    nfev: int
    elapsed: float
    covariance: np.ndarray
    names: tuple
    notes: tuple = ()
    messages: tuple = ()
    solver: str = "lm"
    added: tuple = ()


# ------------------------------------------------------------------------------ frames
class Frame:
    """Maps the reference frame's pixel coordinates to one observation's pixels.

    Positions go through the two WCSs exactly (reference pixel -> sky -> observation pixel,
    astropy's 0-based ``pixel_to_world_values`` / ``world_to_pixel_values``); a source's shape
    matrix goes through the local Jacobian ``A = d(x_obs, y_obs) / d(x_ref, y_ref)`` at its
    centre (central differences over +-0.5 px): ``S_obs = A S A^T``. ``A`` holds the scale,
    rotation and parity between the grids; within a source's extent a celestial projection is
    affine to far better than the pixel (TAN over 100 px of a 0.26"-pixel grid: ~1e-8 px).
    The fit's position derivatives use ``A`` at the current centre (``dA/dx`` ~ 1e-9 / px is
    left out).

    Parameters
    ----------
    ref_wcs, wcs : astropy.wcs.WCS
        Celestial WCS of the reference grid and of the observation's grid.
    name : str
        For messages.
    """

    def __init__(self, ref_wcs, wcs, name="image"):
        self.ref = ref_wcs.celestial if getattr(ref_wcs, "naxis", 2) > 2 else ref_wcs
        self.wcs = wcs.celestial if getattr(wcs, "naxis", 2) > 2 else wcs
        self.name = name

    def map(self, x, y, h=0.5):
        """``(x_obs, y_obs, A)`` for the reference-frame point ``(x, y)``."""
        px = np.array([x, x + h, x - h, x, x], float)
        py = np.array([y, y, y, y + h, y - h], float)
        world = self.ref.pixel_to_world_values(px, py)
        ox, oy = self.wcs.world_to_pixel_values(*world)
        ox, oy = np.asarray(ox, float), np.asarray(oy, float)
        A = np.array([[(ox[1] - ox[2]) / (2 * h), (ox[3] - ox[4]) / (2 * h)],
                      [(oy[1] - oy[2]) / (2 * h), (oy[3] - oy[4]) / (2 * h)]])
        return float(ox[0]), float(oy[0]), A

    def is_identity(self, shape, tol=1e-8):
        """True when the two grids coincide (to ``tol`` px) over ``shape`` (ny, nx)."""
        ny, nx = shape
        for x, y in ((0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1), ((nx - 1) / 2,
                                                                           (ny - 1) / 2)):
            xo, yo, _ = self.map(x, y)
            if not (abs(xo - x) <= tol and abs(yo - y) <= tol):
                return False
        return True


def _s3_map(A):
    """The linear map of ``(Sxx, Sxy, Syy)`` under ``S -> A S A^T`` (3x3)."""
    a, b, c, d = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    return np.array([[a * a, 2 * a * b, b * b],
                     [a * c, a * d + b * c, b * d],
                     [c * c, 2 * c * d, d * d]])


def scene_in_frame(scene, frame):
    """The scene seen on another pixel grid: centres through ``frame`` (a :class:`Frame`, or
    None for the same grid), shapes ``A S A^T``, fluxes and sky unchanged (a band's sky is on its
    own grid already)."""
    if frame is None:
        return scene
    out = []
    for s in scene.sources:
        xo, yo, A = frame.map(s.x, s.y)
        ch = dict(x=xo, y=yo)
        if isinstance(s, Galaxy):
            for sfx in ("", "2") if s.profile2 is not None else ("",):
                S = shape_matrix(getattr(s, "re" + sfx), getattr(s, "q" + sfx),
                                 getattr(s, "angle" + sfx))
                re, q, ang = shape_to_physical(A @ S @ A.T)
                ch.update({"re" + sfx: float(re), "q" + sfx: float(min(q, 1.0)),
                           "angle" + sfx: float(ang)})
        out.append(dataclasses.replace(s, **ch))
    return dataclasses.replace(scene, sources=tuple(out))


# ------------------------------------------------------------------------------ the model
def _psf_extent(psf):
    """``(cxx, cyy, |mean x|, |mean y|, extra px)`` of the PSF's Gaussians for the box rule."""
    if psf is None:      # the pixel: one Gaussian of PIXEL_VAR, or sub-Gaussians within +-0.5
        return np.array([PIXEL_VAR]), np.array([PIXEL_VAR]), np.zeros(1), np.zeros(1), 1.0
    extra = 1.0
    if isinstance(psf, ExactPsf):
        h, w = psf.residual.shape
        extra += 0.5 * max(h, w) + 1.0
        psf = psf.mixture
    covs = np.asarray(psf.covs)
    means = np.asarray(psf.means)
    return covs[:, 0, 0], covs[:, 1, 1], np.abs(means[:, 0]), np.abs(means[:, 1]), extra


class _Model:
    """chi^2, normal equations (and, for the reference solver, residuals and a dense Jacobian)
    of a scene in one observation, over the fitted sources.

    ``frame`` (a :class:`Frame` or None) maps the scene's reference-frame positions and shapes
    to this observation's pixels.
    """

    def __init__(self, obs, scene, fitted, sky, frame=None):
        self.obs = obs
        self.psf = obs.psf
        self.frame = frame
        self.sky = sky
        self.w = np.asarray(obs.weights)
        self.data = np.asarray(obs.image)
        self.used = self.w > 0
        self.npix = int(np.count_nonzero(self.used))
        ny, nx = obs.shape
        self.shape = (ny, nx)
        self.scene = scene
        self.fitted = tuple(fitted)
        fixed = [i for i, f in enumerate(fitted) if not f]
        self.fixed_model = np.zeros(self.shape)
        for i in fixed:
            self.fixed_model += _source_image(scene.sources[i], obs, frame)
        self.blocks = []          # (source index, names in z order)
        for i, s in enumerate(scene.sources):
            if fitted[i]:
                self.blocks.append((i, self._znames(s)))
        self.blocks_names = dict(self.blocks)
        self.sky_names = {"none": (), "constant": ("sky",),
                          "plane": ("sky", "sky_dx", "sky_dy")}[sky]
        yy, xx = np.mgrid[:ny, :nx]
        self.basis = [np.ones(self.shape), xx - (nx - 1) / 2, yy - (ny - 1) / 2][
            :len(self.sky_names)]
        ns = len(self.basis)
        self.sky_gram = np.array([[np.sum(self.w * a * b) for b in self.basis]
                                  for a in self.basis]).reshape(ns, ns)
        self.psf_ext = _psf_extent(self.psf)
        self.nfev = 0

    @staticmethod
    def _znames(s):
        if isinstance(s, PointSource):
            return ("flux", "x", "y")
        names = ["flux", "x", "y", "lnrc", "eta1", "eta2"]
        if s.profile == "ser":
            names.append("n")
        if s.profile2 is not None:
            names += ["flux2", "lnrc2", "eta1_2", "eta2_2"]
        return tuple(names)

    @property
    def nz(self):
        return sum(len(n) for _, n in self.blocks) + len(self.sky_names)

    # ------------------------------------------------------------------ vector <-> scene
    def to_z(self, scene):
        z = []
        for i, _ in self.blocks:
            s = scene.sources[i]
            z += [s.flux, s.x, s.y]
            if isinstance(s, Galaxy):
                z += list(physical_to_eta(s.re, s.q, s.angle))
                if s.profile == "ser":
                    z.append(s.n)
                if s.profile2 is not None:
                    z += [s.flux2, *physical_to_eta(s.re2, s.q2, s.angle2)[:]]
        z += [getattr(scene, n) for n in self.sky_names]
        return np.array(z, dtype=float)

    def bounds(self, ref_shape=None):
        ny, nx = ref_shape or self.shape
        lo, hi = [], []
        for _, names in self.blocks:
            for n in names:
                a, b = {"x": (-0.5, nx - 0.5), "y": (-0.5, ny - 0.5), "lnrc": _LN_RC,
                        "lnrc2": _LN_RC, "eta1": (-_ETA, _ETA), "eta2": (-_ETA, _ETA),
                        "eta1_2": (-_ETA, _ETA), "eta2_2": (-_ETA, _ETA),
                        "n": _N}.get(n, (-np.inf, np.inf))
                lo.append(a)
                hi.append(b)
        lo += [-np.inf] * len(self.sky_names)
        hi += [np.inf] * len(self.sky_names)
        return np.array(lo), np.array(hi)

    def from_z(self, z):
        scene = self.scene
        k = 0
        for i, names in self.blocks:
            v = dict(zip(names, z[k:k + len(names)]))
            k += len(names)
            s = scene.sources[i]
            if isinstance(s, PointSource):
                new = PointSource(float(v["flux"]), float(v["x"]), float(v["y"]))
            else:
                re, q, ang = _physical(v["lnrc"], v["eta1"], v["eta2"])
                ch = dict(flux=float(v["flux"]), x=float(v["x"]), y=float(v["y"]), re=re, q=q,
                          angle=ang)
                if "n" in v:
                    ch["n"] = float(v["n"])
                if "flux2" in v:
                    re2, q2, a2 = _physical(v["lnrc2"], v["eta1_2"], v["eta2_2"])
                    ch.update(flux2=float(v["flux2"]), re2=re2, q2=q2, angle2=a2)
                new = dataclasses.replace(s, **ch)
            scene = scene.replace_source(i, new)
        sky = dict(zip(self.sky_names, z[k:]))
        return dataclasses.replace(scene, **{n: float(val) for n, val in sky.items()})

    # ------------------------------------------------------------------ rendering
    def _place(self, x, y):
        if self.frame is None:
            return x, y, None
        return self.frame.map(x, y)

    @staticmethod
    def _components(s, v, A):
        """[(flux name, flux, S3, dS (3, 3) or None, u names, profile, has n)] in this
        observation's pixels (``A``: the frame's local Jacobian, None for the same grid)."""
        if isinstance(s, PointSource):
            return [("flux", v["flux"], np.zeros(3), None, (), POINT_PROFILE, False)]
        out = []
        T = None if A is None else _s3_map(A)
        S3, dS = shape_jacobian_eta((v["lnrc"], v["eta1"], v["eta2"]))
        if T is not None:
            S3, dS = T @ S3, T @ dS
        prof = _Family(v["n"]) if s.profile == "ser" else s.mixture()
        out.append(("flux", v["flux"], S3, dS, ("lnrc", "eta1", "eta2"), prof,
                    s.profile == "ser"))
        if s.profile2 is not None:
            S3b, dSb = shape_jacobian_eta((v["lnrc2"], v["eta1_2"], v["eta2_2"]))
            if T is not None:
                S3b, dSb = T @ S3b, T @ dSb
            out.append(("flux2", v["flux2"], S3b, dSb, ("lnrc2", "eta1_2", "eta2_2"),
                        s.mixture("2"), False))
        return out

    def _box(self, x, y, comps):
        """``(y0, y1, x0, x1)`` holding every component's exp(-36) ellipse (clipped to the
        image), or None when none of it falls on the image."""
        cxx, cyy, mx, my, extra = self.psf_ext
        hx = hy = 0.0
        for _, _, S3, _, _, prof, _ in comps:
            v = np.asarray(prof.variances, float)
            if v.size and np.all(np.isfinite(v)):
                vmax = float(v.max())
            else:
                vmax = 0.0
            hx = max(hx, float(np.max(np.sqrt(_CUT * (vmax * S3[0] + cxx)) + mx)))
            hy = max(hy, float(np.max(np.sqrt(_CUT * (vmax * S3[2] + cyy)) + my)))
        hx += extra
        hy += extra
        ny, nx = self.shape
        if not (math.isfinite(hx) and math.isfinite(hy) and math.isfinite(x)
                and math.isfinite(y)):
            return 0, ny, 0, nx
        x0, x1 = max(0, math.floor(x - hx)), min(nx, math.ceil(x + hx) + 1)
        y0, y1 = max(0, math.floor(y - hy)), min(ny, math.ceil(y + hy) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        return y0, y1, x0, x1

    def _source(self, i, v, jac):
        """One source over its box: ``(box, image, J (p, h, w) or None)``."""
        s = self.scene.sources[i]
        names = self.blocks_names[i]
        xo, yo, A = self._place(v["x"], v["y"])
        comps = self._components(s, v, A)
        box = self._box(xo, yo, comps)
        if box is None:
            return None, None, (np.zeros((len(names), 0, 0)) if jac else None)
        y0, y1, x0, x1 = box
        shp = (y1 - y0, x1 - x0)
        bx, by = xo - x0, yo - y0
        img_all = np.zeros(shp)
        J = np.zeros((len(names),) + shp) if jac else None
        col = {n: j for j, n in enumerate(names)}
        for fname, flux, S3, dS, unames, prof, has_n in comps:
            out = render_galaxy(flux, bx, by, S3, prof, None, self.psf, shp, derivs=jac)
            img, d = out if jac else (out, None)
            img_all += img
            if not jac:
                continue
            if flux != 0:
                J[col[fname]] = img / flux
            else:
                J[col[fname]] = render_galaxy(1.0, bx, by, S3, prof, None, self.psf, shp)
            if A is None:
                J[col["x"]] += d[0]
                J[col["y"]] += d[1]
            else:       # d/dx_ref = A00 d/dx_obs + A10 d/dy_obs, d/dy_ref likewise
                J[col["x"]] += A[0, 0] * d[0] + A[1, 0] * d[1]
                J[col["y"]] += A[0, 1] * d[0] + A[1, 1] * d[1]
            if dS is not None:
                for j, un in enumerate(unames):
                    J[col[un]] = np.tensordot(dS[:, j], d[2:], axes=1)
            if has_n:
                J[col["n"]] = render_galaxy_dn(flux, bx, by, S3, prof, prof.damps,
                                               prof.dvariances, self.psf, shp)
        return box, img_all, J

    def _render(self, z, jac):
        """Model image and the per-source ``(offset, box, J)``."""
        model = self.fixed_model.copy()
        parts = []
        k = 0
        for i, names in self.blocks:
            v = dict(zip(names, z[k:k + len(names)]))
            box, img, J = self._source(i, v, jac)
            if box is not None:
                y0, y1, x0, x1 = box
                model[y0:y1, x0:x1] += img
            parts.append((k, box, J))
            k += len(names)
        for j in range(len(self.sky_names)):
            model += z[k + j] * self.basis[j]
        return model, parts, k

    def image(self, z):
        """The model image at ``z`` (all sources, fixed ones included, and the sky)."""
        return self._render(z, False)[0]

    def evaluate(self, z):
        """``(chi2, A, g, model)``: ``A = J^T W J``, ``g = J^T W (data - model)``, the Jacobian
        never formed beyond each source's box."""
        self.nfev += 1
        model, parts, ks = self._render(z, True)
        r = self.data - model
        wr = self.w * r
        chi2 = float(np.sum(wr * r))
        nz = self.nz
        A = np.zeros((nz, nz))
        g = np.zeros(nz)
        flat = []
        for k, box, J in parts:
            p = J.shape[0]
            if box is None:
                flat.append(None)
                continue
            y0, y1, x0, x1 = box
            Jf = J.reshape(p, -1)
            WJ = (J * self.w[y0:y1, x0:x1]).reshape(p, -1)
            A[k:k + p, k:k + p] = WJ @ Jf.T
            g[k:k + p] = Jf @ wr[y0:y1, x0:x1].ravel()
            for j, b in enumerate(self.basis):
                c = WJ.sum(axis=1) if j == 0 else WJ @ b[y0:y1, x0:x1].ravel()
                A[k:k + p, ks + j] = c
                A[ks + j, k:k + p] = c
            flat.append((k, p, box, J, WJ.reshape(J.shape)))
        for a in range(len(flat)):
            if flat[a] is None:
                continue
            ka, pa, (ay0, ay1, ax0, ax1), Ja, _ = flat[a]
            for b in range(a + 1, len(flat)):
                if flat[b] is None:
                    continue
                kb, pb, (by0, by1, bx0, bx1), _, WJb = flat[b]
                y0, y1 = max(ay0, by0), min(ay1, by1)
                x0, x1 = max(ax0, bx0), min(ax1, bx1)
                if y0 >= y1 or x0 >= x1:
                    continue
                Ja_ = Ja[:, y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0].reshape(pa, -1)
                Wb_ = WJb[:, y0 - by0:y1 - by0, x0 - bx0:x1 - bx0].reshape(pb, -1)
                blk = Ja_ @ Wb_.T
                A[ka:ka + pa, kb:kb + pb] = blk
                A[kb:kb + pb, ka:ka + pa] = blk.T
        ns = len(self.basis)
        if ns:
            A[ks:, ks:] = self.sky_gram
            for j, b in enumerate(self.basis):
                g[ks + j] = float(np.sum(wr * b))
        return chi2, A, g, model

    def dense(self, z):
        """Weighted residuals ``sqrt(w) (data - model)`` over the used pixels and the dense
        Jacobian of the residuals (the reference solver's view)."""
        self.nfev += 1
        model, parts, ks = self._render(z, True)
        sw = np.sqrt(self.w[self.used])
        res = sw * (self.data - model)[self.used]
        index = np.full(self.shape, -1)
        index[self.used] = np.arange(self.npix)
        J = np.zeros((self.npix, self.nz))
        for k, box, Jb in parts:
            if box is None:
                continue
            y0, y1, x0, x1 = box
            rows = index[y0:y1, x0:x1].ravel()
            keep = rows >= 0
            J[rows[keep], k:k + Jb.shape[0]] = Jb.reshape(Jb.shape[0], -1)[:, keep].T
        for j, b in enumerate(self.basis):
            J[:, ks + j] = b[self.used]
        return res, -sw[:, None] * J


def _source_image(s, obs, frame=None):
    """One source on an observation's full grid, through ``frame``."""
    if frame is None:
        return s.render_into(obs)
    return scene_in_frame(Scene((s,)), frame).sources[0].render_into(obs)


def _physical(lnrc, e1, e2):
    re, q, ang = eta_to_physical((lnrc, e1, e2))
    return float(re), float(min(q, 1.0)), float(ang)


def _inverse(A, keep):
    """``A^-1`` over the ``keep`` parameters through the unit-diagonal scaling (NaN elsewhere),
    and whether it exists: False when the kept block is singular or its scaled condition number
    exceeds 1e12 (the one-galaxy fit's rule)."""
    n = A.shape[0]
    C = np.full((n, n), np.nan)
    keep = keep & (np.diag(A) > 0) & np.isfinite(np.diag(A))
    if not keep.any():
        return C, False
    Ak = A[np.ix_(keep, keep)]
    sc = np.sqrt(np.diag(Ak))
    An = Ak / np.outer(sc, sc)
    if np.all(np.isfinite(An)) and np.linalg.cond(An) <= 1e12:
        try:
            C[np.ix_(keep, keep)] = np.linalg.inv(An) / np.outer(sc, sc)
            return C, True
        except np.linalg.LinAlgError:
            pass
    return C, False


class _Cancelled(Exception):
    pass


_STATUS = {"converged": "converged", "max_evaluations": "max_nfev", "cancelled": "cancelled",
           "failed": "failed"}


def _solve(problem, z0, lo, hi, should_stop, max_nfev, solver):
    """Minimise ``problem``'s chi^2 from ``z0`` in ``[lo, hi]``: ``(z, status)``.

    ``problem`` has ``evaluate(z) -> (chi2, A, g, aux)`` (LM) and ``dense(z) -> (res, J)``
    (scipy's trf, the reference)."""
    if solver == "scipy":
        width = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
        z0 = np.clip(z0, lo + 1e-9 * width, hi - 1e-9 * width)   # strictly inside: trf needs it
        cache = {}

        def both(z):
            if should_stop is not None and should_stop():
                raise _Cancelled
            key = z.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = problem.dense(z)
            return cache[key]

        try:
            res = optimize.least_squares(lambda z: both(z)[0], z0, jac=lambda z: both(z)[1],
                                         bounds=(lo, hi), method="trf", x_scale="jac",
                                         max_nfev=max_nfev, **_TOL)
        except _Cancelled:
            return z0, "cancelled"
        return res.x, ("converged" if res.status > 0 else "max_nfev")
    last = {"z": np.clip(np.asarray(z0, float), lo, hi)}

    def evaluate(z):
        if should_stop is not None and should_stop():
            raise _Cancelled
        return problem.evaluate(z)

    def callback(z, chi2, nit, nfev):
        last["z"] = z.copy()

    try:
        res = levenberg_marquardt(evaluate, z0, lo, hi, max_nfev=max_nfev, callback=callback,
                                  **_TOL)
    except _Cancelled:
        return last["z"], "cancelled"
    return res.z, _STATUS.get(res.status, "failed")


def _dz_dphys(names, z):
    """Block of d z / d physical for one source's z names -> (physical names, matrix)."""
    v = dict(zip(names, z))
    phys, rows = [], {}
    for n in names:
        if n in ("flux", "x", "y", "n", "flux2"):
            phys.append(n)
    for sfx, (l, a, b) in (("", ("lnrc", "eta1", "eta2")), ("2", ("lnrc2", "eta1_2", "eta2_2"))):
        if l in v:
            phys += ["re" + sfx, "q" + sfx, "angle" + sfx]
            re, q, ang = _physical(v[l], v[a], v[b])
            t = 2 * math.radians(ang)
            lq = math.log(q)
            d2r = math.pi / 180.0
            rows[l] = {"re" + sfx: 1 / re, "q" + sfx: 0.5 / q}
            rows[a] = {"q" + sfx: -math.cos(t) / q, "angle" + sfx: 2 * lq * math.sin(t) * d2r}
            rows[b] = {"q" + sfx: -math.sin(t) / q, "angle" + sfx: -2 * lq * math.cos(t) * d2r}
    D = np.zeros((len(names), len(phys)))
    for r, n in enumerate(names):
        if n in phys:
            D[r, phys.index(n)] = 1.0
        for pn, val in rows.get(n, {}).items():
            D[r, phys.index(pn)] = val
    return phys, D


def _dphys_dz(model, z):
    """``(names, G)``: the physical parameters of ``model``'s fitted sources and sky, and
    ``G = d physical / d z`` (block diagonal: the inverse of each source's ``dz/dphys``)."""
    names, blocks, k = [], [], 0
    for i, zn in model.blocks:
        phys, D = _dz_dphys(zn, z[k:k + len(zn)])
        with np.errstate(all="ignore"):
            try:
                Gi = np.linalg.inv(D)
            except np.linalg.LinAlgError:       # q = 1 exactly: the angle is undefined
                Gi = np.linalg.pinv(D)
        blocks.append(Gi)
        names += [(i, p) for p in phys]
        k += len(zn)
    ns = len(model.sky_names)
    if ns:
        blocks.append(np.eye(ns))
        names += [(-1, n) for n in model.sky_names]
    G = np.zeros((len(names), z.size))
    r0 = 0
    for b in blocks:
        G[r0:r0 + b.shape[0], r0:r0 + b.shape[1]] = b
        r0 += b.shape[0]
    return names, G


def _inside(s, shape):
    ny, nx = shape
    return -0.5 <= s.x <= nx - 0.5 and -0.5 <= s.y <= ny - 0.5


def _check_sources(scene, fitted, shape):
    """Sources that cannot be fitted as given: ``(fitted, scene, notes)``. A free source whose
    centre is outside the image is held at its values; of two free sources of one kind (two
    point sources, two galaxies) on the same pixel (closer than :data:`SAME_PIXEL`) the
    fainter is held at zero flux, so the pair is fitted as one source. A point source on a
    galaxy's centre is kept (a nucleus and its host, as GALFIT fits them) with a note."""
    fitted = list(fitted)
    notes = [[] for _ in scene.sources]
    ny, nx = shape
    for i, s in enumerate(scene.sources):
        vals = [s.flux, s.x, s.y] + ([s.re, s.q, s.angle] if isinstance(s, Galaxy) else [])
        if not all(math.isfinite(float(v)) for v in vals):
            if fitted[i]:
                raise FitError(f"source {i} has a non-finite start ({s}): give finite values")
        if fitted[i] and not _inside(s, shape):
            fitted[i] = False
            notes[i].append(f"centre ({s.x:.2f}, {s.y:.2f}) is outside the {nx}x{ny} image: "
                            "held at its start (rendered, not fitted)")
    free = [i for i, f in enumerate(fitted) if f]
    order = sorted(free, key=lambda i: -abs(scene.sources[i].flux))
    for a, i in enumerate(order):
        if not fitted[i]:
            continue
        si = scene.sources[i]
        for j in order[a + 1:]:
            sj = scene.sources[j]
            d = math.hypot(si.x - sj.x, si.y - sj.y)
            if fitted[j] and d < SAME_PIXEL and si.kind != sj.kind:
                notes[j].append(f"on the centre of source {i} ({d:.2f} px apart): fitted as "
                                "a nucleus and its host (degenerate if the galaxy is compact)")
            elif fitted[j] and d < SAME_PIXEL:
                fitted[j] = False
                scene = scene.replace_source(j, dataclasses.replace(sj, flux=0.0))
                notes[j].append(f"on the same pixel as source {i} ({d:.2f} px apart): the two "
                                f"are fitted as one (source {i}); this one is held at zero flux")
                notes[i].append(f"source {j} lay on the same pixel and was merged into it")
    return tuple(fitted), scene, notes


def fit_scene(observation, scene, *, fitted=None, sky="constant", sequential=True,
              should_stop=None, max_nfev=400, solver="lm", frame=None, ref_shape=None,
              residual_pass=False, max_new=10, neighbour_profile="exp", residual_rounds=3,
              split_blends=False, target_at=None, max_splits=2):
    """Fit the sources of ``scene`` (those with ``fitted[i]``; default all) and the sky.

    Parameters
    ----------
    observation : Observation
        Pixels, weights and the PSF every source is convolved with (a mixture, or a stamp used
        exactly).
    scene : Scene
        The start: sources and sky (values used as the starting point), in the observation's
        0-based pixel coordinates.
    fitted : sequence of bool, optional
        Which sources are free; the others are held at their values.
    sky : {'none', 'constant', 'plane'}
    sequential : bool
        First fit each free source alone (brightest first), the others held, then jointly.
    should_stop : callable, optional
        Polled before each evaluation; True cancels (status ``'cancelled'``).
    max_nfev : int
        Evaluation limit of each least-squares run.
    solver : {'lm', 'scipy'}
        Levenberg-Marquardt on the sparse normal equations (default), or scipy's ``trf`` on
        the dense Jacobian (the reference: same optimum, much slower with many sources).
    frame : Frame, optional
        The scene is in another grid's pixels (the reference frame of :func:`fit_multiband`,
        of shape ``ref_shape``), reached through this :class:`Frame`.
    ref_shape : (ny, nx), optional
        The reference grid's shape (for the position bounds; default the observation's).
    residual_pass : bool
        After the fit, detect on its residual what the scene misses
        (:func:`mogviewer.detect.detect_missed`), add up to ``max_new`` of those sources
        (point sources, or ``neighbour_profile`` galaxies) and fit again, up to
        ``residual_rounds`` times (a bright miss distorts its surroundings: fainter misses are
        looked for again once it is modelled); their indices are
        :attr:`SceneFitResult.added`.
    split_blends : bool
        After the first fit, look for a neighbour blended with the target, one the detection
        could not deblend (no saddle between them: closer than ~2 r_e, or much fainter), which
        the target absorbed (:mod:`.blends`). A ``neighbour_profile`` galaxy is started at two
        places within :data:`.blends.SPLIT_RADIUS` half-light ellipses of the target: the
        brightest positive residual (S/N >= 5 over its residual segment), and the maximum of
        :func:`.blends.score_map` (the linearised chi2 drop of a neighbour at each pixel, the
        target free to move and stretch; tried when it reaches half the BIC's bound);
        everything is fitted jointly from each, and the lower chi2 is kept only if it drops by
        more than the Bayesian information criterion's ``k ln N`` (k the new source's free
        parameters, N the used pixels) and the new source ends at no bound, no flatter than
        :data:`.blends.SPLIT_MIN_Q` by two of its errors (a streak is the target's own
        structure) and not on the target's centre (:data:`.blends.SPLIT_MIN_SEPARATION` PSF
        sigmas: its core); up to ``max_splits`` times; the search stops at the first
        candidate not kept (why, and every start's chi2: in the target's
        :attr:`SceneFitResult.notes`). The indices of the sources split off are in
        :attr:`SceneFitResult.added`. Not with ``frame``.
    target_at : (x, y), optional
        Where the target is, to tell it from a source split off it: after a split, the one of
        the two nearer this point is the target (default: the target's start position).
    max_splits : int
        At most this many sources are split off the target.

    Returns
    -------
    SceneFitResult
        Bad sources are flagged and explained (:attr:`SceneFitResult.notes`), not raised: a
        centre outside the image is held; the fainter of two sources on one pixel is merged
        into the brighter; a neighbour that ends on a bound is flagged ``AT_BOUND``.
    """
    t0 = time.perf_counter()
    kw = dict(sky=sky, sequential=sequential, should_stop=should_stop, max_nfev=max_nfev,
              solver=solver, frame=frame, ref_shape=ref_shape)
    res = _fit_scene(observation, scene, fitted=fitted, **kw)
    if frame is not None or res.status == "cancelled" or not (residual_pass or split_blends):
        return res
    from ..detect import add_detections, detect_missed
    n0 = len(scene)
    said = {i: list(ns) for i, ns in enumerate(res.notes)}
    extra = []
    nfev = res.nfev
    if split_blends:
        t = scene.sources[scene.target]
        at = target_at if target_at is not None else (t.x, t.y)
        # the trial is fitted jointly from the start: fitted alone first, with the inflated
        # target held, the new source is squeezed into the gap between the two (a q -> 0
        # needle at the size bound; seen on the brute-rendered 1.5 r_e, ratio 3 pairs)
        joint = dict(kw, sequential=False)
        res, said, nfev = split_target(
            observation, res, at,
            lambda sc, fitted_: _fit_scene(observation, sc, fitted=fitted_, **joint),
            said, nfev, max_splits=max_splits, neighbour_profile=neighbour_profile,
            sky=sky)
    if not residual_pass or res.status == "cancelled":
        return _with_passes(res, said, (), n0, nfev, t0)
    for _ in range(residual_rounds):
        missed = detect_missed(observation, res.scene, max_new=max_new - (len(res.scene) - n0))
        extra += list(missed.messages)
        if not missed.sources:
            break
        n1 = len(res.scene)
        scene2 = add_detections(res.scene, missed, psf=observation.psf,
                                neighbour_profile=neighbour_profile)
        for i, d in zip(range(n1, len(scene2)), missed.sources):
            said[i] = [f"added by the residual pass ({d.kind} at ({d.x:.1f}, {d.y:.1f}), "
                       f"residual flux {d.flux:.4g})"]
        fitted2 = tuple(res.fitted) + (True,) * (len(scene2) - n1)
        res = _fit_scene(observation, scene2, fitted=fitted2, **kw)
        nfev += res.nfev
        if len(res.scene) - n0 >= max_new or res.status == "cancelled":
            break
    if len(res.scene) == n0:
        extra.insert(0, "residual pass: nothing missed")
    return _with_passes(res, said, extra, n0, nfev, t0)


def _with_passes(res, said, extra, n0, nfev, t0):
    """``res`` with the notes of the passes after the first fit (``said``: by source index),
    their messages (``extra``), the sources they added (index ``n0`` on), the evaluations of
    all the fits and the time since ``t0``."""
    notes = [tuple(dict.fromkeys(said.get(i, []) + list(ns))) for i, ns in enumerate(res.notes)]
    messages = tuple(f"source {i}: {t}" for i, ns in enumerate(notes) for t in ns)
    return dataclasses.replace(res, notes=tuple(notes), messages=messages + tuple(extra),
                               added=tuple(range(n0, len(res.scene))), nfev=nfev,
                               elapsed=time.perf_counter() - t0)


def _fit_scene(observation, scene, *, fitted, sky, sequential, should_stop, max_nfev, solver,
               frame, ref_shape):
    """One fit of :func:`fit_scene` (without the residual pass)."""
    t0 = time.perf_counter()
    if not scene.sources:
        raise FitError("the scene has no sources to fit")
    fitted = tuple(bool(f) for f in (fitted if fitted is not None else [True] * len(scene)))
    if len(fitted) != len(scene):
        raise FitError(f"fitted has {len(fitted)} entries for {len(scene)} sources")
    if sky not in ("none", "constant", "plane"):
        raise FitError(f"sky must be 'none', 'constant' or 'plane', got {sky!r}")
    if solver not in ("lm", "scipy"):
        raise FitError(f"solver must be 'lm' or 'scipy', got {solver!r}")
    if observation.n_good == 0:
        raise FitError(f"{observation.name}: every pixel is masked or has zero weight")
    if sky == "none":
        scene = dataclasses.replace(scene, sky=0.0, sky_dx=0.0, sky_dy=0.0)
    ref_shape = tuple(ref_shape or observation.shape)
    fitted, scene, notes = _check_sources(scene, fitted, ref_shape)
    nfev = 0
    status = "converged"
    if sequential and sum(fitted) > 1:
        order = sorted((i for i, f in enumerate(fitted) if f), key=lambda i: -abs(
            scene.sources[i].flux))
        for i in order:
            alone = tuple(j == i for j in range(len(scene)))
            m = _Model(observation, scene, alone, sky, frame)
            z, status = _solve(m, m.to_z(scene), *m.bounds(ref_shape), should_stop, max_nfev,
                               solver)
            nfev += m.nfev
            scene = m.from_z(z)
            if status == "cancelled":
                break
    m = _Model(observation, scene, fitted, sky, frame)
    if m.npix <= m.nz:
        raise FitError(f"{m.npix} usable pixels for {m.nz} free parameters")
    lo, hi = m.bounds(ref_shape)
    if status != "cancelled" and m.nz:
        z, status = _solve(m, m.to_z(scene), lo, hi, should_stop, max_nfev, solver)
    else:
        z = m.to_z(scene)
    nfev += m.nfev
    best = m.from_z(z)
    chi2, A, _, _ = m.evaluate(z)
    nu = int(m.npix - m.nz)
    at_bound = (np.isclose(z, lo, rtol=0, atol=1e-6) | np.isclose(z, hi, rtol=0, atol=1e-6))
    Cz, cov_ok = _inverse(A, ~at_bound)
    names, G = _dphys_dz(m, z)
    with np.errstate(invalid="ignore"):
        cov = G @ np.where(np.isnan(Cz), 0.0, Cz) @ G.T
        bad = (np.abs(G) > 0) @ np.isnan(np.diag(Cz))
        cov[bad, :] = np.nan
        cov[:, bad] = np.nan
    err_all = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    errors = [dict() for _ in scene.sources]
    sky_errors = {}
    for (i, p), e in zip(names, err_all):
        if i < 0:
            sky_errors[p] = float(e)
        else:
            errors[i][p] = float(e)
    flags = [FitFlags(0)] * len(scene)
    k = 0
    for i, zn in m.blocks:
        f = FitFlags(0)
        hit = [n for n, b in zip(zn, at_bound[k:k + len(zn)]) if b]
        if hit:
            f |= FitFlags.AT_BOUND
            notes[i].append(f"ended on a bound of {', '.join(hit)} (its error there is "
                            "undefined; a neighbour at a bound is usually a blend or an "
                            "artefact: mask it or hold it)")
        if not cov_ok or not all(np.isfinite(v) for v in errors[i].values()):
            f |= FitFlags.COV_NONFINITE
        s = best.sources[i]
        if s.flux <= 0:
            f |= FitFlags.NEGATIVE_FLUX
        if not _inside(s, ref_shape):
            f |= FitFlags.CENTRE_OUTSIDE
        if status == "cancelled":
            f |= FitFlags.CANCELLED
        elif status in ("max_nfev", "failed"):
            f |= FitFlags.NOT_CONVERGED
        flags[i] = f
        k += len(zn)
    for i, s in enumerate(best.sources):
        if not fitted[i] and not _inside(s, ref_shape):
            flags[i] |= FitFlags.CENTRE_OUTSIDE
    notes = tuple(tuple(n) for n in notes)
    messages = tuple(f"source {i}: {t}" for i, ns in enumerate(notes) for t in ns)
    return SceneFitResult(scene=best, errors=tuple(errors), sky_errors=sky_errors,
                          flags=tuple(flags), fitted=fitted, chi2=chi2, nu=nu,
                          chi2_nu=chi2 / nu if nu > 0 else math.nan, status=status, nfev=nfev,
                          elapsed=time.perf_counter() - t0, covariance=cov, names=tuple(names),
                          notes=notes, messages=messages, solver=solver)
