"""Fit a :class:`~mogviewer.scene.Scene` (several sources and a sky) to an observation.

The parameter vector covers every fitted source: a point source contributes ``flux, x, y``; a
galaxy ``flux, x, y, ln r_circ, eta1, eta2`` (the unconstrained ellipse of
:mod:`mogviewer.ellipse`), ``n`` for the Sérsic family, and ``flux2, ln r_circ2, eta1_2,
eta2_2`` for a second component sharing its centre; then the sky (``sky``, and ``sky_dx,
sky_dy`` for a plane). A source's derivatives come from the renderer in the same pass as its
image, so the Jacobian is exact; sources not fitted are rendered once and held fixed.

:func:`fit_scene` first fits each fitted source alone with the others held at their current
values (brightest first, the Tractor's order), then all of them jointly. Errors are the
square roots of the diagonal of ``(J^T W J)^-1`` in the *physical* parameters (flux, x, y,
re, q, angle in degrees, n, ...), from the joint fit's Jacobian.

Conventions are those of :mod:`mogviewer.scene`; the one-galaxy :func:`mogviewer.fitting.fit`
is the special case with one galaxy (it has more options: bounds, fixed parameters, flags).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from scipy import optimize

from ..ellipse import eta_to_physical, physical_to_eta, shape_jacobian_eta
from ..errors import FitError
from ..profiles import sersic
from ..render import render_galaxy, render_galaxy_dn
from ..scene import POINT_PROFILE, Galaxy, PointSource, Scene
from .flags import FitFlags

__all__ = ["SceneFitResult", "fit_scene", "MultiBandResult", "fit_multiband"]

_LN_RC = (math.log(0.05), math.log(1e4))      # circularised radius 0.05 px .. 1e4 px
_ETA = math.log(1e3)                          # q >= 1e-3
_N = (sersic.N_MIN + 0.01, sersic.N_MAX)      # as the one-galaxy fit's n bounds


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
        Per source, ``{parameter: 1-sigma error}`` in physical units (0 for a source held fixed).
    sky_errors : dict
        Errors of ``sky`` (and ``sky_dx``, ``sky_dy``).
    flags : tuple of FitFlags
        Per source: ``AT_BOUND``, ``COV_NONFINITE``, ``CENTRE_OUTSIDE``, ``NEGATIVE_FLUX``.
    fitted : tuple of bool
        Which sources were free.
    chi2, nu, chi2_nu : float, int, float
        Over the used pixels; ``nu`` = used pixels - free parameters.
    status : str
        ``'converged'``, ``'max_nfev'`` or ``'cancelled'``.
    nfev : int
    elapsed : float
        Seconds.
    covariance : ndarray
        Over :attr:`names`, physical parameters.
    names : tuple of (int, str)
        ``(source index, parameter)``; ``(-1, 'sky')`` etc. for the sky.
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


class _Model:
    """Residuals and Jacobian of a scene in one observation, over the fitted sources."""

    def __init__(self, obs, scene, fitted, sky):
        self.obs = obs
        self.psf = obs.psf
        self.sky = sky
        self.sel = np.flatnonzero(obs.weights.ravel() > 0)
        self.sw = np.sqrt(obs.weights.ravel()[self.sel])
        self.data = obs.image.ravel()[self.sel]
        ny, nx = obs.shape
        yy, xx = np.mgrid[:ny, :nx]
        self.gx = (xx - (nx - 1) / 2).ravel()[self.sel]
        self.gy = (yy - (ny - 1) / 2).ravel()[self.sel]
        self.scene = scene
        self.fitted = tuple(fitted)
        fixed = [i for i, f in enumerate(fitted) if not f]
        self.fixed_model = (scene.render(obs, sources=fixed).ravel()[self.sel] if fixed
                            else np.zeros(self.sel.size))
        self.blocks = []          # (source index, names in z order)
        for i, s in enumerate(scene.sources):
            if fitted[i]:
                self.blocks.append((i, self._znames(s)))
        self.sky_names = {"none": (), "constant": ("sky",),
                          "plane": ("sky", "sky_dx", "sky_dy")}[sky]
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

    def bounds(self):
        ny, nx = self.obs.shape
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
    def _render(self, flux, x, y, S3, prof, derivs):
        return render_galaxy(flux, x, y, np.asarray(S3), prof, None, self.psf,
                             self.obs.shape, derivs=derivs)

    def _components(self, s, v):
        """[(flux name, flux, S3, dS (3, 3) or None, u names, profile, has n)]"""
        if isinstance(s, PointSource):
            return [("flux", v["flux"], (0.0, 0.0, 0.0), None, (), POINT_PROFILE, False)]
        out = []
        S3, dS = shape_jacobian_eta((v["lnrc"], v["eta1"], v["eta2"]))
        prof = _Family(v["n"]) if s.profile == "ser" else s.mixture()
        out.append(("flux", v["flux"], S3, dS, ("lnrc", "eta1", "eta2"), prof,
                    s.profile == "ser"))
        if s.profile2 is not None:
            S3b, dSb = shape_jacobian_eta((v["lnrc2"], v["eta1_2"], v["eta2_2"]))
            out.append(("flux2", v["flux2"], S3b, dSb, ("lnrc2", "eta1_2", "eta2_2"),
                        s.mixture("2"), False))
        return out

    def model(self, z, *, jacobian=False):
        """Model over the used pixels and, with ``jacobian``, d model / dz (npix, nz)."""
        model = self.fixed_model.copy()
        J = np.zeros((self.sel.size, self.nz)) if jacobian else None
        k = 0
        for i, names in self.blocks:
            v = dict(zip(names, z[k:k + len(names)]))
            col = {n: k + j for j, n in enumerate(names)}
            for fname, flux, S3, dS, unames, prof, has_n in self._components(
                    self.scene.sources[i], v):
                out = self._render(flux, v["x"], v["y"], S3, prof, jacobian)
                img, d = out if jacobian else (out, None)
                model += img.ravel()[self.sel]
                if not jacobian:
                    continue
                d = d.reshape(5, -1)[:, self.sel]
                if flux != 0:
                    J[:, col[fname]] = img.ravel()[self.sel] / flux
                else:
                    J[:, col[fname]] = self._render(1.0, v["x"], v["y"], S3, prof,
                                                    False).ravel()[self.sel]
                J[:, col["x"]] += d[0]
                J[:, col["y"]] += d[1]
                if dS is not None:
                    for j, un in enumerate(unames):
                        J[:, col[un]] = dS[:, j] @ d[2:]
                if has_n:
                    J[:, col["n"]] = render_galaxy_dn(
                        flux, v["x"], v["y"], np.asarray(S3), prof, prof.damps,
                        prof.dvariances, self.psf, self.obs.shape).ravel()[self.sel]
            k += len(names)
        sky = dict(zip(self.sky_names, z[k:]))
        if sky:
            model += sky["sky"]
            if jacobian:
                J[:, k] = 1.0
            if "sky_dx" in sky:
                model += sky["sky_dx"] * self.gx + sky["sky_dy"] * self.gy
                if jacobian:
                    J[:, k + 1] = self.gx
                    J[:, k + 2] = self.gy
        return (model, J) if jacobian else model

    def residuals(self, z):
        self.nfev += 1
        return self.sw * (self.data - self.model(z))

    def jacobian(self, z):
        _, J = self.model(z, jacobian=True)
        return -self.sw[:, None] * J


def _physical(lnrc, e1, e2):
    re, q, ang = eta_to_physical((lnrc, e1, e2))
    return float(re), float(min(q, 1.0)), float(ang)


def _covariance(J):
    """``(J^T J)^-1`` through the unit-diagonal scaling, or NaNs (and False) when ``J^T J`` is
    singular or its scaled condition number exceeds 1e12 (the one-galaxy fit's rule)."""
    A = J.T @ J
    sc = np.sqrt(np.diag(A))
    if np.all(sc > 0) and np.all(np.isfinite(sc)):
        An = A / np.outer(sc, sc)
        if np.linalg.cond(An) <= 1e12:
            try:
                return np.linalg.inv(An) / np.outer(sc, sc), True
            except np.linalg.LinAlgError:
                pass
    return np.full(A.shape, np.nan), False


class _Cancelled(Exception):
    pass


def _solve(model, z0, should_stop, max_nfev):
    lo, hi = model.bounds()
    width = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
    z0 = np.clip(z0, lo + 1e-9 * width, hi - 1e-9 * width)   # strictly inside: trf needs it

    def resid(z):
        if should_stop is not None and should_stop():
            raise _Cancelled
        return model.residuals(z)

    try:
        # trf's exact solver takes an SVD of J (pixels x parameters) at every step: with 21
        # sources on 256 px that is 30 of 51 s; its iterative 'lsmr' solver needed 1.4x the
        # evaluations and 2.4x the time there. A solver on the normal equations accumulated
        # per source footprint is the way out (issue 16's driver).
        res = optimize.least_squares(resid, z0, jac=model.jacobian, bounds=(lo, hi),
                                     method="trf", x_scale="jac", max_nfev=max_nfev,
                                     xtol=1e-10, ftol=1e-10, gtol=1e-10)
    except _Cancelled:
        return z0, "cancelled"
    return res.x, ("converged" if res.status > 0 else "max_nfev")


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


def fit_scene(observation, scene, *, fitted=None, sky="constant", sequential=True,
              should_stop=None, max_nfev=400):
    """Fit the sources of ``scene`` (those with ``fitted[i]``; default all) and the sky.

    Parameters
    ----------
    observation : Observation
        Pixels, weights and the PSF every source is convolved with.
    scene : Scene
        The start: sources and sky (values used as the starting point).
    fitted : sequence of bool, optional
        Which sources are free; the others are held at their values.
    sky : {'none', 'constant', 'plane'}
    sequential : bool
        First fit each free source alone (brightest first), the others held, then jointly.
    should_stop : callable, optional
        Polled before each evaluation; True cancels (status ``'cancelled'``).
    max_nfev : int
        Evaluation limit of each least-squares run.

    Returns
    -------
    SceneFitResult
    """
    t0 = time.perf_counter()
    if not scene.sources:
        raise FitError("the scene has no sources to fit")
    fitted = tuple(bool(f) for f in (fitted if fitted is not None else [True] * len(scene)))
    if len(fitted) != len(scene):
        raise FitError(f"fitted has {len(fitted)} entries for {len(scene)} sources")
    if sky not in ("none", "constant", "plane"):
        raise FitError(f"sky must be 'none', 'constant' or 'plane', got {sky!r}")
    if sky == "none":
        scene = dataclasses.replace(scene, sky=0.0, sky_dx=0.0, sky_dy=0.0)
    nfev = 0
    status = "converged"
    if sequential and sum(fitted) > 1:
        order = sorted((i for i, f in enumerate(fitted) if f), key=lambda i: -abs(
            scene.sources[i].flux))
        for i in order:
            alone = tuple(j == i for j in range(len(scene)))
            m = _Model(observation, scene, alone, sky)
            z, status = _solve(m, m.to_z(scene), should_stop, max_nfev)
            nfev += m.nfev
            scene = m.from_z(z)
            if status == "cancelled":
                break
    m = _Model(observation, scene, fitted, sky)
    if m.sel.size <= m.nz:
        raise FitError(f"{m.sel.size} usable pixels for {m.nz} free parameters")
    if status != "cancelled":
        z, status = _solve(m, m.to_z(scene), should_stop, max_nfev)
    else:
        z = m.to_z(scene)
    nfev += m.nfev
    best = m.from_z(z)
    r = m.residuals(z)
    chi2 = float(r @ r)
    nu = int(m.sel.size - m.nz)
    # physical Jacobian and covariance
    Jz = m.jacobian(z)
    blocks, names, k = [], [], 0
    for i, zn in m.blocks:
        phys, D = _dz_dphys(zn, z[k:k + len(zn)])
        blocks.append(D)
        names += [(i, p) for p in phys]
        k += len(zn)
    ns = len(m.sky_names)
    if ns:
        blocks.append(np.eye(ns))
        names += [(-1, n) for n in m.sky_names]
    D = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
    r0 = c0 = 0
    for b in blocks:
        D[r0:r0 + b.shape[0], c0:c0 + b.shape[1]] = b
        r0 += b.shape[0]
        c0 += b.shape[1]
    cov, cov_ok = _covariance(Jz @ D)
    err_all = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    errors = [dict() for _ in scene.sources]
    sky_errors = {}
    for (i, p), e in zip(names, err_all):
        if i < 0:
            sky_errors[p] = float(e)
        else:
            errors[i][p] = float(e)
    lo, hi = m.bounds()
    at_bound = np.isclose(z, lo, rtol=0, atol=1e-6) | np.isclose(z, hi, rtol=0, atol=1e-6)
    flags = [FitFlags(0)] * len(scene)
    k = 0
    ny, nx = observation.shape
    for i, zn in m.blocks:
        f = FitFlags(0)
        if at_bound[k:k + len(zn)].any():
            f |= FitFlags.AT_BOUND
        if not cov_ok or not all(np.isfinite(v) for v in errors[i].values()):
            f |= FitFlags.COV_NONFINITE
        s = best.sources[i]
        if s.flux <= 0:
            f |= FitFlags.NEGATIVE_FLUX
        if not (-0.5 <= s.x <= nx - 0.5 and -0.5 <= s.y <= ny - 0.5):
            f |= FitFlags.CENTRE_OUTSIDE
        if status == "cancelled":
            f |= FitFlags.CANCELLED
        elif status == "max_nfev":
            f |= FitFlags.NOT_CONVERGED
        flags[i] = f
        k += len(zn)
    return SceneFitResult(scene=best, errors=tuple(errors), sky_errors=sky_errors,
                          flags=tuple(flags), fitted=fitted, chi2=chi2, nu=nu,
                          chi2_nu=chi2 / nu if nu > 0 else math.nan, status=status, nfev=nfev,
                          elapsed=time.perf_counter() - t0, covariance=cov, names=tuple(names))


# ------------------------------------------------------------------------------ several bands
_PER_BAND = ("flux", "flux2")


@dataclasses.dataclass(frozen=True, eq=False)
class MultiBandResult:
    """What :func:`fit_multiband` returns: one scene per band sharing positions and shapes.

    Attributes
    ----------
    bands : tuple of str
    scenes : tuple of Scene
        Per band: the same sources (centre, shape, n shared) with that band's fluxes and sky.
    errors : tuple of tuple of dict
        ``errors[b][i]``: 1-sigma errors of source ``i``'s physical parameters in band ``b``
        (shared parameters have the same error in every band).
    chi2, nu, chi2_nu : float, int, float
        Over all bands' used pixels.
    chi2_band : tuple of float
    status : str
    nfev : int
    elapsed : float
    covariance : ndarray
        Over :attr:`names`: ``(band or None, source index, parameter)``; the sky is source -1.
    names : tuple
    ties : str
        Which parameters were shared, in words (for the CSV).
    """

    bands: tuple
    scenes: tuple
    errors: tuple
    chi2: float
    nu: int
    chi2_nu: float
    chi2_band: tuple
    status: str
    nfev: int
    elapsed: float
    covariance: np.ndarray
    names: tuple
    ties: str = "centre, shape and n shared; flux and sky per band"

    def flux_covariance(self, source, band1, band2):
        """Covariance of the (mixture) fluxes of ``source`` in two bands."""
        i = self.names.index((band1, source, "flux"))
        j = self.names.index((band2, source, "flux"))
        return float(self.covariance[i, j])

    def colour(self, source, band1, band2):
        """``mag_band1 - mag_band2`` of a source and its error (the covariance included)."""
        f1 = self.scenes[self.bands.index(band1)].sources[source].flux
        f2 = self.scenes[self.bands.index(band2)].sources[source].flux
        k = 2.5 / math.log(10)
        c11 = self.flux_covariance(source, band1, band1)
        c22 = self.flux_covariance(source, band2, band2)
        c12 = self.flux_covariance(source, band1, band2)
        var = k * k * (c11 / f1 ** 2 + c22 / f2 ** 2 - 2 * c12 / (f1 * f2))
        return -2.5 * math.log10(f1 / f2), math.sqrt(var) if var >= 0 else math.nan


def fit_multiband(observations, scene, *, bands=None, fitted=None, sky="constant",
                  single_first=True, should_stop=None, max_nfev=400):
    """Fit one scene to several observations at once: shared centre, shape and Sérsic n, a flux
    (and sky) per band.

    The observations must share one pixel grid (same shape; bands of one coadd, or images
    resampled to one grid). Each band's fit starts from a single-band fit of that band
    (``single_first``), the shared parameters from their inverse-variance weighted mean.

    Parameters
    ----------
    observations : sequence of Observation
    scene : Scene
        The start (fluxes are rescaled per band by the single-band fits).
    bands : sequence of str, optional
        Names of the bands (default: each observation's ``band``, else ``b0, b1, ...``).

    Returns
    -------
    MultiBandResult
    """
    t0 = time.perf_counter()
    obs = list(observations)
    if not obs:
        raise FitError("no observations to fit")
    shapes = {o.shape for o in obs}
    if len(shapes) > 1:
        raise FitError(f"the bands have different pixel grids {sorted(shapes)}: resample them "
                       "to one grid (bands with their own WCS are not fitted jointly yet)")
    bands = tuple(bands or [o.band or f"b{i}" for i, o in enumerate(obs)])
    if len(set(bands)) != len(bands) or len(bands) != len(obs):
        raise FitError(f"band names must be unique, one per observation: {bands}")
    fitted = tuple(bool(f) for f in (fitted if fitted is not None else [True] * len(scene)))
    nfev = 0
    starts = []
    for o in obs:
        if single_first:
            r = fit_scene(o, scene, fitted=fitted, sky=sky, should_stop=should_stop,
                          max_nfev=max_nfev)
            nfev += r.nfev
            starts.append(r.scene)
        else:
            starts.append(scene)
    models = [_Model(o, s, fitted, sky) for o, s in zip(obs, starts)]
    # the global vector: per source its shared names, then its per-band fluxes; then skies
    gnames, index = [], [[] for _ in obs]
    z_local = [m.to_z(s) for m, s in zip(models, starts)]
    z0 = []
    k_local = 0
    for _i, names in models[0].blocks:
        for j, n in enumerate(names):
            if n in _PER_BAND:
                for b in range(len(obs)):
                    index[b].append(len(gnames))
                    gnames.append((bands[b], _i, n))
                    z0.append(z_local[b][k_local + j])
            else:
                for b in range(len(obs)):
                    index[b].append(len(gnames))
                gnames.append((None, _i, n))
                z0.append(float(np.mean([z_local[b][k_local + j] for b in range(len(obs))])))
        k_local += len(names)
    for b in range(len(obs)):
        for j, n in enumerate(models[0].sky_names):
            index[b].append(len(gnames))
            gnames.append((bands[b], -1, n))
            z0.append(z_local[b][k_local + j])
    index = [np.array(ix) for ix in index]
    z0 = np.array(z0)
    lo1, hi1 = models[0].bounds()
    lo, hi = np.full(z0.size, -np.inf), np.full(z0.size, np.inf)
    for j, g in enumerate(index[0]):
        lo[g], hi[g] = max(lo[g], lo1[j]), min(hi[g], hi1[j])
    for ix in index[1:]:
        for j, g in enumerate(ix):
            if np.isfinite(lo1[j]) and gnames[g][0] is None:
                lo[g], hi[g] = lo1[j], hi1[j]

    class _Joint:
        nfev = 0

        def bounds(self):
            return lo, hi

        def residuals(self, z):
            self.nfev += 1
            return np.concatenate([m.residuals(z[ix]) for m, ix in zip(models, index)])

        def jacobian(self, z):
            rows = [m.jacobian(z[ix]) for m, ix in zip(models, index)]
            J = np.zeros((sum(r.shape[0] for r in rows), z.size))
            r0 = 0
            for Jb, ix in zip(rows, index):
                np.add.at(J[r0:r0 + Jb.shape[0]].T, ix, Jb.T)
                r0 += Jb.shape[0]
            return J

    joint = _Joint()
    z, status = _solve(joint, z0, should_stop, max_nfev)
    nfev += joint.nfev
    chi2_band = tuple(float(np.sum(m.residuals(z[ix]) ** 2)) for m, ix in zip(models, index))
    chi2 = float(sum(chi2_band))
    npix = sum(m.sel.size for m in models)
    nu = int(npix - z.size)
    # covariance in physical parameters: per band the local dz/dphys, on the shared vector
    Jz = joint.jacobian(z)
    phys_names, cols = [], []
    D = np.zeros((z.size, 0))
    blocks_local = []
    k = 0
    for i, names in models[0].blocks:
        phys, Dl = _dz_dphys(names, z[index[0][k:k + len(names)]])
        blocks_local.append((i, names, phys, Dl, k))
        k += len(names)
    for i, names, phys, Dl, k in blocks_local:
        for pj, p in enumerate(phys):
            if p in _PER_BAND:
                for b in range(len(obs)):
                    col = np.zeros(z.size)
                    for r, n in enumerate(names):
                        col[index[b][k + r]] = Dl[r, pj] if n == p else col[index[b][k + r]]
                    cols.append(col)
                    phys_names.append((bands[b], i, p))
            else:
                col = np.zeros(z.size)
                for r in range(len(names)):
                    col[index[0][k + r]] = Dl[r, pj] if names[r] not in _PER_BAND else 0.0
                cols.append(col)
                phys_names.append((None, i, p))
    n_local = sum(len(names) for _, names in models[0].blocks)     # the skies follow
    for b in range(len(obs)):
        for j, n in enumerate(models[0].sky_names):
            col = np.zeros(z.size)
            col[index[b][n_local + j]] = 1.0
            cols.append(col)
            phys_names.append((bands[b], -1, n))
    D = np.column_stack(cols)
    cov, _ = _covariance(Jz @ D)
    err = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    scenes, errors = [], []
    for b, (m, ix) in enumerate(zip(models, index)):
        scenes.append(m.from_z(z[ix]))
        eb = [dict() for _ in scene.sources]
        for (band, i, p), e in zip(phys_names, err):
            if i >= 0 and band in (None, bands[b]):
                eb[i][p] = float(e)
        errors.append(tuple(eb))
    return MultiBandResult(bands=bands, scenes=tuple(scenes), errors=tuple(errors), chi2=chi2,
                           nu=nu, chi2_nu=chi2 / nu if nu > 0 else math.nan,
                           chi2_band=chi2_band, status=status, nfev=nfev,
                           elapsed=time.perf_counter() - t0, covariance=cov,
                           names=tuple(phys_names))
