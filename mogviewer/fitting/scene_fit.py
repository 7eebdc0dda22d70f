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

This module is the driver (checks of the sources, the sequential and joint passes, the solver,
the result); the model of one observation (the parameter vector, the normal equations, the
frames) is :mod:`mogviewer.fitting.scene_model`.

Conventions are those of :mod:`mogviewer.scene`; the one-galaxy :func:`mogviewer.fitting.fit`
is the special case with one galaxy (it has more options: bounds, fixed parameters, flags).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..errors import FitError
from ..scene import Galaxy, Scene
from .blends import split_target
from .flags import SUBPIXEL, FitFlags, is_needle
from .lm import levenberg_marquardt
from .scene_model import Frame, _dphys_dz, _inverse, _Model, scene_in_frame

__all__ = ["SceneFitResult", "fit_scene", "Frame", "scene_in_frame"]

#: Two fitted sources whose centres are closer than this (px) are "on the same pixel".
SAME_PIXEL = 0.5
#: Tolerances of both solvers (scipy's trf had the same three).
_TOL = dict(xtol=1e-10, ftol=1e-10, gtol=1e-10)




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
            from scipy import optimize  # on use: 0.4-0.6 s of start-up
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



def _inside(s, shape):
    ny, nx = shape
    return -0.5 <= s.x <= nx - 0.5 and -0.5 <= s.y <= ny - 0.5


#: A neighbour's centre may move this many px from its start (twice its start r_e if larger).
BOX_MIN = 5.0
#: A neighbour's circularised radius may grow to this many times its start (or BOX_MIN px).
SIZE_MAX = 5.0


def position_boxes(scene, fitted, shape, skip=()):
    """``{i: (x0, y0, R, ln r_max)}``: the box each fitted source other than the target keeps
    its centre in, ``R = max(BOX_MIN, 2 x its start r_e)`` px around its start along each
    axis, and (a galaxy) the largest circularised radius it may reach, ``SIZE_MAX`` times its
    start's (at least ``BOX_MIN`` px). Sources in ``skip`` get none (the blend search's trial
    source, started where a residual peaks rather than where a source was detected).

    A detection's centroid is within a pixel or two of the source's centre, and a click in the
    app within a few (a 3 px box held the app test's clicked point source; 5 px did not), so a
    neighbour has no reason to travel further; one that does is taking light that is not its
    own. Unbounded, a small detected neighbour 60 px from IC 3478 walked onto the target during
    the joint fit and became its bulge (r_e 42.8 px, 8x the target's flux), with no flag
    (new-user review, 2026-12-04); held to a box, it swelled instead to 12 million counts, the
    sky that the fit held fixed. The target is bounded by the image only. A neighbour that ends
    on its box's edge or its size limit is held at its start and the scene fitted again
    (:func:`_fit_scene`), flagged ``AT_BOUND`` with a note.
    """
    boxes = {}
    for i, (s, f) in enumerate(zip(scene.sources, fitted)):
        if not f or i == scene.target or i in skip or not _inside(s, shape):
            continue
        r = float(getattr(s, "re", 0.0) or 0.0)
        r = r if math.isfinite(r) else 0.0
        rc = r * math.sqrt(max(float(getattr(s, "q", 1.0) or 1.0), 1e-3))
        boxes[i] = (float(s.x), float(s.y), max(BOX_MIN, 2.0 * r),
                    math.log(max(SIZE_MAX * rc, BOX_MIN)))
    return boxes


def _strayed(s, box, tol=1e-6):
    """Why source ``s`` ended on the edge of its ``box`` (:func:`position_boxes`), or ''."""
    if box is None:
        return ""
    x0, y0, R, lnr = box
    if abs(s.x - x0) >= R - tol or abs(s.y - y0) >= R - tol:
        return (f"its centre reached the edge of its +-{R:.1f} px box around its start "
                f"({x0:.1f}, {y0:.1f})")
    if isinstance(s, Galaxy) and math.log(s.re * math.sqrt(s.q)) >= lnr - tol:
        return (f"its size reached its limit, {SIZE_MAX:g} times its start (circularised "
                f"radius {math.exp(lnr):.3g} px)")
    return ""


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
        # the trial source starts at a residual peak or the score map's maximum, not at a
        # detection: it may travel (no box), the others keep theirs
        res, said, nfev = split_target(
            observation, res, at,
            lambda sc, fitted_: _fit_scene(observation, sc, fitted=fitted_,
                                           unboxed=(len(sc) - 1,), **joint),
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


def _fit_scene(observation, scene, *, fitted, unboxed=(), **kw):
    """One fit of :func:`fit_scene` (without the residual pass): the sequential and joint
    passes, then, if a neighbour strayed (:func:`position_boxes`), the joint pass again with it
    held at its start values."""
    t0 = time.perf_counter()
    res, strayed = _fit_scene_once(observation, scene, fitted=fitted, unboxed=unboxed, **kw)
    if not strayed or res.status == "cancelled":
        return res
    held = res.scene
    for i in strayed:
        held = held.replace_source(i, scene.sources[i])
    fitted2 = tuple(f and i not in strayed for i, f in enumerate(res.fitted))
    res2, _ = _fit_scene_once(observation, held, fitted=fitted2, unboxed=unboxed,
                              **dict(kw, sequential=False))
    notes = [list(n) for n in res2.notes]
    flags = list(res2.flags)
    for i, why in strayed.items():
        s = scene.sources[i]
        size = f", r_e {s.re:.3g} px" if isinstance(s, Galaxy) else ""
        notes[i] += [why, f"held at its start values (flux {s.flux:.4g}{size}) and the scene "
                          "fitted again without it free: a neighbour that travels or swells is "
                          "taking light that is not its own (the target's wings, a sky the fit "
                          "does not model, a blend); mask it, or fit it by hand"]
        flags[i] |= FitFlags.AT_BOUND
    notes = tuple(tuple(dict.fromkeys(n)) for n in notes)
    return dataclasses.replace(
        res2, notes=notes, flags=tuple(flags), nfev=res.nfev + res2.nfev,
        messages=tuple(f"source {i}: {t}" for i, ns in enumerate(notes) for t in ns),
        elapsed=time.perf_counter() - t0)


def _fit_scene_once(observation, scene, *, fitted, sky, sequential, should_stop, max_nfev,
                    solver, frame, ref_shape, unboxed=()):
    """The sequential and joint passes: ``(SceneFitResult, {i: why})``, the second naming the
    neighbours that ended on the edge of their box (:func:`position_boxes`; the sources in
    ``unboxed`` have none)."""
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
    boxes = position_boxes(scene, fitted, ref_shape, skip=unboxed)
    nfev = 0
    status = "converged"
    if sequential and sum(fitted) > 1:
        order = sorted((i for i, f in enumerate(fitted) if f), key=lambda i: -abs(
            scene.sources[i].flux))
        for i in order:
            alone = tuple(j == i for j in range(len(scene)))
            m = _Model(observation, scene, alone, sky, frame)
            z, status = _solve(m, m.to_z(scene), *m.bounds(ref_shape, boxes), should_stop,
                               max_nfev, solver)
            nfev += m.nfev
            scene = m.from_z(z)
            if status == "cancelled":
                break
    m = _Model(observation, scene, fitted, sky, frame)
    if m.npix <= m.nz:
        raise FitError(f"{m.npix} usable pixels for {m.nz} free parameters")
    lo, hi = m.bounds(ref_shape, boxes)
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
    strayed = {}
    k = 0
    for i, zn in m.blocks:
        f = FitFlags(0)
        hit = [n for n, b in zip(zn, at_bound[k:k + len(zn)]) if b]
        why = _strayed(best.sources[i], boxes.get(i))
        if why:
            f |= FitFlags.AT_BOUND
            notes[i].append(why)
            strayed[i] = why
            hit = [n for n in hit if n not in ("x", "y", "lnrc")]
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
        if getattr(s, "kind", "") != "point" and is_needle(s.re, s.q):
            f |= FitFlags.Q_SUBPIXEL
            notes[i].append(f"its width is unresolved (q r_e = {s.q * s.re:.2g} px, below "
                            f"{SUBPIXEL:g} px): a needle; if it is a star, a point source is "
                            "the better model")
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
                          notes=notes, messages=messages, solver=solver), strayed
