"""Several bands of one object fitted jointly in batch mode (``mogviewer fit --bands g r z``).

Each band is read as its own image (:func:`mogviewer.io.read_image` with ``band=``: the HDU
whose ``BAND`` keyword is the band, with its inverse variance, as in Legacy Surveys cutouts; or
a file of its own, ``--bands g=obj_g.fits``), with its own PSF: ``--band-psf g=psf_g.fits``, or
the HDU of ``--psf`` whose ``BAND``, ``FILTER`` or ``EXTNAME`` is the band. One scene is fitted
to all of them with :func:`mogviewer.fitting.fit_multiband`: centre, shape and Sérsic n shared,
a flux and a sky per band.

Rows (:func:`band_rows`): one per fitted source. The shared columns (``x``, ``re_pix``, ``q``,
``n``, ...) are the joint fit's; ``band`` lists the bands (``g|r|z``); the single-band flux and
magnitude columns are empty and each band has ``flux_<b>``, ``mag_<b>`` (target profile totals),
``sky_<b>``, ``chi2_nu_<b>``, each with ``_err``; each pair of consecutive bands has the colour
``<b1>_<b2>`` (``mag_b1 - mag_b2``) and its error with the flux covariance included; ``ties``
says what was shared.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import export
from ..errors import FitError, ImageReadError

_K = 2.5 / math.log(10)


def band_columns(bands):
    """The CSV columns of a multi-band run, in order: every one-band column, then
    :func:`mogviewer.export.columns.band_columns`."""
    from ..export.columns import COLUMN_NAMES
    from ..export.columns import band_columns as _extra

    return COLUMN_NAMES + tuple(c.name for c in _extra(bands))


def psf_hdu_for_band(path, band):
    """Index of the HDU of a PSF file whose ``BAND``, ``FILTER`` or ``EXTNAME`` is ``band``
    (case-insensitive), or None (a single-band PSF file)."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdul:
            for i, h in enumerate(hdul):
                for key in ("BAND", "FILTER", "EXTNAME"):
                    v = h.header.get(key)
                    if isinstance(v, str) and v.strip().lower() == band.lower():
                        return i
    except (OSError, ValueError):       # not FITS (a JSON or .npy PSF): no band HDUs
        return None
    return None


def _cov(result, a, b):
    try:
        i, j = result.names.index(a), result.names.index(b)
    except ValueError:
        return 0.0
    return float(result.covariance[i, j])


def band_rows(result, data, observations, *, psf_source, file, psf_info=None,
              warnings_text="", reason="", targets_only=False, zeropoints=None, info=None,
              requested=None):
    """One row per fitted source of a :class:`~mogviewer.fitting.MultiBandResult` (see the
    module's docstring); ``data`` is the first band's :class:`~mogviewer.io.ImageData` (WCS,
    pixel scale), ``observations`` the fitted observations (their used pixels give each band's
    reduced chi-squared), ``zeropoints`` a dict band -> zeropoint (None: no magnitudes).

    ``chi2_nu_<b>`` = chi2 of band b / (its used pixels - its own parameters - the shared
    parameters / the number of bands)."""
    from .scene_task import _SHAPE_COLUMNS, blank_columns, source_result

    bands = result.bands
    zeropoints = zeropoints or {}
    scene0 = result.scenes[0]
    rows = []
    order = [scene0.target] + [i for i in range(len(scene0)) if i != scene0.target]
    ids = {i: k for k, i in enumerate(order)}
    fitted = {i for b, i, _p in result.names if i >= 0}

    class _Shared:
        """The shared parameters of source i with band 0's flux, as a SceneFitResult."""

        def __init__(self, i):
            keep = [k for k, (b, j, _p) in enumerate(result.names)
                    if (j == i and b in (None, bands[0])) or (j == -1 and b == bands[0])]
            self.names = tuple((result.names[k][1], result.names[k][2]) for k in keep)
            self.covariance = np.asarray(result.covariance)[np.ix_(keep, keep)]
            self.scene = scene0
            self.chi2, self.nu, self.nfev, self.elapsed = (result.chi2, result.nu, result.nfev,
                                                           result.elapsed)
            self.status = result.status
            self.flags = tuple(getattr(result, "flags", ()) or ()) or None

    for i in order:
        if i not in fitted or (targets_only and i != scene0.target):
            continue
        s = scene0.sources[i]
        point = s.kind == "point"
        mix = None if point else s.mixture()
        shared = _Shared(i)
        if shared.flags is None:
            from ..fitting.flags import FitFlags
            shared.flags = tuple(FitFlags(0) for _ in scene0.sources)
        res = source_result(shared, i, profile=None if point else s.profile,
                            M=None if point else len(mix.amps),
                            flux_fraction=1.0 if point else mix.flux_fraction, n_sky_free=0)
        row = export.result_to_row(res, data, psf_source=psf_source, file=file,
                                   warnings_text=warnings_text, reason=reason)
        if psf_info:
            row.update({k: v for k, v in psf_info.items() if k in row})
        blank_columns(row, ("flux", "mag", "flux_mog", "mag_mog", "sky", "sky_dx", "sky_dy",
                            "zeropoint"))
        if point:
            blank_columns(row, _SHAPE_COLUMNS + ("M",))
        ff = 1.0 if point else mix.flux_fraction
        row.update(band="|".join(bands), bands="|".join(bands), ties=result.ties,
                   chi2=result.chi2, nu=result.nu, chi2_nu=result.chi2_nu,
                   free="|".join(f"{p}" if b is None else f"{p}_{b}"
                                 for b, j, p in result.names if j in (i, -1)),
                   source_id=ids[i], is_target=(i == scene0.target), kind=s.kind)
        if info:
            row.update(info)
        for k, b in enumerate(bands):
            f = result.scenes[k].sources[i].flux
            var = _cov(result, (b, i, "flux"), (b, i, "flux"))
            ferr = math.sqrt(var) if var >= 0 else math.nan
            row[f"flux_{b}"], row[f"flux_{b}_err"] = f / ff, ferr / ff
            zp = zeropoints.get(b)
            if zp is not None and f > 0:
                row[f"mag_{b}"] = zp - 2.5 * math.log10(f / ff)
                row[f"mag_{b}_err"] = _K * ferr / f
            row[f"sky_{b}"] = result.scenes[k].sky
            sv = _cov(result, (b, -1, "sky"), (b, -1, "sky"))
            row[f"sky_{b}_err"] = math.sqrt(sv) if sv > 0 else None
            own = sum(1 for bb, _j, _p in result.names if bb == b)
            shared_n = sum(1 for bb, _j, _p in result.names if bb is None)
            dof = observations[k].n_good - own - shared_n / len(bands)
            row[f"chi2_nu_{b}"] = result.chi2_band[k] / dof if dof > 0 else math.nan
            sk, ek = result.scenes[k].sources[i], result.errors[k][i]
            if not point:
                row[f"re_{b}_pix"], row[f"re_{b}_pix_err"] = sk.re, ek.get("re")
                if sk.n is not None:
                    row[f"n_{b}"], row[f"n_{b}_err"] = sk.n, ek.get("n")
        req = tuple(requested or bands)
        for b1, b2 in zip(req, req[1:]):
            if b1 not in bands or b2 not in bands:
                continue
            c, e = result.colour(i, b1, b2)
            row[f"{b1}_{b2}"], row[f"{b1}_{b2}_err"] = c, e
        rows.append(row)
    return rows


def run_bands(task, base, caught, set_step, *, saved, profile, M, n, sky, warnings_text):
    """Read every band, fit them jointly, return the rows (``--bands``)."""
    from ..fitting import FitProblem, initial_guess
    from ..fitting.flags import FitFlags, chi2nu_threshold
    from ..fitting.multiband import fit_multiband
    from ..io import read_image
    from ..observation import Observation
    from ..scene import Scene
    from .scene_task import add_flags, psf_columns
    from .tasks import load_psf

    datas, psfs, descs, bands, dropped, qualities = [], [], [], [], [], []
    files = dict(task.band_files)
    band_psfs = dict(task.band_psfs)
    wavelengths = dict(task.band_wavelengths)
    for b in task.bands:
        set_step(f"reading band {b}")
        path = files.get(b, task.image)
        try:
            d = read_image(path, band=None if b in files else b, noise=task.noise,
                           noise_kind=task.noise_kind, noise_hdu=task.noise_hdu,
                           mask=task.mask, mask_hdu=task.mask_hdu,
                           invert_mask=task.invert_mask, segmap=task.segmap,
                           zeropoint=task.zeropoint, gain=task.gain,
                           pixel_scale=task.pixel_scale)
        except ImageReadError as exc:
            # a band that cannot be read (no usable noise map, a broken HDU): the other bands
            # are still fitted and the row says why this one is missing
            dropped.append(f"band {b} not fitted: {' '.join(str(exc).split())}")
            continue
        if not (d.ivar > 0).any():
            # the other bands are still fitted; this band's columns stay empty
            dropped.append(f"band {b} not fitted: no usable pixel (all masked or zero weight)")
            continue
        set_step(f"reading the PSF of band {b}")
        ppath = band_psfs.get(b, task.psf)
        if ppath is None:
            raise FitError(f"band {b} has no PSF: give --band-psf {b}=FILE or a --psf file "
                           "with one HDU per band (BAND, FILTER or EXTNAME)")
        # the band's HDU of a --psf file with one HDU per band, for one band too (--bands r
        # took HDU 0, the g PSF of a Legacy Surveys file); --psf-hdu, if given, for one band
        hdu = (None if b in band_psfs
               else task.psf_hdu if len(task.bands) == 1 and task.psf_hdu is not None
               else psf_hdu_for_band(ppath, b))
        if ppath == task.psf and hdu is None and task.psf_hdu is None and len(task.bands) > 1:
            raise FitError(f"--psf {ppath} has no HDU for band {b} (BAND, FILTER or EXTNAME "
                           f"= {b}): give --band-psf {b}=FILE")
        psf, desc = load_psf(ppath, hdu=hdu, n_components=task.psf_components,
                             position=task.psf_position, centre=task.psf_centre)
        q, approx = psf_columns(psf, task.psf_mode)
        qualities.append((approx, abs((q.get("psf_size_ratio") or 1.0) - 1.0), q))
        datas.append(d)
        psfs.append(psf)
        descs.append(f"{b}: {desc}")
        bands.append(b)
    if not datas:
        raise FitError("; ".join(dropped))
    # the reference frame (positions and shapes), the start and the neighbours come from the
    # band with the most signal (the largest sum of data^2 ivar); its detected segments are
    # masked in every band on the same pixel grid
    set_step("finding the start")
    snr = [float(np.sum(np.where(d.mask, 0.0, d.image) ** 2 * d.ivar)) for d in datas]
    k0 = int(np.argmax(snr))
    info = dict(neighbours=task.neighbours, n_sources=1)
    scene = None
    notes = [warnings_text] if warnings_text else []
    if task.neighbours != "ignore":
        from .scene_task import find_neighbours

        set_step("detecting the neighbours")
        scene, masked, info, det_notes = find_neighbours(task, datas[k0], psfs[k0],
                                                         profile=profile, M=M, n=n)
        notes += det_notes
        extra = masked.mask & ~datas[k0].mask
        if extra.any():
            other = [b for b, d in zip(bands, datas) if d.shape != datas[k0].shape]
            if other and task.neighbours == "mask":
                notes.append(f"the neighbours' segments (found in band {bands[k0]}) are "
                             f"masked only in the bands on its pixel grid, not in "
                             f"{', '.join(other)}")
            datas = [dataclasses.replace(d, mask=d.mask | extra,
                                         ivar=np.where(extra, 0.0, d.ivar))
                     if d.shape == extra.shape else d for d in datas]
        if not (task.neighbours == "fit" and len(scene) > 1):
            scene = None
            info["n_sources"] = 1
    if scene is None:
        prob = FitProblem.from_image_data(datas[k0], psf=psfs[k0], profile=profile, M=M, n=n,
                                          sky=sky, psf_mode=task.psf_mode)
        start = saved.params if saved is not None else initial_guess(prob,
                                                                      centre=task.centre)
        scene = Scene.from_params(start, profile, None if profile == "ser" else prob.M)
    obs = [Observation.from_image_data(d, psf=p, band=b, psf_mode=task.psf_mode,
                                       wavelength=wavelengths.get(b))
           for d, p, b in zip(datas, psfs, bands)]
    set_step("fitting the bands jointly")
    res = fit_multiband(obs, scene, bands=tuple(bands), sky=sky, max_nfev=task.max_nfev,
                        reference=k0, ties=dict(task.band_ties) or None)
    # the PSF columns of the band whose PSF is furthest from its stamp; PSF_APPROX if any
    # band's mixture-only PSF is approximate
    approx, _, psf_info = max(qualities, key=lambda t: (t[0], t[1]))
    reason = "; ".join(dropped + [f"band {b} not fitted: {why}" for b, why in res.skipped]
                       + ([] if res.status == "converged" else [f"joint fit {res.status}"]))
    notes += [m for m in res.messages if not any(m.startswith(f"{b}:") and "not fitted" in m
                                                 for b, _ in res.skipped)]
    fitted = [k for k, b in enumerate(bands) if b in res.bands]
    zps = {b: d.zeropoint for b, d in zip(bands, datas)}
    ref = bands[k0]
    rows = band_rows(res, datas[k0], [obs[k] for k in fitted],
                     psf_source="; ".join(descs), file=str(task.image), psf_info=psf_info,
                     warnings_text=" | ".join(notes), reason=reason,
                     targets_only=task.targets_only, zeropoints=zps,
                     info=dict(info, n_sources=len(res.scenes[0]), ref_band=ref),
                     requested=task.bands)
    for row in rows:
        if approx:
            add_flags(row, FitFlags.PSF_APPROX)
        if res.nu > 0 and res.chi2 / res.nu > chi2nu_threshold(res.nu):
            add_flags(row, FitFlags.ERRORS_UNDERESTIMATED)
    return rows
