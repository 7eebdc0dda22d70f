"""The app's several-band work, Qt-free like :mod:`.engine`: the colour image of a multi-band
file (View > Colour Image) and the joint fit of every band of a file (the *joint (all bands)*
switch), with its CSV rows and the Fit group's summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import io as mio
from .engine import (
    FitError,
    FitFlags,
    _library_psf_mode,
    image_hdu_rows,
    psf_source,
    read_psf,
)

# ------------------------------------------------------------------------------- colour
#: Bands from blue to red (a file's BAND keywords are ordered by this for the colour image).
BAND_ORDER = "u g r i z y".split()


def colour_bands(hdus):
    """The three image HDUs of a multi-band file that make its colour image, reddest first
    (R, G, B): ``[(index, band)]`` from :func:`image_hdus` labels, or [] with fewer than three
    bands."""
    bands = []
    for idx, label in hdus:
        if "band " in label:
            bands.append((idx, label.rsplit("band ", 1)[1].strip()))
    if len(bands) < 3:
        return []

    def rank(b):
        name = b[1].lower()
        return BAND_ORDER.index(name) if name in BAND_ORDER else -1

    bands.sort(key=rank)
    return list(reversed(bands[-3:]))


def colour_image(path, hdus, *, Q=8.0):
    """An RGB image of a multi-band file: the three reddest bands as R, G, B through
    astropy's :func:`~astropy.visualization.make_lupton_rgb` (Lupton et al. 2004, the asinh
    stretch that keeps colours of bright objects). Each band is divided by its own 99.5th
    percentile first, so the stretch does not depend on the units. Returns ``(rgb (ny, nx, 3)
    uint8, row 0 at the bottom as in the image array; [band names R, G, B])``."""
    from astropy.visualization import make_lupton_rgb
    chosen = colour_bands(hdus)
    if not chosen:
        raise mio.ImageReadError(f"{Path(str(path)).name}: a colour image needs three bands "
                                 "(image HDUs with a BAND keyword)")
    planes = []
    for idx, _band in chosen:
        img = np.asarray(mio.read_image(str(path), hdu=idx).image, float)
        img = np.where(np.isfinite(img), img, 0.0)
        p = float(np.percentile(img, 99.5))
        planes.append(img / p if p > 0 else img)
    shape = planes[0].shape
    if any(p.shape != shape for p in planes):
        raise mio.ImageReadError(f"{Path(str(path)).name}: the bands differ in shape")
    rgb = make_lupton_rgb(*planes, minimum=0.0, stretch=0.5, Q=Q)
    return np.ascontiguousarray(rgb), [b for _i, b in chosen]


# ------------------------------------------------------------------------------- several bands
def image_bands(path):
    """``[(hdu index, band)]`` of the image HDUs of a file that carry a ``BAND`` keyword (a
    Legacy Surveys g/r/z cutout), in file order; [] for a file with fewer than two."""
    out = [(int(r["index"]), str(r["band"])) for r in image_hdu_rows(path) if r["band"]]
    return out if len({b for _i, b in out}) >= 2 and len({b for _i, b in out}) == len(out) \
        else []


class JointFit:
    """A joint fit of every band of one file (:func:`run_joint_fit`), with what the app needs
    to show each band and to write the command line's multi-band CSV row.

    Attributes
    ----------
    result : mogviewer.fitting.MultiBandResult
    path : str
        The image file.
    bands : tuple of str
        The fitted bands (``result.bands``), in file order.
    hdus : dict
        Band -> image HDU index.
    datas : dict
        Band -> :class:`~mogviewer.io.ImageData` as fitted (the user's mask included).
    observations : dict
        Band -> the fitted :class:`~mogviewer.observation.Observation`.
    reference : str
        The band whose pixel grid is the scene's frame (the one shown when Fit was pressed).
    psf_text : str
        Per band, where its PSF came from (the CSV's ``psf_source``).
    psf_info : dict
        The PSF quality columns of the band whose mixture is furthest from its stamp, and
        ``approx``: True when a mixture-only PSF is poor (the command line's ``PSF_APPROX``).
    profile, M : str, int
        The target's profile.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def band_index(self, band):
        return self.result.bands.index(band)

    def scene(self, band):
        """The fitted scene of ``band`` (its fluxes and sky; shared centre and shape)."""
        return self.result.scenes[self.band_index(band)]

    def params(self, band, start):
        """The target of ``band`` as :class:`GalaxyParams` (``start`` with the fitted
        values)."""
        sc = self.scene(band)
        t = sc.sources[sc.target]
        extra = {"n": t.n} if t.n is not None else {}
        return start.replace(flux=t.flux, x=t.x, y=t.y, re=t.re, q=t.q, angle=t.angle,
                             sky=sc.sky, **extra)

    def neighbours(self, band):
        sc = self.scene(band)
        return tuple(s for i, s in enumerate(sc.sources) if i != sc.target)


def run_joint_fit(path, options, params, *, profile, M, sky, psf_path, psf_mode,
                  reference_band, neighbours=(), extra_mask=None, should_stop=None,
                  n_components=None):
    """Fit every band of the file ``path`` jointly (:func:`mogviewer.fitting.multiband.
    fit_multiband`, as ``mogviewer fit --bands``): one scene (the target from ``params`` and
    the ``neighbours``), centre, shape and Sérsic n shared, a flux and a sky per band.

    Each band is read as the app reads one band (``options`` without its HDU, ``band=b``:
    the HDU whose ``BAND`` is b and its inverse variance), with the user's ``extra_mask``
    (pixels of the shown band's grid); its PSF is the HDU of ``psf_path`` whose ``BAND`` is
    b, used as ``psf_mode`` says. With no PSF at all every band is integrated over the pixel
    (as a one-band fit with no PSF); a PSF file without an HDU for each band is refused (a
    shared shape through the wrong PSF would be biased), as the command line refuses it.

    Each band's PSF mixture has the automatic K (``n_components`` None), as the band selector
    reads it. Returns a :class:`JointFit` (its result's status ``'cancelled'`` when
    ``should_stop`` ended the fit), or None when it was cancelled before fitting; raises
    :class:`FitError` (a message for people) when the file has fewer than two bands or a band
    has no PSF.
    """
    from ..batch.band_task import psf_hdu_for_band as band_psf_hdu
    from ..batch.scene_task import psf_columns
    from ..fitting.multiband import fit_multiband
    from ..observation import Observation
    from ..scene import Scene

    name = Path(str(path)).name
    bands = image_bands(path)
    if len(bands) < 2:
        raise FitError(f"{name}: a joint fit needs two or more image HDUs with a BAND keyword")
    opts = {k: v for k, v in dict(options or {}).items() if k not in ("hdu", "band")}
    datas, obs, hdus, descs, quals, notes = {}, {}, {}, [], [], []
    for idx, b in bands:
        if should_stop is not None and should_stop():
            return None              # cancelled while reading (a PSF mixture takes seconds)
        d = mio.read_image(str(path), hdu=idx, **opts)
        if extra_mask is not None and extra_mask.shape == d.shape:
            import dataclasses
            d = dataclasses.replace(d, mask=d.mask | extra_mask,
                                    ivar=np.where(extra_mask, 0.0, d.ivar))
        pm = None
        if psf_path is not None:
            hdu = band_psf_hdu(psf_path, b)
            if hdu is None:
                raise FitError(f"band {b} has no PSF: {Path(str(psf_path)).name} has no HDU "
                               f"whose BAND is {b}. A joint fit needs each band's own PSF: "
                               "open a PSF file with one HDU per band (BAND keyword), or "
                               "fit the bands one at a time")
            pm = read_psf(psf_path, hdu=hdu, n_components=n_components)
            descs.append(f"{b}: {psf_source(pm, psf_path)} HDU {hdu}")
            q, approx = psf_columns(pm, _library_psf_mode(psf_mode))
            quals.append((approx, abs((q.get("psf_size_ratio") or 1.0) - 1.0), q))
        datas[b], hdus[b] = d, idx
        obs[b] = Observation.from_image_data(d, psf=pm, band=b,
                                             psf_mode=_library_psf_mode(psf_mode))
    names = [b for _i, b in bands]
    ref = names.index(reference_band) if reference_band in names else 0
    scene = Scene.from_params(params, profile, None if profile == "ser" else M)
    scene = Scene(scene.sources + tuple(neighbours), sky=params.sky)
    res = fit_multiband([obs[b] for b in names], scene, bands=tuple(names),
                        sky="constant" if sky else "none", should_stop=should_stop,
                        reference=ref)
    if quals:
        approx, _, info = max(quals, key=lambda t: (t[0], t[1]))
        info = dict(info, approx=approx)
    else:
        info = {"approx": False}
        notes.append("no PSF: every band is integrated over the pixel")
    return JointFit(result=res, path=str(path), bands=tuple(res.bands), hdus=hdus,
                    datas=datas, observations=obs, reference=names[ref],
                    psf_text="; ".join(descs) or "none", psf_info=info, profile=profile,
                    M=M, notes=tuple(notes))


def joint_rows(jf, *, file=None):
    """The CSV rows of a joint fit, as ``mogviewer fit --bands`` writes them
    (:func:`mogviewer.batch.band_task.band_rows`: one per source, ``flux_<b>``, ``mag_<b>``,
    colours with their covariance, ``ties``), with the command line's ``PSF_APPROX`` and
    ``ERRORS_UNDERESTIMATED`` flags. Returns ``(rows, columns)``."""
    from ..batch.band_task import band_columns, band_rows
    from ..batch.scene_task import add_flags
    from ..fitting.flags import chi2nu_threshold

    res = jf.result
    ref = jf.reference if jf.reference in res.bands else res.bands[0]
    psf_info = {k: v for k, v in jf.psf_info.items() if k != "approx"}
    rows = band_rows(res, jf.datas[ref], [jf.observations[b] for b in res.bands],
                     psf_source=jf.psf_text, file=str(file or jf.path), psf_info=psf_info,
                     warnings_text=" | ".join(list(jf.notes) + list(res.messages)),
                     reason="; ".join([f"band {b} not fitted: {why}" for b, why in res.skipped]
                                      + ([] if res.status == "converged"
                                         else [f"joint fit {res.status}"])),
                     zeropoints={b: jf.datas[b].zeropoint for b in res.bands},
                     info=dict(neighbours="fit" if len(res.scenes[0]) > 1 else "ignore",
                               n_sources=len(res.scenes[0]), ref_band=ref),
                     requested=jf.bands)
    for row in rows:
        if jf.psf_info.get("approx"):
            add_flags(row, FitFlags.PSF_APPROX)
        if res.nu > 0 and res.chi2 / res.nu > chi2nu_threshold(res.nu):
            add_flags(row, FitFlags.ERRORS_UNDERESTIMATED)
    return rows, band_columns(res.bands)


def joint_summary(jf, *, shown=None):
    """Lines for people: the shared parameters with errors, each band's flux and magnitude
    (``shown`` marked), the colours of consecutive bands with their errors (the flux
    covariance included), the ties."""
    res = jf.result
    sc = res.scenes[0]
    i = sc.target
    t = sc.sources[i]
    e = res.errors[0][i]
    lines = [f"Joint fit of {' '.join(res.bands)}: {res.status}, chi2/nu = {res.chi2_nu:.4f}",
             f"ties: {res.ties}"]
    shared = [("x", t.x), ("y", t.y), ("re", t.re), ("q", t.q), ("angle", t.angle % 180.0)]
    if t.n is not None:
        shared.append(("n", t.n))
    lines.append("shared: " + ", ".join(
        f"{k} = {v:.4g} \u00b1 {e.get(k, float('nan')):.2g}" for k, v in shared))
    ff = t.mixture().flux_fraction if t.kind != "point" else 1.0
    for k, b in enumerate(res.bands):
        s = res.scenes[k].sources[i]
        ferr = res.errors[k][i].get("flux", float("nan"))
        flux = s.flux / ff
        mark = "\u25b6 " if b == shown else "   "
        text = f"{mark}{b}: flux = {flux:.5g} \u00b1 {ferr / ff:.2g}"
        zp = jf.datas[b].zeropoint
        if zp is not None and flux > 0:
            mag = zp - 2.5 * np.log10(flux)
            text += f", mag = {mag:.3f} \u00b1 {2.5 / np.log(10) * ferr / s.flux:.3f}"
        # as the CSV's chi2_nu_<b>: the band's own parameters and its share of the shared
        own = sum(1 for bb, _j, _p in res.names if bb == b)
        shared_n = sum(1 for bb, _j, _p in res.names if bb is None)
        dof = jf.observations[b].n_good - own - shared_n / len(res.bands)
        text += f", chi2/nu = {res.chi2_band[k] / dof:.3f}" if dof > 0 else ""
        lines.append(text)
    for b1, b2 in zip(res.bands, res.bands[1:]):
        c, ce = res.colour(i, b1, b2)
        if c is not None and np.isfinite(c):
            lines.append(f"colour {b1}-{b2} = {c:.3f} \u00b1 {ce:.3f}")
    if res.skipped:
        lines += [f"band {b} not fitted: {why}" for b, why in res.skipped]
    return lines

