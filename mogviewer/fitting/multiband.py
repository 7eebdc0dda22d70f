"""Several bands at once: one scene fitted to several observations (:func:`fit_multiband`).

Centre, shape and Sérsic n are shared (or ``r_e`` and ``n`` tied to wavelength as Chebyshev
polynomials, GalfitM's approach), a flux and a sky per band; observations on other pixel grids
are reached through their WCSs (:class:`~mogviewer.fitting.scene_model.Frame`). The machinery of one
observation is :mod:`mogviewer.fitting.scene_model`'s (the model, the covariance) and
:mod:`mogviewer.fitting.scene_fit`'s (the solver).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..errors import FitError
from .flags import FitFlags
from .scene_fit import _check_sources, _inside, _solve, fit_scene
from .scene_model import Frame, _dphys_dz, _inverse, _Model, scene_in_frame

__all__ = ["MultiBandResult", "fit_multiband"]


_PER_BAND = ("flux", "flux2")
#: Which z names a wavelength tie acts on: ``ties={'re': d}`` makes ``ln r_circ`` (hence
#: ``ln r_e``, q being shared) a Chebyshev polynomial of degree d in wavelength.
_TIE_NAMES = {"re": "lnrc", "n": "n", "re2": "lnrc2"}


@dataclasses.dataclass(frozen=True, eq=False)
class MultiBandResult:
    """What :func:`fit_multiband` returns: one scene per band sharing positions and shapes.

    Attributes
    ----------
    bands : tuple of str
        The bands fitted (those skipped are in :attr:`skipped`).
    scenes : tuple of Scene
        Per band, in the *reference frame* (the reference observation's pixels): the same
        sources (centre, shape, n shared or tied) with that band's fluxes and sky (the sky on the
        band's own grid). :meth:`scene_in_band` gives a band's scene on its own grid.
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
        Over :attr:`names`: ``(band or None, source index, parameter)``; the sky is source -1;
        a parameter the same in every band has band None.
    names : tuple
    ties : str
        Which parameters were shared or tied, in words (for the CSV).
    tie_coefficients : dict
        ``{(source, 're' or 'n'): Chebyshev coefficients}`` of each wavelength tie (of ``ln r_e``
        or ``n`` against ``t = (2 lambda - lambda_max - lambda_min) / (lambda_max - lambda_min)``).
    wavelengths : tuple or None
        Per fitted band, when ties used them.
    skipped : tuple of (str, str)
        Bands not fitted and why.
    flags : tuple of FitFlags
        Per source (over all bands).
    messages : tuple of str
        Every decision taken about a band or a source, one sentence each.
    frames : tuple
        Per fitted band, its :class:`Frame` to the reference grid (None: the same grid).
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
    tie_coefficients: dict = dataclasses.field(default_factory=dict)
    wavelengths: tuple | None = None
    skipped: tuple = ()
    flags: tuple = ()
    messages: tuple = ()
    frames: tuple = ()

    def flux_covariance(self, source, band1, band2):
        """Covariance of the (mixture) fluxes of ``source`` in two bands."""
        i = self.names.index((band1, source, "flux"))
        j = self.names.index((band2, source, "flux"))
        return float(self.covariance[i, j])

    def colour(self, source, band1, band2):
        """``mag_band1 - mag_band2`` of a source and its error (the covariance included), in
        the bands' own flux units (add the zeropoint difference for calibrated colours)."""
        f1 = self.scenes[self.bands.index(band1)].sources[source].flux
        f2 = self.scenes[self.bands.index(band2)].sources[source].flux
        k = 2.5 / math.log(10)
        c11 = self.flux_covariance(source, band1, band1)
        c22 = self.flux_covariance(source, band2, band2)
        c12 = self.flux_covariance(source, band1, band2)
        var = k * k * (c11 / f1 ** 2 + c22 / f2 ** 2 - 2 * c12 / (f1 * f2))
        return -2.5 * math.log10(f1 / f2), math.sqrt(var) if var >= 0 else math.nan

    def scene_in_band(self, band):
        """The band's scene on its own pixel grid (for its model and residual images)."""
        b = self.bands.index(band)
        return scene_in_frame(self.scenes[b], self.frames[b] if self.frames else None)


def _frame_for(obs, ref, name):
    """``(frame or None, reason it cannot be fitted or None, note or None)``."""
    same_shape = obs.shape == ref.shape
    if obs is ref:
        return None, None, None
    if obs.wcs is not None and ref.wcs is not None:
        try:
            fr = Frame(ref.wcs, obs.wcs, name)
            if fr.is_identity(ref.shape):
                return None, None, None
            fr.map((ref.shape[1] - 1) / 2, (ref.shape[0] - 1) / 2)
            return fr, None, None
        except Exception as exc:      # a WCS astropy cannot invert: say so, fit the others
            return None, f"its WCS cannot be related to the reference's ({exc})", None
    if same_shape:
        note = None
        if (obs.wcs is None) != (ref.wcs is None):
            note = (f"{name}: only one of it and the reference has a WCS; the two are taken "
                    "to share one pixel grid (same shape)")
        return None, None, note
    return None, (f"its pixel grid {obs.shape[1]}x{obs.shape[0]} differs from the reference's "
                  f"{ref.shape[1]}x{ref.shape[0]} and there is no WCS on "
                  f"{'both' if obs.wcs is None and ref.wcs is None else 'one'} of them to "
                  "relate the two: give both WCSs, or resample to one grid"), None


class _Joint:
    """Several bands' models on one global vector: ``z_b = P_b z`` (selection, or Chebyshev
    weights for a wavelength tie), summed normal equations."""

    def __init__(self, models, P, lo_local, hi_local):
        self.models, self.P = models, P
        self.lo_local, self.hi_local = lo_local, hi_local
        self.nfev = 0

    def local(self, z, b):
        return np.clip(self.P[b] @ z, self.lo_local[b], self.hi_local[b])

    def evaluate(self, z):
        self.nfev += 1
        n = z.size
        chi2, A, g = 0.0, np.zeros((n, n)), np.zeros(n)
        for b, m in enumerate(self.models):
            c, Ab, gb, _ = m.evaluate(self.local(z, b))
            P = self.P[b]
            chi2 += c
            A += P.T @ Ab @ P
            g += P.T @ gb
        return chi2, A, g, None

    def dense(self, z):
        self.nfev += 1
        rs, Js = [], []
        for b, m in enumerate(self.models):
            r, J = m.dense(self.local(z, b))
            rs.append(r)
            Js.append(J @ self.P[b])
        return np.concatenate(rs), np.vstack(Js)


def fit_multiband(observations, scene, *, bands=None, fitted=None, sky="constant",
                  single_first=True, should_stop=None, max_nfev=400, solver="lm",
                  reference=0, ties=None, wavelengths=None):
    """Fit one scene to several observations at once: a flux (and sky) per band, centre and
    shape shared, ``r_e`` and ``n`` shared or tied to wavelength.

    The scene's positions and shapes are in the *reference frame*: the pixel grid of
    ``observations[reference]``. An observation on another grid is reached through the two WCSs
    (:class:`Frame`: any shift, scale, rotation or flip); observations of the reference's shape
    without a WCS are taken to share its grid. Each band's fit starts from a single-band fit
    of that band (``single_first``), the shared parameters from their mean over the bands.

    Bands that cannot be fitted are left out with their reason in :attr:`MultiBandResult.skipped`
    (and :attr:`~MultiBandResult.messages`), the others fitted: a band with every pixel masked;
    a band with no PSF when the others have one; a band on another grid with no WCS to relate
    it. When no band remains, :class:`~mogviewer.errors.FitError` says why for each.

    Parameters
    ----------
    observations : sequence of Observation
    scene : Scene
        The start, in the reference frame (fluxes are rescaled per band by the single-band
        fits).
    bands : sequence of str, optional
        Names of the bands (default: each observation's ``band``, else ``b0, b1, ...``).
    fitted, sky, should_stop, max_nfev, solver :
        As :func:`fit_scene`.
    reference : int
        Index of the observation whose pixel grid is the scene's frame.
    ties : dict, optional
        ``{'re': degree, 'n': degree}``: ``ln r_e`` (of the first component; ``'re2'`` the
        second) and the Sérsic ``n`` as Chebyshev polynomials of that degree in wavelength
        (GalfitM's approach); degree 0 (the default) shares one value. A degree must be below
        the number of bands fitted.
    wavelengths : sequence of float, optional
        Per observation (any one unit), for the ties; default each observation's
        ``wavelength``.

    Returns
    -------
    MultiBandResult
    """
    t0 = time.perf_counter()
    obs = list(observations)
    if not obs:
        raise FitError("no observations to fit")
    names_all = tuple(bands or [o.band or f"b{i}" for i, o in enumerate(obs)])
    if len(set(names_all)) != len(names_all) or len(names_all) != len(obs):
        raise FitError(f"band names must be unique, one per observation: {names_all}")
    if not 0 <= reference < len(obs):
        raise FitError(f"reference {reference} is not an observation index (0..{len(obs) - 1})")
    if sky not in ("none", "constant", "plane"):
        raise FitError(f"sky must be 'none', 'constant' or 'plane', got {sky!r}")
    ties = dict(ties or {})
    for k, d in ties.items():
        if k not in _TIE_NAMES:
            raise FitError(f"ties: {k!r} cannot be tied to wavelength (choose from "
                           f"{sorted(_TIE_NAMES)})")
        if not (isinstance(d, (int, np.integer)) and d >= 0):
            raise FitError(f"ties: the degree of {k!r} must be an integer >= 0, got {d!r}")
    ties = {k: int(d) for k, d in ties.items() if d}
    wl_all = list(wavelengths) if wavelengths is not None else [getattr(o, "wavelength", None)
                                                               for o in obs]
    if len(wl_all) != len(obs):
        raise FitError(f"{len(wl_all)} wavelengths for {len(obs)} observations")
    ref = obs[reference]
    have_psf = any(o.psf is not None for o in obs)
    skipped, messages, keep, frames = [], [], [], []
    for b, o in enumerate(obs):
        name = names_all[b]
        frame, reason, note = _frame_for(o, ref, name)
        if reason is None and o.n_good == 0:
            reason = "every pixel is masked or has zero weight"
        if reason is None and o.psf is None and have_psf:
            reason = ("it has no PSF while the other bands have one (a shared shape would "
                      "be biased): give its PSF, or fit it alone")
        if reason is None and ties and wl_all[b] is None:
            reason = "the wavelength ties need its wavelength (Observation.wavelength)"
        if reason is not None:
            skipped.append((name, reason))
            messages.append(f"band {name} not fitted: {reason}")
            continue
        if note:
            messages.append(note)
        keep.append(b)
        frames.append(frame)
    if not keep:
        raise FitError("no band can be fitted: " + "; ".join(f"{n}: {r}" for n, r in skipped))
    obs = [obs[b] for b in keep]
    bands = tuple(names_all[b] for b in keep)
    wl = [wl_all[b] for b in keep]
    for k, d in ties.items():
        if d >= len(obs):
            raise FitError(f"ties: degree {d} for {k!r} needs more than {d} bands; "
                           f"{len(obs)} fitted ({', '.join(bands)})")
    if ties:
        wl = [float(w) for w in wl]
        if len(set(wl)) < len(wl):
            raise FitError(f"ties need distinct wavelengths, got {dict(zip(bands, wl))}")
    fitted = tuple(bool(f) for f in (fitted if fitted is not None else [True] * len(scene)))
    if len(fitted) != len(scene):
        raise FitError(f"fitted has {len(fitted)} entries for {len(scene)} sources")
    if sky == "none":
        scene = dataclasses.replace(scene, sky=0.0, sky_dx=0.0, sky_dy=0.0)
    fitted, scene, notes = _check_sources(scene, fitted, ref.shape)
    messages += [f"source {i}: {t}" for i, ns in enumerate(notes) for t in ns]
    nfev = 0
    starts = []
    for o, fr in zip(obs, frames):
        if single_first:
            r = fit_scene(o, scene, fitted=fitted, sky=sky, should_stop=should_stop,
                          max_nfev=max_nfev, solver=solver, frame=fr, ref_shape=ref.shape)
            nfev += r.nfev
            starts.append(r.scene)
        else:
            starts.append(scene)
    models = [_Model(o, s, fitted, sky, fr) for o, s, fr in zip(obs, starts, frames)]
    nb = len(obs)
    if ties:
        lam = np.array(wl)
        span = lam.max() - lam.min()
        tt = (2 * lam - lam.max() - lam.min()) / span
    # the global vector: per source its shared names (or tie coefficients), its per-band
    # fluxes; then the skies
    z_local = [m.to_z(s) for m, s in zip(models, starts)]
    nl = models[0].nz
    columns = []          # (label, z0 value, lo, hi, {band: (local row, weight)})
    lo1, hi1 = models[0].bounds(ref.shape)
    k_local = 0
    tie_of = {_TIE_NAMES[k]: d for k, d in ties.items()}
    tie_index = {}
    for i, names in models[0].blocks:
        for j, n in enumerate(names):
            row = k_local + j
            vals = np.array([z_local[b][row] for b in range(nb)])
            if n in _PER_BAND:
                for b in range(nb):
                    columns.append(((bands[b], i, n), vals[b], -np.inf, np.inf, {b: (row, 1.0)}))
            elif n in tie_of:
                d = tie_of[n]
                V = np.polynomial.chebyshev.chebvander(tt, d)
                coef = np.linalg.lstsq(V, vals, rcond=None)[0]
                tie_index[(i, n)] = []
                for c in range(d + 1):
                    tie_index[(i, n)].append(len(columns))
                    columns.append(((None, i, f"{n}_c{c}"), coef[c],
                                    lo1[row] if c == 0 else -np.inf,
                                    hi1[row] if c == 0 else np.inf,
                                    {b: (row, V[b, c]) for b in range(nb)}))
            else:
                columns.append(((None, i, n), float(np.mean(vals)), lo1[row], hi1[row],
                                {b: (row, 1.0) for b in range(nb)}))
        k_local += len(names)
    for b in range(nb):
        for j, n in enumerate(models[0].sky_names):
            columns.append(((bands[b], -1, n), z_local[b][k_local + j], -np.inf, np.inf,
                            {b: (k_local + j, 1.0)}))
    ng = len(columns)
    P = [np.zeros((nl, ng)) for _ in range(nb)]
    for c, (_, _, _, _, where) in enumerate(columns):
        for b, (row, wgt) in where.items():
            P[b][row, c] = wgt
    z0 = np.array([c[1] for c in columns])
    lo = np.array([c[2] for c in columns])
    hi = np.array([c[3] for c in columns])
    lo_l = [m.bounds(ref.shape)[0] for m in models]
    hi_l = [m.bounds(ref.shape)[1] for m in models]
    joint = _Joint(models, P, lo_l, hi_l)
    if sum(m.npix for m in models) <= ng:
        raise FitError(f"{sum(m.npix for m in models)} usable pixels for {ng} free parameters")
    z, status = _solve(joint, z0, lo, hi, should_stop, max_nfev, solver)
    nfev += joint.nfev
    chi2, A, _, _ = joint.evaluate(z)
    chi2_band = tuple(float(m.evaluate(joint.local(z, b))[0]) for b, m in enumerate(models))
    npix = sum(m.npix for m in models)
    nu = int(npix - ng)
    at_bound = (np.isclose(z, lo, rtol=0, atol=1e-6) | np.isclose(z, hi, rtol=0, atol=1e-6))
    Cz, cov_ok = _inverse(A, ~at_bound)
    # physical parameters: per band d phys / d z_b times P_b; a row equal in every band is one
    rows, phys_names = [], []
    per_band = []
    for b, m in enumerate(models):
        names_b, G = _dphys_dz(m, joint.local(z, b))
        per_band.append((names_b, G @ P[b]))
    for r, (i, p) in enumerate(per_band[0][0]):
        H = [pb[1][r] for pb in per_band]
        if i >= 0 and all(np.array_equal(H[0], h) for h in H[1:]):
            rows.append(H[0])
            phys_names.append((None, i, p))
        else:
            for b in range(nb):
                rows.append(H[b])
                phys_names.append((bands[b], i, p))
    Hm = np.array(rows)
    with np.errstate(invalid="ignore"):
        cov = Hm @ np.where(np.isnan(Cz), 0.0, Cz) @ Hm.T
        bad = (np.abs(Hm) > 0) @ np.isnan(np.diag(Cz))
        cov[bad, :] = np.nan
        cov[:, bad] = np.nan
    err = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    scenes, errors = [], []
    for b, m in enumerate(models):
        scenes.append(m.from_z(joint.local(z, b)))
        eb = [dict() for _ in scene.sources]
        for (band, i, p), e in zip(phys_names, err):
            if i >= 0 and band in (None, bands[b]):
                eb[i][p] = float(e)
        errors.append(tuple(eb))
    # flags per source over the global vector
    flags = [FitFlags(0)] * len(scene)
    for c, (label, *_rest) in enumerate(columns):
        i = label[1]
        if i >= 0 and at_bound[c]:
            flags[i] |= FitFlags.AT_BOUND
    for i in range(len(scene)):
        if not fitted[i]:
            continue
        if not cov_ok or not all(np.isfinite(v) for e in errors for v in e[i].values()):
            flags[i] |= FitFlags.COV_NONFINITE
        if any(s.sources[i].flux <= 0 for s in scenes):
            flags[i] |= FitFlags.NEGATIVE_FLUX
        if not _inside(scenes[0].sources[i], ref.shape):
            flags[i] |= FitFlags.CENTRE_OUTSIDE
        if status == "cancelled":
            flags[i] |= FitFlags.CANCELLED
        elif status in ("max_nfev", "failed"):
            flags[i] |= FitFlags.NOT_CONVERGED
    coefs = {}
    for (i, n), cols in tie_index.items():
        key = {v: k for k, v in _TIE_NAMES.items()}[n]
        c = z[cols].copy()
        if n.startswith("lnrc"):    # ln r_circ -> ln r_e: q is shared, so only c0 moves
            sfx = "2" if n.endswith("2") else ""
            c[0] -= 0.5 * math.log(getattr(scenes[0].sources[i], "q" + sfx))
        coefs[(i, key)] = tuple(float(v) for v in c)
    return MultiBandResult(bands=bands, scenes=tuple(scenes), errors=tuple(errors), chi2=chi2,
                           nu=nu, chi2_nu=chi2 / nu if nu > 0 else math.nan,
                           chi2_band=chi2_band, status=status, nfev=nfev,
                           elapsed=time.perf_counter() - t0, covariance=cov,
                           names=tuple(phys_names), ties=_describe_ties(ties, scene),
                           tie_coefficients=coefs,
                           wavelengths=tuple(wl) if ties else None, skipped=tuple(skipped),
                           flags=tuple(flags), messages=tuple(messages), frames=tuple(frames))


def _describe_ties(ties, scene):
    """The ties in words, for the CSV's ``ties`` column."""
    shared = ["centre", "q", "angle"]
    tied = []
    for k, what in (("re", "r_e"), ("n", "n"), ("re2", "r_e2")):
        d = ties.get(k, 0)
        if d:
            tied.append(f"ln {what} Chebyshev degree {d} in wavelength" if k != "n"
                        else f"n Chebyshev degree {d} in wavelength")
        elif k != "re2" or any(getattr(s, "profile2", None) for s in scene.sources):
            shared.append(what)
    out = ", ".join(shared) + " shared"
    if tied:
        out += "; " + "; ".join(tied)
    return out + "; flux and sky per band"

