"""Find the sources in a cutout (photutils segmentation and deblending), point or extended.

:func:`detect_sources` thresholds the PSF-smoothed, background-subtracted image at ``nsigma``
times the per-pixel noise, keeps segments of at least ``npixels`` pixels, deblends them
(photutils' multi-threshold watershed), and measures each with photutils' ``SourceCatalog``
(centroid, segment flux, second-moment ellipse). Each detection is classified as a point
source or a galaxy by its size against the PSF's.

Conventions: ``image[y, x]``, 0-based pixel centres; ``angle`` degrees counter-clockwise from
+x; sizes are Gaussian sigmas of the segment's intensity-weighted second moments (pixels).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from . import _warnings
from .errors import MogviewerError

__all__ = ["Detection", "Detections", "detect_sources", "classify", "scene_from_detections",
           "detect_missed", "add_detections"]

#: A source whose concentration (peak pixel / segment flux) is above this fraction of the PSF's
#: is a point source. A segment's second moments cannot tell (a bright star's segment reaches
#: far into its wings and has 2-3x the PSF's core size), its peak can: an exponential galaxy
#: with r_e equal to the PSF's sigma already has ~0.45 of a star's concentration.
POINT_CONCENTRATION = 0.6
#: A detection whose minor sigma is below this fraction of the PSF's cannot be a source seen through
#: the PSF: a cosmic ray, a hot pixel or an edge artefact (kind 'artefact', masked, never fitted).
ARTEFACT_SIZE = 0.35
#: A neighbour whose segment flux is below this many sigmas (:attr:`Detection.snr`) is masked,
#: not modelled: the 2-sigma detection threshold on the smoothed image finds about one
#: noise peak per 128x128 pure-noise image, and those have segment S/N 2-3 (measured on the
#: simulated pairs of tests/test_scenes.py: 2.3-2.9), while a real neighbour worth modelling
#: has S/N >= 5, the usual catalogue cut.
MIN_SNR = 5.0


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected source.

    Attributes
    ----------
    label : int
        Its label in :attr:`Detections.segmap` (1, 2, ...).
    x, y : float
        Centroid, 0-based pixels.
    flux : float
        Sum of the background-subtracted image over its segment (image units).
    area : int
        Segment area, pixels.
    sigma_major, sigma_minor : float
        Second-moment sigmas of the segment's light, pixels.
    angle : float
        Major axis, degrees counter-clockwise from +x, in [0, 180).
    kind : {'point', 'galaxy', 'artefact'}
        From the concentration and size against the PSF's (:func:`classify`).
    snr : float
        Significance of the segment's flux: ``flux / sqrt(sum of the pixel variances over the
        segment)`` (variances ``1/ivar``, or the background's robust sigma squared); NaN when
        unknown.
    """

    label: int
    x: float
    y: float
    flux: float
    area: int
    sigma_major: float
    sigma_minor: float
    angle: float
    kind: str
    snr: float = math.nan

    @property
    def q(self):
        """Axis ratio of the second-moment ellipse, in (0, 1]."""
        return float(min(1.0, max(self.sigma_minor / self.sigma_major, 1e-3)))


@dataclasses.dataclass(frozen=True, eq=False)
class Detections:
    """What :func:`detect_sources` found: the sources, brightest first, and the segment map.

    ``messages`` says what was decided on the way (a crowded field capped at ``max_sources``);
    ``dropped`` holds the labels of segments found but not kept (their pixels are still in
    :attr:`segmap`, and :func:`scene_from_detections` masks them).
    """

    sources: tuple
    segmap: np.ndarray
    background: float
    threshold: float
    messages: tuple = ()
    dropped: tuple = ()

    def __len__(self):
        return len(self.sources)

    def at(self, x, y):
        """The detection whose segment holds pixel ``(round(x), round(y))``, else the one
        whose centroid is nearest (None when there are none)."""
        if not self.sources:
            return None
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < self.segmap.shape[0] and 0 <= ix < self.segmap.shape[1]:
            lab = int(self.segmap[iy, ix])
            for s in self.sources:
                if s.label == lab:
                    return s
        return min(self.sources, key=lambda s: (s.x - x) ** 2 + (s.y - y) ** 2)

    def mask_of(self, detections):
        """Boolean mask of the segments of ``detections``."""
        labels = [d.label for d in detections]
        return np.isin(self.segmap, labels) if labels else np.zeros(self.segmap.shape, bool)


def _mixture_of(psf):
    """The PSF's mixture, whatever was given (Mixture, ExactPsf, PsfModel or None)."""
    if psf is None:
        return None
    from .render.exact import ExactPsf
    if isinstance(psf, ExactPsf) or (hasattr(psf, "stamp") and hasattr(psf, "mixture")):
        return psf.mixture.normalized()
    return psf.normalized()


def _psf_concentration(psf):
    """Peak pixel / total of the PSF centred at a typical sub-pixel offset (0.25, 0.25) px."""
    from .render import render
    if psf is None:
        return 1.0
    half = 15
    img = render(psf.normalized().shifted(half + 0.25, half + 0.25), (2 * half + 1, 2 * half + 1))
    return float(img.max() / img.sum())


def _psf_sigma(psf):
    """Geometric-mean sigma of a PSF mixture's second moments (pixels); 1 px without a PSF."""
    if psf is None:
        return 1.0 / math.sqrt(12.0)      # the pixel itself
    cov = np.asarray(psf.second_moments())
    ev = np.linalg.eigvalsh(cov)
    return float(math.sqrt(math.sqrt(max(ev[0], 1e-12) * max(ev[1], 1e-12))))


def classify(concentration, sigma_minor, psf_concentration, psf_sigma):
    """``'artefact'`` when the segment's minor sigma is below :data:`ARTEFACT_SIZE` times the
    PSF's; ``'point'`` when its concentration (peak / flux) is above
    :data:`POINT_CONCENTRATION` times the PSF's; else ``'galaxy'``."""
    if sigma_minor < ARTEFACT_SIZE * psf_sigma:
        return "artefact"
    return "point" if concentration > POINT_CONCENTRATION * psf_concentration else "galaxy"


def detect_sources(image, *, ivar=None, mask=None, psf=None, nsigma=2.0, npixels=5,
                   deblend=True, nlevels=32, contrast=0.005, max_sources=1000):
    """Detect and deblend the sources of an image.

    Parameters
    ----------
    image : ndarray (ny, nx)
        Pixels ``image[y, x]``; the background is estimated (sigma-clipped median of the
        unmasked pixels) and subtracted first, so a sky-subtracted image is fine too.
    ivar : ndarray, optional
        Inverse variance; the threshold is ``nsigma / sqrt(ivar)`` per pixel. Without it, the
        background's robust sigma.
    mask : ndarray of bool, optional
        True = not used (never part of a segment).
    psf : Mixture, optional
        The PSF: the image is smoothed with a Gaussian of its size before thresholding, and
        sources are classified against it.
    nsigma, npixels :
        Threshold in noise sigmas (of the smoothed image) and minimum segment area (pixels).
    deblend, nlevels, contrast :
        photutils' deblending (``deblend_sources``) and its parameters.
    max_sources : int
        At most this many detections are kept, brightest first (a crowded field wants a
        catalogue, not a cutout fit); :attr:`Detections.messages` says when some were dropped.

    Returns
    -------
    Detections
        Sources brightest first, the segment map (0 = background) and the threshold used.
    """
    from astropy.convolution import Gaussian2DKernel, convolve
    from astropy.stats import sigma_clipped_stats
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.segmentation import SourceCatalog, deblend_sources
    from photutils.segmentation import detect_sources as _segment

    img = np.asarray(image, dtype=np.float64)
    psf = _mixture_of(psf)
    if img.ndim != 2:
        raise MogviewerError(f"detection needs a 2-D image, got shape {img.shape}")
    if not (isinstance(max_sources, (int, np.integer)) and max_sources >= 1):
        raise MogviewerError(f"max_sources must be a positive integer, got {max_sources!r}")
    bad = ~np.isfinite(img) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(img))
    if ivar is not None:
        bad = bad | ~(np.asarray(ivar) > 0)
    if bad.all():
        raise MogviewerError("no usable pixels to detect sources in")
    _, bkg, bsig = sigma_clipped_stats(img[~bad], sigma=3.0, maxiters=10)
    data = np.where(bad, 0.0, img - bkg)
    psf_sigma = _psf_sigma(psf)
    psf_conc = _psf_concentration(psf)
    ksig = max(psf_sigma, 0.5)
    kernel = Gaussian2DKernel(ksig, x_size=int(2 * math.ceil(3 * ksig) + 1))
    kernel.normalize()
    with _warnings.catch():
        # astropy says "NaN values detected post convolution" when a masked region is wider
        # than the kernel: those pixels are masked ones (a usable pixel always weighs itself)
        # and are set to 0 below; the warning told the user nothing (it reached every CSV row
        # of a masked cutout fitted with --neighbours)
        warnings.simplefilter("ignore", AstropyUserWarning)
        smooth = convolve(data, kernel, mask=bad, normalize_kernel=True, boundary="extend")
    # the noise of the smoothed image: sigma times the kernel's root-sum-square
    knorm = float(np.sqrt(np.sum(kernel.array ** 2)))
    if ivar is not None:
        with np.errstate(divide="ignore"):
            sig = np.where(bad, np.inf, 1.0 / np.sqrt(np.asarray(ivar, dtype=np.float64)))
    else:
        sig = np.where(bad, np.inf, bsig)
    threshold = nsigma * knorm * sig
    smooth = np.where(bad, 0.0, smooth)
    with _warnings.catch():
        warnings.simplefilter("ignore")     # photutils warns when nothing is found
        segm = _segment(smooth, threshold, npixels=npixels, mask=bad)
        if segm is None:
            return Detections((), np.zeros(img.shape, np.int32), float(bkg),
                              float(np.nanmedian(threshold[~bad])))
        messages, dropped, dropped_mask = [], [], None
        if segm.nlabels > max_sources:
            # a crowded field: keep the brightest segments (smoothed flux) before deblending
            flux = np.bincount(segm.data.ravel(), weights=smooth.ravel(),
                               minlength=segm.max_label + 1)
            labels = np.asarray(segm.labels)
            order = labels[np.argsort(-flux[labels], kind="stable")]
            dropped = [int(v) for v in order[max_sources:]]
            messages.append(f"{segm.nlabels} sources detected, more than max_sources = "
                            f"{max_sources}: the {max_sources} brightest kept, the others "
                            "masked (a crowded field: raise nsigma, or fit from a catalogue)")
            dropped_mask = np.isin(segm.data, dropped)
            segm.keep_labels(order[:max_sources])
        if deblend and segm.nlabels:
            # deblend on a lightly smoothed image (sigma 1 px): the PSF-matched smoothing that
            # is best for detection fills the saddle between close neighbours
            light = Gaussian2DKernel(1.0, x_size=7)
            light.normalize()
            sharp = convolve(data, light, mask=bad, normalize_kernel=True, boundary="extend")
            segm = deblend_sources(np.where(bad, 0.0, sharp), segm, npixels=npixels,
                                   nlevels=nlevels, contrast=contrast, progress_bar=False)
        cat = SourceCatalog(data, segm, convolved_data=smooth, mask=bad)
    # each segment's noise: the sum of its pixels' variances (the unsmoothed image's)
    with np.errstate(divide="ignore"):
        var = np.where(bad, 0.0, sig ** 2)
    seg_var = np.bincount(np.asarray(segm.data).ravel(), weights=var.ravel(),
                          minlength=int(segm.max_label) + 1)
    out = []
    for row in cat:
        x, y = float(row.x_centroid), float(row.y_centroid)
        a, b = float(row.semimajor_axis.value), float(row.semiminor_axis.value)
        if not all(np.isfinite(v) for v in (x, y, a, b)):
            continue
        ang = float(row.orientation.value) % 180.0
        flux = float(row.segment_flux)
        conc = float(row.max_value) / flux if flux > 0 else 0.0
        sv = float(seg_var[int(row.label)])
        snr = flux / math.sqrt(sv) if sv > 0 else math.nan
        out.append(Detection(label=int(row.label), x=x, y=y, flux=flux,
                             area=int(row.area.value), sigma_major=a, sigma_minor=b, angle=ang,
                             kind=classify(conc, b, psf_conc, psf_sigma), snr=snr))
    out.sort(key=lambda d: -d.flux)
    segmap = np.asarray(segm.data, dtype=np.int32).copy()
    if dropped_mask is not None:
        # the segments dropped before deblending: back in the map under fresh labels
        segmap, dropped = _restore(segmap, dropped_mask)
    if len(out) > max_sources:      # deblending split more than the cap: brightest first
        messages.append(f"{len(out)} sources after deblending, more than max_sources = "
                        f"{max_sources}: the {max_sources} brightest kept, the others masked")
        dropped += [d.label for d in out[max_sources:]]
        out = out[:max_sources]
    return Detections(tuple(out), segmap, float(bkg), float(np.nanmedian(threshold[~bad])),
                      messages=tuple(messages), dropped=tuple(dropped))


def _restore(segmap, dropped_mask):
    """Put dropped segments' pixels back into ``segmap``, one fresh label per connected piece:
    ``(segmap, the labels used)``."""
    from scipy import ndimage
    lab, n = ndimage.label(dropped_mask & (segmap == 0))
    top = int(segmap.max())
    segmap = np.where(lab > 0, lab + top, segmap).astype(np.int32)
    return segmap, [top + k for k in range(1, n + 1)]


def scene_from_detections(detections, *, target=None, profile="ser", M=None, n=2.0,
                          neighbour_profile="exp", max_fitted=10, psf=None,
                          neighbours="fit", min_snr=MIN_SNR):
    """A starting :class:`~mogviewer.scene.Scene` from detections, and which are fitted.

    Parameters
    ----------
    detections : Detections
    target : (x, y), optional
        The target's position (default: the image centre); the detection there is the
        target, modelled with ``profile`` (``M``, ``n``).
    neighbour_profile : str
        Profile of the other detections classified as galaxies (point sources are the PSF).
    max_fitted : int
        How many neighbours are modelled, brightest first (the Tractor's order); the rest, and
        every artefact, are masked.
    neighbours : {'fit', 'mask', 'ignore'}
        ``'fit'``: model them (up to ``max_fitted``); ``'mask'``: mask every other segment;
        ``'ignore'``: neither (the target alone, nothing masked).
    min_snr : float
        With ``'fit'``, a neighbour whose :attr:`Detection.snr` is below this is masked, not
        modelled (a noise peak, or too faint to constrain; default :data:`MIN_SNR`); 0 models
        every detection (up to ``max_fitted``).

    Returns
    -------
    scene : Scene
        Target first (``scene.target == 0``), then the modelled neighbours; the sky starts at
        the detection's background estimate.
    mask : ndarray of bool
        The segments to exclude from the fit.
    ids : tuple of int
        The detection label of each source of the scene.
    """
    from .scene import Galaxy, PointSource, Scene

    if neighbours not in ("fit", "mask", "ignore"):
        raise ValueError(f"neighbours must be 'fit', 'mask' or 'ignore', got {neighbours!r}")
    ny, nx = detections.segmap.shape
    tx, ty = target if target is not None else ((nx - 1) / 2, (ny - 1) / 2)
    t = detections.at(tx, ty)
    if t is None:
        raise MogviewerError("no source detected in the image: nothing to fit")
    psf = _mixture_of(psf)
    psf_var = float(np.mean(np.linalg.eigvalsh(np.asarray(psf.second_moments())))) \
        if psf is not None else 1.0 / 12.0

    def galaxy(d, prof, m, nn):
        # r_e from the segment's second moments with the PSF's taken out (a start, no more)
        var = max(d.sigma_major * d.sigma_minor - psf_var, 0.25)
        return Galaxy(profile=prof, M=None if prof == "ser" else m, flux=max(d.flux, 1e-30),
                      x=d.x, y=d.y, re=float(np.sqrt(var)), q=max(d.q, 0.1),
                      angle=d.angle, n=nn if prof == "ser" else None)

    sources = [galaxy(t, profile, M, n)]
    ids = [t.label]
    others = [d for d in detections.sources if d.label != t.label]
    masked = []
    if neighbours == "fit":
        for d in others:
            # below min_snr: a noise peak or a source too faint to constrain, masked (a few
            # pixels of noise lost) rather than modelled by a free source
            if d.kind == "artefact" or len(sources) > max_fitted or d.snr < min_snr:
                masked.append(d)
            elif d.kind == "point":
                sources.append(PointSource(d.flux, d.x, d.y))
                ids.append(d.label)
            else:
                sources.append(galaxy(d, neighbour_profile, None, 1.0))
                ids.append(d.label)
    elif neighbours == "mask":
        masked = others
    scene = Scene(tuple(sources), sky=detections.background, target=0)
    mask = detections.mask_of(masked)
    if neighbours != "ignore" and detections.dropped:
        mask |= np.isin(detections.segmap, detections.dropped)
    return scene, mask, tuple(ids)


def detect_missed(observation, scene, model=None, *, nsigma=3.0, npixels=5, min_separation=None,
                  min_snr=10.0, relative_snr=0.1, inside=1.5, max_new=10):
    """The residual-based second detection pass: sources in ``data - model`` that no source of
    ``scene`` explains.

    The residual of the first fit is segmented like an image (:func:`detect_sources`, on its
    positive part: a missed source adds light) at ``nsigma``; a residual detection whose
    centroid lies within ``min_separation`` of a source of the scene (default: 2 PSF sigmas +
    1 px) is that source's imperfect model, not a new source, and is dropped; so is one inside
    ``inside`` half-light ellipses of a galaxy of the scene (elliptical radius over r_e): a
    residual there is more often the galaxy's own structure (arms, bar, clumps) than another
    source (on the DECaLS DR9 r cutout a "point source" 10 px from the r_e 7 px target's centre
    moved its q by 0.02 and angle by 1.2 deg). So is one whose
    segment flux is below ``min_snr`` times its noise (``sqrt(sum 1/ivar)`` over the segment):
    the residual of an imperfect fit has many faint 3-sigma bumps, a missed source stands out.
    So is one below ``relative_snr`` of the most significant one: a bright missed source pulls
    the sky and its neighbours, and the bumps that leaves vanish once it is modelled (the
    caller fits again and looks again).
    Artefacts are dropped too.

    Parameters
    ----------
    observation : Observation
        The pixels, weights, mask and PSF of the fit.
    scene : Scene
        The fitted scene, in the observation's pixels.
    model : ndarray, optional
        The model image of ``scene`` (default: rendered here).
    nsigma, npixels :
        Threshold and minimum area of the residual's segments.
    min_separation : float, optional
        Pixels.
    min_snr : float
        Segment flux over its noise below which a residual detection is not a source.
    relative_snr : float
        Fraction of the most significant residual detection's S/N below which one waits for
        the next pass.
    inside : float
        Elliptical radius, in units of each galaxy's r_e, within which nothing is added.
    max_new : int
        At most this many are returned, brightest first.

    Returns
    -------
    Detections
        The missed sources (positions and fluxes measured on the residual), brightest first.
    """
    if model is None:
        model = scene.render(observation)
    psf = _mixture_of(observation.psf)
    res = np.where(observation.weights > 0, observation.image - model, 0.0)
    det = detect_sources(res, ivar=observation.weights, mask=observation.mask, psf=psf,
                         nsigma=nsigma, npixels=npixels, max_sources=max(10 * max_new, 100))
    sep = min_separation if min_separation is not None else 2.0 * _psf_sigma(psf) + 1.0
    w = np.asarray(observation.weights)
    with np.errstate(divide="ignore"):
        var = np.where(w > 0, 1.0 / w, 0.0)
    seg_var = np.bincount(det.segmap.ravel(), weights=var.ravel(),
                          minlength=int(det.segmap.max()) + 1)
    snr = {d.label: d.flux / math.sqrt(seg_var[d.label]) if seg_var[d.label] > 0 else 0.0
           for d in det.sources}
    new = [d for d in det.sources if d.kind != "artefact" and d.flux > 0
           and snr[d.label] >= min_snr
           and all(math.hypot(d.x - s.x, d.y - s.y) > sep for s in scene.sources)
           and not any(_within(d, s, inside) for s in scene.sources)]
    if new:
        top = max(snr[d.label] for d in new)
        new = [d for d in new if snr[d.label] >= relative_snr * top]
    msgs = list(det.messages)
    if len(new) > max_new:
        msgs.append(f"{len(new)} sources missed by the first pass, more than max_new = "
                    f"{max_new}: the {max_new} brightest added")
        new = new[:max_new]
    return Detections(tuple(new), det.segmap, det.background, det.threshold,
                      messages=tuple(msgs))


def _within(d, s, k):
    """Detection ``d`` lies inside ``k`` half-light ellipses of galaxy ``s``."""
    if getattr(s, "kind", None) != "galaxy":
        return False
    t = math.radians(s.angle)
    dx, dy = d.x - s.x, d.y - s.y
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (u / s.re) ** 2 + (v / (s.q * s.re)) ** 2 < k * k


def add_detections(scene, detections, *, psf=None, neighbour_profile="exp"):
    """``scene`` with ``detections`` appended: point sources as the PSF, the others as
    ``neighbour_profile`` galaxies started from their moments (as
    :func:`scene_from_detections` starts neighbours)."""
    from .scene import Galaxy, PointSource
    psf = _mixture_of(psf)
    psf_var = float(np.mean(np.linalg.eigvalsh(np.asarray(psf.second_moments())))) \
        if psf is not None else 1.0 / 12.0
    for d in detections.sources:
        if d.kind == "point":
            scene = scene.add(PointSource(max(d.flux, 1e-30), d.x, d.y))
        else:
            var = max(d.sigma_major * d.sigma_minor - psf_var, 0.25)
            scene = scene.add(Galaxy(profile=neighbour_profile, flux=max(d.flux, 1e-30), x=d.x,
                                     y=d.y, re=float(np.sqrt(var)), q=max(d.q, 0.1),
                                     angle=d.angle))
    return scene
