"""Neighbours in batch mode: detect the other sources of a cutout, then mask them or fit them
with the target (``mogviewer fit --neighbours mask|fit``), one CSV row per fitted source.

The steps, after the image and the PSF are read (:func:`mogviewer.batch.tasks.run_task`):

1. :func:`mogviewer.detect.detect_sources` (photutils segmentation and deblending, each source
   classified as point, galaxy or artefact against the PSF);
2. :func:`mogviewer.detect.scene_from_detections`: the target is the detection at ``--centre``
   (default: the stamp centre); ``mask`` masks every other segment, ``fit`` models up to
   ``--max-neighbours`` of them (brightest first, the Tractor's order: point sources as the PSF,
   galaxies as exponentials) and masks the rest and every artefact;
3. ``mask``, or ``fit`` with no neighbour to model: the one-galaxy fit on the masked image (one
   row, as without neighbours). ``fit`` with neighbours: :func:`mogviewer.fitting.fit_scene`, a
   sequential pass then a joint fit of every source and the sky, and :func:`scene_rows`.

Rows of a scene fit (:func:`scene_rows`): one per modelled source, target first, with
``source_id`` (0 = the target, then the neighbours brightest first), ``is_target``, ``kind``
(``galaxy`` or ``point``) and every column of the one-galaxy row; a source's errors are the
square roots of the joint covariance's diagonal (so they include the covariance with the other
sources), and the chi-squared columns are the joint fit's. A point source's shape columns are
empty.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import export
from ..fitting.params import GalaxyParams
from ..fitting.result import FitResult

#: Modes of ``--neighbours``.
NEIGHBOUR_MODES = ("ignore", "mask", "fit")


def psf_mixture(psf):
    """The Gaussian mixture of a PSF (a :class:`~mogviewer.psf.PsfModel` or a mixture), or
    None."""
    if psf is None:
        return None
    return getattr(psf, "mixture", psf)


def psf_columns(psf, mode):
    """The PSF columns of a scene or multi-band fit whose observations take ``psf`` in
    ``mode`` (``auto``: the stamp itself for an image), and True if ``PSF_APPROX`` applies (a
    mixture-only PSF that misses the stamp by the one-galaxy fit's rule,
    :data:`mogviewer.fitting.problem.PSF_APPROX_TOL`)."""
    from ..fitting.problem import PSF_APPROX_TOL, _resolve_psf

    _psf, used, info = _resolve_psf(psf, mode)
    ratio, res = info.get("psf_size_ratio"), info.get("psf_res_flux")
    approx = used == "mixture" and res is not None and (
        ratio is None or abs(ratio - 1.0) > PSF_APPROX_TOL or abs(res) > PSF_APPROX_TOL)
    return dict(info), approx


def add_flags(row, flags):
    """Set ``flags`` (a :class:`~mogviewer.fitting.FitFlags`) in a row, names too."""
    from ..export.conventions import flag_names
    from ..fitting.flags import FitFlags

    f = FitFlags(int(row.get("flags") or 0)) | flags
    row["flags"], row["flag_names"] = int(f), flag_names(f)


def find_neighbours(task, data, psf, *, profile, M, n):
    """Detect the sources of ``data`` and decide which are modelled and which masked.

    Returns
    -------
    scene : mogviewer.scene.Scene
        Target first, then the modelled neighbours (empty of neighbours for ``mask``).
    data : ImageData
        ``data`` with the masked segments added to its mask (ivar 0 there).
    info : dict
        Row columns: ``neighbours``, ``n_detected``, ``n_masked``.
    notes : list of str
        What detection decided (a crowded field capped, brightest first), for ``warnings``.
    """
    from ..detect import detect_sources, scene_from_detections
    from ..errors import FitError, MogviewerError

    mix = psf_mixture(psf)
    try:
        det = detect_sources(data.image, ivar=data.ivar, mask=data.mask, psf=mix,
                             max_sources=task.max_detections)
    except MogviewerError as exc:
        raise FitError(f"detecting the neighbours: {exc}") from None
    target = task.centre
    scene, nmask, _ids = scene_from_detections(
        det, target=target, profile=profile, M=M, n=n if n is not None else 2.0,
        neighbour_profile="exp", max_fitted=task.max_neighbours, psf=mix,
        neighbours=task.neighbours)
    nmask = np.asarray(nmask, bool) & ~data.mask
    if nmask.any():
        data = dataclasses.replace(data, mask=data.mask | nmask,
                                   ivar=np.where(nmask, 0.0, data.ivar))
    n_seg = len(det.sources)
    info = dict(neighbours=task.neighbours, n_detected=n_seg,
                n_masked=int(len(np.unique(det.segmap[nmask])) if nmask.any() else 0),
                n_sources=len(scene))
    return scene, data, info, list(getattr(det, "messages", ()))


def source_result(fit, i, *, profile, M, flux_fraction, n_sky_free):
    """The :class:`~mogviewer.fitting.FitResult` of source ``i`` of a scene fit: its parameters
    and the sky, and the block of the joint covariance over them (so that every derived column
    of :func:`mogviewer.export.result_to_row` is propagated correctly)."""
    s = fit.scene.sources[i]
    sc = fit.scene
    point = s.kind == "point"
    values = dict(flux=s.flux, x=s.x, y=s.y, re=1.0 if point else s.re,
                  q=1.0 if point else s.q, angle=0.0 if point else s.angle,
                  sky=sc.sky, sky_dx=sc.sky_dx, sky_dy=sc.sky_dy)
    if not point and s.n is not None:
        values["n"] = s.n
    if not point and s.profile2 is not None:
        values.update(flux2=s.flux2, re2=s.re2, q2=s.q2, angle2=s.angle2)
    params = GalaxyParams(**values)
    idx = [k for k, (j, _p) in enumerate(fit.names) if j in (i, -1)]
    free = tuple(fit.names[k][1] for k in idx)
    cov = np.asarray(fit.covariance)[np.ix_(idx, idx)]
    status = {"max_nfev": "max_evaluations"}.get(fit.status, fit.status)
    return FitResult(params=params, start=params, free=free, covariance=cov, chi2=fit.chi2,
                     nu=fit.nu, nit=0, nfev=fit.nfev, status=status, flags=fit.flags[i],
                     message="", profile="point" if point else s.profile,
                     M=1 if point else M, n=None if point else s.n,
                     flux_fraction=flux_fraction, elapsed=fit.elapsed,
                     profile2=None if point else s.profile2,
                     M2=None if point else s.M2)


_SHAPE_COLUMNS = ("re_pix", "re_arcsec", "re_circ_pix", "q", "ell", "e1", "e2", "pa_img_deg",
                  "pa_galfit_deg", "pa_eofn_deg")


def blank_columns(row, names):
    """Empty the columns ``names`` of a row, with their ``_err`` and ``_err_scaled`` twins (a
    point source's shape, a joint multi-band fit's one-band flux)."""
    for c in names:
        for sfx in ("", "_err", "_err_scaled"):
            if c + sfx in row:
                row[c + sfx] = None


def scene_rows(fit, data, *, info, psf_source, file, scale_errors=False, reason="",
               warnings_text="", psf_info=None, targets_only=False):
    """One row per fitted source of a :class:`~mogviewer.fitting.SceneFitResult` (see the
    module's docstring); the target first."""
    rows = []
    order = [fit.scene.target] + [i for i in range(len(fit.scene)) if i != fit.scene.target]
    sky_free = sum(1 for j, _ in fit.names if j == -1)
    ids = {i: k for k, i in enumerate(order)}
    for i in order:
        if not fit.fitted[i]:
            continue
        if targets_only and i != fit.scene.target:
            continue
        s = fit.scene.sources[i]
        point = s.kind == "point"
        mix = None if point else s.mixture()
        res = source_result(fit, i, profile=None if point else s.profile,
                            M=None if point else len(mix.amps),
                            flux_fraction=1.0 if point else mix.flux_fraction,
                            n_sky_free=sky_free)
        row = export.result_to_row(res, data, psf_source=psf_source, file=file,
                                   scale_errors=scale_errors, reason=reason,
                                   warnings_text=warnings_text)
        if psf_info:
            row.update({k: v for k, v in psf_info.items() if k in row})
        row["sky_model"] = ("plane" if sky_free == 3 else "constant" if sky_free else "none")
        row["free"] = "|".join(p for j, p in fit.names if j in (i, -1))
        if point:
            blank_columns(row, _SHAPE_COLUMNS + ("M",))
        row.update(info)
        row.update(source_id=ids[i], is_target=(i == fit.scene.target), kind=s.kind)
        rows.append(row)
    return rows


def scene_flags_summary(rows):
    """Reason text for a scene fit whose neighbours ended flagged (a neighbour at a bound is
    reported, not a failure of the target)."""
    bad = [f"source {r['source_id']}: {r['flag_names']}" for r in rows
           if not r["is_target"] and r["flags"]]
    return ("neighbours flagged: " + "; ".join(bad[:5]) +
            (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")) if bad else ""


def scene_model(fit, observation):
    """The full model image (every source and the sky) of a scene fit."""
    return fit.scene.render(observation)


__all__ = ["NEIGHBOUR_MODES", "find_neighbours", "scene_rows", "source_result",
           "psf_mixture", "scene_flags_summary", "scene_model"]
