"""The one place where the GUI meets the Qt-free engine.

Every call the GUI makes into :mod:`mogviewer.io`, :mod:`mogviewer.psf`,
:mod:`mogviewer.fitting`, :mod:`mogviewer.profiles`, :mod:`mogviewer.render` and
:mod:`mogviewer.export` goes through a function here, so that an API change in the engine is a
one-line fix in this file. Nothing here imports Qt.

The GUI adds no numerics of its own: models, fits, PSF mixtures, moments and exports all come from
the engine; this module only forwards, caches and names things.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np
from astropy.utils.exceptions import AstropyWarning

from .. import export as mexport
from .. import fitting, profiles, render, sample
from .. import io as mio
from .. import psf as mpsf
from ..errors import MogviewerError, MogviewerWarning
from ..export import files as mfiles
from ..fitting.start import nothing_to_fit  # noqa: F401 - the app's check before a fit
from ..profiles import sersic as SERSIC
from . import psf_cache

# ------------------------------------------------------------------------------- errors
ImageReadError = mio.ImageReadError
ExportError = mexport.ExportError
FitError = fitting.FitError
GalaxyParams = fitting.GalaxyParams
FitResult = fitting.FitResult
FitProgress = fitting.FitProgress
FitFlags = fitting.FitFlags
PARAM_UNITS = fitting.PARAM_UNITS
SERSIC_N_START = fitting.problem.N_START


def is_user_error(exc):
    """True for the errors mogviewer raises on purpose (:class:`MogviewerError`): their message
    is written for people and is shown as it is, without a traceback."""
    return isinstance(exc, MogviewerError)


def message_about(exc, name):
    """The message of ``exc`` about file ``name``, prefixed with the name unless the message
    already says it."""
    text = str(exc)
    return text if name and name in text else f"{name}:\n\n{text}"


def psf_error_types():
    """Exceptions that mean 'this file is not a usable PSF' (shown to the user, never raised)."""
    return (OSError, ValueError, mpsf.PsfError)


def install_warning_filters():
    """Silence mogviewer's own warnings (PsfWarning, ...) process-wide, once, at app start.

    Each of them (and astropy's warnings about odd headers) is also recorded in the notes of
    what the reader returns (``PsfModel.notes``, ``ImageData.notes``), which the app shows in
    the log; the PSF is read in a worker thread, where ``warnings.catch_warnings``
    (process-wide, not thread-safe) must not be used to collect them.
    ``filterwarnings`` moves an existing identical filter to the front, so calling this again
    changes nothing.
    """
    warnings.filterwarnings("ignore", category=MogviewerWarning)
    warnings.filterwarnings("ignore", category=AstropyWarning)


#: Exceptions that mean 'this file cannot be read' for any reader (a dialog, never a crash).
READ_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError,
               UnicodeDecodeError, json.JSONDecodeError)


# ------------------------------------------------------------------------------- sample
SAMPLE_NAME = "ic3478"
SAMPLE_OPTIONS = dict(gain=4.725, read_noise=4.3, sky_level=130.14)
SAMPLE_DESCRIPTION = ("IC 3478, SDSS r, 256x256 px, sky-subtracted; imfit noise model "
                      "gain = 4.725 e-/DN, read noise = 4.3 e-, sky = 130.14 DN")


def sample_dir():
    """The bundled ``sample_data/ic3478`` directory, or None (see :mod:`mogviewer.sample`)."""
    return sample.sample_dir(SAMPLE_NAME)


def sample_files():
    """``(image, mask, psf)`` paths of the bundled sample, or None."""
    d = sample_dir()
    if d is None:
        return None
    return (d / "ic3478rss_256.fits", d / "ic3478rss_256_mask.fits", d / "psf_moffat_51.fits")


# ------------------------------------------------------------------------------- images
def read_image(path, **options):
    """:func:`mogviewer.io.read_image` (raises :class:`ImageReadError` or OSError); astropy's
    header warnings are recorded in the result's notes by the reader."""
    return mio.read_image(str(path) if isinstance(path, Path) else path, **options)


def image_hdu_rows(path):
    """The :func:`mogviewer.io.list_hdus` rows of the 2-D (or larger) image HDUs of a FITS
    file; [] for a ``.npy`` file, an array, or a file that cannot be listed."""
    if path is None or not isinstance(path, (str, Path)):
        return []
    try:
        rows = mio.list_hdus(path)
    except READ_ERRORS + (mio.ImageReadError,):
        return []
    return [r for r in rows if r["kind"] == "image" and r["shape"] and len(r["shape"]) >= 2]


def image_hdus(path):
    """``[(index, label)]`` of the image HDUs of a FITS file a user can choose between (with
    their ``BAND``), or ``[]`` for a ``.npy`` file, an array or a file with one image HDU."""
    out = []
    for r in image_hdu_rows(path):
        label = f"HDU {r['index']}"
        if r["name"] and r["name"] != "PRIMARY":
            label += f" {r['name']}"
        if r["band"]:
            label += f" \u00b7 band {r['band']}"
        out.append((int(r["index"]), label))
    return out if len(out) > 1 else []


def psf_hdu_for_band(path, band):
    """Index of the HDU of a multi-band PSF file whose ``BAND`` is ``band``, else None."""
    if not band:
        return None
    try:
        rows = mio.list_hdus(path)
    except READ_ERRORS + (mio.ImageReadError,):
        return None
    hits = [r["index"] for r in rows if (r["band"] or "").lower() == str(band).lower()]
    bands = {r["band"] for r in rows if r["band"]}
    return hits[0] if hits and len(bands) > 1 else None


def psfex_needs_position(path):
    """``(POLNAME1, POLNAME2)`` when ``path`` is a PSFEx file whose PSF varies with position (a
    position must be given), else None."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if fh.read(6) != b"SIMPLE":
                return None
        from astropy.io import fits
        with fits.open(p, memmap=False) as hdul:
            for h in hdul:
                cols = getattr(getattr(h, "columns", None), "names", None) or []
                if "PSF_MASK" in [c.upper() for c in cols]:
                    hdr = h.header
                    if int(hdr.get("POLNAXIS", 2)) > 0 and int(hdr.get("POLDEG1", 0)) > 0:
                        return (str(hdr.get("POLNAME1", "X_IMAGE")).strip(),
                                str(hdr.get("POLNAME2", "Y_IMAGE")).strip())
                    return None
    except Exception:  # noqa: BLE001 - not a readable FITS file: read_psf says why
        return None
    return None


def pixel_to_world(data, x, y):
    """``(ra_deg, dec_deg)`` of 0-based pixel ``(x, y)``, or None without a WCS."""
    wcs = getattr(data, "wcs", None)
    if wcs is None:
        return None
    try:
        ra, dec = wcs.all_pix2world([[float(x), float(y)]], 0)[0]
    except Exception:  # noqa: BLE001 - a broken WCS only loses the readout
        return None
    if not (np.isfinite(ra) and np.isfinite(dec)):
        return None
    return float(ra), float(dec)


def sexagesimal(ra_deg, dec_deg):
    """``('hh:mm:ss.ss', '+dd:mm:ss.s')`` of an RA and Dec in degrees (DS9's sexagesimal)."""
    from astropy.coordinates import Angle
    ra = Angle(ra_deg, unit="deg").wrap_at("360d").to_string(unit="hourangle", sep=":",
                                                              precision=2, pad=True)
    dec = Angle(dec_deg, unit="deg").to_string(unit="deg", sep=":", precision=1, pad=True,
                                               alwayssign=True)
    return ra, dec


# ------------------------------------------------------------------------------- PSF
_psf_cache = {}
_psf_lock = threading.Lock()


def read_psf(path, *, n_components=None, hdu=None, position=None):
    """:func:`mogviewer.psf.read_psf`, memoised on (path, mtime, size, K, HDU, position) for
    the process and on the file's content across sessions (:mod:`mogviewer.gui.psf_cache`).

    Fitting a mixture to a PSF stamp takes seconds; the same file is often opened again (the
    sample at every start, the PSF dialog's K choice), so results are kept for the process.
    Runs in a worker thread: it touches no warnings state (what the reader warns about is also
    in ``PsfModel.notes``; see :func:`install_warning_filters`). Returns a ``PsfModel``
    (``.mixture``, ``.stamp``, ``.quality``, ``.notes``, ``.trials``).
    """
    p = Path(path)
    st = p.stat()
    pos = None if position is None else (float(position[0]), float(position[1]))
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size, hdu, pos, n_components)
    with _psf_lock:
        hit = _psf_cache.get(key)
    if hit is not None:
        return hit
    # then the models fitted in earlier sessions (keyed by the file's bytes; psf_cache)
    disk_key = psf_cache.key(p, ("read_psf", hdu, pos, n_components))
    model = psf_cache.load(disk_key)
    if model is None:
        model = mpsf.read_psf(p, n_components=n_components, hdu=hdu, position=pos)
        psf_cache.store(disk_key, model)
    with _psf_lock:
        _psf_cache[key] = model
        if n_components is None:   # the automatic choice is also the answer for its own K
            _psf_cache[key[:-1] + (model.n_components,)] = model
    return model


def psf_mixture(model):
    """The pixel-convolved, unit-total PSF mixture of a ``PsfModel`` (or None)."""
    return None if model is None else model.mixture


def psf_quality_rows(model):
    """``[(label, value text)]`` of a PSF's quality figures, for the PSF dialog."""
    q = getattr(model, "quality", None)
    rows = [("components K", str(model.n_components)), ("source", str(model.source))]
    if q is None:
        return rows
    rows += [
        ("max |residual| / peak", f"{100 * q.max_abs_residual_over_peak:.3g} %"),
        ("|residual| flux fraction", f"{100 * q.residual_flux_fraction:.3g} %"),
        ("second-moment FWHM, stamp / mixture (px)",
         f"{q.fwhm_stamp:.3f} / {q.fwhm_model:.3f}"),
        ("second-moment FWHM ratio (mixture/stamp)", f"{q.fwhm_ratio:.4f}"),
    ]
    core = getattr(q, "core_fwhm_ratio", float("nan"))
    if np.isfinite(core):
        rows.append(("core FWHM ratio (Gaussian-weighted moments)", f"{core:.4f}"))
    trials = getattr(model, "trials", None) or {}
    if trials:
        rows.append(("K tried (max|res|/peak)",
                     ", ".join(f"K={k}: {100 * v:.2f} %" for k, v in sorted(trials.items()))))
    return rows


def psf_images(model):
    """``(stamp, model, residual)`` arrays for display; None entries for a mixture file."""
    stamp = getattr(model, "stamp", None)
    if stamp is None:
        # a mixture without a stamp: show the mixture itself on a grid that holds it
        mix = model.mixture
        sig = float(np.sqrt(np.max(np.linalg.eigvalsh(mix.covs)))) if len(mix) else 1.0
        half = int(np.clip(np.ceil(5 * sig), 7, 50))
        img = render.render(mix.shifted(half, half), (2 * half + 1, 2 * half + 1))
        return None, img, None
    mod = model.model_image()
    res = None if mod is None else np.asarray(stamp) - mod
    return np.asarray(stamp), mod, res


MAX_PSF_COMPONENTS = mpsf.MAX_COMPONENTS


# ------------------------------------------------------------------------------- profiles
PROFILES = ("exp", "dev", "lux", "luv", "ser")
PROFILE_LABELS = {"exp": "exp (exponential)", "dev": "dev (de Vaucouleurs)",
                  "lux": "lux (truncated exp)", "luv": "luv (truncated dev)",
                  "ser": "ser (S\u00e9rsic, any n)"}
DEFAULT_M = {"exp": 6, "dev": 8, "lux": 6, "luv": 8, "ser": SERSIC.M_FAMILY}
N_RANGE = (SERSIC.N_MIN, SERSIC.N_MAX)


def available_M(profile):
    if profile == "ser":
        return [SERSIC.M_FAMILY]
    return list(profiles.available(profile))


def profile_object(profile, M, n=None):
    """The ProfileMixture to render: the table, or the Sérsic family at ``n``."""
    if profile == "ser":
        return SERSIC.sersic_profile_mixture(min(max(float(n or 1.0), N_RANGE[0]), N_RANGE[1]))
    return profiles.get_mixture(profile, M)


def profile_quality(profile, M, n=None):
    """``(badness, flux_fraction)`` of the chosen mixture (for 'ser': at index ``n``)."""
    m = profile_object(profile, M, n)
    return float(m.badness), float(m.flux_fraction)


# ------------------------------------------------------------------------------- fitting
def make_problem(data, *, psf, profile, M, free, sky, n=None, psf_mode="exact", image=None,
                 extra_mask=None):
    """A :class:`mogviewer.fitting.FitProblem` for the current session state.

    ``psf`` is a ``PsfModel`` (or a Mixture, or None); ``psf_mode`` 'exact' uses a PSF image
    exactly (the library's ``psf_mode='auto'``, the command line's default: a mixture file
    stays a mixture), 'mixture' its Gaussian mixture only. ``image`` replaces the data's
    pixels (the data minus the other sources); ``extra_mask`` is added to its mask."""
    sky_model = "constant" if sky else "none"
    allowed = ({"flux", "x", "y", "re", "q", "angle"} | ({"sky"} if sky else set())
               | ({"n"} if profile == "ser" else set()))
    if profile == "ser":
        n = min(max(float(n or 1.0), N_RANGE[0]), N_RANGE[1])
    mask = data.mask if extra_mask is None else (data.mask | extra_mask)
    return fitting.FitProblem.from_arrays(
        data.image if image is None else image, ivar=data.ivar, mask=mask,
        psf=psf, profile=profile, M=int(M), sky=sky_model, n=n,
        psf_mode="auto" if psf_mode == "exact" else "mixture",
        free=tuple(p for p in free if p in allowed))


def psf_info_text(info):
    """One line of the PSF figures of a problem (``FitProblem.psf_info``) for people:
    mode, K, size ratio and residuals of the mixture against the stamp."""
    if not info:
        return ""
    mode = info.get("psf_mode")
    if mode == "pixel":
        return "no PSF: the model is integrated over each pixel"
    parts = [{"exact": "exact (stamp)", "mixture": "mixture only"}.get(mode, str(mode)),
             f"K = {info.get('psf_k')}"]
    ratio, rflux, rpeak = (info.get(k) for k in ("psf_size_ratio", "psf_res_flux",
                                                 "psf_res_peak"))
    if ratio is not None:
        parts.append(f"size ratio {ratio:.4f}")
    elif rflux is not None:
        parts.append("size ratio n/a (negative wings)")
    if rflux is not None:
        parts.append(f"residual flux {100 * rflux:.2g} %")
    if rpeak is not None:
        parts.append(f"residual peak {100 * rpeak:.2g} %")
    return " \u00b7 ".join(parts)


def psf_mixture_poor(info):
    """True when a mixture-only model would set ``PSF_APPROX`` (size or total off by more
    than the library's tolerance, or no size at all)."""
    from ..fitting.problem import PSF_APPROX_TOL
    rflux = info.get("psf_res_flux")
    if rflux is None:
        return False
    ratio = info.get("psf_size_ratio")
    return ratio is None or abs(ratio - 1.0) > PSF_APPROX_TOL or abs(rflux) > PSF_APPROX_TOL


def psf_has_stamp(model):
    """True when the PSF came from an image (so it can be used exactly)."""
    return model is not None and getattr(model, "stamp", None) is not None


def initial_guess(problem, *, centre=None):
    return fitting.initial_guess(problem, centre=centre)



def run_fit(problem, start, *, callback, should_stop):
    return fitting.fit(problem, start, callback=callback, should_stop=should_stop)


#: Steps per walker of the app's posterior sampling unless the user chooses (the command
#: line's ``--sample STEPS`` bounds: 100 to 100000).
SAMPLE_STEPS = (1000, 100, 100000)


def run_sample(problem, result, *, n_steps, zeropoint=None, progress=None, should_stop=None):
    """:func:`mogviewer.sampling.sample` (emcee, started at the fit), as ``mogviewer fit
    --sample STEPS`` runs it; returns a ``Posterior``."""
    from .. import sampling
    return sampling.sample(problem, result, n_steps=int(n_steps), zeropoint=zeropoint,
                           progress=progress, should_stop=should_stop)


def converged_after():
    """A chain counts as converged when longer than this many autocorrelation times."""
    from .. import sampling
    return sampling.CONVERGENCE_TAUS


def posterior_rows(post):
    """``[(name, p16, p50, p84)]`` of every sampled and derived quantity (angles in
    [0, 180) as the CSV reports them)."""
    rows = []
    for name, (lo, mid, hi) in post.percentiles.items():
        if name == "angle":
            lo, mid, hi = (v % 180.0 for v in (lo, mid, hi))
        rows.append((name, lo, mid, hi))
    return rows


def corner_rgba(post, *, truths=None, dpi=72, inches=7.5):
    """The corner plot of a posterior (:func:`corner_figure`) as an ``(h, w, 4)`` uint8 RGBA
    array."""
    fig = corner_figure(post, truths=truths, dpi=dpi, inches=inches)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba(), dtype=np.uint8).copy()


def corner_figure(post, *, truths=None, dpi=72, inches=7.5):
    """The corner plot of a posterior (the ``corner`` package, Foreman-Mackey 2016), a
    matplotlib figure on the Agg canvas (no pyplot, no GUI: safe in a worker thread).
    ``truths``: values marked on every panel (the best fit); the 16/50/84 % quantiles are
    dashed lines, as in the CSV's ``_p16/_p50/_p84``."""
    import corner
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(post.names)
    k = len(names)
    fig = Figure(figsize=(inches, inches), dpi=dpi)   # 540 px: whole in the dialog at 1280x720
    FigureCanvasAgg(fig)
    fig.subplots(k, k)
    samples = np.array(post.samples, float)
    if "angle" in names:          # sampled unwrapped about the best fit
        i = names.index("angle")
        best = truths[i] if truths is not None else float(np.median(samples[:, i]))
        samples[:, i] = best + ((samples[:, i] - best + 90.0) % 180.0 - 90.0)
    labels = [PARAM_LABELS.get(n, n) for n in names]
    # no titles over the diagonal: seven "flux = 5.218e+05 +940 -930" in 77 px columns ran
    # into each other (new-user review); the dialog's table beside the plot holds the values
    corner.corner(samples, fig=fig, labels=labels, truths=truths, truth_color="#2a8a2a",
                  quantiles=(0.16, 0.5, 0.84), show_titles=False,
                  label_kwargs={"fontsize": 8}, max_n_ticks=2, labelpad=0.3)
    # the axis labels clear of the 45-degree tick labels (they ran into each other: new-user
    # trial), with the margins to hold them
    fig.subplots_adjust(left=0.13, bottom=0.13, right=0.98, top=0.98)
    for ax in fig.axes:
        ax.tick_params(labelsize=6)
        for axis in (ax.xaxis, ax.yaxis):    # "+1.278e2" offsets overlapped the next panel
            fmt = axis.get_major_formatter()
            if hasattr(fmt, "set_useOffset"):
                fmt.set_useOffset(False)
    return fig


PARAM_LABELS = {"flux": "flux", "x": "x [px]", "y": "y [px]", "re": "r_e [px]", "q": "q",
                "angle": "angle [deg]", "n": "n", "sky": "sky"}


def model_image(problem, params):
    """Model image (galaxy + sky as the problem's sky model says)."""
    img = fitting.model_image(problem, params)
    return np.asarray(img, dtype=float)


def galaxy_components(params, profile, M):
    """The galaxy's Gaussians (no PSF) as ``(means (K, 2), covs (K, 2, 2))``."""
    mix = render.galaxy_mixture(params.as_dict(), profile_object(profile, M, params.n), M, None)
    return np.asarray(mix.means), np.asarray(mix.covs)


def warmup():
    """Compile the renderer's kernels in the background (returns at once): on the first start
    after an install, in two processes where there are two CPUs (about 45 s instead of 85;
    :func:`stop_compiling` ends them if the app quits first)."""
    return render.warmup(background=True, jobs=render.warm.default_jobs())


def stop_compiling():
    """End the compiling processes of :func:`warmup`, if any (the app is quitting)."""
    render.warm.cancel_compiling()


# ------------------------------------------------------------------------------- export
def export_error_types():
    return (OSError, ValueError, TypeError, mexport.ExportError, mexport.ModelFileError)


def check_output_path(path, what, *, inputs=()):
    """The output-path policy (:func:`mogviewer.export.files.check_output_path`): raises
    ``ExportError`` when ``path`` is one of ``inputs``, not a regular file, or in a missing
    directory."""
    return mfiles.check_output_path(path, what, inputs=inputs)


def atomic_output(path, what, *, inputs=()):
    """Context manager yielding a temporary path renamed over ``path`` when complete
    (:func:`mogviewer.export.files.atomic_output`: never over an input, nothing half written)."""
    return mfiles.atomic_output(path, what, inputs=inputs)


def psf_source(model, path):
    if model is None:
        return "none"
    return f"{path} ({model.source}, K={model.n_components})"


def result_row(result, *, data=None, problem=None, psf_text="none", posterior=None,
               object_id=None):
    """One CSV row (dict) for ``result``: :func:`mogviewer.export.result_to_row`; with a
    ``posterior`` the same percentile and diagnostic columns as ``mogviewer fit --sample``.
    With ``object_id`` (:func:`object_id`) the identity columns as the command line fills them
    for a file's target: ``object_id``, ``source_id`` 0, ``is_target``, ``kind``."""
    row = mexport.result_to_row(result, data, problem=problem, psf_source=psf_text,
                                posterior=posterior)
    if object_id is not None:
        row.update(object_id=object_id, source_id=0, is_target=True, kind="galaxy")
    return row


def object_id(path, options):
    """A file's row id as ``mogviewer fit`` gives it: the file, plus the HDU, band or plane
    chosen (:func:`mogviewer.batch.runner.object_id_of`)."""
    from ..batch.runner import object_id_of

    return object_id_of(path, hdu=options.get("hdu"), band=options.get("band"),
                        plane=options.get("plane"))


def write_csv(path, rows, *, append=False, inputs=(), columns=None):
    """CSV rows (atomic, or a locked append); refused over any of ``inputs``. ``columns``:
    the header (default the one-band columns; a joint fit's from :func:`joint_rows`)."""
    kw = {} if columns is None else {"columns": tuple(columns)}
    return mexport.write_csv(path, rows, append=append, inputs=inputs, **kw)


def write_imgblock(path, *, problem, result, data=None, psf_text="none", inputs=()):
    """GALFIT-style image block; refused over any of ``inputs`` (checked first, as the
    command line does)."""
    path = check_output_path(path, "image block", inputs=inputs)
    return mexport.write_imgblock(path, problem, result, data, psf_source=psf_text)


def write_region(path, *, params, profile, M, result=None, data=None, inputs=(),
                 neighbours=()):
    """DS9 region of the scene (:func:`mogviewer.export.write_region`): the target's
    half-light ellipse (the fit's if ``result`` is given) in green, labelled ``target``, and
    every other source in yellow (a galaxy as its ellipse, a point source as a point);
    refused over any of ``inputs``."""
    from types import SimpleNamespace
    path = check_output_path(path, "region", inputs=inputs)
    res = result if result is not None else SimpleNamespace(params=params, profile=profile, M=M)
    wcs = getattr(data, "wcs", None) if data is not None else None
    return mexport.write_region(path, res, wcs, text=f"target {profile}{M}",
                                others=tuple(neighbours))


#: The key of a model JSON file that holds every source of the scene (the app's addition to
#: :func:`mogviewer.export.write_model_json`; the reader keeps unknown keys in ``meta``).
SCENE_KEY = "scene_sources"


def _source_doc(src, *, is_target=False):
    """One source of the scene as JSON: 0-based pixel centre, ``angle`` CCW from +x in
    degrees, ``re`` the semi-major half-light radius in pixels, flux in image units."""
    if getattr(src, "kind", "") == "point":
        doc = {"kind": "point", "flux": float(src.flux), "x": float(src.x), "y": float(src.y)}
    else:
        doc = {"kind": "galaxy", "profile": src.profile,
               "M": None if src.M is None else int(src.M), "flux": float(src.flux),
               "x": float(src.x), "y": float(src.y), "re": float(src.re), "q": float(src.q),
               "angle": float(src.angle), "n": None if src.n is None else float(src.n)}
    doc["is_target"] = bool(is_target)
    return doc


def write_model_json(path, *, params, problem, result=None, source=None, inputs=(),
                     neighbours=()):
    """Re-loadable model JSON (:func:`mogviewer.export.write_model_json`, the target) with
    every source of the scene under :data:`SCENE_KEY`: the target first (``is_target``), then
    the other sources (``kind`` 'point' or 'galaxy' with its profile and ellipse). Atomic;
    refused over any of ``inputs``."""
    path = check_output_path(path, "model JSON", inputs=inputs)
    model = result if result is not None and result.params == params else params
    with atomic_output(path, "model JSON", inputs=inputs) as tmp:
        mexport.write_model_json(tmp, model, problem=problem, profile=problem.profile,
                                 M=problem.M, source=source)
        with open(tmp, encoding="utf-8") as f:
            doc = json.load(f)
        p = params
        target = {"kind": "galaxy", "profile": problem.profile, "M": int(problem.M),
                  "flux": float(p.flux), "x": float(p.x), "y": float(p.y), "re": float(p.re),
                  "q": float(p.q), "angle": float(p.angle),
                  "n": None if p.n is None or problem.profile != "ser" else float(p.n),
                  "is_target": True}
        doc[SCENE_KEY] = [target] + [_source_doc(s) for s in neighbours]
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def read_model_json(path):
    """A ``SavedModel`` (``.params``, ``.profile``, ``.M``, ``.sky``, ``.free``, ``.psf``)."""
    return mexport.read_model_json(path)


def saved_neighbours(saved, *, name="model"):
    """The other sources of a model file (:data:`SCENE_KEY`, target excluded) as
    ``PointSource`` / ``Galaxy`` values; ``()`` for a file with the target only. Raises
    ``ModelFileError`` naming the bad entry (a wrong kind, a missing or non-finite value, an
    axis ratio out of (0, 1])."""
    from ..scene import Galaxy, PointSource
    entries = (saved.meta or {}).get(SCENE_KEY)
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise mexport.ModelFileError(f"{name}: '{SCENE_KEY}' must be a list of sources")
    out = []
    for k, e in enumerate(entries):
        try:
            if not isinstance(e, dict):
                raise TypeError("not an object")
            if e.get("is_target"):
                continue
            nums = {key: e[key] for key in ("flux", "x", "y", "re", "q", "angle", "n")
                    if key in e and e[key] is not None}
            for key, v in nums.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) \
                        or not np.isfinite(v):
                    raise ValueError(f"{key} = {v!r} is not a finite number")
            if e.get("kind") == "point":
                out.append(PointSource(float(e["flux"]), float(e["x"]), float(e["y"])))
            elif e.get("kind") == "galaxy":
                out.append(Galaxy(profile=str(e["profile"]), M=e.get("M"),
                                  flux=float(e["flux"]), x=float(e["x"]), y=float(e["y"]),
                                  re=float(e["re"]), q=float(e["q"]),
                                  angle=float(e["angle"]), n=nums.get("n")))
            else:
                raise ValueError(f"kind {e.get('kind')!r} is not 'point' or 'galaxy'")
        except (KeyError, TypeError, ValueError) as exc:
            raise mexport.ModelFileError(f"{name}: source {k} of '{SCENE_KEY}' is invalid "
                                         f"({exc})") from None
    return tuple(out)


# ------------------------------------------------------------------------------- routing
def classify_file(path, *, current_shape=None):
    """Guess what a dropped file is, from its content: 'image', 'psf', 'mask', 'model'.

    * JSON: a mogviewer model (``params``) -> 'model'; a mixture (``amps``) -> 'psf'.
    * FITS with a Tractor/PSFEx mixture (``PSF_P0`` keyword, ``PSF_MASK`` or ``amp/mean/var``
      columns) -> 'psf'.
    * A 2-D image with only the values 0 and 1 and the shape of the current image -> 'mask'.
    * A small (<= 128 px), roughly square image whose brightest pixel is within 2 px of its
      centre, while a larger image is loaded -> 'psf'.
    * Anything else readable -> 'image'. Unreadable -> 'image' (the reader then says why).
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(2880)
    except OSError:
        return "image"
    text_head = head.lstrip()[:1]
    if text_head in (b"{", b"["):
        try:
            doc = json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError):
            return "image"
        if isinstance(doc, dict) and ("params" in doc or "parameters" in doc
                                      or doc.get("format", "").startswith("mogviewer-model")):
            return "model"
        return "psf"
    if head[:6] == b"\x93NUMPY":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            return "image"
        return _classify_array(np.asarray(arr), current_shape)
    if head[:6] != b"SIMPLE" and head[:2] != b"\x1f\x8b":
        return "image"
    try:
        from astropy.io import fits
        with fits.open(p, memmap=False) as hdul:
            for h in hdul:
                if "PSF_P0" in h.header:
                    return "psf"
                cols = getattr(getattr(h, "columns", None), "names", None) or []
                low = {c.lower() for c in cols}
                if "psf_mask" in low or {"amp", "mean", "var"} <= low:
                    return "psf"
            for h in hdul:
                if h.is_image and h.data is not None and np.ndim(h.data) == 2:
                    return _classify_array(np.asarray(h.data), current_shape)
    except Exception:  # noqa: BLE001 - the reader gives the real message
        return "image"
    return "image"


def _classify_array(arr, current_shape):
    if arr.ndim != 2:
        return "image"
    if current_shape is not None and arr.shape == tuple(current_shape):
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        if finite.size and np.all((finite == 0) | (finite == 1)):
            return "mask"
    ny, nx = arr.shape
    if max(ny, nx) <= 128 and abs(ny - nx) <= 2 and (
            current_shape is None or max(current_shape) > max(ny, nx)):
        a = np.where(np.isfinite(arr), arr, -np.inf)
        iy, ix = np.unravel_index(np.argmax(a), a.shape)
        if abs(iy - (ny - 1) / 2) <= 2 and abs(ix - (nx - 1) / 2) <= 2:
            return "psf"
    return "image"


# ------------------------------------------------------------------------------- scenes
#: Source kinds of the source list: a point source (the PSF) or a galaxy with a profile.
SOURCE_KINDS = ("point", "exp", "dev", "ser")


def _library_psf_mode(psf_mode):
    """The library's ``psf_mode`` of the app's: 'exact' is ``'auto'`` (a PSF image used
    exactly, a mixture file stays a mixture: the command line's default), 'mixture' the
    Gaussian mixture only."""
    return "auto" if psf_mode == "exact" else "mixture"


def observation(data, psf_model, *, extra_mask=None, psf_mode="exact"):
    """An :class:`mogviewer.observation.Observation` of the image with the user's mask added
    and the PSF used as the session says: in exact mode the stamp itself (an
    :class:`~mogviewer.render.exact.ExactPsf`: the mixture plus the FFT-applied residual, as
    the one-galaxy fit and ``mogviewer fit --neighbours fit`` use it), in mixture mode its
    Gaussian mixture only."""
    from ..observation import Observation
    mask = data.mask if extra_mask is None else (data.mask | extra_mask)
    return Observation.from_arrays(data.image, ivar=data.ivar, mask=mask, psf=psf_model,
                                   psf_mode=_library_psf_mode(psf_mode))


def neighbours_image(data, psf_model, neighbours, *, psf_mode="exact"):
    """The model image of the other sources (no sky), convolved with the PSF as the session's
    ``psf_mode`` says: what is taken from the data before the target is fitted."""
    from ..scene import Scene
    if not neighbours:
        return np.zeros(data.shape)
    obs = observation(data, psf_model, psf_mode=psf_mode)
    return Scene(tuple(neighbours)).render(obs, sources=range(len(neighbours)))


def new_source(kind, x, y, data, *, sky=0.0, re=6.0):
    """A source of ``kind`` (:data:`SOURCE_KINDS`) at pixel ``(x, y)`` with a start flux from
    the data: the sky-subtracted sum of the 7x7 pixels about it (at least 1e-30)."""
    from ..scene import Galaxy, PointSource
    ny, nx = data.shape
    ix, iy = int(round(x)), int(round(y))
    box = data.image[max(iy - 3, 0):iy + 4, max(ix - 3, 0):ix + 4]
    good = ~data.mask[max(iy - 3, 0):iy + 4, max(ix - 3, 0):ix + 4]
    flux = float(np.sum((box - sky)[good])) if good.any() else 0.0
    flux = max(flux, 1e-30)
    if kind == "point":
        return PointSource(flux, float(x), float(y))
    return Galaxy(profile=kind, flux=flux, x=float(x), y=float(y), re=float(re), q=1.0,
                  angle=0.0, n=2.0 if kind == "ser" else None)


def with_kind(source, kind):
    """``source`` as another kind (point / a galaxy profile), keeping position and flux."""
    from ..scene import Galaxy, PointSource
    if kind == "point":
        return PointSource(source.flux, source.x, source.y)
    if isinstance(source, Galaxy):
        return Galaxy(profile=kind, flux=source.flux, x=source.x, y=source.y, re=source.re,
                      q=source.q, angle=source.angle, n=(source.n or 2.0) if kind == "ser"
                      else None)
    return Galaxy(profile=kind, flux=source.flux, x=source.x, y=source.y, re=3.0, q=1.0,
                  angle=0.0, n=2.0 if kind == "ser" else None)


def source_kind(source):
    return "point" if getattr(source, "kind", "") == "point" else source.profile


def moved_source(source, **ell):
    """``source`` with new ``x, y`` (and for a galaxy ``re, q, angle``) from a handle."""
    import dataclasses
    keys = ("x", "y") if source_kind(source) == "point" else ("x", "y", "re", "q", "angle")
    return dataclasses.replace(source, **{k: float(ell[k]) for k in keys if k in ell})


def detect_scene(data, psf_model, *, target, profile, M, n, extra_mask=None, max_fitted=10):
    """Detect the sources of the image (:func:`mogviewer.detect.detect_sources`, photutils)
    and start a scene from them (:func:`mogviewer.detect.scene_from_detections`). Returns
    ``(neighbours, mask, n_detected)``: the modelled sources other than the one at
    ``target``, and the segments to mask (artefacts and the faint rest)."""
    from ..detect import detect_sources, scene_from_detections
    mask = data.mask if extra_mask is None else (data.mask | extra_mask)
    mix = None if psf_model is None else psf_model.mixture
    det = detect_sources(data.image, ivar=data.ivar, mask=mask, psf=mix)
    scene, seg_mask, _ids = scene_from_detections(
        det, target=target, profile=profile, M=None if profile == "ser" else M,
        n=n if n is not None else 2.0, psf=mix, neighbours="fit", max_fitted=max_fitted)
    return tuple(scene.sources[1:]), np.asarray(seg_mask, bool), len(det.sources)


def run_scene_fit(data, psf_model, problem_for, target_params, profile, M, neighbours, *,
                  sky, extra_mask=None, should_stop=None, psf_mode="exact"):
    """Fit the target and its neighbours jointly (:func:`mogviewer.fitting.scene_fit.
    fit_scene`, the PSF used as ``psf_mode`` says: the stamp itself in exact mode, as
    ``mogviewer fit --neighbours fit`` does), then the target alone on the data minus the fitted
    neighbours with the session's own problem (``problem_for(neighbours)``: its PSF mode,
    free parameters and sky), so the result is an ordinary FitResult whose errors hold the
    neighbours fixed. Returns ``(FitResult, neighbours, SceneFitResult)``."""
    from ..fitting.scene_fit import fit_scene
    from ..scene import Scene
    scene = Scene.from_params(target_params, profile, None if profile == "ser" else M)
    scene = Scene(scene.sources + tuple(neighbours), sky=target_params.sky)
    obs = observation(data, psf_model, extra_mask=extra_mask, psf_mode=psf_mode)
    sres = fit_scene(obs, scene, sky="constant" if sky else "none", should_stop=should_stop)
    best = sres.scene
    t = best.sources[0]
    start = target_params.replace(flux=t.flux, x=t.x, y=t.y, re=t.re, q=t.q, angle=t.angle,
                                  sky=best.sky if sky else target_params.sky,
                                  **({"n": t.n} if profile == "ser" and t.n else {}))
    nb = tuple(best.sources[1:])
    result = fitting.fit(problem_for(nb), start, should_stop=should_stop)
    return result, nb, sres
