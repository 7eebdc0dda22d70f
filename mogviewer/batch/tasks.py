"""One fit as a task: a frozen, picklable :class:`FitTask` and :func:`run_task`, which turns it
into a result row and never raises for anything the data can do wrong.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from .. import _warnings, export
from ..errors import MogviewerWarning
from ..export.files import check_output_path
from ..fitting import FitProblem, fit, initial_guess
from ..fitting.flags import FitFlags, chi2nu_threshold
from ..io import read_image
from ..psf import read_psf
from ..sampling import CONVERGENCE_TAUS, priors_from_model, sample
from .scene_task import add_flags, find_neighbours, psf_columns, scene_flags_summary, scene_rows


@dataclasses.dataclass(frozen=True)
class FitTask:
    """Everything needed to fit one cutout (immutable, hashable and picklable).

    Attributes
    ----------
    image : str
        Image file (FITS or ``.npy``).
    hdu, band, plane :
        Which image HDU / band / cube plane (see :func:`mogviewer.io.read_image`).
    noise, noise_kind, noise_hdu :
        Noise map file, what it holds (``sigma``, ``variance``, ``ivar``, ``weight``) and its HDU.
    mask, mask_hdu, invert_mask :
        Mask file (nonzero = bad unless inverted) and its HDU.
    segmap, segment_id :
        Segmentation map (other segments masked) and the target id.
    zeropoint, gain, read_noise, sky_level, pixel_scale :
        Header overrides / noise model (mag, e-/unit, e-, image units, arcsec/px).
    psf, psf_hdu, psf_components :
        PSF file (any format :func:`mogviewer.psf.read_psf` reads), its HDU, and the number of
        Gaussians to fit to a PSF image (None = automatic). No PSF: ``psf=None`` (unless the
        ``start`` model file carries a PSF mixture, which is then used).
    psf_mode : {'auto', 'exact', 'mixture'}
        How a PSF image enters the model (see :meth:`mogviewer.fitting.FitProblem.from_arrays`):
        ``auto`` uses the stamp itself (exact-PSF mode) for an image, the mixture for a mixture
        file.
    psf_centre : {'centroid', 'peak', 'geometric'}
        Which point of a PSF image becomes the PSF's origin (see :func:`mogviewer.psf.read_psf`).
    psf_position : (x, y) or None
        Where to evaluate a position-dependent (PSFEx) PSF: the cutout centre's pixel position
        on the original image, as :func:`mogviewer.psf.read_psf` takes it.
    centre : (x, y) or None
        Where the target is, 0-based pixels of this cutout (the CLI's ``--centre`` takes 1-based
        FITS/DS9 coordinates): the initial guess uses the source there instead of the one at the
        stamp centre.
    profile, M, n :
        Target profile (``exp``, ``dev``, ``lux``, ``luv``, ``ser``), its number of Gaussians and
        Sersic index. ``None`` = from the start model, else ``exp`` and the profile's default M.
    profile2, M2 : str or None, int or None
        A second component sharing the centre (composite bulge + disk, e.g. ``profile='dev'``
        or ``'ser'`` with ``profile2='exp'``).
    sky : {'none', 'constant', 'plane'} or None
        Sky model (None = from the start model, else ``constant``).
    start : str or None
        A JSON model file (:func:`mogviewer.export.write_model_json`) used as the starting point.
    imgblock_dir, region_dir, model_json_dir : str or None
        Directories for the image block FITS, the DS9 region and the JSON model of this fit.
    scale_errors : bool
        Scale the errors by ``sqrt(chi2_nu)``.
    max_nfev : int
        Evaluation limit of the fit.
    output_name : str or None
        File-name stem of the per-file outputs; None = :func:`output_stem`'s rule.
        :func:`mogviewer.batch.plan_outputs` sets it when two inputs would share a name.
    neighbours : {'ignore', 'mask', 'fit'}
        The other sources of the cutout (:mod:`mogviewer.batch.scene_task`): left as they are,
        masked (their detected segments), or fitted with the target (one row per source).
    max_neighbours : int
        With ``neighbours='fit'``: how many are modelled, brightest first; the rest are masked.
    max_detections : int
        More detections than this fail the task (a crowded field wants a catalogue).
    targets_only : bool
        With ``neighbours='fit'``: only the target's row.
    bands : tuple of str
        Fit these bands jointly (:mod:`mogviewer.batch.band_task`): the HDUs of ``image``
        with these ``BAND`` values, or the files in ``band_files``.
    band_files : tuple of (band, path)
        Bands in files of their own.
    band_psfs : tuple of (band, path)
        The PSF file of a band (default: the HDU of ``psf`` for the band).
    band_wavelengths : tuple of (band, float)
        Effective wavelengths (any one unit) for ``band_ties``.
    residual_pass : bool
        With ``neighbours='fit'``: after the joint fit, detect on the residual, add what was
        missed and fit again (:func:`mogviewer.fitting.scene_fit.fit_scene`).
    band_ties : tuple of (parameter, degree)
        ``('re', 1)``, ``('n', 1)``: ln r_e or n as a Chebyshev polynomial of that degree in
        wavelength (:func:`mogviewer.fitting.multiband.fit_multiband`); none: shared.
    object_id : str or None
        The row's ``object_id`` (a manifest's id column); None = the file name as given
        (:func:`mogviewer.batch.runner.default_object_id`). ``--resume`` skips the ids already
        in the CSV.
    """

    image: str
    hdu: int | str | None = None
    band: str | None = None
    plane: int | None = None
    noise: str | None = None
    noise_kind: str = "sigma"
    noise_hdu: int | str | None = None
    mask: str | None = None
    mask_hdu: int | str | None = None
    invert_mask: bool = False
    segmap: str | None = None
    segment_id: int | None = None
    zeropoint: float | None = None
    gain: float | None = None
    read_noise: float | None = None
    sky_level: float | None = None
    pixel_scale: float | None = None
    psf: str | None = None
    psf_hdu: int | str | None = None
    psf_components: int | None = None
    psf_position: tuple | None = None
    psf_centre: str = "centroid"
    psf_mode: str = "auto"
    centre: tuple | None = None
    profile: str | None = None
    M: int | None = None
    n: float | None = None
    profile2: str | None = None
    M2: int | None = None
    fix_n: bool = False
    sky: str | None = None
    start: str | None = None
    imgblock_dir: str | None = None
    region_dir: str | None = None
    model_json_dir: str | None = None
    scale_errors: bool = False
    max_nfev: int = 200
    sample_steps: int | str = 0       # 0: no sampling; "auto": adaptive (ESS >= 1000, 50 tau)
    output_name: str | None = None
    neighbours: str = "ignore"
    max_neighbours: int = 10
    max_detections: int = 1000
    targets_only: bool = False
    bands: tuple = ()
    band_files: tuple = ()
    band_psfs: tuple = ()
    band_wavelengths: tuple = ()
    band_ties: tuple = ()
    residual_pass: bool = False
    object_id: str | None = None

    def input_files(self):
        """Every file this task reads (image, noise, mask, segmentation map, PSF, start)."""
        return tuple(p for p in (self.image, self.noise, self.mask, self.segmap, self.psf,
                                 self.start, *(f for _, f in self.band_files),
                                 *(f for _, f in self.band_psfs))
                     if isinstance(p, (str, bytes)) or hasattr(p, "__fspath__"))

    def output_files(self):
        """``[(path, what), ...]``: the per-file outputs this task writes."""
        stem = output_stem(self)
        out = []
        for directory, suffix, what in ((self.imgblock_dir, "_imgblock.fits", "image block"),
                                         (self.region_dir, ".reg", "region"),
                                         (self.model_json_dir, "_model.json", "model JSON")):
            if directory:
                out.append((str(Path(directory) / f"{stem}{suffix}"), what))
        return out



# ---------------------------------------------------------------------------------------------
# PSF adapter: the one place that knows mogviewer.psf's API
# ---------------------------------------------------------------------------------------------

_PSF_CACHE = {}


def load_psf(path, *, hdu=None, n_components=None, position=None, centre="centroid"):
    """Read a PSF file: returns ``(PsfModel, description)`` (its mixture, and its stamp for
    the exact-PSF mode when it came from an image).

    Adapter over :func:`mogviewer.psf.read_psf` (cached per process by file, HDU, K and file
    modification time, so a batch fits a PSF image once per worker). The warnings of the read
    are given again at every call, so that every row fitted with the PSF records them. The
    file is known by its device and inode, which one ``stat`` gives (every spelling of a
    path, links included, is the same file; resolving the path cost ~6 system calls per task).
    """
    p = Path(path)
    position = None if position is None else tuple(float(v) for v in position)
    st = os.stat(p)
    key = (st.st_dev, st.st_ino, hdu, n_components, position, centre, st.st_mtime_ns,
           st.st_size)
    if key not in _PSF_CACHE:
        with _warnings.catch(record=True) as said:
            warnings.simplefilter("always")
            model = read_psf(p, hdu=hdu, n_components=n_components, position=position,
                             centre=centre)
        desc = f"{p.name} ({model.source}, K={model.n_components})"
        if len(_PSF_CACHE) > 16:
            _PSF_CACHE.clear()
        _PSF_CACHE[key] = (model, desc, tuple((w.category, str(w.message)) for w in said))
    model, desc, said = _PSF_CACHE[key]
    # the PSF's warnings (NaN pixels masked, which HDU was taken, ...) at every call, the
    # cached ones too: each task that uses the PSF records them in its row's warnings
    for category, message in said:
        warnings.warn(message, category, stacklevel=2)
    return model, desc


# ---------------------------------------------------------------------------------------------
# one task
# ---------------------------------------------------------------------------------------------

def output_stem(task):
    """File-name stem of a task's outputs: ``task.output_name`` when set, else the image name
    without extension, plus the band or HDU when given (``cutout_r``, ``cutout_hdu3``)."""
    if task.output_name:
        return task.output_name
    return _simple_stem(task)


def _simple_stem(task):
    name = Path(task.image).name
    for ext in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts", ".npy"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if task.band is not None:
        name += f"_{task.band}"
    elif task.hdu is not None:
        name += f"_hdu{task.hdu}"
    if task.plane is not None:
        name += f"_plane{task.plane}"
    return name


def _short(exc):
    """An exception in one line: mogviewer's own in its words (the message says what and why;
    'ImageReadError:' before it told a user nothing), any other with its class (a bug's
    ``ZeroDivisionError: ...`` must stay recognisable)."""
    from ..errors import MogviewerError
    text = " ".join(str(exc).split())
    if text and isinstance(exc, MogviewerError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_task(task):
    """Fit one cutout and return its CSV row (a dict with every column), or with
    ``neighbours='fit'`` and neighbours to model a list of rows (one per source, the target
    first; :mod:`mogviewer.batch.scene_task`); never raises.

    Steps: read the start model (if any), read the image with its noise and mask, read the
    PSF, build the :class:`mogviewer.fitting.FitProblem`, fit, write the requested outputs. Any
    exception in a step becomes a row with ``status='failed'`` and ``reason`` naming the step
    and the problem; an output that cannot be written keeps the fit's values and says so in
    ``reason``. Warnings raised on the way are recorded in the ``warnings`` column (they are
    not errors). ``KeyboardInterrupt`` and ``SystemExit`` propagate.
    """
    caught = []
    step = ["start"]
    base = dict(file=str(task.image), hdu=task.hdu if isinstance(task.hdu, int) else None,
                band=task.band, profile=task.profile, M=task.M, n=task.n,
                sky_model=task.sky, psf_source=task.psf or "none")
    try:
        with _warnings.catch(record=True) as caught:
            warnings.simplefilter("always")
            return _run_task(task, base, caught, step)
    except Exception as exc:  # noqa: BLE001 - the batch policy: every failure is a row
        hidden = _interrupt_inside(exc)
        if hidden is not None:      # Ctrl-C or SIGTERM, disguised: not a row, the end
            raise hidden from None
        return export.failed_row(f"{step[0]}: {_short(exc)}",
                                 warnings_text=_warnings_text(caught), **base)


def _interrupt_inside(exc):
    """The ``KeyboardInterrupt`` (or other non-``Exception``) among ``exc``'s causes, or None.

    A signal handler that raises while compiled code calls back into Python (numba boxing a
    returned array calls ``_numba_unpickle``) comes out as ``SystemError: CPUDispatcher(...)
    returned a result with an exception set``, with the interrupt as its cause: a batch took
    a SIGTERM for a failed row and went on to the end."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if not isinstance(exc, Exception):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _chi2(result):
    v = getattr(result, "chi2", None)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("inf")
    return v if v == v else float("inf")


def _far_from(start, moments):
    """Why a start model is far from the image's moments, or '' (flux off by more than 10x,
    r_e by more than 5x, or the centre further than 3 moment radii and 5 px)."""
    import math

    why = []
    if moments.flux > 0 and start.flux > 0:
        ratio = start.flux / moments.flux
        if not 0.1 <= ratio <= 10:
            why.append(f"flux {start.flux:.4g} vs {moments.flux:.4g} from the image")
    elif moments.flux > 0:
        why.append(f"flux {start.flux:.4g}")
    if moments.re > 0 and start.re > 0 and not 0.2 <= start.re / moments.re <= 5:
        why.append(f"r_e {start.re:.4g} px vs {moments.re:.4g} px")
    dist = math.hypot(start.x - moments.x, start.y - moments.y)
    if dist > max(5.0, 3 * moments.re):
        why.append(f"centre {dist:.1f} px away")
    return ", ".join(why)


def _warnings_text(caught):
    seen = []
    for w in caught or ():
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())}"
        if text not in seen:
            seen.append(text)
    return " | ".join(seen)


def _run_task(task, base, caught, step):

    def set_step(text):
        step[0] = text

    saved = None
    if task.start:
        set_step("reading the start model")
        saved = export.read_model_json(task.start)
    profile = task.profile or (saved.profile if saved else "exp")
    M = task.M or (saved.M if saved and saved.profile == profile else None)
    n = task.n if task.n is not None else (saved.n if saved and profile == "ser" else None)
    sky = task.sky or (saved.sky if saved else "constant")
    base.update(profile=profile, M=M, n=n, sky_model=sky)
    if task.bands:
        from .band_task import run_bands

        base.update(band="|".join(task.bands))
        return run_bands(task, base, caught, set_step, saved=saved, profile=profile, M=M, n=n,
                         sky=sky, warnings_text=_warnings_text(caught))

    set_step("reading the image")
    data = read_image(task.image, hdu=task.hdu, band=task.band, plane=task.plane,
                      noise=task.noise, noise_kind=task.noise_kind, noise_hdu=task.noise_hdu,
                      mask=task.mask, mask_hdu=task.mask_hdu, invert_mask=task.invert_mask,
                      segmap=task.segmap, segment_id=task.segment_id, zeropoint=task.zeropoint,
                      gain=task.gain, read_noise=task.read_noise, sky_level=task.sky_level,
                      pixel_scale=task.pixel_scale)
    base.update(hdu=data.hdu, band=data.band)

    set_step("reading the PSF")
    if task.psf:
        psf, psf_source = load_psf(task.psf, hdu=task.psf_hdu, n_components=task.psf_components,
                                   position=task.psf_position, centre=task.psf_centre)
    elif saved is not None and saved.psf is not None:
        what = "stamp used exactly" if saved.psf_mode == "exact" else "mixture"
        psf, psf_source = saved.psf, f"{Path(task.start).name} ({what}, K={len(saved.psf)})"
    else:
        psf, psf_source = None, "none"
    base["psf_source"] = psf_source

    info = dict(neighbours=task.neighbours, n_sources=1)
    if task.neighbours != "ignore":
        set_step("detecting the neighbours")
        scene, data, info, det_notes = find_neighbours(task, data, psf, profile=profile, M=M,
                                                       n=n)
        for note in det_notes:
            warnings.warn(note, MogviewerWarning, stacklevel=1)
        if task.neighbours == "fit":
            # a scene fit even with no neighbour detected: its blend search finds a neighbour
            # that detection could not separate from the target (no saddle between them)
            return _run_scene(task, base, caught, set_step, data, psf, psf_source, scene, info,
                              saved=saved, profile=profile, M=M, n=n, sky=sky)
        info["n_sources"] = 1

    set_step("setting up the fit")
    problem = FitProblem.from_image_data(data, psf=psf, profile=profile, M=M, n=n, sky=sky,
                                         profile2=task.profile2, M2=task.M2,
                                         psf_mode=task.psf_mode,
                                         fixed=("n",) if task.fix_n and profile == "ser" else ())
    base.update(M=problem.M, n=problem.n)
    start = None
    if saved is not None:
        d = saved.params.as_dict()
        if sky == "none":
            d.update(sky=0.0, sky_dx=0.0, sky_dy=0.0)
        elif sky == "constant":
            d.update(sky_dx=0.0, sky_dy=0.0)
        start = saved.params.replace(**d)

    if start is None and task.centre is not None:
        set_step("finding the target at --centre")
        start = initial_guess(problem, centre=task.centre)

    set_step("fitting")
    result = fit(problem, start, max_nfev=task.max_nfev)
    problems = []
    if saved is not None:
        set_step("checking the start model against the data")
        moments = initial_guess(problem, centre=task.centre)
        far = _far_from(start, moments)
        if far:
            # a start far from the data can end "converged" in a wrong minimum (issue 15: flux 1
            # against 2252 ended at flux 32.7, q 0.006): fit again from the image moments and
            # keep the better chi-squared, saying so in the row
            alt = fit(problem, moments, max_nfev=task.max_nfev)
            better = _chi2(alt) < _chi2(result)
            problems.append(f"start model far from the data ({far}); refitted from the image "
                            f"moments: chi2 {_chi2(alt):.6g} vs {_chi2(result):.6g} from the "
                            f"start model; kept the {'moments' if better else 'start model'} "
                            "fit")
            if better:
                result = alt

    set_step("writing outputs")
    if result.status == "failed":
        problems.append(f"fit failed: {result.message}")
    stem = output_stem(task)
    outputs = [(task.imgblock_dir, "_imgblock.fits", "image block",
                lambda p: export.write_imgblock(p, problem, result, data, psf_source=psf_source,
                                                scale_errors=task.scale_errors)),
               (task.region_dir, ".reg", "region",
                lambda p: export.write_region(p, result, data.wcs)),
               (task.model_json_dir, "_model.json", "model JSON",
                lambda p: export.write_model_json(p, result, problem=problem, source=task.image,
                                                  scale_errors=task.scale_errors))]
    problems += _write_outputs(task, stem, outputs)
    posterior = None
    if task.sample_steps and result.status == "converged":
        set_step("sampling the posterior")
        adaptive = task.sample_steps == "auto"
        posterior = sample(problem, result,
                           n_steps=None if adaptive else int(task.sample_steps),
                           priors=priors_from_model(saved) if saved is not None else None,
                           zeropoint=data.zeropoint)
        if not posterior.converged:
            problems.append(f"posterior chains shorter than {CONVERGENCE_TAUS} autocorrelation "
                            f"times (longest tau {max(posterior.tau.values()):.0f} steps"
                            + (f" after {posterior.n_steps} steps, the limit)" if adaptive else
                               "): raise --sample"))
    row = export.result_to_row(result, data, problem=problem, psf_source=psf_source,
                               file=str(task.image), scale_errors=task.scale_errors,
                               reason="; ".join(problems), warnings_text=_warnings_text(caught),
                               posterior=posterior)
    row.update(info, source_id=0, is_target=True, kind="galaxy")
    return row


def _write_outputs(task, stem, outputs):
    """Write the per-file outputs ``[(directory, suffix, what, writer), ...]`` of a task (each
    checked against the output-path policy); returns what could not be written, for the row."""
    problems = []
    for directory, suffix, what, writer in outputs:
        if not directory:
            continue
        try:
            target = Path(directory) / f"{stem}{suffix}"
            check_output_path(target, what, inputs=task.input_files())
            writer(target)
        except Exception as exc:  # noqa: BLE001 - an output problem is reported in the row
            problems.append(f"{what} not written: {_short(exc)}")
    return problems


def _run_scene(task, base, caught, set_step, data, psf, psf_source, scene, info, *, saved,
               profile, M, n, sky):
    """``--neighbours fit`` with neighbours to model: a joint scene fit, one row per source."""
    from ..fitting.scene_fit import fit_scene
    from ..observation import Observation
    from ..scene import Galaxy

    t = scene.sources[0]
    if saved is not None:
        p = saved.params
        t = dataclasses.replace(t, flux=p.flux, x=p.x, y=p.y, re=p.re, q=p.q, angle=p.angle,
                                n=p.n if t.profile == "ser" else None)
    if task.profile2 is not None:
        # bulge + disk: the second component starts with half the flux and 1.5x the radius
        t = Galaxy(profile=t.profile, M=t.M, flux=t.flux / 2, x=t.x, y=t.y, re=t.re, q=t.q,
                   angle=t.angle, n=t.n, profile2=task.profile2, M2=task.M2, flux2=t.flux / 2,
                   re2=1.5 * t.re, q2=t.q, angle2=t.angle)
    scene = scene.replace_source(0, t)
    psf_info, approx = psf_columns(psf, task.psf_mode)
    obs = Observation.from_image_data(data, psf=psf, psf_mode=task.psf_mode)
    mix = obs.psf_mixture
    set_step("fitting the scene")
    # the blend search splits off a neighbour that detection left inside the target's segment
    # (no saddle between them); target_at keeps the target the source at --centre
    fit = fit_scene(obs, scene, sky=sky, max_nfev=task.max_nfev,
                    residual_pass=task.residual_pass, split_blends=True,
                    target_at=task.centre)
    info = dict(info, n_sources=len(fit.scene))
    problems = []
    notes = " | ".join([_warnings_text(caught)] * bool(_warnings_text(caught))
                       + list(getattr(fit, "messages", ())))
    if fit.status != "converged":
        problems.append(f"scene fit {fit.status}")
    rows = scene_rows(fit, data, info=info, psf_source=psf_source, file=str(task.image),
                      scale_errors=task.scale_errors, warnings_text=notes,
                      psf_info=psf_info, targets_only=task.targets_only)
    for row in rows:
        if approx:
            add_flags(row, FitFlags.PSF_APPROX)
        if fit.nu > 0 and fit.chi2 / fit.nu > chi2nu_threshold(fit.nu):
            add_flags(row, FitFlags.ERRORS_UNDERESTIMATED)
    flagged = scene_flags_summary(scene_rows(fit, data, info=info, psf_source=psf_source,
                                             file=str(task.image), psf_info=psf_info))
    if flagged:
        problems.append(flagged)

    set_step("writing outputs")
    target = source_result_of(fit, rows)
    stem = output_stem(task)
    problem = None
    if task.imgblock_dir:
        problem = FitProblem.from_image_data(data, psf=mix, profile=profile, M=M, n=n, sky=sky,
                                             psf_mode="mixture")
    others = [s for i, s in enumerate(fit.scene.sources) if i != fit.scene.target]
    outputs = [(task.imgblock_dir, "_imgblock.fits", "image block",
                lambda p: export.write_imgblock(p, problem, target, data, psf_source=psf_source,
                                                scale_errors=task.scale_errors,
                                                model=fit.scene.render(obs))),
               (task.region_dir, ".reg", "region",
                lambda p: export.write_region(p, target, data.wcs, others=others)),
               (task.model_json_dir, "_model.json", "model JSON",
                lambda p: export.write_model_json(p, target, source=task.image,
                                                  scale_errors=task.scale_errors))]
    problems += _write_outputs(task, stem, outputs)
    for row in rows:
        row["reason"] = "; ".join(problems)
    return rows


def source_result_of(fit, rows):
    """The target's :class:`~mogviewer.fitting.FitResult` of a scene fit."""
    from .scene_task import source_result

    i = fit.scene.target
    s = fit.scene.sources[i]
    mix = s.mixture()
    return source_result(fit, i, profile=s.profile, M=len(mix.amps),
                         flux_fraction=mix.flux_fraction,
                         n_sky_free=sum(1 for j, _ in fit.names if j == -1))
