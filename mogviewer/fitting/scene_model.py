"""The model of a scene in one observation: the parameter vector, the sparse normal equations,
the frames that map a reference grid to an observation's pixels.

:class:`_Model` holds what one evaluation needs: the fitted sources' unconstrained parameters
``z`` (per point source ``flux, x, y``; per galaxy ``flux, x, y, ln r_circ, eta1, eta2``, ``n``
for the Sérsic family, ``flux2, ln r_circ2, eta1_2, eta2_2`` for a second component; then the
sky), their bounds, and ``evaluate(z) -> (chi2, A, g, aux)``: chi^2 and the normal equations
``A = J^T W J``, ``g = J^T W r`` assembled block by block over each source's bounding box (see
:mod:`mogviewer.fitting.scene_fit`, the driver, for the cost). :class:`Frame` maps reference-frame
positions and shapes to another grid through the two WCSs. :func:`_dphys_dz` is the Jacobian of
the physical parameters (flux, x, y, re, q, angle in degrees, n, ...) with respect to ``z``, for
the covariance.

Conventions are those of :mod:`mogviewer.scene`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..ellipse import (
    eta_to_physical,
    physical_to_eta,
    shape_jacobian_eta,
    shape_matrix,
    shape_to_physical,
)
from ..profiles import sersic
from ..render import render_galaxy, render_galaxy_dn
from ..render.exact import PIXEL_VAR, ExactPsf
from ..scene import POINT_PROFILE, Galaxy, PointSource, Scene

_LN_RC = (math.log(0.05), math.log(1e4))      # circularised radius 0.05 px .. 1e4 px
_ETA = math.log(1e3)                          # q >= 1e-3
_N = (sersic.N_MIN + 0.01, sersic.N_MAX)      # as the one-galaxy fit's n bounds
#: The renderer cuts each component at exp(-36) of its peak: (dx^2 / C_xx) <= 72 along x.
_CUT = 72.0


class _Family:
    def __init__(self, n):
        self.amps, self.variances, self.damps, self.dvariances = sersic.sersic_mixture(n)


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

    def bounds(self, ref_shape=None, boxes=None):
        """``(lo, hi)`` of ``z``: centres within the image (``ref_shape``, reference frame) and,
        for a source ``i`` in ``boxes`` (``{i: (x0, y0, R, ln r_max)}``), within ``R`` px of
        ``(x0, y0)`` along each axis with ``ln r_circ <= ln r_max``; sizes, axis ratios and n
        within the one-galaxy fit's limits."""
        ny, nx = ref_shape or self.shape
        boxes = boxes or {}
        lo, hi = [], []
        for i, names in self.blocks:
            box = boxes.get(i)
            for n in names:
                a, b = {"x": (-0.5, nx - 0.5), "y": (-0.5, ny - 0.5), "lnrc": _LN_RC,
                        "lnrc2": _LN_RC, "eta1": (-_ETA, _ETA), "eta2": (-_ETA, _ETA),
                        "eta1_2": (-_ETA, _ETA), "eta2_2": (-_ETA, _ETA),
                        "n": _N}.get(n, (-np.inf, np.inf))
                if box is not None and n in ("x", "y"):
                    c = box[0] if n == "x" else box[1]
                    a, b = max(a, c - box[2]), min(b, c + box[2])
                elif box is not None and n == "lnrc":
                    b = min(b, box[3])
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
